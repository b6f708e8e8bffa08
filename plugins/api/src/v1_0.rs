//! The optimizer root module exactly as interface 1.0 defined it, frozen,
//! so that dsnn still loads plugins built against dsnn-plugin-api 1.0.
//!
//! `abi_stable`'s load-time check refuses a prefix type with fewer fields
//! than the host's (measured: a 1.0 plugin checked against the 1.1
//! [`crate::OptimizerPluginRef`] fails with a field-count mismatch). The
//! host therefore checks a library that declares interface 1.0 against this
//! copy, whose layout (type names, fields, package name and major version)
//! is the one such libraries were built with, and then calls its `create`.
//!
//! Never change this module: its layout is what 1.0 plugins carry. Every
//! type it reaches ([`OptimizerBox`], [`PError`], ...) is unchanged since
//! 1.0; a minor version that changes one of them must freeze it here too.

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RResult, RStr};
use abi_stable::{declare_root_module_statics, StableAbi};

use crate::optimizer::OptimizerBox;
use crate::types::PError;

/// The optimizer root module of interface 1.0 (`name`, `description`,
/// `create`). The type names must stay those of 1.0: the layout check
/// compares them.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = OptimizerPluginRef)))]
pub struct OptimizerPlugin {
    /// The name experiment files use.
    pub name: RStr<'static>,
    /// One line on what the optimizer does.
    pub description: RStr<'static>,
    /// Create an instance from the search space (ConfigSpace JSON text),
    /// the settings (TOML text, possibly empty) and a seed.
    #[sabi(last_prefix_field)]
    pub create: extern "C" fn(
        space_json: RStr<'_>,
        settings_toml: RStr<'_>,
        seed: u64,
    ) -> RResult<OptimizerBox, PError>,
}

impl RootModule for OptimizerPluginRef {
    declare_root_module_statics! {OptimizerPluginRef}
    const BASE_NAME: &'static str = crate::OPTIMIZER_MODULE_NAME;
    const NAME: &'static str = crate::OPTIMIZER_MODULE_NAME;
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("1.0.0");
}
