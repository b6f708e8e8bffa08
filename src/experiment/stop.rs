//! `[stop]`: when a run stops.

use serde::{Deserialize, Serialize};

use crate::settings::{ConfigError, Section};

/// When the run stops: after `trials` trials, after `wall_time_s` seconds,
/// or whichever comes first (at least one is set).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopRule {
    /// Trials to finish (the default configuration's trial not counted).
    #[serde(default)]
    pub trials: Option<u64>,
    /// Wall-clock seconds, summed over resumed sessions.
    #[serde(default)]
    pub wall_time_s: Option<f64>,
}

impl StopRule {
    /// Reads and checks `[stop]`.
    pub fn read(section: &Section) -> Result<Self, ConfigError> {
        let s: StopRule = section.parse()?;
        if s.trials.is_none() && s.wall_time_s.is_none() {
            return Err(section.error(
                "",
                "the run needs a stopping rule: `stop.trials`, `stop.wall_time_s` or both",
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
        Ok(s)
    }
}
