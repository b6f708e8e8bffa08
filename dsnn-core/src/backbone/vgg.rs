//! VGG11 and VGG19 with batch norm in their CIFAR form (kuangliu's
//! `pytorch-cifar`, which DeepShift's CIFAR code uses): 3x3 convolutions
//! with bias, batch norm and ReLU, 2x2 max pooling, one linear classifier.

use super::{collect_shift, geometry, net_builder, Backbone, InputShape, ModelSpec, Network};
use crate::arch::ArchValues;
use crate::error::{CoreError, Result};
use crate::layers::{BatchNorm2d, Conv2dLayer, ConvEngine, Forward, LinearLayer};
use crate::nn;
use crate::params::ParamStore;
use candle_core::{Device, Tensor};

/// One entry of a VGG configuration: a convolution of this many channels,
/// or 2x2 max pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Conv(usize),
    Pool,
}

use Item::{Conv as C, Pool as M};

const VGG11: &[Item] = &[
    C(64),
    M,
    C(128),
    M,
    C(256),
    C(256),
    M,
    C(512),
    C(512),
    M,
    C(512),
    C(512),
    M,
];

const VGG19: &[Item] = &[
    C(64),
    C(64),
    M,
    C(128),
    C(128),
    M,
    C(256),
    C(256),
    C(256),
    C(256),
    M,
    C(512),
    C(512),
    C(512),
    C(512),
    M,
    C(512),
    C(512),
    C(512),
    C(512),
    M,
];

/// VGG with batch norm for CIFAR (`VGG11` or `VGG19` of kuangliu's
/// `pytorch-cifar`): the convolutions `features.{i}` (with bias), each
/// followed by batch norm `features.{i+1}` and ReLU, the pools between
/// them, and the classifier `Linear(512, classes)`.
///
/// The reference flattens the 1x1 map a 32x32 image leaves; dsnn pools it
/// globally (the same at 32x32) and leaves out a max pooling that would
/// shrink a 1-pixel map, so 28x28 grey images (whose map is 1x1 after
/// four poolings) work too.
#[derive(Debug, Clone, Copy)]
pub struct Vgg {
    depth: usize,
}

impl Vgg {
    /// VGG11 with batch norm.
    pub const VGG11: Vgg = Vgg { depth: 11 };
    /// VGG19 with batch norm.
    pub const VGG19: Vgg = Vgg { depth: 19 };

    fn config(&self) -> &'static [Item] {
        if self.depth == 11 {
            VGG11
        } else {
            VGG19
        }
    }

    /// `(module index, channels)` of each convolution, as the reference's
    /// `features` sequence numbers them (conv, bn, relu per convolution; one
    /// index per pool).
    fn convs(&self) -> Vec<(usize, usize)> {
        let mut idx = 0;
        let mut out = Vec::new();
        for item in self.config() {
            match item {
                Item::Conv(c) => {
                    out.push((idx, *c));
                    idx += 3;
                }
                Item::Pool => idx += 1,
            }
        }
        out
    }
}

impl Backbone for Vgg {
    fn name(&self) -> &str {
        if self.depth == 11 {
            "vgg11"
        } else {
            "vgg19"
        }
    }

    fn description(&self) -> String {
        format!(
            "VGG{} with batch norm (CIFAR variant): {} 3x3 convolutions, 5 max poolings, one linear layer",
            self.depth,
            self.depth - 3
        )
    }

    fn conv_layers(&self, _arch: &ArchValues) -> Vec<String> {
        self.convs()
            .into_iter()
            .map(|(i, _)| format!("features.{i}"))
            .collect()
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
        let InputShape {
            channels,
            height,
            width,
        } = spec.input;
        if height == 0 || width == 0 {
            return Err(CoreError::config("backbone", "images must not be empty"));
        }
        let mut b = net_builder(spec, &self.conv_layers(&spec.arch), device, engine)?;
        let mut stages = Vec::new();
        let (mut cin, mut h, mut w) = (channels, height, width);
        let mut idx = 0;
        for item in self.config() {
            match *item {
                Item::Conv(cout) => {
                    let conv = b.conv2d(
                        &format!("features.{idx}"),
                        cin,
                        cout,
                        3,
                        geometry(1, 1),
                        true,
                    )?;
                    let bn = b.batch_norm(&format!("features.{}", idx + 1), cout)?;
                    stages.push(Stage::Conv(conv, bn));
                    cin = cout;
                    idx += 3;
                }
                Item::Pool => {
                    if h >= 2 && w >= 2 {
                        stages.push(Stage::Pool(format!("features.{idx}")));
                        h /= 2;
                        w /= 2;
                    }
                    idx += 1;
                }
            }
        }
        let classifier = b.linear("classifier", cin, spec.classes)?;
        Ok(Box::new(VggNet {
            stages,
            classifier,
            params: b.store,
        }))
    }
}

enum Stage {
    Conv(Conv2dLayer, BatchNorm2d),
    Pool(String),
}

struct VggNet {
    stages: Vec<Stage>,
    classifier: LinearLayer,
    params: ParamStore,
}

impl Network for VggNet {
    fn forward(&self, x: &Tensor, ctx: Forward) -> Result<Tensor> {
        let mut x = x.clone();
        for stage in &self.stages {
            x = match stage {
                Stage::Conv(conv, bn) => {
                    let y = bn.forward_relu(&conv.forward_with(&x, ctx)?, ctx)?;
                    ctx.record_elementwise(&format!("{}.relu", conv.name()), &y);
                    y
                }
                Stage::Pool(name) => nn::max_pool2(&x, name, ctx)?,
            };
        }
        let pooled = nn::global_avg_pool(&x, "avgpool", ctx)?;
        self.classifier.forward_with(&pooled, ctx)
    }

    fn params(&self) -> &ParamStore {
        &self.params
    }

    fn shift_layers(&self) -> Vec<String> {
        let convs: Vec<&Conv2dLayer> = self
            .stages
            .iter()
            .filter_map(|s| match s {
                Stage::Conv(c, _) => Some(c),
                Stage::Pool(_) => None,
            })
            .collect();
        collect_shift(&convs, &[&self.classifier])
    }
}
