//! The optimisers' element-wise update rules, applied in place to a parameter
//! and its state buffers where the parameter lives: a host loop on the CPU,
//! one fused kernel per rule on a GPU (`dsnn_opt_*` in `kernels/dsnn_ops.cu`:
//! the same operations in the same order, compiled without FMA contraction,
//! so the two agree bit for bit). Nothing is copied between host and device.
//!
//! Every rule first adds the L2 term (`g + wd * w` when `wd != 0`), then
//! updates its state and the weight, exactly as `torch.optim` orders them.

use candle_core::{CpuStorage, Layout, Result};
use std::sync::Mutex;

/// Adam's and RAdam's first-moment decay.
pub(crate) const BETA1: f32 = 0.9;
/// Adam's and RAdam's second-moment decay.
pub(crate) const BETA2: f32 = 0.999;

/// One step's update rule, with the scalars that depend on the step only
/// (computed once per step on the host).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Rule {
    /// SGD; with momentum the buffer starts at the first gradient.
    Sgd {
        /// Momentum (0: none, no buffer).
        momentum: f32,
        /// The optimiser's first step (the buffer takes the gradient).
        first: bool,
    },
    /// Adam with bias corrections `1 - beta^t`.
    Adam {
        /// `1 - BETA1^t`.
        bc1: f32,
        /// `1 - BETA2^t`.
        bc2: f32,
    },
    /// Adagrad.
    Adagrad,
    /// Adadelta (rho 0.9, eps 1e-6), scaled by the learning rate.
    Adadelta,
    /// RMSprop (alpha 0.99), with optional momentum.
    RmsProp {
        /// Momentum (0: none).
        momentum: f32,
    },
    /// RAdam, optionally inside Lookahead (Ranger).
    RAdam {
        /// `1 - BETA1^t`.
        bc1: f32,
        /// The rectification `r` and `sqrt(1 - BETA2^t)`, once the variance
        /// is tractable (rho_t > 5); `None` in the warm-up (plain momentum).
        rect: Option<(f32, f32)>,
        /// Lookahead's slow weights are kept (Ranger).
        lookahead: bool,
        /// Lookahead synchronises this step (`slow += alpha (w - slow)`, `w = slow`).
        sync: bool,
    },
}

/// Lookahead's interpolation factor.
pub(crate) const LOOKAHEAD_ALPHA: f32 = 0.5;

impl Rule {
    /// How many state buffers of the parameter's length the rule keeps
    /// (packed one after another in one allocation).
    pub(crate) fn state_buffers(&self) -> usize {
        match self {
            Rule::Sgd { .. } | Rule::Adagrad => 1,
            Rule::Adam { .. } | Rule::Adadelta | Rule::RmsProp { .. } => 2,
            Rule::RAdam { lookahead, .. } => 2 + usize::from(*lookahead),
        }
    }
}

/// One step of one parameter: the rule, the learning rate and the L2 weight decay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Step {
    /// The rule and its per-step scalars.
    pub rule: Rule,
    /// Learning rate (already scheduled).
    pub lr: f32,
    /// L2 weight decay (0: none).
    pub weight_decay: f32,
}

/// A parameter's optimiser state, on the parameter's device.
#[derive(Debug, Clone)]
pub(crate) enum State {
    /// Host memory (a CPU parameter).
    Host(Vec<f32>),
    /// Device memory (a parameter on a CUDA device).
    #[cfg(feature = "cuda")]
    Cuda(candle_core::cuda_backend::cudarc::driver::CudaSlice<f32>),
}

impl State {
    /// Zeroed state for `len` values on `device`.
    pub(crate) fn zeros(device: &candle_core::Device, len: usize) -> Result<State> {
        match device {
            candle_core::Device::Cpu => Ok(State::Host(vec![0.0; len])),
            #[cfg(feature = "cuda")]
            candle_core::Device::Cuda(dev) => Ok(State::Cuda(dev.alloc_zeros::<f32>(len.max(1))?)),
            other => candle_core::bail!("optimiser state on {other:?} is not supported"),
        }
    }
}

/// The in-place update of a parameter (`inplace_op2(gradient, ..)`) that also
/// updates its state. `fresh`: the state was just created (Lookahead copies
/// the weights into its slow buffer before the first update).
#[derive(Debug)]
pub(crate) struct UpdateInPlace<'a> {
    /// The step.
    pub step: Step,
    /// The parameter's state (locked for the update: the op trait takes `&self`).
    pub state: Mutex<&'a mut State>,
    /// The state was created for this step.
    pub fresh: bool,
}

impl candle_core::InplaceOp2 for UpdateInPlace<'_> {
    fn name(&self) -> &'static str {
        "dsnn-optimizer-step"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let w = match (s1, l1.contiguous_offsets()) {
            (CpuStorage::F32(v), Some((a, b))) => &mut v[a..b],
            _ => candle_core::bail!("optimiser: parameters must be contiguous f32"),
        };
        let g = crate::ops::slice(s2, l2)?;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // One variant without the `cuda` feature, two with it.
        #[cfg_attr(not(feature = "cuda"), allow(clippy::infallible_destructuring_match))]
        let st = match &mut **state {
            State::Host(st) => st,
            #[cfg(feature = "cuda")]
            State::Cuda(_) => {
                candle_core::bail!("optimiser: the state of a CPU parameter is on a GPU")
            }
        };
        host_update(&self.step, w, g, st, self.fresh)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &mut candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = match &mut **state {
            State::Cuda(st) => st,
            State::Host(_) => {
                candle_core::bail!("optimiser: the state of a GPU parameter is on the host")
            }
        };
        let args = kernel_args(&self.step, self.fresh);
        crate::cuda::optimizer_step(args, s1, l1, s2, l2, st)
    }
}

/// The rule as its kernel takes it: `dsnn_opt_<rule>(n, w, g, state, lr, wd,
/// c0, c1, c2, flags)` (the constants and flags per rule in `dsnn_ops.cu`).
#[cfg(feature = "cuda")]
fn kernel_args(step: &Step, fresh: bool) -> crate::cuda::OptimizerKernelArgs {
    let (kernel, c, flags) = match step.rule {
        Rule::Sgd { momentum, first } => ("dsnn_opt_sgd", [momentum, 0.0, 0.0], i32::from(first)),
        Rule::Adam { bc1, bc2 } => ("dsnn_opt_adam", [bc1, bc2, 0.0], 0),
        Rule::Adagrad => ("dsnn_opt_adagrad", [0.0; 3], 0),
        Rule::Adadelta => ("dsnn_opt_adadelta", [0.0; 3], 0),
        Rule::RmsProp { momentum } => ("dsnn_opt_rmsprop", [momentum, 0.0, 0.0], 0),
        Rule::RAdam {
            bc1,
            rect,
            lookahead,
            sync,
        } => {
            let (r, sq) = rect.unwrap_or((0.0, 0.0));
            let flags = i32::from(rect.is_some())
                | i32::from(lookahead && fresh) << 1
                | i32::from(lookahead && sync) << 2;
            ("dsnn_opt_radam", [bc1, r, sq], flags)
        }
    };
    crate::cuda::OptimizerKernelArgs {
        kernel,
        lr: step.lr,
        weight_decay: step.weight_decay,
        c,
        flags,
        state_buffers: step.rule.state_buffers(),
    }
}

/// The L2 term, as `torch.optim` adds it (`WD`: `wd != 0`, a constant so
/// that the host loops carry no branch and vectorise).
#[inline(always)]
fn with_l2<const WD: bool>(g: f32, w: f32, wd: f32) -> f32 {
    if WD {
        g + wd * w
    } else {
        g
    }
}

/// The host loop of one step: `w` and `g` of length n, `st` the rule's
/// buffers (`state_buffers() * n` values).
fn host_update(step: &Step, w: &mut [f32], g: &[f32], st: &mut [f32], fresh: bool) -> Result<()> {
    let n = w.len();
    if g.len() != n {
        candle_core::bail!(
            "optimiser: a gradient of {} values for {n} weights",
            g.len()
        );
    }
    if st.len() != step.rule.state_buffers() * n {
        candle_core::bail!(
            "optimiser: state of {} values for {n} weights and {} buffers",
            st.len(),
            step.rule.state_buffers()
        );
    }
    if step.weight_decay != 0.0 {
        host_rule::<true>(step, w, g, st, fresh);
    } else {
        host_rule::<false>(step, w, g, st, fresh);
    }
    Ok(())
}

/// [`host_update`] with the weight-decay test lifted out of the loops. Every
/// loop-invariant choice is taken outside the loops (the compiler does not
/// unswitch several of them), so that each loop vectorises.
fn host_rule<const WD: bool>(step: &Step, w: &mut [f32], g: &[f32], st: &mut [f32], fresh: bool) {
    let n = w.len();
    let (lr, wd) = (step.lr, step.weight_decay);
    let (a, rest) = st.split_at_mut(n);
    match step.rule {
        Rule::Sgd { momentum, first } => {
            let it = w.iter_mut().zip(g).zip(a.iter_mut());
            if momentum == 0.0 {
                for ((w, &g), _) in it {
                    *w -= lr * with_l2::<WD>(g, *w, wd);
                }
            } else if first {
                for ((w, &g), buf) in it {
                    *buf = with_l2::<WD>(g, *w, wd);
                    *w -= lr * *buf;
                }
            } else {
                for ((w, &g), buf) in it {
                    let g = with_l2::<WD>(g, *w, wd);
                    *buf = momentum * *buf + g;
                    *w -= lr * *buf;
                }
            }
        }
        Rule::Adam { bc1, bc2 } => {
            for (((w, &g), m), v) in w.iter_mut().zip(g).zip(a.iter_mut()).zip(rest.iter_mut()) {
                let g = with_l2::<WD>(g, *w, wd);
                *m = BETA1 * *m + (1.0 - BETA1) * g;
                *v = BETA2 * *v + (1.0 - BETA2) * g * g;
                let denom = (*v / bc2).sqrt() + 1e-8;
                *w -= lr * (*m / bc1) / denom;
            }
        }
        Rule::Adagrad => {
            for ((w, &g), sum) in w.iter_mut().zip(g).zip(a.iter_mut()) {
                let g = with_l2::<WD>(g, *w, wd);
                *sum += g * g;
                *w -= lr * g / (sum.sqrt() + 1e-10);
            }
        }
        Rule::Adadelta => {
            let (rho, eps) = (0.9f32, 1e-6f32);
            for (((w, &g), sq), acc) in w.iter_mut().zip(g).zip(a.iter_mut()).zip(rest.iter_mut()) {
                let g = with_l2::<WD>(g, *w, wd);
                *sq = rho * *sq + (1.0 - rho) * g * g;
                let delta = (*acc + eps).sqrt() / (*sq + eps).sqrt() * g;
                *acc = rho * *acc + (1.0 - rho) * delta * delta;
                *w -= lr * delta;
            }
        }
        Rule::RmsProp { momentum } => {
            let alpha = 0.99f32;
            let it = w.iter_mut().zip(g).zip(a.iter_mut()).zip(rest.iter_mut());
            if momentum > 0.0 {
                for (((w, &g), sq), buf) in it {
                    let g = with_l2::<WD>(g, *w, wd);
                    *sq = alpha * *sq + (1.0 - alpha) * g * g;
                    let step = g / (sq.sqrt() + 1e-8);
                    *buf = momentum * *buf + step;
                    *w -= lr * *buf;
                }
            } else {
                for (((w, &g), sq), _) in it {
                    let g = with_l2::<WD>(g, *w, wd);
                    *sq = alpha * *sq + (1.0 - alpha) * g * g;
                    let step = g / (sq.sqrt() + 1e-8);
                    *w -= lr * step;
                }
            }
        }
        Rule::RAdam {
            bc1,
            rect,
            lookahead,
            sync,
        } => {
            let (v, slow) = rest.split_at_mut(n);
            if lookahead && fresh {
                slow.copy_from_slice(w);
            }
            let it = w.iter_mut().zip(g).zip(a.iter_mut()).zip(v.iter_mut());
            match rect {
                Some((r, sq)) => {
                    for (((w, &g), m), v) in it {
                        let g = with_l2::<WD>(g, *w, wd);
                        *m = BETA1 * *m + (1.0 - BETA1) * g;
                        *v = BETA2 * *v + (1.0 - BETA2) * g * g;
                        let mhat = *m / bc1;
                        let adaptive = sq / (v.sqrt() + 1e-8);
                        *w -= lr * mhat * r * adaptive;
                    }
                }
                None => {
                    for (((w, &g), m), v) in it {
                        let g = with_l2::<WD>(g, *w, wd);
                        *m = BETA1 * *m + (1.0 - BETA1) * g;
                        *v = BETA2 * *v + (1.0 - BETA2) * g * g;
                        *w -= lr * (*m / bc1);
                    }
                }
            }
            if lookahead && sync {
                for (w, slow) in w.iter_mut().zip(slow.iter_mut()) {
                    *slow += LOOKAHEAD_ALPHA * (*w - *slow);
                    *w = *slow;
                }
            }
        }
    }
}
