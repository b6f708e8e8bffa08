//! Fuzzing the integer-model reader with property tests: byte-mutated
//! files (which the checksum should refuse), files whose description or
//! tensors were edited behind a fresh checksum (so that every field check
//! is reached), and arbitrary bytes must load or give a clean error, never
//! panic or allocate what a field announces. A model that loads must run:
//! the engine and the reference agree on its logits for random images.
//!
//! `DSNN_FUZZ_CASES` sets the cases per property (default 256, a few
//! seconds); see docs/reliability.md for the long run.

mod common;

use common::model_file::{join, split, Parts};
use common::*;
use dsnn_core::{InputShape, ShiftType};
use dsnn_infer::reference::reference_logits;
use dsnn_infer::{EngineOptions, IntModel};
use proptest::prelude::*;
use proptest::test_runner::Config;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};
use std::sync::LazyLock;

fn config() -> Config {
    let cases = std::env::var("DSNN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Valid model files: a DeepShift-Q digits CNN (convolutions, max pool,
/// linear layers, biases) and a DeepShift-PS ResNet20 on 3x8x8 images
/// (folded batch norms, residuals, global pooling).
static MODELS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let grey = InputShape {
        channels: 1,
        height: 8,
        width: 8,
    };
    let colour = InputShape {
        channels: 3,
        height: 8,
        width: 8,
    };
    let (cnn, cnn_spec) = build("digits_cnn", ShiftType::Q, 4, (8, 8), grey, 11);
    let (res, res_spec) = build("resnet20", ShiftType::PS, 5, (8, 8), colour, 12);
    randomize_batch_norm(res.as_ref(), 12);
    [(cnn, cnn_spec), (res, res_spec)]
        .iter()
        .map(|(net, spec)| {
            IntModel::from_network(net.as_ref(), spec)
                .unwrap()
                .to_bytes()
                .unwrap()
        })
        .collect()
});

/// A model that loaded runs on two random images, and the engine agrees
/// with the reference: whatever the reader accepts, the kernels can take.
fn run(model: &IntModel, seed: u64) {
    let per = model.input.channels * model.input.height * model.input.width;
    let mut rng = StdRng::seed_from_u64(seed);
    let images: Vec<f32> = (0..2 * per).map(|_| rng.random_range(-3.0..3.0)).collect();
    let x = model.quantize_input(&images);
    let logits = model
        .infer_quantized(x.clone(), 2, &EngineOptions::default())
        .expect("a model that loads runs");
    assert_eq!(
        logits.values,
        reference_logits(model, &x, 2).values,
        "engine and reference disagree"
    );
}

fn load_and_run(bytes: &[u8], seed: u64) {
    if let Ok(model) = IntModel::from_bytes(bytes) {
        run(&model, seed);
    }
}

/// Edge values for a number in the description.
fn edge_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (0u64..10).prop_map(|v| json!(v)),
        2 => prop::sample::select(vec![
            json!(16),
            json!(31),
            json!(32),
            json!(33),
            json!(60),
            json!(62),
            json!(63),
            json!(64),
            json!(200),
            json!(1u64 << 24),
            json!(1u64 << 31),
            json!(1u64 << 32),
            json!(1u64 << 53),
            json!(1u64 << 63),
            json!(u64::MAX),
            json!(-1),
            json!(0.5),
            json!(1e300),
        ]),
        1 => any::<u64>().prop_map(|v| json!(v)),
    ]
}

/// An edit of the model description or its tensors, behind a fresh checksum.
#[derive(Debug, Clone)]
enum Edit {
    /// The `k`-th number in the description set to a value.
    Number(usize, Value),
    /// The `k`-th number nudged by one either way.
    Nudge(usize, bool),
    /// The `k`-th boolean negated.
    Negate(usize),
    /// A step removed, or duplicated in place.
    Step(usize, bool),
    /// A tensor's byte XORed.
    Byte(usize, usize, u8),
    /// A tensor cut or grown by some bytes.
    Resize(usize, isize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), edge_number()).prop_map(|(k, v)| Edit::Number(k, v)),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(k, up)| Edit::Nudge(k, up)),
        1 => any::<usize>().prop_map(Edit::Negate),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(k, dup)| Edit::Step(k, dup)),
        2 => (0usize..4, any::<usize>(), 1u8..=255).prop_map(|(t, i, x)| Edit::Byte(t, i, x)),
        1 => (0usize..4, -16isize..16).prop_map(|(t, n)| Edit::Resize(t, n)),
    ]
}

/// The `k`-th (modulo their count) leaf of `doc` that `pick` selects.
fn nth_leaf(doc: &mut Value, k: usize, pick: fn(&Value) -> bool) -> Option<&mut Value> {
    fn collect<'a>(v: &'a mut Value, pick: fn(&Value) -> bool, out: &mut Vec<&'a mut Value>) {
        match v {
            Value::Array(a) => a.iter_mut().for_each(|x| collect(x, pick, out)),
            Value::Object(o) => o.values_mut().for_each(|x| collect(x, pick, out)),
            leaf if pick(leaf) => out.push(leaf),
            _ => {}
        }
    }
    let mut leaves = Vec::new();
    collect(doc, pick, &mut leaves);
    let n = leaves.len();
    (n > 0).then(|| leaves.swap_remove(k % n))
}

fn apply(parts: &mut Parts, e: &Edit) {
    let d = &mut parts.description;
    match e {
        Edit::Number(k, v) => {
            if let Some(leaf) = nth_leaf(d, *k, Value::is_number) {
                *leaf = v.clone();
            }
        }
        Edit::Nudge(k, up) => {
            if let Some(leaf) = nth_leaf(d, *k, Value::is_number) {
                if let Some(x) = leaf.as_i64() {
                    *leaf = json!(if *up {
                        x.saturating_add(1)
                    } else {
                        x.saturating_sub(1)
                    });
                }
            }
        }
        Edit::Negate(k) => {
            if let Some(leaf) = nth_leaf(d, *k, Value::is_boolean) {
                *leaf = json!(!leaf.as_bool().unwrap());
            }
        }
        Edit::Step(k, dup) => {
            if let Some(steps) = d["steps"].as_array_mut().filter(|s| !s.is_empty()) {
                let i = k % steps.len();
                if *dup {
                    let s = steps[i].clone();
                    steps.insert(i, s);
                } else {
                    steps.remove(i);
                }
            }
        }
        Edit::Byte(t, i, x) => {
            let b = &mut parts.tensors[*t];
            if !b.is_empty() {
                let i = i % b.len();
                b[i] ^= x;
            }
        }
        Edit::Resize(t, n) => {
            let b = &mut parts.tensors[*t];
            // Whole elements only: a tensor's bytes must be a multiple of its type.
            let unit = common::model_file::TENSORS[*t].1.bitsize() / 8;
            let len = b.len() as isize + n * unit as isize;
            b.resize(len.max(0) as usize, 0x5a);
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Edits behind a fresh checksum reach every check of the reader.
    #[test]
    fn edited_models_load_or_fail_cleanly(
        which in 0usize..2,
        edits in prop::collection::vec(edit(), 1..4),
        seed in any::<u64>(),
    ) {
        let mut parts = split(&MODELS[which]);
        for e in &edits {
            apply(&mut parts, e);
        }
        load_and_run(&join(&parts), seed);
    }

    /// Raw byte edits (the safetensors header, the metadata, the data):
    /// refused by the format or the checksum, never a panic.
    #[test]
    fn byte_mutated_models_load_or_fail_cleanly(
        which in 0usize..2,
        flips in prop::collection::vec((any::<usize>(), 1u8..=255), 1..4),
        cut in prop::option::weighted(0.2, any::<usize>()),
        seed in any::<u64>(),
    ) {
        let mut bytes = MODELS[which].clone();
        for (at, x) in flips {
            let i = at % bytes.len();
            bytes[i] ^= x;
        }
        if let Some(c) = cut {
            bytes.truncate(c % (bytes.len() + 1));
        }
        load_and_run(&bytes, seed);
    }

    /// Arbitrary bytes, and an arbitrary header length prefix.
    #[test]
    fn arbitrary_bytes_load_or_fail_cleanly(
        header_len in prop::option::of(any::<u64>()),
        body in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = header_len.map(|n| n.to_le_bytes().to_vec()).unwrap_or_default();
        bytes.extend(body);
        let _ = IntModel::from_bytes(&bytes);
    }
}

/// The edits reach the model: a good share of edited files still load
/// (else the fuzzing above would only test the first checks), and the
/// unedited ones load and run.
#[test]
fn edited_models_often_load() {
    use proptest::strategy::ValueTree;
    for bytes in MODELS.iter() {
        run(&IntModel::from_bytes(bytes).unwrap(), 1);
    }
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = (0usize..2, edit());
    let mut loaded = 0;
    for _ in 0..500 {
        let (which, e) = strategy.new_tree(&mut runner).unwrap().current();
        let mut parts = split(&MODELS[which]);
        apply(&mut parts, &e);
        loaded += usize::from(IntModel::from_bytes(&join(&parts)).is_ok());
    }
    eprintln!("{loaded} of 500 edited models load");
    assert!(loaded >= 50, "{loaded} of 500 edited models load");
}
