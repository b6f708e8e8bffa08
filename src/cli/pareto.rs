//! `dsnn pareto RUN_DIR`: the Pareto front and summary of a run, recomputed
//! from its trial log (also while the run is going on).

use anyhow::{Context, Result};
use clap::Args;
use dsnn::experiment::{experiment_objective_names, Experiment};
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
    // The stored experiment is already resolved; it is only read for the
    // run's name and objectives (its data may have moved since).
    let text = std::fs::read_to_string(&exp_file)
        .with_context(|| format!("reading {}", exp_file.display()))?;
    let exp: Experiment =
        toml::from_str(&text).with_context(|| format!("parsing {}", exp_file.display()))?;
    let history = read_history(&a.run_dir.join(RunStore::LOG))
        .with_context(|| format!("reading the trial log of {}", a.run_dir.display()))?;
    let s = summarize(&exp.name, &experiment_objective_names(&exp), &history);
    if a.csv {
        print!("{}", front_csv(&s));
    } else {
        print!("{}", summary_markdown(&s));
    }
    Ok(())
}
