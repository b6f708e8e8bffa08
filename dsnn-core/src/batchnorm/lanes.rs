//! Per-plane sums of batch norm's forward and backward passes, in 16
//! independent lanes.
//!
//! A plain `fold` over a plane is one chain of dependent float additions,
//! which the compiler may not reorder: one element per add latency. Sixteen
//! partial sums vectorise (one AVX-512 register, or four SSE ones) and are
//! also more accurate. On x86-64 the same code is compiled a second time for
//! AVX-512 and chosen at run time; the portable build runs everywhere else.

use std::mem::MaybeUninit;

const LANES: usize = 16;

/// The sum of `x` and of its squares.
pub(super) fn moments(x: &[f32]) -> [f32; 2] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above).
        return unsafe { moments_avx512(x) };
    }
    moments_portable(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn moments_avx512(x: &[f32]) -> [f32; 2] {
    moments_portable(x)
}

#[inline(always)]
fn moments_portable(x: &[f32]) -> [f32; 2] {
    let (mut s, mut q) = ([0f32; LANES], [0f32; LANES]);
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            s[l] += c[l];
            q[l] += c[l] * c[l];
        }
    }
    for (l, &v) in rest.iter().enumerate() {
        s[l] += v;
        q[l] += v * v;
    }
    [s.iter().sum(), q.iter().sum()]
}

/// The sums batch norm's backward needs over one plane: `[sum x, sum x^2,
/// sum g, sum g x]`, where `g` is `dy`, or `dy` where `y > 0` and zero
/// elsewhere when the forward ended in a ReLU (`y` given). When `masked` is
/// given (with `y`), `g` is also written there.
pub(super) fn grad_sums(
    dy: &[f32],
    x: &[f32],
    y: Option<&[f32]>,
    masked: Option<&mut [MaybeUninit<f32>]>,
) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above).
        return unsafe { grad_sums_avx512(dy, x, y, masked) };
    }
    grad_sums_portable(dy, x, y, masked)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn grad_sums_avx512(
    dy: &[f32],
    x: &[f32],
    y: Option<&[f32]>,
    masked: Option<&mut [MaybeUninit<f32>]>,
) -> [f32; 4] {
    grad_sums_portable(dy, x, y, masked)
}

#[inline(always)]
fn grad_sums_portable(
    dy: &[f32],
    x: &[f32],
    y: Option<&[f32]>,
    masked: Option<&mut [MaybeUninit<f32>]>,
) -> [f32; 4] {
    // Exact lengths, so that the loops below need no bounds checks.
    let len = dy.len();
    let x = &x[..len];
    match (y, masked) {
        (None, _) => sums_of(len, |i| (dy[i], x[i]), |_, _| {}),
        (Some(y), None) => {
            let y = &y[..len];
            sums_of(len, |i| (relu_mask(dy[i], y[i]), x[i]), |_, _| {})
        }
        (Some(y), Some(out)) => {
            let (y, out) = (&y[..len], &mut out[..len]);
            sums_of(
                len,
                |i| (relu_mask(dy[i], y[i]), x[i]),
                |i, g| {
                    out[i].write(g);
                },
            )
        }
    }
}

/// `dy` where the ReLU's output `y` is positive, else zero.
#[inline(always)]
pub(super) fn relu_mask(dy: f32, y: f32) -> f32 {
    if y > 0.0 {
        dy
    } else {
        0.0
    }
}

/// `[sum x, sum x^2, sum g, sum g x]` over `len` elements `(g, x) =
/// at(i)`, handing every `g` to `sink`.
#[inline(always)]
fn sums_of(
    len: usize,
    at: impl Fn(usize) -> (f32, f32),
    mut sink: impl FnMut(usize, f32),
) -> [f32; 4] {
    let mut acc = [[0f32; LANES]; 4];
    let full = len - len % LANES;
    for base in (0..full).step_by(LANES) {
        for l in 0..LANES {
            let (g, v) = at(base + l);
            sink(base + l, g);
            acc[0][l] += v;
            acc[1][l] += v * v;
            acc[2][l] += g;
            acc[3][l] += g * v;
        }
    }
    for i in full..len {
        let (g, v) = at(i);
        sink(i, g);
        let l = i - full;
        acc[0][l] += v;
        acc[1][l] += v * v;
        acc[2][l] += g;
        acc[3][l] += g * v;
    }
    acc.map(|a| a.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_match_f64_references_with_and_without_the_mask() {
        // Lengths around the lane count exercise the remainder loop.
        for len in [0usize, 1, 15, 16, 17, 64, 100] {
            let x: Vec<f32> = (0..len).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
            let dy: Vec<f32> = (0..len)
                .map(|i| ((i * 5) % 13) as f32 * 0.25 - 1.0)
                .collect();
            let y: Vec<f32> = (0..len).map(|i| (i % 3) as f32 - 1.0).collect();
            let [s, q] = moments(&x);
            assert_eq!(f64::from(s), x.iter().map(|&v| f64::from(v)).sum::<f64>());
            assert_eq!(
                f64::from(q),
                x.iter().map(|&v| f64::from(v * v)).sum::<f64>()
            );
            let g: Vec<f32> = dy.iter().zip(&y).map(|(&d, &y)| relu_mask(d, y)).collect();
            let mut out = vec![MaybeUninit::new(f32::NAN); len];
            let sums = grad_sums(&dy, &x, Some(&y), Some(&mut out));
            let written: Vec<f32> = out.iter().map(|v| unsafe { v.assume_init() }).collect();
            assert_eq!(written, g);
            let expect = |g: &[f32]| {
                [
                    x.iter().sum::<f32>(),
                    x.iter().map(|v| v * v).sum::<f32>(),
                    g.iter().sum::<f32>(),
                    g.iter().zip(&x).map(|(g, v)| g * v).sum::<f32>(),
                ]
            };
            // Small integers and quarters: every order of summation is exact.
            assert_eq!(sums, expect(&g));
            assert_eq!(grad_sums(&dy, &x, Some(&y), None), expect(&g));
            assert_eq!(grad_sums(&dy, &x, None, None), expect(&dy));
        }
    }
}
