//! The operation profile of the integer pass, for the op-count energy model.

use crate::model::{IntModel, Requant, Step};
use dsnn_energy::{LayerKind, LayerOps, OpProfile};

impl IntModel {
    /// Per-image operations the engine carries out, layer by layer: one
    /// shift-add per non-zero weight and output position (zero weights are
    /// skipped) at `I + F`-bit activations, the requantisation of each
    /// output (folded batch norm as one multiply-add, listed as `BatchNorm`),
    /// and the element-wise work (ReLU, pooling, residual adds).
    pub fn op_profile(&self) -> OpProfile {
        let bits = self.act.integer_bits + self.act.fraction_bits;
        let (mut c, mut h, mut w) = (self.input.channels, self.input.height, self.input.width);
        let mut layers = Vec::new();
        // Shapes of the saved activations (a projection shortcut swaps them).
        let mut saved: Vec<(usize, usize, usize)> = Vec::new();
        let elementwise = |name: String, n: usize| LayerOps {
            name,
            kind: LayerKind::Elementwise,
            macs: n as u64,
            shift: false,
            weight_bits: bits,
            activation_bits: bits,
            params: 0,
        };
        for step in &self.steps {
            let (layer, epi, positions, kind) = match step {
                Step::Conv {
                    layer,
                    kernel,
                    stride,
                    padding,
                    epilogue,
                    ..
                } => {
                    h = (h + 2 * padding - kernel) / stride + 1;
                    w = (w + 2 * padding - kernel) / stride + 1;
                    c = layer.cout;
                    (layer, epilogue, h * w, LayerKind::Conv2d)
                }
                Step::Linear { layer, epilogue } => {
                    (c, h, w) = (layer.cout, 1, 1);
                    (layer, epilogue, 1, LayerKind::Linear)
                }
                Step::MaxPool2 => {
                    layers.push(elementwise("maxpool".into(), c * h * w));
                    (h, w) = (h / 2, w / 2);
                    continue;
                }
                Step::MaxPool {
                    kernel,
                    stride,
                    padding,
                } => {
                    h = (h + 2 * padding - kernel) / stride + 1;
                    w = (w + 2 * padding - kernel) / stride + 1;
                    // One comparison per window element and output.
                    layers.push(elementwise("maxpool".into(), c * h * w * kernel * kernel));
                    continue;
                }
                Step::Concat { parts } => {
                    // A copy of every value; the channels are those of the
                    // saved branches and the current one.
                    let branches = saved.split_off(saved.len().saturating_sub(parts - 1));
                    c += branches.iter().map(|(bc, _, _)| bc).sum::<usize>();
                    layers.push(elementwise("concat".into(), c * h * w));
                    continue;
                }
                Step::SaveResidual => {
                    saved.push((c, h, w));
                    continue;
                }
                Step::SwapResidual => {
                    if let Some(top) = saved.last_mut() {
                        ((c, h, w), *top) = (*top, (c, h, w));
                    }
                    continue;
                }
                Step::AddResidual { relu, .. } => {
                    saved.pop();
                    let name = if *relu {
                        "residual_add_relu"
                    } else {
                        "residual_add"
                    };
                    layers.push(elementwise(name.into(), 2 * c * h * w));
                    continue;
                }
                Step::GlobalAvgPool => {
                    layers.push(elementwise("avgpool".into(), c * h * w));
                    (h, w) = (1, 1);
                    continue;
                }
            };
            layers.push(LayerOps {
                name: layer.name.clone(),
                kind,
                macs: (positions * layer.plan().nonzero) as u64,
                shift: true,
                weight_bits: layer.packed.code_bits,
                activation_bits: bits,
                params: (layer.cout * layer.fan_in) as u64,
            });
            let outputs = layer.cout * positions;
            match &epi.requant {
                Requant::Affine { .. } => layers.push(LayerOps {
                    name: format!("{}.requant", layer.name),
                    kind: LayerKind::BatchNorm,
                    macs: outputs as u64,
                    shift: false,
                    weight_bits: 32,
                    activation_bits: bits,
                    params: 0,
                }),
                Requant::Shift { .. } => {
                    layers.push(elementwise(format!("{}.requant", layer.name), outputs))
                }
                Requant::Logits => {}
            }
        }
        OpProfile { layers }
    }
}
