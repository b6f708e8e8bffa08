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
    layers_to_convert, Conv2dLayer, ConvEngine, Forward, LinearLayer, NetBuilder, ShiftEnd,
    ShiftSettings,
};
use crate::params::ParamStore;
use candle_core::{Device, Tensor};
use dsnn_energy::OpProfile;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

mod googlenet;
mod mobilenetv2;
mod residual;
mod resnet18;
mod resnet_cifar;
mod small;
mod vgg;

pub use googlenet::GoogLeNet;
pub use mobilenetv2::MobileNetV2;
pub use resnet18::ResNet18;
pub use resnet_cifar::{CifarResNet, CIFAR_RESNET_DEPTHS};
pub use small::{DigitsCnn, LeNet5};
pub use vgg::Vgg;

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
pub fn builtin_backbones() -> Vec<Arc<dyn Backbone>> {
    let mut all: Vec<Arc<dyn Backbone>> = CIFAR_RESNET_DEPTHS
        .iter()
        .map(|&d| Arc::new(CifarResNet::new(d).expect("a CIFAR ResNet depth")) as Arc<dyn Backbone>)
        .collect();
    all.extend([
        Arc::new(ResNet18) as Arc<dyn Backbone>,
        Arc::new(Vgg::VGG11),
        Arc::new(Vgg::VGG19),
        Arc::new(MobileNetV2),
        Arc::new(GoogLeNet),
        Arc::new(LeNet5),
        Arc::new(DigitsCnn),
    ]);
    all
}

/// Looks up a built-in backbone by name (for tests, benchmarks and code
/// that works without a registry; experiment files resolve names through
/// the run layer's registry, which also knows registered backbones).
pub fn backbone_by_name(name: &str) -> Result<Box<dyn Backbone>> {
    let lower = name.to_ascii_lowercase();
    let wanted = match lower.as_str() {
        "lenet" => "lenet5",
        "digits" => "digits_cnn",
        other => other,
    };
    let all = builtin_backbones();
    match all.iter().position(|b| b.name() == wanted) {
        Some(i) => Ok(Box::new(Shared(all[i].clone()))),
        None => Err(CoreError::config(
            "backbone",
            format!(
                "unknown backbone `{lower}` (built in: {})",
                all.iter().map(|b| b.name()).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// A shared backbone behind a box (what [`backbone_by_name`] returns).
struct Shared(Arc<dyn Backbone>);

impl Backbone for Shared {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn description(&self) -> String {
        self.0.description()
    }
    fn hyperparameters(&self) -> Vec<ArchParam> {
        self.0.hyperparameters()
    }
    fn conv_layers(&self, arch: &ArchValues) -> Vec<String> {
        self.0.conv_layers(arch)
    }
    fn num_convertible_layers(&self, arch: &ArchValues) -> usize {
        self.0.num_convertible_layers(arch)
    }
    fn default_input(&self) -> InputShape {
        self.0.default_input()
    }
    fn build_with(
        &self,
        spec: &ModelSpec,
        device: &Device,
        engine: ConvEngine,
    ) -> Result<Box<dyn Network>> {
        self.0.build_with(spec, device, engine)
    }
    fn op_profile(&self, spec: &ModelSpec) -> Result<OpProfile> {
        self.0.op_profile(spec)
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
