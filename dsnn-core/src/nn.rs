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
use crate::layers::Forward;
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
    let (n, c, h, w) = x.dims4()?;
    let sub = x
        .reshape((n, c, h / 2, 2, w / 2, 2))?
        .narrow(3, 0, 1)?
        .narrow(5, 0, 1)?
        .reshape((n, c, h / 2, w / 2))?;
    let y = sub.pad_with_zeros(1, pad, pad)?;
    ctx.record_op(|| NetOp::ShortcutOptionA {
        input: x.id(),
        output: y.id(),
        pad,
    });
    Ok(y)
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
