//! GoogLeNet in its CIFAR form (kuangliu's `pytorch-cifar`, which
//! DeepShift's CIFAR and Caltech101 code uses): a 3x3 stem and nine
//! inception modules.

use super::{collect_shift, geometry, net_builder, Backbone, InputShape, ModelSpec, Network};
use crate::arch::ArchValues;
use crate::error::Result;
use crate::layers::{BatchNorm2d, Conv2dLayer, ConvEngine, Forward, LinearLayer, NetBuilder};
use crate::nn;
use crate::params::ParamStore;
use crate::pool::PoolWindow;
use candle_core::{Device, Tensor};

/// An inception module's name and `(1x1, 3x3 reduce, 3x3, 5x5 reduce,
/// "5x5", pool projection)` channels, or a 3x3 stride-2 max pooling (`None`).
/// The "5x5" branch is two 3x3 convolutions, as in the reference.
type Module = Option<(&'static str, [usize; 6])>;

const CONFIG: [Module; 11] = [
    Some(("a3", [64, 96, 128, 16, 32, 32])),
    Some(("b3", [128, 128, 192, 32, 96, 64])),
    None,
    Some(("a4", [192, 96, 208, 16, 48, 64])),
    Some(("b4", [160, 112, 224, 24, 64, 64])),
    Some(("c4", [128, 128, 256, 24, 64, 64])),
    Some(("d4", [112, 144, 288, 32, 64, 64])),
    Some(("e4", [256, 160, 320, 32, 128, 128])),
    None,
    Some(("a5", [256, 160, 320, 32, 128, 128])),
    Some(("b5", [384, 192, 384, 48, 128, 128])),
];

/// The module-relative names of an inception module's convolutions, in
/// registration order, with their batch norms.
const CONVS: [(&str, &str); 7] = [
    ("b1.0", "b1.1"),
    ("b2.0", "b2.1"),
    ("b2.3", "b2.4"),
    ("b3.0", "b3.1"),
    ("b3.3", "b3.4"),
    ("b3.6", "b3.7"),
    ("b4.1", "b4.2"),
];

/// GoogLeNet for CIFAR: a 3x3 convolution of 192 channels (with batch norm
/// and ReLU), inception modules a3 b3, 3x3 max pooling (stride 2), a4 to
/// e4, max pooling, a5 b5, global average pooling and a linear classifier.
/// Each inception module concatenates a 1x1 branch, a 1x1 + 3x3 branch,
/// a 1x1 + 3x3 + 3x3 branch and a 3x3 max pooling (stride 1) + 1x1 branch;
/// every convolution has a bias and is followed by batch norm and ReLU.
/// 64 convolutions and one linear layer.
///
/// The reference pools with a fixed 8x8 average (the map of a 32x32
/// image); dsnn pools globally, the same at 32x32.
#[derive(Debug, Clone, Copy, Default)]
pub struct GoogLeNet;

const POOL_STRIDE_2: PoolWindow = PoolWindow {
    kernel: 3,
    stride: 2,
    padding: 1,
};

const POOL_STRIDE_1: PoolWindow = PoolWindow {
    kernel: 3,
    stride: 1,
    padding: 1,
};

impl Backbone for GoogLeNet {
    fn name(&self) -> &str {
        "googlenet"
    }

    fn description(&self) -> String {
        "GoogLeNet (CIFAR variant): 3x3 stem, nine inception modules, 64 convolutions".into()
    }

    fn conv_layers(&self, _arch: &ArchValues) -> Vec<String> {
        let mut names = vec!["pre_layers.0".to_string()];
        for (module, _) in CONFIG.iter().flatten() {
            names.extend(CONVS.iter().map(|(c, _)| format!("{module}.{c}")));
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
        let stem = (
            b.conv2d(
                "pre_layers.0",
                spec.input.channels,
                192,
                3,
                geometry(1, 1),
                true,
            )?,
            b.batch_norm("pre_layers.1", 192)?,
        );
        let mut stages = Vec::new();
        let mut cin = 192;
        for (i, item) in CONFIG.iter().enumerate() {
            match item {
                None => stages.push(Stage::Pool(format!("maxpool{i}"))),
                Some((name, channels)) => {
                    let module = Inception::new(&mut b, name, cin, *channels)?;
                    cin = module.out_channels;
                    stages.push(Stage::Inception(Box::new(module)));
                }
            }
        }
        let linear = b.linear("linear", cin, spec.classes)?;
        Ok(Box::new(GoogLeNetNet {
            stem,
            stages,
            linear,
            params: b.store,
        }))
    }
}

/// A convolution with its batch norm (ReLU follows).
type ConvBn = (Conv2dLayer, BatchNorm2d);

struct Inception {
    name: String,
    /// The seven convolutions in [`CONVS`] order.
    convs: Vec<ConvBn>,
    out_channels: usize,
}

impl Inception {
    fn new(b: &mut NetBuilder, name: &str, cin: usize, c: [usize; 6]) -> Result<Self> {
        let [n1, n3red, n3, n5red, n5, pool] = c;
        // (input channels, output channels, kernel) in CONVS order.
        let shapes = [
            (cin, n1, 1),
            (cin, n3red, 1),
            (n3red, n3, 3),
            (cin, n5red, 1),
            (n5red, n5, 3),
            (n5, n5, 3),
            (cin, pool, 1),
        ];
        let mut convs = Vec::new();
        for ((conv, bn), (i, o, k)) in CONVS.iter().zip(shapes) {
            let g = geometry(1, k / 2);
            convs.push((
                b.conv2d(&format!("{name}.{conv}"), i, o, k, g, true)?,
                b.batch_norm(&format!("{name}.{bn}"), o)?,
            ));
        }
        Ok(Inception {
            name: name.to_string(),
            convs,
            out_channels: n1 + n3 + n5 + pool,
        })
    }

    fn forward(&self, x: &Tensor, ctx: Forward) -> Result<Tensor> {
        let c = &self.convs;
        let b1 = conv_bn_relu(&c[0], x, ctx)?;
        let b2 = conv_bn_relu(&c[2], &conv_bn_relu(&c[1], x, ctx)?, ctx)?;
        let b3 = conv_bn_relu(&c[3], x, ctx)?;
        let b3 = conv_bn_relu(&c[5], &conv_bn_relu(&c[4], &b3, ctx)?, ctx)?;
        let pooled = nn::max_pool(x, POOL_STRIDE_1, &format!("{}.b4.0", self.name), ctx)?;
        let b4 = conv_bn_relu(&c[6], &pooled, ctx)?;
        nn::concat(&[b1, b2, b3, b4], &self.name, ctx)
    }
}

fn conv_bn_relu(layer: &ConvBn, x: &Tensor, ctx: Forward) -> Result<Tensor> {
    let y = layer.1.forward_relu(&layer.0.forward_with(x, ctx)?, ctx)?;
    ctx.record_elementwise(&format!("{}.relu", layer.0.name()), &y);
    Ok(y)
}

enum Stage {
    Inception(Box<Inception>),
    Pool(String),
}

struct GoogLeNetNet {
    stem: ConvBn,
    stages: Vec<Stage>,
    linear: LinearLayer,
    params: ParamStore,
}

impl Network for GoogLeNetNet {
    fn forward(&self, x: &Tensor, ctx: Forward) -> Result<Tensor> {
        let mut out = conv_bn_relu(&self.stem, x, ctx)?;
        for stage in &self.stages {
            out = match stage {
                Stage::Inception(m) => m.forward(&out, ctx)?,
                Stage::Pool(name) => nn::max_pool(&out, POOL_STRIDE_2, name, ctx)?,
            };
        }
        let pooled = nn::global_avg_pool(&out, "avgpool", ctx)?;
        self.linear.forward_with(&pooled, ctx)
    }

    fn params(&self) -> &ParamStore {
        &self.params
    }

    fn shift_layers(&self) -> Vec<String> {
        let mut convs = vec![&self.stem.0];
        for stage in &self.stages {
            if let Stage::Inception(m) = stage {
                convs.extend(m.convs.iter().map(|(c, _)| c));
            }
        }
        collect_shift(&convs, &[&self.linear])
    }
}
