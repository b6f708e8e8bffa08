//! The factory traits of the registry: what research code implements to
//! bring a data set, an objective, a fidelity schedule, an optimizer or
//! proposer, a search-space kind, an energy meter or an executor, and the
//! plugin source that adds dynamic plugins.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dsnn_core::data::{Augment, Splits};
use dsnn_energy::{EnergyMeter, OpProfile};
use dsnn_search::{
    FidelitySchedule, HyperbandOptimizer, Optimizer, OptimizerError, Proposer, ProposerOptimizer,
    SearchSpace,
};

use super::{Kind, Listing, Registry};
use crate::executor::{Executor, ExecutorError, ExecutorSetup};
use crate::objective::Objective;
use crate::settings::{ConfigError, Section, Source};

/// A data set: where it lives, how it loads, which backbone suits it.
pub trait DatasetFactory: Send + Sync {
    /// One line on the data set.
    fn description(&self) -> String;
    /// A copy dsnn ships (used when `[data] path` is absent).
    fn bundled_dir(&self) -> Option<PathBuf> {
        None
    }
    /// The backbone used when `[model] backbone` is absent.
    fn default_backbone(&self) -> Option<String> {
        None
    }
    /// Checks the data set's own settings: the keys of `[data]` besides
    /// the common ones (`dataset`, `path`, `validation_fraction`,
    /// `train_limit`, `augment`, `mean`, `std`). The default accepts none.
    fn check(&self, settings: &Section) -> Result<(), ConfigError> {
        match settings.table().keys().next() {
            Some(k) => Err(settings.error(
                k,
                format!(
                    "`{}.{k}`: unknown field `{k}` (this data set takes no settings besides \
                     `dataset`, `path`, `validation_fraction`, `train_limit`, `augment`, \
                     `mean`, `std`)",
                    settings.key()
                ),
            )),
            None => Ok(()),
        }
    }
    /// Checks what can be checked of the files in `dir` without loading
    /// them (the layout, missing files), so that `dsnn check` and the start
    /// of a run catch it before any trial. The default checks nothing.
    fn check_files(&self, _dir: &Path, _settings: &Section) -> Result<(), String> {
        Ok(())
    }
    /// Loads the training and test splits from `dir`.
    fn load(&self, dir: &Path, settings: &Section, seed: u64) -> Result<Splits, String>;
    /// The training augmentation (none by default).
    fn augment(&self) -> Augment {
        Augment::default()
    }
}

/// What an objective factory gets: the whole experiment file to read its
/// sections from, its own `[objective]` settings, the registry, and the
/// run's seed.
pub struct ObjectiveSetup<'a> {
    /// The experiment file.
    pub source: &'a Source,
    /// The parsed file.
    pub document: &'a toml::Table,
    /// `[objective]` without `kind` (empty when absent).
    pub settings: Section,
    /// The registry (backbones, data sets, ...).
    pub registry: &'a Registry,
    /// The directory of the experiment file (relative paths).
    pub base_dir: &'a Path,
    /// The run's seed.
    pub seed: u64,
}

impl ObjectiveSetup<'_> {
    /// The top-level section `name` (empty when absent).
    pub fn section(&self, name: &str) -> Section {
        Section::new(
            self.source,
            vec![name.to_string()],
            self.document.get(name).cloned(),
        )
    }

    /// Whether the file has the top-level section `name`.
    pub fn has(&self, name: &str) -> bool {
        self.document.contains_key(name)
    }
}

/// What an objective factory built.
pub struct ObjectiveBuild {
    /// The objective.
    pub objective: Arc<dyn Objective>,
    /// Resolved values to store in the run directory's copy of the file
    /// (absolute paths, defaults filled in), by dotted key.
    pub resolved: Vec<(String, toml::Value)>,
    /// A few words for the start-of-run banner (`lenet5 on fashion-mnist`).
    pub target: String,
}

/// Builds an objective from an experiment file.
pub trait ObjectiveFactory: Send + Sync {
    /// One line on what it evaluates.
    fn description(&self) -> String;
    /// Reads and checks its sections (located errors) and builds it. It
    /// should be cheap: data is loaded on the first evaluation.
    fn create(&self, setup: &ObjectiveSetup) -> Result<ObjectiveBuild, ConfigError>;
}

/// The budget range of a run's fidelity, as `[fidelity]` gives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetRange {
    /// Smallest budget, if given.
    pub min: Option<f64>,
    /// Largest (full) budget.
    pub max: f64,
    /// Reduction factor.
    pub eta: f64,
}

/// Builds a fidelity schedule from `[fidelity]`.
pub trait ScheduleFactory: Send + Sync {
    /// One line on the schedule.
    fn description(&self) -> String;
    /// Whether trials run at more than one budget (then optimizers must
    /// be proposers or otherwise multi-fidelity).
    fn multi_fidelity(&self) -> bool;
    /// Builds it; `section` is the whole `[fidelity]` table (its own keys
    /// are the ones besides `kind`, `unit`, `min`, `max`, `eta`).
    fn build(
        &self,
        section: &Section,
        range: &BudgetRange,
    ) -> Result<Arc<dyn FidelitySchedule>, ConfigError>;
}

/// What an optimizer factory gets besides its settings.
#[derive(Clone)]
pub struct OptimizerSetup {
    /// The search space.
    pub space: Arc<dyn SearchSpace>,
    /// The fidelity schedule.
    pub schedule: Arc<dyn FidelitySchedule>,
    /// Whether the schedule runs trials at more than one budget.
    pub multi_fidelity: bool,
    /// The budget range.
    pub budget: BudgetRange,
    /// Number of objectives.
    pub objectives: usize,
    /// The run's seed.
    pub seed: u64,
    /// `stop.trials`, if set (for budget-derived defaults).
    pub trials: Option<u64>,
}

/// Builds an optimizer from `[optimizer]`.
pub trait OptimizerFactory: Send + Sync {
    /// One line on the optimizer.
    fn description(&self) -> String;
    /// Whether it can run under a multi-fidelity schedule.
    fn multi_fidelity(&self) -> bool;
    /// Builds a fresh optimizer; `settings` is `[optimizer]` without
    /// `kind` / `plugin`.
    fn build(
        &self,
        settings: &Section,
        setup: &OptimizerSetup,
    ) -> Result<Box<dyn Optimizer>, ConfigError>;
}

/// Builds a proposer (the configurations that start each Hyperband bracket,
/// or every trial at a single budget).
pub trait ProposerFactory: Send + Sync {
    /// One line on the proposer.
    fn description(&self) -> String;
    /// Builds a fresh proposer; `settings` is `[optimizer]` without `kind`.
    fn build(
        &self,
        settings: &Section,
        setup: &OptimizerSetup,
    ) -> Result<Box<dyn Proposer>, ConfigError>;
}

/// A proposer as an optimizer: MO-Hyperband over the run's schedule when it
/// is multi-fidelity, plain proposals at the full budget otherwise.
pub(super) struct ProposerDriven(pub(super) Arc<dyn ProposerFactory>);

impl OptimizerFactory for ProposerDriven {
    fn description(&self) -> String {
        self.0.description()
    }

    fn multi_fidelity(&self) -> bool {
        true
    }

    fn build(
        &self,
        settings: &Section,
        setup: &OptimizerSetup,
    ) -> Result<Box<dyn Optimizer>, ConfigError> {
        let proposer = self.0.build(settings, setup)?;
        if setup.multi_fidelity {
            HyperbandOptimizer::new(setup.schedule.as_ref(), proposer, setup.seed)
                .map(|o| Box::new(o) as Box<dyn Optimizer>)
                .map_err(|e: OptimizerError| settings.error("", e.to_string()))
        } else {
            Ok(Box::new(ProposerOptimizer::new(
                proposer,
                setup.budget.max,
                setup.seed,
            )))
        }
    }
}

/// What a search-space factory built.
pub struct SpaceBuild {
    /// The space.
    pub space: Arc<dyn SearchSpace>,
    /// What to store as `[space]` in the run directory's copy of the file
    /// (self-contained: no file references).
    pub resolved: toml::Value,
}

/// Builds a search space from `[space]`.
pub trait SpaceFactory: Send + Sync {
    /// One line on the kind of space.
    fn description(&self) -> String;
    /// Builds it; relative files are taken relative to `base_dir`.
    fn build(&self, settings: &Section, base_dir: &Path) -> Result<SpaceBuild, ConfigError>;
}

/// How an energy figure came about, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnergyKind {
    /// Computed from the operations (the op-count model).
    Model,
    /// Estimated from power figures and time (CodeCarbon-style).
    Estimate,
    /// Read from hardware counters (RAPL, NVML).
    Measurement,
}

impl fmt::Display for EnergyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EnergyKind::Model => "op-count model",
            EnergyKind::Estimate => "CodeCarbon-style estimate",
            EnergyKind::Measurement => "hardware measurement",
        })
    }
}

/// Builds energy meters from `[energy.meter]`.
pub trait MeterFactory: Send + Sync {
    /// One line on the meter.
    fn description(&self) -> String;
    /// What its figures are.
    fn energy_kind(&self) -> EnergyKind;
    /// Checks the settings (the whole `[energy.meter]` table) without
    /// building a meter (which may need hardware the checking machine
    /// lacks).
    fn check(&self, settings: &Section) -> Result<(), ConfigError>;
    /// A fresh meter; `profile` is the per-image operation profile of the
    /// network measured, when there is one.
    fn build(
        &self,
        settings: &Section,
        profile: Option<&OpProfile>,
    ) -> Result<Box<dyn EnergyMeter>, String>;
}

/// Builds executors from `[executor]`.
pub trait ExecutorFactory: Send + Sync {
    /// One line on the executor.
    fn description(&self) -> String;
    /// Checks its settings: the keys of `[executor]` besides `kind`,
    /// `workers` and `trial_time_limit_s`, and those of `[executor.NAME]`.
    fn check(&self, settings: &Section) -> Result<(), ConfigError>;
    /// Builds it for a run.
    fn build(
        &self,
        settings: &Section,
        setup: ExecutorSetup,
    ) -> Result<Box<dyn Executor>, ExecutorError>;
}

/// Dynamic plugins: optimizers and meters found in plugin libraries.
pub trait PluginSource: Send + Sync {
    /// The optimizer plugin `name`, if a library provides it.
    fn optimizer(&self, name: &str) -> Option<(Arc<dyn OptimizerFactory>, PathBuf)>;
    /// The meter plugin `name`, if a library provides it.
    fn meter(&self, name: &str) -> Option<(Arc<dyn MeterFactory>, PathBuf)>;
    /// Every usable plugin, for listings.
    fn listings(&self) -> Vec<Listing>;
    /// Why `name` could not be found among the plugins (directories
    /// searched, unusable libraries), for error messages.
    fn explain_missing(&self, name: &str, kind: Kind) -> String;
}

/// Finds the plugins an experiment sees (its `./plugins`, its
/// `plugin_dirs`, `DSNN_PLUGIN_PATH`); installed by builds with plugin
/// support.
pub trait PluginLoader: Send + Sync {
    /// The plugins for an experiment file in `base_dir` naming `plugin_dirs`.
    fn plugins_for(&self, base_dir: &Path, plugin_dirs: &[PathBuf]) -> Arc<dyn PluginSource>;
}
