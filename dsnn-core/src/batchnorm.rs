//! Batch normalisation over `N x C x H x W`, fused into one candle op.
//!
//! candle-nn's batch norm is for inference only (it keeps no running
//! statistics) and composes many broadcast ops; training spends much of its
//! time there. This op computes the per-channel statistics, the normalised
//! output and, in backward, all three gradients in one pass each.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

mod sums;

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

/// How many image planes of `hw` values one parallel task takes: the 8x8
/// planes of ResNet's last stage are too small to be a task each.
fn planes_per_task(hw: usize) -> usize {
    (4096 / hw.max(1)).max(1)
}

/// Per-channel mean and biased variance of `x` (`n x c x hw`): f32 sums
/// per plane, in parallel, reduced per channel in f64 (exact enough for
/// activations: the f64 mantissa holds 2^53).
fn channel_moments(x: &[f32], n: usize, c: usize, hw: usize) -> Vec<(f32, f32)> {
    let hw1 = hw.max(1);
    let sums: Vec<[f32; 2]> = x
        .par_chunks(planes_per_task(hw) * hw1)
        .flat_map_iter(|planes| sums::moments(planes, hw1))
        .collect();
    let count = (n * hw) as f64;
    (0..c)
        .map(|ch| {
            let (mut sum, mut sq) = (0f64, 0f64);
            for s in sums.iter().skip(ch).step_by(c.max(1)) {
                sum += f64::from(s[0]);
                sq += f64::from(s[1]);
            }
            let mean = sum / count;
            (mean as f32, (sq / count - mean * mean).max(0.0) as f32)
        })
        .collect()
}

/// The per-channel `(scale, shift)` that normalise with `stats`.
fn scale_shift(stats: &[(f32, f32)], gamma: &[f32], beta: &[f32], eps: f32) -> Vec<(f32, f32)> {
    stats
        .iter()
        .zip(gamma.iter().zip(beta))
        .map(|(&(mean, var), (&g, &b))| {
            let scale = g / (var + eps).sqrt();
            (scale, b - mean * scale)
        })
        .collect()
}

/// `y = x * scale + shift` per channel, plus `residual` when given, then a
/// ReLU when asked: one parallel pass (several planes per task).
fn normalise(
    x: &[f32],
    residual: Option<&[f32]>,
    coef: &[(f32, f32)],
    hw: usize,
    relu: bool,
) -> Vec<f32> {
    let (c, hw1) = (coef.len().max(1), hw.max(1));
    let planes = planes_per_task(hw);
    // SAFETY: every plane `row` of `y` is written from plane `row` of `x`
    // (and of `residual`).
    unsafe {
        crate::ops::par_build(x.len(), x.len(), planes * hw1, |t, out| {
            for (i, out) in out.chunks_mut(hw1).enumerate() {
                let row = t * planes + i;
                let (scale, shift) = coef[row % c];
                let src = &x[row * hw1..row * hw1 + out.len()];
                match (residual, relu) {
                    (None, false) => {
                        for (o, &v) in out.iter_mut().zip(src) {
                            o.write(v * scale + shift);
                        }
                    }
                    (None, true) => {
                        for (o, &v) in out.iter_mut().zip(src) {
                            o.write((v * scale + shift).max(0.0));
                        }
                    }
                    (Some(r), _) => {
                        let r = &r[row * hw1..row * hw1 + out.len()];
                        for ((o, &v), &r) in out.iter_mut().zip(src).zip(r) {
                            let y = v * scale + shift + r;
                            o.write(if relu { y.max(0.0) } else { y });
                        }
                    }
                }
            }
        })
    }
}

/// Publishes a batch's per-channel statistics as CPU tensors.
fn publish_stats(target: &BatchStats, stats: Vec<(f32, f32)>) -> Result<()> {
    let c = stats.len();
    let (means, vars): (Vec<f32>, Vec<f32>) = stats.into_iter().unzip();
    let dev = candle_core::Device::Cpu;
    let stats = (
        Tensor::from_vec(means, c, &dev)?,
        Tensor::from_vec(vars, c, &dev)?,
    );
    *target.lock().expect("batch-norm stats lock") = Some(stats);
    Ok(())
}

/// What batch norm's backward hands back on the CPU.
struct CpuGradients {
    dx: Vec<f32>,
    /// `dy` masked by the forward's ReLU, when asked for (the residual's
    /// gradient of [`BatchNormAddRelu`]).
    masked: Option<Vec<f32>>,
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
}

/// Batch norm's backward on the CPU in two parallel passes over the planes:
/// the per-plane sums (masking `dy` by `y > 0` when the forward ended in a
/// ReLU, and keeping the masked gradient when `keep_masked`), then `dx`.
fn backward_cpu(
    (n, c, hw): (usize, usize, usize),
    x: &[f32],
    gamma: &[f32],
    dy: &[f32],
    y: Option<&[f32]>,
    keep_masked: bool,
    eps: f32,
) -> Result<CpuGradients> {
    let len = x.len();
    if dy.len() != len || y.is_some_and(|y| y.len() != len) || gamma.len() != c {
        candle_core::bail!(
            "batch norm backward: {len} inputs, {} gradients, {} outputs, {} scales for {c} channels",
            dy.len(),
            y.map_or(len, <[f32]>::len),
            gamma.len()
        );
    }
    let hw1 = hw.max(1);
    let planes = planes_per_task(hw);
    let plane = |row: usize| row * hw1..(row + 1) * hw1;
    let mut masked = Vec::with_capacity(if keep_masked { len } else { 0 });
    let task = planes * hw1;
    let sums: Vec<[f32; 4]> = if keep_masked {
        let sums = masked.spare_capacity_mut()[..len]
            .par_chunks_mut(task)
            .enumerate()
            .flat_map_iter(|(t, out)| {
                let r = t * task..t * task + out.len();
                sums::grad_sums(
                    &dy[r.clone()],
                    &x[r.clone()],
                    y.map(|y| &y[r]),
                    Some(out),
                    hw1,
                )
            })
            .collect();
        // SAFETY: `grad_sums` wrote every element of every plane.
        unsafe { masked.set_len(len) };
        sums
    } else {
        dy.par_chunks(task)
            .enumerate()
            .flat_map_iter(|(t, d)| {
                let r = t * task..t * task + d.len();
                sums::grad_sums(d, &x[r.clone()], y.map(|y| &y[r]), None, hw1)
            })
            .collect()
    };
    let count = (n * hw) as f64;
    // Per channel: mean, inverse std, sum(g), sum(g * xhat).
    let per_channel: Vec<(f32, f32, f64, f64)> = (0..c)
        .map(|ch| {
            let (mut sx, mut sxx, mut sg, mut sgx) = (0f64, 0f64, 0f64, 0f64);
            for s in sums.iter().skip(ch).step_by(c.max(1)) {
                sx += f64::from(s[0]);
                sxx += f64::from(s[1]);
                sg += f64::from(s[2]);
                sgx += f64::from(s[3]);
            }
            let mean = sx / count;
            let var = (sxx / count - mean * mean).max(0.0);
            let inv = 1.0 / (var + f64::from(eps)).sqrt();
            // sum(g * xhat) = inv * (sum(g * x) - mean * sum(g))
            (mean as f32, inv as f32, sg, inv * (sgx - mean * sg))
        })
        .collect();
    let masked_ref = keep_masked.then_some(masked.as_slice());
    // SAFETY: every plane `row` of dx is written from plane `row` of the inputs.
    let dx = unsafe {
        crate::ops::par_build(len, len, planes * hw1, |t, out| {
            for (i, out) in out.chunks_mut(hw1).enumerate() {
                let row = t * planes + i;
                let ch = row % c;
                let (mean, inv, sg, sgx) = per_channel[ch];
                let k = gamma[ch] * inv;
                let mg = (sg / count) as f32;
                let mgx = (sgx / count) as f32;
                let r = plane(row);
                let dx_of = |g: f32, v: f32| k * (g - mg - (v - mean) * inv * mgx);
                let xs = &x[r.clone()];
                match (masked_ref, y) {
                    (Some(m), _) => {
                        for ((o, &g), &v) in out.iter_mut().zip(&m[r]).zip(xs) {
                            o.write(dx_of(g, v));
                        }
                    }
                    (None, Some(y)) => {
                        for (((o, &g), &y), &v) in
                            out.iter_mut().zip(&dy[r.clone()]).zip(&y[r]).zip(xs)
                        {
                            o.write(dx_of(sums::relu_mask(g, y), v));
                        }
                    }
                    (None, None) => {
                        for ((o, &g), &v) in out.iter_mut().zip(&dy[r]).zip(xs) {
                            o.write(dx_of(g, v));
                        }
                    }
                }
            }
        })
    };
    Ok(CpuGradients {
        dx,
        masked: keep_masked.then_some(masked),
        dgamma: per_channel
            .iter()
            .map(|&(_, _, _, sgx)| sgx as f32)
            .collect(),
        dbeta: per_channel.iter().map(|&(_, _, sg, _)| sg as f32).collect(),
    })
}

/// The f32 data of a contiguous tensor in host memory, borrowed from its
/// storage guard.
fn host_data<'a>(storage: &'a Storage, layout: &Layout) -> Result<&'a [f32]> {
    match storage {
        Storage::Cpu(s) => crate::ops::slice(s, layout),
        _ => candle_core::bail!("batch norm: expected a tensor in host memory"),
    }
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
        let stats = channel_moments(x, n, c, hw);
        let y = normalise(
            x,
            None,
            &scale_shift(&stats, gamma, beta, self.eps),
            hw,
            self.relu,
        );
        publish_stats(&self.stats, stats)?;
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
        if x.device().is_cpu() {
            // One pass of sums (the ReLU's mask applied on the fly), one for dx.
            let x = x.contiguous()?;
            let gamma = gamma.contiguous()?;
            let ((sx, lx), (sg, lg), (sd, ld), (sy, ly)) = (
                x.storage_and_layout(),
                gamma.storage_and_layout(),
                grad.storage_and_layout(),
                res.storage_and_layout(),
            );
            let y = if self.relu {
                Some(host_data(&sy, ly)?)
            } else {
                None
            };
            let g = backward_cpu(
                nchw(lx)?,
                host_data(&sx, lx)?,
                host_data(&sg, lg)?,
                host_data(&sd, ld)?,
                y,
                false,
                self.eps,
            )?;
            let dev = x.device();
            return Ok((
                Some(Tensor::from_vec(g.dx, x.shape(), dev)?),
                Some(Tensor::from_vec(g.dgamma, c, dev)?),
                Some(Tensor::from_vec(g.dbeta, c, dev)?),
            ));
        }
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

/// Training-mode batch norm of `x`, plus a residual, then a ReLU:
/// (`x`, `residual`, `gamma_beta`) -> `max(bn(x) + residual, 0)`, where
/// `gamma_beta` holds the `C` scales, then the `C` shifts (candle's custom
/// ops take three inputs). The end of a residual block as one graph node:
/// no batch-norm output tensor, and in backward one pass of sums that also
/// writes the residual's gradient (the masked `dy`), then one pass for `dx`.
/// Values equal [`BatchNormTrain`] followed by [`crate::ops::AddRelu`]
/// (the same roundings in the same order). CPU only; callers keep the two
/// ops on other devices.
#[derive(Debug, Clone)]
pub struct BatchNormAddRelu {
    /// Added to the variance before the square root.
    pub eps: f32,
    /// Receives the batch mean and biased variance.
    pub stats: BatchStats,
}

impl CustomOp3 for BatchNormAddRelu {
    fn name(&self) -> &'static str {
        "dsnn-batch-norm-add-relu"
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
        let (x, residual, gamma_beta) = (
            crate::ops::slice(s1, l1)?,
            crate::ops::slice(s2, l2)?,
            crate::ops::slice(s3, l3)?,
        );
        if l1.shape() != l2.shape() || gamma_beta.len() != 2 * c {
            candle_core::bail!(
                "batch norm + residual: input {:?}, residual {:?}, {} scales and shifts for {c} channels",
                l1.dims(),
                l2.dims(),
                gamma_beta.len()
            );
        }
        let (gamma, beta) = gamma_beta.split_at(c);
        let stats = channel_moments(x, n, c, hw);
        let y = normalise(
            x,
            Some(residual),
            &scale_shift(&stats, gamma, beta, self.eps),
            hw,
            true,
        );
        publish_stats(&self.stats, stats)?;
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _residual: &Tensor,
        gamma_beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = gamma_beta.dim(0)? / 2;
        let grad = grad.contiguous()?;
        let x = x.contiguous()?;
        let gamma = gamma_beta.narrow(0, 0, c)?.contiguous()?;
        let ((sx, lx), (sg, lg), (sd, ld), (sy, ly)) = (
            x.storage_and_layout(),
            gamma.storage_and_layout(),
            grad.storage_and_layout(),
            res.storage_and_layout(),
        );
        let g = backward_cpu(
            nchw(lx)?,
            host_data(&sx, lx)?,
            host_data(&sg, lg)?,
            host_data(&sd, ld)?,
            Some(host_data(&sy, ly)?),
            true,
            self.eps,
        )?;
        let dev = x.device();
        let masked = g.masked.unwrap_or_default();
        let mut dgamma_beta = g.dgamma;
        dgamma_beta.extend(g.dbeta);
        Ok((
            Some(Tensor::from_vec(g.dx, x.shape(), dev)?),
            Some(Tensor::from_vec(masked, x.shape(), dev)?),
            Some(Tensor::from_vec(dgamma_beta, 2 * c, dev)?),
        ))
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
        let numel = x.len();
        let g = backward_cpu((n, c, hw), x, gamma, dy, None, false, self.eps)?;
        let mut out = g.dx;
        out.reserve_exact(2 * c);
        out.extend(g.dgamma);
        out.extend(g.dbeta);
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
