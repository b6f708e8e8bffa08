//! The integer engine against the float-simulated network it was exported
//! from: LeNet-5 DeepShift-Q trained for one epoch on 6,000 images, compared
//! on the full 10,000-image MNIST and Fashion-MNIST test sets.

mod common;

use common::*;
use dsnn_core::data::{load_dataset, Augment, Batcher, DatasetName};
use dsnn_core::optim::{OptimizerKind, OptimizerSettings};
use dsnn_core::train::{train, TrainConfig};
use dsnn_core::ShiftType;
use dsnn_infer::compare::compare;
use dsnn_infer::IntModel;

fn agreement(dataset: DatasetName, shift_type: ShiftType) {
    let Some(dir) = shared_data(&dataset.to_string()) else {
        return;
    };
    let s = load_dataset(dataset, &dir.join(dataset.to_string()), 0).unwrap();
    let (train_set, validation) = s.train.head(6000).split(0.05, 0);
    let (net, spec) = build("lenet5", shift_type, 5, (16, 16), train_set.shape, 0);
    let batcher = Batcher {
        normalization: train_set.channel_stats(),
        augment: Augment::default(),
    };
    let (kind, lr) = match shift_type {
        ShiftType::Q => (OptimizerKind::SGD, 0.1),
        ShiftType::PS | ShiftType::Float => (OptimizerKind::Adam, 0.03),
    };
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 128,
        test_batch_size: 1000,
        optimizer: OptimizerSettings {
            kind,
            lr,
            momentum: 0.9,
            weight_decay: 1e-4,
        },
        cosine_schedule: true,
        seed: 0,
    };
    let dev = candle_core::Device::Cpu;
    train(
        net.as_ref(),
        &train_set,
        &validation,
        &batcher,
        &cfg,
        &dev,
        &mut |_| {},
    )
    .unwrap();
    let model = IntModel::from_network(net.as_ref(), &spec).unwrap();
    let a = compare(net.as_ref(), &model, &s.test, &batcher, 1000).unwrap();
    eprintln!(
        "{dataset} {shift_type}: float {:.2}%, integer {:.2}%, agreement {:.2}%",
        100.0 * a.float_accuracy(),
        100.0 * a.int_accuracy(),
        100.0 * a.agreement()
    );
    assert_eq!(a.images, 10_000);
    // The network learned something, so agreement is not trivial.
    assert!(a.float_accuracy() > 0.6, "{a:?}");
    assert!(a.agreement() >= 0.995, "{a:?}");
    assert!(
        (a.int_accuracy() - a.float_accuracy()).abs() <= 0.002,
        "{a:?}"
    );
}

#[test]
fn lenet5_q_agrees_with_the_float_model_on_mnist() {
    agreement(DatasetName::Mnist, ShiftType::Q);
}

#[test]
fn lenet5_q_agrees_with_the_float_model_on_fashion_mnist() {
    agreement(DatasetName::FashionMnist, ShiftType::Q);
}

#[test]
fn lenet5_ps_agrees_with_the_float_model_on_fashion_mnist() {
    agreement(DatasetName::FashionMnist, ShiftType::PS);
}
