//! dsnn's networks against PyTorch: the same weights give the same logits
//! (inference and training mode) and the same weight gradients, float,
//! DeepShift-Q and DeepShift-PS, and every network has the reference's
//! parameter count.
//!
//! The reference values come from `scripts/torch-reference/make_cases.py`
//! (PyTorch, the networks in `scripts/torch-reference/networks.py`,
//! DeepShift's shift layers); they are committed in
//! `tests/data/torch_networks.json`. Weights, batch-norm statistics, inputs
//! and the loss's logit weights are not committed: both sides compute them
//! from the same formula (below). Gradients are compared through their dot
//! product with a formula probe vector and their norm.
//!
//! Tolerances (relative to the largest reference magnitude of the tensor):
//! logits 2e-4 for float networks and 2e-3 for shift networks (whose
//! fixed-point rounding of activations turns float round-off into steps
//! of 2^-16); gradient dot products and norms 5e-3 (float) and 8e-2 (shift:
//! a flipped rounding step changes the straight-through gradient of every
//! layer before it, and batch norm over the few values of a tiny batch's
//! last maps amplifies it: MobileNetV2 PS reaches 4e-2 and GoogLeNet Q
//! 2.4e-2 in their first layers on an AMD EPYC; the others stay below 5e-3;
//! a wrong sign or a missing term gives errors of order 1).

use candle_core::{Device, Tensor};
use dsnn_core::{
    backbone_by_name, FixedPoint, Forward, InputShape, ModelSpec, Rounding, ShiftEnd,
    ShiftSettings, ShiftType,
};
use serde_json::Value;
use std::collections::HashMap;

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn splitmix(z: u64) -> u64 {
    let z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn weight_exponent(fan_in: usize) -> f64 {
    -(((usize::BITS - 1 - fan_in.leading_zeros()) / 2 + 1) as f64)
}

/// The formula value of tensor `name` (make_cases.py's `value`).
fn value(name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let fan_in = n / shape[0].max(1);
    let key = fnv1a(name);
    (0..n as u64)
        .map(|i| {
            let u = splitmix(key.wrapping_add(i));
            let s = (u & 0xFFF) as i64;
            let k = ((u >> 1) % 3) as f64;
            let v = if name.ends_with(".shift") {
                let off = [-0.25, 0.0, 0.25][((u >> 3) % 3) as usize];
                weight_exponent(fan_in) - k + off
            } else if name.ends_with(".sign") {
                [-1.0, -0.75, -0.25, 0.25, 0.75, 1.0][((u >> 5) % 6) as usize]
            } else if name.ends_with(".running_mean") {
                ((s % 256) - 128) as f64 / 1024.0
            } else if name.ends_with(".running_var") {
                0.5 + (s % 256) as f64 / 256.0
            } else if name.ends_with(".bias") {
                (s - 2048) as f64 * 2f64.powi(-16)
            } else if name.ends_with(".weight") && shape.len() == 1 {
                1.0 + ((s % 256) - 128) as f64 / 512.0
            } else if name.ends_with(".weight") {
                let sign = if u & 1 == 1 { -1.0 } else { 1.0 };
                let r = (u >> 40) as f64 / 2f64.powi(24);
                let mant = if r < 0.5 {
                    1.0 + r * 0.75
                } else {
                    1.5 + (r - 0.5)
                };
                sign * (weight_exponent(fan_in) - k).exp2() * mant
            } else if name.starts_with("input") {
                (s - 2048) as f64 / 1024.0
            } else {
                ((s % 256) - 128) as f64 / 128.0
            };
            v as f32
        })
        .collect()
}

fn formula_tensor(name: &str, shape: &[usize]) -> Tensor {
    Tensor::from_vec(value(name, shape), shape.to_vec(), &Device::Cpu).unwrap()
}

fn cases() -> Vec<Value> {
    let doc: Value = serde_json::from_str(include_str!("data/torch_networks.json")).unwrap();
    doc["cases"].as_array().unwrap().clone()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn shift_type(s: &str) -> ShiftType {
    s.parse().unwrap()
}

fn spec(case: &Value) -> ModelSpec {
    let input: Vec<usize> = case["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let st = shift_type(case["shift_type"].as_str().unwrap());
    ModelSpec {
        input: InputShape {
            channels: input[1],
            height: input[2],
            width: input[3],
        },
        classes: case["classes"].as_u64().unwrap() as usize,
        shift: st.is_shift().then_some(ShiftSettings {
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
        seed: 0,
        arch: Default::default(),
    }
}

/// The largest relative error of `got` against `want`, relative to
/// `want`'s largest magnitude.
fn rel_error(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, w| m.max(f64::from(w.abs())));
    let err = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (g, w)| m.max(f64::from((g - w).abs())));
    err / scale.max(1e-12)
}

/// Checks one case.
fn check_case(case: &Value) {
    let name = case["network"].as_str().unwrap();
    let st = case["shift_type"].as_str().unwrap();
    let what = format!("{name} {st}");
    let spec = spec(case);
    let backbone = backbone_by_name(name).unwrap();
    let net = backbone.build(&spec, &Device::Cpu).unwrap();
    // Set every tensor from the formula.
    let tensors: HashMap<String, Tensor> = net
        .params()
        .named_tensors()
        .into_iter()
        .map(|(n, t)| {
            let v = formula_tensor(&n, t.dims());
            (n, v)
        })
        .collect();
    let path = std::env::temp_dir().join(format!(
        "dsnn-torch-{}-{name}-{st}.safetensors",
        std::process::id()
    ));
    candle_core::safetensors::save(&tensors, &path).unwrap();
    net.params().load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    // Every PyTorch parameter has a dsnn counterpart of the same name.
    let grads_ref = case["grads"].as_object().unwrap();
    let ours: Vec<&str> = net
        .params()
        .params()
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    for key in grads_ref.keys() {
        assert!(ours.contains(&key.as_str()), "{what}: no parameter {key}");
    }
    assert_eq!(ours.len(), grads_ref.len(), "{what}: parameter tensors");

    let input: Vec<usize> = case["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let x = formula_tensor("input", &input);
    let (logit_tol, grad_tol) = if st == "float" {
        (2e-4, 5e-3)
    } else {
        (2e-3, 8e-2)
    };
    let eval = net.forward(&x, Forward::eval()).unwrap();
    let e_eval = rel_error(
        &eval.flatten_all().unwrap().to_vec1().unwrap(),
        &floats(&case["eval_logits"]),
    );
    assert!(
        e_eval <= logit_tol,
        "{what}: inference logits off by {e_eval:e}"
    );
    let logits = net.forward(&x, Forward::train()).unwrap();
    let e_train = rel_error(
        &logits.flatten_all().unwrap().to_vec1().unwrap(),
        &floats(&case["train_logits"]),
    );
    assert!(
        e_train <= logit_tol,
        "{what}: training logits off by {e_train:e}"
    );
    let g = formula_tensor("logit_weights", logits.dims());
    let loss = (logits * g).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    // A convolution's bias before batch norm in training mode has a zero
    // gradient (the normalisation removes it); both sides compute round-off
    // there, which is only checked to be as negligible.
    let largest = grads_ref
        .values()
        .map(|g| g["norm"].as_f64().unwrap())
        .fold(0f64, f64::max);
    let negligible = 1e-4 * largest;
    let mut worst = 0f64;
    for p in net.params().params() {
        let want = &grads_ref[&p.name];
        let grad = grads
            .get(p.var.as_tensor())
            .unwrap_or_else(|| panic!("{what}: no gradient for {}", p.name));
        let gv: Vec<f32> = grad.flatten_all().unwrap().to_vec1().unwrap();
        let probe = value(&format!("probe:{}", p.name), &[gv.len()]);
        let dot: f64 = gv
            .iter()
            .zip(&probe)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        let norm = gv.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
        let probe_norm = probe
            .iter()
            .map(|a| f64::from(*a).powi(2))
            .sum::<f64>()
            .sqrt();
        let (want_dot, want_norm) = (
            want["dot"].as_f64().unwrap(),
            want["norm"].as_f64().unwrap(),
        );
        // The dot product's error relative to |grad| |probe|, the norm's to |grad|.
        let e_dot = (dot - want_dot).abs() / (want_norm * probe_norm).max(1e-30);
        let e_norm = (norm - want_norm).abs() / want_norm.max(1e-30);
        if want_norm < negligible {
            assert!(
                norm < 10.0 * negligible,
                "{what}: gradient of {} should vanish, its norm is {norm} (largest {largest})",
                p.name
            );
            continue;
        }
        let e = e_dot.max(e_norm);
        assert!(
            e <= grad_tol,
            "{what}: gradient of {} off by {e:e} (dot {dot} vs {want_dot}, norm {norm} vs {want_norm})",
            p.name
        );
        worst = worst.max(e);
    }
    eprintln!("{what}: logits {e_eval:.1e} / {e_train:.1e}, gradients {worst:.1e}");
}

fn check_network(name: &str) {
    let all = cases();
    let mine: Vec<&Value> = all.iter().filter(|c| c["network"] == name).collect();
    assert_eq!(mine.len(), 3, "{name}: float, Q and PS cases");
    for case in mine {
        check_case(case);
    }
}

#[test]
fn every_network_has_the_reference_parameter_count() {
    for case in cases().iter().filter(|c| c["shift_type"] == "float") {
        let name = case["network"].as_str().unwrap();
        let spec = spec(case);
        let net = backbone_by_name(name)
            .unwrap()
            .build(&spec, &Device::Cpu)
            .unwrap();
        let want = case["params"].as_u64().unwrap() as usize;
        assert_eq!(net.params().num_scalars(), want, "{name}");
    }
}

#[test]
fn resnet20_to_56_match_pytorch() {
    for n in ["resnet20", "resnet32", "resnet44", "resnet56"] {
        check_network(n);
    }
}

#[test]
fn resnet110_matches_pytorch() {
    check_network("resnet110");
}

#[test]
fn resnet18_matches_pytorch() {
    check_network("resnet18");
}

#[test]
fn vgg11_matches_pytorch() {
    check_network("vgg11");
}

#[test]
fn vgg19_matches_pytorch_on_grey_images() {
    check_network("vgg19");
}

#[test]
fn mobilenetv2_matches_pytorch() {
    check_network("mobilenetv2");
}

#[test]
fn googlenet_matches_pytorch() {
    check_network("googlenet");
}
