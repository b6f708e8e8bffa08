//! The batch-lanes convolution: activations stored as `groups x c x h x w x
//! 16` with a zero border, so that one 512-bit vector holds one activation
//! of 16 images. A convolution then needs no im2col block: input `k` of an
//! output position is a single aligned vector of the input, whose border is
//! the convolution's padding (each step writes its output with the border
//! the next convolution needs), at an offset fixed by `k`
//! ([`crate::kernels::rows_avx512`]). Each task takes one output row of
//! one group, in tiles of up to four positions, and all output channels,
//! one row chunk of the weights at a time
//! ([`crate::model::ShiftLayer::lane_plan`]); it writes the row and its
//! share of the output's zero border. On a CPU with AVX-512 VNNI, a layer
//! whose weights fit [`crate::dot`] runs the same sums as dot products
//! instead: the task packs its row's receptive field into byte planes,
//! runs [`crate::kernels::dot::dot_avx512_vnni`] for all channels, then the
//! residual buckets with the shift-add kernel (`DotRow::run`).

use super::{Act, Buf, Ctx, Geo, Lane, Out, OutBuf};
use crate::dot::{plane_bias, planes_for, DotPlan, DOT_CHANNELS, QUAD};
use crate::kernels::{Isa, LANE_IMAGES};
use crate::model::{Epilogue, Requant, ShiftLayer};
use crate::weights::Plan;
use rayon::prelude::*;
use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// [`crate::kernels::rows_avx512`] for one tile width, on batch lanes.
type Kernel =
    unsafe fn(*const i32, usize, &Plan, &[u32], Range<usize>, &[i64], *mut i64, usize, bool);

/// Output positions per tile (the kernel's `R`).
const TILE: usize = 4;

/// [`crate::kernels::dot::dot_avx512_vnni`] for one tile width and number of planes.
type DotKernel =
    unsafe fn(*const i32, usize, &[u32], *const i32, i64, &[i64], &[u32], &[i64], *mut i64, usize);

thread_local! {
    /// A task's accumulators: `cout x ow x 16` (a whole output row, so that
    /// each channel's row is requantised in one call).
    static ACC: RefCell<Vec<i64>> = const { RefCell::new(Vec::new()) };
    /// A task's input rows as byte planes for the dot-product kernel:
    /// `ceil(cin / 4) x kernel rows x wp columns x P planes` vectors.
    static PACK: RefCell<Vec<Lane>> = const { RefCell::new(Vec::new()) };
}

/// The input of a channel past `cin` in a quad (its weights are zero).
static ZERO_LANE: [i32; LANE_IMAGES] = [0; LANE_IMAGES];

/// What a batch-lanes convolution's tasks need to run the dot-product
/// kernel ([`crate::dot`]) on one output row.
struct DotRow<'a> {
    plan: &'a DotPlan,
    /// Byte planes per activation.
    planes: usize,
    /// Element offset of quad `q` in the packed rows (from a position's
    /// top-left vector).
    qoff: Vec<u32>,
    /// The residual plan's inputs as element offsets in the activations.
    residual_offs: Vec<u32>,
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

    /// A convolution of batch-lanes activations into batch-lanes activations
    /// with `border` (the next convolution's padding). With `conv_groups` >
    /// 1, output channels of group `g` read the input channels of group `g`
    /// (the kernel runs once per channel group, from its first plane).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn conv_lanes(
        &self,
        x: &Act,
        layer: &ShiftLayer,
        g: Geo,
        conv_groups: usize,
        epi: &Epilogue,
        border: usize,
    ) -> Act {
        assert!(x.lanes == LANE_IMAGES && self.isa == Isa::Avx512 && self.isa.available());
        // The caller gives the input a border of exactly the padding.
        assert_eq!(x.border, g.pad, "{}: input border", layer.name);
        let cg_n = conv_groups;
        assert!(cg_n > 0 && x.c.is_multiple_of(cg_n) && layer.cout.is_multiple_of(cg_n));
        let (cin_g, cout_g) = (x.c / cg_n, layer.cout / cg_n);
        assert_eq!(layer.fan_in, cin_g * g.k * g.k, "{}: fan-in", layer.name);
        let (hp, wp) = (x.hp(), x.wp());
        let (oh, ow) = ((hp - g.k) / g.stride + 1, (wp - g.k) / g.stride + 1);
        let groups = super::planes_of(x) / x.c;
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
        let dot = self.dot_row(x, layer, g, cg_n, &off_k, wp);
        // The output, with the border the next layers expect.
        let ob = border;
        let (ohp, owp) = (oh + 2 * ob, ow + 2 * ob);
        let out_plane = ohp * owp * LANE_IMAGES;
        let buf = OutBuf::new(groups * cout * out_plane, false);
        let out = buf.out();
        let Out::Act(o32) = &out else {
            unreachable!("activations out")
        };
        let seen = AtomicI64::new(0);
        let in_plane = hp * wp * LANE_IMAGES;
        let group_len = x.c * in_plane;
        let xs: &[i32] = &x.data;
        assert!(xs.len() >= groups * group_len && u32::try_from(group_len).is_ok());
        let step = g.stride * LANE_IMAGES;
        (0..groups * oh).into_par_iter().for_each(|t| {
            let (gi, oy) = (t / oh, t % oh);
            // This row's share of the output border: its left and right
            // columns, and the top and bottom rows for the first and last row.
            for c in 0..cout {
                let plane = (gi * cout + c) * out_plane;
                let zero = |from: usize, lanes: usize| {
                    for i in plane + from * LANE_IMAGES..plane + (from + lanes) * LANE_IMAGES {
                        // SAFETY: inside this (group, channel) plane; each
                        // border element belongs to exactly one row task.
                        unsafe { o32.write(i, 0) };
                    }
                };
                if ob > 0 {
                    let row = (oy + ob) * owp;
                    zero(row, ob);
                    zero(row + ob + ow, ob);
                    if oy == 0 {
                        zero(0, ob * owp);
                    }
                    if oy + 1 == oh {
                        zero((oh + ob) * owp, ob * owp);
                    }
                }
            }
            ACC.with_borrow_mut(|acc| {
                let row_len = ow * LANE_IMAGES;
                acc.resize(cout * row_len, 0);
                let mut m = 0;
                let mut ox0 = 0;
                if let Some(d) = &dot {
                    let at = gi * group_len + oy * g.stride * wp * LANE_IMAGES;
                    // SAFETY: AVX-512 F/BW/VNNI checked by `dot_row`; `at`
                    // is the top-left vector of this row's receptive field
                    // in group `gi`, whose `k` rows lie inside `xs` (as for
                    // the shift-add kernel below); `acc` has `cout` rows of
                    // `row_len` elements.
                    unsafe { d.run(xs, at, hp, wp, ow, g, &epi.acc_init, acc, row_len) };
                    ox0 = ow;
                }
                while ox0 < ow {
                    let (r, kernel) = tile_kernel(ow - ox0);
                    let at = gi * group_len + (oy * g.stride * wp + ox0 * g.stride) * LANE_IMAGES;
                    for cg in 0..cg_n {
                        let cs = cg * cout_g..(cg + 1) * cout_g;
                        let first = at + cg * cin_g * in_plane;
                        for (q, (p, o)) in plans.iter().zip(&offs).enumerate() {
                            // SAFETY: AVX-512F checked above. The largest
                            // offset read is `first + off_k[fan_in - 1] + (r
                            // - 1) * step`, the vector at row `(oy s + k -
                            // 1)` < hp, column `((ox0 + r - 1) s + k - 1)` <
                            // wp of the channel group's last channel: inside
                            // `xs`, 64-byte aligned like every vector
                            // (`Buf`). `acc` has `cout` rows of `row_len >=
                            // (ox0 + r) * 16` elements (channel group `cs`
                            // from row `cs.start`) and `init` has `cout`.
                            unsafe {
                                let x0 = xs.as_ptr().add(first);
                                let a =
                                    acc.as_mut_ptr().add(cs.start * row_len + ox0 * LANE_IMAGES);
                                let init = &epi.acc_init;
                                kernel(x0, step, p, o, cs.clone(), init, a, row_len, q > 0);
                            }
                        }
                    }
                    ox0 += r;
                }
                for c in 0..cout {
                    let a = &acc[c * row_len..(c + 1) * row_len];
                    let o = (gi * cout + c) * out_plane + ((oy + ob) * owp + ob) * LANE_IMAGES;
                    m = m.max(self.requant(a, c, layer, epi, &out, o, 1));
                }
                seen.fetch_max(m, Ordering::Relaxed);
            });
        });
        // SAFETY: every (group, channel, row) and its border was written by
        // its task.
        unsafe { buf.finish(cout, oh, ow, LANE_IMAGES, ob, seen.into_inner()) }
            .expect("requantised activations, not logits")
    }
}

impl Ctx {
    /// The dot-product kernel's setup for a convolution, when this CPU has
    /// it and the layer's weights fit it (`None`: shift-add).
    fn dot_row<'a>(
        &self,
        x: &Act,
        layer: &'a ShiftLayer,
        g: Geo,
        conv_groups: usize,
        off_k: &[u32],
        wp: usize,
    ) -> Option<DotRow<'a>> {
        if !self.dot || conv_groups != 1 {
            return None;
        }
        let plan = layer.dot_plan(g.k).filter(|d| d.cin == x.c)?;
        let planes = planes_for(x.max_abs);
        if !plan.pays_off(planes) {
            return None;
        }
        let kk = g.k * g.k;
        let qoff = (0..plan.quads)
            .map(|q| {
                let (cq, ky, kx) = (q / kk, q / g.k % g.k, q % g.k);
                (((cq * g.k + ky) * wp + kx) * planes * LANE_IMAGES) as u32
            })
            .collect();
        let residual_offs = plan
            .residual
            .idx
            .iter()
            .map(|&i| off_k[i as usize])
            .collect();
        Some(DotRow {
            plan,
            planes,
            qoff,
            residual_offs,
        })
    }
}

impl DotRow<'_> {
    /// Accumulates one output row `oy` (all channels, `ow` positions) into
    /// `acc` (`cout` rows of `row_len`): packs the row's receptive field into
    /// byte planes, runs the dot-product kernel, then the residual buckets
    /// with the shift-add kernel.
    ///
    /// # Safety
    /// The CPU has AVX-512 F, BW and VNNI; `xs + at` is the vector at
    /// column 0 of padded row `oy * stride` of the first channel of a group
    /// of `cin` planes of `hp x wp` vectors, all inside `xs`; `acc` has
    /// `cout * row_len` elements, `row_len >= ow * 16`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn run(
        &self,
        xs: &[i32],
        at: usize,
        hp: usize,
        wp: usize,
        ow: usize,
        g: Geo,
        init: &[i64],
        acc: &mut [i64],
        row_len: usize,
    ) {
        let d = self.plan;
        let p = self.planes;
        let vec = p * LANE_IMAGES;
        let cq_n = d.cin.div_ceil(QUAD);
        let in_plane = hp * wp * LANE_IMAGES;
        assert!(acc.len() >= d.cout * row_len && row_len >= ow * LANE_IMAGES);
        PACK.with_borrow_mut(|pack| {
            pack.resize(cq_n * g.k * wp * p, Lane([0; LANE_IMAGES]));
            let dst = pack.as_mut_ptr().cast::<i32>();
            for cq in 0..cq_n {
                for ky in 0..g.k {
                    let mut src = [ZERO_LANE.as_ptr(); QUAD];
                    let mut step = [0; QUAD];
                    for t in 0..QUAD {
                        let ci = cq * QUAD + t;
                        if ci < d.cin {
                            src[t] = xs.as_ptr().add(at + ci * in_plane + ky * wp * LANE_IMAGES);
                            step[t] = LANE_IMAGES;
                        }
                    }
                    let out = dst.add((cq * g.k + ky) * wp * vec);
                    pack_row(p, src, step, wp, out);
                }
            }
            let bias = i64::from(plane_bias(p) as u32);
            let x = dst.cast_const();
            let pos_step = g.stride * vec;
            let mut ox0 = 0;
            while ox0 < ow {
                let (r, kernel) = dot_kernel(p, ow - ox0);
                for c0 in (0..d.cout).step_by(DOT_CHANNELS) {
                    let cs = c0..c0 + DOT_CHANNELS;
                    kernel(
                        x.add(ox0 * pos_step),
                        pos_step,
                        &self.qoff,
                        d.weights.as_ptr().add(c0 * d.quads),
                        bias,
                        &d.weight_sum[cs.clone()],
                        &d.shift[cs.clone()],
                        &init[cs],
                        acc.as_mut_ptr().add(c0 * row_len + ox0 * LANE_IMAGES),
                        row_len,
                    );
                }
                ox0 += r;
            }
        });
        if d.residual_channels.is_empty() {
            return;
        }
        let step = g.stride * LANE_IMAGES;
        let mut ox0 = 0;
        while ox0 < ow {
            let (r, kernel) = tile_kernel(ow - ox0);
            let x0 = xs.as_ptr().add(at + ox0 * step);
            for &c in &d.residual_channels {
                let a = acc.as_mut_ptr().add(c * row_len + ox0 * LANE_IMAGES);
                kernel(
                    x0,
                    step,
                    &d.residual,
                    &self.residual_offs,
                    c..c + 1,
                    init,
                    a,
                    row_len,
                    true,
                );
            }
            ox0 += r;
        }
    }
}

/// Packs `cols` columns of a quad of input rows into `planes` byte planes.
///
/// # Safety
/// As [`crate::kernels::dot::pack_quads`].
#[cfg(target_arch = "x86_64")]
unsafe fn pack_row(
    planes: usize,
    src: [*const i32; 4],
    step: [usize; 4],
    cols: usize,
    out: *mut i32,
) {
    use crate::kernels::dot::pack_quads;
    let bias = plane_bias(planes);
    match planes {
        2 => pack_quads::<2>(src, step, cols, bias, out),
        3 => pack_quads::<3>(src, step, cols, bias, out),
        _ => unreachable!("{planes} byte planes (see `DotPlan::pays_off`)"),
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn pack_row(_: usize, _: [*const i32; 4], _: [usize; 4], _: usize, _: *mut i32) {
    unreachable!("dot-product kernel without x86-64")
}

/// The dot-product kernel for `planes` (2 or 3) byte planes and `left`
/// positions still to do in a row, and its tile width (2 positions with 2
/// planes, 1 at the end; 1 with 3, whose 24 accumulators for two positions
/// would spill).
#[cfg(target_arch = "x86_64")]
fn dot_kernel(planes: usize, left: usize) -> (usize, DotKernel) {
    use crate::kernels::dot::dot_avx512_vnni;
    match (planes, left) {
        (2, 1) => (1, dot_avx512_vnni::<1, 2>),
        (2, _) => (2, dot_avx512_vnni::<2, 2>),
        (3, 1) => (1, dot_avx512_vnni::<1, 3>),
        (3, _) => (1, dot_avx512_vnni::<1, 3>),
        // `DotPlan::pays_off` is false with 4 planes.
        _ => unreachable!("{planes} byte planes"),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn dot_kernel(_planes: usize, _left: usize) -> (usize, DotKernel) {
    unreachable!("dot-product kernel without x86-64")
}

/// The widest tile of at most [`TILE`] positions for `left` positions still
/// to do in a row (4, then 2 or 1 at the end), and its kernel.
#[cfg(target_arch = "x86_64")]
fn tile_kernel(left: usize) -> (usize, Kernel) {
    use crate::kernels::rows_avx512;
    match left {
        1 => (1, rows_avx512::<1, 1>),
        2 | 3 => (2, rows_avx512::<2, 1>),
        _ => (TILE, rows_avx512::<TILE, 1>),
    }
}

/// Batch lanes run only with AVX-512 ([`Ctx::lanes_conv`]).
#[cfg(not(target_arch = "x86_64"))]
fn tile_kernel(_left: usize) -> (usize, Kernel) {
    unreachable!("batch-lanes convolution without x86-64")
}

/// `x` (batch lanes, any border) with a border of `pad` instead.
pub(super) fn padded(x: &Act, pad: usize) -> Act {
    let (h, w) = (x.h, x.w);
    let (hp, wp) = (h + 2 * pad, w + 2 * pad);
    let planes = super::planes_of(x);
    let mut lanes = super::uninit::<Lane>(planes * hp * wp);
    let src_plane = x.plane_len();
    lanes
        .par_chunks_mut(hp * wp)
        .enumerate()
        .for_each(|(pl, dst)| {
            let src = &x.data[pl * src_plane..(pl + 1) * src_plane];
            let zero = MaybeUninit::new(Lane([0; LANE_IMAGES]));
            dst[..pad * wp].fill(zero);
            dst[(pad + h) * wp..].fill(zero);
            for y in 0..h {
                let row = &mut dst[(pad + y) * wp..(pad + y + 1) * wp];
                row[..pad].fill(zero);
                row[pad + w..].fill(zero);
                let from = &src[x.at(y, 0)..x.at(y, 0) + w * LANE_IMAGES];
                for (d, s) in row[pad..pad + w]
                    .iter_mut()
                    .zip(from.chunks_exact(LANE_IMAGES))
                {
                    d.write(Lane(s.try_into().expect("16 values")));
                }
            }
        });
    // SAFETY: every plane's border and interior were written above.
    let lanes = unsafe { super::assume_init(lanes) };
    let len = lanes.len() * LANE_IMAGES;
    Act {
        data: Arc::new(Buf { lanes, len }),
        border: pad,
        ..*x
    }
}
