//! The shift convolution's engine: a 2-D convolution as im2col + gemm.
//!
//! candle's stock CPU conv2d backward is slow (see
//! `docs/decisions/0001-tensor-backend.md`), so dsnn runs its own forward and
//! backward as candle custom ops: each sample is unfolded into a column
//! matrix and multiplied with the `gemm` crate, samples in parallel over the
//! batch. The op is a plain float convolution; shift layers feed it weights
//! already rounded to powers of two.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;
use std::cell::RefCell;

thread_local! {
    /// Per-thread work buffers (column matrix and gemm staging), kept between
    /// calls so that the hot loop neither allocates nor zero-fills them.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with this thread's two scratch buffers, grown to `a` and `b`
/// elements. Their contents are stale: callers overwrite what they read.
fn with_scratch<R>(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut guard = cell.borrow_mut();
        let (x, y) = &mut *guard;
        if x.len() < a {
            x.resize(a, 0.0);
        }
        if y.len() < b {
            y.resize(b, 0.0);
        }
        f(&mut x[..a], &mut y[..b])
    })
}

/// Stride and zero padding of a square-kernel convolution (same on both axes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Step between output positions.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
}

/// Sizes of one convolution call.
#[derive(Debug, Clone, Copy)]
struct Dims {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    ho: usize,
    wo: usize,
    stride: usize,
    pad: usize,
}

impl Dims {
    fn new(x: &[usize], w: &[usize], g: ConvGeometry) -> Result<Self> {
        let (&[n, cin, h, wd], &[cout, cin_w, kh, kw]) = (x, w) else {
            candle_core::bail!("conv2d expects a 4-D input and a 4-D weight, got {x:?} and {w:?}");
        };
        if cin != cin_w {
            candle_core::bail!("conv2d: input has {cin} channels, weight expects {cin_w}");
        }
        if g.stride == 0 || h + 2 * g.padding < kh || wd + 2 * g.padding < kw {
            candle_core::bail!(
                "conv2d: kernel {kh}x{kw} does not fit input {h}x{wd} (padding {}, stride {})",
                g.padding,
                g.stride
            );
        }
        Ok(Dims {
            n,
            cin,
            h,
            w: wd,
            cout,
            kh,
            kw,
            ho: (h + 2 * g.padding - kh) / g.stride + 1,
            wo: (wd + 2 * g.padding - kw) / g.stride + 1,
            stride: g.stride,
            pad: g.padding,
        })
    }
    /// Rows of the column matrix (`cin * kh * kw`).
    fn k(&self) -> usize {
        self.cin * self.kh * self.kw
    }
    /// Output positions per sample.
    fn p(&self) -> usize {
        self.ho * self.wo
    }
    fn in_len(&self) -> usize {
        self.cin * self.h * self.w
    }
    fn out_len(&self) -> usize {
        self.cout * self.p()
    }
    /// The sizes as the CUDA kernels take them.
    #[cfg(feature = "cuda")]
    fn cuda(&self) -> crate::cuda::ConvSizes {
        crate::cuda::ConvSizes {
            n: self.n,
            cin: self.cin,
            h: self.h,
            w: self.w,
            cout: self.cout,
            kh: self.kh,
            kw: self.kw,
            ho: self.ho,
            wo: self.wo,
            stride: self.stride,
            pad: self.pad,
        }
    }
    /// Stride 1 with as many output columns as input columns (a "same"
    /// convolution along the width), where [`im2col`] has a faster path.
    fn same_width(&self) -> bool {
        self.stride == 1 && self.wo == self.w
    }
    /// The valid output columns `[lo, hi)` for kernel column `j`.
    fn ow_range(&self, j: usize) -> (usize, usize) {
        let lo = (self.pad.saturating_sub(j))
            .div_ceil(self.stride)
            .min(self.wo);
        // ow * s + j - pad < w  <=>  ow < (w + pad - j) / s
        let lim = (self.w + self.pad).saturating_sub(j);
        let hi = lim.div_ceil(self.stride).min(self.wo);
        (lo, hi.max(lo))
    }
}

/// Unfolds one sample `x` (`cin x h x w`) into columns `offset..offset + p`
/// of `col` (`k` rows of length `ld`).
fn im2col(x: &[f32], d: &Dims, col: &mut [f32], ld: usize, offset: usize) {
    let p = d.p();
    if d.same_width() {
        return im2col_same_width(x, d, col, ld, offset);
    }
    for c in 0..d.cin {
        let plane = &x[c * d.h * d.w..(c + 1) * d.h * d.w];
        for i in 0..d.kh {
            for j in 0..d.kw {
                let row = (c * d.kh + i) * d.kw + j;
                let dst = &mut col[row * ld + offset..row * ld + offset + p];
                let (lo, hi) = d.ow_range(j);
                for oh in 0..d.ho {
                    let out = &mut dst[oh * d.wo..(oh + 1) * d.wo];
                    let ih = (oh * d.stride + i) as isize - d.pad as isize;
                    if ih < 0 || ih >= d.h as isize {
                        out.fill(0.0);
                        continue;
                    }
                    let src = &plane[ih as usize * d.w..(ih as usize + 1) * d.w];
                    out[..lo].fill(0.0);
                    out[hi..].fill(0.0);
                    if d.stride == 1 {
                        let start = lo + j - d.pad;
                        out[lo..hi].copy_from_slice(&src[start..start + (hi - lo)]);
                    } else {
                        for (ow, o) in out[lo..hi].iter_mut().enumerate() {
                            *o = src[(ow + lo) * d.stride + j - d.pad];
                        }
                    }
                }
            }
        }
    }
}

/// Folds columns `offset..offset + p` of `col` (`k` rows of length `ld`) back
/// onto one sample's gradient `dx`, summing overlaps. `dx` must start zeroed.
fn col2im(col: &mut [f32], d: &Dims, dx: &mut [f32], ld: usize, offset: usize) {
    let p = d.p();
    if d.same_width() {
        return col2im_same_width(col, d, dx, ld, offset);
    }
    for c in 0..d.cin {
        let plane = &mut dx[c * d.h * d.w..(c + 1) * d.h * d.w];
        for i in 0..d.kh {
            for j in 0..d.kw {
                let row = (c * d.kh + i) * d.kw + j;
                let src = &col[row * ld + offset..row * ld + offset + p];
                let (lo, hi) = d.ow_range(j);
                for oh in 0..d.ho {
                    let ih = (oh * d.stride + i) as isize - d.pad as isize;
                    if ih < 0 || ih >= d.h as isize {
                        continue;
                    }
                    let dst = &mut plane[ih as usize * d.w..(ih as usize + 1) * d.w];
                    let s = &src[oh * d.wo + lo..oh * d.wo + hi];
                    if d.stride == 1 {
                        // Contiguous on both sides: written as zipped slices so it vectorises.
                        let start = lo + j - d.pad;
                        for (a, &b) in dst[start..start + s.len()].iter_mut().zip(s) {
                            *a += b;
                        }
                    } else {
                        for (k, &b) in s.iter().enumerate() {
                            dst[(lo + k) * d.stride + j - d.pad] += b;
                        }
                    }
                }
            }
        }
    }
}

/// The valid output rows `[lo, hi)` for kernel row `i` (the rows whose
/// input row `oh * stride + i - pad` lies inside the image).
fn oh_range(d: &Dims, i: usize) -> (usize, usize) {
    let lo = d.pad.saturating_sub(i).div_ceil(d.stride).min(d.ho);
    let hi = (d.h + d.pad).saturating_sub(i).div_ceil(d.stride).min(d.ho);
    (lo, hi.max(lo))
}

/// Zeroes `r[..lo]` and `r[hi..]`. The edges are a column or two wide, so
/// they are written element by element (a `fill` would call `memset` for
/// every image row).
#[inline(always)]
fn zero_edges(r: &mut [f32], lo: usize, hi: usize) {
    if lo <= 2 && r.len() - hi <= 2 {
        if lo > 0 {
            r[0] = 0.0;
            if lo > 1 {
                r[1] = 0.0;
            }
        }
        let n = r.len();
        if hi < n {
            r[n - 1] = 0.0;
            if hi + 1 < n {
                r[n - 2] = 0.0;
            }
        }
    } else {
        r[..lo].fill(0.0);
        r[hi..].fill(0.0);
    }
}

/// For stride 1 with `wo == w`: kernel row `(i, j)`'s column entries `q` of
/// the valid output rows are the plane's entries `q + shift`, a constant
/// offset. Returns the run of `q` that stays inside the plane and the plane
/// index of its first entry (`None` if empty); the entries the run wraps
/// across image rows are the padded columns, which callers zero.
fn shifted_run(d: &Dims, i: usize, j: usize) -> Option<(std::ops::Range<usize>, usize)> {
    let (rlo, rhi) = oh_range(d, i);
    let shift = (i * d.w + j) as isize - (d.pad * d.w + d.pad) as isize;
    let q0 = (rlo * d.wo).max((-shift).max(0) as usize);
    let q1 = (rhi * d.wo).min((d.h as isize * d.w as isize - shift).max(0) as usize);
    (q0 < q1).then(|| (q0..q1, (q0 as isize + shift) as usize))
}

/// [`im2col`] for stride 1 with `wo == w`: a kernel row's columns are then
/// the image plane shifted by a constant offset, so each row is one
/// contiguous copy plus zeros at the padded edges, instead of one short
/// copy per output row.
fn im2col_same_width(x: &[f32], d: &Dims, col: &mut [f32], ld: usize, offset: usize) {
    let (p, hw) = (d.p(), d.h * d.w);
    for c in 0..d.cin {
        let plane = &x[c * hw..(c + 1) * hw];
        for i in 0..d.kh {
            let (rlo, rhi) = oh_range(d, i);
            for j in 0..d.kw {
                let row = (c * d.kh + i) * d.kw + j;
                let dst = &mut col[row * ld + offset..row * ld + offset + p];
                dst[..rlo * d.wo].fill(0.0);
                dst[rhi * d.wo..].fill(0.0);
                if let Some((q, s)) = shifted_run(d, i, j) {
                    dst[q.clone()].copy_from_slice(&plane[s..s + q.len()]);
                }
                // The copy wrapped across image rows at the padded columns.
                let (lo, hi) = d.ow_range(j);
                for r in dst[rlo * d.wo..rhi * d.wo].chunks_exact_mut(d.wo) {
                    zero_edges(r, lo, hi);
                }
            }
        }
    }
}

/// [`col2im`] for stride 1 with `wo == w`: the padded-column entries of each
/// row are zeroed in `col` first, then the row is added to the plane in one
/// contiguous run.
fn col2im_same_width(col: &mut [f32], d: &Dims, dx: &mut [f32], ld: usize, offset: usize) {
    let (p, hw) = (d.p(), d.h * d.w);
    for c in 0..d.cin {
        let plane = &mut dx[c * hw..(c + 1) * hw];
        for i in 0..d.kh {
            let (rlo, rhi) = oh_range(d, i);
            for j in 0..d.kw {
                let row = (c * d.kh + i) * d.kw + j;
                let src = &mut col[row * ld + offset..row * ld + offset + p];
                let (lo, hi) = d.ow_range(j);
                if lo > 0 || hi < d.wo {
                    for r in src[rlo * d.wo..rhi * d.wo].chunks_exact_mut(d.wo) {
                        zero_edges(r, lo, hi);
                    }
                }
                if let Some((q, s)) = shifted_run(d, i, j) {
                    for (a, &b) in plane[s..s + q.len()].iter_mut().zip(&src[q]) {
                        *a += b;
                    }
                }
            }
        }
    }
}

/// `dst (m x n) = beta_dst * dst + a (m x k) * b (k x n)`, each matrix a
/// strided view given as (row stride, column stride).
#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_strides: (isize, isize),
    accumulate: bool,
    a: &[f32],
    a_strides: (isize, isize),
    b: &[f32],
    b_strides: (isize, isize),
    par: Parallelism,
) {
    debug_assert!(dst.len() >= m * n);
    // SAFETY: the slices cover the index ranges implied by the dimensions and
    // strides, which the callers derive from the same `Dims`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_strides.1,
            dst_strides.0,
            accumulate,
            a.as_ptr(),
            a_strides.1,
            a_strides.0,
            b.as_ptr(),
            b_strides.1,
            b_strides.0,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// Samples unfolded side by side into one column matrix, so that each gemm
/// is wide enough to run efficiently (at least 1024 columns; wider planes
/// are multiplied one sample at a time, straight into NCHW order).
fn group_size(d: &Dims, per_task: usize) -> usize {
    (2048 / d.p().max(1)).clamp(1, per_task.max(1))
}

/// How to split a batch: samples per task, and the gemm parallelism inside a task.
fn plan(n: usize) -> (usize, Parallelism) {
    let threads = rayon::current_num_threads().max(1);
    if n >= threads && threads > 1 {
        // A fixed split that depends only on the batch size keeps reductions
        // deterministic across runs.
        (n.div_ceil(16).max(1), Parallelism::None)
    } else if threads > 1 {
        (n.max(1), Parallelism::Rayon(threads))
    } else {
        (n.max(1), Parallelism::None)
    }
}

/// The forward convolution op (`x`, `w`) -> `y`, with a backward pass.
#[derive(Debug, Clone, Copy)]
pub struct Conv2dOp(pub ConvGeometry);

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "dsnn-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = Dims::new(l1.dims(), l2.dims(), self.0)?;
        let (x, w) = (crate::ops::slice(s1, l1)?, crate::ops::slice(s2, l2)?);
        let (k, p, ol) = (d.k(), d.p(), d.out_len());
        let mut y = vec![0f32; d.n * ol];
        let (per_task, par) = plan(d.n);
        let g = group_size(&d, per_task);
        y.par_chunks_mut(per_task * ol)
            .enumerate()
            .for_each(|(t, ys)| {
                with_scratch(k * p * g, d.cout * p * g, |col, out| {
                    for (gi, yg) in ys.chunks_mut(g * ol).enumerate() {
                        let first = t * per_task + gi * g;
                        let s = yg.len() / ol;
                        let ld = s * p;
                        for j in 0..s {
                            let xn = &x[(first + j) * d.in_len()..(first + j + 1) * d.in_len()];
                            im2col(xn, &d, col, ld, j * p);
                        }
                        // out (cout x s*p) = W (cout x k) * col (k x s*p); a single
                        // sample's output is already in NCHW order, so write it in place.
                        let dst: &mut [f32] = if s == 1 { yg } else { out };
                        matmul(
                            d.cout,
                            ld,
                            k,
                            dst,
                            (ld as isize, 1),
                            false,
                            w,
                            (k as isize, 1),
                            col,
                            (ld as isize, 1),
                            par,
                        );
                        if s == 1 {
                            continue;
                        }
                        for j in 0..s {
                            for c in 0..d.cout {
                                yg[j * ol + c * p..j * ol + (c + 1) * p]
                                    .copy_from_slice(&out[c * ld + j * p..c * ld + (j + 1) * p]);
                            }
                        }
                    }
                });
            });
        Ok((CpuStorage::F32(y), Shape::from((d.n, d.cout, d.ho, d.wo))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let d = Dims::new(l1.dims(), l2.dims(), self.0)?;
        if !l2.is_contiguous() {
            candle_core::bail!("dsnn ops need contiguous f32 tensors");
        }
        let y = crate::cuda::conv2d(s1, l1, s2, l2, &d.cuda())?;
        Ok((y, Shape::from((d.n, d.cout, d.ho, d.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        // The first layer's input is data: its gradient would be thrown away.
        let dx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(
                w,
                &Conv2dBackwardInput {
                    geometry: self.0,
                    input_hw: (x.dim(2)?, x.dim(3)?),
                },
            )?)
        } else {
            None
        };
        let dw = x.apply_op2_no_bwd(
            &grad,
            &Conv2dBackwardWeight {
                geometry: self.0,
                kernel: (w.dim(2)?, w.dim(3)?),
            },
        )?;
        Ok((dx, Some(dw)))
    }
}

/// Copies the gradients of samples `first..first + s` (each `cout x p`) side
/// by side into `cat` (`cout x s*p`).
fn gather_grad(dy: &[f32], d: &Dims, first: usize, s: usize, cat: &mut [f32]) {
    let (p, ol) = (d.p(), d.out_len());
    let ld = s * p;
    for j in 0..s {
        let src = &dy[(first + j) * ol..(first + j + 1) * ol];
        for c in 0..d.cout {
            cat[c * ld + j * p..c * ld + (j + 1) * p].copy_from_slice(&src[c * p..(c + 1) * p]);
        }
    }
}

/// Copies the gradients of samples `first..first + s` (each `cout x p`)
/// transposed into `cat` (`s*p x cout`), a block of 8 positions at a time so
/// that reads and writes both stay within a few cache lines.
fn gather_grad_transposed(dy: &[f32], d: &Dims, first: usize, s: usize, cat: &mut [f32]) {
    let (p, ol, cout) = (d.p(), d.out_len(), d.cout);
    const B: usize = 8;
    for j in 0..s {
        let src = &dy[(first + j) * ol..(first + j + 1) * ol];
        let dst = &mut cat[j * p * cout..(j + 1) * p * cout];
        for q0 in (0..p).step_by(B) {
            let q1 = (q0 + B).min(p);
            for c in 0..cout {
                let from = &src[c * p + q0..c * p + q1];
                for (i, &v) in from.iter().enumerate() {
                    dst[(q0 + i) * cout + c] = v;
                }
            }
        }
    }
}

/// The gradients of samples `first..first + s` as one `cout x s*p` matrix:
/// a single sample's slice of `dy` as it is, several gathered into `cat`.
fn gathered<'a>(dy: &'a [f32], d: &Dims, first: usize, s: usize, cat: &'a mut [f32]) -> &'a [f32] {
    if s == 1 {
        &dy[first * d.out_len()..(first + 1) * d.out_len()]
    } else {
        gather_grad(dy, d, first, s, cat);
        cat
    }
}

/// Gradient of the convolution with respect to its input: (`dy`, `w`) -> `dx`.
#[derive(Debug, Clone, Copy)]
struct Conv2dBackwardInput {
    geometry: ConvGeometry,
    input_hw: (usize, usize),
}

impl CustomOp2 for Conv2dBackwardInput {
    fn name(&self) -> &'static str {
        "dsnn-conv2d-backward-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, wdims) = (l1.dims()[0], l2.dims());
        let xdims = [n, wdims[1], self.input_hw.0, self.input_hw.1];
        let d = Dims::new(&xdims, wdims, self.geometry)?;
        if l1.dims() != [n, d.cout, d.ho, d.wo] {
            candle_core::bail!(
                "conv2d backward: gradient shape {:?} does not match",
                l1.dims()
            );
        }
        let (dy, w) = (crate::ops::slice(s1, l1)?, crate::ops::slice(s2, l2)?);
        let (k, p, il) = (d.k(), d.p(), d.in_len());
        // Zeroed here once: col2im accumulates into it.
        let mut dx = vec![0f32; n * il];
        let (per_task, par) = plan(n);
        let g = group_size(&d, per_task);
        dx.par_chunks_mut(per_task * il)
            .enumerate()
            .for_each(|(t, dxs)| {
                with_scratch(k * p * g, d.cout * p * g, |col, cat| {
                    for (gi, dxg) in dxs.chunks_mut(g * il).enumerate() {
                        let first = t * per_task + gi * g;
                        let s = dxg.len() / il;
                        let ld = s * p;
                        let dyg = gathered(dy, &d, first, s, cat);
                        // col (k x s*p) = W^T (k x cout) * dy (cout x s*p)
                        matmul(
                            k,
                            ld,
                            d.cout,
                            col,
                            (ld as isize, 1),
                            false,
                            w,
                            (1, k as isize),
                            dyg,
                            (ld as isize, 1),
                            par,
                        );
                        for (j, dxn) in dxg.chunks_mut(il).enumerate() {
                            col2im(&mut *col, &d, dxn, ld, j * p);
                        }
                    }
                });
            });
        Ok((CpuStorage::F32(dx), Shape::from(xdims.to_vec())))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (n, wdims) = (l1.dims()[0], l2.dims());
        let xdims = [n, wdims[1], self.input_hw.0, self.input_hw.1];
        let d = Dims::new(&xdims, wdims, self.geometry)?;
        if l1.dims() != [n, d.cout, d.ho, d.wo] {
            candle_core::bail!(
                "conv2d backward: gradient shape {:?} does not match",
                l1.dims()
            );
        }
        if !l2.is_contiguous() {
            candle_core::bail!("dsnn ops need contiguous f32 tensors");
        }
        let dx = crate::cuda::conv2d_backward_input(s1, l1, s2, l2, &d.cuda())?;
        Ok((dx, Shape::from(xdims.to_vec())))
    }
}

/// Gradient of the convolution with respect to its weight: (`x`, `dy`) -> `dw`.
#[derive(Debug, Clone, Copy)]
struct Conv2dBackwardWeight {
    geometry: ConvGeometry,
    kernel: (usize, usize),
}

impl CustomOp2 for Conv2dBackwardWeight {
    fn name(&self) -> &'static str {
        "dsnn-conv2d-backward-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let xdims = l1.dims();
        let cout = l2.dims()[1];
        let wdims = [cout, xdims[1], self.kernel.0, self.kernel.1];
        let d = Dims::new(xdims, &wdims, self.geometry)?;
        let (x, dy) = (crate::ops::slice(s1, l1)?, crate::ops::slice(s2, l2)?);
        let (k, p) = (d.k(), d.p());
        let (per_task, par) = plan(d.n);
        let g = group_size(&d, per_task);
        let tasks = d.n.div_ceil(per_task);
        let partials: Vec<Vec<f32>> = (0..tasks)
            .into_par_iter()
            .map(|t| {
                // The transpose of this task's dw: `k x cout`.
                let mut dw_t = vec![0f32; cout * k];
                with_scratch(k * p * g, cout * p * g, |col, cat| {
                    let end = ((t + 1) * per_task).min(d.n);
                    let mut first = t * per_task;
                    while first < end {
                        let s = g.min(end - first);
                        let ld = s * p;
                        for j in 0..s {
                            let xn = &x[(first + j) * d.in_len()..(first + j + 1) * d.in_len()];
                            im2col(xn, &d, col, ld, j * p);
                        }
                        gather_grad_transposed(dy, &d, first, s, cat);
                        // dw (cout x k) += dy (cout x s*p) * col^T (s*p x k), with
                        // dw held column-major and dy transposed, so that gemm
                        // reads both operands along unit strides and packs only
                        // the small dy^T instead of gathering the column matrix.
                        matmul(
                            cout,
                            k,
                            ld,
                            &mut dw_t,
                            (1, cout as isize),
                            true,
                            cat,
                            (1, cout as isize),
                            col,
                            (1, ld as isize),
                            par,
                        );
                        first += s;
                    }
                });
                dw_t
            })
            .collect();
        let mut dw_t = vec![0f32; cout * k];
        for part in &partials {
            for (a, b) in dw_t.iter_mut().zip(part) {
                *a += b;
            }
        }
        let mut dw = vec![0f32; cout * k];
        for (r, row) in dw_t.chunks_exact(cout).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                dw[c * k + r] = v;
            }
        }
        Ok((CpuStorage::F32(dw), Shape::from(wdims.to_vec())))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let xdims = l1.dims();
        let cout = l2.dims()[1];
        let wdims = [cout, xdims[1], self.kernel.0, self.kernel.1];
        let d = Dims::new(xdims, &wdims, self.geometry)?;
        if l2.dims() != [d.n, cout, d.ho, d.wo] {
            candle_core::bail!(
                "conv2d backward: gradient shape {:?} does not match",
                l2.dims()
            );
        }
        let dw = crate::cuda::conv2d_backward_weight(s1, l1, s2, l2, &d.cuda())?;
        Ok((dw, Shape::from(wdims.to_vec())))
    }
}

/// Convolves `x` (`n x cin x h x w`) with `w` (`cout x cin x kh x kw`), with a
/// backward pass for both; no bias.
pub fn conv2d(x: &Tensor, w: &Tensor, geometry: ConvGeometry) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&w.contiguous()?, Conv2dOp(geometry))
}
