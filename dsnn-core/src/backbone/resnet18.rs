//! ResNet18 in its CIFAR form (a 3x3 stem without max pooling, as the
//! CIFAR code DeepShift trains: kuangliu's `pytorch-cifar`).

use super::{collect_shift, geometry, net_builder, Backbone, InputShape, ModelSpec, Network};
use crate::arch::ArchValues;
use crate::error::Result;
use crate::layers::{BatchNorm2d, Conv2dLayer, ConvEngine, Forward, LinearLayer};
use crate::nn;
use crate::params::ParamStore;
use candle_core::{Device, Tensor};

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
                let conv1 =
                    b.conv2d(&format!("{p}.conv1"), cin, cout, 3, geometry(st, 1), false)?;
                let bn1 = b.batch_norm(&format!("{p}.bn1"), cout)?;
                let conv2 =
                    b.conv2d(&format!("{p}.conv2"), cout, cout, 3, geometry(1, 1), false)?;
                let bn2 = b.batch_norm(&format!("{p}.bn2"), cout)?;
                let shortcut = if has_projection(s, i) {
                    Some((
                        b.conv2d(
                            &format!("{p}.shortcut.0"),
                            cin,
                            cout,
                            1,
                            geometry(st, 0),
                            false,
                        )?,
                        b.batch_norm(&format!("{p}.shortcut.1"), cout)?,
                    ))
                } else {
                    None
                };
                blocks.push(Block {
                    name: p,
                    conv1,
                    bn1,
                    conv2,
                    bn2,
                    shortcut,
                });
                cin = cout;
            }
        }
        let linear = b.linear("linear", cin, spec.classes)?;
        Ok(Box::new(ResNet18Net {
            conv1,
            bn1,
            blocks,
            linear,
            params: b.store,
        }))
    }
}

/// A basic block with an identity or projection (1x1 conv + batch norm) shortcut.
struct Block {
    name: String,
    conv1: Conv2dLayer,
    bn1: BatchNorm2d,
    conv2: Conv2dLayer,
    bn2: BatchNorm2d,
    shortcut: Option<(Conv2dLayer, BatchNorm2d)>,
}

impl Block {
    fn forward(&self, x: &Tensor, ctx: Forward) -> Result<Tensor> {
        let out = self
            .bn1
            .forward_relu(&self.conv1.forward_with(x, ctx)?, ctx)?;
        ctx.record_elementwise(&format!("{}.relu1", self.name), &out);
        let out = self
            .bn2
            .forward_with(&self.conv2.forward_with(&out, ctx)?, ctx)?;
        let short = match &self.shortcut {
            None => x.clone(),
            Some((conv, bn)) => bn.forward_with(&conv.forward_with(x, ctx)?, ctx)?,
        };
        nn::add_relu(&out, &short, &self.name, ctx)
    }
}

struct ResNet18Net {
    conv1: Conv2dLayer,
    bn1: BatchNorm2d,
    blocks: Vec<Block>,
    linear: LinearLayer,
    params: ParamStore,
}

impl Network for ResNet18Net {
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
            if let Some((c, _)) = &b.shortcut {
                convs.push(c);
            }
        }
        collect_shift(&convs, &[&self.linear])
    }
}
