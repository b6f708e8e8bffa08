//! End-to-end training on real (bundled) data: DSNNs learn, runs are
//! reproducible, divergence is reported, weights round-trip.

use candle_core::Device;
use dsnn_core::data::{load_dataset, read_cifar10_batches, Augment, Batcher, DatasetName, Splits};
use dsnn_core::optim::{OptimizerKind, OptimizerSettings};
use dsnn_core::train::{evaluate, train, TrainConfig};
use dsnn_core::{
    backbone_by_name, CoreError, Forward, ModelSpec, ShiftEnd, ShiftSettings, ShiftType,
};
use std::path::Path;

fn bundled(name: &str, dataset: DatasetName) -> Splits {
    load_dataset(
        dataset,
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../data")
            .join(name),
        0,
    )
    .unwrap()
}

fn spec(
    backbone: &str,
    shift: Option<ShiftType>,
    seed: u64,
) -> (Box<dyn dsnn_core::Backbone>, ModelSpec) {
    let b = backbone_by_name(backbone).unwrap();
    let spec = ModelSpec {
        input: b.default_input(),
        classes: 10,
        shift: shift.map(|t| ShiftSettings {
            shift_type: t,
            ..Default::default()
        }),
        shift_depth: 1000,
        shift_end: ShiftEnd::Output,
        seed,
        arch: Default::default(),
    };
    (b, spec)
}

fn cfg(epochs: usize, kind: OptimizerKind, lr: f64) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 64,
        test_batch_size: 500,
        optimizer: OptimizerSettings {
            kind,
            lr,
            momentum: 0.9,
            weight_decay: 1e-4,
        },
        cosine_schedule: true,
        seed: 3,
    }
}

fn cfg_b32(epochs: usize, kind: OptimizerKind, lr: f64) -> TrainConfig {
    TrainConfig {
        batch_size: 32,
        ..cfg(epochs, kind, lr)
    }
}

fn batcher(s: &Splits) -> Batcher {
    Batcher {
        normalization: s.train.channel_stats(),
        augment: Augment::default(),
    }
}

#[test]
fn deepshift_q_and_ps_learn_the_digits() {
    let d = bundled("digits", DatasetName::Digits);
    // PS parameters start on integers and must move by 0.5 before a weight
    // changes, so PS needs an adaptive optimiser to learn in a few steps.
    for (t, kind, lr) in [
        (ShiftType::Q, OptimizerKind::SGD, 0.05),
        (ShiftType::PS, OptimizerKind::Adam, 0.03),
    ] {
        let (b, spec) = spec("digits_cnn", Some(t), 1);
        let net = b.build(&spec, &Device::Cpu).unwrap();
        let mut epochs = 0;
        let mut c = cfg(4, kind, lr);
        c.batch_size = 32;
        let report = train(
            net.as_ref(),
            &d.train,
            &d.test,
            &batcher(&d),
            &c,
            &Device::Cpu,
            &mut |_| epochs += 1,
        )
        .unwrap();
        assert_eq!(epochs, 4);
        let acc = report.final_validation().unwrap().accuracy;
        assert!(acc > 0.90, "{t}: test accuracy {acc}");
        assert!(report.epochs[3].train_loss < report.epochs[0].train_loss);
    }
}

#[test]
fn lenet_deepshift_q_learns_fashion_mnist_subset() {
    let f = bundled("fashion-mnist-small", DatasetName::FashionMnist);
    let train_set = f.train.head(3000);
    let (b, mut spec) = spec("lenet5", Some(ShiftType::Q), 0);
    spec.shift.as_mut().unwrap().weight_bits = 5;
    let net = b.build(&spec, &Device::Cpu).unwrap();
    let report = train(
        net.as_ref(),
        &train_set,
        &f.test,
        &batcher(&f),
        &cfg(2, OptimizerKind::SGD, 0.05),
        &Device::Cpu,
        &mut |_| {},
    )
    .unwrap();
    let acc = report.final_validation().unwrap().accuracy;
    assert!(acc > 0.72, "test accuracy {acc}");
}

#[test]
fn every_optimizer_reduces_the_loss() {
    let d = bundled("digits", DatasetName::Digits);
    let train_set = d.train.head(1024);
    for kind in OptimizerKind::ALL {
        let (b, spec) = spec("digits_cnn", Some(ShiftType::Q), 2);
        let net = b.build(&spec, &Device::Cpu).unwrap();
        let lr = match kind {
            OptimizerKind::SGD | OptimizerKind::Adagrad => 0.05,
            OptimizerKind::Adadelta => 1.0,
            OptimizerKind::RMSprop => 0.001,
            OptimizerKind::RAdam | OptimizerKind::Ranger => 0.01,
            _ => 0.003,
        };
        let before = evaluate(net.as_ref(), &train_set, &batcher(&d), 1024, &Device::Cpu)
            .unwrap()
            .loss;
        train(
            net.as_ref(),
            &train_set,
            &d.test,
            &batcher(&d),
            &cfg_b32(3, kind, lr),
            &Device::Cpu,
            &mut |_| {},
        )
        .unwrap();
        let after = evaluate(net.as_ref(), &train_set, &batcher(&d), 1024, &Device::Cpu)
            .unwrap()
            .loss;
        assert!(after < 0.7 * before, "{kind}: loss {before} -> {after}");
    }
}

#[test]
fn same_seed_gives_the_same_network() {
    let d = bundled("digits", DatasetName::Digits);
    let run = |seed: u64| {
        let (b, mut spec) = spec("digits_cnn", Some(ShiftType::Q), seed);
        spec.shift.as_mut().unwrap().rounding = dsnn_core::Rounding::Stochastic;
        let net = b.build(&spec, &Device::Cpu).unwrap();
        let r = train(
            net.as_ref(),
            &d.train.head(640),
            &d.test,
            &batcher(&d),
            &cfg(1, OptimizerKind::Adam, 0.01),
            &Device::Cpu,
            &mut |_| {},
        )
        .unwrap();
        let w = net.params().named_tensors()["fc2.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        (
            r.epochs[0].train_loss,
            r.final_validation().unwrap().accuracy,
            w,
        )
    };
    let a = run(5);
    assert_eq!(a, run(5));
    assert_ne!(a.2, run(6).2);
}

#[test]
fn a_diverging_run_is_reported_as_failed() {
    let d = bundled("digits", DatasetName::Digits);
    let (b, spec) = spec("digits_cnn", None, 0);
    let net = b.build(&spec, &Device::Cpu).unwrap();
    let mut c = cfg(2, OptimizerKind::SGD, 1e30);
    c.cosine_schedule = false;
    let err = train(
        net.as_ref(),
        &d.train.head(256),
        &d.test,
        &batcher(&d),
        &c,
        &Device::Cpu,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, CoreError::Diverged { .. }), "{err}");
    assert!(err.to_string().contains("diverged"));
}

#[test]
fn resnet20_fits_the_cifar10_sample() {
    let shared = std::env::var_os("DSNN_SHARED_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    let dir = shared.join("cifar10-sample");
    let file = dir.join("test_batch_first20.bin");
    if !file.is_file() {
        eprintln!("SKIPPED: {} not found", file.display());
        return;
    }
    let data = read_cifar10_batches(&[file]).unwrap();
    let batcher = Batcher {
        normalization: data.channel_stats(),
        augment: Augment::default(),
    };
    let (b, spec) = spec("resnet20", Some(ShiftType::PS), 0);
    let net = b.build(&spec, &Device::Cpu).unwrap();
    let mut c = cfg(60, OptimizerKind::Adam, 0.05);
    c.batch_size = 20;
    let report = train(
        net.as_ref(),
        &data,
        &data,
        &batcher,
        &c,
        &Device::Cpu,
        &mut |_| {},
    )
    .unwrap();
    let first = report.epochs[0].train_loss;
    let last = report.epochs.last().unwrap();
    assert!(
        last.train_loss < 0.1 * first,
        "loss {first} -> {}",
        last.train_loss
    );
    assert_eq!(last.train_accuracy, 1.0, "the 20 images are fitted");
}

#[test]
fn saved_weights_reload_to_the_same_predictions() {
    let d = bundled("digits", DatasetName::Digits);
    let (b, spec1) = spec("digits_cnn", Some(ShiftType::PS), 4);
    let net = b.build(&spec1, &Device::Cpu).unwrap();
    train(
        net.as_ref(),
        &d.train.head(256),
        &d.test,
        &batcher(&d),
        &cfg(1, OptimizerKind::SGD, 0.05),
        &Device::Cpu,
        &mut |_| {},
    )
    .unwrap();
    let path =
        std::env::temp_dir().join(format!("dsnn-weights-{}.safetensors", std::process::id()));
    net.params().save(&path).unwrap();
    let (_, spec2) = spec("digits_cnn", Some(ShiftType::PS), 99);
    let other = b.build(&spec2, &Device::Cpu).unwrap();
    let (x, _) = batcher(&d)
        .batch(&d.test, &[0, 1, 2, 3], None, &Device::Cpu)
        .unwrap();
    let logits = |n: &dyn dsnn_core::Network| {
        n.forward(&x, Forward::eval())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_ne!(logits(net.as_ref()), logits(other.as_ref()));
    other.params().load(&path).unwrap();
    assert_eq!(logits(net.as_ref()), logits(other.as_ref()));
    // A file from another architecture is refused with the tensor's name.
    let (lb, lspec) = spec("lenet5", Some(ShiftType::PS), 0);
    let lenet = lb.build(&lspec, &Device::Cpu).unwrap();
    let err = lenet.params().load(&path).unwrap_err().to_string();
    assert!(err.contains("conv1") && err.contains("shape"), "{err}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn backbones_count_their_convertible_layers() {
    // ResNet20: the stem and 18 block convolutions (option-A shortcuts have
    // none); LeNet-5 and the digits CNN: two convolutions each.
    for (name, n) in [("resnet20", 19), ("lenet5", 2), ("digits_cnn", 2)] {
        let b = backbone_by_name(name).unwrap();
        assert_eq!(b.num_convertible_layers(&Default::default()), n, "{name}");
        assert_eq!(b.conv_layers(&Default::default()).len(), n, "{name}");
    }
}

#[test]
fn the_cosine_schedule_falls_from_the_rate_to_zero() {
    use dsnn_core::train::cosine_lr;
    assert_eq!(cosine_lr(0.1, 0, 100, true), 0.1);
    assert!((cosine_lr(0.1, 50, 100, true) - 0.05).abs() < 1e-15);
    assert!((cosine_lr(0.1, 25, 100, true) - 0.05 * (1.0 + 0.5f64.sqrt())).abs() < 1e-15);
    assert!(cosine_lr(0.1, 100, 100, true).abs() < 1e-15);
    // Monotone in between; switched off, the rate stays.
    let rates: Vec<f64> = (0..=100).map(|s| cosine_lr(0.1, s, 100, true)).collect();
    assert!(rates.windows(2).all(|w| w[1] <= w[0]));
    assert_eq!(cosine_lr(0.1, 70, 100, false), 0.1);
}

#[test]
fn op_profile_counts_lenet_work() {
    let (b, mut spec) = spec("lenet5", Some(ShiftType::Q), 0);
    spec.shift_depth = 1;
    let p = b.op_profile(&spec).unwrap();
    // conv1 24x24x20x25, conv2 8x8x50x500, fc1 800x500, fc2 500x10.
    assert_eq!(p.total_macs(), 288_000 + 1_600_000 + 400_000 + 5_000);
    assert_eq!(p.shift_macs(), 1_600_000 + 400_000 + 5_000);
    assert_eq!(p.shift_layer_count(), 3);
    let conv2 = p.layers.iter().find(|l| l.name == "conv2").unwrap();
    assert_eq!(
        (conv2.weight_bits, conv2.activation_bits, conv2.params),
        (5, 32, 25_000)
    );
    let float = b
        .op_profile(&ModelSpec {
            shift: None,
            ..spec
        })
        .unwrap();
    assert_eq!(float.shift_macs(), 0);
    // conv1 stays float (500 weights x 32 bits); the rest are 5-bit shifts.
    assert_eq!(
        p.weight_storage_bits(),
        500 * 32 + (25_000 + 400_000 + 5_000) * 5
    );
    assert_eq!(
        float.weight_storage_bits(),
        (500 + 25_000 + 400_000 + 5_000) * 32
    );
}

#[test]
fn op_profile_reports_resnet20_work_and_the_configured_bit_widths() {
    use dsnn_core::quant::{FixedPoint, Rounding};
    use dsnn_energy::LayerKind;
    let b = backbone_by_name("resnet20").unwrap();
    let spec = |depth: usize| ModelSpec {
        input: b.default_input(),
        classes: 10,
        shift: Some(ShiftSettings {
            shift_type: ShiftType::Q,
            weight_bits: 6,
            rounding: Rounding::Deterministic,
            activation: FixedPoint {
                integer_bits: 8,
                fraction_bits: 4,
            },
        }),
        shift_depth: depth,
        shift_end: ShiftEnd::Output,
        seed: 0,
        arch: Default::default(),
    };
    // Stem 32x32x16x27; stage 1: six 32x32x16x144; stages 2 and 3: one
    // strided convolution and five more, 1,179,648 + 5 x 2,359,296 each;
    // the linear layer 64 x 10.
    let conv = 32 * 32 * 16 * 27 + 6 * 2_359_296 + 2 * (1_179_648 + 5 * 2_359_296);
    assert_eq!(conv, 40_550_400);
    let all = b.op_profile(&spec(1000)).unwrap();
    assert_eq!(all.total_macs(), conv + 640);
    assert_eq!(all.shift_macs(), all.total_macs());
    assert_eq!(all.shift_layer_count(), 20);
    for l in all
        .layers
        .iter()
        .filter(|l| matches!(l.kind, LayerKind::Conv2d | LayerKind::Linear))
    {
        assert!(l.shift, "{}", l.name);
        // 6-bit weights; 8 + 4 activation bits (not a float layer's 32).
        assert_eq!((l.weight_bits, l.activation_bits), (6, 12), "{}", l.name);
    }
    // Five convolutions from the output end: the last five of stage 3.
    let five = b.op_profile(&spec(5)).unwrap();
    assert_eq!(five.total_macs(), conv + 640);
    assert_eq!(five.shift_macs(), 5 * 2_359_296 + 640);
    assert_eq!(five.shift_layer_count(), 6);
    let stem = five.layers.iter().find(|l| l.name == "conv1").unwrap();
    assert!(!stem.shift);
    assert_eq!((stem.weight_bits, stem.activation_bits), (32, 32));
}
