//! Training and inference throughput of ResNet20 and LeNet (float, DeepShift-Q,
//! DeepShift-PS) on the CPU, with dsnn's convolution and with candle's stock
//! conv2d, printed as a table. Variants are interleaved step by step so that
//! machine noise hits them alike; figures are medians (and, for training, the
//! fastest step too, to compare with the minimum times of the PyTorch reference).
//!
//! The "train cpu ms" column is the process CPU time per training step
//! (all threads): on a shared machine it moves far less than wall time,
//! so it is the figure to compare builds by while other jobs run. The peak
//! resident memory of the process is printed at the end (run one model and
//! variant per process to compare it with PyTorch's).
//!
//! `cargo run --release -p dsnn-core --example train_throughput -- [--steps N] [--batch 128] [--models resnet20,lenet5] [--variants float,Q,PS] [--no-candle] [--json out.json]`

mod bench_util;
use bench_util::{flag_value, median, process_cpu_ms};

use candle_core::{DType, Device, Tensor};
use dsnn_core::layers::ConvEngine;
use dsnn_core::optim::{Optimizer, OptimizerSettings};
use dsnn_core::train::train_step;
use dsnn_core::{
    backbone_by_name, Forward, ModelSpec, Network, ShiftEnd, ShiftSettings, ShiftType,
};
use std::time::Instant;

struct Variant {
    model: &'static str,
    label: &'static str,
    engine: ConvEngine,
    net: Box<dyn Network>,
    opt: Optimizer,
    train_ms: Vec<f64>,
    train_cpu_ms: Vec<f64>,
    infer_ms: Vec<f64>,
    infer1_ms: Vec<f64>,
}

/// Peak resident memory of the process in MiB.
fn peak_rss_mib() -> f64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: getrusage fills the struct it is given.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0 {
            return ru.ru_maxrss as f64 / 1024.0;
        }
    }
    f64::NAN
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    dsnn_core::runtime::tune_process();
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| flag_value(&args, name);
    let steps: usize = opt("--steps").map(|s| s.parse()).transpose()?.unwrap_or(10);
    let models = opt("--models").unwrap_or_else(|| "resnet20,lenet5".into());
    let with_candle = !args.iter().any(|a| a == "--no-candle");
    let wanted = opt("--variants").unwrap_or_else(|| "float,Q,PS".into());
    let batch: usize = opt("--batch")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(128);
    let dev = Device::Cpu;
    let mut variants = Vec::new();
    for model in models.split(',') {
        let backbone: &'static dyn dsnn_core::Backbone = Box::leak(backbone_by_name(model)?);
        let model: &'static str = backbone.name();
        for (label, shift) in [
            ("float", None),
            ("Q", Some(ShiftType::Q)),
            ("PS", Some(ShiftType::PS)),
        ] {
            if !wanted.split(',').any(|w| w == label) {
                continue;
            }
            let engines: &[ConvEngine] = if with_candle {
                &[ConvEngine::Dsnn, ConvEngine::Candle]
            } else {
                &[ConvEngine::Dsnn]
            };
            for &engine in engines {
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
                let net = backbone.build_with(&spec, &dev, engine)?;
                let opt = Optimizer::new(
                    OptimizerSettings {
                        lr: 0.01,
                        ..Default::default()
                    },
                    net.params().params().len(),
                )?;
                variants.push(Variant {
                    model,
                    label,
                    engine,
                    net,
                    opt,
                    train_ms: vec![],
                    train_cpu_ms: vec![],
                    infer_ms: vec![],
                    infer1_ms: vec![],
                });
            }
        }
    }
    let input = |model: &str, n: usize| -> candle_core::Result<(Tensor, Tensor)> {
        // Each backbone's own input shape (3x32x32 for the CIFAR networks,
        // 1x28x28 for LeNet-5).
        let shape = backbone_by_name(model)
            .map(|b| b.default_input())
            .map_err(candle_core::Error::wrap)?;
        let (c, h, w) = (shape.channels, shape.height, shape.width);
        let x = Tensor::randn(0f32, 1.0, (n, c, h, w), &dev)?;
        let y = Tensor::from_vec((0..n as u32).map(|i| i % 10).collect::<Vec<_>>(), n, &dev)?;
        Ok((x, y))
    };
    // One warm-up round, then `steps` interleaved rounds.
    for round in 0..=steps {
        for v in variants.iter_mut() {
            let (x, y) = input(v.model, batch)?;
            let (t, cpu) = (Instant::now(), process_cpu_ms());
            train_step(v.net.as_ref(), &mut v.opt, &x, &y, 0.01)?;
            let train = t.elapsed().as_secs_f64() * 1e3;
            let train_cpu = process_cpu_ms() - cpu;
            let t = Instant::now();
            v.net
                .forward(&x, Forward::eval())?
                .to_dtype(DType::F32)?
                .sum_all()?
                .to_scalar::<f32>()?;
            let infer = t.elapsed().as_secs_f64() * 1e3;
            let (x1, _) = input(v.model, 1)?;
            let t = Instant::now();
            v.net
                .forward(&x1, Forward::eval())?
                .sum_all()?
                .to_scalar::<f32>()?;
            let infer1 = t.elapsed().as_secs_f64() * 1e3;
            if round > 0 {
                v.train_ms.push(train);
                v.train_cpu_ms.push(train_cpu);
                v.infer_ms.push(infer);
                v.infer1_ms.push(infer1);
            }
        }
        eprint!("\rround {round}/{steps}");
    }
    eprintln!();
    println!("| model | variant | conv engine | train ms/step (b{batch}) | train cpu ms/step | train img/s | train img/s (min time) | infer b{batch} img/s | infer b1 img/s |");
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|");
    let mut json = Vec::new();
    for v in &variants {
        let (tm, im, i1) = (
            median(&v.train_ms),
            median(&v.infer_ms),
            median(&v.infer1_ms),
        );
        let engine = match v.engine {
            ConvEngine::Dsnn => "dsnn",
            ConvEngine::Candle => "candle",
        };
        let fastest = v.train_ms.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} |",
            v.model,
            v.label,
            engine,
            tm,
            median(&v.train_cpu_ms),
            batch as f64 / tm * 1e3,
            batch as f64 / fastest * 1e3,
            batch as f64 / im * 1e3,
            1e3 / i1
        );
        json.push(format!(
            "{{\"model\":\"{}\",\"variant\":\"{}\",\"engine\":\"{engine}\",\"batch\":{batch},\"train_img_s\":{:.1},\"train_cpu_ms\":{:.2},\"infer_b128_img_s\":{:.1},\"infer_b1_img_s\":{:.1}}}",
            v.model, v.label, batch as f64 / tm * 1e3, median(&v.train_cpu_ms), batch as f64 / im * 1e3, 1e3 / i1
        ));
    }
    println!("peak resident memory: {:.0} MiB", peak_rss_mib());
    if let Some(path) = opt("--json") {
        std::fs::write(path, format!("[{}]\n", json.join(",\n")))?;
    }
    Ok(())
}
