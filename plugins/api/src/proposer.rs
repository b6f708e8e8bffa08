//! The proposer interface (since interface 1.1): a plugin that proposes
//! configurations and leaves the budgets to dsnn, which runs it under
//! Hyperband or successive halving like its built-in proposers.
//!
//! Across the boundary a proposer is asked for a batch of configurations
//! (`propose`, with the configurations still running) and told every
//! finished trial with its budget (`tell`). Inside the plugin,
//! [`proposer_from`] runs any [`dsnn_search::Proposer`] (the trait of the
//! built-in proposers, which sees the whole history) behind that protocol:
//! the adapter keeps the history and a random-number generator seeded by the
//! plugin's seed.

// `#[sabi_trait]` (abi_stable 0.11) puts impls inside a generated const.
#![allow(non_local_definitions)]

use abi_stable::sabi_trait;
use abi_stable::std_types::{RBox, RResult, RSlice, RStr, RString, RVec};
use dsnn_search::{Configuration, ConfigurationSpace, Observation, Proposer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::panic::guard;
use crate::types::{PConfiguration, PContext, PError, PObservation};

/// One proposer instance, as seen across the library boundary.
///
/// Implement it through [`proposer_from`], which catches panics; a
/// hand-written implementation must run every body inside [`crate::guard`].
#[sabi_trait]
pub trait ProposerInstance: Send {
    /// A short name for logs and reports.
    fn name(&self) -> RString;

    /// `n` new configurations (fewer only if the space has run out of new
    /// ones). `pending` holds the configurations asked for and not yet told.
    fn propose(
        &mut self,
        n: u64,
        pending: RSlice<'_, PConfiguration>,
    ) -> RResult<RVec<PConfiguration>, PError>;

    /// A finished trial: configuration, budget and outcome. The host tells
    /// every trial once, in the order they finished, before the next
    /// `propose`; that order is the same when a run is resumed.
    ///
    /// The last method of interface 1.1; add new methods after it, with a
    /// default body (see the versioning rule in the crate documentation).
    #[sabi(last_prefix_field)]
    fn tell(&mut self, observation: PObservation) -> RResult<(), PError>;
}

/// An owned proposer instance behind the stable trait object.
pub type ProposerBox = ProposerInstance_TO<'static, RBox<()>>;

/// Runs a [`dsnn_search::Proposer`] behind the stable trait object: keeps
/// the history it is told and the generator its proposals draw from, and
/// runs every call inside [`guard`].
pub struct ProposerAdapter<P> {
    proposer: P,
    history: Vec<Observation>,
    rng: ChaCha8Rng,
}

impl<P: Proposer + 'static> ProposerAdapter<P> {
    /// Wraps `proposer`; its random draws come from a generator seeded by
    /// `seed` (same seed, same calls: same proposals).
    pub fn new(proposer: P, seed: u64) -> Self {
        ProposerAdapter {
            proposer,
            history: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl<P: Proposer + 'static> ProposerInstance for ProposerAdapter<P> {
    fn name(&self) -> RString {
        match guard("name", || Ok(self.proposer.name())) {
            RResult::ROk(n) => n.into(),
            RResult::RErr(e) => format!("<name unavailable: {e}>").into(),
        }
    }

    fn propose(
        &mut self,
        n: u64,
        pending: RSlice<'_, PConfiguration>,
    ) -> RResult<RVec<PConfiguration>, PError> {
        guard("propose", || {
            let n = usize::try_from(n).map_err(|_| PError::invalid("propose: n too large"))?;
            let pending: Vec<Configuration> =
                pending.iter().cloned().map(Configuration::from).collect();
            let configs = self
                .proposer
                .propose(n, &self.history, &pending, &mut self.rng)?;
            Ok(configs.iter().map(PConfiguration::from).collect())
        })
    }

    fn tell(&mut self, observation: PObservation) -> RResult<(), PError> {
        guard("tell", || {
            self.history.push(observation.into());
            Ok(())
        })
    }
}

/// The body of a plugin's `create_proposer` function: parses the space,
/// calls `build` with it, the settings text, the seed and the run's
/// context, and boxes the proposer it returns. Panics in parsing or in
/// `build` become [`PError::Panic`].
///
/// ```ignore
/// extern "C" fn create_proposer(space: RStr<'_>, settings: RStr<'_>, seed: u64,
///     context: PContext) -> RResult<ProposerBox, PError> {
///     proposer_from(space, settings, seed, context, MyProposer::new)
/// }
/// ```
pub fn proposer_from<P, F>(
    space_json: RStr<'_>,
    settings_toml: RStr<'_>,
    seed: u64,
    context: PContext,
    build: F,
) -> RResult<ProposerBox, PError>
where
    P: Proposer + 'static,
    F: FnOnce(ConfigurationSpace, &str, PContext) -> Result<P, PError>,
{
    guard("create_proposer", || {
        let space = ConfigurationSpace::from_configspace_json(space_json.as_str())?;
        let proposer = build(space, settings_toml.as_str(), context)?;
        Ok(ProposerInstance_TO::from_value(
            ProposerAdapter::new(proposer, seed),
            abi_stable::sabi_trait::TD_Opaque,
        ))
    })
}
