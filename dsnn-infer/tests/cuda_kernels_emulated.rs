//! dsnn-infer's CUDA kernels (`kernels/int_ops.cu`) compiled as host C++
//! under dsnn-core's CUDA emulation (`dsnn-core/kernels/emu/cuda_emu.h`) and
//! run through `gpu::run`, the step sequence `cuda::CudaIntModel` launches,
//! with the same tables; the logits must equal the CPU engine's
//! (`IntModel::infer_quantized`) and the scalar reference's bit for bit.
//!
//! What this cannot check: the PTX itself and the launches through cudarc
//! (argument lists are mirrored by hand below, as in `src/cuda.rs`). Skipped,
//! with a message, when no C++20 compiler is found; fails instead when
//! DSNN_REQUIRE_CXX is set (CI).

mod common;

use common::{build, random_images, randomize_batch_norm};
use dsnn_core::{InputShape, ShiftType};
use dsnn_infer::gpu::{
    run, GpuLayer, GpuOptions, GpuProgram, GpuStep, GpuWeights, IntBackend, LayerOutput,
    MODE_LOGITS,
};
use dsnn_infer::model::{Epilogue, ShiftLayer};
use dsnn_infer::reference::reference_logits;
use dsnn_infer::weights::ShiftWeight;
use dsnn_infer::{ActFormat, EngineOptions, IntModel, Logits, Requant, Result, Step};
use dsnn_kernel_build::{shared_emulation, Emulation};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;

/// The kernels as host C++, built once for all tests of this file (None:
/// no compiler). Every `unsafe { emu.kernel(..) }` below is safe because
/// its binding names the wrapper's exact C signature (`kernels/emu/launch.cpp`).
fn emu() -> Option<&'static Emulation> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kernels/emu/launch.cpp");
    shared_emulation(&src, "dsnn_infer_emu")
}

/// Fewer blocks than `src/cuda.rs` launches (the grid-stride loops do the
/// rest, so that path is exercised too), small blocks to keep threads cheap.
const G: (u32, u32) = (3, 32);

type I32p = *const i32;
type I64p = *const i64;
type U32p = *const u32;
type ShiftPacked = unsafe extern "C" fn(
    u32,
    u32,
    u32,
    I32p,
    *const u8,
    u32,
    i32,
    I64p,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    i32,
    i32,
    I32p,
    I64p,
    u32,
    i64,
    i64,
    *mut i32,
    *mut i64,
);
type ShiftBuckets = unsafe extern "C" fn(
    u32,
    u32,
    u32,
    I32p,
    U32p,
    I32p,
    U32p,
    I64p,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    i32,
    i32,
    I32p,
    I64p,
    u32,
    i64,
    i64,
    *mut i32,
    *mut i64,
);
type MaxPool = unsafe extern "C" fn(u32, u32, u32, I32p, *mut i32, u32, u32, u32, u32);
type Residual = unsafe extern "C" fn(
    u32,
    u32,
    u32,
    I32p,
    I32p,
    *mut i32,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    i32,
    u32,
    i64,
    i64,
);
type AvgPool = unsafe extern "C" fn(u32, u32, u32, I32p, *mut i32, u32);

/// The kernels launched on the emulation with `src/cuda.rs`'s argument lists.
struct EmuBackend(&'static Emulation);

impl IntBackend for EmuBackend {
    type Act = Vec<i32>;
    /// The host tables are the device tables.
    type Layer = ();

    fn upload_layer(&self, _: &GpuLayer) -> Result<()> {
        Ok(())
    }

    fn upload_input(&self, x: &[i32]) -> Result<Vec<i32>> {
        Ok(x.to_vec())
    }

    fn shift_layer(
        &self,
        l: &GpuLayer,
        _: &(),
        x: &Vec<i32>,
        n: u32,
        lo: i64,
        hi: i64,
    ) -> Result<LayerOutput<Vec<i32>>> {
        let total = n * l.outputs() as u32;
        let logits_out = l.mode == MODE_LOGITS;
        // Garbage, not zeros: every output must be written by the kernel.
        let mut y = vec![i32::MIN + 7; if logits_out { 1 } else { total as usize }];
        let mut logits = vec![i64::MIN + 7; if logits_out { total as usize } else { 1 }];
        let relu = i32::from(l.relu);
        match &l.weights {
            GpuWeights::Packed {
                codes,
                code_bits,
                zero_code,
            } => {
                let f: ShiftPacked = unsafe { self.0.kernel("dsnn_int_shift_packed") };
                // SAFETY: the pointers hold the sizes the kernel indexes.
                unsafe {
                    f(
                        G.0,
                        G.1,
                        total,
                        x.as_ptr(),
                        codes.as_ptr(),
                        *code_bits,
                        i32::from(*zero_code),
                        l.acc_init.as_ptr(),
                        l.cin,
                        l.h,
                        l.w,
                        l.cout,
                        l.kernel,
                        l.stride,
                        l.pad,
                        l.oh,
                        l.ow,
                        l.acc_shift,
                        l.mode,
                        relu,
                        l.mul.as_ptr(),
                        l.add.as_ptr(),
                        l.mul_shift,
                        lo,
                        hi,
                        y.as_mut_ptr(),
                        logits.as_mut_ptr(),
                    )
                }
            }
            GpuWeights::Buckets { chan, buckets, idx } => {
                let f: ShiftBuckets = unsafe { self.0.kernel("dsnn_int_shift_buckets") };
                // SAFETY: as above.
                unsafe {
                    f(
                        G.0,
                        G.1,
                        total,
                        x.as_ptr(),
                        chan.as_ptr(),
                        buckets.as_ptr(),
                        idx.as_ptr(),
                        l.acc_init.as_ptr(),
                        l.cin,
                        l.h,
                        l.w,
                        l.cout,
                        l.stride,
                        l.pad,
                        l.oh,
                        l.ow,
                        l.acc_shift,
                        l.mode,
                        relu,
                        l.mul.as_ptr(),
                        l.add.as_ptr(),
                        l.mul_shift,
                        lo,
                        hi,
                        y.as_mut_ptr(),
                        logits.as_mut_ptr(),
                    )
                }
            }
        }
        Ok(if logits_out {
            LayerOutput::Logits(logits)
        } else {
            LayerOutput::Act(y)
        })
    }

    fn max_pool2(&self, x: &Vec<i32>, n: u32, c: u32, h: u32, w: u32) -> Result<Vec<i32>> {
        let (oh, ow) = (h / 2, w / 2);
        let total = n * c * oh * ow;
        let mut y = vec![i32::MIN + 7; total as usize];
        let f: MaxPool = unsafe { self.0.kernel("dsnn_int_max_pool2") };
        // SAFETY: as above.
        unsafe { f(G.0, G.1, total, x.as_ptr(), y.as_mut_ptr(), h, w, oh, ow) };
        Ok(y)
    }

    fn add_residual(
        &self,
        x: &Vec<i32>,
        shortcut: &Vec<i32>,
        n: u32,
        step: GpuStep,
        lo: i64,
        hi: i64,
    ) -> Result<Vec<i32>> {
        let GpuStep::AddResidual {
            c,
            h,
            w,
            sc,
            sh,
            sw,
            pad,
        } = step
        else {
            panic!("not a residual step: {step:?}");
        };
        let total = n * c * h * w;
        assert_eq!(x.len(), total as usize);
        assert_eq!(shortcut.len(), (n * sc * sh * sw) as usize);
        let mut y = vec![i32::MIN + 7; total as usize];
        let f: Residual = unsafe { self.0.kernel("dsnn_int_add_residual") };
        // SAFETY: as above.
        unsafe {
            f(
                G.0,
                G.1,
                total,
                x.as_ptr(),
                shortcut.as_ptr(),
                y.as_mut_ptr(),
                c,
                h,
                w,
                sc,
                sh,
                sw,
                i32::from(pad.is_some()),
                pad.unwrap_or(0),
                lo,
                hi,
            )
        };
        Ok(y)
    }

    fn avg_pool(&self, x: &Vec<i32>, n: u32, c: u32, hw: u32) -> Result<Vec<i32>> {
        let planes = n * c;
        assert_eq!(x.len(), (planes * hw) as usize);
        let mut y = vec![i32::MIN + 7; planes as usize];
        let f: AvgPool = unsafe { self.0.kernel("dsnn_int_avg_pool") };
        // SAFETY: as above.
        unsafe { f(G.0, G.1, planes, x.as_ptr(), y.as_mut_ptr(), hw) };
        Ok(y)
    }
}

/// Runs `model` on the emulated kernels with both weight forms and checks
/// the logits against the CPU engine (every image) and the reference (the
/// first `reference_images`). Returns how many layers ran on packed codes.
fn check(emu: &'static Emulation, model: &IntModel, x: &[i32], reference_images: usize) -> usize {
    let n = x.len() / (model.input.channels * model.input.height * model.input.width);
    let cpu = model
        .infer_quantized(x.to_vec(), n, &EngineOptions::default())
        .unwrap();
    let r = reference_images.min(n);
    if r > 0 {
        let per = x.len() / n;
        let reference = reference_logits(model, &x[..r * per], r);
        assert_eq!(
            &cpu.values[..r * model.classes],
            &reference.values[..],
            "engine vs reference"
        );
    }
    let mut packed = 0;
    for buckets in [false, true] {
        let program = GpuProgram::new(model, GpuOptions { buckets }).unwrap();
        let tables = vec![(); program.layers.len()];
        let got: Logits = run(&EmuBackend(emu), &program, &tables, x).unwrap();
        assert_eq!(
            got, cpu,
            "{}: emulated GPU kernels (buckets={buckets}) vs CPU engine",
            model.backbone
        );
        if buckets {
            assert!(program
                .layers
                .iter()
                .all(|l| matches!(l.weights, GpuWeights::Buckets { .. })));
        } else {
            packed = program
                .layers
                .iter()
                .filter(|l| matches!(l.weights, GpuWeights::Packed { .. }))
                .count();
        }
    }
    // Not all equal: the comparison sees real arithmetic.
    assert!(cpu.values.iter().any(|&v| v != cpu.values[0]));
    packed
}

fn random_weights(rng: &mut StdRng, len: usize, max_m: u8, zeros: bool) -> Vec<ShiftWeight> {
    let mut ws: Vec<ShiftWeight> = (0..len)
        .map(|_| {
            if zeros && rng.random_range(0..5) == 0 {
                ShiftWeight::Zero
            } else {
                ShiftWeight::Pow {
                    negative: rng.random(),
                    m: rng.random_range(0..=max_m),
                }
            }
        })
        .collect();
    // The largest shift is used (it decides the code width).
    ws[len / 2] = ShiftWeight::Pow {
        negative: true,
        m: max_m,
    };
    ws
}

/// A linear layer with weight `+2^0` from input `k` to output `k` and `S = 0`:
/// its logits are the previous step's activations, exposing every one.
fn identity(n: usize) -> Step {
    let ws: Vec<ShiftWeight> = (0..n * n)
        .map(|i| {
            if i / n == i % n {
                ShiftWeight::Pow {
                    negative: false,
                    m: 0,
                }
            } else {
                ShiftWeight::Zero
            }
        })
        .collect();
    Step::Linear {
        layer: ShiftLayer::new("identity", &ws, n, n, 2, 0).unwrap(),
        epilogue: Epilogue {
            acc_init: vec![0; n],
            requant: Requant::Logits,
            bias: false,
        },
    }
}

fn random_input(rng: &mut StdRng, act: ActFormat, len: usize, top: bool) -> Vec<i32> {
    (0..len)
        .map(|i| {
            if top && i % 3 != 2 {
                // Near the ends of the range: 64-bit bucket sums on the CPU.
                (if i % 2 == 0 {
                    act.hi() - i as i64 % 5
                } else {
                    act.lo() + i as i64 % 7
                }) as i32
            } else {
                rng.random_range(act.lo()..=act.hi()) as i32
            }
        })
        .collect()
}

/// Random convolutions and linear layers, every requantisation, packed
/// codes of 4, 6 and 8 bits, accumulator shifts above, at and below the
/// largest weight shift (floored buckets), inputs that force the CPU's
/// 64-bit bucket sums, odd sizes, strides and paddings, max pooling of odd
/// planes, residual adds with and without option-A padding.
#[test]
fn random_layers_match_the_cpu_engine() {
    let Some(emu) = emu() else { return };
    let mut rng = StdRng::seed_from_u64(8);
    let mut packed_layers = 0;
    let mut bucket_only = 0;
    for case in 0..24 {
        let act = if case % 3 == 0 {
            ActFormat::new(6, 10).unwrap()
        } else {
            ActFormat::new(16, 16).unwrap()
        };
        let (weight_bits, max_m, zeros) = [(5, 15u8, true), (4, 6, true), (8, 20, false)][case % 3];
        let (cin, mut h, mut w) = (
            rng.random_range(1..4),
            rng.random_range(3..9),
            rng.random_range(3..9),
        );
        let option_a = case % 5 == 4;
        if option_a {
            // Even planes of at least 4 for the option-A shortcut below.
            (h, w) = (4 + 2 * (case % 3), 6 + 2 * (case % 2));
        }
        let kernel = [1, 3, 5][case % 3].min(h.min(w));
        let stride = if option_a { 1 } else { 1 + case % 2 };
        let padding = if option_a {
            kernel / 2
        } else {
            rng.random_range(0..=kernel / 2)
        };
        let cout = rng.random_range(1..6);
        let oh = (h + 2 * padding - kernel) / stride + 1;
        let ow = (w + 2 * padding - kernel) / stride + 1;
        let s = match case % 4 {
            0 => u32::from(max_m) + 2,
            1 | 2 => u32::from(max_m),
            _ => u32::from(max_m) - 4,
        };
        let fan_in = cin * kernel * kernel;
        let conv = ShiftLayer::new(
            "conv",
            &random_weights(&mut rng, cout * fan_in, max_m, zeros),
            cout,
            fan_in,
            weight_bits,
            s,
        )
        .unwrap();
        let big = 1i64 << (act.fraction_bits + s);
        let acc_init = (0..cout).map(|_| rng.random_range(-big..big)).collect();
        let requant = match case % 6 {
            0 | 3 => Requant::Shift {
                relu: case % 2 == 0,
            },
            1 | 4 => Requant::Affine {
                mul: (0..cout)
                    .map(|_| rng.random_range(-(1 << 20)..1 << 20))
                    .collect(),
                add: (0..cout)
                    .map(|_| rng.random_range(-(1i64 << 40)..1 << 40) << 3)
                    .collect(),
                mul_shift: 20,
                add_shift: 3,
                relu: case % 2 == 1,
            },
            _ => Requant::Logits,
        };
        let logits = matches!(requant, Requant::Logits);
        let mut steps = vec![Step::Conv {
            layer: conv,
            cin,
            kernel,
            stride,
            padding,
            groups: 1,
            epilogue: Epilogue {
                acc_init,
                requant,
                bias: true,
            },
        }];
        let (mut c, mut hh, mut ww) = (cout, oh, ow);
        if !logits {
            if case % 4 == 1 && hh >= 2 && ww >= 2 && !option_a {
                steps.push(Step::MaxPool2);
                (hh, ww) = (hh / 2, ww / 2);
            }
            if case % 5 == 2 {
                // A same-shape residual around a 3x3 convolution.
                let fan = c * 9;
                steps.push(Step::SaveResidual);
                steps.push(Step::Conv {
                    layer: ShiftLayer::new(
                        "res",
                        &random_weights(&mut rng, c * fan, 7, true),
                        c,
                        fan,
                        5,
                        5,
                    )
                    .unwrap(),
                    cin: c,
                    kernel: 3,
                    stride: 1,
                    padding: 1,
                    groups: 1,
                    epilogue: Epilogue {
                        acc_init: vec![0; c],
                        requant: Requant::Shift { relu: false },
                        bias: false,
                    },
                });
                steps.push(Step::AddResidual {
                    pad: None,
                    relu: true,
                });
            }
            if option_a {
                // An option-A residual: stride 2, channels padded by p each side.
                let p = c.div_ceil(2);
                let (c2, fan) = (c + 2 * p, c * 9);
                assert!(hh % 2 == 0 && ww % 2 == 0 && hh >= 4, "{hh}x{ww}");
                {
                    steps.push(Step::SaveResidual);
                    steps.push(Step::Conv {
                        layer: ShiftLayer::new(
                            "down",
                            &random_weights(&mut rng, c2 * fan, 7, true),
                            c2,
                            fan,
                            5,
                            6,
                        )
                        .unwrap(),
                        cin: c,
                        kernel: 3,
                        stride: 2,
                        padding: 1,
                        groups: 1,
                        epilogue: Epilogue {
                            acc_init: vec![0; c2],
                            requant: Requant::Shift { relu: true },
                            bias: false,
                        },
                    });
                    steps.push(Step::AddResidual {
                        pad: Some(p),
                        relu: true,
                    });
                    (c, hh, ww) = (c2, hh / 2, ww / 2);
                }
            }
            if case % 7 == 3 {
                steps.push(Step::GlobalAvgPool);
                (hh, ww) = (1, 1);
            }
            steps.push(identity(c * hh * ww));
        }
        let classes = if logits { cout * oh * ow } else { c * hh * ww };
        let model = IntModel {
            backbone: format!("random-{case}"),
            shift_type: ShiftType::Q,
            input: InputShape {
                channels: cin,
                height: h,
                width: w,
            },
            classes,
            act,
            weight_bits,
            input_transform: None,
            steps,
        };
        if let Err(e) = model.validate() {
            panic!("case {case}: {e}");
        }
        let n = 1 + case % 3;
        let x = random_input(&mut rng, act, n * cin * h * w, case % 2 == 0);
        let packed = check(emu, &model, &x, n);
        packed_layers += packed;
        if s < u32::from(max_m) {
            bucket_only += 1;
        }
    }
    assert!(
        packed_layers >= 10,
        "{packed_layers} layers ran on packed codes"
    );
    assert!(bucket_only >= 5, "{bucket_only} cases had floored buckets");
}

fn shape(c: usize, h: usize) -> InputShape {
    InputShape {
        channels: c,
        height: h,
        width: h,
    }
}

/// LeNet-5 (Q and PS), ResNet20 and ResNet18 (random batch norms) built with
/// dsnn-core and exported: whole networks on the emulated kernels give
/// `IntModel::infer`'s logits.
#[test]
fn lenet5_and_resnet20_match_the_cpu_engine() {
    let Some(emu) = emu() else { return };
    for (backbone, st, input, seed) in [
        ("lenet5", ShiftType::Q, shape(1, 28), 1),
        ("lenet5", ShiftType::PS, shape(1, 28), 2),
        ("resnet20", ShiftType::Q, shape(3, 32), 3),
        ("resnet20", ShiftType::PS, shape(3, 32), 4),
        // Projection shortcuts (the swap of saved activations).
        ("resnet18", ShiftType::Q, shape(3, 8), 5),
    ] {
        let (net, spec) = build(backbone, st, 5, (16, 16), input, seed);
        if backbone != "lenet5" {
            randomize_batch_norm(net.as_ref(), seed);
        }
        let model = IntModel::from_network(net.as_ref(), &spec).unwrap();
        let images = random_images(input, 3, seed + 10);
        let x = model.quantize_input(&images);
        let packed = check(emu, &model, &x, 1);
        assert!(packed > 0, "{backbone}: no layer ran on packed codes");
    }
}

/// Bad input is refused before anything is launched.
#[test]
fn out_of_range_input_is_refused() {
    let Some(emu) = emu() else { return };
    let (net, spec) = build("lenet5", ShiftType::Q, 5, (16, 16), shape(1, 28), 5);
    let model = IntModel::from_network(net.as_ref(), &spec).unwrap();
    let program = GpuProgram::new(&model, GpuOptions::default()).unwrap();
    let tables = vec![(); program.layers.len()];
    let mut x = vec![0i32; 28 * 28];
    x[3] = (model.act.hi() + 1) as i32;
    let err = run(&EmuBackend(emu), &program, &tables, &x).unwrap_err();
    assert!(
        err.to_string().contains("outside the activation range"),
        "{err}"
    );
    let err = run(&EmuBackend(emu), &program, &tables, &x[..100]).unwrap_err();
    assert!(err.to_string().contains("not a whole number"), "{err}");
    // An empty batch launches nothing and gives no logits, as on the CPU.
    let empty = run(&EmuBackend(emu), &program, &tables, &[]).unwrap();
    assert_eq!(
        empty,
        model
            .infer_quantized(Vec::new(), 0, &EngineOptions::default())
            .unwrap()
    );
}

/// Steps without a GPU kernel (grouped convolutions, general max pooling,
/// concatenation, additions without ReLU) make the GPU program refuse the
/// model, naming the step; the CPU engine runs them.
#[test]
fn models_with_steps_the_gpu_lacks_are_refused_naming_the_step() {
    for (backbone, side, layer, says) in [
        (
            "mobilenetv2",
            8,
            "layers.0.conv2",
            "a grouped convolution (32 groups) has no GPU kernel",
        ),
        (
            "googlenet",
            4,
            "max pool",
            "3x3 max pooling (stride 1, padding 1) has no GPU kernel",
        ),
    ] {
        let (net, spec) = build(backbone, ShiftType::Q, 5, (16, 16), shape(3, side), 7);
        let model = IntModel::from_network(net.as_ref(), &spec).unwrap();
        let err = GpuProgram::new(&model, GpuOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("`{layer}`")) && err.contains(says),
            "{backbone}: {err}"
        );
    }
    // Without the stride-1 poolings (which keep the shape), GoogLeNet's
    // first step the GPU lacks is its first concatenation.
    let (net, spec) = build("googlenet", ShiftType::Q, 5, (16, 16), shape(3, 4), 7);
    let mut model = IntModel::from_network(net.as_ref(), &spec).unwrap();
    model
        .steps
        .retain(|s| !matches!(s, Step::MaxPool { stride: 1, .. }));
    let err = GpuProgram::new(&model, GpuOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a concatenation of 4 branches has no GPU kernel"),
        "{err}"
    );
    // A residual addition without ReLU after LeNet-5's first convolution.
    let (net, spec) = build("lenet5", ShiftType::Q, 5, (16, 16), shape(1, 28), 5);
    let mut model = IntModel::from_network(net.as_ref(), &spec).unwrap();
    model.steps.insert(1, Step::SaveResidual);
    model.steps.insert(
        2,
        Step::AddResidual {
            pad: None,
            relu: false,
        },
    );
    let err = GpuProgram::new(&model, GpuOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a residual addition without ReLU has no GPU kernel"),
        "{err}"
    );
}
