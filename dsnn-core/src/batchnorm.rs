//! Batch normalisation over `N x C x H x W`, fused into one candle op.
//!
//! candle-nn's batch norm is for inference only (it keeps no running
//! statistics) and composes many broadcast ops; training spends much of its
//! time there. This op computes the per-channel statistics, the normalised
//! output and, in backward, all three gradients in one pass each.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// Per-channel mean and biased variance of the last training batch, as
/// tensors of `C` values on the batch's device. On a GPU they stay there (views
/// of the statistics kernel's buffer), so that the running statistics are
/// updated with device ops and the forward never waits for a copy to the host.
pub type BatchStats = Arc<Mutex<Option<(Tensor, Tensor)>>>;

fn nchw(l: &Layout) -> Result<(usize, usize, usize)> {
    match l.dims() {
        &[n, c, h, w] => Ok((n, c, h * w)),
        &[n, c] => Ok((n, c, 1)),
        d => candle_core::bail!("batch norm expects N x C x H x W or N x C, got {d:?}"),
    }
}

/// The input (N x C x ...) and two per-channel parameter vectors of a batch
/// norm op, with `(n, c, hw)`; refuses parameters that are not one per
/// channel.
type BatchNormInputs<'a> = ((usize, usize, usize), &'a [f32], &'a [f32], &'a [f32]);

fn batch_norm_inputs<'a>(
    (s1, l1): (&'a CpuStorage, &Layout),
    (s2, l2): (&'a CpuStorage, &Layout),
    (s3, l3): (&'a CpuStorage, &Layout),
) -> Result<BatchNormInputs<'a>> {
    let (n, c, hw) = nchw(l1)?;
    let (x, a, b) = (
        crate::ops::slice(s1, l1)?,
        crate::ops::slice(s2, l2)?,
        crate::ops::slice(s3, l3)?,
    );
    if a.len() != c || b.len() != c {
        candle_core::bail!(
            "batch norm: {c} channels but {} scales and {} shifts",
            a.len(),
            b.len()
        );
    }
    Ok(((n, c, hw), x, a, b))
}

/// Mean and biased variance of channel `ch`, in one pass with f64 sums
/// (exact enough for activations: the f64 mantissa holds 2^53).
fn channel_stats(x: &[f32], n: usize, c: usize, hw: usize, ch: usize) -> (f32, f32) {
    let count = (n * hw) as f64;
    let (mut sum, mut sq) = (0f64, 0f64);
    for i in 0..n {
        let base = (i * c + ch) * hw;
        let (s1, s2) = x[base..base + hw]
            .iter()
            .fold((0f32, 0f32), |(a, b), &v| (a + v, b + v * v));
        sum += f64::from(s1);
        sq += f64::from(s2);
    }
    let mean = sum / count;
    (mean as f32, (sq / count - mean * mean).max(0.0) as f32)
}

/// Training-mode batch norm (`x`, `gamma`, `beta`) -> `y`, normalising with
/// the batch's own statistics, which it hands back through `stats`.
#[derive(Debug, Clone)]
pub struct BatchNormTrain {
    /// Added to the variance before the square root.
    pub eps: f32,
    /// Receives the batch mean and biased variance.
    pub stats: BatchStats,
    /// Apply a ReLU to the output (fused: one pass, no extra graph node).
    pub relu: bool,
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "dsnn-batch-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let ((n, c, hw), x, gamma, beta) = batch_norm_inputs((s1, l1), (s2, l2), (s3, l3))?;
        let stats: Vec<(f32, f32)> = (0..c)
            .into_par_iter()
            .map(|ch| channel_stats(x, n, c, hw, ch))
            .collect();
        // SAFETY: every plane `row` of `y` is written from plane `row` of `x`.
        let y = unsafe {
            crate::ops::par_build(x.len(), x.len(), hw, |row, out| {
                let ch = row % c;
                let (mean, var) = stats[ch];
                let scale = gamma[ch] / (var + self.eps).sqrt();
                let shift = beta[ch] - mean * scale;
                let src = &x[row * hw..(row + 1) * hw];
                if self.relu {
                    for (o, &v) in out.iter_mut().zip(src) {
                        o.write((v * scale + shift).max(0.0));
                    }
                } else {
                    for (o, &v) in out.iter_mut().zip(src) {
                        o.write(v * scale + shift);
                    }
                }
            })
        };
        let (means, vars): (Vec<f32>, Vec<f32>) = stats.into_iter().unzip();
        let dev = candle_core::Device::Cpu;
        let stats = (
            Tensor::from_vec(means, c, &dev)?,
            Tensor::from_vec(vars, c, &dev)?,
        );
        *self.stats.lock().expect("batch-norm stats lock") = Some(stats);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let dims = nchw(l1)?;
        let (y, stats) =
            crate::cuda::batch_norm_train(s1, l1, s2, l2, s3, l3, dims, self.eps, self.relu)?;
        *self.stats.lock().expect("batch-norm stats lock") = Some(stats);
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = gamma.dim(0)?;
        let mut grad = grad.contiguous()?;
        if self.relu {
            grad = grad.apply_op2_no_bwd(res, &crate::ops::ReluBackward)?;
        }
        let packed = x.apply_op3_no_bwd(gamma, &grad, &BatchNormBackward { eps: self.eps })?;
        let numel = x.elem_count();
        let dx = packed.narrow(0, 0, numel)?.reshape(x.shape())?;
        let dgamma = packed.narrow(0, numel, c)?;
        let dbeta = packed.narrow(0, numel + c, c)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// Backward of [`BatchNormTrain`]: (`x`, `gamma`, `dy`) -> `[dx, dgamma, dbeta]`
/// packed into one flat tensor.
#[derive(Debug, Clone, Copy)]
struct BatchNormBackward {
    eps: f32,
}

impl CustomOp3 for BatchNormBackward {
    fn name(&self) -> &'static str {
        "dsnn-batch-norm-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, hw) = nchw(l1)?;
        let (x, gamma, dy) = (
            crate::ops::slice(s1, l1)?,
            crate::ops::slice(s2, l2)?,
            crate::ops::slice(s3, l3)?,
        );
        let count = (n * hw) as f64;
        // Per channel: mean, inverse std, sum(dy), sum(dy * xhat).
        let per_channel: Vec<(f32, f32, f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                // One pass: sums of x, x^2, dy and dy*x.
                let (mut sx, mut sxx, mut sg, mut sgx) = (0f64, 0f64, 0f64, 0f64);
                for i in 0..n {
                    let base = (i * c + ch) * hw;
                    let (a, b, g, gx) = dy[base..base + hw]
                        .iter()
                        .zip(&x[base..base + hw])
                        .fold((0f32, 0f32, 0f32, 0f32), |(a, b, g, gx), (&d, &v)| {
                            (a + v, b + v * v, g + d, gx + d * v)
                        });
                    sx += f64::from(a);
                    sxx += f64::from(b);
                    sg += f64::from(g);
                    sgx += f64::from(gx);
                }
                let mean = sx / count;
                let var = (sxx / count - mean * mean).max(0.0);
                let inv = 1.0 / (var + f64::from(self.eps)).sqrt();
                // sum(dy * xhat) = inv * (sum(dy * x) - mean * sum(dy))
                (mean as f32, inv as f32, sg, inv * (sgx - mean * sg))
            })
            .collect();
        let numel = x.len();
        // SAFETY: every plane `row` of dx is written from plane `row` of dy and x.
        let mut out = unsafe {
            crate::ops::par_build(numel, numel + 2 * c, hw, |row, o| {
                let ch = row % c;
                let (mean, inv, sg, sgx) = per_channel[ch];
                let k = gamma[ch] * inv;
                let mg = (sg / count) as f32;
                let mgx = (sgx / count) as f32;
                let base = row * hw;
                for ((o, &g), &v) in o
                    .iter_mut()
                    .zip(&dy[base..base + hw])
                    .zip(&x[base..base + hw])
                {
                    let xhat = (v - mean) * inv;
                    o.write(k * (g - mg - xhat * mgx));
                }
            })
        };
        // dgamma, then dbeta, after dx (within the capacity reserved above).
        out.extend(per_channel.iter().map(|&(_, _, _, sgx)| sgx as f32));
        out.extend(per_channel.iter().map(|&(_, _, sg, _)| sg as f32));
        Ok((CpuStorage::F32(out), Shape::from(numel + 2 * c)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let dims = nchw(l1)?;
        let out = crate::cuda::batch_norm_backward(s1, l1, s2, l2, s3, l3, dims, self.eps)?;
        Ok((out, Shape::from(l1.shape().elem_count() + 2 * dims.1)))
    }
}

/// Inference-mode batch norm with the running statistics folded into a
/// per-channel `scale` and `shift`: (`x`, `scale`, `shift`) ->
/// `y = x * scale + shift`, optionally followed by a ReLU; one parallel pass over `x`
/// where candle's broadcast multiply, broadcast add and the ReLU made three
/// (candle's element-wise ops run on one thread in dsnn: see
/// `runtime::tune_process`). CPU only; callers keep the composed ops on
/// other devices.
#[derive(Debug, Clone, Copy)]
pub struct BatchNormEval {
    /// Apply a ReLU to the output.
    pub relu: bool,
}

impl CustomOp3 for BatchNormEval {
    fn name(&self) -> &'static str {
        "dsnn-batch-norm-eval"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let ((_, c, hw), x, scale, shift) = batch_norm_inputs((s1, l1), (s2, l2), (s3, l3))?;
        // Several image planes per task: the 8x8 planes of ResNet's last
        // stage are too small to be a task each.
        let planes = (4096 / hw.max(1)).max(1);
        // SAFETY: every plane `row` of `y` is written from plane `row` of `x`.
        let y = unsafe {
            crate::ops::par_build(x.len(), x.len(), planes * hw, |t, out| {
                for (i, out) in out.chunks_mut(hw).enumerate() {
                    let row = t * planes + i;
                    let (a, b) = (scale[row % c], shift[row % c]);
                    let src = &x[row * hw..(row + 1) * hw];
                    if self.relu {
                        for (o, &v) in out.iter_mut().zip(src) {
                            o.write((v * a + b).max(0.0));
                        }
                    } else {
                        for (o, &v) in out.iter_mut().zip(src) {
                            o.write(v * a + b);
                        }
                    }
                }
            })
        };
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        _shift: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Off the hot path (inference rarely differentiates): composed ops.
        let mut grad = grad.contiguous()?;
        if self.relu {
            grad = grad.apply_op2_no_bwd(res, &crate::ops::ReluBackward)?;
        }
        let c = scale.dim(0)?;
        let mut shape = vec![1; x.rank()];
        shape[1] = c;
        let dx = grad.broadcast_mul(&scale.reshape(shape)?)?;
        let per_channel = |t: &Tensor| -> Result<Tensor> {
            let t = t.transpose(0, 1)?.contiguous()?;
            t.reshape((c, t.elem_count() / c))?.sum(1)
        };
        let dscale = per_channel(&(&grad * x)?)?;
        let dshift = per_channel(&grad)?;
        Ok((Some(dx), Some(dscale), Some(dshift)))
    }
}
