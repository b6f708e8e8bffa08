//! Executors: where and how trials run, and the trial protocol they share.
//!
//! The run loop (ask the optimizer, hand trials to an executor, tell the
//! optimizer what came back) never evaluates a trial itself. An [`Executor`]
//! takes [`TrialTask`]s, runs them somewhere (worker threads in this process
//! ([`threads`]), child processes running `<binary> trial` ([`processes`]),
//! or jobs on a SLURM cluster ([`slurm`])) and hands back [`TrialReport`]s.
//! Failures of a trial (a panic, NaN, a time limit, running out of memory,
//! a cancelled job) are reports with a failed outcome, never executor
//! errors; [`ExecutorError`] is for the executor itself breaking.
//!
//! Executors are registered by name in the registry; [`ExecutorSetup`] is
//! what a factory gets to build one.

pub mod processes;
pub mod protocol;
pub mod slurm;
pub mod threads;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dsnn_core::train::TrainControl;
use dsnn_search::{Outcome, Trial, TrialId};
use serde::{Deserialize, Serialize};

pub use protocol::{
    trial_label, write_atomically, TrialInput, DEFAULT_TRIAL_ID, EXIT_INFRASTRUCTURE,
};

/// A trial handed to an executor: the optimizer's trial plus how often it was
/// started before (a resumed run re-runs trials that were in flight).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialTask {
    /// The configuration and budget to evaluate.
    pub trial: Trial,
    /// 0 for the first start, 1 after one interrupted attempt, ...
    pub attempt: u32,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What came back from one trial.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialReport {
    /// The trial's identifier (as asked from the optimizer).
    pub id: TrialId,
    /// Objective vector (all minimised) or the failure with its reason.
    pub outcome: Outcome,
    /// Everything measured, by name (accuracy, cross-entropy, energy in
    /// joules, latency, ...), whether or not it is an objective.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Wall-clock seconds the trial ran.
    pub duration_s: f64,
    /// Where it ran: `thread 0`, `pid 1234`, `slurm job 42`.
    pub worker: String,
    /// The failure is the experiment's, not the configuration's (its data
    /// cannot be read, ...): see [`crate::objective::EvalError::Setup`].
    #[serde(default, skip_serializing_if = "is_false")]
    pub setup_failure: bool,
}

impl TrialReport {
    /// A failed report for `id` with `reason`.
    pub fn failed(id: TrialId, reason: String, duration_s: f64, worker: String) -> Self {
        TrialReport {
            id,
            outcome: Outcome::Failure(reason),
            metrics: BTreeMap::new(),
            duration_s,
            worker,
            setup_failure: false,
        }
    }
}

/// Evaluates trials in this process (what worker threads call).
pub trait TrialEvaluator: Send + Sync {
    /// Evaluates `task` under `control` (deadline, cancel flag) and reports;
    /// never panics.
    fn evaluate(&self, task: &TrialTask, control: &TrainControl, worker: &str) -> TrialReport;
}

/// Everything an executor factory may need from the run it works for.
#[derive(Clone)]
pub struct ExecutorSetup {
    /// The run directory (`runs/<name>/`); executors keep their own files in
    /// a subdirectory named after themselves.
    pub run_dir: PathBuf,
    /// The resolved experiment file inside the run directory, which
    /// `<binary> trial` reads.
    pub experiment_file: PathBuf,
    /// The binary that child processes and jobs run (`dsnn`, or a research
    /// crate's own binary with the same CLI).
    pub exe: PathBuf,
    /// Trials at once (`[executor] workers`).
    pub workers: usize,
    /// Per-trial wall-clock limit, if any.
    pub trial_time_limit: Option<Duration>,
    /// Evaluates trials in this process (for in-process executors).
    pub evaluator: Arc<dyn TrialEvaluator>,
}

impl std::fmt::Debug for ExecutorSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorSetup")
            .field("run_dir", &self.run_dir)
            .field("experiment_file", &self.experiment_file)
            .field("exe", &self.exe)
            .field("workers", &self.workers)
            .field("trial_time_limit", &self.trial_time_limit)
            .finish()
    }
}

/// The executor itself failed (not a trial).
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// A file of the executor could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A command the executor depends on is missing or refused to work
    /// (for example `sbatch` not installed, or the controller unreachable).
    #[error("{0}")]
    Command(String),
    /// Anything else, with a message for the user.
    #[error("{0}")]
    Other(String),
}

/// Runs trials somewhere and reports what came back.
///
/// The run loop keeps at most [`Executor::slots`] trials in flight: it calls
/// [`Executor::submit`] while there are free slots and the optimizer has
/// trials, then [`Executor::wait`] for reports.
pub trait Executor: Send {
    /// A short name for logs: `threads`, `processes`, `slurm`.
    fn name(&self) -> &str;
    /// How many trials may be in flight at once.
    fn slots(&self) -> usize;
    /// How many trials are in flight now (submitted, not yet reported).
    fn in_flight(&self) -> usize;
    /// Whether trials run inside this process, so that a trial that
    /// aborts or runs out of memory takes the run down with it (a resumed
    /// run then fails a trial that was running at two such deaths instead
    /// of re-running it forever). Executors with their own processes or
    /// jobs say `false`, the default.
    fn runs_in_process(&self) -> bool {
        false
    }
    /// Start a trial. Returns once it is handed over, not when it finishes.
    fn submit(&mut self, task: TrialTask) -> Result<(), ExecutorError>;
    /// Reports of trials that finished, waiting up to `timeout` for at least
    /// one when none is ready. An empty vector means the timeout passed.
    fn wait(&mut self, timeout: Duration) -> Result<Vec<TrialReport>, ExecutorError>;
    /// Take over trials that were in flight when an earlier run on the
    /// same run directory stopped. The default starts each again; an
    /// executor whose work outlives the process (cluster jobs) collects
    /// finished ones and re-attaches to running ones instead.
    fn resume(&mut self, tasks: Vec<TrialTask>) -> Result<(), ExecutorError> {
        for task in tasks {
            self.submit(task)?;
        }
        Ok(())
    }
    /// Stop: with `cancel`, abandon trials in flight (kill processes, cancel
    /// jobs); without, let them finish but accept no more.
    fn shutdown(&mut self, cancel: bool) -> Result<(), ExecutorError>;
}
