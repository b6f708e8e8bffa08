//! The evaluation of a run's trials in this process: the objective, the
//! names of its minimised metrics, the energy context and the trial seeds.

use std::path::PathBuf;
use std::sync::Arc;

use dsnn_core::train::TrainControl;

use crate::executor::{trial_label, TrialEvaluator, TrialReport, TrialTask};
use crate::experiment::{CheckedExperiment, RunEnergy};
use crate::objective::{evaluate_trial, trial_seed, Objective, TrialContext};

/// Evaluates trials of one experiment (what worker threads and `<binary>
/// trial` call).
pub struct RunEvaluator {
    objective: Arc<dyn Objective>,
    names: Vec<String>,
    energy: RunEnergy,
    run_dir: Option<PathBuf>,
    seed: u64,
}

impl RunEvaluator {
    /// The evaluator of `exp`'s trials; `run_dir`, when given, receives the
    /// files objectives keep per trial (the emissions log).
    pub fn new(exp: &CheckedExperiment, run_dir: Option<PathBuf>) -> Self {
        RunEvaluator {
            objective: exp.objective.objective.clone(),
            names: exp.objective.names.clone(),
            energy: exp.energy.clone(),
            run_dir,
            seed: exp.seed,
        }
    }
}

impl TrialEvaluator for RunEvaluator {
    fn evaluate(&self, task: &TrialTask, control: &TrainControl, worker: &str) -> TrialReport {
        let label = trial_label(task.trial.id);
        let ctx = TrialContext {
            trial: &task.trial,
            label: &label,
            seed: trial_seed(self.seed, task.trial.id),
            control,
            energy: &self.energy,
            run_dir: self.run_dir.as_deref(),
        };
        evaluate_trial(self.objective.as_ref(), &self.names, &ctx, worker)
    }
}
