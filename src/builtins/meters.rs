//! The built-in energy meters: dsnn-energy's `auto`, `rapl`, `nvml` and
//! `estimator`, and `opcount`, the analytic model of the trained network's
//! shift and float operations.

use std::sync::Arc;

use dsnn_energy::{EnergyMeter, MeterSpec, OpCountMeter, OpCountModel, OpProfile};
use serde::Deserialize;

use crate::registry::{EnergyKind, MeterFactory, Registry};
use crate::settings::{ConfigError, Section};

/// Registers the five meters.
pub fn register(r: &mut Registry) {
    for (name, kind, description) in [
        (
            "auto",
            EnergyKind::Measurement,
            "RAPL and NVML where readable, the CodeCarbon-style estimate for the rest",
        ),
        (
            "rapl",
            EnergyKind::Measurement,
            "Intel/AMD RAPL counters (powercap sysfs)",
        ),
        (
            "nvml",
            EnergyKind::Measurement,
            "NVIDIA GPU energy counters (NVML)",
        ),
        (
            "estimator",
            EnergyKind::Estimate,
            "CodeCarbon-style estimate: TDP x CPU share, RAM power, PUE",
        ),
    ] {
        r.register_meter(name, Arc::new(SpecMeter { kind, description }));
    }
    r.register_meter("opcount", Arc::new(OpCountFactory));
}

/// A dsnn-energy meter described by a [`MeterSpec`] (the whole
/// `[energy.meter]` table, `kind` included).
struct SpecMeter {
    kind: EnergyKind,
    description: &'static str,
}

impl SpecMeter {
    fn spec(settings: &Section) -> Result<MeterSpec, ConfigError> {
        let spec: MeterSpec = settings.parse()?;
        spec.validate().map_err(|(option, e)| {
            settings.error(option, format!("`{}.{option}`: {e}", settings.key()))
        })?;
        Ok(spec)
    }
}

impl MeterFactory for SpecMeter {
    fn description(&self) -> String {
        self.description.into()
    }

    fn energy_kind(&self) -> EnergyKind {
        self.kind
    }

    fn check(&self, settings: &Section) -> Result<(), ConfigError> {
        Self::spec(settings).map(|_| ())
    }

    fn build(
        &self,
        settings: &Section,
        _profile: Option<&OpProfile>,
    ) -> Result<Box<dyn EnergyMeter>, String> {
        let spec = Self::spec(settings).map_err(|e| e.to_string())?;
        spec.build().map(|b| b.meter).map_err(|e| e.to_string())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct OpCountToml {
    kind: String,
}

/// `{ kind = "opcount" }`: energy from the op profile (Horowitz 45 nm table).
struct OpCountFactory;

impl MeterFactory for OpCountFactory {
    fn description(&self) -> String {
        "the op-count model: energy of the network's multiplies, shifts and adds (45 nm table)"
            .into()
    }

    fn energy_kind(&self) -> EnergyKind {
        EnergyKind::Model
    }

    fn check(&self, settings: &Section) -> Result<(), ConfigError> {
        settings.parse::<OpCountToml>().map(|_| ())
    }

    fn build(
        &self,
        _settings: &Section,
        profile: Option<&OpProfile>,
    ) -> Result<Box<dyn EnergyMeter>, String> {
        let profile = profile.ok_or(
            "the op-count meter needs the network's operation profile (it prices DSNN trials only)",
        )?;
        OpCountMeter::new(&OpCountModel::default(), profile)
            .map(|m| Box::new(m) as Box<dyn EnergyMeter>)
            .map_err(|e| e.to_string())
    }
}
