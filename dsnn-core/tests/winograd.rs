//! Winograd F(2x2, 3x3) against the im2col path, on the raw forward
//! (`forward_cpu_with`): ResNet20's layer shapes, odd image sizes down to
//! 1x1, batch 1, channel counts that are not multiples of 16, blocks of
//! tiles that cut across image rows and samples, and the fused rounding of
//! the input. Tolerance: 1e-5 of the largest reference magnitude, as in
//! `conv_paths.rs` (the two sum in different orders; the transforms add and
//! halve only, so the measured error stays near 1e-6, see
//! `examples/conv_layers.rs`). Unsupported shapes (groups, stride 2,
//! padding 0, 5x5 kernels) are refused by `Winograd` and run by `Auto` on
//! im2col; the gradient tests (`conv_paths.rs`, `gradients.rs`) go through
//! `Auto`, so they cover Winograd in the forward and in the flipped-weight
//! input gradient; `winograd_layers_match_candle_forward_and_gradients`
//! checks that on shapes that take it.

mod common;
use common::{flat, max_rel_diff, projected_grads, random};

use candle_core::Var;
use dsnn_core::conv::{conv2d_with, forward_cpu_with, ConvAlgorithm, ConvGeometry, ConvOptions};
use dsnn_core::quant::FixedPoint;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SAME: ConvGeometry = ConvGeometry {
    stride: 1,
    padding: 1,
};

fn values(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Runs both kernels on one shape and returns their relative difference.
fn compare(
    rng: &mut StdRng,
    [n, cin, h, w]: [usize; 4],
    cout: usize,
    input_quant: Option<FixedPoint>,
    algorithm: ConvAlgorithm,
) -> f32 {
    let (xd, wd) = ([n, cin, h, w], [cout, cin, 3, 3]);
    let x = values(rng, xd.iter().product());
    let wt = values(rng, wd.iter().product());
    let options = ConvOptions {
        input_quant,
        ..ConvOptions::plain(SAME)
    };
    let reference = forward_cpu_with(&x, xd, &wt, wd, options, ConvAlgorithm::Im2col).unwrap();
    let ours = forward_cpu_with(&x, xd, &wt, wd, options, algorithm).unwrap();
    assert_eq!(ours.len(), n * cout * h * w);
    max_rel_diff(&ours, &reference)
}

#[test]
fn winograd_matches_im2col_on_resnet_and_odd_shapes() {
    let mut rng = StdRng::seed_from_u64(21);
    let shapes: [([usize; 4], usize); 14] = [
        ([1, 16, 32, 32], 16),
        ([37, 16, 32, 32], 16),
        ([19, 32, 16, 16], 32),
        ([33, 64, 8, 8], 64),
        ([3, 17, 7, 9], 5),
        ([2, 5, 9, 7], 19),
        ([4, 3, 1, 1], 2),
        ([2, 4, 1, 6], 3),
        ([3, 6, 5, 2], 7),
        ([1, 1, 3, 3], 1),
        ([5, 20, 33, 31], 24),
        ([2, 16, 35, 70], 8),
        ([129, 16, 4, 4], 16),
        ([7, 40, 11, 13], 33),
    ];
    for (xd, cout) in shapes {
        let d = compare(&mut rng, xd, cout, None, ConvAlgorithm::Winograd);
        assert!(d < 1e-5, "{xd:?} -> {cout}: {d}");
    }
}

#[test]
fn winograd_rounds_the_input_like_im2col() {
    let mut rng = StdRng::seed_from_u64(22);
    let q = FixedPoint {
        integer_bits: 2,
        fraction_bits: 4,
    };
    for (xd, cout) in [
        ([3, 16, 16, 16], 16),
        ([2, 9, 7, 5], 4),
        ([1, 32, 8, 8], 32),
    ] {
        let d = compare(&mut rng, xd, cout, Some(q), ConvAlgorithm::Winograd);
        assert!(d < 1e-5, "{xd:?} -> {cout}: {d}");
    }
}

#[test]
fn auto_picks_a_kernel_that_matches_im2col() {
    let mut rng = StdRng::seed_from_u64(23);
    for (xd, cout) in [
        ([4, 16, 32, 32], 16),
        ([4, 3, 32, 32], 16),
        ([2, 64, 4, 4], 64),
    ] {
        let d = compare(&mut rng, xd, cout, None, ConvAlgorithm::Auto);
        assert!(d < 1e-5, "{xd:?} -> {cout}: {d}");
    }
}

#[test]
fn winograd_refuses_shapes_it_does_not_compute() {
    let (x, w) = (vec![0f32; 2 * 8 * 8 * 8], vec![0f32; 8 * 8 * 9]);
    let refused = |wd: [usize; 4], options: ConvOptions| {
        let w = &w[..wd.iter().product()];
        forward_cpu_with(&x, [2, 8, 8, 8], w, wd, options, ConvAlgorithm::Winograd).is_err()
    };
    let plain = |stride, padding| ConvOptions::plain(ConvGeometry { stride, padding });
    assert!(refused([8, 8, 3, 3], plain(2, 1)));
    assert!(refused([8, 8, 3, 3], plain(1, 0)));
    assert!(refused([8, 8, 1, 1], plain(1, 1)));
    assert!(refused(
        [8, 4, 3, 3],
        ConvOptions {
            groups: 2,
            ..plain(1, 1)
        }
    ));
    assert!(!refused([8, 8, 3, 3], plain(1, 1)));
    // Sizes that do not match the slices are an error, not a panic.
    assert!(forward_cpu_with(
        &x[1..],
        [2, 8, 8, 8],
        &w,
        [8, 8, 3, 3],
        plain(1, 1),
        ConvAlgorithm::Auto
    )
    .is_err());
}

/// Through the autograd op on shapes `Auto` runs as Winograd (32+ channels
/// on 16x16+ images or 64 on 8x8, 512+ tiles), forward and input gradient
/// (the flipped-weight forward convolution), against candle's conv2d.
#[test]
fn winograd_layers_match_candle_forward_and_gradients() {
    let mut rng = StdRng::seed_from_u64(24);
    for [n, cin, h, w, cout] in [[8, 32, 16, 16, 32], [33, 64, 8, 8, 64], [7, 40, 17, 19, 48]] {
        let x = Var::from_tensor(&random(&mut rng, &[n, cin, h, w])).unwrap();
        let wt = Var::from_tensor(&random(&mut rng, &[cout, cin, 3, 3])).unwrap();
        let ours = conv2d_with(x.as_tensor(), wt.as_tensor(), ConvOptions::plain(SAME)).unwrap();
        let theirs = x.as_tensor().conv2d(wt.as_tensor(), 1, 1, 1, 1).unwrap();
        let d = max_rel_diff(&flat(&ours), &flat(&theirs));
        assert!(d < 1e-5, "forward {n}x{cin}x{h}x{w} -> {cout}: {d}");
        let (g1, g2) = projected_grads(&mut rng, &ours, &theirs);
        for var in [&x, &wt] {
            let (a, b) = (
                flat(g1.get(var.as_tensor()).unwrap()),
                flat(g2.get(var.as_tensor()).unwrap()),
            );
            let d = max_rel_diff(&a, &b);
            assert!(d < 1e-5, "gradient {n}x{cin}x{h}x{w} -> {cout}: {d}");
        }
    }
}
