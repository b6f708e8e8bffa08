//! Generic multi-objective, multi-fidelity hyperparameter optimisation (MO-MF HPO).
//!
//! `dsnn-search` is the optimisation engine of dsnn, usable for any problem: it
//! depends on no other dsnn crate and knows nothing of neural networks. All
//! objectives are **minimised** (negate maximised ones before telling them).
//!
//! - [`space`]: the [`SearchSpace`] trait and its standard implementation
//!   [`ConfigurationSpace`]: float / integer (linear or log), categorical, ordinal
//!   and constant hyperparameters with defaults, [`Condition`]s, [`Forbidden`]
//!   clauses, seeded sampling, validation with errors that name the
//!   hyperparameter and its allowed range, unit-cube encoding (inactive = `NaN`),
//!   neighbours for local search; read and written as TOML and as the JSON of
//!   Python's `ConfigSpace`.
//! - [`pareto`]: dominance, non-dominated sorting, crowding distance, exact
//!   hypervolume (O(n log n) in 2-D and 3-D, WFG above), contributions, IGD+,
//!   normalisation.
//! - [`optimizer`]: the ask/tell [`Optimizer`] trait, [`Trial`]s and
//!   [`Outcome`]s (failures are first-class, never fake objective values),
//!   [`Recorded`] and [`replay`] for resuming a run from its history.
//! - Optimizers: [`RandomSearch`], [`Nsga2`], [`ParEgo`], [`Tpe`],
//!   [`EvoTpe`] (TPE with part of its proposals bred as NSGA-II does),
//!   [`GpEhvi`] (Gaussian processes with expected hypervolume improvement,
//!   [`gp`], [`ehvi`]), [`EvoGp`] (GP/EHVI where leave-one-out checks show
//!   that the models predict, evolutionary TPE elsewhere; [`model_check`]), and
//!   [`HyperbandOptimizer`] (MO-Hyperband) with any [`Proposer`] for its new
//!   configurations ([`RandomProposer`], [`ParEgoProposer`], [`TpeProposer`],
//!   [`EvoTpeProposer`], [`GpEhviProposer`], [`EvoGpProposer`]).
//! - [`fidelity`]: [`FidelitySchedule`]s: [`FixedBudget`], [`SuccessiveHalving`],
//!   [`Hyperband`] with SMAC's bracket arithmetic.
//! - [`problems`]: ZDT1-4, ZDT6, DTLZ1, DTLZ2 with true fronts and optimal
//!   hypervolumes, for tests and benchmarks.
//!
//! `docs/search.md` in the repository describes the file formats, the
//! algorithms' settings and measured benchmarks.
//!
//! # Example
//!
//! MO-Hyperband with ParEGO proposals (the combination of Hennig and Lindauer)
//! on a small space; a failed trial is reported as a failure.
//!
//! ```
//! use std::sync::Arc;
//! use dsnn_search::*;
//!
//! let space = ConfigurationSpace::from_toml_str(r#"
//!     [[hyperparameters]]
//!     name = "lr"
//!     type = "float"
//!     lower = 0.001
//!     upper = 0.2
//!     log = true
//!     [[hyperparameters]]
//!     name = "weight_bits"
//!     type = "int"
//!     lower = 2
//!     upper = 5
//! "#)?;
//! let space: Arc<dyn SearchSpace> = Arc::new(space);
//! let schedule = Hyperband::new(2.0, 20.0, 3.0)?;
//! let proposer = ParEgoProposer::new(space.clone(), ParEgoSettings::default());
//! let mut opt = HyperbandOptimizer::new(&schedule, proposer, 42)?;
//!
//! let mut finished = Vec::new();
//! for _ in 0..30 {
//!     for trial in opt.ask(2)? {
//!         let lr = trial.config.get_f64("lr").unwrap();
//!         let bits = trial.config.get_i64("weight_bits").unwrap() as f64;
//!         // A stand-in for "train for `trial.budget` epochs, measure loss and energy".
//!         let outcome = if lr > 0.19 {
//!             Outcome::Failure("diverged".into())
//!         } else {
//!             let loss = (lr.ln() + 4.0).abs() / trial.budget + 1.0 / bits;
//!             Outcome::Success(vec![loss, bits * bits])
//!         };
//!         if let Outcome::Success(f) = &outcome {
//!             finished.push((trial.budget, f.clone()));
//!         }
//!         opt.tell(trial.id, outcome)?;
//!     }
//! }
//! // The Pareto front of the trials at the full budget, from the optimizer's
//! // history or from one's own records.
//! assert!(!pareto_front(opt.history(), None).is_empty());
//! let full: Vec<Vec<f64>> = finished
//!     .iter()
//!     .filter(|(b, _)| *b == 20.0)
//!     .map(|(_, f)| f.clone())
//!     .collect();
//! let front = pareto::non_dominated(&full);
//! assert!(!front.is_empty());
//! let hv = pareto::hypervolume(&full, &[10.0, 30.0]);
//! assert!(hv > 0.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod ehvi;
pub mod evogp;
pub mod evotpe;
pub mod fidelity;
pub mod forest;
pub mod gp;
pub mod gp_ehvi;
pub mod hyperband;
mod lbfgs;
pub mod model_check;
pub mod nsga2;
pub mod optimizer;
pub mod parego;
pub mod pareto;
pub mod problems;
pub mod single;
pub mod space;
pub mod tpe;

pub use evogp::{EvoGp, EvoGpProposer, EvoGpSettings};
pub use evotpe::{EvoTpe, EvoTpeProposer, EvoTpeSettings};
pub use fidelity::{Bracket, FidelitySchedule, FixedBudget, Hyperband, Rung, SuccessiveHalving};
pub use gp_ehvi::{GpEhvi, GpEhviProposer, GpEhviSettings};
pub use hyperband::HyperbandOptimizer;
pub use nsga2::{Crossover, Mutation, Nsga2, Nsga2Settings};
pub use optimizer::{
    pareto_front, replay, Event, Observation, Optimizer, OptimizerError, Outcome, Proposer,
    Recorded, Trial, TrialId,
};
pub use parego::{BoundHandling, ParEgo, ParEgoProposer, ParEgoSettings, WeightSampling};
pub use pareto::TieBreak;
pub use single::{ProposerOptimizer, RandomProposer, RandomSearch};
pub use space::{
    Condition, Configuration, ConfigurationSpace, DimKind, Forbidden, Hyperparameter, SearchSpace,
    SpaceError, Value,
};
pub use tpe::{CandidateSelection, Tpe, TpeProposer, TpeSettings};
