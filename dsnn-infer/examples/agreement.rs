//! Trains a LeNet-5 DSNN on MNIST or Fashion-MNIST, exports it to integers
//! and compares the integer engine with the float-simulated network on the
//! full test set.
//!
//! ```sh
//! cargo run --release -p dsnn-infer --example agreement -- mnist q 3
//! ```
//! Arguments: data set (`mnist`, `fashion-mnist`), shift type (`q`, `ps`),
//! epochs, and optionally a training-image limit. Data: `$DSNN_SHARED_DATA`
//! or `../shared/data`.

use dsnn_core::data::{load_dataset, Augment, Batcher, DatasetName};
use dsnn_core::optim::{OptimizerKind, OptimizerSettings};
use dsnn_core::train::{train, TrainConfig};
use dsnn_core::{
    backbone_by_name, FixedPoint, ModelSpec, Rounding, ShiftEnd, ShiftSettings, ShiftType,
};
use dsnn_infer::compare::compare;
use dsnn_infer::{IntModel, TrainedSpec};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dataset: DatasetName = args
        .first()
        .map(String::as_str)
        .unwrap_or("mnist")
        .parse()?;
    let shift_type: ShiftType = args.get(1).map(String::as_str).unwrap_or("q").parse()?;
    let epochs: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(3);
    let limit: Option<usize> = args.get(3).map(|s| s.parse()).transpose()?;
    let root = std::env::var_os("DSNN_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/data"));
    let s = load_dataset(dataset, &root.join(dataset.to_string()), 0)?;
    let full = match limit {
        Some(n) => s.train.head(n),
        None => s.train,
    };
    let (train_set, validation) = full.split(0.1, 0);
    let model = ModelSpec {
        input: train_set.shape,
        classes: train_set.classes,
        shift: Some(ShiftSettings {
            shift_type,
            weight_bits: 5,
            rounding: Rounding::Deterministic,
            activation: FixedPoint {
                integer_bits: 16,
                fraction_bits: 16,
            },
        }),
        shift_depth: usize::MAX,
        shift_end: ShiftEnd::Output,
        seed: 0,
        arch: Default::default(),
    };
    let backbone = backbone_by_name("lenet5")?;
    let net = backbone.build(&model, &candle_core::Device::Cpu)?;
    let batcher = Batcher {
        normalization: train_set.channel_stats(),
        augment: Augment::default(),
    };
    let (optimizer, lr) = match shift_type {
        ShiftType::Q => (OptimizerKind::SGD, 0.1),
        ShiftType::PS | ShiftType::Float => (OptimizerKind::Adam, 0.03),
    };
    let cfg = TrainConfig {
        epochs,
        batch_size: 128,
        test_batch_size: 1000,
        optimizer: OptimizerSettings {
            kind: optimizer,
            lr,
            momentum: 0.9,
            weight_decay: 1e-4,
        },
        cosine_schedule: true,
        seed: 0,
    };
    train(
        net.as_ref(),
        &train_set,
        &validation,
        &batcher,
        &cfg,
        &candle_core::Device::Cpu,
        &mut |r| {
            eprintln!(
                "epoch {}: val acc {:.2}%",
                r.epoch,
                100.0 * r.validation.accuracy
            )
        },
    )?;
    let spec = TrainedSpec {
        backbone: "lenet5".into(),
        model,
        dataset: Some(dataset.to_string()),
        input_transform: None,
    };
    let int = IntModel::from_network(net.as_ref(), &spec)?;
    let a = compare(net.as_ref(), &int, &s.test, &batcher, 1000)?;
    println!(
        "{dataset} LeNet-5 {shift_type}, {epochs} epochs on {} images: float {:.2}%, integer {:.2}%, \
         difference {:+.2} points, top-1 agreement {:.2}% ({} of {} differ)",
        train_set.len(),
        100.0 * a.float_accuracy(),
        100.0 * a.int_accuracy(),
        100.0 * (a.int_accuracy() - a.float_accuracy()),
        100.0 * a.agreement(),
        a.images - a.agree,
        a.images
    );
    Ok(())
}
