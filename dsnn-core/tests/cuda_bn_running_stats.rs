//! Batch norm's batch statistics come back as tensors on the input's device
//! (on a GPU they never go through the host) and `BatchNorm2d` folds them
//! into its running statistics as PyTorch does: momentum 0.1, the unbiased
//! variance. Checked against a double-precision reference on the CPU and,
//! with the `cuda` feature and a usable GPU, on `cuda:0` too (skipped with a
//! message where there is none).

use candle_core::{Device, Tensor};
use dsnn_core::batchnorm::BatchNormTrain;
use dsnn_core::layers::{Forward, NetBuilder};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

const N: usize = 5;
const C: usize = 3;
const HW: usize = 7;

/// A batch whose channels have different means and spreads.
fn batch(step: usize) -> Vec<f32> {
    (0..N * C * HW)
        .map(|i| {
            let c = (i / HW) % C;
            let wobble = ((i * 7919 + step * 104_729) % 1000) as f32 / 1000.0 - 0.5;
            (c as f32 + 1.0) * 2.0 * wobble + c as f32 * 3.0 - step as f32
        })
        .collect()
}

/// Per-channel mean and biased variance in f64.
fn reference_stats(x: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let mut mean = vec![0f64; C];
    let mut var = vec![0f64; C];
    let count = (N * HW) as f64;
    for (i, &v) in x.iter().enumerate() {
        mean[(i / HW) % C] += f64::from(v) / count;
    }
    for (i, &v) in x.iter().enumerate() {
        let c = (i / HW) % C;
        var[c] += (f64::from(v) - mean[c]).powi(2) / count;
    }
    (mean, var)
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn assert_close(name: &str, got: &[f32], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(g) - w).abs();
        assert!(
            err <= rel * w.abs().max(1.0),
            "{name}[{i}]: {g} against {w} (error {err:e})"
        );
    }
}

/// The whole check on `dev`.
fn running_statistics_follow_pytorch_on(dev: &Device) {
    // The op hands back the batch statistics as tensors on x's device.
    let x = batch(0);
    let xt = Tensor::from_vec(x.clone(), (N, C, HW, 1), dev).unwrap();
    let gamma = Tensor::ones(C, candle_core::DType::F32, dev).unwrap();
    let beta = Tensor::zeros(C, candle_core::DType::F32, dev).unwrap();
    let stats = Arc::new(Mutex::new(None));
    xt.apply_op3(
        &gamma,
        &beta,
        BatchNormTrain {
            eps: 1e-5,
            stats: stats.clone(),
            relu: false,
        },
    )
    .unwrap();
    let (mean, var) = stats
        .lock()
        .unwrap()
        .take()
        .expect("the op sets the statistics");
    assert!(mean.device().same_device(dev) && var.device().same_device(dev));
    assert_eq!((mean.dims(), var.dims()), (&[C][..], &[C][..]));
    let (want_mean, want_var) = reference_stats(&x);
    assert_close("batch mean", &values(&mean), &want_mean, 1e-5);
    assert_close("batch variance", &values(&var), &want_var, 1e-5);

    // Three training steps of the layer: running = 0.9 running + 0.1 batch,
    // with the unbiased variance, from mean 0 and variance 1.
    let mut b = NetBuilder::new(1, dev, None, HashSet::new(), Default::default());
    let bn = b.batch_norm("bn", C).unwrap();
    let (mut run_mean, mut run_var) = (vec![0f64; C], vec![1f64; C]);
    let unbiased = (N * HW) as f64 / (N * HW - 1) as f64;
    for step in 0..3 {
        let x = batch(step);
        let xt = Tensor::from_vec(x.clone(), (N, C, HW, 1), dev).unwrap();
        bn.forward_with(&xt, Forward::train()).unwrap();
        let (m, v) = reference_stats(&x);
        for c in 0..C {
            run_mean[c] = 0.9 * run_mean[c] + 0.1 * m[c];
            run_var[c] = 0.9 * run_var[c] + 0.1 * v[c] * unbiased;
        }
    }
    let tensors = b.store.named_tensors();
    let (rm, rv) = (&tensors["bn.running_mean"], &tensors["bn.running_var"]);
    assert!(rm.device().same_device(dev) && rv.device().same_device(dev));
    assert_close("running mean", &values(rm), &run_mean, 1e-5);
    assert_close("running variance", &values(rv), &run_var, 1e-5);
}

#[test]
fn running_statistics_follow_pytorch_on_the_cpu() {
    running_statistics_follow_pytorch_on(&Device::Cpu);
}

#[cfg(feature = "cuda")]
#[test]
fn running_statistics_follow_pytorch_on_a_gpu() {
    match dsnn_core::device::select_str("cuda:0") {
        Ok((dev, _)) => running_statistics_follow_pytorch_on(&dev),
        Err(e) => eprintln!("skipped: no usable GPU ({e})"),
    }
}
