//! Max pooling with any square window, stride and padding (GoogLeNet's 3x3
//! poolings), forward and backward on the CPU and, with the `cuda` feature,
//! on a GPU (`cuda::pool`, bit-identical to the CPU).
//!
//! candle's own max pooling has no padding and no backward pass when the
//! window and stride differ; this op has both. Padding counts as minus
//! infinity, as in PyTorch, and the gradient of a window goes to its first
//! largest element in row-major order (PyTorch's choice among ties).

use crate::ops::slice;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// The window of a max pooling: `kernel x kernel`, moved by `stride`, over
/// the input padded by `padding` on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolWindow {
    /// Side of the square window.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
    /// Implicit minus-infinity padding on each side.
    pub padding: usize,
}

impl PoolWindow {
    /// The output side for an input side `n` (PyTorch's floor rule), or
    /// `None` when the window does not fit or the geometry is invalid
    /// (padding must be at most half the window, as PyTorch requires).
    pub fn output_side(&self, n: usize) -> Option<usize> {
        if self.kernel == 0 || self.stride == 0 || 2 * self.padding > self.kernel {
            return None;
        }
        let padded = n + 2 * self.padding;
        (padded >= self.kernel).then(|| (padded - self.kernel) / self.stride + 1)
    }

    fn dims(&self, l: &Layout) -> Result<Dims> {
        let d = l.dims();
        if d.len() != 4 {
            candle_core::bail!("max pooling needs N x C x H x W, got {d:?}");
        }
        let (oh, ow) = match (self.output_side(d[2]), self.output_side(d[3])) {
            (Some(oh), Some(ow)) => (oh, ow),
            _ => candle_core::bail!(
                "max pooling {}x{} (stride {}, padding {}) does not fit a {}x{} map",
                self.kernel,
                self.kernel,
                self.stride,
                self.padding,
                d[2],
                d[3]
            ),
        };
        Ok(Dims {
            planes: d[0] * d[1],
            h: d[2],
            w: d[3],
            oh,
            ow,
        })
    }

    /// The sizes as the CUDA kernels take them.
    #[cfg(feature = "cuda")]
    fn cuda(&self, d: &Dims) -> crate::cuda::PoolSizes {
        crate::cuda::PoolSizes {
            planes: d.planes,
            h: d.h,
            w: d.w,
            ho: d.oh,
            wo: d.ow,
            kernel: self.kernel,
            stride: self.stride,
            pad: self.padding,
        }
    }

    /// The index (within its plane) of the first largest element of output
    /// position `(oy, ox)`'s window.
    #[inline]
    fn argmax(&self, plane: &[f32], d: &Dims, oy: usize, ox: usize) -> usize {
        let (mut best, mut at) = (f32::NEG_INFINITY, usize::MAX);
        let y0 = (oy * self.stride) as isize - self.padding as isize;
        let x0 = (ox * self.stride) as isize - self.padding as isize;
        for ky in 0..self.kernel as isize {
            let y = y0 + ky;
            if y < 0 || y >= d.h as isize {
                continue;
            }
            for kx in 0..self.kernel as isize {
                let x = x0 + kx;
                if x < 0 || x >= d.w as isize {
                    continue;
                }
                let i = y as usize * d.w + x as usize;
                let v = plane[i];
                if v > best || at == usize::MAX || v.is_nan() {
                    best = v;
                    at = i;
                }
            }
        }
        at
    }
}

struct Dims {
    planes: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
}

/// The forward op.
struct MaxPool(PoolWindow);

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "dsnn-max-pool"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = self.0.dims(l)?;
        let x = slice(s, l)?;
        let mut y = vec![0f32; d.planes * d.oh * d.ow];
        y.par_chunks_mut(d.oh * d.ow)
            .enumerate()
            .for_each(|(p, out)| {
                let plane = &x[p * d.h * d.w..(p + 1) * d.h * d.w];
                for oy in 0..d.oh {
                    for ox in 0..d.ow {
                        out[oy * d.ow + ox] = plane[self.0.argmax(plane, &d, oy, ox)];
                    }
                }
            });
        let dims = l.dims();
        Ok((
            CpuStorage::F32(y),
            Shape::from((dims[0], dims[1], d.oh, d.ow)),
        ))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let d = self.0.dims(l)?;
        let y = crate::cuda::max_pool(s, l, &self.0.cuda(&d))?;
        let dims = l.dims();
        Ok((y, Shape::from((dims[0], dims[1], d.oh, d.ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dx = arg.apply_op2_no_bwd(&grad.contiguous()?, &MaxPoolBackward(self.0))?;
        Ok(Some(dx))
    }
}

/// The backward op: `(x, dy) -> dx`.
struct MaxPoolBackward(PoolWindow);

impl CustomOp2 for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "dsnn-max-pool-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = self.0.dims(l1)?;
        let (x, dy) = (slice(s1, l1)?, slice(s2, l2)?);
        if dy.len() != d.planes * d.oh * d.ow {
            candle_core::bail!("max pooling backward: gradient of the wrong size");
        }
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(d.h * d.w)
            .enumerate()
            .for_each(|(p, out)| {
                let plane = &x[p * d.h * d.w..(p + 1) * d.h * d.w];
                let g = &dy[p * d.oh * d.ow..(p + 1) * d.oh * d.ow];
                for oy in 0..d.oh {
                    for ox in 0..d.ow {
                        out[self.0.argmax(plane, &d, oy, ox)] += g[oy * d.ow + ox];
                    }
                }
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let d = self.0.dims(l1)?;
        let dx = crate::cuda::max_pool_backward(s1, l1, s2, l2, &self.0.cuda(&d))?;
        Ok((dx, l1.shape().clone()))
    }
}

/// Max pooling of `x` (`N x C x H x W`) with `window`, on the CPU or (with
/// the `cuda` feature) a CUDA GPU.
pub fn max_pool(x: &Tensor, window: PoolWindow) -> Result<Tensor> {
    let supported = x.device().is_cpu() || (cfg!(feature = "cuda") && x.device().is_cuda());
    if !supported {
        candle_core::bail!(
            "max pooling with a {}x{} window (stride {}, padding {}) runs on the CPU and CUDA only",
            window.kernel,
            window.kernel,
            window.stride,
            window.padding
        );
    }
    x.contiguous()?.apply_op1(MaxPool(window))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn pools_3x3_with_padding_and_routes_gradients_to_the_first_maximum() {
        let x = Var::from_vec(
            vec![1f32, 5., 2., 5., 0., 3., -1., 4., 2., 6., 0., 1.],
            (1, 1, 3, 4),
            &Device::Cpu,
        )
        .unwrap();
        let w = PoolWindow {
            kernel: 3,
            stride: 2,
            padding: 1,
        };
        let y = max_pool(x.as_tensor(), w).unwrap();
        // Output 2x2: windows centred on (0,0), (0,2), (2,0), (2,2).
        assert_eq!(y.dims(), &[1, 1, 2, 2]);
        let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(v, vec![5., 5., 6., 6.]);
        let g = y.sum_all().unwrap().backward().unwrap();
        let dx: Vec<f32> = g
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        // The two windows at the top share the first 5 (index 1; the 5 at
        // index 3 is a later tie in the second window), the bottom ones the 6.
        assert_eq!(dx, vec![0., 2., 0., 0., 0., 0., 0., 0., 0., 2., 0., 0.]);
        // Stride 1 keeps the size; a window that does not fit is refused.
        let same = PoolWindow {
            kernel: 3,
            stride: 1,
            padding: 1,
        };
        assert_eq!(max_pool(x.as_tensor(), same).unwrap().dims(), &[1, 1, 3, 4]);
        let big = PoolWindow {
            kernel: 5,
            stride: 1,
            padding: 0,
        };
        assert!(max_pool(x.as_tensor(), big).is_err());
    }
}
