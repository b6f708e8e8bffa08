//! A Gaussian-process optimizer with expected hypervolume improvement (EHVI),
//! the family of BoTorch's qNEHVI, for small budgets: one GP per objective
//! ([`crate::gp`]) on the space's unit-cube encoding, exact EHVI over the
//! current front in min-max normalised objectives ([`crate::ehvi`]) with the
//! reference point just beyond the front's nadir, maximised over
//! perturbations of the front members' inputs (optionally also uniform
//! points and local steps). Pending trials and the earlier points of a batch
//! are fantasised at the posterior mean (kriging believer).
//!
//! Candidates stay near the front by default: uniform candidates and local
//! search follow the posterior variance, which is largest in the cube's
//! corners, and on problems whose optimum is inside the cube (DTLZ2, DTLZ5)
//! that spent the budget on corners (`docs/search.md`).
//!
//! Integer, categorical and conditional hyperparameters go through the
//! space's encoding, as in ParEGO: candidates are rounded to what they decode
//! to, inactive coordinates take a fixed value outside the cube. Under
//! Hyperband the models learn from the highest budget with enough points.

use std::collections::HashSet;
use std::sync::Arc;

use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

use crate::ehvi::BoxDecomposition;
use crate::gp::{Gp, GpFit, GpHyperparameters};
use crate::optimizer::{Observation, OptimizerError, Proposer};
use crate::pareto::{hypervolume_contributions, non_dominated, Normalizer};
use crate::single::ProposerOptimizer;
use crate::space::{standard_normal, Configuration, SearchSpace};

/// Settings of [`GpEhviProposer`] (as `[optimizer]` keys of an experiment
/// file; unknown keys are refused).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpEhviSettings {
    /// Random configurations before the models are used.
    pub n_initial: usize,
    /// Uniform random candidates scored per proposal.
    pub n_random_candidates: usize,
    /// Candidates made by perturbing the inputs of the front's members.
    pub n_perturbed_candidates: usize,
    /// Largest standard deviation of a perturbation step in the unit cube
    /// (steps cycle through it, a half and a quarter of it).
    pub perturbation_sd: f64,
    /// Local searches, started from the best candidates.
    pub n_local_starts: usize,
    /// Steps of each local search (each scores `local_neighbours` points).
    pub local_steps: usize,
    /// Perturbations scored per local step.
    pub local_neighbours: usize,
    /// Fewest successful trials at one budget for the models to train on that
    /// budget alone (multi-fidelity); otherwise all budgets are pooled.
    pub min_points_per_budget: usize,
    /// Reference point of the hypervolume: the front's nadir plus `margin`
    /// times the front's extent, per objective.
    pub reference_margin: f64,
    /// Bound the improvement region below at the observed ideal point minus
    /// this share of the front's extent (`None`: unbounded). Below the
    /// observed best of an objective the models extrapolate, and a model that
    /// undershoots an objective's physical floor (say a cosine at 0) makes
    /// every point at that end of the front look like a sure improvement.
    pub ideal_margin: Option<f64>,
    /// Most boxes of the decomposition; a larger front is cut to the members
    /// with the largest hypervolume contributions (only with 4 or more
    /// objectives or very large fronts).
    pub max_boxes: usize,
    /// L-BFGS iterations of the first hyperparameter fit (from the priors).
    pub first_fit_iterations: usize,
    /// L-BFGS iterations of the later fits, warm-started from the previous.
    pub refit_iterations: usize,
    /// Refit the hyperparameters at every proposal while the training set
    /// has at most this many points; above it, only once it has grown by
    /// `refit_growth` since the last fit (in between, the models take the
    /// new data with the last hyperparameters), so that a proposal's cost
    /// stops growing with the cube of the history.
    pub refit_all_below: usize,
    /// Relative growth of the training set that triggers a refit above
    /// `refit_all_below`.
    pub refit_growth: f64,
    /// Model `ln(offset + f)` of the normalised objectives `f` instead of
    /// `f` (`Some(offset)`), and measure hypervolume there: improvements near
    /// the best values count more, and objectives with a long tail of bad
    /// values are modelled better.
    pub log_offset: Option<f64>,
    /// Noise variance floor of the models (standardised outputs).
    pub noise_floor: f64,
    /// Probability that a model-based proposal is made by evolutionary TPE
    /// ([`crate::EvoTpeProposer`] with its defaults) instead (a portfolio of
    /// the two; 0 = never).
    pub evotpe_share: f64,
}

impl Default for GpEhviSettings {
    fn default() -> Self {
        GpEhviSettings {
            n_initial: 10,
            n_random_candidates: 0,
            n_perturbed_candidates: 500,
            perturbation_sd: 0.1,
            n_local_starts: 0,
            local_steps: 10,
            local_neighbours: 10,
            min_points_per_budget: 8,
            reference_margin: 0.1,
            max_boxes: 20_000,
            ideal_margin: None,
            first_fit_iterations: 100,
            refit_iterations: 30,
            refit_all_below: 100,
            refit_growth: 0.1,
            log_offset: None,
            noise_floor: 1e-6,
            evotpe_share: 0.0,
        }
    }
}

impl GpEhviSettings {
    /// Check the settings' ranges.
    pub fn validate(&self) -> Result<(), OptimizerError> {
        let bad = |m: &str| Err(OptimizerError::Invalid(format!("gpehvi: {m}")));
        if self.n_random_candidates + self.n_perturbed_candidates == 0 {
            return bad("`n_random_candidates` and `n_perturbed_candidates` cannot both be 0");
        }
        if !(self.perturbation_sd > 0.0 && self.perturbation_sd.is_finite()) {
            return bad("`perturbation_sd` must be positive");
        }
        if !(self.reference_margin > 0.0 && self.reference_margin.is_finite()) {
            return bad("`reference_margin` must be positive");
        }
        if self.max_boxes == 0 {
            return bad("`max_boxes` must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.evotpe_share) {
            return bad("`evotpe_share` must lie in [0, 1]");
        }
        if !(self.refit_growth >= 0.0 && self.refit_growth.is_finite()) {
            return bad("`refit_growth` must be 0 or more");
        }
        if self.log_offset.is_some_and(|o| !(o > 0.0 && o.is_finite())) {
            return bad("`log_offset` must be positive");
        }
        if !(self.noise_floor > 0.0 && self.noise_floor.is_finite()) {
            return bad("`noise_floor` must be positive");
        }
        Ok(())
    }
}

/// Model input of an inactive coordinate: outside the cube, so that the
/// kernel sees activity.
const INACTIVE: f64 = -0.5;

/// The GP/EHVI proposer; use it alone ([`GpEhviProposer::optimizer`]) or as
/// the proposer of a [`crate::HyperbandOptimizer`].
pub struct GpEhviProposer {
    space: Arc<dyn SearchSpace>,
    settings: GpEhviSettings,
    /// Each objective's last fitted hyperparameters (warm starts).
    warm: Vec<Option<GpHyperparameters>>,
    /// Size of the training set at the last hyperparameter fit.
    fitted_at: usize,
    /// The evolutionary TPE of the portfolio (`evotpe_share > 0`).
    evotpe: Option<crate::EvoTpeProposer>,
}

/// Single-fidelity GP/EHVI.
pub type GpEhvi = ProposerOptimizer<GpEhviProposer>;

/// The models and the region they score against, for one `propose` call.
pub(crate) struct Acquisition {
    models: Vec<Gp>,
    /// Fitted objective points (normalised, maybe log-warped), fantasies included.
    points: Vec<Vec<f64>>,
    reference: Vec<f64>,
    lower: Option<Vec<f64>>,
    boxes: BoxDecomposition,
    max_boxes: usize,
    /// Each model's leave-one-out rank correlation on the training set's
    /// most recent points (before any fantasy; empty unless asked for).
    pub(crate) loo_correlation: Vec<f64>,
}

impl Acquisition {
    /// Expected hypervolume improvement of model input `x`.
    pub(crate) fn score(&self, x: &[f64]) -> f64 {
        let (mean, sd): (Vec<f64>, Vec<f64>) = self
            .models
            .iter()
            .map(|g| {
                let (m, v) = g.predict(x);
                (m, v.sqrt())
            })
            .unzip();
        self.boxes.expected_improvement(&mean, &sd)
    }

    /// Fantasise an observation at `x` at the models' mean (kriging believer).
    pub(crate) fn believe(&mut self, x: &[f64]) {
        let y: Vec<f64> = self.models.iter().map(|g| g.predict(x).0).collect();
        for (g, &v) in self.models.iter_mut().zip(&y) {
            g.condition(x.to_vec(), v);
        }
        self.points.push(y);
        self.rebuild();
    }

    fn rebuild(&mut self) {
        self.boxes = decomposition(
            &self.points,
            &self.reference,
            self.lower.as_deref(),
            self.max_boxes,
        );
    }
}

/// The hypervolume's reference point: the front's nadir moved out by `margin`
/// times the front's extent in each objective (BoTorch's
/// `infer_reference_point`). A reference beyond the worst of all points
/// instead makes any point that extends the front at one end, however bad in
/// the other objectives, worth a wide slab, and the search then piles up at
/// the front's ends.
fn reference_point(points: &[Vec<f64>], margin: f64) -> Vec<f64> {
    let front: Vec<&Vec<f64>> = non_dominated(points)
        .into_iter()
        .map(|i| &points[i])
        .collect();
    let m = points[0].len();
    (0..m)
        .map(|k| {
            let lo = front.iter().map(|p| p[k]).fold(f64::INFINITY, f64::min);
            let hi = front.iter().map(|p| p[k]).fold(f64::NEG_INFINITY, f64::max);
            let all_lo = points.iter().map(|p| p[k]).fold(f64::INFINITY, f64::min);
            let all_hi = points
                .iter()
                .map(|p| p[k])
                .fold(f64::NEG_INFINITY, f64::max);
            let span = if hi - lo > 1e-9 * (all_hi - all_lo).max(1e-300) {
                hi - lo
            } else {
                (all_hi - all_lo).max(1e-9)
            };
            hi + margin * span
        })
        .collect()
}

/// The observed ideal point moved down by `margin` times the front's extent.
fn ideal_bound(points: &[Vec<f64>], margin: f64) -> Vec<f64> {
    let front: Vec<&Vec<f64>> = non_dominated(points)
        .into_iter()
        .map(|i| &points[i])
        .collect();
    (0..points[0].len())
        .map(|k| {
            let lo = front.iter().map(|p| p[k]).fold(f64::INFINITY, f64::min);
            let hi = front.iter().map(|p| p[k]).fold(f64::NEG_INFINITY, f64::max);
            lo - margin * (hi - lo)
        })
        .collect()
}

/// The boxes of the non-dominated region of `points` below `reference`, the
/// front cut to its largest hypervolume contributors if it would need more
/// than `max_boxes`.
fn decomposition(
    points: &[Vec<f64>],
    reference: &[f64],
    lower: Option<&[f64]>,
    max_boxes: usize,
) -> BoxDecomposition {
    let front: Vec<&Vec<f64>> = non_dominated(points)
        .into_iter()
        .map(|i| &points[i])
        .filter(|p| p.iter().zip(reference).all(|(a, r)| a < r))
        .collect();
    let m = reference.len();
    let boxes_for = |n: usize| (n as f64 + 1.0).powi(m as i32 - 1);
    if boxes_for(front.len()) <= max_boxes as f64 {
        return BoxDecomposition::bounded(&front, reference, lower);
    }
    let mut keep = front.len();
    while keep > 1 && boxes_for(keep) > max_boxes as f64 {
        keep -= 1;
    }
    let contrib = hypervolume_contributions(&front, reference);
    let mut order: Vec<usize> = (0..front.len()).collect();
    order.sort_by(|&a, &b| contrib[b].total_cmp(&contrib[a]).then(a.cmp(&b)));
    let cut: Vec<&Vec<f64>> = order[..keep].iter().map(|&i| front[i]).collect();
    BoxDecomposition::bounded(&cut, reference, lower)
}

impl GpEhviProposer {
    /// GP/EHVI over `space` with `settings`.
    pub fn new(space: Arc<dyn SearchSpace>, settings: GpEhviSettings) -> Self {
        GpEhviProposer {
            space,
            settings,
            warm: Vec::new(),
            fitted_at: 0,
            evotpe: None,
        }
    }

    /// Single-fidelity GP/EHVI at `budget`, seeded by `seed`.
    pub fn optimizer(
        space: Arc<dyn SearchSpace>,
        settings: GpEhviSettings,
        budget: f64,
        seed: u64,
    ) -> GpEhvi {
        ProposerOptimizer::new(GpEhviProposer::new(space, settings), budget, seed)
    }

    /// Model input of an encoded configuration (inactive -> [`INACTIVE`]).
    pub(crate) fn inputs(encoded: Vec<f64>) -> Vec<f64> {
        encoded
            .into_iter()
            .map(|v| if v.is_nan() { INACTIVE } else { v })
            .collect()
    }

    /// Model inputs of the training set's non-dominated configurations: the
    /// points the candidate perturbations start from.
    pub(crate) fn front_inputs(&self, train: &[(&Configuration, &[f64])]) -> Vec<Vec<f64>> {
        let objs: Vec<&[f64]> = train.iter().map(|t| t.1).collect();
        non_dominated(&objs)
            .into_iter()
            .filter_map(|i| self.space.encode(train[i].0).ok().map(Self::inputs))
            .collect()
    }

    /// Model input of what a cube point decodes to, or `None` if forbidden.
    fn cube_inputs(&self, u: &[f64]) -> Option<Vec<f64>> {
        self.space.canonical_encoding(u).map(Self::inputs)
    }

    /// The configuration of a model input.
    fn decode(&self, x: &[f64]) -> Option<Configuration> {
        let u: Vec<f64> = x
            .iter()
            .map(|&v| if v < 0.0 { f64::NAN } else { v })
            .collect();
        let c = self.space.decode(&u).ok()?;
        (!self.space.is_forbidden(&c)).then_some(c)
    }

    /// Fit the models to the training set and fantasise the pending trials.
    pub(crate) fn acquisition(
        &mut self,
        train: &[(&Configuration, &[f64])],
        pending: &[Configuration],
        check_recent: Option<usize>,
    ) -> Option<Acquisition> {
        let objs: Vec<&[f64]> = train.iter().map(|t| t.1).collect();
        let norm = Normalizer::fit(&objs)?;
        let warp = |v: f64| match self.settings.log_offset {
            Some(o) => (o + v.max(0.0)).ln(),
            None => v,
        };
        let points: Vec<Vec<f64>> = objs
            .iter()
            .map(|f| norm.transform(f).into_iter().map(warp).collect())
            .collect();
        let m = points[0].len();
        let xs: Vec<Vec<f64>> = train
            .iter()
            .map(|t| {
                self.space
                    .encode(t.0)
                    .map(Self::inputs)
                    .unwrap_or_else(|_| vec![INACTIVE; self.space.dim()])
            })
            .collect();
        if self.warm.len() != m {
            self.warm = vec![None; m];
        }
        let n = xs.len();
        let refit = n <= self.settings.refit_all_below
            || n as f64 >= self.fitted_at as f64 * (1.0 + self.settings.refit_growth)
            || self.warm.iter().any(|w| w.is_none());
        if refit {
            self.fitted_at = n;
        }
        let mut models = Vec::with_capacity(m);
        for k in 0..m {
            let y: Vec<f64> = points.iter().map(|p| p[k]).collect();
            if !refit {
                if let Some(h) = &self.warm[k] {
                    models.push(Gp::with_fixed_hyperparameters(
                        xs.clone(),
                        &y,
                        h,
                        self.settings.noise_floor,
                    )?);
                    continue;
                }
            }
            let fit = GpFit {
                noise_floor: self.settings.noise_floor,
                max_iterations: if self.warm[k].is_some() {
                    self.settings.refit_iterations
                } else {
                    self.settings.first_fit_iterations
                },
            };
            let gp = Gp::fit(xs.clone(), &y, self.warm[k].as_ref(), &fit)?;
            self.warm[k] = Some(gp.hyperparameters().clone());
            models.push(gp);
        }
        let reference = reference_point(&points, self.settings.reference_margin);
        let lower = self
            .settings
            .ideal_margin
            .map(|margin| ideal_bound(&points, margin));
        let boxes = decomposition(
            &points,
            &reference,
            lower.as_deref(),
            self.settings.max_boxes,
        );
        let mut acq = Acquisition {
            models,
            points,
            reference,
            lower,
            boxes,
            max_boxes: self.settings.max_boxes,
            loo_correlation: Vec::new(),
        };
        if let Some(recent) = check_recent {
            acq.loo_correlation = (0..m)
                .map(|k| {
                    let y: Vec<f64> = acq.points.iter().map(|p| p[k]).collect();
                    crate::model_check::loo_rank_correlation(&acq.models[k], &y, recent)
                })
                .collect();
        }
        for c in pending {
            if let Ok(e) = self.space.encode(c) {
                acq.believe(&Self::inputs(e));
            }
        }
        Some(acq)
    }

    /// A cube point near `base` (model inputs): each coordinate moved with
    /// probability `p_move` by a Gaussian step of `sd`, reflected into the cube.
    fn perturb(base: &[f64], p_move: f64, sd: f64, rng: &mut dyn RngCore) -> Vec<f64> {
        base.iter()
            .map(|&v| {
                let v = if v < 0.0 { rng.random::<f64>() } else { v };
                if rng.random::<f64>() < p_move {
                    reflect(v + sd * standard_normal(rng))
                } else {
                    v
                }
            })
            .collect()
    }

    pub(crate) fn propose_one(
        &self,
        acq: &Acquisition,
        front_inputs: &[Vec<f64>],
        taken: &HashSet<String>,
        rng: &mut dyn RngCore,
    ) -> Option<(Configuration, Vec<f64>)> {
        let s = &self.settings;
        let d = self.space.dim();
        let mut cands: Vec<(f64, Vec<f64>)> = Vec::new();
        for _ in 0..s.n_random_candidates {
            let u: Vec<f64> = (0..d).map(|_| rng.random::<f64>()).collect();
            if let Some(x) = self.cube_inputs(&u) {
                cands.push((acq.score(&x), x));
            }
        }
        if !front_inputs.is_empty() {
            for k in 0..s.n_perturbed_candidates {
                let base = &front_inputs[k % front_inputs.len()];
                // Alternately few coordinates (about two) and many (half).
                let p_move = if k % 2 == 0 {
                    (2.0 / d as f64).min(1.0)
                } else {
                    0.5
                };
                let sd = s.perturbation_sd * [1.0, 0.5, 0.25][(k / 2) % 3];
                let u = Self::perturb(base, p_move, sd, rng);
                if let Some(x) = self.cube_inputs(&u) {
                    cands.push((acq.score(&x), x));
                }
            }
        }
        cands.sort_by(|a, b| b.0.total_cmp(&a.0));
        // Local search: from each start, the best of a few perturbations,
        // halving the step when none improves.
        let starts: Vec<(f64, Vec<f64>)> = cands.iter().take(s.n_local_starts).cloned().collect();
        for (mut score, mut x) in starts {
            let mut sd = 0.5 * s.perturbation_sd;
            for _ in 0..s.local_steps {
                let p_move = (2.0 / d as f64).min(1.0);
                let mut best: Option<(f64, Vec<f64>)> = None;
                for _ in 0..s.local_neighbours {
                    let u = Self::perturb(&x, p_move, sd, rng);
                    if let Some(xn) = self.cube_inputs(&u) {
                        let e = acq.score(&xn);
                        if best.as_ref().is_none_or(|(b, _)| e > *b) {
                            best = Some((e, xn));
                        }
                    }
                }
                match best {
                    Some((e, xn)) if e > score => (score, x) = (e, xn),
                    _ => sd *= 0.5,
                }
            }
            cands.push((score, x));
        }
        cands.sort_by(|a, b| b.0.total_cmp(&a.0));
        cands.into_iter().find_map(|(_, x)| {
            let c = self.decode(&x)?;
            (!taken.contains(&c.to_string())).then_some((c, x))
        })
    }
}

/// `v` folded back into [0, 1] by reflection at the faces.
fn reflect(v: f64) -> f64 {
    let r = v.rem_euclid(2.0);
    if r > 1.0 {
        2.0 - r
    } else {
        r
    }
}

impl Proposer for GpEhviProposer {
    fn name(&self) -> String {
        "gpehvi".into()
    }

    fn propose(
        &mut self,
        n: usize,
        history: &[Observation],
        pending: &[Configuration],
        rng: &mut dyn RngCore,
    ) -> Result<Vec<Configuration>, OptimizerError> {
        self.settings.validate()?;
        let mut taken = crate::optimizer::tried_configurations(history, pending);
        let started = history.len() + pending.len();
        let train = crate::optimizer::training_set(history, self.settings.min_points_per_budget);
        let model_based = started >= self.settings.n_initial && train.len() >= 2;
        let mut acq = if model_based {
            self.acquisition(&train, pending, None)
        } else {
            None
        };
        let front_inputs = if acq.is_some() {
            self.front_inputs(&train)
        } else {
            Vec::new()
        };
        let mut out: Vec<Configuration> = Vec::with_capacity(n);
        for _ in 0..n {
            if acq.is_some()
                && self.settings.evotpe_share > 0.0
                && rng.random::<f64>() < self.settings.evotpe_share
            {
                let space = self.space.clone();
                let evo = self.evotpe.get_or_insert_with(|| {
                    crate::EvoTpeProposer::new(space, crate::EvoTpeSettings::default())
                });
                let busy: Vec<Configuration> = pending.iter().chain(&out).cloned().collect();
                if let Some(c) = evo.propose(1, history, &busy, rng)?.pop() {
                    if !taken.contains(&c.to_string()) {
                        if let (Some(a), Ok(e)) = (acq.as_mut(), self.space.encode(&c)) {
                            a.believe(&Self::inputs(e));
                        }
                        taken.insert(c.to_string());
                        out.push(c);
                        continue;
                    }
                }
            }
            let chosen = match acq.as_mut() {
                Some(a) => match self.propose_one(a, &front_inputs, &taken, rng) {
                    Some((c, x)) => {
                        a.believe(&x);
                        Some(c)
                    }
                    None => None,
                },
                None => None,
            };
            // Initial design, or everything scored has been tried: random.
            let c = match chosen {
                Some(c) => c,
                None => self.space.sample(rng)?,
            };
            taken.insert(c.to_string());
            out.push(c);
        }
        Ok(out)
    }
}
