//! The CIFAR ResNets of He et al. (2016) with option-A shortcuts, as
//! DeepShift's CIFAR code builds them: ResNet20, 32, 44, 56 and 110.

use super::{collect_shift, geometry, net_builder, Backbone, InputShape, ModelSpec, Network};
use crate::arch::ArchValues;
use crate::error::{CoreError, Result};
use crate::layers::{BatchNorm2d, Conv2dLayer, ConvEngine, Forward, LinearLayer};
use crate::nn;
use crate::params::ParamStore;
use candle_core::{Device, Tensor};

/// The depths dsnn registers (`resnet20` ... `resnet110`).
pub const CIFAR_RESNET_DEPTHS: [usize; 5] = [20, 32, 44, 56, 110];

/// Channels and stride of the three stages.
const STAGES: [(usize, usize); 3] = [(16, 1), (32, 2), (64, 2)];

/// A CIFAR ResNet of depth `6n + 2` (He et al. 2016, option-A shortcuts):
/// a 3x3 convolution of 16 channels, three stages of `n` basic blocks with
/// 16, 32 and 64 channels (strides 1, 2, 2), global average pooling and a
/// linear classifier; batch norm after every convolution. `6n + 1`
/// convolutions and one linear layer. ResNet20 is `n = 3`.
#[derive(Debug, Clone)]
pub struct CifarResNet {
    depth: usize,
    name: String,
}

impl CifarResNet {
    /// The ResNet of `depth` layers; `depth` must be `6n + 2` with `n >= 1`.
    pub fn new(depth: usize) -> Result<Self> {
        if depth < 8 || !(depth - 2).is_multiple_of(6) {
            return Err(CoreError::config(
                "backbone",
                format!("a CIFAR ResNet has 6n + 2 layers (20, 32, 44, 56, 110, ...), not {depth}"),
            ));
        }
        Ok(CifarResNet {
            depth,
            name: format!("resnet{depth}"),
        })
    }

    /// ResNet20, the smallest of DeepShift's CIFAR ResNets.
    pub fn resnet20() -> Self {
        CifarResNet {
            depth: 20,
            name: "resnet20".into(),
        }
    }

    /// The number of layers (convolutions and the linear layer).
    pub fn depth(&self) -> usize {
        self.depth
    }

    fn blocks_per_stage(&self) -> usize {
        (self.depth - 2) / 6
    }
}

impl Backbone for CifarResNet {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> String {
        format!(
            "ResNet{} for 32x32 images: {} convolutions in three stages, option-A shortcuts",
            self.depth,
            self.depth - 1
        )
    }

    fn conv_layers(&self, _arch: &ArchValues) -> Vec<String> {
        let mut names = vec!["conv1".to_string()];
        for stage in 1..=3 {
            for block in 0..self.blocks_per_stage() {
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
        let InputShape { height, width, .. } = spec.input;
        if !height.is_multiple_of(4) || !width.is_multiple_of(4) || height == 0 || width == 0 {
            return Err(CoreError::config(
                "backbone",
                format!(
                    "{} needs image sides divisible by 4 (its option-A shortcuts halve them \
                     twice), got {height}x{width}",
                    self.name
                ),
            ));
        }
        let mut b = net_builder(spec, &self.conv_layers(&spec.arch), device, engine)?;
        let conv1 = b.conv2d("conv1", spec.input.channels, 16, 3, geometry(1, 1), false)?;
        let bn1 = b.batch_norm("bn1", 16)?;
        let mut blocks = Vec::new();
        let mut cin = 16;
        for (s, &(cout, stride)) in STAGES.iter().enumerate() {
            for i in 0..self.blocks_per_stage() {
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
        Ok(Box::new(CifarResNetNet {
            conv1,
            bn1,
            blocks,
            linear,
            params: b.store,
        }))
    }
}

/// Two 3x3 convolutions with batch norm, and the identity or option-A shortcut.
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

struct CifarResNetNet {
    conv1: Conv2dLayer,
    bn1: BatchNorm2d,
    blocks: Vec<BasicBlock>,
    linear: LinearLayer,
    params: ParamStore,
}

impl Network for CifarResNetNet {
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
