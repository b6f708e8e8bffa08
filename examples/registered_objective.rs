//! Library use (2): an objective of your own, registered and run through
//! dsnn's whole run machinery: the experiment file and its located errors,
//! the optimizer and the fidelity schedule, the executor, the crash-safe run
//! store (resume, runs that grow), the failures with their reasons and the
//! reports.
//!
//! The objective simulates training a network cheaply: a learning curve
//! whose final validation error depends on the network's `width` and the
//! learning rate `lr`, approached as the budget (epochs) grows, against the
//! network's weight count. Its own settings live in `[objective]`:
//!
//! ```toml
//! [objective]
//! kind = "learning-curve"
//! optimum_lr = 0.05    # the learning rate with the lowest error (> 0)
//! diverge_lr = 0.8     # above it a trial diverges (> optimum_lr)
//! ```
//!
//! Replace `evaluate` with your own training (or simulator) and the
//! settings with yours. `docs/library.md` explains each piece.
//!
//! ```sh
//! cargo run --release --example registered_objective   # writes runs/registered-objective/
//! ```

use std::path::Path;
use std::sync::Arc;

use dsnn::experiment::CheckedExperiment;
use dsnn::objective::{EvalError, MetricInfo, Metrics, Objective, SpaceIssue, TrialContext};
use dsnn::registry::{ObjectiveBuild, ObjectiveFactory, ObjectiveSetup, Registry};
use dsnn::runner::{run_experiment, RunOptions, RunOutcome};
use dsnn::settings::ConfigError;
use dsnn_search::{Configuration, SearchSpace};
use serde::Deserialize;

/// The name experiment files use: `[objective] kind = "learning-curve"`.
const KIND: &str = "learning-curve";

/// The error no network gets below.
const ERROR_FLOOR: f64 = 0.02;

/// `[objective]` without `kind`: this objective's own settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "default_optimum_lr")]
    optimum_lr: f64,
    #[serde(default = "default_diverge_lr")]
    diverge_lr: f64,
}

fn default_optimum_lr() -> f64 {
    0.05
}

fn default_diverge_lr() -> f64 {
    0.8
}

/// The simulated training: validation error and weight count of a network.
struct LearningCurve {
    settings: Settings,
}

impl LearningCurve {
    /// The validation error after `epochs` epochs: the final error (the
    /// floor, plus a penalty for a learning rate away from the optimum and
    /// for a narrow network), approached exponentially.
    fn error(&self, width: f64, lr: f64, epochs: f64) -> f64 {
        let final_error =
            (ERROR_FLOOR + 0.1 * (lr / self.settings.optimum_lr).ln().powi(2) + 1.0 / width)
                .min(1.0);
        final_error + (1.0 - final_error) * (-epochs).exp()
    }

    /// Weights of the network: three 3x3 convolutions of `width` channels.
    fn weights(width: f64) -> f64 {
        3.0 * 9.0 * width * width
    }
}

impl Objective for LearningCurve {
    fn metrics(&self) -> Vec<MetricInfo> {
        vec![
            MetricInfo::new("error", "1 - accuracy", false),
            MetricInfo::new("weights", "count", false),
            MetricInfo::new("accuracy", "fraction", false),
        ]
    }

    fn default_objectives(&self) -> Vec<String> {
        vec!["error".into(), "weights".into()]
    }

    fn default_max_budget(&self) -> f64 {
        9.0
    }

    /// The space must search `width` and `lr`, and nothing else.
    fn check_space(&self, space: &dyn SearchSpace) -> Result<(), SpaceIssue> {
        let names = space.names();
        if let Some(other) = names
            .iter()
            .find(|n| !["width", "lr"].contains(&n.as_str()))
        {
            return Err(SpaceIssue {
                hyperparameter: Some(other.clone()),
                message: format!(
                    "the `{KIND}` objective has no hyperparameter `{other}` (allowed: width, lr)"
                ),
            });
        }
        if names.len() != 2 {
            return Err(SpaceIssue {
                hyperparameter: None,
                message: format!("the `{KIND}` objective needs both `width` and `lr` in `[space]`"),
            });
        }
        Ok(())
    }

    fn evaluate(&self, ctx: &TrialContext) -> Result<Metrics, EvalError> {
        // Long evaluations check the deadline and the cancel flag regularly.
        ctx.control
            .check()
            .map_err(|e| EvalError::Trial(e.to_string()))?;
        let config = &ctx.trial.config;
        let (width, lr) = width_and_lr(config)?;
        if lr > self.settings.diverge_lr {
            // This configuration's failure: recorded with its reason, and
            // the search goes on.
            return Err(EvalError::Trial(format!(
                "diverged: lr {lr} is above {}",
                self.settings.diverge_lr
            )));
        }
        let error = self.error(width, lr, ctx.trial.budget);
        Ok(Metrics::from([
            ("error".to_string(), error),
            ("weights".to_string(), Self::weights(width)),
            ("accuracy".to_string(), 1.0 - error),
        ]))
    }
}

/// `width` and `lr` of a configuration.
fn width_and_lr(config: &Configuration) -> Result<(f64, f64), EvalError> {
    match (config.get_f64("width"), config.get_f64("lr")) {
        (Some(w), Some(lr)) => Ok((w, lr)),
        _ => Err(EvalError::Trial(format!(
            "the configuration lacks `width` or `lr`: {config:?}"
        ))),
    }
}

/// Reads `[objective]` and builds the objective.
struct LearningCurveFactory;

impl ObjectiveFactory for LearningCurveFactory {
    fn description(&self) -> String {
        "a simulated learning curve: error and weights of a network of `width` trained at `lr`"
            .into()
    }

    fn create(&self, setup: &ObjectiveSetup) -> Result<ObjectiveBuild, ConfigError> {
        // Unknown keys and wrong types are located errors (`Section::parse`);
        // so are the range checks (`Section::out_of_range`).
        let settings: Settings = setup.settings.parse()?;
        if !(settings.optimum_lr.is_finite() && settings.optimum_lr > 0.0) {
            return Err(setup
                .settings
                .out_of_range("optimum_lr", settings.optimum_lr, "> 0"));
        }
        if !(settings.diverge_lr.is_finite() && settings.diverge_lr > settings.optimum_lr) {
            return Err(setup.settings.out_of_range(
                "diverge_lr",
                settings.diverge_lr,
                format!("> optimum_lr = {}", settings.optimum_lr),
            ));
        }
        let target = format!(
            "a learning curve with its optimum at lr {}",
            settings.optimum_lr
        );
        Ok(ObjectiveBuild {
            objective: Arc::new(LearningCurve { settings }),
            // Nothing to resolve (no paths, no defaults worth writing out).
            resolved: Vec::new(),
            target,
        })
    }
}

/// dsnn's built-in registry plus this objective.
fn registry() -> Registry {
    let mut registry = dsnn::builtins::registry();
    registry.register_objective(KIND, Arc::new(LearningCurveFactory));
    registry
}

/// The experiment: a Hyperband search with TPE over `width` and `lr`,
/// `trials` trials, run directories under `output_dir`.
fn experiment_text(output_dir: &Path, trials: u64) -> String {
    format!(
        r#"name = "registered-objective"
seed = 7
output_dir = {output_dir:?}

[objective]
kind = "learning-curve"
optimum_lr = 0.05
diverge_lr = 0.8

[space]
hyperparameters = [
  {{ name = "width", type = "int", lower = 4, upper = 256, log = true, default = 16 }},
  {{ name = "lr", type = "float", lower = 0.001, upper = 1.0, log = true, default = 0.1 }},
]

[fidelity]
kind = "hyperband"
min = 1
max = 9
eta = 3

[optimizer]
kind = "tpe"

[executor]
kind = "threads"
workers = 2

[stop]
trials = {trials}
"#,
        output_dir = output_dir.display().to_string()
    )
}

/// Checks the experiment and runs it (or resumes it, or lets it grow).
fn run(output_dir: &Path, trials: u64) -> Result<RunOutcome, Box<dyn std::error::Error>> {
    let text = experiment_text(output_dir, trials);
    let exp = CheckedExperiment::from_str(&text, "registered.toml", Path::new("."), &registry())?;
    Ok(run_experiment(exp, RunOptions::default())?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let output_dir = std::env::current_dir()?.join("runs");
    let outcome = run(&output_dir, 40)?;
    let s = &outcome.summary;
    println!(
        "{}: {} trials ({} failed), {}; front at budget {:?}:",
        outcome.run_dir.display(),
        s.trials,
        s.failed,
        outcome.reason,
        s.budget
    );
    println!("| trial | error | weights | configuration |\n|---|---:|---:|---|");
    for p in &s.front {
        let config: Vec<String> = p.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "| {} | {:.4} | {:.0} | {} |",
            p.trial,
            p.objectives[0],
            p.objectives[1],
            config.join(" ")
        );
    }
    println!("reports: {}", outcome.run_dir.join("summary.md").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsnn::runner::StopReason;
    use dsnn::store::{read_history, RunStore};
    use dsnn_search::Outcome;

    #[test]
    fn a_registered_objective_runs_resumes_and_grows_with_the_whole_machinery() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = run(dir.path(), 12).unwrap();
        assert_eq!(outcome.reason, StopReason::TrialsDone { trials: 12 });
        assert_eq!(outcome.summary.trials, 12);
        assert_eq!(outcome.summary.objectives, ["error", "weights"]);
        for report in ["summary.md", "summary.json", "pareto.csv", "pareto.svg"] {
            assert!(outcome.run_dir.join(report).is_file(), "{report}");
        }

        // The store holds every trial with the metrics the objective
        // computed for its configuration at its budget.
        let h = read_history(&outcome.run_dir.join(RunStore::LOG)).unwrap();
        assert_eq!(h.results.len(), 13, "12 trials and the default");
        let curve = LearningCurve {
            settings: Settings {
                optimum_lr: 0.05,
                diverge_lr: 0.8,
            },
        };
        let mut budgets = std::collections::BTreeSet::new();
        for (trial, report) in &h.results {
            budgets.insert(trial.budget as u64);
            let (width, lr) = width_and_lr(&trial.config).unwrap();
            match &report.outcome {
                Outcome::Success(f) => {
                    let expected = curve.error(width, lr, trial.budget);
                    assert!((f[0] - expected).abs() < 1e-12, "{f:?} vs {expected}");
                    assert_eq!(f[1], LearningCurve::weights(width));
                    assert_eq!(report.metrics["accuracy"], 1.0 - f[0]);
                }
                Outcome::Failure(reason) => {
                    assert!(lr > 0.8, "{reason}");
                    assert!(reason.starts_with("diverged"), "{reason}");
                }
            }
        }
        // Hyperband ran trials at several budgets, the default at the full one.
        assert!(budgets.len() > 1, "{budgets:?}");
        assert_eq!(h.default_trial.as_ref().map(|t| t.budget), Some(9.0));
        // The front is non-dominated and taken at the full budget.
        let front = &outcome.summary.front;
        assert!(!front.is_empty());
        assert!(front.iter().all(|p| p.budget == 9.0));

        // Raising `stop.trials` continues the finished run.
        let grown = run(dir.path(), 20).unwrap();
        assert_eq!(grown.run_dir, outcome.run_dir);
        assert_eq!(grown.summary.trials, 20);
        let h = read_history(&grown.run_dir.join(RunStore::LOG)).unwrap();
        assert_eq!(h.sessions, 2);
        assert_eq!(h.results.len(), 21);
        let ids: std::collections::BTreeSet<u64> = h.results.iter().map(|(t, _)| t.id).collect();
        assert_eq!(ids.len(), 21, "no trial ran twice");
    }

    /// The error of checking `text` (which must be refused).
    fn refused(text: &str) -> ConfigError {
        CheckedExperiment::from_str(text, "exp.toml", Path::new("."), &registry())
            .expect_err("the experiment must be refused")
    }

    #[test]
    fn bad_settings_are_refused_at_their_place() {
        let good = experiment_text(Path::new("/tmp/never-written"), 5);

        // A value out of range: line 7 (`optimum_lr = -1`), column 14.
        let e = refused(&good.replace("optimum_lr = 0.05", "optimum_lr = -1"));
        assert_eq!(e.key.as_deref(), Some("objective.optimum_lr"));
        assert!(
            e.to_string()
                .starts_with("exp.toml:7:14: `objective.optimum_lr` = -1 is out of range"),
            "{e}"
        );
        // An unknown key: located at the key, the allowed ones listed.
        let e = refused(&good.replace("diverge_lr", "diverge_rl"));
        assert!(e.to_string().starts_with("exp.toml:8:1: "), "{e}");
        assert!(
            e.message.contains("unknown field `diverge_rl`")
                && e.message.contains("`optimum_lr`, `diverge_lr`"),
            "{e}"
        );
        // A setting checked against another.
        let e = refused(&good.replace("diverge_lr = 0.8", "diverge_lr = 0.01"));
        assert_eq!(e.key.as_deref(), Some("objective.diverge_lr"));
        assert!(e.message.contains("> optimum_lr = 0.05"), "{e}");
        // A hyperparameter the objective does not take: at its entry.
        let e = refused(&good.replace(
            "]\n\n[fidelity]",
            "  { name = \"depth\", type = \"int\", lower = 1, upper = 4 },\n]\n\n[fidelity]",
        ));
        assert_eq!(e.key.as_deref(), Some("space.hyperparameters.2"));
        assert!(e.to_string().starts_with("exp.toml:14:3: "), "{e}");
        // A misspelt objective: the registered names are listed.
        let e = refused(&good.replace("kind = \"learning-curve\"", "kind = \"learning\""));
        assert!(
            e.message.contains("unknown objective `learning`")
                && e.message.contains("`learning-curve`"),
            "{e}"
        );
    }
}
