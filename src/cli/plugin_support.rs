//! Where the binary connects the run layer to optional parts: optimizer and
//! meter plugins, and the SLURM executor.

use dsnn::experiment::CheckedExperiment;
use dsnn::experiment::MeterChoice;
use dsnn::objective::{builtin_meter, MeterFactory};
use dsnn::runner::{ExecutorFactory, PluginOptimizerFactory};
use dsnn::slurm::{SlurmExecutor, SlurmSettings};
use dsnn_plugin_host::PluginHost;
use std::path::Path;
use std::sync::Arc;

/// The plugin host of an experiment: `./plugins` next to the experiment
/// file, the file's `plugin_dirs`, then `DSNN_PLUGIN_PATH`.
fn host(exp: &CheckedExperiment, base_dir: &Path) -> Arc<PluginHost> {
    Arc::new(PluginHost::standard(base_dir, &exp.experiment.plugin_dirs))
}

/// The factory for optimizer plugins named in the experiment.
pub fn optimizer_factory(
    exp: &CheckedExperiment,
    base_dir: &Path,
) -> Option<Box<PluginOptimizerFactory>> {
    let host = host(exp, base_dir);
    Some(Box::new(move |choice, space, seed| {
        let settings = toml::to_string(&choice.settings).map_err(|e| e.to_string())?;
        host.load_optimizer(&choice.plugin, space, &settings, seed)
            .map_err(|e| format!("optimizer plugin `{}`: {e}", choice.plugin))
    }))
}

/// The factory for energy meters: plugins through the host, dsnn's own
/// meters as built in.
pub fn meter_factory(exp: &CheckedExperiment, base_dir: &Path) -> Option<Box<MeterFactory>> {
    let host = host(exp, base_dir);
    Some(Box::new(move |choice, profile| match choice {
        MeterChoice::Plugin(p) => {
            let settings = toml::to_string(&p.settings).map_err(|e| e.to_string())?;
            host.load_meter(&p.plugin, &settings)
                .map_err(|e| format!("meter plugin `{}`: {e}", p.plugin))
        }
        other => builtin_meter(other, profile),
    }))
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
