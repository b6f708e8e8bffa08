//! Energy accounting for dsnn: energy meters, carbon intensity and the
//! op-count energy model.
//!
//! This crate depends on no other crate of the workspace. The types in
//! [`profile`] describe what a network computes per image, so that models
//! (which live in `dsnn-core`) and energy estimators (which live here) can
//! talk without knowing each other.

pub mod profile;

pub use profile::{LayerKind, LayerOps, OpProfile};
