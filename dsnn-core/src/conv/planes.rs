//! The flat layout that the direct convolution kernels read: each sample's
//! input split into its stride phases, so that every kernel tap of every
//! input channel is one contiguous stream of positions.
//!
//! Phase `(a, b)` of input channel `ci` holds the zero-padded input's rows
//! `r * s + a` and columns `c * s + b`, as a plane of `wq = wo + (kw - 1) / s`
//! columns (zeros outside the image). Output position `(oh, ow)` is flat
//! position `q = oh * wq + ow`; tap `(i, j)` of `ci` reads, at `q`, the entry
//! `q + (i / s) * wq + j / s` of phase `(i % s, j % s)`: one stream per tap,
//! a fixed offset into a plane. The `wq - wo` extra columns of each output
//! row read entries that wrap across rows: the weight gradient copies `dy`
//! with zeros there ([`fill_dy`]), the forward computes them and drops them.

use super::Dims;

/// Runs a copy compiled for AVX-512 where the CPU has it, else for the
/// baseline target (the crate's build target moves 16 bytes at a time;
/// the copies are exact either way).
macro_rules! dispatch {
    ($portable:ident, $avx512:ident, ($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above).
            return unsafe { $avx512($($arg),*) };
        }
        $portable($($arg),*)
    }};
}

/// Positions per step: floats in an AVX-512 register.
pub(super) const LANES: usize = 16;

/// The flat layout of one sample's phases and `dy` rows (see the module doc).
#[derive(Debug)]
pub(super) struct Plan {
    /// Phases along the rows and the columns (`min(s, kh)`, `min(s, kw)`).
    pub(super) phases: (usize, usize),
    /// Rows and columns of a phase plane.
    pub(super) hq: usize,
    pub(super) wq: usize,
    /// Floats per phase plane, with the slack a stream reads past its rows.
    pub(super) plane: usize,
    /// Positions per `dy` row: `ho * wq` rounded up to [`LANES`].
    pub(super) len: usize,
    /// Floats of one sample's phases and of its `dy` rows.
    pub(super) x_sample: usize,
    pub(super) dy_sample: usize,
    /// Start of each stream in a sample's phases, in the weight's
    /// `(ci, i, j)` order.
    pub(super) streams: Vec<usize>,
}

impl Plan {
    pub(super) fn new(d: &Dims) -> Self {
        let s = d.stride;
        let phases = (s.min(d.kh), s.min(d.kw));
        let (hq, wq) = (d.ho + (d.kh - 1) / s, d.wo + (d.kw - 1) / s);
        let len = (d.ho * wq).div_ceil(LANES) * LANES;
        // A stream starts at most `((kh-1)/s) * wq + (kw-1)/s` into its plane
        // and reads `len` values: `hq * wq + (kw-1)/s + LANES` covers it.
        // Rounded up to whole vectors, so that every plane starts on a
        // 64-byte boundary like the `dy` rows (aligned loads never split a
        // cache line).
        let plane = (hq * wq + (d.kw - 1) / s + LANES).div_ceil(LANES) * LANES;
        let per_channel = phases.0 * phases.1 * plane;
        let mut streams = Vec::with_capacity(d.k());
        for ci in 0..d.cin {
            for i in 0..d.kh {
                for j in 0..d.kw {
                    let phase = (i % s) * phases.1 + j % s;
                    streams.push(ci * per_channel + phase * plane + (i / s) * wq + j / s);
                }
            }
        }
        Plan {
            phases,
            hq,
            wq,
            plane,
            len,
            x_sample: d.cin * per_channel,
            dy_sample: d.cout * len,
            streams,
        }
    }
}

/// Copies one sample's input `x` (`cin x h x w`) into its stride phases
/// (`out`, [`Plan::x_sample`] floats), zeros outside the image and in the
/// slack.
pub(super) fn fill_phases(x: &[f32], d: &Dims, plan: &Plan, out: &mut [f32]) {
    dispatch!(fill_phases_body, fill_phases_avx512, (x, d, plan, out))
}

/// [`fill_phases`] compiled for AVX-512 (same copies, wider moves).
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fill_phases_avx512(x: &[f32], d: &Dims, plan: &Plan, out: &mut [f32]) {
    fill_phases_body(x, d, plan, out)
}

#[inline(always)]
fn fill_phases_body(x: &[f32], d: &Dims, plan: &Plan, out: &mut [f32]) {
    let (s, pad, (pa, pb)) = (d.stride, d.pad as isize, plan.phases);
    for ci in 0..d.cin {
        let src = &x[ci * d.hw()..(ci + 1) * d.hw()];
        for a in 0..pa {
            for b in 0..pb {
                let at = ((ci * pa + a) * pb + b) * plan.plane;
                let dst = &mut out[at..at + plan.plane];
                // Columns of the phase that fall inside the image: c * s + b - pad in [0, w).
                let c_lo = ((pad - b as isize).max(0) as usize)
                    .div_ceil(s)
                    .min(plan.wq);
                let c_hi = ((d.w as isize + pad - b as isize).max(0) as usize)
                    .div_ceil(s)
                    .clamp(c_lo, plan.wq);
                for r in 0..plan.hq {
                    let row = &mut dst[r * plan.wq..(r + 1) * plan.wq];
                    let ih = (r * s + a) as isize - pad;
                    if ih < 0 || ih >= d.h as isize {
                        row.fill(0.0);
                        continue;
                    }
                    let line = &src[ih as usize * d.w..(ih as usize + 1) * d.w];
                    row[..c_lo].fill(0.0);
                    row[c_hi..].fill(0.0);
                    let first = (c_lo * s + b) as isize - pad;
                    if s == 1 {
                        let first = first as usize;
                        copy_short(&mut row[c_lo..c_hi], &line[first..first + (c_hi - c_lo)]);
                    } else {
                        for (k, v) in row[c_lo..c_hi].iter_mut().enumerate() {
                            *v = line[first as usize + k * s];
                        }
                    }
                }
                dst[plan.hq * plan.wq..].fill(0.0);
            }
        }
    }
}

/// Copies one sample's `dy` (`cout x ho x wo`) into rows of [`Plan::len`]
/// positions `oh * wq + ow` (`out`), zeros in the extra columns and the tail.
pub(super) fn fill_dy(dy: &[f32], d: &Dims, plan: &Plan, out: &mut [f32]) {
    dispatch!(fill_dy_body, fill_dy_avx512, (dy, d, plan, out))
}

/// [`fill_dy`] compiled for AVX-512 (same copies, wider moves).
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fill_dy_avx512(dy: &[f32], d: &Dims, plan: &Plan, out: &mut [f32]) {
    fill_dy_body(dy, d, plan, out)
}

#[inline(always)]
fn fill_dy_body(dy: &[f32], d: &Dims, plan: &Plan, out: &mut [f32]) {
    let (p, wo, wq) = (d.p(), d.wo, plan.wq);
    for co in 0..d.cout {
        let src = &dy[co * p..(co + 1) * p];
        let dst = &mut out[co * plan.len..(co + 1) * plan.len];
        if wq == wo {
            dst[..p].copy_from_slice(src);
        } else {
            for (row, line) in dst[..d.ho * wq]
                .chunks_exact_mut(wq)
                .zip(src.chunks_exact(wo))
            {
                copy_short(&mut row[..wo], line);
                row[wo..].fill(0.0);
            }
        }
        dst[d.ho * wq..].fill(0.0);
    }
}

/// `n` elements of `v` starting on a 64-byte boundary, growing `v` as
/// needed (contents stale).
pub(super) fn aligned(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    grow(v, n + LANES);
    let skip = v.as_ptr().align_offset(64).min(LANES);
    &mut v[skip..skip + n]
}

/// Grows `v` to at least `n` elements (contents stale: callers overwrite
/// what they read).
pub(super) fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

/// Copies an image row (tens of floats) with inline vector moves: as
/// `copy_from_slice` every row was a call to `memmove`, an eighth of the
/// kernel's time on 32x32 images.
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    const W: usize = 8;
    let mut d = dst.chunks_exact_mut(W);
    let mut s = src.chunks_exact(W);
    for (a, b) in (&mut d).zip(&mut s) {
        let a: &mut [f32; W] = a.try_into().expect("chunks of W");
        *a = b.try_into().expect("chunks of W");
    }
    for (a, &b) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *a = b;
    }
}
