//! The run loop: ask the optimizer, hand trials to the executor, log and tell
//! what comes back; resume from the run directory after a crash.
//!
//! ```no_run
//! use dsnn::experiment::CheckedExperiment;
//! use dsnn::runner::{run_experiment, RunOptions};
//!
//! let registry = dsnn::builtins::registry();
//! let exp = CheckedExperiment::from_file("examples/experiments/problem_zdt1.toml".as_ref(), &registry)?;
//! let outcome = run_experiment(exp, RunOptions::default())?;
//! println!("{} trials, front of {}", outcome.summary.trials, outcome.summary.front.len());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod evaluator;
mod in_order;
mod progress;
pub mod warm_start;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dsnn_search::{replay, Optimizer, OptimizerError, Outcome, Trial};

use crate::executor::{
    trial_label, Executor, ExecutorError, ExecutorSetup, TrialReport, TrialTask, DEFAULT_TRIAL_ID,
};
use crate::experiment::{CheckedExperiment, StopRule, TellOrder};
use crate::report::{summarize, write_reports, LiveFront, Summary};
use crate::settings::ConfigError;
use crate::store::{LogRecord, RunStore, StoreError};

pub use evaluator::{evaluate_trial, panic_message, RunEvaluator};
use in_order::{Arrived, InOrder};
use progress::StatusTracker;
pub use progress::{NoProgress, Progress, RunStatus};
use warm_start::WarmStart;

/// Errors that stop a run (trial failures never do).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The experiment file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The run directory could not be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The optimizer failed (or a resumed history could not be replayed).
    #[error("optimizer: {0}")]
    Optimizer(#[from] OptimizerError),
    /// The executor broke.
    #[error("executor: {0}")]
    Executor(#[from] ExecutorError),
    /// A trial failed for a reason of the experiment, not of its
    /// configuration (its data cannot be read, ...): the run stops, the
    /// trial is not charged (it runs again when the run resumes).
    #[error("trial {trial} could not run: {reason}; fix the experiment and run it again to resume (the trial is not counted as failed)")]
    Setup {
        /// The trial's label.
        trial: String,
        /// Why.
        reason: String,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Options of [`run_experiment`] beyond the experiment file. Build with
/// `RunOptions::default()` and the builder methods.
pub struct RunOptions {
    /// The binary child processes and cluster jobs run (`<exe> trial`):
    /// `None` is the running binary, which must have the CLI (dsnn's, or a
    /// research crate's own built with `dsnn::cli`).
    pub exe: Option<PathBuf>,
    /// Set from outside (a Ctrl-C handler) to stop the run cleanly.
    pub interrupt: Arc<AtomicBool>,
    /// Receives a line for every finished trial and the run's status.
    pub progress: Box<dyn Progress>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            exe: None,
            interrupt: Arc::new(AtomicBool::new(false)),
            progress: Box::new(NoProgress),
        }
    }
}

impl RunOptions {
    /// Runs trials of child processes and jobs with `exe`.
    pub fn exe(mut self, exe: PathBuf) -> Self {
        self.exe = Some(exe);
        self
    }

    /// Stops the run cleanly when `flag` is set.
    pub fn interrupt(mut self, flag: Arc<AtomicBool>) -> Self {
        self.interrupt = flag;
        self
    }

    /// Shows progress with `progress`.
    pub fn progress(mut self, progress: Box<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }
}

/// Why a session of a run stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// Interrupted from outside (Ctrl-C, SIGTERM, the interrupt flag).
    Interrupted,
    /// `stop.wall_time_s` was reached.
    WallTime {
        /// The limit.
        limit_s: f64,
    },
    /// `stop.trials` trials finished.
    TrialsDone {
        /// How many.
        trials: u64,
    },
    /// The trials asked used `stop.budget` and all of them finished.
    BudgetSpent {
        /// The budget the trials asked used (at least `stop.budget`).
        budget: f64,
    },
    /// The optimizer had no more trials to give.
    OptimizerExhausted,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Interrupted => f.write_str("interrupted"),
            StopReason::WallTime { limit_s } => write!(f, "wall time of {limit_s:.0} s reached"),
            StopReason::TrialsDone { trials } => write!(f, "{trials} trials done"),
            StopReason::BudgetSpent { budget } => write!(f, "budget of {budget} used"),
            StopReason::OptimizerExhausted => f.write_str("the optimizer has no more trials"),
        }
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct RunOutcome {
    /// The run directory.
    pub run_dir: PathBuf,
    /// The summary written there.
    pub summary: Summary,
    /// Why the session stopped.
    pub reason: StopReason,
    /// The reports written into the run directory (summaries, front, plots).
    pub reports: Vec<PathBuf>,
}

/// How often a running session writes its heartbeat (the wall time a
/// session killed without a stop record can lose).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Removes a run directory created by this session when dropped while it
/// still holds one: the session failed before any trial could start.
struct NewRunDirGuard {
    dir: Option<PathBuf>,
}

impl Drop for NewRunDirGuard {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => log::debug!("removed {} after a failed start", dir.display()),
                Err(e) => log::warn!("could not remove {}: {e}", dir.display()),
            }
        }
    }
}

/// Carries out (or resumes) the run of a checked experiment.
pub fn run_experiment(
    exp: CheckedExperiment,
    mut opts: RunOptions,
) -> Result<RunOutcome, RunError> {
    let run_dir = exp.run_dir();
    let resolved = exp.resolved_toml();
    // A run directory this call creates is removed again if the optimizer or
    // the executor cannot be set up (an unknown plugin, no sbatch), so that
    // the corrected file can run under the same name.
    let mut new_dir_guard = NewRunDirGuard {
        dir: (!run_dir.exists()).then(|| run_dir.clone()),
    };
    let (mut store, mut history) = RunStore::open(&run_dir, &resolved)?;
    let names = exp.objective_names().to_vec();
    let mut optimizer = exp.build_optimizer()?;
    let mut warm_start = None;
    if let Err(e) = replay(optimizer.as_mut(), &history.events) {
        // The optimizer or dsnn changed since the log was written: a fresh
        // optimizer takes over instead of the run being stranded.
        let (fresh, how) = warm_start::take_over(exp.build_optimizer()?, &history)?;
        optimizer = fresh;
        let what = match how {
            WarmStart::Adopted => "a fresh optimizer took over every logged trial and result",
            WarmStart::Afresh => {
                "a fresh optimizer, which cannot take over logged trials, started afresh"
            }
        };
        log::warn!(
            "{}: the trial log no longer replays ({e}): warm start, {what}; trials in flight run again",
            run_dir.display()
        );
        warm_start = Some(format!("{e}; {what}"));
    }
    let resumed = !history.results.is_empty() || !history.in_flight.is_empty();
    let mut tracker = StatusTracker {
        status: RunStatus {
            finished: 0,
            running: 0,
            failed: 0,
            hypervolume: None,
            elapsed_s: history.elapsed_s,
            remaining_s: None,
        },
        live: LiveFront::new(names.len()),
        hv_at: None,
        results_before: history.results.len(),
        budget_done: 0.0,
        budget_before: 0.0,
        session_start: Instant::now(),
    };
    for (t, r) in &history.results {
        tracker.add(t, &r.outcome);
    }
    tracker.budget_before = tracker.budget_done;
    tracker.status.hypervolume = tracker.live.hypervolume();
    if resumed {
        opts.progress.line(
            &format!(
                "resuming {}: {} trials done, {} to re-run",
                run_dir.display(),
                history.finished_trials(),
                history.in_flight.len()
            ),
            &tracker.status,
        );
    }
    let started_at = now_s();
    if let Some(reason) = warm_start {
        store.append(&LogRecord::WarmStart {
            reason: reason.clone(),
        })?;
        history.warm_starts.push(reason);
    }
    store.append(&LogRecord::Session {
        started_at,
        version: env!("CARGO_PKG_VERSION").into(),
        elapsed_s: history.elapsed_s,
    })?;
    let exe = match opts.exe.take() {
        Some(e) => e,
        None => std::env::current_exe()
            .map_err(|e| RunError::Other(format!("locating the running binary: {e}")))?,
    };
    let setup = ExecutorSetup {
        run_dir: run_dir.clone(),
        experiment_file: run_dir.join(RunStore::EXPERIMENT),
        exe,
        workers: exp.executor.workers,
        trial_time_limit: exp.executor.trial_time_limit,
        evaluator: Arc::new(RunEvaluator::new(&exp, Some(run_dir.clone()))),
    };
    let mut executor: Box<dyn Executor> =
        exp.executor.factory.build(&exp.executor.settings, setup)?;

    new_dir_guard.dir = None;

    let mut trials_of: BTreeMap<u64, Trial> = BTreeMap::new();
    let mut h = history;
    // Trials in flight when the last session stopped: run them again,
    // but not one that was running in this process when it died twice: it
    // is taken to kill the run (an abort, running out of memory) and fails.
    let mut crashed_twice = Vec::new();
    let mut pending: Vec<TrialTask> = Vec::new();
    for (t, attempts) in &h.in_flight {
        let crashes = h.crashes.get(&t.id).copied().unwrap_or(0);
        if executor.runs_in_process() && crashes >= 2 {
            crashed_twice.push((t.clone(), crashes));
        } else {
            pending.push(TrialTask {
                trial: t.clone(),
                attempt: *attempts,
            });
        }
    }
    for (trial, crashes) in crashed_twice {
        let report = TrialReport::failed(
            trial.id,
            format!(
                "the run died {crashes} times while this trial ran in its process (an abort, \
                 running out of memory, or a kill): it is not run again; the processes executor \
                 isolates such trials"
            ),
            0.0,
            "crashed".into(),
        );
        let at = h.elapsed_s;
        record_result(optimizer.as_mut(), &mut store, &mut h, trial, report, at)?;
    }
    // The default configuration first, at the full budget.
    if h.default_trial.is_none() {
        let trial = Trial {
            id: DEFAULT_TRIAL_ID,
            config: exp.space.default_configuration(),
            budget: exp.max_budget(),
        };
        store.append(&LogRecord::Default {
            trial: trial.clone(),
        })?;
        h.default_trial = Some(trial.clone());
        pending.insert(0, TrialTask { trial, attempt: 0 });
    }
    for t in &pending {
        trials_of.insert(t.trial.id, t.trial.clone());
    }
    // With `tell_order = "trial"`, results wait for those of earlier
    // trials, and trials asked wait there for a free worker.
    let mut in_order = (exp.executor.tell_order == TellOrder::Trial).then(|| {
        InOrder::new(
            exp.executor.tell_window,
            pending
                .iter()
                .map(|t| t.trial.id)
                .filter(|id| *id != DEFAULT_TRIAL_ID),
        )
    });
    let mut asked = h.asked_trials() as u64;
    let mut asked_budget = h.asked_budget();
    let mut finished = h.finished_trials() as u64;
    executor.resume(pending)?;

    let session_start = Instant::now();
    let elapsed = |h_el: f64| h_el + session_start.elapsed().as_secs_f64();
    let stop = &exp.stop;
    let mut optimizer_idle = false;
    let mut last_beat = Instant::now();
    let reason: StopReason;
    loop {
        if opts.interrupt.load(Ordering::Relaxed) {
            executor.shutdown(true)?;
            flush_in_order(optimizer.as_mut(), &mut store, &mut h, in_order.as_mut())?;
            reason = StopReason::Interrupted;
            break;
        }
        let el = elapsed(h.elapsed_s);
        if let Some(limit_s) = stop.wall_time_s.filter(|w| el >= *w) {
            executor.shutdown(true)?;
            flush_in_order(optimizer.as_mut(), &mut store, &mut h, in_order.as_mut())?;
            reason = StopReason::WallTime { limit_s };
            break;
        }
        let trials_done = stop.trials.is_some_and(|n| finished >= n);
        if trials_done && executor.in_flight() == 0 {
            reason = StopReason::TrialsDone { trials: finished };
            break;
        }
        if !stop.budget_open(asked_budget) && executor.in_flight() == 0 {
            reason = StopReason::BudgetSpent {
                budget: asked_budget,
            };
            break;
        }
        let free = executor.slots().saturating_sub(executor.in_flight());
        let quota = if stop.budget_open(asked_budget) {
            stop.trials
                .map_or(usize::MAX, |n| n.saturating_sub(asked) as usize)
        } else {
            0
        };
        let want = free.min(quota);
        if let Some(order) = in_order.as_mut() {
            let at = elapsed(h.elapsed_s);
            trials_of.extend(ask_in_order(
                optimizer.as_mut(),
                &mut store,
                order,
                (&mut asked, &mut asked_budget),
                stop,
                &mut optimizer_idle,
                at,
            )?);
            while executor.in_flight() < executor.slots() {
                let Some(task) = order.next_to_run() else {
                    break;
                };
                executor.submit(task)?;
            }
        } else if want > 0 && !optimizer_idle {
            let trials = optimizer.ask(want)?;
            store.append(&LogRecord::Ask {
                n: want,
                trials: trials.clone(),
                elapsed_s: elapsed(h.elapsed_s),
            })?;
            if trials.is_empty() {
                optimizer_idle = true;
            }
            for t in trials {
                asked += 1;
                asked_budget += t.budget;
                trials_of.insert(t.id, t.clone());
                executor.submit(TrialTask {
                    trial: t,
                    attempt: 0,
                })?;
            }
        }
        if executor.in_flight() == 0 {
            if optimizer_idle || quota == 0 {
                reason = StopReason::OptimizerExhausted;
                break;
            }
            continue;
        }
        if last_beat.elapsed() >= HEARTBEAT_INTERVAL {
            store.heartbeat(started_at, elapsed(h.elapsed_s));
            last_beat = Instant::now();
        }
        let reports = executor.wait(Duration::from_millis(200))?;
        if opts.interrupt.load(Ordering::Relaxed) {
            // Trials that ended because of the interruption are not results:
            // they run again on resume.
            continue;
        }
        for report in reports {
            if report.setup_failure {
                // Not the configuration's fault: nothing is logged for the
                // trial, so a resumed run evaluates it again.
                executor.shutdown(true)?;
                flush_in_order(optimizer.as_mut(), &mut store, &mut h, in_order.as_mut())?;
                let reason = match &report.outcome {
                    Outcome::Failure(r) => r.clone(),
                    Outcome::Success(_) => String::new(),
                };
                store.append(&LogRecord::Stop {
                    reason: format!("setup failure: {reason}"),
                    elapsed_s: elapsed(h.elapsed_s),
                })?;
                return Err(RunError::Setup {
                    trial: trial_label(report.id),
                    reason,
                });
            }
            let Some(trial) = trials_of.remove(&report.id) else {
                log::warn!("ignoring a report for unknown trial {}", report.id);
                continue;
            };
            if trial.id != DEFAULT_TRIAL_ID {
                finished += 1;
            }
            let at = elapsed(h.elapsed_s);
            tracker.add(&trial, &report.outcome);
            let used = (tracker.budget_done, stop.budget);
            let line = progress_line(&trial, &report, &names, finished, stop.trials, used);
            match in_order.as_mut() {
                Some(order) if trial.id != DEFAULT_TRIAL_ID => {
                    order.arrive(Arrived { trial, report, at });
                    // Each tell in its turn, and the next ask right after
                    // it, so the sequence does not depend on which
                    // results came back together.
                    while let Some(a) = order.next() {
                        record_result(
                            optimizer.as_mut(),
                            &mut store,
                            &mut h,
                            a.trial,
                            a.report,
                            a.at,
                        )?;
                        optimizer_idle = false;
                        trials_of.extend(ask_in_order(
                            optimizer.as_mut(),
                            &mut store,
                            order,
                            (&mut asked, &mut asked_budget),
                            stop,
                            &mut optimizer_idle,
                            at,
                        )?);
                    }
                }
                _ => {
                    if trial.id != DEFAULT_TRIAL_ID {
                        optimizer_idle = false;
                    }
                    record_result(optimizer.as_mut(), &mut store, &mut h, trial, report, at)?;
                }
            }
            let status = tracker.update(stop, executor.in_flight(), at, h.results.len());
            opts.progress.line(&line, status);
        }
        let status = tracker.update(
            stop,
            executor.in_flight(),
            elapsed(h.elapsed_s),
            h.results.len(),
        );
        opts.progress.status(status);
    }
    let total = elapsed(h.elapsed_s);
    h.elapsed_s = total;
    store.append(&LogRecord::Stop {
        reason: reason.to_string(),
        elapsed_s: total,
    })?;
    let summary = summarize(&exp.name, &names, &h);
    let reports = write_reports(&run_dir, &summary, &h).map_err(|e| {
        RunError::Store(StoreError::Io {
            path: run_dir.clone(),
            source: e,
        })
    })?;
    Ok(RunOutcome {
        run_dir,
        summary,
        reason,
        reports,
    })
}

/// With `tell_order = "trial"`: asks one trial at a time while the window
/// has room, `stop.trials` allows more and the optimizer has trials, and
/// logs each ask, queueing the trials in `order`. Returns them by id.
fn ask_in_order(
    optimizer: &mut dyn Optimizer,
    store: &mut RunStore,
    order: &mut InOrder,
    (asked, asked_budget): (&mut u64, &mut f64),
    stop: &StopRule,
    idle: &mut bool,
    at: f64,
) -> Result<Vec<(u64, Trial)>, RunError> {
    let mut out = Vec::new();
    while !*idle
        && order.room() > 0
        && stop.trials.is_none_or(|n| *asked < n)
        && stop.budget_open(*asked_budget)
    {
        let trials = optimizer.ask(1)?;
        store.append(&LogRecord::Ask {
            n: 1,
            trials: trials.clone(),
            elapsed_s: at,
        })?;
        if trials.is_empty() {
            *idle = true;
        }
        for t in trials {
            *asked += 1;
            *asked_budget += t.budget;
            out.push((t.id, t.clone()));
            order.asked(t);
        }
    }
    Ok(out)
}

/// A session that stops tells and logs the results that came back but
/// still wait for earlier trials' (in ask order), so that they are not run
/// again.
fn flush_in_order(
    optimizer: &mut dyn Optimizer,
    store: &mut RunStore,
    h: &mut crate::store::History,
    order: Option<&mut InOrder>,
) -> Result<(), RunError> {
    for a in order.map(|o| o.drain()).unwrap_or_default() {
        record_result(optimizer, store, h, a.trial, a.report, a.at)?;
    }
    Ok(())
}

/// Tells the optimizer a trial's outcome (not the default's, which it never
/// asked for), then logs it and adds it to the history. Tell first: a tell
/// that fails stops the run before the result is logged, so the log always
/// replays.
fn record_result(
    optimizer: &mut dyn dsnn_search::Optimizer,
    store: &mut RunStore,
    h: &mut crate::store::History,
    trial: Trial,
    report: TrialReport,
    at: f64,
) -> Result<(), RunError> {
    if trial.id != DEFAULT_TRIAL_ID {
        optimizer.tell(trial.id, report.outcome.clone())?;
    }
    store.append(&LogRecord::Result {
        budget: trial.budget,
        report: report.clone(),
        elapsed_s: at,
    })?;
    h.results.push((trial, report));
    h.result_elapsed_s.push(at);
    Ok(())
}

fn progress_line(
    trial: &Trial,
    report: &TrialReport,
    names: &[String],
    finished: u64,
    limit: Option<u64>,
    (budget_used, budget): (f64, Option<f64>),
) -> String {
    let trials = match limit {
        Some(n) => format!("{finished}/{n}"),
        None => format!("{finished}"),
    };
    let count = match budget {
        Some(b) => format!("[{trials}, budget {budget_used}/{b}]"),
        None => format!("[{trials}]"),
    };
    let what = match &report.outcome {
        Outcome::Success(f) => names
            .iter()
            .zip(f)
            .map(|(n, v)| format!("{n} {v:.4e}"))
            .collect::<Vec<_>>()
            .join(", "),
        Outcome::Failure(r) => format!("FAILED: {r}"),
    };
    format!(
        "{count} trial {} (budget {}) on {}: {what} ({:.1} s)",
        trial_label(trial.id),
        trial.budget,
        report.worker,
        report.duration_s
    )
}
