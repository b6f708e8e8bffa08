//! The shift layers are candle modules: they compose with `candle_nn::seq()`
//! and candle's own functions, give the same outputs and gradients as their
//! traced `forward_with`, and batch norm honours `ModuleT`'s training flag.

use candle_core::{DType, Device, Module, ModuleT, Tensor};
use dsnn_core::conv::ConvGeometry;
use dsnn_core::layers::{Conv2dShift, Forward, LinearShift, NetBuilder, ShiftSettings, ShiftType};
use std::collections::HashSet;

fn builder(shift_type: Option<ShiftType>) -> NetBuilder {
    let settings = shift_type.map(|shift_type| ShiftSettings {
        shift_type,
        ..ShiftSettings::default()
    });
    let convert: HashSet<String> = ["conv".to_string()].into();
    NetBuilder::new(7, &Device::Cpu, settings, convert, Default::default())
}

fn input() -> Tensor {
    Tensor::randn(0f32, 1.0, (3, 2, 6, 6), &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Runs `conv -> relu -> flatten -> linear` as a `candle_nn::Sequential`
/// and by hand with `forward_with`; outputs and every parameter's gradient
/// must be identical.
fn sequential_matches_traced_forward(shift_type: Option<ShiftType>) {
    let mut b = builder(shift_type);
    let geometry = ConvGeometry {
        stride: 1,
        padding: 1,
    };
    let conv: Conv2dShift = b.conv2d("conv", 2, 4, 3, geometry, true).unwrap();
    let fc: LinearShift = b.linear("fc", 4 * 6 * 6, 5).unwrap();
    assert_eq!(conv.is_shift(), shift_type.is_some());
    assert_eq!(fc.is_shift(), shift_type.is_some());
    let x = input();

    let by_hand = {
        let h = conv
            .forward_with(&x, Forward::eval())
            .unwrap()
            .relu()
            .unwrap();
        fc.forward_with(&h.flatten_from(1).unwrap(), Forward::eval())
            .unwrap()
    };
    let by_hand_grads = by_hand.sum_all().unwrap().backward().unwrap();

    let net = candle_nn::seq()
        .add(conv)
        .add(candle_nn::Activation::Relu)
        .add_fn(|t| t.flatten_from(1))
        .add(fc);
    let y = net.forward(&x).unwrap();
    assert_eq!(y.dims(), &[3, 5]);
    assert_eq!(values(&y), values(&by_hand));
    assert!(values(&y).iter().all(|v| v.is_finite()));

    let grads = y.sum_all().unwrap().backward().unwrap();
    let params = b.store.params();
    assert!(params.len() >= 4, "conv and linear weights and biases");
    for p in params {
        let g = grads
            .get(p.var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {}", p.name));
        let expected = by_hand_grads.get(p.var.as_tensor()).unwrap();
        assert_eq!(values(g), values(expected), "gradient of {}", p.name);
        assert!(
            values(g).iter().any(|v| *v != 0.0),
            "gradient of {} is all zero",
            p.name
        );
    }
}

#[test]
fn float_layers_compose_with_candle_sequential() {
    sequential_matches_traced_forward(None);
}

#[test]
fn deepshift_q_layers_compose_with_candle_sequential() {
    sequential_matches_traced_forward(Some(ShiftType::Q));
}

#[test]
fn deepshift_ps_layers_compose_with_candle_sequential() {
    sequential_matches_traced_forward(Some(ShiftType::PS));
}

#[test]
fn shift_layer_as_module_uses_power_of_two_weights() {
    let mut b = builder(Some(ShiftType::Q));
    let fc = b.linear("fc", 4, 3).unwrap();
    // A one-hot input row picks out a column of the effective weight.
    let eye = Tensor::eye(4, DType::F32, &Device::Cpu).unwrap();
    let zero = Tensor::zeros((1, 4), DType::F32, &Device::Cpu).unwrap();
    let bias = Module::forward(&fc, &zero).unwrap();
    let cols = Module::forward(&fc, &eye)
        .unwrap()
        .broadcast_sub(&bias)
        .unwrap();
    for w in values(&cols) {
        let exponent = w.abs().log2();
        assert!(
            w == 0.0 || (exponent - exponent.round()).abs() < 1e-6,
            "weight {w} is not a signed power of two"
        );
    }
}

#[test]
fn batch_norm_module_t_follows_the_training_flag() {
    let mut b = builder(None);
    let bn = b.batch_norm("bn", 2).unwrap();
    let x = ((input() * 3.0).unwrap() + 5.0).unwrap();

    // Inference before any training step: running statistics are 0 and 1,
    // so the layer is the identity (up to eps).
    let eval = bn.forward_t(&x, false).unwrap();
    for (a, e) in values(&eval).iter().zip(values(&x)) {
        assert!((a - e / (1.0f32 + 1e-5).sqrt()).abs() < 1e-4);
    }

    // Training: batch statistics, so each channel has mean 0 and variance 1.
    let train = bn.forward_t(&x, true).unwrap();
    let mean = train.mean_keepdim(0).unwrap().mean_keepdim(2).unwrap();
    let mean = values(&mean.mean_keepdim(3).unwrap());
    assert_eq!(mean.len(), 2);
    for m in mean {
        assert!(m.abs() < 1e-4, "channel mean {m}");
    }
    let var = values(
        &train
            .sqr()
            .unwrap()
            .mean_keepdim(0)
            .unwrap()
            .mean_keepdim(2)
            .unwrap()
            .mean_keepdim(3)
            .unwrap(),
    );
    for v in var {
        assert!((v - 1.0).abs() < 1e-3, "channel variance {v}");
    }

    // That step moved the running statistics, so inference changed, and the
    // module agrees with the traced forward in inference mode.
    let after = bn.forward_t(&x, false).unwrap();
    assert_ne!(values(&after), values(&eval));
    let traced = bn.forward_with(&x, Forward::eval()).unwrap();
    assert_eq!(values(&after), values(&traced));
}
