//! Dynamic plugins in the registry (feature `plugins`): optimizer and meter
//! plugins found by `dsnn-plugin-host` become registry entries, so an
//! experiment names them like built-ins (`[optimizer] plugin = "moead"`),
//! `dsnn check` loads them and validates their settings, and `dsnn plugins`
//! lists them.
//!
//! An optimizer plugin of interface 1.1 is told the run (objectives, budget
//! range); one that provides a proposer runs under Hyperband or successive
//! halving like the built-in proposers. At one fidelity a plugin's budgets
//! must be the run's: checked on a probe instance when the experiment is
//! checked, and on every trial during the run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dsnn_energy::{EnergyMeter, OpProfile};
use dsnn_plugin_host::{PluginError, PluginHost, PluginInfo, PluginKind, RunContext};
use dsnn_search::{
    ConfigurationSpace, HyperbandOptimizer, Optimizer, OptimizerError, Outcome, Trial, TrialId,
};

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
        let path = info.path.clone();
        let f = PluginOptimizerFactory {
            host: self.host.clone(),
            info,
        };
        Some((Arc::new(f), path))
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
///
/// At one fidelity the plugin is a whole optimizer (`create_with_context`
/// of interface 1.1, `create` of 1.0) held to the run's budget by
/// [`FixedBudgetGuard`]; in a multi-fidelity run its proposer (interface
/// 1.1) runs under [`HyperbandOptimizer`] over the run's schedule, which
/// decides every budget.
struct PluginOptimizerFactory {
    host: Arc<PluginHost>,
    info: PluginInfo,
}

impl PluginOptimizerFactory {
    fn name(&self) -> &str {
        &self.info.name
    }

    /// What the plugin is told about the run.
    fn context(setup: &OptimizerSetup) -> RunContext {
        let max = setup.budget.max;
        let min = if setup.multi_fidelity {
            (setup.schedule.brackets().iter())
                .flat_map(|b| b.rungs.iter().map(|r| r.budget))
                .fold(max, f64::min)
        } else {
            max
        };
        RunContext {
            objectives: setup.objectives,
            min_budget: min,
            max_budget: max,
            multi_fidelity: setup.multi_fidelity,
        }
    }

    /// Creates a second instance and asks it for one trial, so that a
    /// plugin whose own budget differs from the run's is refused when the
    /// experiment is checked rather than at its first trial (the instance
    /// is thrown away; the run's instance is created afresh and unchanged).
    fn probe_budget(
        &self,
        space: &ConfigurationSpace,
        settings: &Section,
        setup: &OptimizerSetup,
        context: &RunContext,
    ) -> Result<(), ConfigError> {
        let mut probe = self
            .host
            .load_optimizer_in(
                self.name(),
                space,
                &settings.to_toml_string(),
                setup.seed,
                context,
            )
            .map_err(|e| settings.error("", format!("optimizer plugin `{}`: {e}", self.name())))?;
        let trials = probe.ask(1).map_err(|e| {
            settings.error(
                "",
                format!(
                    "optimizer plugin `{}` failed its first ask: {e}",
                    self.name()
                ),
            )
        })?;
        match trials.first() {
            Some(t) if !same_budget(t.budget, context.max_budget) => Err(settings.error(
                "",
                budget_mismatch(
                    self.name(),
                    &self.info.interface_version,
                    t.budget,
                    context.max_budget,
                ),
            )),
            _ => Ok(()),
        }
    }
}

impl OptimizerFactory for PluginOptimizerFactory {
    fn description(&self) -> String {
        self.info.description.clone()
    }

    /// Plugins that provide a proposer (interface 1.1) run under Hyperband
    /// and successive halving; the others only at one fidelity.
    fn multi_fidelity(&self) -> bool {
        self.info.proposer
    }

    fn build(
        &self,
        settings: &Section,
        setup: &OptimizerSetup,
    ) -> Result<Box<dyn Optimizer>, ConfigError> {
        let name = self.name();
        let space = setup.space.as_configuration_space().ok_or_else(|| {
            settings.error(
                "",
                format!(
                    "optimizer plugin `{name}` needs a `configuration` search space (plugins receive it as ConfigSpace JSON)"
                ),
            )
        })?;
        let context = Self::context(setup);
        let text = settings.to_toml_string();
        let plugin_error =
            |e: PluginError| settings.error("", format!("optimizer plugin `{name}`: {e}"));
        if setup.multi_fidelity {
            let proposer = self
                .host
                .load_proposer(name, space, &text, setup.seed, &context)
                .map_err(plugin_error)?;
            let optimizer = HyperbandOptimizer::new(setup.schedule.as_ref(), proposer, setup.seed)
                .map_err(|e| settings.error("", format!("optimizer plugin `{name}`: {e}")))?;
            return Ok(Box::new(optimizer));
        }
        self.probe_budget(space, settings, setup, &context)?;
        let inner = self
            .host
            .load_optimizer_in(name, space, &text, setup.seed, &context)
            .map_err(plugin_error)?;
        Ok(Box::new(FixedBudgetGuard {
            inner,
            plugin: name.to_string(),
            interface_version: self.info.interface_version.clone(),
            budget: context.max_budget,
        }))
    }
}

fn same_budget(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

fn budget_mismatch(plugin: &str, interface: &str, asked: f64, budget: f64) -> String {
    let advice = if interface.starts_with("1.0") {
        "interface 1.0 plugins are not told the run's budget: set the plugin's own budget setting to it"
    } else {
        "the plugin was told the run's budget (its context) and ignored it: fix the plugin, or remove a budget setting that overrides it"
    };
    format!(
        "optimizer plugin `{plugin}` (interface {interface}) asked for a trial at budget {asked}, but the run's budget (`fidelity.max`) is {budget}; {advice}"
    )
}

/// Holds an optimizer plugin that chooses its own budgets to the run's one
/// budget: a budget other than `fidelity.max` would train its trials and the
/// default configuration for different lengths and report a misleading
/// improvement. The first trial is already checked when the optimizer is
/// built (at `dsnn check`); this guard checks every later one.
struct FixedBudgetGuard {
    inner: Box<dyn Optimizer>,
    plugin: String,
    interface_version: String,
    budget: f64,
}

impl Optimizer for FixedBudgetGuard {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Trial>, OptimizerError> {
        let trials = self.inner.ask(n)?;
        if let Some(t) = trials.iter().find(|t| !same_budget(t.budget, self.budget)) {
            return Err(OptimizerError::Plugin(format!(
                "trial {}: {}",
                t.id,
                budget_mismatch(&self.plugin, &self.interface_version, t.budget, self.budget)
            )));
        }
        Ok(trials)
    }

    fn tell(&mut self, id: TrialId, outcome: Outcome) -> Result<(), OptimizerError> {
        self.inner.tell(id, outcome)
    }

    fn adopt(&mut self, trials: &[Trial]) -> Result<bool, OptimizerError> {
        self.inner.adopt(trials)
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
