//! MobileNetV2 in its CIFAR form (kuangliu's `pytorch-cifar`, which
//! DeepShift's CIFAR code trains): inverted residual blocks of a 1x1
//! expansion, a 3x3 depthwise convolution and a 1x1 linear projection.

use super::{collect_shift, geometry, net_builder, Backbone, InputShape, ModelSpec, Network};
use crate::arch::ArchValues;
use crate::error::Result;
use crate::layers::{BatchNorm2d, Conv2dLayer, ConvEngine, Forward, LinearLayer};
use crate::nn;
use crate::params::ParamStore;
use candle_core::{Device, Tensor};

/// `(expansion, output channels, blocks, stride of the first block)`; the
/// second row has stride 1 in the CIFAR variant (2 on ImageNet).
const CONFIG: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// MobileNetV2 for CIFAR: a 3x3 convolution of 32 channels (stride 1), 17
/// inverted residual blocks, a 1x1 convolution to 1280 channels, global
/// average pooling and a linear classifier; batch norm after every
/// convolution, ReLU after all but each block's projection. Stride-1 blocks
/// add their input (through a 1x1 convolution with batch norm where the
/// channels change). 57 convolutions (17 depthwise, 4 shortcuts) and one
/// linear layer.
///
/// The reference pools with a fixed 4x4 average (the map of a 32x32
/// image); dsnn pools globally, the same at 32x32.
#[derive(Debug, Clone, Copy, Default)]
pub struct MobileNetV2;

/// Each block's `(input channels, output channels, expansion, stride)`.
fn blocks() -> Vec<(usize, usize, usize, usize)> {
    let mut out = Vec::new();
    let mut cin = 32;
    for (expansion, cout, n, stride) in CONFIG {
        for i in 0..n {
            out.push((cin, cout, expansion, if i == 0 { stride } else { 1 }));
            cin = cout;
        }
    }
    out
}

impl Backbone for MobileNetV2 {
    fn name(&self) -> &str {
        "mobilenetv2"
    }

    fn description(&self) -> String {
        "MobileNetV2 (CIFAR variant): 17 inverted residual blocks with depthwise convolutions"
            .into()
    }

    fn conv_layers(&self, _arch: &ArchValues) -> Vec<String> {
        let mut names = vec!["conv1".to_string()];
        for (i, (cin, cout, _, stride)) in blocks().into_iter().enumerate() {
            for c in ["conv1", "conv2", "conv3"] {
                names.push(format!("layers.{i}.{c}"));
            }
            if stride == 1 && cin != cout {
                names.push(format!("layers.{i}.shortcut.0"));
            }
        }
        names.push("conv2".into());
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
        let conv1 = b.conv2d("conv1", spec.input.channels, 32, 3, geometry(1, 1), false)?;
        let bn1 = b.batch_norm("bn1", 32)?;
        let mut layers = Vec::new();
        for (i, (cin, cout, expansion, stride)) in blocks().into_iter().enumerate() {
            let p = format!("layers.{i}");
            let planes = expansion * cin;
            let g = geometry(1, 0);
            let expand = b.conv2d(&format!("{p}.conv1"), cin, planes, 1, g, false)?;
            let bn_expand = b.batch_norm(&format!("{p}.bn1"), planes)?;
            let depthwise = b.conv2d_grouped(
                &format!("{p}.conv2"),
                planes,
                planes,
                3,
                geometry(stride, 1),
                planes,
                false,
            )?;
            let bn_depthwise = b.batch_norm(&format!("{p}.bn2"), planes)?;
            let project = b.conv2d(&format!("{p}.conv3"), planes, cout, 1, g, false)?;
            let bn_project = b.batch_norm(&format!("{p}.bn3"), cout)?;
            let shortcut = match (stride, cin == cout) {
                (1, true) => Shortcut::Identity,
                (1, false) => Shortcut::Projection(
                    b.conv2d(&format!("{p}.shortcut.0"), cin, cout, 1, g, false)?,
                    b.batch_norm(&format!("{p}.shortcut.1"), cout)?,
                ),
                _ => Shortcut::None,
            };
            layers.push(Block {
                name: p,
                expand: (expand, bn_expand),
                depthwise: (depthwise, bn_depthwise),
                project: (project, bn_project),
                shortcut,
            });
        }
        let conv2 = b.conv2d("conv2", 320, 1280, 1, geometry(1, 0), false)?;
        let bn2 = b.batch_norm("bn2", 1280)?;
        let linear = b.linear("linear", 1280, spec.classes)?;
        Ok(Box::new(MobileNetV2Net {
            conv1,
            bn1,
            layers,
            conv2,
            bn2,
            linear,
            params: b.store,
        }))
    }
}

enum Shortcut {
    /// A strided block: no residual.
    None,
    Identity,
    /// A 1x1 convolution with batch norm where the channels change.
    Projection(Conv2dLayer, BatchNorm2d),
}

struct Block {
    name: String,
    expand: (Conv2dLayer, BatchNorm2d),
    depthwise: (Conv2dLayer, BatchNorm2d),
    project: (Conv2dLayer, BatchNorm2d),
    shortcut: Shortcut,
}

/// Convolution, batch norm and ReLU.
fn conv_bn_relu(layer: &(Conv2dLayer, BatchNorm2d), x: &Tensor, ctx: Forward) -> Result<Tensor> {
    let y = layer.1.forward_relu(&layer.0.forward_with(x, ctx)?, ctx)?;
    ctx.record_elementwise(&format!("{}.relu", layer.0.name()), &y);
    Ok(y)
}

impl Block {
    fn forward(&self, x: &Tensor, ctx: Forward) -> Result<Tensor> {
        let out = conv_bn_relu(&self.expand, x, ctx)?;
        let out = conv_bn_relu(&self.depthwise, &out, ctx)?;
        let (conv, bn) = &self.project;
        let out = bn.forward_with(&conv.forward_with(&out, ctx)?, ctx)?;
        match &self.shortcut {
            Shortcut::None => Ok(out),
            Shortcut::Identity => nn::add(&out, x, &self.name, ctx),
            Shortcut::Projection(conv, bn) => {
                let short = bn.forward_with(&conv.forward_with(x, ctx)?, ctx)?;
                nn::add(&out, &short, &self.name, ctx)
            }
        }
    }
}

struct MobileNetV2Net {
    conv1: Conv2dLayer,
    bn1: BatchNorm2d,
    layers: Vec<Block>,
    conv2: Conv2dLayer,
    bn2: BatchNorm2d,
    linear: LinearLayer,
    params: ParamStore,
}

impl Network for MobileNetV2Net {
    fn forward(&self, x: &Tensor, ctx: Forward) -> Result<Tensor> {
        let mut out = self
            .bn1
            .forward_relu(&self.conv1.forward_with(x, ctx)?, ctx)?;
        ctx.record_elementwise("relu1", &out);
        for block in &self.layers {
            out = block.forward(&out, ctx)?;
        }
        let out = self
            .bn2
            .forward_relu(&self.conv2.forward_with(&out, ctx)?, ctx)?;
        ctx.record_elementwise("relu2", &out);
        let pooled = nn::global_avg_pool(&out, "avgpool", ctx)?;
        self.linear.forward_with(&pooled, ctx)
    }

    fn params(&self) -> &ParamStore {
        &self.params
    }

    fn shift_layers(&self) -> Vec<String> {
        let mut convs = vec![&self.conv1];
        for b in &self.layers {
            convs.extend([&b.expand.0, &b.depthwise.0, &b.project.0]);
            if let Shortcut::Projection(c, _) = &b.shortcut {
                convs.push(c);
            }
        }
        convs.push(&self.conv2);
        collect_shift(&convs, &[&self.linear])
    }
}
