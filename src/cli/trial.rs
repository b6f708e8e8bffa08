//! `dsnn trial`: evaluate one trial of an experiment, for the process and
//! cluster executors. Reads a `TrialInput` (JSON) from `--input` or stdin and
//! writes the `TrialReport` (JSON) to `--output` (atomically) or stdout.

use anyhow::{Context, Result};
use clap::Args;
use dsnn_core::train::TrainControl;
use std::io::Read;
use std::path::PathBuf;

use crate::executor::{write_atomically, TrialEvaluator, TrialInput};
use crate::experiment::CheckedExperiment;
use crate::registry::Registry;
use crate::runner::RunEvaluator;

/// Arguments of `dsnn trial`.
#[derive(Args, Debug)]
pub struct TrialArgs {
    /// The trial (JSON: `{"experiment_file": ..., "task": ...}`); default stdin.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Where to write the report (JSON); default stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// A failure of `dsnn trial` that is not the trial's own (its input
/// unreadable, the experiment file gone, its report unwritable): the
/// command exits with [`crate::executor::EXIT_INFRASTRUCTURE`] so that the
/// executor stops the run instead of charging the trial. A trial's own
/// failures are reports, and the command succeeds.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct InfrastructureError(pub anyhow::Error);

/// Run `dsnn trial`.
pub fn run(a: TrialArgs, registry: &Registry) -> Result<()> {
    run_trial(a, registry).map_err(|e| {
        if super::output::is_broken_pipe(&e) {
            e
        } else {
            InfrastructureError(e).into()
        }
    })
}

fn run_trial(a: TrialArgs, registry: &Registry) -> Result<()> {
    let text = match &a.input {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the trial from stdin")?;
            s
        }
    };
    let input: TrialInput = serde_json::from_str(&text).context("parsing the trial input")?;
    let exp = CheckedExperiment::from_file(&input.experiment_file, registry)?;
    // Budgets come from the run's schedule: anything else is a broken
    // input, not a trial to run (1e300 epochs would never end).
    let budget = input.task.trial.budget;
    let max = exp.max_budget();
    if !(budget.is_finite() && budget > 0.0 && budget <= max * (1.0 + 1e-9)) {
        anyhow::bail!(
            "trial {}: budget {budget} is out of range (allowed: above 0 and at most the experiment's fidelity.max = {max})",
            input.task.trial.id
        );
    }
    let evaluator = RunEvaluator::new(&exp, input.run_dir.clone());
    let worker = format!("pid {}", std::process::id());
    let report = evaluator.evaluate(&input.task, &TrainControl::default(), &worker);
    let json = serde_json::to_string_pretty(&report)?;
    match &a.output {
        Some(p) => write_atomically(p, json.as_bytes())
            .with_context(|| format!("writing {}", p.display()))?,
        None => crate::outln!("{json}")?,
    }
    Ok(())
}
