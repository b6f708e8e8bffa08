//! Operation profiles: how many multiply-accumulates (and of which kind) a
//! network performs for one input image.
//!
//! A backbone reports an [`OpProfile`] for a configuration; the op-count
//! energy model turns it into joules per image.

use serde::{Deserialize, Serialize};

/// The kind of work a layer does, which decides the energy of its operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    /// A 2-D convolution (multiply-accumulates, or shift-accumulates when converted).
    Conv2d,
    /// A fully connected layer.
    Linear,
    /// Batch normalisation (one multiply and one add per element at inference).
    BatchNorm,
    /// Element-wise work with no multiplication: ReLU, pooling, residual adds.
    Elementwise,
}

/// The operations of one layer for one input image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerOps {
    /// The layer's name in the model (for example `layer3.2.conv2`).
    pub name: String,
    /// What the layer computes.
    pub kind: LayerKind,
    /// Multiply-accumulates (for `Conv2d`/`Linear`), or element operations
    /// (for `BatchNorm`/`Elementwise`) per image.
    pub macs: u64,
    /// Whether the multiplications are shifts (a converted DeepShift layer).
    pub shift: bool,
    /// Bits per stored weight: `weight_bits` for shift layers, 32 for float.
    pub weight_bits: u32,
    /// Bits of the activations entering the layer: integer + fraction bits of
    /// the fixed-point format for shift layers, 32 for float.
    pub activation_bits: u32,
    /// Number of trainable weights (excluding biases).
    pub params: u64,
}

/// The per-image operation profile of a whole network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpProfile {
    /// Layers in forward order.
    pub layers: Vec<LayerOps>,
}

impl OpProfile {
    /// All multiply-accumulates of convolution and linear layers.
    pub fn total_macs(&self) -> u64 {
        self.weighted_layers().map(|l| l.macs).sum()
    }

    /// Multiply-accumulates carried out as shift-accumulates.
    pub fn shift_macs(&self) -> u64 {
        self.weighted_layers()
            .filter(|l| l.shift)
            .map(|l| l.macs)
            .sum()
    }

    /// Multiply-accumulates still carried out as float multiplications.
    pub fn float_macs(&self) -> u64 {
        self.total_macs() - self.shift_macs()
    }

    /// Bits needed to store all weights of convolution and linear layers.
    pub fn weight_storage_bits(&self) -> u64 {
        self.weighted_layers()
            .map(|l| l.params * u64::from(l.weight_bits))
            .sum()
    }

    /// Number of convolution and linear layers converted to shifts.
    pub fn shift_layer_count(&self) -> usize {
        self.weighted_layers().filter(|l| l.shift).count()
    }

    fn weighted_layers(&self) -> impl Iterator<Item = &LayerOps> {
        self.layers
            .iter()
            .filter(|l| matches!(l.kind, LayerKind::Conv2d | LayerKind::Linear))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(name: &str, kind: LayerKind, macs: u64, shift: bool, params: u64) -> LayerOps {
        LayerOps {
            name: name.into(),
            kind,
            macs,
            shift,
            weight_bits: if shift { 5 } else { 32 },
            activation_bits: 32,
            params,
        }
    }

    #[test]
    fn totals_split_shift_and_float_work() {
        let p = OpProfile {
            layers: vec![
                layer("conv1", LayerKind::Conv2d, 1000, false, 10),
                layer("bn1", LayerKind::BatchNorm, 50, false, 0),
                layer("conv2", LayerKind::Conv2d, 3000, true, 20),
                layer("fc", LayerKind::Linear, 200, true, 200),
            ],
        };
        assert_eq!(p.total_macs(), 4200);
        assert_eq!(p.shift_macs(), 3200);
        assert_eq!(p.float_macs(), 1000);
        assert_eq!(p.weight_storage_bits(), 10 * 32 + 20 * 5 + 200 * 5);
        assert_eq!(p.shift_layer_count(), 2);
    }
}
