//! Functional layers that record themselves: the element-wise and shape
//! operations a backbone's `forward` calls between its shift layers.
//!
//! Each one traces its per-image work for the op profile and, when
//! recording, its [`NetOp`] for export (see [`crate::graph`]), so a network
//! written with them gets an op profile and an integer export for free.
//! Plain candle operations work in training too, but make the network
//! unexportable (the exporter names the layer that reads their result).

use crate::error::Result;
use crate::graph::NetOp;
use crate::layers::{BatchNorm2d, Forward};
use crate::pool::PoolWindow;
use candle_core::{Tensor, D};

/// `max(x, 0)`.
pub fn relu(x: &Tensor, name: &str, ctx: Forward) -> Result<Tensor> {
    ctx.record_elementwise(name, x);
    let y = crate::ops::relu(x)?;
    ctx.record_op(|| NetOp::Relu {
        input: x.id(),
        output: y.id(),
    });
    Ok(y)
}

/// 2x2 max pooling with stride 2 (odd edges dropped, as PyTorch).
pub fn max_pool2(x: &Tensor, name: &str, ctx: Forward) -> Result<Tensor> {
    ctx.record_elementwise(name, x);
    let y = crate::ops::max_pool2x2(x)?;
    ctx.record_op(|| NetOp::MaxPool2 {
        input: x.id(),
        output: y.id(),
    });
    Ok(y)
}

/// `N x C x H x W` to `N x (C H W)`, for a linear layer after convolutions.
pub fn flatten(x: &Tensor, ctx: Forward) -> Result<Tensor> {
    let y = x.flatten_from(1)?;
    ctx.record_op(|| NetOp::Flatten {
        input: x.id(),
        output: y.id(),
    });
    Ok(y)
}

/// The mean over height and width: `N x C x H x W` to `N x C`.
pub fn global_avg_pool(x: &Tensor, name: &str, ctx: Forward) -> Result<Tensor> {
    ctx.record_elementwise(name, x);
    let y = x.mean(D::Minus1)?.mean(D::Minus1)?;
    ctx.record_op(|| NetOp::GlobalAvgPool {
        input: x.id(),
        output: y.id(),
    });
    Ok(y)
}

/// ResNet's option-A shortcut (He et al. 2016, as DeepShift's CIFAR
/// ResNets): `x[:, :, ::2, ::2]` with `pad` channels of zeros on each side.
/// Heights and widths must be even.
pub fn shortcut_option_a(x: &Tensor, pad: usize, ctx: Forward) -> Result<Tensor> {
    let y = if x.device().is_cpu() {
        // One pass each way (the composition below makes about ten in backward).
        crate::ops::shortcut_option_a(x, pad)?
    } else {
        shortcut_option_a_composed(x, pad)?
    };
    ctx.record_op(|| NetOp::ShortcutOptionA {
        input: x.id(),
        output: y.id(),
        pad,
    });
    Ok(y)
}

/// [`shortcut_option_a`] from candle's reshape, narrows and zero padding
/// (any device).
fn shortcut_option_a_composed(x: &Tensor, pad: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let sub = x
        .reshape((n, c, h / 2, 2, w / 2, 2))?
        .narrow(3, 0, 1)?
        .narrow(5, 0, 1)?
        .reshape((n, c, h / 2, w / 2))?;
    Ok(sub.pad_with_zeros(1, pad, pad)?)
}

/// `max(main + shortcut, 0)`, fused: the end of a residual block.
pub fn add_relu(main: &Tensor, shortcut: &Tensor, name: &str, ctx: Forward) -> Result<Tensor> {
    ctx.record_elementwise(&format!("{name}.add"), main);
    ctx.record_elementwise(&format!("{name}.relu"), main);
    let y = crate::ops::add_relu(main, shortcut)?;
    ctx.record_op(|| NetOp::AddRelu {
        main: main.id(),
        shortcut: shortcut.id(),
        output: y.id(),
    });
    Ok(y)
}

/// The end of a residual block: `max(bn(x) + shortcut, 0)`, with
/// `shortcut()` computing the block's shortcut. In CPU training without
/// tracing or graph recording it is one fused op (no batch-norm output
/// tensor, one gradient node instead of two; see
/// [`crate::batchnorm::BatchNormAddRelu`]); otherwise, and on other devices,
/// batch norm then [`add_relu`], in the same order as written out by hand
/// (batch norm first, then the shortcut).
pub fn batch_norm_add_relu(
    bn: &BatchNorm2d,
    x: &Tensor,
    shortcut: impl FnOnce() -> Result<Tensor>,
    name: &str,
    ctx: Forward,
) -> Result<Tensor> {
    if ctx.train && ctx.trace.is_none() && ctx.graph.is_none() && x.device().is_cpu() {
        let short = shortcut()?;
        if short.device().is_cpu() && short.dims() == x.dims() {
            return bn.forward_train_add_relu(x, &short, ctx);
        }
        return add_relu(&bn.forward_with(x, ctx)?, &short, name, ctx);
    }
    let main = bn.forward_with(x, ctx)?;
    add_relu(&main, &shortcut()?, name, ctx)
}

/// Max pooling with any square window, stride and padding (padding counts
/// as minus infinity, as in PyTorch): GoogLeNet's 3x3 poolings. The 2x2
/// stride-2 case is [`max_pool2`], which the integer engine runs.
pub fn max_pool(x: &Tensor, window: PoolWindow, name: &str, ctx: Forward) -> Result<Tensor> {
    let y = crate::pool::max_pool(x, window)?;
    if ctx.trace.is_some() {
        // One comparison per window element.
        ctx.record(dsnn_energy::LayerOps {
            name: name.to_string(),
            kind: dsnn_energy::LayerKind::Elementwise,
            macs: (y.elem_count() / y.dim(0)?.max(1) * window.kernel * window.kernel) as u64,
            shift: false,
            weight_bits: 32,
            activation_bits: 32,
            params: 0,
        });
    }
    ctx.record_op(|| NetOp::MaxPool {
        name: name.to_string(),
        input: x.id(),
        output: y.id(),
        kernel: window.kernel,
        stride: window.stride,
        padding: window.padding,
    });
    Ok(y)
}

/// Concatenates `xs` (`N x C_i x H x W`) along the channels: the end of
/// GoogLeNet's inception module.
pub fn concat(xs: &[Tensor], name: &str, ctx: Forward) -> Result<Tensor> {
    let y = Tensor::cat(xs, 1)?;
    ctx.record_op(|| NetOp::Concat {
        name: name.to_string(),
        inputs: xs.iter().map(|x| x.id()).collect(),
        output: y.id(),
    });
    Ok(y)
}

/// `main + shortcut` without a ReLU: the end of MobileNetV2's inverted
/// residual block.
pub fn add(main: &Tensor, shortcut: &Tensor, name: &str, ctx: Forward) -> Result<Tensor> {
    ctx.record_elementwise(&format!("{name}.add"), main);
    let y = (main + shortcut)?;
    ctx.record_op(|| NetOp::Add {
        name: name.to_string(),
        main: main.id(),
        shortcut: shortcut.id(),
        output: y.id(),
    });
    Ok(y)
}
