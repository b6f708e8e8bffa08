//! dsnn's convolution paths against candle's stock conv2d, forward and both
//! gradients, on shapes that reach each path: the input gradient as a
//! forward convolution of `dy` with the flipped weight (stride 1, padding
//! within the kernel's reach, no more output than input channels per
//! group) and the im2col + col2im path (stride 2, more output channels,
//! padding beyond the kernel's reach), with batch 1, channel counts that are
//! not multiples of 16, odd image sizes, groups, and batches large enough to
//! be split over tasks and unfolded several samples at once; with and
//! without the fused rounding of the input. Tolerance: 1e-5 of the largest
//! reference magnitude (the paths sum in different orders), as in
//! `gradients.rs`.

mod common;
use common::{flat, max_rel_diff, projected_grads, random};

use candle_core::{Device, Tensor, Var};
use dsnn_core::conv::{conv2d_with, ConvGeometry, ConvOptions};
use dsnn_core::quant::{round_to_fixed, FixedPoint};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// One case: shapes, geometry and groups.
#[derive(Debug, Clone, Copy)]
struct Case {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    k: usize,
    stride: usize,
    padding: usize,
    groups: usize,
}

const fn case(
    n: usize,
    cin: usize,
    (h, w): (usize, usize),
    cout: usize,
    k: usize,
    (stride, padding): (usize, usize),
    groups: usize,
) -> Case {
    Case {
        n,
        cin,
        h,
        w,
        cout,
        k,
        stride,
        padding,
        groups,
    }
}

const CASES: [Case; 13] = [
    // ResNet20's layer shapes, batch 1 and a batch split over tasks.
    case(1, 16, (32, 32), 16, 3, (1, 1), 1),
    case(37, 16, (16, 16), 32, 3, (1, 1), 1),
    case(33, 64, (8, 8), 64, 3, (1, 1), 1),
    case(5, 16, (16, 16), 32, 3, (2, 1), 1),
    // Odd channel counts and image sizes, padding 0 and 2, padding 3 of a
    // 3x3 kernel (beyond its reach: the im2col input gradient).
    case(3, 17, (7, 9), 5, 3, (1, 1), 1),
    case(2, 9, (11, 6), 13, 5, (1, 2), 1),
    case(4, 8, (9, 9), 3, 3, (1, 0), 1),
    case(2, 11, (5, 5), 7, 2, (1, 1), 1),
    case(2, 5, (4, 6), 3, 3, (1, 3), 1),
    // Few channels and a 1x1 kernel.
    case(3, 3, (8, 8), 16, 3, (1, 1), 1),
    case(2, 24, (6, 6), 8, 1, (1, 0), 1),
    // Groups with 8 and 16 channels each.
    case(3, 16, (8, 8), 8, 3, (1, 1), 2),
    case(2, 32, (10, 6), 32, 3, (1, 1), 2),
];

/// Forward and both gradients of dsnn's conv on `x` against candle's on
/// `x_ref` (the same input, rounded when dsnn rounds it itself).
fn check(c: Case, input_quant: Option<FixedPoint>, rng: &mut StdRng) {
    let x = random(rng, &[c.n, c.cin, c.h, c.w]);
    let x_ref = match input_quant {
        None => x.clone(),
        Some(q) => {
            let v: Vec<f32> = flat(&x)
                .iter()
                .map(|&v| round_to_fixed(v, q.integer_bits, q.fraction_bits))
                .collect();
            Tensor::from_vec(v, x.dims(), &Device::Cpu).unwrap()
        }
    };
    let (x, x_ref) = (
        Var::from_tensor(&x).unwrap(),
        Var::from_tensor(&x_ref).unwrap(),
    );
    let wt = Var::from_tensor(&random(rng, &[c.cout, c.cin / c.groups, c.k, c.k])).unwrap();
    let options = ConvOptions {
        groups: c.groups,
        input_quant,
        ..ConvOptions::plain(ConvGeometry {
            stride: c.stride,
            padding: c.padding,
        })
    };
    let ours = conv2d_with(x.as_tensor(), wt.as_tensor(), options).unwrap();
    let theirs = x_ref
        .as_tensor()
        .conv2d(wt.as_tensor(), c.padding, c.stride, 1, c.groups)
        .unwrap();
    assert_eq!(ours.dims(), theirs.dims(), "{c:?}");
    let d = max_rel_diff(&flat(&ours), &flat(&theirs));
    assert!(d < 1e-5, "forward {c:?} {input_quant:?}: {d}");
    let (g1, g2) = projected_grads(rng, &ours, &theirs);
    for (name, a, b) in [
        ("dx", g1.get(x.as_tensor()), g2.get(x_ref.as_tensor())),
        ("dw", g1.get(wt.as_tensor()), g2.get(wt.as_tensor())),
    ] {
        let (a, b) = (flat(a.unwrap()), flat(b.unwrap()));
        let d = max_rel_diff(&a, &b);
        assert!(d < 1e-5, "{name} {c:?} {input_quant:?}: {d}");
    }
}

#[test]
fn every_conv_path_matches_candle_forward_and_backward() {
    let mut rng = StdRng::seed_from_u64(19);
    for c in CASES {
        check(c, None, &mut rng);
    }
}

#[test]
fn fused_input_rounding_matches_rounding_first_on_every_path() {
    let mut rng = StdRng::seed_from_u64(20);
    let q = FixedPoint {
        integer_bits: 2,
        fraction_bits: 4,
    };
    for c in CASES {
        check(c, Some(q), &mut rng);
    }
}

/// The same input convolved alone and inside a larger batch gives the
/// same output bit for bit: unfolding several samples side by side must
/// not let them see each other's values.
#[test]
fn samples_do_not_leak_into_each_other() {
    let mut rng = StdRng::seed_from_u64(21);
    let c = case(40, 16, (8, 8), 16, 3, (1, 1), 1);
    let x = random(&mut rng, &[c.n, c.cin, c.h, c.w]);
    let wt = random(&mut rng, &[c.cout, c.cin, c.k, c.k]);
    let options = ConvOptions::plain(ConvGeometry {
        stride: 1,
        padding: 1,
    });
    let all = conv2d_with(&x, &wt, options).unwrap();
    for i in [0, 7, 39] {
        let one = conv2d_with(&x.narrow(0, i, 1).unwrap(), &wt, options).unwrap();
        let from_all = all.narrow(0, i, 1).unwrap();
        assert_eq!(flat(&one), flat(&from_all), "sample {i}");
    }
}
