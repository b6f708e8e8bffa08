//! DeepShift neural networks on candle: quantisers, shift layers, backbones,
//! datasets and the trainer.
//!
//! A Deep Shift Neural Network replaces every multiplication by a weight with
//! a bit shift by constraining weights to signed powers of two. This crate
//! trains such networks on the CPU, reproducing the reference DeepShift
//! semantics exactly (see `docs/deepshift.md`).

pub mod arch;
pub mod backbone;
pub mod batchnorm;
pub mod conv;
#[cfg(feature = "cuda")]
mod cuda;
pub mod data;
pub mod device;
pub mod error;
pub mod graph;
pub mod layers;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod params;
pub mod pool;
pub mod quant;
pub mod recipe;
pub mod runtime;
pub mod train;

pub use backbone::{backbone_by_name, builtin_backbones, Backbone, InputShape, ModelSpec, Network};
pub use error::{CoreError, Result};
pub use layers::{Forward, ShiftEnd, ShiftSettings, ShiftType};
pub use quant::{FixedPoint, Rounding};
pub use recipe::{ArchParam, ArchValues, Recipe, RecipeError, Setting};
