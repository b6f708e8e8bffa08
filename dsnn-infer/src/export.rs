//! Export of a trained float-simulated DSNN into an [`IntModel`], and the
//! model spec that `dsnn train --save` stores with the weights.

use crate::error::{InferError, Result};
use crate::model::InputTransform;
use candle_core::Tensor;
use dsnn_core::{backbone_by_name, Backbone, ModelSpec, Network};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Metadata key of the [`TrainedSpec`] in a weights file.
pub const SPEC_METADATA_KEY: &str = "dsnn_spec";

/// Everything besides the weights that export needs: which network the
/// weights belong to and how its inputs were normalised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainedSpec {
    /// Backbone name (`lenet5`, `digits_cnn`, `resnet20`).
    pub backbone: String,
    /// The model spec the network was built from.
    pub model: ModelSpec,
    /// The data set it was trained on, if known.
    pub dataset: Option<String>,
    /// Pixel normalisation used in training, if known.
    pub input_transform: Option<InputTransform>,
}

/// Saves a trained network's parameters as safetensors with `spec` in the
/// file's metadata (loadable by `ParamStore::load` like any weights file).
pub fn save_trained(net: &dyn Network, spec: &TrainedSpec, path: &Path) -> Result<()> {
    let tensors: Vec<(String, Tensor)> = net.params().named_tensors().into_iter().collect();
    let json = serde_json::to_string(spec).map_err(|e| InferError::file(path, e.to_string()))?;
    let meta = HashMap::from([(SPEC_METADATA_KEY.to_string(), json)]);
    safetensors::serialize_to_file(tensors, Some(meta), path)
        .map_err(|e| InferError::file(path, e.to_string()))
}

/// Reads the [`TrainedSpec`] stored by [`save_trained`].
pub fn read_trained_spec(path: &Path) -> Result<TrainedSpec> {
    let bytes = std::fs::read(path).map_err(|e| InferError::file(path, e.to_string()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| InferError::file(path, format!("not a safetensors file: {e}")))?;
    let json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(SPEC_METADATA_KEY))
        .ok_or_else(|| {
            InferError::file(
                path,
                format!(
                    "has no model spec (safetensors metadata `{SPEC_METADATA_KEY}`): the weights \
                     were not saved by this version's `dsnn train --save`, so the backbone and \
                     DeepShift settings are unknown; retrain with `dsnn train --save`"
                ),
            )
        })?;
    let spec: TrainedSpec = serde_json::from_str(json)
        .map_err(|e| InferError::file(path, format!("bad `{SPEC_METADATA_KEY}` metadata: {e}")))?;
    check_spec_sizes(&spec).map_err(|reason| InferError::file(path, reason))?;
    Ok(spec)
}

/// Most input values per image a weights file's spec may declare (2^16:
/// dsnn's data sets have at most 3x32x32 = 3072). The largest network that
/// admits, LeNet-5 on 256x256 images, holds 93M weights (about 370 MB).
pub const MAX_SPEC_INPUT_VALUES: usize = 1 << 16;

/// Most classes a weights file's spec may declare (2^16).
pub const MAX_SPEC_CLASSES: usize = 1 << 16;

/// The spec's sizes are bounded before a network is built from them (a
/// spec of 2^31 x 2^31 images would otherwise ask for an impossible
/// allocation).
fn check_spec_sizes(spec: &TrainedSpec) -> std::result::Result<(), String> {
    let dsnn_core::InputShape {
        channels: c,
        height: h,
        width: w,
    } = spec.model.input;
    let values = c.checked_mul(h).and_then(|v| v.checked_mul(w));
    if !values.is_some_and(|n| (1..=MAX_SPEC_INPUT_VALUES).contains(&n)) {
        return Err(format!(
            "the model spec's input {c}x{h}x{w} is out of range (allowed: 1 to \
             {MAX_SPEC_INPUT_VALUES} values per image)"
        ));
    }
    let classes = spec.model.classes;
    if !(2..=MAX_SPEC_CLASSES).contains(&classes) {
        return Err(format!(
            "the model spec's {classes} classes are out of range (allowed: 2..={MAX_SPEC_CLASSES})"
        ));
    }
    Ok(())
}

/// Builds the network a weights file describes, with one of dsnn-core's
/// built-in backbones, and loads its parameters.
pub fn load_trained(path: &Path) -> Result<(Box<dyn Network>, TrainedSpec)> {
    let spec = read_trained_spec(path)?;
    let backbone = backbone_by_name(&spec.backbone)?;
    let net = load_trained_with(path, &spec, backbone.as_ref())?;
    Ok((net, spec))
}

/// Builds the network of `spec` (read by [`read_trained_spec`]) with
/// `backbone` (any backbone, a research crate's own included) and loads the
/// parameters of the weights file `path`.
pub fn load_trained_with(
    path: &Path,
    spec: &TrainedSpec,
    backbone: &dyn Backbone,
) -> Result<Box<dyn Network>> {
    if backbone.name() != spec.backbone {
        return Err(InferError::file(
            path,
            format!(
                "was trained with backbone `{}`, not `{}`",
                spec.backbone,
                backbone.name()
            ),
        ));
    }
    let net = backbone.build(&spec.model, &candle_core::Device::Cpu)?;
    net.params().load(path)?;
    Ok(net)
}
