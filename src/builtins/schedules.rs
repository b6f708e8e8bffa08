//! The built-in fidelity schedules: `fixed`, `hyperband`, `successive_halving`.

use std::sync::Arc;

use dsnn_search::{FidelitySchedule, FixedBudget, Hyperband, SuccessiveHalving};
use serde::Deserialize;

use crate::experiment::fidelity::COMMON_KEYS;
use crate::registry::{BudgetRange, Registry, ScheduleFactory};
use crate::settings::{ConfigError, Section};

/// Registers the three schedules.
pub fn register(r: &mut Registry) {
    r.register_schedule("fixed", Arc::new(Fixed));
    r.register_schedule("hyperband", Arc::new(Brackets { halving: false }));
    r.register_schedule("successive_halving", Arc::new(Brackets { halving: true }));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoSettings {}

struct Fixed;

impl ScheduleFactory for Fixed {
    fn description(&self) -> String {
        "every trial at `max`".into()
    }

    fn multi_fidelity(&self) -> bool {
        false
    }

    fn build(
        &self,
        section: &Section,
        range: &BudgetRange,
    ) -> Result<Arc<dyn FidelitySchedule>, ConfigError> {
        section.without(COMMON_KEYS).parse::<NoSettings>()?;
        if range.min.is_some() {
            return Err(section.error(
                "min",
                "`fidelity.min` applies to `hyperband` and `successive_halving` only; a `fixed` fidelity runs every trial at `fidelity.max`",
            ));
        }
        Ok(Arc::new(FixedBudget { budget: range.max }))
    }
}

struct Brackets {
    halving: bool,
}

impl ScheduleFactory for Brackets {
    fn description(&self) -> String {
        if self.halving {
            "Hyperband's most aggressive bracket only, from `min` to `max`".into()
        } else {
            "Hyperband brackets from `min` to `max` with reduction factor `eta`".into()
        }
    }

    fn multi_fidelity(&self) -> bool {
        true
    }

    fn build(
        &self,
        section: &Section,
        range: &BudgetRange,
    ) -> Result<Arc<dyn FidelitySchedule>, ConfigError> {
        section.without(COMMON_KEYS).parse::<NoSettings>()?;
        let has_max = section.value().get("max").is_some();
        let (Some(lo), true) = (range.min, has_max) else {
            return Err(section.error(
                "",
                "`fidelity.min` and `fidelity.max` are required for `hyperband` and `successive_halving`",
            ));
        };
        let hi = range.max;
        if lo >= hi {
            return Err(section.error(
                "min",
                format!("`fidelity.min` = {lo} must be smaller than `fidelity.max` = {hi}"),
            ));
        }
        let schedule: Arc<dyn FidelitySchedule> = if self.halving {
            Arc::new(
                SuccessiveHalving::new(lo, hi, range.eta)
                    .map_err(|e| section.error("", e.to_string()))?,
            )
        } else {
            Arc::new(
                Hyperband::new(lo, hi, range.eta).map_err(|e| section.error("", e.to_string()))?,
            )
        };
        Ok(schedule)
    }
}
