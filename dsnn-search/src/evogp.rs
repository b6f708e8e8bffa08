//! Model-checked switching between GP/EHVI and evolutionary TPE, for small
//! budgets: each proposal is GP/EHVI's ([`crate::gp_ehvi`]) when every
//! objective's Gaussian process is shown to predict, else evolutionary
//! TPE's ([`crate::evotpe`]).
//!
//! On the benchmark suite at 100 evaluations (`docs/search.md`) the two are
//! complementary: GP/EHVI is far ahead where its models find the structure
//! (ZDT2, ZDT6, DTLZ7), evolutionary TPE where they do not (ZDT3, ZDT4, the
//! three-objective WFG problems with 24 variables). The check is cheap: the
//! leave-one-out predictions of a GP come in closed form from the Cholesky
//! factor of its fit ([`crate::gp::Gp::leave_one_out`]), and their Spearman
//! rank correlation with the observations ([`crate::model_check`]) says
//! whether the model ranks points it has not seen. It is computed at every
//! `propose` call from the models fitted on the training set (pending trials
//! excluded), so a run switches as the models learn or fail to.
//!
//! Optionally evolutionary TPE's candidates are also screened by the models:
//! `evotpe_candidates` of its proposals join GP/EHVI's candidates when the
//! models pass, and with `screened_candidates > 1` the proposal when they
//! fail is the one with the largest expected hypervolume improvement among
//! that many of evolutionary TPE's.
//!
//! Everything else is the two optimizers': their settings (nested tables
//! `gp` and `evotpe`), random trials first, pending trials as kriging
//! believers for the models and as bad observations for TPE, no
//! configuration proposed twice, and under a fidelity schedule the training
//! set of the highest budget with enough successes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

use crate::evotpe::{EvoTpeProposer, EvoTpeSettings};
use crate::gp_ehvi::{Acquisition, GpEhviProposer, GpEhviSettings};
use crate::optimizer::{Observation, OptimizerError, Proposer};
use crate::pareto::non_dominated;
use crate::single::ProposerOptimizer;
use crate::space::{Configuration, SearchSpace};

/// Settings of [`EvoGpProposer`] (as `[optimizer]` keys of an experiment
/// file, the two parts' settings as the tables `gp` and `evotpe`; unknown
/// keys are refused).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvoGpSettings {
    /// Random configurations before either model is used (overrides the
    /// parts' `n_initial`).
    pub n_initial: usize,
    /// Fewest successful trials at one budget for the models to use that
    /// budget alone (overrides the parts' `min_points_per_budget`).
    pub min_points_per_budget: usize,
    /// GP/EHVI proposes when every objective's leave-one-out Spearman
    /// correlation is at least this (above 1: never; below -1: always).
    pub min_loo_correlation: f64,
    /// The correlation is taken over this many of the most recent training
    /// points (0: all of them).
    pub check_recent: usize,
    /// When the models pass the check, still let evolutionary TPE propose
    /// with a probability set by credit: each part's share of its proposals
    /// on the current Pareto front (a Beta(1, 1) prior on each), normalised
    /// and kept within [0.1, 0.9]. Where both parts can run, the one whose
    /// proposals reach the front gets more of the budget.
    pub credit_share: bool,
    /// Evolutionary TPE proposals added to GP/EHVI's candidates when the
    /// models pass the check (0: GP/EHVI's own candidates only).
    pub evotpe_candidates: usize,
    /// When the models fail the check: evolutionary TPE proposals among which
    /// the one with the largest expected hypervolume improvement is chosen
    /// (1: evolutionary TPE's own choice).
    pub screened_candidates: usize,
    /// Settings of the GP/EHVI part.
    pub gp: GpEhviSettings,
    /// Settings of the evolutionary TPE part.
    pub evotpe: EvoTpeSettings,
}

impl Default for EvoGpSettings {
    fn default() -> Self {
        EvoGpSettings {
            n_initial: 10,
            min_points_per_budget: 8,
            min_loo_correlation: 0.7,
            check_recent: 0,
            credit_share: false,
            evotpe_candidates: 0,
            screened_candidates: 1,
            gp: GpEhviSettings::default(),
            evotpe: EvoTpeSettings::default(),
        }
    }
}

impl EvoGpSettings {
    /// Check the settings' ranges (the parts' included).
    pub fn validate(&self) -> Result<(), OptimizerError> {
        if !self.min_loo_correlation.is_finite() {
            return Err(OptimizerError::Invalid(
                "evogp: `min_loo_correlation` must be finite".into(),
            ));
        }
        if self.screened_candidates == 0 {
            return Err(OptimizerError::Invalid(
                "evogp: `screened_candidates` must be at least 1".into(),
            ));
        }
        // The shared settings live at the top level: a part's own value that
        // is neither its default nor the top-level one would be ignored.
        let (gp_default, evo_default) = (GpEhviSettings::default(), EvoTpeSettings::default());
        let shadowed = [
            (
                "gp",
                "n_initial",
                self.gp.n_initial,
                gp_default.n_initial,
                self.n_initial,
            ),
            (
                "gp",
                "min_points_per_budget",
                self.gp.min_points_per_budget,
                gp_default.min_points_per_budget,
                self.min_points_per_budget,
            ),
            (
                "evotpe",
                "n_initial",
                self.evotpe.n_initial,
                evo_default.n_initial,
                self.n_initial,
            ),
            (
                "evotpe",
                "min_points_per_budget",
                self.evotpe.min_points_per_budget,
                evo_default.min_points_per_budget,
                self.min_points_per_budget,
            ),
        ];
        for (part, key, own, default, top) in shadowed {
            if own != default && own != top {
                return Err(OptimizerError::Invalid(format!(
                    "evogp: set `{key}` at the top level, not in `{part}`"
                )));
            }
        }
        if self.gp.evotpe_share != 0.0 {
            return Err(OptimizerError::Invalid(
                "evogp: `gp.evotpe_share` must be 0 (evogp chooses the part itself)".into(),
            ));
        }
        self.parts().0.validate()?;
        self.parts().1.validate()
    }

    /// The parts' settings with the shared ones applied.
    fn parts(&self) -> (GpEhviSettings, EvoTpeSettings) {
        let mut gp = self.gp.clone();
        gp.n_initial = self.n_initial;
        gp.min_points_per_budget = self.min_points_per_budget;
        gp.evotpe_share = 0.0;
        let mut evo = self.evotpe.clone();
        evo.n_initial = self.n_initial;
        evo.min_points_per_budget = self.min_points_per_budget;
        (gp, evo)
    }
}

/// GP/EHVI or evolutionary TPE, chosen per proposal by a check of the GP
/// models; use it alone ([`EvoGpProposer::optimizer`]) or as the proposer of
/// a [`crate::HyperbandOptimizer`].
pub struct EvoGpProposer {
    space: Arc<dyn SearchSpace>,
    settings: EvoGpSettings,
    gp: GpEhviProposer,
    evotpe: EvoTpeProposer,
    /// Proposals made by each part: GP/EHVI, evolutionary TPE (diagnostics).
    counts: [usize; 2],
    /// Each model-based `propose` call's training-set size and leave-one-out
    /// correlations (diagnostics).
    checks: Vec<(usize, Vec<f64>)>,
    /// Which part made each model-based proposal (rendered configuration ->
    /// GP/EHVI or not), for `credit_share`. Rebuilt by replaying a run.
    by_gp: HashMap<String, bool>,
}

/// Single-fidelity model-checked GP/EHVI and evolutionary TPE.
pub type EvoGp = ProposerOptimizer<EvoGpProposer>;

impl EvoGpProposer {
    /// The switching proposer over `space` with `settings`.
    pub fn new(space: Arc<dyn SearchSpace>, settings: EvoGpSettings) -> Self {
        let (gp, evo) = settings.parts();
        EvoGpProposer {
            gp: GpEhviProposer::new(space.clone(), gp),
            evotpe: EvoTpeProposer::new(space.clone(), evo),
            space,
            settings,
            counts: [0; 2],
            checks: Vec::new(),
            by_gp: HashMap::new(),
        }
    }

    /// Single-fidelity, at `budget`, seeded by `seed`.
    pub fn optimizer(
        space: Arc<dyn SearchSpace>,
        settings: EvoGpSettings,
        budget: f64,
        seed: u64,
    ) -> EvoGp {
        ProposerOptimizer::new(EvoGpProposer::new(space, settings), budget, seed)
    }

    /// Model-based proposals so far by GP/EHVI and by evolutionary TPE.
    pub fn proposal_counts(&self) -> (usize, usize) {
        (self.counts[0], self.counts[1])
    }

    /// Each model-based `propose` call's training-set size and the
    /// objectives' leave-one-out rank correlations, in call order.
    pub fn checks(&self) -> &[(usize, Vec<f64>)] {
        &self.checks
    }

    /// Up to `k` distinct evolutionary TPE proposals, not yet taken, with
    /// their model inputs.
    fn evotpe_proposals(
        &mut self,
        k: usize,
        history: &[Observation],
        busy: &[Configuration],
        taken: &HashSet<String>,
        rng: &mut dyn RngCore,
    ) -> Result<Vec<(Configuration, Vec<f64>)>, OptimizerError> {
        if k == 0 {
            return Ok(Vec::new());
        }
        Ok(self
            .evotpe
            .propose(k, history, busy, rng)?
            .into_iter()
            .filter(|c| !taken.contains(&c.to_string()))
            .filter_map(|c| {
                let x = GpEhviProposer::inputs(self.space.encode(&c).ok()?);
                Some((c, x))
            })
            .collect())
    }
}

/// The probability that GP/EHVI makes a proposal, from each part's share of
/// its proposals that are on the front of the training set.
fn credit_gp_share(train: &[(&Configuration, &[f64])], by_gp: &HashMap<String, bool>) -> f64 {
    let objs: Vec<&[f64]> = train.iter().map(|t| t.1).collect();
    let front: HashSet<usize> = non_dominated(&objs).into_iter().collect();
    // [on the front, proposals] per part (evolutionary TPE, GP/EHVI), Beta(1, 1).
    let mut count = [[1.0f64, 2.0]; 2];
    for (i, t) in train.iter().enumerate() {
        if let Some(&gp) = by_gp.get(&t.0.to_string()) {
            let c = &mut count[usize::from(gp)];
            c[0] += f64::from(u8::from(front.contains(&i)));
            c[1] += 1.0;
        }
    }
    let (evo, gp) = (count[0][0] / count[0][1], count[1][0] / count[1][1]);
    (gp / (gp + evo)).clamp(0.1, 0.9)
}

/// The candidate with the largest expected hypervolume improvement.
fn best_by_ehvi(
    acq: &Acquisition,
    candidates: Vec<(Configuration, Vec<f64>)>,
) -> Option<(Configuration, Vec<f64>)> {
    candidates
        .into_iter()
        .map(|(c, x)| (acq.score(&x), c, x))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c, x)| (c, x))
}

impl Proposer for EvoGpProposer {
    fn name(&self) -> String {
        "evogp".into()
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
            self.gp
                .acquisition(&train, pending, Some(self.settings.check_recent))
        } else {
            None
        };
        let trusted = acq.as_ref().is_some_and(|a| {
            a.loo_correlation
                .iter()
                .all(|&c| c >= self.settings.min_loo_correlation)
        });
        if let Some(a) = &acq {
            self.checks.push((train.len(), a.loo_correlation.clone()));
            log::debug!(
                "evogp: {} points, leave-one-out correlations {:?}, {}",
                train.len(),
                a.loo_correlation,
                if trusted {
                    "GP/EHVI"
                } else {
                    "evolutionary TPE"
                }
            );
        }
        let front_inputs = if acq.is_some() {
            self.gp.front_inputs(&train)
        } else {
            Vec::new()
        };
        let gp_share = if self.settings.credit_share {
            credit_gp_share(&train, &self.by_gp)
        } else {
            1.0
        };
        let mut out: Vec<Configuration> = Vec::with_capacity(n);
        for _ in 0..n {
            let busy: Vec<Configuration> = pending.iter().chain(&out).cloned().collect();
            let use_gp = trusted && (gp_share >= 1.0 || rng.random::<f64>() < gp_share);
            let chosen = match acq.as_mut() {
                None => None,
                Some(a) if use_gp => {
                    let mut cands = self.evotpe_proposals(
                        self.settings.evotpe_candidates,
                        history,
                        &busy,
                        &taken,
                        rng,
                    )?;
                    cands.extend(self.gp.propose_one(a, &front_inputs, &taken, rng));
                    self.counts[0] += 1;
                    let best = best_by_ehvi(a, cands);
                    if let Some((c, _)) = &best {
                        self.by_gp.insert(c.to_string(), true);
                    }
                    best
                }
                Some(a) => {
                    let cands = self.evotpe_proposals(
                        self.settings.screened_candidates,
                        history,
                        &busy,
                        &taken,
                        rng,
                    )?;
                    self.counts[1] += 1;
                    let best = if cands.len() == 1 {
                        cands.into_iter().next()
                    } else {
                        best_by_ehvi(a, cands)
                    };
                    if let Some((c, _)) = &best {
                        self.by_gp.insert(c.to_string(), false);
                    }
                    best
                }
            };
            let c = match chosen {
                Some((c, x)) => {
                    if let Some(a) = acq.as_mut() {
                        a.believe(&x);
                    }
                    c
                }
                // Initial design, or nothing new was found: random.
                None => self.space.sample(rng)?,
            };
            taken.insert(c.to_string());
            out.push(c);
        }
        Ok(out)
    }
}
