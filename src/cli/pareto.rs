//! `dsnn pareto RUN_DIR`: the Pareto front and summary of a run, recomputed
//! from its trial log (also while the run is going on).

use anyhow::{Context, Result};
use clap::Args;
use dsnn::experiment::{objective_names, CheckedExperiment};
use dsnn::report::{front_csv, summarize, summary_markdown};
use dsnn::store::{read_history, RunStore};
use std::path::PathBuf;

/// Arguments of `dsnn pareto`.
#[derive(Args, Debug)]
pub struct ParetoArgs {
    /// The run directory (`runs/<name>`).
    pub run_dir: PathBuf,
    /// Print the front as CSV instead of the summary.
    #[arg(long)]
    pub csv: bool,
}

/// Run `dsnn pareto`.
pub fn run(a: ParetoArgs) -> Result<()> {
    let exp_file = a.run_dir.join(RunStore::EXPERIMENT);
    if !exp_file.is_file() {
        anyhow::bail!(
            "{} is not a run directory (no {})",
            a.run_dir.display(),
            RunStore::EXPERIMENT
        );
    }
    let exp = CheckedExperiment::from_file(&exp_file)?;
    let history = read_history(&a.run_dir.join(RunStore::LOG))
        .with_context(|| format!("reading the trial log of {}", a.run_dir.display()))?;
    let s = summarize(&exp.experiment.name, &objective_names(&exp), &history);
    if a.csv {
        print!("{}", front_csv(&s));
    } else {
        print!("{}", summary_markdown(&s));
    }
    Ok(())
}
