//! Tutorial optimizer plugin (see `docs/plugins.md`): Pareto local search. Random
//! trials first, then neighbours of randomly chosen non-dominated trials.

// Step 1: imports. The plugin sees dsnn-search through the api crate.
use abi_stable::std_types::{RResult, RStr};
use abi_stable::{export_root_module, prefix_type::PrefixTypeTrait};
use dsnn_plugin_api::dsnn_search::{pareto, Configuration, ConfigurationSpace, SearchSpace};
use dsnn_plugin_api::dsnn_search::{Optimizer, OptimizerError, Outcome, Trial, TrialId};
use dsnn_plugin_api::{optimizer_from, OptimizerBox, OptimizerPlugin, OptimizerPluginRef};
use dsnn_plugin_api::{PError, Settings};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Step 2: the optimizer's state.
pub struct LocalSearch {
    space: ConfigurationSpace,
    rng: ChaCha8Rng,
    random_trials: usize,
    next_id: TrialId,
    pending: BTreeMap<TrialId, Configuration>,
    done: Vec<(Configuration, Vec<f64>)>,
}

// Step 3: construction from the space, the settings text and the seed.
impl LocalSearch {
    fn new(space: ConfigurationSpace, settings: &str, seed: u64) -> Result<Self, PError> {
        let mut s = Settings::parse("example", settings)?;
        let random_trials = s.usize("random_trials", 10)?; // the one setting
        s.finish()?; // rejects unknown keys
        Ok(LocalSearch {
            space,
            rng: ChaCha8Rng::seed_from_u64(seed),
            random_trials,
            next_id: 0,
            pending: BTreeMap::new(),
            done: Vec::new(),
        })
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
            let (id, config) = (self.next_id, self.propose()?);
            self.next_id += 1;
            self.pending.insert(id, config.clone());
            trials.push(Trial {
                id,
                config,
                budget: 1.0,
            });
        }
        Ok(trials)
    }
    fn tell(&mut self, id: TrialId, outcome: Outcome) -> Result<(), OptimizerError> {
        let config = self.pending.remove(&id);
        let config = config.ok_or(OptimizerError::UnknownTrial(id))?;
        if let Outcome::Success(f) = outcome {
            self.done.push((config, f)); // failures are simply forgotten
        }
        Ok(())
    }
}

// Step 5: export the plugin. `create` parses the space and catches panics.
extern "C" fn create(space: RStr, settings: RStr, seed: u64) -> RResult<OptimizerBox, PError> {
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
