//! Engine variants side by side: the same integer model run with each
//! kernel configuration, interleaved call by call in one process, so that a
//! shared machine's load hits every variant alike. Prints minimum and
//! median milliseconds per call and the ratio of minimums to the first
//! variant.
//!
//! `cargo run --release -p dsnn-infer --example bench_kernels -- [--iters N] [--batches 128,1] [--models resnet20,lenet5] [--lanes batch,shiftadd,0,64]`
//!
//! Variants: `batch` is the engine's default (batch-lanes convolutions from
//! 16 images up with AVX-512, with the VNNI dot-product kernel where the CPU
//! has it); `shiftadd` is the same without the VNNI kernel (shift-add
//! kernels only); a number runs every convolution through im2col blocks
//! with that many lanes per sub-block (0: the per-layer default).

use candle_core::Device;
use dsnn_core::{backbone_by_name, ModelSpec, ShiftEnd, ShiftSettings, ShiftType};
use dsnn_infer::{EngineOptions, IntModel, TrainedSpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    dsnn_core::runtime::tune_process();
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str, default: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let iters: usize = opt("--iters", "10").parse()?;
    let batches: Vec<usize> = opt("--batches", "128,1")
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    // Each variant's name and engine options.
    let lanes: Vec<(String, EngineOptions)> = opt("--lanes", "batch,0")
        .split(',')
        .map(|v| match v {
            "batch" => Ok(("batch lanes".to_string(), EngineOptions::default())),
            "shiftadd" => Ok((
                "batch lanes, shift-add only".to_string(),
                EngineOptions {
                    shift_add_only: true,
                    ..Default::default()
                },
            )),
            l => l.parse::<usize>().map(|l| {
                (
                    format!("im2col, lanes {l}"),
                    EngineOptions {
                        lanes: Some(l).filter(|&l| l != 0),
                        im2col_only: true,
                        ..Default::default()
                    },
                )
            }),
        })
        .collect::<Result<_, _>>()?;
    let mut rng = StdRng::seed_from_u64(0);
    for model in opt("--models", "resnet20,lenet5").split(',') {
        let backbone = backbone_by_name(model)?;
        let spec = ModelSpec {
            input: backbone.default_input(),
            classes: 10,
            shift: Some(ShiftSettings {
                shift_type: ShiftType::Q,
                ..Default::default()
            }),
            shift_depth: usize::MAX,
            shift_end: ShiftEnd::Output,
            seed: 0,
            arch: Default::default(),
        };
        let net = backbone.build(&spec, &Device::Cpu)?;
        net.params().project()?;
        let int = IntModel::from_network(
            net.as_ref(),
            &TrainedSpec {
                backbone: backbone.name().into(),
                model: spec.clone(),
                dataset: None,
                input_transform: None,
            },
        )?;
        int.prepare();
        for &b in &batches {
            let s = spec.input;
            let images: Vec<f32> = (0..b * s.channels * s.height * s.width)
                .map(|_| rng.random_range(-2.0f32..2.0))
                .collect();
            let x = int.quantize_input(&images);
            let reps = if b == 1 { iters * 10 } else { iters };
            let mut ms = vec![Vec::new(); lanes.len()];
            let mut first = None;
            for round in 0..reps + 2 {
                for (v, (_, opts)) in lanes.iter().enumerate() {
                    let t = Instant::now();
                    let out = int.infer_quantized(x.clone(), b, opts)?;
                    let dt = 1e3 * t.elapsed().as_secs_f64();
                    match &first {
                        None => first = Some(out),
                        Some(f) => assert_eq!(f, &out, "variants disagree"),
                    }
                    if round >= 2 {
                        ms[v].push(dt);
                    }
                }
            }
            for (v, (name, _)) in lanes.iter().enumerate() {
                let mut t = ms[v].clone();
                t.sort_by(f64::total_cmp);
                let min0 = ms[0].iter().copied().fold(f64::INFINITY, f64::min);
                println!(
                    "{model} b{b} {name}: min {:.3} ms ({:.0} img/s), median {:.3} ms, min ratio to first {:.2}x",
                    t[0],
                    1e3 * b as f64 / t[0],
                    t[t.len() / 2],
                    min0 / t[0]
                );
            }
        }
    }
    Ok(())
}
