//! The optimisers' numbers on the CPU device, bit for bit, against a fixture
//! recorded with the host loop that copied every parameter to a `Vec`, updated
//! it and copied it back (`optim.rs` before the in-place update ops). Twelve
//! steps of each optimiser, with and without momentum and weight decay, so
//! that RAdam's rectified phase and two Lookahead synchronisations of Ranger
//! are covered.
//!
//! Regenerate (only when the arithmetic is meant to change) with
//! `DSNN_WRITE_OPTIM_FIXTURE=1 cargo test -p dsnn-core --test optim_host_path`.

use candle_core::{Device, Tensor, Var};
use dsnn_core::optim::{Optimizer, OptimizerKind, OptimizerSettings};
use dsnn_core::params::{Param, ParamRole};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::PathBuf;

const STEPS: usize = 12;
const LEN: usize = 48;

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/optim_host_path.json")
}

/// The final weights (as f32 bit patterns) of one run: a parameter of LEN
/// values stepped STEPS times with seeded random gradients (some exactly
/// zero, a few large), and a second parameter that never has a gradient.
fn run(kind: OptimizerKind, momentum: f64, weight_decay: f64) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(0x5eed ^ kind as u64);
    let init: Vec<f32> = (0..LEN).map(|_| rng.random_range(-1.0..1.0)).collect();
    let var = Var::from_tensor(&Tensor::new(init, &Device::Cpu).unwrap()).unwrap();
    let idle = Var::from_tensor(&Tensor::new(&[0.25f32, -0.5], &Device::Cpu).unwrap()).unwrap();
    let params = vec![
        Param {
            name: "w".into(),
            var: var.clone(),
            role: ParamRole::Plain,
        },
        Param {
            name: "idle".into(),
            var: idle.clone(),
            role: ParamRole::Plain,
        },
    ];
    let lr = match kind {
        OptimizerKind::Adadelta => 1.0,
        OptimizerKind::SGD => 0.1,
        _ => 0.01,
    };
    let settings = OptimizerSettings {
        kind,
        lr,
        momentum,
        weight_decay,
    };
    let mut opt = Optimizer::new(settings, params.len()).unwrap();
    for step in 0..STEPS {
        let g: Vec<f32> = (0..LEN)
            .map(|i| match (i + step) % 11 {
                0 => 0.0,
                1 => rng.random_range(-30.0..30.0),
                _ => rng.random_range(-1.0..1.0),
            })
            .collect();
        let gt = Tensor::new(g, &Device::Cpu).unwrap();
        let grads = (var.as_tensor() * &gt)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        // A decaying schedule, as the trainer's.
        let lr_t = lr * (1.0 - step as f64 / (2 * STEPS) as f64);
        opt.step(&params, &grads, lr_t).unwrap();
    }
    assert_eq!(
        idle.as_tensor().to_vec1::<f32>().unwrap(),
        vec![0.25, -0.5],
        "a parameter without a gradient is left alone"
    );
    var.as_tensor()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

/// Momentum and weight decay for each run of `kind` (momentum only where
/// the optimiser uses it).
fn configs(kind: OptimizerKind) -> &'static [(f64, f64)] {
    match kind {
        OptimizerKind::SGD | OptimizerKind::RMSprop => {
            &[(0.0, 0.0), (0.9, 0.0), (0.0, 1e-2), (0.9, 1e-4)]
        }
        _ => &[(0.0, 0.0), (0.0, 1e-2)],
    }
}

fn all_runs() -> BTreeMap<String, Vec<u32>> {
    let mut out = BTreeMap::new();
    for kind in OptimizerKind::ALL {
        for &(momentum, wd) in configs(kind) {
            out.insert(
                format!("{kind} momentum={momentum} wd={wd}"),
                run(kind, momentum, wd),
            );
        }
    }
    out
}

#[test]
fn every_optimiser_reproduces_the_host_loop_bit_for_bit() {
    let got = all_runs();
    if std::env::var_os("DSNN_WRITE_OPTIM_FIXTURE").is_some() {
        let text = serde_json::to_string(&got).unwrap();
        std::fs::write(fixture_path(), text + "\n").unwrap();
        eprintln!("wrote {}", fixture_path().display());
        return;
    }
    let text = std::fs::read_to_string(fixture_path()).expect("fixture file");
    let want: BTreeMap<String, Vec<u32>> = serde_json::from_str(&text).expect("fixture json");
    assert_eq!(got.len(), want.len(), "the same runs");
    for (name, w) in &want {
        let g = &got[name];
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            assert_eq!(
                a,
                b,
                "{name}, element {i}: {} now, {} in the host loop",
                f32::from_bits(*a),
                f32::from_bits(*b)
            );
        }
    }
}

#[test]
fn the_fixture_runs_differ_from_each_other() {
    // Guards the comparison: a run that did nothing, or two settings that
    // collapse to the same path, would make the bitwise test toothless.
    let text = std::fs::read_to_string(fixture_path()).expect("fixture file");
    let want: BTreeMap<String, Vec<u32>> = serde_json::from_str(&text).expect("fixture json");
    let runs: Vec<&Vec<u32>> = want.values().collect();
    let expected: usize = OptimizerKind::ALL.iter().map(|&k| configs(k).len()).sum();
    assert_eq!(runs.len(), expected);
    for i in 0..runs.len() {
        for j in i + 1..runs.len() {
            assert_ne!(runs[i], runs[j], "runs {i} and {j} are identical");
        }
    }
}
