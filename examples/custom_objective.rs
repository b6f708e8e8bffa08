//! Library use (1): a search over an objective written in Rust, with one of
//! dsnn's built-in optimizers (NSGA-II), driven by its ask/tell interface.
//!
//! The objective is Schaffer's two-objective problem, `f1 = x^2` and
//! `f2 = (x - 2)^2`, with a categorical switch that adds a penalty: the
//! optimal trade-offs are `x` in `[0, 2]` without the penalty, so the result
//! can be checked. Replace `evaluate` with your own function (a model you
//! train, a simulator you call) and the space with your hyperparameters.
//!
//! ```sh
//! cargo run --release --example custom_objective
//! ```

use std::sync::Arc;

use dsnn_search::{
    pareto, Configuration, ConfigurationSpace, Hyperparameter, Nsga2, Nsga2Settings, Optimizer,
    OptimizerError, Outcome,
};

/// The objective: two values to minimise for one configuration.
fn evaluate(config: &Configuration) -> Vec<f64> {
    let x = config.get_f64("x").expect("x is always active");
    let penalty = match config.get_str("penalty") {
        Some("on") => 1.0,
        _ => 0.0,
    };
    vec![x * x + penalty, (x - 2.0).powi(2) + penalty]
}

/// The search space: a float and a categorical hyperparameter.
fn space() -> ConfigurationSpace {
    ConfigurationSpace::new(
        vec![
            Hyperparameter::float("x", -10.0, 10.0, false, Some(5.0)),
            Hyperparameter::categorical("penalty", &["off", "on"], Some("on")),
        ],
        vec![],
        vec![],
    )
    .expect("a valid space")
}

/// Runs NSGA-II for `evaluations` trials; returns every evaluated
/// configuration with its objectives.
fn search(evaluations: usize, seed: u64) -> Result<Vec<(Configuration, Vec<f64>)>, OptimizerError> {
    let settings = Nsga2Settings {
        population: 20,
        offspring: 20,
        ..Nsga2Settings::default()
    };
    let mut optimizer = Nsga2::new(Arc::new(space()), settings, seed)?;
    let mut evaluated = Vec::new();
    while evaluated.len() < evaluations {
        // Ask for a batch (a generation), evaluate it, tell every result.
        let trials = optimizer.ask(20)?;
        if trials.is_empty() {
            break; // the optimizer has nothing more to propose
        }
        for trial in trials {
            let f = evaluate(&trial.config);
            optimizer.tell(trial.id, Outcome::Success(f.clone()))?;
            evaluated.push((trial.config, f));
        }
    }
    Ok(evaluated)
}

/// The hypervolume of the true front at reference (4.4, 4.4): the front is
/// `f2 = (sqrt(f1) - 2)^2` for `f1` in `[0, 4]`, integrated numerically.
fn optimal_hypervolume() -> f64 {
    let n = 200_000;
    let r = 4.4;
    (0..n)
        .map(|i| {
            let f1 = 4.0 * (i as f64 + 0.5) / n as f64;
            (r - (f1.sqrt() - 2.0).powi(2)) * (4.0 / n as f64)
        })
        .sum::<f64>()
        + (r - 4.0) * r
}

fn main() -> Result<(), OptimizerError> {
    let evaluated = search(400, 1)?;
    let points: Vec<&Vec<f64>> = evaluated.iter().map(|(_, f)| f).collect();
    let front = pareto::non_dominated(&points);
    println!(
        "{} evaluations, {} on the Pareto front:",
        evaluated.len(),
        front.len()
    );
    println!("| x | penalty | f1 | f2 |\n|---:|---|---:|---:|");
    let mut rows: Vec<&(Configuration, Vec<f64>)> = front.iter().map(|&i| &evaluated[i]).collect();
    rows.sort_by(|a, b| a.1[0].total_cmp(&b.1[0]));
    for (c, f) in rows.iter().step_by((rows.len() / 10).max(1)) {
        println!(
            "| {:.3} | {} | {:.4} | {:.4} |",
            c.get_f64("x").unwrap_or(f64::NAN),
            c.get_str("penalty").unwrap_or("?"),
            f[0],
            f[1]
        );
    }
    let on_front: Vec<&Vec<f64>> = front.iter().map(|&i| &evaluated[i].1).collect();
    let hv = pareto::hypervolume(&on_front, &[4.4, 4.4]);
    println!(
        "hypervolume at (4.4, 4.4): {hv:.4} of an optimal {:.4}",
        optimal_hypervolume()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsga2_finds_the_true_front_of_a_rust_objective() {
        let evaluated = search(400, 1).unwrap();
        assert_eq!(evaluated.len(), 400);
        let points: Vec<&Vec<f64>> = evaluated.iter().map(|(_, f)| f).collect();
        let front: Vec<&(Configuration, Vec<f64>)> = pareto::non_dominated(&points)
            .into_iter()
            .map(|i| &evaluated[i])
            .collect();
        // Every optimal trade-off has the penalty off and x in [0, 2].
        for (c, _) in &front {
            assert_eq!(c.get_str("penalty"), Some("off"), "{c:?}");
            let x = c.get_f64("x").unwrap();
            assert!((-0.01..=2.01).contains(&x), "x = {x}");
        }
        let on_front: Vec<&Vec<f64>> = front.iter().map(|(_, f)| f).collect();
        let hv = pareto::hypervolume(&on_front, &[4.4, 4.4]);
        let best = optimal_hypervolume();
        assert!(hv > 0.98 * best && hv <= best + 1e-9, "{hv} of {best}");
    }
}
