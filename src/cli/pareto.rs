//! `dsnn pareto RUN_DIR` (the Pareto front and summary of a run) and `dsnn
//! report RUN_DIR` (its CSV, summary and SVG plots written again), both
//! recomputed from the trial log, also while the run is going on.

use anyhow::{Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

use crate::report::{front_csv, summarize, summary_markdown, write_reports, Summary};
use crate::store::{read_history, History, RunInfo, RunStore};

/// Arguments of `dsnn pareto`.
#[derive(Args, Debug)]
pub struct ParetoArgs {
    /// The run directory (`runs/<name>`).
    pub run_dir: PathBuf,
    /// Print the front as CSV instead of the summary.
    #[arg(long)]
    pub csv: bool,
}

/// Arguments of `dsnn report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The run directory (`runs/<name>`).
    pub run_dir: PathBuf,
}

/// Reads a run directory's trial log and summarises it.
fn load(run_dir: &Path) -> Result<(History, Summary)> {
    let info = RunInfo::read(run_dir)?;
    let history = read_history(&run_dir.join(RunStore::LOG))
        .with_context(|| format!("reading the trial log of {}", run_dir.display()))?;
    let s = summarize(&info.name, &info.objectives, &history);
    Ok((history, s))
}

/// Run `dsnn pareto`.
pub fn run(a: ParetoArgs) -> Result<()> {
    let (_, s) = load(&a.run_dir)?;
    if a.csv {
        crate::cli::output::out(format_args!("{}", front_csv(&s)))?;
    } else {
        crate::cli::output::out(format_args!("{}", summary_markdown(&s)))?;
    }
    Ok(())
}

/// Run `dsnn report`.
pub fn report(a: ReportArgs) -> Result<()> {
    let (history, s) = load(&a.run_dir)?;
    let written = write_reports(&a.run_dir, &s, &history)
        .with_context(|| format!("writing the reports of {}", a.run_dir.display()))?;
    for path in written {
        crate::outln!("{}", path.display())?;
    }
    Ok(())
}
