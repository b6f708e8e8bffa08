//! Helpers shared by dsnn-core's test binaries: seeded random tensors and
//! the relative difference the op tests compare with.
// Each test binary uses only some of them.
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::Rng;

/// A CPU tensor of `shape` with values uniform in [-1, 1).
pub fn random(rng: &mut StdRng, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(v, shape.to_vec(), &Device::Cpu).unwrap()
}

/// A tensor's values in order.
pub fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// The largest absolute difference of `a` and `b`, relative to the largest
/// magnitude in the reference `b` (at least 1e-3).
pub fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

/// The gradients of `sum(a * r)` and `sum(b * r)` for one random `r` of
/// `a`'s shape: two implementations of an op compared through every
/// gradient they pass back.
pub fn projected_grads(
    rng: &mut StdRng,
    a: &Tensor,
    b: &Tensor,
) -> (
    candle_core::backprop::GradStore,
    candle_core::backprop::GradStore,
) {
    let r = random(rng, a.dims());
    let grads = |t: &Tensor| (t * &r).unwrap().sum_all().unwrap().backward().unwrap();
    (grads(a), grads(b))
}
