//! A VGG-style backbone whose width and depth are hyperparameters: blocks
//! of a 3x3 convolution, batch norm, ReLU and 2x2 max pooling (the first
//! block `width` channels, each next one twice as many), then a hidden
//! linear layer with ReLU and the classifier.
//!
//! Built only from dsnn-core's layers and `dsnn_core::nn`, so dsnn records
//! its dataflow: it trains, searches, reports op-count energy and exports to
//! the integer engine without code of its own for any of that.

use candle_core::{Device, Tensor};
use dsnn_core::backbone::net_builder;
use dsnn_core::conv::ConvGeometry;
use dsnn_core::layers::{BatchNorm2d, Conv2dLayer, ConvEngine, LinearLayer};
use dsnn_core::params::ParamStore;
use dsnn_core::{
    nn, ArchParam, ArchValues, Backbone, CoreError, Forward, InputShape, ModelSpec, Network, Result,
};

/// The backbone (`vgg` in experiment files).
#[derive(Debug, Clone, Copy, Default)]
pub struct Vgg;

impl Vgg {
    /// Channels of the first block (`width`) and the number of blocks.
    fn shape(arch: &ArchValues) -> (usize, usize) {
        let get = |name: &str, default: i64| {
            arch.get(name)
                .and_then(|v| v.as_int())
                .unwrap_or(default)
                .max(1) as usize
        };
        (get("width", 16), get("blocks", 2))
    }
}

impl Backbone for Vgg {
    fn name(&self) -> &str {
        "vgg"
    }

    fn description(&self) -> String {
        "VGG-style blocks of 3x3 conv + batch norm + ReLU + max pooling, width doubling per block"
            .into()
    }

    fn hyperparameters(&self) -> Vec<ArchParam> {
        vec![
            ArchParam::int("width", "channels of the first block", 16, 4, 64),
            ArchParam::int(
                "blocks",
                "convolution blocks (each halves the image)",
                2,
                1,
                3,
            ),
        ]
    }

    fn conv_layers(&self, arch: &ArchValues) -> Vec<String> {
        let (_, blocks) = Self::shape(arch);
        (1..=blocks).map(|i| format!("block{i}.conv")).collect()
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
        let (width, blocks) = Self::shape(&spec.arch);
        let (mut h, mut w) = (spec.input.height, spec.input.width);
        if h >> blocks == 0 || w >> blocks == 0 {
            return Err(CoreError::config(
                "blocks",
                format!(
                    "{blocks} blocks halve {h}x{w} images to nothing (at most {} for these images)",
                    (h.min(w) as f64).log2().floor()
                ),
            ));
        }
        let mut b = net_builder(spec, &self.conv_layers(&spec.arch), device, engine)?;
        let mut convs = Vec::new();
        let mut norms = Vec::new();
        let mut cin = spec.input.channels;
        for i in 1..=blocks {
            let cout = width << (i - 1);
            let geometry = ConvGeometry {
                stride: 1,
                padding: 1,
            };
            convs.push(b.conv2d(&format!("block{i}.conv"), cin, cout, 3, geometry, false)?);
            norms.push(b.batch_norm(&format!("block{i}.bn"), cout)?);
            cin = cout;
            h /= 2;
            w /= 2;
        }
        let hidden = 64;
        let fc1 = b.linear("fc1", cin * h * w, hidden)?;
        let fc2 = b.linear("fc2", hidden, spec.classes)?;
        Ok(Box::new(VggNet {
            convs,
            norms,
            fc1,
            fc2,
            params: b.store,
        }))
    }
}

struct VggNet {
    convs: Vec<Conv2dLayer>,
    norms: Vec<BatchNorm2d>,
    fc1: LinearLayer,
    fc2: LinearLayer,
    params: ParamStore,
}

impl Network for VggNet {
    fn forward(&self, x: &Tensor, ctx: Forward) -> Result<Tensor> {
        let mut x = x.clone();
        for (i, (conv, bn)) in self.convs.iter().zip(&self.norms).enumerate() {
            let y = bn.forward_relu(&conv.forward_with(&x, ctx)?, ctx)?;
            x = nn::max_pool2(&y, &format!("block{}.pool", i + 1), ctx)?;
        }
        let x = nn::flatten(&x, ctx)?;
        let x = nn::relu(&self.fc1.forward_with(&x, ctx)?, "fc1.relu", ctx)?;
        self.fc2.forward_with(&x, ctx)
    }

    fn params(&self) -> &ParamStore {
        &self.params
    }

    fn shift_layers(&self) -> Vec<String> {
        let convs = self.convs.iter().filter(|c| c.is_shift()).map(|c| c.name());
        let linears = [&self.fc1, &self.fc2]
            .into_iter()
            .filter(|l| l.is_shift())
            .map(|l| l.name());
        convs.chain(linears).map(str::to_string).collect()
    }
}
