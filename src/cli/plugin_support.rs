//! Where the binary connects the run layer to optional parts: optimizer and
//! meter plugins, and the SLURM executor.

use dsnn::experiment::CheckedExperiment;
use dsnn::objective::MeterFactory;
use dsnn::runner::{ExecutorFactory, PluginOptimizerFactory};
use dsnn::slurm::{SlurmExecutor, SlurmSettings};
use std::path::Path;

/// The factory for optimizer plugins named in the experiment.
pub fn optimizer_factory(
    _exp: &CheckedExperiment,
    _base_dir: &Path,
) -> Option<Box<PluginOptimizerFactory>> {
    None
}

/// The factory for meter plugins (and dsnn's own meters).
pub fn meter_factory(_exp: &CheckedExperiment, _base_dir: &Path) -> Option<Box<MeterFactory>> {
    None
}

/// The factory for executors beyond threads and processes: the SLURM
/// executor, configured by `[executor.slurm]`.
pub fn executor_factory() -> Option<Box<ExecutorFactory>> {
    Some(Box::new(|exp, ctx| {
        let table = exp.experiment.executor.slurm.clone().unwrap_or_default();
        let settings = SlurmSettings::from_toml(&table)?;
        Ok(Box::new(SlurmExecutor::new(settings, ctx)?))
    }))
}
