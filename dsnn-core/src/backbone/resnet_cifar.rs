//! The CIFAR ResNets of He et al. (2016) with option-A shortcuts, as
//! DeepShift's CIFAR code builds them: ResNet20, 32, 44, 56 and 110.

use super::residual::{BasicBlock, ResidualNet, Shortcut};
use super::{geometry, net_builder, Backbone, InputShape, ModelSpec, Network};
use crate::arch::ArchValues;
use crate::error::{CoreError, Result};
use crate::layers::ConvEngine;
use candle_core::Device;

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
                let mut block =
                    BasicBlock::build(&mut b, &format!("layer{}.{i}", s + 1), cin, cout, st)?;
                if st != 1 || cin != cout {
                    block.shortcut = Shortcut::OptionA(cout / 4);
                }
                blocks.push(block);
                cin = cout;
            }
        }
        let linear = b.linear("linear", 64, spec.classes)?;
        Ok(Box::new(ResidualNet {
            conv1,
            bn1,
            blocks,
            linear,
            params: b.store,
        }))
    }
}
