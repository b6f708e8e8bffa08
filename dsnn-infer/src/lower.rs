//! Lowering of one trained layer to an integer step: shift weights read
//! back as rounded in the float-simulated forward, biases and batch norm
//! folded into fixed-point epilogues, accumulator shifts chosen so that no
//! accumulator can overflow.

use crate::error::{InferError, Result};
use crate::format::ActFormat;
use crate::model::{Epilogue, Requant, ShiftLayer, Step};
use crate::weights::ShiftWeight;
use candle_core::Tensor;
use dsnn_core::quant::{ps_weight, quantize_q};
use dsnn_core::{Network, Rounding, ShiftSettings, ShiftType};
use std::collections::{HashMap, HashSet};

/// Largest accumulator magnitude the export allows (a factor 2 below `i64`).
const ACC_LIMIT: f64 = 4_611_686_018_427_387_904.0; // 2^62

/// Reads a trained network's tensors and turns its layers into integer
/// steps (used by the `compile` module).
pub(crate) struct Exporter {
    tensors: HashMap<String, Tensor>,
    shifted: HashSet<String>,
    settings: ShiftSettings,
    act: ActFormat,
}

impl Exporter {
    /// The exporter of `net`'s layers with its DeepShift `settings` and
    /// activation format `act`.
    pub(crate) fn new(net: &dyn Network, settings: ShiftSettings, act: ActFormat) -> Self {
        Exporter {
            tensors: net.params().named_tensors(),
            shifted: net.shift_layers().into_iter().collect(),
            settings,
            act,
        }
    }

    /// A tensor's values; every one must be finite (an infinite weight or a
    /// NaN bias would be exported as some integer and silently disagree
    /// with the float model).
    fn values(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.tensors.get(name).ok_or_else(|| {
            InferError::unsupported(name, "the trained network has no such tensor")
        })?;
        let v = t.flatten_all()?.to_vec1::<f32>()?;
        if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(InferError::unsupported(
                name,
                format!(
                    "value {i} of the tensor is {x}: a trained network's parameters must be finite"
                ),
            ));
        }
        Ok(v)
    }

    /// The layer's weights as rounded in the float-simulated forward
    /// (deterministic rounding).
    fn weights(&self, layer: &str, expect: usize) -> Result<Vec<ShiftWeight>> {
        if !self.shifted.contains(layer) {
            return Err(InferError::unsupported(
                layer,
                "it is a float layer; the integer engine needs every convolution converted \
                 (train with --shift-depth at least the number of convolutions)",
            ));
        }
        let b = self.settings.weight_bits;
        let floats: Vec<f32> =
            match self.settings.shift_type {
                ShiftType::Q => self
                    .values(&format!("{layer}.weight"))?
                    .into_iter()
                    .map(|w| quantize_q(w, b, Rounding::Deterministic, 0.0))
                    .collect(),
                ShiftType::PS => {
                    let shift = self.values(&format!("{layer}.shift"))?;
                    let sign = self.values(&format!("{layer}.sign"))?;
                    shift
                        .iter()
                        .zip(&sign)
                        .map(|(&p, &s)| ps_weight(p, s, b, Rounding::Deterministic, 0.0, 0.0))
                        .collect()
                }
                ShiftType::Float => return Err(InferError::unsupported(
                    layer,
                    "it is a float layer; the integer engine needs a DeepShift-Q or -PS network",
                )),
            };
        if floats.len() != expect {
            return Err(InferError::unsupported(
                layer,
                format!("has {} weights, expected {expect}", floats.len()),
            ));
        }
        floats
            .into_iter()
            .map(|v| {
                ShiftWeight::from_f32(v).ok_or_else(|| {
                    InferError::unsupported(layer, format!("weight {v} is not a power of two"))
                })
            })
            .collect()
    }

    /// The largest accumulator shift `S` (at most the largest weight shift)
    /// for which the accumulator provably stays below 2^62. `bias` is the
    /// largest `|bias|` in activation units (`2^-F`).
    fn acc_shift(
        &self,
        layer: &str,
        ws: &[ShiftWeight],
        cout: usize,
        fan_in: usize,
        bias: f64,
    ) -> Result<u32> {
        let max_x = self.act.max_abs() as f64;
        let max_m = ShiftWeight::largest_shift(ws);
        let bound = |s: u32| -> f64 {
            let sum = (0..cout)
                .map(|c| {
                    ws[c * fan_in..(c + 1) * fan_in]
                        .iter()
                        .map(|w| match w {
                            ShiftWeight::Pow { m, .. } => {
                                max_x * (f64::from(s) - f64::from(*m)).exp2() + 1.0
                            }
                            ShiftWeight::Zero => 0.0,
                        })
                        .sum::<f64>()
                })
                .fold(0.0, f64::max);
            sum + (bias + 1.0) * f64::from(s).exp2()
        };
        let s = (0..=max_m.min(62))
            .rev()
            .find(|&s| bound(s) < ACC_LIMIT)
            .ok_or_else(|| InferError::Overflow {
                layer: layer.to_string(),
                reason: format!(
                    "even without extra fraction bits the accumulator may reach {:.3e} (limit 2^62)",
                    bound(0)
                ),
            })?;
        if s < max_m {
            log::warn!(
                "{layer}: accumulator keeps {s} of {max_m} extra fraction bits (products with \
                 smaller weights are floored per bucket, see docs/integer-inference.md)"
            );
        }
        Ok(s)
    }

    /// A shift convolution with its bias and `requant` (`groups` divides
    /// both channel counts; each output reads `cin / groups` channels).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn conv(
        &self,
        name: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
        groups: usize,
        bias: bool,
        requant: Requant,
    ) -> Result<Step> {
        if groups == 0 || !cin.is_multiple_of(groups) || !cout.is_multiple_of(groups) {
            return Err(InferError::unsupported(
                name,
                format!("{groups} groups do not divide {cin} input and {cout} output channels"),
            ));
        }
        let fan_in = cin / groups * k * k;
        let ws = self.weights(name, cout * fan_in)?;
        // Shift convolutions round their bias to fixed point in every forward.
        let b: Vec<i64> = if bias {
            self.values(&format!("{name}.bias"))?
                .into_iter()
                .map(|v| i64::from(self.act.quantize(v)))
                .collect()
        } else {
            vec![0; cout]
        };
        let max_b = b.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0) as f64;
        let s = self.acc_shift(name, &ws, cout, fan_in, max_b)?;
        Ok(Step::Conv {
            layer: ShiftLayer::new(name, &ws, cout, fan_in, self.settings.weight_bits, s)?,
            cin,
            kernel: k,
            stride,
            padding,
            groups,
            epilogue: Epilogue {
                acc_init: b.iter().map(|v| v << s).collect(),
                requant,
                bias,
            },
        })
    }

    /// A convolution followed by batch norm folded into a fixed-point
    /// affine step (and a ReLU if `relu`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn conv_bn(
        &self,
        name: &str,
        bn: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
        groups: usize,
        bias: bool,
        relu: bool,
    ) -> Result<Step> {
        let requant = Requant::Logits;
        let mut step = self.conv(name, cin, cout, k, stride, padding, groups, bias, requant)?;
        if let Step::Conv {
            layer, epilogue, ..
        } = &mut step
        {
            epilogue.requant = self.affine(bn, cout, layer.acc_shift, relu)?;
        }
        Ok(step)
    }

    /// Folds eval-mode batch norm `y = x * scale + shift` (computed in f32 as
    /// dsnn does) into `mul = round(scale * 2^m)`, `add = round(shift * 2^(F+S+m))`.
    fn affine(&self, bn: &str, c: usize, s: u32, relu: bool) -> Result<Requant> {
        let gamma = self.values(&format!("{bn}.weight"))?;
        let beta = self.values(&format!("{bn}.bias"))?;
        let mean = self.values(&format!("{bn}.running_mean"))?;
        let var = self.values(&format!("{bn}.running_var"))?;
        if [&gamma, &beta, &mean, &var].iter().any(|v| v.len() != c) {
            return Err(InferError::unsupported(
                bn,
                format!("expected {c} channels"),
            ));
        }
        let eps = 1e-5f64 as f32;
        let scale: Vec<f32> = (0..c)
            .map(|i| gamma[i] * (var[i] + eps).sqrt().recip())
            .collect();
        let shift: Vec<f32> = (0..c).map(|i| beta[i] - mean[i] * scale[i]).collect();
        if scale.iter().chain(&shift).any(|v| !v.is_finite()) {
            return Err(InferError::unsupported(
                bn,
                "batch norm constants are not finite",
            ));
        }
        let max_scale = scale.iter().map(|v| f64::from(v.abs())).fold(0.0, f64::max);
        let max_shift = shift.iter().map(|v| f64::from(v.abs())).fold(0.0, f64::max);
        let f = f64::from(self.act.fraction_bits + s);
        let mut m: i32 = if max_scale > 0.0 {
            30 - max_scale.log2().ceil() as i32
        } else {
            30
        };
        m = m.min(60);
        while m > 0 && max_shift * (f + f64::from(m)).exp2() >= ACC_LIMIT {
            m -= 1;
        }
        if m < 0 || max_shift * (f + f64::from(m.max(0))).exp2() >= ACC_LIMIT {
            return Err(InferError::Overflow {
                layer: bn.to_string(),
                reason: format!(
                    "batch-norm scale {max_scale:.3e} / shift {max_shift:.3e} do not fit 31-bit \
                     multipliers and 62-bit offsets"
                ),
            });
        }
        let m = m as u32;
        let top = max_shift * (f + f64::from(m)).exp2();
        let e = if top >= 1.0 {
            (top.log2().floor() as i32 + 2 - 31).clamp(0, 32)
        } else {
            0
        };
        Ok(Requant::Affine {
            mul: scale
                .iter()
                .map(|&v| (f64::from(v) * f64::from(m).exp2()).round_ties_even() as i32)
                .collect(),
            // The offset keeps 31 significant bits: round(shift 2^(F+S+m-e)) 2^e.
            add: shift
                .iter()
                .map(|&v| {
                    let r = (f64::from(v) * (f + f64::from(m) - f64::from(e)).exp2())
                        .round_ties_even() as i64;
                    r << e
                })
                .collect(),
            add_shift: e as u32,
            mul_shift: m,
            relu,
        })
    }

    /// A linear layer; its bias is added unrounded in the float model, so
    /// it is rounded to nearest at the accumulator's `F + S` fraction bits.
    pub(crate) fn linear(
        &self,
        name: &str,
        inp: usize,
        out: usize,
        has_bias: bool,
        requant: Requant,
    ) -> Result<Step> {
        let ws = self.weights(name, out * inp)?;
        let bias = if has_bias {
            self.values(&format!("{name}.bias"))?
        } else {
            vec![0.0; out]
        };
        if bias.len() != out {
            return Err(InferError::unsupported(
                name,
                format!("expected {out} biases"),
            ));
        }
        let f = self.act.fraction_bits;
        let max_b =
            bias.iter().map(|v| f64::from(v.abs())).fold(0.0, f64::max) * f64::from(f).exp2();
        let s = self.acc_shift(name, &ws, out, inp, max_b)?;
        Ok(Step::Linear {
            layer: ShiftLayer::new(name, &ws, out, inp, self.settings.weight_bits, s)?,
            epilogue: Epilogue {
                acc_init: bias
                    .iter()
                    .map(|&v| (f64::from(v) * f64::from(f + s).exp2()).round_ties_even() as i64)
                    .collect(),
                requant,
                bias: has_bias,
            },
        })
    }
}
