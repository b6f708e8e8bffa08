//! The GPU check (`scripts/gpu-check.sh` runs it; see docs/gpu.md).
//!
//! 1. Every dsnn custom op on the device against the CPU path, on random
//!    inputs, forward and backward, with the bounds printed next to each
//!    result (exact where the kernel mirrors the CPU's arithmetic, a relative
//!    error where the summation order differs).
//! 2. A few training steps of LeNet-5 and ResNet20 (float, Q, PS; with
//!    `--train-models` also MobileNetV2 and GoogLeNet, whose depthwise
//!    convolutions and 3x3 max poolings run on their own kernels) from the
//!    same initial weights and batches on the CPU and the device: the losses
//!    must agree.
//! 3. Training and inference throughput (images/s) at batch 128, with dsnn's
//!    convolution and with candle's.
//! 4. NVML energy per image (inference and training, batch 128), as
//!    `../shared/bench/pytorch-deepshift/energy_gpu.py` measures PyTorch.
//!
//! `gpu_check [--device cuda:N|cpu] [--train-steps N] [--steps N] [--seconds S]
//!  [--models resnet20,lenet5] [--train-models LIST] [--tf32] [--skip-perf] [--skip-energy]
//!  [--json PATH]`: `--models` are measured (and training-checked unless
//!  `--train-models` names other networks for the training check).
//!
//! `--device cpu` runs the whole harness with the CPU as the device under
//! test (every comparison must then be exact): a self-test of this program
//! on machines without a GPU. Exit status 1 when a check fails, 2 when the
//! device cannot be opened.

use candle_core::{DType, Device, Tensor, Var};
use dsnn_core::batchnorm::BatchNormTrain;
use dsnn_core::conv::{conv2d, conv2d_grouped, ConvGeometry};
use dsnn_core::device::{select, DeviceSpec};
use dsnn_core::layers::ConvEngine;
use dsnn_core::optim::{Optimizer, OptimizerSettings};
use dsnn_core::pool::{max_pool, PoolWindow};
use dsnn_core::quant::{
    FixedPoint, PsWeight, QuantizeActivation, QuantizeWeightQ, RandomStream, Rounding,
};
use dsnn_core::train::train_step;
use dsnn_core::{backbone_by_name, Forward, ModelSpec, ShiftEnd, ShiftSettings, ShiftType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::{Arc, Mutex};
use std::time::Instant;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// How closely a device result must match the CPU's.
#[derive(Debug, Clone, Copy)]
enum Bound {
    /// Bit-identical, except at most this fraction of elements.
    Exact(f64),
    /// `max |gpu - cpu| / max |cpu|` at most this.
    Rel(f64),
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Exact(0.0) => write!(f, "exact"),
            Bound::Exact(frac) => write!(f, "exact but {frac:.0e} of elements"),
            Bound::Rel(r) => write!(f, "rel <= {r:.0e}"),
        }
    }
}

#[derive(Debug, serde::Serialize)]
struct Check {
    name: String,
    elements: usize,
    max_abs: f64,
    rel: f64,
    mismatches: usize,
    bound: String,
    pass: bool,
}

fn compare(name: &str, got: &Tensor, want: &Tensor, bound: Bound) -> Res<Check> {
    let g = got
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let w = want
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    if g.len() != w.len() {
        return Err(format!("{name}: {} elements against {}", g.len(), w.len()).into());
    }
    let mut max_abs = 0f64;
    let mut scale = 0f64;
    let mut mismatches = 0usize;
    for (&a, &b) in g.iter().zip(&w) {
        let same = a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()) || (a == b);
        if !same {
            mismatches += 1;
        }
        let d = (f64::from(a) - f64::from(b)).abs();
        max_abs = if d.is_nan() {
            f64::INFINITY
        } else {
            max_abs.max(d)
        };
        scale = scale.max(f64::from(b).abs());
    }
    let rel = if max_abs == 0.0 {
        0.0
    } else {
        max_abs / scale.max(f64::MIN_POSITIVE)
    };
    let pass = match bound {
        Bound::Exact(frac) => mismatches as f64 <= frac * g.len() as f64,
        Bound::Rel(r) => rel <= r,
    };
    Ok(Check {
        name: name.to_string(),
        elements: g.len(),
        max_abs,
        rel,
        mismatches,
        bound: bound.to_string(),
        pass,
    })
}

fn uniform(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

fn tensor(v: Vec<f32>, shape: &[usize]) -> Res<Tensor> {
    Ok(Tensor::from_vec(v, shape.to_vec(), &Device::Cpu)?)
}

/// Runs `f` on copies of `inputs` on the CPU and on `dev`; compares each
/// output and the gradient of `sum(output_0 * r)` for every input. An error
/// (a kernel that fails to load or launch, say) becomes a failed row, and
/// the other checks still run.
fn check_op(
    checks: &mut Vec<Check>,
    dev: &Device,
    name: &str,
    inputs: &[Tensor],
    grads: bool,
    bounds: (Bound, Bound),
    f: &dyn Fn(&[Tensor]) -> candle_core::Result<Vec<Tensor>>,
) -> Res<()> {
    if let Err(e) = check_op_inner(checks, dev, name, inputs, grads, bounds, f) {
        checks.push(Check {
            name: format!("{name}: ERROR {e}"),
            elements: 0,
            max_abs: f64::NAN,
            rel: f64::NAN,
            mismatches: 0,
            bound: "runs".into(),
            pass: false,
        });
    }
    Ok(())
}

fn check_op_inner(
    checks: &mut Vec<Check>,
    dev: &Device,
    name: &str,
    inputs: &[Tensor],
    grads: bool,
    bounds: (Bound, Bound),
    f: &dyn Fn(&[Tensor]) -> candle_core::Result<Vec<Tensor>>,
) -> Res<()> {
    let run = |d: &Device| -> Res<(Vec<Tensor>, Vec<Option<Tensor>>)> {
        let vars = inputs
            .iter()
            .map(|t| Var::from_tensor(&t.to_device(d)?))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let outs = f(&ts)?;
        let mut gs = vec![None; ts.len()];
        if grads {
            let mut rng = StdRng::seed_from_u64(99);
            let y = &outs[0];
            let r = Tensor::from_vec(
                uniform(&mut rng, y.elem_count(), -1.0, 1.0),
                y.shape(),
                &Device::Cpu,
            )?
            .to_device(d)?;
            let store = (y * r)?.sum_all()?.backward()?;
            for (g, t) in gs.iter_mut().zip(&ts) {
                *g = store.get(t).cloned();
            }
        }
        Ok((outs, gs))
    };
    let (want, want_g) = run(&Device::Cpu)?;
    let (got, got_g) = run(dev)?;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        checks.push(compare(&format!("{name} out{i}"), g, w, bounds.0)?);
    }
    for (i, (g, w)) in got_g.iter().zip(&want_g).enumerate() {
        match (g, w) {
            (Some(g), Some(w)) => checks.push(compare(&format!("{name} d_in{i}"), g, w, bounds.1)?),
            (None, None) => {}
            _ => return Err(format!("{name}: gradient {i} exists on one device only").into()),
        }
    }
    Ok(())
}

fn kernel_checks(dev: &Device, checks: &mut Vec<Check>) -> Res<()> {
    let mut rng = StdRng::seed_from_u64(1);
    let exact = Bound::Exact(0.0);
    // Straight-through quantisers: their gradients are the incoming ones.
    let n = 100_003;
    let mut xv = uniform(&mut rng, n, -40_000.0, 40_000.0);
    xv[..1000].copy_from_slice(&uniform(&mut rng, 1000, -1.0, 1.0));
    xv[1000] = 0.0;
    xv[1001] = -0.0;
    let x = tensor(xv, &[n])?;
    for (i, f) in [(16, 16), (4, 4), (1, 8), (8, 3)] {
        let fp = FixedPoint {
            integer_bits: i,
            fraction_bits: f,
        };
        check_op(
            checks,
            dev,
            &format!("round_to_fixed({i},{f})"),
            std::slice::from_ref(&x),
            true,
            (exact, exact),
            &|t| Ok(vec![t[0].apply_op1(QuantizeActivation(fp))?]),
        )?;
    }
    let mut wv = uniform(&mut rng, n, -1.5, 1.5);
    wv[..2000].copy_from_slice(&uniform(&mut rng, 2000, -1e-4, 1e-4));
    wv[2000] = 0.0;
    for (i, v) in wv[2001..2064].iter_mut().enumerate() {
        *v = 2f32.powi(-(i as i32)); // exact powers of two
    }
    let w = tensor(wv, &[n])?;
    for (bits, rounding) in [
        (5, Rounding::Deterministic),
        (8, Rounding::Deterministic),
        (5, Rounding::Stochastic),
        (3, Rounding::Stochastic),
    ] {
        let op = QuantizeWeightQ {
            weight_bits: bits,
            rounding,
            stream: RandomStream { seed: 7, step: 3 },
        };
        // The log is correctly rounded on the GPU; the CPU's logf may differ
        // by an ulp, which can move a value across a rounding boundary.
        check_op(
            checks,
            dev,
            &format!("quantize_q({bits},{rounding})"),
            std::slice::from_ref(&w),
            true,
            (Bound::Exact(1e-5), exact),
            &|t| Ok(vec![t[0].apply_op1(op)?]),
        )?;
    }
    let shift = tensor(uniform(&mut rng, n, -20.0, 2.0), &[n])?;
    let sign = tensor(uniform(&mut rng, n, -1.5, 1.5), &[n])?;
    for (bits, rounding) in [(5, Rounding::Deterministic), (5, Rounding::Stochastic)] {
        let op = PsWeight {
            weight_bits: bits,
            rounding,
            stream: RandomStream { seed: 11, step: 5 },
        };
        // Backward: grad * W * ln2 by candle's element-wise ops.
        check_op(
            checks,
            dev,
            &format!("ps_weight({bits},{rounding})"),
            &[shift.clone(), sign.clone()],
            true,
            (exact, Bound::Rel(1e-6)),
            &|t| Ok(vec![t[0].apply_op2(&t[1], op)?]),
        )?;
    }

    // Convolutions: forward, input and weight gradients.
    for (nb, cin, h, cout, k, stride, pad) in [
        (8, 3, 32, 16, 3, 1, 1),
        (8, 16, 32, 32, 3, 2, 1),
        (8, 1, 28, 20, 5, 1, 0),
        (4, 16, 16, 32, 1, 2, 0),
        (3, 5, 9, 7, 3, 2, 2),
    ] {
        let x = tensor(
            uniform(&mut rng, nb * cin * h * h, -2.0, 2.0),
            &[nb, cin, h, h],
        )?;
        let w = tensor(
            uniform(&mut rng, cout * cin * k * k, -0.5, 0.5),
            &[cout, cin, k, k],
        )?;
        let g = ConvGeometry {
            stride,
            padding: pad,
        };
        check_op(
            checks,
            dev,
            &format!("conv2d n{nb} {cin}->{cout} {h}x{h} k{k} s{stride} p{pad}"),
            &[x, w],
            true,
            (Bound::Rel(1e-5), Bound::Rel(1e-5)),
            &|t| Ok(vec![conv2d(&t[0], &t[1], g)?]),
        )?;
    }

    // Grouped and depthwise convolutions (direct kernels on CUDA).
    for (nb, cin, h, cout, k, stride, pad, groups) in [
        (8, 32, 16, 32, 3, 1, 1, 32),
        (8, 24, 17, 24, 3, 2, 1, 24),
        (4, 16, 9, 32, 3, 1, 1, 16),
        (4, 8, 11, 6, 3, 1, 0, 2),
        (3, 6, 10, 9, 5, 2, 2, 3),
    ] {
        let x = tensor(
            uniform(&mut rng, nb * cin * h * h, -2.0, 2.0),
            &[nb, cin, h, h],
        )?;
        let w = tensor(
            uniform(&mut rng, cout * (cin / groups) * k * k, -0.5, 0.5),
            &[cout, cin / groups, k, k],
        )?;
        let g = ConvGeometry {
            stride,
            padding: pad,
        };
        check_op(
            checks,
            dev,
            &format!("conv2d n{nb} {cin}->{cout} {h}x{h} k{k} s{stride} p{pad} g{groups}"),
            &[x, w],
            true,
            (Bound::Rel(1e-5), Bound::Rel(1e-5)),
            &|t| Ok(vec![conv2d_grouped(&t[0], &t[1], g, groups)?]),
        )?;
    }

    // Max pooling with any window (GoogLeNet's 3x3 ones): the window's
    // choice, ties included, and so the gradients, are exact. Values from
    // {0, 1, 2} make ties frequent.
    for (shape, kernel, stride, padding, ties) in [
        ([8usize, 16, 15, 15], 3, 1, 1, false),
        ([8, 16, 15, 15], 3, 1, 1, true),
        ([8, 16, 16, 16], 3, 2, 1, true),
        ([8, 16, 13, 13], 2, 2, 0, true),
    ] {
        let numel: usize = shape.iter().product();
        let values = if ties {
            (0..numel).map(|_| rng.random_range(0..3) as f32).collect()
        } else {
            uniform(&mut rng, numel, -1.0, 1.0)
        };
        let window = PoolWindow {
            kernel,
            stride,
            padding,
        };
        check_op(
            checks,
            dev,
            &format!(
                "max_pool {kernel}x{kernel}/{stride}/{padding} {shape:?}{}",
                if ties { " ties" } else { "" }
            ),
            &[tensor(values, &shape)?],
            true,
            (exact, exact),
            &|t| Ok(vec![max_pool(&t[0], window)?]),
        )?;
    }

    // Batch norm (training mode), with and without the fused ReLU.
    for (shape, relu) in [
        (vec![16usize, 8, 12, 12], false),
        (vec![16, 8, 12, 12], true),
        (vec![32, 10], false),
    ] {
        let c = shape[1];
        let numel: usize = shape.iter().product();
        let x = tensor(uniform(&mut rng, numel, -3.0, 5.0), &shape)?;
        let gamma = tensor(uniform(&mut rng, c, 0.5, 1.5), &[c])?;
        let beta = tensor(uniform(&mut rng, c, -0.5, 0.5), &[c])?;
        let stats_cpu = Arc::new(Mutex::new(None));
        let stats_dev = Arc::new(Mutex::new(None));
        let (sc, sd) = (stats_cpu.clone(), stats_dev.clone());
        check_op(
            checks,
            dev,
            &format!("batch_norm {shape:?} relu={relu}"),
            &[x, gamma, beta],
            true,
            (Bound::Rel(1e-5), Bound::Rel(1e-4)),
            &|t| {
                let stats = if t[0].device().is_cpu() {
                    sc.clone()
                } else {
                    sd.clone()
                };
                Ok(vec![t[0].apply_op3(
                    &t[1],
                    &t[2],
                    BatchNormTrain {
                        eps: 1e-5,
                        stats,
                        relu,
                    },
                )?])
            },
        )?;
        if !dev.is_cpu() {
            let (mc, vc) = stats_cpu.lock().unwrap().take().ok_or("no CPU stats")?;
            let (md, vd) = stats_dev.lock().unwrap().take().ok_or("no device stats")?;
            checks.push(compare("batch_norm mean", &md, &mc, Bound::Rel(1e-5))?);
            checks.push(compare("batch_norm var", &vd, &vc, Bound::Rel(1e-5))?);
        }
    }

    // The small fused ops.
    let a = tensor(
        uniform(&mut rng, 6 * 10 * 13 * 11, -1.0, 1.0),
        &[6, 10, 13, 11],
    )?;
    let b = tensor(
        uniform(&mut rng, 6 * 10 * 13 * 11, -1.0, 1.0),
        &[6, 10, 13, 11],
    )?;
    let bias = tensor(uniform(&mut rng, 10, -1.0, 1.0), &[10])?;
    check_op(
        checks,
        dev,
        "relu",
        std::slice::from_ref(&a),
        true,
        (exact, exact),
        &|t| Ok(vec![dsnn_core::ops::relu(&t[0])?]),
    )?;
    check_op(
        checks,
        dev,
        "add_relu",
        &[a.clone(), b.clone()],
        true,
        (exact, exact),
        &|t| Ok(vec![dsnn_core::ops::add_relu(&t[0], &t[1])?]),
    )?;
    check_op(
        checks,
        dev,
        "add_channel_bias",
        &[a.clone(), bias.clone()],
        true,
        (exact, Bound::Rel(1e-5)),
        &|t| Ok(vec![dsnn_core::ops::add_channel_bias(&t[0], &t[1])?]),
    )?;
    let a2 = tensor(uniform(&mut rng, 32 * 10, -1.0, 1.0), &[32, 10])?;
    check_op(
        checks,
        dev,
        "add_channel_bias 2-D",
        &[a2, bias],
        true,
        (exact, Bound::Rel(1e-5)),
        &|t| Ok(vec![dsnn_core::ops::add_channel_bias(&t[0], &t[1])?]),
    )?;
    check_op(
        checks,
        dev,
        "max_pool2x2",
        std::slice::from_ref(&a),
        true,
        (exact, exact),
        &|t| Ok(vec![dsnn_core::ops::max_pool2x2(&t[0])?]),
    )?;
    optimizer_checks(dev, checks)
}

/// Every optimiser, 13 steps on one parameter (RAdam's rectified phase from
/// step 6, Ranger's Lookahead at 6 and 12), on the CPU and on `dev` with the
/// same gradients: the fused `dsnn_opt_*` kernels must give the host loop's
/// weights bit for bit. An error becomes a failed row.
fn optimizer_checks(dev: &Device, checks: &mut Vec<Check>) -> Res<()> {
    use dsnn_core::optim::OptimizerKind;
    use dsnn_core::params::{Param, ParamRole};
    let n = 70_001usize;
    for kind in OptimizerKind::ALL {
        let name = format!("optimizer {kind}");
        let mut rng = StdRng::seed_from_u64(31);
        let w0 = uniform(&mut rng, n, -1.0, 1.0);
        let grads: Vec<Vec<f32>> = (0..13).map(|_| uniform(&mut rng, n, -2.0, 2.0)).collect();
        let run = |d: &Device| -> Res<Tensor> {
            let var = Var::from_tensor(&Tensor::from_vec(w0.clone(), n, d)?)?;
            let params = [Param {
                name: "w".into(),
                var: var.clone(),
                role: ParamRole::Plain,
            }];
            let settings = OptimizerSettings {
                kind,
                lr: 0.01,
                momentum: 0.9,
                weight_decay: 1e-4,
            };
            let mut opt = Optimizer::new(settings, 1)?;
            for (t, g) in grads.iter().enumerate() {
                let g = Tensor::from_vec(g.clone(), n, d)?;
                let store = (var.as_tensor() * g)?.sum_all()?.backward()?;
                opt.step(&params, &store, 0.01 / (t + 1) as f64)?;
            }
            Ok(var.as_tensor().clone())
        };
        match run(&Device::Cpu).and_then(|want| Ok((want, run(dev)?))) {
            Ok((want, got)) => checks.push(compare(&name, &got, &want, Bound::Exact(0.0))?),
            Err(e) => checks.push(Check {
                name,
                elements: n,
                max_abs: f64::NAN,
                rel: f64::NAN,
                mismatches: n,
                bound: format!("ERROR: {e}"),
                pass: false,
            }),
        }
    }
    Ok(())
}

#[derive(Debug, serde::Serialize)]
struct TrainCheck {
    model: String,
    variant: String,
    cpu_losses: Vec<f32>,
    device_losses: Vec<f32>,
    first_rel: f64,
    max_rel: f64,
    bound: String,
    pass: bool,
}

fn spec_for(model: &str, variant: &str) -> Res<(Box<dyn dsnn_core::Backbone>, ModelSpec)> {
    let backbone = backbone_by_name(model)?;
    let shift = match variant {
        "float" => None,
        "Q" => Some(ShiftType::Q),
        "PS" => Some(ShiftType::PS),
        other => return Err(format!("unknown variant {other} (allowed: float, Q, PS)").into()),
    };
    let spec = ModelSpec {
        input: backbone.default_input(),
        classes: 10,
        shift: shift.map(|t| ShiftSettings {
            shift_type: t,
            ..Default::default()
        }),
        shift_depth: usize::MAX,
        shift_end: ShiftEnd::Output,
        seed: 0,
        arch: Default::default(),
    };
    Ok((backbone, spec))
}

fn batch(spec: &ModelSpec, n: usize, seed: u64, dev: &Device) -> Res<(Tensor, Tensor)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let i = spec.input;
    let x = uniform(&mut rng, n * i.channels * i.height * i.width, -1.0, 1.0);
    let y: Vec<u32> = (0..n).map(|_| rng.random_range(0..10)).collect();
    let x = Tensor::from_vec(x, (n, i.channels, i.height, i.width), dev)?;
    let y = Tensor::from_vec(y, n, dev)?;
    Ok((x, y))
}

fn training_checks(
    dev: &Device,
    models: &[String],
    steps: usize,
    out: &mut Vec<TrainCheck>,
) -> Res<()> {
    for model in models {
        for variant in ["float", "Q", "PS"] {
            let (backbone, spec) = spec_for(model, variant)?;
            let mut losses = Vec::new();
            let run = |d: &Device| -> Res<Vec<f32>> {
                let net = backbone.build(&spec, d)?;
                let mut opt = Optimizer::new(
                    OptimizerSettings {
                        lr: 0.05,
                        ..Default::default()
                    },
                    net.params().params().len(),
                )?;
                let mut l = Vec::new();
                for s in 0..steps {
                    let (x, y) = batch(&spec, 32, s as u64, d)?;
                    l.push(train_step(net.as_ref(), &mut opt, &x, &y, 0.05)?.0);
                }
                Ok(l)
            };
            for d in [&Device::Cpu, dev] {
                match run(d) {
                    Ok(l) => losses.push(l),
                    Err(e) => {
                        out.push(TrainCheck {
                            model: model.clone(),
                            variant: variant.to_string(),
                            cpu_losses: losses.pop().unwrap_or_default(),
                            device_losses: Vec::new(),
                            first_rel: f64::NAN,
                            max_rel: f64::NAN,
                            bound: format!("ERROR on {d:?}: {e}"),
                            pass: false,
                        });
                        break;
                    }
                }
            }
            if losses.len() != 2 {
                continue;
            }
            let rel =
                |a: f32, b: f32| (f64::from(a) - f64::from(b)).abs() / f64::from(b).abs().max(1e-6);
            let rels: Vec<f64> = losses[0]
                .iter()
                .zip(&losses[1])
                .map(|(&c, &g)| rel(g, c))
                .collect();
            let first_rel = rels.first().copied().unwrap_or(0.0);
            let max_rel = rels.iter().copied().fold(0.0, f64::max);
            // Step 1 sees identical weights: only summation order differs.
            // Later steps: shift weights may round the other way after an
            // update that differs in the last bits.
            let later = if variant == "float" { 1e-3 } else { 2e-2 };
            let pass = first_rel <= 1e-4 && max_rel <= later && rels.iter().all(|r| r.is_finite());
            out.push(TrainCheck {
                model: model.clone(),
                variant: variant.to_string(),
                cpu_losses: losses[0].clone(),
                device_losses: losses[1].clone(),
                first_rel,
                max_rel,
                bound: format!("step 1 rel <= 1e-4, all steps <= {later:.0e}"),
                pass,
            });
        }
    }
    Ok(())
}

#[derive(Debug, serde::Serialize)]
struct Perf {
    model: String,
    variant: String,
    engine: String,
    train_img_s: f64,
    infer_img_s: f64,
}

/// Training and inference images/s of one configuration.
fn measure_perf(
    dev: &Device,
    model: &str,
    variant: &str,
    engine: ConvEngine,
    steps: usize,
) -> Res<(f64, f64)> {
    let b = 128;
    let (backbone, spec) = spec_for(model, variant)?;
    let net = backbone.build_with(&spec, dev, engine)?;
    let mut opt = Optimizer::new(OptimizerSettings::default(), net.params().params().len())?;
    let (x, y) = batch(&spec, b, 1, dev)?;
    for _ in 0..3 {
        train_step(net.as_ref(), &mut opt, &x, &y, 0.1)?;
    }
    dev.synchronize()?;
    let t = Instant::now();
    for _ in 0..steps {
        train_step(net.as_ref(), &mut opt, &x, &y, 0.1)?;
    }
    dev.synchronize()?;
    let train_img_s = (steps * b) as f64 / t.elapsed().as_secs_f64();
    for _ in 0..3 {
        net.forward(&x, Forward::eval())?;
    }
    dev.synchronize()?;
    let t = Instant::now();
    for _ in 0..steps {
        net.forward(&x, Forward::eval())?;
    }
    dev.synchronize()?;
    let infer_img_s = (steps * b) as f64 / t.elapsed().as_secs_f64();
    Ok((train_img_s, infer_img_s))
}

/// Every model, variant and convolution engine; a failing row is reported
/// and skipped.
fn throughput(dev: &Device, models: &[String], steps: usize, out: &mut Vec<Perf>) {
    for model in models {
        for variant in ["float", "Q", "PS"] {
            for (engine, ename) in [(ConvEngine::Dsnn, "dsnn"), (ConvEngine::Candle, "candle")] {
                match measure_perf(dev, model, variant, engine, steps) {
                    Ok((train_img_s, infer_img_s)) => {
                        eprintln!("  {model} {variant} {ename}: train {train_img_s:.0} img/s, infer {infer_img_s:.0} img/s");
                        out.push(Perf {
                            model: model.clone(),
                            variant: variant.to_string(),
                            engine: ename.to_string(),
                            train_img_s,
                            infer_img_s,
                        });
                    }
                    Err(e) => eprintln!("  {model} {variant} {ename}: ERROR {e}"),
                }
            }
        }
    }
}

#[derive(Debug, serde::Serialize)]
struct EnergyRow {
    model: String,
    variant: String,
    kind: String,
    img_s: f64,
    avg_w: f64,
    mj_per_img: f64,
    mj_per_img_above_idle: f64,
}

fn energy(dev: &Device, models: &[String], seconds: f64, out: &mut Vec<EnergyRow>) -> Res<f64> {
    use dsnn_energy::EnergyMeter;
    let mut meter = dsnn_energy::NvmlMeter::open()?;
    let mut measure = |f: &mut dyn FnMut() -> Res<()>| -> Res<(usize, f64, f64)> {
        for _ in 0..5 {
            f()?;
        }
        dev.synchronize()?;
        meter.start()?;
        let t = Instant::now();
        let mut n = 0;
        let mut failure = None;
        while t.elapsed().as_secs_f64() < seconds {
            if let Err(e) = f() {
                failure = Some(e);
                break;
            }
            n += 1;
        }
        let synced = dev.synchronize();
        // Stopped whatever happened, so that the next row can start it.
        let r = meter.stop()?;
        if let Some(e) = failure {
            return Err(e);
        }
        synced?;
        Ok((n, r.energy.joules(), r.wall.as_secs_f64()))
    };
    let (_, idle_j, idle_s) = measure(&mut || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        Ok(())
    })?;
    let idle_w = idle_j / idle_s;
    let b = 128;
    for model in models {
        for variant in ["float", "Q", "PS"] {
            let (backbone, spec) = spec_for(model, variant)?;
            let setup = || -> Res<_> {
                let net = backbone.build(&spec, dev)?;
                let opt =
                    Optimizer::new(OptimizerSettings::default(), net.params().params().len())?;
                let (x, y) = batch(&spec, b, 2, dev)?;
                Ok((net, opt, x, y))
            };
            let (net, mut opt, x, y) = match setup() {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("  {model} {variant}: ERROR {e}");
                    continue;
                }
            };
            for kind in ["infer", "train"] {
                let measured = if kind == "infer" {
                    measure(&mut || {
                        net.forward(&x, Forward::eval())?;
                        Ok(())
                    })
                } else {
                    measure(&mut || {
                        train_step(net.as_ref(), &mut opt, &x, &y, 0.1)?;
                        Ok(())
                    })
                };
                let (n, j, s) = match measured {
                    Ok(v) => v,
                    Err(e) => {
                        eprintln!("  {model} {variant} {kind}: ERROR {e}");
                        continue;
                    }
                };
                let imgs = (n * b) as f64;
                let row = EnergyRow {
                    model: model.clone(),
                    variant: variant.to_string(),
                    kind: kind.to_string(),
                    img_s: imgs / s,
                    avg_w: j / s,
                    mj_per_img: 1000.0 * j / imgs,
                    mj_per_img_above_idle: 1000.0 * (j - idle_w * s) / imgs,
                };
                eprintln!(
                    "  {model} {variant} {kind}: {:.0} img/s, {:.1} W, {:.3} mJ/image ({:.3} above idle)",
                    row.img_s, row.avg_w, row.mj_per_img, row.mj_per_img_above_idle
                );
                out.push(row);
            }
        }
    }
    Ok(idle_w)
}

struct Args {
    device: DeviceSpec,
    train_steps: usize,
    steps: usize,
    seconds: f64,
    models: Vec<String>,
    /// The networks of the training check (default: `models`).
    train_models: Option<Vec<String>>,
    tf32: bool,
    skip_perf: bool,
    skip_energy: bool,
    json: Option<String>,
}

fn parse_args() -> Res<Args> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut a = Args {
        device: DeviceSpec::Cuda(0),
        train_steps: 5,
        steps: 30,
        seconds: 6.0,
        models: vec!["resnet20".into(), "lenet5".into()],
        train_models: None,
        tf32: false,
        skip_perf: false,
        skip_energy: false,
        json: None,
    };
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{k} needs a value"))
        };
        match k.as_str() {
            "--device" => a.device = val()?.parse()?,
            "--train-steps" => a.train_steps = val()?.parse()?,
            "--steps" => a.steps = val()?.parse()?,
            "--seconds" => a.seconds = val()?.parse()?,
            "--models" => a.models = val()?.split(',').map(str::to_string).collect(),
            "--train-models" => {
                a.train_models = Some(val()?.split(',').map(str::to_string).collect())
            }
            "--json" => a.json = Some(val()?),
            "--tf32" => a.tf32 = true,
            "--skip-perf" => a.skip_perf = true,
            "--skip-energy" => a.skip_energy = true,
            other => {
                return Err(format!(
                    "unknown argument `{other}` (allowed: --device, --train-steps, --steps, --seconds, --models, --train-models, --json, --tf32, --skip-perf, --skip-energy)"
                )
                .into())
            }
        }
    }
    if a.steps == 0 || a.train_steps == 0 {
        return Err("--steps and --train-steps must be at least 1".into());
    }
    Ok(a)
}

fn main() {
    dsnn_core::runtime::tune_process();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gpu_check: {e}");
            std::process::exit(2);
        }
    };
    let (dev, note) = match select(args.device) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("gpu_check: cannot use --device {}: {e}", args.device);
            std::process::exit(2);
        }
    };
    println!("gpu_check on {note}");
    match run(&dev, &args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("gpu_check: {e}");
            std::process::exit(1);
        }
    }
}

fn run(dev: &Device, args: &Args) -> Res<bool> {
    let t0 = Instant::now();
    let mut checks = Vec::new();
    kernel_checks(dev, &mut checks)?;
    println!(
        "\n== kernels against the CPU path ({:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    println!(
        "{:<44} {:>8} {:>10} {:>10} {:>8}  {:<26} result",
        "op", "elements", "max abs", "rel", "differ", "bound"
    );
    for c in &checks {
        println!(
            "{:<44} {:>8} {:>10.2e} {:>10.2e} {:>8}  {:<26} {}",
            c.name,
            c.elements,
            c.max_abs,
            c.rel,
            c.mismatches,
            c.bound,
            if c.pass { "ok" } else { "FAIL" }
        );
    }
    let mut trains = Vec::new();
    let t1 = Instant::now();
    let train_models = args.train_models.as_ref().unwrap_or(&args.models);
    training_checks(dev, train_models, args.train_steps, &mut trains)?;
    println!(
        "\n== {} training steps, CPU against device ({:.1} s)",
        args.train_steps,
        t1.elapsed().as_secs_f64()
    );
    println!(
        "{:<11} {:<6} {:>10} {:>10} {:>10} {:>10}  {:<34} result",
        "model", "var", "cpu loss1", "dev loss1", "rel step1", "max rel", "bound"
    );
    for t in &trains {
        println!(
            "{:<11} {:<6} {:>10.5} {:>10.5} {:>10.2e} {:>10.2e}  {:<34} {}",
            t.model,
            t.variant,
            t.cpu_losses.first().copied().unwrap_or(f32::NAN),
            t.device_losses.first().copied().unwrap_or(f32::NAN),
            t.first_rel,
            t.max_rel,
            t.bound,
            if t.pass { "ok" } else { "FAIL" }
        );
    }
    #[cfg(feature = "cuda")]
    if args.tf32 {
        candle_core::cuda::set_gemm_reduced_precision_f32(true);
        println!(
            "\n(TF32 gemms allowed from here on, as PyTorch's cuDNN convolutions use by default)"
        );
    }
    #[cfg(not(feature = "cuda"))]
    if args.tf32 {
        println!("\n(--tf32 ignored: built without the `cuda` feature)");
    }
    let mut perf = Vec::new();
    if !args.skip_perf {
        println!(
            "\n== throughput at batch 128 ({} timed steps after 3 warm-up)",
            args.steps
        );
        throughput(dev, &args.models, args.steps, &mut perf);
        println!(
            "{:<9} {:<6} {:<7} {:>12} {:>12}",
            "model", "var", "conv", "train img/s", "infer img/s"
        );
        for p in &perf {
            println!(
                "{:<9} {:<6} {:<7} {:>12.0} {:>12.0}",
                p.model, p.variant, p.engine, p.train_img_s, p.infer_img_s
            );
        }
    }
    let mut energy_rows = Vec::new();
    let mut idle_w = None;
    let mut energy_note = None;
    if !args.skip_energy {
        println!("\n== NVML energy at batch 128 ({} s per row)", args.seconds);
        match energy(dev, &args.models, args.seconds, &mut energy_rows) {
            Ok(w) => {
                idle_w = Some(w);
                println!(
                    "{:<9} {:<6} {:<6} {:>10} {:>8} {:>10} {:>12}",
                    "model", "var", "kind", "img/s", "W", "mJ/img", "above idle"
                );
                for r in &energy_rows {
                    println!(
                        "{:<9} {:<6} {:<6} {:>10.0} {:>8.1} {:>10.3} {:>12.3}",
                        r.model,
                        r.variant,
                        r.kind,
                        r.img_s,
                        r.avg_w,
                        r.mj_per_img,
                        r.mj_per_img_above_idle
                    );
                }
                println!("idle {w:.1} W");
            }
            Err(e) => {
                println!("skipped: {e}");
                energy_note = Some(e.to_string());
            }
        }
    }
    let failed =
        checks.iter().filter(|c| !c.pass).count() + trains.iter().filter(|t| !t.pass).count();
    println!(
        "\n{} of {} checks passed ({:.0} s in all)",
        checks.len() + trains.len() - failed,
        checks.len() + trains.len(),
        t0.elapsed().as_secs_f64()
    );
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "device": format!("{dev:?}"),
            "kernel_checks": checks,
            "training_checks": trains,
            "throughput": perf,
            "energy": energy_rows,
            "idle_w": idle_w,
            "energy_skipped": energy_note,
            "dtype": format!("{:?}", DType::F32),
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
        println!("wrote {path}");
    }
    Ok(failed == 0)
}
