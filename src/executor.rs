//! Executors: where and how trials run.
//!
//! The run loop (ask the optimizer, hand trials to an executor, tell the
//! optimizer what came back) never evaluates a trial itself. An [`Executor`]
//! takes [`TrialTask`]s, runs them somewhere (worker threads in this process,
//! child processes running `dsnn trial`, or jobs on a cluster) and hands back
//! [`TrialReport`]s. Failures of a trial (a panic, NaN, a time limit, running
//! out of memory, a cancelled job) are reports with a failed outcome, never
//! executor errors; [`ExecutorError`] is for the executor itself breaking.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use dsnn_search::{Outcome, Trial, TrialId};
use serde::{Deserialize, Serialize};

/// A trial handed to an executor: the optimizer's trial plus how often it was
/// started before (a resumed run re-runs trials that were in flight).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialTask {
    /// The configuration and budget to evaluate.
    pub trial: Trial,
    /// 0 for the first start, 1 after one interrupted attempt, ...
    pub attempt: u32,
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
}

/// Everything an executor may need from the run it works for.
#[derive(Clone, Debug)]
pub struct ExecutorContext {
    /// The run directory (`runs/<name>/`); executors keep their own files in
    /// a subdirectory named after themselves.
    pub run_dir: PathBuf,
    /// The resolved experiment file inside the run directory, which
    /// `dsnn trial` reads.
    pub experiment_file: PathBuf,
    /// The `dsnn` binary that child processes and jobs run.
    pub dsnn_exe: PathBuf,
    /// Per-trial wall-clock limit, if any.
    pub trial_time_limit: Option<Duration>,
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
    /// Start a trial. Returns once it is handed over, not when it finishes.
    fn submit(&mut self, task: TrialTask) -> Result<(), ExecutorError>;
    /// Reports of trials that finished, waiting up to `timeout` for at least
    /// one when none is ready. An empty vector means the timeout passed.
    fn wait(&mut self, timeout: Duration) -> Result<Vec<TrialReport>, ExecutorError>;
    /// Take over trials that were in flight when an earlier `dsnn run` on the
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
