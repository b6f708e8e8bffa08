//! `dsnn train`: train one DSNN configuration on real data and report its
//! test accuracy.

use anyhow::{bail, Context, Result};
use clap::Args;
use dsnn::experiment::{bundled_data_dir, default_backbone};
use dsnn_core::data::{load_dataset, Augment, Batcher, DatasetName, Splits};
use dsnn_core::device::DeviceSpec;
use dsnn_core::optim::{OptimizerKind, OptimizerSettings};
use dsnn_core::train::{evaluate, train, TrainConfig};
use dsnn_core::{
    backbone_by_name, FixedPoint, ModelSpec, Rounding, ShiftEnd, ShiftSettings, ShiftType,
};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Data set: fashion-mnist, mnist, digits or cifar10.
    #[arg(long, default_value = "fashion-mnist")]
    dataset: DatasetName,
    /// Directory holding the data set's files. Defaults to the small subset
    /// bundled with dsnn (`data/fashion-mnist-small`, `data/digits`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Backbone: lenet5, resnet20 or digits_cnn (default: by data set).
    #[arg(long)]
    backbone: Option<String>,
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

/// The bundled copy of a data set, or an error asking for `--data-dir`.
pub fn bundled_dir(dataset: DatasetName) -> Result<PathBuf> {
    match bundled_data_dir(dataset) {
        Some(dir) => Ok(dir),
        None => bail!("no bundled copy of {dataset}: pass --data-dir with the full data set"),
    }
}

/// Run `dsnn train`.
pub fn run(a: TrainArgs) -> Result<()> {
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
    let dir = match &a.data_dir {
        Some(d) => d.clone(),
        None => bundled_dir(a.dataset)?,
    };
    let Splits { train: full, test } =
        load_dataset(a.dataset, &dir, a.seed).with_context(|| format!("loading {}", a.dataset))?;
    let full = match a.train_limit {
        Some(n) => full.head(n),
        None => full,
    };
    let (train_set, validation) = full.split(a.validation_fraction, a.seed);
    let backbone = backbone_by_name(a.backbone.as_deref().unwrap_or(default_backbone(a.dataset)))?;
    let shift = match a.shift_type {
        ShiftType::Float => None,
        shift_type => Some(ShiftSettings {
            shift_type,
            weight_bits: a.weight_bits,
            rounding: a.rounding,
            activation: FixedPoint {
                integer_bits: a.activation_integer_bits,
                fraction_bits: a.activation_fraction_bits,
            },
        }),
    };
    let spec = ModelSpec {
        input: train_set.shape,
        classes: train_set.classes,
        shift,
        shift_depth: a.shift_depth.unwrap_or(usize::MAX),
        shift_end: a.shift_end,
        seed: a.seed,
    };
    let (device, device_note) =
        dsnn_core::device::select(a.device).with_context(|| format!("--device {}", a.device))?;
    let net = backbone.build(&spec, &device)?;
    let profile = backbone.op_profile(&spec)?;
    eprintln!(
        "dsnn train: {} on {} ({} train / {} validation / {} test images from {})",
        backbone.name(),
        a.dataset,
        train_set.len(),
        validation.len(),
        test.len(),
        dir.display()
    );
    eprintln!(
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
    eprintln!("  device: {device_note}");
    let augment = if a.dataset == DatasetName::Cifar10 {
        Augment::cifar()
    } else {
        Augment::default()
    };
    let batcher = Batcher {
        normalization: train_set.channel_stats(),
        augment,
    };
    let cfg = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        test_batch_size: a.test_batch_size,
        optimizer: OptimizerSettings {
            kind: a.optimizer,
            lr: a.lr,
            momentum: a.momentum,
            weight_decay: a.weight_decay,
        },
        cosine_schedule: !a.no_cosine,
        seed: a.seed,
    };
    let start = Instant::now();
    train(
        net.as_ref(),
        &train_set,
        &validation,
        &batcher,
        &cfg,
        &device,
        &mut |r| {
            eprintln!(
            "  epoch {:>3}/{}: train loss {:.4}  train acc {:6.2}%  val loss {:.4}  val acc {:6.2}%  lr {:.4}  {:.0} img/s",
            r.epoch, a.epochs, r.train_loss, 100.0 * r.train_accuracy, r.validation.loss, 100.0 * r.validation.accuracy, r.lr, r.images_per_second
        )
        },
    )?;
    let result = evaluate(net.as_ref(), &test, &batcher, a.test_batch_size, &device)?;
    println!(
        "test accuracy {:.2}% (loss {:.4}) on {} images after {} epochs in {:.1} s",
        100.0 * result.accuracy,
        result.loss,
        result.images,
        a.epochs,
        start.elapsed().as_secs_f64()
    );
    if let Some(path) = &a.save {
        // The spec travels in the file's metadata, so `dsnn export` can
        // rebuild the network without being told its settings again.
        let trained = dsnn_infer::TrainedSpec {
            backbone: backbone.name().to_string(),
            model: spec.clone(),
            dataset: Some(a.dataset.to_string()),
            input_transform: Some(dsnn_infer::InputTransform {
                normalization: batcher.normalization.clone(),
                pixel_max: train_set.pixel_max,
            }),
        };
        dsnn_infer::save_trained(net.as_ref(), &trained, path)?;
        eprintln!("saved weights and model spec to {}", path.display());
    }
    Ok(())
}
