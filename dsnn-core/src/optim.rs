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
use serde::{Deserialize, Serialize};
use update::{Rule, State, Step, UpdateInPlace, BETA1, BETA2};

mod update;

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

/// Lookahead synchronises every this many steps (Ranger).
const LOOKAHEAD_K: u64 = 6;

/// Per-parameter state: the rule's buffers, created on the parameter's
/// device at its first update.
#[derive(Debug, Clone, Default)]
struct Slot {
    state: Option<State>,
}

/// A stateful optimiser over a network's parameters.
///
/// Each step updates every parameter in place where it lives, with one pass
/// (on a GPU, one fused kernel) over the parameter, its gradient and its
/// state: nothing is copied to the host. The arithmetic is the same on both
/// (`tests/optim_host_path.rs` holds it to the earlier host loop bit for bit,
/// `tests/cuda_kernels_emulated.rs` the kernels to the CPU).
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
        let step = Step {
            rule: self.rule(),
            lr: lr as f32,
            weight_decay: self.settings.weight_decay as f32,
        };
        for (p, slot) in params.iter().zip(&mut self.slots) {
            let Some(g) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            let w = p.var.as_tensor();
            if g.elem_count() != w.elem_count() {
                return Err(CoreError::config(
                    "optimizer",
                    format!(
                        "{}: a gradient of {} values for {} weights",
                        p.name,
                        g.elem_count(),
                        w.elem_count()
                    ),
                ));
            }
            let g = g.contiguous()?;
            let fresh = slot.state.is_none();
            let state = match &mut slot.state {
                Some(state) => state,
                empty => empty.insert(State::zeros(
                    w.device(),
                    step.rule.state_buffers() * w.elem_count(),
                )?),
            };
            w.inplace_op2(
                &g,
                &UpdateInPlace {
                    step,
                    state: std::sync::Mutex::new(state),
                    fresh,
                },
            )?;
        }
        Ok(())
    }

    /// This step's rule, with its step-dependent scalars.
    fn rule(&self) -> Rule {
        let t = self.step;
        let ti = t as i32;
        let momentum = self.settings.momentum as f32;
        match self.settings.kind {
            OptimizerKind::SGD => Rule::Sgd {
                momentum,
                // PyTorch starts the buffer at the first gradient.
                first: t == 1,
            },
            OptimizerKind::Adam => Rule::Adam {
                bc1: 1.0 - BETA1.powi(ti),
                bc2: 1.0 - BETA2.powi(ti),
            },
            OptimizerKind::Adagrad => Rule::Adagrad,
            OptimizerKind::Adadelta => Rule::Adadelta,
            OptimizerKind::RMSprop => Rule::RmsProp { momentum },
            OptimizerKind::RAdam | OptimizerKind::Ranger => {
                let lookahead = self.settings.kind == OptimizerKind::Ranger;
                Rule::RAdam {
                    bc1: 1.0 - BETA1.powi(ti),
                    rect: radam_rectification(t),
                    lookahead,
                    sync: lookahead && t.is_multiple_of(LOOKAHEAD_K),
                }
            }
        }
    }
}

/// RAdam's rectification at step `t` (PyTorch's formulation, betas
/// 0.9/0.999): `(r, sqrt(1 - BETA2^t))` once rho_t > 5, else `None`.
fn radam_rectification(t: u64) -> Option<(f32, f32)> {
    let b2t = BETA2.powi(t as i32);
    let rho_inf = 2.0 / (1.0 - BETA2) - 1.0;
    let rho_t = rho_inf - 2.0 * t as f32 * b2t / (1.0 - b2t);
    if rho_t > 5.0 {
        let r = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
            / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
            .sqrt();
        Some((r, (1.0 - b2t).sqrt()))
    } else {
        None
    }
}
