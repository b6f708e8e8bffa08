//! Integer model files from a corrupt disk or a careless edit: the checksum
//! refuses changed bytes, and every field behind it is checked (with a
//! fresh checksum) before it sizes a buffer or reaches a kernel. Export
//! refuses what cannot be an integer model: non-finite parameters, and
//! weights files whose spec asks for an impossible network.

mod common;

use common::model_file::{rewrite, split};
use common::*;
use dsnn_core::{InputShape, ShiftType};
use dsnn_infer::{load_trained, save_trained, IntModel};
use serde_json::{json, Value};

fn grey(side: usize) -> InputShape {
    InputShape {
        channels: 1,
        height: side,
        width: side,
    }
}

/// A DeepShift-Q digits CNN (conv1, conv2, max pool, fc1, fc2), 4-bit weights.
fn digits_file() -> Vec<u8> {
    let (net, spec) = build("digits_cnn", ShiftType::Q, 4, (8, 8), grey(8), 3);
    IntModel::from_network(net.as_ref(), &spec)
        .unwrap()
        .to_bytes()
        .unwrap()
}

/// A DeepShift-PS ResNet20 on 3x8x8 images (folded batch norms, residuals).
fn resnet_file() -> Vec<u8> {
    let shape = InputShape {
        channels: 3,
        height: 8,
        width: 8,
    };
    let (net, spec) = build("resnet20", ShiftType::PS, 5, (8, 8), shape, 4);
    randomize_batch_norm(net.as_ref(), 4);
    IntModel::from_network(net.as_ref(), &spec)
        .unwrap()
        .to_bytes()
        .unwrap()
}

fn load_err(bytes: &[u8]) -> String {
    match IntModel::from_bytes(bytes) {
        Ok(_) => panic!("the file was accepted"),
        Err(e) => e,
    }
}

/// The file with `edit` applied to its model description.
fn edited(bytes: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    rewrite(bytes, |p| edit(&mut p.description))
}

#[test]
fn a_flipped_bit_in_the_data_is_refused_by_the_checksum() {
    let bytes = digits_file();
    IntModel::from_bytes(&bytes).unwrap();
    let data_start = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let data_len = bytes.len() - data_start;
    for k in 0..64 {
        let at = data_start + k * data_len / 64;
        let mut bad = bytes.clone();
        bad[at] ^= 1 << (k % 8);
        let e = load_err(&bad);
        assert!(e.contains("checksum mismatch"), "byte {at}: {e}");
    }
    // A file without the checksum (an older export, or an altered one).
    let parts = split(&bytes);
    let meta = std::collections::HashMap::from([(
        dsnn_infer::model::MODEL_METADATA_KEY.to_string(),
        parts.description.to_string(),
    )]);
    let views: Vec<_> = common::model_file::TENSORS
        .iter()
        .zip(&parts.tensors)
        .map(|((name, dtype), b)| {
            let n = b.len() / (dtype.bitsize() / 8);
            (
                name.to_string(),
                safetensors::tensor::TensorView::new(*dtype, vec![n], b).unwrap(),
            )
        })
        .collect();
    let e = load_err(&safetensors::serialize(views, Some(meta)).unwrap());
    assert!(e.contains("no `dsnn_int_model_crc32` checksum"), "{e}");
}

/// Each field out of range, behind a valid checksum: a clear error naming
/// it (these ran silently, panicked, or asked for an impossible allocation).
#[test]
fn out_of_range_fields_are_refused_naming_the_field() {
    let digits = digits_file();
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|d| d["steps"][0]["layer"]["acc_shift"] = json!(200)),
            "`conv1`: acc_shift 200 (allowed: 0..=62)",
        ),
        (
            Box::new(|d| d["steps"][0]["padding"] = json!(1u64 << 63)),
            "`conv1`: padding 9223372036854775808 for a 3x3 kernel",
        ),
        (
            Box::new(|d| d["steps"][1]["stride"] = json!(0)),
            "`conv2`: stride 0",
        ),
        (Box::new(|d| d["weight_bits"] = json!(0)), "weight_bits 0"),
        (Box::new(|d| d["weight_bits"] = json!(99)), "weight_bits 99"),
        (
            Box::new(|d| d["act"]["integer_bits"] = json!(0)),
            "`act`: 0 integer bits",
        ),
        (
            Box::new(|d| d["act"]["fraction_bits"] = json!(40)),
            "`act`: 8 integer + 40 fraction bits",
        ),
        (
            Box::new(|d| {
                d["input"]["height"] = json!(1u64 << 31);
                d["input"]["width"] = json!(1u64 << 31);
            }),
            "1x2147483648x2147483648 activations per image",
        ),
        (
            Box::new(|d| d["steps"][0]["cin"] = json!(2)),
            "`conv1`: expects 2 channels, gets 1",
        ),
        (
            Box::new(|d| d["steps"][0]["layer"]["packed"]["code_bits"] = json!(40)),
            "`conv1`: 40-bit codes for 4-bit weights",
        ),
        (
            // No bias and no inputs: the reader allocated 2^40 start values.
            Box::new(|d| {
                let fc2 = &mut d["steps"][4];
                fc2["layer"]["fan_in"] = json!(0);
                fc2["layer"]["cout"] = json!(1u64 << 40);
                fc2["epilogue"]["bias"] = json!(false);
            }),
            "`fc2`: expects 0 inputs, gets 64",
        ),
        (
            Box::new(|d| {
                let steps = d["steps"].as_array_mut().unwrap();
                steps.insert(0, json!({"op": "save_residual"}));
            }),
            "`residual`: a saved shortcut is never added",
        ),
        (
            Box::new(|d| {
                d["input_transform"] =
                    json!({"normalization": {"mean": [0.5], "std": [0.0]}, "pixel_max": 255.0})
            }),
            "`input_transform`: standard deviations [0.0]",
        ),
        (
            Box::new(|d| d["shift_type"] = json!("float")),
            "shift type float",
        ),
    ];
    for (edit, want) in cases {
        let e = load_err(&edited(&digits, edit));
        assert!(e.contains(want), "want `{want}`, got: {e}");
    }
    let resnet = resnet_file();
    IntModel::from_bytes(&resnet).unwrap();
    let steps = split(&resnet).description["steps"]
        .as_array()
        .unwrap()
        .clone();
    let bn = steps
        .iter()
        .position(|s| s["epilogue"]["requant"]["kind"] == "affine")
        .unwrap();
    let add = steps
        .iter()
        .position(|s| s["op"] == "add_residual")
        .unwrap();
    let e = load_err(&edited(&resnet, |d| {
        d["steps"][bn]["epilogue"]["requant"]["mul_shift"] = json!(200)
    }));
    assert!(e.contains("batch-norm shifts m = 200"), "{e}");
    let e = load_err(&edited(&resnet, |d| {
        d["steps"][add]["pad"] = json!(u64::MAX)
    }));
    assert!(e.contains("`residual`: shortcut None"), "{e}");
}

/// Codes whose shift the model's weight bits cannot hold (claimed as 3-bit
/// weights with a zero code, but the codes use 4-bit shifts).
#[test]
fn a_code_beyond_the_weight_bits_is_refused() {
    let bytes = edited(&digits_file(), |d| {
        d["weight_bits"] = json!(3);
        for step in d["steps"].as_array_mut().unwrap() {
            if step.get("layer").is_some() {
                step["layer"]["packed"]["zero_code"] = json!(true);
            }
        }
    });
    let e = load_err(&bytes);
    assert!(e.contains("beyond 3-bit weights"), "{e}");
}

/// An accumulator shift the export would never choose: the accumulator
/// could overflow 64 bits (the engine would wrap silently).
#[test]
fn an_accumulator_that_could_overflow_is_refused() {
    let e = load_err(&edited(&digits_file(), |d| {
        d["steps"][4]["layer"]["acc_shift"] = json!(62)
    }));
    assert!(
        e.contains("overflow in layer `fc2`") && e.contains("limit 2^62"),
        "{e}"
    );
}

fn set_param(net: &dyn dsnn_core::Network, name: &str, value: f32) {
    let p = net
        .params()
        .params()
        .iter()
        .find(|p| p.name == name)
        .unwrap();
    let t = p.var.as_tensor();
    let mut v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    v[1] = value;
    let t = candle_core::Tensor::from_vec(v, t.shape(), t.device()).unwrap();
    p.var.set(&t).unwrap();
}

/// An infinite weight or a NaN bias was exported as some integer, and the
/// integer model then disagreed with the float one on most images.
#[test]
fn export_refuses_non_finite_parameters_naming_the_tensor() {
    for (name, value) in [
        ("conv1.weight", f32::INFINITY),
        ("fc1.bias", f32::NAN),
        ("conv2.bias", f32::NEG_INFINITY),
    ] {
        let (net, spec) = build("digits_cnn", ShiftType::Q, 4, (8, 8), grey(8), 5);
        set_param(net.as_ref(), name, value);
        let e = IntModel::from_network(net.as_ref(), &spec)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("`{name}`")) && e.contains(&format!("is {value}")),
            "{e}"
        );
    }
    let (net, spec) = build("lenet5", ShiftType::PS, 4, (8, 8), grey(28), 5);
    set_param(net.as_ref(), "conv2.shift", f32::NAN);
    let e = IntModel::from_network(net.as_ref(), &spec)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`conv2.shift`") && e.contains("is NaN"), "{e}");
}

/// A weights file whose spec declares 2^31 x 2^31 (or 20000 x 20000)
/// images: building its network overflowed a capacity (or asked for
/// 2.5 TB and aborted); it is an error naming the file and the spec.
#[test]
fn a_weights_file_spec_of_impossible_size_is_an_error() {
    let (net, spec) = build("lenet5", ShiftType::Q, 4, (8, 8), grey(28), 6);
    let dir = std::env::temp_dir().join(format!("dsnn-spec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("weights.safetensors");
    for side in [1usize << 31, 20_000] {
        let mut big = spec.clone();
        big.model.input = grey(side);
        save_trained(net.as_ref(), &big, &path).unwrap();
        let e = match load_trained(&path) {
            Ok(_) => panic!("a spec of {side}x{side} images was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(
            e.contains("weights.safetensors")
                && e.contains(&format!("input 1x{side}x{side} is out of range")),
            "{e}"
        );
    }
    let mut many = spec.clone();
    many.model.classes = 1 << 40;
    save_trained(net.as_ref(), &many, &path).unwrap();
    let e = load_trained(&path).err().unwrap().to_string();
    assert!(e.contains("1099511627776 classes are out of range"), "{e}");
    save_trained(net.as_ref(), &spec, &path).unwrap();
    load_trained(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The checksum a model file stores: the CRC-32 of its description and
/// tensors, so equal checksums mean the same model, byte for byte (the
/// safetensors container's metadata order aside).
fn stored_checksum(bytes: &[u8]) -> String {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    meta.metadata().as_ref().unwrap()[dsnn_infer::model::CHECKSUM_METADATA_KEY].clone()
}

/// Networks without the steps added for MobileNetV2 and GoogLeNet export
/// exactly as before them (the checksums below were written by the export
/// of commit b748aa7), so files written earlier are the files written now.
/// (Batch norms keep their initial statistics: `randomize_batch_norm`
/// draws in a hash map's order, which differs between processes.)
#[test]
fn exports_of_earlier_networks_are_unchanged() {
    let shape = InputShape {
        channels: 3,
        height: 8,
        width: 8,
    };
    let export = |name: &str, st, act, seed| {
        let (net, spec) = build(name, st, 5, act, shape, seed);
        IntModel::from_network(net.as_ref(), &spec)
            .unwrap()
            .to_bytes()
            .unwrap()
    };
    for (name, bytes, crc) in [
        ("digits_cnn", digits_file(), "dec03e87"),
        (
            "resnet20",
            export("resnet20", ShiftType::PS, (8, 8), 4),
            "8959ba79",
        ),
        (
            "resnet18",
            export("resnet18", ShiftType::Q, (16, 16), 6),
            "fa1f402a",
        ),
    ] {
        assert_eq!(stored_checksum(&bytes), crc, "{name}");
        // Dense convolutions and residual adds with ReLU carry no new keys.
        let steps = split(&bytes).description["steps"].clone();
        for step in steps.as_array().unwrap() {
            assert!(step.get("groups").is_none(), "{name}: {step}");
            if step["op"] == "add_residual" {
                assert!(step.get("relu").is_none(), "{name}: {step}");
            }
        }
    }
}

/// GoogLeNet's steps in a file load, and their broken fields are refused
/// naming them.
#[test]
fn pooling_concatenation_and_group_fields_are_checked() {
    let shape = InputShape {
        channels: 3,
        height: 4,
        width: 4,
    };
    let (net, spec) = build("googlenet", ShiftType::Q, 4, (8, 8), shape, 5);
    let bytes = IntModel::from_network(net.as_ref(), &spec)
        .unwrap()
        .to_bytes()
        .unwrap();
    IntModel::from_bytes(&bytes).unwrap();
    let steps = split(&bytes).description["steps"]
        .as_array()
        .unwrap()
        .clone();
    let at = |op: &str| steps.iter().position(|s| s["op"] == op).unwrap();
    let (pool, concat) = (at("max_pool"), at("concat"));
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|d| d["steps"][0]["groups"] = json!(0)),
            "`pre_layers.0`: 0 groups for 3 input and 192 output channels",
        ),
        (
            Box::new(|d| d["steps"][0]["groups"] = json!(3)),
            "fan-in 27 is not 1 x 3 x 3",
        ),
        (
            Box::new(move |d| d["steps"][pool]["padding"] = json!(u64::MAX)),
            "padding at most half the window",
        ),
        (
            Box::new(move |d| d["steps"][pool]["kernel"] = json!(1u64 << 40)),
            "pooling of a 4x4 input",
        ),
        (
            Box::new(move |d| d["steps"][pool]["stride"] = json!(0)),
            "stride 0, padding 1",
        ),
        (
            Box::new(move |d| d["steps"][concat]["parts"] = json!(9)),
            "`concat`: 9 parts with 3 saved activations",
        ),
        (
            Box::new(move |d| d["steps"][concat]["parts"] = json!(1)),
            "`concat`: 1 parts",
        ),
    ];
    for (edit, want) in cases {
        let e = load_err(&edited(&bytes, edit));
        assert!(e.contains(want), "want `{want}`, got: {e}");
    }
}
