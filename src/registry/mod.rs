//! The registry: every swappable part of a run, by name.
//!
//! An experiment file names things (a backbone, a data set, an objective,
//! an optimizer or proposer, a fidelity schedule, an energy meter, an
//! executor, a search-space kind); the [`Registry`] resolves every one of
//! those names, everywhere: `check`, `run`, `trial`, `export`, `train`,
//! `plugins` and the error messages that list the allowed values.
//!
//! Built-ins register themselves (`dsnn::builtins::registry`), dynamic
//! plugins add their entries through a [`PluginSource`], and research code
//! adds its own with the `register_*` methods before handing the registry
//! to `dsnn::runner::run_experiment` or to the CLI's entry point.
//!
//! ```
//! use std::sync::Arc;
//! let mut registry = dsnn::builtins::registry();
//! registry.register_backbone(Arc::new(dsnn_core::backbone::LeNet5));
//! assert!(registry.backbone("lenet5").is_ok());
//! assert!(registry.names(dsnn::registry::Kind::Optimizer).contains(&"parego".to_string()));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dsnn_core::Backbone;

use crate::settings::backticked;

mod factories;

use factories::ProposerDriven;
pub use factories::{
    BudgetRange, DatasetFactory, EnergyKind, ExecutorFactory, MeterFactory, ObjectiveBuild,
    ObjectiveFactory, ObjectiveSetup, OptimizerFactory, OptimizerSetup, PluginLoader, PluginSource,
    ProposerFactory, ScheduleFactory, SpaceBuild, SpaceFactory,
};

/// The kinds of things the registry knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Network architectures (`[model] backbone`).
    Backbone,
    /// Data sets (`[data] dataset`).
    Dataset,
    /// What a trial computes (`[objective] kind`).
    Objective,
    /// Optimizers and proposers (`[optimizer] kind`).
    Optimizer,
    /// Search-space kinds (`[space] kind`).
    Space,
    /// Fidelity schedules (`[fidelity] kind`).
    Schedule,
    /// Energy meters (`[energy.meter] kind`).
    Meter,
    /// Where trials run (`[executor] kind`).
    Executor,
}

impl Kind {
    /// Every kind, in listing order.
    pub const ALL: [Kind; 8] = [
        Kind::Backbone,
        Kind::Dataset,
        Kind::Objective,
        Kind::Optimizer,
        Kind::Space,
        Kind::Schedule,
        Kind::Meter,
        Kind::Executor,
    ];

    /// The word used in messages (`backbone`, `data set`, ...).
    pub fn word(self) -> &'static str {
        match self {
            Kind::Backbone => "backbone",
            Kind::Dataset => "data set",
            Kind::Objective => "objective",
            Kind::Optimizer => "optimizer",
            Kind::Space => "search-space kind",
            Kind::Schedule => "fidelity schedule",
            Kind::Meter => "energy meter",
            Kind::Executor => "executor",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// Where an entry comes from, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Built into dsnn.
    BuiltIn,
    /// Registered by the program (a research crate's own binary or code).
    Registered,
    /// A dynamic plugin library.
    Plugin(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::BuiltIn => f.write_str("built in"),
            Origin::Registered => f.write_str("registered"),
            Origin::Plugin(p) => write!(f, "plugin {}", p.display()),
        }
    }
}

/// One line of a listing: a registered name.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    /// What it is.
    pub kind: Kind,
    /// Its name in experiment files.
    pub name: String,
    /// One line on what it does.
    pub description: String,
    /// Where it comes from.
    pub origin: Origin,
}

/// A name the registry does not know, with the names it does.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown {kind} `{name}` (allowed: {})", backticked(allowed))]
pub struct UnknownName {
    /// What was looked up.
    pub kind: Kind,
    /// The name given.
    pub name: String,
    /// The names registered for `kind`.
    pub allowed: Vec<String>,
}

// ------------------------------------------------------------- registry --

struct Entry<T: ?Sized> {
    value: Arc<T>,
    origin: Origin,
}

impl<T: ?Sized> Clone for Entry<T> {
    fn clone(&self) -> Self {
        Entry {
            value: self.value.clone(),
            origin: self.origin.clone(),
        }
    }
}

type Map<T> = BTreeMap<String, Entry<T>>;

/// Every swappable part of a run, by name (see the module documentation).
/// Cheap to clone.
#[derive(Clone, Default)]
pub struct Registry {
    backbones: Map<dyn Backbone>,
    datasets: Map<dyn DatasetFactory>,
    objectives: Map<dyn ObjectiveFactory>,
    optimizers: Map<dyn OptimizerFactory>,
    spaces: Map<dyn SpaceFactory>,
    schedules: Map<dyn ScheduleFactory>,
    meters: Map<dyn MeterFactory>,
    executors: Map<dyn ExecutorFactory>,
    plugins: Option<Arc<dyn PluginSource>>,
    plugin_loader: Option<Arc<dyn PluginLoader>>,
    /// What registering marks new entries as (built-ins register first).
    registering: Option<Origin>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Registry");
        for kind in Kind::ALL {
            d.field(kind.word(), &self.registered_names(kind));
        }
        d.finish()
    }
}

fn lookup<'a, T: ?Sized>(map: &'a Map<T>, name: &str) -> Option<&'a Entry<T>> {
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

impl Registry {
    /// An empty registry (no built-ins; see `dsnn::builtins::registry`).
    pub fn empty() -> Self {
        Registry::default()
    }

    /// Marks what is registered from now on as built in (used by
    /// `dsnn::builtins`) or, with `false`, as registered by the program.
    pub fn mark_built_in(&mut self, built_in: bool) {
        self.registering = built_in.then_some(Origin::BuiltIn);
    }

    fn origin(&self) -> Origin {
        self.registering.clone().unwrap_or(Origin::Registered)
    }

    /// Adds a backbone under its [`Backbone::name`] (replacing one of the
    /// same name).
    pub fn register_backbone(&mut self, backbone: Arc<dyn Backbone>) -> &mut Self {
        let origin = self.origin();
        self.backbones.insert(
            backbone.name().to_string(),
            Entry {
                value: backbone,
                origin,
            },
        );
        self
    }

    /// Adds a data set.
    pub fn register_dataset(&mut self, name: &str, f: Arc<dyn DatasetFactory>) -> &mut Self {
        let origin = self.origin();
        self.datasets
            .insert(name.into(), Entry { value: f, origin });
        self
    }

    /// Adds an objective.
    pub fn register_objective(&mut self, name: &str, f: Arc<dyn ObjectiveFactory>) -> &mut Self {
        let origin = self.origin();
        self.objectives
            .insert(name.into(), Entry { value: f, origin });
        self
    }

    /// Adds an optimizer.
    pub fn register_optimizer(&mut self, name: &str, f: Arc<dyn OptimizerFactory>) -> &mut Self {
        let origin = self.origin();
        self.optimizers
            .insert(name.into(), Entry { value: f, origin });
        self
    }

    /// Adds a proposer: an optimizer that runs MO-Hyperband over the run's
    /// schedule with it (or proposes every trial at a fixed budget).
    pub fn register_proposer(&mut self, name: &str, f: Arc<dyn ProposerFactory>) -> &mut Self {
        self.register_optimizer(name, Arc::new(ProposerDriven(f)))
    }

    /// Adds a search-space kind.
    pub fn register_space(&mut self, name: &str, f: Arc<dyn SpaceFactory>) -> &mut Self {
        let origin = self.origin();
        self.spaces.insert(name.into(), Entry { value: f, origin });
        self
    }

    /// Adds a fidelity schedule.
    pub fn register_schedule(&mut self, name: &str, f: Arc<dyn ScheduleFactory>) -> &mut Self {
        let origin = self.origin();
        self.schedules
            .insert(name.into(), Entry { value: f, origin });
        self
    }

    /// Adds an energy meter.
    pub fn register_meter(&mut self, name: &str, f: Arc<dyn MeterFactory>) -> &mut Self {
        let origin = self.origin();
        self.meters.insert(name.into(), Entry { value: f, origin });
        self
    }

    /// Adds an executor.
    pub fn register_executor(&mut self, name: &str, f: Arc<dyn ExecutorFactory>) -> &mut Self {
        let origin = self.origin();
        self.executors
            .insert(name.into(), Entry { value: f, origin });
        self
    }

    /// This registry with dynamic plugins from `plugins` (consulted after
    /// the registered names).
    pub fn with_plugins(&self, plugins: Arc<dyn PluginSource>) -> Registry {
        let mut r = self.clone();
        r.plugins = Some(plugins);
        r
    }

    /// The plugin source, if any.
    pub fn plugins(&self) -> Option<&Arc<dyn PluginSource>> {
        self.plugins.as_ref()
    }

    /// Installs how plugins are found for an experiment.
    pub fn set_plugin_loader(&mut self, loader: Arc<dyn PluginLoader>) -> &mut Self {
        self.plugin_loader = Some(loader);
        self
    }

    /// How plugins are found for an experiment, if installed.
    pub fn plugin_loader(&self) -> Option<&Arc<dyn PluginLoader>> {
        self.plugin_loader.as_ref()
    }

    /// This registry with the plugins an experiment file in `base_dir`
    /// naming `plugin_dirs` sees (when a plugin loader is installed).
    pub fn for_experiment(&self, base_dir: &Path, plugin_dirs: &[PathBuf]) -> Registry {
        match &self.plugin_loader {
            Some(loader) => self.with_plugins(loader.plugins_for(base_dir, plugin_dirs)),
            None => self.clone(),
        }
    }

    fn unknown(&self, kind: Kind, name: &str) -> UnknownName {
        UnknownName {
            kind,
            name: name.to_string(),
            allowed: self.names(kind),
        }
    }

    /// The backbone `name`.
    pub fn backbone(&self, name: &str) -> Result<Arc<dyn Backbone>, UnknownName> {
        lookup(&self.backbones, name)
            .map(|e| e.value.clone())
            .ok_or_else(|| self.unknown(Kind::Backbone, name))
    }

    /// The data set `name`.
    pub fn dataset(&self, name: &str) -> Result<Arc<dyn DatasetFactory>, UnknownName> {
        lookup(&self.datasets, name)
            .map(|e| e.value.clone())
            .ok_or_else(|| self.unknown(Kind::Dataset, name))
    }

    /// The objective `name`.
    pub fn objective(&self, name: &str) -> Result<Arc<dyn ObjectiveFactory>, UnknownName> {
        lookup(&self.objectives, name)
            .map(|e| e.value.clone())
            .ok_or_else(|| self.unknown(Kind::Objective, name))
    }

    /// The optimizer (or proposer) `name`: registered ones first, then
    /// plugins.
    pub fn optimizer(&self, name: &str) -> Result<Arc<dyn OptimizerFactory>, UnknownName> {
        if let Some(e) = lookup(&self.optimizers, name) {
            return Ok(e.value.clone());
        }
        self.plugin_optimizer(name)
    }

    /// The optimizer plugin `name` only.
    pub fn plugin_optimizer(&self, name: &str) -> Result<Arc<dyn OptimizerFactory>, UnknownName> {
        self.plugins
            .as_ref()
            .and_then(|p| p.optimizer(name))
            .map(|(f, _)| f)
            .ok_or_else(|| self.unknown(Kind::Optimizer, name))
    }

    /// The search-space kind `name`.
    pub fn space(&self, name: &str) -> Result<Arc<dyn SpaceFactory>, UnknownName> {
        lookup(&self.spaces, name)
            .map(|e| e.value.clone())
            .ok_or_else(|| self.unknown(Kind::Space, name))
    }

    /// The fidelity schedule `name`.
    pub fn schedule(&self, name: &str) -> Result<Arc<dyn ScheduleFactory>, UnknownName> {
        lookup(&self.schedules, name)
            .map(|e| e.value.clone())
            .ok_or_else(|| self.unknown(Kind::Schedule, name))
    }

    /// The energy meter `name`: registered ones first, then plugins.
    pub fn meter(&self, name: &str) -> Result<Arc<dyn MeterFactory>, UnknownName> {
        if let Some(e) = lookup(&self.meters, name) {
            return Ok(e.value.clone());
        }
        self.plugin_meter(name)
    }

    /// The meter plugin `name` only.
    pub fn plugin_meter(&self, name: &str) -> Result<Arc<dyn MeterFactory>, UnknownName> {
        self.plugins
            .as_ref()
            .and_then(|p| p.meter(name))
            .map(|(f, _)| f)
            .ok_or_else(|| self.unknown(Kind::Meter, name))
    }

    /// The executor `name`.
    pub fn executor(&self, name: &str) -> Result<Arc<dyn ExecutorFactory>, UnknownName> {
        lookup(&self.executors, name)
            .map(|e| e.value.clone())
            .ok_or_else(|| self.unknown(Kind::Executor, name))
    }

    fn registered_names(&self, kind: Kind) -> Vec<String> {
        match kind {
            Kind::Backbone => self.backbones.keys().cloned().collect(),
            Kind::Dataset => self.datasets.keys().cloned().collect(),
            Kind::Objective => self.objectives.keys().cloned().collect(),
            Kind::Optimizer => self.optimizers.keys().cloned().collect(),
            Kind::Space => self.spaces.keys().cloned().collect(),
            Kind::Schedule => self.schedules.keys().cloned().collect(),
            Kind::Meter => self.meters.keys().cloned().collect(),
            Kind::Executor => self.executors.keys().cloned().collect(),
        }
    }

    /// The names of `kind`, registered ones then plugins (built-ins in
    /// their registration order is not kept: names sort).
    pub fn names(&self, kind: Kind) -> Vec<String> {
        let mut names = self.registered_names(kind);
        if let Some(p) = &self.plugins {
            for l in p.listings() {
                if l.kind == kind && !names.contains(&l.name) {
                    names.push(l.name);
                }
            }
        }
        names
    }

    /// Everything registered, with descriptions and origins, plugins
    /// included: what `dsnn plugins` and `dsnn check` list.
    pub fn listings(&self) -> Vec<Listing> {
        fn add<T: ?Sized>(
            out: &mut Vec<Listing>,
            kind: Kind,
            map: &Map<T>,
            describe: impl Fn(&T) -> String,
        ) {
            for (name, e) in map {
                out.push(Listing {
                    kind,
                    name: name.clone(),
                    description: describe(&e.value),
                    origin: e.origin.clone(),
                });
            }
        }
        let mut out = Vec::new();
        add(&mut out, Kind::Backbone, &self.backbones, |b| {
            b.description()
        });
        add(&mut out, Kind::Dataset, &self.datasets, |d| d.description());
        add(&mut out, Kind::Objective, &self.objectives, |o| {
            o.description()
        });
        add(&mut out, Kind::Optimizer, &self.optimizers, |o| {
            o.description()
        });
        add(&mut out, Kind::Space, &self.spaces, |s| s.description());
        add(&mut out, Kind::Schedule, &self.schedules, |s| {
            s.description()
        });
        add(&mut out, Kind::Meter, &self.meters, |m| m.description());
        add(&mut out, Kind::Executor, &self.executors, |e| {
            e.description()
        });
        if let Some(p) = &self.plugins {
            out.extend(p.listings());
        }
        out
    }

    /// The unknown-name error for a plugin, with the plugin source's
    /// explanation (directories searched, unusable libraries).
    pub fn explain_missing_plugin(&self, kind: Kind, name: &str) -> String {
        match &self.plugins {
            Some(p) => p.explain_missing(name, kind),
            None => {
                format!("no {kind} plugin `{name}`: this program was built without plugin support")
            }
        }
    }
}
