//! The optimizer plugin interface: the root module [`OptimizerPlugin`] and
//! the instance trait object [`OptimizerBox`].
//!
//! A plugin exports an [`OptimizerPluginRef`] with `#[export_root_module]`;
//! the host calls its `create` function with the search space (ConfigSpace
//! JSON), the settings (TOML text) and a seed, and drives the returned
//! instance with `ask` and `tell`.

// `#[sabi_trait]` (abi_stable 0.11) puts impls inside a generated const.
#![allow(non_local_definitions)]

use abi_stable::library::RootModule;
use abi_stable::sabi_trait;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RBox, RResult, RStr, RString, RVec};
use abi_stable::{declare_root_module_statics, StableAbi};
use dsnn_search::{ConfigurationSpace, Optimizer};

use crate::panic::guard;
use crate::proposer::ProposerBox;
use crate::types::{PContext, PError, POutcome, PTrial};

/// One optimizer instance, as seen across the library boundary.
///
/// Implement it through [`OptimizerAdapter`] (what [`optimizer_from`] does),
/// which catches panics; a hand-written implementation must run every body
/// inside [`crate::guard`].
#[sabi_trait]
pub trait OptimizerInstance: Send {
    /// A short name for logs and reports.
    fn name(&self) -> RString;

    /// Up to `n` new trials (fewer, possibly none, while waiting for results).
    fn ask(&mut self, n: u64) -> RResult<RVec<PTrial>, PError>;

    /// Report the outcome of a trial returned by `ask`.
    ///
    /// The last method of interface 1.0; add new methods after it, with a
    /// default body (see the versioning rule in the crate documentation).
    #[sabi(last_prefix_field)]
    fn tell(&mut self, id: u64, outcome: POutcome) -> RResult<(), PError>;
}

/// An owned optimizer instance behind the stable trait object.
pub type OptimizerBox = OptimizerInstance_TO<'static, RBox<()>>;

/// The root module of an optimizer plugin.
///
/// Interface 1.0 had `name`, `description` and `create`; interface 1.1
/// appended `create_with_context` and `create_proposer` after `create` (the
/// last prefix field). The host reads fields after `create` through
/// `Option`-returning accessors, so a plugin of a later minor version, with
/// more fields, loads too.
///
/// Which function the host calls:
///
/// - in a run at one fidelity, `create_with_context` when the plugin has
///   it, `create` otherwise (and always `create` in a dsnn of interface
///   1.0): the plugin is a whole optimizer and every trial it asks for must
///   have the run's budget ([`PContext::max_budget`]);
/// - in a multi-fidelity run (Hyperband, successive halving),
///   `create_proposer`: the plugin proposes configurations and dsnn decides
///   the budgets. A plugin without it runs only at one fidelity.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = OptimizerPluginRef)))]
pub struct OptimizerPlugin {
    /// The name experiment files use: `optimizer = { plugin = "NAME" }`.
    pub name: RStr<'static>,
    /// One line on what the optimizer does, shown by `dsnn plugins`.
    pub description: RStr<'static>,
    /// Create an instance from the search space (ConfigSpace JSON text),
    /// the settings (TOML text, possibly empty) and a seed.
    #[sabi(last_prefix_field)]
    pub create: extern "C" fn(
        space_json: RStr<'_>,
        settings_toml: RStr<'_>,
        seed: u64,
    ) -> RResult<OptimizerBox, PError>,
    /// Since interface 1.1: `create`, also told the run it serves (the
    /// number of objectives and the budget range). `None` when the plugin
    /// needs no context; the host then calls `create`.
    pub create_with_context: Option<
        extern "C" fn(
            space_json: RStr<'_>,
            settings_toml: RStr<'_>,
            seed: u64,
            context: PContext,
        ) -> RResult<OptimizerBox, PError>,
    >,
    /// Since interface 1.1: a proposer for multi-fidelity runs, which dsnn
    /// runs under Hyperband or successive halving. `None` when the plugin
    /// is only a whole optimizer (it then needs `fidelity.kind = "fixed"`).
    pub create_proposer: Option<
        extern "C" fn(
            space_json: RStr<'_>,
            settings_toml: RStr<'_>,
            seed: u64,
            context: PContext,
        ) -> RResult<ProposerBox, PError>,
    >,
}

/// The signature of [`OptimizerPlugin::create_with_context`] (the field
/// spells it out: the layout derive reads function types only there): the space
/// (ConfigSpace JSON), the settings (TOML text), the seed and the run.
pub type CreateWithContext = extern "C" fn(
    space_json: RStr<'_>,
    settings_toml: RStr<'_>,
    seed: u64,
    context: PContext,
) -> RResult<OptimizerBox, PError>;

/// The signature of [`OptimizerPlugin::create_proposer`]: the space
/// (ConfigSpace JSON), the settings (TOML text), the seed and the run.
pub type CreateProposer = extern "C" fn(
    space_json: RStr<'_>,
    settings_toml: RStr<'_>,
    seed: u64,
    context: PContext,
) -> RResult<ProposerBox, PError>;

impl RootModule for OptimizerPluginRef {
    declare_root_module_statics! {OptimizerPluginRef}
    const BASE_NAME: &'static str = crate::OPTIMIZER_MODULE_NAME;
    const NAME: &'static str = crate::OPTIMIZER_MODULE_NAME;
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(crate::INTERFACE_VERSION);
}

/// Wraps any [`dsnn_search::Optimizer`] as an [`OptimizerInstance`], running
/// every call inside [`guard`] so that a panic becomes [`PError::Panic`].
pub struct OptimizerAdapter<O>(pub O);

impl<O: Optimizer + 'static> OptimizerInstance for OptimizerAdapter<O> {
    fn name(&self) -> RString {
        match guard("name", || Ok(self.0.name())) {
            RResult::ROk(n) => n.into(),
            RResult::RErr(e) => format!("<name unavailable: {e}>").into(),
        }
    }

    fn ask(&mut self, n: u64) -> RResult<RVec<PTrial>, PError> {
        guard("ask", || {
            let n = usize::try_from(n).map_err(|_| PError::invalid("ask: n too large"))?;
            let trials = self.0.ask(n)?;
            Ok(trials.iter().map(PTrial::from).collect())
        })
    }

    fn tell(&mut self, id: u64, outcome: POutcome) -> RResult<(), PError> {
        guard("tell", || Ok(self.0.tell(id, outcome.into())?))
    }
}

/// The body of a plugin's `create` function: parses the space, calls
/// `build` with it, the settings text and the seed, and boxes the optimizer
/// it returns. Panics in parsing or in `build` become [`PError::Panic`].
///
/// ```ignore
/// extern "C" fn create(space: RStr<'_>, settings: RStr<'_>, seed: u64)
///     -> RResult<OptimizerBox, PError> {
///     optimizer_from(space, settings, seed, MyOptimizer::new)
/// }
/// ```
pub fn optimizer_from<O, F>(
    space_json: RStr<'_>,
    settings_toml: RStr<'_>,
    seed: u64,
    build: F,
) -> RResult<OptimizerBox, PError>
where
    O: Optimizer + 'static,
    F: FnOnce(ConfigurationSpace, &str, u64) -> Result<O, PError>,
{
    guard("create", || {
        let space = ConfigurationSpace::from_configspace_json(space_json.as_str())?;
        let opt = build(space, settings_toml.as_str(), seed)?;
        Ok(OptimizerInstance_TO::from_value(
            OptimizerAdapter(opt),
            abi_stable::sabi_trait::TD_Opaque,
        ))
    })
}

/// The body of a plugin's `create_with_context` function: as
/// [`optimizer_from`], with the run's [`PContext`] passed on to `build`.
///
/// ```ignore
/// extern "C" fn create_with_context(space: RStr<'_>, settings: RStr<'_>, seed: u64,
///     context: PContext) -> RResult<OptimizerBox, PError> {
///     optimizer_with_context_from(space, settings, seed, context, MyOptimizer::new)
/// }
/// ```
pub fn optimizer_with_context_from<O, F>(
    space_json: RStr<'_>,
    settings_toml: RStr<'_>,
    seed: u64,
    context: PContext,
    build: F,
) -> RResult<OptimizerBox, PError>
where
    O: Optimizer + 'static,
    F: FnOnce(ConfigurationSpace, &str, u64, PContext) -> Result<O, PError>,
{
    optimizer_from(space_json, settings_toml, seed, |space, settings, seed| {
        build(space, settings, seed, context)
    })
}
