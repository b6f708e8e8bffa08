//! The evaluation of a run's trials in this process: the objective, the
//! names of its minimised metrics, the energy context and the trial seeds.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use dsnn_core::train::TrainControl;
use dsnn_search::{Outcome, SearchSpace};

use crate::executor::{trial_label, TrialEvaluator, TrialReport, TrialTask};
use crate::experiment::{CheckedExperiment, RunEnergy};
use crate::objective::{trial_seed, EvalError, Metrics, Objective, TrialContext};

/// Evaluates trials of one experiment (what worker threads and `<binary>
/// trial` call).
pub struct RunEvaluator {
    objective: Arc<dyn Objective>,
    names: Vec<String>,
    energy: RunEnergy,
    run_dir: Option<PathBuf>,
    seed: u64,
    space: Arc<dyn SearchSpace>,
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
            space: exp.space.clone(),
        }
    }
}

impl TrialEvaluator for RunEvaluator {
    fn evaluate(&self, task: &TrialTask, control: &TrainControl, worker: &str) -> TrialReport {
        let label = trial_label(task.trial.id);
        // A configuration outside the space (a hyperparameter missing, one
        // unknown or out of range) is not evaluated with defaults filled in.
        if let Err(e) = self.space.validate(&task.trial.config) {
            return TrialReport::failed(
                task.trial.id,
                format!("trial {label}: the configuration is not in the search space: {e}"),
                0.0,
                worker.to_string(),
            );
        }
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

/// Evaluates `ctx.trial` with `objective` and turns the result into a
/// report: the objective vector is `objectives` picked from the metrics by
/// name; a panic, an error or a non-finite objective is a failed report
/// with its reason. Never panics.
pub fn evaluate_trial(
    objective: &dyn Objective,
    objectives: &[String],
    ctx: &TrialContext,
    worker: &str,
) -> TrialReport {
    let start = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| objective.evaluate(ctx)));
    let mut setup_failure = false;
    let (outcome, metrics) = match result {
        Ok(Ok(metrics)) => {
            let picked: Result<Vec<f64>, String> = objectives
                .iter()
                .map(|name| {
                    metrics.get(name).copied().ok_or_else(|| {
                        format!(
                            "the objective reported no metric `{name}` (it reported: {})",
                            metrics.keys().cloned().collect::<Vec<_>>().join(", ")
                        )
                    })
                })
                .collect();
            match picked {
                Ok(f) if f.iter().all(|v| v.is_finite()) => (Outcome::Success(f), metrics),
                Ok(f) => (
                    Outcome::Failure(format!(
                        "an objective is not finite: {f:?} (NaN or infinite result)"
                    )),
                    metrics,
                ),
                Err(reason) => (Outcome::Failure(reason), metrics),
            }
        }
        Ok(Err(EvalError::Trial(reason))) => (Outcome::Failure(reason), Metrics::new()),
        Ok(Err(EvalError::Setup(reason))) => {
            setup_failure = true;
            (Outcome::Failure(reason), Metrics::new())
        }
        Err(panic) => (
            Outcome::Failure(format!("the trial panicked: {}", panic_message(&*panic))),
            Metrics::new(),
        ),
    };
    TrialReport {
        id: ctx.trial.id,
        outcome,
        metrics,
        duration_s: start.elapsed().as_secs_f64(),
        worker: worker.to_string(),
        setup_failure,
    }
}

/// The text of a panic payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}
