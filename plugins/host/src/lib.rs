//! Finding and loading dsnn plugins.
//!
//! A [`PluginHost`] knows a list of plugin directories, in order of
//! precedence: `./plugins` next to the experiment file, the directories the
//! caller names (from the experiment file or the command line), then those in
//! `DSNN_PLUGIN_PATH` (colon-separated). Every dynamic library in them
//! (`.so`, `.dylib` or `.dll`) is a candidate.
//!
//! - [`PluginHost::list`] inspects each library: its plugin name, kind,
//!   interface version and path, or one line saying why it is not usable
//!   (another interface version, not a dsnn plugin, a missing symbol, ...).
//! - [`PluginHost::load_optimizer_in`] gives a `Box<dyn dsnn_search::Optimizer>`
//!   (the plugin told the run's [`RunContext`] when it is of interface 1.1),
//!   [`PluginHost::load_proposer`] a `Box<dyn dsnn_search::Proposer>` for
//!   Hyperband (interface 1.1 plugins that provide one), and
//!   [`PluginHost::load_meter`] a `Box<dyn dsnn_energy::EnergyMeter>`, all
//!   behaving like the built-in ones; errors and panics inside the plugin
//!   come back as errors ([`dsnn_search::OptimizerError::Plugin`],
//!   [`dsnn_energy::EnergyError::Plugin`]), and an instance that panicked
//!   refuses further calls instead of running on in an unknown state.
//!
//! Each library is opened on its own with the operating system's loader and
//! checked by `abi_stable` (interface version, then the layout of every type
//! that crosses the boundary). Libraries are never unloaded: their code may
//! still be referenced by objects they created.
//!
//! Loading a library runs its code: only put trusted libraries into plugin
//! directories.

#![warn(missing_docs)]

mod adapters;
mod error;
mod load;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use dsnn_energy::EnergyMeter;
use dsnn_plugin_api::abi_stable::std_types::RResult;
use dsnn_plugin_api::PContext;
use dsnn_search::{ConfigurationSpace, Optimizer, Proposer};

pub use error::{DirList, PluginError};
pub use load::{inspect, PluginInfo, PluginKind};

use load::Module;

/// The environment variable with extra plugin directories, separated by `:`
/// (`;` on Windows).
pub const PLUGIN_PATH_ENV: &str = "DSNN_PLUGIN_PATH";

/// The directories named by [`PLUGIN_PATH_ENV`], in order (empty entries
/// are skipped).
pub fn plugin_path_from_env() -> Vec<PathBuf> {
    split_plugin_path(std::env::var_os(PLUGIN_PATH_ENV).as_deref())
}

/// The directories of a `DSNN_PLUGIN_PATH` value (`:`-separated on Unix;
/// empty entries are skipped).
pub fn split_plugin_path(value: Option<&std::ffi::OsStr>) -> Vec<PathBuf> {
    match value {
        Some(v) => std::env::split_paths(v)
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
        None => Vec::new(),
    }
}

/// What an optimizer plugin is told about the run it serves (interface
/// 1.1; plugins of interface 1.0 are told nothing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunContext {
    /// Number of objectives of every result.
    pub objectives: usize,
    /// Smallest budget of a trial (`max_budget` at one fidelity).
    pub min_budget: f64,
    /// The full budget (`fidelity.max`).
    pub max_budget: f64,
    /// Whether trials run at several budgets.
    pub multi_fidelity: bool,
}

impl RunContext {
    /// The context of a run at one fidelity, `budget`.
    pub fn fixed(objectives: usize, budget: f64) -> Self {
        RunContext {
            objectives,
            min_budget: budget,
            max_budget: budget,
            multi_fidelity: false,
        }
    }

    fn to_plugin(self) -> PContext {
        PContext {
            objectives: self.objectives as u64,
            min_budget: self.min_budget,
            max_budget: self.max_budget,
            multi_fidelity: self.multi_fidelity,
        }
    }
}

/// One library found in a plugin directory: what it is, or why it cannot
/// be used.
#[derive(Debug, Clone)]
pub struct PluginEntry {
    /// The library file.
    pub path: PathBuf,
    /// Its description, or one line saying why it cannot be loaded.
    pub status: Result<PluginInfo, String>,
}

/// Finds and loads plugins from an ordered list of directories.
#[derive(Debug, Clone, Default)]
pub struct PluginHost {
    dirs: Vec<PathBuf>,
}

impl PluginHost {
    /// A host that searches exactly `dirs`, in order (earlier directories
    /// win when two plugins have the same name). Missing directories are
    /// skipped.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        let mut seen = BTreeSet::new();
        let dirs = dirs
            .into_iter()
            .filter(|d| seen.insert(d.clone()))
            .collect();
        PluginHost { dirs }
    }

    /// The standard search order: `plugins/` in `base_dir` (the directory
    /// of the experiment file, or the current directory), then `extra_dirs`
    /// (relative ones are taken relative to `base_dir`), then
    /// `DSNN_PLUGIN_PATH`.
    pub fn standard(base_dir: &Path, extra_dirs: &[PathBuf]) -> Self {
        PluginHost::standard_with_path(base_dir, extra_dirs, plugin_path_from_env())
    }

    /// [`PluginHost::standard`] with the `DSNN_PLUGIN_PATH` directories
    /// given instead of read from the environment.
    pub fn standard_with_path(
        base_dir: &Path,
        extra_dirs: &[PathBuf],
        plugin_path: Vec<PathBuf>,
    ) -> Self {
        let mut dirs = vec![base_dir.join("plugins")];
        dirs.extend(extra_dirs.iter().map(|d| base_dir.join(d)));
        dirs.extend(plugin_path);
        PluginHost::new(dirs)
    }

    /// The directories searched, in order of precedence.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The dynamic libraries in the plugin directories: per directory in
    /// file-name order, directories in order of precedence.
    pub fn library_files(&self) -> Vec<PathBuf> {
        let suffix = std::env::consts::DLL_SUFFIX;
        let mut out = Vec::new();
        for dir in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                log::debug!("plugin directory {} not readable; skipped", dir.display());
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.ends_with(suffix))
                })
                .collect();
            files.sort();
            out.extend(files);
        }
        out
    }

    /// Every library in the plugin directories with what it is, or one line
    /// saying why it cannot be used. Loads each library (once per process).
    pub fn list(&self) -> Vec<PluginEntry> {
        self.library_files()
            .into_iter()
            .map(|path| PluginEntry {
                status: inspect(&path),
                path,
            })
            .collect()
    }

    /// The first usable plugin called `name` of kind `kind`, or why there
    /// is none (directories searched, plugins found, unusable libraries).
    pub fn locate(&self, name: &str, kind: PluginKind) -> Result<PluginInfo, PluginError> {
        self.find(name, kind).map(|(info, _)| info)
    }

    /// The first plugin called `name` of kind `kind`, with its module.
    fn find(&self, name: &str, kind: PluginKind) -> Result<(PluginInfo, Module), PluginError> {
        let mut found = Vec::new();
        let mut unusable = Vec::new();
        let mut other_kind = None;
        for path in self.library_files() {
            match load::open(&path) {
                Ok((info, module)) => {
                    if info.name == name && info.kind == kind {
                        return Ok((info, module));
                    }
                    if info.name == name {
                        other_kind = Some(info.clone());
                    }
                    found.push(format!("{} ({})", info.name, info.kind));
                }
                Err(reason) => {
                    log::warn!("skipping plugin library {}: {reason}", path.display());
                    let file = path.file_name().unwrap_or(path.as_os_str());
                    unusable.push(format!("{}: {reason}", file.to_string_lossy()));
                }
            }
        }
        if let Some(info) = other_kind {
            return Err(PluginError::WrongKind {
                name: name.to_string(),
                path: info.path,
                expected: kind,
                found: info.kind,
            });
        }
        Err(PluginError::NotFound {
            name: name.to_string(),
            kind,
            dirs: self.dirs.clone().into(),
            available: found,
            unusable,
        })
    }

    /// Create an instance of the optimizer plugin `name` for `space`, with
    /// its settings (a TOML table as text, `""` for none) and a seed, not
    /// telling it about the run: the plugin's `create` (what a dsnn of
    /// interface 1.0 calls). [`PluginHost::load_optimizer_in`] tells it.
    ///
    /// The result behaves like a built-in optimizer: same seed and same asks
    /// and tells give the same trials (if the plugin is deterministic, as
    /// the bundled ones are), trials are validated against `space`, and the
    /// plugin's errors and panics are returned as `OptimizerError`s.
    pub fn load_optimizer(
        &self,
        name: &str,
        space: &ConfigurationSpace,
        settings_toml: &str,
        seed: u64,
    ) -> Result<Box<dyn Optimizer>, PluginError> {
        self.create_optimizer(name, space, settings_toml, seed, None)
    }

    /// [`PluginHost::load_optimizer`] for a run described by `context`:
    /// the plugin's `create_with_context` (interface 1.1) when it has one,
    /// its `create` otherwise (interface 1.0 plugins, and 1.1 plugins that
    /// need no context). The plugin is a whole optimizer choosing its own
    /// budgets; a multi-fidelity run wants [`PluginHost::load_proposer`].
    pub fn load_optimizer_in(
        &self,
        name: &str,
        space: &ConfigurationSpace,
        settings_toml: &str,
        seed: u64,
        context: &RunContext,
    ) -> Result<Box<dyn Optimizer>, PluginError> {
        self.create_optimizer(name, space, settings_toml, seed, Some(context))
    }

    fn create_optimizer(
        &self,
        name: &str,
        space: &ConfigurationSpace,
        settings_toml: &str,
        seed: u64,
        context: Option<&RunContext>,
    ) -> Result<Box<dyn Optimizer>, PluginError> {
        let (info, module) = self.find(name, PluginKind::Optimizer)?;
        let json = space.to_configspace_json().map_err(PluginError::Space)?;
        let (space_arg, settings_arg) = (json.as_str().into(), settings_toml.into());
        let created = match module {
            Module::OptimizerV1_0(m) => (m.create())(space_arg, settings_arg, seed),
            Module::Optimizer(m) => match (context, m.create_with_context().flatten()) {
                (Some(c), Some(create)) => create(space_arg, settings_arg, seed, c.to_plugin()),
                _ => (m.create())(space_arg, settings_arg, seed),
            },
            Module::Meter(_) => unreachable!("find checks the kind"),
        };
        match created {
            RResult::ROk(inner) => {
                log::info!(
                    "loaded optimizer plugin `{name}` (interface {}) from {}",
                    info.interface_version,
                    info.path.display()
                );
                Ok(Box::new(adapters::PluginOptimizer::new(
                    info.name,
                    inner,
                    space.clone(),
                )))
            }
            RResult::RErr(e) => Err(PluginError::Create {
                name: name.to_string(),
                path: info.path,
                message: e.to_string(),
            }),
        }
    }

    /// The proposer of the optimizer plugin `name` (interface 1.1), for a
    /// run described by `context`: dsnn runs it under Hyperband or
    /// successive halving (`dsnn_search::HyperbandOptimizer`), deciding the
    /// budgets itself. [`PluginError::NoProposer`] if the plugin provides
    /// none (every interface 1.0 plugin).
    ///
    /// The proposer is told every finished trial (configuration, budget,
    /// outcome) before it proposes again; its configurations are validated
    /// against `space`, and its errors and panics come back as
    /// `OptimizerError`s.
    pub fn load_proposer(
        &self,
        name: &str,
        space: &ConfigurationSpace,
        settings_toml: &str,
        seed: u64,
        context: &RunContext,
    ) -> Result<Box<dyn Proposer>, PluginError> {
        let (info, module) = self.find(name, PluginKind::Optimizer)?;
        let create = match module {
            Module::Optimizer(m) => m.create_proposer().flatten(),
            _ => None,
        };
        let Some(create) = create else {
            return Err(PluginError::NoProposer {
                name: name.to_string(),
                path: info.path,
                interface_version: info.interface_version,
            });
        };
        let json = space.to_configspace_json().map_err(PluginError::Space)?;
        match create(
            json.as_str().into(),
            settings_toml.into(),
            seed,
            context.to_plugin(),
        ) {
            RResult::ROk(inner) => {
                log::info!(
                    "loaded the proposer of optimizer plugin `{name}` from {}",
                    info.path.display()
                );
                Ok(Box::new(adapters::PluginProposer::new(
                    info.name,
                    inner,
                    space.clone(),
                )))
            }
            RResult::RErr(e) => Err(PluginError::Create {
                name: name.to_string(),
                path: info.path,
                message: e.to_string(),
            }),
        }
    }

    /// Create an instance of the energy-meter plugin `name` with its
    /// settings (a TOML table as text, `""` for none).
    pub fn load_meter(
        &self,
        name: &str,
        settings_toml: &str,
    ) -> Result<Box<dyn EnergyMeter>, PluginError> {
        let (info, module) = self.find(name, PluginKind::Meter)?;
        let Module::Meter(m) = module else {
            unreachable!("find checks the kind");
        };
        let create = m.create();
        match create(settings_toml.into()) {
            RResult::ROk(inner) => {
                log::info!("loaded meter plugin `{name}` from {}", info.path.display());
                Ok(Box::new(adapters::PluginMeter::new(info.name, inner)))
            }
            RResult::RErr(e) => Err(PluginError::Create {
                name: name.to_string(),
                path: info.path,
                message: e.to_string(),
            }),
        }
    }
}
