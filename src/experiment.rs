//! Experiment files: one TOML file that describes a whole multi-objective,
//! multi-fidelity search, parsed and checked before anything runs.
//!
//! Every key is documented in `docs/config.md`. Errors name the key, the line
//! and column, and the allowed values ([`ConfigError`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dsnn_core::data::DatasetName;
use dsnn_core::optim::OptimizerKind;
use dsnn_core::{Rounding, ShiftEnd, ShiftType};
use dsnn_energy::{GridLocation, MeterSpec};
use dsnn_search::problems::TestProblem;
use dsnn_search::{ConfigurationSpace, SearchSpace, Value};
use serde::{Deserialize, Serialize};

/// A problem with an experiment file: where, which key, what is allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}{location}: {message}")]
pub struct ConfigError {
    /// The file (or `<string>`).
    pub file: String,
    /// `:LINE:COLUMN` when known, otherwise empty.
    pub location: String,
    /// What is wrong, naming the key and the allowed values.
    pub message: String,
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The source of an experiment: its text and where it came from, for errors
/// that point into it.
struct Source<'a> {
    file: String,
    text: &'a str,
}

impl Source<'_> {
    /// An error at the value of the dotted `key` (or at the file when the key
    /// is absent).
    fn error_at(&self, key: &str, message: String) -> ConfigError {
        // SLURM settings may also be written in the executor table itself.
        let flat = key
            .strip_prefix("executor.slurm.")
            .map(|k| format!("executor.{k}"));
        let location = self
            .span_of(key)
            .or_else(|| flat.and_then(|k| self.span_of(&k)))
            .map(|s| self.location(s.start))
            .unwrap_or_default();
        ConfigError {
            file: self.file.clone(),
            location,
            message,
        }
    }

    /// `:line:column` of byte `offset`.
    fn location(&self, offset: usize) -> String {
        let (l, c) = line_col(self.text, offset);
        format!(":{l}:{c}")
    }

    /// The dotted key whose value covers byte `offset`, if any.
    fn key_at(&self, offset: usize) -> Option<String> {
        fn walk(v: &toml::de::DeValue, offset: usize, path: &mut Vec<String>) -> bool {
            if let Some(t) = v.as_table() {
                for (k, child) in t.iter() {
                    path.push(k.get_ref().to_string());
                    if walk(child.get_ref(), offset, path)
                        || (child.span().contains(&offset) && child.get_ref().as_table().is_none())
                    {
                        return true;
                    }
                    path.pop();
                }
            } else if let Some(a) = v.as_array() {
                for (i, child) in a.iter().enumerate() {
                    path.push(i.to_string());
                    if walk(child.get_ref(), offset, path) || child.span().contains(&offset) {
                        return true;
                    }
                    path.pop();
                }
            }
            false
        }
        let root = toml::de::DeTable::parse(self.text).ok()?;
        let mut path = Vec::new();
        let doc = toml::de::DeValue::Table(root.into_inner());
        walk(&doc, offset, &mut path).then(|| path.join("."))
    }

    /// Byte span of the value at dotted path `key` (`a.b.0.c`).
    fn span_of(&self, key: &str) -> Option<std::ops::Range<usize>> {
        let root = toml::de::DeTable::parse(self.text).ok()?;
        let mut table = root.get_ref();
        let mut parts = key.split('.').peekable();
        let mut span = None;
        let mut current: Option<&toml::de::DeValue> = None;
        while let Some(part) = parts.next() {
            let next = match current {
                None => table.get(part),
                Some(v) => match (v.as_array(), part.parse::<usize>()) {
                    (Some(a), Ok(i)) => a.get(i),
                    _ => v.get(part),
                },
            }?;
            span = Some(next.span());
            current = Some(next.get_ref());
            if parts.peek().is_some() {
                if let Some(t) = next.get_ref().as_table() {
                    table = t;
                    current = None;
                }
            }
        }
        span
    }
}

/// The whole experiment, as written in the file (see `docs/config.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Run name: the run directory is `<output_dir>/<name>`.
    pub name: String,
    /// Seed of the optimizer, the splits, initial weights and batch order.
    #[serde(default)]
    pub seed: u64,
    /// Where run directories go (relative to the working directory).
    #[serde(default = "default_output_dir")]
    pub output_dir: PathBuf,
    /// The data set (DSNN experiments).
    #[serde(default)]
    pub data: Option<DataSection>,
    /// The backbone and the values of hyperparameters that are not searched.
    #[serde(default)]
    pub model: Option<ModelSection>,
    /// A known test problem instead of a DSNN (for trying optimizers and
    /// executors in seconds).
    #[serde(default)]
    pub problem: Option<ProblemSection>,
    /// The search space.
    #[serde(default)]
    pub space: Option<SpaceSection>,
    /// Objectives, all minimised, in order.
    #[serde(default = "default_objectives")]
    pub objectives: Vec<ObjectiveKind>,
    /// How energy is measured and turned into emissions.
    #[serde(default)]
    pub energy: EnergySection,
    /// The optimizer (built in or a plugin) and its settings.
    #[serde(default)]
    pub optimizer: OptimizerSection,
    /// The fidelity schedule (budgets of the trials).
    #[serde(default)]
    pub fidelity: FidelitySection,
    /// Where trials run.
    #[serde(default, deserialize_with = "deserialize_executor")]
    pub executor: ExecutorSection,
    /// When the run stops.
    #[serde(default)]
    pub stop: StopSection,
    /// Directories searched for plugins besides `./plugins` next to the file
    /// and `DSNN_PLUGIN_PATH`.
    #[serde(default)]
    pub plugin_dirs: Vec<PathBuf>,
}

fn default_output_dir() -> PathBuf {
    PathBuf::from("runs")
}

fn default_objectives() -> Vec<ObjectiveKind> {
    vec![ObjectiveKind::Loss, ObjectiveKind::Energy]
}

/// The data set of a DSNN experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// `fashion-mnist`, `mnist`, `digits` or `cifar10`.
    pub dataset: DatasetName,
    /// Directory of the data set's files, relative to the experiment file;
    /// absent: the subset bundled with dsnn (Fashion-MNIST and digits only).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Fraction of the training images held out as the validation split the
    /// objectives are measured on.
    #[serde(default = "default_validation_fraction")]
    pub validation_fraction: f64,
    /// Use at most this many training images (before the split).
    #[serde(default)]
    pub train_limit: Option<usize>,
}

fn default_validation_fraction() -> f64 {
    0.1
}

/// The backbone and every DSNN hyperparameter's value when it is not searched.
/// The defaults are the paper's default DSNN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// `lenet5`, `resnet20` or `digits_cnn`; absent: by data set.
    pub backbone: Option<String>,
    /// Training optimizer.
    pub optimizer: OptimizerKind,
    /// Initial learning rate.
    pub lr: f64,
    /// Momentum (SGD, RMSprop).
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Bits per shift weight (2..=8).
    pub weight_bits: i64,
    /// Integer bits of fixed-point activations (1..=32).
    pub activation_integer_bits: i64,
    /// Fraction bits of fixed-point activations (1..=32).
    pub activation_fraction_bits: i64,
    /// Convolution layers converted (absent: all).
    pub shift_depth: Option<i64>,
    /// Which end `shift_depth` counts from.
    pub shift_end: ShiftEnd,
    /// `Q`, `PS` or `float`.
    pub shift_type: ShiftType,
    /// Rounding of shifts.
    pub rounding: Rounding,
    /// Training batch size.
    pub batch_size: i64,
    /// Evaluation batch size.
    pub test_batch_size: i64,
    /// Epochs when the fidelity is not in epochs.
    pub epochs: i64,
    /// Cosine learning-rate annealing.
    pub cosine_schedule: bool,
    /// Where trials train: `auto` (the first usable GPU, else the CPU, with
    /// the reason logged), `cpu`, `cuda` or `cuda:N`. GPUs need a build with
    /// the `cuda` feature (docs/gpu.md).
    pub device: String,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            backbone: None,
            optimizer: OptimizerKind::SGD,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-4,
            weight_bits: 5,
            activation_integer_bits: 16,
            activation_fraction_bits: 16,
            shift_depth: None,
            shift_end: ShiftEnd::Output,
            shift_type: ShiftType::PS,
            rounding: Rounding::Deterministic,
            batch_size: 128,
            test_batch_size: 1000,
            epochs: 1,
            cosine_schedule: true,
            device: "auto".into(),
        }
    }
}

/// Names of the hyperparameters a DSNN search space may contain.
pub const DSNN_HYPERPARAMETERS: &[&str] = &[
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "weight_bits",
    "activation_integer_bits",
    "activation_fraction_bits",
    "shift_depth",
    "shift_type",
    "rounding",
    "batch_size",
    "test_batch_size",
    "epochs",
];

impl ModelSection {
    /// These settings with the hyperparameters of `config` applied.
    pub fn with_config(&self, config: &dsnn_search::Configuration) -> Result<Self, String> {
        let mut m = self.clone();
        for (name, value) in config.iter() {
            let num = || {
                value
                    .as_f64()
                    .ok_or_else(|| format!("hyperparameter `{name}` must be a number"))
            };
            let int = || -> Result<i64, String> {
                match value {
                    Value::Int(i) => Ok(*i),
                    Value::Float(f) if f.fract() == 0.0 => Ok(*f as i64),
                    _ => Err(format!("hyperparameter `{name}` must be an integer")),
                }
            };
            let text = || -> Result<String, String> {
                match value {
                    Value::Str(s) => Ok(s.clone()),
                    other => Err(format!(
                        "hyperparameter `{name}` must be a string, got {other:?}"
                    )),
                }
            };
            match name.as_str() {
                "optimizer" => m.optimizer = text()?.parse()?,
                "lr" => m.lr = num()?,
                "momentum" => m.momentum = num()?,
                "weight_decay" => m.weight_decay = num()?,
                "weight_bits" => m.weight_bits = int()?,
                "activation_integer_bits" => m.activation_integer_bits = int()?,
                "activation_fraction_bits" => m.activation_fraction_bits = int()?,
                "shift_depth" => m.shift_depth = Some(int()?),
                "shift_type" => m.shift_type = text()?.parse()?,
                "rounding" => m.rounding = text()?.parse()?,
                "batch_size" => m.batch_size = int()?,
                "test_batch_size" => m.test_batch_size = int()?,
                "epochs" => m.epochs = int()?,
                other => {
                    return Err(format!(
                        "the DSNN objective has no hyperparameter `{other}` (allowed: {})",
                        DSNN_HYPERPARAMETERS.join(", ")
                    ))
                }
            }
        }
        m.validate()?;
        Ok(m)
    }

    /// Range checks, with the allowed values in the message.
    pub fn validate(&self) -> Result<(), String> {
        let range = |key: &str, v: i64, lo: i64, hi: i64| {
            if v < lo || v > hi {
                Err(format!(
                    "`{key}` = {v} is out of range (allowed: {lo}..={hi})"
                ))
            } else {
                Ok(())
            }
        };
        range("weight_bits", self.weight_bits, 2, 8)?;
        range(
            "activation_integer_bits",
            self.activation_integer_bits,
            1,
            32,
        )?;
        range(
            "activation_fraction_bits",
            self.activation_fraction_bits,
            1,
            32,
        )?;
        range("batch_size", self.batch_size, 1, 1 << 20)?;
        range("test_batch_size", self.test_batch_size, 1, 1 << 20)?;
        range("epochs", self.epochs, 1, 100_000)?;
        if let Some(d) = self.shift_depth {
            range("shift_depth", d, 0, 10_000)?;
        }
        let positive = |key: &str, v: f64, lo: f64| {
            if v.is_finite() && v >= lo {
                Ok(())
            } else {
                Err(format!("`{key}` = {v} is out of range (allowed: >= {lo})"))
            }
        };
        positive("lr", self.lr, 0.0)?;
        positive("momentum", self.momentum, 0.0)?;
        positive("weight_decay", self.weight_decay, 0.0)?;
        if let Some(b) = &self.backbone {
            dsnn_core::backbone_by_name(b).map_err(|e| e.to_string())?;
        }
        self.device
            .parse::<dsnn_core::device::DeviceSpec>()
            .map_err(|e| format!("`device`: {e}"))?;
        Ok(())
    }
}

/// A known multi-objective test problem as the objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProblemSection {
    /// `zdt1`..`zdt6`, `dtlz1`..`dtlz7` or `wfg1`..`wfg9`.
    pub name: String,
    /// Number of variables (default: the problem's usual size).
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// Number of objectives (DTLZ and WFG: 2..=10, default 3; ZDT: 2).
    #[serde(default)]
    pub objectives: Option<usize>,
    /// Seconds each evaluation sleeps, to simulate an expensive trial.
    #[serde(default)]
    pub delay_s: f64,
    /// Fault injection, for trying how executors and optimizers handle
    /// failing trials: trials whose first variable is below `fraction` fail
    /// the given way.
    #[serde(default)]
    pub inject_failure: Option<InjectFailure>,
}

/// A failure the test problem injects (see [`ProblemSection::inject_failure`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectFailure {
    /// How the trial fails.
    pub kind: FailureKind,
    /// Trials with `x0 < fraction` fail (0..=1).
    pub fraction: f64,
}

/// How an injected failure fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The evaluation panics.
    Panic,
    /// The objectives are NaN.
    Nan,
    /// The process aborts (only survivable with `executor.kind = "processes"`).
    Abort,
    /// The evaluation allocates memory until it runs out (only survivable
    /// with `executor.kind = "processes"` and a `memory_limit`).
    OutOfMemory,
}

impl ProblemSection {
    /// The problem it names (see `dsnn_search::problems::TestProblem::by_name`).
    pub fn problem(&self) -> Result<TestProblem, String> {
        use dsnn_search::problems::ProblemError;
        let base =
            TestProblem::by_name(&self.name, self.dimensions, self.objectives).map_err(|e| {
                let key = match &e {
                    ProblemError::UnknownName { .. } => "problem.name",
                    ProblemError::ObjectivesOutOfRange { .. } => "problem.objectives",
                    _ => "problem.dimensions",
                };
                format!("`{key}`: {e}")
            })?;
        if let Some(f) = &self.inject_failure {
            if !(0.0..=1.0).contains(&f.fraction) {
                return Err(format!(
                    "`problem.inject_failure.fraction` = {} is out of range (allowed: 0..=1)",
                    f.fraction
                ));
            }
        }
        if !(self.delay_s.is_finite() && self.delay_s >= 0.0) {
            return Err(format!(
                "`problem.delay_s` = {} is out of range (allowed: >= 0)",
                self.delay_s
            ));
        }
        Ok(base)
    }
}

/// The search space: a file, or hyperparameters written inline in
/// dsnn-search's TOML format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceSection {
    /// A space file (`.toml`, or `.json` in ConfigSpace's format), relative
    /// to the experiment file.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Inline hyperparameters.
    #[serde(default)]
    pub hyperparameters: Option<Vec<toml::Value>>,
    /// Inline conditions.
    #[serde(default)]
    pub conditions: Option<Vec<toml::Value>>,
    /// Inline forbidden clauses.
    #[serde(default)]
    pub forbidden: Option<Vec<toml::Value>>,
}

/// An objective the run minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectiveKind {
    /// 1 - top-1 accuracy on the validation split.
    Loss,
    /// Mean cross-entropy on the validation split.
    CrossEntropy,
    /// Energy of the validation (inference) pass, joules per image.
    Energy,
    /// Emissions of the validation pass, grams CO2e.
    Emissions,
    /// Energy of training, joules.
    TrainingEnergy,
    /// Size of the weights in bits (shift weights at their bit width).
    ModelSize,
    /// Seconds per image of the validation pass.
    Latency,
}

impl ObjectiveKind {
    /// The objective's name as written in files.
    pub fn name(self) -> &'static str {
        match self {
            ObjectiveKind::Loss => "loss",
            ObjectiveKind::CrossEntropy => "cross_entropy",
            ObjectiveKind::Energy => "energy",
            ObjectiveKind::Emissions => "emissions",
            ObjectiveKind::TrainingEnergy => "training_energy",
            ObjectiveKind::ModelSize => "model_size",
            ObjectiveKind::Latency => "latency",
        }
    }

    /// The unit the objective is reported in.
    pub fn unit(self) -> &'static str {
        match self {
            ObjectiveKind::Loss => "1 - accuracy",
            ObjectiveKind::CrossEntropy => "nats",
            ObjectiveKind::Energy => "J/image",
            ObjectiveKind::Emissions => "gCO2e",
            ObjectiveKind::TrainingEnergy => "J",
            ObjectiveKind::ModelSize => "bits",
            ObjectiveKind::Latency => "s/image",
        }
    }
}

/// How energy is measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergySection {
    /// The meter: `{ kind = "auto" | "rapl" | "nvml" | "estimator" | "opcount" }`
    /// with the kind's settings (see `docs/energy.md`).
    #[serde(default = "default_meter")]
    pub meter: MeterChoice,
    /// Where the electricity comes from (for emissions).
    #[serde(default = "default_grid", deserialize_with = "deserialize_grid")]
    pub grid: GridLocation,
    /// Power usage effectiveness of the facility (>= 1).
    #[serde(default = "default_pue")]
    pub pue: f64,
    /// How the validation (inference) pass runs: `simulated` (the trained
    /// network's float simulation of shifts, as the paper measured) or
    /// `integer` (dsnn-infer's shift-add engine, the arithmetic a shift
    /// network really needs).
    #[serde(default)]
    pub inference: InferenceEngine,
}

impl Default for EnergySection {
    fn default() -> Self {
        EnergySection {
            meter: default_meter(),
            grid: default_grid(),
            pue: default_pue(),
            inference: InferenceEngine::default(),
        }
    }
}

/// The engine of the validation pass (see [`EnergySection::inference`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InferenceEngine {
    /// The float-simulated network (as trained).
    #[default]
    Simulated,
    /// The exported integer shift-add model (Q and PS networks whose every
    /// layer shifts; others fall back to the simulation, recorded in the
    /// trial's `integer_inference` metric).
    Integer,
}

fn default_meter() -> MeterChoice {
    MeterChoice::Meter(MeterSpec::default())
}

fn default_grid() -> GridLocation {
    GridLocation::World
}

fn default_pue() -> f64 {
    1.0
}

/// A meter: one of dsnn-energy's, or the op-count model of the trained
/// network's shift and float operations, or a plugin.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MeterChoice {
    /// The deterministic op-count model (`kind = "opcount"`).
    OpCount(OpCountChoice),
    /// A meter plugin (`plugin = "NAME"`, the rest passed to it).
    Plugin(PluginChoice),
    /// A dsnn-energy meter.
    Meter(MeterSpec),
}

/// `{ kind = "opcount" }`: energy from the op profile (Horowitz 45 nm table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpCountChoice {
    /// Always `opcount`.
    pub kind: OpCountTag,
}

/// The tag of [`OpCountChoice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpCountTag {
    /// `opcount`.
    Opcount,
}

/// `{ plugin = "NAME", ... }`: a plugin and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginChoice {
    /// The plugin's name as `dsnn plugins` lists it.
    pub plugin: String,
    /// Everything else in the table, passed to the plugin as TOML.
    #[serde(flatten)]
    pub settings: toml::Table,
}

/// The optimizer: a built-in one (`kind`) or a plugin (`plugin`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OptimizerSection {
    /// A plugin.
    Plugin(PluginChoice),
    /// A built-in optimizer.
    BuiltIn(BuiltInOptimizer),
}

/// The dotted key inside the deserialised value that a `toml` error is
/// about, and its message. `toml` keeps the key path private and prints it
/// as an `in `key`` line, so it is read from there; an unknown field is
/// named by its message.
pub(crate) fn toml_error_key(e: &toml::de::Error) -> (Option<String>, String) {
    let message = e.message().trim().to_string();
    let shown = e.to_string();
    let key = shown
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("in `").and_then(|r| r.strip_suffix('`')))
        .map(str::to_string)
        .or_else(|| {
            message
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next())
                .map(str::to_string)
        });
    (key, message)
}

/// The dotted key of the only value in `t` that serde's "invalid type",
/// "invalid value" or "unknown variant" `message` describes (`string "4"`,
/// `integer `5``, ...).
fn key_with_unexpected_value(t: &toml::Table, message: &str) -> Option<String> {
    fn describe(v: &toml::Value) -> Option<String> {
        Some(match v {
            toml::Value::String(s) => format!("string {s:?}"),
            toml::Value::Integer(i) => format!("integer `{i}`"),
            toml::Value::Float(f) => format!("floating point `{f}`"),
            toml::Value::Boolean(b) => format!("boolean `{b}`"),
            _ => return None,
        })
    }
    fn walk(t: &toml::Table, shown: &str, prefix: &str, found: &mut Vec<String>) {
        for (k, v) in t {
            let key = format!("{prefix}{k}");
            match v {
                toml::Value::Table(inner) => walk(inner, shown, &format!("{key}."), found),
                _ if describe(v).as_deref() == Some(shown) => found.push(key),
                _ => {}
            }
        }
    }
    let shown = match message.strip_prefix("unknown variant `") {
        Some(rest) => format!("string {:?}", &rest[..rest.find('`')?]),
        None => {
            let rest = message
                .strip_prefix("invalid type: ")
                .or_else(|| message.strip_prefix("invalid value: "))?;
            rest[..rest.find(", expected")?].to_string()
        }
    };
    let shown = shown.as_str();
    let mut found = Vec::new();
    walk(t, shown, "", &mut found);
    (found.len() == 1).then(|| found.remove(0))
}

/// Reads `[executor]`. With `kind = "slurm"`, SLURM settings may be written
/// in the executor table itself (`executor = { kind = "slurm", partition =
/// "gpu" }`) as well as in `[executor.slurm]`; they are moved into the latter.
fn deserialize_executor<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<ExecutorSection, D::Error> {
    let mut t = toml::Table::deserialize(d)?;
    if t.get("kind").and_then(|k| k.as_str()) == Some("slurm") {
        let flat: Vec<String> = t
            .keys()
            .filter(|k| crate::slurm::SETTING_KEYS.contains(&k.as_str()))
            .cloned()
            .collect();
        if !flat.is_empty() {
            let mut nested = match t.remove("slurm") {
                Some(toml::Value::Table(n)) => n,
                Some(_) => {
                    return Err(serde::de::Error::custom(
                        "in `executor.slurm`: invalid type, expected a table",
                    ))
                }
                None => toml::Table::new(),
            };
            for k in flat {
                let v = t.remove(&k).expect("key listed above");
                if nested.contains_key(&k) {
                    return Err(serde::de::Error::custom(format!(
                        "in `executor.{k}`: `{k}` is given both in `executor` and in `[executor.slurm]`"
                    )));
                }
                nested.insert(k, v);
            }
            t.insert("slurm".into(), toml::Value::Table(nested));
        }
    }
    table_as("executor", t)
}

/// Reads `energy.grid`, refusing keys its `kind` does not take (serde's
/// `deny_unknown_fields` lets extra keys through on `kind = "world"`, a unit
/// variant of an internally tagged enum).
fn deserialize_grid<'de, D: serde::Deserializer<'de>>(d: D) -> Result<GridLocation, D::Error> {
    let t = toml::Table::deserialize(d)?;
    let allowed: &[&str] = match t.get("kind").and_then(|k| k.as_str()) {
        Some("world") => &["kind"],
        Some("country") => &["kind", "iso3"],
        Some("cloud") => &["kind", "provider", "region"],
        Some("fixed") => &["kind", "g_per_kwh"],
        _ => &[],
    };
    if !allowed.is_empty() {
        if let Some(k) = t.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(serde::de::Error::custom(format!(
                "in `energy.grid.{k}`: unknown field `{k}` for this `kind` (allowed: {})",
                allowed.join(", ")
            )));
        }
    }
    table_as("energy.grid", t)
}

/// Reads a table as `T`. Errors name the full dotted key (`in `key`: ...`),
/// which [`Experiment::from_str`] turns into the key's line and column.
fn table_as<T: serde::de::DeserializeOwned, E: serde::de::Error>(
    key: &str,
    t: toml::Table,
) -> Result<T, E> {
    toml::Value::Table(t.clone())
        .try_into()
        .map_err(|e: toml::de::Error| {
            let (sub, message) = toml_error_key(&e);
            // A value error carries no key here: find the one key whose value
            // is the one the message shows.
            let sub = sub.or_else(|| key_with_unexpected_value(&t, &message));
            let full = sub.map_or_else(|| key.to_string(), |s| format!("{key}.{s}"));
            E::custom(format!("in `{full}`: {message}"))
        })
}

impl<'de> Deserialize<'de> for OptimizerSection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = toml::Table::deserialize(d)?;
        if t.contains_key("plugin") {
            return table_as("optimizer", t).map(OptimizerSection::Plugin);
        }
        if !t.contains_key("kind") {
            return Err(serde::de::Error::custom(
                "`optimizer` needs `kind` (allowed: random, parego, tpe, nsga2) or `plugin = \"NAME\"`",
            ));
        }
        table_as("optimizer", t).map(OptimizerSection::BuiltIn)
    }
}

impl<'de> Deserialize<'de> for MeterChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = toml::Table::deserialize(d)?;
        if t.contains_key("plugin") {
            return table_as("energy.meter", t).map(MeterChoice::Plugin);
        }
        match t.get("kind").and_then(|k| k.as_str()) {
            Some("opcount") => table_as("energy.meter", t).map(MeterChoice::OpCount),
            Some("auto" | "rapl" | "nvml" | "estimator") => {
                table_as("energy.meter", t).map(MeterChoice::Meter)
            }
            Some(other) => Err(serde::de::Error::custom(format!(
                "`energy.meter.kind`: unknown meter `{other}` (allowed: auto, rapl, nvml, estimator, opcount, or `plugin = \"NAME\"`)"
            ))),
            None => Err(serde::de::Error::custom(
                "`energy.meter` needs `kind` (allowed: auto, rapl, nvml, estimator, opcount) or `plugin = \"NAME\"`",
            )),
        }
    }
}

impl Default for OptimizerSection {
    fn default() -> Self {
        OptimizerSection::BuiltIn(BuiltInOptimizer::Random)
    }
}

/// Built-in optimizers; with a Hyperband or successive-halving fidelity,
/// `random` and `parego` propose the new configurations of each bracket
/// (MO-Hyperband; "Hyperband + ParEGO" as in the paper).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BuiltInOptimizer {
    /// Uniform random samples.
    Random,
    /// ParEGO with a random-forest surrogate.
    Parego {
        /// Random configurations before the surrogate is used.
        #[serde(default)]
        n_initial: Option<usize>,
        /// Augmentation weight rho.
        #[serde(default)]
        rho: Option<f64>,
        /// Probability of a random proposal instead of a model-based one.
        #[serde(default)]
        random_fraction: Option<f64>,
    },
    /// Multi-objective TPE (`dsnn_search::TpeSettings`, every field optional).
    Tpe(dsnn_search::TpeSettings),
    /// NSGA-II (single fidelity: every trial at the largest budget).
    Nsga2 {
        /// Population size.
        #[serde(default)]
        population: Option<usize>,
        /// Offspring per generation.
        #[serde(default)]
        offspring: Option<usize>,
    },
}

/// The fidelity schedule; budgets are epochs or a fraction of the training
/// images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FidelitySection {
    /// `fixed`, `hyperband` or `successive_halving`.
    #[serde(default)]
    pub kind: FidelityKind,
    /// What a budget counts: `epochs` or `data_fraction`.
    #[serde(default)]
    pub unit: BudgetUnit,
    /// Smallest budget (Hyperband, successive halving).
    #[serde(default)]
    pub min: Option<f64>,
    /// Largest budget (the full fidelity).
    #[serde(default)]
    pub max: Option<f64>,
    /// Reduction factor (3 in the paper).
    #[serde(default = "default_eta")]
    pub eta: f64,
}

impl Default for FidelitySection {
    fn default() -> Self {
        FidelitySection {
            kind: FidelityKind::Fixed,
            unit: BudgetUnit::Epochs,
            min: None,
            max: None,
            eta: default_eta(),
        }
    }
}

fn default_eta() -> f64 {
    3.0
}

/// Which fidelity schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FidelityKind {
    /// Every trial at `max`.
    #[default]
    Fixed,
    /// Hyperband brackets from `min` to `max`.
    Hyperband,
    /// Hyperband's most aggressive bracket only.
    SuccessiveHalving,
}

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetUnit {
    /// Training epochs (rounded to the nearest whole epoch, at least 1).
    #[default]
    Epochs,
    /// Fraction of the training images used (for `model.epochs` epochs).
    DataFraction,
}

/// Where trials run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSection {
    /// `threads` (in this process), `processes` (one `dsnn trial` child per
    /// trial) or `slurm`.
    #[serde(default)]
    pub kind: ExecutorKind,
    /// Trials at once (threads, processes).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Wall-clock limit of one trial, seconds.
    #[serde(default)]
    pub trial_time_limit_s: Option<f64>,
    /// Address-space limit of one child process, e.g. `"4G"` (processes).
    #[serde(default)]
    pub memory_limit: Option<String>,
    /// The SLURM executor's settings (`kind = "slurm"`).
    #[serde(default)]
    pub slurm: Option<toml::Table>,
}

impl Default for ExecutorSection {
    fn default() -> Self {
        ExecutorSection {
            kind: ExecutorKind::Threads,
            workers: default_workers(),
            trial_time_limit_s: None,
            memory_limit: None,
            slurm: None,
        }
    }
}

fn default_workers() -> usize {
    1
}

/// Which executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    /// Worker threads in the `dsnn run` process.
    #[default]
    Threads,
    /// One `dsnn trial` child process per trial.
    Processes,
    /// One SLURM job per trial.
    Slurm,
}

/// When the run stops: after `trials` trials, after `wall_time_s` seconds, or
/// whichever comes first.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopSection {
    /// Trials to finish (the default configuration's trial not counted).
    #[serde(default)]
    pub trials: Option<u64>,
    /// Wall-clock seconds, summed over resumed sessions.
    #[serde(default)]
    pub wall_time_s: Option<f64>,
}

/// Parses a memory size such as `512M`, `4G`, `1.5GiB` or a byte count.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a memory size (e.g. 512M, 4G)"))?;
    let scale = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1u64,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return Err(format!("`{text}`: unknown unit (allowed: K, M, G, T)")),
    };
    let bytes = value * scale as f64;
    if bytes < (16 << 20) as f64 {
        return Err(format!("`{text}` is too small (at least 16M)"));
    }
    Ok(bytes as u64)
}

/// A checked experiment: the file's contents plus everything derived from it
/// (absolute paths, the search space).
#[derive(Clone)]
pub struct CheckedExperiment {
    /// The experiment, with paths made absolute and the space written inline.
    pub experiment: Experiment,
    /// The search space.
    pub space: Arc<ConfigurationSpace>,
    /// The directory of the experiment file (where `./plugins` is looked for).
    pub base_dir: PathBuf,
}

impl std::fmt::Debug for CheckedExperiment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedExperiment")
            .field("experiment", &self.experiment)
            .finish()
    }
}

impl CheckedExperiment {
    /// Reads and checks an experiment file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            location: String::new(),
            message: format!("cannot read the experiment file: {e}"),
        })?;
        let base = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                }
            })
            .unwrap_or_else(|| PathBuf::from("."));
        Self::from_str(&text, &path.display().to_string(), &base)
    }

    /// Parses and checks experiment text; relative paths are resolved
    /// against `base_dir`, and errors say they are in `file`.
    pub fn from_str(text: &str, file: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let src = Source {
            file: file.to_string(),
            text,
        };
        let mut exp: Experiment = toml::from_str(text).map_err(|e| {
            let location = e.span().map(|s| src.location(s.start)).unwrap_or_default();
            let message = e.message().trim().to_string();
            // A nested table read by `table_as` names its own key: point at it.
            if let Some((key, rest)) = message
                .strip_prefix("in `")
                .and_then(|r| r.split_once("`: "))
            {
                let location = src
                    .span_of(key)
                    .map(|s| src.location(s.start))
                    .unwrap_or(location);
                return ConfigError {
                    file: file.to_string(),
                    location,
                    message: format!("`{key}`: {rest}"),
                };
            }
            // Name the key whose value is wrong (unknown keys name themselves).
            let key = e
                .span()
                .filter(|_| !message.starts_with("unknown field"))
                .and_then(|s| src.key_at(s.start));
            ConfigError {
                file: file.to_string(),
                location,
                message: match key {
                    Some(k) if !k.is_empty() => format!("`{k}`: {message}"),
                    _ => message,
                },
            }
        })?;
        let base_dir = std::path::absolute(base_dir).unwrap_or_else(|_| base_dir.to_path_buf());
        check_experiment(&mut exp, &src, &base_dir)?;
        let space = load_space(&mut exp, &src, &base_dir)?;
        check_space_against_objective(&exp, &space, &src)?;
        Ok(CheckedExperiment {
            experiment: exp,
            space: Arc::new(space),
            base_dir,
        })
    }

    /// The run directory.
    pub fn run_dir(&self) -> PathBuf {
        self.experiment.output_dir.join(&self.experiment.name)
    }

    /// The largest budget (the full fidelity).
    pub fn max_budget(&self) -> f64 {
        let f = &self.experiment.fidelity;
        f.max.unwrap_or(match f.unit {
            BudgetUnit::Epochs => self
                .experiment
                .model
                .as_ref()
                .map_or(1.0, |m| m.epochs as f64),
            BudgetUnit::DataFraction => 1.0,
        })
    }

    /// The experiment in resolved form, as the run directory stores it.
    pub fn resolved_toml(&self) -> String {
        toml::to_string_pretty(&self.experiment).unwrap_or_else(|e| format!("# unprintable: {e}"))
    }
}

fn check_experiment(exp: &mut Experiment, src: &Source, base: &Path) -> Result<(), ConfigError> {
    let err = |key: &str, msg: String| src.error_at(key, msg);
    if exp.name.is_empty()
        || !exp
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || exp.name.starts_with('.')
    {
        return Err(err(
            "name",
            format!(
                "`name` = {:?} is not a valid run name (allowed: letters, digits, `-`, `_`, `.`; not starting with `.`)",
                exp.name
            ),
        ));
    }
    match (&exp.data, &exp.problem) {
        (None, None) => {
            return Err(err(
                "name",
                "the experiment needs a `[data]` table (a DSNN search) or a `[problem]` table (a test problem)".into(),
            ))
        }
        (Some(_), Some(_)) => {
            return Err(err(
                "problem",
                "`[data]` and `[problem]` exclude each other: a run searches DSNNs or a test problem, not both".into(),
            ))
        }
        _ => {}
    }
    if let Some(p) = &exp.problem {
        p.problem().map_err(|m| err(&key_in(&m, "problem"), m))?;
        if exp.model.is_some() {
            return Err(err(
                "model",
                "`[model]` applies to DSNN searches only, not to `[problem]`".into(),
            ));
        }
        // A test problem's objectives are its own.
        exp.objectives.clear();
    }
    if let Some(d) = &mut exp.data {
        if !(d.validation_fraction > 0.0 && d.validation_fraction < 1.0) {
            return Err(err(
                "data.validation_fraction",
                format!(
                    "`data.validation_fraction` = {} is out of range (allowed: strictly between 0 and 1)",
                    d.validation_fraction
                ),
            ));
        }
        if d.train_limit == Some(0) {
            return Err(err(
                "data.train_limit",
                "`data.train_limit` = 0 is out of range (allowed: at least 1)".into(),
            ));
        }
        let path = match &d.path {
            Some(p) => base.join(p),
            None => bundled_data_dir(d.dataset).ok_or_else(|| {
                err(
                    "data.dataset",
                    format!(
                        "no bundled copy of {}: set `data.path` to the directory with its files",
                        d.dataset
                    ),
                )
            })?,
        };
        if !path.is_dir() {
            return Err(err(
                "data.path",
                format!("`data.path`: {} is not a directory", path.display()),
            ));
        }
        d.path = Some(path);
        let model = exp.model.get_or_insert_with(ModelSection::default);
        if model.backbone.is_none() {
            model.backbone = Some(default_backbone(d.dataset).to_string());
        }
        model.validate().map_err(|m| {
            let key = m
                .split('`')
                .nth(1)
                .map(|k| format!("model.{k}"))
                .unwrap_or_else(|| "model".into());
            err(&key, format!("in `[model]`: {m}"))
        })?;
        if exp.objectives.is_empty() {
            return Err(err(
                "objectives",
                "`objectives` is empty (allowed: loss, cross_entropy, energy, emissions, training_energy, model_size, latency)".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for o in &exp.objectives {
            if !seen.insert(*o) {
                return Err(err(
                    "objectives",
                    format!("objective `{}` is listed twice", o.name()),
                ));
            }
        }
    }
    if !(exp.energy.pue.is_finite() && exp.energy.pue >= 1.0) {
        return Err(err(
            "energy.pue",
            format!(
                "`energy.pue` = {} is out of range (allowed: >= 1)",
                exp.energy.pue
            ),
        ));
    }
    // Every grid location resolves now, not in the first trial.
    let tables =
        dsnn_energy::CarbonTables::embedded().map_err(|e| err("energy.grid", e.to_string()))?;
    if let Err(e) = tables.intensity(&exp.energy.grid) {
        let (key, what) = match &exp.energy.grid {
            GridLocation::Country { iso3 } => ("energy.grid.iso3", format!("{iso3:?}")),
            GridLocation::Cloud { provider, region } => {
                ("energy.grid.region", format!("{provider:?} / {region:?}"))
            }
            GridLocation::Fixed { g_per_kwh } => ("energy.grid.g_per_kwh", g_per_kwh.to_string()),
            GridLocation::World => ("energy.grid", "world".into()),
        };
        return Err(err(key, format!("`{key}` = {what}: {e}")));
    }
    if let MeterChoice::Meter(spec) = &exp.energy.meter {
        spec.validate().map_err(|(option, e)| {
            let key = format!("energy.meter.{option}");
            err(&key, format!("`{key}`: {e}"))
        })?;
    }
    let f = &exp.fidelity;
    if !(f.eta.is_finite() && f.eta > 1.0) {
        return Err(err(
            "fidelity.eta",
            format!("`fidelity.eta` = {} is out of range (allowed: > 1)", f.eta),
        ));
    }
    for (key, v) in [("fidelity.min", f.min), ("fidelity.max", f.max)] {
        if let Some(v) = v {
            let ok = match f.unit {
                BudgetUnit::Epochs => v.is_finite() && v >= 1.0,
                BudgetUnit::DataFraction => v > 0.0 && v <= 1.0,
            };
            if !ok {
                let allowed = match f.unit {
                    BudgetUnit::Epochs => ">= 1 epoch",
                    BudgetUnit::DataFraction => "a fraction in (0, 1]",
                };
                return Err(err(
                    key,
                    format!("`{key}` = {v} is out of range (allowed: {allowed})"),
                ));
            }
        }
    }
    match f.kind {
        FidelityKind::Fixed => {
            if f.min.is_some() {
                return Err(err(
                    "fidelity.min",
                    "`fidelity.min` applies to `hyperband` and `successive_halving` only; a `fixed` fidelity runs every trial at `fidelity.max`".into(),
                ));
            }
        }
        FidelityKind::Hyperband | FidelityKind::SuccessiveHalving => {
            let (Some(lo), Some(hi)) = (f.min, f.max) else {
                return Err(err(
                    "fidelity",
                    "`fidelity.min` and `fidelity.max` are required for `hyperband` and `successive_halving`".into(),
                ));
            };
            if lo >= hi {
                return Err(err(
                    "fidelity.min",
                    format!("`fidelity.min` = {lo} must be smaller than `fidelity.max` = {hi}"),
                ));
            }
            if let OptimizerSection::BuiltIn(BuiltInOptimizer::Nsga2 { .. }) = exp.optimizer {
                return Err(err(
                    "optimizer",
                    "NSGA-II runs at one budget: use `fidelity.kind = \"fixed\"`, or `random` / `parego` with Hyperband".into(),
                ));
            }
            if let OptimizerSection::Plugin(_) = exp.optimizer {
                return Err(err(
                    "fidelity.kind",
                    "plugin optimizers choose their own budgets: use `fidelity.kind = \"fixed\"` with a plugin".into(),
                ));
            }
        }
    }
    if f.unit == BudgetUnit::DataFraction && exp.problem.is_some() {
        return Err(err(
            "fidelity.unit",
            "`data_fraction` budgets apply to DSNN searches only".into(),
        ));
    }
    match &exp.optimizer {
        OptimizerSection::BuiltIn(BuiltInOptimizer::Parego {
            rho,
            random_fraction,
            ..
        }) => {
            if rho.is_some_and(|r| !(r.is_finite() && r >= 0.0)) {
                return Err(err(
                    "optimizer.rho",
                    "`optimizer.rho` is out of range (allowed: >= 0)".into(),
                ));
            }
            if random_fraction.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
                return Err(err(
                    "optimizer.random_fraction",
                    "`optimizer.random_fraction` is out of range (allowed: 0..=1)".into(),
                ));
            }
        }
        OptimizerSection::BuiltIn(BuiltInOptimizer::Tpe(settings)) => {
            settings
                .validate()
                .map_err(|e| err("optimizer", format!("`optimizer`: {e}")))?;
        }
        OptimizerSection::BuiltIn(BuiltInOptimizer::Nsga2 {
            population,
            offspring,
        }) => {
            if population.is_some_and(|p| p < 2) {
                return Err(err(
                    "optimizer.population",
                    "`optimizer.population` is out of range (allowed: >= 2)".into(),
                ));
            }
            if offspring.is_some_and(|p| p < 1) {
                return Err(err(
                    "optimizer.offspring",
                    "`optimizer.offspring` is out of range (allowed: >= 1)".into(),
                ));
            }
        }
        OptimizerSection::Plugin(p) if p.plugin.is_empty() => {
            return Err(err(
                "optimizer.plugin",
                "`optimizer.plugin` is empty (name a plugin that `dsnn plugins` lists)".into(),
            ))
        }
        _ => {}
    }
    let x = &exp.executor;
    if x.workers == 0 || x.workers > 1024 {
        return Err(err(
            "executor.workers",
            format!(
                "`executor.workers` = {} is out of range (allowed: 1..=1024)",
                x.workers
            ),
        ));
    }
    if let Some(t) = x.trial_time_limit_s {
        if !(t.is_finite() && t > 0.0) {
            return Err(err(
                "executor.trial_time_limit_s",
                format!("`executor.trial_time_limit_s` = {t} is out of range (allowed: > 0)"),
            ));
        }
    }
    if let Some(m) = &x.memory_limit {
        if x.kind != ExecutorKind::Processes {
            return Err(err(
                "executor.memory_limit",
                "`executor.memory_limit` needs `kind = \"processes\"` (threads share one process; SLURM jobs take `executor.slurm.mem`)".into(),
            ));
        }
        parse_memory(m).map_err(|e| {
            err(
                "executor.memory_limit",
                format!("`executor.memory_limit`: {e}"),
            )
        })?;
    }
    if x.kind == ExecutorKind::Slurm {
        let table = x.slurm.clone().unwrap_or_default();
        crate::slurm::SlurmSettings::from_toml(&table).map_err(|e| {
            let m = e.to_string();
            let key = m
                .strip_prefix("executor.slurm.")
                .and_then(|r| r.split(':').next())
                .map(|k| format!("executor.slurm.{k}"))
                .unwrap_or_else(|| "executor.slurm".into());
            err(&key, m)
        })?;
    }
    if x.slurm.is_some() && x.kind != ExecutorKind::Slurm {
        return Err(err(
            "executor.slurm",
            "`[executor.slurm]` needs `executor.kind = \"slurm\"`".into(),
        ));
    }
    let s = &exp.stop;
    if s.trials.is_none() && s.wall_time_s.is_none() {
        return Err(err(
            "stop",
            "the run needs a stopping rule: `stop.trials`, `stop.wall_time_s` or both".into(),
        ));
    }
    if s.trials == Some(0) {
        return Err(err(
            "stop.trials",
            "`stop.trials` = 0 is out of range (allowed: >= 1)".into(),
        ));
    }
    if let Some(t) = s.wall_time_s {
        if !(t.is_finite() && t > 0.0) {
            return Err(err(
                "stop.wall_time_s",
                format!("`stop.wall_time_s` = {t} is out of range (allowed: > 0)"),
            ));
        }
    }
    if exp.output_dir.is_relative() {
        exp.output_dir = std::env::current_dir()
            .map(|d| d.join(&exp.output_dir))
            .unwrap_or_else(|_| exp.output_dir.clone());
    }
    exp.plugin_dirs = exp.plugin_dirs.iter().map(|d| base.join(d)).collect();
    // `./plugins` next to the experiment file, written out so that trials
    // started from the resolved copy in the run directory find it too.
    let local = base.join("plugins");
    if local.is_dir() && !exp.plugin_dirs.contains(&local) {
        exp.plugin_dirs.insert(0, local);
    }
    Ok(())
}

fn load_space(
    exp: &mut Experiment,
    src: &Source,
    base: &Path,
) -> Result<ConfigurationSpace, ConfigError> {
    let err = |key: &str, msg: String| src.error_at(key, msg);
    if let Some(p) = &exp.problem {
        if exp.space.is_some() {
            return Err(err(
                "space",
                "a `[problem]` brings its own search space; remove `[space]`".into(),
            ));
        }
        return p
            .problem()
            .map(|pr| pr.space())
            .map_err(|m| err("problem", m));
    }
    let Some(section) = exp.space.clone() else {
        return Err(err(
            "space",
            "the experiment needs a `[space]`: `file = \"space.toml\"` or inline `[[space.hyperparameters]]`".into(),
        ));
    };
    let inline = section.hyperparameters.is_some()
        || section.conditions.is_some()
        || section.forbidden.is_some();
    let space = match (&section.file, inline) {
        (Some(_), true) => {
            return Err(err(
                "space.file",
                "give the space either as `space.file` or inline, not both".into(),
            ))
        }
        (None, false) => return Err(err(
            "space",
            "`[space]` is empty: set `file = \"space.toml\"` or add `[[space.hyperparameters]]`"
                .into(),
        )),
        (Some(file), false) => {
            let path = base.join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                err(
                    "space.file",
                    format!("cannot read the space file {}: {e}", path.display()),
                )
            })?;
            let parsed = if path.extension().is_some_and(|e| e == "json") {
                ConfigurationSpace::from_configspace_json(&text)
            } else {
                ConfigurationSpace::from_toml_str(&text)
            };
            parsed.map_err(|e| err("space.file", format!("in {}: {e}", path.display())))?
        }
        (None, true) => {
            let mut table = toml::Table::new();
            if let Some(h) = &section.hyperparameters {
                table.insert("hyperparameters".into(), toml::Value::Array(h.clone()));
            }
            if let Some(c) = &section.conditions {
                table.insert("conditions".into(), toml::Value::Array(c.clone()));
            }
            if let Some(f) = &section.forbidden {
                table.insert("forbidden".into(), toml::Value::Array(f.clone()));
            }
            let text = toml::to_string(&table).map_err(|e| err("space", e.to_string()))?;
            ConfigurationSpace::from_toml_str(&text).map_err(|e| {
                let key = space_error_key(&e, &section).unwrap_or_else(|| "space".into());
                err(&key, format!("in `[space]`: {e}"))
            })?
        }
    };
    // Store the space inline so the resolved experiment is self-contained.
    let text = space
        .to_toml_string()
        .map_err(|e| err("space", e.to_string()))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| err("space", e.to_string()))?;
    let arr = |k: &str| match table.get(k) {
        Some(toml::Value::Array(a)) if !a.is_empty() => Some(a.clone()),
        _ => None,
    };
    exp.space = Some(SpaceSection {
        file: None,
        hyperparameters: arr("hyperparameters"),
        conditions: arr("conditions"),
        forbidden: arr("forbidden"),
    });
    Ok(space)
}

/// The dotted key of the inline hyperparameter an error names, if any.
fn space_error_key(e: &dsnn_search::SpaceError, section: &SpaceSection) -> Option<String> {
    let msg = e.to_string();
    let hps = section.hyperparameters.as_ref()?;
    hps.iter().enumerate().find_map(|(i, h)| {
        let name = h.get("name")?.as_str()?;
        (msg.contains(&format!("`{name}`")) || msg.contains(&format!("'{name}'")))
            .then(|| format!("space.hyperparameters.{i}"))
    })
}

fn check_space_against_objective(
    exp: &Experiment,
    space: &ConfigurationSpace,
    src: &Source,
) -> Result<(), ConfigError> {
    if exp.problem.is_some() {
        return Ok(());
    }
    let model = exp.model.clone().unwrap_or_default();
    for (i, hp) in space.hyperparameters().iter().enumerate() {
        let name = hp.name();
        let key = format!("space.hyperparameters.{i}");
        if !DSNN_HYPERPARAMETERS.contains(&name) {
            return Err(src.error_at(
                &key,
                format!(
                    "the DSNN objective has no hyperparameter `{name}` (allowed: {})",
                    DSNN_HYPERPARAMETERS.join(", ")
                ),
            ));
        }
        if name == "epochs" && exp.fidelity.unit == BudgetUnit::Epochs {
            return Err(src.error_at(
                &key,
                "`epochs` cannot be searched when the budget is in epochs (the budget decides the epochs); remove it or set `fidelity.unit = \"data_fraction\"`".into(),
            ));
        }
    }
    // The default configuration must be a valid DSNN.
    let default = space.default_configuration();
    model
        .with_config(&default)
        .map_err(|m| src.error_at("space", format!("the space's default configuration: {m}")))?;
    Ok(())
}

/// The first backticked dotted key in `message` (`problem.name`), else `default`.
fn key_in(message: &str, default: &str) -> String {
    message
        .split('`')
        .skip(1)
        .step_by(2)
        .find(|k| k.contains('.'))
        .unwrap_or(default)
        .to_string()
}

/// The directory of the bundled copy of a data set, if dsnn ships one.
pub fn bundled_data_dir(dataset: DatasetName) -> Option<PathBuf> {
    let name = match dataset {
        DatasetName::FashionMnist => "fashion-mnist-small",
        DatasetName::Digits => "digits",
        _ => return None,
    };
    Some(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("data")
            .join(name),
    )
}

/// The backbone used for a data set when the experiment names none.
pub fn default_backbone(dataset: DatasetName) -> &'static str {
    match dataset {
        DatasetName::Mnist | DatasetName::FashionMnist => "lenet5",
        DatasetName::Cifar10 => "resnet20",
        DatasetName::Digits => "digits_cnn",
    }
}

/// Names of the objectives of a checked experiment, in order.
pub fn objective_names(exp: &CheckedExperiment) -> Vec<String> {
    experiment_objective_names(&exp.experiment)
}

/// Names of the objectives of an experiment (checked or not), in order.
pub fn experiment_objective_names(exp: &Experiment) -> Vec<String> {
    match &exp.problem {
        Some(p) => {
            let m = p.problem().map(|pr| pr.n_obj()).unwrap_or(2);
            (1..=m).map(|i| format!("f{i}")).collect()
        }
        None => exp
            .objectives
            .iter()
            .map(|o| o.name().to_string())
            .collect(),
    }
}

/// A summary of settings for the start-of-run banner.
pub fn describe(exp: &CheckedExperiment) -> BTreeMap<&'static str, String> {
    let e = &exp.experiment;
    let mut m = BTreeMap::new();
    m.insert(
        "target",
        match (&e.data, &e.problem) {
            (Some(d), _) => format!(
                "{} on {}",
                e.model
                    .as_ref()
                    .and_then(|m| m.backbone.clone())
                    .unwrap_or_default(),
                d.dataset
            ),
            (_, Some(p)) => format!("test problem {}", p.name),
            _ => String::new(),
        },
    );
    m.insert("objectives", objective_names(exp).join(", "));
    m.insert(
        "hyperparameters",
        exp.space.hyperparameters().len().to_string(),
    );
    m
}
