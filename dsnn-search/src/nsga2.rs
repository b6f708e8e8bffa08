//! NSGA-II (Deb et al. 2002) in ask/tell form, on the unit-cube encoding.
//!
//! Defaults follow pymoo: population 100, as many offspring per generation,
//! binary tournament, SBX crossover (probability 0.9, eta 15, each variable
//! exchanged with probability 0.5), polynomial mutation (eta 20, probability
//! 1/n per variable), duplicate elimination. Integer and ordinal coordinates are
//! varied on the cube and rounded by decoding (their bins have equal width);
//! categorical coordinates are inherited from either parent with equal
//! probability and mutate to a uniformly drawn other category.
//!
//! Optuna's operators are available too ([`Crossover::Uniform`],
//! [`Mutation::Uniform`]): with a population of 40 at 1,000 evaluations they
//! do better than SBX and polynomial mutation on five of the seven benchmark
//! problems (ZDT2 0.95 against 1.35 IGD+), see `docs/search.md`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::optimizer::{
    Observation, Optimizer, OptimizerError, Outcome, Trial, TrialBook, TrialId,
};
use crate::pareto::{crowding_distance, non_dominated_sort, select_by_rank, TieBreak};
use crate::space::{Configuration, DimKind, SearchSpace};

/// NSGA-II settings (pymoo's defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct Nsga2Settings {
    /// Population size (survivors per generation).
    pub population: usize,
    /// Offspring per generation.
    pub offspring: usize,
    /// Probability that a mating pair is recombined.
    pub crossover_prob: f64,
    /// SBX distribution index.
    pub crossover_eta: f64,
    /// Per-variable exchange probability inside SBX.
    pub crossover_var_prob: f64,
    /// Polynomial mutation distribution index.
    pub mutation_eta: f64,
    /// Per-variable mutation probability; `None` means 1/n.
    pub mutation_prob: Option<f64>,
    /// Recombination of numeric coordinates.
    pub crossover: Crossover,
    /// Mutation of numeric coordinates.
    pub mutation: Mutation,
    /// Budget every trial runs at.
    pub budget: f64,
}

/// How NSGA-II recombines the numeric coordinates of two parents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crossover {
    /// Simulated binary crossover (pymoo's default), each variable with
    /// probability `crossover_var_prob`.
    Sbx,
    /// Each variable swapped between the children with probability
    /// `crossover_var_prob` (Optuna's default, with 0.5).
    Uniform,
}

/// How NSGA-II mutates a numeric coordinate selected for mutation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Polynomial mutation with index `mutation_eta` (pymoo's default).
    Polynomial,
    /// A fresh uniform value in the unit cube (Optuna's default: resampling
    /// from the prior).
    Uniform,
}

impl Default for Nsga2Settings {
    fn default() -> Self {
        Nsga2Settings {
            population: 100,
            offspring: 100,
            crossover_prob: 0.9,
            crossover_eta: 15.0,
            crossover_var_prob: 0.5,
            mutation_eta: 20.0,
            mutation_prob: None,
            crossover: Crossover::Sbx,
            mutation: Mutation::Polynomial,
            budget: 1.0,
        }
    }
}

impl Nsga2Settings {
    /// The defaults for a run of `total_evaluations` trials (the experiment's
    /// `stop.trials`; `None` when it stops otherwise, then as for 5,000): a
    /// population of `total / 50` within 10..=100, so that a run lasts about
    /// 50 generations, as many offspring, and Optuna's operators (uniform
    /// crossover, uniform resampling mutation). Chosen on the whole benchmark
    /// suite (ZDT, DTLZ1-7 and WFG1-9 with 2 and 3 objectives; table in
    /// `docs/search.md`): at 1,000 evaluations a population of 20 with these
    /// operators is below pymoo's and Optuna's NSGA-II on 35 of 37 problems,
    /// pymoo's population of 100 on 5.
    pub fn for_budget(total_evaluations: Option<u64>) -> Nsga2Settings {
        let population = (total_evaluations.unwrap_or(5_000) / 50).clamp(10, 100) as usize;
        Nsga2Settings {
            population,
            offspring: population,
            crossover: Crossover::Uniform,
            mutation: Mutation::Uniform,
            ..Nsga2Settings::default()
        }
    }
}

#[derive(Clone, Debug)]
struct Individual {
    genome: Vec<f64>,
    config: Configuration,
    objectives: Vec<f64>,
}

/// The NSGA-II optimizer.
///
/// Generational: `ask` hands out the current generation's offspring and returns
/// fewer trials (possibly none) once they are all out, until every one has been
/// told; then survival selection runs and the next generation is bred. Failed
/// trials never survive and never enter the ranking.
pub struct Nsga2 {
    space: Arc<dyn SearchSpace>,
    kinds: Vec<DimKind>,
    settings: Nsga2Settings,
    rng: ChaCha8Rng,
    book: TrialBook,
    population: Vec<Individual>,
    queue: VecDeque<(Vec<f64>, Configuration)>,
    outstanding: BTreeMap<TrialId, (Vec<f64>, Configuration)>,
    finished: Vec<Individual>,
    generation: usize,
}

impl Nsga2 {
    /// NSGA-II over `space` with `settings`, seeded by `seed`.
    pub fn new(
        space: Arc<dyn SearchSpace>,
        settings: Nsga2Settings,
        seed: u64,
    ) -> Result<Self, OptimizerError> {
        if settings.population < 2 || settings.offspring < 1 {
            return Err(OptimizerError::Invalid(
                "NSGA-II needs a population of at least 2 and at least 1 offspring".into(),
            ));
        }
        let kinds = space.kinds();
        let mut opt = Nsga2 {
            space,
            kinds,
            settings,
            rng: ChaCha8Rng::seed_from_u64(seed),
            book: TrialBook::default(),
            population: Vec::new(),
            queue: VecDeque::new(),
            outstanding: BTreeMap::new(),
            finished: Vec::new(),
            generation: 0,
        };
        let n = opt.settings.population;
        for _ in 0..n {
            let c = opt.random_individual()?;
            opt.queue.push_back(c);
        }
        Ok(opt)
    }

    /// The current surviving population's configurations and objectives.
    pub fn population(&self) -> Vec<(Configuration, Vec<f64>)> {
        self.population
            .iter()
            .map(|i| (i.config.clone(), i.objectives.clone()))
            .collect()
    }

    /// Number of completed generations.
    pub fn generation(&self) -> usize {
        self.generation
    }

    /// Every finished trial, in the order told.
    pub fn history(&self) -> &[Observation] {
        self.book.history()
    }

    fn random_individual(&mut self) -> Result<(Vec<f64>, Configuration), OptimizerError> {
        let c = self.space.sample(&mut self.rng)?;
        let mut g = self.space.encode(&c)?;
        // Inactive coordinates still carry genes, so that they can be inherited.
        for v in g.iter_mut() {
            if v.is_nan() {
                *v = self.rng.random();
            }
        }
        Ok((g, c))
    }

    /// Decode a genome; `None` if the result is forbidden.
    fn express(&self, genome: &[f64]) -> Option<Configuration> {
        let c = self.space.decode(genome).ok()?;
        (!self.space.is_forbidden(&c)).then_some(c)
    }

    fn tournament(&mut self, rank: &[usize], crowd: &[f64]) -> usize {
        let n = self.population.len();
        let a = self.rng.random_range(0..n);
        let b = self.rng.random_range(0..n);
        if rank[a] != rank[b] {
            return if rank[a] < rank[b] { a } else { b };
        }
        if crowd[a] != crowd[b] {
            return if crowd[a] > crowd[b] { a } else { b };
        }
        if self.rng.random::<bool>() {
            a
        } else {
            b
        }
    }

    fn sbx(&mut self, p1: &[f64], p2: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let (mut c1, mut c2) = (p1.to_vec(), p2.to_vec());
        if self.rng.random::<f64>() >= self.settings.crossover_prob {
            return (c1, c2);
        }
        let eta = self.settings.crossover_eta;
        for k in 0..p1.len() {
            match self.kinds[k] {
                DimKind::Constant => continue,
                DimKind::Categorical(_) => {
                    if self.rng.random::<f64>() < 0.5 {
                        std::mem::swap(&mut c1[k], &mut c2[k]);
                    }
                    continue;
                }
                _ => {}
            }
            if self.rng.random::<f64>() >= self.settings.crossover_var_prob {
                continue;
            }
            if self.settings.crossover == Crossover::Uniform {
                std::mem::swap(&mut c1[k], &mut c2[k]);
                continue;
            }
            let (y1, y2) = if p1[k] < p2[k] {
                (p1[k], p2[k])
            } else {
                (p2[k], p1[k])
            };
            if y2 - y1 < 1e-14 {
                continue;
            }
            let u: f64 = self.rng.random();
            let betaq = |beta: f64| {
                let alpha = 2.0 - beta.powf(-(eta + 1.0));
                if u <= 1.0 / alpha {
                    (u * alpha).powf(1.0 / (eta + 1.0))
                } else {
                    (1.0 / (2.0 - u * alpha)).powf(1.0 / (eta + 1.0))
                }
            };
            let b1 = betaq(1.0 + 2.0 * y1 / (y2 - y1));
            let b2 = betaq(1.0 + 2.0 * (1.0 - y2) / (y2 - y1));
            let mut x1 = (0.5 * ((y1 + y2) - b1 * (y2 - y1))).clamp(0.0, 1.0);
            let mut x2 = (0.5 * ((y1 + y2) + b2 * (y2 - y1))).clamp(0.0, 1.0);
            if self.rng.random::<bool>() {
                std::mem::swap(&mut x1, &mut x2);
            }
            c1[k] = x1;
            c2[k] = x2;
        }
        (c1, c2)
    }

    fn mutate(&mut self, g: &mut [f64]) {
        let prob = self
            .settings
            .mutation_prob
            .unwrap_or_else(|| DimKind::one_per_varying(&self.kinds));
        let eta = self.settings.mutation_eta;
        for (k, gk) in g.iter_mut().enumerate() {
            if self.kinds[k] == DimKind::Constant || self.rng.random::<f64>() >= prob {
                continue;
            }
            if let DimKind::Categorical(n) = self.kinds[k] {
                if n > 1 {
                    let cur = ((*gk * n as f64).floor() as usize).min(n - 1);
                    let mut other = self.rng.random_range(0..n - 1);
                    if other >= cur {
                        other += 1;
                    }
                    *gk = (other as f64 + 0.5) / n as f64;
                }
                continue;
            }
            if self.settings.mutation == Mutation::Uniform {
                *gk = self.rng.random();
                continue;
            }
            let y = *gk;
            let u: f64 = self.rng.random();
            let pow = 1.0 / (eta + 1.0);
            let dq = if u < 0.5 {
                let v = 2.0 * u + (1.0 - 2.0 * u) * (1.0 - y).powf(eta + 1.0);
                v.powf(pow) - 1.0
            } else {
                let v = 2.0 * (1.0 - u) + 2.0 * (u - 0.5) * y.powf(eta + 1.0);
                1.0 - v.powf(pow)
            };
            *gk = (y + dq).clamp(0.0, 1.0);
        }
    }

    /// Survival of the fittest among parents and finished offspring, then breed.
    fn next_generation(&mut self) -> Result<(), OptimizerError> {
        let mut pool = std::mem::take(&mut self.population);
        pool.append(&mut self.finished);
        let objs: Vec<&Vec<f64>> = pool.iter().map(|i| &i.objectives).collect();
        let keep = select_by_rank(&objs, self.settings.population, TieBreak::Crowding);
        let mut keep_sorted = keep.clone();
        keep_sorted.sort_unstable();
        self.population = keep_sorted.into_iter().map(|i| pool[i].clone()).collect();
        self.generation += 1;
        log::debug!(
            "nsga2: generation {} survivors {}",
            self.generation,
            self.population.len()
        );
        if self.population.len() < 2 {
            // Too few successes to mate: sample afresh.
            for _ in 0..self.settings.offspring {
                let c = self.random_individual()?;
                self.queue.push_back(c);
            }
            return Ok(());
        }
        let objs: Vec<&Vec<f64>> = self.population.iter().map(|i| &i.objectives).collect();
        let mut rank = vec![0; objs.len()];
        let mut crowd = vec![0.0; objs.len()];
        for (r, front) in non_dominated_sort(&objs).iter().enumerate() {
            let cd = crowding_distance(&objs, front);
            for (j, &i) in front.iter().enumerate() {
                rank[i] = r;
                crowd[i] = cd[j];
            }
        }
        let mut seen: Vec<Configuration> =
            self.population.iter().map(|i| i.config.clone()).collect();
        let mut tries = 0;
        while self.queue.len() < self.settings.offspring {
            let a = self.tournament(&rank, &crowd);
            let b = self.tournament(&rank, &crowd);
            let (pa, pb) = (
                self.population[a].genome.clone(),
                self.population[b].genome.clone(),
            );
            let (mut c1, mut c2) = self.sbx(&pa, &pb);
            self.mutate(&mut c1);
            self.mutate(&mut c2);
            for g in [c1, c2] {
                if self.queue.len() >= self.settings.offspring {
                    break;
                }
                tries += 1;
                match self.express(&g) {
                    Some(c) if !seen.contains(&c) => {
                        seen.push(c.clone());
                        self.queue.push_back((g, c));
                    }
                    _ if tries > 50 * self.settings.offspring => {
                        // The population has converged onto few points: diversify.
                        let c = self.random_individual()?;
                        self.queue.push_back(c);
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

impl Optimizer for Nsga2 {
    fn name(&self) -> String {
        "nsga2".into()
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Trial>, OptimizerError> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if self.queue.is_empty() {
                if self.outstanding.is_empty() {
                    self.next_generation()?;
                } else {
                    break;
                }
            }
            let Some((g, c)) = self.queue.pop_front() else {
                break;
            };
            let t = self.book.issue(c.clone(), self.settings.budget);
            self.outstanding.insert(t.id, (g, c));
            out.push(t);
        }
        Ok(out)
    }

    fn tell(&mut self, id: TrialId, outcome: Outcome) -> Result<(), OptimizerError> {
        let obs = self.book.accept(id, outcome)?;
        let (genome, config) = self
            .outstanding
            .remove(&id)
            .ok_or(OptimizerError::UnknownTrial(id))?;
        if let Outcome::Success(f) = obs.outcome {
            self.finished.push(Individual {
                genome,
                config,
                objectives: f,
            });
        }
        debug_assert_eq!(self.outstanding.len(), self.book.n_pending());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problems::TestProblem;

    fn nsga2(settings: Nsga2Settings) -> Nsga2 {
        Nsga2::new(Arc::new(TestProblem::zdt1().space()), settings, 5).unwrap()
    }

    #[test]
    fn budget_derived_population_and_operators() {
        let sizes: Vec<usize> = [Some(100), Some(1000), Some(2000), Some(100_000), None]
            .into_iter()
            .map(|t| Nsga2Settings::for_budget(t).population)
            .collect();
        assert_eq!(sizes, [10, 20, 40, 100, 100]);
        let s = Nsga2Settings::for_budget(Some(1000));
        assert_eq!(s.offspring, s.population);
        assert_eq!(
            (s.crossover, s.mutation),
            (Crossover::Uniform, Mutation::Uniform)
        );
        nsga2(s);
    }

    #[test]
    fn uniform_crossover_swaps_whole_genes() {
        let mut o = nsga2(Nsga2Settings {
            crossover: Crossover::Uniform,
            crossover_prob: 1.0,
            ..Default::default()
        });
        let p1: Vec<f64> = (0..30).map(|k| k as f64 / 100.0).collect();
        let p2: Vec<f64> = (0..30).map(|k| 0.5 + k as f64 / 100.0).collect();
        let (c1, c2) = o.sbx(&p1, &p2);
        let mut swapped = 0;
        for k in 0..30 {
            if c1[k] == p2[k] {
                assert_eq!(c2[k], p1[k]);
                swapped += 1;
            } else {
                assert_eq!((c1[k], c2[k]), (p1[k], p2[k]));
            }
        }
        // About half of 30 genes swap (probability 0.5 each).
        assert!((5..=25).contains(&swapped), "{swapped}");
    }

    #[test]
    fn uniform_mutation_resamples_selected_genes() {
        let g0 = vec![0.5; 30];
        let mut o = nsga2(Nsga2Settings {
            mutation: Mutation::Uniform,
            mutation_prob: Some(1.0),
            ..Default::default()
        });
        let mut g = g0.clone();
        o.mutate(&mut g);
        assert!(g.iter().all(|v| (0.0..1.0).contains(v) && *v != 0.5));
        // Spread over the cube, unlike polynomial mutation's small steps.
        assert!(g.iter().any(|v| *v < 0.2) && g.iter().any(|v| *v > 0.8));
        let mut o = nsga2(Nsga2Settings {
            mutation: Mutation::Uniform,
            mutation_prob: Some(0.0),
            ..Default::default()
        });
        let mut g = g0.clone();
        o.mutate(&mut g);
        assert_eq!(g, g0);
    }
}
