//! The residual network both ResNet families share: a 3x3 stem with batch
//! norm and ReLU, basic blocks, global average pooling and a linear
//! classifier. The families differ only in their shortcuts.

use super::{collect_shift, geometry, Network};
use crate::error::Result;
use crate::layers::{BatchNorm2d, Conv2dLayer, Forward, LinearLayer, NetBuilder};
use crate::nn;
use crate::params::ParamStore;
use candle_core::Tensor;

/// How a basic block's input reaches its addition.
pub(super) enum Shortcut {
    /// Unchanged.
    Identity,
    /// Option A (CIFAR ResNets): subsample by 2 and zero-pad this many
    /// channels on each side.
    OptionA(usize),
    /// A 1x1 convolution with batch norm (ResNet18), a convertible layer.
    Projection(Conv2dLayer, BatchNorm2d),
}

/// Two 3x3 convolutions with batch norm, and a shortcut.
pub(super) struct BasicBlock {
    name: String,
    conv1: Conv2dLayer,
    bn1: BatchNorm2d,
    conv2: Conv2dLayer,
    bn2: BatchNorm2d,
    /// Set by the caller after `build` (registered after the block's own
    /// layers, as the references register it).
    pub shortcut: Shortcut,
}

impl BasicBlock {
    /// Registers `{name}.conv1`, `.bn1`, `.conv2` and `.bn2` (the first
    /// convolution with `stride`), with an identity shortcut.
    pub fn build(
        b: &mut NetBuilder,
        name: &str,
        cin: usize,
        cout: usize,
        stride: usize,
    ) -> Result<Self> {
        Ok(BasicBlock {
            name: name.to_string(),
            conv1: b.conv2d(
                &format!("{name}.conv1"),
                cin,
                cout,
                3,
                geometry(stride, 1),
                false,
            )?,
            bn1: b.batch_norm(&format!("{name}.bn1"), cout)?,
            conv2: b.conv2d(
                &format!("{name}.conv2"),
                cout,
                cout,
                3,
                geometry(1, 1),
                false,
            )?,
            bn2: b.batch_norm(&format!("{name}.bn2"), cout)?,
            shortcut: Shortcut::Identity,
        })
    }

    fn forward(&self, x: &Tensor, ctx: Forward) -> Result<Tensor> {
        let out = self
            .bn1
            .forward_relu(&self.conv1.forward_with(x, ctx)?, ctx)?;
        ctx.record_elementwise(&format!("{}.relu1", self.name), &out);
        let out = self.conv2.forward_with(&out, ctx)?;
        let short = || -> Result<Tensor> {
            Ok(match &self.shortcut {
                Shortcut::Identity => x.clone(),
                Shortcut::OptionA(pad) => nn::shortcut_option_a(x, *pad, ctx)?,
                Shortcut::Projection(conv, bn) => {
                    bn.forward_with(&conv.forward_with(x, ctx)?, ctx)?
                }
            })
        };
        nn::batch_norm_add_relu(&self.bn2, &out, short, &self.name, ctx)
    }
}

/// Stem, blocks, global average pooling and the classifier.
pub(super) struct ResidualNet {
    pub conv1: Conv2dLayer,
    pub bn1: BatchNorm2d,
    pub blocks: Vec<BasicBlock>,
    pub linear: LinearLayer,
    pub params: ParamStore,
}

impl Network for ResidualNet {
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
            if let Shortcut::Projection(c, _) = &b.shortcut {
                convs.push(c);
            }
        }
        collect_shift(&convs, &[&self.linear])
    }
}
