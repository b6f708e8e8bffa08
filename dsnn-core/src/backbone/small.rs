//! The small networks for grey digits: DeepShift's LeNet-style MNIST network
//! and a CNN for the 8x8 UCI digits.

use super::{collect_shift, geometry, net_builder, Backbone, InputShape, ModelSpec, Network};
use crate::arch::ArchValues;
use crate::error::{CoreError, Result};
use crate::layers::{Conv2dLayer, ConvEngine, Forward, LinearLayer};
use crate::nn;
use crate::params::ParamStore;
use candle_core::{Device, Tensor};

// ------------------------------------------------------------------ LeNet5 --

/// DeepShift's LeNet-style MNIST network (`ConvMNIST`): 5x5 convolutions of
/// 20 and 50 channels, each followed by ReLU and 2x2 max pooling, then fully
/// connected layers of 500 units and the classifier. For 28x28 grey images.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeNet5;

impl Backbone for LeNet5 {
    fn name(&self) -> &str {
        "lenet5"
    }

    fn description(&self) -> String {
        "DeepShift's LeNet-style MNIST network: two 5x5 convolutions, two linear layers".into()
    }

    fn conv_layers(&self, _arch: &ArchValues) -> Vec<String> {
        vec!["conv1".into(), "conv2".into()]
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
        let InputShape {
            channels,
            height,
            width,
        } = spec.input;
        let after = |s: usize| (s.saturating_sub(4) / 2).saturating_sub(4) / 2;
        let (fh, fw) = (after(height), after(width));
        if fh == 0 || fw == 0 {
            return Err(CoreError::config(
                "backbone",
                format!("lenet5 needs images of at least 16x16, got {height}x{width}"),
            ));
        }
        let mut b = net_builder(spec, &self.conv_layers(&spec.arch), device, engine)?;
        Ok(Box::new(TwoConvNet {
            conv1: b.conv2d("conv1", channels, 20, 5, geometry(1, 0), true)?,
            conv2: b.conv2d("conv2", 20, 50, 5, geometry(1, 0), true)?,
            fc1: b.linear("fc1", 50 * fh * fw, 500)?,
            fc2: b.linear("fc2", 500, spec.classes)?,
            pool_after_conv1: true,
            params: b.store,
        }))
    }
}

// -------------------------------------------------------------- DigitsCnn --

/// A small CNN for the 8x8 UCI digits: two 3x3 convolutions (16 and 32
/// channels, padding 1) with ReLU, 2x2 max pooling, a 64-unit hidden layer
/// and the classifier.
#[derive(Debug, Clone, Copy, Default)]
pub struct DigitsCnn;

impl Backbone for DigitsCnn {
    fn name(&self) -> &str {
        "digits_cnn"
    }

    fn description(&self) -> String {
        "a small CNN for the 8x8 digits: two 3x3 convolutions, two linear layers".into()
    }

    fn conv_layers(&self, _arch: &ArchValues) -> Vec<String> {
        vec!["conv1".into(), "conv2".into()]
    }

    fn default_input(&self) -> InputShape {
        InputShape {
            channels: 1,
            height: 8,
            width: 8,
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
        if height < 2 || width < 2 {
            return Err(CoreError::config(
                "backbone",
                "digits_cnn needs images of at least 2x2",
            ));
        }
        let mut b = net_builder(spec, &self.conv_layers(&spec.arch), device, engine)?;
        Ok(Box::new(TwoConvNet {
            conv1: b.conv2d("conv1", channels, 16, 3, geometry(1, 1), true)?,
            conv2: b.conv2d("conv2", 16, 32, 3, geometry(1, 1), true)?,
            fc1: b.linear("fc1", 32 * (height / 2) * (width / 2), 64)?,
            fc2: b.linear("fc2", 64, spec.classes)?,
            pool_after_conv1: false,
            params: b.store,
        }))
    }
}

/// LeNet-5 and the digits CNN: two convolutions with ReLU (and 2x2 max
/// pooling after the second, and after the first when `pool_after_conv1`),
/// then two fully connected layers.
struct TwoConvNet {
    conv1: Conv2dLayer,
    conv2: Conv2dLayer,
    fc1: LinearLayer,
    fc2: LinearLayer,
    pool_after_conv1: bool,
    params: ParamStore,
}

impl Network for TwoConvNet {
    fn forward(&self, x: &Tensor, ctx: Forward) -> Result<Tensor> {
        let mut x = nn::relu(&self.conv1.forward_with(x, ctx)?, "relu1", ctx)?;
        if self.pool_after_conv1 {
            x = nn::max_pool2(&x, "pool1", ctx)?;
        }
        let x = nn::max_pool2(
            &nn::relu(&self.conv2.forward_with(&x, ctx)?, "relu2", ctx)?,
            "pool2",
            ctx,
        )?;
        let x = nn::relu(
            &self.fc1.forward_with(&nn::flatten(&x, ctx)?, ctx)?,
            "relu3",
            ctx,
        )?;
        self.fc2.forward_with(&x, ctx)
    }

    fn params(&self) -> &ParamStore {
        &self.params
    }

    fn shift_layers(&self) -> Vec<String> {
        collect_shift(&[&self.conv1, &self.conv2], &[&self.fc1, &self.fc2])
    }
}
