//! ParEGO (Knowles 2006) as SMAC3 runs it: a random weight vector per proposal,
//! augmented Chebyshev scalarisation of min-max normalised objectives of the
//! successful trials, a random-forest surrogate, and expected improvement
//! maximised by random sampling plus local search.
//!
//! Failed trials never enter the normalisation bounds nor the surrogate's
//! training data (the upstream pipeline reported crashes as `(1, 1)`, which
//! squashed the normalisation); they are only remembered so that the same
//! configuration is not proposed again.

use std::collections::HashSet;
use std::sync::Arc;

use rand::{Rng, RngCore};

use crate::forest::{ForestSettings, RandomForest};
use crate::optimizer::{Observation, OptimizerError, Proposer};
use crate::pareto::Normalizer;
use crate::single::ProposerOptimizer;
use crate::space::{Configuration, DimKind, SearchSpace};

/// ParEGO settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ParEgoSettings {
    /// Random configurations before the surrogate is used.
    pub n_initial: usize,
    /// Weight of the augmentation term: `max(w f) + rho * sum(w f)`.
    pub rho: f64,
    /// Random candidates scored by expected improvement per proposal.
    pub n_random_candidates: usize,
    /// Candidates made by perturbing the best observed points (under the
    /// proposal's weights) with Gaussian steps in the unit cube.
    pub n_perturbed_candidates: usize,
    /// Expected numbers of coordinates moved in a perturbation candidate
    /// `(many, few)`: half of the candidates move `many`, half `few`.
    pub perturbed_coordinates: (f64, f64),
    /// Standard deviation of those steps.
    pub perturbation_sd: f64,
    /// Local searches started from the best observed points and as many from
    /// the best candidates.
    pub n_local_starts: usize,
    /// Maximum improving steps of each local search.
    pub local_steps: usize,
    /// Sideways moves each local search may take on a plateau of the
    /// (piecewise-constant) acquisition.
    pub plateau_steps: usize,
    /// Fewest successful trials at one budget for the surrogate to train on that
    /// budget alone (multi-fidelity); otherwise all budgets are pooled.
    pub min_points_per_budget: usize,
    /// Probability that a model-based proposal is replaced by a random one
    /// (SMAC's random interleaving), to keep exploring.
    pub random_fraction: f64,
    /// How candidate steps that leave the unit cube are brought back.
    pub bounds: BoundHandling,
    /// Train the surrogate on `ln(eps + y)` of the scalarised costs `y`
    /// rescaled to [0, 1] (`Some(eps)`), as SMAC3 does, or on `y` itself.
    pub log_offset: Option<f64>,
    /// Most observations the surrogate is trained on per proposal. Above it the
    /// forest sees the `max_training_points / 2` best under the proposal's
    /// scalarisation and as many drawn at random from the rest, so the cost of
    /// a proposal stops growing with the history while the incumbents (where
    /// expected improvement is decided) and a picture of the whole space stay
    /// in. The normalisation bounds still come from all successful trials.
    pub max_training_points: usize,
    /// How each proposal's weight vector is drawn.
    pub weights: WeightSampling,
    /// The surrogate's settings.
    pub forest: ForestSettings,
}

/// How ParEGO brings a candidate step that leaves the unit cube back into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoundHandling {
    /// Onto the face it crossed: every such step lands exactly on a bound,
    /// which favours optima at the bounds and hurts optima inside.
    Clamp,
    /// Reflected at the face: no pile-up on the bounds.
    Reflect,
    /// Half of the candidates (and of the local-search steps) clamped, half
    /// reflected, so that expected improvement, not the step rule, decides
    /// whether the bounds are worth evaluating.
    Both,
}

/// How ParEGO draws the weight vector of a proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightSampling {
    /// Uniform on the simplex (Knowles' lattice, made continuous).
    Simplex,
    /// Uniform in the unit cube, then divided by its sum (SMAC3's ParEGO).
    Cube,
    /// The direction `1/w` uniform on the simplex: the augmented Chebyshev
    /// optimum of weights `w` lies on the ray `f ∝ 1/w` of the normalised
    /// objectives, so this spreads the targets evenly over the front.
    InverseSimplex,
}

impl Default for ParEgoSettings {
    fn default() -> Self {
        ParEgoSettings {
            n_initial: 10,
            rho: 0.05,
            n_random_candidates: 1000,
            n_perturbed_candidates: 1000,
            perturbed_coordinates: (20.0, 4.0),
            perturbation_sd: 0.3,
            n_local_starts: 10,
            local_steps: 10,
            plateau_steps: 5,
            min_points_per_budget: 8,
            random_fraction: 0.0,
            weights: WeightSampling::Cube,
            bounds: BoundHandling::Reflect,
            max_training_points: 100,
            log_offset: Some(0.01),
            forest: ForestSettings::default(),
        }
    }
}

/// The ParEGO proposer; use it alone ([`ParEgoProposer::optimizer`]) or as the
/// proposer of a [`crate::HyperbandOptimizer`] (the paper's combination).
pub struct ParEgoProposer {
    space: Arc<dyn SearchSpace>,
    kinds: Vec<DimKind>,
    settings: ParEgoSettings,
}

/// Single-fidelity ParEGO.
pub type ParEgo = ProposerOptimizer<ParEgoProposer>;

/// Value for inactive coordinates in the surrogate's inputs (outside the cube,
/// so that trees can split on activity).
const INACTIVE: f64 = -1.0;

/// `v` folded back into [0, 1] by reflection at the faces of the cube.
///
/// Clamping would put every step that leaves the cube exactly on a face (with a
/// step sd of 0.3 that is a large share of the candidates near the faces),
/// biasing the search towards the bounds of every coordinate.
fn reflect(v: f64) -> f64 {
    let r = v.rem_euclid(2.0);
    if r > 1.0 {
        2.0 - r
    } else {
        r
    }
}

/// `ln(eps + (y - min) / (max - min))`: scalarised costs rescaled to [0, 1]
/// and log-transformed, as SMAC3's hyperparameter-optimisation facade encodes
/// its costs, so that the surrogate resolves differences among the good points.
fn log_scaled(y: &[f64], eps: f64) -> Vec<f64> {
    let lo = y.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = y.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    y.iter().map(|v| (eps + (v - lo) / span).ln()).collect()
}

/// Standard normal cumulative distribution function (via `erfc`, |error| < 1.2e-7).
pub(crate) fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Expected improvement below `best` of a Gaussian prediction.
pub fn expected_improvement(mean: f64, var: f64, best: f64) -> f64 {
    let sd = var.max(0.0).sqrt();
    if sd < 1e-12 {
        return (best - mean).max(0.0);
    }
    let z = (best - mean) / sd;
    let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
    ((best - mean) * normal_cdf(z) + sd * pdf).max(0.0)
}

/// Augmented Chebyshev scalarisation `max_k(w_k f_k) + rho * sum_k(w_k f_k)`.
pub fn augmented_chebyshev(f: &[f64], w: &[f64], rho: f64) -> f64 {
    let mut mx = f64::NEG_INFINITY;
    let mut sum = 0.0;
    for (fk, wk) in f.iter().zip(w) {
        let v = fk * wk;
        mx = mx.max(v);
        sum += v;
    }
    mx + rho * sum
}

/// A weight vector drawn uniformly from the simplex.
fn simplex_weights(m: usize, rng: &mut dyn RngCore) -> Vec<f64> {
    let e: Vec<f64> = (0..m).map(|_| -(1.0 - rng.random::<f64>()).ln()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// A weight vector on the simplex drawn as `sampling` says.
fn draw_weights(m: usize, sampling: WeightSampling, rng: &mut dyn RngCore) -> Vec<f64> {
    let raw: Vec<f64> = match sampling {
        WeightSampling::Simplex => return simplex_weights(m, rng),
        WeightSampling::Cube => (0..m).map(|_| rng.random::<f64>().max(1e-12)).collect(),
        WeightSampling::InverseSimplex => simplex_weights(m, rng)
            .into_iter()
            .map(|d| 1.0 / d.max(1e-12))
            .collect(),
    };
    let s: f64 = raw.iter().sum();
    raw.into_iter().map(|v| v / s).collect()
}

impl ParEgoProposer {
    /// ParEGO over `space` with `settings`.
    pub fn new(space: Arc<dyn SearchSpace>, settings: ParEgoSettings) -> Self {
        let kinds = space.kinds();
        ParEgoProposer {
            space,
            kinds,
            settings,
        }
    }

    /// Single-fidelity ParEGO at `budget`, seeded by `seed`.
    pub fn optimizer(
        space: Arc<dyn SearchSpace>,
        settings: ParEgoSettings,
        budget: f64,
        seed: u64,
    ) -> ParEgo {
        ProposerOptimizer::new(ParEgoProposer::new(space, settings), budget, seed)
    }

    /// A moved cube coordinate of the `k`-th candidate brought back into
    /// [0, 1] as the settings say.
    fn bound(&self, v: f64, k: usize) -> f64 {
        match self.settings.bounds {
            BoundHandling::Clamp => v.clamp(0.0, 1.0),
            BoundHandling::Reflect => reflect(v),
            BoundHandling::Both if k.is_multiple_of(2) => reflect(v),
            BoundHandling::Both => v.clamp(0.0, 1.0),
        }
    }

    /// Surrogate input of a configuration: its encoding, inactive set to -1.
    fn features(&self, c: &Configuration) -> Option<Vec<f64>> {
        let mut x = self.space.encode(c).ok()?;
        for v in x.iter_mut() {
            if v.is_nan() {
                *v = INACTIVE;
            }
        }
        Some(x)
    }

    /// Surrogate input of a cube point: its canonical encoding (rounded, inactive
    /// set to -1), or `None` if it decodes to a forbidden configuration.
    fn cube_features(&self, u: &[f64]) -> Option<Vec<f64>> {
        let mut x = self.space.canonical_encoding(u)?;
        for v in x.iter_mut() {
            if v.is_nan() {
                *v = INACTIVE;
            }
        }
        Some(x)
    }

    /// The training set: successful trials at the highest budget that has enough
    /// of them, else all successes.
    fn training_set<'a>(&self, history: &'a [Observation]) -> Vec<(&'a Configuration, &'a [f64])> {
        crate::optimizer::training_set(history, self.settings.min_points_per_budget)
    }

    /// Neighbours of a cube point for local search: each varying coordinate moved
    /// alone (two Gaussian steps for continuous, one bin either way for integer,
    /// every other category for categorical).
    fn cube_neighbours(&self, u: &[f64], rng: &mut dyn RngCore) -> Vec<Vec<f64>> {
        let mut out = Vec::new();
        for (k, kind) in self.kinds.iter().enumerate() {
            let base = if u[k].is_nan() { 0.5 } else { u[k] };
            let mut push = |v: f64, j: usize| {
                let mut w = u.to_vec();
                w[k] = self.bound(v, j);
                out.push(w);
            };
            match *kind {
                DimKind::Constant => {}
                DimKind::Continuous => {
                    for j in 0..2 {
                        push(base + 0.1 * crate::space::standard_normal(rng), j);
                    }
                }
                DimKind::Integer(n) => {
                    let w = 1.0 / n as f64;
                    if base - w >= 0.0 {
                        push(base - w, 0);
                    }
                    if base + w <= 1.0 {
                        push(base + w, 0);
                    }
                }
                DimKind::Categorical(n) => {
                    let cur = ((base * n as f64).floor() as usize).min(n.saturating_sub(1));
                    for j in (0..n).filter(|&j| j != cur).take(8) {
                        push((j as f64 + 0.5) / n as f64, 0);
                    }
                }
            }
        }
        out
    }

    fn propose_one(
        &self,
        train: &[(&Configuration, &[f64])],
        xs: &[Vec<f64>],
        taken: &HashSet<String>,
        rng: &mut dyn RngCore,
    ) -> Result<Configuration, OptimizerError> {
        let objs: Vec<&[f64]> = train.iter().map(|t| t.1).collect();
        let norm = Normalizer::fit(&objs).expect("training set is not empty");
        let w = draw_weights(objs[0].len(), self.settings.weights, rng);
        let y: Vec<f64> = objs
            .iter()
            .map(|f| augmented_chebyshev(&norm.transform(f), &w, self.settings.rho))
            .collect();
        let y: Vec<f64> = match self.settings.log_offset {
            Some(eps) => log_scaled(&y, eps),
            None => y,
        };
        let best = y.iter().cloned().fold(f64::INFINITY, f64::min);
        // The best under this scalarisation first (ties by position, so that
        // the order is deterministic).
        let mut order: Vec<usize> = (0..y.len()).collect();
        order.sort_by(|&a, &b| y[a].total_cmp(&y[b]).then(a.cmp(&b)));
        let cap = self.settings.max_training_points.max(2);
        let (fit_x, fit_y): (Vec<Vec<f64>>, Vec<f64>);
        let (xs_fit, y_fit): (&[Vec<f64>], &[f64]) = if y.len() > cap {
            let n_best = cap / 2;
            let mut keep: Vec<usize> = order[..n_best].to_vec();
            let mut rest: Vec<usize> = order[n_best..].to_vec();
            // Partial Fisher-Yates: a uniform subsample of the rest.
            for k in 0..cap - n_best {
                let j = rng.random_range(k..rest.len());
                rest.swap(k, j);
            }
            keep.extend_from_slice(&rest[..cap - n_best]);
            fit_x = keep.iter().map(|&i| xs[i].clone()).collect();
            fit_y = keep.iter().map(|&i| y[i]).collect();
            (&fit_x, &fit_y)
        } else {
            (xs, &y)
        };
        let forest = RandomForest::fit(xs_fit, y_fit, &self.settings.forest, rng)
            .ok_or_else(|| OptimizerError::Invalid("surrogate could not be fitted".into()))?;
        let ei = |x: &[f64]| {
            let (m, v) = forest.predict(x);
            expected_improvement(m, v, best)
        };
        // Candidates: uniform cube points, scored by EI (the space's categorical
        // weights are not used here; they only shape the initial design).
        let d = self.kinds.len();
        let mut cands: Vec<(f64, Vec<f64>)> = Vec::new();
        for _ in 0..self.settings.n_random_candidates {
            let u: Vec<f64> = (0..d).map(|_| rng.random::<f64>()).collect();
            if let Some(x) = self.cube_features(&u) {
                cands.push((ei(&x), x));
            }
        }
        // Perturbations of the best observed points under this weight vector:
        // candidates near the incumbents, which random points in many dimensions
        // rarely are.
        let n_best = order.len().min(self.settings.n_local_starts.max(1));
        for k in 0..self.settings.n_perturbed_candidates {
            let base = &xs[order[k % n_best]];
            // Alternately few and many coordinates moved (expected numbers),
            // so that expected improvement chooses between keeping most of an
            // incumbent and moving much of it.
            let moved = if k % 2 == 0 {
                self.settings.perturbed_coordinates.1
            } else {
                self.settings.perturbed_coordinates.0
            };
            let p_move = (moved / d as f64).min(1.0);
            // Step sizes from sd/4 to sd, cycling, for both fine and coarse moves.
            let sd = self.settings.perturbation_sd * [1.0, 0.5, 0.25][k % 3];
            let u: Vec<f64> = base
                .iter()
                .map(|&v| {
                    let v = if v < 0.0 { rng.random::<f64>() } else { v };
                    if rng.random::<f64>() < p_move {
                        self.bound(v + sd * crate::space::standard_normal(rng), k / 3)
                    } else {
                        v
                    }
                })
                .collect();
            if let Some(x) = self.cube_features(&u) {
                cands.push((ei(&x), x));
            }
        }
        cands.sort_by(|a, b| b.0.total_cmp(&a.0));
        // Local search from the best observed points and the best candidates.
        let starts: Vec<Vec<f64>> = order
            .iter()
            .take(self.settings.n_local_starts)
            .map(|&i| xs[i].clone())
            .chain(
                cands
                    .iter()
                    .take(self.settings.n_local_starts)
                    .map(|(_, x)| x.clone()),
            )
            .collect();
        for start in starts {
            // Inactive coordinates (-1) restart from the cube's centre.
            let mut u: Vec<f64> = start
                .iter()
                .map(|&v| if v < 0.0 { 0.5 } else { v })
                .collect();
            let Some(x0) = self.cube_features(&u) else {
                continue;
            };
            let mut score = ei(&x0);
            let mut x_best = x0;
            let mut plateau = 0;
            for _ in 0..self.settings.local_steps {
                let mut step: Option<(f64, Vec<f64>, Vec<f64>)> = None;
                for nb in self.cube_neighbours(&u, rng) {
                    if let Some(x) = self.cube_features(&nb) {
                        let e = ei(&x);
                        if step.as_ref().is_none_or(|(s, _, _)| e > *s) {
                            step = Some((e, nb, x));
                        }
                    }
                }
                match step {
                    Some((e, nb, x)) if e > score => {
                        (score, u, x_best) = (e, nb, x);
                    }
                    // Walk along a plateau of the piecewise-constant forest a little.
                    Some((e, nb, x)) if e >= score && plateau < self.settings.plateau_steps => {
                        plateau += 1;
                        (score, u, x_best) = (e, nb, x);
                    }
                    _ => break,
                }
            }
            cands.push((score, x_best));
        }
        cands.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, x) in &cands {
            let u: Vec<f64> = x.iter().map(|&v| if v < 0.0 { 0.5 } else { v }).collect();
            if let Ok(c) = self.space.decode(&u) {
                if !self.space.is_forbidden(&c) && !taken.contains(&c.to_string()) {
                    return Ok(c);
                }
            }
        }
        // Everything scored has been tried: fall back to a fresh random sample.
        Ok(self.space.sample(rng)?)
    }
}

impl Proposer for ParEgoProposer {
    fn name(&self) -> String {
        "parego".into()
    }

    fn propose(
        &mut self,
        n: usize,
        history: &[Observation],
        pending: &[Configuration],
        rng: &mut dyn RngCore,
    ) -> Result<Vec<Configuration>, OptimizerError> {
        let mut taken = crate::optimizer::tried_configurations(history, pending);
        let train = self.training_set(history);
        let started = history.len() + pending.len();
        let xs: Vec<Vec<f64>> = train
            .iter()
            .map(|t| {
                self.features(t.0)
                    .unwrap_or_else(|| vec![INACTIVE; self.kinds.len()])
            })
            .collect();
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let interleave = self.settings.random_fraction > 0.0
                && rng.random::<f64>() < self.settings.random_fraction;
            let c = if started + i < self.settings.n_initial || train.len() < 2 || interleave {
                self.space.sample(rng)?
            } else {
                self.propose_one(&train, &xs, &taken, rng)?
            };
            taken.insert(c.to_string());
            out.push(c);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn scalarisation_and_expected_improvement() {
        assert_eq!(
            augmented_chebyshev(&[0.2, 0.6], &[0.5, 0.5], 0.05),
            0.3 + 0.05 * 0.4
        );
        // EI of a certain improvement is the improvement; of a hopeless point ~0.
        assert_eq!(expected_improvement(0.2, 0.0, 0.5), 0.3);
        assert!(expected_improvement(5.0, 0.01, 0.0) < 1e-12);
        // EI at the incumbent with sd 1 is phi(0) = 0.39894.
        assert!((expected_improvement(0.0, 1.0, 0.0) - 0.398_942_28).abs() < 1e-6);
        assert!((normal_cdf(1.0) - 0.841_344_746).abs() < 2e-7);
        assert!((normal_cdf(-2.0) - 0.022_750_132).abs() < 2e-7);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for sampling in [
            WeightSampling::Simplex,
            WeightSampling::Cube,
            WeightSampling::InverseSimplex,
        ] {
            let mut mean = [0.0; 3];
            for _ in 0..3000 {
                let w = draw_weights(3, sampling, &mut rng);
                assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12 && w.iter().all(|v| *v >= 0.0));
                for (m, v) in mean.iter_mut().zip(&w) {
                    *m += v / 3000.0;
                }
            }
            // All three are symmetric in the objectives.
            assert!(
                mean.iter().all(|m| (m - 1.0 / 3.0).abs() < 0.02),
                "{mean:?}"
            );
        }
    }

    #[test]
    fn reflection_and_log_scaling() {
        assert_eq!(reflect(0.25), 0.25);
        assert!((reflect(1.25) - 0.75).abs() < 1e-12);
        assert!((reflect(-0.3) - 0.3).abs() < 1e-12);
        assert!((reflect(2.5) - 0.5).abs() < 1e-12);
        assert_eq!(reflect(1.0), 1.0);
        let z = log_scaled(&[3.0, 1.0, 2.0], 0.01);
        assert!((z[1] - 0.01f64.ln()).abs() < 1e-12);
        assert!((z[0] - 1.01f64.ln()).abs() < 1e-12);
        assert!((z[2] - 0.51f64.ln()).abs() < 1e-12);
        // Constant costs do not divide by zero.
        assert!(log_scaled(&[2.0, 2.0], 0.01).iter().all(|v| v.is_finite()));
    }
}

#[cfg(test)]
mod proposer_tests {
    use super::*;
    use crate::optimizer::Optimizer;
    use crate::optimizer::Outcome;
    use crate::problems::TestProblem;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn obs(id: u64, x: f64, outcome: Outcome, budget: f64) -> Observation {
        let mut config = Configuration::new();
        config.insert("x0", x);
        Observation {
            id,
            config,
            budget,
            outcome,
        }
    }

    #[test]
    fn failures_stay_out_of_the_training_set_and_bounds() {
        let p = TestProblem::new(crate::problems::ProblemKind::Zdt1, 2, 2);
        let prop = ParEgoProposer::new(Arc::new(p.space()), ParEgoSettings::default());
        let history = vec![
            obs(0, 0.1, Outcome::Success(vec![0.1, 0.9]), 1.0),
            obs(1, 0.2, Outcome::Failure("crash".into()), 1.0),
            obs(2, 0.3, Outcome::Success(vec![0.3, 0.5]), 1.0),
        ];
        let train = prop.training_set(&history);
        assert_eq!(train.len(), 2);
        let objs: Vec<&[f64]> = train.iter().map(|t| t.1).collect();
        let n = Normalizer::fit(&objs).unwrap();
        // Bounds come from the two successes only (a crash reported as (1, 1)
        // would have stretched them).
        assert_eq!(n.lower, vec![0.1, 0.5]);
        assert_eq!(n.upper, vec![0.3, 0.9]);
    }

    #[test]
    fn training_prefers_the_highest_budget_with_enough_points() {
        let p = TestProblem::new(crate::problems::ProblemKind::Zdt1, 2, 2);
        let settings = ParEgoSettings {
            min_points_per_budget: 2,
            ..Default::default()
        };
        let prop = ParEgoProposer::new(Arc::new(p.space()), settings);
        let mut history: Vec<Observation> = (0..5)
            .map(|i| obs(i, 0.1 * i as f64, Outcome::Success(vec![0.1, 0.2]), 1.0))
            .collect();
        history.push(obs(5, 0.7, Outcome::Success(vec![0.1, 0.2]), 9.0));
        assert_eq!(
            prop.training_set(&history).len(),
            5,
            "one point at 9: use budget 1"
        );
        history.push(obs(6, 0.8, Outcome::Success(vec![0.1, 0.2]), 9.0));
        assert_eq!(prop.training_set(&history).len(), 2, "two at 9: use them");
        let few = ParEgoProposer::new(
            Arc::new(p.space()),
            ParEgoSettings {
                min_points_per_budget: 6,
                ..Default::default()
            },
        );
        assert_eq!(few.training_set(&history).len(), 7, "none has enough: pool");
    }

    #[test]
    fn parego_beats_random_search_on_zdt1_and_survives_failures() {
        let p = TestProblem::zdt1();
        let front = p.pareto_front(200);
        let settings = ParEgoSettings::default();
        let (mut ours, mut random) = (0.0, 0.0);
        for seed in 0..2 {
            let space: Arc<dyn SearchSpace> = Arc::new(p.space());
            let mut o = ParEgoProposer::optimizer(space.clone(), settings.clone(), 1.0, seed);
            ours += crate::pareto::igd_plus(&p.minimise(&mut o, 100, 1).unwrap(), &front);
            let mut r = crate::single::RandomSearch::random(space, 1.0, seed);
            random += crate::pareto::igd_plus(&p.minimise(&mut r, 100, 1).unwrap(), &front);
        }
        assert!(
            ours < 0.95 * random,
            "ParEGO IGD+ {ours} vs random {random}"
        );
        // Every 4th trial fails: proposals continue and never repeat a configuration.
        let space: Arc<dyn SearchSpace> = Arc::new(p.space());
        let mut o = ParEgoProposer::optimizer(space, settings, 1.0, 3);
        let mut seen = Vec::new();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for _ in 0..30 {
            let t = o.ask(1).unwrap().remove(0);
            assert!(!seen.contains(&t.config));
            seen.push(t.config.clone());
            let out = if t.id % 4 == 3 || rng.random::<f64>() < 0.05 {
                Outcome::Failure("diverged".into())
            } else {
                Outcome::Success(p.evaluate_config(&t.config))
            };
            o.tell(t.id, out).unwrap();
        }
        assert_eq!(o.history().len(), 30);
    }
}
