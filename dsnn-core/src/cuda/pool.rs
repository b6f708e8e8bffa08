//! Max pooling with any square window, stride and padding on CUDA
//! (`pool::MaxPool` and its backward; `dsnn_max_pool*` in
//! `kernels/dsnn_ops.cu`). Each window chooses its element as the CPU does,
//! ties and NaNs included, so forward and backward are bit-identical to it.

use super::{alloc, count, grid, ptx, storage, view, MODULE};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, Layout, Result};

/// The sizes of one max pooling (validated by `pool::PoolWindow`, which
/// owns the geometry rules).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSizes {
    /// Planes (batch x channels).
    pub planes: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output height.
    pub ho: usize,
    /// Output width.
    pub wo: usize,
    /// Side of the square window.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
    /// Minus-infinity padding on each side (at most `kernel / 2`).
    pub pad: usize,
}

impl PoolSizes {
    /// The kernels' trailing arguments: h, w, ho, wo, k, stride, pad.
    fn args(&self) -> Result<[u32; 7]> {
        if self.kernel == 0 || self.stride == 0 || 2 * self.pad > self.kernel {
            candle_core::bail!(
                "max pooling: window {} stride {} padding {} is not a valid geometry",
                self.kernel,
                self.stride,
                self.pad
            );
        }
        let v = [
            self.h,
            self.w,
            self.ho,
            self.wo,
            self.kernel,
            self.stride,
            self.pad,
        ];
        let mut out = [0u32; 7];
        for (o, &v) in out.iter_mut().zip(&v) {
            *o = count(v)?;
        }
        Ok(out)
    }

    fn in_len(&self) -> usize {
        self.planes * self.h * self.w
    }

    fn out_len(&self) -> usize {
        self.planes * self.ho * self.wo
    }
}

/// `pool::MaxPool` forward: `x` (planes of h x w) to planes of ho x wo.
pub(crate) fn max_pool(s: &CudaStorage, l: &Layout, d: &PoolSizes) -> Result<CudaStorage> {
    let dev = s.device();
    let x = view(s, l)?;
    if x.len() != d.in_len() {
        candle_core::bail!(
            "max pooling: input has {} elements, expected {}",
            x.len(),
            d.in_len()
        );
    }
    count(d.in_len())?;
    let total = count(d.out_len())?;
    let args = d.args()?;
    let mut y = alloc(dev, d.out_len())?;
    let f = dev.get_or_load_custom_func("dsnn_max_pool", MODULE, ptx(dev)?)?;
    let mut b = f.builder();
    b.arg(&total).arg(&x).arg(&mut y);
    for v in &args {
        b.arg(v);
    }
    // SAFETY: the arguments match the kernel's signature.
    unsafe { b.launch(grid(total)) }.w()?;
    Ok(storage(y, dev))
}

/// `pool::MaxPoolBackward`: `dx` from `x` and `dy`. Finds every window's
/// chosen element (`dsnn_max_pool_argmax`), then each input element gathers
/// the gradients of the windows that chose it (`dsnn_max_pool_bwd`).
pub(crate) fn max_pool_backward(
    xs: &CudaStorage,
    xl: &Layout,
    gs: &CudaStorage,
    gl: &Layout,
    d: &PoolSizes,
) -> Result<CudaStorage> {
    let dev = xs.device();
    let (x, g) = (view(xs, xl)?, view(gs, gl)?);
    if x.len() != d.in_len() || g.len() != d.out_len() {
        candle_core::bail!(
            "max pooling backward: input of {} and gradient of {} elements, expected {} and {}",
            x.len(),
            g.len(),
            d.in_len(),
            d.out_len()
        );
    }
    let outs = count(d.out_len())?;
    let ins = count(d.in_len())?;
    let args = d.args()?;
    // SAFETY: `dsnn_max_pool_argmax` writes every element before it is read.
    let mut arg = unsafe { dev.alloc::<u32>(d.out_len().max(1)) }?;
    let f = dev.get_or_load_custom_func("dsnn_max_pool_argmax", MODULE, ptx(dev)?)?;
    let mut b = f.builder();
    b.arg(&outs).arg(&x).arg(&mut arg);
    for v in &args {
        b.arg(v);
    }
    // SAFETY: the arguments match the kernel's signature.
    unsafe { b.launch(grid(outs)) }.w()?;
    let mut dx = alloc(dev, d.in_len())?;
    let f = dev.get_or_load_custom_func("dsnn_max_pool_bwd", MODULE, ptx(dev)?)?;
    let mut b = f.builder();
    b.arg(&ins).arg(&arg).arg(&g).arg(&mut dx);
    for v in &args {
        b.arg(v);
    }
    // SAFETY: the arguments match the kernel's signature.
    unsafe { b.launch(grid(ins)) }.w()?;
    Ok(storage(dx, dev))
}
