//! Per-plane sums of batch norm's forward and backward passes, several
//! planes in lockstep.
//!
//! Each plane's sums are the same f32 left-to-right folds as one plane at a
//! time (the golden and PyTorch-reference tests hold batch norm to those
//! roundings: sums in another order, even exact ones, move MobileNetV2's
//! first gradients by 0.6%, beyond the 5e-3 tolerance, because batch norm
//! over the few values of a small batch's last maps amplifies them). A
//! single fold is one chain of dependent additions, one element per add
//! latency; four planes in lockstep give four independent chains per sum,
//! so the additions overlap.

use std::mem::MaybeUninit;

/// Planes summed in lockstep.
const WAYS: usize = 4;

/// `[sum x, sum x^2]` of every `hw`-long plane of `x` (whole planes).
pub(super) fn moments(x: &[f32], hw: usize) -> Vec<[f32; 2]> {
    let hw = hw.max(1);
    let mut out = Vec::with_capacity(x.len() / hw);
    let mut groups = x.chunks_exact(WAYS * hw);
    for group in &mut groups {
        let rows: [&[f32]; WAYS] = std::array::from_fn(|w| &group[w * hw..(w + 1) * hw]);
        let (mut s, mut q) = ([0f32; WAYS], [0f32; WAYS]);
        // Element `i` of every row in turn: the rows in lockstep.
        #[allow(clippy::needless_range_loop)]
        for i in 0..hw {
            for w in 0..WAYS {
                let v = rows[w][i];
                s[w] += v;
                q[w] += v * v;
            }
        }
        out.extend((0..WAYS).map(|w| [s[w], q[w]]));
    }
    for row in groups.remainder().chunks(hw) {
        out.push(row.iter().fold([0f32; 2], |[s, q], &v| [s + v, q + v * v]));
    }
    out
}

/// `[sum x, sum x^2, sum g, sum g x]` of every `hw`-long plane, where `g`
/// is `dy`, or `dy` where `y > 0` and zero elsewhere when the forward ended
/// in a ReLU (`y` given). When `masked` is given (with `y`), `g` is also
/// written there. All slices cover the same whole planes.
pub(super) fn grad_sums(
    dy: &[f32],
    x: &[f32],
    y: Option<&[f32]>,
    masked: Option<&mut [MaybeUninit<f32>]>,
    hw: usize,
) -> Vec<[f32; 4]> {
    let hw = hw.max(1);
    let len = dy.len() - dy.len() % hw;
    // The block loops below index without bounds checks: every input must
    // cover the `len` elements of the whole planes.
    assert!(
        x.len() >= len && y.is_none_or(|y| y.len() >= len),
        "batch norm sums: inputs of unequal lengths"
    );
    let mut out = Vec::with_capacity(len / hw);
    match (y, masked) {
        (None, _) => planes::<false, false>(dy, x, &[], &mut [], hw, len, &mut out),
        (Some(y), None) => planes::<true, false>(dy, x, y, &mut [], hw, len, &mut out),
        (Some(y), Some(m)) => {
            assert!(m.len() >= len, "batch norm sums: output too short");
            planes::<true, true>(dy, x, y, m, hw, len, &mut out)
        }
    }
    out
}

/// [`grad_sums`] over the first `len` elements: [`WAYS`] planes at a time,
/// then the rest one by one.
fn planes<const MASK: bool, const WRITE: bool>(
    dy: &[f32],
    x: &[f32],
    y: &[f32],
    masked: &mut [MaybeUninit<f32>],
    hw: usize,
    len: usize,
    out: &mut Vec<[f32; 4]>,
) {
    let planes = len / hw;
    let mut p = 0;
    while p + WAYS <= planes {
        out.extend(block::<WAYS, MASK, WRITE>(dy, x, y, masked, hw, p * hw));
        p += WAYS;
    }
    while p < planes {
        out.extend(block::<1, MASK, WRITE>(dy, x, y, masked, hw, p * hw));
        p += 1;
    }
}

/// The sums of the `W` planes starting at element `base`, in lockstep.
/// Callers guarantee `base + W * hw` elements in `dy` and `x` (and `y` with
/// `MASK`, `masked` with `WRITE`).
#[inline(always)]
fn block<const W: usize, const MASK: bool, const WRITE: bool>(
    dy: &[f32],
    x: &[f32],
    y: &[f32],
    masked: &mut [MaybeUninit<f32>],
    hw: usize,
    base: usize,
) -> [[f32; 4]; W] {
    let mut acc = [[0f32; 4]; W];
    for i in 0..hw {
        for (w, a) in acc.iter_mut().enumerate() {
            let k = base + w * hw + i;
            // SAFETY: k < base + W * hw, within every slice (the caller's
            // promise, asserted in `grad_sums`).
            let (g, v) = unsafe {
                let d = *dy.get_unchecked(k);
                let g = if MASK {
                    relu_mask(d, *y.get_unchecked(k))
                } else {
                    d
                };
                if WRITE {
                    masked.get_unchecked_mut(k).write(g);
                }
                (g, *x.get_unchecked(k))
            };
            a[0] += v;
            a[1] += v * v;
            a[2] += g;
            a[3] += g * v;
        }
    }
    acc
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The sums equal one left-to-right fold per plane, bit for bit, for
    /// plane counts around the lockstep width.
    #[test]
    fn sums_equal_one_fold_per_plane() {
        for (planes, hw) in [(1usize, 5usize), (3, 7), (4, 16), (9, 33), (5, 1)] {
            let len = planes * hw;
            let f = |i: usize, a: f32, b: f32| ((i as f32) * a).sin() * b;
            let x: Vec<f32> = (0..len).map(|i| f(i, 0.7, 3.1) + 0.4).collect();
            let dy: Vec<f32> = (0..len).map(|i| f(i, 1.3, 0.2)).collect();
            let y: Vec<f32> = (0..len).map(|i| f(i, 2.9, 1.0)).collect();
            let g: Vec<f32> = dy.iter().zip(&y).map(|(&d, &y)| relu_mask(d, y)).collect();
            let fold = |g: &[f32], p: usize| {
                let r = p * hw..(p + 1) * hw;
                g[r.clone()]
                    .iter()
                    .zip(&x[r])
                    .fold([0f32; 4], |[a, b, c, d], (&g, &v)| {
                        [a + v, b + v * v, c + g, d + g * v]
                    })
            };
            let m = moments(&x, hw);
            let mut out = vec![MaybeUninit::new(f32::NAN); len];
            let masked = grad_sums(&dy, &x, Some(&y), Some(&mut out), hw);
            let written: Vec<f32> = out.iter().map(|v| unsafe { v.assume_init() }).collect();
            assert_eq!(written, g);
            assert_eq!(grad_sums(&dy, &x, Some(&y), None, hw), masked);
            let plain = grad_sums(&dy, &x, None, None, hw);
            for p in 0..planes {
                let want = fold(&g, p);
                assert_eq!(masked[p], want, "{planes} x {hw}, plane {p}");
                assert_eq!(m[p], [want[0], want[1]]);
                assert_eq!(plain[p], fold(&dy, p));
            }
        }
    }
}
