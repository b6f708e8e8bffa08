//! The custom convolution and batch-norm ops against finite differences and
//! against candle's own (slower) implementations.

mod common;
use common::{flat, max_rel_diff, projected_grads, random};

use candle_core::{Device, Tensor, Var};
use dsnn_core::batchnorm::BatchNormTrain;
use dsnn_core::conv::{conv2d, ConvGeometry};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::sync::{Arc, Mutex};

/// (batch, cin, h, w, cout, k, stride, padding)
type ConvCase = (usize, usize, usize, usize, usize, usize, usize, usize);

const CASES: [ConvCase; 10] = [
    (2, 3, 8, 8, 4, 3, 1, 1),
    (3, 2, 9, 7, 5, 3, 2, 1),
    (4, 4, 6, 6, 3, 1, 1, 0),
    (2, 3, 10, 10, 2, 5, 1, 0),
    (1, 2, 7, 7, 3, 3, 2, 0),
    (5, 1, 5, 5, 2, 2, 1, 2),
    (17, 2, 4, 4, 2, 3, 1, 1),
    (3, 2, 5, 9, 3, 3, 1, 1),
    (2, 2, 6, 7, 3, 5, 1, 2),
    (2, 1, 3, 8, 2, 3, 1, 1),
];

#[test]
fn conv2d_matches_candle_forward_and_backward() {
    let mut rng = StdRng::seed_from_u64(1);
    for &(n, cin, h, w, cout, k, stride, padding) in &CASES {
        let x = Var::from_tensor(&random(&mut rng, &[n, cin, h, w])).unwrap();
        let wt = Var::from_tensor(&random(&mut rng, &[cout, cin, k, k])).unwrap();
        let geometry = ConvGeometry { stride, padding };
        let ours = conv2d(x.as_tensor(), wt.as_tensor(), geometry).unwrap();
        let theirs = x
            .as_tensor()
            .conv2d(wt.as_tensor(), padding, stride, 1, 1)
            .unwrap();
        assert_eq!(ours.dims(), theirs.dims());
        let case = format!("{:?}", (n, cin, h, w, cout, k, stride, padding));
        assert!(
            max_rel_diff(&flat(&ours), &flat(&theirs)) < 1e-5,
            "forward {case}"
        );
        let (g1, g2) = projected_grads(&mut rng, &ours, &theirs);
        for (name, v) in [("dx", &x), ("dw", &wt)] {
            let a = flat(g1.get(v.as_tensor()).unwrap());
            let b = flat(g2.get(v.as_tensor()).unwrap());
            assert!(
                max_rel_diff(&a, &b) < 1e-5,
                "{name} {case}: {}",
                max_rel_diff(&a, &b)
            );
        }
    }
}

/// Central finite differences of `f` at every element of `v`, in f64 steps.
fn numeric_grad(v: &Var, f: &dyn Fn() -> f64, eps: f32) -> Vec<f32> {
    let base = flat(v.as_tensor());
    let shape = v.shape().clone();
    let mut out = Vec::with_capacity(base.len());
    for i in 0..base.len() {
        let mut p = base.clone();
        p[i] += eps;
        v.set(&Tensor::from_vec(p.clone(), &shape, &Device::Cpu).unwrap())
            .unwrap();
        let up = f();
        p[i] -= 2.0 * eps;
        v.set(&Tensor::from_vec(p, &shape, &Device::Cpu).unwrap())
            .unwrap();
        let down = f();
        out.push(((up - down) / (2.0 * f64::from(eps))) as f32);
    }
    v.set(&Tensor::from_vec(base, &shape, &Device::Cpu).unwrap())
        .unwrap();
    out
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(2);
    for &(n, cin, h, w, cout, k, stride, padding) in &CASES[..5] {
        let x = Var::from_tensor(&random(&mut rng, &[n, cin, h, w])).unwrap();
        let wt = Var::from_tensor(&random(&mut rng, &[cout, cin, k, k])).unwrap();
        let geometry = ConvGeometry { stride, padding };
        let y = conv2d(x.as_tensor(), wt.as_tensor(), geometry).unwrap();
        let r = random(&mut rng, y.dims());
        let loss = || -> f64 {
            let y = conv2d(x.as_tensor(), wt.as_tensor(), geometry).unwrap();
            f64::from(
                (y * &r)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap(),
            )
        };
        let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("dx", &x), ("dw", &wt)] {
            let analytic = flat(grads.get(v.as_tensor()).unwrap());
            let numeric = numeric_grad(v, &loss, 1e-2);
            let d = max_rel_diff(&analytic, &numeric);
            assert!(
                d < 2e-3,
                "{name} {:?}: {d}",
                (n, cin, h, w, cout, k, stride, padding)
            );
        }
    }
}

fn batch_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Tensor {
    let stats = Arc::new(Mutex::new(None));
    x.apply_op3(
        gamma,
        beta,
        BatchNormTrain {
            eps: 1e-5,
            stats,
            relu: false,
        },
    )
    .unwrap()
}

/// Batch norm written with candle's elementwise ops, as a second opinion.
fn batch_norm_reference(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Tensor {
    let c = gamma.dim(0).unwrap();
    let mean = x
        .mean_keepdim(0)
        .unwrap()
        .mean_keepdim(2)
        .unwrap()
        .mean_keepdim(3)
        .unwrap();
    let xc = x.broadcast_sub(&mean).unwrap();
    let var = xc
        .sqr()
        .unwrap()
        .mean_keepdim(0)
        .unwrap()
        .mean_keepdim(2)
        .unwrap()
        .mean_keepdim(3)
        .unwrap();
    let xhat = xc
        .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
        .unwrap();
    xhat.broadcast_mul(&gamma.reshape((1, c, 1, 1)).unwrap())
        .unwrap()
        .broadcast_add(&beta.reshape((1, c, 1, 1)).unwrap())
        .unwrap()
}

#[test]
fn batch_norm_matches_reference_and_finite_differences() {
    let mut rng = StdRng::seed_from_u64(3);
    let x = Var::from_tensor(
        &(random(&mut rng, &[4, 3, 5, 5]) * 2.0)
            .unwrap()
            .affine(1.0, 0.5)
            .unwrap(),
    )
    .unwrap();
    let gamma = Var::from_tensor(&random(&mut rng, &[3])).unwrap();
    let beta = Var::from_tensor(&random(&mut rng, &[3])).unwrap();
    let y = batch_norm(x.as_tensor(), gamma.as_tensor(), beta.as_tensor());
    let y_ref = batch_norm_reference(x.as_tensor(), gamma.as_tensor(), beta.as_tensor());
    assert!(max_rel_diff(&flat(&y), &flat(&y_ref)) < 1e-5);
    let r = random(&mut rng, y.dims());
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let grads_ref = (&y_ref * &r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let loss = || -> f64 {
        let y = batch_norm(x.as_tensor(), gamma.as_tensor(), beta.as_tensor());
        f64::from(
            (y * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
        )
    };
    for (name, v) in [("dx", &x), ("dgamma", &gamma), ("dbeta", &beta)] {
        let analytic = flat(grads.get(v.as_tensor()).unwrap());
        let reference = flat(grads_ref.get(v.as_tensor()).unwrap());
        assert!(
            max_rel_diff(&analytic, &reference) < 1e-4,
            "{name} vs candle ops"
        );
        let numeric = numeric_grad(v, &loss, 1e-2);
        let d = max_rel_diff(&analytic, &numeric);
        assert!(d < 5e-3, "{name} vs finite differences: {d}");
    }
}

/// The fused ops' forward equals candle's; their gradients equal finite
/// differences. (candle 0.11.1's own max-pool backward scales a unique
/// maximum's gradient by 1/4, so it cannot serve as the reference.)
#[test]
fn fused_relu_pool_and_bias_match_candle_and_finite_differences() {
    use dsnn_core::ops::{add_channel_bias, max_pool2x2, relu};
    let mut rng = StdRng::seed_from_u64(4);
    for shape in [[2usize, 3, 6, 6], [3, 2, 7, 5]] {
        let x = Var::from_tensor(&random(&mut rng, &shape)).unwrap();
        let b = Var::from_tensor(&random(&mut rng, &[shape[1]])).unwrap();
        let ours_of = |x: &Tensor, b: &Tensor| {
            relu(&max_pool2x2(&add_channel_bias(x, b).unwrap()).unwrap()).unwrap()
        };
        let ours = ours_of(x.as_tensor(), b.as_tensor());
        let theirs = x
            .as_tensor()
            .broadcast_add(&b.as_tensor().reshape((1, shape[1], 1, 1)).unwrap())
            .unwrap()
            .max_pool2d(2)
            .unwrap()
            .relu()
            .unwrap();
        assert_eq!(ours.dims(), theirs.dims());
        assert_eq!(flat(&ours), flat(&theirs));
        let r = random(&mut rng, ours.dims());
        let grads = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let loss = || -> f64 {
            f64::from(
                (ours_of(x.as_tensor(), b.as_tensor()) * &r)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap(),
            )
        };
        for (name, v) in [("dx", &x), ("db", &b)] {
            let analytic = flat(grads.get(v.as_tensor()).unwrap());
            let numeric = numeric_grad(v, &loss, 1e-3);
            let d = max_rel_diff(&analytic, &numeric);
            assert!(d < 5e-3, "{name} {shape:?}: {d}");
        }
    }
}

/// Batch norm with a fused ReLU, and the fused residual add + ReLU, equal
/// their unfused compositions in value and gradient.
#[test]
fn fused_batch_norm_relu_and_add_relu_equal_their_compositions() {
    use dsnn_core::ops::{add_relu, relu};
    let mut rng = StdRng::seed_from_u64(6);
    let x = Var::from_tensor(&random(&mut rng, &[4, 3, 5, 5])).unwrap();
    let s = Var::from_tensor(&random(&mut rng, &[4, 3, 5, 5])).unwrap();
    let gamma = Var::from_tensor(&random(&mut rng, &[3])).unwrap();
    let beta = Var::from_tensor(&random(&mut rng, &[3])).unwrap();
    let bn = |relu_fused: bool| {
        let stats = Arc::new(Mutex::new(None));
        x.as_tensor()
            .apply_op3(
                gamma.as_tensor(),
                beta.as_tensor(),
                BatchNormTrain {
                    eps: 1e-5,
                    stats,
                    relu: relu_fused,
                },
            )
            .unwrap()
    };
    let fused = add_relu(&bn(true), s.as_tensor()).unwrap();
    let composed = (relu(&bn(false)).unwrap() + s.as_tensor())
        .unwrap()
        .relu()
        .unwrap();
    assert!(max_rel_diff(&flat(&fused), &flat(&composed)) < 1e-6);
    let (g1, g2) = projected_grads(&mut rng, &fused, &composed);
    for (name, v) in [("x", &x), ("s", &s), ("gamma", &gamma), ("beta", &beta)] {
        let d = max_rel_diff(
            &flat(g1.get(v.as_tensor()).unwrap()),
            &flat(g2.get(v.as_tensor()).unwrap()),
        );
        assert!(d < 1e-5, "{name}: {d}");
    }
}
