//! Shift-and-accumulate kernels on one block of [`BLOCK`] positions.
//!
//! The input block is an im2col-style matrix `K x BLOCK` of 32-bit
//! activations, stored as sub-blocks of 16, 32 or 64 positions (`K` rows of
//! each), so that the rows the kernel reads over and over stay in L1. For
//! every output channel and every bucket of its plan (the inputs whose
//! weight is `+2^-m` or `-2^-m`), the kernel adds the bucket's rows in
//! 32-bit lanes (vector adds and subtracts only), then shifts the bucket's
//! sum once into a 64-bit accumulator; with 16 lanes and a large fan-in it
//! does so one row chunk at a time ([`Plan::chunks`]). The batch-lanes
//! convolution (16 images per vector, no im2col) runs the same
//! register-tiled kernel, [`rows_avx512`], on its activations. The 32-bit sums are exact
//! because the engine checks, per layer and batch, that
//! `max|X| * largest bucket < 2^31`; otherwise it runs the 64-bit kernel,
//! which gives the same result. No multiplication of any kind runs here.

use crate::weights::Plan;
use std::ops::Range;

pub mod dot;

/// Positions per block (the lanes of 4 AVX-512 or 8 AVX2 registers).
pub const BLOCK: usize = 64;

/// The instruction set a kernel uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust (what the compiler makes of it for the baseline target).
    Portable,
    /// x86-64 AVX2 intrinsics.
    Avx2,
    /// x86-64 AVX-512F intrinsics.
    Avx512,
}

impl Isa {
    /// The best instruction set this CPU has.
    pub fn detect() -> Isa {
        [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .find(|i| i.available())
            .unwrap_or(Isa::Portable)
    }

    /// Whether this CPU can run the kernel.
    pub fn available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

/// Accumulates output channels `cs` of one block:
/// `acc[(c - cs.start) * BLOCK + j] = init[c] + sum_b shl(sum of bucket b at j, shift_b)`
/// for the positions `j < valid` (the other lanes of `acc` are left as they are).
///
/// `col` holds the block as `BLOCK / lanes` sub-blocks of `K x lanes`
/// ([`col_index`]), `K` the layer's fan-in; `lanes` is one of [`LANES`].
/// Sub-blocks past `valid` are not read. `wide` selects 64-bit bucket sums.
/// The caller guarantees `isa.available()`.
#[allow(clippy::too_many_arguments)]
pub fn block_channels(
    isa: Isa,
    wide: bool,
    col: &[i32],
    lanes: usize,
    valid: usize,
    plan: &Plan,
    cs: Range<usize>,
    init: &[i64],
    acc: &mut [i64],
) {
    let k = plan.fan_in;
    assert!(col.len() == col_len(k) && acc.len() >= cs.len() * BLOCK && valid <= BLOCK);
    assert!(LANES.contains(&lanes), "{lanes} lanes per sub-block");
    // Plan::new only stores indices below its fan-in.
    for s in 0..valid.div_ceil(lanes) {
        let sub = &col[s * k * lanes..(s + 1) * k * lanes];
        let at = s * lanes;
        match (lanes, wide) {
            (16, true) => wide_body::<16>(sub, plan, cs.clone(), init, acc, at),
            (32, true) => wide_body::<32>(sub, plan, cs.clone(), init, acc, at),
            (_, true) => wide_body::<64>(sub, plan, cs.clone(), init, acc, at),
            #[cfg(target_arch = "x86_64")]
            (16, false) if isa == Isa::Avx512 && !plan.chunks.is_empty() => {
                assert!(isa.available());
                // Row chunk after row chunk, each read by every channel while
                // it is in L1; exact because no bucket is floored (see
                // `Plan::chunks`), so shl distributes over the partial sums.
                for (q, part) in plan.chunks.iter().enumerate() {
                    assert_eq!(part.fan_in, k);
                    // SAFETY: as in `narrow`.
                    unsafe { narrow16_avx512(sub, part, cs.clone(), init, acc, at, q > 0) }
                }
            }
            (16, false) => narrow::<16>(isa, sub, plan, cs.clone(), init, acc, at),
            (32, false) => narrow::<32>(isa, sub, plan, cs.clone(), init, acc, at),
            (_, false) => narrow::<64>(isa, sub, plan, cs.clone(), init, acc, at),
        }
    }
}

/// The sub-block widths [`block_channels`] supports: 16 (one AVX-512
/// register per row; with row chunks of at most 320 rows, 20 KB stay in L1),
/// 32 (two registers; up to 320 rows, 40 KB) and 64 (the whole block, the
/// former layout).
pub const LANES: [usize; 3] = [16, 32, 64];

/// Where position `j` of row `r` lies in the block of a layer with fan-in
/// `k`, split into sub-blocks of `k` rows of `lanes` positions.
#[inline(always)]
pub fn col_index(k: usize, lanes: usize, r: usize, j: usize) -> usize {
    (j / lanes) * k * lanes + r * lanes + j % lanes
}

/// Elements of the block of a layer with fan-in `k`.
pub fn col_len(k: usize) -> usize {
    k * BLOCK
}

/// One sub-block of `L` lanes without the wide sums; `acc` lanes from `at`.
#[inline(always)]
fn narrow<const L: usize>(
    isa: Isa,
    col: &[i32],
    plan: &Plan,
    cs: Range<usize>,
    init: &[i64],
    acc: &mut [i64],
    at: usize,
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            assert!(isa.available());
            // SAFETY: the CPU has AVX-512F (checked above); every index in the
            // plan is below K (Plan::new) and the sub-block has K rows
            // (checked by the caller), so every row read lies inside `col`,
            // and `acc` has BLOCK lanes per channel of `cs`.
            unsafe {
                match L {
                    16 => narrow16_avx512(col, plan, cs, init, acc, at, false),
                    // Row k of the sub-block starts at `k * L`; position r
                    // of it at `16 r`; channel ci's lanes at `at + ci BLOCK`.
                    32 => {
                        let (x, a) = (col.as_ptr(), acc.as_mut_ptr().add(at));
                        rows_avx512::<2, 32>(x, 16, plan, &plan.idx, cs, init, a, BLOCK, false)
                    }
                    _ => {
                        let (x, a) = (col.as_ptr(), acc.as_mut_ptr().add(at));
                        rows_avx512::<4, 64>(x, 16, plan, &plan.idx, cs, init, a, BLOCK, false)
                    }
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            assert!(isa.available());
            // SAFETY: as above, with AVX2.
            unsafe { narrow_avx2::<L>(col, plan, cs, init, acc, at) }
        }
        _ => narrow_body::<L>(col, plan, cs, init, acc, at, sum_portable::<L>),
    }
}

#[inline(always)]
fn combine(a: &mut [i64], part: &[i32], shift: i32) {
    if shift >= 0 {
        for (a, &p) in a.iter_mut().zip(part) {
            *a += i64::from(p) << shift;
        }
    } else {
        let s = (-shift).min(63);
        for (a, &p) in a.iter_mut().zip(part) {
            *a += i64::from(p) >> s;
        }
    }
}

#[inline(always)]
fn narrow_body<const L: usize>(
    col: &[i32],
    plan: &Plan,
    cs: Range<usize>,
    init: &[i64],
    acc: &mut [i64],
    at: usize,
    sum: impl Fn(&[i32], &[u32], &[u32], &mut [i32; L]),
) {
    let mut part = [0i32; L];
    for (ci, c) in cs.enumerate() {
        let a = &mut acc[ci * BLOCK + at..ci * BLOCK + at + L];
        a.fill(init[c]);
        for b in plan.channel(c) {
            let pos = &plan.idx[b.start as usize..b.mid as usize];
            let neg = &plan.idx[b.mid as usize..b.end as usize];
            sum(col, pos, neg, &mut part);
            combine(a, &part, b.shift);
        }
    }
}

#[inline(always)]
fn sum_portable<const L: usize>(col: &[i32], pos: &[u32], neg: &[u32], out: &mut [i32; L]) {
    out.fill(0);
    for &k in pos {
        let row = &col[k as usize * L..][..L];
        for j in 0..L {
            out[j] = out[j].wrapping_add(row[j]);
        }
    }
    for &k in neg {
        let row = &col[k as usize * L..][..L];
        for j in 0..L {
            out[j] = out[j].wrapping_sub(row[j]);
        }
    }
}

fn wide_body<const L: usize>(
    col: &[i32],
    plan: &Plan,
    cs: Range<usize>,
    init: &[i64],
    acc: &mut [i64],
    at: usize,
) {
    let mut part = [0i64; L];
    for (ci, c) in cs.enumerate() {
        let a = &mut acc[ci * BLOCK + at..ci * BLOCK + at + L];
        a.fill(init[c]);
        for b in plan.channel(c) {
            part.fill(0);
            for &k in &plan.idx[b.start as usize..b.mid as usize] {
                let row = &col[k as usize * L..][..L];
                for j in 0..L {
                    part[j] += i64::from(row[j]);
                }
            }
            for &k in &plan.idx[b.mid as usize..b.end as usize] {
                let row = &col[k as usize * L..][..L];
                for j in 0..L {
                    part[j] -= i64::from(row[j]);
                }
            }
            for j in 0..L {
                a[j] += crate::format::shl(part[j], b.shift);
            }
        }
    }
}

/// Adds the bucket sums `p` (32-bit lanes, `R` registers) shifted by
/// `shift` (`shl`: left, or arithmetic right when negative) into the 64-bit
/// accumulators `a[2 r]` (low lanes of `p[r]`) and `a[2 r + 1]` (high lanes).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn add_shifted<const R: usize>(
    p: &[std::arch::x86_64::__m512i; R],
    shift: i32,
    a: &mut [std::arch::x86_64::__m512i],
) {
    use std::arch::x86_64::*;
    let n = _mm_cvtsi32_si128(shift.unsigned_abs().min(63) as i32);
    for (r, pr) in p.iter().enumerate() {
        let lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(*pr));
        let hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(*pr));
        let (lo, hi) = if shift >= 0 {
            (_mm512_sll_epi64(lo, n), _mm512_sll_epi64(hi, n))
        } else {
            (_mm512_sra_epi64(lo, n), _mm512_sra_epi64(hi, n))
        };
        a[2 * r] = _mm512_add_epi64(a[2 * r], lo);
        a[2 * r + 1] = _mm512_add_epi64(a[2 * r + 1], hi);
    }
}

/// AVX-512, 16 lanes: a row is one register, and the rows the plan reads
/// stay in L1 while every channel of `cs` reads them (`K x 16` lanes, or a
/// row chunk of it); two bucket-sum registers alternate to keep two adds in
/// flight. With `accumulate`, the channels start from `acc` instead of `init`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn narrow16_avx512(
    col: &[i32],
    plan: &Plan,
    cs: Range<usize>,
    init: &[i64],
    acc: &mut [i64],
    at: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    let base = col.as_ptr();
    let row = |k: u32| _mm512_loadu_si512(base.add(k as usize * 16).cast());
    for (ci, c) in cs.enumerate() {
        let out = acc.as_mut_ptr().add(ci * BLOCK + at);
        let mut a = if accumulate {
            [
                _mm512_loadu_si512(out.cast()),
                _mm512_loadu_si512(out.add(8).cast()),
            ]
        } else {
            [_mm512_set1_epi64(init[c]); 2]
        };
        for b in plan.channel(c) {
            let (mut p0, mut p1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
            let pos = plan.idx.get_unchecked(b.start as usize..b.mid as usize);
            let neg = plan.idx.get_unchecked(b.mid as usize..b.end as usize);
            let mut it = pos.chunks_exact(2);
            for k in &mut it {
                p0 = _mm512_add_epi32(p0, row(k[0]));
                p1 = _mm512_add_epi32(p1, row(k[1]));
            }
            if let [k] = it.remainder() {
                p0 = _mm512_add_epi32(p0, row(*k));
            }
            let mut it = neg.chunks_exact(2);
            for k in &mut it {
                p0 = _mm512_sub_epi32(p0, row(k[0]));
                p1 = _mm512_sub_epi32(p1, row(k[1]));
            }
            if let [k] = it.remainder() {
                p0 = _mm512_sub_epi32(p0, row(*k));
            }
            add_shifted(&[_mm512_add_epi32(p0, p1)], b.shift, &mut a);
        }
        _mm512_storeu_si512(out.cast(), a[0]);
        _mm512_storeu_si512(out.add(8).cast(), a[1]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn narrow_avx2<const L: usize>(
    col: &[i32],
    plan: &Plan,
    cs: Range<usize>,
    init: &[i64],
    acc: &mut [i64],
    at: usize,
) {
    // SAFETY (of the closure): forwarded from `block_channels`.
    narrow_body::<L>(col, plan, cs, init, acc, at, |c, p, n, o| unsafe {
        sum_avx2::<L>(c, p, n, o)
    })
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn sum_avx2<const L: usize>(col: &[i32], pos: &[u32], neg: &[u32], out: &mut [i32; L]) {
    use std::arch::x86_64::*;
    let base = col.as_ptr();
    // L / 8 registers (at most 8).
    let mut a = [_mm256_setzero_si256(); 8];
    let a = &mut a[..L / 8];
    for &k in pos {
        let p = base.add(k as usize * L);
        for (r, acc) in a.iter_mut().enumerate() {
            *acc = _mm256_add_epi32(*acc, _mm256_loadu_si256(p.add(8 * r).cast()));
        }
    }
    for &k in neg {
        let p = base.add(k as usize * L);
        for (r, acc) in a.iter_mut().enumerate() {
            *acc = _mm256_sub_epi32(*acc, _mm256_loadu_si256(p.add(8 * r).cast()));
        }
    }
    for (r, acc) in a.iter().enumerate() {
        _mm256_storeu_si256(out.as_mut_ptr().add(8 * r).cast(), *acc);
    }
}

/// Images per vector of the batch-lanes layout: every 512-bit row holds one
/// activation of 16 images.
pub const LANE_IMAGES: usize = 16;

/// The register-tiled kernel: accumulates output channels `cs` at `R`
/// positions of 16 lanes each, for two layouts. In the batch-lanes
/// convolution (`SCALE` 1) a position is 16 images and the input is read
/// straight from a zero-padded activation buffer, `rows` being `plan.idx`
/// mapped to element offsets in it; in a 32- or 64-lane im2col sub-block
/// (`SCALE` = its lanes, `rows` = `plan.idx`) a position is 16 of the
/// block's positions. In the AVX-512 registers: `R` bucket sums and `2 R`
/// 64-bit accumulators per channel, so that a channel touches memory only
/// to read its input rows and to store its result.
///
/// Input `k` (`plan.idx[i]`) of position `r` is the 16-lane vector at
/// `x + rows[i] * SCALE + r * step` (element offsets). `acc` receives
/// `R x 16` lanes per channel, channel `ci` of `cs` at `acc + ci *
/// acc_stride`; with `accumulate` the channels start from `acc` (a later
/// row chunk) instead of `init`. Bucket sums are 32-bit, so the caller
/// checks `max|X| * largest bucket < 2^31` as for [`block_channels`].
///
/// # Safety
/// The CPU has AVX-512F; every `x + rows[i] * SCALE + r * step` (for
/// `r < R`) starts 16 readable `i32`; `rows` has `plan.idx.len()` entries;
/// `acc + ci * acc_stride` starts `R * 16` writable elements for every
/// `ci < cs.len()` and `init` covers `cs`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn rows_avx512<const R: usize, const SCALE: usize>(
    x: *const i32,
    step: usize,
    plan: &Plan,
    rows: &[u32],
    cs: Range<usize>,
    init: &[i64],
    acc: *mut i64,
    acc_stride: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    const { assert!(R <= 4) };
    debug_assert_eq!(rows.len(), plan.idx.len());
    for (ci, c) in cs.enumerate() {
        let out = acc.add(ci * acc_stride);
        // 2 R <= 8 accumulator registers are used.
        let mut a = [_mm512_setzero_si512(); 8];
        for (r, ar) in a[..2 * R].iter_mut().enumerate() {
            *ar = if accumulate {
                _mm512_loadu_si512(out.add(8 * r).cast())
            } else {
                _mm512_set1_epi64(init[c])
            };
        }
        for b in plan.channel(c) {
            let mut p = [_mm512_setzero_si512(); R];
            for &o in rows.get_unchecked(b.start as usize..b.mid as usize) {
                let row = x.add(o as usize * SCALE);
                for (r, pr) in p.iter_mut().enumerate() {
                    *pr = _mm512_add_epi32(*pr, _mm512_loadu_si512(row.add(r * step).cast()));
                }
            }
            for &o in rows.get_unchecked(b.mid as usize..b.end as usize) {
                let row = x.add(o as usize * SCALE);
                for (r, pr) in p.iter_mut().enumerate() {
                    *pr = _mm512_sub_epi32(*pr, _mm512_loadu_si512(row.add(r * step).cast()));
                }
            }
            add_shifted(&p, b.shift, &mut a);
        }
        for (r, ar) in a[..2 * R].iter().enumerate() {
            _mm512_storeu_si512(out.add(8 * r).cast(), *ar);
        }
    }
}

/// Accumulators of one [`crate::weights::DenseShifts`] group for one image:
/// `out[l] = sum_k (x[k] << pos[k][l]) - (x[k] << neg[k][l])` (64-bit lanes,
/// counts of 64 or more add zero).
pub fn dense_group(isa: Isa, x: &[i32], pos: &[u8], neg: &[u8], out: &mut [i64; 8]) {
    assert!(pos.len() == x.len() * 8 && neg.len() == pos.len());
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        assert!(isa.available());
        // SAFETY: AVX-512F present; every read is inside `pos`/`neg` (checked length).
        unsafe { dense_group_avx512(x, pos, neg, out) };
        return;
    }
    let _ = isa;
    let mut p = [0i64; 8];
    let mut n = [0i64; 8];
    for (k, &xv) in x.iter().enumerate() {
        let xv = i64::from(xv);
        for l in 0..8 {
            let (cp, cn) = (pos[k * 8 + l], neg[k * 8 + l]);
            p[l] += if cp < 64 { xv << cp } else { 0 };
            n[l] += if cn < 64 { xv << cn } else { 0 };
        }
    }
    for l in 0..8 {
        out[l] = p[l] - n[l];
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dense_group_avx512(x: &[i32], pos: &[u8], neg: &[u8], out: &mut [i64; 8]) {
    use std::arch::x86_64::*;
    let (mut p, mut n) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    for (k, &xv) in x.iter().enumerate() {
        let v = _mm512_set1_epi64(i64::from(xv));
        let cp = _mm512_cvtepu8_epi64(_mm_loadl_epi64(pos.as_ptr().add(k * 8).cast()));
        let cn = _mm512_cvtepu8_epi64(_mm_loadl_epi64(neg.as_ptr().add(k * 8).cast()));
        // vpsllvq gives 0 for counts of 64 or more.
        p = _mm512_add_epi64(p, _mm512_sllv_epi64(v, cp));
        n = _mm512_add_epi64(n, _mm512_sllv_epi64(v, cn));
    }
    _mm512_storeu_si512(out.as_mut_ptr().cast(), _mm512_sub_epi64(p, n));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::shl;
    use crate::weights::{ShiftWeight, CHUNK_ROWS};

    use crate::test_rng::Lcg;

    /// Every kernel and sub-block width equals the documented sums, computed
    /// here from the weights: `init + sum_m shl(P[c, m], S - m)`.
    fn check(fan_in: usize, cout: usize, acc_shift: u32, max_m: u8, seed: u64) -> bool {
        let mut g = Lcg(seed);
        let ws: Vec<ShiftWeight> = (0..cout * fan_in)
            .map(|_| match g.next() % 9 {
                0 => ShiftWeight::Zero,
                r => ShiftWeight::Pow {
                    negative: r % 2 == 0,
                    m: (g.next() % (u64::from(max_m) + 1)) as u8,
                },
            })
            .collect();
        let plan = Plan::new(&ws, cout, fan_in, acc_shift);
        let x: Vec<i32> = (0..fan_in * BLOCK)
            .map(|_| (g.next() % 200_001) as i32 - 100_000)
            .collect();
        let init: Vec<i64> = (0..cout as i64).map(|c| c * 977 - 5000).collect();
        for valid in [BLOCK, 37, 16, 1] {
            let mut want = vec![0i64; cout * BLOCK];
            for c in 0..cout {
                for j in 0..valid {
                    let mut sums = vec![0i64; usize::from(max_m) + 1];
                    for k in 0..fan_in {
                        if let ShiftWeight::Pow { negative, m } = ws[c * fan_in + k] {
                            let v = i64::from(x[k * BLOCK + j]);
                            sums[usize::from(m)] += if negative { -v } else { v };
                        }
                    }
                    want[c * BLOCK + j] = init[c]
                        + (0..=max_m)
                            .map(|m| shl(sums[usize::from(m)], acc_shift as i32 - i32::from(m)))
                            .sum::<i64>();
                }
            }
            for lanes in LANES {
                let mut col = vec![0i32; col_len(fan_in)];
                for k in 0..fan_in {
                    for j in 0..BLOCK {
                        col[col_index(fan_in, lanes, k, j)] = x[k * BLOCK + j];
                    }
                }
                for isa in [Isa::Portable, Isa::Avx2, Isa::Avx512] {
                    if !isa.available() {
                        continue;
                    }
                    for wide in [false, true] {
                        // All channels, and a sub-range of them.
                        for cs in [0..cout, 1..cout - 1] {
                            let mut acc = vec![i64::MIN; cs.len() * BLOCK];
                            block_channels(
                                isa,
                                wide,
                                &col,
                                lanes,
                                valid,
                                &plan,
                                cs.clone(),
                                &init,
                                &mut acc,
                            );
                            for (ci, c) in cs.clone().enumerate() {
                                assert_eq!(
                                    &acc[ci * BLOCK..ci * BLOCK + valid],
                                    &want[c * BLOCK..c * BLOCK + valid],
                                    "{} wide={wide} lanes={lanes} valid={valid} channel {c}",
                                    isa.name()
                                );
                            }
                        }
                    }
                }
            }
        }
        !plan.chunks.is_empty()
    }

    #[test]
    fn kernels_match_the_bucket_sums_for_every_width_and_isa() {
        // Small fan-in: one row chunk.
        assert!(!check(27, 5, 7, 7, 1));
        // Fan-in above CHUNK_ROWS with S >= m: split into row chunks.
        assert!(check(2 * CHUNK_ROWS + 13, 4, 9, 9, 2));
        // The same with floored buckets (S < m): never split.
        assert!(!check(CHUNK_ROWS + 40, 3, 4, 9, 3));
    }
}
