//! DeepShift semantics against golden values computed with a PyTorch
//! re-implementation of the reference code (`tests/data/deepshift.json`,
//! copied from the project's shared golden cases).

use candle_core::{Device, Tensor, Var};
use dsnn_core::layers::{Forward, NetBuilder, ShiftEnd, ShiftSettings, ShiftType};
use dsnn_core::quant::{ps_weight, quantize_q, round_to_fixed, FixedPoint, Rounding};
use dsnn_core::{backbone_by_name, ModelSpec};
use serde_json::Value;
use std::collections::HashSet;

fn golden() -> Value {
    serde_json::from_str(include_str!("data/deepshift.json")).expect("golden json")
}

fn floats(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(a) => a.iter().flat_map(floats).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap() as f32],
        other => panic!("not a number: {other}"),
    }
}

fn dims(v: &Value) -> Vec<usize> {
    let mut d = Vec::new();
    let mut cur = v;
    while let Value::Array(a) = cur {
        d.push(a.len());
        cur = &a[0];
    }
    d
}

fn tensor(v: &Value) -> Tensor {
    Tensor::from_vec(floats(v), dims(v), &Device::Cpu).unwrap()
}

fn assert_exact(name: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g == w || (g.is_nan() && w.is_nan()),
            "{name}[{i}]: got {g}, want {w}"
        );
    }
}

fn assert_close(name: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{name}[{i}]: got {g}, want {w}"
        );
    }
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn round_to_fixed_matches_golden() {
    let g = golden();
    let inputs = floats(&g["round_to_fixed"]["inputs"]);
    let cases = g["round_to_fixed"]["cases"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let (i, f) = (
            case["integer_bits"].as_u64().unwrap() as u32,
            case["fraction_bits"].as_u64().unwrap() as u32,
        );
        let got: Vec<f32> = inputs.iter().map(|&x| round_to_fixed(x, i, f)).collect();
        assert_exact(
            &format!("round_to_fixed({i},{f})"),
            &got,
            &floats(&case["output"]),
        );
    }
}

#[test]
fn q_weight_matches_golden() {
    let g = golden();
    let inputs = floats(&g["q_weight"]["inputs"]);
    for case in g["q_weight"]["cases"].as_array().unwrap() {
        let bits = case["weight_bits"].as_u64().unwrap() as u32;
        let got: Vec<f32> = inputs
            .iter()
            .map(|&w| quantize_q(w, bits, Rounding::Deterministic, 0.0))
            .collect();
        assert_exact(&format!("q_weight({bits})"), &got, &floats(&case["output"]));
    }
}

#[test]
fn ps_weight_matches_golden() {
    let g = golden();
    let shift = floats(&g["ps_weight"]["shift"]);
    let sign = floats(&g["ps_weight"]["sign"]);
    for case in g["ps_weight"]["cases"].as_array().unwrap() {
        let bits = case["weight_bits"].as_u64().unwrap() as u32;
        let got: Vec<f32> = shift
            .iter()
            .zip(&sign)
            .map(|(&s, &g)| ps_weight(s, g, bits, Rounding::Deterministic, 0.0, 0.0))
            .collect();
        assert_exact(
            &format!("ps_weight({bits})"),
            &got,
            &floats(&case["weight"]),
        );
    }
}

/// Builds one layer of the golden case and overwrites its parameters.
struct GoldenLayer {
    builder: NetBuilder,
}

impl GoldenLayer {
    fn new(shift_type: ShiftType, bits: u32, act: (u32, u32), conv_name: Option<&str>) -> Self {
        let settings = ShiftSettings {
            shift_type,
            weight_bits: bits,
            rounding: Rounding::Deterministic,
            activation: FixedPoint {
                integer_bits: act.0,
                fraction_bits: act.1,
            },
        };
        let convert: HashSet<String> = conv_name.into_iter().map(String::from).collect();
        GoldenLayer {
            builder: NetBuilder::new(0, &Device::Cpu, Some(settings), convert, Default::default()),
        }
    }
    fn var(&self, name: &str) -> Var {
        self.builder
            .store
            .params()
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no param {name}"))
            .var
            .clone()
    }
    fn set(&self, name: &str, v: &Value) {
        self.var(name).set(&tensor(v)).unwrap();
    }
}

fn weighted_sum(y: &Tensor, g: &Value) -> Tensor {
    (y * tensor(g)).unwrap().sum_all().unwrap()
}

#[test]
fn linear_q_layer_matches_golden() {
    let g = golden();
    let c = &g["layers"]["linear_q"];
    let e = &c["expect"];
    let mut gl = GoldenLayer::new(ShiftType::Q, 5, (16, 16), None);
    let layer = gl.builder.linear("fc", 3, 2).unwrap();
    gl.set("fc.weight", &c["weight"]);
    gl.set("fc.bias", &c["bias"]);
    gl.builder.store.project().unwrap();
    assert_exact(
        "weight_after_forward",
        &flat(gl.var("fc.weight").as_tensor()),
        &floats(&e["weight_after_forward"]),
    );
    assert_exact(
        "weight_quantized",
        &flat(&layer.effective_weight().unwrap()),
        &floats(&e["weight_quantized"]),
    );
    let x = Var::from_tensor(&tensor(&c["input"])).unwrap();
    let y = layer.forward_with(x.as_tensor(), Forward::train()).unwrap();
    assert_exact("output", &flat(&y), &floats(&e["output"]));
    let grads = weighted_sum(&y, &c["grad_output"]).backward().unwrap();
    assert_exact(
        "grad_weight",
        &flat(grads.get(gl.var("fc.weight").as_tensor()).unwrap()),
        &floats(&e["grad_weight"]),
    );
    assert_exact(
        "grad_input",
        &flat(grads.get(x.as_tensor()).unwrap()),
        &floats(&e["grad_input"]),
    );
    assert_exact(
        "grad_bias",
        &flat(grads.get(gl.var("fc.bias").as_tensor()).unwrap()),
        &floats(&e["grad_bias"]),
    );
}

#[test]
fn linear_ps_layer_matches_golden() {
    let g = golden();
    let c = &g["layers"]["linear_ps"];
    let e = &c["expect"];
    let mut gl = GoldenLayer::new(ShiftType::PS, 5, (16, 16), None);
    let layer = gl.builder.linear("fc", 3, 2).unwrap();
    gl.set("fc.shift", &c["shift"]);
    gl.set("fc.sign", &c["sign"]);
    gl.set("fc.bias", &c["bias"]);
    gl.builder.store.project().unwrap();
    assert_exact(
        "shift_after_forward",
        &flat(gl.var("fc.shift").as_tensor()),
        &floats(&e["shift_after_forward"]),
    );
    assert_exact(
        "weight",
        &flat(&layer.effective_weight().unwrap()),
        &floats(&e["weight"]),
    );
    let x = Var::from_tensor(&tensor(&c["input"])).unwrap();
    let y = layer.forward_with(x.as_tensor(), Forward::train()).unwrap();
    assert_exact("output", &flat(&y), &floats(&e["output"]));
    let grads = weighted_sum(&y, &c["grad_output"]).backward().unwrap();
    assert_close(
        "grad_shift",
        &flat(grads.get(gl.var("fc.shift").as_tensor()).unwrap()),
        &floats(&e["grad_shift"]),
        1e-6,
    );
    assert_close(
        "grad_sign",
        &flat(grads.get(gl.var("fc.sign").as_tensor()).unwrap()),
        &floats(&e["grad_sign"]),
        1e-6,
    );
    assert_exact(
        "grad_input",
        &flat(grads.get(x.as_tensor()).unwrap()),
        &floats(&e["grad_input"]),
    );
    assert_exact(
        "grad_bias",
        &flat(grads.get(gl.var("fc.bias").as_tensor()).unwrap()),
        &floats(&e["grad_bias"]),
    );
}

fn conv_case(key: &str, shift_type: ShiftType) {
    let g = golden();
    let c = &g["layers"][key];
    let e = &c["expect"];
    let bits = c["weight_bits"].as_u64().unwrap() as u32;
    let act = floats(&c["act_bits"]);
    let mut gl = GoldenLayer::new(
        shift_type,
        bits,
        (act[0] as u32, act[1] as u32),
        Some("conv"),
    );
    let geometry = dsnn_core::conv::ConvGeometry {
        stride: c["stride"].as_u64().unwrap() as usize,
        padding: c["padding"].as_u64().unwrap() as usize,
    };
    let layer = gl.builder.conv2d("conv", 1, 1, 2, geometry, true).unwrap();
    match shift_type {
        ShiftType::Q => gl.set("conv.weight", &c["weight"]),
        ShiftType::PS => {
            gl.set("conv.shift", &c["shift"]);
            gl.set("conv.sign", &c["sign"]);
        }
        ShiftType::Float => unreachable!("the golden layer cases are Q or PS"),
    }
    gl.set("conv.bias", &c["bias"]);
    gl.builder.store.project().unwrap();
    let wkey = if shift_type == ShiftType::Q {
        "weight_quantized"
    } else {
        "weight"
    };
    assert_exact(
        wkey,
        &flat(&layer.effective_weight().unwrap()),
        &floats(&e[wkey]),
    );
    if shift_type == ShiftType::PS {
        assert_exact(
            "shift_after_forward",
            &flat(gl.var("conv.shift").as_tensor()),
            &floats(&e["shift_after_forward"]),
        );
    }
    let x = Var::from_tensor(&tensor(&c["input"])).unwrap();
    let y = layer.forward_with(x.as_tensor(), Forward::train()).unwrap();
    assert_exact("output", &flat(&y), &floats(&e["output"]));
    let grads = weighted_sum(&y, &c["grad_output"]).backward().unwrap();
    assert_exact(
        "grad_input",
        &flat(grads.get(x.as_tensor()).unwrap()),
        &floats(&e["grad_input"]),
    );
    assert_exact(
        "grad_bias",
        &flat(grads.get(gl.var("conv.bias").as_tensor()).unwrap()),
        &floats(&e["grad_bias"]),
    );
    match shift_type {
        ShiftType::Q => assert_exact(
            "grad_weight",
            &flat(grads.get(gl.var("conv.weight").as_tensor()).unwrap()),
            &floats(&e["grad_weight"]),
        ),
        ShiftType::PS => {
            assert_close(
                "grad_shift",
                &flat(grads.get(gl.var("conv.shift").as_tensor()).unwrap()),
                &floats(&e["grad_shift"]),
                1e-6,
            );
            assert_exact(
                "grad_sign",
                &flat(grads.get(gl.var("conv.sign").as_tensor()).unwrap()),
                &floats(&e["grad_sign"]),
            );
        }
        ShiftType::Float => unreachable!("the golden layer cases are Q or PS"),
    }
}

#[test]
fn conv_q_layer_matches_golden() {
    conv_case("conv_q", ShiftType::Q);
}

#[test]
fn conv_ps_layer_matches_golden() {
    conv_case("conv_ps", ShiftType::PS);
}

#[test]
fn shift_depth_matches_reference_convention() {
    let g = golden();
    let examples = g["shift_depth"]["examples"].as_object().unwrap();
    assert!(examples.len() >= 6);
    for (key, ex) in examples {
        let (model, depth) = key.rsplit_once("_shift_depth_").unwrap();
        let backbone = backbone_by_name(model).unwrap();
        let spec = ModelSpec {
            input: backbone.default_input(),
            classes: 10,
            shift: Some(ShiftSettings::default()),
            shift_depth: depth.parse().unwrap(),
            shift_end: ShiftEnd::Output,
            seed: 0,
            arch: Default::default(),
        };
        let net = backbone.build(&spec, &Device::Cpu).unwrap();
        let mut got = net.shift_layers();
        got.sort();
        let mut want: Vec<String> = ex["converted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        want.sort();
        assert_eq!(got, want, "{key}");
        let counted = ex["counted"].as_u64().unwrap() as usize;
        let convs = got.iter().filter(|n| n.contains("conv")).count();
        assert_eq!(convs, counted, "{key}: counted conv layers");
    }
}

#[test]
fn shift_depth_from_input_end_converts_first_layers() {
    let backbone = backbone_by_name("resnet20").unwrap();
    let spec = ModelSpec {
        input: backbone.default_input(),
        classes: 10,
        shift: Some(ShiftSettings::default()),
        shift_depth: 2,
        shift_end: ShiftEnd::Input,
        seed: 0,
        arch: Default::default(),
    };
    let net = backbone.build(&spec, &Device::Cpu).unwrap();
    assert_eq!(
        net.shift_layers(),
        vec!["conv1", "layer1.0.conv1", "linear"]
    );
}
