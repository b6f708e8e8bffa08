//! The run loop: ask the optimizer, hand trials to the executor, log and tell
//! what comes back; resume from the run directory after a crash.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dsnn_search::{
    replay, ConfigurationSpace, FidelitySchedule, FixedBudget, Hyperband, HyperbandOptimizer,
    Nsga2, Nsga2Settings, Optimizer, OptimizerError, Outcome, ParEgoProposer, ParEgoSettings,
    ProposerOptimizer, RandomProposer, SearchSpace, SuccessiveHalving, TpeProposer, Trial,
};

use crate::executor::{Executor, ExecutorContext, ExecutorError, TrialReport, TrialTask};
use crate::experiment::{
    objective_names, parse_memory, BuiltInOptimizer, CheckedExperiment, ExecutorKind, FidelityKind,
    OptimizerSection, PluginChoice,
};
use crate::local::{ProcessExecutor, ThreadExecutor};
use crate::objective::{trial_label, Objective, DEFAULT_TRIAL_ID};
use crate::report::{summarize, write_reports, LiveFront, Summary};
use crate::store::{LogRecord, RunStore, StoreError};

/// Errors that stop a run (trial failures never do).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The experiment file is invalid.
    #[error(transparent)]
    Config(#[from] crate::experiment::ConfigError),
    /// The run directory could not be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The optimizer failed (or a resumed history could not be replayed).
    #[error("optimizer: {0}")]
    Optimizer(#[from] OptimizerError),
    /// The executor broke.
    #[error("executor: {0}")]
    Executor(#[from] ExecutorError),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Builds optimizers that are not built in (plugins). The run layer is given
/// one by the binary, which knows where plugins live.
pub type PluginOptimizerFactory = dyn Fn(&PluginChoice, &ConfigurationSpace, u64) -> Result<Box<dyn Optimizer>, String>
    + Send
    + Sync;

/// Builds executors that are not built in (`kind = "slurm"`).
pub type ExecutorFactory = dyn Fn(&CheckedExperiment, ExecutorContext) -> Result<Box<dyn Executor>, RunError>
    + Send
    + Sync;

/// The fidelity schedule of an experiment.
pub fn schedule(exp: &CheckedExperiment) -> Result<Box<dyn FidelitySchedule>, RunError> {
    let f = &exp.experiment.fidelity;
    let max = exp.max_budget();
    Ok(match f.kind {
        FidelityKind::Fixed => Box::new(FixedBudget { budget: max }),
        FidelityKind::Hyperband => Box::new(Hyperband::new(f.min.unwrap_or(1.0), max, f.eta)?),
        FidelityKind::SuccessiveHalving => {
            Box::new(SuccessiveHalving::new(f.min.unwrap_or(1.0), max, f.eta)?)
        }
    })
}

/// Builds the optimizer an experiment names (a fresh one, seeded by the
/// experiment's seed).
pub fn build_optimizer(
    exp: &CheckedExperiment,
    plugins: Option<&PluginOptimizerFactory>,
) -> Result<Box<dyn Optimizer>, RunError> {
    let space: Arc<dyn SearchSpace> = exp.space.clone();
    let seed = exp.experiment.seed;
    let sched = schedule(exp)?;
    let multi = exp.experiment.fidelity.kind != FidelityKind::Fixed;
    let max = exp.max_budget();
    Ok(match &exp.experiment.optimizer {
        OptimizerSection::Plugin(p) => {
            let f = plugins.ok_or_else(|| {
                RunError::Other(format!(
                    "optimizer plugin `{}`: plugins are not available here",
                    p.plugin
                ))
            })?;
            f(p, &exp.space, seed).map_err(RunError::Other)?
        }
        OptimizerSection::BuiltIn(BuiltInOptimizer::Random) => {
            let proposer = RandomProposer::new(space);
            if multi {
                Box::new(HyperbandOptimizer::new(sched.as_ref(), proposer, seed)?)
            } else {
                Box::new(ProposerOptimizer::new(proposer, max, seed))
            }
        }
        OptimizerSection::BuiltIn(BuiltInOptimizer::Parego {
            n_initial,
            rho,
            random_fraction,
        }) => {
            let mut s = ParEgoSettings::default();
            if let Some(n) = n_initial {
                s.n_initial = *n;
            }
            if let Some(r) = rho {
                s.rho = *r;
            }
            if let Some(r) = random_fraction {
                s.random_fraction = *r;
            }
            let proposer = ParEgoProposer::new(space, s);
            if multi {
                Box::new(HyperbandOptimizer::new(sched.as_ref(), proposer, seed)?)
            } else {
                Box::new(ProposerOptimizer::new(proposer, max, seed))
            }
        }
        OptimizerSection::BuiltIn(BuiltInOptimizer::Tpe(settings)) => {
            settings.validate()?;
            let proposer = TpeProposer::new(space, settings.clone());
            if multi {
                Box::new(HyperbandOptimizer::new(sched.as_ref(), proposer, seed)?)
            } else {
                Box::new(ProposerOptimizer::new(proposer, max, seed))
            }
        }
        OptimizerSection::BuiltIn(BuiltInOptimizer::Nsga2 {
            population,
            offspring,
        }) => {
            let mut s = Nsga2Settings {
                budget: max,
                ..Nsga2Settings::for_budget(exp.experiment.stop.trials)
            };
            if let Some(p) = population {
                s.population = *p;
                s.offspring = *p;
            }
            if let Some(o) = offspring {
                s.offspring = *o;
            }
            Box::new(Nsga2::new(space, s, seed)?)
        }
    })
}

/// Options of [`run_experiment`] beyond the experiment file.
pub struct RunOptions {
    /// The `dsnn` binary (for the process and cluster executors).
    pub dsnn_exe: PathBuf,
    /// Optimizer plugins.
    pub plugins: Option<Box<PluginOptimizerFactory>>,
    /// Executors that are not built in (SLURM).
    pub executors: Option<Box<ExecutorFactory>>,
    /// Meter factory for the in-process objective (meter plugins).
    pub meters: Option<Box<crate::objective::MeterFactory>>,
    /// Set from outside (a Ctrl-C handler) to stop the run cleanly.
    pub interrupt: Arc<AtomicBool>,
    /// Receives a line for every finished trial and the run's status.
    pub progress: Box<dyn Progress>,
}

/// Where a run stands, for progress displays.
#[derive(Clone, Debug, PartialEq)]
pub struct RunStatus {
    /// Optimizer trials finished, earlier sessions included (the default
    /// trial not counted).
    pub finished: u64,
    /// Trials running now.
    pub running: usize,
    /// Of the finished trials, how many failed.
    pub failed: u64,
    /// The front's normalised hypervolume so far ([`LiveFront`]: scaled to
    /// the range of the results so far, so it can fall when a trial widens
    /// the range; `None` until they differ in every objective).
    pub hypervolume: Option<f64>,
    /// The run's wall-clock seconds, summed over sessions.
    pub elapsed_s: f64,
    /// Seconds until the stopping rule ends the run, roughly: the wall-time
    /// limit, or the trials left at this session's rate so far (budgets that
    /// grow, as in Hyperband, make it optimistic), whichever comes first;
    /// `None` while there is nothing to estimate from.
    pub remaining_s: Option<f64>,
}

impl RunStatus {
    /// One line: running and failed trials, hypervolume, elapsed and
    /// remaining time.
    pub fn describe(&self) -> String {
        let hv = self
            .hypervolume
            .map_or("-".to_string(), |v| format!("{v:.4}"));
        let left = self
            .remaining_s
            .map_or(String::new(), |r| format!(", ~{} left", duration(r)));
        format!(
            "{} running, {} failed, hypervolume {hv}, {} elapsed{left}",
            self.running,
            self.failed,
            duration(self.elapsed_s)
        )
    }
}

/// `42 s`, `3 min 05 s` or `2 h 07 min`.
fn duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

/// Receives a run's progress (the binary shows a progress bar on a terminal
/// and plain lines elsewhere).
pub trait Progress {
    /// A message (a finished trial, a resume) and the status after it.
    fn line(&mut self, line: &str, status: &RunStatus);
    /// The status, several times a second while the run waits for trials.
    fn status(&mut self, status: &RunStatus);
}

/// A [`Progress`] that shows nothing (library use, tests).
pub struct NoProgress;

impl Progress for NoProgress {
    fn line(&mut self, _: &str, _: &RunStatus) {}
    fn status(&mut self, _: &RunStatus) {}
}

/// Keeps a run's [`RunStatus`] up to date as results come in.
struct StatusTracker {
    status: RunStatus,
    live: LiveFront,
    /// When the live hypervolume was last computed.
    hv_at: Option<Instant>,
    /// Results in the log when this session started.
    results_before: usize,
    session_start: Instant,
}

impl StatusTracker {
    /// The live hypervolume is recomputed at most this often (once known).
    const HV_EVERY: Duration = Duration::from_millis(500);

    /// Takes a finished trial into account.
    fn add(&mut self, trial: &Trial, outcome: &Outcome) {
        self.live.add(trial.budget, outcome);
        if trial.id != DEFAULT_TRIAL_ID {
            self.status.finished += 1;
            self.status.failed += u64::from(matches!(outcome, Outcome::Failure(_)));
        }
    }

    /// Refreshes the hypervolume, the running trials, the elapsed time and
    /// the estimate of the remaining time (see [`RunStatus::remaining_s`])
    /// with `results` in the log now.
    fn update(
        &mut self,
        stop: &crate::experiment::StopSection,
        running: usize,
        elapsed_s: f64,
        results: usize,
    ) -> &RunStatus {
        let st = &mut self.status;
        if st.hypervolume.is_none() || self.hv_at.is_none_or(|t| t.elapsed() >= Self::HV_EVERY) {
            st.hypervolume = self.live.hypervolume();
            self.hv_at = Some(Instant::now());
        }
        st.running = running;
        st.elapsed_s = elapsed_s;
        // The default's result counts towards this session's rate.
        let done = results - self.results_before;
        let session_s = self.session_start.elapsed().as_secs_f64();
        let by_time = stop.wall_time_s.map(|w| (w - elapsed_s).max(0.0));
        let by_trials = stop.trials.and_then(|n| {
            (done > 0).then(|| session_s / done as f64 * n.saturating_sub(st.finished) as f64)
        });
        st.remaining_s = match (by_time, by_trials) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        st
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
    pub reason: String,
    /// The reports written into the run directory (summaries, front, plots).
    pub reports: Vec<PathBuf>,
}

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
    let (mut store, history) = RunStore::open(&run_dir, &resolved)?;
    let names = objective_names(&exp);
    let mut optimizer = build_optimizer(&exp, opts.plugins.as_deref())?;
    replay(optimizer.as_mut(), &history.events).map_err(|e| {
        RunError::Other(format!(
            "cannot resume {}: replaying its trial log on a fresh optimizer failed ({e}); was the optimizer or dsnn changed since?",
            run_dir.display()
        ))
    })?;
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
        session_start: Instant::now(),
    };
    for (t, r) in &history.results {
        tracker.add(t, &r.outcome);
    }
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
    store.append(&LogRecord::Session {
        started_at: now_s(),
        version: env!("CARGO_PKG_VERSION").into(),
    })?;
    let ctx = ExecutorContext {
        run_dir: run_dir.clone(),
        experiment_file: run_dir.join(RunStore::EXPERIMENT),
        dsnn_exe: opts.dsnn_exe.clone(),
        trial_time_limit: exp
            .experiment
            .executor
            .trial_time_limit_s
            .map(Duration::from_secs_f64),
    };
    let mut executor: Box<dyn Executor> = match exp.experiment.executor.kind {
        ExecutorKind::Threads => {
            let mut objective = Objective::new(exp.clone(), Some(run_dir.clone()));
            if let Some(m) = opts.meters.take() {
                objective = objective.with_meter_factory(m);
            }
            Box::new(ThreadExecutor::new(
                Arc::new(objective),
                exp.experiment.executor.workers,
                ctx.trial_time_limit,
            ))
        }
        ExecutorKind::Processes => Box::new(ProcessExecutor::new(
            ctx.clone(),
            exp.experiment.executor.workers,
            exp.experiment
                .executor
                .memory_limit
                .as_deref()
                .map(parse_memory)
                .transpose()
                .map_err(RunError::Other)?,
        )?),
        ExecutorKind::Slurm => match &opts.executors {
            Some(f) => f(&exp, ctx.clone())?,
            None => {
                return Err(RunError::Other(
                    "the SLURM executor is not available in this build".into(),
                ))
            }
        },
    };

    new_dir_guard.dir = None;

    let mut trials_of: std::collections::BTreeMap<u64, Trial> = std::collections::BTreeMap::new();
    let mut h = history;
    // Trials in flight when the last session stopped: run them again.
    let mut pending: Vec<TrialTask> = h
        .in_flight
        .iter()
        .map(|(t, attempts)| TrialTask {
            trial: t.clone(),
            attempt: *attempts,
        })
        .collect();
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
    let mut asked = h.asked_trials() as u64;
    let mut finished = h.finished_trials() as u64;
    executor.resume(pending)?;

    let session_start = Instant::now();
    let elapsed = |h_el: f64| h_el + session_start.elapsed().as_secs_f64();
    let stop = &exp.experiment.stop;
    let mut optimizer_idle = false;
    let reason: String;
    loop {
        if opts.interrupt.load(Ordering::Relaxed) {
            executor.shutdown(true)?;
            reason = "interrupted".into();
            break;
        }
        let el = elapsed(h.elapsed_s);
        if stop.wall_time_s.is_some_and(|w| el >= w) {
            executor.shutdown(true)?;
            reason = format!(
                "wall time of {:.0} s reached",
                stop.wall_time_s.unwrap_or(0.0)
            );
            break;
        }
        let trials_done = stop.trials.is_some_and(|n| finished >= n);
        if trials_done && executor.in_flight() == 0 {
            reason = format!("{finished} trials done");
            break;
        }
        let free = executor.slots().saturating_sub(executor.in_flight());
        let quota = stop
            .trials
            .map_or(usize::MAX, |n| n.saturating_sub(asked) as usize);
        let want = free.min(quota);
        if want > 0 && !optimizer_idle {
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
                trials_of.insert(t.id, t.clone());
                executor.submit(TrialTask {
                    trial: t,
                    attempt: 0,
                })?;
            }
        }
        if executor.in_flight() == 0 {
            if optimizer_idle || quota == 0 {
                reason = "the optimizer has no more trials".into();
                break;
            }
            continue;
        }
        let reports = executor.wait(Duration::from_millis(200))?;
        if opts.interrupt.load(Ordering::Relaxed) {
            // Trials that ended because of the interruption are not results:
            // they run again on resume.
            continue;
        }
        for report in reports {
            let Some(trial) = trials_of.remove(&report.id) else {
                log::warn!("ignoring a report for unknown trial {}", report.id);
                continue;
            };
            // Tell first, then log: a tell that fails stops the run before
            // the result is logged, so the log always replays.
            if trial.id != DEFAULT_TRIAL_ID {
                optimizer.tell(trial.id, report.outcome.clone())?;
                optimizer_idle = false;
                finished += 1;
            }
            let at = elapsed(h.elapsed_s);
            store.append(&LogRecord::Result {
                budget: trial.budget,
                report: report.clone(),
                elapsed_s: at,
            })?;
            let line = progress_line(&trial, &report, &names, finished, stop.trials);
            tracker.add(&trial, &report.outcome);
            h.results.push((trial, report));
            h.result_elapsed_s.push(at);
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
        reason: reason.clone(),
        elapsed_s: total,
    })?;
    let summary = summarize(&exp.experiment.name, &names, &h);
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

fn progress_line(
    trial: &Trial,
    report: &TrialReport,
    names: &[String],
    finished: u64,
    limit: Option<u64>,
) -> String {
    let count = match limit {
        Some(n) => format!("[{finished}/{n}]"),
        None => format!("[{finished}]"),
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
