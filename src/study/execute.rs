//! Carrying out a study: every (variant, seed) run through the ordinary
//! run loop ([`run_experiment`]), finished runs skipped, half-done ones
//! resumed, up to `jobs` runs at a time.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::runner::{run_experiment, Progress, RunError, RunOptions, RunStatus};
use crate::store::{read_history, RunStore};

use super::file::{Study, StudyRun};

/// Where a run of a study stands, from its run directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// No run directory (or no trial logged).
    NotStarted,
    /// Trials logged, the stopping rule not reached (or the experiment
    /// changed, e.g. a larger `stop`): it resumes.
    Partial,
    /// The stopping rule was reached with the experiment as it is now.
    Finished,
}

/// Where `run` stands. A run counts as finished when its stored experiment
/// is the one the study gives now and its log reached the stopping rule:
/// `stop.trials` finished trials with none in flight, `stop.wall_time_s`,
/// or trials asked for `stop.budget` with none in flight.
pub fn run_state(run: &StudyRun) -> RunState {
    let dir = run.experiment.run_dir();
    let log = dir.join(RunStore::LOG);
    let Ok(h) = read_history(&log) else {
        return RunState::Partial;
    };
    if h.results.is_empty() && h.in_flight.is_empty() {
        return RunState::NotStarted;
    }
    let stored = std::fs::read_to_string(dir.join(RunStore::EXPERIMENT)).unwrap_or_default();
    if stored != run.experiment.resolved_toml() {
        return RunState::Partial;
    }
    let stop = &run.experiment.stop;
    let default_done = h
        .default_trial
        .as_ref()
        .is_some_and(|d| h.results.iter().any(|(t, _)| t.id == d.id));
    let trials_done = stop
        .trials
        .is_some_and(|n| h.finished_trials() as u64 >= n && h.in_flight.is_empty());
    let time_done = stop.wall_time_s.is_some_and(|w| h.elapsed_s >= w);
    let budget_done = !stop.budget_open(h.asked_budget()) && h.in_flight.is_empty();
    if default_done && (trials_done || time_done || budget_done) {
        RunState::Finished
    } else {
        RunState::Partial
    }
}

/// Options of [`run_study`].
pub struct StudyOptions {
    /// Runs carried out at the same time (each with its own executor).
    pub jobs: usize,
    /// The binary child processes and cluster jobs run (see [`RunOptions::exe`]).
    pub exe: Option<PathBuf>,
    /// Set from outside to stop every run cleanly.
    pub interrupt: Arc<AtomicBool>,
    /// Receives progress lines (`variant/seed-s: ...`), from any thread.
    pub lines: Arc<dyn Fn(&str) + Send + Sync>,
}

impl Default for StudyOptions {
    fn default() -> Self {
        StudyOptions {
            jobs: 1,
            exe: None,
            interrupt: Arc::new(AtomicBool::new(false)),
            lines: Arc::new(|_| {}),
        }
    }
}

/// How one run of a study went in this session.
#[derive(Debug)]
pub enum RunEnd {
    /// Already finished before: not run again.
    Skipped,
    /// Ran (or resumed) and stopped for this reason.
    Ran(String),
    /// Failed to run; the study goes on with the others.
    Failed(String),
    /// Not started: the study was interrupted before its turn.
    NotStarted,
}

/// The study's runs, each with how it ended in this session.
#[derive(Debug)]
pub struct StudyOutcome {
    /// `(variant, seed, run directory, end)` in the study's order.
    pub runs: Vec<(String, u64, PathBuf, RunEnd)>,
    /// Whether the study was interrupted (some runs did not finish).
    pub interrupted: bool,
}

/// Progress of one run, forwarded with the run's label.
struct Prefixed {
    label: String,
    lines: Arc<dyn Fn(&str) + Send + Sync>,
}

impl Progress for Prefixed {
    fn line(&mut self, line: &str, status: &RunStatus) {
        (self.lines)(&format!("{}: {line}; {}", self.label, status.describe()));
    }

    fn status(&mut self, _: &RunStatus) {}
}

fn label(study: &Study, run: &StudyRun) -> String {
    format!("{}/{}/seed-{}", study.name, run.variant, run.seed)
}

/// Carries out (or resumes) every run of `study` that is not finished, at
/// most `opts.jobs` at a time, seed by seed. A run that fails does not stop
/// the others (its error is in the outcome); an interrupt stops them all.
pub fn run_study(study: &Study, opts: StudyOptions) -> StudyOutcome {
    let queue: Mutex<VecDeque<usize>> = Mutex::new((0..study.runs.len()).collect());
    let ends: Mutex<Vec<Option<RunEnd>>> =
        Mutex::new((0..study.runs.len()).map(|_| None).collect());
    let jobs = opts.jobs.max(1).min(study.runs.len());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                if opts.interrupt.load(Ordering::Relaxed) {
                    break;
                }
                let Some(i) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
                    break;
                };
                let run = &study.runs[i];
                let end = run_one(study, run, &opts);
                if let Ok(mut e) = ends.lock() {
                    e[i] = Some(end);
                }
            });
        }
    });
    let ends = ends.into_inner().unwrap_or_default();
    let interrupted = opts.interrupt.load(Ordering::Relaxed);
    StudyOutcome {
        runs: study
            .runs
            .iter()
            .zip(ends)
            .map(|(r, e)| {
                (
                    r.variant.clone(),
                    r.seed,
                    r.experiment.run_dir(),
                    e.unwrap_or(RunEnd::NotStarted),
                )
            })
            .collect(),
        interrupted,
    }
}

fn run_one(study: &Study, run: &StudyRun, opts: &StudyOptions) -> RunEnd {
    let name = label(study, run);
    let state = run_state(run);
    if state == RunState::Finished {
        (opts.lines)(&format!("{name}: finished before, skipped"));
        return RunEnd::Skipped;
    }
    (opts.lines)(&format!(
        "{name}: {} -> {}",
        if state == RunState::Partial {
            "resuming"
        } else {
            "starting"
        },
        run.experiment.run_dir().display()
    ));
    let mut options = RunOptions::default()
        .interrupt(opts.interrupt.clone())
        .progress(Box::new(Prefixed {
            label: name.clone(),
            lines: opts.lines.clone(),
        }));
    if let Some(exe) = &opts.exe {
        options = options.exe(exe.clone());
    }
    match run_experiment(run.experiment.clone(), options) {
        Ok(outcome) => {
            let reason = outcome.reason.to_string();
            (opts.lines)(&format!(
                "{name}: stopped ({reason}); {} trials, front of {}",
                outcome.summary.trials,
                outcome.summary.front.len()
            ));
            RunEnd::Ran(reason)
        }
        Err(e) => {
            let msg = describe_error(&e, &run.experiment.run_dir());
            (opts.lines)(&format!("{name}: FAILED: {msg}"));
            RunEnd::Failed(msg)
        }
    }
}

fn describe_error(e: &RunError, dir: &Path) -> String {
    format!("{e} ({})", dir.display())
}
