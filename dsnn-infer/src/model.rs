//! The integer model: a sequence of integer steps with their constants, and
//! its file format (safetensors: packed codes as tensors, the rest as JSON
//! metadata).

use crate::error::{InferError, Result};
use crate::format::ActFormat;
use crate::weights::{PackedWeights, Plan, ShiftWeight};
use dsnn_core::data::Normalization;
use dsnn_core::{InputShape, ShiftType};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

/// Metadata key of the model description in an integer model file.
pub const MODEL_METADATA_KEY: &str = "dsnn_int_model";

/// A shift layer's weights and accumulator shift.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShiftLayer {
    /// The layer's name in the trained network.
    pub name: String,
    /// Output channels (or units).
    pub cout: usize,
    /// Inputs per output (`cin * kh * kw`, or the linear layer's inputs).
    pub fan_in: usize,
    /// The trained `weight_bits` (stored once for the model in the file).
    #[serde(skip)]
    pub weight_bits: u32,
    /// `S`: the accumulator holds `F + S` fraction bits.
    pub acc_shift: u32,
    /// The packed codes, `cout x fan_in`.
    pub packed: PackedWeights,
    #[serde(skip)]
    plan: OnceLock<Plan>,
    /// `None` when it equals `plan`.
    #[serde(skip)]
    lane_plan: OnceLock<Option<Plan>>,
    #[serde(skip)]
    dense: OnceLock<Option<crate::weights::DenseShifts>>,
}

impl ShiftLayer {
    /// A layer from decoded weights (`cout x fan_in`).
    pub fn new(
        name: &str,
        weights: &[ShiftWeight],
        cout: usize,
        fan_in: usize,
        weight_bits: u32,
        acc_shift: u32,
    ) -> Result<Self> {
        let packed = PackedWeights::pack(weights, weight_bits)
            .map_err(|r| InferError::unsupported(name, r))?;
        Ok(ShiftLayer {
            name: name.to_string(),
            cout,
            fan_in,
            weight_bits,
            acc_shift,
            packed,
            plan: OnceLock::new(),
            lane_plan: OnceLock::new(),
            dense: OnceLock::new(),
        })
    }

    /// Per-weight left shifts for few-image linear layers, when every
    /// bucket shift `S - m` is non-negative (built once; `None` otherwise).
    pub fn dense(&self) -> Option<&crate::weights::DenseShifts> {
        self.dense
            .get_or_init(|| {
                crate::weights::DenseShifts::new(
                    &self.packed.unpack(),
                    self.cout,
                    self.fan_in,
                    self.acc_shift,
                )
            })
            .as_ref()
    }

    /// The plan for the batch-lanes convolution (built once): row chunks of
    /// at most [`crate::weights::LANE_CHUNK_ROWS`], whose receptive fields
    /// over a tile of output positions stay in L1. When it would not be
    /// chunked (a small fan-in, or a floored bucket) it is [`Self::plan`].
    pub fn lane_plan(&self) -> &Plan {
        self.lane_plan
            .get_or_init(|| {
                let plan = self.decode_plan(crate::weights::LANE_CHUNK_ROWS);
                (!plan.chunks.is_empty()).then_some(plan)
            })
            .as_ref()
            .unwrap_or_else(|| self.plan())
    }

    /// The shift-sorted plan decoded from the packed codes (built once),
    /// in row chunks of at most [`crate::weights::CHUNK_ROWS`].
    pub fn plan(&self) -> &Plan {
        self.plan
            .get_or_init(|| self.decode_plan(crate::weights::CHUNK_ROWS))
    }

    fn decode_plan(&self, chunk_rows: usize) -> Plan {
        Plan::chunked(
            &self.packed.unpack(),
            self.cout,
            self.fan_in,
            self.acc_shift,
            chunk_rows,
        )
    }
}

/// What happens to a layer's accumulator `acc` (after `acc_init` is added).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Requant {
    /// `X = clamp(floor(acc / 2^S))`, then ReLU if set: the next shift
    /// layer's input rounding.
    Shift {
        /// Apply ReLU.
        relu: bool,
    },
    /// Folded batch norm: `X = clamp(floor((acc * mul[c] + add[c]) / 2^(S + m)))`
    /// in 128-bit arithmetic, then ReLU if set.
    Affine {
        /// Per-channel multiplier (the batch-norm scale times `2^m`; stored as a tensor).
        #[serde(skip)]
        mul: Vec<i32>,
        /// Per-channel offset (the batch-norm shift times `2^(F + S + m)`; stored as a tensor).
        #[serde(skip)]
        add: Vec<i64>,
        /// `m`.
        mul_shift: u32,
        /// `e`: every offset is a 31-bit significand times `2^e` (the file
        /// stores the significands as `i32`).
        #[serde(default)]
        add_shift: u32,
        /// Apply ReLU.
        relu: bool,
    },
    /// Keep `acc` as the output logits (`F + S` fraction bits).
    Logits,
}

/// A shift layer with its bias and requantisation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Epilogue {
    /// Per-channel start value of the accumulator (bias, `F + S` fraction
    /// bits; stored as a tensor).
    #[serde(skip)]
    pub acc_init: Vec<i64>,
    /// What the accumulator becomes.
    pub requant: Requant,
    /// Whether the trained layer has a bias (for the float-size comparison).
    pub bias: bool,
}

/// One step of the integer model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Step {
    /// A shift convolution on `cin x h x w` activations (square kernel).
    Conv {
        /// Weights.
        layer: ShiftLayer,
        /// Input channels.
        cin: usize,
        /// Kernel size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Zero padding.
        padding: usize,
        /// Bias and requantisation.
        epilogue: Epilogue,
    },
    /// A shift linear layer on the flattened activations.
    Linear {
        /// Weights.
        layer: ShiftLayer,
        /// Bias and requantisation.
        epilogue: Epilogue,
    },
    /// 2x2 max pooling, stride 2 (odd edges dropped, as PyTorch).
    MaxPool2,
    /// Remembers the current activations for a later [`Step::AddResidual`].
    SaveResidual,
    /// `X = clamp(max(0, X + shortcut))`, the shortcut being the saved
    /// activations, subsampled by 2 and zero-padded by `pad` channels on each
    /// side when `pad` is set (ResNet option A).
    AddResidual {
        /// Channels of zeros on each side of a subsampled shortcut.
        pad: Option<usize>,
    },
    /// `X = floor(sum / (h * w))` per channel.
    GlobalAvgPool,
}

/// How raw pixels become the network's float input (as dsnn's `Batcher`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputTransform {
    /// Per-channel normalisation.
    pub normalization: Normalization,
    /// The value of a full-intensity pixel.
    pub pixel_max: f32,
}

/// An exported integer DSNN.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntModel {
    /// The backbone it was exported from.
    pub backbone: String,
    /// Q or PS.
    pub shift_type: ShiftType,
    /// Input image shape.
    pub input: InputShape,
    /// Number of classes.
    pub classes: usize,
    /// Activation format.
    pub act: ActFormat,
    /// The trained `weight_bits` of every shift layer.
    pub weight_bits: u32,
    /// Pixel normalisation, when known (needed by [`IntModel::infer_pixels`]).
    pub input_transform: Option<InputTransform>,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// Integer logits of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logits {
    /// Images.
    pub n: usize,
    /// Classes.
    pub classes: usize,
    /// `n x classes` values.
    pub values: Vec<i64>,
    /// Fraction bits: a logit stands for `value / 2^fraction_bits`.
    pub fraction_bits: u32,
}

impl Logits {
    /// Top-1 class of every image (the first on ties, as candle's argmax).
    pub fn argmax(&self) -> Vec<usize> {
        self.values
            .chunks_exact(self.classes.max(1))
            .map(|row| {
                let mut best = 0;
                for (i, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = i;
                    }
                }
                best
            })
            .collect()
    }

    /// The logits as floats.
    pub fn to_f64(&self) -> Vec<f64> {
        let s = (-f64::from(self.fraction_bits)).exp2();
        self.values.iter().map(|&v| v as f64 * s).collect()
    }
}

impl IntModel {
    /// The shift layers, in order.
    pub fn shift_layers(&self) -> impl Iterator<Item = &ShiftLayer> {
        self.steps.iter().filter_map(|s| match s {
            Step::Conv { layer, .. } | Step::Linear { layer, .. } => Some(layer),
            _ => None,
        })
    }

    /// Bytes of packed weight codes.
    pub fn packed_weight_bytes(&self) -> usize {
        self.shift_layers().map(|l| l.packed.bytes.len()).sum()
    }

    /// Number of shift weights.
    pub fn num_weights(&self) -> usize {
        self.shift_layers().map(|l| l.packed.len).sum()
    }

    /// Bytes of the same network in 32-bit floats: one float per weight,
    /// bias and batch-norm value (scale, shift, running mean and variance).
    pub fn float_model_bytes(&self) -> usize {
        let mut floats = 0;
        for step in &self.steps {
            if let Step::Conv {
                layer, epilogue, ..
            }
            | Step::Linear { layer, epilogue } = step
            {
                floats += layer.packed.len;
                floats += match epilogue.requant {
                    Requant::Affine { .. } => 4 * layer.cout,
                    _ if epilogue.bias => layer.cout,
                    _ => 0,
                };
            }
        }
        4 * floats
    }

    /// Builds every layer's plan now rather than on the first inference.
    pub fn prepare(&self) {
        for step in &self.steps {
            match step {
                Step::Conv { layer, .. } => {
                    layer.plan();
                    layer.lane_plan();
                }
                Step::Linear { layer, .. } => {
                    layer.plan();
                }
                _ => {}
            }
        }
    }

    /// The model file as bytes: safetensors with one `u8` tensor of codes
    /// per shift layer and the description in the metadata.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let header = serde_json::to_string(self)
            .map_err(|e| InferError::unsupported("model", e.to_string()))?;
        // Four tensors, layer after layer in step order: packed codes, biases
        // (layers with one), batch-norm multipliers and offsets (offsets
        // stored as i32 significands; see `add_bytes`).
        let (mut codes, mut init, mut mul, mut add) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for step in &self.steps {
            if let Step::Conv {
                layer, epilogue, ..
            }
            | Step::Linear { layer, epilogue } = step
            {
                codes.extend_from_slice(&layer.packed.bytes);
                if epilogue.bias {
                    init.extend(epilogue.acc_init.iter().flat_map(|v| v.to_le_bytes()));
                }
                if let Requant::Affine {
                    mul: m,
                    add: a,
                    add_shift: e,
                    ..
                } = &epilogue.requant
                {
                    mul.extend(m.iter().flat_map(|v| v.to_le_bytes()));
                    for &v in a {
                        let sig = i32::try_from(v >> e)
                            .ok()
                            .filter(|&sig| i64::from(sig) << e == v)
                            .ok_or_else(|| {
                                InferError::unsupported(
                                    &layer.name,
                                    format!("batch-norm offset {v} is not a 31-bit significand times 2^{e}"),
                                )
                            })?;
                        add.extend(sig.to_le_bytes());
                    }
                }
            }
        }
        let tensors = [
            ("codes", safetensors::Dtype::U8, codes),
            ("acc_init", safetensors::Dtype::I64, init),
            ("bn_mul", safetensors::Dtype::I32, mul),
            ("bn_add", safetensors::Dtype::I32, add),
        ];
        let mut views = Vec::new();
        for (name, dtype, bytes) in &tensors {
            let elems = bytes.len() / (dtype.bitsize() / 8).max(1);
            let view = safetensors::tensor::TensorView::new(*dtype, vec![elems], bytes)
                .map_err(|e| InferError::unsupported(name, e.to_string()))?;
            views.push((name.to_string(), view));
        }
        let meta = HashMap::from([(MODEL_METADATA_KEY.to_string(), header)]);
        safetensors::serialize(views, Some(meta))
            .map_err(|e| InferError::unsupported("model", e.to_string()))
    }

    /// Writes the model file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        std::fs::write(path, bytes).map_err(|e| InferError::file(path, e.to_string()))
    }

    /// Reads a model written by [`IntModel::save`].
    pub fn load(path: &Path) -> Result<IntModel> {
        let bytes = std::fs::read(path).map_err(|e| InferError::file(path, e.to_string()))?;
        Self::from_bytes(&bytes).map_err(|reason| InferError::file(path, reason))
    }

    /// Parses a model file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<IntModel, String> {
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| format!("not a safetensors file: {e}"))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| format!("not a safetensors file: {e}"))?;
        let header = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(MODEL_METADATA_KEY))
            .ok_or_else(|| {
                format!(
                    "no `{MODEL_METADATA_KEY}` metadata: not an integer model written by `dsnn export`"
                )
            })?;
        let mut model: IntModel =
            serde_json::from_str(header).map_err(|e| format!("bad model description: {e}"))?;
        let tensor = |name: &str| {
            st.tensor(name)
                .map(|t| t.data().to_vec())
                .map_err(|_| format!("has no tensor `{name}`"))
        };
        let (codes, init, mul, add) = (
            tensor("codes")?,
            tensor("acc_init")?,
            tensor("bn_mul")?,
            tensor("bn_add")?,
        );
        let (mut at_codes, mut at_init, mut at_bn) = (0usize, 0usize, 0usize);
        let take = |buf: &[u8], at: &mut usize, n: usize, what: &str| {
            let slice = buf
                .get(*at..*at + n)
                .ok_or_else(|| format!("tensor `{what}` is too short ({} bytes)", buf.len()))?
                .to_vec();
            *at += n;
            Ok::<_, String>(slice)
        };
        for step in &mut model.steps {
            if let Step::Conv {
                layer, epilogue, ..
            }
            | Step::Linear { layer, epilogue } = step
            {
                let cout = layer.cout;
                layer.packed.len = cout * layer.fan_in;
                layer.weight_bits = model.weight_bits;
                let need = (layer.packed.len * layer.packed.code_bits as usize).div_ceil(8);
                layer.packed.bytes = take(&codes, &mut at_codes, need, "codes")?;
                epilogue.acc_init = if epilogue.bias {
                    take(&init, &mut at_init, 8 * cout, "acc_init")?
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                        .collect()
                } else {
                    vec![0; cout]
                };
                if let Requant::Affine {
                    mul: m,
                    add: a,
                    add_shift,
                    ..
                } = &mut epilogue.requant
                {
                    let word = |c: &[u8]| i32::from_le_bytes(c.try_into().expect("4 bytes"));
                    *m = take(&mul, &mut at_bn, 4 * cout, "bn_mul")?
                        .chunks_exact(4)
                        .map(word)
                        .collect();
                    at_bn -= 4 * cout;
                    *a = take(&add, &mut at_bn, 4 * cout, "bn_add")?
                        .chunks_exact(4)
                        .map(|c| i64::from(word(c)) << (*add_shift).min(32))
                        .collect();
                }
            }
        }
        if at_codes != codes.len()
            || at_init != init.len()
            || at_bn != mul.len()
            || mul.len() != add.len()
        {
            return Err(format!("tensors have more data than the layers use (codes {at_codes}/{}, biases {at_init}/{}, batch norm {at_bn}/{}/{})", codes.len(), init.len(), mul.len(), add.len()));
        }
        model.validate().map_err(|e| e.to_string())?;
        Ok(model)
    }

    /// Checks that the steps fit together (shapes, channel counts, logits last).
    pub fn validate(&self) -> Result<()> {
        let (mut c, mut h, mut w) = (self.input.channels, self.input.height, self.input.width);
        let mut saved: Vec<(usize, usize, usize)> = Vec::new();
        let last = self.steps.len().saturating_sub(1);
        let bad = |what: &str, why: String| Err(InferError::unsupported(what, why));
        for (i, step) in self.steps.iter().enumerate() {
            let logits = match step {
                Step::Conv {
                    layer,
                    cin,
                    kernel,
                    stride,
                    padding,
                    epilogue,
                } => {
                    if *cin != c || layer.fan_in != cin * kernel * kernel || *stride == 0 {
                        return bad(&layer.name, format!("expects {cin} channels, gets {c}"));
                    }
                    if h + 2 * padding < *kernel || w + 2 * padding < *kernel {
                        return bad(&layer.name, format!("input {h}x{w} smaller than kernel"));
                    }
                    h = (h + 2 * padding - kernel) / stride + 1;
                    w = (w + 2 * padding - kernel) / stride + 1;
                    c = layer.cout;
                    check_epilogue(layer, epilogue)?;
                    matches!(epilogue.requant, Requant::Logits)
                }
                Step::Linear { layer, epilogue } => {
                    if layer.fan_in != c * h * w {
                        return bad(
                            &layer.name,
                            format!("expects {} inputs, gets {}", layer.fan_in, c * h * w),
                        );
                    }
                    (c, h, w) = (layer.cout, 1, 1);
                    check_epilogue(layer, epilogue)?;
                    matches!(epilogue.requant, Requant::Logits)
                }
                Step::MaxPool2 => {
                    (h, w) = (h / 2, w / 2);
                    false
                }
                Step::SaveResidual => {
                    saved.push((c, h, w));
                    false
                }
                Step::AddResidual { pad } => {
                    let Some((sc, sh, sw)) = saved.pop() else {
                        return bad("residual", "add without a saved shortcut".into());
                    };
                    let shape = match pad {
                        None => (sc, sh, sw),
                        Some(p) => (sc + 2 * p, sh / 2, sw / 2),
                    };
                    if shape != (c, h, w) {
                        return bad("residual", format!("shortcut {shape:?} vs {:?}", (c, h, w)));
                    }
                    false
                }
                Step::GlobalAvgPool => {
                    (h, w) = (1, 1);
                    false
                }
            };
            if logits != (i == last) {
                return bad(
                    "model",
                    "the last step, and only it, must produce logits".into(),
                );
            }
        }
        if c * h * w != self.classes {
            return bad(
                "model",
                format!("{} outputs for {} classes", c * h * w, self.classes),
            );
        }
        Ok(())
    }
}

fn check_epilogue(layer: &ShiftLayer, e: &Epilogue) -> Result<()> {
    let n = layer.cout;
    let ok = e.acc_init.len() == n
        && match &e.requant {
            Requant::Affine { mul, add, .. } => mul.len() == n && add.len() == n,
            _ => true,
        };
    if ok {
        Ok(())
    } else {
        Err(InferError::unsupported(
            &layer.name,
            format!("per-channel constants do not match its {n} channels"),
        ))
    }
}
