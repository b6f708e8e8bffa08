//! The batch-lanes convolution: activations stored as `groups x c x h x w x
//! 16`, so that one 512-bit vector holds one activation of 16 images. A
//! convolution then needs no im2col block: input `k` of an output position
//! is a single aligned vector of a zero-padded copy of the input, at an
//! offset fixed by `k` ([`crate::kernels::lanes_avx512`]). Each task takes
//! one output row of one group, in tiles of up to four positions, and all
//! output channels, one row chunk of the weights at a time
//! ([`crate::model::ShiftLayer::lane_plan`]).

use super::{Act, Ctx, Geo, OutBuf};
use crate::kernels::{Isa, LANE_IMAGES};
use crate::model::{Epilogue, Requant, ShiftLayer};
use crate::weights::Plan;
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::atomic::{AtomicI64, Ordering};

/// One 16-image vector; a `Vec` of them is 64-byte aligned, so that every
/// vector the kernel loads is one cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Lane([i32; LANE_IMAGES]);

/// Output positions per tile (the kernel's `R`).
const TILE: usize = 4;

thread_local! {
    /// A task's accumulators: `cout x TILE x 16`.
    static ACC: RefCell<Vec<i64>> = const { RefCell::new(Vec::new()) };
}

impl Ctx {
    /// Whether a convolution runs in the batch-lanes layout: AVX-512, at
    /// least 16 images, 32-bit bucket sums and activations out.
    pub(super) fn lanes_conv(&self, x: &Act, layer: &ShiftLayer, epi: &Epilogue) -> bool {
        self.batch_lanes
            && self.isa == Isa::Avx512
            && self.n >= LANE_IMAGES
            && !matches!(epi.requant, Requant::Logits)
            && !self.wide_for(x, layer)
    }

    /// A convolution of batch-lanes activations into batch-lanes activations.
    pub(super) fn conv_lanes(&self, x: &Act, layer: &ShiftLayer, g: Geo, epi: &Epilogue) -> Act {
        assert!(x.lanes == LANE_IMAGES && self.isa == Isa::Avx512 && self.isa.available());
        let (hp, wp) = (x.h + 2 * g.pad, x.w + 2 * g.pad);
        let (oh, ow) = ((hp - g.k) / g.stride + 1, (wp - g.k) / g.stride + 1);
        let plane = x.h * x.w * LANE_IMAGES;
        let groups = x.data.len() / (x.c * plane);
        let xp = padded(x, g.pad);
        let cout = layer.cout;
        let plan = layer.lane_plan();
        let plans: Vec<&Plan> = if plan.chunks.is_empty() {
            vec![plan]
        } else {
            plan.chunks.iter().collect()
        };
        // Input k = (ci, ky, kx) lies at this element offset from the
        // position's top-left vector.
        let off_k: Vec<u32> = (0..layer.fan_in)
            .map(|k| {
                let (ci, ky, kx) = (k / (g.k * g.k), k / g.k % g.k, k % g.k);
                (((ci * hp + ky) * wp + kx) * LANE_IMAGES) as u32
            })
            .collect();
        let offs: Vec<Vec<u32>> = plans
            .iter()
            .map(|p| p.idx.iter().map(|&i| off_k[i as usize]).collect())
            .collect();
        let buf = OutBuf::new(groups * cout * oh * ow * LANE_IMAGES, false);
        let out = buf.out();
        let seen = AtomicI64::new(0);
        let group_len = x.c * hp * wp * LANE_IMAGES;
        let xs: &[Lane] = &xp;
        let step = g.stride * LANE_IMAGES;
        (0..groups * oh).into_par_iter().for_each(|t| {
            let (gi, oy) = (t / oh, t % oh);
            ACC.with_borrow_mut(|acc| {
                acc.resize(cout * TILE * LANE_IMAGES, 0);
                let mut m = 0;
                let mut ox0 = 0;
                while ox0 < ow {
                    let r = match ow - ox0 {
                        1 => 1,
                        2 | 3 => 2,
                        _ => TILE,
                    };
                    let at = gi * group_len + (oy * g.stride * wp + ox0 * g.stride) * LANE_IMAGES;
                    for (q, (p, o)) in plans.iter().zip(&offs).enumerate() {
                        // SAFETY: AVX-512F checked above. The largest offset
                        // read is `at + off_k[fan_in - 1] + (r - 1) * step`,
                        // the vector at row `(oy s + k - 1)` < hp, column
                        // `((ox0 + r - 1) s + k - 1)` < wp of the group's
                        // last channel: inside `xp`. `acc` has `cout * TILE * 16`
                        // elements and `init` has `cout`.
                        unsafe {
                            let x0 = xs.as_ptr().cast::<i32>().add(at);
                            let (init, a, cs) = (&epi.acc_init, acc.as_mut_ptr(), 0..cout);
                            match r {
                                1 => crate::kernels::lanes_avx512::<1>(
                                    x0,
                                    step,
                                    p,
                                    o,
                                    cs,
                                    init,
                                    a,
                                    q > 0,
                                ),
                                2 => crate::kernels::lanes_avx512::<2>(
                                    x0,
                                    step,
                                    p,
                                    o,
                                    cs,
                                    init,
                                    a,
                                    q > 0,
                                ),
                                _ => crate::kernels::lanes_avx512::<TILE>(
                                    x0,
                                    step,
                                    p,
                                    o,
                                    cs,
                                    init,
                                    a,
                                    q > 0,
                                ),
                            }
                        }
                    }
                    let len = r * LANE_IMAGES;
                    for c in 0..cout {
                        let a = &acc[c * len..(c + 1) * len];
                        let o = (((gi * cout + c) * oh + oy) * ow + ox0) * LANE_IMAGES;
                        m = m.max(self.requant(a, c, layer, epi, &out, o, 1));
                    }
                    ox0 += r;
                }
                seen.fetch_max(m, Ordering::Relaxed);
            });
        });
        drop(xp);
        // SAFETY: every (group, channel, row) was written by its task.
        unsafe { buf.finish(cout, oh, ow, LANE_IMAGES, seen.into_inner()) }
            .expect("requantised activations, not logits")
    }
}

/// `x` (batch lanes) with `pad` zero rows and columns around every plane.
fn padded(x: &Act, pad: usize) -> Vec<Lane> {
    let (h, w) = (x.h, x.w);
    let (hp, wp) = (h + 2 * pad, w + 2 * pad);
    let planes = x.data.len() / (h * w * LANE_IMAGES);
    let mut v = vec![Lane([0; LANE_IMAGES]); 0];
    v.reserve_exact(planes * hp * wp);
    // SAFETY: `Lane` is plain integers; every element is written below.
    unsafe { v.set_len(planes * hp * wp) };
    v.par_chunks_mut(hp * wp).enumerate().for_each(|(pl, dst)| {
        let src = &x.data[pl * h * w * LANE_IMAGES..(pl + 1) * h * w * LANE_IMAGES];
        let zero = Lane([0; LANE_IMAGES]);
        dst[..pad * wp].fill(zero);
        dst[(pad + h) * wp..].fill(zero);
        for y in 0..h {
            let row = &mut dst[(pad + y) * wp..(pad + y + 1) * wp];
            row[..pad].fill(zero);
            row[pad + w..].fill(zero);
            for (xx, d) in row[pad..pad + w].iter_mut().enumerate() {
                let at = (y * w + xx) * LANE_IMAGES;
                d.0.copy_from_slice(&src[at..at + LANE_IMAGES]);
            }
        }
    });
    v
}
