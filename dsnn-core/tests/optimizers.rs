//! The optimisers against PyTorch: ten steps of each on one parameter and a
//! fixed gradient sequence, compared with `torch.optim` (Ranger: torch's
//! RAdam inside the Lookahead rule). The values come from
//! `tests/data/optimizer_steps.py`, run with torch 2.15.

use candle_core::{Device, Tensor, Var};
use dsnn_core::optim::{Optimizer, OptimizerKind, OptimizerSettings};
use dsnn_core::params::{Param, ParamRole};
use serde_json::Value;

fn golden() -> Value {
    serde_json::from_str(include_str!("data/optimizer_steps.json")).expect("golden json")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn follows_torch(kind: OptimizerKind, name: &str) {
    let g = golden();
    let settings = OptimizerSettings {
        kind,
        lr: g["lr_overrides"][name]
            .as_f64()
            .unwrap_or_else(|| g["lr"].as_f64().unwrap()),
        momentum: g["momentum"].as_f64().unwrap(),
        weight_decay: g["weight_decay"].as_f64().unwrap(),
    };
    let var = Var::from_tensor(&Tensor::new(floats(&g["initial"]), &Device::Cpu).unwrap()).unwrap();
    let params = vec![Param {
        name: "w".into(),
        var: var.clone(),
        role: ParamRole::Plain,
    }];
    let mut opt = Optimizer::new(settings, 1).unwrap();
    let expected = g["steps"][name].as_array().expect("steps");
    let gradients = g["gradients"].as_array().unwrap();
    assert_eq!(expected.len(), gradients.len());
    for (t, (grad, want)) in gradients.iter().zip(expected).enumerate() {
        // d/dw sum(w * g) = g: the gradient store holds exactly `g`.
        let gt = Tensor::new(floats(grad), &Device::Cpu).unwrap();
        let grads = (var.as_tensor() * &gt)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        opt.step(&params, &grads, settings.lr).unwrap();
        let got: Vec<f32> = var.as_tensor().to_vec1().unwrap();
        for (i, (a, b)) in got.iter().zip(floats(want)).enumerate() {
            let tol = 2e-6 + 2e-5 * b.abs();
            assert!(
                (a - b).abs() <= tol,
                "{name}, step {}, element {i}: dsnn {a}, torch {b}",
                t + 1
            );
        }
    }
}

#[test]
fn sgd_with_momentum_and_weight_decay_follows_torch() {
    follows_torch(OptimizerKind::SGD, "SGD");
}

#[test]
fn adam_follows_torch() {
    follows_torch(OptimizerKind::Adam, "Adam");
}

#[test]
fn adagrad_follows_torch() {
    follows_torch(OptimizerKind::Adagrad, "Adagrad");
}

#[test]
fn adadelta_follows_torch() {
    follows_torch(OptimizerKind::Adadelta, "Adadelta");
}

#[test]
fn rmsprop_with_momentum_follows_torch() {
    follows_torch(OptimizerKind::RMSprop, "RMSprop");
}

#[test]
fn radam_follows_torch_through_its_warm_up() {
    // Steps 1-5 are the unrectified (SGD-like) phase, 6-10 the rectified one.
    follows_torch(OptimizerKind::RAdam, "RAdam");
}

#[test]
fn ranger_follows_radam_with_lookahead() {
    // Step 6 is a Lookahead synchronisation.
    follows_torch(OptimizerKind::Ranger, "Ranger");
}

#[test]
fn the_golden_trajectories_differ_between_optimisers() {
    // Guards the comparison itself: every optimiser's path is its own.
    let g = golden();
    let steps = g["steps"].as_object().unwrap();
    let last: Vec<Vec<f32>> = steps
        .values()
        .map(|s| floats(s.as_array().unwrap().last().unwrap()))
        .collect();
    for i in 0..last.len() {
        for j in i + 1..last.len() {
            assert_ne!(last[i], last[j]);
        }
    }
}
