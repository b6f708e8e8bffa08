//! Compiles the recorded dataflow of a trained network
//! ([`dsnn_core::graph::NetGraph`]) into the integer engine's straight-line
//! program of [`Step`]s, so that any backbone built from dsnn-core's layers
//! exports without export code of its own.
//!
//! The engine runs one activation at a time with a stack of saved
//! activations for residual blocks and branches. The compiler walks the
//! operations in the order they ran, keeping the tensor that is "current":
//! - a convolution (dense, grouped or depthwise), optionally followed by
//!   batch norm and a ReLU, becomes one [`Step::Conv`] (batch norm folded
//!   into its requantisation);
//! - a linear layer, optionally followed by a ReLU, becomes one
//!   [`Step::Linear`]; the one that produces the logits keeps them;
//! - max pooling ([`Step::MaxPool2`] for 2x2 stride 2, else
//!   [`Step::MaxPool`]) and global average pooling map to their steps, a
//!   flatten before a linear layer to nothing (the engine flattens);
//! - a tensor read twice (a residual block's or an inception module's
//!   input) is saved when it becomes current;
//! - a layer that reads the last saved tensor rather than the current one
//!   starts another branch of it: the current result is swapped onto the
//!   stack in its place ([`Step::SwapResidual`]; a ResNet18 projection
//!   shortcut, an inception module's next branch), and the saved tensor is
//!   saved again when a later branch reads it too;
//! - `max(main + shortcut, 0)` or `main + shortcut` with the saved tensor,
//!   or its option-A shortcut, becomes [`Step::AddResidual`];
//! - a concatenation of the saved branches (in the order they ran) and the
//!   current one becomes [`Step::Concat`].
//!
//! Anything else is refused with an error that names the layer.

use std::collections::HashMap;

use candle_core::TensorId;
use dsnn_core::graph::{NetGraph, NetOp};

use dsnn_core::backbone::record_graph;
use dsnn_core::{Network, Rounding};

use crate::error::{InferError, Result};
use crate::export::TrainedSpec;
use crate::format::ActFormat;
use crate::lower::Exporter;
use crate::model::{IntModel, Requant, Step};

impl IntModel {
    /// Exports a trained network (every convolution and linear layer must be
    /// a shift layer) into the integer model, compiling the dataflow its
    /// forward pass records (see the `compile` module and
    /// `docs/integer-inference.md`): any backbone built from dsnn-core's
    /// layers exports, not only the built-in ones.
    pub fn from_network(net: &dyn Network, spec: &TrainedSpec) -> Result<IntModel> {
        let settings = spec.model.shift.ok_or_else(|| {
            InferError::unsupported(
                "model",
                "a float network has no shift layers (export needs shift type Q or PS)",
            )
        })?;
        let act = ActFormat::new(
            settings.activation.integer_bits,
            settings.activation.fraction_bits,
        )?;
        if settings.rounding == Rounding::Stochastic {
            log::info!("stochastic rounding: exported weights use deterministic rounding");
        }
        let ex = Exporter::new(net, settings, act);
        let graph = record_graph(net, spec.model.input)?;
        let steps = compile(&graph, &ex)?;
        let input = spec.model.input;
        let classes = spec.model.classes;
        let model = IntModel {
            backbone: spec.backbone.clone(),
            shift_type: settings.shift_type,
            input,
            classes,
            act,
            weight_bits: settings.weight_bits,
            input_transform: spec.input_transform.clone(),
            steps,
        };
        model.validate()?;
        Ok(model)
    }
}

/// Where a tensor the program may read lives.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Held {
    /// On the residual stack (saved when it was current).
    Saved,
    /// The option-A shortcut of a saved tensor, with its padding.
    OptionA(TensorId, usize),
}

/// The steps computing `graph`'s logits from its input.
fn compile(graph: &NetGraph, ex: &Exporter) -> Result<Vec<Step>> {
    let mut readers: HashMap<TensorId, usize> = HashMap::new();
    for op in &graph.ops {
        for t in op.inputs() {
            *readers.entry(t).or_default() += 1;
        }
    }
    let reads = |t: TensorId| readers.get(&t).copied().unwrap_or(0);
    // Reads of each tensor still to come (a branch's input is saved again
    // while another branch will read it).
    let mut left = readers.clone();
    let mut steps = Vec::new();
    let mut held: HashMap<TensorId, Held> = HashMap::new();
    let mut stack: Vec<TensorId> = Vec::new();
    let mut cur = graph.input;
    // A tensor read by more than one operation must be saved for the later
    // readers before the first one replaces it.
    let become_current = |t: TensorId,
                          steps: &mut Vec<Step>,
                          stack: &mut Vec<TensorId>,
                          held: &mut HashMap<TensorId, Held>| {
        if reads(t) > 1 {
            steps.push(Step::SaveResidual);
            stack.push(t);
            held.insert(t, Held::Saved);
        }
        t
    };
    cur = become_current(cur, &mut steps, &mut stack, &mut held);

    let ops = &graph.ops;
    let mut i = 0;
    while i < ops.len() {
        let op = &ops[i];
        let next = ops.get(i + 1);
        for t in op.inputs() {
            if let Some(n) = left.get_mut(&t) {
                *n = n.saturating_sub(1);
            }
        }
        // A layer that reads the last saved tensor rather than the current
        // one starts another branch of it (an inception module's next
        // branch, a residual block's projection shortcut): the current
        // result is set aside in its place, and the saved tensor saved
        // again when a later branch reads it too.
        if let Some(&input) = single_input(op).as_ref() {
            if input != cur && held.get(&input) == Some(&Held::Saved) {
                if stack.last() != Some(&input) {
                    return Err(InferError::unsupported(
                        &op.describe(),
                        "it reads a saved tensor other than the last one saved (supported: \
                         branches and residual blocks that nest)",
                    ));
                }
                if left.get(&cur).copied().unwrap_or(0) == 0 {
                    return Err(InferError::unsupported(
                        &op.describe(),
                        "it starts another branch, but the result of the branch before it is \
                         never read (an operation was not recorded)",
                    ));
                }
                steps.push(Step::SwapResidual);
                stack.pop();
                held.remove(&input);
                stack.push(cur);
                held.insert(cur, Held::Saved);
                cur = input;
                if left.get(&input).copied().unwrap_or(0) > 0 {
                    steps.push(Step::SaveResidual);
                    stack.push(input);
                    held.insert(input, Held::Saved);
                }
            }
        }
        // Fuses a following ReLU that reads `t` (and nothing else does).
        let relu_after = |t: TensorId, at: usize| -> Option<TensorId> {
            match ops.get(at) {
                Some(NetOp::Relu { input, output }) if *input == t && reads(t) == 1 => {
                    Some(*output)
                }
                _ => None,
            }
        };
        match op {
            NetOp::Conv {
                layer,
                input,
                output,
                in_channels,
                out_channels,
                kernel,
                stride,
                padding,
                groups,
                bias,
                ..
            } => {
                expect_current(op, *input, cur)?;
                if kernel.0 != kernel.1 {
                    return Err(InferError::unsupported(
                        layer,
                        format!("kernel {}x{} is not square", kernel.0, kernel.1),
                    ));
                }
                let bn = match next {
                    Some(NetOp::BatchNorm {
                        layer: bn,
                        input: bn_in,
                        output: bn_out,
                        channels,
                        relu,
                    }) if bn_in == output && reads(*bn_in) == 1 => {
                        Some((bn.clone(), *bn_out, *channels, *relu))
                    }
                    _ => None,
                };
                let (step, out, used) = match bn {
                    Some((bn, bn_out, channels, relu)) => {
                        if channels != *out_channels {
                            return Err(InferError::unsupported(
                                &bn,
                                format!("has {channels} channels, `{layer}` gives {out_channels}"),
                            ));
                        }
                        let fused_relu = if relu {
                            None
                        } else {
                            relu_after(bn_out, i + 2)
                        };
                        let step = ex.conv_bn(
                            layer,
                            &bn,
                            *in_channels,
                            *out_channels,
                            kernel.0,
                            *stride,
                            *padding,
                            *groups,
                            *bias,
                            relu || fused_relu.is_some(),
                        )?;
                        match fused_relu {
                            Some(o) => (step, o, 3),
                            None => (step, bn_out, 2),
                        }
                    }
                    None => {
                        let fused_relu = relu_after(*output, i + 1);
                        let requant = Requant::Shift {
                            relu: fused_relu.is_some(),
                        };
                        if *output == graph.output {
                            return Err(InferError::unsupported(
                                layer,
                                "a convolution gives the logits; the integer engine needs a \
                                 linear layer last",
                            ));
                        }
                        let step = ex.conv(
                            layer,
                            *in_channels,
                            *out_channels,
                            kernel.0,
                            *stride,
                            *padding,
                            *groups,
                            *bias,
                            requant,
                        )?;
                        (
                            step,
                            fused_relu.unwrap_or(*output),
                            1 + usize::from(fused_relu.is_some()),
                        )
                    }
                };
                steps.push(step);
                cur = become_current(out, &mut steps, &mut stack, &mut held);
                i += used;
                continue;
            }
            NetOp::Linear {
                layer,
                input,
                output,
                in_features,
                out_features,
                bias,
                ..
            } => {
                expect_current(op, *input, cur)?;
                let fused_relu = relu_after(*output, i + 1);
                let requant = if *output == graph.output {
                    Requant::Logits
                } else {
                    Requant::Shift {
                        relu: fused_relu.is_some(),
                    }
                };
                steps.push(ex.linear(layer, *in_features, *out_features, *bias, requant)?);
                let out = fused_relu.unwrap_or(*output);
                cur = become_current(out, &mut steps, &mut stack, &mut held);
                i += 1 + usize::from(fused_relu.is_some());
                continue;
            }
            NetOp::MaxPool2 { input, output } => {
                expect_current(op, *input, cur)?;
                steps.push(Step::MaxPool2);
                cur = become_current(*output, &mut steps, &mut stack, &mut held);
            }
            NetOp::MaxPool {
                input,
                output,
                kernel,
                stride,
                padding,
                ..
            } => {
                expect_current(op, *input, cur)?;
                // PyTorch's 2x2 stride-2 pooling is the step the GPU runs too.
                steps.push(if (*kernel, *stride, *padding) == (2, 2, 0) {
                    Step::MaxPool2
                } else {
                    Step::MaxPool {
                        kernel: *kernel,
                        stride: *stride,
                        padding: *padding,
                    }
                });
                cur = become_current(*output, &mut steps, &mut stack, &mut held);
            }
            NetOp::Concat {
                name,
                inputs,
                output,
            } => {
                let parts = inputs.len();
                let saved_parts = &inputs[..parts.saturating_sub(1)];
                if parts < 2
                    || inputs.last() != Some(&cur)
                    || stack.len() < saved_parts.len()
                    || stack[stack.len() - saved_parts.len()..] != *saved_parts
                {
                    return Err(InferError::unsupported(
                        name,
                        "a concatenation must read its branches in the order they ran, the \
                         last one just computed (supported: an inception module's branches, \
                         each a chain of layers from the module's input)",
                    ));
                }
                for t in saved_parts {
                    held.remove(t);
                }
                stack.truncate(stack.len() - saved_parts.len());
                steps.push(Step::Concat { parts });
                cur = become_current(*output, &mut steps, &mut stack, &mut held);
            }
            NetOp::GlobalAvgPool { input, output } => {
                expect_current(op, *input, cur)?;
                steps.push(Step::GlobalAvgPool);
                cur = become_current(*output, &mut steps, &mut stack, &mut held);
            }
            NetOp::Flatten { input, output } => {
                expect_current(op, *input, cur)?;
                match next {
                    Some(n @ NetOp::Linear { .. }) if reads_first(n, *output) => {}
                    _ => {
                        return Err(InferError::unsupported(
                            "flatten",
                            "a flatten must feed a linear layer directly",
                        ))
                    }
                }
                cur = *output;
            }
            NetOp::ShortcutOptionA { input, output, pad } => {
                if held.get(input) != Some(&Held::Saved) {
                    return Err(InferError::unsupported(
                        "shortcut",
                        "an option-A shortcut must read a residual block's input",
                    ));
                }
                held.insert(*output, Held::OptionA(*input, *pad));
            }
            NetOp::AddRelu {
                main,
                shortcut,
                output,
            }
            | NetOp::Add {
                main,
                shortcut,
                output,
                ..
            } => {
                let relu = matches!(op, NetOp::AddRelu { .. });
                let other = if *main == cur {
                    *shortcut
                } else if *shortcut == cur {
                    *main
                } else {
                    return Err(InferError::unsupported(
                        "residual add",
                        "neither of its inputs is the block's main path",
                    ));
                };
                let (saved, pad) = match held.get(&other) {
                    Some(Held::Saved) => (other, None),
                    Some(Held::OptionA(t, pad)) => (*t, Some(*pad)),
                    None => {
                        return Err(InferError::unsupported(
                            "residual add",
                            "its shortcut is neither a saved block input nor its option-A \
                             shortcut (an operation in between was not recorded)",
                        ))
                    }
                };
                if stack.last() != Some(&saved) {
                    return Err(InferError::unsupported(
                        "residual add",
                        "residual blocks must nest (the shortcut is not the last saved tensor)",
                    ));
                }
                stack.pop();
                held.remove(&saved);
                steps.push(Step::AddResidual { pad, relu });
                cur = become_current(*output, &mut steps, &mut stack, &mut held);
            }
            NetOp::BatchNorm { layer, .. } => {
                return Err(InferError::unsupported(
                    layer,
                    "batch norm must follow a convolution directly (it is folded into it)",
                ))
            }
            NetOp::Relu { .. } => {
                return Err(InferError::unsupported(
                    "relu",
                    "a ReLU must follow a convolution, batch norm or linear layer directly \
                     (it is fused into its requantisation)",
                ))
            }
        }
        i += 1;
    }
    if cur != graph.output {
        return Err(InferError::unsupported(
            "model",
            "the recorded operations do not end in the network's logits (an operation of the \
             forward pass was not recorded: build backbones from dsnn-core's layers and \
             dsnn_core::nn)",
        ));
    }
    Ok(steps)
}

/// The tensor a one-input layer reads (layers that may start a branch).
fn single_input(op: &NetOp) -> Option<TensorId> {
    match op {
        NetOp::Conv { input, .. }
        | NetOp::Linear { input, .. }
        | NetOp::MaxPool2 { input, .. }
        | NetOp::MaxPool { input, .. }
        | NetOp::GlobalAvgPool { input, .. }
        | NetOp::Flatten { input, .. } => Some(*input),
        _ => None,
    }
}

/// Whether `op` reads `t` first.
fn reads_first(op: &NetOp, t: TensorId) -> bool {
    op.inputs().first() == Some(&t)
}

/// The error for an operation that does not read the current activations.
fn expect_current(op: &NetOp, input: TensorId, cur: TensorId) -> Result<()> {
    if input == cur {
        Ok(())
    } else {
        Err(InferError::unsupported(
            &op.describe(),
            "it does not read the activations the layer before it wrote (an operation in \
             between was not recorded, or the network branches in a way the integer engine \
             cannot run: only residual blocks may)",
        ))
    }
}
