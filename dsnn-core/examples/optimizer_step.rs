//! Time of one optimiser step over ResNet20's parameter tensors (the shapes of
//! its 19 convolutions, 19 batch norms and the classifier: 269,722 values),
//! for every optimiser, on the CPU (or `--device cuda:0` with the `cuda`
//! feature). The gradients are fixed; only `Optimizer::step` is timed.
//! Prints a table of medians (and the fastest step) in milliseconds.
//!
//! `cargo run --release -p dsnn-core --example optimizer_step -- [--steps 200] [--device cpu]`

mod bench_util;
use bench_util::flag_value;
use candle_core::{Device, Tensor, Var};
use dsnn_core::optim::{Optimizer, OptimizerKind, OptimizerSettings};
use dsnn_core::params::{Param, ParamRole};
use std::time::Instant;

/// ResNet20's parameter shapes (option-A shortcuts carry no parameters).
fn resnet20_shapes() -> Vec<Vec<usize>> {
    let mut shapes = vec![vec![16, 3, 3, 3], vec![16], vec![16]];
    let mut cin = 16;
    for cout in [16, 32, 64] {
        for _ in 0..3 {
            for _ in 0..2 {
                shapes.push(vec![cout, cin, 3, 3]);
                shapes.push(vec![cout]);
                shapes.push(vec![cout]);
                cin = cout;
            }
        }
    }
    shapes.push(vec![10, 64]);
    shapes.push(vec![10]);
    shapes
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| flag_value(&args, name);
    let steps: usize = opt("--steps")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200);
    let dev = match opt("--device").as_deref() {
        None | Some("cpu") => Device::Cpu,
        Some(d) => {
            let ordinal = d.trim_start_matches("cuda:").parse().unwrap_or(0);
            Device::new_cuda(ordinal)?
        }
    };
    let shapes = resnet20_shapes();
    let numel: usize = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
    let mut params = Vec::new();
    let mut loss = Tensor::zeros((), candle_core::DType::F32, &dev)?;
    for (i, shape) in shapes.iter().enumerate() {
        let n: usize = shape.iter().product();
        let w: Vec<f32> = (0..n)
            .map(|j| ((i * 7919 + j * 104_729) % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        let r: Vec<f32> = (0..n)
            .map(|j| ((i * 31 + j * 7) % 101) as f32 / 500.0 - 0.1)
            .collect();
        let var = Var::from_tensor(&Tensor::from_vec(w, shape.as_slice(), &dev)?)?;
        let r = Tensor::from_vec(r, shape.as_slice(), &dev)?;
        loss = (loss + (var.as_tensor() * r)?.sum_all()?)?;
        params.push(Param {
            name: format!("p{i}"),
            var,
            role: ParamRole::Plain,
        });
    }
    let grads = loss.backward()?;
    println!(
        "optimizer step over ResNet20's {} parameter tensors ({numel} values), {steps} steps, {dev:?}",
        params.len()
    );
    println!("| optimizer | median ms | fastest ms |");
    println!("|---|---:|---:|");
    for kind in OptimizerKind::ALL {
        let settings = OptimizerSettings {
            kind,
            lr: 1e-3,
            momentum: 0.9,
            weight_decay: 1e-4,
        };
        let mut optimizer = Optimizer::new(settings, params.len())?;
        let mut times = Vec::with_capacity(steps);
        for _ in 0..steps {
            let start = Instant::now();
            optimizer.step(&params, &grads, 1e-3)?;
            dev.synchronize()?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| {kind} | {:.3} | {:.3} |",
            times[times.len() / 2],
            times[0]
        );
    }
    Ok(())
}
