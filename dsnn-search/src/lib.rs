//! Generic multi-objective, multi-fidelity hyperparameter optimisation.
//!
//! Independent of neural networks and of every other dsnn crate.

pub mod fidelity;
pub mod forest;
pub mod hyperband;
pub mod nsga2;
pub mod optimizer;
pub mod parego;
pub mod pareto;
pub mod problems;
pub mod single;
pub mod space;

pub use fidelity::{Bracket, FidelitySchedule, FixedBudget, Hyperband, Rung, SuccessiveHalving};
pub use hyperband::HyperbandOptimizer;
pub use nsga2::{Nsga2, Nsga2Settings};
pub use optimizer::{
    replay, Event, Observation, Optimizer, OptimizerError, Outcome, Proposer, Recorded, Trial,
    TrialId,
};
pub use parego::{ParEgo, ParEgoProposer, ParEgoSettings};
pub use pareto::TieBreak;
pub use single::{ProposerOptimizer, RandomProposer, RandomSearch};
pub use space::{
    Condition, Configuration, ConfigurationSpace, DimKind, Forbidden, Hyperparameter, SearchSpace,
    SpaceError, Value,
};
