//! Tutorial optimizer plugin (see `docs/plugins.md`): Pareto local search as a
//! *proposer*. Random configurations first, then neighbours of randomly chosen
//! non-dominated ones. dsnn runs the proposer under Hyperband in a
//! multi-fidelity run and at the run's one budget otherwise.

// Step 1: imports. The plugin sees dsnn-search through the api crate.
use abi_stable::std_types::{RResult, RStr};
use abi_stable::{export_root_module, prefix_type::PrefixTypeTrait};
use dsnn_plugin_api::dsnn_search::{pareto, Configuration, ConfigurationSpace, SearchSpace};
use dsnn_plugin_api::dsnn_search::{Observation, OptimizerError, Proposer, ProposerOptimizer};
use dsnn_plugin_api::{optimizer_from, optimizer_with_context_from, proposer_from};
use dsnn_plugin_api::{OptimizerBox, OptimizerPlugin, OptimizerPluginRef, ProposerBox};
use dsnn_plugin_api::{PContext, PError, Settings};
use rand::{Rng, RngCore};

/// Step 2: the proposer's state: the space and one setting. The history of
/// finished trials is handed to `propose`; randomness comes from dsnn.
pub struct LocalSearch {
    space: ConfigurationSpace,
    random_trials: usize,
}

// Step 3: construction from the space and the settings text.
impl LocalSearch {
    fn new(space: ConfigurationSpace, settings: &str) -> Result<Self, PError> {
        let mut s = Settings::parse("example", settings)?;
        let random_trials = s.usize("random_trials", 10)?; // the one setting
        s.finish()?; // rejects unknown keys
        Ok(LocalSearch {
            space,
            random_trials,
        })
    }

    /// The successes at the largest budget that has `random_trials` of
    /// them: objective values at different budgets do not compare.
    fn comparable<'h>(&self, history: &'h [Observation]) -> Vec<(&'h Configuration, &'h [f64])> {
        let mut budgets: Vec<f64> = history.iter().map(|o| o.budget).collect();
        budgets.sort_by(|a, b| b.total_cmp(a));
        budgets.dedup();
        for b in budgets {
            let at: Vec<_> = (history.iter().filter(|o| o.budget == b))
                .filter_map(|o| Some((&o.config, o.outcome.objectives()?)))
                .collect();
            if at.len() >= self.random_trials.max(1) {
                return at;
            }
        }
        Vec::new()
    }
}

// Step 4: the proposer protocol of dsnn-search: `n` configurations from the
// finished trials (all budgets, failures included) and the pending ones.
impl Proposer for LocalSearch {
    fn name(&self) -> String {
        "example-local-search".into()
    }
    fn propose(
        &mut self,
        n: usize,
        history: &[Observation],
        _pending: &[Configuration],
        rng: &mut dyn RngCore,
    ) -> Result<Vec<Configuration>, OptimizerError> {
        let done = self.comparable(history);
        let objectives: Vec<&[f64]> = done.iter().map(|(_, f)| *f).collect();
        let front = pareto::non_dominated(&objectives);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            if front.is_empty() {
                out.push(self.space.sample(rng)?);
                continue;
            }
            let parent = done[front[rng.random_range(0..front.len())]].0;
            let mut moves = self.space.neighbours(parent, rng, 1);
            out.push(match moves.len() {
                0 => self.space.sample(rng)?,
                k => moves.swap_remove(rng.random_range(0..k)),
            });
        }
        Ok(out)
    }
}

// Step 5: export the plugin. Each function parses the space and catches
// panics. A multi-fidelity run calls `create_proposer`; a run at one budget
// calls `create_with_context` (the proposer at the run's budget), and a dsnn
// of interface 1.0, which knows no context, calls `create` (budget 1).
extern "C" fn create_proposer(
    space: RStr,
    settings: RStr,
    seed: u64,
    context: PContext,
) -> RResult<ProposerBox, PError> {
    proposer_from(space, settings, seed, context, |space, settings, _| {
        LocalSearch::new(space, settings)
    })
}

extern "C" fn create_with_context(
    space: RStr,
    settings: RStr,
    seed: u64,
    context: PContext,
) -> RResult<OptimizerBox, PError> {
    optimizer_with_context_from(space, settings, seed, context, |space, s, seed, c| {
        Ok(ProposerOptimizer::new(
            LocalSearch::new(space, s)?,
            c.max_budget,
            seed,
        ))
    })
}

extern "C" fn create(space: RStr, settings: RStr, seed: u64) -> RResult<OptimizerBox, PError> {
    optimizer_from(space, settings, seed, |space, s, seed| {
        Ok(ProposerOptimizer::new(
            LocalSearch::new(space, s)?,
            1.0,
            seed,
        ))
    })
}

/// The root module the host looks for.
#[export_root_module]
pub fn root_module() -> OptimizerPluginRef {
    OptimizerPlugin {
        name: RStr::from_str("example"),
        description: RStr::from_str("Pareto local search (the plugin tutorial)"),
        create,
        create_with_context: Some(create_with_context),
        create_proposer: Some(create_proposer),
    }
    .leak_into_prefix()
}
