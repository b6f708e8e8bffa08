//! Dynamic plugins in the registry (feature `plugins`): optimizer and meter
//! plugins found by `dsnn-plugin-host` become registry entries, so an
//! experiment names them like built-ins (`[optimizer] plugin = "moead"`),
//! `dsnn check` loads them and validates their settings, and `dsnn plugins`
//! lists them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dsnn_energy::{EnergyMeter, OpProfile};
use dsnn_plugin_host::{PluginHost, PluginKind};
use dsnn_search::{Optimizer, OptimizerError, Outcome, Trial, TrialId};

use crate::registry::{
    EnergyKind, Kind, Listing, MeterFactory, OptimizerFactory, OptimizerSetup, Origin,
    PluginLoader, PluginSource,
};
use crate::settings::{ConfigError, Section};

/// Finds plugins the standard way: `plugins/` next to the experiment file,
/// its `plugin_dirs`, then `DSNN_PLUGIN_PATH`.
pub struct HostLoader;

impl PluginLoader for HostLoader {
    fn plugins_for(&self, base_dir: &Path, plugin_dirs: &[PathBuf]) -> Arc<dyn PluginSource> {
        Arc::new(HostPlugins {
            host: Arc::new(PluginHost::standard(base_dir, plugin_dirs)),
        })
    }
}

/// The plugins a [`PluginHost`] finds, as registry entries.
pub struct HostPlugins {
    /// The host.
    pub host: Arc<PluginHost>,
}

fn kind_of(k: Kind) -> PluginKind {
    match k {
        Kind::Meter => PluginKind::Meter,
        _ => PluginKind::Optimizer,
    }
}

impl PluginSource for HostPlugins {
    fn optimizer(&self, name: &str) -> Option<(Arc<dyn OptimizerFactory>, PathBuf)> {
        let info = self.host.locate(name, PluginKind::Optimizer).ok()?;
        let f = PluginOptimizerFactory {
            host: self.host.clone(),
            name: info.name.clone(),
            description: info.description.clone(),
        };
        Some((Arc::new(f), info.path))
    }

    fn meter(&self, name: &str) -> Option<(Arc<dyn MeterFactory>, PathBuf)> {
        let info = self.host.locate(name, PluginKind::Meter).ok()?;
        let f = PluginMeterFactory {
            host: self.host.clone(),
            name: info.name.clone(),
            description: info.description.clone(),
        };
        Some((Arc::new(f), info.path))
    }

    fn listings(&self) -> Vec<Listing> {
        self.host
            .list()
            .into_iter()
            .filter_map(|e| e.status.ok())
            .map(|info| Listing {
                kind: match info.kind {
                    PluginKind::Optimizer => Kind::Optimizer,
                    PluginKind::Meter => Kind::Meter,
                },
                name: info.name,
                description: info.description,
                origin: Origin::Plugin(info.path),
            })
            .collect()
    }

    fn explain_missing(&self, name: &str, kind: Kind) -> String {
        match self.host.locate(name, kind_of(kind)) {
            Ok(info) => format!("plugin `{name}` is at {}", info.path.display()),
            Err(e) => e.to_string(),
        }
    }
}

/// An optimizer plugin as a registry entry.
struct PluginOptimizerFactory {
    host: Arc<PluginHost>,
    name: String,
    description: String,
}

impl OptimizerFactory for PluginOptimizerFactory {
    fn description(&self) -> String {
        self.description.clone()
    }

    fn multi_fidelity(&self) -> bool {
        false
    }

    fn build(
        &self,
        settings: &Section,
        setup: &OptimizerSetup,
    ) -> Result<Box<dyn Optimizer>, ConfigError> {
        let space = setup.space.as_configuration_space().ok_or_else(|| {
            settings.error(
                "",
                format!(
                    "optimizer plugin `{}` needs a `configuration` search space (plugins receive it as ConfigSpace JSON)",
                    self.name
                ),
            )
        })?;
        let inner = self
            .host
            .load_optimizer(&self.name, space, &settings.to_toml_string(), setup.seed)
            .map_err(|e| settings.error("", format!("optimizer plugin `{}`: {e}", self.name)))?;
        Ok(Box::new(FixedBudgetGuard {
            inner,
            plugin: self.name.clone(),
            budget: setup.budget.max,
        }))
    }
}

/// Holds an interface-1.0 optimizer plugin to the run's budget: it chooses
/// its trials' budgets itself, and a budget other than `fidelity.max` would
/// train its trials and the default configuration for different lengths.
struct FixedBudgetGuard {
    inner: Box<dyn Optimizer>,
    plugin: String,
    budget: f64,
}

impl Optimizer for FixedBudgetGuard {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Trial>, OptimizerError> {
        let trials = self.inner.ask(n)?;
        if let Some(t) = trials
            .iter()
            .find(|t| (t.budget - self.budget).abs() > 1e-9 * self.budget.abs().max(1.0))
        {
            return Err(OptimizerError::Plugin(format!(
                "`{}` asked for trial {} at budget {}, but the run's budget (`fidelity.max`) is {}: set the plugin's own budget setting to {} (or leave it out if it defaults to the run's)",
                self.plugin, t.id, t.budget, self.budget, self.budget
            )));
        }
        Ok(trials)
    }

    fn tell(&mut self, id: TrialId, outcome: Outcome) -> Result<(), OptimizerError> {
        self.inner.tell(id, outcome)
    }
}

/// A meter plugin as a registry entry.
struct PluginMeterFactory {
    host: Arc<PluginHost>,
    name: String,
    description: String,
}

impl MeterFactory for PluginMeterFactory {
    fn description(&self) -> String {
        self.description.clone()
    }

    fn energy_kind(&self) -> EnergyKind {
        EnergyKind::Measurement
    }

    fn check(&self, settings: &Section) -> Result<(), ConfigError> {
        self.host
            .load_meter(&self.name, &settings.to_toml_string())
            .map(|_| ())
            .map_err(|e| settings.error("", format!("meter plugin `{}`: {e}", self.name)))
    }

    fn build(
        &self,
        settings: &Section,
        _profile: Option<&OpProfile>,
    ) -> Result<Box<dyn EnergyMeter>, String> {
        self.host
            .load_meter(&self.name, &settings.to_toml_string())
            .map_err(|e| format!("meter plugin `{}`: {e}", self.name))
    }
}
