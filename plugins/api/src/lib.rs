//! The stable-ABI interface of dsnn plugins.
//!
//! A dsnn plugin is a dynamic library (a Rust crate built as a `cdylib`) that
//! exports one *root module*: either an [`OptimizerPlugin`] (an ask/tell
//! multi-objective optimizer) or a [`MeterPlugin`] (an energy meter). The
//! host (`dsnn-plugin-host`) loads the library at run time, checks the
//! interface version and the layout of every type that crosses the boundary
//! (through [`abi_stable`]), and wraps the plugin so that the rest of dsnn
//! uses it exactly like a built-in optimizer or meter.
//!
//! Since interface 1.1 an optimizer plugin is told the run it serves
//! ([`PContext`]: the number of objectives, the budget range, whether the
//! run is multi-fidelity) and may provide a *proposer* ([`ProposerBox`]),
//! which dsnn runs under Hyperband or successive halving.
//!
//! Only the types of this crate cross the library boundary: [`PValue`],
//! [`PConfiguration`], [`PTrial`], [`POutcome`], [`PError`], [`PReading`],
//! [`PContext`], [`PObservation`], the trait objects [`OptimizerBox`],
//! [`ProposerBox`] and [`MeterBox`], and the root modules.
//! The search space travels as text in the JSON layout of Python's
//! `ConfigSpace` (what [`dsnn_search::ConfigurationSpace::to_configspace_json`]
//! writes), settings as TOML text. Inside the plugin, anything goes: the
//! helpers [`optimizer_from`] and [`meter_from`] turn a plain
//! [`dsnn_search::Optimizer`] or [`Meter`] into the stable trait objects and
//! catch every panic ([`guard`]), because a panic that unwinds across the
//! boundary aborts the host.
//!
//! # Versioning rule
//!
//! The interface version is [`INTERFACE_VERSION`] (semver), the version of
//! this crate (kept apart from dsnn's own version). The host accepts a
//! plugin whose interface has the same major version, whatever its minor
//! and patch, then checks the layout of every type in its root module.
//!
//! - Add methods to [`OptimizerInstance`], [`ProposerInstance`] or
//!   [`MeterInstance`], and fields to [`OptimizerPlugin`] or
//!   [`MeterPlugin`], **only after the last existing field**, bump this
//!   crate's minor version, give new trait methods a default body and new
//!   fields an `Option` type, and read them in the host through their
//!   `Option` accessors.
//! - A plugin of a *newer* minor version loads into an older dsnn, which
//!   ignores what it does not know (`abi_stable` accepts a prefix type with
//!   more fields than the host's; tested with
//!   `plugins/fixtures/interface-1.2`).
//! - A plugin of an *older* minor version is refused by `abi_stable`'s
//!   check against the newer root module ("field count mismatch", measured
//!   with a 1.0 plugin in a 1.1 host). So every minor version freezes the
//!   root modules of the earlier ones it changes ([`v1_0`]) and the host
//!   checks a library against the layout of the minor version it declares
//!   (tested with `plugins/fixtures/interface-1.0`, built against the
//!   released 1.0.0).
//! - Never remove, reorder or retype a field, a method or an enum variant,
//!   and never add a variant to an enum of this crate ([`PValue`],
//!   [`POutcome`], [`PError`], [`PComponent`]), nor a field to a struct
//!   passed by value ([`PContext`], [`PObservation`], ...): those changes
//!   need a new major version, and the host then refuses older plugins with
//!   a one-line message asking for a rebuild.
//!
//! # Writing a plugin
//!
//! See `docs/plugins.md` in the dsnn repository and the tutorial plugin in
//! `plugins/example`.

#![warn(missing_docs)]

pub mod meter;
pub mod optimizer;
pub mod panic;
pub mod proposer;
pub mod settings;
pub mod types;
pub mod v1_0;

pub use abi_stable;
pub use dsnn_search;

pub use meter::{
    meter_from, Meter, MeterBox, MeterInstance, MeterInstance_TO, MeterPlugin, MeterPluginRef,
};
pub use optimizer::{
    optimizer_from, optimizer_with_context_from, CreateProposer, CreateWithContext,
    OptimizerAdapter, OptimizerBox, OptimizerInstance, OptimizerInstance_TO, OptimizerPlugin,
    OptimizerPluginRef,
};
pub use panic::{guard, panic_message};
pub use proposer::{
    proposer_from, ProposerAdapter, ProposerBox, ProposerInstance, ProposerInstance_TO,
};
pub use settings::Settings;
pub use types::{
    PComponent, PConfiguration, PContext, PError, PObservation, POutcome, PReading, PTrial, PValue,
};

/// The version of this interface, checked by the host when it loads a
/// plugin (see the versioning rule in the crate documentation). It is the
/// version of this crate, because `abi_stable`'s layout check also compares
/// the versions of the packages that define the checked types.
pub const INTERFACE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The major version of [`INTERFACE_VERSION`]: plugins of another major
/// version are refused.
pub const INTERFACE_MAJOR: u32 = 1;

/// The name of the root module of optimizer plugins, as the host reads it
/// from a library before checking layouts (it decides the plugin's kind).
pub const OPTIMIZER_MODULE_NAME: &str = "dsnn_optimizer_plugin";

/// The name of the root module of energy-meter plugins.
pub const METER_MODULE_NAME: &str = "dsnn_meter_plugin";

#[cfg(test)]
mod tests {
    #[test]
    fn interface_major_matches_the_crate_version() {
        let major: u32 = super::INTERFACE_VERSION
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .expect("semver");
        assert_eq!(major, super::INTERFACE_MAJOR);
    }
}
