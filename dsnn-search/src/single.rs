//! Single-fidelity optimizers built from a [`Proposer`]: random search and the
//! generic [`ProposerOptimizer`] (ParEGO uses it too).

use std::sync::Arc;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::optimizer::{
    Observation, Optimizer, OptimizerError, Outcome, Proposer, Trial, TrialBook, TrialId,
};
use crate::space::{Configuration, SearchSpace};

/// Proposes configurations uniformly at random from the space's prior.
pub struct RandomProposer {
    space: Arc<dyn SearchSpace>,
}

impl RandomProposer {
    /// A random proposer over `space`.
    pub fn new(space: Arc<dyn SearchSpace>) -> Self {
        RandomProposer { space }
    }
}

impl Proposer for RandomProposer {
    fn name(&self) -> String {
        "random".into()
    }
    fn propose(
        &mut self,
        n: usize,
        _history: &[Observation],
        _pending: &[Configuration],
        rng: &mut dyn RngCore,
    ) -> Result<Vec<Configuration>, OptimizerError> {
        (0..n)
            .map(|_| self.space.sample(rng).map_err(OptimizerError::from))
            .collect()
    }
}

/// An optimizer that asks a [`Proposer`] for every trial and runs it at a fixed
/// budget. With [`RandomProposer`] this is random search; with
/// [`crate::ParEgoProposer`] it is ParEGO.
pub struct ProposerOptimizer<P> {
    proposer: P,
    budget: f64,
    rng: ChaCha8Rng,
    book: TrialBook,
}

impl<P: Proposer> ProposerOptimizer<P> {
    /// Run `proposer` at `budget`, seeded by `seed`.
    pub fn new(proposer: P, budget: f64, seed: u64) -> Self {
        ProposerOptimizer {
            proposer,
            budget,
            rng: ChaCha8Rng::seed_from_u64(seed),
            book: TrialBook::default(),
        }
    }

    /// Every finished trial, in the order told.
    pub fn history(&self) -> &[Observation] {
        self.book.history()
    }

    /// The proposer (to read its diagnostics).
    pub fn proposer(&self) -> &P {
        &self.proposer
    }
}

/// Random search: uniform samples from the space at a fixed budget.
pub type RandomSearch = ProposerOptimizer<RandomProposer>;

impl RandomSearch {
    /// Random search over `space` at `budget`, seeded by `seed`.
    pub fn random(space: Arc<dyn SearchSpace>, budget: f64, seed: u64) -> Self {
        ProposerOptimizer::new(RandomProposer::new(space), budget, seed)
    }
}

impl<P: Proposer> Optimizer for ProposerOptimizer<P> {
    fn name(&self) -> String {
        self.proposer.name()
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Trial>, OptimizerError> {
        let pending = self.book.pending_configs();
        let configs = self
            .proposer
            .propose(n, self.book.history(), &pending, &mut self.rng)?;
        Ok(configs
            .into_iter()
            .map(|c| self.book.issue(c, self.budget))
            .collect())
    }

    fn tell(&mut self, id: TrialId, outcome: Outcome) -> Result<(), OptimizerError> {
        self.book.accept(id, outcome).map(|_| ())
    }

    /// Adopted trials join the proposer's history when told, whatever their
    /// budget: the proposer learns from every finished trial.
    fn adopt(&mut self, trials: &[Trial]) -> Result<bool, OptimizerError> {
        self.book.adopt(trials)?;
        Ok(true)
    }
}
