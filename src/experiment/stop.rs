//! `[stop]`: when a run stops.

use serde::{Deserialize, Serialize};

use crate::settings::{ConfigError, Section};

/// When the run stops: after `trials` trials, after `wall_time_s` seconds,
/// once the trials asked have used `budget` fidelity units, or whichever
/// comes first (at least one is set).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopRule {
    /// Trials to finish (the default configuration's trial not counted).
    #[serde(default)]
    pub trials: Option<u64>,
    /// Wall-clock seconds, summed over resumed sessions.
    #[serde(default)]
    pub wall_time_s: Option<f64>,
    /// The fidelity budget of the optimizer's trials, summed over the trials
    /// asked (epochs under an `epochs` fidelity; the default configuration's
    /// trial not counted). Unlike a wall-clock limit it does not depend on
    /// the machine or its load, so a seed gives the same run anywhere, and
    /// optimizers compared at the same budget had the same training.
    #[serde(default)]
    pub budget: Option<f64>,
}

impl StopRule {
    /// Reads and checks `[stop]`.
    pub fn read(section: &Section) -> Result<Self, ConfigError> {
        let s: StopRule = section.parse()?;
        if s.trials.is_none() && s.wall_time_s.is_none() && s.budget.is_none() {
            return Err(section.error(
                "",
                "the run needs a stopping rule: `stop.trials`, `stop.wall_time_s`, `stop.budget` or several",
            ));
        }
        if s.trials == Some(0) {
            return Err(section.out_of_range("trials", 0, ">= 1"));
        }
        if let Some(t) = s.wall_time_s {
            if !(t.is_finite() && t > 0.0) {
                return Err(section.out_of_range("wall_time_s", t, "> 0"));
            }
        }
        if let Some(b) = s.budget {
            if !(b.is_finite() && b > 0.0) {
                return Err(section.out_of_range("budget", b, "> 0"));
            }
        }
        Ok(s)
    }

    /// The rule in words: `10 trials or 300 s`, `budget 60`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            self.trials.map(|t| format!("{t} trials")),
            self.wall_time_s.map(|w| format!("{w} s")),
            self.budget.map(|b| format!("budget {b}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(" or ")
        }
    }

    /// Whether the optimizer may be asked for more trials, after trials whose
    /// budgets sum to `asked_budget` (only `budget` decides here; `trials`
    /// is a quota of its own).
    pub fn budget_open(&self, asked_budget: f64) -> bool {
        self.budget.is_none_or(|b| asked_budget < b)
    }
}
