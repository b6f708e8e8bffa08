//! `[energy]`: the meter (a registered one or a plugin), the grid and the
//! PUE that turn energy into emissions.

use std::sync::Arc;

use dsnn_energy::{CarbonAccount, CarbonTables, EnergyMeter, GridLocation, OpProfile};
use serde::Deserialize;

use crate::objective::EnergyContext;
use crate::registry::{EnergyKind, Kind, MeterFactory, Registry};
use crate::settings::{backticked, ConfigError, Section};

/// The keys of `[energy]`, parsed to refuse unknown ones and check `pue`;
/// `meter`, `grid` and `inference` are read as sections of their own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Common {
    #[serde(default)]
    meter: Option<toml::Value>,
    #[serde(default)]
    grid: Option<toml::Value>,
    #[serde(default = "default_pue")]
    pue: f64,
    /// Read by the DSNN objective.
    #[serde(default)]
    inference: Option<toml::Value>,
}

fn default_pue() -> f64 {
    1.0
}

/// The run's energy measurement: what `[energy]` configures.
#[derive(Clone)]
pub struct RunEnergy {
    /// The meter's name (a registered kind or a plugin's name).
    pub meter_name: String,
    /// Whether the meter is a plugin.
    pub meter_is_plugin: bool,
    /// What its figures are.
    pub energy_kind: EnergyKind,
    /// The meter's settings.
    pub meter_settings: Section,
    factory: Arc<dyn MeterFactory>,
    /// The grid.
    pub grid: GridLocation,
    /// Power usage effectiveness.
    pub pue: f64,
    carbon: CarbonAccount,
}

impl std::fmt::Debug for RunEnergy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunEnergy")
            .field("meter", &self.meter_name)
            .field("grid", &self.grid)
            .field("pue", &self.pue)
            .finish()
    }
}

impl RunEnergy {
    /// Reads and checks `[energy]` (every grid location resolves now, not
    /// in the first trial).
    pub fn read(section: &Section, registry: &Registry) -> Result<Self, ConfigError> {
        let c: Common = section.parse()?;
        if !(c.pue.is_finite() && c.pue >= 1.0) {
            return Err(section.out_of_range("pue", c.pue, ">= 1"));
        }
        let grid = match section.get("grid") {
            Some(g) => read_grid(&g)?,
            None => GridLocation::World,
        };
        let tables = CarbonTables::embedded().map_err(|e| section.error("grid", e.to_string()))?;
        let intensity = tables.intensity(&grid).map_err(|e| {
            let (key, what) = match &grid {
                GridLocation::Country { iso3 } => ("grid.iso3", format!("{iso3:?}")),
                GridLocation::Cloud { provider, region } => {
                    ("grid.region", format!("{provider:?} / {region:?}"))
                }
                GridLocation::Fixed { g_per_kwh } => ("grid.g_per_kwh", g_per_kwh.to_string()),
                GridLocation::World => ("grid", "world".into()),
            };
            section.error(key, format!("`energy.{key}` = {what}: {e}"))
        })?;
        let carbon = CarbonAccount::new(intensity, c.pue)
            .map_err(|e| section.error("pue", e.to_string()))?;
        let meter = section.get("meter").unwrap_or_else(|| {
            let mut t = toml::Table::new();
            t.insert("kind".into(), toml::Value::String("auto".into()));
            Section::new(
                section.source(),
                vec!["energy".into(), "meter".into()],
                Some(toml::Value::Table(t)),
            )
        });
        let table = meter.table();
        let (name, is_plugin, factory, settings) = match (
            table.get("plugin").and_then(|p| p.as_str()),
            table.get("kind").and_then(|k| k.as_str()),
        ) {
            (Some(p), _) => {
                let f = registry.plugin_meter(p).map_err(|_| {
                    meter.error("plugin", registry.explain_missing_plugin(Kind::Meter, p))
                })?;
                (p.to_string(), true, f, meter.without(&["plugin"]))
            }
            (None, Some(k)) => {
                let f = registry.meter(k).map_err(|e| {
                    meter.error(
                        "kind",
                        format!("`energy.meter.kind`: {e}, or `plugin = \"NAME\"`"),
                    )
                })?;
                (k.to_string(), false, f, meter.clone())
            }
            (None, None) => {
                return Err(meter.error(
                    "",
                    format!(
                        "`energy.meter` needs `kind` (allowed: {}) or `plugin = \"NAME\"`",
                        backticked(registry.names(Kind::Meter))
                    ),
                ))
            }
        };
        factory.check(&settings)?;
        Ok(RunEnergy {
            meter_name: name,
            meter_is_plugin: is_plugin,
            energy_kind: factory.energy_kind(),
            meter_settings: settings,
            factory,
            grid,
            pue: c.pue,
            carbon,
        })
    }
}

/// Reads `energy.grid`, refusing keys its `kind` does not take (serde's
/// `deny_unknown_fields` lets extra keys through on `kind = "world"`, a unit
/// variant of an internally tagged enum).
fn read_grid(g: &Section) -> Result<GridLocation, ConfigError> {
    let t = g.table();
    let allowed: &[&str] = match t.get("kind").and_then(|k| k.as_str()) {
        Some("world") => &["kind"],
        Some("country") => &["kind", "iso3"],
        Some("cloud") => &["kind", "provider", "region"],
        Some("fixed") => &["kind", "g_per_kwh"],
        _ => &[],
    };
    if let Some(k) = t
        .keys()
        .find(|k| !allowed.is_empty() && !allowed.contains(&k.as_str()))
    {
        let mut path = g.path().to_vec();
        path.push(k.clone());
        return Err(g.source().error_at(
            &path,
            true,
            format!(
                "`energy.grid.{k}`: unknown field `{k}` for this `kind` (allowed: {})",
                allowed.join(", ")
            ),
        ));
    }
    g.parse()
}

impl EnergyContext for RunEnergy {
    fn meter(&self, profile: Option<&OpProfile>) -> Result<Box<dyn EnergyMeter>, String> {
        self.factory.build(&self.meter_settings, profile)
    }

    fn kind(&self) -> &str {
        &self.meter_name
    }

    fn carbon(&self) -> &CarbonAccount {
        &self.carbon
    }
}
