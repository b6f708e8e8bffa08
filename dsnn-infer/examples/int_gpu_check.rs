//! Checks dsnn-infer's GPU kernels on a real GPU (the `cuda` feature):
//! LeNet-5 and ResNet20 (Q and PS, freshly initialised; ResNet20's batch
//! norms get random statistics) exported to integer models, run by the CPU
//! engine and by `CudaIntModel` with both weight forms; the logits must be
//! equal bit for bit. Also times a batch on both. Exits 1 on a mismatch.
//!
//! `cargo run --release -p dsnn-infer --features cuda --example int_gpu_check -- [cuda:0] [batch]`

use candle_core::{Device, Tensor};
use dsnn_core::{
    backbone_by_name, FixedPoint, InputShape, ModelSpec, Network, Rounding, ShiftEnd,
    ShiftSettings, ShiftType,
};
use dsnn_infer::cuda::CudaIntModel;
use dsnn_infer::gpu::GpuOptions;
use dsnn_infer::{IntModel, TrainedSpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn network(backbone: &str, st: ShiftType, input: InputShape, seed: u64) -> Res<IntModel> {
    let model = ModelSpec {
        input,
        classes: 10,
        shift: Some(ShiftSettings {
            shift_type: st,
            weight_bits: 5,
            rounding: Rounding::Deterministic,
            activation: FixedPoint {
                integer_bits: 16,
                fraction_bits: 16,
            },
        }),
        shift_depth: usize::MAX,
        shift_end: ShiftEnd::Output,
        seed,
        arch: Default::default(),
    };
    let b = backbone_by_name(backbone)?;
    let net = b.build(&model, &Device::Cpu)?;
    net.params().project()?;
    randomize_batch_norm(net.as_ref(), seed)?;
    let spec = TrainedSpec {
        backbone: b.name().to_string(),
        model,
        dataset: None,
        input_transform: None,
    };
    Ok(IntModel::from_network(net.as_ref(), &spec)?)
}

/// Random running statistics, scales and shifts for every batch norm.
fn randomize_batch_norm(net: &dyn Network, seed: u64) -> Res<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tensors = net.params().named_tensors();
    let mut any = false;
    for (name, t) in tensors.iter_mut() {
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
        let v: Vec<f32> = (0..t.elem_count())
            .map(|_| rng.random_range(lo..hi))
            .collect();
        *t = Tensor::from_vec(v, t.shape(), &Device::Cpu)?;
        any = true;
    }
    if any {
        let path =
            std::env::temp_dir().join(format!("dsnn-int-gpu-{}.safetensors", std::process::id()));
        candle_core::safetensors::save(&tensors, &path)?;
        net.params().load(&path)?;
        std::fs::remove_file(&path)?;
    }
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let spec = args.first().map(String::as_str).unwrap_or("cuda:0");
    let batch: usize = args.get(1).map(|b| b.parse()).transpose()?.unwrap_or(64);
    let (dev, note) = dsnn_core::device::select_str(spec)?;
    println!("device: {note}");
    let mut failed = 0;
    for (backbone, st, input) in [
        ("lenet5", ShiftType::Q, (1, 28)),
        ("lenet5", ShiftType::PS, (1, 28)),
        ("resnet20", ShiftType::Q, (3, 32)),
        ("resnet20", ShiftType::PS, (3, 32)),
    ] {
        let shape = InputShape {
            channels: input.0,
            height: input.1,
            width: input.1,
        };
        let model = network(backbone, st, shape, 7)?;
        let mut rng = StdRng::seed_from_u64(9);
        let images: Vec<f32> = (0..batch * input.0 * input.1 * input.1)
            .map(|_| rng.random_range(-3.0f32..3.0))
            .collect();
        let x = model.quantize_input(&images);
        let t = Instant::now();
        let cpu = model.infer(&images)?;
        let cpu_ms = 1e3 * t.elapsed().as_secs_f64();
        for buckets in [false, true] {
            let gpu = CudaIntModel::with_options(&model, &dev, GpuOptions { buckets })?;
            gpu.infer_quantized(&x)?; // warm-up (module load)
            let t = Instant::now();
            let got = gpu.infer_quantized(&x)?;
            let gpu_ms = 1e3 * t.elapsed().as_secs_f64();
            let same = got == cpu;
            if !same {
                failed += 1;
            }
            let differ = got
                .values
                .iter()
                .zip(&cpu.values)
                .filter(|(a, b)| a != b)
                .count();
            println!(
                "{backbone} {st} buckets={buckets}: {} ({differ} of {} logits differ); batch {batch}: CPU {cpu_ms:.2} ms, GPU {gpu_ms:.2} ms",
                if same { "bit-identical" } else { "MISMATCH" },
                cpu.values.len()
            );
        }
    }
    if failed > 0 {
        eprintln!("{failed} GPU runs differ from the CPU engine");
        std::process::exit(1);
    }
    println!("all GPU runs equal the CPU engine bit for bit");
    Ok(())
}
