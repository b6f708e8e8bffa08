//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod model_file;

use candle_core::{Device, Tensor};
use dsnn_core::data::Dataset;
use dsnn_core::{
    backbone_by_name, FixedPoint, InputShape, ModelSpec, Network, Rounding, ShiftEnd,
    ShiftSettings, ShiftType,
};
use dsnn_infer::{InputTransform, TrainedSpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

/// The shared real data directory when it holds `needs` (a path inside it),
/// or `None` with a message saying what is missing.
pub fn shared_data(needs: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("DSNN_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    if dir.join(needs).exists() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: shared data file {} not found (set DSNN_SHARED_DATA to the shared data directory)",
            dir.join(needs).display()
        );
        None
    }
}

/// A freshly initialised network and its spec.
pub fn build(
    backbone: &str,
    shift_type: ShiftType,
    weight_bits: u32,
    act: (u32, u32),
    input: InputShape,
    seed: u64,
) -> (Box<dyn Network>, TrainedSpec) {
    let model = ModelSpec {
        input,
        classes: 10,
        shift: Some(ShiftSettings {
            shift_type,
            weight_bits,
            rounding: Rounding::Deterministic,
            activation: FixedPoint {
                integer_bits: act.0,
                fraction_bits: act.1,
            },
        }),
        shift_depth: usize::MAX,
        shift_end: ShiftEnd::Output,
        seed,
        arch: Default::default(),
    };
    let b = backbone_by_name(backbone).unwrap();
    let net = b.build(&model, &Device::Cpu).unwrap();
    net.params().project().unwrap();
    let spec = TrainedSpec {
        backbone: b.name().to_string(),
        model,
        dataset: None,
        input_transform: None,
    };
    (net, spec)
}

/// Gives every batch norm random running statistics, scales and shifts
/// (through a weights file, the only way to set buffers), drawn in the
/// order of the tensors' names so that a seed gives the same values in
/// every process.
pub fn randomize_batch_norm(net: &dyn Network, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tensors = net.params().named_tensors();
    let mut names: Vec<String> = tensors.keys().cloned().collect();
    names.sort();
    for name in names {
        let t = tensors.get_mut(&name).expect("a listed tensor");
        let n = t.elem_count();
        let (lo, hi) = if name.ends_with("running_var") {
            (0.2, 3.0)
        } else if name.ends_with("running_mean") {
            (-1.0, 1.0)
        } else if name.contains("bn") && name.ends_with(".weight") {
            (0.5, 1.5)
        } else if name.contains("bn") && name.ends_with(".bias") {
            (-0.5, 0.5)
        } else {
            continue;
        };
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
        *t = Tensor::from_vec(v, t.shape(), &Device::Cpu).unwrap();
    }
    let path = std::env::temp_dir().join(format!(
        "dsnn-infer-bn-{}-{seed}.safetensors",
        std::process::id()
    ));
    candle_core::safetensors::save(&tensors, &path).unwrap();
    net.params().load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
}

/// `n` random normalised images in [-3, 3].
pub fn random_images(input: InputShape, n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n * input.channels * input.height * input.width)
        .map(|_| rng.random_range(-3.0f32..3.0))
        .collect()
}

/// The first `n` images of `data`, normalised as dsnn's Batcher does, and
/// the matching pixel transform.
pub fn real_images(data: &Dataset, n: usize) -> (Vec<f32>, InputTransform) {
    let batcher = dsnn_core::data::Batcher {
        normalization: data.channel_stats(),
        augment: Default::default(),
    };
    let idx: Vec<usize> = (0..n.min(data.len())).collect();
    let (x, _) = batcher.batch(data, &idx, None, &Device::Cpu).unwrap();
    let v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    (
        v,
        InputTransform {
            normalization: batcher.normalization,
            pixel_max: data.pixel_max,
            data: None,
        },
    )
}
