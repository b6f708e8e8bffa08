//! Progress of a run: its status (trials done, running, failed,
//! hypervolume, time) and where it is shown.

use std::time::{Duration, Instant};

use dsnn_search::{Outcome, Trial};

use crate::executor::DEFAULT_TRIAL_ID;
use crate::experiment::StopRule;
use crate::report::LiveFront;

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
    /// limit, the trials left at this session's rate so far (budgets that
    /// grow, as in Hyperband, make it optimistic), or the budget left at
    /// this session's rate, whichever comes first;
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
pub(crate) struct StatusTracker {
    pub(crate) status: RunStatus,
    pub(crate) live: LiveFront,
    /// When the live hypervolume was last computed.
    pub(crate) hv_at: Option<Instant>,
    /// Results in the log when this session started.
    pub(crate) results_before: usize,
    /// The budgets of the optimizer trials finished, summed.
    pub(crate) budget_done: f64,
    /// `budget_done` when this session started.
    pub(crate) budget_before: f64,
    pub(crate) session_start: Instant,
}

impl StatusTracker {
    /// The live hypervolume is recomputed at most this often (once known).
    const HV_EVERY: Duration = Duration::from_millis(500);

    /// Takes a finished trial into account.
    pub(crate) fn add(&mut self, trial: &Trial, outcome: &Outcome) {
        self.live.add(trial.budget, outcome);
        if trial.id != DEFAULT_TRIAL_ID {
            self.status.finished += 1;
            self.budget_done += trial.budget;
            self.status.failed += u64::from(matches!(outcome, Outcome::Failure(_)));
        }
    }

    /// Refreshes the hypervolume, the running trials, the elapsed time and
    /// the estimate of the remaining time (see [`RunStatus::remaining_s`])
    /// with `results` in the log now.
    pub(crate) fn update(
        &mut self,
        stop: &StopRule,
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
        let budget_session = self.budget_done - self.budget_before;
        let by_budget = stop.budget.and_then(|b| {
            (budget_session > 0.0)
                .then(|| session_s / budget_session * (b - self.budget_done).max(0.0))
        });
        st.remaining_s = [by_time, by_trials, by_budget]
            .into_iter()
            .flatten()
            .reduce(f64::min);
        st
    }
}
