//! Library use (3): read a run directory written by `dsnn run` and compute
//! its Pareto front and hypervolume with dsnn's library, without the CLI.
//!
//! ```sh
//! cargo run --release -- run examples/experiments/quickstart.toml
//! cargo run --release --example read_run_store -- runs/quickstart
//! ```

use std::path::Path;

use dsnn::executor::trial_label;
use dsnn::store::{read_history, RunInfo, RunStore};
use dsnn_search::{pareto, Outcome};

/// What this example reads out of a run directory.
#[derive(Debug)]
pub struct RunAnalysis {
    /// Objective names, in order.
    pub objectives: Vec<String>,
    /// Finished trials (the default configuration included).
    pub finished: usize,
    /// Of those, how many failed.
    pub failed: usize,
    /// The largest budget a trial succeeded at; the front is taken there.
    pub budget: f64,
    /// The front at that budget: trial id and objectives.
    pub front: Vec<(u64, Vec<f64>)>,
    /// Its hypervolume after scaling each objective to the range of the
    /// successful trials at the budget, as a fraction of the box `[0, 1.1]^m`.
    pub normalized_hypervolume: f64,
}

/// Reads `run_dir`'s experiment and trial log.
pub fn analyse(run_dir: &Path) -> Result<RunAnalysis, Box<dyn std::error::Error>> {
    let objectives = RunInfo::read(run_dir)?.objectives;
    let history = read_history(&run_dir.join(RunStore::LOG))?;
    let successes: Vec<(u64, f64, &Vec<f64>)> = history
        .results
        .iter()
        .filter_map(|(trial, report)| match &report.outcome {
            Outcome::Success(f) => Some((trial.id, trial.budget, f)),
            Outcome::Failure(_) => None,
        })
        .collect();
    let budget = successes
        .iter()
        .map(|s| s.1)
        .reduce(f64::max)
        .ok_or("no trial of this run succeeded")?;
    let at_budget: Vec<(u64, &Vec<f64>)> = successes
        .iter()
        .filter(|s| s.1 == budget)
        .map(|s| (s.0, s.2))
        .collect();
    let points: Vec<&Vec<f64>> = at_budget.iter().map(|p| p.1).collect();
    let front: Vec<(u64, Vec<f64>)> = pareto::non_dominated(&points)
        .into_iter()
        .map(|i| (at_budget[i].0, at_budget[i].1.clone()))
        .collect();
    // Scale each objective to [0, 1] over the trials at the budget.
    let m = objectives.len();
    let lo: Vec<f64> = (0..m)
        .map(|k| points.iter().map(|p| p[k]).fold(f64::INFINITY, f64::min))
        .collect();
    let hi: Vec<f64> = (0..m)
        .map(|k| {
            points
                .iter()
                .map(|p| p[k])
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .collect();
    let scaled: Vec<Vec<f64>> = front
        .iter()
        .map(|(_, f)| {
            (0..m)
                .map(|k| {
                    let span = hi[k] - lo[k];
                    if span > 0.0 {
                        (f[k] - lo[k]) / span
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    let box_volume = 1.1f64.powi(m as i32);
    Ok(RunAnalysis {
        objectives,
        finished: history.results.len(),
        failed: history
            .results
            .iter()
            .filter(|(_, r)| matches!(r.outcome, Outcome::Failure(_)))
            .count(),
        budget,
        normalized_hypervolume: pareto::hypervolume(&scaled, &vec![1.1; m]) / box_volume,
        front,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(run_dir) = std::env::args().nth(1) else {
        return Err("usage: read_run_store RUN_DIR (a directory `dsnn run` wrote)".into());
    };
    let a = analyse(Path::new(&run_dir))?;
    println!(
        "{run_dir}: {} trials finished ({} failed); front at budget {} ({} points):",
        a.finished,
        a.failed,
        a.budget,
        a.front.len()
    );
    println!("| trial | {} |", a.objectives.join(" | "));
    println!("|---|{}", "---:|".repeat(a.objectives.len()));
    for (id, f) in &a.front {
        let values: Vec<String> = f.iter().map(|v| format!("{v:.6}")).collect();
        println!("| {} | {} |", trial_label(*id), values.join(" | "));
    }
    println!("normalised hypervolume: {:.4}", a.normalized_hypervolume);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsnn::experiment::CheckedExperiment;
    use dsnn::runner::{run_experiment, RunOptions};

    #[test]
    fn the_front_and_hypervolume_read_back_match_the_runs_own_summary() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"
name = "zdt"
seed = 3
output_dir = "runs"
[problem]
name = "zdt1"
dimensions = 4
[optimizer]
kind = "random"
[executor]
kind = "threads"
workers = 2
[stop]
trials = 30
"#;
        let registry = dsnn::builtins::registry();
        let exp = CheckedExperiment::from_str(text, "zdt.toml", dir.path(), &registry).unwrap();
        let outcome = run_experiment(exp, RunOptions::default()).unwrap();
        let a = analyse(&outcome.run_dir).unwrap();
        assert_eq!(a.objectives, vec!["f1", "f2"]);
        assert_eq!((a.finished, a.failed), (31, 0), "30 trials and the default");
        assert!(!a.front.is_empty());
        // Nothing on the front dominates anything else on it.
        for (_, f) in &a.front {
            assert!(!a.front.iter().any(|(_, g)| pareto::dominates(g, f)));
        }
        let s = &outcome.summary;
        let mut ids: Vec<String> = a.front.iter().map(|(id, _)| trial_label(*id)).collect();
        let mut expected: Vec<String> = s.front.iter().map(|p| p.trial.clone()).collect();
        ids.sort();
        expected.sort();
        assert_eq!(ids, expected);
        let hv = s.normalized_hypervolume.unwrap();
        assert!(
            (a.normalized_hypervolume - hv).abs() < 1e-12 && hv > 0.0,
            "{} vs {hv}",
            a.normalized_hypervolume
        );
    }
}
