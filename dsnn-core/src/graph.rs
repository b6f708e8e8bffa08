//! The dataflow of a network's forward pass, recorded for export.
//!
//! With `Forward::graph` set, every layer of dsnn-core (and every
//! function of the `nn` module) appends one [`NetOp`] naming the tensors it
//! read and wrote. The integer engine (`dsnn-infer`) compiles that record
//! into its program, so any backbone built from these layers exports
//! without export code of its own; an operation that is not recorded shows
//! up as a tensor that comes from nowhere, which the exporter reports by the
//! layer that reads it.

use candle_core::TensorId;

/// One recorded operation; `input`/`output` are the tensors' identities.
#[derive(Debug, Clone, PartialEq)]
pub enum NetOp {
    /// A 2-D convolution (float or shift).
    Conv {
        /// Layer name (its parameters are `{layer}.weight` or
        /// `{layer}.shift`/`{layer}.sign`, and `{layer}.bias`).
        layer: String,
        /// Input tensor.
        input: TensorId,
        /// Output tensor.
        output: TensorId,
        /// Input channels.
        in_channels: usize,
        /// Output channels.
        out_channels: usize,
        /// Kernel height and width.
        kernel: (usize, usize),
        /// Stride.
        stride: usize,
        /// Zero padding on each side.
        padding: usize,
        /// Groups (1: dense; `in_channels`: depthwise).
        groups: usize,
        /// Whether it adds a bias.
        bias: bool,
        /// Whether it is a shift layer.
        shift: bool,
    },
    /// A fully connected layer on `batch x in_features` inputs.
    Linear {
        /// Layer name.
        layer: String,
        /// Input tensor.
        input: TensorId,
        /// Output tensor.
        output: TensorId,
        /// Input features.
        in_features: usize,
        /// Output features.
        out_features: usize,
        /// Whether it adds a bias.
        bias: bool,
        /// Whether it is a shift layer.
        shift: bool,
    },
    /// Batch normalisation (inference: running statistics), optionally
    /// followed by a ReLU.
    BatchNorm {
        /// Layer name (`{layer}.weight`, `.bias`, `.running_mean`, `.running_var`).
        layer: String,
        /// Input tensor.
        input: TensorId,
        /// Output tensor.
        output: TensorId,
        /// Channels.
        channels: usize,
        /// Whether a ReLU follows inside the same call.
        relu: bool,
    },
    /// `max(x, 0)`.
    Relu {
        /// Input tensor.
        input: TensorId,
        /// Output tensor.
        output: TensorId,
    },
    /// 2x2 max pooling with stride 2.
    MaxPool2 {
        /// Input tensor.
        input: TensorId,
        /// Output tensor.
        output: TensorId,
    },
    /// `N x C x H x W` to `N x (C H W)`.
    Flatten {
        /// Input tensor.
        input: TensorId,
        /// Output tensor.
        output: TensorId,
    },
    /// The mean over height and width: `N x C x H x W` to `N x C`.
    GlobalAvgPool {
        /// Input tensor.
        input: TensorId,
        /// Output tensor.
        output: TensorId,
    },
    /// ResNet's option-A shortcut: subsample by 2 and pad `pad` channels
    /// of zeros on each side.
    ShortcutOptionA {
        /// Input tensor.
        input: TensorId,
        /// Output tensor.
        output: TensorId,
        /// Channels of zeros on each side.
        pad: usize,
    },
    /// Max pooling with a `kernel x kernel` window, `stride` and
    /// (minus-infinity) `padding` other than the 2x2 stride-2 of
    /// [`NetOp::MaxPool2`].
    MaxPool {
        /// Name of the pooling (for error messages).
        name: String,
        /// Input tensor.
        input: TensorId,
        /// Output tensor.
        output: TensorId,
        /// Side of the window.
        kernel: usize,
        /// Step between windows.
        stride: usize,
        /// Padding on each side.
        padding: usize,
    },
    /// Channel-wise concatenation of branches (GoogLeNet's inception).
    Concat {
        /// Name of the concatenation (for error messages).
        name: String,
        /// The branches, in channel order.
        inputs: Vec<TensorId>,
        /// Output tensor.
        output: TensorId,
    },
    /// `main + shortcut` without a ReLU (MobileNetV2's linear bottleneck).
    Add {
        /// Name of the addition (for error messages).
        name: String,
        /// The block's main path.
        main: TensorId,
        /// The shortcut.
        shortcut: TensorId,
        /// Output tensor.
        output: TensorId,
    },
    /// `max(main + shortcut, 0)`, the end of a residual block.
    AddRelu {
        /// The block's main path.
        main: TensorId,
        /// The shortcut.
        shortcut: TensorId,
        /// Output tensor.
        output: TensorId,
    },
}

impl NetOp {
    /// The tensor the operation writes.
    pub fn output(&self) -> TensorId {
        match self {
            NetOp::Conv { output, .. }
            | NetOp::Linear { output, .. }
            | NetOp::BatchNorm { output, .. }
            | NetOp::Relu { output, .. }
            | NetOp::MaxPool2 { output, .. }
            | NetOp::Flatten { output, .. }
            | NetOp::GlobalAvgPool { output, .. }
            | NetOp::ShortcutOptionA { output, .. }
            | NetOp::MaxPool { output, .. }
            | NetOp::Concat { output, .. }
            | NetOp::Add { output, .. }
            | NetOp::AddRelu { output, .. } => *output,
        }
    }

    /// The tensors the operation reads.
    pub fn inputs(&self) -> Vec<TensorId> {
        match self {
            NetOp::AddRelu { main, shortcut, .. } | NetOp::Add { main, shortcut, .. } => {
                vec![*main, *shortcut]
            }
            NetOp::Concat { inputs, .. } => inputs.clone(),
            NetOp::Conv { input, .. }
            | NetOp::Linear { input, .. }
            | NetOp::BatchNorm { input, .. }
            | NetOp::Relu { input, .. }
            | NetOp::MaxPool2 { input, .. }
            | NetOp::Flatten { input, .. }
            | NetOp::GlobalAvgPool { input, .. }
            | NetOp::MaxPool { input, .. }
            | NetOp::ShortcutOptionA { input, .. } => vec![*input],
        }
    }

    /// A short description for error messages (the layer's name where it
    /// has one).
    pub fn describe(&self) -> String {
        match self {
            NetOp::Conv { layer, .. } => format!("convolution `{layer}`"),
            NetOp::Linear { layer, .. } => format!("linear layer `{layer}`"),
            NetOp::BatchNorm { layer, .. } => format!("batch norm `{layer}`"),
            NetOp::Relu { .. } => "a ReLU".into(),
            NetOp::MaxPool2 { .. } => "a 2x2 max pooling".into(),
            NetOp::Flatten { .. } => "a flatten".into(),
            NetOp::GlobalAvgPool { .. } => "a global average pooling".into(),
            NetOp::ShortcutOptionA { .. } => "an option-A shortcut".into(),
            NetOp::AddRelu { .. } => "a residual add".into(),
            NetOp::MaxPool {
                name,
                kernel,
                stride,
                padding,
                ..
            } => format!(
                "max pooling `{name}` ({kernel}x{kernel}, stride {stride}, padding {padding})"
            ),
            NetOp::Concat { name, .. } => format!("concatenation `{name}`"),
            NetOp::Add { name, .. } => format!("addition `{name}` (without ReLU)"),
        }
    }
}

/// The recorded graph of one forward pass, with the input tensor's id.
#[derive(Debug, Clone)]
pub struct NetGraph {
    /// The network's input.
    pub input: TensorId,
    /// The logits.
    pub output: TensorId,
    /// The operations in the order they ran.
    pub ops: Vec<NetOp>,
}
