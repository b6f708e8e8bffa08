//! The shift convolution's engine: a 2-D convolution as im2col + gemm.
//!
//! candle's stock CPU conv2d backward is slow (see
//! `docs/decisions/0001-tensor-backend.md`), so dsnn runs its own forward and
//! backward as candle custom ops: each sample is unfolded into a column
//! matrix and multiplied with the `gemm` crate, samples in parallel over the
//! batch. The op is a float convolution, optionally grouped (depthwise when
//! every input channel is its own group); shift layers feed it weights
//! already rounded to powers of two and can have it round the input to
//! DeepShift's fixed-point grid while unfolding it, which saves a full pass
//! over the activation and a node of the autograd graph.
//!
//! 3x3, stride-1, pad-1 layers with enough channels and tiles run as
//! Winograd F(2x2, 3x3) instead (module `conv/winograd.rs`), in the forward and hence in
//! the input gradient, which for stride 1 is a forward convolution of `dy`.

use crate::quant::{FixedPoint, FixedPointGrid};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;
use std::cell::RefCell;
use std::mem::MaybeUninit;

/// Winograd F(2x2, 3x3) for the 3x3 stride-1 layers (see [`ConvAlgorithm`]).
mod winograd;

/// The weight gradient straight from the padded input (see [`WeightGradAlgorithm`]).
mod weight_grad;

/// The stride-phase layout the direct kernels read.
mod planes;

/// The forward convolution straight from the padded input (see [`ConvAlgorithm::Direct`]).
mod direct;

thread_local! {
    /// Per-thread work buffers (column matrix and gemm staging), kept between
    /// calls so that the hot loop neither allocates nor zero-fills them.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

thread_local! {
    /// Per-thread buffer for one sample's input planes rounded to the
    /// fixed-point grid before they are unfolded.
    static ROUNDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
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

/// Everything a convolution call takes besides its two operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvOptions {
    /// Stride and padding.
    pub geometry: ConvGeometry,
    /// Channel groups: input and output channels are split into `groups`
    /// equal sets, and each output set sees only its input set (1 = an
    /// ordinary convolution; the number of input channels = depthwise). The
    /// weight is then `cout x cin / groups x kh x kw`, as in PyTorch.
    pub groups: usize,
    /// Round the input down to this fixed-point grid before convolving
    /// (DeepShift's activation quantisation, `round_to_fixed`), fused into
    /// the unfolding; the gradient passes straight through to the input.
    /// CPU only: the CUDA path refuses it.
    pub input_quant: Option<FixedPoint>,
}

impl ConvOptions {
    /// A plain, ungrouped float convolution.
    pub fn plain(geometry: ConvGeometry) -> Self {
        ConvOptions {
            geometry,
            groups: 1,
            input_quant: None,
        }
    }

    fn grid(&self) -> Option<FixedPointGrid> {
        self.input_quant
            .map(|q| FixedPointGrid::new(q.integer_bits, q.fraction_bits))
    }
}

/// Sizes of one convolution call. `cin` and `cout` count all channels; a
/// group has `cg()` of the input and `og()` of the output channels.
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
    groups: usize,
}

impl Dims {
    fn new(x: &[usize], w: &[usize], g: ConvGeometry, groups: usize) -> Result<Self> {
        let (&[n, cin, h, wd], &[cout, cin_w, kh, kw]) = (x, w) else {
            candle_core::bail!("conv2d expects a 4-D input and a 4-D weight, got {x:?} and {w:?}");
        };
        if groups == 0 || !cout.is_multiple_of(groups) {
            candle_core::bail!("conv2d: {cout} output channels do not split into {groups} groups");
        }
        if cin != cin_w * groups {
            candle_core::bail!(
                "conv2d: input has {cin} channels, weight expects {cin_w} per group x {groups} groups"
            );
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
            groups,
        })
    }
    /// Input channels per group.
    fn cg(&self) -> usize {
        self.cin / self.groups
    }
    /// Output channels per group.
    fn og(&self) -> usize {
        self.cout / self.groups
    }
    /// Rows of a group's column matrix (`cg * kh * kw`).
    fn k(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    /// Elements of one input channel plane.
    fn hw(&self) -> usize {
        self.h * self.w
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
    /// The sizes as the CUDA kernels take them (groups included: `cuda`
    /// runs grouped and depthwise convolutions with direct kernels).
    #[cfg(feature = "cuda")]
    fn cuda(&self) -> Result<crate::cuda::ConvSizes> {
        Ok(crate::cuda::ConvSizes {
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
            groups: self.groups,
        })
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

/// How [`im2col`] reads the input: as it is, or rounded to a fixed-point grid.
#[derive(Debug, Clone, Copy)]
enum Unfold {
    Plain,
    Quantized(FixedPointGrid),
}

impl Unfold {
    fn new(grid: Option<FixedPointGrid>) -> Self {
        grid.map_or(Unfold::Plain, Unfold::Quantized)
    }
}

/// Unfolds the channels of one group of one sample, `x` (`cg x h x w`), into
/// columns `offset..offset + p` of `col` (`k` rows of length `ld`), rounding
/// every input value to the grid of `unfold` (padding stays zero, as the
/// reference pads the already quantised input).
fn im2col(x: &[f32], d: &Dims, col: &mut [f32], ld: usize, offset: usize, unfold: Unfold) {
    match unfold {
        Unfold::Plain => im2col_plain(x, d, col, ld, offset),
        // Rounded once into a plane-sized buffer, then unfolded as a plain
        // copy: rounding inside the unfolding would round every value
        // `kh * kw` times (it took a third of a ResNet20 Q step).
        Unfold::Quantized(grid) => ROUNDED.with(|cell| {
            let mut rounded = cell.borrow_mut();
            if rounded.len() < x.len() {
                rounded.resize(x.len(), 0.0);
            }
            let rounded = &mut rounded[..x.len()];
            grid.round_slice(x, rounded);
            im2col_plain(rounded, d, col, ld, offset)
        }),
    }
}

/// [`im2col`] of values used as they are.
fn im2col_plain(x: &[f32], d: &Dims, col: &mut [f32], ld: usize, offset: usize) {
    let p = d.p();
    if d.same_width() {
        return im2col_same_width(x, d, col, ld, offset);
    }
    for c in 0..d.cg() {
        let plane = &x[c * d.hw()..(c + 1) * d.hw()];
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
/// onto the gradient of one group of one sample, `dx` (`cg x h x w`),
/// summing overlaps. `dx` must start zeroed.
fn col2im(col: &mut [f32], d: &Dims, dx: &mut [f32], ld: usize, offset: usize) {
    let p = d.p();
    if d.same_width() {
        return col2im_same_width(col, d, dx, ld, offset);
    }
    for c in 0..d.cg() {
        let plane = &mut dx[c * d.hw()..(c + 1) * d.hw()];
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
    let (p, hw) = (d.p(), d.hw());
    for c in 0..d.cg() {
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
    let (p, hw) = (d.p(), d.hw());
    for c in 0..d.cg() {
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
///
/// # Safety
/// `dst` must be valid for writes (and, with `accumulate`, reads) at every
/// index its strides reach for `m x n`; it may be uninitialised otherwise.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_strides: (isize, isize),
    accumulate: bool,
    a: &[f32],
    a_strides: (isize, isize),
    b: &[f32],
    b_strides: (isize, isize),
    par: Parallelism,
) {
    // SAFETY: the slices cover the index ranges implied by the dimensions and
    // strides, which the callers derive from the same `Dims`; `dst` is the
    // caller's promise. gemm does not read `dst` unless `accumulate`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
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

/// A vector of `n` floats that the caller fills completely before reading
/// (saves the zeroing pass of `vec![0.0; n]` over every output tensor).
fn uninit_vec(n: usize) -> Vec<MaybeUninit<f32>> {
    let mut v = Vec::with_capacity(n);
    // SAFETY: `MaybeUninit` needs no initialisation.
    unsafe { v.set_len(n) };
    v
}

/// The vector of [`uninit_vec`] once every element has been written.
///
/// # Safety
/// Every element of `v` must have been initialised.
unsafe fn assume_init(v: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: same layout and allocation; the caller promises initialisation.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<f32>(), v.len(), v.capacity()) }
}

/// Which CPU kernel runs a forward convolution (and the input gradient of
/// stride-1 layers, which is one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvAlgorithm {
    /// The direct kernel where it measured faster (ungrouped, on CPUs with
    /// AVX-512, 16x16+ outputs and 64+ taps per output), else Winograd where
    /// it applies and measured faster ([`ConvAlgorithm::Winograd`]'s shapes
    /// with at least 32 channels in and out on 16x16+ images or 64 on 8x8+
    /// ones, 512+ output tiles of 2x2 in the call, float inputs), im2col +
    /// gemm elsewhere.
    Auto,
    /// Unfold the input into a column matrix and multiply with `gemm`.
    Im2col,
    /// Winograd F(2x2, 3x3): 3x3 kernels, stride 1, padding 1, no groups.
    Winograd,
    /// Register-blocked products of the weights with shifted streams of
    /// the zero-padded input (module `conv/direct.rs`), AVX-512 where the
    /// CPU has it; ungrouped convolutions only.
    Direct,
    /// [`ConvAlgorithm::Direct`] on the portable path whatever the CPU, for
    /// tests and benchmarks.
    DirectPortable,
}

/// The forward convolution of `x` (`x_dims`, NCHW) with `w` (`w_dims`) on
/// the CPU with a chosen kernel, on plain slices: for tests and benchmarks
/// that compare the kernels ([`conv2d_with`] always runs
/// [`ConvAlgorithm::Auto`]). Errors on inconsistent sizes and on
/// `Winograd` for a shape it does not support.
pub fn forward_cpu_with(
    x: &[f32],
    x_dims: [usize; 4],
    w: &[f32],
    w_dims: [usize; 4],
    options: ConvOptions,
    algorithm: ConvAlgorithm,
) -> Result<Vec<f32>> {
    let d = Dims::new(&x_dims, &w_dims, options.geometry, options.groups)?;
    if x.len() != d.n * d.in_len() || w.len() != d.cout * d.k() {
        candle_core::bail!(
            "conv2d: {} input and {} weight values do not fill {x_dims:?} and {w_dims:?}",
            x.len(),
            w.len()
        );
    }
    let unfold = Unfold::new(options.grid());
    Ok(match algorithm {
        ConvAlgorithm::Auto => forward_cpu(x, w, &d, unfold),
        ConvAlgorithm::Im2col => im2col_forward(x, w, &d, unfold),
        ConvAlgorithm::Winograd if winograd::supports(&d) => {
            winograd::forward(x, w, &d, options.grid())
        }
        ConvAlgorithm::Direct | ConvAlgorithm::DirectPortable if direct::supports(&d) => {
            let kernel = match algorithm {
                ConvAlgorithm::Direct => direct::Kernel::Dispatched,
                _ => direct::Kernel::Portable,
            };
            direct::forward(x, w, &d, options.grid(), kernel)
        }
        ConvAlgorithm::Direct | ConvAlgorithm::DirectPortable => candle_core::bail!(
            "conv2d: the direct kernel takes ungrouped convolutions, got {} groups",
            options.groups
        ),
        ConvAlgorithm::Winograd => candle_core::bail!(
            "conv2d: Winograd needs a 3x3 kernel, stride 1, padding 1 and no groups, got {w_dims:?} with {:?} and {} groups",
            options.geometry,
            options.groups
        ),
    })
}

/// The convolution of `x` with `w` (sizes `d`) on the CPU, by the kernel
/// that is faster for its shape ([`ConvAlgorithm::Auto`]): the direct
/// kernel where it pays (`direct::pays`), else Winograd or im2col. Winograd only
/// takes float inputs: with the fused input rounding of DeepShift-Q/PS it
/// ran ResNet20's simulated inference 6-11% slower than im2col (A/B on a
/// quiet machine, `docs/benchmarks.md`), while the input gradient of those
/// layers (plain `dy`) still gains.
fn forward_cpu(x: &[f32], w: &[f32], d: &Dims, unfold: Unfold) -> Vec<f32> {
    if direct::pays(d) {
        let grid = match unfold {
            Unfold::Plain => None,
            Unfold::Quantized(grid) => Some(grid),
        };
        return direct::forward(x, w, d, grid, direct::Kernel::Dispatched);
    }
    if matches!(unfold, Unfold::Plain) && winograd::pays(d) {
        return winograd::forward(x, w, d, None);
    }
    im2col_forward(x, w, d, unfold)
}

/// Which CPU kernel computes the weight gradient of a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightGradAlgorithm {
    /// [`WeightGradAlgorithm::Direct`] where the CPU has AVX-512 and the
    /// convolution is ungrouped, im2col + gemm elsewhere.
    Auto,
    /// Unfold the input into a column matrix and multiply with `gemm`.
    Im2col,
    /// Dot products of `dy` rows with shifted streams of the zero-padded
    /// input (module `conv/weight_grad.rs`), AVX-512 where the CPU has it;
    /// ungrouped convolutions only.
    Direct,
    /// [`WeightGradAlgorithm::Direct`] on the portable path whatever the CPU
    /// (what CPUs without AVX-512 would run), for tests and benchmarks.
    DirectPortable,
}

/// The weight gradient (`w_dims`, `cout x cin / groups x kh x kw`) of the
/// convolution of `x` (`x_dims`, NCHW) whose output gradient is `dy`, on
/// the CPU with a chosen kernel, on plain slices: for tests and benchmarks
/// that compare the kernels (the autograd op always runs
/// [`WeightGradAlgorithm::Auto`]). The input is rounded first where
/// `options` fuses the fixed-point rounding, as the forward did. Errors on
/// inconsistent sizes and on a direct kernel for a grouped convolution.
pub fn backward_weight_cpu_with(
    x: &[f32],
    x_dims: [usize; 4],
    dy: &[f32],
    w_dims: [usize; 4],
    options: ConvOptions,
    algorithm: WeightGradAlgorithm,
) -> Result<Vec<f32>> {
    let d = Dims::new(&x_dims, &w_dims, options.geometry, options.groups)?;
    if x.len() != d.n * d.in_len() || dy.len() != d.n * d.out_len() {
        candle_core::bail!(
            "conv2d backward: {} input and {} gradient values do not fill {x_dims:?} and [{}, {}, {}, {}]",
            x.len(),
            dy.len(),
            d.n,
            d.cout,
            d.ho,
            d.wo
        );
    }
    let direct = matches!(
        algorithm,
        WeightGradAlgorithm::Direct | WeightGradAlgorithm::DirectPortable
    );
    if direct && !weight_grad::supports(&d) {
        candle_core::bail!(
            "conv2d backward: the direct weight gradient takes ungrouped convolutions, got {} groups",
            d.groups
        );
    }
    Ok(backward_weight_cpu(x, dy, &d, options.grid(), algorithm))
}

/// The weight gradient of `d` by `algorithm` (which must support `d`).
fn backward_weight_cpu(
    x: &[f32],
    dy: &[f32],
    d: &Dims,
    grid: Option<FixedPointGrid>,
    algorithm: WeightGradAlgorithm,
) -> Vec<f32> {
    use weight_grad::Kernel;
    let kernel = match algorithm {
        WeightGradAlgorithm::Auto if weight_grad::pays(d) => Kernel::Dispatched,
        WeightGradAlgorithm::Auto | WeightGradAlgorithm::Im2col => {
            return im2col_backward_weight(x, dy, d, Unfold::new(grid))
        }
        WeightGradAlgorithm::Direct => Kernel::Dispatched,
        WeightGradAlgorithm::DirectPortable => Kernel::Portable,
    };
    weight_grad::backward_weight(x, dy, d, grid, kernel)
}

/// The convolution of `x` with `w` (sizes `d`) on the CPU: per group of
/// samples, im2col (rounding the input as `unfold` says) and one gemm per
/// channel group, samples in parallel over the batch. Returns `y` in NCHW.
fn im2col_forward(x: &[f32], w: &[f32], d: &Dims, unfold: Unfold) -> Vec<f32> {
    let (k, p, ol, og, il) = (d.k(), d.p(), d.out_len(), d.og(), d.in_len());
    let (cg_len, wg_len) = (d.cg() * d.hw(), og * k);
    let mut y = uninit_vec(d.n * ol);
    let (per_task, par) = plan(d.n);
    let g = group_size(d, per_task);
    y.par_chunks_mut(per_task * ol)
        .enumerate()
        .for_each(|(t, ys)| {
            with_scratch(k * p * g, og * p * g, |col, out| {
                for (gi, yg) in ys.chunks_mut(g * ol).enumerate() {
                    let first = t * per_task + gi * g;
                    let s = yg.len() / ol;
                    let ld = s * p;
                    for grp in 0..d.groups {
                        for j in 0..s {
                            let xn = &x[(first + j) * il + grp * cg_len..][..cg_len];
                            im2col(xn, d, col, ld, j * p, unfold);
                        }
                        // out (og x s*p) = W_grp (og x k) * col (k x s*p); a single
                        // sample's output is already in NCHW order, so write it in place.
                        let dst: *mut f32 = if s == 1 {
                            yg[grp * og * p..(grp + 1) * og * p].as_mut_ptr().cast()
                        } else {
                            out.as_mut_ptr()
                        };
                        // SAFETY: `dst` spans og x ld elements (one sample's rows of
                        // this group in `yg`, or the scratch `out`).
                        unsafe {
                            matmul(
                                og,
                                ld,
                                k,
                                dst,
                                (ld as isize, 1),
                                false,
                                &w[grp * wg_len..(grp + 1) * wg_len],
                                (k as isize, 1),
                                col,
                                (ld as isize, 1),
                                par,
                            )
                        };
                        if s == 1 {
                            continue;
                        }
                        for j in 0..s {
                            for c in 0..og {
                                let to = &mut yg[j * ol + (grp * og + c) * p..][..p];
                                let from = &out[c * ld + j * p..][..p];
                                for (o, &v) in to.iter_mut().zip(from) {
                                    o.write(v);
                                }
                            }
                        }
                    }
                }
            });
        });
    // SAFETY: every sample's every channel row was written above, by gemm
    // (one sample at a time) or by the copy out of the scratch matrix.
    unsafe { assume_init(y) }
}

/// The forward convolution op (`x`, `w`) -> `y`, with a backward pass.
#[derive(Debug, Clone, Copy)]
pub struct Conv2dOp(pub ConvOptions);

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
        let d = Dims::new(l1.dims(), l2.dims(), self.0.geometry, self.0.groups)?;
        let unfold = Unfold::new(self.0.grid());
        let (x, w) = (crate::ops::slice(s1, l1)?, crate::ops::slice(s2, l2)?);
        let y = forward_cpu(x, w, &d, unfold);
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
        let d = Dims::new(l1.dims(), l2.dims(), self.0.geometry, self.0.groups)?;
        if self.0.input_quant.is_some() {
            candle_core::bail!("the fused input quantisation of conv2d is CPU only; quantise the input first on CUDA");
        }
        if !l2.is_contiguous() {
            candle_core::bail!("dsnn ops need contiguous f32 tensors");
        }
        let y = crate::cuda::conv2d(s1, l1, s2, l2, &d.cuda()?)?;
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
        // The input quantisation passes the gradient straight through.
        let dx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(
                w,
                &Conv2dBackwardInput {
                    geometry: self.0.geometry,
                    groups: self.0.groups,
                    input_hw: (x.dim(2)?, x.dim(3)?),
                },
            )?)
        } else {
            None
        };
        let dw = x.apply_op2_no_bwd(
            &grad,
            &Conv2dBackwardWeight {
                options: self.0,
                kernel: (w.dim(2)?, w.dim(3)?),
            },
        )?;
        Ok((dx, Some(dw)))
    }
}

/// Copies the gradients of group `grp`'s channels of samples
/// `first..first + s` (each `og x p`) side by side into `cat` (`og x s*p`).
fn gather_grad(dy: &[f32], d: &Dims, first: usize, s: usize, grp: usize, cat: &mut [f32]) {
    let (p, ol, og) = (d.p(), d.out_len(), d.og());
    let ld = s * p;
    for j in 0..s {
        let src = &dy[(first + j) * ol + grp * og * p..][..og * p];
        for c in 0..og {
            cat[c * ld + j * p..c * ld + (j + 1) * p].copy_from_slice(&src[c * p..(c + 1) * p]);
        }
    }
}

/// Copies the gradients of group `grp`'s channels of samples
/// `first..first + s` (each `og x p`) transposed into `cat` (`s*p x og`), a
/// block of 8 positions at a time so that reads and writes both stay within
/// a few cache lines.
fn gather_grad_transposed(
    dy: &[f32],
    d: &Dims,
    first: usize,
    s: usize,
    grp: usize,
    cat: &mut [f32],
) {
    let (p, ol, og) = (d.p(), d.out_len(), d.og());
    const B: usize = 8;
    for j in 0..s {
        let src = &dy[(first + j) * ol + grp * og * p..][..og * p];
        let dst = &mut cat[j * p * og..(j + 1) * p * og];
        for q0 in (0..p).step_by(B) {
            let q1 = (q0 + B).min(p);
            for c in 0..og {
                let from = &src[c * p + q0..c * p + q1];
                for (i, &v) in from.iter().enumerate() {
                    dst[(q0 + i) * og + c] = v;
                }
            }
        }
    }
}

/// The gradients of group `grp` of samples `first..first + s` as one
/// `og x s*p` matrix: a single sample's slice of `dy` as it is, several
/// gathered into `cat`.
fn gathered<'a>(
    dy: &'a [f32],
    d: &Dims,
    first: usize,
    s: usize,
    grp: usize,
    cat: &'a mut [f32],
) -> &'a [f32] {
    if s == 1 {
        &dy[first * d.out_len() + grp * d.og() * d.p()..][..d.og() * d.p()]
    } else {
        gather_grad(dy, d, first, s, grp, cat);
        cat
    }
}

/// The sizes of the convolution that computes the input gradient of a
/// stride-1 convolution `d` as a forward convolution of `dy`, or `None`
/// where that does not apply (stride > 1, a non-square kernel, padding
/// wider than the kernel reaches) or does not pay (more output than input
/// channels per group).
///
/// For stride 1, `dx[ci, y, x] = sum W[co, ci, i, j] dy[co, y + pad - i, x + pad - j]`
/// is the convolution of `dy` (padded by `k - 1 - pad`) with the weight
/// flipped in both spatial axes and its channel axes swapped
/// ([`flip_transpose`]). The forward path multiplies with the inner
/// dimension `og * k * k` and writes `dx` once, where the im2col path's
/// gemm has the inner dimension `og` and folds its `k * k` times larger
/// result back with col2im: with ResNet's 16 channels the gemm then runs
/// far below its peak.
fn transposed_dims(d: &Dims) -> Result<Option<Dims>> {
    // The unfolded dy has `og * k * k` rows where col2im's matrix has
    // `cg * k * k`: with more output than input channels per group (LeNet-5's
    // 6 -> 16) the unfolding would outweigh what the gemm gains.
    if d.stride != 1 || d.kh != d.kw || d.pad >= d.kh || d.og() > d.cg() {
        return Ok(None);
    }
    let geometry = ConvGeometry {
        stride: 1,
        padding: d.kh - 1 - d.pad,
    };
    let t = Dims::new(
        &[d.n, d.cout, d.ho, d.wo],
        &[d.cin, d.og(), d.kh, d.kw],
        geometry,
        d.groups,
    )?;
    debug_assert_eq!((t.ho, t.wo), (d.h, d.w));
    Ok(Some(t))
}

/// The weight of [`transposed_dims`]' convolution: `w` (`cout x cg x kh x kw`)
/// as `cin x og x kh x kw`, spatially flipped, group by group:
/// `w'[g*cg + ci, co, i, j] = w[g*og + co, ci, kh-1-i, kw-1-j]`.
fn flip_transpose(w: &[f32], d: &Dims) -> Vec<f32> {
    let (cg, og, kk) = (d.cg(), d.og(), d.kh * d.kw);
    let mut out = vec![0f32; w.len()];
    for grp in 0..d.groups {
        for co in 0..og {
            for ci in 0..cg {
                let src = &w[((grp * og + co) * cg + ci) * kk..][..kk];
                let dst = &mut out[((grp * cg + ci) * og + co) * kk..][..kk];
                for (o, &v) in dst.iter_mut().zip(src.iter().rev()) {
                    *o = v;
                }
            }
        }
    }
    out
}

/// Gradient of the convolution with respect to its input: (`dy`, `w`) -> `dx`.
#[derive(Debug, Clone, Copy)]
struct Conv2dBackwardInput {
    geometry: ConvGeometry,
    groups: usize,
    input_hw: (usize, usize),
}

impl Conv2dBackwardInput {
    /// The sizes, checking `dy` against the weight.
    fn dims(&self, l1: &Layout, l2: &Layout) -> Result<(Dims, [usize; 4])> {
        let (n, wdims) = (l1.dims()[0], l2.dims());
        let xdims = [n, wdims[1] * self.groups, self.input_hw.0, self.input_hw.1];
        let d = Dims::new(&xdims, wdims, self.geometry, self.groups)?;
        if l1.dims() != [n, d.cout, d.ho, d.wo] {
            candle_core::bail!(
                "conv2d backward: gradient shape {:?} does not match",
                l1.dims()
            );
        }
        Ok((d, xdims))
    }
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
        let (d, xdims) = self.dims(l1, l2)?;
        let n = d.n;
        let (dy, w) = (crate::ops::slice(s1, l1)?, crate::ops::slice(s2, l2)?);
        if let Some(t) = transposed_dims(&d)? {
            let dx = forward_cpu(dy, &flip_transpose(w, &d), &t, Unfold::Plain);
            return Ok((CpuStorage::F32(dx), Shape::from(xdims.to_vec())));
        }
        let (k, p, il, og) = (d.k(), d.p(), d.in_len(), d.og());
        let (cg_len, wg_len) = (d.cg() * d.hw(), og * k);
        // Zeroed here once: col2im accumulates into it.
        let mut dx = vec![0f32; n * il];
        let (per_task, par) = plan(n);
        let g = group_size(&d, per_task);
        dx.par_chunks_mut(per_task * il)
            .enumerate()
            .for_each(|(t, dxs)| {
                with_scratch(k * p * g, og * p * g, |col, cat| {
                    for (gi, dxg) in dxs.chunks_mut(g * il).enumerate() {
                        let first = t * per_task + gi * g;
                        let s = dxg.len() / il;
                        let ld = s * p;
                        for grp in 0..d.groups {
                            let dyg = gathered(dy, &d, first, s, grp, cat);
                            // col (k x s*p) = W_grp^T (k x og) * dy_grp (og x s*p)
                            // SAFETY: `col` holds k x ld elements.
                            unsafe {
                                matmul(
                                    k,
                                    ld,
                                    og,
                                    col.as_mut_ptr(),
                                    (ld as isize, 1),
                                    false,
                                    &w[grp * wg_len..(grp + 1) * wg_len],
                                    (1, k as isize),
                                    dyg,
                                    (ld as isize, 1),
                                    par,
                                )
                            };
                            for (j, dxn) in dxg.chunks_mut(il).enumerate() {
                                let plane = &mut dxn[grp * cg_len..(grp + 1) * cg_len];
                                col2im(&mut *col, &d, plane, ld, j * p);
                            }
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
        let (d, xdims) = self.dims(l1, l2)?;
        if !l2.is_contiguous() {
            candle_core::bail!("dsnn ops need contiguous f32 tensors");
        }
        let dx = crate::cuda::conv2d_backward_input(s1, l1, s2, l2, &d.cuda()?)?;
        Ok((dx, Shape::from(xdims.to_vec())))
    }
}

/// Gradient of the convolution with respect to its weight: (`x`, `dy`) ->
/// `dw`, unfolding `x` as the forward did (quantised when it was).
#[derive(Debug, Clone, Copy)]
struct Conv2dBackwardWeight {
    options: ConvOptions,
    kernel: (usize, usize),
}

impl Conv2dBackwardWeight {
    /// The sizes, checking `dy` against the input.
    fn dims(&self, l1: &Layout, l2: &Layout) -> Result<(Dims, [usize; 4])> {
        let xdims = l1.dims();
        let (cout, groups) = (l2.dims()[1], self.options.groups);
        if groups == 0 || xdims.len() != 4 || !xdims[1].is_multiple_of(groups) {
            candle_core::bail!(
                "conv2d backward: input {xdims:?} does not split into {groups} groups"
            );
        }
        let wdims = [cout, xdims[1] / groups, self.kernel.0, self.kernel.1];
        let d = Dims::new(xdims, &wdims, self.options.geometry, groups)?;
        if l2.dims() != [d.n, cout, d.ho, d.wo] {
            candle_core::bail!(
                "conv2d backward: gradient shape {:?} does not match",
                l2.dims()
            );
        }
        Ok((d, wdims))
    }
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
        let (d, wdims) = self.dims(l1, l2)?;
        let (x, dy) = (crate::ops::slice(s1, l1)?, crate::ops::slice(s2, l2)?);
        let dw = backward_weight_cpu(x, dy, &d, self.options.grid(), WeightGradAlgorithm::Auto);
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
        let (d, wdims) = self.dims(l1, l2)?;
        if self.options.input_quant.is_some() {
            candle_core::bail!("the fused input quantisation of conv2d is CPU only; quantise the input first on CUDA");
        }
        let dw = crate::cuda::conv2d_backward_weight(s1, l1, s2, l2, &d.cuda()?)?;
        Ok((dw, Shape::from(wdims.to_vec())))
    }
}

/// The weight gradient of `d` (`cout x cg x kh x kw`) from the input `x` and
/// the output gradient `dy` by im2col + gemm: per group of samples the input
/// is unfolded as the forward did (rounded as `unfold` says) and
/// `dw += dy * col^T`, samples in parallel with per-task partial sums.
fn im2col_backward_weight(x: &[f32], dy: &[f32], d: &Dims, unfold: Unfold) -> Vec<f32> {
    let (k, p, og, il) = (d.k(), d.p(), d.og(), d.in_len());
    let (cg_len, wg_len) = (d.cg() * d.hw(), og * k);
    let (per_task, par) = plan(d.n);
    let g = group_size(d, per_task);
    let tasks = d.n.div_ceil(per_task);
    let partials: Vec<Vec<f32>> = (0..tasks)
        .into_par_iter()
        .map(|t| {
            // Per group, the transpose of this task's dw: `k x og`.
            let mut dw_t = vec![0f32; d.cout * k];
            with_scratch(k * p * g, og * p * g, |col, cat| {
                let end = ((t + 1) * per_task).min(d.n);
                let mut first = t * per_task;
                while first < end {
                    let s = g.min(end - first);
                    let ld = s * p;
                    for grp in 0..d.groups {
                        for j in 0..s {
                            let xn = &x[(first + j) * il + grp * cg_len..][..cg_len];
                            im2col(xn, d, col, ld, j * p, unfold);
                        }
                        gather_grad_transposed(dy, d, first, s, grp, cat);
                        // dw (og x k) += dy (og x s*p) * col^T (s*p x k), with
                        // dw held column-major and dy transposed, so that gemm
                        // reads both operands along unit strides and packs only
                        // the small dy^T instead of gathering the column matrix.
                        let dst = &mut dw_t[grp * wg_len..(grp + 1) * wg_len];
                        // SAFETY: `dst` holds og x k initialised elements.
                        unsafe {
                            matmul(
                                og,
                                k,
                                ld,
                                dst.as_mut_ptr(),
                                (1, og as isize),
                                true,
                                cat,
                                (1, og as isize),
                                col,
                                (1, ld as isize),
                                par,
                            )
                        };
                    }
                    first += s;
                }
            });
            dw_t
        })
        .collect();
    let mut dw_t = vec![0f32; d.cout * k];
    for part in &partials {
        for (a, b) in dw_t.iter_mut().zip(part) {
            *a += b;
        }
    }
    let mut dw = vec![0f32; d.cout * k];
    for grp in 0..d.groups {
        let block = &dw_t[grp * wg_len..(grp + 1) * wg_len];
        for (r, row) in block.chunks_exact(og).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                dw[(grp * og + c) * k + r] = v;
            }
        }
    }
    dw
}

/// Convolves `x` (`n x cin x h x w`) with `w` (`cout x cin x kh x kw`), with a
/// backward pass for both; no bias.
pub fn conv2d(x: &Tensor, w: &Tensor, geometry: ConvGeometry) -> Result<Tensor> {
    conv2d_with(x, w, ConvOptions::plain(geometry))
}

/// A grouped convolution: `w` is `cout x cin / groups x kh x kw`, and output
/// channel group `g` sees only input channel group `g` (`groups == cin` is a
/// depthwise convolution). On CUDA, `groups > 1` runs direct kernels
/// (`cuda::grouped_conv`).
pub fn conv2d_grouped(
    x: &Tensor,
    w: &Tensor,
    geometry: ConvGeometry,
    groups: usize,
) -> Result<Tensor> {
    conv2d_with(
        x,
        w,
        ConvOptions {
            groups,
            ..ConvOptions::plain(geometry)
        },
    )
}

/// The convolution with every option ([`ConvOptions`]): groups and the
/// fused fixed-point rounding of the input.
pub fn conv2d_with(x: &Tensor, w: &Tensor, options: ConvOptions) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&w.contiguous()?, Conv2dOp(options))
}
