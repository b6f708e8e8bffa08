//! `dsnn train`: train one DSNN configuration on real data and report its
//! test accuracy. Data sets and backbones come from the registry, so a
//! research crate's own binary trains its own backbones here too.

use anyhow::{bail, Context, Result};
use clap::Args;
use dsnn_core::data::Splits;
use dsnn_core::device::DeviceSpec;
use dsnn_core::optim::OptimizerKind;
use dsnn_core::recipe::{resolve_arch, ArchValues, Recipe, Setting};
use dsnn_core::train::{evaluate, train};
use dsnn_core::{Rounding, ShiftEnd, ShiftType};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::dsnn_objective::{DataTransforms, COMMON_DATA_KEYS};
use crate::registry::{DatasetFactory, Registry};
use crate::settings::Section;
/// Arguments of `dsnn train`; the defaults are the paper's default DSNN.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Data set (`dsnn plugins` lists them): fashion-mnist, mnist, digits,
    /// cifar10, or one a research crate registered.
    #[arg(long, default_value = "fashion-mnist")]
    dataset: String,
    /// Directory holding the data set's files. Defaults to the small subset
    /// bundled with dsnn (`data/fashion-mnist-small`, `data/digits`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A `[data]` setting of the data set, as KEY=VALUE with a TOML value
    /// (repeatable; docs/config.md lists them): `--data size=32`,
    /// `--data resize=pad`, `--data label=coarse`,
    /// `--data 'augment={crop_padding=4,flip=true}'`, `--data 'mean=[0.5]'`.
    #[arg(long = "data", value_name = "KEY=VALUE")]
    data: Vec<String>,
    /// Backbone (`dsnn plugins` lists them; default: by data set).
    #[arg(long)]
    backbone: Option<String>,
    /// An architecture hyperparameter of the backbone, as NAME=VALUE
    /// (repeatable; `dsnn plugins` lists each backbone's).
    #[arg(long = "arch", value_name = "NAME=VALUE")]
    arch: Vec<String>,
    /// DeepShift variant: q, ps, or float (no conversion).
    #[arg(long, default_value = "ps")]
    shift_type: ShiftType,
    /// Bits per shift weight (2..=8).
    #[arg(long, default_value_t = 5)]
    weight_bits: u32,
    /// Integer bits of the fixed-point activations (1..=32).
    #[arg(long, default_value_t = 16)]
    activation_integer_bits: u32,
    /// Fraction bits of the fixed-point activations (1..=32).
    #[arg(long, default_value_t = 16)]
    activation_fraction_bits: u32,
    /// Number of convolution layers converted to shifts (default: all).
    #[arg(long)]
    shift_depth: Option<usize>,
    /// Which end `--shift-depth` counts from: output (DeepShift's convention) or input.
    #[arg(long, default_value = "output")]
    shift_end: ShiftEnd,
    /// Rounding of shifts: deterministic or stochastic.
    #[arg(long, default_value = "deterministic")]
    rounding: Rounding,
    /// Optimizer: SGD, Adam, Adadelta, Adagrad, RMSprop, RAdam, Ranger.
    #[arg(long, default_value = "SGD")]
    optimizer: OptimizerKind,
    /// Initial learning rate.
    #[arg(long, default_value_t = 0.1)]
    lr: f64,
    /// Momentum (SGD and RMSprop).
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// L2 weight decay.
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    /// Training epochs.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Training batch size.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Evaluation batch size.
    #[arg(long, default_value_t = 1000)]
    test_batch_size: usize,
    /// Keep a constant learning rate instead of cosine annealing.
    #[arg(long)]
    no_cosine: bool,
    /// Fraction of the training set held out for validation after each epoch.
    #[arg(long, default_value_t = 0.1)]
    validation_fraction: f64,
    /// Use at most this many training images.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Seed for initial weights, splits, batch order and stochastic rounding.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Save the trained weights to this safetensors file.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Device: auto (the first CUDA GPU if usable, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: DeviceSpec,
}

/// Reads `NAME=VALUE` architecture settings: integers, numbers or words.
fn parse_arch(items: &[String]) -> Result<ArchValues> {
    let mut arch = ArchValues::new();
    for item in items {
        let Some((name, value)) = item.split_once('=') else {
            bail!("--arch {item}: expected NAME=VALUE");
        };
        let value = value.trim();
        let setting = if let Ok(i) = value.parse::<i64>() {
            Setting::Int(i)
        } else if let Ok(f) = value.parse::<f64>() {
            Setting::Float(f)
        } else {
            Setting::Text(value.to_string())
        };
        arch.insert(name.trim().to_string(), setting);
    }
    Ok(arch)
}

/// `KEY=VALUE` settings as a `[data]` table: each value is read as TOML
/// (`32`, `[24, 32]`, `{crop_padding = 4}`), else taken as a string (`pad`).
pub fn data_settings(items: &[String]) -> Result<Section> {
    let mut table = toml::Table::new();
    for item in items {
        let Some((key, value)) = item.split_once('=') else {
            bail!("--data {item}: expected KEY=VALUE");
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            bail!("--data {item}: expected KEY=VALUE");
        }
        if let Some(flag) = match key {
            "dataset" => Some("--dataset"),
            "path" => Some("--data-dir"),
            "validation_fraction" => Some("--validation-fraction"),
            "train_limit" => Some("--train-limit"),
            _ => None,
        } {
            bail!("--data {item}: `{key}` has its own flag here, {flag}");
        }
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        table.insert(key.to_string(), parsed);
    }
    Ok(Section::detached(
        "--data",
        "data",
        toml::Value::Table(table),
    ))
}

/// A `[data]` table's settings as JSON values (as a
/// [`dsnn_infer::DataRecord`] keeps them).
pub fn json_settings(table: &toml::Table) -> BTreeMap<String, serde_json::Value> {
    table
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), serde_json::to_value(v).ok()?)))
        .collect()
}

/// Loads a registered data set from `data_dir` (default: its bundled
/// copy): the factory, the directory used and the splits.
pub fn load_splits(
    registry: &Registry,
    name: &str,
    data_dir: Option<&std::path::Path>,
    seed: u64,
) -> Result<(std::sync::Arc<dyn DatasetFactory>, PathBuf, Splits)> {
    let no_settings = Section::detached(
        "command line",
        "data",
        toml::Value::Table(Default::default()),
    );
    load_splits_with(registry, name, data_dir, &no_settings, seed)
}

/// [`load_splits`] with the data set's own settings (checked first).
pub fn load_splits_with(
    registry: &Registry,
    name: &str,
    data_dir: Option<&std::path::Path>,
    settings: &Section,
    seed: u64,
) -> Result<(std::sync::Arc<dyn DatasetFactory>, PathBuf, Splits)> {
    let dataset = registry.dataset(name).context("--dataset")?;
    dataset
        .check(settings)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("--data")?;
    let dir = match (data_dir, dataset.bundled_dir()) {
        (Some(d), _) => d.to_path_buf(),
        (None, Some(d)) => d,
        (None, None) => {
            bail!("no bundled copy of {name}: pass --data-dir with the full data set")
        }
    };
    dataset
        .check_files(&dir, settings)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("checking {name} in {}", dir.display()))?;
    let splits = dataset
        .load(&dir, settings, seed)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("loading {name} from {}", dir.display()))?;
    Ok((dataset, dir, splits))
}

/// Run `dsnn train`.
pub fn run(a: TrainArgs, registry: &Registry) -> Result<()> {
    if let Some(t) = a.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .context("setting --threads")?;
    }
    if !(a.validation_fraction > 0.0 && a.validation_fraction < 1.0) {
        bail!(
            "--validation-fraction {} is out of range (allowed: strictly between 0 and 1)",
            a.validation_fraction
        );
    }
    let data = data_settings(&a.data)?;
    let transforms = DataTransforms::read(&data)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("--data")?;
    let own = data.without(COMMON_DATA_KEYS);
    let (dataset, dir, Splits { train: full, test }) =
        load_splits_with(registry, &a.dataset, a.data_dir.as_deref(), &own, a.seed)?;
    let full = match a.train_limit {
        Some(n) => full.head(n),
        None => full,
    };
    let (train_set, validation) = full.split(a.validation_fraction, a.seed);
    let backbone_name = match (&a.backbone, dataset.default_backbone()) {
        (Some(b), _) => b.clone(),
        (None, Some(b)) => b,
        (None, None) => bail!(
            "data set {} has no default backbone: pass --backbone",
            a.dataset
        ),
    };
    let backbone = registry
        .backbone(&backbone_name)
        .with_context(|| "--backbone".to_string())?;
    let arch = resolve_arch(backbone.as_ref(), &parse_arch(&a.arch)?).context("--arch")?;
    let recipe = Recipe {
        optimizer: a.optimizer,
        lr: a.lr,
        momentum: a.momentum,
        weight_decay: a.weight_decay,
        weight_bits: a.weight_bits,
        activation_integer_bits: a.activation_integer_bits,
        activation_fraction_bits: a.activation_fraction_bits,
        shift_depth: a.shift_depth,
        shift_end: a.shift_end,
        shift_type: a.shift_type,
        rounding: a.rounding,
        batch_size: a.batch_size,
        test_batch_size: a.test_batch_size,
        epochs: a.epochs,
        cosine_schedule: !a.no_cosine,
    };
    recipe.validate().context("checking the settings")?;
    let shift = recipe.shift_settings();
    let spec = recipe.model_spec(train_set.shape, train_set.classes, a.seed, arch);
    let (device, device_note) =
        dsnn_core::device::select(a.device).with_context(|| format!("--device {}", a.device))?;
    let net = backbone.build(&spec, &device)?;
    let profile = backbone.op_profile(&spec)?;
    crate::errln!(
        "dsnn train: {} on {} ({} train / {} validation / {} test images from {})",
        backbone.name(),
        a.dataset,
        train_set.len(),
        validation.len(),
        test.len(),
        dir.display()
    );
    crate::errln!(
        "  {} shift layers ({}), {:.1}% of {} MACs per image are shifts, {} parameters",
        net.shift_layers().len(),
        match shift {
            None => "float network".to_string(),
            Some(s) => format!("DeepShift-{}, {}-bit weights", s.shift_type, s.weight_bits),
        },
        100.0 * profile.shift_macs() as f64 / profile.total_macs().max(1) as f64,
        profile.total_macs(),
        net.params().num_scalars()
    );
    crate::errln!("  device: {device_note}");
    let batcher = transforms
        .batcher(&train_set, dataset.augment())
        .map_err(anyhow::Error::msg)
        .context("--data")?;
    let cfg = recipe.train_config(a.epochs, a.seed);
    let start = Instant::now();
    train(
        net.as_ref(),
        &train_set,
        &validation,
        &batcher,
        &cfg,
        &device,
        &mut |r| {
            crate::errln!(
            "  epoch {:>3}/{}: train loss {:.4}  train acc {:6.2}%  val loss {:.4}  val acc {:6.2}%  lr {:.4}  {:.0} img/s",
            r.epoch, a.epochs, r.train_loss, 100.0 * r.train_accuracy, r.validation.loss, 100.0 * r.validation.accuracy, r.lr, r.images_per_second
        )
        },
    )?;
    let result = evaluate(net.as_ref(), &test, &batcher, a.test_batch_size, &device)?;
    crate::outln!(
        "test accuracy {:.2}% (loss {:.4}) on {} images after {} epochs in {:.1} s",
        100.0 * result.accuracy,
        result.loss,
        result.images,
        a.epochs,
        start.elapsed().as_secs_f64()
    )?;
    if let Some(path) = &a.save {
        // The spec travels in the file's metadata, so `dsnn export` can
        // rebuild the network without being told its settings again.
        let trained = dsnn_infer::TrainedSpec {
            backbone: backbone.name().to_string(),
            model: spec.clone(),
            dataset: Some(a.dataset.clone()),
            input_transform: Some(dsnn_infer::InputTransform {
                normalization: batcher.normalization.clone(),
                pixel_max: train_set.pixel_max,
                // `dsnn export` and `dsnn infer` load the same images the
                // same way without `--data` again.
                data: Some(dsnn_infer::DataRecord {
                    dataset: a.dataset.clone(),
                    settings: json_settings(&own.table()),
                    split_seed: a.seed,
                }),
            }),
        };
        dsnn_infer::save_trained(net.as_ref(), &trained, path)?;
        crate::errln!("saved weights and model spec to {}", path.display());
    }
    Ok(())
}
