//! The training step's fused CPU ops outside the convolutions against the
//! compositions they replace: batch norm + residual + ReLU as one node,
//! batch norm's backward with the ReLU mask applied on the fly, and the
//! option-A shortcut as one op. Values and every gradient they pass back.

mod common;
use common::{flat, max_rel_diff, projected_grads, random};

use candle_core::{Device, Tensor, Var};
use dsnn_core::batchnorm::{BatchNormAddRelu, BatchNormTrain};
use dsnn_core::layers::{ConvEngine, Forward, NetBuilder};
use dsnn_core::ops::add_relu;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Input shapes: planes shorter and longer than the 16 summing lanes, not
/// multiples of them, several planes per parallel task and a 2-D input.
const SHAPES: [&[usize]; 5] = [
    &[4, 3, 5, 5],
    &[3, 4, 8, 8],
    &[2, 3, 33, 33],
    &[5, 2, 1, 1],
    &[9, 3],
];

fn train_bn(x: &Tensor, gamma: &Tensor, beta: &Tensor, relu: bool) -> (Tensor, (Tensor, Tensor)) {
    let stats = Arc::new(Mutex::new(None));
    let op = BatchNormTrain {
        eps: 1e-5,
        stats: stats.clone(),
        relu,
    };
    let y = x.apply_op3(gamma, beta, op).unwrap();
    let s = stats.lock().unwrap().take().unwrap();
    (y, s)
}

/// Shifted and scaled random values, so that means and variances are not 0 and 1.
fn activations(rng: &mut StdRng, shape: &[usize]) -> Var {
    Var::from_tensor(
        &(random(rng, shape) * 1.7)
            .unwrap()
            .affine(1.0, 0.3)
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn batch_norm_add_relu_equals_batch_norm_then_add_relu() {
    let mut rng = StdRng::seed_from_u64(11);
    for shape in SHAPES {
        let c = shape[1];
        let x = activations(&mut rng, shape);
        let s = Var::from_tensor(&random(&mut rng, shape)).unwrap();
        let gamma = Var::from_tensor(&random(&mut rng, &[c])).unwrap();
        let beta = Var::from_tensor(&random(&mut rng, &[c])).unwrap();
        let stats = Arc::new(Mutex::new(None));
        let gamma_beta = Tensor::cat(&[gamma.as_tensor(), beta.as_tensor()], 0).unwrap();
        let fused = x
            .as_tensor()
            .apply_op3(
                s.as_tensor(),
                &gamma_beta,
                BatchNormAddRelu {
                    eps: 1e-5,
                    stats: stats.clone(),
                },
            )
            .unwrap();
        let (bn, (mean, var)) = train_bn(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), false);
        let composed = add_relu(&bn, s.as_tensor()).unwrap();
        // The same roundings in the same order: bit for bit.
        assert_eq!(flat(&fused), flat(&composed), "{shape:?}");
        let (fused_mean, fused_var) = stats.lock().unwrap().take().unwrap();
        assert_eq!(flat(&fused_mean), flat(&mean));
        assert_eq!(flat(&fused_var), flat(&var));
        let (g1, g2) = projected_grads(&mut rng, &fused, &composed);
        for (name, v) in [("x", &x), ("s", &s), ("gamma", &gamma), ("beta", &beta)] {
            let d = max_rel_diff(
                &flat(g1.get(v.as_tensor()).unwrap()),
                &flat(g2.get(v.as_tensor()).unwrap()),
            );
            assert!(d < 1e-5, "{shape:?} {name}: {d}");
        }
    }
}

#[test]
fn batch_norm_with_fused_relu_has_the_gradients_of_batch_norm_then_relu() {
    let mut rng = StdRng::seed_from_u64(12);
    for shape in SHAPES {
        let c = shape[1];
        let x = activations(&mut rng, shape);
        let gamma = Var::from_tensor(&random(&mut rng, &[c])).unwrap();
        let beta = Var::from_tensor(&random(&mut rng, &[c])).unwrap();
        let (fused, _) = train_bn(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), true);
        let (bn, _) = train_bn(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), false);
        // candle's own ReLU: its backward is candle's, not dsnn's mask.
        let composed = bn.relu().unwrap();
        assert_eq!(flat(&fused), flat(&composed), "{shape:?}");
        let (g1, g2) = projected_grads(&mut rng, &fused, &composed);
        for (name, v) in [("x", &x), ("gamma", &gamma), ("beta", &beta)] {
            let d = max_rel_diff(
                &flat(g1.get(v.as_tensor()).unwrap()),
                &flat(g2.get(v.as_tensor()).unwrap()),
            );
            assert!(d < 1e-5, "{shape:?} {name}: {d}");
        }
    }
}

/// `x[:, :, ::2, ::2]` zero-padded by `pad` channels each side, from candle ops.
fn option_a_reference(x: &Tensor, pad: usize) -> Tensor {
    let (n, _, h, w) = x.dims4().unwrap();
    let even = |len: usize| Tensor::arange_step(0u32, len as u32, 2, &Device::Cpu).unwrap();
    let sub = x
        .index_select(&even(h), 2)
        .unwrap()
        .index_select(&even(w), 3)
        .unwrap();
    let zeros = Tensor::zeros((n, pad, h / 2, w / 2), x.dtype(), x.device()).unwrap();
    Tensor::cat(&[&zeros, &sub, &zeros], 1).unwrap()
}

#[test]
fn option_a_shortcut_equals_subsampling_and_zero_padding() {
    let mut rng = StdRng::seed_from_u64(13);
    for (shape, pad) in [
        ([2usize, 4, 6, 8], 2usize),
        ([3, 3, 2, 2], 1),
        ([1, 2, 4, 4], 0),
    ] {
        let x = Var::from_tensor(&random(&mut rng, &shape)).unwrap();
        let ours = dsnn_core::ops::shortcut_option_a(x.as_tensor(), pad).unwrap();
        let reference = option_a_reference(x.as_tensor(), pad);
        assert_eq!(ours.dims(), reference.dims());
        assert_eq!(flat(&ours), flat(&reference), "{shape:?}");
        let (g1, g2) = projected_grads(&mut rng, &ours, &reference);
        assert_eq!(
            flat(g1.get(x.as_tensor()).unwrap()),
            flat(g2.get(x.as_tensor()).unwrap()),
            "{shape:?} gradient"
        );
    }
    // Odd sides are an error, not a panic.
    let odd = random(&mut rng, &[1, 2, 5, 4]);
    assert!(dsnn_core::ops::shortcut_option_a(&odd, 1).is_err());
}

/// The layer-level switch: `nn::batch_norm_add_relu` in plain training
/// (fused) gives the values, gradients and running statistics of the
/// unfused path it takes while tracing.
#[test]
fn residual_end_is_the_same_fused_or_not() {
    let mut rng = StdRng::seed_from_u64(14);
    let shape = [4usize, 3, 6, 6];
    let x = activations(&mut rng, &shape);
    let s = Var::from_tensor(&random(&mut rng, &shape)).unwrap();
    let build = || {
        let mut b = NetBuilder::new(0, &Device::Cpu, None, HashSet::new(), ConvEngine::Dsnn);
        let bn = b.batch_norm("bn", 3).unwrap();
        (bn, b.store)
    };
    let (bn_fused, store_fused) = build();
    let (bn_plain, store_plain) = build();
    let shortcut = || Ok(s.as_tensor().clone());
    let fused = dsnn_core::nn::batch_norm_add_relu(
        &bn_fused,
        x.as_tensor(),
        shortcut,
        "b",
        Forward::train(),
    )
    .unwrap();
    let trace = Mutex::new(Vec::new());
    let traced = Forward {
        train: true,
        trace: Some(&trace),
        graph: None,
    };
    let plain = dsnn_core::nn::batch_norm_add_relu(&bn_plain, x.as_tensor(), shortcut, "b", traced)
        .unwrap();
    assert_eq!(flat(&fused), flat(&plain));
    let (fused_buffers, plain_buffers) = (store_fused.named_tensors(), store_plain.named_tensors());
    for name in ["bn.running_mean", "bn.running_var"] {
        assert_eq!(
            flat(&fused_buffers[name]),
            flat(&plain_buffers[name]),
            "{name}"
        );
    }
    let (g1, g2) = projected_grads(&mut rng, &fused, &plain);
    for (name, v) in [("x", &x), ("s", &s)] {
        let d = max_rel_diff(
            &flat(g1.get(v.as_tensor()).unwrap()),
            &flat(g2.get(v.as_tensor()).unwrap()),
        );
        assert!(d < 1e-5, "{name}: {d}");
    }
    // Batch norm's own parameters, found by name in each store.
    for p in ["bn.weight", "bn.bias"] {
        let find = |store: &dsnn_core::params::ParamStore| {
            store
                .params()
                .iter()
                .find(|q| q.name == p)
                .unwrap()
                .var
                .as_tensor()
                .clone()
        };
        let d = max_rel_diff(
            &flat(g1.get(&find(&store_fused)).unwrap()),
            &flat(g2.get(&find(&store_plain)).unwrap()),
        );
        assert!(d < 1e-5, "{p}: {d}");
    }
}
