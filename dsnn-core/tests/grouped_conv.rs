//! Grouped and depthwise convolution, and the convolution's fused input
//! quantisation: against candle's own grouped conv2d, finite differences and
//! the unfused composition.

mod common;
use common::{flat, max_rel_diff, projected_grads, random};

use candle_core::{Device, Tensor, Var};
use dsnn_core::conv::{conv2d, conv2d_grouped, conv2d_with, ConvGeometry, ConvOptions};
use dsnn_core::layers::{ConvEngine, NetBuilder};
use dsnn_core::quant::{FixedPoint, QuantizeActivation};
use dsnn_core::{Forward, ShiftSettings, ShiftType};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashSet;

/// (batch, cin, h, w, cout, k, stride, padding, groups)
type GroupedCase = (
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);

const CASES: [GroupedCase; 8] = [
    // depthwise 3x3, stride 1 and 2 (MobileNetV2's)
    (2, 4, 8, 8, 4, 3, 1, 1, 4),
    (3, 6, 9, 7, 6, 3, 2, 1, 6),
    // depthwise with a channel multiplier of 2
    (2, 3, 6, 6, 6, 3, 1, 1, 3),
    // two and three groups of several channels
    (2, 4, 7, 7, 6, 3, 1, 1, 2),
    (4, 6, 5, 5, 9, 1, 1, 0, 3),
    (2, 4, 10, 10, 4, 5, 1, 2, 2),
    // many samples (several per task and per gemm)
    (17, 4, 4, 4, 4, 3, 1, 1, 4),
    // groups = 1 through the grouped entry point
    (2, 3, 6, 5, 2, 3, 1, 1, 1),
];

#[test]
fn grouped_conv_matches_candle_forward_and_backward() {
    let mut rng = StdRng::seed_from_u64(11);
    for &(n, cin, h, w, cout, k, stride, padding, groups) in &CASES {
        let case = format!("{:?}", (n, cin, h, w, cout, k, stride, padding, groups));
        let x = Var::from_tensor(&random(&mut rng, &[n, cin, h, w])).unwrap();
        let wt = Var::from_tensor(&random(&mut rng, &[cout, cin / groups, k, k])).unwrap();
        let geometry = ConvGeometry { stride, padding };
        let ours = conv2d_grouped(x.as_tensor(), wt.as_tensor(), geometry, groups).unwrap();
        let theirs = x
            .as_tensor()
            .conv2d(wt.as_tensor(), padding, stride, 1, groups)
            .unwrap();
        assert_eq!(ours.dims(), theirs.dims(), "{case}");
        let d = max_rel_diff(&flat(&ours), &flat(&theirs));
        assert!(d < 1e-5, "forward {case}: {d}");
        let (g1, g2) = projected_grads(&mut rng, &ours, &theirs);
        for (name, v) in [("dx", &x), ("dw", &wt)] {
            let a = flat(g1.get(v.as_tensor()).unwrap());
            let b = flat(g2.get(v.as_tensor()).unwrap());
            let d = max_rel_diff(&a, &b);
            assert!(d < 1e-5, "{name} {case}: {d}");
        }
    }
}

/// Central finite differences of `f` at every element of `v`.
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
fn grouped_conv_gradients_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(12);
    for &(n, cin, h, w, cout, k, stride, padding, groups) in &CASES[..6] {
        let x = Var::from_tensor(&random(&mut rng, &[n, cin, h, w])).unwrap();
        let wt = Var::from_tensor(&random(&mut rng, &[cout, cin / groups, k, k])).unwrap();
        let geometry = ConvGeometry { stride, padding };
        let y = conv2d_grouped(x.as_tensor(), wt.as_tensor(), geometry, groups).unwrap();
        let r = random(&mut rng, y.dims());
        let loss = || -> f64 {
            let y = conv2d_grouped(x.as_tensor(), wt.as_tensor(), geometry, groups).unwrap();
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
                (n, cin, h, w, cout, k, stride, padding, groups)
            );
        }
    }
}

#[test]
fn grouped_conv_refuses_channels_that_do_not_split() {
    let mut rng = StdRng::seed_from_u64(13);
    let x = random(&mut rng, &[1, 4, 5, 5]);
    let geometry = ConvGeometry {
        stride: 1,
        padding: 1,
    };
    // 4 input channels, weight for 3 groups of 1: 3 != 4.
    let w = random(&mut rng, &[3, 1, 3, 3]);
    let err = conv2d_grouped(&x, &w, geometry, 3).unwrap_err();
    assert!(err.to_string().contains("groups"), "{err}");
    // 5 output channels do not split into 2 groups.
    let w = random(&mut rng, &[5, 2, 3, 3]);
    let err = conv2d_grouped(&x, &w, geometry, 2).unwrap_err();
    assert!(err.to_string().contains("groups"), "{err}");
    let w = random(&mut rng, &[4, 4, 3, 3]);
    assert!(conv2d_grouped(&x, &w, geometry, 0).is_err());
}

/// The fused quantisation gives exactly the output and weight gradient of
/// quantising first, and passes the input gradient straight through.
#[test]
fn fused_input_quantisation_equals_quantising_first() {
    let mut rng = StdRng::seed_from_u64(14);
    for (fp, groups, stride) in [
        (
            FixedPoint {
                integer_bits: 4,
                fraction_bits: 3,
            },
            1,
            1,
        ),
        (
            FixedPoint {
                integer_bits: 2,
                fraction_bits: 2,
            },
            2,
            2,
        ),
        (
            FixedPoint {
                integer_bits: 1,
                fraction_bits: 5,
            },
            1,
            1,
        ),
        (
            FixedPoint {
                integer_bits: 16,
                fraction_bits: 16,
            },
            4,
            1,
        ),
    ] {
        let x = Var::from_tensor(&(random(&mut rng, &[3, 4, 6, 6]) * 3.0).unwrap()).unwrap();
        let wt = Var::from_tensor(&random(&mut rng, &[4, 4 / groups, 3, 3])).unwrap();
        let geometry = ConvGeometry { stride, padding: 1 };
        let fused = conv2d_with(
            x.as_tensor(),
            wt.as_tensor(),
            ConvOptions {
                geometry,
                groups,
                input_quant: Some(fp),
            },
        )
        .unwrap();
        let xq = x.as_tensor().apply_op1(QuantizeActivation(fp)).unwrap();
        let unfused = conv2d_grouped(&xq, wt.as_tensor(), geometry, groups).unwrap();
        assert_eq!(flat(&fused), flat(&unfused), "{fp:?}");
        let (g1, g2) = projected_grads(&mut rng, &fused, &unfused);
        for v in [&x, &wt] {
            assert_eq!(
                flat(g1.get(v.as_tensor()).unwrap()),
                flat(g2.get(v.as_tensor()).unwrap()),
                "{fp:?}"
            );
        }
    }
}

#[test]
fn grouped_layers_match_candles_engine_for_every_shift_type() {
    for shift_type in [None, Some(ShiftType::Q), Some(ShiftType::PS)] {
        let mut outs = Vec::new();
        for engine in [ConvEngine::Dsnn, ConvEngine::Candle] {
            let shift = shift_type.map(|t| ShiftSettings {
                shift_type: t,
                ..Default::default()
            });
            let convert: HashSet<String> = ["dw".to_string()].into();
            let mut b = NetBuilder::new(3, &Device::Cpu, shift, convert, engine);
            let geometry = ConvGeometry {
                stride: 1,
                padding: 1,
            };
            let layer = b.conv2d_grouped("dw", 6, 6, 3, geometry, 6, true).unwrap();
            assert_eq!(layer.effective_weight().unwrap().dims(), [6, 1, 3, 3]);
            let mut rng = StdRng::seed_from_u64(15);
            let x = Var::from_tensor(&random(&mut rng, &[2, 6, 5, 5])).unwrap();
            let y = layer.forward_with(x.as_tensor(), Forward::train()).unwrap();
            let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            outs.push((flat(&y), flat(grads.get(x.as_tensor()).unwrap())));
        }
        let d = max_rel_diff(&outs[0].0, &outs[1].0);
        assert!(d < 1e-5, "{shift_type:?} forward: {d}");
        let d = max_rel_diff(&outs[0].1, &outs[1].1);
        assert!(d < 1e-5, "{shift_type:?} dx: {d}");
    }
}

#[test]
fn grouped_layer_refuses_channels_that_do_not_split() {
    let mut b = NetBuilder::new(0, &Device::Cpu, None, HashSet::new(), ConvEngine::Dsnn);
    let geometry = ConvGeometry {
        stride: 1,
        padding: 1,
    };
    let err = b
        .conv2d_grouped("bad", 6, 4, 3, geometry, 4, false)
        .unwrap_err();
    assert!(err.to_string().contains("groups"), "{err}");
    assert!(b
        .conv2d_grouped("bad", 6, 6, 3, geometry, 0, false)
        .is_err());
}

#[test]
fn plain_conv_is_grouped_conv_with_one_group() {
    let mut rng = StdRng::seed_from_u64(16);
    let x = random(&mut rng, &[2, 3, 7, 7]);
    let w = random(&mut rng, &[5, 3, 3, 3]);
    let geometry = ConvGeometry {
        stride: 2,
        padding: 1,
    };
    assert_eq!(
        flat(&conv2d(&x, &w, geometry).unwrap()),
        flat(&conv2d_grouped(&x, &w, geometry, 1).unwrap())
    );
}
