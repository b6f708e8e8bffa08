//! The engine's integer logits equal the scalar reference of the documented
//! semantics bit for bit: every backbone, Q and PS, every kernel (AVX-512,
//! AVX2, portable, 64-bit sums, batch-lanes and im2col convolutions),
//! random and real images.

mod common;

use common::*;
use dsnn_core::data::{load_dataset, read_cifar10_batches, read_digits_csv, DatasetName};
use dsnn_core::{InputShape, ShiftType};
use dsnn_infer::model::{Epilogue, ShiftLayer};
use dsnn_infer::reference::reference_logits;
use dsnn_infer::weights::ShiftWeight;
use dsnn_infer::{ActFormat, EngineOptions, IntModel, Isa, Requant, Step};

/// A hand-built DeepShift-Q model (5-bit weights, no input transform) of
/// `steps` on `(channels, height, width)` images with `classes` outputs.
fn hand_model(
    act: ActFormat,
    (channels, height, width): (usize, usize, usize),
    classes: usize,
    steps: Vec<Step>,
) -> IntModel {
    IntModel {
        backbone: "hand".into(),
        shift_type: ShiftType::Q,
        input: InputShape {
            channels,
            height,
            width,
        },
        classes,
        act,
        weight_bits: 5,
        input_transform: None,
        steps,
    }
}

/// Runs the engine with every kernel and sub-block width, with and without
/// the batch-lanes convolution (used from 16 images up), and compares with
/// the reference.
fn check(model: &IntModel, x: &[i32], n: usize, reference_images: usize) {
    let per = x.len() / n;
    if n >= 16 && !Isa::Avx512.available() {
        eprintln!("no AVX-512 on this CPU: the batch-lanes convolution is not exercised");
    }
    let default = model
        .infer_quantized(x.to_vec(), n, &EngineOptions::default())
        .unwrap();
    let r = reference_images.min(n);
    let reference = reference_logits(model, &x[..r * per], r);
    assert_eq!(
        &default.values[..r * model.classes],
        &reference.values[..],
        "engine vs reference ({})",
        model.backbone
    );
    assert_eq!(default.fraction_bits, reference.fraction_bits);
    for isa in [Isa::Portable, Isa::Avx2, Isa::Avx512] {
        if !isa.available() {
            eprintln!("{} kernels not available on this CPU", isa.name());
            continue;
        }
        // Per-layer sub-block widths, then every width for every layer.
        let lanes = [None, Some(16), Some(32), Some(64)];
        // (`default` is the batch-lanes path from 16 images with AVX-512.)
        // (and the VNNI dot-product kernel where the CPU has it; the
        // batch-lanes path with shift-add kernels only is checked too).
        for (force_wide, lanes, im2col_only, shift_add_only) in
            [(true, None, false, false), (false, None, false, true)]
                .into_iter()
                .chain(lanes.iter().map(|&l| (false, l, true, false)))
        {
            let opts = EngineOptions {
                isa: Some(isa),
                force_wide,
                lanes,
                im2col_only,
                shift_add_only,
            };
            let l = model.infer_quantized(x.to_vec(), n, &opts).unwrap();
            assert_eq!(
                l,
                default,
                "{} wide={force_wide} lanes={lanes:?} im2col_only={im2col_only} \
                 shift_add_only={shift_add_only}",
                isa.name()
            );
        }
    }
    // Logits are not all equal: the test sees real arithmetic.
    assert!(default.values.iter().any(|&v| v != default.values[0]));
}

fn grey(h: usize) -> InputShape {
    InputShape {
        channels: 1,
        height: h,
        width: h,
    }
}

#[test]
fn lenet5_q_and_ps_match_the_reference_on_random_inputs() {
    for (st, bits, act, seed) in [
        (ShiftType::Q, 5, (16, 16), 1),
        (ShiftType::PS, 5, (16, 16), 2),
        (ShiftType::Q, 3, (8, 8), 3),
        (ShiftType::PS, 8, (4, 12), 4),
    ] {
        let (net, spec) = build("lenet5", st, bits, act, grey(28), seed);
        let model = IntModel::from_network(net.as_ref(), &spec).unwrap();
        let n = 70; // more than one block of 64 images in the linear layers
        let x = model.quantize_input(&random_images(model.input, n, seed));
        check(&model, &x, n, 3);
        // A single image takes the gather path of the linear layers.
        check(&model, &x[..784], 1, 1);
    }
}

#[test]
fn digits_cnn_matches_the_reference_on_real_digits() {
    let Some(dir) = shared_data("digits/digits.csv.gz") else {
        return;
    };
    let data = read_digits_csv(&dir.join("digits/digits.csv.gz")).unwrap();
    let (images, transform) = real_images(&data, 40);
    for (st, seed) in [(ShiftType::Q, 5), (ShiftType::PS, 6)] {
        let (net, mut spec) = build("digits_cnn", st, 5, (16, 16), data.shape, seed);
        spec.input_transform = Some(transform.clone());
        let model = IntModel::from_network(net.as_ref(), &spec).unwrap();
        let x = model.quantize_input(&images);
        check(&model, &x, 40, 40);
        // Raw pixels through the model's own normalisation give the same integers.
        let n = 40 * 64;
        assert_eq!(model.quantize_pixels(&data.pixels[..n]).unwrap(), x);
    }
}

#[test]
fn lenet5_matches_the_reference_on_real_mnist_images() {
    let Some(dir) = shared_data("mnist") else {
        return;
    };
    let s = load_dataset(DatasetName::Mnist, &dir.join("mnist"), 0).unwrap();
    let (images, _) = real_images(&s.test, 20);
    let (net, spec) = build("lenet5", ShiftType::Q, 5, (16, 16), s.test.shape, 7);
    let model = IntModel::from_network(net.as_ref(), &spec).unwrap();
    check(&model, &model.quantize_input(&images), 20, 20);
}

#[test]
fn resnet20_matches_the_reference_on_the_cifar_sample_and_random_inputs() {
    let shape = InputShape {
        channels: 3,
        height: 32,
        width: 32,
    };
    let real = shared_data("cifar10-sample/test_batch_first20.bin").map(|dir| {
        let d = read_cifar10_batches(&[dir.join("cifar10-sample/test_batch_first20.bin")]).unwrap();
        real_images(&d, 20).0
    });
    for (st, seed) in [(ShiftType::Q, 8), (ShiftType::PS, 9)] {
        let (net, spec) = build("resnet20", st, 5, (16, 16), shape, seed);
        randomize_batch_norm(net.as_ref(), seed);
        let model = IntModel::from_network(net.as_ref(), &spec).unwrap();
        let images = real
            .clone()
            .unwrap_or_else(|| random_images(shape, 20, seed));
        check(&model, &model.quantize_input(&images), 20, 2);
        let x = model.quantize_input(&random_images(shape, 2, seed));
        check(&model, &x, 2, 2);
    }
}

/// A hand-built linear model whose accumulator keeps fewer fraction bits
/// than its smallest weight needs (the floored-bucket case) and whose inputs
/// are large enough to need 64-bit bucket sums.
#[test]
fn truncated_accumulators_and_wide_sums_match_the_reference() {
    let act = ActFormat::new(16, 16).unwrap();
    let (cout, fan_in) = (10, 48);
    let ws: Vec<ShiftWeight> = (0..cout * fan_in)
        .map(|i| match i % 7 {
            0 => ShiftWeight::Zero,
            r => ShiftWeight::Pow {
                negative: r % 2 == 0,
                m: ((i * 5) % 14) as u8,
            },
        })
        .collect();
    let layer = ShiftLayer::new("fc", &ws, cout, fan_in, 5, 4).unwrap();
    let model = IntModel {
        shift_type: ShiftType::PS,
        ..hand_model(
            act,
            (3, 4, 4),
            cout,
            vec![Step::Linear {
                layer,
                epilogue: Epilogue {
                    acc_init: (0..cout as i64).map(|c| c * 1000 - 3000).collect(),
                    requant: Requant::Logits,
                    bias: true,
                },
            }],
        )
    };
    model.validate().unwrap();
    let n = 20;
    let x: Vec<i32> = (0..n * fan_in)
        .map(|i| {
            ((i as i64 * 2_654_435_761) % (act.hi() - 7)) as i32 * if i % 3 == 0 { -1 } else { 1 }
        })
        .collect();
    assert!(x.iter().any(|&v| v.unsigned_abs() > 1 << 30));
    check(&model, &x, n, n);
    check(&model, &x[..fan_in], 1, 1);
    // An input outside the activation range is refused, not wrapped.
    let mut bad = x.clone();
    bad[0] = (act.hi() + 1) as i32;
    assert!(model
        .infer_quantized(bad, n, &EngineOptions::default())
        .unwrap_err()
        .to_string()
        .contains("outside the activation range"));
}

#[test]
fn model_files_round_trip_and_stay_bit_exact() {
    let (net, spec) = build("lenet5", ShiftType::PS, 4, (16, 16), grey(28), 11);
    let model = IntModel::from_network(net.as_ref(), &spec).unwrap();
    let bytes = model.to_bytes().unwrap();
    let back = IntModel::from_bytes(&bytes).unwrap();
    let x = model.quantize_input(&random_images(model.input, 5, 3));
    let a = model
        .infer_quantized(x.clone(), 5, &EngineOptions::default())
        .unwrap();
    let b = back
        .infer_quantized(x, 5, &EngineOptions::default())
        .unwrap();
    assert_eq!(a, b);
    // 4-bit codes: the file is about an eighth of the float weights.
    let float_bytes = 4 * model.num_weights();
    assert!(
        bytes.len() * 6 < float_bytes,
        "{} vs {float_bytes}",
        bytes.len()
    );
    assert_eq!(
        model.packed_weight_bytes(),
        (model.num_weights() * 4).div_ceil(8)
    );
    let truncated = &bytes[..bytes.len() - 10];
    assert!(IntModel::from_bytes(truncated).is_err());

    // ResNet20: folded batch norms survive the file, and the file is at
    // least 6x smaller than the float model with 5-bit weights.
    let shape = InputShape {
        channels: 3,
        height: 32,
        width: 32,
    };
    let (net, spec) = build("resnet20", ShiftType::Q, 5, (16, 16), shape, 12);
    randomize_batch_norm(net.as_ref(), 12);
    let model = IntModel::from_network(net.as_ref(), &spec).unwrap();
    let bytes = model.to_bytes().unwrap();
    let back = IntModel::from_bytes(&bytes).unwrap();
    let x = model.quantize_input(&random_images(shape, 2, 5));
    let a = model
        .infer_quantized(x.clone(), 2, &EngineOptions::default())
        .unwrap();
    assert_eq!(
        a,
        back.infer_quantized(x, 2, &EngineOptions::default())
            .unwrap()
    );
    let ratio = model.float_model_bytes() as f64 / bytes.len() as f64;
    assert!(ratio >= 6.0, "{ratio}");
}

/// A 3x3 shift convolution of `cin x size x size` inputs into 2 channels
/// (accumulator shift `conv_shift`) with a folded batch norm, then a linear
/// layer of 3 logits.
fn conv_batch_norm_linear(
    act: ActFormat,
    (cin, size): (usize, usize),
    conv_w: &[ShiftWeight],
    conv_shift: u32,
    fc_w: &[ShiftWeight],
) -> IntModel {
    hand_model(
        act,
        (cin, size, size),
        3,
        vec![
            Step::Conv {
                layer: ShiftLayer::new("conv", conv_w, 2, cin * 9, 5, conv_shift).unwrap(),
                cin,
                kernel: 3,
                stride: 1,
                padding: 1,
                groups: 1,
                epilogue: Epilogue {
                    acc_init: vec![0, 0],
                    requant: Requant::Affine {
                        mul: vec![3, -5],
                        add: vec![7 << 3, -100 << 3],
                        mul_shift: 2,
                        add_shift: 3,
                        relu: false,
                    },
                    bias: false,
                },
            },
            Step::Linear {
                layer: ShiftLayer::new("fc", fc_w, 3, 2 * size * size, 5, 3).unwrap(),
                epilogue: Epilogue {
                    acc_init: vec![1, -2, 3],
                    requant: Requant::Logits,
                    bias: true,
                },
            },
        ],
    )
}

/// A hand-built convolution with a folded batch norm whose accumulators
/// exceed the 64-bit requantisation's range (so it takes the 128-bit path),
/// followed by a linear layer; engine and reference agree.
#[test]
fn wide_batch_norm_requantisation_matches_the_reference() {
    let act = ActFormat::new(16, 16).unwrap();
    let w = |negative: bool, m: u8| ShiftWeight::Pow { negative, m };
    let conv_w: Vec<ShiftWeight> = (0..2 * 9)
        .map(|i| {
            if i < 9 {
                w(false, 0)
            } else {
                w(i % 4 == 1, (i % 3) as u8)
            }
        })
        .collect();
    let fc_w: Vec<ShiftWeight> = (0..3 * 32).map(|i| w(i % 5 == 0, (i % 4) as u8)).collect();
    let model = conv_batch_norm_linear(act, (1, 4), &conv_w, 2, &fc_w);
    model.validate().unwrap();
    let n = 3;
    let x: Vec<i32> = (0..(n * 16) as i32)
        .map(|i| match i {
            // Image 0 is all at the top of the range: the centre accumulator
            // of channel 0 is about 9 * 2^31 * 2^2, so acc / 2^S >= 2^31.
            0..16 => act.hi() as i32,
            _ if i % 2 == 0 => act.hi() as i32 - i,
            _ => act.lo() as i32 + 3 * i,
        })
        .collect();
    check(&model, &x, n, n);
    // Survives the file too.
    let back = IntModel::from_bytes(&model.to_bytes().unwrap()).unwrap();
    let a = back
        .infer_quantized(x.clone(), n, &EngineOptions::default())
        .unwrap();
    assert_eq!(a, reference_logits(&model, &x, n));
}

/// A hand-built model whose geometry does not add up (its fields are
/// public) is refused by the engine with the reason, before any kernel
/// reads past a buffer.
#[test]
fn inconsistent_hand_built_models_are_refused_before_running() {
    let act = ActFormat::new(16, 16).unwrap();
    let w = ShiftWeight::Pow {
        negative: false,
        m: 1,
    };
    let mut model = conv_batch_norm_linear(act, (1, 4), &[w; 18], 2, &[w; 96]);
    // 4x4 input, 3x3 kernel without padding: 2x2 outputs, not the linear
    // layer's 4x4.
    if let Step::Conv { padding, .. } = &mut model.steps[0] {
        *padding = 0;
    }
    let err = model
        .infer_quantized(vec![0; 16 * 16], 16, &EngineOptions::default())
        .unwrap_err();
    assert!(
        err.to_string().contains("expects 32 inputs, gets 8"),
        "{err}"
    );
    // A kernel larger than the padded input.
    model.input.height = 1;
    let err = model
        .infer_quantized(vec![0; 16 * 4], 16, &EngineOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("smaller than kernel"), "{err}");
}

/// A hand-built convolution with an odd geometry (5x9 input, padding 2, so
/// 7x11 outputs: runs of 11 positions cross sub-block edges and the second
/// block is partial; rows of 11 are batch-lanes tiles of 4, 4, 2 and 1) and
/// a fan-in of 360 (split into row chunks by the 16-lane and the
/// batch-lanes kernels, unless the accumulator shift floors a bucket), then
/// a strided one and a linear layer; 3 images, and 19 (two groups of 16).
#[test]
fn odd_geometries_and_row_chunks_match_the_reference() {
    for (acc_shift, n) in [(8, 3), (8, 19), (5, 19)] {
        odd_geometries(acc_shift, n);
    }
}

fn odd_geometries(acc_shift: u32, n: usize) {
    let act = ActFormat::new(8, 8).unwrap();
    let w = |i: usize| match i % 11 {
        0 => ShiftWeight::Zero,
        r => ShiftWeight::Pow {
            negative: r % 3 == 0,
            m: ((i * 7) % 9) as u8,
        },
    };
    let (cin, cout) = (40, 3);
    let conv1: Vec<ShiftWeight> = (0..cout * cin * 9).map(w).collect();
    let conv2: Vec<ShiftWeight> = (0..2 * cout * 9).map(|i| w(i + 5)).collect();
    let fc: Vec<ShiftWeight> = (0..4 * 2 * 4 * 6).map(|i| w(i + 1)).collect();
    let shift = |relu| Epilogue {
        acc_init: vec![0, 100, -100],
        requant: Requant::Shift { relu },
        bias: true,
    };
    let first = ShiftLayer::new("conv1", &conv1, cout, cin * 9, 5, acc_shift).unwrap();
    // m goes up to 8: S = 8 floors no bucket, so both plans are chunked.
    assert_eq!(first.plan().chunks.is_empty(), acc_shift < 8);
    assert_eq!(
        first.lane_plan().chunks.len(),
        if acc_shift < 8 { 0 } else { 3 }
    );
    let model = hand_model(
        act,
        (cin, 5, 9),
        4,
        vec![
            Step::Conv {
                layer: first,
                cin,
                kernel: 3,
                stride: 1,
                padding: 2,
                groups: 1,
                epilogue: shift(false),
            },
            // 7x11 -> 4x6 with stride 2 and padding 1.
            Step::Conv {
                layer: ShiftLayer::new("conv2", &conv2, 2, cout * 9, 5, 8).unwrap(),
                cin: cout,
                kernel: 3,
                stride: 2,
                padding: 1,
                groups: 1,
                epilogue: Epilogue {
                    acc_init: vec![5, -5],
                    requant: Requant::Shift { relu: true },
                    bias: true,
                },
            },
            Step::Linear {
                layer: ShiftLayer::new("fc", &fc, 4, 2 * 4 * 6, 5, 8).unwrap(),
                epilogue: Epilogue {
                    acc_init: vec![1, -2, 3, 0],
                    requant: Requant::Logits,
                    bias: true,
                },
            },
        ],
    );
    model.validate().unwrap();
    let x: Vec<i32> = (0..(n * cin * 45) as i64)
        .map(|i| ((i * 2_654_435_761) % 20_000 - 10_000) as i32)
        .collect();
    check(&model, &x, n, n);
}

/// The batch-lanes convolution with a folded batch norm whose accumulators
/// need the 128-bit requantisation while the bucket sums still fit 32 bits:
/// seven weights `2^0` and seven `2^-1` on inputs near `2^28` give
/// `acc / 2^S` of about `1.3 * 2^31`.
#[test]
fn batch_lanes_convolution_with_128_bit_batch_norm_matches_the_reference() {
    let act = ActFormat::new(16, 16).unwrap();
    let conv_w: Vec<ShiftWeight> = (0..2 * 18)
        .map(|i| match (i / 18, i % 18) {
            (0, k) if k < 7 => ShiftWeight::Pow {
                negative: false,
                m: 0,
            },
            (0, k) if k < 14 => ShiftWeight::Pow {
                negative: false,
                m: 1,
            },
            (0, _) => ShiftWeight::Zero,
            (_, k) if k < 12 => ShiftWeight::Pow {
                negative: k % 3 == 0,
                m: (k % 2) as u8,
            },
            (_, _) => ShiftWeight::Zero,
        })
        .collect();
    let fc_w: Vec<ShiftWeight> = (0..3 * 2 * 9)
        .map(|i| ShiftWeight::Pow {
            negative: i % 5 == 0,
            m: (i % 4) as u8,
        })
        .collect();
    let model = conv_batch_norm_linear(act, (2, 3), &conv_w, 1, &fc_w);
    model.validate().unwrap();
    let n = 17;
    let x: Vec<i32> = (0..(n * 18) as i32)
        .map(|i| (1 << 28) - 1000 * (i % 7))
        .collect();
    assert!(i64::from(x[0]) * 7 < 1 << 31);
    check(&model, &x, n, n);
}

/// Batch-lanes activations carry the border the next convolution needs: a
/// residual whose shortcut (border 1, before a padding-1 convolution) and
/// sum (border 0, before a padding-0 one) differ is re-bordered, and both
/// layouts give the reference's logits.
/// A residual block of 4-channel convolutions on 6x6 inputs between
/// `first` and `last`: `first`, save, `inner`, add, `last` (each conv given
/// as (salt, kernel, padding)), then a linear layer.
fn residual_model(
    first: (usize, usize, usize),
    inner: (usize, usize, usize),
    last: &[(usize, usize, usize)],
) -> IntModel {
    let act = ActFormat::new(8, 8).unwrap();
    let w = |salt: usize| {
        move |i: usize| match (i * 7 + salt) % 9 {
            0 => ShiftWeight::Zero,
            r => ShiftWeight::Pow {
                negative: r % 2 == 0,
                m: ((i + salt) % 5) as u8,
            },
        }
    };
    let c = 4;
    let conv = |(salt, kernel, padding): (usize, usize, usize)| Step::Conv {
        layer: ShiftLayer::new(
            &format!("conv{salt}"),
            &(0..c * c * kernel * kernel)
                .map(w(salt))
                .collect::<Vec<_>>(),
            c,
            c * kernel * kernel,
            5,
            6,
        )
        .unwrap(),
        cin: c,
        kernel,
        stride: 1,
        padding,
        groups: 1,
        epilogue: Epilogue {
            acc_init: vec![3, -3, 0, 7],
            requant: Requant::Shift { relu: true },
            bias: true,
        },
    };
    let mut side = 6;
    for &(_, k, p) in last {
        side = side + 2 * p + 1 - k;
    }
    let mut steps = vec![
        conv(first),
        Step::SaveResidual,
        conv(inner),
        Step::AddResidual {
            pad: None,
            relu: true,
        },
    ];
    steps.extend(last.iter().map(|&l| conv(l)));
    steps.push(Step::Linear {
        layer: ShiftLayer::new(
            "fc",
            &(0..3 * c * side * side).map(w(4)).collect::<Vec<_>>(),
            3,
            c * side * side,
            5,
            6,
        )
        .unwrap(),
        epilogue: Epilogue {
            acc_init: vec![1, -2, 3],
            requant: Requant::Logits,
            bias: true,
        },
    });
    let model = hand_model(act, (c, 6, 6), 3, steps);
    model.validate().unwrap();
    model
}

/// In batch lanes a residual's shortcut and sum carry the borders their
/// next convolutions need: here the shortcut has a border of 1 and the sum
/// needs none, then a shortcut without a border meets a sum that needs 1.
#[test]
fn residuals_across_different_borders_match_the_reference() {
    let n = 18;
    let x: Vec<i32> = (0..(n * 4 * 36) as i64)
        .map(|i| ((i * 2_654_435_761) % 6_000 - 1_000) as i32)
        .collect();
    // The shortcut (conv1's output) gets conv2's padding 1; the sum, conv3's 0.
    check(
        &residual_model((1, 3, 1), (2, 3, 1), &[(3, 3, 0)]),
        &x,
        n,
        n,
    );
    // The shortcut gets the 1x1 conv2's border 0; the sum, conv3's 1.
    check(
        &residual_model((1, 3, 1), (2, 1, 0), &[(3, 3, 1), (5, 3, 0)]),
        &x,
        n,
        n,
    );
}

/// Sets every element of a LeNet-5 parameter to `value`.
fn set_param(net: &dyn dsnn_core::Network, name: &str, value: f32) {
    let p = net
        .params()
        .params()
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no parameter {name}"));
    let t = p.var.as_tensor();
    let filled = candle_core::Tensor::full(value, t.shape(), t.device()).unwrap();
    p.var.set(&filled).unwrap();
}

fn linear_acc_shift(model: &IntModel, name: &str) -> u32 {
    model
        .steps
        .iter()
        .find_map(|s| match s {
            Step::Linear { layer, .. } if layer.name == name => Some(layer.acc_shift),
            _ => None,
        })
        .unwrap()
}

#[test]
fn export_narrows_the_accumulator_for_large_biases_and_refuses_what_cannot_fit() {
    let (net, spec) = build("lenet5", ShiftType::Q, 5, (16, 16), grey(28), 11);
    let normal = IntModel::from_network(net.as_ref(), &spec).unwrap();
    let full = linear_acc_shift(&normal, "fc2");
    assert!(full > 0, "fc2 keeps extra fraction bits");
    // A bias of 2^34 is 2^50 in activation units: the accumulator keeps
    // fewer extra fraction bits (below 2^62), and the engine still equals
    // the reference, flooring per bucket as documented.
    set_param(net.as_ref(), "fc2.bias", 2f32.powi(34));
    let narrowed = IntModel::from_network(net.as_ref(), &spec).unwrap();
    let s = linear_acc_shift(&narrowed, "fc2");
    assert!(s < full && s <= 11, "acc shift {s} (was {full})");
    let n = 20;
    let x = narrowed.quantize_input(&random_images(narrowed.input, n, 11));
    check(&narrowed, &x, n, n);
    // A bias of 1e25 overflows 2^62 even with no extra fraction bits.
    set_param(net.as_ref(), "fc2.bias", 1e25);
    let e = IntModel::from_network(net.as_ref(), &spec)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("overflow in layer `fc2`") && e.contains("limit 2^62"),
        "{e}"
    );
}

fn colour(h: usize) -> InputShape {
    InputShape {
        channels: 3,
        height: h,
        width: h,
    }
}

#[test]
fn deeper_cifar_resnets_match_the_reference() {
    // 8x8 images reach every stage (8, 4 and 2 pixels) at a small cost.
    for (name, st, seed) in [
        ("resnet32", ShiftType::Q, 20),
        ("resnet44", ShiftType::PS, 21),
        ("resnet56", ShiftType::Q, 22),
        ("resnet110", ShiftType::PS, 23),
    ] {
        let (net, spec) = build(name, st, 5, (16, 16), colour(8), seed);
        randomize_batch_norm(net.as_ref(), seed);
        let model = IntModel::from_network(net.as_ref(), &spec).unwrap();
        let x = model.quantize_input(&random_images(model.input, 2, seed));
        check(&model, &x, 2, 2);
    }
}

#[test]
fn resnet18_with_projection_shortcuts_matches_the_reference() {
    // 8x8 images: stages of 8, 4, 2 and 1 pixels.
    for (st, seed) in [(ShiftType::Q, 27), (ShiftType::PS, 28)] {
        let (net, spec) = build("resnet18", st, 5, (16, 16), colour(8), seed);
        randomize_batch_norm(net.as_ref(), seed);
        let model = IntModel::from_network(net.as_ref(), &spec).unwrap();
        let swaps = model
            .steps
            .iter()
            .filter(|s| matches!(s, Step::SwapResidual))
            .count();
        assert_eq!(swaps, 3, "one per projection shortcut");
        let x = model.quantize_input(&random_images(model.input, 2, seed));
        check(&model, &x, 2, 2);
        // The step survives the model file.
        let back = IntModel::from_bytes(&model.to_bytes().unwrap()).unwrap();
        let opts = EngineOptions::default();
        let logits = model.infer_quantized(x.clone(), 2, &opts).unwrap();
        assert_eq!(back.infer_quantized(x, 2, &opts).unwrap(), logits);
        // And the integer logits are the float-simulated network's (the
        // shortcut convolution reads the block input, not the main path).
        let images = random_images(model.input, 2, seed);
        let xf =
            candle_core::Tensor::from_vec(images, (2, 3, 8, 8), &candle_core::Device::Cpu).unwrap();
        let float: Vec<f32> = net
            .forward(&xf, dsnn_core::Forward::eval())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let scale = 2f64.powi(logits.fraction_bits as i32);
        let largest = float.iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
        for (i, f) in logits.values.iter().zip(&float) {
            let d = (*i as f64 / scale - f64::from(*f)).abs();
            assert!(
                d <= 1e-3 * largest.max(1.0),
                "integer {} vs float {f}",
                *i as f64 / scale
            );
        }
    }
}

#[test]
fn vgg_matches_the_reference() {
    // VGG11 on 32x32 colour images runs all five poolings; VGG19 on 16x16
    // grey images leaves out the last (its map is one pixel by then).
    for (name, st, input, seed) in [
        ("vgg11", ShiftType::PS, colour(32), 24),
        ("vgg19", ShiftType::Q, grey(16), 25),
    ] {
        let (net, spec) = build(name, st, 5, (16, 16), input, seed);
        randomize_batch_norm(net.as_ref(), seed);
        let model = IntModel::from_network(net.as_ref(), &spec).unwrap();
        let x = model.quantize_input(&random_images(model.input, 2, seed));
        check(&model, &x, 2, 1);
    }
}

/// The float-simulated network's logits of `images`, for comparison with
/// the integer model's.
fn float_logits(net: &dyn dsnn_core::Network, input: InputShape, images: Vec<f32>) -> Vec<f32> {
    let n = images.len() / (input.channels * input.height * input.width);
    let shape = (n, input.channels, input.height, input.width);
    let x = candle_core::Tensor::from_vec(images, shape, &candle_core::Device::Cpu).unwrap();
    net.forward(&x, dsnn_core::Forward::eval())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// The integer logits are the float-simulated network's: within `1e-3` of
/// the largest logit (the float model keeps batch-norm outputs and sums in
/// `f32` where the integer one floors them to `2^-F`), and the same class
/// wherever the float model's top two logits are apart by more than that.
fn assert_close_to_float(logits: &dsnn_infer::Logits, float: &[f32], what: &str) {
    let scale = 2f64.powi(logits.fraction_bits as i32);
    let largest = float.iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
    let tol = 1e-3 * largest.max(1.0);
    for (i, f) in logits.values.iter().zip(float) {
        let d = (*i as f64 / scale - f64::from(*f)).abs();
        assert!(
            d <= tol,
            "{what}: integer {} vs float {f}",
            *i as f64 / scale
        );
    }
    for (img, (row, top)) in float
        .chunks(logits.classes)
        .zip(logits.argmax())
        .enumerate()
    {
        let mut sorted: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
        sorted.sort_by(|a, b| b.total_cmp(a));
        if sorted[0] - sorted[1] > 2.0 * tol {
            assert_eq!(
                row[top],
                row.iter().copied().fold(f32::MIN, f32::max),
                "{what}: image {img}"
            );
        }
    }
}

/// Exports `name`, checks it against the reference on 2 images (every
/// kernel), on 17 images (two batch-lanes groups, default path against
/// im2col only, reference on the first), against the float-simulated
/// network, and through the model file; returns the model.
fn exports_bit_exactly(name: &str, st: ShiftType, input: InputShape, seed: u64) -> IntModel {
    let (net, spec) = build(name, st, 5, (16, 16), input, seed);
    randomize_batch_norm(net.as_ref(), seed);
    let model = IntModel::from_network(net.as_ref(), &spec).unwrap();
    let images = random_images(input, 2, seed);
    let x = model.quantize_input(&images);
    check(&model, &x, 2, 2);
    let opts = EngineOptions::default();
    let logits = model.infer_quantized(x.clone(), 2, &opts).unwrap();
    assert_close_to_float(&logits, &float_logits(net.as_ref(), input, images), name);
    let n = 17;
    let many = model.quantize_input(&random_images(input, n, seed + 1));
    let lanes = model.infer_quantized(many.clone(), n, &opts).unwrap();
    let im2col = EngineOptions {
        im2col_only: true,
        ..opts
    };
    assert_eq!(
        lanes,
        model.infer_quantized(many.clone(), n, &im2col).unwrap()
    );
    let per = many.len() / n;
    let first = reference_logits(&model, &many[..per], 1);
    assert_eq!(
        lanes.values[..model.classes],
        first.values[..],
        "{name}: 17 images"
    );
    let back = IntModel::from_bytes(&model.to_bytes().unwrap()).unwrap();
    assert_eq!(back.infer_quantized(x, 2, &opts).unwrap(), logits);
    model
}

#[test]
fn mobilenetv2_with_depthwise_convolutions_and_linear_bottlenecks_matches_the_reference() {
    // 8x8 images: maps of 8, 4 and 2 pixels (the strided blocks).
    for (st, seed) in [(ShiftType::Q, 29), (ShiftType::PS, 30)] {
        let model = exports_bit_exactly("mobilenetv2", st, colour(8), seed);
        let count = |f: &dyn Fn(&Step) -> bool| model.steps.iter().filter(|s| f(s)).count();
        assert_eq!(
            count(&|s| matches!(s, Step::Conv { groups, cin, .. } if groups == cin && *groups > 1)),
            17,
            "one depthwise convolution per block"
        );
        // Identity and projection shortcuts without ReLU (14 stride-1 blocks).
        assert_eq!(
            count(&|s| matches!(s, Step::AddResidual { relu: false, .. })),
            14
        );
        assert_eq!(count(&|s| matches!(s, Step::SwapResidual)), 4);
    }
}

#[test]
fn googlenet_with_inception_branches_and_3x3_pooling_matches_the_reference() {
    // 4x4 images: maps of 4, 2 and 1 pixels (the 3x3 stride-2 poolings of
    // a 2x2 map and the stride-1 poolings of a 1x1 one pad on every side).
    for (st, seed) in [(ShiftType::PS, 31), (ShiftType::Q, 32)] {
        let model = exports_bit_exactly("googlenet", st, colour(4), seed);
        let count = |f: &dyn Fn(&Step) -> bool| model.steps.iter().filter(|s| f(s)).count();
        assert_eq!(count(&|s| matches!(s, Step::Concat { parts: 4 })), 9);
        assert_eq!(
            count(&|s| matches!(
                s,
                Step::MaxPool {
                    kernel: 3,
                    stride: 1,
                    padding: 1
                }
            )),
            9
        );
        assert_eq!(
            count(&|s| matches!(
                s,
                Step::MaxPool {
                    kernel: 3,
                    stride: 2,
                    padding: 1
                }
            )),
            2
        );
    }
}

/// A hand-built model with every new step in odd geometries: a grouped
/// convolution (2 groups of 2 inputs and 3 outputs, 7x5 input), two
/// branches (a 1x1 convolution and a 3x3 stride-1 max pooling) joined by a
/// concatenation, a depthwise convolution whose sum with its input has no
/// ReLU (values go negative), a 2x2 max pooling with padding 1 and a
/// linear layer; 3 images, and 19 (two batch-lanes groups).
#[test]
fn grouped_convolutions_branches_and_general_pooling_match_the_reference() {
    let act = ActFormat::new(8, 8).unwrap();
    let w = |salt: usize| {
        move |i: usize| match (i * 7 + salt) % 9 {
            0 => ShiftWeight::Zero,
            r => ShiftWeight::Pow {
                negative: r % 2 == 0,
                m: ((i + salt) % 5) as u8,
            },
        }
    };
    let weights = |salt: usize, n: usize| (0..n).map(w(salt)).collect::<Vec<_>>();
    let conv = |name: &str, cin: usize, cout: usize, k: usize, groups: usize, relu: bool| {
        let fan_in = cin / groups * k * k;
        Step::Conv {
            layer: ShiftLayer::new(
                name,
                &weights(cin + cout, cout * fan_in),
                cout,
                fan_in,
                5,
                6,
            )
            .unwrap(),
            cin,
            kernel: k,
            stride: 1,
            padding: k / 2,
            groups,
            epilogue: Epilogue {
                acc_init: (0..cout as i64).map(|c| 40 * c - 100).collect(),
                requant: Requant::Shift { relu },
                bias: true,
            },
        }
    };
    let (h, w_) = (7, 5);
    // After the 2x2 pooling with padding 1: 4x3.
    let fc_in = 8 * 4 * 3;
    let steps = vec![
        conv("grouped", 4, 6, 3, 2, false),
        Step::SaveResidual,
        conv("branch1", 6, 2, 1, 1, true),
        Step::SwapResidual,
        Step::MaxPool {
            kernel: 3,
            stride: 1,
            padding: 1,
        },
        Step::Concat { parts: 2 },
        Step::SaveResidual,
        conv("depthwise", 8, 8, 3, 8, false),
        Step::AddResidual {
            pad: None,
            relu: false,
        },
        Step::MaxPool {
            kernel: 2,
            stride: 2,
            padding: 1,
        },
        Step::Linear {
            layer: ShiftLayer::new("fc", &weights(4, 3 * fc_in), 3, fc_in, 5, 6).unwrap(),
            epilogue: Epilogue {
                acc_init: vec![1, -2, 3],
                requant: Requant::Logits,
                bias: true,
            },
        },
    ];
    let model = hand_model(act, (4, h, w_), 3, steps);
    model.validate().unwrap();
    for n in [3, 19] {
        let x: Vec<i32> = (0..(n * 4 * h * w_) as i64)
            .map(|i| ((i * 2_654_435_761) % 6_000 - 3_000) as i32)
            .collect();
        check(&model, &x, n, n);
    }
    // The steps survive the model file.
    let back = IntModel::from_bytes(&model.to_bytes().unwrap()).unwrap();
    let json = |m: &IntModel| serde_json::to_value(&m.steps).unwrap();
    assert_eq!(json(&back), json(&model));
    let x: Vec<i32> = (0..(2 * 4 * h * w_) as i32)
        .map(|i| i * 37 % 900 - 450)
        .collect();
    let opts = EngineOptions::default();
    assert_eq!(
        back.infer_quantized(x.clone(), 2, &opts).unwrap(),
        reference_logits(&model, &x, 2)
    );
}

/// Steps that do not fit together are refused with the reason.
#[test]
fn inconsistent_branches_and_groups_are_refused() {
    let act = ActFormat::new(8, 8).unwrap();
    let ws = vec![ShiftWeight::Zero; 6 * 18];
    let model = |steps: Vec<Step>| hand_model(act, (4, 3, 3), 36, steps);
    let fc = |fan_in: usize| Step::Linear {
        layer: ShiftLayer::new(
            "fc",
            &vec![ShiftWeight::Zero; 36 * fan_in],
            36,
            fan_in,
            5,
            0,
        )
        .unwrap(),
        epilogue: Epilogue {
            acc_init: vec![0; 36],
            requant: Requant::Logits,
            bias: false,
        },
    };
    let grouped = |groups: usize| Step::Conv {
        layer: ShiftLayer::new("g", &ws, 6, 18, 5, 0).unwrap(),
        cin: 4,
        kernel: 3,
        stride: 1,
        padding: 1,
        groups,
        epilogue: Epilogue {
            acc_init: vec![0; 6],
            requant: Requant::Shift { relu: false },
            bias: false,
        },
    };
    let err = |steps| model(steps).validate().unwrap_err().to_string();
    model(vec![grouped(2), fc(54)]).validate().unwrap();
    assert!(err(vec![grouped(3), fc(54)]).contains("3 groups"));
    assert!(err(vec![grouped(1), fc(54)]).contains("fan-in 18 is not 4 x 3 x 3"));
    assert!(err(vec![Step::Concat { parts: 2 }, fc(36)]).contains("2 parts with 0 saved"));
    let pool = |kernel, stride, padding| Step::MaxPool {
        kernel,
        stride,
        padding,
    };
    assert!(err(vec![pool(3, 1, 2), fc(36)]).contains("padding at most half"));
    assert!(err(vec![pool(5, 1, 0), fc(36)]).contains("5x5 pooling of a 3x3 input"));
    // Branches of different sizes.
    let e = err(vec![
        Step::SaveResidual,
        pool(3, 2, 1),
        Step::Concat { parts: 2 },
        fc(32),
    ]);
    assert!(e.contains("a 3x3 branch and a 2x2 branch"), "{e}");
}

/// The VNNI dot-product re-expression of the batch-lanes convolution
/// (`dsnn_infer::dot`) where it is taken (with residual and floored buckets,
/// input channels not a multiple of 4, stride 2, activations of 2 and 3
/// byte planes) and where a layer must keep the shift-add kernel (output
/// channels not a multiple of 4; weights spread over too many octaves;
/// activations of 4 byte planes): engine with and without it and the
/// reference agree bit for bit.
#[test]
fn vnni_dot_products_match_the_reference_where_taken_and_where_not() {
    if !dsnn_infer::kernels::dot::available() {
        eprintln!("no AVX-512 VNNI on this CPU: only the shift-add kernels are exercised");
    }
    let act = ActFormat::new(16, 16).unwrap();
    // Half the weights at m_lo, a quarter one octave below, and so on.
    let geometric = |len: usize, m_lo: u8, m_hi: u8, seed: u64| -> Vec<ShiftWeight> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let r = s >> 20;
                if r.is_multiple_of(23) {
                    return ShiftWeight::Zero;
                }
                let octaves = ((r >> 8) | 1 << 30).trailing_zeros() as u8;
                ShiftWeight::Pow {
                    negative: r & 1 == 1,
                    m: m_lo + octaves.min(m_hi - m_lo),
                }
            })
            .collect()
    };
    let (cin, c1, c2, c3) = (7, 8, 6, 4);
    // m from 2 to 13 with S = 11: residual buckets (m > 8), floored ones (m > 11).
    let conv1 = ShiftLayer::new(
        "conv1",
        &geometric(c1 * cin * 9, 2, 13, 1),
        c1,
        cin * 9,
        5,
        11,
    )
    .unwrap();
    assert!(conv1.dot_plan(3).is_some_and(|d| d.residual_weights > 0));
    // The input bounds below keep conv1's bucket sums in 32 bits (else the
    // engine would take the 64-bit im2col path and no dot products).
    let conv1_bucket = conv1.plan().max_bucket as i64;
    // Six output channels: not a multiple of four.
    let conv2 =
        ShiftLayer::new("conv2", &geometric(c2 * c1 * 9, 3, 9, 2), c2, c1 * 9, 5, 9).unwrap();
    assert!(conv2.dot_plan(3).is_none());
    // Weights spread evenly over 12 octaves: too many left to the residual.
    let spread: Vec<ShiftWeight> = (0..c3 * c2 * 9)
        .map(|i| ShiftWeight::Pow {
            negative: i % 3 == 0,
            m: (i % 12) as u8,
        })
        .collect();
    let conv3 = ShiftLayer::new("conv3", &spread, c3, c2 * 9, 5, 11).unwrap();
    assert!(conv3.dot_plan(3).is_none());
    // Stride 2 and a layer that takes the dot-product kernel again.
    let conv4 = ShiftLayer::new("conv4", &geometric(4 * c3 * 9, 1, 8, 3), 4, c3 * 9, 5, 8).unwrap();
    assert!(conv4.dot_plan(3).is_some());
    let size = 7;
    let out = 4;
    let fc = geometric(3 * 4 * out * out, 2, 6, 4);
    let shift = |cout: usize, relu: bool| Epilogue {
        acc_init: (0..cout as i64).map(|c| c * 977 - 1500).collect(),
        requant: Requant::Shift { relu },
        bias: true,
    };
    let conv = |layer: ShiftLayer, cin: usize, stride: usize, relu: bool| {
        let cout = layer.cout;
        Step::Conv {
            layer,
            cin,
            kernel: 3,
            stride,
            padding: 1,
            groups: 1,
            epilogue: shift(cout, relu),
        }
    };
    let model = hand_model(
        act,
        (cin, size, size),
        3,
        vec![
            conv(conv1, cin, 1, false),
            conv(conv2, c1, 1, true),
            conv(conv3, c2, 1, false),
            conv(conv4, c3, 2, true),
            Step::Linear {
                layer: ShiftLayer::new("fc", &fc, 3, 4 * out * out, 5, 6).unwrap(),
                epilogue: Epilogue {
                    acc_init: vec![1, -2, 3],
                    requant: Requant::Logits,
                    bias: true,
                },
            },
        ],
    );
    model.validate().unwrap();
    let n = 19;
    // Input magnitudes below 2^15, 2^23 and 2^31: 2 and 3 byte planes
    // (conv1 takes the dot-product kernel), 4 (it keeps shift-add).
    for (bound, planes) in [(30_000i64, 2), (5_000_000, 3), (20_000_000, 4)] {
        assert_eq!(dsnn_infer::dot::planes_for(bound), planes);
        assert_eq!(model_conv1_pays_off(&model, planes), planes < 4);
        assert!(bound * conv1_bucket < 1 << 31);
        let x: Vec<i32> = (0..(n * cin * size * size) as i64)
            .map(|i| ((i * 2_654_435_761 + bound) % (2 * bound + 1) - bound) as i32)
            .collect();
        check(&model, &x, n, n);
    }
}

fn model_conv1_pays_off(model: &IntModel, planes: usize) -> bool {
    let Step::Conv { layer, .. } = &model.steps[0] else {
        panic!("conv1 first")
    };
    layer.dot_plan(3).unwrap().pays_off(planes)
}
