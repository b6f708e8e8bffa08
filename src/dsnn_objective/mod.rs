//! The DSNN objective: train a Deep Shift network with the trial's
//! configuration for its budget, evaluate it on the validation split, and
//! measure the energy of that validation (inference) pass.
//!
//! It reads `[data]` (a registered data set), `[model]` (a registered
//! backbone, the values of hyperparameters that are not searched, and the
//! backbone's architecture hyperparameters), `[energy] inference` and
//! `[fidelity] unit`. Research objectives that train DSNNs too can build
//! one with [`DsnnObjective::from_setup`] and add their own metrics
//! ([`DsnnObjective::train_and_measure`]).

mod evaluate;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use candle_core::Device;
use dsnn_core::data::{Augment, Batcher, Dataset, Normalization};
use dsnn_core::recipe::{resolve_arch, ArchValues, Recipe, RecipeError, Setting};
use dsnn_core::Backbone;
use dsnn_search::{Configuration, SearchSpace, Value};
use serde::Deserialize;

use crate::objective::{EvalError, MetricInfo, Metrics, Objective, SpaceIssue, TrialContext};
use crate::registry::{DatasetFactory, ObjectiveBuild, ObjectiveFactory, ObjectiveSetup, Registry};
use crate::settings::{backticked, ConfigError, Section};

pub use evaluate::{evaluate_integer, TrainedTrial};

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetUnit {
    /// Training epochs (rounded to the nearest whole epoch, at least 1).
    #[default]
    Epochs,
    /// Fraction of the training images used (for `model.epochs` epochs).
    DataFraction,
}

/// How the validation (inference) pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InferenceEngine {
    /// The float-simulated network (as trained, as the paper measured).
    #[default]
    Simulated,
    /// dsnn-infer's integer shift-add engine, for networks it can export
    /// (others fall back to the simulation, recorded in the trial's
    /// `integer_inference` metric).
    Integer,
}

/// The common keys of `[data]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataCommon {
    dataset: String,
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default = "default_validation_fraction")]
    validation_fraction: f64,
    #[serde(default)]
    train_limit: Option<usize>,
}

fn default_validation_fraction() -> f64 {
    0.1
}

const DATA_KEYS: &[&str] = &[
    "dataset",
    "path",
    "validation_fraction",
    "train_limit",
    "augment",
    "mean",
    "std",
];

/// The keys of `[data]` every data set takes, besides the data set's own.
pub const COMMON_DATA_KEYS: &[&str] = DATA_KEYS;

/// `[data] augment = { crop_padding = 4, flip = true }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AugmentTable {
    #[serde(default)]
    crop_padding: usize,
    #[serde(default)]
    flip: bool,
}

/// Largest `augment.crop_padding` (a larger one is a typo: the crops would
/// be mostly padding).
const MAX_CROP_PADDING: usize = 256;

/// The settings of `[data]` that apply to every data set and change how
/// images are fed rather than which: augmentation and normalisation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataTransforms {
    /// Training augmentation; `None`: the data set's default.
    pub augment: Option<Augment>,
    /// Per-channel normalisation; `None`: computed on the training split.
    pub normalization: Option<Normalization>,
}

impl DataTransforms {
    /// Reads `augment`, `mean` and `std` of a `[data]` section (located
    /// errors). `augment = false` turns augmentation off; a table sets it.
    pub fn read(data: &Section) -> Result<Self, ConfigError> {
        let augment = match data.get("augment") {
            None => None,
            Some(a) if a.value().as_bool() == Some(false) => Some(Augment::default()),
            Some(a) if a.value().is_table() => {
                let t: AugmentTable = a.parse()?;
                if t.crop_padding > MAX_CROP_PADDING {
                    return Err(a.out_of_range(
                        "crop_padding",
                        t.crop_padding,
                        format!("0..={MAX_CROP_PADDING}"),
                    ));
                }
                Some(Augment {
                    crop_padding: t.crop_padding,
                    horizontal_flip: t.flip,
                })
            }
            Some(a) => {
                return Err(a.error(
                    "",
                    format!(
                        "`{}` = {}: expected a table such as `{{ crop_padding = 4, flip = true }}`, or `false` for none",
                        a.key(),
                        a.value()
                    ),
                ))
            }
        };
        let channel_values = |key: &str| -> Result<Option<Vec<f32>>, ConfigError> {
            let Some(v) = data.get(key) else {
                return Ok(None);
            };
            let values: Vec<f64> = v.parse()?;
            if !matches!(values.len(), 1 | 3) || values.iter().any(|x| !x.is_finite()) {
                return Err(v.error(
                    "",
                    format!(
                        "`{}`: expected one finite number per channel (1 or 3 of them)",
                        v.key()
                    ),
                ));
            }
            if key == "std" && values.iter().any(|&x| x <= 0.0) {
                return Err(v.error(
                    "",
                    format!("`{}`: standard deviations must be above 0", v.key()),
                ));
            }
            Ok(Some(values.into_iter().map(|x| x as f32).collect()))
        };
        let normalization = match (channel_values("mean")?, channel_values("std")?) {
            (None, None) => None,
            (Some(mean), Some(std)) if mean.len() == std.len() => {
                Some(Normalization { mean, std })
            }
            (Some(_), Some(_)) => {
                return Err(data.error(
                    "std",
                    "`data.mean` and `data.std` need one value per channel each (as many of one as of the other)",
                ))
            }
            (Some(_), None) => {
                return Err(data.error("mean", "`data.mean` needs `data.std` beside it"))
            }
            (None, Some(_)) => {
                return Err(data.error("std", "`data.std` needs `data.mean` beside it"))
            }
        };
        Ok(DataTransforms {
            augment,
            normalization,
        })
    }

    /// The batcher for a training split: the given normalisation (checked
    /// against the images' channels) or the split's own statistics, and
    /// the given augmentation or `default_augment`.
    pub fn batcher(&self, train: &Dataset, default_augment: Augment) -> Result<Batcher, String> {
        let normalization = match &self.normalization {
            None => train.channel_stats(),
            Some(n) if n.mean.len() == train.shape.channels => n.clone(),
            Some(n) => {
                return Err(format!(
                    "`data.mean` and `data.std` give {} values but the images have {} channel(s)",
                    n.mean.len(),
                    train.shape.channels
                ))
            }
        };
        Ok(Batcher {
            normalization,
            augment: self.augment.unwrap_or(default_augment),
        })
    }
}

/// The keys of `[model]` besides the recipe and the backbone's own.
const MODEL_KEYS: &[&str] = &["backbone", "device", "save_weights"];

/// The data of a DSNN experiment.
#[derive(Clone)]
pub struct DataSpec {
    /// The data set's registered name.
    pub name: String,
    /// Its loader.
    pub factory: Arc<dyn DatasetFactory>,
    /// Its directory.
    pub dir: PathBuf,
    /// Its own settings (`[data]` besides the common keys).
    pub settings: Section,
    /// Fraction of the training images held out for validation.
    pub validation_fraction: f64,
    /// At most this many training images (before the split).
    pub train_limit: Option<usize>,
    /// Augmentation and normalisation given in `[data]`.
    pub transforms: DataTransforms,
}

/// The data of a process's trials, loaded once and shared.
pub struct TrialData {
    /// The training split (after `train_limit`).
    pub train: Dataset,
    /// The validation split the objectives are measured on.
    pub validation: Dataset,
    /// Normalisation (from the training split) and augmentation.
    pub batcher: Batcher,
}

/// The DSNN objective (see the module documentation).
pub struct DsnnObjective {
    /// The data.
    pub data: DataSpec,
    /// The backbone's registered name.
    pub backbone_name: String,
    /// The backbone.
    pub backbone: Arc<dyn Backbone>,
    /// Values of the hyperparameters a configuration does not set.
    pub recipe: Recipe,
    /// Architecture values a configuration does not set.
    pub arch: ArchValues,
    /// Where trials train (`auto`, `cpu`, `cuda[:N]`).
    pub device: String,
    /// What a budget counts.
    pub unit: BudgetUnit,
    /// How the validation pass runs.
    pub inference: InferenceEngine,
    /// Keep every trial's trained weights in the run directory
    /// (`weights/<trial>.safetensors`, `[model] save_weights = true`), for
    /// `export` and `infer` of the front's networks.
    pub save_weights: bool,
    /// The run's seed (splits, initial weights).
    pub seed: u64,
    loaded: OnceLock<Result<Arc<TrialData>, String>>,
    device_cache: OnceLock<Result<Device, String>>,
}

/// The metrics a DSNN trial reports, all of which can be objectives.
pub const DSNN_OBJECTIVES: &[(&str, &str, bool)] = &[
    ("loss", "1 - accuracy", false),
    ("cross_entropy", "nats", false),
    ("energy", "J/image", true),
    ("emissions", "gCO2e", true),
    ("training_energy", "J", true),
    ("model_size", "bits", false),
    ("latency", "s/image", true),
];

impl DsnnObjective {
    /// Reads `[data]`, `[model]`, `[energy] inference` and `[fidelity]
    /// unit` of an experiment file (located errors).
    pub fn from_setup(setup: &ObjectiveSetup) -> Result<Self, ConfigError> {
        let reg = setup.registry;
        let data = setup.section("data");
        if !setup.has("data") {
            return Err(setup.source.error(
                "",
                "the DSNN objective needs a `[data]` table (`dataset = \"fashion-mnist\"`, ...)",
            ));
        }
        let common: DataCommon = data
            .only(&["dataset", "path", "validation_fraction", "train_limit"])
            .parse()?;
        let transforms = DataTransforms::read(&data)?;
        let factory = reg
            .dataset(&common.dataset)
            .map_err(|e| data.error("dataset", format!("`data.dataset`: {e}")))?;
        factory.check(&data.without(DATA_KEYS))?;
        if !(common.validation_fraction > 0.0 && common.validation_fraction < 1.0) {
            return Err(data.out_of_range(
                "validation_fraction",
                common.validation_fraction,
                "strictly between 0 and 1",
            ));
        }
        if common.train_limit == Some(0) {
            return Err(data.out_of_range("train_limit", 0, "at least 1"));
        }
        let dir = match &common.path {
            Some(p) => setup.base_dir.join(p),
            None => factory.bundled_dir().ok_or_else(|| {
                data.error(
                    "dataset",
                    format!(
                        "no bundled copy of {}: set `data.path` to the directory with its files",
                        common.dataset
                    ),
                )
            })?,
        };
        if !dir.is_dir() {
            return Err(data.error(
                "path",
                format!("`data.path`: {} is not a directory", dir.display()),
            ));
        }
        factory
            .check_files(&dir, &data.without(DATA_KEYS))
            .map_err(|e| {
                let at = if common.path.is_some() {
                    "path"
                } else {
                    "dataset"
                };
                data.error(at, format!("`data.path`: {e}"))
            })?;
        let model = setup.section("model");
        let backbone_name = match model.value().get("backbone").and_then(|v| v.as_str()) {
            Some(b) => b.to_string(),
            None => factory.default_backbone().ok_or_else(|| {
                model.error(
                    "",
                    format!(
                        "data set `{}` has no default backbone: set `[model] backbone` (allowed: {})",
                        common.dataset,
                        backticked(reg.names(crate::registry::Kind::Backbone))
                    ),
                )
            })?,
        };
        let backbone = reg
            .backbone(&backbone_name)
            .map_err(|e| model.error("backbone", format!("`model.backbone`: {e}")))?;
        let (recipe, device, arch) = read_model(&model, backbone.as_ref())?;
        let save_weights = match model.get("save_weights") {
            Some(s) => s.parse::<bool>()?,
            None => false,
        };
        let energy = setup.section("energy");
        let inference: InferenceEngine = match energy.get("inference") {
            Some(s) => s.parse()?,
            None => InferenceEngine::default(),
        };
        let fidelity = setup.section("fidelity");
        let unit: BudgetUnit = match fidelity.get("unit") {
            Some(s) => s.parse()?,
            None => BudgetUnit::default(),
        };
        Ok(DsnnObjective {
            data: DataSpec {
                name: common.dataset,
                factory,
                dir,
                settings: data.without(DATA_KEYS),
                validation_fraction: common.validation_fraction,
                train_limit: common.train_limit,
                transforms,
            },
            backbone_name,
            backbone,
            recipe,
            arch,
            device,
            unit,
            inference,
            save_weights,
            seed: setup.seed,
            loaded: OnceLock::new(),
            device_cache: OnceLock::new(),
        })
    }

    /// The recipe and architecture values of `config` applied to the
    /// defaults, checked.
    pub fn apply(&self, config: &Configuration) -> Result<(Recipe, ArchValues), RecipeError> {
        let mut recipe = self.recipe.clone();
        let mut arch = self.arch.clone();
        let declared = self.backbone.hyperparameters();
        for (name, value) in config.iter() {
            let v = setting(value);
            if declared.iter().any(|p| &p.name == name) {
                arch.insert(name.clone(), v);
            } else {
                recipe.set(name, &v).map_err(|e| match e {
                    RecipeError::Unknown {
                        name, mut allowed, ..
                    } => {
                        allowed.extend(declared.iter().map(|p| p.name.clone()));
                        RecipeError::Unknown {
                            name,
                            allowed,
                            backbone: None,
                        }
                    }
                    other => other,
                })?;
            }
        }
        recipe.validate()?;
        let arch = resolve_arch(self.backbone.as_ref(), &arch)?;
        Ok((recipe, arch))
    }

    /// The trial data, loaded on first use and shared by the process's
    /// trials (an error is the experiment's: its data cannot be read).
    pub fn trial_data(&self) -> Result<Arc<TrialData>, String> {
        self.loaded
            .get_or_init(|| {
                let d = &self.data;
                let splits = d
                    .factory
                    .load(&d.dir, &d.settings, self.seed)
                    .map_err(|e| format!("loading {}: {e}", d.name))?;
                let full = match d.train_limit {
                    Some(n) => splits.train.head(n),
                    None => splits.train,
                };
                let (train, validation) = full.split(d.validation_fraction, self.seed);
                // An empty split would turn every trial into a "success"
                // with loss 1 and energy 0, which tops the energy front.
                if train.is_empty() || validation.is_empty() {
                    return Err(format!(
                        "{} gives {} training and {} validation images (from {} with \
                         train_limit {:?} and validation_fraction {}): both splits need images; \
                         check `data.path`, `data.train_limit` and `data.validation_fraction`",
                        d.name,
                        train.len(),
                        validation.len(),
                        d.dir.display(),
                        d.train_limit,
                        d.validation_fraction
                    ));
                }
                let batcher = d.transforms.batcher(&train, d.factory.augment())?;
                Ok(Arc::new(TrialData {
                    train,
                    validation,
                    batcher,
                }))
            })
            .clone()
    }

    /// The device of this process's trials, chosen once (all trials of a
    /// process share it, so a GPU's start-up cost is paid once per run).
    pub(crate) fn trial_device(&self) -> Result<Device, String> {
        self.device_cache
            .get_or_init(|| {
                let (device, why) = dsnn_core::device::select_str(&self.device)
                    .map_err(|e| format!("device `{}`: {e}", self.device))?;
                log::info!("trials run on {why}");
                Ok(device)
            })
            .clone()
    }
}

/// A search-space value as a recipe setting.
pub fn setting(v: &Value) -> Setting {
    match v {
        Value::Int(i) => Setting::Int(*i),
        Value::Float(f) => Setting::Float(*f),
        Value::Str(s) => Setting::Text(s.clone()),
        Value::Bool(b) => Setting::Text(b.to_string()),
    }
}

/// Reads `[model]`: the recipe, the device, and the backbone's own
/// architecture values.
fn read_model(
    model: &Section,
    backbone: &dyn Backbone,
) -> Result<(Recipe, String, ArchValues), ConfigError> {
    let recipe_keys: Vec<String> = Recipe::KEYS.iter().map(|s| s.to_string()).collect();
    let declared = backbone.hyperparameters();
    let table = model.table();
    for key in table.keys() {
        let known = MODEL_KEYS.contains(&key.as_str())
            || recipe_keys.iter().any(|k| k == key)
            || declared.iter().any(|p| &p.name == key);
        if !known {
            let mut allowed: Vec<String> = MODEL_KEYS.iter().map(|s| s.to_string()).collect();
            allowed.extend(recipe_keys.iter().cloned());
            allowed.extend(declared.iter().map(|p| p.name.clone()));
            return Err(model.source().error_at(
                &[model.key(), key.clone()],
                true,
                format!(
                    "`model.{key}`: unknown field `{key}`, expected one of {}",
                    backticked(&allowed)
                ),
            ));
        }
    }
    let only: Vec<&str> = recipe_keys.iter().map(String::as_str).collect();
    let recipe: Recipe = model.only(&only).parse()?;
    recipe
        .validate()
        .map_err(|e| model.error(e.name(), format!("in `[model]`: {e}")))?;
    let device = match model.get("device") {
        Some(d) => d.parse::<String>()?,
        None => "auto".to_string(),
    };
    device
        .parse::<dsnn_core::device::DeviceSpec>()
        .map_err(|e| model.error("device", format!("`model.device`: {e}")))?;
    let mut given = ArchValues::new();
    for p in &declared {
        if let Some(v) = model.get(&p.name) {
            given.insert(p.name.clone(), v.parse::<Setting>()?);
        }
    }
    let arch = resolve_arch(backbone, &given)
        .map_err(|e| model.error(e.name(), format!("in `[model]`: {e}")))?;
    Ok((recipe, device, arch))
}

impl Objective for DsnnObjective {
    fn metrics(&self) -> Vec<MetricInfo> {
        DSNN_OBJECTIVES
            .iter()
            .map(|(n, u, m)| MetricInfo::new(n, u, *m))
            .collect()
    }

    fn default_objectives(&self) -> Vec<String> {
        vec!["loss".into(), "energy".into()]
    }

    fn default_max_budget(&self) -> f64 {
        match self.unit {
            BudgetUnit::Epochs => self.recipe.epochs as f64,
            BudgetUnit::DataFraction => 1.0,
        }
    }

    fn check_space(&self, space: &dyn SearchSpace) -> Result<(), SpaceIssue> {
        let declared = self.backbone.hyperparameters();
        for name in space.names() {
            let known = Recipe::HYPERPARAMETERS.contains(&name.as_str())
                || declared.iter().any(|p| p.name == name);
            if !known {
                let mut allowed: Vec<String> = Recipe::HYPERPARAMETERS
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                allowed.extend(declared.iter().map(|p| p.name.clone()));
                return Err(SpaceIssue {
                    message: format!(
                        "the DSNN objective with backbone `{}` has no hyperparameter `{name}` (allowed: {})",
                        self.backbone_name,
                        allowed.join(", ")
                    ),
                    hyperparameter: Some(name),
                });
            }
            if name == "epochs" && self.unit == BudgetUnit::Epochs {
                return Err(SpaceIssue {
                    hyperparameter: Some(name),
                    message: "`epochs` cannot be searched when the budget is in epochs (the budget decides the epochs); remove it or set `fidelity.unit = \"data_fraction\"`".into(),
                });
            }
        }
        self.apply(&space.default_configuration())
            .map_err(|e| SpaceIssue {
                hyperparameter: None,
                message: format!("the space's default configuration: {e}"),
            })?;
        Ok(())
    }

    fn evaluate(&self, ctx: &TrialContext) -> Result<Metrics, EvalError> {
        Ok(self.train_and_measure(ctx)?.metrics)
    }
}

/// The built-in `dsnn` objective factory.
pub struct DsnnObjectiveFactory;

impl ObjectiveFactory for DsnnObjectiveFactory {
    fn description(&self) -> String {
        "train a DSNN for the budget, measure validation loss and inference energy".into()
    }

    fn create(&self, setup: &ObjectiveSetup) -> Result<ObjectiveBuild, ConfigError> {
        if let Some(k) = setup.settings.table().keys().next() {
            return Err(setup.settings.error(
                k,
                format!("`objective.{k}`: the `dsnn` objective takes no settings in `[objective]` (its settings are `[data]`, `[model]` and `[energy]`)"),
            ));
        }
        let o = DsnnObjective::from_setup(setup)?;
        Ok(dsnn_build(Arc::new(o)))
    }
}

/// The [`ObjectiveBuild`] of a DSNN objective (or of an objective wrapping
/// `inner`, which provides the resolved data path and backbone).
pub fn dsnn_build_with(objective: Arc<dyn Objective>, inner: &DsnnObjective) -> ObjectiveBuild {
    let path = toml::Value::String(inner.data.dir.display().to_string());
    ObjectiveBuild {
        objective,
        resolved: vec![
            ("data.path".into(), path),
            (
                "model.backbone".into(),
                toml::Value::String(inner.backbone_name.clone()),
            ),
        ],
        target: format!("{} on {}", inner.backbone_name, inner.data.name),
    }
}

fn dsnn_build(o: Arc<DsnnObjective>) -> ObjectiveBuild {
    let inner = o.clone();
    dsnn_build_with(o, &inner)
}

/// Data sets live wherever the user keeps them; the bundled ones here.
pub fn bundled_data_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/data"))
}

/// Registered names a `[model]` may use, for messages.
pub fn backbone_names(registry: &Registry) -> Vec<String> {
    registry.names(crate::registry::Kind::Backbone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Source;
    use dsnn_core::InputShape;

    fn data(text: &str) -> Section {
        let source = Source::new("e.toml", format!("[data]\ndataset = \"x\"\n{text}"));
        let doc = source.parse().unwrap();
        Section::new(&source, vec!["data".into()], doc.get("data").cloned())
    }

    fn grey(n: usize) -> Dataset {
        Dataset {
            pixels: (0..n * 4).map(|i| (i * 37 % 256) as u8).collect(),
            labels: vec![0; n],
            shape: InputShape {
                channels: 1,
                height: 2,
                width: 2,
            },
            classes: 2,
            pixel_max: 255.0,
        }
    }

    #[test]
    fn augment_mean_and_std_are_read_and_checked() {
        let none = DataTransforms::read(&data("")).unwrap();
        assert_eq!(none, DataTransforms::default());
        let b = none.batcher(&grey(3), Augment::cifar()).unwrap();
        assert_eq!(b.augment, Augment::cifar(), "the data set's default");
        assert_eq!(b.normalization, grey(3).channel_stats());
        let t = DataTransforms::read(&data(
            "augment = { crop_padding = 3, flip = true }\nmean = [0.5]\nstd = [0.25]\n",
        ))
        .unwrap();
        let b = t.batcher(&grey(3), Augment::default()).unwrap();
        assert_eq!(
            b.augment,
            Augment {
                crop_padding: 3,
                horizontal_flip: true
            }
        );
        assert_eq!(b.normalization.mean, vec![0.5]);
        assert_eq!(b.normalization.std, vec![0.25]);
        let off = DataTransforms::read(&data("augment = false\n")).unwrap();
        assert_eq!(
            off.batcher(&grey(1), Augment::cifar()).unwrap().augment,
            Augment::default()
        );
        let rgb = DataTransforms::read(&data("mean = [0.5, 0.5, 0.5]\nstd = [1, 1, 1]\n"))
            .unwrap()
            .batcher(&grey(1), Augment::default())
            .unwrap_err();
        assert!(
            rgb.contains("give 3 values but the images have 1 channel"),
            "{rgb}"
        );
        for (text, needle) in [
            ("augment = { crop = 4 }", "unknown field `crop`"),
            ("augment = true", "expected a table"),
            (
                "augment = { crop_padding = 999 }",
                "out of range (allowed: 0..=256)",
            ),
            ("mean = [0.5]", "`data.mean` needs `data.std`"),
            ("mean = [0.5]\nstd = [0.0]", "above 0"),
            (
                "mean = [0.5, 0.5, 0.5]\nstd = [1.0]",
                "as many of one as of the other",
            ),
            ("mean = [0.5, 0.5]\nstd = [1.0, 1.0]", "1 or 3 of them"),
            ("mean = []\nstd = []", "1 or 3 of them"),
        ] {
            let e = DataTransforms::read(&data(&format!("{text}\n")))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle) && e.contains("e.toml:"), "{text}: {e}");
        }
    }
}
