//! Every built-in network trains: a few DeepShift-PS steps on a tiny batch
//! of random images lower its loss (small images keep this quick; the
//! comparison with PyTorch is in `torch_networks.rs`).

mod common;

use candle_core::{Device, Tensor};
use dsnn_core::optim::{Optimizer, OptimizerKind, OptimizerSettings};
use dsnn_core::train::train_step;
use dsnn_core::{
    backbone_by_name, InputShape, ModelSpec, Network, ShiftEnd, ShiftSettings, ShiftType,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn spec(channels: usize, side: usize, shift_type: ShiftType) -> ModelSpec {
    ModelSpec {
        input: InputShape {
            channels,
            height: side,
            width: side,
        },
        classes: 4,
        shift: Some(ShiftSettings {
            shift_type,
            ..Default::default()
        }),
        shift_depth: usize::MAX,
        shift_end: ShiftEnd::Output,
        seed: 7,
        arch: Default::default(),
    }
}

/// The losses of `steps` Adam steps on one batch of `n` random images
/// (seeded: candle's `randn` draws from an unseeded generator, which made
/// the outcome differ from run to run).
fn losses(net: &dyn Network, spec: &ModelSpec, n: usize, steps: usize) -> Vec<f32> {
    let InputShape {
        channels,
        height,
        width,
    } = spec.input;
    let x = common::random(
        &mut StdRng::seed_from_u64(11),
        &[n, channels, height, width],
    );
    let y = Tensor::from_vec(
        (0..n as u32).map(|i| i % spec.classes as u32).collect(),
        n,
        &Device::Cpu,
    )
    .unwrap();
    let mut opt = Optimizer::new(
        OptimizerSettings {
            kind: OptimizerKind::Adam,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 0.0,
        },
        net.params().params().len(),
    )
    .unwrap();
    net.params().project().unwrap();
    (0..steps)
        .map(|_| train_step(net, &mut opt, &x, &y, 0.01).unwrap().0)
        .collect()
}

fn assert_learns(name: &str, channels: usize, side: usize, shift_type: ShiftType) {
    let spec = spec(channels, side, shift_type);
    let net = backbone_by_name(name)
        .unwrap()
        .build(&spec, &Device::Cpu)
        .unwrap();
    let l = losses(net.as_ref(), &spec, 8, 8);
    assert!(l.iter().all(|v| v.is_finite()), "{name}: {l:?}");
    let (first, last) = (l[0], *l.last().unwrap());
    eprintln!("{name} {shift_type}: {l:?}");
    assert!(
        last < 0.8 * first,
        "{name} {shift_type}: loss {first} -> {last} ({l:?})"
    );
}

#[test]
fn cifar_resnets_learn() {
    for name in ["resnet32", "resnet44", "resnet56", "resnet110"] {
        assert_learns(name, 3, 8, ShiftType::PS);
    }
    // 28x28 grey images (MNIST's shape).
    assert_learns("resnet20", 1, 28, ShiftType::Q);
}

#[test]
fn resnet18_learns() {
    assert_learns("resnet18", 3, 8, ShiftType::PS);
}

#[test]
fn vgg_learns() {
    assert_learns("vgg11", 3, 8, ShiftType::PS);
    assert_learns("vgg19", 1, 8, ShiftType::Q);
}

#[test]
fn mobilenetv2_learns() {
    assert_learns("mobilenetv2", 3, 8, ShiftType::PS);
}

#[test]
fn googlenet_learns() {
    assert_learns("googlenet", 3, 8, ShiftType::Q);
}

#[test]
fn every_backbone_takes_28x28_grey_images() {
    // MNIST's shape: global pooling (and, for VGG, leaving out the pooling
    // of a 1-pixel map) lets the CIFAR networks take it unchanged.
    let spec = spec(1, 28, ShiftType::PS);
    let x = common::random(&mut StdRng::seed_from_u64(11), &[1, 1, 28, 28]);
    for b in dsnn_core::builtin_backbones() {
        let net = b.build(&spec, &Device::Cpu).unwrap();
        let y = net.forward(&x, dsnn_core::Forward::eval()).unwrap();
        assert_eq!(y.dims(), &[1, spec.classes], "{}", b.name());
        let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|v| v.is_finite()), "{}: {v:?}", b.name());
    }
}
