//! An energy-meter plugin: a constant power draw times the wall-clock time
//! of the region.
//!
//! For machines without energy counters whose draw is known from a wall-plug
//! meter or a data sheet: `meter = { plugin = "constant-power", watts = 95 }`.
//! The figure is an estimate (provenance "estimated").
//!
//! Settings: `watts` (required, positive), `component` (`"cpu"`, `"gpu"`,
//! `"ram"` or `"other"`, default `"other"`).

use std::time::Instant;

use abi_stable::export_root_module;
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::std_types::{RResult, RStr};
use dsnn_plugin_api::{
    meter_from, Meter, MeterBox, MeterPlugin, MeterPluginRef, PComponent, PError, PReading,
    Settings,
};

/// A meter that multiplies a fixed power by the elapsed time.
pub struct ConstantPower {
    watts: f64,
    component: PComponent,
    started: Option<Instant>,
}

impl ConstantPower {
    /// Reads `watts` and `component` from the settings text.
    pub fn new(settings: &str) -> Result<Self, PError> {
        let mut s = Settings::parse("constant-power", settings)?;
        let watts = s.f64("watts", f64::NAN)?;
        let component = s.choice("component", &["cpu", "gpu", "ram", "other"], "other")?;
        s.finish()?;
        if !(watts > 0.0 && watts.is_finite()) {
            return Err(PError::invalid(
                "plugin `constant-power` needs `watts`, a positive power draw in watts",
            ));
        }
        let component = match component.as_str() {
            "cpu" => PComponent::Cpu,
            "gpu" => PComponent::Gpu,
            "ram" => PComponent::Ram,
            _ => PComponent::Other,
        };
        Ok(ConstantPower {
            watts,
            component,
            started: None,
        })
    }
}

impl Meter for ConstantPower {
    fn name(&self) -> String {
        "constant-power".into()
    }

    fn start(&mut self) -> Result<(), PError> {
        if self.started.is_some() {
            return Err(PError::AlreadyStarted);
        }
        self.started = Some(Instant::now());
        Ok(())
    }

    fn stop(&mut self) -> Result<PReading, PError> {
        let started = self.started.take().ok_or(PError::NotStarted)?;
        let seconds = started.elapsed().as_secs_f64();
        Ok(PReading {
            joules: self.watts * seconds,
            seconds,
            source: format!("constant-power:{}W", self.watts).into(),
            component: self.component,
            measured: false,
        })
    }
}

extern "C" fn create(settings: RStr<'_>) -> RResult<MeterBox, PError> {
    meter_from(settings, ConstantPower::new)
}

/// The root module.
#[export_root_module]
pub fn root_module() -> MeterPluginRef {
    MeterPlugin {
        name: RStr::from_str("constant-power"),
        description: RStr::from_str("a fixed power draw (setting `watts`) times wall-clock time"),
        create,
    }
    .leak_into_prefix()
}
