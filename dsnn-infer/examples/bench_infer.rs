//! Inference speed, model size and op-count energy of the integer engine
//! against dsnn's float (candle) inference of the same networks, printed as
//! tables. Variants are interleaved call by call; figures are medians.
//!
//! `cargo run --release -p dsnn-infer --example bench_infer -- [--iters N] [--iters-b1 M] [--batch B] [--models resnet20,lenet5]`
//!
//! Networks are freshly initialised (batch norms get random statistics);
//! speed does not depend on training, only on the weights' sparsity, and
//! initialised DeepShift weights have no zeros. `--batch` (default 128) is
//! the large batch; `--models mobilenetv2,googlenet --batch 32` gives the
//! figures of `docs/integer-inference.md`.

use candle_core::{Device, Tensor};
use dsnn_core::{
    backbone_by_name, Forward, ModelSpec, Network, ShiftEnd, ShiftSettings, ShiftType,
};
use dsnn_energy::OpCountModel;
use dsnn_infer::{EngineOptions, IntModel, Isa, TrainedSpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

enum Runner {
    Float(Box<dyn Network>),
    Int(IntModel),
}

struct Variant {
    model: &'static str,
    label: String,
    runner: Runner,
    big_ms: Vec<f64>,
    b1_ms: Vec<f64>,
}

fn randomize_batch_norm(net: &dyn Network) -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = StdRng::seed_from_u64(1);
    let mut tensors = net.params().named_tensors();
    for (name, t) in tensors.iter_mut() {
        let (lo, hi) = if name.ends_with("running_var") {
            (0.2, 3.0)
        } else if name.ends_with("running_mean") {
            (-1.0, 1.0)
        } else {
            continue;
        };
        let v: Vec<f32> = (0..t.elem_count())
            .map(|_| rng.random_range(lo..hi))
            .collect();
        *t = Tensor::from_vec(v, t.shape(), &Device::Cpu)?;
    }
    let path = std::env::temp_dir().join(format!("bench-infer-{}.safetensors", std::process::id()));
    candle_core::safetensors::save(&tensors, &path)?;
    net.params().load(&path)?;
    std::fs::remove_file(&path)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    dsnn_core::runtime::tune_process();
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let iters: usize = opt("--iters").map(|s| s.parse()).transpose()?.unwrap_or(10);
    let iters_b1: usize = opt("--iters-b1")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100);
    let models = opt("--models").unwrap_or_else(|| "resnet20,lenet5".into());
    // `--int-only` skips the candle variants (for profiling the engine).
    let int_only = args.iter().any(|a| a == "--int-only");
    let batch: usize = opt("--batch")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(128);
    let dev = Device::Cpu;
    let energy = OpCountModel::default();
    let mut variants = Vec::new();
    let mut sizes = Vec::new();
    let mut energies = Vec::new();
    for model in models.split(',') {
        // Leaked: the table keeps the names for the whole run.
        let backbone: &'static dyn dsnn_core::Backbone = Box::leak(backbone_by_name(model)?);
        let name: &'static str = backbone.name();
        for shift in [None, Some(ShiftType::Q), Some(ShiftType::PS)] {
            let spec = ModelSpec {
                input: backbone.default_input(),
                classes: 10,
                shift: shift.map(|t| ShiftSettings {
                    shift_type: t,
                    ..Default::default()
                }),
                shift_depth: usize::MAX,
                shift_end: ShiftEnd::Output,
                seed: 0,
                arch: Default::default(),
            };
            let net = backbone.build(&spec, &dev)?;
            net.params().project()?;
            // (A no-op for networks without batch norm.)
            randomize_batch_norm(net.as_ref())?;
            let profile = backbone.op_profile(&spec)?;
            let label = shift.map_or("float".to_string(), |t| t.to_string());
            energies.push((
                name,
                format!("{label} (float-simulated)"),
                energy.predict(&profile),
            ));
            if let Some(t) = shift {
                let int = IntModel::from_network(
                    net.as_ref(),
                    &TrainedSpec {
                        backbone: name.into(),
                        model: spec.clone(),
                        dataset: None,
                        input_transform: None,
                    },
                )?;
                int.prepare();
                energies.push((
                    name,
                    format!("{t} (integer engine)"),
                    energy.predict(&int.op_profile()),
                ));
                sizes.push((
                    name,
                    t,
                    int.to_bytes()?.len(),
                    int.packed_weight_bytes(),
                    int.float_model_bytes(),
                ));
                variants.push(Variant {
                    model: name,
                    label: format!("{t} integer"),
                    runner: Runner::Int(int),
                    big_ms: Vec::new(),
                    b1_ms: Vec::new(),
                });
            }
            if int_only {
                continue;
            }
            variants.push(Variant {
                model: name,
                label: format!("{label} candle"),
                runner: Runner::Float(net),
                big_ms: Vec::new(),
                b1_ms: Vec::new(),
            });
        }
    }
    let mut rng = StdRng::seed_from_u64(0);
    for (b, reps) in [(batch, iters), (1, iters_b1)] {
        let mut inputs = std::collections::HashMap::new();
        for v in &variants {
            inputs.entry(v.model).or_insert_with(|| {
                let s = backbone_by_name(v.model).expect("known").default_input();
                let n = b * s.channels * s.height * s.width;
                let data: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect();
                let t = Tensor::from_vec(data.clone(), (b, s.channels, s.height, s.width), &dev)
                    .expect("shape");
                (data, t)
            });
        }
        for round in 0..reps + 2 {
            for v in variants.iter_mut() {
                let (data, t) = &inputs[v.model];
                let start = Instant::now();
                match &v.runner {
                    Runner::Float(net) => {
                        net.forward(t, Forward::eval())?.to_vec2::<f32>()?;
                    }
                    Runner::Int(m) => {
                        m.infer_quantized(m.quantize_input(data), b, &EngineOptions::default())?;
                    }
                }
                let ms = 1e3 * start.elapsed().as_secs_f64();
                if round >= 2 {
                    if b == 1 {
                        v.b1_ms.push(ms)
                    } else {
                        v.big_ms.push(ms)
                    }
                }
            }
        }
    }
    println!(
        "integer kernels: {}{}; {} threads; batch {batch}: {iters} calls, batch 1: {iters_b1} calls\n",
        Isa::detect().name(),
        if dsnn_infer::kernels::dot::available() {
            " with VNNI dot products"
        } else {
            ""
        },
        rayon::current_num_threads()
    );
    println!(
        "| model | variant | b1 latency ms | b1 img/s | b{batch} ms | b{batch} img/s | b1 min ms | b{batch} min ms |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    for v in &variants {
        let (b1, bb) = (median(&v.b1_ms), median(&v.big_ms));
        println!(
            "| {} | {} | {:.3} | {:.0} | {:.1} | {:.0} | {:.3} | {:.1} |",
            v.model,
            v.label,
            b1,
            1e3 / b1,
            bb,
            1e3 * batch as f64 / bb,
            min(&v.b1_ms),
            min(&v.big_ms)
        );
    }
    println!("\n| model | variant | integer model file, bytes | packed codes, bytes | 32-bit float model, bytes | float / integer file |");
    println!("|---|---|---:|---:|---:|---:|");
    for (m, t, file, packed, float) in &sizes {
        println!(
            "| {m} | {t} | {file} | {packed} | {float} | {:.2}x |",
            *float as f64 / *file as f64
        );
    }
    println!("\nop-count energy per image (Horowitz 45 nm table, weights read from DRAM once per image):\n");
    println!("| model | network | compute uJ | weight reads uJ | total uJ |");
    println!("|---|---|---:|---:|---:|");
    for (m, label, e) in &energies {
        println!(
            "| {m} | {label} | {:.2} | {:.2} | {:.2} |",
            e.compute_pj * 1e-6,
            e.memory_pj * 1e-6,
            (e.compute_pj + e.memory_pj) * 1e-6
        );
    }
    Ok(())
}
