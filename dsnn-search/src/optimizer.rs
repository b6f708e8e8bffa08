//! The ask/tell [`Optimizer`] interface, trials and outcomes, the [`Proposer`]
//! interface for "where to sample next", and replay of a recorded history (resume).

use std::collections::BTreeMap;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::space::{Configuration, SpaceError};

/// Identifier of a trial, unique within one optimizer run (0, 1, 2, ...).
pub type TrialId = u64;

/// A unit of work handed out by [`Optimizer::ask`]: evaluate `config` at `budget`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// Identifier to pass back to [`Optimizer::tell`].
    pub id: TrialId,
    /// The configuration to evaluate.
    pub config: Configuration,
    /// The fidelity (epochs, data fraction, ...) in the units of the schedule.
    pub budget: f64,
}

/// The result of a trial: an objective vector (all minimised) or a failure.
///
/// A failure carries a message and is never turned into objective values: the
/// optimizers keep failed trials out of normalisation, surrogates and promotion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// The trial finished; objectives are finite and minimised.
    Success(Vec<f64>),
    /// The trial crashed or was invalid.
    Failure(String),
}

impl Outcome {
    /// The objective vector of a success.
    pub fn objectives(&self) -> Option<&[f64]> {
        match self {
            Outcome::Success(f) => Some(f),
            Outcome::Failure(_) => None,
        }
    }
}

/// A finished trial: configuration, budget and outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Trial identifier.
    pub id: TrialId,
    /// Evaluated configuration.
    pub config: Configuration,
    /// Budget it was evaluated at.
    pub budget: f64,
    /// What happened.
    pub outcome: Outcome,
}

/// Errors of the ask/tell protocol.
#[derive(Debug, thiserror::Error)]
pub enum OptimizerError {
    /// `tell` named a trial that was never asked for or was already told.
    #[error("trial {0} is not pending (never asked, or already told)")]
    UnknownTrial(TrialId),
    /// The objective vector's length differs from earlier ones.
    #[error("trial {id}: expected {expected} objectives, got {got}")]
    ObjectiveCount {
        /// Trial identifier.
        id: TrialId,
        /// Number of objectives seen before.
        expected: usize,
        /// Number given now.
        got: usize,
    },
    /// An objective is NaN or infinite; report a failure instead.
    #[error("trial {0}: objectives must be finite (report a failure instead)")]
    NonFinite(TrialId),
    /// Replaying a history produced different trials than recorded.
    #[error("replay diverged: {0}")]
    ReplayMismatch(String),
    /// A search-space operation failed.
    #[error(transparent)]
    Space(#[from] SpaceError),
    /// A setting is invalid.
    #[error("invalid optimizer setting: {0}")]
    Invalid(String),
    /// An optimizer loaded from a plugin failed (it panicked, or reported an
    /// error of its own); the message names the plugin and what happened.
    #[error("optimizer plugin: {0}")]
    Plugin(String),
}

/// An ask/tell optimizer.
///
/// `ask(n)` returns up to `n` trials (fewer, possibly none, when the optimizer
/// must wait for results, e.g. at the end of an NSGA-II generation), so several
/// workers can evaluate at once. `tell` reports each trial's outcome, in any order.
/// With the same seed and the same sequence of asks and tells an optimizer gives
/// the same trials, which is what [`replay`] relies on to rebuild state.
pub trait Optimizer: Send {
    /// A short name for logs and reports.
    fn name(&self) -> String;
    /// Up to `n` new trials.
    fn ask(&mut self, n: usize) -> Result<Vec<Trial>, OptimizerError>;
    /// Report the outcome of a trial returned by `ask`.
    fn tell(&mut self, id: TrialId, outcome: Outcome) -> Result<(), OptimizerError>;
    /// Warm start: takes `trials`, which it did not ask (another optimizer
    /// or another version of this one did), as its own pending trials, so
    /// that their outcomes can be told and its next trials get fresh ids.
    /// Returns `Ok(false)` when it cannot (the default): a run then goes on
    /// with this optimizer started afresh, not learning from them.
    fn adopt(&mut self, trials: &[Trial]) -> Result<bool, OptimizerError> {
        let _ = trials;
        Ok(false)
    }
}

/// Boxed optimizers (`Box<dyn Optimizer>`) are optimizers too.
impl<O: Optimizer + ?Sized> Optimizer for Box<O> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn ask(&mut self, n: usize) -> Result<Vec<Trial>, OptimizerError> {
        (**self).ask(n)
    }
    fn tell(&mut self, id: TrialId, outcome: Outcome) -> Result<(), OptimizerError> {
        (**self).tell(id, outcome)
    }
    fn adopt(&mut self, trials: &[Trial]) -> Result<bool, OptimizerError> {
        (**self).adopt(trials)
    }
}

/// Proposes new configurations from the observations so far; the pluggable
/// "sampler" of [`crate::ProposerOptimizer`] (single fidelity) and of
/// [`crate::HyperbandOptimizer`] (rung 0 of each bracket).
pub trait Proposer: Send {
    /// A short name for logs and reports.
    fn name(&self) -> String;
    /// Propose `n` configurations. `history` holds every finished trial (all
    /// budgets, failures included); `pending` those asked but not yet told.
    fn propose(
        &mut self,
        n: usize,
        history: &[Observation],
        pending: &[Configuration],
        rng: &mut dyn RngCore,
    ) -> Result<Vec<Configuration>, OptimizerError>;
}

/// The configurations already evaluated or pending, as their canonical
/// strings: what a proposer must not propose again.
pub fn tried_configurations(
    history: &[Observation],
    pending: &[Configuration],
) -> std::collections::HashSet<String> {
    history
        .iter()
        .map(|o| o.config.to_string())
        .chain(pending.iter().map(|c| c.to_string()))
        .collect()
}

/// Boxed proposers (`Box<dyn Proposer>`) are proposers too.
impl<P: Proposer + ?Sized> Proposer for Box<P> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn propose(
        &mut self,
        n: usize,
        history: &[Observation],
        pending: &[Configuration],
        rng: &mut dyn RngCore,
    ) -> Result<Vec<Configuration>, OptimizerError> {
        (**self).propose(n, history, pending, rng)
    }
}

/// One step of an ask/tell session, for recording and replay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// `ask(n)` returned `trials`.
    Ask {
        /// Requested number.
        n: usize,
        /// Returned trials.
        trials: Vec<Trial>,
    },
    /// `tell(id, outcome)`.
    Tell {
        /// Trial identifier.
        id: TrialId,
        /// Reported outcome.
        outcome: Outcome,
    },
}

/// Rebuild an optimizer's state by replaying a recorded history on a freshly
/// constructed optimizer (same settings and seed). Every replayed ask must give
/// exactly the recorded trials, otherwise [`OptimizerError::ReplayMismatch`].
pub fn replay(opt: &mut dyn Optimizer, events: &[Event]) -> Result<(), OptimizerError> {
    for (k, e) in events.iter().enumerate() {
        match e {
            Event::Ask { n, trials } => {
                let got = opt.ask(*n)?;
                if &got != trials {
                    return Err(OptimizerError::ReplayMismatch(format!(
                        "event {k}: ask({n}) gave {} trials {:?}, recorded {:?}",
                        got.len(),
                        got.iter().map(|t| t.id).collect::<Vec<_>>(),
                        trials.iter().map(|t| t.id).collect::<Vec<_>>()
                    )));
                }
            }
            Event::Tell { id, outcome } => opt.tell(*id, outcome.clone())?,
        }
    }
    Ok(())
}

/// Wraps an optimizer and records every ask and tell, for a run log and resume.
pub struct Recorded<O> {
    inner: O,
    events: Vec<Event>,
}

impl<O: Optimizer> Recorded<O> {
    /// Start recording around `inner`.
    pub fn new(inner: O) -> Self {
        Recorded {
            inner,
            events: Vec::new(),
        }
    }

    /// The events so far.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The wrapped optimizer.
    pub fn inner(&self) -> &O {
        &self.inner
    }
}

impl<O: Optimizer> Optimizer for Recorded<O> {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn ask(&mut self, n: usize) -> Result<Vec<Trial>, OptimizerError> {
        let trials = self.inner.ask(n)?;
        self.events.push(Event::Ask {
            n,
            trials: trials.clone(),
        });
        Ok(trials)
    }
    fn tell(&mut self, id: TrialId, outcome: Outcome) -> Result<(), OptimizerError> {
        self.inner.tell(id, outcome.clone())?;
        self.events.push(Event::Tell { id, outcome });
        Ok(())
    }
    fn adopt(&mut self, trials: &[Trial]) -> Result<bool, OptimizerError> {
        self.inner.adopt(trials)
    }
}

/// The Pareto-optimal successful trials of a history at one budget: `budget`
/// if given, else the largest budget any successful trial reached (the "full"
/// fidelity of a multi-fidelity run). Failed trials never count. Returned in
/// history order.
pub fn pareto_front(history: &[Observation], budget: Option<f64>) -> Vec<&Observation> {
    let target = budget.or_else(|| {
        history
            .iter()
            .filter(|o| o.outcome.objectives().is_some())
            .map(|o| o.budget)
            .reduce(f64::max)
    });
    let Some(target) = target else {
        return Vec::new();
    };
    let at: Vec<&Observation> = history
        .iter()
        .filter(|o| o.budget == target && o.outcome.objectives().is_some())
        .collect();
    let objs: Vec<&[f64]> = at.iter().filter_map(|o| o.outcome.objectives()).collect();
    crate::pareto::non_dominated(&objs)
        .into_iter()
        .map(|i| at[i])
        .collect()
}

/// The observations a model-based proposer learns from: the successful trials
/// at the highest budget with at least `min_points` of them (the most
/// faithful fidelity that says enough), else all successful trials.
pub(crate) fn training_set(
    history: &[Observation],
    min_points: usize,
) -> Vec<(&Configuration, &[f64])> {
    let ok: Vec<(&Configuration, &[f64], f64)> = history
        .iter()
        .filter_map(|o| match &o.outcome {
            Outcome::Success(f) => Some((&o.config, f.as_slice(), o.budget)),
            Outcome::Failure(_) => None,
        })
        .collect();
    let mut budgets: Vec<f64> = ok.iter().map(|t| t.2).collect();
    budgets.sort_by(|a, b| b.total_cmp(a));
    budgets.dedup();
    for b in budgets {
        let at: Vec<(&Configuration, &[f64])> =
            ok.iter().filter(|t| t.2 == b).map(|t| (t.0, t.1)).collect();
        if at.len() >= min_points {
            return at;
        }
    }
    ok.iter().map(|t| (t.0, t.1)).collect()
}

/// Bookkeeping shared by the optimizers: trial ids, pending trials, checks on
/// told outcomes, and the history of observations.
#[derive(Debug, Default)]
pub(crate) struct TrialBook {
    next_id: TrialId,
    pending: BTreeMap<TrialId, Trial>,
    n_obj: Option<usize>,
    history: Vec<Observation>,
}

impl TrialBook {
    /// Issue a new trial.
    pub(crate) fn issue(&mut self, config: Configuration, budget: f64) -> Trial {
        let t = Trial {
            id: self.next_id,
            config,
            budget,
        };
        self.next_id += 1;
        self.pending.insert(t.id, t.clone());
        t
    }

    /// Take trials asked elsewhere as pending (see [`Optimizer::adopt`]);
    /// the next issued id follows the largest one. A trial whose id is
    /// already pending or issued is refused.
    pub(crate) fn adopt(&mut self, trials: &[Trial]) -> Result<(), OptimizerError> {
        for t in trials {
            if self.pending.contains_key(&t.id) || self.history.iter().any(|o| o.id == t.id) {
                return Err(OptimizerError::Invalid(format!(
                    "cannot adopt trial {}: the id is taken",
                    t.id
                )));
            }
            self.pending.insert(t.id, t.clone());
            self.next_id = self.next_id.max(t.id.saturating_add(1));
        }
        Ok(())
    }

    /// Check and record an outcome; returns the finished observation.
    pub(crate) fn accept(
        &mut self,
        id: TrialId,
        outcome: Outcome,
    ) -> Result<Observation, OptimizerError> {
        if !self.pending.contains_key(&id) {
            return Err(OptimizerError::UnknownTrial(id));
        }
        if let Outcome::Success(f) = &outcome {
            if f.iter().any(|v| !v.is_finite()) {
                return Err(OptimizerError::NonFinite(id));
            }
            match self.n_obj {
                Some(m) if m != f.len() => {
                    return Err(OptimizerError::ObjectiveCount {
                        id,
                        expected: m,
                        got: f.len(),
                    })
                }
                _ => self.n_obj = Some(f.len()),
            }
        }
        let t = self.pending.remove(&id).expect("checked above");
        if let Outcome::Failure(msg) = &outcome {
            log::info!("trial {id} failed: {msg}");
        }
        let obs = Observation {
            id,
            config: t.config,
            budget: t.budget,
            outcome,
        };
        self.history.push(obs.clone());
        Ok(obs)
    }

    /// Configurations asked but not yet told.
    pub(crate) fn pending_configs(&self) -> Vec<Configuration> {
        self.pending.values().map(|t| t.config.clone()).collect()
    }

    /// Number of pending trials.
    pub(crate) fn n_pending(&self) -> usize {
        self.pending.len()
    }

    /// All finished trials in the order they were told.
    pub(crate) fn history(&self) -> &[Observation] {
        &self.history
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(id: TrialId, budget: f64, outcome: Outcome) -> Observation {
        Observation {
            id,
            config: Configuration::new(),
            budget,
            outcome,
        }
    }

    #[test]
    fn pareto_front_uses_the_full_budget_and_skips_failures() {
        let h = vec![
            obs(0, 1.0, Outcome::Success(vec![0.0, 0.0])),
            obs(1, 9.0, Outcome::Success(vec![1.0, 2.0])),
            obs(2, 9.0, Outcome::Success(vec![2.0, 1.0])),
            obs(3, 9.0, Outcome::Success(vec![2.0, 2.0])),
            obs(4, 27.0, Outcome::Failure("oom".into())),
        ];
        let ids: Vec<TrialId> = pareto_front(&h, None).iter().map(|o| o.id).collect();
        assert_eq!(ids, vec![1, 2]);
        let ids: Vec<TrialId> = pareto_front(&h, Some(1.0)).iter().map(|o| o.id).collect();
        assert_eq!(ids, vec![0]);
        assert!(pareto_front(&h[4..], None).is_empty());
    }
}
