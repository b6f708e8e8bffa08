//! Experiment files: one TOML file that describes a whole multi-objective,
//! multi-fidelity search, parsed and checked before anything runs.
//!
//! The file is parsed into a TOML document, then resolved once into a
//! [`CheckedExperiment`]: every name resolved through the [`Registry`],
//! every section checked by its reader (the objective's own sections by the
//! objective), defaults filled in, paths made absolute. Errors name the key,
//! its line and column, and the allowed values ([`ConfigError`]). Every key
//! is documented in `docs/config.md`.

pub mod energy;
pub mod executor;
pub mod fidelity;
pub mod optimizer;
pub mod space;
pub mod stop;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dsnn_search::{Optimizer, SearchSpace};
use serde::Deserialize;

use crate::objective::{MetricInfo, Objective};
use crate::registry::{ObjectiveSetup, OptimizerSetup, Registry};
use crate::settings::{backticked, split_key, ConfigError, Section, Source};

pub use energy::RunEnergy;
pub use executor::{ExecutorChoice, TellOrder};
pub use fidelity::Fidelity;
pub use optimizer::OptimizerChoice;
pub use stop::StopRule;

/// The top level of an experiment file. Sections are read by their own
/// readers; this only fixes which keys exist.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct TopLevel {
    name: String,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    output_dir: Option<PathBuf>,
    #[serde(default)]
    objectives: Option<Vec<String>>,
    #[serde(default)]
    plugin_dirs: Vec<PathBuf>,
    #[serde(default)]
    objective: Option<toml::Value>,
    #[serde(default)]
    data: Option<toml::Value>,
    #[serde(default)]
    model: Option<toml::Value>,
    #[serde(default)]
    problem: Option<toml::Value>,
    #[serde(default)]
    space: Option<toml::Value>,
    #[serde(default)]
    energy: Option<toml::Value>,
    #[serde(default)]
    optimizer: Option<toml::Value>,
    #[serde(default)]
    fidelity: Option<toml::Value>,
    #[serde(default)]
    executor: Option<toml::Value>,
    #[serde(default)]
    stop: Option<toml::Value>,
}

/// The run's objective: what evaluates trials and which of its metrics
/// are minimised.
#[derive(Clone)]
pub struct ObjectiveChoice {
    /// The objective's registered name.
    pub kind: String,
    /// The objective.
    pub objective: Arc<dyn Objective>,
    /// The metrics minimised, in order.
    pub names: Vec<String>,
    /// Their descriptions, in the same order.
    pub infos: Vec<MetricInfo>,
    /// A few words for the start-of-run banner.
    pub target: String,
}

/// A checked experiment: everything a run needs, resolved.
#[derive(Clone)]
pub struct CheckedExperiment {
    /// Run name: the run directory is `output_dir/name`.
    pub name: String,
    /// Seed of the optimizer, the splits, initial weights and batch order.
    pub seed: u64,
    /// Where run directories go (absolute).
    pub output_dir: PathBuf,
    /// The directory of the experiment file.
    pub base_dir: PathBuf,
    /// Plugin directories besides `DSNN_PLUGIN_PATH` (absolute).
    pub plugin_dirs: Vec<PathBuf>,
    /// The objective.
    pub objective: ObjectiveChoice,
    /// The search space.
    pub space: Arc<dyn SearchSpace>,
    /// The fidelity schedule.
    pub fidelity: Fidelity,
    /// The optimizer.
    pub optimizer: OptimizerChoice,
    /// Energy measurement.
    pub energy: RunEnergy,
    /// The executor.
    pub executor: ExecutorChoice,
    /// When the run stops.
    pub stop: StopRule,
    /// The registry the names were resolved with (plugins included).
    pub registry: Registry,
    /// The file as given.
    pub source: Source,
    /// The experiment in resolved form, as the run directory stores it.
    pub resolved: toml::Table,
}

impl std::fmt::Debug for CheckedExperiment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedExperiment")
            .field("name", &self.name)
            .field("objective", &self.objective.kind)
            .field("optimizer", &self.optimizer.name)
            .field("executor", &self.executor.kind)
            .finish()
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    path.parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            }
        })
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Sets the dotted `key` of `doc` to `value`, creating tables on the way.
pub fn set_key(doc: &mut toml::Table, key: &str, value: toml::Value) {
    let parts = split_key(key);
    let Some((last, init)) = parts.split_last() else {
        return;
    };
    let mut t = doc;
    for p in init {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        t = entry.as_table_mut().expect("a table");
    }
    t.insert(last.clone(), value);
}

impl CheckedExperiment {
    /// Reads and checks an experiment file, resolving names with `registry`.
    pub fn from_file(path: &Path, registry: &Registry) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::unreadable(path, "experiment", &e))?;
        Self::from_str(
            &text,
            &path.display().to_string(),
            &parent_dir(path),
            registry,
        )
    }

    /// Parses and checks experiment text; relative paths are resolved
    /// against `base_dir`, and errors say they are in `file`.
    pub fn from_str(
        text: &str,
        file: &str,
        base_dir: &Path,
        registry: &Registry,
    ) -> Result<Self, ConfigError> {
        let source = Source::new(file, text);
        let doc = source.parse()?;
        let root = Section::new(&source, Vec::new(), Some(toml::Value::Table(doc.clone())));
        let top: TopLevel = root.parse()?;
        let base_dir = std::path::absolute(base_dir).unwrap_or_else(|_| base_dir.to_path_buf());
        check_name(&source, &top.name)?;
        // Plugin directories: `./plugins` next to the file, then the file's
        // own (relative to it); `DSNN_PLUGIN_PATH` is added by the loader.
        let mut plugin_dirs: Vec<PathBuf> =
            top.plugin_dirs.iter().map(|d| base_dir.join(d)).collect();
        let local = base_dir.join("plugins");
        if local.is_dir() && !plugin_dirs.contains(&local) {
            plugin_dirs.insert(0, local);
        }
        let registry = registry.for_experiment(&base_dir, &plugin_dirs);
        let mut resolved = doc.clone();

        // The objective, and the sections it reads.
        let objective =
            read_objective(&source, &doc, &registry, &base_dir, top.seed, &mut resolved)?;
        let (space, space_resolved) = space::read(
            &source,
            &doc,
            &registry,
            objective.objective.as_ref(),
            &objective.kind,
            &base_dir,
        )?;
        match space_resolved {
            Some(v) => set_key(&mut resolved, "space", v),
            None => {
                resolved.remove("space");
            }
        }
        let section = |name: &str| Section::new(&source, vec![name.into()], doc.get(name).cloned());
        let energy = RunEnergy::read(&section("energy"), &registry)?;
        let fidelity = Fidelity::read(
            &section("fidelity"),
            &registry,
            objective.objective.default_max_budget(),
        )?;
        let optimizer =
            OptimizerChoice::read(&section("optimizer"), &registry, fidelity.multi_fidelity)?;
        let executor = ExecutorChoice::read(&section("executor"), &registry)?;
        let stop = StopRule::read(&section("stop"))?;

        let output_dir = top.output_dir.unwrap_or_else(|| PathBuf::from("runs"));
        let output_dir = if output_dir.is_relative() {
            std::env::current_dir()
                .map(|d| d.join(&output_dir))
                .unwrap_or(output_dir)
        } else {
            output_dir
        };
        if let Some(file) = first_non_directory(&output_dir.join(&top.name)) {
            return Err(source.error(
                "output_dir",
                format!(
                    "`output_dir` = \"{}\": {} exists and is not a directory, so the run \
                     directory {} cannot be made there",
                    output_dir.display(),
                    file.display(),
                    output_dir.join(&top.name).display()
                ),
            ));
        }
        // The resolved file says everything: defaults written out.
        set_key(&mut resolved, "seed", toml::Value::Integer(top.seed as i64));
        set_key(
            &mut resolved,
            "output_dir",
            toml::Value::String(output_dir.display().to_string()),
        );
        set_key(
            &mut resolved,
            "plugin_dirs",
            toml::Value::Array(
                plugin_dirs
                    .iter()
                    .map(|d| toml::Value::String(d.display().to_string()))
                    .collect(),
            ),
        );
        set_key(
            &mut resolved,
            "objectives",
            toml::Value::Array(
                objective
                    .names
                    .iter()
                    .map(|n| toml::Value::String(n.clone()))
                    .collect(),
            ),
        );
        set_key(
            &mut resolved,
            "fidelity.kind",
            toml::Value::String(fidelity.kind.clone()),
        );
        set_key(
            &mut resolved,
            "fidelity.max",
            toml::Value::Float(fidelity.range.max),
        );
        set_key(
            &mut resolved,
            "fidelity.eta",
            toml::Value::Float(fidelity.range.eta),
        );
        set_key(
            &mut resolved,
            "executor.kind",
            toml::Value::String(executor.kind.clone()),
        );
        set_key(
            &mut resolved,
            "executor.workers",
            toml::Value::Integer(executor.workers as i64),
        );
        if !optimizer.is_plugin {
            set_key(
                &mut resolved,
                "optimizer.kind",
                toml::Value::String(optimizer.name.clone()),
            );
        }
        let exp = CheckedExperiment {
            name: top.name,
            seed: top.seed,
            output_dir,
            base_dir,
            plugin_dirs,
            objective,
            space,
            fidelity,
            optimizer,
            energy,
            executor,
            stop,
            registry,
            source,
            resolved,
        };
        // A fresh optimizer, so its settings are checked now (plugins are
        // loaded and validate theirs) rather than at `run`.
        exp.build_optimizer()?;
        Ok(exp)
    }

    /// The run directory.
    pub fn run_dir(&self) -> PathBuf {
        self.output_dir.join(&self.name)
    }

    /// The largest budget (the full fidelity).
    pub fn max_budget(&self) -> f64 {
        self.fidelity.range.max
    }

    /// Names of the objectives, in order.
    pub fn objective_names(&self) -> &[String] {
        &self.objective.names
    }

    /// What optimizer factories get.
    pub fn optimizer_setup(&self) -> OptimizerSetup {
        OptimizerSetup {
            space: self.space.clone(),
            schedule: self.fidelity.schedule.clone(),
            multi_fidelity: self.fidelity.multi_fidelity,
            budget: self.fidelity.range,
            objectives: self.objective.names.len(),
            seed: self.seed,
            trials: self.stop.trials,
        }
    }

    /// A fresh optimizer (seeded by the experiment's seed).
    pub fn build_optimizer(&self) -> Result<Box<dyn Optimizer>, ConfigError> {
        self.optimizer.build(&self.optimizer_setup())
    }

    /// The experiment in resolved form, as the run directory stores it.
    pub fn resolved_toml(&self) -> String {
        toml::to_string_pretty(&self.resolved).unwrap_or_else(|e| format!("# unprintable: {e}"))
    }

    /// A summary of settings for banners and `dsnn check`.
    pub fn describe(&self) -> BTreeMap<&'static str, String> {
        let mut m = BTreeMap::new();
        m.insert("target", self.objective.target.clone());
        m.insert("objectives", self.objective.names.join(", "));
        m.insert("hyperparameters", self.space.names().len().to_string());
        m.insert(
            "optimizer",
            if self.optimizer.is_plugin {
                format!("plugin {}", self.optimizer.name)
            } else {
                self.optimizer.name.clone()
            },
        );
        m.insert(
            "fidelity",
            match self.fidelity.range.min {
                Some(min) if self.fidelity.multi_fidelity => format!(
                    "{} from {min} to {} (eta {})",
                    self.fidelity.kind, self.fidelity.range.max, self.fidelity.range.eta
                ),
                _ => format!("{} at {}", self.fidelity.kind, self.fidelity.range.max),
            },
        );
        m.insert(
            "executor",
            format!("{} x {}", self.executor.kind, self.executor.workers),
        );
        m.insert(
            "energy",
            format!("{} ({})", self.energy.meter_name, self.energy.energy_kind),
        );
        m
    }
}

/// The first of `dir` and its ancestors that exists and is not a directory
/// (a file, a device): the run directory cannot be created below it.
fn first_non_directory(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find_map(|a| std::fs::metadata(a).ok().map(|m| (a, m.is_dir())))
        .and_then(|(a, is_dir)| (!is_dir).then(|| a.to_path_buf()))
}

fn check_name(source: &Source, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !name.starts_with('.');
    if ok {
        return Ok(());
    }
    let shown: String = name.chars().take(60).collect();
    let more = if name.chars().count() > 60 { "..." } else { "" };
    Err(source.error(
        "name",
        format!(
            "`name` = \"{shown}{more}\" is not a valid run name (allowed: 1 to 200 letters, digits, `-`, `_`, `.`; not starting with `.`)"
        ),
    ))
}

/// Resolves the objective: `[objective] kind`, or `dsnn` for a file with
/// `[data]` and `problem` for one with `[problem]`.
fn read_objective(
    source: &Source,
    doc: &toml::Table,
    registry: &Registry,
    base_dir: &Path,
    seed: u64,
    resolved: &mut toml::Table,
) -> Result<ObjectiveChoice, ConfigError> {
    let section = Section::new(
        source,
        vec!["objective".into()],
        doc.get("objective").cloned(),
    );
    let explicit = section.value().get("kind").cloned();
    let kind = match explicit {
        Some(k) => k
            .as_str()
            .ok_or_else(|| section.error("kind", "`objective.kind` must be a name"))?
            .to_string(),
        None => match (doc.contains_key("data"), doc.contains_key("problem")) {
            (true, false) => "dsnn".into(),
            (false, true) => "problem".into(),
            (true, true) => {
                return Err(source.error(
                    "problem",
                    "`[data]` and `[problem]` exclude each other: a run searches DSNNs or a test problem, not both",
                ))
            }
            (false, false) => {
                return Err(source.error(
                    "name",
                    "the experiment needs a `[data]` table (a DSNN search) or a `[problem]` table (a test problem)",
                ))
            }
        },
    };
    let factory = registry
        .objective(&kind)
        .map_err(|e| section.error("kind", format!("`objective.kind`: {e}")))?;
    let setup = ObjectiveSetup {
        source,
        document: doc,
        settings: section.without(&["kind"]),
        registry,
        base_dir,
        seed,
    };
    let built = factory.create(&setup)?;
    for (k, v) in built.resolved {
        set_key(resolved, &k, v);
    }
    set_key(
        resolved,
        "objective.kind",
        toml::Value::String(kind.clone()),
    );
    let metrics = built.objective.metrics();
    let names = match doc.get("objectives") {
        Some(toml::Value::Array(a)) => {
            let allowed: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
            if a.is_empty() {
                return Err(source.error(
                    "objectives",
                    format!("`objectives` is empty (allowed: {})", backticked(&allowed)),
                ));
            }
            let mut names: Vec<String> = Vec::new();
            for (i, v) in a.iter().enumerate() {
                let key = format!("objectives.{i}");
                let name = v
                    .as_str()
                    .ok_or_else(|| source.error(&key, format!("`{key}` must be a name")))?;
                if !allowed.contains(&name) {
                    return Err(source.error(
                        &key,
                        format!(
                            "`{key}`: unknown objective `{name}` of the `{kind}` objective (allowed: {})",
                            backticked(&allowed)
                        ),
                    ));
                }
                if names.iter().any(|n| n == name) {
                    return Err(source.error(&key, format!("objective `{name}` is listed twice")));
                }
                names.push(name.to_string());
            }
            names
        }
        Some(_) => return Err(source.error("objectives", "`objectives` must be a list of names")),
        None => built.objective.default_objectives(),
    };
    let infos = names
        .iter()
        .map(|n| {
            metrics
                .iter()
                .find(|m| &m.name == n)
                .cloned()
                .unwrap_or_else(|| MetricInfo::new(n, "", false))
        })
        .collect();
    Ok(ObjectiveChoice {
        kind,
        objective: built.objective,
        names,
        infos,
        target: built.target,
    })
}
