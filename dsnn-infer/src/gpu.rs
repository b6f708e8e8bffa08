//! The host side of the GPU kernels (`kernels/int_ops.cu`): an [`IntModel`]
//! turned into kernel-ready tables ([`GpuProgram`]) and the step sequence
//! ([`run`]) over any [`IntBackend`].
//!
//! Compiled without the `cuda` feature too, so that the emulation test
//! (`tests/cuda_kernels_emulated.rs`, the kernels built as host C++) runs
//! exactly the sequence and the tables that `cuda::CudaIntModel` launches on
//! a GPU; only the launches themselves differ.

use crate::error::{InferError, Result};
use crate::model::{IntModel, Logits, Requant, Step};
use crate::weights::ShiftWeight;
use std::rc::Rc;

/// Requantisation mode `shift` (the kernels' `MODE_SHIFT`).
pub const MODE_SHIFT: i32 = 0;
/// Requantisation mode `affine` (folded batch norm, 128-bit).
pub const MODE_AFFINE: i32 = 1;
/// Requantisation mode `logits` (the accumulator is the output).
pub const MODE_LOGITS: i32 = 2;

/// Bytes of zeros after the packed codes (the kernel reads 3 bytes per code).
pub const CODE_PADDING: usize = 2;

/// How the kernels see a layer's weights.
#[derive(Debug, Clone)]
pub enum GpuWeights {
    /// The stored packed codes (plus [`CODE_PADDING`] zero bytes), for
    /// layers where every weight has `m <= S`: each input is shifted by
    /// `S - m` and added (`dsnn_int_shift_packed`).
    Packed {
        /// Codes, `cout x fan_in`, little-endian bit order.
        codes: Vec<u8>,
        /// Bits per code.
        code_bits: u32,
        /// Whether the all-ones positive code means zero.
        zero_code: bool,
    },
    /// The bucket plan (`dsnn_int_shift_buckets`), for any layer.
    Buckets {
        /// Bucket range of channel `c`: `chan[c]..chan[c + 1]`.
        chan: Vec<u32>,
        /// Four values per bucket: `S - m`, start, mid, end (into `idx`).
        buckets: Vec<i32>,
        /// Taps `ci << 8 | ky << 4 | kx`; a bucket's positive ones first.
        idx: Vec<u32>,
    },
}

/// A shift layer (convolution, or linear as a 1x1 convolution of a 1x1
/// image with `fan_in` channels) with its epilogue, as the kernels take it.
#[derive(Debug, Clone)]
pub struct GpuLayer {
    /// The layer's name.
    pub name: String,
    /// Input channels.
    pub cin: u32,
    /// Input height.
    pub h: u32,
    /// Input width.
    pub w: u32,
    /// Output channels.
    pub cout: u32,
    /// Kernel size.
    pub kernel: u32,
    /// Stride.
    pub stride: u32,
    /// Zero padding.
    pub pad: u32,
    /// Output height.
    pub oh: u32,
    /// Output width.
    pub ow: u32,
    /// `S`.
    pub acc_shift: u32,
    /// The weights.
    pub weights: GpuWeights,
    /// Per-channel accumulator start.
    pub acc_init: Vec<i64>,
    /// [`MODE_SHIFT`], [`MODE_AFFINE`] or [`MODE_LOGITS`].
    pub mode: i32,
    /// ReLU after the requantisation.
    pub relu: bool,
    /// Batch-norm multipliers (one zero when not affine: kernels take a pointer).
    pub mul: Vec<i32>,
    /// Batch-norm offsets (one zero when not affine).
    pub add: Vec<i64>,
    /// Batch-norm `k`.
    pub mul_shift: u32,
}

impl GpuLayer {
    /// Output values per image.
    pub fn outputs(&self) -> usize {
        self.cout as usize * self.oh as usize * self.ow as usize
    }
}

/// One step of a [`GpuProgram`], with the shapes its kernel needs.
#[derive(Debug, Clone, Copy)]
pub enum GpuStep {
    /// Shift layer number `.0` of [`GpuProgram::layers`].
    Layer(usize),
    /// 2x2 max pooling of `c x h x w` activations.
    MaxPool2 {
        /// Channels.
        c: u32,
        /// Input height.
        h: u32,
        /// Input width.
        w: u32,
    },
    /// Keeps the current activations for the next residual add.
    SaveResidual,
    /// Exchange the current activations with the last saved ones.
    SwapResidual,
    /// Adds the saved `sc x sh x sw` shortcut to `c x h x w` activations.
    AddResidual {
        /// Channels.
        c: u32,
        /// Height.
        h: u32,
        /// Width.
        w: u32,
        /// Shortcut channels.
        sc: u32,
        /// Shortcut height.
        sh: u32,
        /// Shortcut width.
        sw: u32,
        /// Option-A channel padding on each side, when subsampled.
        pad: Option<u32>,
    },
    /// Global average pooling of `c x hw` activations.
    GlobalAvgPool {
        /// Channels.
        c: u32,
        /// Positions per channel.
        hw: u32,
    },
}

/// Options of [`GpuProgram::new`].
#[derive(Debug, Clone, Copy, Default)]
pub struct GpuOptions {
    /// Run every layer on the bucket plan, even where the packed codes
    /// would do (the tests check both kernels on the same layers).
    pub buckets: bool,
}

/// An [`IntModel`] as kernel-ready tables and steps.
#[derive(Debug, Clone)]
pub struct GpuProgram {
    /// The shift layers, in step order.
    pub layers: Vec<GpuLayer>,
    /// The steps.
    pub steps: Vec<GpuStep>,
    /// Values per input image.
    pub input_len: usize,
    /// Smallest activation.
    pub lo: i64,
    /// Largest activation.
    pub hi: i64,
    /// Number of classes.
    pub classes: usize,
    /// Fraction bits of the logits.
    pub fraction_bits: u32,
}

fn u32_of(v: usize, layer: &str, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        InferError::unsupported(
            layer,
            format!("{what} {v} exceeds the GPU kernels' 32 bits"),
        )
    })
}

/// The refusal of a step the GPU kernels do not implement (the CPU engine
/// runs it: `dsnn infer --device cpu`).
fn no_gpu_step(layer: &str, what: &str) -> InferError {
    InferError::unsupported(
        layer,
        format!(
            "{what} has no GPU kernel yet (the GPU runs dense convolutions, linear layers, 2x2 \
             max pooling, residual adds with ReLU and average pooling); run it on the CPU"
        ),
    )
}

impl GpuProgram {
    /// Builds the tables of every layer of `model` (validated first).
    pub fn new(model: &IntModel, opts: GpuOptions) -> Result<GpuProgram> {
        model.validate()?;
        let (mut c, mut h, mut w) = (model.input.channels, model.input.height, model.input.width);
        let mut saved = Vec::new();
        let mut layers = Vec::new();
        let mut steps = Vec::new();
        let mut fraction_bits = model.act.fraction_bits;
        let dims = |c: usize, h: usize, w: usize, name: &str| -> Result<(u32, u32, u32)> {
            u32_of(c * h * w, name, "activations per image")?;
            Ok((c as u32, h as u32, w as u32))
        };
        for step in &model.steps {
            match step {
                Step::Conv {
                    layer,
                    cin,
                    kernel,
                    stride,
                    padding,
                    groups,
                    epilogue,
                } => {
                    if *groups != 1 {
                        return Err(no_gpu_step(
                            &layer.name,
                            &format!("a grouped convolution ({groups} groups)"),
                        ));
                    }
                    let oh = (h + 2 * padding - kernel) / stride + 1;
                    let ow = (w + 2 * padding - kernel) / stride + 1;
                    if *kernel > 15 || *cin >= 1 << 24 {
                        return Err(InferError::unsupported(
                            &layer.name,
                            format!("{kernel}x{kernel} kernels on {cin} channels: the GPU kernels take kernels up to 15 and fewer than 2^24 channels"),
                        ));
                    }
                    let (ci, hh, ww) = dims(c, h, w, &layer.name)?;
                    let l = gpu_layer(
                        layer,
                        epilogue,
                        [ci, hh, ww],
                        [
                            *kernel as u32,
                            u32_of(*stride, &layer.name, "stride")?,
                            u32_of(*padding, &layer.name, "padding")?,
                        ],
                        [oh, ow],
                        opts,
                    )?;
                    u32_of(l.outputs(), &layer.name, "outputs per image")?;
                    (c, h, w) = (layer.cout, oh, ow);
                    steps.push(GpuStep::Layer(layers.len()));
                    layers.push(l);
                    fraction_bits = model.act.fraction_bits + layer.acc_shift;
                }
                Step::Linear { layer, epilogue } => {
                    if layer.fan_in >= 1 << 24 {
                        return Err(InferError::unsupported(
                            &layer.name,
                            format!(
                                "{} inputs: the GPU kernels take fewer than 2^24",
                                layer.fan_in
                            ),
                        ));
                    }
                    let fan_in = layer.fan_in as u32;
                    let l = gpu_layer(layer, epilogue, [fan_in, 1, 1], [1, 1, 0], [1, 1], opts)?;
                    (c, h, w) = (layer.cout, 1, 1);
                    steps.push(GpuStep::Layer(layers.len()));
                    layers.push(l);
                    fraction_bits = model.act.fraction_bits + layer.acc_shift;
                }
                Step::MaxPool2 => {
                    let (cc, hh, ww) = dims(c, h, w, "max pool")?;
                    steps.push(GpuStep::MaxPool2 {
                        c: cc,
                        h: hh,
                        w: ww,
                    });
                    (h, w) = (h / 2, w / 2);
                }
                Step::SaveResidual => {
                    saved.push((c, h, w));
                    steps.push(GpuStep::SaveResidual);
                }
                Step::SwapResidual => {
                    let top = saved.last_mut().expect("validated model");
                    ((c, h, w), *top) = (*top, (c, h, w));
                    steps.push(GpuStep::SwapResidual);
                }
                Step::MaxPool {
                    kernel,
                    stride,
                    padding,
                } => {
                    return Err(no_gpu_step(
                        "max pool",
                        &format!(
                            "{kernel}x{kernel} max pooling (stride {stride}, padding {padding})"
                        ),
                    ))
                }
                Step::Concat { parts } => {
                    return Err(no_gpu_step(
                        "concat",
                        &format!("a concatenation of {parts} branches"),
                    ))
                }
                Step::AddResidual { relu: false, .. } => {
                    return Err(no_gpu_step("residual", "a residual addition without ReLU"))
                }
                Step::AddResidual { pad, .. } => {
                    let (sc, sh, sw) = saved.pop().expect("validated model");
                    let (cc, hh, ww) = dims(c, h, w, "residual")?;
                    let (sc, sh, sw) = dims(sc, sh, sw, "residual")?;
                    steps.push(GpuStep::AddResidual {
                        c: cc,
                        h: hh,
                        w: ww,
                        sc,
                        sh,
                        sw,
                        pad: pad.map(|p| p as u32),
                    });
                }
                Step::GlobalAvgPool => {
                    let (cc, hh, ww) = dims(c, h, w, "average pool")?;
                    steps.push(GpuStep::GlobalAvgPool { c: cc, hw: hh * ww });
                    (h, w) = (1, 1);
                }
            }
        }
        Ok(GpuProgram {
            layers,
            steps,
            input_len: model.input.channels * model.input.height * model.input.width,
            lo: model.act.lo(),
            hi: model.act.hi(),
            classes: model.classes,
            fraction_bits,
        })
    }

    /// The batch size of `len` input values, checking that every value is
    /// an activation integer (as `IntModel::infer_quantized`).
    pub fn check_input(&self, x: &[i32]) -> Result<usize> {
        if self.input_len == 0 || !x.len().is_multiple_of(self.input_len) {
            return Err(InferError::Input(format!(
                "{} values is not a whole number of images of {}",
                x.len(),
                self.input_len
            )));
        }
        if let Some(v) = x
            .iter()
            .find(|&&v| i64::from(v) < self.lo || i64::from(v) > self.hi)
        {
            return Err(InferError::Input(format!(
                "input integer {v} is outside the activation range [{}, {}]",
                self.lo, self.hi
            )));
        }
        let n = x.len() / self.input_len;
        let widest = self
            .layers
            .iter()
            .map(GpuLayer::outputs)
            .chain([self.input_len])
            .max()
            .unwrap_or(0);
        u32_of(n * widest, "batch", "values in one step")?;
        Ok(n)
    }
}

fn gpu_layer(
    layer: &crate::model::ShiftLayer,
    epilogue: &crate::model::Epilogue,
    [cin, h, w]: [u32; 3],
    [kernel, stride, pad]: [u32; 3],
    [oh, ow]: [usize; 2],
    opts: GpuOptions,
) -> Result<GpuLayer> {
    let s = layer.acc_shift;
    let ws = layer.packed.unpack();
    let max_m = ShiftWeight::largest_shift(&ws);
    let packed_ok = !opts.buckets && max_m <= s && s < 64 && layer.packed.code_bits <= 16;
    let weights = if packed_ok {
        let mut codes = layer.packed.bytes.clone();
        codes.extend([0; CODE_PADDING]);
        GpuWeights::Packed {
            codes,
            code_bits: layer.packed.code_bits,
            zero_code: layer.packed.zero_code,
        }
    } else {
        let plan = layer.plan();
        let kk = (kernel * kernel) as usize;
        let tap = |k: u32| {
            let k = k as usize;
            let (ci, r) = (k / kk, k % kk);
            ((ci as u32) << 8)
                | (((r / kernel as usize) as u32) << 4)
                | (r % kernel as usize) as u32
        };
        let mut chan = Vec::with_capacity(layer.cout + 1);
        chan.push(0);
        chan.extend(plan.channels.iter().map(|&(_, b)| b));
        if plan.channels.first().is_some_and(|&(a, _)| a != 0) {
            return Err(InferError::unsupported(
                &layer.name,
                "plan does not start at bucket 0",
            ));
        }
        let buckets = plan
            .buckets
            .iter()
            .flat_map(|b| [b.shift, b.start as i32, b.mid as i32, b.end as i32])
            .collect();
        GpuWeights::Buckets {
            chan,
            buckets,
            idx: plan.idx.iter().map(|&k| tap(k)).collect(),
        }
    };
    let (mode, relu, mul, add, mul_shift) = match &epilogue.requant {
        Requant::Shift { relu } => (MODE_SHIFT, *relu, vec![0], vec![0], 0),
        Requant::Affine {
            mul,
            add,
            mul_shift,
            relu,
            ..
        } => (MODE_AFFINE, *relu, mul.clone(), add.clone(), *mul_shift),
        Requant::Logits => (MODE_LOGITS, false, vec![0], vec![0], 0),
    };
    Ok(GpuLayer {
        name: layer.name.clone(),
        cin,
        h,
        w,
        cout: u32_of(layer.cout, &layer.name, "channels")?,
        kernel,
        stride,
        pad,
        oh: u32_of(oh, &layer.name, "output height")?,
        ow: u32_of(ow, &layer.name, "output width")?,
        acc_shift: s,
        weights,
        acc_init: epilogue.acc_init.clone(),
        mode,
        relu,
        mul,
        add,
        mul_shift,
    })
}

/// What a shift layer produced: activations, or (the last layer) logits.
#[derive(Debug)]
pub enum LayerOutput<A> {
    /// Activations for the next step.
    Act(A),
    /// The logits, copied to the host.
    Logits(Vec<i64>),
}

/// Launches of the kernels of `kernels/int_ops.cu` on some device: the GPU
/// (`cuda::CudaIntModel`) or the host emulation of the tests. Every method
/// launches one kernel on `n` images with the program's shapes.
pub trait IntBackend {
    /// Activations on the device (`n x c x h x w` `i32`).
    type Act;
    /// A layer's uploaded tables.
    type Layer;
    /// Copies a layer's tables to the device.
    fn upload_layer(&self, layer: &GpuLayer) -> Result<Self::Layer>;
    /// Copies the input activations to the device.
    fn upload_input(&self, x: &[i32]) -> Result<Self::Act>;
    /// `dsnn_int_shift_packed` or `dsnn_int_shift_buckets`.
    fn shift_layer(
        &self,
        layer: &GpuLayer,
        tables: &Self::Layer,
        x: &Self::Act,
        n: u32,
        lo: i64,
        hi: i64,
    ) -> Result<LayerOutput<Self::Act>>;
    /// `dsnn_int_max_pool2` on `n x c` planes of `h x w`.
    fn max_pool2(&self, x: &Self::Act, n: u32, c: u32, h: u32, w: u32) -> Result<Self::Act>;
    /// `dsnn_int_add_residual` (`step` is a [`GpuStep::AddResidual`]).
    fn add_residual(
        &self,
        x: &Self::Act,
        shortcut: &Self::Act,
        n: u32,
        step: GpuStep,
        lo: i64,
        hi: i64,
    ) -> Result<Self::Act>;
    /// `dsnn_int_avg_pool` on `n x c` planes of `hw` values.
    fn avg_pool(&self, x: &Self::Act, n: u32, c: u32, hw: u32) -> Result<Self::Act>;
}

/// Integer logits of quantised images `x` (`n x C x H x W` activation
/// integers): every step of `program` on `backend`, whose uploaded layer
/// tables are `tables` (one per [`GpuProgram::layers`]).
pub fn run<B: IntBackend>(
    backend: &B,
    program: &GpuProgram,
    tables: &[B::Layer],
    x: &[i32],
) -> Result<Logits> {
    let n = program.check_input(x)?;
    if n == 0 {
        // Nothing to launch (and no empty device buffers to allocate).
        return Ok(Logits {
            n,
            classes: program.classes,
            values: Vec::new(),
            fraction_bits: program.fraction_bits,
        });
    }
    let n32 = n as u32;
    let (lo, hi) = (program.lo, program.hi);
    let mut cur = Rc::new(backend.upload_input(x)?);
    let mut saved: Vec<Rc<B::Act>> = Vec::new();
    for &step in &program.steps {
        let next = match step {
            GpuStep::Layer(i) => {
                let layer = &program.layers[i];
                match backend.shift_layer(layer, &tables[i], &cur, n32, lo, hi)? {
                    LayerOutput::Act(a) => a,
                    LayerOutput::Logits(values) => {
                        return Ok(Logits {
                            n,
                            classes: program.classes,
                            values,
                            fraction_bits: program.fraction_bits,
                        })
                    }
                }
            }
            GpuStep::MaxPool2 { c, h, w } => backend.max_pool2(&cur, n32, c, h, w)?,
            GpuStep::SaveResidual => {
                saved.push(Rc::clone(&cur));
                continue;
            }
            GpuStep::SwapResidual => {
                let top = saved.last_mut().ok_or_else(|| {
                    InferError::Input("residual swap without a saved tensor".into())
                })?;
                std::mem::swap(&mut cur, top);
                continue;
            }
            GpuStep::AddResidual { .. } => {
                let short = saved
                    .pop()
                    .ok_or_else(|| InferError::Input("residual add without a shortcut".into()))?;
                backend.add_residual(&cur, &short, n32, step, lo, hi)?
            }
            GpuStep::GlobalAvgPool { c, hw } => backend.avg_pool(&cur, n32, c, hw)?,
        };
        cur = Rc::new(next);
    }
    Err(InferError::unsupported("model", "no step produced logits"))
}
