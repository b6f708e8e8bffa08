//! The recipe of one DSNN: every hyperparameter a search (or `dsnn train`)
//! sets, with the paper's default DSNN as its default, and the one place
//! where those values become a [`ModelSpec`] and a [`TrainConfig`].
//!
//! Experiment files (`[model]`), configurations proposed by an optimizer and
//! the flags of `dsnn train` all end up here, so the objective of a search
//! and a single training run build exactly the same network.

pub use crate::arch::{Allowed, ArchParam, ArchValues, RecipeError, Setting};
use crate::backbone::{Backbone, InputShape, ModelSpec};
use crate::layers::{ShiftEnd, ShiftSettings, ShiftType};
use crate::optim::{OptimizerKind, OptimizerSettings};
use crate::quant::{FixedPoint, Rounding};
use crate::train::TrainConfig;
use serde::{Deserialize, Serialize};

/// The architecture values for `backbone`: `given` checked against what
/// it declares, defaults filled in. Unknown names are refused.
pub fn resolve_arch(
    backbone: &dyn Backbone,
    given: &ArchValues,
) -> Result<ArchValues, RecipeError> {
    let params = backbone.hyperparameters();
    for name in given.keys() {
        if !params.iter().any(|p| &p.name == name) {
            return Err(RecipeError::Unknown {
                name: name.clone(),
                allowed: params.iter().map(|p| p.name.clone()).collect(),
                backbone: Some(backbone.name().to_string()),
            });
        }
    }
    params
        .iter()
        .map(|p| {
            let v = given.get(&p.name).unwrap_or(&p.default);
            Ok((p.name.clone(), p.check(v)?))
        })
        .collect()
}

/// Every DSNN hyperparameter (the paper's search space) with the value of
/// the paper's default DSNN: PS, SGD with lr 0.1 and momentum 0.9, 5-bit
/// weights, 16/16 activation bits, every convolution converted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Recipe {
    /// Training optimiser.
    pub optimizer: OptimizerKind,
    /// Initial learning rate.
    pub lr: f64,
    /// Momentum (SGD, RMSprop).
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Bits per shift weight (2..=8).
    pub weight_bits: u32,
    /// Integer bits of fixed-point activations (1..=32).
    pub activation_integer_bits: u32,
    /// Fraction bits of fixed-point activations (1..=32).
    pub activation_fraction_bits: u32,
    /// Convolution layers converted (absent: all).
    pub shift_depth: Option<usize>,
    /// Which end `shift_depth` counts from.
    pub shift_end: ShiftEnd,
    /// `Q`, `PS` or `float`.
    pub shift_type: ShiftType,
    /// Rounding of shifts.
    pub rounding: Rounding,
    /// Training batch size.
    pub batch_size: usize,
    /// Evaluation batch size.
    pub test_batch_size: usize,
    /// Training epochs (when the budget does not decide them).
    pub epochs: usize,
    /// Cosine learning-rate annealing.
    pub cosine_schedule: bool,
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe {
            optimizer: OptimizerKind::SGD,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-4,
            weight_bits: 5,
            activation_integer_bits: 16,
            activation_fraction_bits: 16,
            shift_depth: None,
            shift_end: ShiftEnd::Output,
            shift_type: ShiftType::PS,
            rounding: Rounding::Deterministic,
            batch_size: 128,
            test_batch_size: 1000,
            epochs: 1,
            cosine_schedule: true,
        }
    }
}

impl Recipe {
    /// The hyperparameters a configuration may set (the paper's space).
    pub const HYPERPARAMETERS: &'static [&'static str] = &[
        "optimizer",
        "lr",
        "momentum",
        "weight_decay",
        "weight_bits",
        "activation_integer_bits",
        "activation_fraction_bits",
        "shift_depth",
        "shift_type",
        "rounding",
        "batch_size",
        "test_batch_size",
        "epochs",
    ];

    /// Every key of a recipe as written in experiment files (`[model]`):
    /// the hyperparameters plus `shift_end` and `cosine_schedule`.
    pub const KEYS: &'static [&'static str] = &[
        "optimizer",
        "lr",
        "momentum",
        "weight_decay",
        "weight_bits",
        "activation_integer_bits",
        "activation_fraction_bits",
        "shift_depth",
        "shift_end",
        "shift_type",
        "rounding",
        "batch_size",
        "test_batch_size",
        "epochs",
        "cosine_schedule",
    ];

    /// Sets hyperparameter `name` to `value` (not range-checked: see
    /// [`Recipe::validate`]).
    pub fn set(&mut self, name: &str, value: &Setting) -> Result<(), RecipeError> {
        let wrong = |expected: &str| RecipeError::WrongType {
            name: name.to_string(),
            expected: expected.into(),
            got: value.clone(),
        };
        let num = || value.as_float().ok_or_else(|| wrong("a number"));
        let count = || -> Result<u64, RecipeError> {
            let i = value.as_int().ok_or_else(|| wrong("an integer"))?;
            u64::try_from(i).map_err(|_| RecipeError::OutOfRange {
                name: name.to_string(),
                value: value.clone(),
                allowed: ">= 0".into(),
            })
        };
        let word =
            || -> Result<&str, RecipeError> { value.as_text().ok_or_else(|| wrong("a word")) };
        let choice = |allowed: &[&str]| RecipeError::OutOfRange {
            name: name.to_string(),
            value: value.clone(),
            allowed: allowed.join(", "),
        };
        let small = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        match name {
            "optimizer" => {
                self.optimizer = word()?.parse().map_err(|_| choice(&OptimizerKind::NAMES))?
            }
            "lr" => self.lr = num()?,
            "momentum" => self.momentum = num()?,
            "weight_decay" => self.weight_decay = num()?,
            "weight_bits" => self.weight_bits = small(count()?),
            "activation_integer_bits" => self.activation_integer_bits = small(count()?),
            "activation_fraction_bits" => self.activation_fraction_bits = small(count()?),
            "shift_depth" => self.shift_depth = Some(size(count()?)),
            "shift_type" => {
                self.shift_type = word()?.parse().map_err(|_| choice(ShiftType::NAMES))?
            }
            "rounding" => self.rounding = word()?.parse().map_err(|_| choice(Rounding::NAMES))?,
            "batch_size" => self.batch_size = size(count()?),
            "test_batch_size" => self.test_batch_size = size(count()?),
            "epochs" => self.epochs = size(count()?),
            other => {
                return Err(RecipeError::Unknown {
                    name: other.to_string(),
                    allowed: Self::HYPERPARAMETERS
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                    backbone: None,
                })
            }
        }
        Ok(())
    }

    /// Range checks; the error names the hyperparameter and what is allowed.
    pub fn validate(&self) -> Result<(), RecipeError> {
        let range = |name: &str, v: u64, lo: u64, hi: u64| {
            if v < lo || v > hi {
                Err(RecipeError::OutOfRange {
                    name: name.into(),
                    value: Setting::Int(i64::try_from(v).unwrap_or(i64::MAX)),
                    allowed: format!("{lo}..={hi}"),
                })
            } else {
                Ok(())
            }
        };
        range("weight_bits", self.weight_bits.into(), 2, 8)?;
        range(
            "activation_integer_bits",
            self.activation_integer_bits.into(),
            1,
            32,
        )?;
        range(
            "activation_fraction_bits",
            self.activation_fraction_bits.into(),
            1,
            32,
        )?;
        range("batch_size", self.batch_size as u64, 1, 1 << 20)?;
        range("test_batch_size", self.test_batch_size as u64, 1, 1 << 20)?;
        range("epochs", self.epochs as u64, 1, 100_000)?;
        if let Some(d) = self.shift_depth {
            range("shift_depth", d as u64, 0, 10_000)?;
        }
        for (name, v) in [
            ("lr", self.lr),
            ("momentum", self.momentum),
            ("weight_decay", self.weight_decay),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(RecipeError::OutOfRange {
                    name: name.into(),
                    value: Setting::Float(v),
                    allowed: ">= 0".into(),
                });
            }
        }
        Ok(())
    }

    /// The DeepShift settings of the converted layers (`None`: float).
    pub fn shift_settings(&self) -> Option<ShiftSettings> {
        self.shift_type.is_shift().then_some(ShiftSettings {
            shift_type: self.shift_type,
            weight_bits: self.weight_bits,
            rounding: self.rounding,
            activation: FixedPoint {
                integer_bits: self.activation_integer_bits,
                fraction_bits: self.activation_fraction_bits,
            },
        })
    }

    /// The network this recipe builds for images of `input` and `classes`
    /// classes, with initial weights from `seed` and the backbone's
    /// architecture values `arch`.
    pub fn model_spec(
        &self,
        input: InputShape,
        classes: usize,
        seed: u64,
        arch: ArchValues,
    ) -> ModelSpec {
        ModelSpec {
            input,
            classes,
            shift: self.shift_settings(),
            shift_depth: self.shift_depth.unwrap_or(usize::MAX),
            shift_end: self.shift_end,
            seed,
            arch,
        }
    }

    /// The training settings for `epochs` epochs with batch order and
    /// augmentation from `seed`.
    pub fn train_config(&self, epochs: usize, seed: u64) -> TrainConfig {
        TrainConfig {
            epochs,
            batch_size: self.batch_size,
            test_batch_size: self.test_batch_size,
            optimizer: OptimizerSettings {
                kind: self.optimizer,
                lr: self.lr,
                momentum: self.momentum,
                weight_decay: self.weight_decay,
            },
            cosine_schedule: self.cosine_schedule,
            seed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_papers_default_dsnn() {
        let r = Recipe::default();
        assert_eq!(r.shift_type, ShiftType::PS);
        assert_eq!(r.optimizer, OptimizerKind::SGD);
        assert_eq!((r.lr, r.momentum), (0.1, 0.9));
        assert_eq!(r.weight_bits, 5);
        assert_eq!(
            (r.activation_integer_bits, r.activation_fraction_bits),
            (16, 16)
        );
        assert!(r.validate().is_ok());
    }

    #[test]
    fn set_and_validate_name_the_hyperparameter() {
        let mut r = Recipe::default();
        r.set("shift_type", &Setting::Text("float".into())).unwrap();
        assert!(r.shift_settings().is_none());
        r.set("weight_bits", &Setting::Int(12)).unwrap();
        let e = r.validate().unwrap_err();
        assert_eq!(e.name(), "weight_bits");
        assert!(e.to_string().contains("2..=8"), "{e}");
        let e = r.set("dropout", &Setting::Float(0.1)).unwrap_err();
        assert!(matches!(e, RecipeError::Unknown { .. }));
        assert!(e.to_string().contains("weight_bits"), "{e}");
        let e = r.set("lr", &Setting::Text("fast".into())).unwrap_err();
        assert!(matches!(e, RecipeError::WrongType { .. }), "{e}");
        let e = r.set("rounding", &Setting::Text("up".into())).unwrap_err();
        assert!(e.to_string().contains("deterministic"), "{e}");
        let e = r.set("shift_depth", &Setting::Int(-1)).unwrap_err();
        assert!(matches!(e, RecipeError::OutOfRange { .. }), "{e}");
    }

    #[test]
    fn arch_values_are_checked_against_the_declaration() {
        let p = ArchParam::int("width", "channels of the first block", 16, 4, 64);
        assert_eq!(p.check(&Setting::Float(8.0)).unwrap(), Setting::Int(8));
        assert!(p.check(&Setting::Int(65)).is_err());
        assert!(p.check(&Setting::Text("wide".into())).is_err());
    }
}
