//! ResNet18 in its CIFAR form (a 3x3 stem without max pooling, as the
//! CIFAR code DeepShift trains: kuangliu's `pytorch-cifar`).

use super::residual::{BasicBlock, ResidualNet, Shortcut};
use super::{geometry, net_builder, Backbone, InputShape, ModelSpec, Network};
use crate::arch::ArchValues;
use crate::error::Result;
use crate::layers::ConvEngine;
use candle_core::Device;

/// Channels and stride of the four stages (two blocks each).
const STAGES: [(usize, usize); 4] = [(64, 1), (128, 2), (256, 2), (512, 2)];
const BLOCKS_PER_STAGE: usize = 2;

/// ResNet18 for CIFAR: a 3x3 convolution of 64 channels (stride 1, no max
/// pooling), four stages of two basic blocks (64, 128, 256, 512 channels;
/// strides 1, 2, 2, 2) whose shortcut is a 1x1 convolution with batch norm
/// where the shape changes, global average pooling and a linear classifier.
/// 20 convolutions (3 of them shortcuts) and one linear layer.
///
/// The reference pools with a fixed 4x4 average (the map of a 32x32 image);
/// dsnn pools globally, which is the same at 32x32 and lets other sizes
/// (28x28 grey, 64x64) through.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResNet18;

/// Whether block `i` of stage `s` (0-based) has a projection shortcut.
fn has_projection(s: usize, i: usize) -> bool {
    i == 0 && s > 0
}

impl Backbone for ResNet18 {
    fn name(&self) -> &str {
        "resnet18"
    }

    fn description(&self) -> String {
        "ResNet18 (CIFAR variant): 3x3 stem, 8 basic blocks, 1x1-convolution shortcuts".into()
    }

    fn conv_layers(&self, _arch: &ArchValues) -> Vec<String> {
        // Registration order, as DeepShift's `convert_to_shift` counts them.
        let mut names = vec!["conv1".to_string()];
        for s in 0..STAGES.len() {
            for i in 0..BLOCKS_PER_STAGE {
                let p = format!("layer{}.{i}", s + 1);
                names.push(format!("{p}.conv1"));
                names.push(format!("{p}.conv2"));
                if has_projection(s, i) {
                    names.push(format!("{p}.shortcut.0"));
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
        let conv1 = b.conv2d("conv1", spec.input.channels, 64, 3, geometry(1, 1), false)?;
        let bn1 = b.batch_norm("bn1", 64)?;
        let mut blocks = Vec::new();
        let mut cin = 64;
        for (s, &(cout, stride)) in STAGES.iter().enumerate() {
            for i in 0..BLOCKS_PER_STAGE {
                let st = if i == 0 { stride } else { 1 };
                let p = format!("layer{}.{i}", s + 1);
                let mut block = BasicBlock::build(&mut b, &p, cin, cout, st)?;
                if has_projection(s, i) {
                    block.shortcut = Shortcut::Projection(
                        b.conv2d(
                            &format!("{p}.shortcut.0"),
                            cin,
                            cout,
                            1,
                            geometry(st, 0),
                            false,
                        )?,
                        b.batch_norm(&format!("{p}.shortcut.1"), cout)?,
                    );
                }
                blocks.push(block);
                cin = cout;
            }
        }
        let linear = b.linear("linear", cin, spec.classes)?;
        Ok(Box::new(ResidualNet {
            conv1,
            bn1,
            blocks,
            linear,
            params: b.store,
        }))
    }
}
