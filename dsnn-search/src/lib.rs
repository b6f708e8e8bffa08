//! Generic multi-objective, multi-fidelity hyperparameter optimisation.
//!
//! Independent of neural networks and of every other dsnn crate.

pub mod pareto;
pub mod problems;
pub mod space;

pub use space::{
    Condition, Configuration, ConfigurationSpace, DimKind, Forbidden, Hyperparameter, SearchSpace,
    SpaceError, Value,
};
