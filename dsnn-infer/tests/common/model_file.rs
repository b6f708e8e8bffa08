//! Takes integer model files apart and puts them back together with a
//! fresh checksum, so that tests can reach the checks behind it.

use dsnn_infer::model::{CHECKSUM_METADATA_KEY, MODEL_METADATA_KEY};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;

/// The tensors of a model file, in checksum order.
pub const TENSORS: [(&str, Dtype); 4] = [
    ("codes", Dtype::U8),
    ("acc_init", Dtype::I64),
    ("bn_mul", Dtype::I32),
    ("bn_add", Dtype::I32),
];

/// A model file's parts: the description and the four tensors' bytes.
#[derive(Debug, Clone)]
pub struct Parts {
    /// The model description (JSON).
    pub description: serde_json::Value,
    /// `codes`, `acc_init`, `bn_mul`, `bn_add`.
    pub tensors: [Vec<u8>; 4],
}

/// Splits a valid model file into its parts.
pub fn split(bytes: &[u8]) -> Parts {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    let text = &meta.metadata().as_ref().unwrap()[MODEL_METADATA_KEY];
    Parts {
        description: serde_json::from_str(text).unwrap(),
        tensors: TENSORS.map(|(name, _)| st.tensor(name).unwrap().data().to_vec()),
    }
}

/// Writes parts as a model file with the checksum the format defines: the
/// CRC-32 of the description followed by the tensors' bytes.
pub fn join(parts: &Parts) -> Vec<u8> {
    let text = parts.description.to_string();
    let mut crc = crc32fast::Hasher::new();
    crc.update(text.as_bytes());
    for t in &parts.tensors {
        crc.update(t);
    }
    let meta = HashMap::from([
        (MODEL_METADATA_KEY.to_string(), text),
        (
            CHECKSUM_METADATA_KEY.to_string(),
            format!("{:08x}", crc.finalize()),
        ),
    ]);
    let views: Vec<(String, safetensors::tensor::TensorView)> = TENSORS
        .iter()
        .zip(&parts.tensors)
        .map(|((name, dtype), bytes)| {
            let elems = bytes.len() / (dtype.bitsize() / 8);
            let view = safetensors::tensor::TensorView::new(*dtype, vec![elems], bytes).unwrap();
            (name.to_string(), view)
        })
        .collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

/// The file with `edit` applied to its parts and a fresh checksum.
pub fn rewrite(bytes: &[u8], edit: impl FnOnce(&mut Parts)) -> Vec<u8> {
    let mut parts = split(bytes);
    edit(&mut parts);
    join(&parts)
}
