//! Library use (2): a new optimizer written against dsnn's `Optimizer`
//! trait, run on a known test problem beside built-in random search.
//!
//! The optimizer is a small archive-based evolutionary search: it keeps the
//! non-dominated configurations seen so far and proposes mutants of them
//! (each unit-cube coordinate moved with probability 1/d), with a share of
//! random samples. The same type, put in a `cdylib` with the plugin API's
//! `optimizer_from`, becomes a plugin (docs/plugins.md).
//!
//! ```sh
//! cargo run --release --example custom_optimizer
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use dsnn_search::problems::{ProblemKind, TestProblem};
use dsnn_search::{
    pareto, Optimizer, OptimizerError, Outcome, RandomSearch, SearchSpace, Trial, TrialId,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Archive-based mutation search (see the module docs).
pub struct ArchiveSearch {
    space: Arc<dyn SearchSpace>,
    rng: StdRng,
    budget: f64,
    next_id: TrialId,
    /// Trials asked and not told yet: their unit-cube points.
    pending: HashMap<TrialId, Vec<f64>>,
    /// Non-dominated (point, objectives) told so far.
    archive: Vec<(Vec<f64>, Vec<f64>)>,
}

impl ArchiveSearch {
    /// A search over `space` at a fixed `budget`, seeded.
    pub fn new(space: Arc<dyn SearchSpace>, budget: f64, seed: u64) -> Self {
        ArchiveSearch {
            space,
            rng: StdRng::seed_from_u64(seed),
            budget,
            next_id: 0,
            pending: HashMap::new(),
            archive: Vec::new(),
        }
    }

    /// A unit-cube point to try next: a random sample at first and now and
    /// then, else a mutant of an archive member.
    fn propose(&mut self) -> Result<Vec<f64>, OptimizerError> {
        if self.archive.len() < 5 || self.rng.random::<f64>() < 0.1 {
            let c = self.space.sample(&mut self.rng)?;
            return Ok(self.space.encode(&c)?);
        }
        let parent = &self.archive[self.rng.random_range(0..self.archive.len())].0;
        let d = parent.len() as f64;
        let mut u = parent.clone();
        for v in u.iter_mut().filter(|v| !v.is_nan()) {
            if self.rng.random::<f64>() < 1.0 / d {
                *v = (*v + self.rng.random_range(-0.15..0.15)).clamp(0.0, 1.0);
            }
        }
        // Decode and encode again: rounds integers and categories to values.
        let c = self.space.decode(&u)?;
        Ok(self.space.encode(&c)?)
    }
}

impl Optimizer for ArchiveSearch {
    fn name(&self) -> String {
        "archive-search".into()
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Trial>, OptimizerError> {
        (0..n)
            .map(|_| {
                let u = self.propose()?;
                let trial = Trial {
                    id: self.next_id,
                    config: self.space.decode(&u)?,
                    budget: self.budget,
                };
                self.next_id += 1;
                self.pending.insert(trial.id, u);
                Ok(trial)
            })
            .collect()
    }

    fn tell(&mut self, id: TrialId, outcome: Outcome) -> Result<(), OptimizerError> {
        let u = self
            .pending
            .remove(&id)
            .ok_or(OptimizerError::UnknownTrial(id))?;
        // A failed trial teaches this search nothing.
        let Outcome::Success(f) = outcome else {
            return Ok(());
        };
        if f.iter().any(|v| !v.is_finite()) {
            return Err(OptimizerError::NonFinite(id));
        }
        if self
            .archive
            .iter()
            .any(|(_, g)| *g == f || pareto::dominates(g, &f))
        {
            return Ok(());
        }
        self.archive.retain(|(_, g)| !pareto::dominates(&f, g));
        self.archive.push((u, f));
        Ok(())
    }
}

/// Hypervolume (reference 1.1, 1.1) of everything `opt` evaluated on
/// ZDT1 with 10 variables in `evaluations` trials.
fn zdt1_hypervolume(opt: &mut dyn Optimizer, evaluations: usize) -> Result<f64, OptimizerError> {
    let problem = TestProblem::new(ProblemKind::Zdt1, 10, 2);
    let points = problem.minimise(opt, evaluations, 10)?;
    Ok(pareto::hypervolume(&points, &[1.1, 1.1]))
}

fn main() -> Result<(), OptimizerError> {
    let problem = TestProblem::new(ProblemKind::Zdt1, 10, 2);
    let space: Arc<dyn SearchSpace> = Arc::new(problem.space());
    let optimum = problem.optimal_hypervolume().unwrap_or(f64::NAN);
    println!("ZDT1, 10 variables; hypervolume at (1.1, 1.1), optimum {optimum:.4}");
    println!("| evaluations | archive search | random search |\n|---:|---:|---:|");
    for evaluations in [500, 2000, 5000] {
        let ours = zdt1_hypervolume(&mut ArchiveSearch::new(space.clone(), 1.0, 0), evaluations)?;
        let random = zdt1_hypervolume(
            &mut RandomSearch::random(space.clone(), 1.0, 0),
            evaluations,
        )?;
        println!("| {evaluations} | {ours:.4} | {random:.4} |");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_search_beats_random_search_on_zdt1() {
        let problem = TestProblem::new(ProblemKind::Zdt1, 10, 2);
        let space: Arc<dyn SearchSpace> = Arc::new(problem.space());
        let ours = zdt1_hypervolume(&mut ArchiveSearch::new(space.clone(), 1.0, 0), 2000).unwrap();
        let random =
            zdt1_hypervolume(&mut RandomSearch::random(space.clone(), 1.0, 0), 2000).unwrap();
        let optimum = problem.optimal_hypervolume().unwrap();
        assert!(
            ours > 0.7 * optimum && ours <= optimum,
            "{ours} of {optimum}"
        );
        assert!(ours > random + 0.2, "{ours} vs random {random}");
    }

    #[test]
    fn tell_checks_its_trials() {
        let space: Arc<dyn SearchSpace> =
            Arc::new(TestProblem::new(ProblemKind::Zdt1, 3, 2).space());
        let mut opt = ArchiveSearch::new(space, 1.0, 0);
        let trials = opt.ask(2).unwrap();
        assert!(matches!(
            opt.tell(99, Outcome::Success(vec![0.0, 0.0])),
            Err(OptimizerError::UnknownTrial(99))
        ));
        assert!(matches!(
            opt.tell(trials[0].id, Outcome::Success(vec![f64::NAN, 0.0])),
            Err(OptimizerError::NonFinite(_))
        ));
        opt.tell(trials[1].id, Outcome::Failure("diverged".into()))
            .unwrap();
        assert!(opt
            .tell(trials[1].id, Outcome::Success(vec![0.0, 0.0]))
            .is_err());
    }
}
