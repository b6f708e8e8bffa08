//! Network layers: float, DeepShift-Q and DeepShift-PS convolutions and
//! linear layers, batch norm, and the builder that creates them.

use crate::batchnorm::{BatchNormTrain, BatchStats};
use crate::conv::{conv2d_with, ConvGeometry, ConvOptions};
use crate::error::{CoreError, Result};
use crate::graph::NetOp;
use crate::params::{ParamRole, ParamStore};
use crate::quant::{
    round_to_fixed, FixedPoint, PsWeight, QuantizeActivation, QuantizeWeightQ, RandomStream,
    Rounding,
};
use candle_core::{Device, Tensor, Var};
use dsnn_energy::{LayerKind, LayerOps};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Which DeepShift variant a network's converted layers use, or `Float`
/// for no conversion: the one shift-type choice of experiment files
/// (`shift_type = "Q" | "PS" | "float"`), `dsnn train --shift-type` and
/// [`ShiftSettings`]. Settings of type `Float` build a float network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum ShiftType {
    /// DeepShift-Q: float master weights rounded to powers of two in forward.
    #[serde(alias = "q")]
    Q,
    /// DeepShift-PS: trainable shift and sign parameters.
    #[default]
    #[serde(alias = "ps")]
    PS,
    /// No conversion: the float network.
    #[serde(rename = "float", alias = "Float", alias = "FLOAT")]
    Float,
}

impl ShiftType {
    /// The names accepted by [`std::str::FromStr`], for error messages.
    pub const NAMES: &'static [&'static str] = &["Q", "PS", "float"];

    /// Whether layers of this type shift (Q or PS).
    pub fn is_shift(self) -> bool {
        self != ShiftType::Float
    }
}

impl std::str::FromStr for ShiftType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "q" => Ok(ShiftType::Q),
            "ps" => Ok(ShiftType::PS),
            "float" => Ok(ShiftType::Float),
            _ => Err(format!("unknown shift type `{s}` (allowed: Q, PS, float)")),
        }
    }
}

impl std::fmt::Display for ShiftType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ShiftType::Q => "Q",
            ShiftType::PS => "PS",
            ShiftType::Float => "float",
        })
    }
}

/// The DeepShift settings shared by all converted layers of a network.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShiftSettings {
    /// Q or PS.
    pub shift_type: ShiftType,
    /// Bits per shift weight, 2..=8 (sign included).
    pub weight_bits: u32,
    /// Rounding of the shift exponents (and PS signs).
    pub rounding: Rounding,
    /// Fixed-point format of activations entering shift layers.
    pub activation: FixedPoint,
}

impl Default for ShiftSettings {
    fn default() -> Self {
        ShiftSettings {
            shift_type: ShiftType::PS,
            weight_bits: 5,
            rounding: Rounding::Deterministic,
            activation: FixedPoint::default(),
        }
    }
}

impl ShiftSettings {
    /// Checks the ranges DeepShift supports.
    pub fn validate(&self) -> Result<()> {
        if !(2..=8).contains(&self.weight_bits) {
            return Err(CoreError::config(
                "weight_bits",
                format!("{} is out of range (allowed: 2..=8)", self.weight_bits),
            ));
        }
        for (key, v) in [
            ("activation_integer_bits", self.activation.integer_bits),
            ("activation_fraction_bits", self.activation.fraction_bits),
        ] {
            if !(1..=32).contains(&v) {
                return Err(CoreError::config(
                    key,
                    format!("{v} is out of range (allowed: 1..=32)"),
                ));
            }
        }
        Ok(())
    }
}

/// Per-call options of a forward pass.
#[derive(Clone, Copy)]
pub struct Forward<'a> {
    /// Training mode: batch statistics in batch norm.
    pub train: bool,
    /// When set, every layer appends its per-image operation count here.
    pub trace: Option<&'a Mutex<Vec<LayerOps>>>,
    /// When set, every layer appends the operation it ran, with the
    /// tensors it read and wrote (for export; see [`crate::graph`]).
    pub graph: Option<&'a Mutex<Vec<NetOp>>>,
}

impl Forward<'_> {
    /// Training-mode forward without tracing.
    pub fn train() -> Forward<'static> {
        Forward {
            train: true,
            trace: None,
            graph: None,
        }
    }
    /// Inference-mode forward without tracing.
    pub fn eval() -> Forward<'static> {
        Forward {
            train: false,
            trace: None,
            graph: None,
        }
    }

    /// Records the operation `op` builds when recording the graph.
    pub fn record_op(&self, op: impl FnOnce() -> NetOp) {
        if let Some(g) = self.graph {
            g.lock().unwrap_or_else(|p| p.into_inner()).push(op());
        }
    }

    /// Records one layer's operations (per image) when tracing.
    pub fn record(&self, ops: LayerOps) {
        if let Some(t) = self.trace {
            t.lock().expect("trace lock").push(ops);
        }
    }

    /// Records element-wise work (ReLU, pooling, adds) on `x`'s per-image size.
    pub fn record_elementwise(&self, name: &str, x: &Tensor) {
        if self.trace.is_some() {
            self.record(LayerOps {
                name: name.to_string(),
                kind: LayerKind::Elementwise,
                macs: per_image(x),
                shift: false,
                weight_bits: 32,
                activation_bits: 32,
                params: 0,
            });
        }
    }
}

fn per_image(x: &Tensor) -> u64 {
    let n = x.dim(0).unwrap_or(1).max(1);
    (x.elem_count() / n) as u64
}

/// Which convolution implementation float and shift layers call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvEngine {
    /// dsnn's im2col + gemm custom op (the default).
    #[default]
    Dsnn,
    /// candle's stock `conv2d` (for comparison in tests and benchmarks).
    Candle,
}

/// The weights of a convolution or linear layer, by variant.
#[derive(Debug)]
enum Weights {
    Float(Var),
    Q(Var),
    PS { shift: Var, sign: Var },
}

/// Shared state of a shift-capable layer: its weights and DeepShift settings.
#[derive(Debug)]
struct ShiftCore {
    weights: Weights,
    settings: ShiftSettings,
    seed: u64,
    step: AtomicU64,
}

impl ShiftCore {
    fn is_shift(&self) -> bool {
        !matches!(self.weights, Weights::Float(_))
    }

    /// The weight as used in forward: float, or rounded to signed powers of two.
    fn effective_weight(&self) -> Result<Tensor> {
        let stream = || RandomStream {
            seed: self.seed,
            step: self.step.fetch_add(1, Ordering::Relaxed),
        };
        let s = &self.settings;
        Ok(match &self.weights {
            Weights::Float(w) => w.as_tensor().clone(),
            Weights::Q(w) => w.as_tensor().apply_op1(QuantizeWeightQ {
                weight_bits: s.weight_bits,
                rounding: s.rounding,
                stream: stream(),
            })?,
            Weights::PS { shift, sign } => shift.as_tensor().apply_op2(
                sign.as_tensor(),
                PsWeight {
                    weight_bits: s.weight_bits,
                    rounding: s.rounding,
                    stream: stream(),
                },
            )?,
        })
    }

    fn quantize_activation(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.contiguous()?
            .apply_op1(QuantizeActivation(self.settings.activation))?)
    }

    fn weight_bits(&self) -> u32 {
        if self.is_shift() {
            self.settings.weight_bits
        } else {
            32
        }
    }

    fn activation_bits(&self) -> u32 {
        if self.is_shift() {
            self.settings.activation.integer_bits + self.settings.activation.fraction_bits
        } else {
            32
        }
    }
}

/// A 2-D convolution: float, DeepShift-Q or DeepShift-PS.
///
/// Shift variants quantise the input and the bias to fixed point and use
/// power-of-two weights, as the reference `Conv2dShiftQ` / `Conv2dShift`.
/// It is a candle module ([`candle_nn::Module`]), so it composes with
/// `candle_nn::seq()` and candle's own layers; [`Conv2dLayer::forward_with`] adds
/// operation tracing.
#[derive(Debug)]
pub struct Conv2dLayer {
    name: String,
    core: ShiftCore,
    bias: Option<Var>,
    geometry: ConvGeometry,
    /// Channel groups (1 = dense, `cin` = depthwise).
    groups: usize,
    engine: ConvEngine,
}

impl Conv2dLayer {
    /// The layer's name in the network.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the layer is converted to shifts.
    pub fn is_shift(&self) -> bool {
        self.core.is_shift()
    }

    /// The weight used in forward (rounded to powers of two for shift layers).
    pub fn effective_weight(&self) -> Result<Tensor> {
        self.core.effective_weight()
    }

    /// Applies the convolution; `ctx` can trace the layer's operations.
    pub fn forward_with(&self, x: &Tensor, ctx: Forward) -> Result<Tensor> {
        let input = x.id();
        let shift = self.core.is_shift();
        // dsnn's CPU convolution rounds the input to fixed point while
        // unfolding it (the same values, without a separate pass and graph
        // node); elsewhere the input is quantised first.
        let fused = shift && self.engine == ConvEngine::Dsnn && x.device().is_cpu();
        let x = if shift && !fused {
            self.core.quantize_activation(x)?
        } else {
            x.clone()
        };
        let w = self.core.effective_weight()?;
        let mut y = match self.engine {
            ConvEngine::Dsnn => conv2d_with(
                &x,
                &w,
                ConvOptions {
                    geometry: self.geometry,
                    groups: self.groups,
                    input_quant: fused.then_some(self.core.settings.activation),
                },
            )?,
            ConvEngine::Candle => x.conv2d(
                &w,
                self.geometry.padding,
                self.geometry.stride,
                1,
                self.groups,
            )?,
        };
        if let Some(b) = &self.bias {
            let b = if shift {
                self.core.quantize_activation(b.as_tensor())?
            } else {
                b.as_tensor().clone()
            };
            y = crate::ops::add_channel_bias(&y, &b)?;
        }
        if ctx.trace.is_some() {
            let (_, cin, kh, kw) = w.dims4()?;
            let params = (w.elem_count()) as u64;
            ctx.record(LayerOps {
                name: self.name.clone(),
                kind: LayerKind::Conv2d,
                macs: per_image(&y) * (cin * kh * kw) as u64,
                shift,
                weight_bits: self.core.weight_bits(),
                activation_bits: self.core.activation_bits(),
                params,
            });
        }
        if ctx.graph.is_some() {
            let (cout, cin_per_group, kh, kw) = w.dims4()?;
            let cin = x.dim(1)?;
            ctx.record_op(|| NetOp::Conv {
                layer: self.name.clone(),
                input,
                output: y.id(),
                in_channels: cin,
                out_channels: cout,
                kernel: (kh, kw),
                stride: self.geometry.stride,
                padding: self.geometry.padding,
                groups: cin / cin_per_group.max(1),
                bias: self.bias.is_some(),
                shift,
            });
        }
        Ok(y)
    }
}

/// A fully connected layer: float, DeepShift-Q or DeepShift-PS (the
/// reference `LinearShiftQ` / `LinearShift`), and a candle module
/// ([`candle_nn::Module`]).
///
/// Reference quirks kept on purpose: Q quantises its input but adds the
/// stored bias un-rounded (it is rounded once at creation); PS quantises
/// neither input nor bias.
#[derive(Debug)]
pub struct LinearLayer {
    name: String,
    core: ShiftCore,
    bias: Option<Var>,
}

impl LinearLayer {
    /// The layer's name in the network.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the layer is converted to shifts.
    pub fn is_shift(&self) -> bool {
        self.core.is_shift()
    }

    /// The weight used in forward (rounded to powers of two for shift layers).
    pub fn effective_weight(&self) -> Result<Tensor> {
        self.core.effective_weight()
    }

    /// Applies `x W^T + b` to `x` of shape `batch x in`; `ctx` can trace
    /// the layer's operations.
    pub fn forward_with(&self, x: &Tensor, ctx: Forward) -> Result<Tensor> {
        let input = x.id();
        let x = match self.core.weights {
            Weights::Q(_) => self.core.quantize_activation(x)?,
            _ => x.clone(),
        };
        let w = self.core.effective_weight()?;
        let mut y = x.matmul(&w.t()?)?;
        if let Some(b) = &self.bias {
            y = crate::ops::add_channel_bias(&y, b.as_tensor())?;
        }
        if ctx.trace.is_some() {
            let (out, inp) = w.dims2()?;
            ctx.record(LayerOps {
                name: self.name.clone(),
                kind: LayerKind::Linear,
                macs: (out * inp) as u64,
                shift: self.core.is_shift(),
                weight_bits: self.core.weight_bits(),
                activation_bits: match self.core.weights {
                    Weights::Q(_) => self.core.activation_bits(),
                    _ => 32,
                },
                params: (out * inp) as u64,
            });
        }
        if ctx.graph.is_some() {
            let (out, inp) = w.dims2()?;
            ctx.record_op(|| NetOp::Linear {
                layer: self.name.clone(),
                input,
                output: y.id(),
                in_features: inp,
                out_features: out,
                bias: self.bias.is_some(),
                shift: self.core.is_shift(),
            });
        }
        Ok(y)
    }
}

/// Batch normalisation with running statistics (momentum 0.1, eps 1e-5, as
/// PyTorch); a candle [`candle_nn::ModuleT`], whose `train` flag picks batch
/// or running statistics.
#[derive(Debug)]
pub struct BatchNorm2d {
    name: String,
    gamma: Var,
    beta: Var,
    running_mean: Var,
    running_var: Var,
    momentum: f64,
    eps: f64,
}

impl BatchNorm2d {
    /// Normalises `x` (`N x C x H x W`): with batch statistics in training
    /// (updating the running ones), with running statistics in inference.
    pub fn forward_with(&self, x: &Tensor, ctx: Forward) -> Result<Tensor> {
        self.forward_fused(x, ctx, false)
    }

    /// [`BatchNorm2d::forward_with`] followed by a ReLU, fused in training.
    pub fn forward_relu(&self, x: &Tensor, ctx: Forward) -> Result<Tensor> {
        self.forward_fused(x, ctx, true)
    }

    fn forward_fused(&self, x: &Tensor, ctx: Forward, relu: bool) -> Result<Tensor> {
        let y = self.forward_fused_unrecorded(x, ctx, relu)?;
        ctx.record_op(|| NetOp::BatchNorm {
            layer: self.name.clone(),
            input: x.id(),
            output: y.id(),
            channels: self.gamma.elem_count(),
            relu,
        });
        Ok(y)
    }

    /// Training-mode `max(bn(x) + residual, 0)` as one op on the CPU (see
    /// [`crate::batchnorm::BatchNormAddRelu`]), updating the running
    /// statistics; records the batch norm's work when tracing. Callers check
    /// the input is in host memory (`nn::batch_norm_add_relu` does).
    pub(crate) fn forward_train_add_relu(
        &self,
        x: &Tensor,
        residual: &Tensor,
        ctx: Forward,
    ) -> Result<Tensor> {
        self.record_trace(x, ctx);
        let stats: BatchStats = Arc::new(Mutex::new(None));
        let x = x.contiguous()?;
        // Scales then shifts, in one tensor (a custom op takes three inputs).
        let gamma_beta = Tensor::cat(&[self.gamma.as_tensor(), self.beta.as_tensor()], 0)?;
        let y = x.apply_op3(
            &residual.contiguous()?,
            &gamma_beta,
            crate::batchnorm::BatchNormAddRelu {
                eps: self.eps as f32,
                stats: stats.clone(),
            },
        )?;
        self.update_running_stats(&stats, x.elem_count())?;
        Ok(y)
    }

    /// Folds a training batch's statistics (`elements` values in all
    /// channels) into the running ones. The statistics are tensors on the
    /// batch's device: on a GPU the running statistics are updated there,
    /// without a host copy.
    fn update_running_stats(&self, stats: &BatchStats, elements: usize) -> Result<()> {
        if let Some((mean, var)) = stats.lock().expect("stats lock").take() {
            let count = elements / mean.elem_count().max(1);
            let unbiased = count as f64 / (count.max(2) - 1) as f64;
            let mean = mean.reshape(self.running_mean.shape())?;
            let var = var.reshape(self.running_var.shape())?;
            let m = self.momentum;
            self.running_mean
                .set(&((self.running_mean.as_tensor() * (1.0 - m))? + (mean * m)?)?)?;
            self.running_var
                .set(&((self.running_var.as_tensor() * (1.0 - m))? + (var * (m * unbiased))?)?)?;
        }
        Ok(())
    }

    /// Records the batch norm's per-image work when tracing.
    fn record_trace(&self, x: &Tensor, ctx: Forward) {
        if ctx.trace.is_some() {
            ctx.record(LayerOps {
                name: self.name.clone(),
                kind: LayerKind::BatchNorm,
                macs: per_image(x),
                shift: false,
                weight_bits: 32,
                activation_bits: 32,
                params: 0,
            });
        }
    }

    fn forward_fused_unrecorded(&self, x: &Tensor, ctx: Forward, relu: bool) -> Result<Tensor> {
        self.record_trace(x, ctx);
        if ctx.train {
            let stats: BatchStats = Arc::new(Mutex::new(None));
            let x = x.contiguous()?;
            let y = x.apply_op3(
                self.gamma.as_tensor(),
                self.beta.as_tensor(),
                BatchNormTrain {
                    eps: self.eps as f32,
                    stats: stats.clone(),
                    relu,
                },
            )?;
            self.update_running_stats(&stats, x.elem_count())?;
            Ok(y)
        } else {
            let inv = (self.running_var.as_tensor() + self.eps)?.sqrt()?.recip()?;
            let scale = (self.gamma.as_tensor() * inv)?;
            let shift = (self.beta.as_tensor() - (self.running_mean.as_tensor() * &scale)?)?;
            if x.device().is_cpu() {
                return Ok(x.contiguous()?.apply_op3(
                    &scale.contiguous()?,
                    &shift.contiguous()?,
                    crate::batchnorm::BatchNormEval { relu },
                )?);
            }
            let shape = (1, scale.dim(0)?, 1, 1);
            let y = x
                .broadcast_mul(&scale.reshape(shape)?)?
                .broadcast_add(&shift.reshape(shape)?)?;
            if relu {
                Ok(crate::ops::relu(&y)?)
            } else {
                Ok(y)
            }
        }
    }
}

/// DeepShift's name for a shift convolution: a [`Conv2dLayer`] built as a
/// shift layer (`NetBuilder` with `ShiftSettings`) is `Conv2dShiftQ` or
/// `Conv2dShift` of the reference code, by its `shift_type`.
pub type Conv2dShift = Conv2dLayer;

/// DeepShift's name for a shift linear layer: a [`LinearLayer`] built as a
/// shift layer is `LinearShiftQ` or `LinearShift` of the reference code.
pub type LinearShift = LinearLayer;

/// Turns a dsnn error into candle's, for the candle module traits.
fn to_candle(e: CoreError) -> candle_core::Error {
    match e {
        CoreError::Tensor(e) => e,
        other => candle_core::Error::wrap(other),
    }
}

/// Inference-mode forward as a candle module. Training mode makes no
/// difference to a convolution, so candle's blanket `ModuleT` is exact too.
impl candle_nn::Module for Conv2dLayer {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        Conv2dLayer::forward_with(self, xs, Forward::eval()).map_err(to_candle)
    }
}

/// Inference-mode forward as a candle module. Training mode makes no
/// difference to a linear layer, so candle's blanket `ModuleT` is exact too.
impl candle_nn::Module for LinearLayer {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        LinearLayer::forward_with(self, xs, Forward::eval()).map_err(to_candle)
    }
}

/// Batch norm as a candle module: `train` uses (and updates) batch statistics.
impl candle_nn::ModuleT for BatchNorm2d {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let ctx = Forward {
            train,
            trace: None,
            graph: None,
        };
        BatchNorm2d::forward_with(self, xs, ctx).map_err(to_candle)
    }
}

/// Which end of the network `shift_depth` counts convolution layers from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ShiftEnd {
    /// The last N convolutions (nearest the output): the reference
    /// DeepShift code's convention, and the default.
    #[default]
    Output,
    /// The first N convolutions (nearest the input).
    Input,
}

impl std::str::FromStr for ShiftEnd {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "output" => Ok(ShiftEnd::Output),
            "input" => Ok(ShiftEnd::Input),
            _ => Err(format!("unknown shift end `{s}` (allowed: output, input)")),
        }
    }
}

/// Picks the convolution layers to convert: `depth` of `names` (given in
/// forward order) counted from `end`. Linear layers are always converted.
pub fn layers_to_convert(names: &[String], depth: usize, end: ShiftEnd) -> HashSet<String> {
    let depth = depth.min(names.len());
    match end {
        ShiftEnd::Output => names[names.len() - depth..].iter().cloned().collect(),
        ShiftEnd::Input => names[..depth].iter().cloned().collect(),
    }
}

/// Creates layers with seeded initial values and registers their parameters.
///
/// Initialisation follows PyTorch's defaults (`U(-1/sqrt(fan_in), 1/sqrt(fan_in))`
/// for weights and biases); shift layers are initialised by converting those
/// float weights, as DeepShift's `convert_to_shift` does.
pub struct NetBuilder {
    /// Parameters registered so far.
    pub store: ParamStore,
    rng: StdRng,
    device: Device,
    /// `None` builds a float network.
    shift: Option<ShiftSettings>,
    convert: HashSet<String>,
    engine: ConvEngine,
    seed: u64,
}

impl NetBuilder {
    /// A builder; `shift = None` gives a float network, otherwise the
    /// convolutions named in `convert` and all linear layers become shift layers.
    pub fn new(
        seed: u64,
        device: &Device,
        shift: Option<ShiftSettings>,
        convert: HashSet<String>,
        engine: ConvEngine,
    ) -> Self {
        NetBuilder {
            store: ParamStore::default(),
            rng: StdRng::seed_from_u64(seed),
            device: device.clone(),
            // Settings of type `Float` build the float network.
            shift: shift.filter(|s| s.shift_type.is_shift()),
            convert,
            engine,
            seed,
        }
    }

    fn uniform(&mut self, n: usize, bound: f32) -> Vec<f32> {
        (0..n)
            .map(|_| self.rng.random_range(-bound..=bound))
            .collect()
    }

    fn var(&self, data: Vec<f32>, shape: &[usize]) -> Result<Var> {
        Ok(Var::from_tensor(&Tensor::from_vec(
            data,
            shape.to_vec(),
            &self.device,
        )?)?)
    }

    fn core(&mut self, name: &str, w: Vec<f32>, shape: &[usize], shift: bool) -> Result<ShiftCore> {
        let layer_seed = self.seed ^ fnv1a(name);
        let settings = self.shift.unwrap_or_default();
        let weights = match (shift, settings.shift_type) {
            (false, _) | (true, ShiftType::Float) => {
                let v = self.var(w, shape)?;
                self.store
                    .add(format!("{name}.weight"), v.clone(), ParamRole::Plain);
                Weights::Float(v)
            }
            (true, ShiftType::Q) => {
                let v = self.var(w, shape)?;
                let role = ParamRole::QWeight {
                    weight_bits: settings.weight_bits,
                };
                self.store.add(format!("{name}.weight"), v.clone(), role);
                Weights::Q(v)
            }
            (true, ShiftType::PS) => {
                // convert_weights: shift = round(log2|w|), sign = sign(w).
                let shift_v: Vec<f32> = w
                    .iter()
                    .map(|&x| {
                        if x == 0.0 {
                            crate::quant::ps_shift_range(settings.weight_bits).0 as f32
                        } else {
                            (x.abs().ln() / std::f32::consts::LN_2).round_ties_even()
                        }
                    })
                    .collect();
                let sign_v: Vec<f32> = w.iter().map(|&x| crate::quant::sign(x)).collect();
                let shift = self.var(shift_v, shape)?;
                let sign = self.var(sign_v, shape)?;
                self.store.add(
                    format!("{name}.shift"),
                    shift.clone(),
                    ParamRole::PsShift {
                        weight_bits: settings.weight_bits,
                    },
                );
                self.store
                    .add(format!("{name}.sign"), sign.clone(), ParamRole::PsSign);
                Weights::PS { shift, sign }
            }
        };
        Ok(ShiftCore {
            weights,
            settings,
            seed: layer_seed,
            step: AtomicU64::new(0),
        })
    }

    fn bias(&mut self, name: &str, n: usize, bound: f32, round: Option<FixedPoint>) -> Result<Var> {
        let mut b = self.uniform(n, bound);
        if let Some(fp) = round {
            // convert_to_shift rounds a Q layer's bias to fixed point once.
            for v in &mut b {
                *v = round_to_fixed(*v, fp.integer_bits, fp.fraction_bits);
            }
        }
        let v = self.var(b, &[n])?;
        self.store
            .add(format!("{name}.bias"), v.clone(), ParamRole::Plain);
        Ok(v)
    }

    /// A `k x k` convolution `cin -> cout`.
    pub fn conv2d(
        &mut self,
        name: &str,
        cin: usize,
        cout: usize,
        k: usize,
        geometry: ConvGeometry,
        bias: bool,
    ) -> Result<Conv2dLayer> {
        self.conv2d_grouped(name, cin, cout, k, geometry, 1, bias)
    }

    /// A grouped `k x k` convolution `cin -> cout`: both channel counts are
    /// split into `groups` equal sets and output set `g` sees only input set
    /// `g` (`groups == cin == cout` is a depthwise convolution, as
    /// MobileNetV2 uses). The weight is `cout x cin / groups x k x k`,
    /// initialised from its fan-in `cin / groups * k * k` as PyTorch does.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_grouped(
        &mut self,
        name: &str,
        cin: usize,
        cout: usize,
        k: usize,
        geometry: ConvGeometry,
        groups: usize,
        bias: bool,
    ) -> Result<Conv2dLayer> {
        if groups == 0 || !cin.is_multiple_of(groups) || !cout.is_multiple_of(groups) {
            return Err(CoreError::config(
                "groups",
                format!(
                    "layer `{name}`: {cin} input and {cout} output channels do not split into {groups} groups"
                ),
            ));
        }
        let fan_in = cin / groups * k * k;
        let bound = 1.0 / (fan_in as f32).sqrt();
        let w = self.uniform(cout * fan_in, bound);
        let shift = self.shift.is_some() && self.convert.contains(name);
        let core = self.core(name, w, &[cout, cin / groups, k, k], shift)?;
        let bias = if bias {
            let round = match (shift, self.shift.map(|s| s.shift_type)) {
                (true, Some(ShiftType::Q)) => self.shift.map(|s| s.activation),
                _ => None,
            };
            Some(self.bias(name, cout, bound, round)?)
        } else {
            None
        };
        Ok(Conv2dLayer {
            name: name.to_string(),
            core,
            bias,
            geometry,
            groups,
            engine: self.engine,
        })
    }

    /// A fully connected layer `inp -> out` with bias (converted whenever the
    /// network is a shift network, as `convert_all_linear`).
    pub fn linear(&mut self, name: &str, inp: usize, out: usize) -> Result<LinearLayer> {
        let bound = 1.0 / (inp as f32).sqrt();
        let w = self.uniform(out * inp, bound);
        let shift = self.shift.is_some();
        let core = self.core(name, w, &[out, inp], shift)?;
        let round = match self.shift {
            Some(s) if s.shift_type == ShiftType::Q => Some(s.activation),
            _ => None,
        };
        let bias = Some(self.bias(name, out, bound, round)?);
        Ok(LinearLayer {
            name: name.to_string(),
            core,
            bias,
        })
    }

    /// Batch norm over `c` channels (scale 1, shift 0, running mean 0, var 1).
    pub fn batch_norm(&mut self, name: &str, c: usize) -> Result<BatchNorm2d> {
        let gamma = self.var(vec![1.0; c], &[c])?;
        let beta = self.var(vec![0.0; c], &[c])?;
        let running_mean = self.var(vec![0.0; c], &[c])?;
        let running_var = self.var(vec![1.0; c], &[c])?;
        self.store
            .add(format!("{name}.weight"), gamma.clone(), ParamRole::Plain);
        self.store
            .add(format!("{name}.bias"), beta.clone(), ParamRole::Plain);
        self.store
            .add_buffer(format!("{name}.running_mean"), running_mean.clone());
        self.store
            .add_buffer(format!("{name}.running_var"), running_var.clone());
        Ok(BatchNorm2d {
            name: name.to_string(),
            gamma,
            beta,
            running_mean,
            running_var,
            momentum: 0.1,
            eps: 1e-5,
        })
    }
}

/// FNV-1a hash of a layer name: gives every layer its own random stream.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
