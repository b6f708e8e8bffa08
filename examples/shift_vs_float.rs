//! Library composition: train a float network and a DeepShift-PS network on
//! the bundled digits with `dsnn-core`, then compare their test accuracy and
//! their inference energy per image predicted by `dsnn-energy`'s op-count
//! model (Horowitz 2014, 45 nm figures).
//!
//! `cargo run --release --example shift_vs_float`

use candle_core::Device;
use dsnn_core::data::{load_dataset, Augment, Batcher, DatasetName};
use dsnn_core::optim::{OptimizerKind, OptimizerSettings};
use dsnn_core::train::{evaluate, train, TrainConfig};
use dsnn_core::{backbone_by_name, ModelSpec, ShiftEnd, ShiftSettings, ShiftType};
use dsnn_energy::OpCountModel;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    dsnn_core::runtime::tune_process();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits");
    let splits = load_dataset(DatasetName::Digits, &dir, 0)?;
    let batcher = Batcher {
        normalization: splits.train.channel_stats(),
        augment: Augment::default(),
    };
    let backbone = backbone_by_name("digits_cnn")?;
    let energy_model = OpCountModel::default();
    println!(
        "| network | test accuracy | shift MACs | weight storage | predicted energy per image |"
    );
    println!("|---|---:|---:|---:|---:|");
    for shift in [None, Some(ShiftType::PS)] {
        let spec = ModelSpec {
            input: splits.train.shape,
            classes: splits.train.classes,
            shift: shift.map(|t| ShiftSettings {
                shift_type: t,
                ..Default::default()
            }),
            shift_depth: usize::MAX,
            shift_end: ShiftEnd::Output,
            seed: 1,
        };
        let net = backbone.build(&spec, &Device::Cpu)?;
        let cfg = TrainConfig {
            epochs: 5,
            batch_size: 32,
            optimizer: OptimizerSettings {
                kind: OptimizerKind::Adam,
                lr: 0.03,
                ..Default::default()
            },
            ..Default::default()
        };
        train(
            net.as_ref(),
            &splits.train,
            &splits.test,
            &batcher,
            &cfg,
            &Device::Cpu,
            &mut |_| {},
        )?;
        let result = evaluate(net.as_ref(), &splits.test, &batcher, 512, &Device::Cpu)?;
        let profile = backbone.op_profile(&spec)?;
        let energy = energy_model.predict(&profile);
        println!(
            "| {} | {:.2}% | {} of {} | {} bytes | {:.3e} J |",
            shift.map_or("float".to_string(), |t| format!("DeepShift-{t}, 5-bit")),
            100.0 * result.accuracy,
            profile.shift_macs(),
            profile.total_macs(),
            profile.weight_storage_bits() / 8,
            energy.per_image().joules()
        );
    }
    Ok(())
}
