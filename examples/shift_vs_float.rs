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

/// One trained network's line of the comparison.
struct Row {
    /// "float" or the DeepShift variant.
    network: String,
    /// Top-1 accuracy on the digits test split.
    accuracy: f64,
    /// Multiply-accumulates done as shifts, per image.
    shift_macs: u64,
    /// All multiply-accumulates per image.
    total_macs: u64,
    /// Bytes of weight storage at the layers' bit widths.
    weight_bytes: u64,
    /// Op-count energy per image, joules.
    energy_j: f64,
}

/// Trains the float and the DeepShift-PS digits CNN for `epochs` and
/// measures both.
fn compare(epochs: usize) -> Result<Vec<Row>, Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits");
    let splits = load_dataset(DatasetName::Digits, &dir, 0)?;
    let batcher = Batcher {
        normalization: splits.train.channel_stats(),
        augment: Augment::default(),
    };
    let backbone = backbone_by_name("digits_cnn")?;
    let energy_model = OpCountModel::default();
    let mut rows = Vec::new();
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
            arch: Default::default(),
        };
        let net = backbone.build(&spec, &Device::Cpu)?;
        let cfg = TrainConfig {
            epochs,
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
        rows.push(Row {
            network: shift.map_or("float".to_string(), |t| format!("DeepShift-{t}, 5-bit")),
            accuracy: result.accuracy,
            shift_macs: profile.shift_macs(),
            total_macs: profile.total_macs(),
            weight_bytes: profile.weight_storage_bits() / 8,
            energy_j: energy_model.predict(&profile).per_image().joules(),
        });
    }
    Ok(rows)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    dsnn_core::runtime::tune_process();
    println!(
        "| network | test accuracy | shift MACs | weight storage | predicted energy per image |"
    );
    println!("|---|---:|---:|---:|---:|");
    for row in compare(5)? {
        println!(
            "| {} | {:.2}% | {} of {} | {} bytes | {:.3e} J |",
            row.network,
            100.0 * row.accuracy,
            row.shift_macs,
            row.total_macs,
            row.weight_bytes,
            row.energy_j
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deepshift_is_nearly_as_accurate_and_far_cheaper_than_float() {
        let rows = compare(3).unwrap();
        let [float, shift] = &rows[..] else {
            panic!("two rows expected")
        };
        assert!(float.accuracy > 0.9, "float accuracy {}", float.accuracy);
        assert!(shift.accuracy > 0.9, "shift accuracy {}", shift.accuracy);
        assert!(
            shift.accuracy > float.accuracy - 0.05,
            "{} vs {}",
            shift.accuracy,
            float.accuracy
        );
        assert_eq!(float.shift_macs, 0);
        assert_eq!(shift.shift_macs, shift.total_macs);
        assert_eq!(float.total_macs, shift.total_macs);
        // 5-bit shift weights against 32-bit floats (biases stay wider).
        assert!(
            shift.weight_bytes * 5 < float.weight_bytes,
            "{} vs {} bytes",
            shift.weight_bytes,
            float.weight_bytes
        );
        assert!(
            shift.energy_j * 3.0 < float.energy_j,
            "{} vs {} J",
            shift.energy_j,
            float.energy_j
        );
    }
}
