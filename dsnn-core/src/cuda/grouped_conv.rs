//! Grouped and depthwise convolution on CUDA (`conv::Conv2dOp` with
//! `groups > 1`): forward, input gradient and weight gradient as direct
//! kernels (`dsnn_conv_grouped*` in `kernels/dsnn_ops.cu`).
//!
//! Why direct kernels and not im2col + cuBLAS per group: in a depthwise
//! layer (MobileNetV2's 3x3 ones) every group is one input and one output
//! channel, so each group's gemm has one output row and `k = 9`: one tiny
//! cuBLAS call per channel (up to 960 per layer), or a batched call whose
//! weight broadcast candle's strided layouts cannot express. A thread per
//! output (or input) element reading its window directly does the same
//! arithmetic in one launch. For groups with many channels each (say
//! `groups = 2` over 256 channels) cuBLAS per group would be faster; no
//! network of dsnn has such a layer, and the direct kernels are exact for it.

use super::{alloc, count, grid, per_channel, ptx, storage, view, ConvSizes, MODULE};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, Layout, Result};

impl ConvSizes {
    /// Input channels per group.
    fn cg(&self) -> usize {
        self.cin / self.groups.max(1)
    }

    /// The kernels' shared trailing arguments: cin, h, w, cout, kh, kw, ho,
    /// wo, stride, pad, groups (`GCONV_PARAMS`), after checking the groups.
    fn grouped_args(&self) -> Result<[u32; 11]> {
        let g = self.groups;
        if g == 0 || !self.cin.is_multiple_of(g) || !self.cout.is_multiple_of(g) {
            candle_core::bail!(
                "grouped conv2d: {} input and {} output channels do not split into {g} groups",
                self.cin,
                self.cout
            );
        }
        let v = [
            self.cin,
            self.h,
            self.w,
            self.cout,
            self.kh,
            self.kw,
            self.ho,
            self.wo,
            self.stride,
            self.pad,
            g,
        ];
        let mut out = [0u32; 11];
        for (o, &v) in out.iter_mut().zip(&v) {
            *o = count(v)?;
        }
        Ok(out)
    }

    /// Elements of the input, the weight and the output.
    fn lens(&self) -> (usize, usize, usize) {
        (
            self.n * self.cin * self.h * self.w,
            self.cout * self.cg() * self.kh * self.kw,
            self.n * self.cout * self.p(),
        )
    }
}

/// Fails unless a tensor has the elements its role needs.
fn expect_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        candle_core::bail!("grouped conv2d: the {what} has {got} elements, expected {want}");
    }
    Ok(())
}

/// `y = conv(x, w)` with groups (`dsnn_conv_grouped`).
pub(super) fn forward(
    xs: &CudaStorage,
    xl: &Layout,
    ws: &CudaStorage,
    wl: &Layout,
    d: &ConvSizes,
) -> Result<CudaStorage> {
    let dev = xs.device();
    let (x, w) = (view(xs, xl)?, view(ws, wl)?);
    let (x_len, w_len, y_len) = d.lens();
    expect_len("input", x.len(), x_len)?;
    expect_len("weight", w.len(), w_len)?;
    count(x_len)?;
    let t = count(y_len)?;
    let args = d.grouped_args()?;
    let mut y = alloc(dev, y_len)?;
    let f = dev.get_or_load_custom_func("dsnn_conv_grouped", MODULE, ptx(dev)?)?;
    let mut b = f.builder();
    b.arg(&t).arg(&x).arg(&w).arg(&mut y);
    for v in &args {
        b.arg(v);
    }
    // SAFETY: the arguments match the kernel's signature.
    unsafe { b.launch(grid(t)) }.w()?;
    Ok(storage(y, dev))
}

/// The input gradient `dx` from `dy` and `w` (`dsnn_conv_grouped_bwd_input`).
pub(super) fn backward_input(
    dys: &CudaStorage,
    dyl: &Layout,
    ws: &CudaStorage,
    wl: &Layout,
    d: &ConvSizes,
) -> Result<CudaStorage> {
    let dev = dys.device();
    let (dy, w) = (view(dys, dyl)?, view(ws, wl)?);
    let (x_len, w_len, y_len) = d.lens();
    expect_len("output gradient", dy.len(), y_len)?;
    expect_len("weight", w.len(), w_len)?;
    count(y_len)?;
    let t = count(x_len)?;
    let args = d.grouped_args()?;
    let mut dx = alloc(dev, x_len)?;
    let f = dev.get_or_load_custom_func("dsnn_conv_grouped_bwd_input", MODULE, ptx(dev)?)?;
    let mut b = f.builder();
    b.arg(&t).arg(&dy).arg(&w).arg(&mut dx);
    for v in &args {
        b.arg(v);
    }
    // SAFETY: the arguments match the kernel's signature.
    unsafe { b.launch(grid(t)) }.w()?;
    Ok(storage(dx, dev))
}

/// Most blocks of the weight-gradient launch (the kernel strides over the
/// weight elements beyond them).
const MAX_WEIGHT_BLOCKS: u32 = 1 << 16;

/// The weight gradient `dw` from `x` and `dy`
/// (`dsnn_conv_grouped_bwd_weight`: a block per weight element).
pub(super) fn backward_weight(
    xs: &CudaStorage,
    xl: &Layout,
    dys: &CudaStorage,
    dyl: &Layout,
    d: &ConvSizes,
) -> Result<CudaStorage> {
    let dev = xs.device();
    let (x, dy) = (view(xs, xl)?, view(dys, dyl)?);
    let (x_len, w_len, y_len) = d.lens();
    expect_len("input", x.len(), x_len)?;
    expect_len("output gradient", dy.len(), y_len)?;
    count(x_len)?;
    // The kernel counts n * ho * wo positions in 32 bits.
    count(y_len)?;
    let nw = count(w_len)?;
    let n = count(d.n)?;
    let args = d.grouped_args()?;
    let mut dw = alloc(dev, w_len)?;
    let f = dev.get_or_load_custom_func("dsnn_conv_grouped_bwd_weight", MODULE, ptx(dev)?)?;
    let mut b = f.builder();
    b.arg(&nw).arg(&x).arg(&dy).arg(&mut dw).arg(&n);
    for v in &args {
        b.arg(v);
    }
    // SAFETY: the arguments match the kernel's signature; it runs with the
    // reduction block size (`THREADS`, the kernel's BN_THREADS).
    unsafe { b.launch(per_channel(nw.min(MAX_WEIGHT_BLOCKS))) }.w()?;
    Ok(storage(dw, dev))
}
