//! A tutorial optimizer plugin: Pareto local search. `docs/plugins.md` walks
//! through this file step by step.
//!
//! The first `random_trials` trials are random; after that, each trial is a
//! neighbour (one hyperparameter changed) of a random non-dominated trial.

// Step 1: imports. The plugin sees dsnn-search through the api crate.
use std::collections::BTreeMap;

use abi_stable::{export_root_module, prefix_type::PrefixTypeTrait, std_types::{RResult, RStr}};
use dsnn_plugin_api::dsnn_search::{pareto, Configuration, ConfigurationSpace, SearchSpace};
use dsnn_plugin_api::dsnn_search::{Optimizer, OptimizerError, Outcome, Trial, TrialId};
use dsnn_plugin_api::{optimizer_from, OptimizerBox, OptimizerPlugin, OptimizerPluginRef};
use dsnn_plugin_api::{PError, Settings};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// Step 2: the optimizer's state.
/// Pareto local search over a configuration space.
pub struct LocalSearch {
    space: ConfigurationSpace,
    rng: ChaCha8Rng,
    random_trials: usize,
    budget: f64,
    next_id: TrialId,
    pending: BTreeMap<TrialId, Configuration>,
    done: Vec<(Configuration, Vec<f64>)>,
}

// Step 3: construction from the space, the settings text and the seed.
impl LocalSearch {
    /// Reads the settings `random_trials` (default 10) and `budget` (default 1).
    pub fn new(space: ConfigurationSpace, settings: &str, seed: u64) -> Result<Self, PError> {
        let mut s = Settings::parse("example", settings)?;
        let random_trials = s.usize("random_trials", 10)?;
        let budget = s.f64("budget", 1.0)?;
        s.finish()?;
        let rng = ChaCha8Rng::seed_from_u64(seed);
        let (next_id, pending, done) = (0, BTreeMap::new(), Vec::new());
        Ok(LocalSearch { space, rng, random_trials, budget, next_id, pending, done })
    }

    fn propose(&mut self) -> Result<Configuration, OptimizerError> {
        if self.done.len() < self.random_trials {
            return Ok(self.space.sample(&mut self.rng)?);
        }
        let objectives: Vec<&[f64]> = self.done.iter().map(|(_, f)| f.as_slice()).collect();
        let front = pareto::non_dominated(&objectives);
        let parent = &self.done[front[self.rng.random_range(0..front.len())]].0;
        let mut moves = self.space.neighbours(parent, &mut self.rng, 1);
        if moves.is_empty() {
            return Ok(self.space.sample(&mut self.rng)?);
        }
        Ok(moves.swap_remove(self.rng.random_range(0..moves.len())))
    }
}

// Step 4: the ask/tell protocol of dsnn-search.
impl Optimizer for LocalSearch {
    fn name(&self) -> String {
        "example-local-search".into()
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Trial>, OptimizerError> {
        let mut trials = Vec::with_capacity(n);
        for _ in 0..n {
            let config = self.propose()?;
            let (id, budget) = (self.next_id, self.budget);
            self.next_id += 1;
            self.pending.insert(id, config.clone());
            trials.push(Trial { id, config, budget });
        }
        Ok(trials)
    }

    fn tell(&mut self, id: TrialId, outcome: Outcome) -> Result<(), OptimizerError> {
        let config = self.pending.remove(&id).ok_or(OptimizerError::UnknownTrial(id))?;
        if let Outcome::Success(f) = outcome {
            self.done.push((config, f)); // failures are simply forgotten
        }
        Ok(())
    }
}

// Step 5: export the plugin. `create` parses the space and catches panics.
extern "C" fn create(space: RStr<'_>, settings: RStr<'_>, seed: u64) -> RResult<OptimizerBox, PError> {
    optimizer_from(space, settings, seed, LocalSearch::new)
}

/// The root module the host looks for.
#[export_root_module]
pub fn root_module() -> OptimizerPluginRef {
    OptimizerPlugin {
        name: RStr::from_str("example"),
        description: RStr::from_str("Pareto local search (the plugin tutorial)"),
        create,
    }
    .leak_into_prefix()
}
