//! The direct forward convolution (`conv/direct.rs`) against im2col + gemm on
//! the raw slices (`forward_cpu_with`), on its AVX-512 path (where the CPU
//! has it) and on its portable path (forced, so that CI machines without
//! AVX-512 test what they would run): ResNet20's layer shapes at small
//! batches, strides 1-3, padding 0-2, 1x1, 5x5 and non-square kernels, odd
//! image sizes, batch 1, channel counts that leave partial register blocks,
//! rows longer than one register block, and the fused rounding of the input.
//! Tolerance: 1e-5 of the largest reference magnitude, as in `conv_paths.rs`
//! and `winograd.rs`. The autograd path (`Auto`, which takes this kernel on
//! 16x16+ outputs with AVX-512) is covered against candle's conv2d in
//! `conv_weight_grad.rs` and `conv_paths.rs`.

mod common;
use common::max_rel_diff;

use dsnn_core::conv::{forward_cpu_with, ConvAlgorithm, ConvGeometry, ConvOptions};
use dsnn_core::quant::FixedPoint;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn values(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Input dims, output channels, kernel (rows, columns), stride, padding.
type Case = ([usize; 4], usize, (usize, usize), usize, usize);

const CASES: [Case; 16] = [
    ([2, 3, 32, 32], 16, (3, 3), 1, 1),
    ([2, 16, 32, 32], 16, (3, 3), 1, 1),
    ([3, 16, 32, 32], 32, (3, 3), 2, 1),
    ([2, 32, 16, 16], 32, (3, 3), 1, 1),
    ([2, 32, 16, 16], 64, (3, 3), 2, 1),
    ([2, 64, 8, 8], 64, (3, 3), 1, 1),
    ([1, 5, 7, 9], 7, (3, 3), 1, 1),
    ([3, 6, 11, 5], 9, (3, 3), 2, 1),
    ([2, 4, 10, 13], 5, (3, 3), 3, 2),
    ([2, 7, 9, 9], 6, (1, 1), 2, 0),
    ([2, 7, 9, 9], 6, (1, 1), 1, 0),
    ([2, 3, 12, 12], 10, (5, 5), 1, 2),
    ([2, 3, 12, 12], 4, (5, 5), 2, 0),
    ([1, 2, 1, 1], 3, (3, 3), 1, 1),
    ([2, 5, 9, 11], 6, (2, 3), 2, 1),
    ([5, 13, 6, 7], 11, (3, 3), 1, 2),
];

/// Runs `algorithm` and im2col on one case; returns their relative difference.
fn compare(
    rng: &mut StdRng,
    (xd, cout, (kh, kw), stride, padding): Case,
    input_quant: Option<FixedPoint>,
    algorithm: ConvAlgorithm,
) -> f32 {
    let wd = [cout, xd[1], kh, kw];
    let x = values(rng, xd.iter().product());
    let w = values(rng, wd.iter().product());
    let options = ConvOptions {
        input_quant,
        ..ConvOptions::plain(ConvGeometry { stride, padding })
    };
    let reference = forward_cpu_with(&x, xd, &w, wd, options, ConvAlgorithm::Im2col).unwrap();
    let ours = forward_cpu_with(&x, xd, &w, wd, options, algorithm).unwrap();
    assert_eq!(ours.len(), reference.len());
    max_rel_diff(&ours, &reference)
}

#[test]
fn direct_forward_matches_im2col_on_resnet_and_odd_shapes() {
    let mut rng = StdRng::seed_from_u64(41);
    for algorithm in [
        ConvAlgorithm::Direct,
        ConvAlgorithm::DirectPortable,
        ConvAlgorithm::Auto,
    ] {
        for case in CASES {
            let d = compare(&mut rng, case, None, algorithm);
            assert!(d < 1e-5, "{algorithm:?} {case:?}: {d}");
        }
    }
}

#[test]
fn direct_forward_rounds_the_input_like_im2col() {
    let mut rng = StdRng::seed_from_u64(42);
    let quant = Some(FixedPoint {
        integer_bits: 2,
        fraction_bits: 3,
    });
    for algorithm in [
        ConvAlgorithm::Direct,
        ConvAlgorithm::DirectPortable,
        ConvAlgorithm::Auto,
    ] {
        for case in &CASES[..8] {
            let d = compare(&mut rng, *case, quant, algorithm);
            assert!(d < 1e-5, "{algorithm:?} {case:?}: {d}");
        }
    }
}

#[test]
fn direct_forward_refuses_grouped_convolutions() {
    let mut rng = StdRng::seed_from_u64(43);
    let (xd, wd) = ([2, 4, 6, 6], [4, 2, 3, 3]);
    let x = values(&mut rng, xd.iter().product());
    let w = values(&mut rng, wd.iter().product());
    let options = ConvOptions {
        groups: 2,
        ..ConvOptions::plain(ConvGeometry {
            stride: 1,
            padding: 1,
        })
    };
    for algorithm in [ConvAlgorithm::Direct, ConvAlgorithm::DirectPortable] {
        assert!(forward_cpu_with(&x, xd, &w, wd, options, algorithm).is_err());
    }
    let auto = forward_cpu_with(&x, xd, &w, wd, options, ConvAlgorithm::Auto).unwrap();
    let im2col = forward_cpu_with(&x, xd, &w, wd, options, ConvAlgorithm::Im2col).unwrap();
    assert_eq!(auto, im2col);
}
