//! The forward convolution's CPU kernels side by side, layer by layer:
//! im2col + gemm, Winograd F(2x2, 3x3) and the direct kernel
//! (`conv/direct.rs`) on ResNet20's 3x3 shapes (stride 2 rows run im2col in
//! Winograd's place; a few smaller shapes decide where each pays), with the
//! largest differences to im2col (the direct kernel's portable path
//! included). Calls alternate between the
//! kernels so that machine noise hits both alike; times are minima and
//! medians over `--reps` calls, GFLOP/s counts the direct convolution's
//! `2 * n * cout * cin * 9 * ho * wo` flops for all. The CPU columns are
//! the minimum process CPU time per call (all threads), which a loaded
//! machine moves far less than wall time: run with `RAYON_NUM_THREADS=1`
//! to compare the kernels' work alone.
//!
//!
//! `--pass weight` compares the weight gradient's kernels instead, on every
//! convolution of ResNet20 (3x3, stride 1 and 2) and LeNet-5 (5x5): im2col + gemm against the
//! direct kernel (`conv/weight_grad.rs`, AVX-512 where the CPU has it) and
//! its portable path, GFLOP/s counting `2 * n * cout * cin * k * k * ho * wo`.
//!
//! `cargo run --release -p dsnn-core --example conv_layers -- [--pass forward|weight] [--batch 128] [--reps 20] [--shape CIN,COUT,SIDE] [--profile winograd|im2col|direct]`

mod bench_util;
use bench_util::{flag_value, median, process_cpu_ms};

use dsnn_core::conv::{
    backward_weight_cpu_with, forward_cpu_with, ConvAlgorithm, ConvGeometry, ConvOptions,
    WeightGradAlgorithm,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

/// Input channels, output channels, image side, stride (Winograd takes
/// stride 1 only: on stride 2 its columns repeat im2col's).
const SHAPES: [(usize, usize, usize, usize); 11] = [
    (16, 16, 32, 1),
    (32, 32, 16, 1),
    (64, 64, 8, 1),
    (3, 16, 32, 1),
    (16, 32, 32, 2),
    (32, 64, 16, 2),
    (8, 8, 32, 1),
    (16, 16, 8, 1),
    (32, 32, 8, 1),
    (64, 64, 4, 1),
    (128, 128, 4, 1),
];

/// The weight gradient's shapes: ResNet20's convolutions (3x3, padding 1)
/// and LeNet-5's (5x5, no padding): input channels, output channels, input
/// side, stride, kernel, padding.
const WEIGHT_SHAPES: [(usize, usize, usize, usize, usize, usize); 8] = [
    (3, 16, 32, 1, 3, 1),
    (16, 16, 32, 1, 3, 1),
    (16, 32, 32, 2, 3, 1),
    (32, 32, 16, 1, 3, 1),
    (32, 64, 16, 2, 3, 1),
    (64, 64, 8, 1, 3, 1),
    (1, 20, 28, 1, 5, 0),
    (20, 50, 12, 1, 5, 0),
];

type BenchResult = Result<(), Box<dyn std::error::Error>>;

fn main() -> BenchResult {
    dsnn_core::runtime::tune_process();
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| flag_value(&args, name);
    let batch: usize = opt("--batch")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(128);
    let reps: usize = opt("--reps").map(|s| s.parse()).transpose()?.unwrap_or(20);
    // `--shape 16,16,32`: only that (cin, cout, side), e.g. to profile it.
    let only: Option<Vec<usize>> = opt("--shape")
        .map(|s| s.split(',').map(str::parse).collect())
        .transpose()?;
    let mut rng = StdRng::seed_from_u64(19);
    println!(
        "batch {batch}, {reps} calls each, {} threads",
        rayon::current_num_threads()
    );
    let profile = opt("--profile");
    match opt("--pass").as_deref() {
        None | Some("forward") => {}
        Some("weight") => return weight_pass(&mut rng, batch, reps, only, profile),
        Some(other) => return Err(format!("--pass takes forward or weight, not {other}").into()),
    }
    println!("| cin -> cout | image, stride | im2col min / median ms | Winograd (stride 2: im2col again) min / median ms | direct min / median ms | GFLOP/s im2col / Winograd / direct | Winograd / im2col (min) | direct / im2col (min) | CPU ms im2col / Winograd / direct | CPU ratio Winograd / direct | max rel diff Winograd / direct / portable |");
    println!("|---|---|---|---|---|---|---:|---:|---|---|---|");
    // `--profile winograd` (or `im2col`, `direct`): only call that kernel,
    // `reps` times per shape, printing nothing (to run under `perf record`).
    for (cin, cout, side, stride) in SHAPES {
        if only.as_ref().is_some_and(|o| o[..] != [cin, cout, side]) {
            continue;
        }
        let options = ConvOptions::plain(ConvGeometry { stride, padding: 1 });
        let xd = [batch, cin, side, side];
        let wd = [cout, cin, 3, 3];
        let x = random_values(&mut rng, xd.iter().product());
        let w = random_values(&mut rng, wd.iter().product());
        let run = |alg| match alg {
            ConvAlgorithm::Winograd if stride != 1 => {
                forward_cpu_with(&x, xd, &w, wd, options, ConvAlgorithm::Im2col)
            }
            _ => forward_cpu_with(&x, xd, &w, wd, options, alg),
        };
        if let Some(kernel) = &profile {
            let alg = match kernel.as_str() {
                "winograd" => ConvAlgorithm::Winograd,
                "im2col" => ConvAlgorithm::Im2col,
                "direct" => ConvAlgorithm::Direct,
                other => {
                    return Err(
                        format!("--profile takes winograd, im2col or direct, not {other}").into(),
                    )
                }
            };
            for _ in 0..reps {
                std::hint::black_box(run(alg)?);
            }
            continue;
        }
        let reference = run(ConvAlgorithm::Im2col)?;
        let rel = |v: &[f32]| max_relative_error(v, &reference);
        let diffs = [
            rel(&run(ConvAlgorithm::Winograd)?),
            rel(&run(ConvAlgorithm::Direct)?),
            rel(&run(ConvAlgorithm::DirectPortable)?),
        ];
        let kernels = [
            ConvAlgorithm::Im2col,
            ConvAlgorithm::Winograd,
            ConvAlgorithm::Direct,
        ];
        let mut times = [Vec::new(), Vec::new(), Vec::new()];
        let mut cpu = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..reps {
            for (i, &alg) in kernels.iter().enumerate() {
                let (start, cpu_start) = (Instant::now(), process_cpu_ms());
                std::hint::black_box(run(alg)?);
                times[i].push(start.elapsed().as_secs_f64() * 1e3);
                cpu[i].push(process_cpu_ms() - cpu_start);
            }
        }
        let out = (side - 1) / stride + 1;
        let flops = 2.0 * (batch * cout * cin * 9 * out * out) as f64;
        let min = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
        let (mi, mw, md) = (min(&times[0]), min(&times[1]), min(&times[2]));
        let (ci, cw, cd) = (min(&cpu[0]), min(&cpu[1]), min(&cpu[2]));
        println!(
            "| {cin} -> {cout} | {side}x{side}, {stride} | {mi:.2} / {:.2} | {mw:.2} / {:.2} | {md:.2} / {:.2} | {:.0} / {:.0} / {:.0} | {:.2} | {:.2} | {ci:.2} / {cw:.2} / {cd:.2} | {:.2} / {:.2} | {:.1e} / {:.1e} / {:.1e} |",
            median(&times[0]),
            median(&times[1]),
            median(&times[2]),
            flops / mi / 1e6,
            flops / mw / 1e6,
            flops / md / 1e6,
            mw / mi,
            md / mi,
            cw / ci,
            cd / ci,
            diffs[0],
            diffs[1],
            diffs[2],
        );
    }
    Ok(())
}

fn random_values(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// The weight gradient's table (`--pass weight`): im2col, direct and the
/// direct kernel's portable path called in turn, `reps` times each.
fn weight_pass(
    rng: &mut StdRng,
    batch: usize,
    reps: usize,
    only: Option<Vec<usize>>,
    profile: Option<String>,
) -> BenchResult {
    println!("| cin -> cout | image, stride, kernel | im2col min / median ms | direct min / median ms | portable min ms | im2col GFLOP/s | direct GFLOP/s | direct / im2col (min) | CPU ms im2col / direct | CPU ratio | max rel diff direct / portable |");
    println!("|---|---|---|---|---:|---:|---:|---:|---|---:|---|");
    for (cin, cout, side, stride, k, padding) in WEIGHT_SHAPES {
        if only.as_ref().is_some_and(|o| o[..] != [cin, cout, side]) {
            continue;
        }
        let options = ConvOptions::plain(ConvGeometry { stride, padding });
        let out = (side + 2 * padding - k) / stride + 1;
        let xd = [batch, cin, side, side];
        let wd = [cout, cin, k, k];
        let x = random_values(rng, xd.iter().product());
        let dy = random_values(rng, batch * cout * out * out);
        let run = |alg| backward_weight_cpu_with(&x, xd, &dy, wd, options, alg);
        if let Some(kernel) = &profile {
            let alg = match kernel.as_str() {
                "direct" => WeightGradAlgorithm::Direct,
                "im2col" => WeightGradAlgorithm::Im2col,
                other => {
                    return Err(
                        format!("--profile takes direct or im2col here, not {other}").into(),
                    )
                }
            };
            for _ in 0..reps {
                std::hint::black_box(run(alg)?);
            }
            continue;
        }
        let reference = run(WeightGradAlgorithm::Im2col)?;
        let rel = |v: &[f32]| max_relative_error(v, &reference);
        let (rd, rp) = (
            rel(&run(WeightGradAlgorithm::Direct)?),
            rel(&run(WeightGradAlgorithm::DirectPortable)?),
        );
        let mut times = [Vec::new(), Vec::new(), Vec::new()];
        let mut cpu = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..reps {
            for (i, alg) in [
                WeightGradAlgorithm::Im2col,
                WeightGradAlgorithm::Direct,
                WeightGradAlgorithm::DirectPortable,
            ]
            .into_iter()
            .enumerate()
            {
                let (start, cpu_start) = (Instant::now(), process_cpu_ms());
                std::hint::black_box(run(alg)?);
                times[i].push(start.elapsed().as_secs_f64() * 1e3);
                cpu[i].push(process_cpu_ms() - cpu_start);
            }
        }
        let flops = 2.0 * (batch * cout * cin * k * k * out * out) as f64;
        let min = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
        let (mi, md, mp) = (min(&times[0]), min(&times[1]), min(&times[2]));
        let (ci, cd) = (min(&cpu[0]), min(&cpu[1]));
        println!(
            "| {cin} -> {cout} | {side}x{side}, {stride}, {k}x{k} | {mi:.2} / {:.2} | {md:.2} / {:.2} | {mp:.2} | {:.0} | {:.0} | {:.2} | {ci:.2} / {cd:.2} | {:.2} | {rd:.1e} / {rp:.1e} |",
            median(&times[0]),
            median(&times[1]),
            flops / mi / 1e6,
            flops / md / 1e6,
            md / mi,
            cd / ci,
        );
    }
    Ok(())
}

/// The largest absolute difference of `v` from `reference`, relative to the
/// reference's largest magnitude (at least 1e-3).
fn max_relative_error(v: &[f32], reference: &[f32]) -> f32 {
    let scale = reference.iter().fold(1e-3f32, |m, x| m.max(x.abs()));
    v.iter()
        .zip(reference)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}
