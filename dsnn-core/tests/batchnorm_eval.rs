//! The fused inference-mode batch norm (`BatchNormEval`) against the
//! composition it replaces (broadcast multiply, broadcast add, ReLU): the
//! forward bit for bit (the same two roundings per element), the backward
//! within 1e-6 of the largest reference gradient.

mod common;
use common::{flat, projected_grads, random};

use candle_core::{Device, Tensor, Var};
use dsnn_core::batchnorm::BatchNormEval;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn composed(x: &Tensor, scale: &Tensor, shift: &Tensor, relu: bool) -> Tensor {
    let shape = (1, scale.dim(0).unwrap(), 1, 1);
    let y = x
        .broadcast_mul(&scale.reshape(shape).unwrap())
        .unwrap()
        .broadcast_add(&shift.reshape(shape).unwrap())
        .unwrap();
    if relu {
        y.relu().unwrap()
    } else {
        y
    }
}

#[test]
fn fused_eval_batch_norm_equals_its_composition() {
    let mut rng = StdRng::seed_from_u64(7);
    // Batch 1, channel counts that are not multiples of 16, planes smaller
    // and larger than one parallel task.
    for &(n, c, h, w) in &[
        (1, 16, 32, 32),
        (3, 7, 3, 5),
        (50, 5, 3, 5),
        (2, 64, 8, 8),
        (4, 3, 1, 1),
    ] {
        for relu in [false, true] {
            let case = format!("{:?} relu {relu}", (n, c, h, w));
            let x = Var::from_tensor(&random(&mut rng, &[n, c, h, w])).unwrap();
            let scale = Var::from_tensor(&random(&mut rng, &[c])).unwrap();
            let shift = Var::from_tensor(&random(&mut rng, &[c])).unwrap();
            let fused = x
                .as_tensor()
                .apply_op3(scale.as_tensor(), shift.as_tensor(), BatchNormEval { relu })
                .unwrap();
            let reference = composed(x.as_tensor(), scale.as_tensor(), shift.as_tensor(), relu);
            assert_eq!(fused.dims(), reference.dims(), "{case}");
            assert_eq!(flat(&fused), flat(&reference), "forward {case}");
            let (g1, g2) = projected_grads(&mut rng, &fused, &reference);
            for (name, v) in [("dx", &x), ("dscale", &scale), ("dshift", &shift)] {
                let a = flat(g1.get(v.as_tensor()).unwrap());
                let b = flat(g2.get(v.as_tensor()).unwrap());
                let top = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
                let d = a
                    .iter()
                    .zip(&b)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0, f32::max);
                assert!(d <= 1e-6 * top, "{name} {case}: {d}");
            }
        }
    }
}

#[test]
fn fused_eval_batch_norm_refuses_a_wrong_channel_count() {
    let x = Tensor::zeros((2, 3, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    let four = Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(x
        .apply_op3(&four, &four, BatchNormEval { relu: false })
        .is_err());
}
