//! MOEA/D as a dsnn optimizer plugin.
//!
//! MOEA/D (Zhang and Li, "MOEA/D: A Multiobjective Evolutionary Algorithm
//! Based on Decomposition", IEEE TEC 11(6), 2007) splits a multi-objective
//! problem into `N` scalar subproblems, one per weight vector `λ`, each
//! minimising the Tchebycheff function
//! `g(x | λ, z) = max_k λ_k |f_k(x) − z_k|` against the ideal point `z`
//! (the best value seen for each objective). Each subproblem keeps one
//! solution and knows its `T` neighbours (the subproblems with the closest
//! weights); a child is bred from two neighbours' solutions (SBX crossover
//! and polynomial mutation in the unit cube of the search space, as in the
//! paper's ZDT experiments) and replaces every neighbour's solution that it
//! improves.
//!
//! Ask/tell: the first `N` trials are the random initial population; a
//! failed initial trial is replaced by another random one. After that each
//! asked trial is a child of the next subproblem (a shuffled sweep); when
//! it is told, the ideal point and the neighbourhood are updated. A failed
//! child changes nothing. Several children may be pending at once.
//!
//! Settings (all optional): `objectives` (the run's number of objectives in
//! a dsnn of plugin interface 1.1, which tells it; 2 otherwise), `population` (100; for three
//! or more objectives the largest simplex lattice that fits), `neighbours`
//! (20), `delta` (probability of mating within the neighbourhood rather
//! than the whole population, 1.0 as in the paper), `max_replacements`
//! (0 = no limit, as in the paper), `crossover_eta` (20), `mutation_eta`
//! (20), `mutation_prob` (1/d), `normalize` (true: objectives divided by
//! their range in the population before scalarising, which matters when
//! objectives have different units), `budget` (the run's `fidelity.max`
//! under interface 1.1, where a different value is an error; 1.0 otherwise).

use std::collections::BTreeMap;

use abi_stable::export_root_module;
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::std_types::{RResult, RStr};
use dsnn_plugin_api::dsnn_search::{
    Configuration, ConfigurationSpace, Optimizer, OptimizerError, Outcome, SearchSpace, Trial,
    TrialId,
};
use dsnn_plugin_api::{optimizer_from, optimizer_with_context_from};
use dsnn_plugin_api::{OptimizerBox, OptimizerPlugin, OptimizerPluginRef};
use dsnn_plugin_api::{PContext, PError, Settings};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The settings of [`Moead`].
#[derive(Debug, Clone, PartialEq)]
pub struct MoeadSettings {
    /// Number of objectives `m`.
    pub objectives: usize,
    /// Requested number of subproblems `N`.
    pub population: usize,
    /// Neighbourhood size `T`.
    pub neighbours: usize,
    /// Probability of choosing parents from the neighbourhood.
    pub delta: f64,
    /// Most solutions one child may replace (0: no limit).
    pub max_replacements: usize,
    /// SBX distribution index.
    pub crossover_eta: f64,
    /// Polynomial mutation distribution index.
    pub mutation_eta: f64,
    /// Per-variable mutation probability (`None`: 1/d).
    pub mutation_prob: Option<f64>,
    /// Normalise objectives by their range in the population.
    pub normalize: bool,
    /// Budget of every trial.
    pub budget: f64,
}

impl MoeadSettings {
    /// Reads the settings from TOML text, with the defaults of the paper,
    /// for a host that tells the plugin nothing about the run (interface
    /// 1.0): two objectives and budget 1 unless the settings say otherwise.
    pub fn parse(text: &str) -> Result<Self, PError> {
        MoeadSettings::parse_for(text, None)
    }

    /// Reads the settings for the run described by `context` (interface
    /// 1.1): the number of objectives and the budget come from the run, and
    /// an `objectives` or `budget` setting that disagrees with it is an
    /// error instead of a silently different search.
    pub fn parse_in(text: &str, context: &PContext) -> Result<Self, PError> {
        MoeadSettings::parse_for(text, Some(context))
    }

    fn parse_for(text: &str, context: Option<&PContext>) -> Result<Self, PError> {
        let (objectives, budget) = match context {
            Some(c) => (c.objectives as usize, c.max_budget),
            None => (2, 1.0),
        };
        let mut s = Settings::parse("moead", text)?;
        let out = MoeadSettings {
            objectives: s.usize("objectives", objectives)?,
            population: s.usize("population", 100)?,
            neighbours: s.usize("neighbours", 20)?,
            delta: s.f64("delta", 1.0)?,
            max_replacements: s.usize("max_replacements", 0)?,
            crossover_eta: s.f64("crossover_eta", 20.0)?,
            mutation_eta: s.f64("mutation_eta", 20.0)?,
            mutation_prob: match s.f64("mutation_prob", -1.0)? {
                p if p < 0.0 => None,
                p => Some(p),
            },
            normalize: s.bool("normalize", true)?,
            budget: s.f64("budget", budget)?,
        };
        s.finish()?;
        let bad = |key: &str, what: &str| {
            Err(PError::invalid(format!(
                "plugin `moead` setting `{key}`: {what}"
            )))
        };
        if let Some(c) = context {
            if out.objectives as u64 != c.objectives {
                return bad(
                    "objectives",
                    &format!(
                        "is {}, but the run has {} objectives (leave the setting out)",
                        out.objectives, c.objectives
                    ),
                );
            }
            if (out.budget - c.max_budget).abs() > 1e-9 * c.max_budget.abs().max(1.0) {
                return bad(
                    "budget",
                    &format!(
                        "is {}, but the run's budget (`fidelity.max`) is {} (leave the setting out)",
                        out.budget, c.max_budget
                    ),
                );
            }
        }
        if out.objectives < 2 {
            return bad("objectives", "MOEA/D needs at least 2 objectives");
        }
        if out.population < 2 {
            return bad("population", "needs at least 2 subproblems");
        }
        if out.neighbours < 2 {
            return bad("neighbours", "needs at least 2 (parents come from it)");
        }
        if !(0.0..=1.0).contains(&out.delta) {
            return bad("delta", "is a probability in [0, 1]");
        }
        if out.crossover_eta < 0.0 || out.mutation_eta < 0.0 {
            return bad("crossover_eta/mutation_eta", "must be non-negative");
        }
        if out.mutation_prob.is_some_and(|p| p > 1.0) {
            return bad("mutation_prob", "is a probability in [0, 1]");
        }
        if out.budget.is_nan() || out.budget <= 0.0 {
            return bad("budget", "must be positive");
        }
        Ok(out)
    }
}

/// All weight vectors with entries in {0, 1/h, ..., 1} that sum to 1
/// (the simplex lattice of Das and Dennis used by the paper).
pub fn simplex_lattice(m: usize, h: usize) -> Vec<Vec<f64>> {
    fn rec(m: usize, left: usize, h: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<f64>>) {
        if cur.len() == m - 1 {
            cur.push(left);
            out.push(cur.iter().map(|&c| c as f64 / h as f64).collect());
            cur.pop();
            return;
        }
        for c in 0..=left {
            cur.push(c);
            rec(m, left - c, h, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    rec(m, h, h, &mut Vec::with_capacity(m), &mut out);
    out
}

/// The weight vectors for `m` objectives and about `n` subproblems: `n`
/// evenly spaced ones for two objectives, otherwise the largest lattice of
/// at most `n` points (at least the `m` corners).
pub fn weight_vectors(m: usize, n: usize) -> Vec<Vec<f64>> {
    let size = |h: usize| -> usize {
        // C(h + m - 1, m - 1)
        (1..m).fold(1usize, |acc, i| acc * (h + i) / i)
    };
    let mut h = 1;
    while size(h + 1) <= n {
        h += 1;
    }
    simplex_lattice(m, h)
}

/// A subproblem's solution: configuration, unit-cube point, objectives.
type Solution = (Configuration, Vec<f64>, Vec<f64>);

/// What a pending trial is for.
#[derive(Debug, Clone, Copy)]
enum Role {
    /// The initial solution of subproblem `i`.
    Init(usize),
    /// A child bred for subproblem `i`.
    Child(usize),
}

/// MOEA/D with Tchebycheff decomposition (see the crate documentation).
pub struct Moead {
    space: ConfigurationSpace,
    s: MoeadSettings,
    rng: ChaCha8Rng,
    weights: Vec<Vec<f64>>,
    /// `B(i)`: the indices of the `T` closest weight vectors (itself first).
    neighbourhood: Vec<Vec<usize>>,
    /// Solution of each subproblem (`None` until its initial trial is told).
    solutions: Vec<Option<Solution>>,
    /// Subproblems whose initial solution still has to be asked.
    init_queue: Vec<usize>,
    /// The current sweep over subproblems (popped from the back).
    sweep: Vec<usize>,
    ideal: Vec<f64>,
    next_id: TrialId,
    pending: BTreeMap<TrialId, (Role, Configuration, Vec<f64>)>,
}

impl Moead {
    /// A MOEA/D run over `space` with settings and seed.
    pub fn new(space: ConfigurationSpace, settings: MoeadSettings, seed: u64) -> Self {
        let weights = weight_vectors(settings.objectives, settings.population);
        let n = weights.len();
        let t = settings.neighbours.min(n);
        let neighbourhood = (0..n)
            .map(|i| {
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by(|&a, &b| {
                    let da = distance(&weights[i], &weights[a]);
                    let db = distance(&weights[i], &weights[b]);
                    da.total_cmp(&db).then(a.cmp(&b))
                });
                order.truncate(t);
                order
            })
            .collect();
        let m = settings.objectives;
        Moead {
            space,
            s: settings,
            rng: ChaCha8Rng::seed_from_u64(seed),
            weights,
            neighbourhood,
            solutions: vec![None; n],
            init_queue: (0..n).rev().collect(),
            sweep: Vec::new(),
            ideal: vec![f64::INFINITY; m],
            next_id: 0,
            pending: BTreeMap::new(),
        }
    }

    /// The number of subproblems `N`.
    pub fn subproblems(&self) -> usize {
        self.weights.len()
    }

    /// The current solutions' objective vectors (subproblems not yet
    /// initialised are skipped).
    pub fn population(&self) -> Vec<Vec<f64>> {
        self.solutions
            .iter()
            .flatten()
            .map(|(_, _, f)| f.clone())
            .collect()
    }

    fn initialised(&self) -> bool {
        self.solutions.iter().all(Option::is_some)
    }

    fn issue(&mut self, role: Role, config: Configuration) -> Result<Trial, OptimizerError> {
        let x = self.space.encode(&config)?;
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, (role, config.clone(), x));
        Ok(Trial {
            id,
            config,
            budget: self.s.budget,
        })
    }

    /// Breed a child for subproblem `i` from two parents of its mating pool.
    fn breed(&mut self, i: usize) -> Result<Configuration, OptimizerError> {
        let n = self.weights.len();
        let pool: Vec<usize> = if self.rng.random::<f64>() < self.s.delta {
            self.neighbourhood[i].clone()
        } else {
            (0..n).collect()
        };
        let a = pool[self.rng.random_range(0..pool.len())];
        let mut b = pool[self.rng.random_range(0..pool.len())];
        if b == a {
            b = pool[(pool.iter().position(|&p| p == a).unwrap_or(0) + 1) % pool.len()];
        }
        let xa = self.solutions[a].as_ref().expect("initialised").1.clone();
        let xb = self.solutions[b].as_ref().expect("initialised").1.clone();
        let d = xa.len();
        let pm = self.s.mutation_prob.unwrap_or(1.0 / d.max(1) as f64);
        for _ in 0..20 {
            let mut child = sbx(&xa, &xb, self.s.crossover_eta, &mut self.rng);
            polynomial_mutation(&mut child, pm, self.s.mutation_eta, &mut self.rng);
            let config = self.space.decode(&child)?;
            if !self.space.is_forbidden(&config) {
                return Ok(config);
            }
        }
        // Twenty forbidden children in a row: fall back to a random sample.
        Ok(self.space.sample(&mut self.rng)?)
    }

    /// The Tchebycheff value of `f` for weight vector `w`.
    fn tchebycheff(&self, f: &[f64], w: &[f64], scale: &[f64]) -> f64 {
        f.iter()
            .zip(w)
            .zip(&self.ideal)
            .zip(scale)
            .map(|(((fk, wk), zk), sk)| wk.max(1e-6) * (fk - zk).abs() / sk)
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// Per-objective divisors: the range (max − ideal) over the population
    /// and the new point when normalising, else 1.
    fn scale(&self, extra: &[f64]) -> Vec<f64> {
        let m = self.s.objectives;
        if !self.s.normalize {
            return vec![1.0; m];
        }
        (0..m)
            .map(|k| {
                let worst = self
                    .solutions
                    .iter()
                    .flatten()
                    .map(|(_, _, f)| f[k])
                    .fold(extra[k], f64::max);
                let range = worst - self.ideal[k];
                if range > 1e-12 {
                    range
                } else {
                    1.0
                }
            })
            .collect()
    }

    fn update_neighbours(&mut self, i: usize, config: Configuration, x: Vec<f64>, f: Vec<f64>) {
        for (z, v) in self.ideal.iter_mut().zip(&f) {
            *z = z.min(*v);
        }
        let scale = self.scale(&f);
        let mut order = self.neighbourhood[i].clone();
        order.shuffle(&mut self.rng);
        let limit = match self.s.max_replacements {
            0 => usize::MAX,
            r => r,
        };
        let mut replaced = 0;
        for j in order {
            if replaced >= limit {
                break;
            }
            let current = &self.solutions[j].as_ref().expect("initialised").2;
            let w = &self.weights[j];
            if self.tchebycheff(&f, w, &scale) <= self.tchebycheff(current, w, &scale) {
                self.solutions[j] = Some((config.clone(), x.clone(), f.clone()));
                replaced += 1;
            }
        }
    }
}

fn distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>()
}

/// Simulated binary crossover (Deb and Agrawal) in the unit cube; returns
/// one of the two children. Inactive coordinates (`NaN`) take the other
/// parent's value, or a uniform one if both are inactive.
fn sbx(a: &[f64], b: &[f64], eta: f64, rng: &mut impl Rng) -> Vec<f64> {
    let first = rng.random::<bool>();
    a.iter()
        .zip(b)
        .map(|(&p1, &p2)| {
            let (p1, p2) = match (p1.is_nan(), p2.is_nan()) {
                (true, true) => {
                    let u = rng.random::<f64>();
                    (u, u)
                }
                (true, false) => (p2, p2),
                (false, true) => (p1, p1),
                _ => (p1, p2),
            };
            if rng.random::<f64>() > 0.5 || (p1 - p2).abs() < 1e-14 {
                return if first { p1 } else { p2 };
            }
            let (y1, y2) = (p1.min(p2), p1.max(p2));
            let r = rng.random::<f64>();
            let spread = |beta: f64| {
                let alpha = 2.0 - beta.powf(-(eta + 1.0));
                if r <= 1.0 / alpha {
                    (r * alpha).powf(1.0 / (eta + 1.0))
                } else {
                    (1.0 / (2.0 - r * alpha)).powf(1.0 / (eta + 1.0))
                }
            };
            let bq1 = spread(1.0 + 2.0 * y1 / (y2 - y1));
            let bq2 = spread(1.0 + 2.0 * (1.0 - y2) / (y2 - y1));
            let c1 = 0.5 * ((y1 + y2) - bq1 * (y2 - y1));
            let c2 = 0.5 * ((y1 + y2) + bq2 * (y2 - y1));
            let c = if first { c1 } else { c2 };
            c.clamp(0.0, 1.0)
        })
        .collect()
}

/// Polynomial mutation (Deb) in the unit cube, each coordinate with
/// probability `pm`.
fn polynomial_mutation(x: &mut [f64], pm: f64, eta: f64, rng: &mut impl Rng) {
    for y in x.iter_mut() {
        if rng.random::<f64>() >= pm {
            continue;
        }
        let r = rng.random::<f64>();
        let power = 1.0 / (eta + 1.0);
        let dq = if r < 0.5 {
            let v = 2.0 * r + (1.0 - 2.0 * r) * (1.0 - *y).powf(eta + 1.0);
            v.powf(power) - 1.0
        } else {
            let v = 2.0 * (1.0 - r) + 2.0 * (r - 0.5) * y.powf(eta + 1.0);
            1.0 - v.powf(power)
        };
        *y = (*y + dq).clamp(0.0, 1.0);
    }
}

impl Optimizer for Moead {
    fn name(&self) -> String {
        format!(
            "moead(N={}, T={})",
            self.weights.len(),
            self.neighbourhood[0].len()
        )
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Trial>, OptimizerError> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if let Some(i) = self.init_queue.pop() {
                let config = self.space.sample(&mut self.rng)?;
                out.push(self.issue(Role::Init(i), config)?);
                continue;
            }
            if !self.initialised() {
                break; // wait for the initial population
            }
            if self.sweep.is_empty() {
                self.sweep = (0..self.weights.len()).collect();
                self.sweep.shuffle(&mut self.rng);
            }
            let i = self.sweep.pop().expect("refilled above");
            let config = self.breed(i)?;
            out.push(self.issue(Role::Child(i), config)?);
        }
        Ok(out)
    }

    fn tell(&mut self, id: TrialId, outcome: Outcome) -> Result<(), OptimizerError> {
        let Some((role, _, _)) = self.pending.get(&id) else {
            return Err(OptimizerError::UnknownTrial(id));
        };
        let role = *role;
        if let Outcome::Success(f) = &outcome {
            if f.len() != self.s.objectives {
                return Err(OptimizerError::ObjectiveCount {
                    id,
                    expected: self.s.objectives,
                    got: f.len(),
                });
            }
            if f.iter().any(|v| !v.is_finite()) {
                return Err(OptimizerError::NonFinite(id));
            }
        }
        let (_, config, x) = self.pending.remove(&id).expect("checked above");
        match (role, outcome) {
            (Role::Init(i), Outcome::Success(f)) => {
                for (z, v) in self.ideal.iter_mut().zip(&f) {
                    *z = z.min(*v);
                }
                self.solutions[i] = Some((config, x, f));
            }
            // A failed initial trial is replaced by another random one.
            (Role::Init(i), Outcome::Failure(_)) => self.init_queue.push(i),
            (Role::Child(i), Outcome::Success(f)) => self.update_neighbours(i, config, x, f),
            // A failed child changes nothing.
            (Role::Child(_), Outcome::Failure(_)) => {}
        }
        Ok(())
    }
}

fn build(space: ConfigurationSpace, settings: &str, seed: u64) -> Result<Moead, PError> {
    Ok(Moead::new(space, MoeadSettings::parse(settings)?, seed))
}

fn build_in(
    space: ConfigurationSpace,
    settings: &str,
    seed: u64,
    context: PContext,
) -> Result<Moead, PError> {
    Ok(Moead::new(
        space,
        MoeadSettings::parse_in(settings, &context)?,
        seed,
    ))
}

/// Interface 1.1: MOEA/D told the number of objectives and the budget.
extern "C" fn create_with_context(
    space: RStr<'_>,
    settings: RStr<'_>,
    seed: u64,
    context: PContext,
) -> RResult<OptimizerBox, PError> {
    optimizer_with_context_from(space, settings, seed, context, build_in)
}

extern "C" fn create(
    space: RStr<'_>,
    settings: RStr<'_>,
    seed: u64,
) -> RResult<OptimizerBox, PError> {
    optimizer_from(space, settings, seed, build)
}

/// The root module the host looks for.
#[export_root_module]
pub fn root_module() -> OptimizerPluginRef {
    OptimizerPlugin {
        name: RStr::from_str("moead"),
        description: RStr::from_str(
            "MOEA/D (Zhang & Li 2007): Tchebycheff decomposition, neighbourhood updates",
        ),
        create,
        create_with_context: Some(create_with_context),
        // MOEA/D breeds from its neighbourhoods generation by generation:
        // it is a whole optimizer at one fidelity, not a proposer.
        create_proposer: None,
    }
    .leak_into_prefix()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsnn_plugin_api::dsnn_search::problems::TestProblem;

    #[test]
    fn lattices_have_the_expected_sizes_and_sum_to_one() {
        assert_eq!(weight_vectors(2, 100).len(), 100);
        assert_eq!(weight_vectors(3, 100).len(), 91); // h = 12
        assert_eq!(weight_vectors(3, 105).len(), 105); // h = 13
        for w in weight_vectors(3, 50) {
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        let w2 = weight_vectors(2, 5);
        assert_eq!(w2[0], vec![0.0, 1.0]);
        assert_eq!(w2[4], vec![1.0, 0.0]);
    }

    #[test]
    fn the_run_context_sets_objectives_and_budget_and_refuses_disagreement() {
        let c = PContext {
            objectives: 3,
            min_budget: 4.0,
            max_budget: 4.0,
            multi_fidelity: false,
        };
        let s = MoeadSettings::parse_in("population = 10", &c).unwrap();
        assert_eq!((s.objectives, s.budget), (3, 4.0));
        let s = MoeadSettings::parse_in("objectives = 3\nbudget = 4", &c).unwrap();
        assert_eq!((s.objectives, s.budget), (3, 4.0));
        let e = MoeadSettings::parse_in("budget = 2.0", &c).unwrap_err();
        assert!(e.to_string().contains("`fidelity.max`) is 4"), "{e}");
        let e = MoeadSettings::parse_in("objectives = 2", &c).unwrap_err();
        assert!(e.to_string().contains("the run has 3 objectives"), "{e}");
        // Without a context (interface 1.0 hosts): the old defaults.
        let s = MoeadSettings::parse("").unwrap();
        assert_eq!((s.objectives, s.budget), (2, 1.0));
    }

    #[test]
    fn neighbourhoods_are_the_closest_weights() {
        let p = TestProblem::zdt1();
        let s = MoeadSettings::parse("population = 10\nneighbours = 3").unwrap();
        let m = Moead::new(p.space(), s, 1);
        assert_eq!(m.neighbourhood[0], vec![0, 1, 2]);
        let mut b5 = m.neighbourhood[5].clone();
        assert_eq!(b5[0], 5, "a subproblem is its own closest neighbour");
        b5.sort();
        assert_eq!(b5, vec![4, 5, 6]);
    }

    #[test]
    fn waits_for_the_initial_population_and_replaces_failed_initial_trials() {
        let p = TestProblem::zdt1();
        let s = MoeadSettings::parse("population = 4\nneighbours = 2").unwrap();
        let mut m = Moead::new(p.space(), s, 3);
        let first = m.ask(10).unwrap();
        assert_eq!(first.len(), 4);
        assert!(
            m.ask(1).unwrap().is_empty(),
            "must wait for the initial trials"
        );
        m.tell(first[0].id, Outcome::Failure("crash".into()))
            .unwrap();
        for t in &first[1..] {
            m.tell(t.id, Outcome::Success(p.evaluate_config(&t.config)))
                .unwrap();
        }
        let again = m.ask(3).unwrap();
        assert_eq!(again.len(), 1, "one replacement, then wait again");
        m.tell(
            again[0].id,
            Outcome::Success(p.evaluate_config(&again[0].config)),
        )
        .unwrap();
        assert_eq!(m.ask(3).unwrap().len(), 3, "children once initialised");
        assert!(matches!(
            m.tell(999, Outcome::Success(vec![0.0, 0.0])),
            Err(OptimizerError::UnknownTrial(999))
        ));
    }

    #[test]
    fn bad_settings_name_the_key() {
        let e = MoeadSettings::parse("delta = 2.0").unwrap_err().to_string();
        assert!(e.contains("`delta`"), "{e}");
        let e = MoeadSettings::parse("neighbors = 5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`neighbors`"), "{e}");
    }

    #[test]
    fn converges_on_zdt1_in_process() {
        let p = TestProblem::zdt1();
        let s = MoeadSettings::parse("population = 50\nneighbours = 10").unwrap();
        let mut m = Moead::new(p.space(), s, 7);
        p.minimise(&mut m, 5000, 10).unwrap();
        let hv = dsnn_plugin_api::dsnn_search::pareto::hypervolume(&m.population(), &[1.1, 1.1]);
        let best = p.optimal_hypervolume().unwrap();
        assert!(hv > 0.9 * best, "hypervolume {hv} vs optimum {best}");
    }
}
