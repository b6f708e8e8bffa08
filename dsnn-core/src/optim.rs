//! The optimisers of the paper's search space, as PyTorch defines them:
//! SGD (momentum, weight decay), Adam, Adadelta, Adagrad, RMSprop, RAdam and
//! Ranger (RAdam with Lookahead).
//!
//! Weight decay is the L2 form (`g += weight_decay * w`) for all of them, as
//! in `torch.optim`. `momentum` is used by SGD and RMSprop; the Adam family
//! uses its fixed betas (0.9, 0.999). `tests/optimizers.rs` checks ten steps
//! of each against `torch.optim`.

use crate::error::{CoreError, Result};
use crate::params::Param;
use candle_core::backprop::GradStore;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// The optimiser algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum OptimizerKind {
    /// Stochastic gradient descent with (optional) momentum.
    #[default]
    #[serde(alias = "sgd")]
    SGD,
    /// Adam (Kingma and Ba).
    #[serde(alias = "adam")]
    Adam,
    /// Adadelta (Zeiler), scaled by the learning rate.
    #[serde(alias = "adadelta")]
    Adadelta,
    /// Adagrad (Duchi et al.).
    #[serde(alias = "adagrad")]
    Adagrad,
    /// RMSprop (Hinton), with optional momentum.
    #[serde(alias = "RMSProp", alias = "rmsprop")]
    RMSprop,
    /// Rectified Adam (Liu et al. 2020).
    #[serde(alias = "radam")]
    RAdam,
    /// Ranger: RAdam inside Lookahead (k = 6, alpha = 0.5).
    #[serde(alias = "ranger")]
    Ranger,
}

impl OptimizerKind {
    /// Their names, in the order of [`OptimizerKind::ALL`].
    pub const NAMES: [&'static str; 7] = [
        "SGD", "Adam", "Adadelta", "Adagrad", "RMSprop", "RAdam", "Ranger",
    ];

    /// Every optimiser, in the order of the paper's search space.
    pub const ALL: [OptimizerKind; 7] = [
        OptimizerKind::SGD,
        OptimizerKind::Adam,
        OptimizerKind::Adadelta,
        OptimizerKind::Adagrad,
        OptimizerKind::RMSprop,
        OptimizerKind::RAdam,
        OptimizerKind::Ranger,
    ];
}

impl std::str::FromStr for OptimizerKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        OptimizerKind::ALL
            .into_iter()
            .find(|k| k.to_string().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown optimizer `{s}` (allowed: SGD, Adam, Adadelta, Adagrad, RMSprop, RAdam, Ranger)")
            })
    }
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OptimizerKind::SGD => "SGD",
            OptimizerKind::Adam => "Adam",
            OptimizerKind::Adadelta => "Adadelta",
            OptimizerKind::Adagrad => "Adagrad",
            OptimizerKind::RMSprop => "RMSprop",
            OptimizerKind::RAdam => "RAdam",
            OptimizerKind::Ranger => "Ranger",
        })
    }
}

/// Optimiser hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OptimizerSettings {
    /// Which algorithm.
    pub kind: OptimizerKind,
    /// Initial learning rate (the schedule scales it).
    pub lr: f64,
    /// Momentum for SGD and RMSprop.
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
}

impl Default for OptimizerSettings {
    /// The paper's defaults: SGD, lr 0.1, momentum 0.9, weight decay 1e-4.
    fn default() -> Self {
        OptimizerSettings {
            kind: OptimizerKind::SGD,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-4,
        }
    }
}

impl OptimizerSettings {
    /// Checks the values are usable.
    pub fn validate(&self) -> Result<()> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(CoreError::config(
                "lr",
                format!("{} must be a positive number", self.lr),
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(CoreError::config(
                "momentum",
                format!("{} must be in [0, 1)", self.momentum),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(CoreError::config(
                "weight_decay",
                format!("{} must be >= 0", self.weight_decay),
            ));
        }
        Ok(())
    }
}

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const LOOKAHEAD_K: u64 = 6;
const LOOKAHEAD_ALPHA: f32 = 0.5;

/// Per-parameter state buffers (which ones are used depends on the kind).
#[derive(Debug, Clone, Default)]
struct Slot {
    a: Vec<f32>,
    b: Vec<f32>,
    slow: Vec<f32>,
    /// SGD's momentum buffer when the parameter lives on a GPU.
    #[cfg(feature = "cuda")]
    device_buf: Option<Tensor>,
}

/// A stateful optimiser over a network's parameters.
#[derive(Debug, Clone)]
pub struct Optimizer {
    settings: OptimizerSettings,
    slots: Vec<Slot>,
    step: u64,
}

impl Optimizer {
    /// A fresh optimiser for `num_params` parameter tensors.
    pub fn new(settings: OptimizerSettings, num_params: usize) -> Result<Self> {
        settings.validate()?;
        Ok(Optimizer {
            settings,
            slots: vec![Slot::default(); num_params],
            step: 0,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &OptimizerSettings {
        &self.settings
    }

    /// Updates every parameter that has a gradient, with learning rate `lr`.
    pub fn step(&mut self, params: &[Param], grads: &GradStore, lr: f64) -> Result<()> {
        if params.len() != self.slots.len() {
            return Err(CoreError::config(
                "optimizer",
                format!(
                    "built for {} parameters, stepped with {}",
                    self.slots.len(),
                    params.len()
                ),
            ));
        }
        self.step += 1;
        let t = self.step;
        let s = self.settings;
        let (lr, mom, wd) = (lr as f32, s.momentum as f32, s.weight_decay as f32);
        for (p, slot) in params.iter().zip(&mut self.slots) {
            let Some(g) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            // SGD on a GPU runs there (dsnn_sgd_* kernels, the same
            // arithmetic); the other optimisers copy to the host and back.
            #[cfg(feature = "cuda")]
            if p.var.device().is_cuda() && s.kind == OptimizerKind::SGD {
                crate::cuda::sgd_step(
                    p.var.as_tensor(),
                    g,
                    &mut slot.device_buf,
                    t == 1,
                    (lr, mom, wd),
                )?;
                continue;
            }
            let shape = p.var.shape().clone();
            let mut w = p.var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            let mut g = g.flatten_all()?.to_vec1::<f32>()?;
            if wd != 0.0 {
                for (g, &w) in g.iter_mut().zip(&w) {
                    *g += wd * w;
                }
            }
            let n = w.len();
            if slot.a.is_empty() {
                slot.a = vec![0.0; n];
                slot.b = vec![0.0; n];
                if s.kind == OptimizerKind::Ranger {
                    slot.slow = w.clone();
                }
            }
            match s.kind {
                OptimizerKind::SGD => {
                    if mom == 0.0 {
                        w.iter_mut().zip(&g).for_each(|(w, g)| *w -= lr * g);
                    } else {
                        for i in 0..n {
                            // PyTorch starts the buffer at the first gradient.
                            slot.a[i] = if t == 1 { g[i] } else { mom * slot.a[i] + g[i] };
                            w[i] -= lr * slot.a[i];
                        }
                    }
                }
                OptimizerKind::Adam => {
                    let bc1 = 1.0 - BETA1.powi(t as i32);
                    let bc2 = 1.0 - BETA2.powi(t as i32);
                    for i in 0..n {
                        slot.a[i] = BETA1 * slot.a[i] + (1.0 - BETA1) * g[i];
                        slot.b[i] = BETA2 * slot.b[i] + (1.0 - BETA2) * g[i] * g[i];
                        let denom = (slot.b[i] / bc2).sqrt() + 1e-8;
                        w[i] -= lr * (slot.a[i] / bc1) / denom;
                    }
                }
                OptimizerKind::Adagrad => {
                    for i in 0..n {
                        slot.a[i] += g[i] * g[i];
                        w[i] -= lr * g[i] / (slot.a[i].sqrt() + 1e-10);
                    }
                }
                OptimizerKind::Adadelta => {
                    let (rho, eps) = (0.9f32, 1e-6f32);
                    for i in 0..n {
                        slot.a[i] = rho * slot.a[i] + (1.0 - rho) * g[i] * g[i];
                        let delta = (slot.b[i] + eps).sqrt() / (slot.a[i] + eps).sqrt() * g[i];
                        slot.b[i] = rho * slot.b[i] + (1.0 - rho) * delta * delta;
                        w[i] -= lr * delta;
                    }
                }
                OptimizerKind::RMSprop => {
                    let alpha = 0.99f32;
                    for i in 0..n {
                        slot.a[i] = alpha * slot.a[i] + (1.0 - alpha) * g[i] * g[i];
                        let step = g[i] / (slot.a[i].sqrt() + 1e-8);
                        if mom > 0.0 {
                            slot.b[i] = mom * slot.b[i] + step;
                            w[i] -= lr * slot.b[i];
                        } else {
                            w[i] -= lr * step;
                        }
                    }
                }
                OptimizerKind::RAdam | OptimizerKind::Ranger => {
                    radam_update(&mut w, &g, slot, t, lr);
                    if s.kind == OptimizerKind::Ranger && t.is_multiple_of(LOOKAHEAD_K) {
                        for (slow, fast) in slot.slow.iter_mut().zip(w.iter_mut()) {
                            *slow += LOOKAHEAD_ALPHA * (*fast - *slow);
                            *fast = *slow;
                        }
                    }
                }
            }
            p.var.set(&Tensor::from_vec(w, shape, p.var.device())?)?;
        }
        Ok(())
    }
}

/// One RAdam step (PyTorch's formulation, betas 0.9/0.999, eps 1e-8).
fn radam_update(w: &mut [f32], g: &[f32], slot: &mut Slot, t: u64, lr: f32) {
    let ti = t as i32;
    let bc1 = 1.0 - BETA1.powi(ti);
    let b2t = BETA2.powi(ti);
    let rho_inf = 2.0 / (1.0 - BETA2) - 1.0;
    let rho_t = rho_inf - 2.0 * t as f32 * b2t / (1.0 - b2t);
    let rect = if rho_t > 5.0 {
        Some(
            ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                .sqrt(),
        )
    } else {
        None
    };
    for i in 0..w.len() {
        slot.a[i] = BETA1 * slot.a[i] + (1.0 - BETA1) * g[i];
        slot.b[i] = BETA2 * slot.b[i] + (1.0 - BETA2) * g[i] * g[i];
        let mhat = slot.a[i] / bc1;
        match rect {
            Some(r) => {
                let adaptive = (1.0 - b2t).sqrt() / (slot.b[i].sqrt() + 1e-8);
                w[i] -= lr * mhat * r * adaptive;
            }
            None => w[i] -= lr * mhat,
        }
    }
}
