//! The energy-meter plugin interface: the root module [`MeterPlugin`] and the
//! instance trait object [`MeterBox`].
//!
//! A meter is started before a region of work and stopped after it; the
//! reading gives joules, seconds, the source and whether the figure was
//! measured or estimated. The host turns it into a `dsnn_energy` reading
//! (adding the process CPU time and start time itself).

// `#[sabi_trait]` (abi_stable 0.11) puts impls inside a generated const.
#![allow(non_local_definitions)]

use abi_stable::library::RootModule;
use abi_stable::sabi_trait;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RBox, RResult, RStr, RString};
use abi_stable::{declare_root_module_statics, StableAbi};

use crate::panic::guard;
use crate::types::{PError, PReading};

/// One meter instance, as seen across the library boundary.
///
/// Implement it through [`meter_from`] (which wraps a [`Meter`] and catches
/// panics); a hand-written implementation must run every body inside
/// [`crate::guard`].
#[sabi_trait]
pub trait MeterInstance: Send {
    /// A short, stable name (`constant-power`, ...).
    fn name(&self) -> RString;

    /// Marks the start of a region.
    fn start(&mut self) -> RResult<(), PError>;

    /// Ends the region and reports its energy.
    ///
    /// The last method of interface 1.0; add new methods after it, with a
    /// default body.
    #[sabi(last_prefix_field)]
    fn stop(&mut self) -> RResult<PReading, PError>;
}

/// An owned meter instance behind the stable trait object.
pub type MeterBox = MeterInstance_TO<'static, RBox<()>>;

/// The root module of an energy-meter plugin.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = MeterPluginRef)))]
pub struct MeterPlugin {
    /// The name experiment files use: `meter = { plugin = "NAME" }`.
    pub name: RStr<'static>,
    /// One line on what the meter measures, shown by `dsnn plugins`.
    pub description: RStr<'static>,
    /// Create an instance from its settings (TOML text, possibly empty).
    #[sabi(last_prefix_field)]
    pub create: extern "C" fn(settings_toml: RStr<'_>) -> RResult<MeterBox, PError>,
}

impl RootModule for MeterPluginRef {
    declare_root_module_statics! {MeterPluginRef}
    const BASE_NAME: &'static str = crate::METER_MODULE_NAME;
    const NAME: &'static str = crate::METER_MODULE_NAME;
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(crate::INTERFACE_VERSION);
}

/// A meter written in plain Rust, for [`meter_from`].
pub trait Meter: Send + 'static {
    /// A short, stable name.
    fn name(&self) -> String;
    /// Marks the start of a region.
    fn start(&mut self) -> Result<(), PError>;
    /// Ends the region and reports its energy.
    fn stop(&mut self) -> Result<PReading, PError>;
}

/// Runs a [`Meter`] behind the stable trait object, every call inside
/// [`guard`].
struct MeterAdapter<M>(M);

impl<M: Meter> MeterInstance for MeterAdapter<M> {
    fn name(&self) -> RString {
        match guard("name", || Ok(self.0.name())) {
            RResult::ROk(n) => n.into(),
            RResult::RErr(e) => format!("<name unavailable: {e}>").into(),
        }
    }
    fn start(&mut self) -> RResult<(), PError> {
        guard("start", || self.0.start())
    }
    fn stop(&mut self) -> RResult<PReading, PError> {
        guard("stop", || self.0.stop())
    }
}

/// The body of a meter plugin's `create` function: calls `build` with the
/// settings text and boxes the meter it returns; panics become
/// [`PError::Panic`].
pub fn meter_from<M, F>(settings_toml: RStr<'_>, build: F) -> RResult<MeterBox, PError>
where
    M: Meter,
    F: FnOnce(&str) -> Result<M, PError>,
{
    guard("create", || {
        let meter = build(settings_toml.as_str())?;
        Ok(MeterInstance_TO::from_value(
            MeterAdapter(meter),
            abi_stable::sabi_trait::TD_Opaque,
        ))
    })
}
