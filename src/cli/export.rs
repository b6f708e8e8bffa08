//! `dsnn export`: turn weights saved by `dsnn train --save` into an integer
//! shift-add model (see `docs/integer-inference.md`).

use anyhow::{Context, Result};
use clap::Args;
use dsnn_core::Network;
use dsnn_infer::{load_trained_with, read_trained_spec, IntModel, Step, TrainedSpec};
use std::path::{Path, PathBuf};

use crate::registry::Registry;

/// Builds the network a weights file (from `dsnn train --save` or a run's
/// `--save-weights`) describes, with the registry's backbone of that name,
/// and loads its parameters.
pub fn load_weights(path: &Path, registry: &Registry) -> Result<(Box<dyn Network>, TrainedSpec)> {
    let spec = read_trained_spec(path)?;
    let backbone = registry.backbone(&spec.backbone).with_context(|| {
        format!(
            "{} names a backbone this program does not have",
            path.display()
        )
    })?;
    let net = load_trained_with(path, &spec, backbone.as_ref())?;
    Ok((net, spec))
}

/// Arguments of `dsnn export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Weights saved by `dsnn train --save` (with the model spec in their metadata).
    weights: PathBuf,
    /// Where to write the integer model.
    #[arg(long, short)]
    output: PathBuf,
}

/// Run `dsnn export`.
pub fn run(a: ExportArgs, registry: &Registry) -> Result<()> {
    let (net, spec) = load_weights(&a.weights, registry)
        .with_context(|| format!("loading {}", a.weights.display()))?;
    let model = IntModel::from_network(net.as_ref(), &spec)
        .with_context(|| format!("exporting {}", a.weights.display()))?;
    model
        .save(&a.output)
        .with_context(|| format!("writing {}", a.output.display()))?;
    let float_bytes = model.float_model_bytes() as u64;
    let int_bytes = std::fs::metadata(&a.output)?.len();
    crate::errln!(
        "dsnn export: {} DeepShift-{}, activations {}.{} fixed point",
        model.backbone,
        model.shift_type,
        model.act.integer_bits,
        model.act.fraction_bits
    );
    if let Some(r) = model.input_transform.as_ref().and_then(|t| t.data.as_ref()) {
        // Kept in the integer model: `dsnn infer` loads the data the same way.
        crate::errln!(
            "  trained on {} ({}split seed {})",
            r.dataset,
            r.settings
                .iter()
                .map(|(k, v)| format!("{k} = {v}, "))
                .collect::<String>(),
            r.split_seed
        );
    }
    for step in &model.steps {
        if let Step::Conv { layer, .. } | Step::Linear { layer, .. } = step {
            crate::errln!(
                "  {:<18} {:>4} x {:<5} {}-bit codes, accumulator {} fraction bits, {} non-zero",
                layer.name,
                layer.cout,
                layer.fan_in,
                layer.packed.code_bits,
                model.act.fraction_bits + layer.acc_shift,
                layer.plan().nonzero
            );
        }
    }
    crate::outln!(
        "wrote {}: {int_bytes} bytes ({} of packed weights) vs {float_bytes} bytes as 32-bit floats ({:.1}x smaller)",
        a.output.display(),
        model.packed_weight_bytes(),
        float_bytes as f64 / int_bytes.max(1) as f64
    )?;
    Ok(())
}
