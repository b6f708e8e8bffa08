//! The objective of a run: what one trial computes.
//!
//! An [`Objective`] evaluates one configuration at one budget and returns
//! named metrics; the run picks its objective vector (all minimised) from
//! them by name. The DSNN objective (train a Deep Shift network, measure
//! its loss and energy) and the test problems are two implementations;
//! research code brings its own and registers it (see `docs/library.md`).
//! Whatever the objective, a run gets the whole machinery: the run store,
//! resume, every executor, progress, reports.
//!
//! The run layer wraps every evaluation the same way (`runner`'s
//! evaluator): panics, errors and non-finite objectives become failed
//! reports with their reason, never fake values.

use std::collections::BTreeMap;
use std::path::Path;

use dsnn_core::train::TrainControl;
use dsnn_energy::{CarbonAccount, EnergyMeter, OpProfile};
use dsnn_search::{SearchSpace, Trial};

/// Everything one evaluation measured, by name.
pub type Metrics = BTreeMap<String, f64>;

/// A metric an objective reports, for choosing objectives and labelling
/// reports.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricInfo {
    /// Its name (`loss`, `energy`, `f1`, ...).
    pub name: String,
    /// Its unit (`J/image`, `gCO2e`, `1 - accuracy`).
    pub unit: String,
    /// Whether it is measured on the machine (energy, time), so that it
    /// depends on where the trial ran.
    pub measured: bool,
}

impl MetricInfo {
    /// A metric named `name` in `unit`.
    pub fn new(name: &str, unit: &str, measured: bool) -> Self {
        MetricInfo {
            name: name.into(),
            unit: unit.into(),
            measured,
        }
    }
}

/// Why an evaluation produced no metrics.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// This configuration failed (diverged, too big, out of time): the
    /// trial is recorded as failed and the search goes on.
    #[error("{0}")]
    Trial(String),
    /// The experiment cannot be evaluated at all here (its data cannot be
    /// read, a meter is missing): not the configuration's fault, so a run
    /// stops instead of charging it to one trial after another.
    #[error("{0}")]
    Setup(String),
}

/// Energy measurement for a trial: the run's meter, as `[energy]`
/// configures it, and its carbon accounting.
pub trait EnergyContext: Send + Sync {
    /// A fresh meter; `profile` is the per-image operation profile of the
    /// network being measured, which the op-count model prices.
    fn meter(&self, profile: Option<&OpProfile>) -> Result<Box<dyn EnergyMeter>, String>;
    /// The meter's kind as written (`opcount`, `estimator`, a plugin's name).
    fn kind(&self) -> &str;
    /// Whether the meter is the op-count model (energy from the profile,
    /// not a measurement).
    fn is_op_count(&self) -> bool {
        self.kind() == "opcount"
    }
    /// Grams of CO2e per joule, as the run's grid and PUE say.
    fn carbon(&self) -> &CarbonAccount;
}

/// What an objective gets for one evaluation.
pub struct TrialContext<'a> {
    /// The configuration, its budget and its id.
    pub trial: &'a Trial,
    /// The trial's label in logs (`7`, `default`).
    pub label: &'a str,
    /// The trial's seed, derived from the run's seed and the trial's
    /// identity: the same whatever executor or worker runs it.
    pub seed: u64,
    /// Deadline and cancel flag: long evaluations check it regularly.
    pub control: &'a TrainControl,
    /// The run's energy meter and carbon accounting.
    pub energy: &'a dyn EnergyContext,
    /// The run directory, for files the objective keeps per trial (the
    /// emissions log); `None` in library use without a run.
    pub run_dir: Option<&'a Path>,
}

/// A problem of a search space with an objective, located by hyperparameter.
#[derive(Debug, Clone, PartialEq)]
pub struct SpaceIssue {
    /// The hyperparameter at fault, if one is.
    pub hyperparameter: Option<String>,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// Evaluates configurations: the extension point for what a run measures.
pub trait Objective: Send + Sync {
    /// The metrics it reports; a run's `objectives` are chosen among them.
    fn metrics(&self) -> Vec<MetricInfo>;

    /// The objectives a run minimises when its file names none.
    fn default_objectives(&self) -> Vec<String>;

    /// The full budget when `[fidelity] max` is not given.
    fn default_max_budget(&self) -> f64 {
        1.0
    }

    /// The search space the objective brings itself (a test problem's
    /// variables); `None` when the experiment file gives one in `[space]`.
    fn own_space(&self) -> Option<std::sync::Arc<dyn SearchSpace>> {
        None
    }

    /// Checks a search space against what the objective accepts (names,
    /// values of the default configuration); `dsnn check` reports the
    /// issue at the hyperparameter's line.
    fn check_space(&self, space: &dyn SearchSpace) -> Result<(), SpaceIssue> {
        let _ = space;
        Ok(())
    }

    /// Evaluates one trial.
    fn evaluate(&self, ctx: &TrialContext) -> Result<Metrics, EvalError>;
}

/// The seed of a trial: the run's seed mixed with the trial's id, so a
/// trial trains the same way whichever worker, process or node runs it.
pub fn trial_seed(run_seed: u64, trial_id: u64) -> u64 {
    run_seed ^ trial_id.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
