//! `[fidelity]`: the budgets of the trials, through a registered schedule.

use std::sync::Arc;

use dsnn_search::FidelitySchedule;
use serde::Deserialize;

use crate::registry::{BudgetRange, Registry};
use crate::settings::{ConfigError, Section};

/// The keys of `[fidelity]` every schedule shares.
pub const COMMON_KEYS: &[&str] = &["kind", "unit", "min", "max", "eta"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Common {
    #[serde(default = "default_kind")]
    kind: String,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
    #[serde(default = "default_eta")]
    eta: f64,
}

fn default_kind() -> String {
    "fixed".into()
}

fn default_eta() -> f64 {
    3.0
}

/// The run's fidelity: its schedule and budget range.
#[derive(Clone)]
pub struct Fidelity {
    /// The schedule's registered name.
    pub kind: String,
    /// What a budget counts (read by the objective): `epochs` or
    /// `data_fraction`.
    pub unit: String,
    /// Budgets.
    pub range: BudgetRange,
    /// Whether trials run at more than one budget.
    pub multi_fidelity: bool,
    /// The schedule.
    pub schedule: Arc<dyn FidelitySchedule>,
}

impl Fidelity {
    /// Reads `[fidelity]`; `default_max` is the objective's full budget
    /// when `max` is not given.
    pub fn read(
        section: &Section,
        registry: &Registry,
        default_max: f64,
    ) -> Result<Self, ConfigError> {
        let c: Common = section.only(COMMON_KEYS).parse()?;
        let factory = registry
            .schedule(&c.kind)
            .map_err(|e| section.error("kind", format!("`fidelity.kind`: {e}")))?;
        let unit = c.unit.unwrap_or_else(|| "epochs".into());
        if !(c.eta.is_finite() && c.eta > 1.0) {
            return Err(section.out_of_range("eta", c.eta, "> 1"));
        }
        for (key, v) in [("min", c.min), ("max", c.max)] {
            if let Some(v) = v {
                let (ok, allowed) = match unit.as_str() {
                    "data_fraction" => (v > 0.0 && v <= 1.0, "a fraction in (0, 1]"),
                    _ => (v.is_finite() && (1.0..=1e6).contains(&v), "1 to 1e6 epochs"),
                };
                if !ok {
                    return Err(section.out_of_range(key, v, allowed));
                }
            }
        }
        let range = BudgetRange {
            min: c.min,
            max: c.max.unwrap_or(default_max),
            eta: c.eta,
        };
        let schedule = factory.build(section, &range)?;
        Ok(Fidelity {
            kind: c.kind,
            unit,
            range,
            multi_fidelity: factory.multi_fidelity(),
            schedule,
        })
    }
}
