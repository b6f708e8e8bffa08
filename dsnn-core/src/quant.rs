//! DeepShift quantisers: the element-wise rules and their candle ops.
//!
//! The scalar functions reproduce the reference DeepShift code exactly,
//! quirks included (see `docs/deepshift.md` and the golden tests):
//! * [`round_to_fixed`]: fixed-point activations, floor to a `2^-F` grid and
//!   clamp to `[-2^(I-1), 2^(I-1) - 1]`;
//! * [`quantize_q`]: DeepShift-Q weights, `sign(w) * 2^round(ln|w| / ln 2)`
//!   after clamping `|w|` into `[2^lo, 1]`;
//! * [`ps_weight`]: DeepShift-PS weights `2^round(clamp(shift)) * sign(round(sign))`.
//!
//! The candle ops wrap them with straight-through backward passes.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::f32::consts::LN_2;

/// How a float is rounded to an integer in the quantisers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Round to nearest, ties to even (as `torch.round`).
    #[default]
    Deterministic,
    /// `floor(x) + Bernoulli(x - floor(x))`: unbiased, seeded, reproducible.
    Stochastic,
}

impl Rounding {
    /// The names [`std::str::FromStr`] accepts, for error messages.
    pub const NAMES: &'static [&'static str] = &["deterministic", "stochastic"];
}

impl std::str::FromStr for Rounding {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "deterministic" | "nearest" => Ok(Rounding::Deterministic),
            "stochastic" => Ok(Rounding::Stochastic),
            other => Err(format!(
                "unknown rounding `{other}` (allowed: deterministic, stochastic)"
            )),
        }
    }
}

impl std::fmt::Display for Rounding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rounding::Deterministic => "deterministic",
            Rounding::Stochastic => "stochastic",
        })
    }
}

/// A counter-based source of uniform numbers for stochastic rounding.
///
/// The number for element `i` depends only on `(seed, step, i)`, so results
/// are reproducible for a seed whatever the thread schedule, and a GPU kernel
/// can produce the same stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomStream {
    /// The seed of the layer or tensor being rounded.
    pub seed: u64,
    /// Which forward pass this is (advanced by the layer on every call).
    pub step: u64,
}

impl RandomStream {
    /// A uniform number in `[0, 1)` for element `index`, with 24 random bits.
    pub fn uniform(&self, index: u64) -> f32 {
        let h = splitmix64(
            self.seed
                ^ splitmix64(self.step.wrapping_add(0x9E37_79B9_7F4A_7C15))
                ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93),
        );
        (h >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Rounds `x` to an integer: ties to even, or stochastically with uniform `u`.
#[inline]
pub fn round_with(x: f32, rounding: Rounding, u: f32) -> f32 {
    match rounding {
        Rounding::Deterministic => round_ties_even_fast(x),
        Rounding::Stochastic => {
            let fl = x.floor();
            // frac is NaN for infinite x; then keep floor (DeepShift guards -inf the same way).
            let frac = x - fl;
            if u < frac {
                fl + 1.0
            } else {
                fl
            }
        }
    }
}

/// `2^e` for an integer-valued `e`, built from the exponent bits when it is a
/// normal float (much faster than `exp2`), else via `exp2`.
#[inline]
pub fn pow2(e: f32) -> f32 {
    if (-126.0..=127.0).contains(&e) {
        f32::from_bits(((e as i32 + 127) as u32) << 23)
    } else {
        e.exp2()
    }
}

/// DeepShift's fixed-point rounding of an activation.
///
/// `integer_bits == 1` reproduces the reference special case `sign(x) - 1`.
#[inline]
pub fn round_to_fixed(x: f32, integer_bits: u32, fraction_bits: u32) -> f32 {
    FixedPointGrid::new(integer_bits, fraction_bits).round(x)
}

/// The constants of one fixed-point format, computed once per tensor.
#[derive(Debug, Clone, Copy)]
pub struct FixedPointGrid {
    special: bool,
    scale: f32,
    delta: f32,
    bound: f32,
}

impl FixedPointGrid {
    /// The grid of `integer_bits` (sign included) and `fraction_bits`.
    pub fn new(integer_bits: u32, fraction_bits: u32) -> Self {
        FixedPointGrid {
            special: integer_bits == 1,
            scale: pow2(fraction_bits as f32),
            delta: pow2(-(fraction_bits as f32)),
            bound: pow2(integer_bits.max(1) as f32 - 1.0),
        }
    }

    /// Floors `x` to the grid and clamps it to `[-2^(I-1), 2^(I-1) - 1]`.
    #[inline]
    pub fn round(&self, x: f32) -> f32 {
        if self.special {
            return sign(x) - 1.0;
        }
        // x * 2^F equals x / 2^-F exactly: both scale by a power of two.
        (floor_fast(x * self.scale) * self.delta).clamp(-self.bound, self.bound - 1.0)
    }

    /// Rounds every element of `src` into `dst` (equal lengths), with the
    /// widest vector instructions the CPU offers (chosen at run time; the
    /// arithmetic is the same element-wise float code on every path, so all
    /// paths give identical bits).
    pub fn round_slice(&self, src: &[f32], dst: &mut [f32]) {
        assert_eq!(src.len(), dst.len(), "round_slice: lengths differ");
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above).
            return unsafe { self.round_slice_avx512(src, dst) };
        } else if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { self.round_slice_avx2(src, dst) };
        }
        self.round_slice_portable(src, dst);
    }

    /// [`Self::round_slice`] on the baseline target (the path CI tests on
    /// every CPU).
    #[inline(always)]
    pub fn round_slice_portable(&self, src: &[f32], dst: &mut [f32]) {
        let g = *self;
        for (o, &v) in dst.iter_mut().zip(src) {
            *o = g.round(v);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn round_slice_avx512(&self, src: &[f32], dst: &mut [f32]) {
        self.round_slice_portable(src, dst)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn round_slice_avx2(&self, src: &[f32], dst: &mut [f32]) {
        self.round_slice_portable(src, dst)
    }
}

/// `x.floor()` without a libm call (the baseline x86-64 target has no
/// rounding instruction, and `floorf` dominated activation quantisation).
#[inline]
pub fn floor_fast(x: f32) -> f32 {
    // Pure float arithmetic and selects, so loops over it vectorise (a
    // float-to-int cast is a saturating scalar conversion on x86-64).
    // Adding and removing 2^23 rounds a magnitude below 2^23 to the nearest
    // integer; larger floats, NaN and infinities are already integral.
    let nearest = round_ties_even_fast(x);
    if nearest > x {
        nearest - 1.0
    } else {
        nearest
    }
}

/// `x.round_ties_even()` without a libm call (`rintf`: the baseline x86-64
/// target has no rounding instruction), bit for bit the same result.
#[inline]
pub fn round_ties_even_fast(x: f32) -> f32 {
    // Adding and removing 2^23 rounds a magnitude below 2^23 to the nearest
    // integer, ties to even (the default rounding mode); larger floats, NaN
    // and infinities are already integral. `copysign` keeps -0.0.
    const TWO_23: f32 = 8_388_608.0;
    let a = x.abs();
    if a < TWO_23 {
        ((a + TWO_23) - TWO_23).copysign(x)
    } else {
        x
    }
}

/// Mantissa bits of `sqrt(2)` in `f32` (`0x3FB504F3`): the boundary where
/// `log2` of a mantissa rounds up.
const SQRT2_MANTISSA: i32 = 0x0035_04F3;
/// Half-width, in mantissa units (2^-9 in the mantissa), of the window around
/// [`SQRT2_MANTISSA`] where the `f32` logarithm is computed after all.
const SQRT2_WINDOW: i32 = 1 << 14;

/// `round_ties_even(ln(a) / ln 2)` for a positive `a`, as the reference
/// computes it in `f32`, mostly without the logarithm: for a normal
/// `a = m * 2^e` (`1 <= m < 2`) the result is `e`, or `e + 1` when
/// `m > sqrt(2)`. Rounding errors of the `f32` logarithm (a few units in the
/// last place of a value below 128) can only move the result for mantissas
/// within about 1e-5 of `sqrt(2)`, so a window of about 1e-3 around it, and
/// subnormal `a`, take the reference formula itself.
#[inline]
pub fn log2_round_nearest(a: f32) -> f32 {
    let bits = a.to_bits();
    let exponent_field = ((bits >> 23) & 0xff) as i32;
    let mantissa = (bits & 0x007f_ffff) as i32;
    if exponent_field == 0
        || exponent_field == 0xff
        || (bits >> 31) != 0
        || (mantissa - SQRT2_MANTISSA).abs() < SQRT2_WINDOW
    {
        return (a.ln() / LN_2).round_ties_even();
    }
    let exponent = exponent_field - 127;
    let nearest = (exponent + i32::from(mantissa > SQRT2_MANTISSA)) as f32;
    // A negative logarithm that rounds to zero is -0.0, as in the reference.
    if exponent < 0 {
        -nearest.abs()
    } else {
        nearest
    }
}

/// `torch.sign`: -1, 0 or +1 (NaN stays NaN).
#[inline]
pub fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x
    }
}

/// The range of the shift exponent for DeepShift-Q: `[-(2^(b-1) - 1), 0]`.
pub fn q_shift_range(weight_bits: u32) -> (i32, i32) {
    (-((1i32 << (weight_bits - 1)) - 1), 0)
}

/// The range of the shift exponent for DeepShift-PS: `[-(2^(b-1) - 2), 0]`,
/// one code fewer than Q because the sign is ternary.
pub fn ps_shift_range(weight_bits: u32) -> (i32, i32) {
    (-((1i32 << (weight_bits - 1)) - 2), 0)
}

/// DeepShift's `clampabs`: `|w|` into `[2^lo, 1]`, exact zeros stay zero.
#[inline]
pub fn clamp_abs(w: f32, lo: i32) -> f32 {
    let min = pow2(lo as f32);
    let c = w.clamp(-1.0, 1.0);
    if c != 0.0 && c.abs() < min {
        sign(c) * min
    } else {
        c
    }
}

/// DeepShift-Q weight: `sign(w) * 2^round(ln|w| / ln 2)` after [`clamp_abs`].
/// The rounding is in the log domain (0.70 -> 0.5, 0.72 -> 1.0).
#[inline]
pub fn quantize_q(w: f32, weight_bits: u32, rounding: Rounding, u: f32) -> f32 {
    let (lo, _) = q_shift_range(weight_bits);
    let c = clamp_abs(w, lo);
    if c == 0.0 {
        return 0.0;
    }
    let shift = match rounding {
        Rounding::Deterministic => log2_round_nearest(c.abs()),
        Rounding::Stochastic => round_with(c.abs().ln() / LN_2, rounding, u),
    };
    sign(c) * pow2(shift)
}

/// [`quantize_q`] with deterministic rounding of every element of `w` into
/// `out` (equal lengths), bit for bit. A normal clamped weight's power of
/// two is read off its exponent and mantissa bits (see
/// [`log2_round_nearest`]) in branch-free code that vectorises (the widest
/// vector instructions the CPU offers are chosen at run time); weights near
/// a rounding boundary, subnormal or NaN are then redone by [`quantize_q`].
pub fn quantize_q_slice(w: &[f32], out: &mut [f32], weight_bits: u32) {
    assert_eq!(w.len(), out.len(), "quantize_q_slice: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F (checked just above).
        return unsafe { quantize_q_slice_avx512(w, out, weight_bits) };
    } else if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { quantize_q_slice_avx2(w, out, weight_bits) };
    }
    quantize_q_slice_portable(w, out, weight_bits);
}

/// The bits of [`quantize_q`]'s deterministic result for `v` by exponent
/// and mantissa, and whether `v` needs the reference formula instead.
#[inline(always)]
fn quantize_q_bits(v: f32, min: f32) -> (f32, bool) {
    let c = v.clamp(-1.0, 1.0);
    let a = c.abs().max(min);
    let bits = a.to_bits();
    let exponent_field = bits >> 23;
    let mantissa = (bits & 0x007f_ffff) as i32;
    let slow =
        exponent_field == 0 || c.is_nan() || (mantissa - SQRT2_MANTISSA).abs() < SQRT2_WINDOW;
    let biased = exponent_field + u32::from(mantissa > SQRT2_MANTISSA);
    let q = f32::from_bits((biased << 23) | (c.to_bits() & 0x8000_0000));
    (if c == 0.0 { 0.0 } else { q }, slow)
}

/// [`quantize_q_slice`] on the baseline target (the path CI tests everywhere).
#[inline(always)]
pub fn quantize_q_slice_portable(w: &[f32], out: &mut [f32], weight_bits: u32) {
    let min = pow2(q_shift_range(weight_bits).0 as f32);
    let mut any_slow = false;
    for (o, &v) in out.iter_mut().zip(w) {
        let (q, slow) = quantize_q_bits(v, min);
        *o = q;
        any_slow |= slow;
    }
    if any_slow {
        for (o, &v) in out.iter_mut().zip(w) {
            if quantize_q_bits(v, min).1 {
                *o = quantize_q(v, weight_bits, Rounding::Deterministic, 0.0);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn quantize_q_slice_avx512(w: &[f32], out: &mut [f32], bits: u32) {
    quantize_q_slice_portable(w, out, bits)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_q_slice_avx2(w: &[f32], out: &mut [f32], bits: u32) {
    quantize_q_slice_portable(w, out, bits)
}

/// [`ps_weight`] with deterministic rounding for every `(shift, sign)` pair
/// into `out` (equal lengths), bit for bit, in branch-free arithmetic that
/// vectorises; the widest vector instructions the CPU offers are chosen at
/// run time.
pub fn ps_weight_slice(shift: &[f32], sign_param: &[f32], out: &mut [f32], weight_bits: u32) {
    assert!(
        shift.len() == out.len() && sign_param.len() == out.len(),
        "ps_weight_slice: lengths differ"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F (checked just above).
        return unsafe { ps_weight_slice_avx512(shift, sign_param, out, weight_bits) };
    } else if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { ps_weight_slice_avx2(shift, sign_param, out, weight_bits) };
    }
    ps_weight_slice_portable(shift, sign_param, out, weight_bits);
}

/// [`ps_weight_slice`] on the baseline target (the path CI tests everywhere).
#[inline(always)]
pub fn ps_weight_slice_portable(
    shift: &[f32],
    sign_param: &[f32],
    out: &mut [f32],
    weight_bits: u32,
) {
    let (lo, hi) = ps_shift_range(weight_bits);
    let (lo, hi) = (lo as f32, hi as f32);
    // 2^23 + n has the integer n in its mantissa bits (0 <= n < 2^23).
    const TWO_23: f32 = 8_388_608.0;
    for ((o, &s), &g) in out.iter_mut().zip(shift).zip(sign_param) {
        // The exponent lies in [-126, 0] (weight_bits <= 8): 2^r is normal,
        // its biased exponent r + 127 in [1, 127].
        let r = round_ties_even_fast(s.clamp(lo, hi));
        let biased = ((r + 127.0) + TWO_23).to_bits() - TWO_23.to_bits();
        let p = if r.is_nan() {
            f32::NAN
        } else {
            f32::from_bits(biased << 23)
        };
        *o = sign(round_ties_even_fast(g)) * p;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn ps_weight_slice_avx512(shift: &[f32], sign_param: &[f32], out: &mut [f32], bits: u32) {
    ps_weight_slice_portable(shift, sign_param, out, bits)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn ps_weight_slice_avx2(shift: &[f32], sign_param: &[f32], out: &mut [f32], bits: u32) {
    ps_weight_slice_portable(shift, sign_param, out, bits)
}

/// DeepShift-PS weight `2^round(clamp(shift, lo, 0)) * sign(round(sign))`.
/// `u_shift` and `u_sign` are the uniforms for stochastic rounding.
#[inline]
pub fn ps_weight(
    shift: f32,
    sign_param: f32,
    weight_bits: u32,
    rounding: Rounding,
    u_shift: f32,
    u_sign: f32,
) -> f32 {
    let (lo, hi) = ps_shift_range(weight_bits);
    let s = round_with(shift.clamp(lo as f32, hi as f32), rounding, u_shift);
    sign(round_with(sign_param, rounding, u_sign)) * pow2(s)
}

/// Clamps a PS shift parameter into its range (done to the stored parameter
/// after every update, as the reference does in place in every forward).
#[inline]
pub fn clamp_ps_shift(shift: f32, weight_bits: u32) -> f32 {
    let (lo, hi) = ps_shift_range(weight_bits);
    shift.clamp(lo as f32, hi as f32)
}

/// The fixed-point format of the activations entering a shift layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedPoint {
    /// Integer bits, sign included (`activation_integer_bits`).
    pub integer_bits: u32,
    /// Fraction bits (`activation_fraction_bits`).
    pub fraction_bits: u32,
}

impl Default for FixedPoint {
    fn default() -> Self {
        FixedPoint {
            integer_bits: 16,
            fraction_bits: 16,
        }
    }
}

/// Straight-through fixed-point activation quantiser (a candle op).
#[derive(Debug, Clone, Copy)]
pub struct QuantizeActivation(pub FixedPoint);

impl CustomOp1 for QuantizeActivation {
    fn name(&self) -> &'static str {
        "dsnn-round-to-fixed"
    }
    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = crate::ops::slice(storage, layout)?;
        let grid = FixedPointGrid::new(self.0.integer_bits, self.0.fraction_bits);
        let mut out = vec![0f32; x.len()];
        // Written out rather than through `ops::par_map`: with the grid copied
        // into each chunk's loop this measured about 4x faster.
        out.par_chunks_mut(1 << 14)
            .zip(x.par_chunks(1 << 14))
            .for_each(|(o, x)| grid.round_slice(x, o));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (integer_bits, fraction_bits) = (self.0.integer_bits, self.0.fraction_bits);
        let args = crate::cuda::FixedPointKernelArgs {
            special: integer_bits == 1,
            scale: pow2(fraction_bits as f32),
            delta: pow2(-(fraction_bits as f32)),
            bound: pow2(integer_bits.max(1) as f32 - 1.0),
        };
        let y = crate::cuda::round_to_fixed(storage, layout, args)?;
        Ok((y, layout.shape().clone()))
    }
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.clone()))
    }
}

/// Straight-through DeepShift-Q weight quantiser (a candle op).
#[derive(Debug, Clone, Copy)]
pub struct QuantizeWeightQ {
    /// Bits per weight (2..=8).
    pub weight_bits: u32,
    /// Rounding of the log-domain exponent.
    pub rounding: Rounding,
    /// Random stream for stochastic rounding.
    pub stream: RandomStream,
}

impl CustomOp1 for QuantizeWeightQ {
    fn name(&self) -> &'static str {
        "dsnn-quantize-q"
    }
    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let w = crate::ops::slice(storage, layout)?;
        if self.rounding == Rounding::Deterministic {
            let mut out = vec![0f32; w.len()];
            let bits = self.weight_bits;
            out.par_chunks_mut(1 << 14)
                .zip(w.par_chunks(1 << 14))
                .for_each(|(o, w)| quantize_q_slice(w, o, bits));
            return Ok((CpuStorage::F32(out), layout.shape().clone()));
        }
        let out = crate::ops::par_map_indexed(w, |i, v| {
            let u = match self.rounding {
                Rounding::Deterministic => 0.0,
                Rounding::Stochastic => self.stream.uniform(i as u64),
            };
            quantize_q(v, self.weight_bits, self.rounding, u)
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let args = crate::cuda::WeightKernelArgs {
            lo: q_shift_range(self.weight_bits).0,
            hi: 0,
            stochastic: self.rounding == Rounding::Stochastic,
            seed: self.stream.seed,
            step: self.stream.step,
        };
        let y = crate::cuda::quantize_q(storage, layout, args)?;
        Ok((y, layout.shape().clone()))
    }
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.clone()))
    }
}

/// DeepShift-PS weight from `(shift, sign)` parameters (a candle op).
///
/// Backward (the reference's `unsym_grad_mul`): `dL/dsign = dL/dW` and
/// `dL/dshift = dL/dW * W * ln 2`, where `W = sign_r * 2^shift_r`.
#[derive(Debug, Clone, Copy)]
pub struct PsWeight {
    /// Bits per weight (2..=8).
    pub weight_bits: u32,
    /// Rounding of shift and sign.
    pub rounding: Rounding,
    /// Random stream for stochastic rounding.
    pub stream: RandomStream,
}

impl CustomOp2 for PsWeight {
    fn name(&self) -> &'static str {
        "dsnn-ps-weight"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let shift = crate::ops::slice(s1, l1)?;
        let sign_p = crate::ops::slice(s2, l2)?;
        if shift.len() != sign_p.len() {
            candle_core::bail!("PS shift and sign parameters differ in size");
        }
        if self.rounding == Rounding::Deterministic {
            let bits = self.weight_bits;
            let mut out = vec![0f32; shift.len()];
            out.par_chunks_mut(1 << 14)
                .zip(shift.par_chunks(1 << 14).zip(sign_p.par_chunks(1 << 14)))
                .for_each(|(o, (sh, sg))| ps_weight_slice(sh, sg, o, bits));
            return Ok((CpuStorage::F32(out), l1.shape().clone()));
        }
        let n = shift.len() as u64;
        let out = crate::ops::par_map_indexed(shift, |i, s| {
            let (us, ug) = match self.rounding {
                Rounding::Deterministic => (0.0, 0.0),
                Rounding::Stochastic => (
                    self.stream.uniform(i as u64),
                    self.stream.uniform(n + i as u64),
                ),
            };
            ps_weight(s, sign_p[i], self.weight_bits, self.rounding, us, ug)
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (lo, hi) = ps_shift_range(self.weight_bits);
        let args = crate::cuda::WeightKernelArgs {
            lo,
            hi,
            stochastic: self.rounding == Rounding::Stochastic,
            seed: self.stream.seed,
            step: self.stream.step,
        };
        let y = crate::cuda::ps_weight(s1, l1, s2, l2, args)?;
        Ok((y, l1.shape().clone()))
    }
    fn bwd(
        &self,
        _shift: &Tensor,
        _sign: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_shift = (grad_res.mul(res)? * f64::from(LN_2))?;
        Ok((Some(grad_shift), Some(grad_res.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_ties_even_fast_equals_round_ties_even() {
        let mut x = -70_000.0f32;
        while x < 70_000.0 {
            for v in [x, -x, x + 0.5, x - 0.5, x + 1e-3, x.trunc() + 0.5] {
                let r = round_ties_even_fast(v);
                assert_eq!(r.to_bits(), v.round_ties_even().to_bits(), "{v}");
            }
            x += 0.37;
        }
        for v in [
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -2.5,
            8_388_607.5,
            1e30,
            -1e30,
            f32::INFINITY,
        ] {
            assert_eq!(
                round_ties_even_fast(v).to_bits(),
                v.round_ties_even().to_bits()
            );
        }
        assert!(round_ties_even_fast(f32::NAN).is_nan());
    }

    #[test]
    fn log2_round_nearest_equals_the_reference_formula() {
        let reference = |a: f32| (a.ln() / LN_2).round_ties_even();
        let check = |a: f32| {
            assert_eq!(
                log2_round_nearest(a).to_bits(),
                reference(a).to_bits(),
                "{a:e}"
            );
        };
        // Every binade a Q weight can take (up to 8 bits: down to 2^-127),
        // sampled across the mantissa, and every mantissa near the edges of
        // the window around sqrt(2).
        for e in -130i32..=1 {
            let base = (e + 127).max(0) as u32;
            for m in (0u32..(1 << 23)).step_by(997) {
                check(f32::from_bits((base << 23) | m));
            }
            for edge in [0x0035_04F3 - (1 << 14), 0x0035_04F3 + (1 << 14)] {
                for m in edge - 300..edge + 300 {
                    check(f32::from_bits((base << 23) | m as u32));
                }
            }
        }
        for a in [
            1.0f32,
            0.5,
            0.70,
            0.72,
            std::f32::consts::FRAC_1_SQRT_2,
            2f32.powi(-15),
        ] {
            check(a);
        }
    }

    #[test]
    fn quantize_q_slice_equals_quantize_q() {
        let mut w: Vec<f32> = (0..200_000)
            .map(|i| ((i as f32) * 0.618_034).sin() * 1.3 * (-((i % 37) as f32) / 3.0).exp())
            .collect();
        for e in -130i32..=1 {
            let base = (e + 127).max(0) as u32;
            for m in [
                0,
                1,
                0x0035_04F3 - (1 << 14),
                0x0035_04F3,
                0x0035_04F3 + (1 << 14),
            ] {
                for d in 0..3u32 {
                    let a = f32::from_bits((base << 23) | (m + d));
                    w.extend([a, -a]);
                }
            }
        }
        w.extend([0.0, -0.0, 1.0, -1.0, 2.0, -7.5, f32::NAN, f32::INFINITY]);
        for bits in 2..=8 {
            let mut out = vec![0f32; w.len()];
            quantize_q_slice(&w, &mut out, bits);
            let mut portable = vec![0f32; w.len()];
            quantize_q_slice_portable(&w, &mut portable, bits);
            for ((&v, &o), &p) in w.iter().zip(&out).zip(&portable) {
                let r = quantize_q(v, bits, Rounding::Deterministic, 0.0);
                for (path, o) in [("dispatched", o), ("portable", p)] {
                    assert!(
                        r.to_bits() == o.to_bits() || (r.is_nan() && o.is_nan()),
                        "{path}: {v:e} at {bits} bits: {o} != {r}"
                    );
                }
            }
        }
    }

    #[test]
    fn ps_weight_slice_equals_ps_weight_on_every_path() {
        let mut shift: Vec<f32> = (0..20_000).map(|i| (i as f32) * 0.0137 - 140.0).collect();
        shift.extend([
            0.0,
            -0.0,
            -0.5,
            -1.5,
            -2.5,
            0.5,
            3.0,
            -200.0,
            f32::NAN,
            f32::INFINITY,
        ]);
        shift.extend([f32::NEG_INFINITY, -126.5, -125.5, -13.5, -14.5]);
        let sign_p: Vec<f32> = (0..shift.len())
            .map(|i| match i % 9 {
                0 => 0.0,
                1 => -0.0,
                2 => 0.5,
                3 => -0.5,
                4 => 1.5,
                5 => f32::NAN,
                _ => ((i as f32) * 0.77).sin() * 2.0,
            })
            .collect();
        for bits in 2..=8 {
            let mut fast = vec![0f32; shift.len()];
            ps_weight_slice(&shift, &sign_p, &mut fast, bits);
            let mut portable = vec![0f32; shift.len()];
            ps_weight_slice_portable(&shift, &sign_p, &mut portable, bits);
            for i in 0..shift.len() {
                let r = ps_weight(shift[i], sign_p[i], bits, Rounding::Deterministic, 0.0, 0.0);
                for (path, v) in [("dispatched", fast[i]), ("portable", portable[i])] {
                    assert!(
                        v.to_bits() == r.to_bits() || (v.is_nan() && r.is_nan()),
                        "{path}: ({}, {}) at {bits} bits: {v} != {r}",
                        shift[i],
                        sign_p[i]
                    );
                }
            }
        }
    }

    #[test]
    fn round_slice_matches_round_on_every_path() {
        // Values around grid points, bounds, zeros, huge and non-finite.
        let mut src: Vec<f32> = (0..1037)
            .map(|i| (i as f32 - 518.0) * 0.01371 + if i % 7 == 0 { 1e-6 } else { 0.0 })
            .collect();
        src.extend([
            0.0,
            -0.0,
            7.5,
            -8.0,
            1e9,
            -1e9,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ]);
        for (i, f) in [(16, 16), (4, 4), (1, 3), (3, 0), (8, 23)] {
            let grid = FixedPointGrid::new(i, f);
            let expected: Vec<u32> = src.iter().map(|&v| grid.round(v).to_bits()).collect();
            let mut fast = vec![f32::NAN; src.len()];
            grid.round_slice(&src, &mut fast);
            let mut portable = vec![f32::NAN; src.len()];
            grid.round_slice_portable(&src, &mut portable);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), expected, "dispatched path, ({i}, {f})");
            assert_eq!(bits(&portable), expected, "portable path, ({i}, {f})");
        }
    }

    #[test]
    fn floor_fast_equals_floor() {
        let mut x = -70_000.0f32;
        while x < 70_000.0 {
            for v in [x, -x, x + 0.5, x - 1e-3] {
                assert_eq!(floor_fast(v).to_bits(), v.floor().to_bits(), "{v}");
            }
            x += 0.37;
        }
        for v in [
            0.0f32,
            -0.0,
            1e30,
            -1e30,
            8_388_607.5,
            -8_388_607.5,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ] {
            assert_eq!(floor_fast(v).to_bits(), v.floor().to_bits(), "{v}");
        }
        assert!(floor_fast(f32::NAN).is_nan());
    }

    #[test]
    fn ranges_match_deepshift() {
        assert_eq!(q_shift_range(5), (-15, 0));
        assert_eq!(q_shift_range(2), (-1, 0));
        assert_eq!(ps_shift_range(5), (-14, 0));
        assert_eq!(ps_shift_range(2), (0, 0));
    }

    #[test]
    fn six_to_eight_bit_weights_reach_their_smallest_power_of_two() {
        // The golden cases cover 2..=5 bits; wider codes only lower the
        // smallest shift: -31, -63 and -127 for Q, one fewer for PS.
        for (bits, q_lo) in [(6u32, -31i32), (7, -63), (8, -127)] {
            assert_eq!(q_shift_range(bits), (q_lo, 0));
            assert_eq!(ps_shift_range(bits), (q_lo + 1, 0));
            let smallest = pow2(q_lo as f32);
            let q = |w: f32| quantize_q(w, bits, Rounding::Deterministic, 0.0);
            assert_eq!(q(smallest * 1.2), smallest, "{bits} bits");
            // Smaller magnitudes are clamped up to it, zero stays zero.
            assert_eq!(q(-smallest / 8.0), -smallest, "{bits} bits");
            assert_eq!(q(0.0), 0.0);
            assert_eq!(q(smallest * 3.0), 4.0 * smallest, "{bits} bits");
            assert_eq!(q(-0.3), -0.25);
            assert_eq!(q(7.0), 1.0);
            let ps = |shift: f32, sign: f32| {
                ps_weight(shift, sign, bits, Rounding::Deterministic, 0.0, 0.0)
            };
            assert_eq!(ps(-1000.0, 0.7), pow2((q_lo + 1) as f32), "{bits} bits");
            assert_eq!(ps(-2.4, -0.8), -0.25);
            assert_eq!(ps(-3.0, 0.2), 0.0);
        }
    }

    #[test]
    fn stochastic_rounding_is_unbiased_and_in_range() {
        let stream = RandomStream { seed: 7, step: 3 };
        for &x in &[0.3f32, -2.25, 5.0, -0.999] {
            let n = 200_000;
            let mut sum = 0f64;
            for i in 0..n {
                let r = round_with(x, Rounding::Stochastic, stream.uniform(i));
                assert!(r == x.floor() || r == x.floor() + 1.0, "{x} -> {r}");
                sum += f64::from(r);
            }
            let mean = sum / n as f64;
            assert!((mean - f64::from(x)).abs() < 0.005, "{x}: mean {mean}");
        }
    }

    #[test]
    fn random_stream_depends_on_seed_and_step() {
        let a = RandomStream { seed: 1, step: 0 };
        let b = RandomStream { seed: 2, step: 0 };
        let c = RandomStream { seed: 1, step: 1 };
        let va: Vec<f32> = (0..8).map(|i| a.uniform(i)).collect();
        assert_eq!(va, (0..8).map(|i| a.uniform(i)).collect::<Vec<_>>());
        assert_ne!(va, (0..8).map(|i| b.uniform(i)).collect::<Vec<_>>());
        assert_ne!(va, (0..8).map(|i| c.uniform(i)).collect::<Vec<_>>());
        assert!(va.iter().all(|u| (0.0..1.0).contains(u)));
    }
}
