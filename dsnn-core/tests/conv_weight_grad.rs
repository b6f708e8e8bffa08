//! The direct weight gradient (`conv/weight_grad.rs`) against im2col + gemm
//! on the raw slices (`backward_weight_cpu_with`), on its AVX-512 path (where
//! the CPU has it) and on its portable path (forced, so that CI machines
//! without AVX-512 test what they run and those with it test both): ResNet20's
//! layer shapes at small batches, strides 1-3, padding 0-2, 1x1, 5x5 and
//! non-square kernels, odd image sizes, batch 1, channel counts that leave
//! partial register blocks, and the fused rounding of the input.
//! Tolerance: 1e-5 of the largest reference magnitude, as in `conv_paths.rs`
//! and `winograd.rs` (the kernels sum in different orders). Through the
//! autograd op, layers that `Auto` runs on the direct kernel are checked
//! against candle's conv2d.

mod common;
use common::{flat, max_rel_diff, projected_grads, random};

use candle_core::Var;
use dsnn_core::conv::{
    backward_weight_cpu_with, conv2d_with, ConvGeometry, ConvOptions, WeightGradAlgorithm,
};
use dsnn_core::quant::FixedPoint;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn values(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// One convolution's sizes: input dims, output channels, kernel, stride, padding.
struct Case {
    x: [usize; 4],
    cout: usize,
    kernel: (usize, usize),
    stride: usize,
    padding: usize,
}

const fn case(x: [usize; 4], cout: usize, k: usize, stride: usize, padding: usize) -> Case {
    Case {
        x,
        cout,
        kernel: (k, k),
        stride,
        padding,
    }
}

/// Runs `algorithm` and im2col on one case; returns their relative difference.
fn compare(
    rng: &mut StdRng,
    c: &Case,
    input_quant: Option<FixedPoint>,
    algorithm: WeightGradAlgorithm,
) -> f32 {
    let [n, cin, h, w] = c.x;
    let ho = (h + 2 * c.padding - c.kernel.0) / c.stride + 1;
    let wo = (w + 2 * c.padding - c.kernel.1) / c.stride + 1;
    let wd = [c.cout, cin, c.kernel.0, c.kernel.1];
    let x = values(rng, c.x.iter().product());
    let dy = values(rng, n * c.cout * ho * wo);
    let options = ConvOptions {
        input_quant,
        ..ConvOptions::plain(ConvGeometry {
            stride: c.stride,
            padding: c.padding,
        })
    };
    let reference =
        backward_weight_cpu_with(&x, c.x, &dy, wd, options, WeightGradAlgorithm::Im2col).unwrap();
    let ours = backward_weight_cpu_with(&x, c.x, &dy, wd, options, algorithm).unwrap();
    assert_eq!(ours.len(), wd.iter().product::<usize>());
    max_rel_diff(&ours, &reference)
}

const CASES: [Case; 16] = [
    case([2, 3, 32, 32], 16, 3, 1, 1),
    case([2, 16, 32, 32], 16, 3, 1, 1),
    case([3, 16, 32, 32], 32, 3, 2, 1),
    case([2, 32, 16, 16], 32, 3, 1, 1),
    case([2, 32, 16, 16], 64, 3, 2, 1),
    case([2, 64, 8, 8], 64, 3, 1, 1),
    case([1, 5, 7, 9], 7, 3, 1, 1),
    case([3, 6, 11, 5], 9, 3, 2, 1),
    case([2, 4, 10, 13], 5, 3, 3, 2),
    case([2, 7, 9, 9], 6, 1, 2, 0),
    case([2, 7, 9, 9], 6, 1, 1, 0),
    case([2, 3, 12, 12], 10, 5, 1, 2),
    case([2, 3, 12, 12], 4, 5, 2, 0),
    case([1, 2, 1, 1], 3, 3, 1, 1),
    case([1, 1, 3, 3], 1, 3, 1, 0),
    case([5, 13, 6, 7], 11, 3, 1, 2),
];

#[test]
fn direct_matches_im2col_on_resnet_and_odd_shapes() {
    let mut rng = StdRng::seed_from_u64(31);
    for algorithm in [
        WeightGradAlgorithm::Direct,
        WeightGradAlgorithm::DirectPortable,
        WeightGradAlgorithm::Auto,
    ] {
        for c in &CASES {
            let d = compare(&mut rng, c, None, algorithm);
            assert!(d < 1e-5, "{algorithm:?} {:?} -> {}: {d}", c.x, c.cout);
        }
    }
}

#[test]
fn direct_matches_im2col_on_non_square_kernels() {
    let mut rng = StdRng::seed_from_u64(32);
    let c = Case {
        x: [2, 5, 9, 11],
        cout: 6,
        kernel: (2, 3),
        stride: 2,
        padding: 1,
    };
    for algorithm in [
        WeightGradAlgorithm::Direct,
        WeightGradAlgorithm::DirectPortable,
    ] {
        let d = compare(&mut rng, &c, None, algorithm);
        assert!(d < 1e-5, "{algorithm:?}: {d}");
    }
}

#[test]
fn direct_rounds_the_input_like_im2col() {
    let mut rng = StdRng::seed_from_u64(33);
    let quant = Some(FixedPoint {
        integer_bits: 2,
        fraction_bits: 3,
    });
    for algorithm in [
        WeightGradAlgorithm::Direct,
        WeightGradAlgorithm::DirectPortable,
    ] {
        for c in &CASES[..8] {
            let d = compare(&mut rng, c, quant, algorithm);
            assert!(d < 1e-5, "{algorithm:?} {:?} -> {}: {d}", c.x, c.cout);
        }
    }
}

#[test]
fn direct_refuses_grouped_convolutions_and_auto_runs_them() {
    let mut rng = StdRng::seed_from_u64(34);
    let (xd, wd) = ([2, 4, 6, 6], [4, 2, 3, 3]);
    let x = values(&mut rng, xd.iter().product());
    let dy = values(&mut rng, 2 * 4 * 36);
    let options = ConvOptions {
        groups: 2,
        ..ConvOptions::plain(ConvGeometry {
            stride: 1,
            padding: 1,
        })
    };
    for algorithm in [
        WeightGradAlgorithm::Direct,
        WeightGradAlgorithm::DirectPortable,
    ] {
        assert!(backward_weight_cpu_with(&x, xd, &dy, wd, options, algorithm).is_err());
    }
    let auto =
        backward_weight_cpu_with(&x, xd, &dy, wd, options, WeightGradAlgorithm::Auto).unwrap();
    let im2col =
        backward_weight_cpu_with(&x, xd, &dy, wd, options, WeightGradAlgorithm::Im2col).unwrap();
    assert_eq!(auto, im2col);
    // Sizes that do not match the slices are refused, not read past.
    assert!(backward_weight_cpu_with(
        &x[1..],
        xd,
        &dy,
        wd,
        ConvOptions::plain(ConvGeometry {
            stride: 1,
            padding: 1
        }),
        WeightGradAlgorithm::Direct
    )
    .is_err());
}

/// Through the autograd op on shapes `Auto` runs on the direct kernel
/// (16x16+ outputs, on CPUs with AVX-512; im2col elsewhere), both
/// gradients against candle's conv2d.
#[test]
fn direct_layers_match_candle_gradients() {
    let mut rng = StdRng::seed_from_u64(35);
    for [n, cin, h, cout, stride] in [[3, 16, 32, 16, 1], [2, 8, 32, 16, 2], [5, 9, 17, 7, 1]] {
        let x = Var::from_tensor(&random(&mut rng, &[n, cin, h, h])).unwrap();
        let wt = Var::from_tensor(&random(&mut rng, &[cout, cin, 3, 3])).unwrap();
        let geometry = ConvGeometry { stride, padding: 1 };
        let ours =
            conv2d_with(x.as_tensor(), wt.as_tensor(), ConvOptions::plain(geometry)).unwrap();
        let theirs = x
            .as_tensor()
            .conv2d(wt.as_tensor(), 1, stride, 1, 1)
            .unwrap();
        let d = max_rel_diff(&flat(&ours), &flat(&theirs));
        assert!(d < 1e-5, "forward {n}x{cin}x{h}x{h} -> {cout}: {d}");
        let (g1, g2) = projected_grads(&mut rng, &ours, &theirs);
        for var in [&x, &wt] {
            let (a, b) = (
                flat(g1.get(var.as_tensor()).unwrap()),
                flat(g2.get(var.as_tensor()).unwrap()),
            );
            let d = max_rel_diff(&a, &b);
            assert!(d < 1e-5, "gradient {n}x{cin}x{h}x{h} -> {cout}: {d}");
        }
    }
}
