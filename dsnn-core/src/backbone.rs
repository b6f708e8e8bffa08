//! Backbones: the network architectures a DSNN is built from.
//!
//! Each backbone knows its convolution layers (in forward order), builds a
//! network for an input shape, class count and DeepShift configuration, and
//! reports the network's per-image operation profile.

use crate::arch::{ArchParam, ArchValues};
use crate::conv::ConvGeometry;
use crate::error::{CoreError, Result};
use crate::graph::NetGraph;
use crate::layers::{
    layers_to_convert, BatchNorm2d, Conv2dLayer, ConvEngine, Forward, LinearLayer, NetBuilder,
    ShiftEnd, ShiftSettings,
};
use crate::nn;
use crate::params::ParamStore;
use candle_core::{Device, Tensor};
use dsnn_energy::OpProfile;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// Shape of one input image: channels, height, width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputShape {
    /// Channels (1 for grey, 3 for colour).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

/// Everything needed to build a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Input image shape.
    pub input: InputShape,
    /// Number of classes (output logits).
    pub classes: usize,
    /// DeepShift settings; `None` builds the float network.
    pub shift: Option<ShiftSettings>,
    /// How many convolution layers to convert (clamped to the number there are).
    pub shift_depth: usize,
    /// Which end `shift_depth` counts from.
    pub shift_end: ShiftEnd,
    /// Seed of the initial weights and of stochastic rounding.
    pub seed: u64,
    /// The backbone's architecture hyperparameters (see
    /// [`Backbone::hyperparameters`]); empty for backbones that take none.
    #[serde(default)]
    pub arch: ArchValues,
}

/// A built network: a forward pass and its parameters.
pub trait Network: Send + Sync {
    /// Computes logits (`batch x classes`) for images (`batch x C x H x W`).
    fn forward(&self, x: &Tensor, ctx: Forward) -> Result<Tensor>;
    /// The trainable parameters and buffers.
    fn params(&self) -> &ParamStore;
    /// Names of the convolution and linear layers converted to shifts.
    fn shift_layers(&self) -> Vec<String>;
}

/// An architecture from which DSNNs are built.
///
/// Implement it to bring your own network to dsnn: register it with the
/// run layer's registry and it can be trained, searched, reported and
/// exported like the built-in ones (`docs/backbones.md`).
pub trait Backbone: Send + Sync {
    /// Short name used in configuration files (`resnet20`, `lenet5`, `digits_cnn`).
    fn name(&self) -> &str;

    /// One line on the architecture, for listings.
    fn description(&self) -> String {
        String::new()
    }

    /// The architecture hyperparameters it takes (widths, depths, ...):
    /// experiment files may set them in `[model]` and search spaces may
    /// search them; they reach [`Backbone::build_with`] in
    /// [`ModelSpec::arch`], checked and with defaults filled in.
    fn hyperparameters(&self) -> Vec<ArchParam> {
        Vec::new()
    }

    /// Names of the convolution layers `shift_depth` counts, in forward
    /// order, for the architecture values `arch`.
    fn conv_layers(&self, arch: &ArchValues) -> Vec<String>;

    /// Number of convolution layers `shift_depth` can convert.
    fn num_convertible_layers(&self, arch: &ArchValues) -> usize {
        self.conv_layers(arch).len()
    }

    /// The input shape the backbone is designed for.
    fn default_input(&self) -> InputShape;

    /// Builds the network for `spec`, with the given convolution engine.
    fn build_with(
        &self,
        spec: &ModelSpec,
        device: &Device,
        engine: ConvEngine,
    ) -> Result<Box<dyn Network>>;

    /// Builds the network for `spec` with dsnn's convolution.
    fn build(&self, spec: &ModelSpec, device: &Device) -> Result<Box<dyn Network>> {
        self.build_with(spec, device, ConvEngine::Dsnn)
    }

    /// The per-image operation profile of the network for `spec`, traced from
    /// one forward pass of a blank image on the CPU.
    fn op_profile(&self, spec: &ModelSpec) -> Result<OpProfile> {
        let net = self.build(spec, &Device::Cpu)?;
        let x = Tensor::zeros(
            (1, spec.input.channels, spec.input.height, spec.input.width),
            candle_core::DType::F32,
            &Device::Cpu,
        )?;
        let trace = Mutex::new(Vec::new());
        net.forward(
            &x,
            Forward {
                train: false,
                trace: Some(&trace),
                graph: None,
            },
        )?;
        Ok(OpProfile {
            layers: trace.into_inner().unwrap_or_else(|p| p.into_inner()),
        })
    }
}

/// The dataflow of `net`'s inference forward pass on one blank image of
/// `input`'s shape, on the CPU (what export compiles; see [`crate::graph`]).
pub fn record_graph(net: &dyn Network, input: InputShape) -> Result<NetGraph> {
    let x = Tensor::zeros(
        (1, input.channels, input.height, input.width),
        candle_core::DType::F32,
        &Device::Cpu,
    )?;
    let ops = Mutex::new(Vec::new());
    let y = net.forward(
        &x,
        Forward {
            train: false,
            trace: None,
            graph: Some(&ops),
        },
    )?;
    Ok(NetGraph {
        input: x.id(),
        output: y.id(),
        ops: ops.into_inner().unwrap_or_else(|p| p.into_inner()),
    })
}

/// The backbones built into dsnn-core, which the run layer's registry
/// registers under their names.
pub fn builtin_backbones() -> Vec<std::sync::Arc<dyn Backbone>> {
    vec![
        std::sync::Arc::new(ResNet20),
        std::sync::Arc::new(LeNet5),
        std::sync::Arc::new(DigitsCnn),
    ]
}

/// Looks up a built-in backbone by name (for tests, benchmarks and code
/// that works without a registry; experiment files resolve names through
/// the run layer's registry, which also knows registered backbones).
pub fn backbone_by_name(name: &str) -> Result<Box<dyn Backbone>> {
    match name.to_ascii_lowercase().as_str() {
        "resnet20" => Ok(Box::new(ResNet20)),
        "lenet5" | "lenet" => Ok(Box::new(LeNet5)),
        "digits_cnn" | "digits" => Ok(Box::new(DigitsCnn)),
        other => Err(CoreError::config(
            "backbone",
            format!("unknown backbone `{other}` (built in: resnet20, lenet5, digits_cnn)"),
        )),
    }
}

/// A [`NetBuilder`] for `spec` that converts the convolutions `shift_depth`
/// selects among `convs` (forward order) and every linear layer: the start
/// of every backbone's `build_with`, built-in or not.
pub fn net_builder(
    spec: &ModelSpec,
    convs: &[String],
    device: &Device,
    engine: ConvEngine,
) -> Result<NetBuilder> {
    if let Some(s) = &spec.shift {
        s.validate()?;
    }
    if spec.classes < 2 {
        return Err(CoreError::config(
            "classes",
            "a classifier needs at least 2 classes",
        ));
    }
    let convert = layers_to_convert(convs, spec.shift_depth, spec.shift_end);
    Ok(NetBuilder::new(
        spec.seed, device, spec.shift, convert, engine,
    ))
}

fn geometry(stride: usize, padding: usize) -> ConvGeometry {
    ConvGeometry { stride, padding }
}

fn collect_shift(convs: &[&Conv2dLayer], linears: &[&LinearLayer]) -> Vec<String> {
    convs
        .iter()
        .filter(|c| c.is_shift())
        .map(|c| c.name().to_string())
        .chain(
            linears
                .iter()
                .filter(|l| l.is_shift())
                .map(|l| l.name().to_string()),
        )
        .collect()
}

// ---------------------------------------------------------------- ResNet20 --

/// ResNet20 for CIFAR-style 32x32 images (He et al. 2016, option A shortcuts):
/// a 3x3 convolution of 16 channels, three stages of three basic blocks with
/// 16, 32 and 64 channels (strides 1, 2, 2), global average pooling and a
/// linear classifier. 19 convolutions + 1 linear layer, batch norm throughout.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResNet20;

const RESNET_STAGES: [(usize, usize); 3] = [(16, 1), (32, 2), (64, 2)];

impl Backbone for ResNet20 {
    fn name(&self) -> &str {
        "resnet20"
    }

    fn description(&self) -> String {
        "ResNet20 for 32x32 images: 19 convolutions in three stages, option-A shortcuts".into()
    }

    fn conv_layers(&self, _arch: &ArchValues) -> Vec<String> {
        let mut names = vec!["conv1".to_string()];
        for stage in 1..=3 {
            for block in 0..3 {
                for conv in 1..=2 {
                    names.push(format!("layer{stage}.{block}.conv{conv}"));
                }
            }
        }
        names
    }

    fn default_input(&self) -> InputShape {
        InputShape {
            channels: 3,
            height: 32,
            width: 32,
        }
    }

    fn build_with(
        &self,
        spec: &ModelSpec,
        device: &Device,
        engine: ConvEngine,
    ) -> Result<Box<dyn Network>> {
        let mut b = net_builder(spec, &self.conv_layers(&spec.arch), device, engine)?;
        let conv1 = b.conv2d("conv1", spec.input.channels, 16, 3, geometry(1, 1), false)?;
        let bn1 = b.batch_norm("bn1", 16)?;
        let mut blocks = Vec::new();
        let mut cin = 16;
        for (s, &(cout, stride)) in RESNET_STAGES.iter().enumerate() {
            for i in 0..3 {
                let st = if i == 0 { stride } else { 1 };
                let p = format!("layer{}.{i}", s + 1);
                blocks.push(BasicBlock {
                    name: p.clone(),
                    conv1: b.conv2d(&format!("{p}.conv1"), cin, cout, 3, geometry(st, 1), false)?,
                    bn1: b.batch_norm(&format!("{p}.bn1"), cout)?,
                    conv2: b.conv2d(&format!("{p}.conv2"), cout, cout, 3, geometry(1, 1), false)?,
                    bn2: b.batch_norm(&format!("{p}.bn2"), cout)?,
                    shortcut_pad: if st != 1 || cin != cout {
                        Some(cout / 4)
                    } else {
                        None
                    },
                });
                cin = cout;
            }
        }
        let linear = b.linear("linear", 64, spec.classes)?;
        Ok(Box::new(ResNet20Net {
            conv1,
            bn1,
            blocks,
            linear,
            params: b.store,
        }))
    }
}

struct BasicBlock {
    name: String,
    conv1: Conv2dLayer,
    bn1: BatchNorm2d,
    conv2: Conv2dLayer,
    bn2: BatchNorm2d,
    /// Option A: subsample by 2 and zero-pad this many channels on each side.
    shortcut_pad: Option<usize>,
}

impl BasicBlock {
    fn forward(&self, x: &Tensor, ctx: Forward) -> Result<Tensor> {
        let out = self
            .bn1
            .forward_relu(&self.conv1.forward_with(x, ctx)?, ctx)?;
        ctx.record_elementwise(&format!("{}.relu1", self.name), &out);
        let out = self
            .bn2
            .forward_with(&self.conv2.forward_with(&out, ctx)?, ctx)?;
        let short = match self.shortcut_pad {
            None => x.clone(),
            Some(pad) => nn::shortcut_option_a(x, pad, ctx)?,
        };
        nn::add_relu(&out, &short, &self.name, ctx)
    }
}

struct ResNet20Net {
    conv1: Conv2dLayer,
    bn1: BatchNorm2d,
    blocks: Vec<BasicBlock>,
    linear: LinearLayer,
    params: ParamStore,
}

impl Network for ResNet20Net {
    fn forward(&self, x: &Tensor, ctx: Forward) -> Result<Tensor> {
        let mut out = self
            .bn1
            .forward_relu(&self.conv1.forward_with(x, ctx)?, ctx)?;
        ctx.record_elementwise("relu1", &out);
        for block in &self.blocks {
            out = block.forward(&out, ctx)?;
        }
        let pooled = nn::global_avg_pool(&out, "avgpool", ctx)?;
        self.linear.forward_with(&pooled, ctx)
    }

    fn params(&self) -> &ParamStore {
        &self.params
    }

    fn shift_layers(&self) -> Vec<String> {
        let mut convs = vec![&self.conv1];
        for b in &self.blocks {
            convs.push(&b.conv1);
            convs.push(&b.conv2);
        }
        collect_shift(&convs, &[&self.linear])
    }
}

// ------------------------------------------------------------------ LeNet5 --

/// DeepShift's LeNet-style MNIST network (`ConvMNIST`): 5x5 convolutions of
/// 20 and 50 channels, each followed by ReLU and 2x2 max pooling, then fully
/// connected layers of 500 units and the classifier. For 28x28 grey images.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeNet5;

impl Backbone for LeNet5 {
    fn name(&self) -> &str {
        "lenet5"
    }

    fn description(&self) -> String {
        "DeepShift's LeNet-style MNIST network: two 5x5 convolutions, two linear layers".into()
    }

    fn conv_layers(&self, _arch: &ArchValues) -> Vec<String> {
        vec!["conv1".into(), "conv2".into()]
    }

    fn default_input(&self) -> InputShape {
        InputShape {
            channels: 1,
            height: 28,
            width: 28,
        }
    }

    fn build_with(
        &self,
        spec: &ModelSpec,
        device: &Device,
        engine: ConvEngine,
    ) -> Result<Box<dyn Network>> {
        let InputShape {
            channels,
            height,
            width,
        } = spec.input;
        let after = |s: usize| (s.saturating_sub(4) / 2).saturating_sub(4) / 2;
        let (fh, fw) = (after(height), after(width));
        if fh == 0 || fw == 0 {
            return Err(CoreError::config(
                "backbone",
                format!("lenet5 needs images of at least 16x16, got {height}x{width}"),
            ));
        }
        let mut b = net_builder(spec, &self.conv_layers(&spec.arch), device, engine)?;
        Ok(Box::new(TwoConvNet {
            conv1: b.conv2d("conv1", channels, 20, 5, geometry(1, 0), true)?,
            conv2: b.conv2d("conv2", 20, 50, 5, geometry(1, 0), true)?,
            fc1: b.linear("fc1", 50 * fh * fw, 500)?,
            fc2: b.linear("fc2", 500, spec.classes)?,
            pool_after_conv1: true,
            params: b.store,
        }))
    }
}

// -------------------------------------------------------------- DigitsCnn --

/// A small CNN for the 8x8 UCI digits: two 3x3 convolutions (16 and 32
/// channels, padding 1) with ReLU, 2x2 max pooling, a 64-unit hidden layer
/// and the classifier.
#[derive(Debug, Clone, Copy, Default)]
pub struct DigitsCnn;

impl Backbone for DigitsCnn {
    fn name(&self) -> &str {
        "digits_cnn"
    }

    fn description(&self) -> String {
        "a small CNN for the 8x8 digits: two 3x3 convolutions, two linear layers".into()
    }

    fn conv_layers(&self, _arch: &ArchValues) -> Vec<String> {
        vec!["conv1".into(), "conv2".into()]
    }

    fn default_input(&self) -> InputShape {
        InputShape {
            channels: 1,
            height: 8,
            width: 8,
        }
    }

    fn build_with(
        &self,
        spec: &ModelSpec,
        device: &Device,
        engine: ConvEngine,
    ) -> Result<Box<dyn Network>> {
        let InputShape {
            channels,
            height,
            width,
        } = spec.input;
        if height < 2 || width < 2 {
            return Err(CoreError::config(
                "backbone",
                "digits_cnn needs images of at least 2x2",
            ));
        }
        let mut b = net_builder(spec, &self.conv_layers(&spec.arch), device, engine)?;
        Ok(Box::new(TwoConvNet {
            conv1: b.conv2d("conv1", channels, 16, 3, geometry(1, 1), true)?,
            conv2: b.conv2d("conv2", 16, 32, 3, geometry(1, 1), true)?,
            fc1: b.linear("fc1", 32 * (height / 2) * (width / 2), 64)?,
            fc2: b.linear("fc2", 64, spec.classes)?,
            pool_after_conv1: false,
            params: b.store,
        }))
    }
}

/// LeNet-5 and the digits CNN: two convolutions with ReLU (and 2x2 max
/// pooling after the second, and after the first when `pool_after_conv1`),
/// then two fully connected layers.
struct TwoConvNet {
    conv1: Conv2dLayer,
    conv2: Conv2dLayer,
    fc1: LinearLayer,
    fc2: LinearLayer,
    pool_after_conv1: bool,
    params: ParamStore,
}

impl Network for TwoConvNet {
    fn forward(&self, x: &Tensor, ctx: Forward) -> Result<Tensor> {
        let mut x = nn::relu(&self.conv1.forward_with(x, ctx)?, "relu1", ctx)?;
        if self.pool_after_conv1 {
            x = nn::max_pool2(&x, "pool1", ctx)?;
        }
        let x = nn::max_pool2(
            &nn::relu(&self.conv2.forward_with(&x, ctx)?, "relu2", ctx)?,
            "pool2",
            ctx,
        )?;
        let x = nn::relu(
            &self.fc1.forward_with(&nn::flatten(&x, ctx)?, ctx)?,
            "relu3",
            ctx,
        )?;
        self.fc2.forward_with(&x, ctx)
    }

    fn params(&self) -> &ParamStore {
        &self.params
    }

    fn shift_layers(&self) -> Vec<String> {
        collect_shift(&[&self.conv1, &self.conv2], &[&self.fc1, &self.fc2])
    }
}
