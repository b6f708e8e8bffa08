//! Agreement between the integer engine and the float-simulated network it
//! was exported from.

use crate::error::Result;
use crate::model::IntModel;
use candle_core::{Device, D};
use dsnn_core::data::{Batcher, Dataset};
use dsnn_core::{Forward, Network};

/// Top-1 agreement and accuracies of the two models on one data set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    /// Images compared.
    pub images: usize,
    /// Images on which both models predict the same class.
    pub agree: usize,
    /// Correct predictions of the float-simulated network.
    pub float_correct: usize,
    /// Correct predictions of the integer model.
    pub int_correct: usize,
}

impl Agreement {
    /// Fraction of images with the same prediction.
    pub fn agreement(&self) -> f64 {
        self.agree as f64 / self.images.max(1) as f64
    }
    /// Top-1 accuracy of the float-simulated network.
    pub fn float_accuracy(&self) -> f64 {
        self.float_correct as f64 / self.images.max(1) as f64
    }
    /// Top-1 accuracy of the integer model.
    pub fn int_accuracy(&self) -> f64 {
        self.int_correct as f64 / self.images.max(1) as f64
    }
}

/// Runs `net` (eval mode) and `model` on every image of `data`, batch by
/// batch, on the same normalised inputs.
pub fn compare(
    net: &dyn Network,
    model: &IntModel,
    data: &Dataset,
    batcher: &Batcher,
    batch_size: usize,
) -> Result<Agreement> {
    let mut a = Agreement {
        images: 0,
        agree: 0,
        float_correct: 0,
        int_correct: 0,
    };
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(batch_size.max(1)) {
        let (x, _) = batcher.batch(data, chunk, None, &Device::Cpu)?;
        let float_pred = net
            .forward(&x, Forward::eval())?
            .argmax(D::Minus1)?
            .to_vec1::<u32>()?;
        let int_pred = model.infer(&x.flatten_all()?.to_vec1::<f32>()?)?.argmax();
        for ((&i, &f), &q) in chunk.iter().zip(&float_pred).zip(&int_pred) {
            let label = usize::from(data.labels[i]);
            a.images += 1;
            a.agree += usize::from(f as usize == q);
            a.float_correct += usize::from(f as usize == label);
            a.int_correct += usize::from(q == label);
        }
    }
    Ok(a)
}
