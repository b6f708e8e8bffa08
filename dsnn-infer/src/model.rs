//! The integer model: a sequence of integer steps with their constants, and
//! its file format (safetensors: packed codes as tensors, the rest as JSON
//! metadata).

use crate::error::{InferError, Result};
use crate::format::ActFormat;
use crate::weights::{PackedWeights, Plan, ShiftWeight};
use dsnn_core::data::Normalization;
use dsnn_core::{InputShape, ShiftType};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::OnceLock;

/// Metadata key of the model description in an integer model file.
pub const MODEL_METADATA_KEY: &str = "dsnn_int_model";

/// Metadata key of the file's checksum: the CRC-32 (IEEE) of the model
/// description followed by the bytes of the tensors `codes`, `acc_init`,
/// `bn_mul` and `bn_add`, as 8 lowercase hex digits. A flipped bit anywhere
/// in the model is refused on load instead of changing its predictions.
pub const CHECKSUM_METADATA_KEY: &str = "dsnn_int_model_crc32";

/// The tensors of a model file, in checksum order, with their element types.
const TENSORS: [(&str, safetensors::Dtype); 4] = [
    ("codes", safetensors::Dtype::U8),
    ("acc_init", safetensors::Dtype::I64),
    ("bn_mul", safetensors::Dtype::I32),
    ("bn_add", safetensors::Dtype::I32),
];

/// Most activation values of one image at any step, padding included
/// (2^24, 64 MB of `i32`; ResNet20's largest is 18 496). Bounds every
/// buffer the engine sizes from a model and keeps its 32-bit offsets exact.
pub const MAX_ACTIVATIONS: usize = 1 << 24;

/// Most weights in one shift layer (2^31; the kernels index them in 32 bits).
pub const MAX_LAYER_WEIGHTS: usize = 1 << 31;

/// Most shortcuts saved at once (ResNets nest one).
pub const MAX_RESIDUAL_DEPTH: usize = 16;

/// Largest accumulator shift `S` (the export's bound: accumulators stay below 2^62).
pub const MAX_ACC_SHIFT: u32 = 62;

/// Largest batch-norm multiplier shift `m` (the export chooses at most 60).
pub const MAX_MUL_SHIFT: u32 = 62;

/// Largest batch-norm offset exponent `e` (offsets are `i32` significands times `2^e`).
pub const MAX_ADD_SHIFT: u32 = 32;

/// Bound on any accumulator (as in the export): `|acc| < 2^62`.
const ACC_LIMIT: f64 = 4_611_686_018_427_387_904.0;

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
    /// The dot-product re-expression and the kernel side it was built for.
    #[serde(skip)]
    dot_plan: OnceLock<(usize, Option<crate::dot::DotPlan>)>,
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
            dot_plan: OnceLock::new(),
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

    /// The weights as `i8` multipliers for the VNNI dot-product kernel of a
    /// square convolution of side `kernel` (built once; `None` when the
    /// layer keeps the shift-add kernel, see [`crate::dot::NoDot`], or when
    /// asked for another side than the first call's).
    pub fn dot_plan(&self, kernel: usize) -> Option<&crate::dot::DotPlan> {
        let (side, plan) = self.dot_plan.get_or_init(|| {
            let kk = kernel * kernel;
            let plan = if kk > 0 && self.fan_in.is_multiple_of(kk) {
                crate::dot::DotPlan::new(
                    &self.packed.unpack(),
                    self.cout,
                    self.fan_in / kk,
                    kernel,
                    self.acc_shift,
                )
            } else {
                Err(crate::dot::NoDot::Shape)
            };
            match plan {
                Ok(p) => {
                    log::debug!(
                        "{}: dot-product kernel, {} of {} weights in the shift-add residual",
                        self.name,
                        p.residual_weights,
                        p.residual_weights + p.dense_weights
                    );
                    (kernel, Some(p))
                }
                Err(why) => {
                    log::debug!("{}: shift-add kernel only ({why:?})", self.name);
                    (kernel, None)
                }
            }
        });
        plan.as_ref().filter(|_| *side == kernel)
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
        /// Groups: input and output channels split into `groups` equal
        /// parts, output part `g` reading input part `g` only (1: dense;
        /// `cin`: depthwise). Absent from files of dense layers.
        #[serde(default = "one", skip_serializing_if = "is_one")]
        groups: usize,
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
    /// Max pooling with a `kernel x kernel` window, `stride` and `padding`
    /// (padding never wins: PyTorch's minus-infinity padding; edges that
    /// do not fill a stride are dropped, PyTorch's floor mode).
    MaxPool {
        /// Side of the window.
        kernel: usize,
        /// Step between windows.
        stride: usize,
        /// Padding on each side (at most half the window).
        padding: usize,
    },
    /// Remembers the current activations for a later [`Step::AddResidual`].
    SaveResidual,
    /// Exchanges the current activations with the last saved ones: a
    /// residual block's main path is set aside while its projection
    /// shortcut (a convolution of the block input) runs.
    SwapResidual,
    /// `X = clamp(max(0, X + shortcut))` (or `clamp(X + shortcut)`
    /// without `relu`: MobileNetV2's linear bottleneck), the shortcut being
    /// the saved activations (popped), subsampled by 2 and zero-padded by
    /// `pad` channels on each side when `pad` is set (ResNet option A).
    AddResidual {
        /// Channels of zeros on each side of a subsampled shortcut.
        pad: Option<usize>,
        /// Apply ReLU to the sum (absent from files when set, as files
        /// written before the option were).
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        relu: bool,
    },
    /// Channel concatenation of branches (an inception module): the last
    /// `parts - 1` saved activations (popped, the earliest saved first),
    /// then the current ones, all of the same height and width.
    Concat {
        /// Number of branches (at least 2).
        parts: usize,
    },
    /// `X = floor(sum / (h * w))` per channel.
    GlobalAvgPool,
}

/// Serde default of [`Step::Conv`]'s `groups`.
fn one() -> usize {
    1
}

/// Whether `groups` is the default (so dense layers are written as before).
fn is_one(v: &usize) -> bool {
    *v == 1
}

/// Serde default of [`Step::AddResidual`]'s `relu`.
fn yes() -> bool {
    true
}

/// Whether `relu` is the default (so residual adds are written as before).
fn is_true(v: &bool) -> bool {
    *v
}

/// How raw pixels become the network's float input (as dsnn's `Batcher`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputTransform {
    /// Per-channel normalisation.
    pub normalization: Normalization,
    /// The value of a full-intensity pixel.
    pub pixel_max: f32,
    /// The data set and `[data]` settings the network was trained with,
    /// when recorded (absent from files written before the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataRecord>,
}

/// The data a network was trained on: enough for `dsnn export` and `dsnn
/// infer` to load the same images the same way (an image folder's size,
/// resize mode and channels) without being told again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataRecord {
    /// The registered data set name.
    pub dataset: String,
    /// The data set's own `[data]` settings (besides the keys every data
    /// set takes: the normalisation is [`InputTransform::normalization`]),
    /// as JSON values of their TOML ones.
    #[serde(default)]
    pub settings: BTreeMap<String, serde_json::Value>,
    /// The seed of the training/validation/test split (data sets without
    /// a test split of their own hold their test images out by it).
    pub split_seed: u64,
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
                Step::Conv {
                    layer,
                    kernel,
                    groups,
                    ..
                } => {
                    layer.plan();
                    layer.lane_plan();
                    if *groups == 1 {
                        layer.dot_plan(*kernel);
                    }
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
        let mut crc = crc32fast::Hasher::new();
        crc.update(header.as_bytes());
        for (_, _, bytes) in &tensors {
            crc.update(bytes);
        }
        let mut views = Vec::new();
        for (name, dtype, bytes) in &tensors {
            let elems = bytes.len() / (dtype.bitsize() / 8).max(1);
            let view = safetensors::tensor::TensorView::new(*dtype, vec![elems], bytes)
                .map_err(|e| InferError::unsupported(name, e.to_string()))?;
            views.push((name.to_string(), view));
        }
        let meta = HashMap::from([
            (MODEL_METADATA_KEY.to_string(), header),
            (
                CHECKSUM_METADATA_KEY.to_string(),
                format!("{:08x}", crc.finalize()),
            ),
        ]);
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

    /// Parses a model file's bytes: the checksum first, then every field
    /// of the description (sizes bounded before anything is allocated), then
    /// the codes and the accumulator bounds. The error says what is wrong.
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<IntModel, String> {
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| format!("not a safetensors file: {e}"))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| format!("not a safetensors file: {e}"))?;
        let meta = meta.metadata().as_ref();
        let header = meta
            .and_then(|m| m.get(MODEL_METADATA_KEY))
            .ok_or_else(|| {
                format!(
                "no `{MODEL_METADATA_KEY}` metadata: not an integer model written by `dsnn export`"
            )
            })?;
        let stored = meta
            .and_then(|m| m.get(CHECKSUM_METADATA_KEY))
            .ok_or_else(|| {
                format!(
                    "no `{CHECKSUM_METADATA_KEY}` checksum: written by an older `dsnn export` or \
                 altered; export the model again"
                )
            })?;
        let mut data = Vec::new();
        for (name, dtype) in TENSORS {
            let t = st
                .tensor(name)
                .map_err(|_| format!("has no tensor `{name}`"))?;
            if t.dtype() != dtype {
                return Err(format!(
                    "tensor `{name}` holds {:?}, expected {dtype:?}",
                    t.dtype()
                ));
            }
            data.push(t.data());
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(header.as_bytes());
        for d in &data {
            crc.update(d);
        }
        let computed = format!("{:08x}", crc.finalize());
        if *stored != computed {
            return Err(format!(
                "checksum mismatch (stored {stored}, computed {computed}): the file is corrupt"
            ));
        }
        let mut model: IntModel =
            serde_json::from_str(header).map_err(|e| format!("bad model description: {e}"))?;
        // Every size below is bounded by this check before it sizes a buffer.
        model.check_steps(false).map_err(|e| e.to_string())?;
        let [codes, init, mul, add] = [data[0], data[1], data[2], data[3]];
        let (mut at_codes, mut at_init, mut at_bn) = (0usize, 0usize, 0usize);
        let take = |buf: &[u8], at: &mut usize, n: usize, what: &str| {
            let slice = at
                .checked_add(n)
                .and_then(|end| buf.get(*at..end))
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
                layer.packed.bytes = take(codes, &mut at_codes, need, "codes")?;
                epilogue.acc_init = if epilogue.bias {
                    take(init, &mut at_init, 8 * cout, "acc_init")?
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
                    *m = take(mul, &mut at_bn, 4 * cout, "bn_mul")?
                        .chunks_exact(4)
                        .map(word)
                        .collect();
                    at_bn -= 4 * cout;
                    *a = take(add, &mut at_bn, 4 * cout, "bn_add")?
                        .chunks_exact(4)
                        .map(|c| i64::from(word(c)) << *add_shift)
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
        for layer in model.shift_layers() {
            check_codes(layer).map_err(|e| e.to_string())?;
        }
        model.check_accumulators().map_err(|e| e.to_string())?;
        Ok(model)
    }

    /// Checks that the steps fit together: formats and shifts in range,
    /// shapes and channel counts consistent, every size within
    /// [`MAX_ACTIVATIONS`] and [`MAX_LAYER_WEIGHTS`], logits last. The
    /// engine runs it before every inference (the fields are public).
    /// [`IntModel::from_bytes`] also checks each weight code and that no
    /// accumulator can overflow, which a model built by hand must ensure.
    pub fn validate(&self) -> Result<()> {
        self.check_steps(true)
    }

    /// [`IntModel::validate`]; `constants` includes the per-layer data
    /// (codes, biases, batch norm), which a file fills in after this check.
    fn check_steps(&self, constants: bool) -> Result<()> {
        let bad = |what: &str, why: String| Err(InferError::invalid(what, why));
        ActFormat::new(self.act.integer_bits, self.act.fraction_bits).map_err(|e| match e {
            InferError::Unsupported { reason, .. } => InferError::invalid("act", reason),
            other => other,
        })?;
        if !(2..=8).contains(&self.weight_bits) {
            return bad(
                "model",
                format!("weight_bits {} (allowed: 2..=8)", self.weight_bits),
            );
        }
        if !self.shift_type.is_shift() {
            return bad(
                "model",
                "shift type float: an integer model holds shift layers (Q or PS)".into(),
            );
        }
        let InputShape {
            channels: mut c,
            height: mut h,
            width: mut w,
        } = self.input;
        activations("input", c, h, w)?;
        self.check_input_transform()?;
        let mut saved: Vec<(usize, usize, usize)> = Vec::new();
        let last = self.steps.len().saturating_sub(1);
        for (i, step) in self.steps.iter().enumerate() {
            let logits = match step {
                Step::Conv {
                    layer,
                    cin,
                    kernel,
                    stride,
                    padding,
                    groups,
                    epilogue,
                } => {
                    let (k, p, name) = (*kernel, *padding, layer.name.as_str());
                    let g = *groups;
                    if g == 0 || !cin.is_multiple_of(g) || !layer.cout.is_multiple_of(g) {
                        return bad(
                            name,
                            format!(
                                "{g} groups for {cin} input and {} output channels (allowed: a \
                                 divisor of both)",
                                layer.cout
                            ),
                        );
                    }
                    if *stride == 0 {
                        return bad(name, "stride 0 (allowed: 1 or more)".into());
                    }
                    if k == 0 {
                        return bad(name, "kernel size 0 (allowed: 1 or more)".into());
                    }
                    if p >= k {
                        return bad(
                            name,
                            format!("padding {p} for a {k}x{k} kernel (allowed: 0..={})", k - 1),
                        );
                    }
                    if *cin != c {
                        return bad(name, format!("expects {cin} channels, gets {c}"));
                    }
                    let cin_g = cin / g;
                    if Some(layer.fan_in) != cin_g.checked_mul(k).and_then(|v| v.checked_mul(k)) {
                        return bad(
                            name,
                            format!("fan-in {} is not {cin_g} x {k} x {k}", layer.fan_in),
                        );
                    }
                    // fan_in = cin k^2 fits usize, so k < 2^32 and h + 2p cannot overflow.
                    let (hp, wp) = (h + 2 * p, w + 2 * p);
                    activations(name, c, hp, wp)?;
                    if hp < k || wp < k {
                        return bad(
                            name,
                            format!("input {h}x{w} padded by {p} is smaller than kernel {k}x{k}"),
                        );
                    }
                    h = (hp - k) / stride + 1;
                    w = (wp - k) / stride + 1;
                    c = layer.cout;
                    check_layer(layer, self.layer_bits(layer, constants))?;
                    activations(name, c, h, w)?;
                    check_epilogue(layer, epilogue, constants)?;
                    matches!(epilogue.requant, Requant::Logits)
                }
                Step::Linear { layer, epilogue } => {
                    if layer.fan_in != c * h * w {
                        return bad(
                            &layer.name,
                            format!("expects {} inputs, gets {}", layer.fan_in, c * h * w),
                        );
                    }
                    check_layer(layer, self.layer_bits(layer, constants))?;
                    (c, h, w) = (layer.cout, 1, 1);
                    activations(&layer.name, c, h, w)?;
                    check_epilogue(layer, epilogue, constants)?;
                    matches!(epilogue.requant, Requant::Logits)
                }
                Step::MaxPool2 => {
                    if h < 2 || w < 2 {
                        return bad("max pool", format!("2x2 pooling of a {h}x{w} input"));
                    }
                    (h, w) = (h / 2, w / 2);
                    false
                }
                Step::MaxPool {
                    kernel,
                    stride,
                    padding,
                } => {
                    let (k, s, p) = (*kernel, *stride, *padding);
                    if k == 0 || s == 0 || p.checked_mul(2).is_none_or(|p2| p2 > k) {
                        return bad(
                            "max pool",
                            format!(
                                "{k}x{k} window, stride {s}, padding {p} (allowed: window and \
                                 stride 1 or more, padding at most half the window)"
                            ),
                        );
                    }
                    // 2p <= k, so a padded size overflows only with k, which
                    // must fit inside it.
                    let (Some(hp), Some(wp)) = (h.checked_add(2 * p), w.checked_add(2 * p)) else {
                        return bad("max pool", format!("padding {p}"));
                    };
                    activations("max pool", c, hp, wp)?;
                    if hp < k || wp < k {
                        return bad(
                            "max pool",
                            format!("{k}x{k} pooling of a {h}x{w} input padded by {p}"),
                        );
                    }
                    (h, w) = ((hp - k) / s + 1, (wp - k) / s + 1);
                    false
                }
                Step::Concat { parts } => {
                    if *parts < 2 || *parts - 1 > saved.len() {
                        return bad(
                            "concat",
                            format!(
                                "{parts} parts with {} saved activations (allowed: 2 or more \
                                 parts, all but the current one saved)",
                                saved.len()
                            ),
                        );
                    }
                    for (sc, sh, sw) in saved.split_off(saved.len() + 1 - parts) {
                        if (sh, sw) != (h, w) {
                            return bad(
                                "concat",
                                format!("a {sh}x{sw} branch and a {h}x{w} branch"),
                            );
                        }
                        c += sc;
                    }
                    activations("concat", c, h, w)?;
                    false
                }
                Step::SaveResidual => {
                    if saved.len() == MAX_RESIDUAL_DEPTH {
                        return bad(
                            "residual",
                            format!("more than {MAX_RESIDUAL_DEPTH} shortcuts saved at once"),
                        );
                    }
                    saved.push((c, h, w));
                    false
                }
                Step::SwapResidual => {
                    let Some(top) = saved.last_mut() else {
                        return bad("residual", "swap without a saved tensor".into());
                    };
                    ((c, h, w), *top) = (*top, (c, h, w));
                    false
                }
                Step::AddResidual { pad, .. } => {
                    let Some((sc, sh, sw)) = saved.pop() else {
                        return bad("residual", "add without a saved shortcut".into());
                    };
                    let shape = match pad {
                        None => Some((sc, sh, sw)),
                        Some(p) => p
                            .checked_mul(2)
                            .and_then(|p2| p2.checked_add(sc))
                            .map(|c| (c, sh / 2, sw / 2)),
                    };
                    if shape != Some((c, h, w)) {
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
        if !saved.is_empty() {
            return bad("residual", "a saved shortcut is never added".into());
        }
        if self.steps.is_empty() || c * h * w != self.classes {
            return bad(
                "model",
                format!("{} outputs for {} classes", c * h * w, self.classes),
            );
        }
        Ok(())
    }

    /// The weight bits `layer`'s codes must have: its own once built (a
    /// hand-built model may mix them), the model's while a file is read
    /// (the file stores them once, and the reader copies them in later).
    fn layer_bits(&self, layer: &ShiftLayer, built: bool) -> u32 {
        if built {
            layer.weight_bits
        } else {
            self.weight_bits
        }
    }

    /// The pixel normalisation, when present, has one finite mean and one
    /// positive finite standard deviation per input channel.
    fn check_input_transform(&self) -> Result<()> {
        let Some(t) = &self.input_transform else {
            return Ok(());
        };
        let (mean, std) = (&t.normalization.mean, &t.normalization.std);
        let c = self.input.channels;
        let why = if mean.len() != c || std.len() != c {
            format!(
                "{} means and {} standard deviations for {c} channels",
                mean.len(),
                std.len()
            )
        } else if mean.iter().any(|m| !m.is_finite()) {
            format!("means {mean:?} are not all finite")
        } else if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            format!("standard deviations {std:?} are not all positive and finite")
        } else if !(t.pixel_max.is_finite() && t.pixel_max > 0.0) {
            format!("pixel_max {} is not positive and finite", t.pixel_max)
        } else {
            return Ok(());
        };
        Err(InferError::invalid("input_transform", why))
    }

    /// No accumulator can leave `(-2^62, 2^62)`: for every output, the
    /// largest input times each weight (`2^(I-1+F) 2^(S-m)`, plus 1 for a
    /// floored bucket), plus its start value and `2^S` — the bound the
    /// export chooses `S` by, so an exported model always passes.
    fn check_accumulators(&self) -> Result<()> {
        let max_x = self.act.max_abs() as f64;
        for step in &self.steps {
            let (Step::Conv {
                layer, epilogue, ..
            }
            | Step::Linear { layer, epilogue }) = step
            else {
                continue;
            };
            let s = layer.acc_shift;
            let ws = layer.packed.unpack();
            let products = ws
                .chunks(layer.fan_in)
                .map(|row| {
                    row.iter()
                        .map(|w| match w {
                            ShiftWeight::Pow { m, .. } => {
                                max_x * (f64::from(s) - f64::from(*m)).exp2() + 1.0
                            }
                            ShiftWeight::Zero => 0.0,
                        })
                        .sum::<f64>()
                })
                .fold(0.0, f64::max);
            let start = epilogue
                .acc_init
                .iter()
                .map(|v| v.unsigned_abs() as f64)
                .fold(0.0, f64::max);
            let bound = products + start + f64::from(s).exp2();
            if bound >= ACC_LIMIT {
                return Err(InferError::Overflow {
                    layer: layer.name.clone(),
                    reason: format!(
                        "its accumulator may reach {bound:.3e} (limit 2^62) with accumulator \
                         shift {s}: the model was not written by `dsnn export`"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// `c x h x w` activations of one image are at least one value and at most
/// [`MAX_ACTIVATIONS`].
fn activations(at: &str, c: usize, h: usize, w: usize) -> Result<()> {
    let n = c.checked_mul(h).and_then(|v| v.checked_mul(w));
    match n {
        Some(n) if (1..=MAX_ACTIVATIONS).contains(&n) => Ok(()),
        _ => Err(InferError::invalid(
            at,
            format!(
                "{c}x{h}x{w} activations per image (allowed: 1 to {MAX_ACTIVATIONS} values, padding included)"
            ),
        )),
    }
}

/// A shift layer's own fields: at least one output and one input, at most
/// [`MAX_LAYER_WEIGHTS`] weights, an accumulator shift of at most
/// [`MAX_ACC_SHIFT`], and codes of `weight_bits` bits (one more only when
/// a code stands for zero).
fn check_layer(layer: &ShiftLayer, weight_bits: u32) -> Result<()> {
    let bad = |why: String| Err(InferError::invalid(&layer.name, why));
    if !(2..=8).contains(&weight_bits) {
        return bad(format!("weight_bits {weight_bits} (allowed: 2..=8)"));
    }
    if layer.cout == 0 || layer.fan_in == 0 {
        return bad(format!(
            "{} outputs of {} inputs (allowed: 1 or more of each)",
            layer.cout, layer.fan_in
        ));
    }
    let weights = layer.cout.checked_mul(layer.fan_in);
    if weights.is_none_or(|n| n > MAX_LAYER_WEIGHTS) {
        return bad(format!(
            "{} x {} weights (allowed: at most {MAX_LAYER_WEIGHTS})",
            layer.cout, layer.fan_in
        ));
    }
    if layer.acc_shift > MAX_ACC_SHIFT {
        return bad(format!(
            "acc_shift {} (allowed: 0..={MAX_ACC_SHIFT})",
            layer.acc_shift
        ));
    }
    let code_bits = layer.packed.code_bits;
    let wider = code_bits == weight_bits + 1 && layer.packed.zero_code;
    if code_bits != weight_bits && !wider {
        return bad(format!(
            "{code_bits}-bit codes for {weight_bits}-bit weights (allowed: {weight_bits}, or {} \
             when a code stands for zero)",
            weight_bits + 1
        ));
    }
    Ok(())
}

/// Every code decodes to zero or a shift the model's `weight_bits` allows
/// (as the export packs them), and the codes are exactly the layer's.
fn check_codes(layer: &ShiftLayer) -> Result<()> {
    let mag_max = (1u32 << (layer.weight_bits - 1)) - 1;
    for (i, w) in layer.packed.unpack().iter().enumerate() {
        if let ShiftWeight::Pow { m, .. } = w {
            if u32::from(*m) > mag_max {
                return Err(InferError::invalid(
                    &layer.name,
                    format!(
                        "weight {i} has shift -{m}, beyond {}-bit weights (allowed: 0..=-{mag_max})",
                        layer.weight_bits
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The epilogue's shifts are in range and, with `constants`, its
/// per-channel data matches the layer (as do the packed codes).
fn check_epilogue(layer: &ShiftLayer, e: &Epilogue, constants: bool) -> Result<()> {
    if let Requant::Affine {
        mul_shift,
        add_shift,
        ..
    } = &e.requant
    {
        if *mul_shift > MAX_MUL_SHIFT || *add_shift > MAX_ADD_SHIFT {
            return Err(InferError::invalid(
                &layer.name,
                format!(
                    "batch-norm shifts m = {mul_shift}, e = {add_shift} (allowed: m <= \
                     {MAX_MUL_SHIFT}, e <= {MAX_ADD_SHIFT})"
                ),
            ));
        }
    }
    if !constants {
        return Ok(());
    }
    let n = layer.cout;
    let ok = e.acc_init.len() == n
        && match &e.requant {
            Requant::Affine { mul, add, .. } => mul.len() == n && add.len() == n,
            _ => true,
        };
    if !ok {
        return Err(InferError::invalid(
            &layer.name,
            format!("per-channel constants do not match its {n} channels"),
        ));
    }
    let p = &layer.packed;
    let codes = n * layer.fan_in;
    if p.len != codes || p.bytes.len() != (codes * p.code_bits as usize).div_ceil(8) {
        return Err(InferError::invalid(
            &layer.name,
            format!(
                "{} codes in {} bytes for {n} x {} weights of {} bits",
                p.len,
                p.bytes.len(),
                layer.fan_in,
                p.code_bits
            ),
        ));
    }
    Ok(())
}
