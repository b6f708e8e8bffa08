//! Integer shift-add inference for trained Deep Shift Neural Networks.
//!
//! [`IntModel::from_network`] exports a trained DeepShift-Q or -PS network
//! (dsnn-core) into an integer model: shift weights packed as sign + shift
//! codes, activations as fixed-point integers, batch norm and biases folded
//! into per-channel fixed-point steps. [`IntModel::infer`] runs it with
//! shift-and-accumulate kernels (AVX-512, AVX2 or portable, chosen at run
//! time) in parallel; [`reference::reference_logits`] is the scalar
//! reference it matches bit for bit; [`IntModel::op_profile`] prices the
//! integer pass with dsnn-energy's op-count model. The semantics are in
//! `docs/integer-inference.md`. With the `cuda` feature,
//! `cuda::CudaIntModel` runs the same steps with the GPU kernels of
//! `kernels/int_ops.cu` ([`gpu`] is their host side).

#![warn(missing_docs)]

pub mod compare;
mod compile;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod dot;
pub mod engine;
pub mod error;
pub mod export;
pub mod format;
pub mod gpu;
pub mod kernels;
mod lower;
pub mod model;
pub mod profile;
pub mod reference;
#[cfg(test)]
mod test_rng;
pub mod weights;

pub use engine::EngineOptions;
pub use error::{InferError, Result};
pub use export::{load_trained, load_trained_with, read_trained_spec, save_trained, TrainedSpec};
pub use format::ActFormat;
pub use kernels::Isa;
pub use model::{DataRecord, InputTransform, IntModel, Logits, Requant, Step};
