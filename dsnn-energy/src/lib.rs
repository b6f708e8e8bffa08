//! Energy accounting for dsnn: energy meters, carbon intensity and the
//! op-count energy model.
//!
//! This crate depends on no other crate of the workspace. The types in
//! [`profile`] describe what a network computes per image, so that models
//! (which live in `dsnn-core`) and energy estimators (which live here) can
//! talk without knowing each other.
//!
//! * [`meter`]: the [`EnergyMeter`] trait (start/stop around a region),
//!   readings with provenance (measured or estimated), combined meters.
//! * [`config`]: meters from a configuration, and `auto` (measure what the
//!   machine can measure, estimate the rest).
//! * [`carbon`]: grid carbon intensity by country or cloud region, PUE,
//!   emissions.
//! * [`estimator`]: CodeCarbon-style estimate from the TDP table
//!   ([`cpu_tdp`]), the process's CPU time share and RAM size.
//! * [`opcount`]: energy per operation (Horowitz, ISSCC 2014) applied to
//!   an [`OpProfile`]: deterministic inference energy per image.
//! * [`rapl`]: RAPL counters via powercap sysfs (packages, sub-domains,
//!   wrap-around).
//! * [`nvml`]: NVIDIA GPU energy counter (or integrated power samples),
//!   NVML loaded at run time.
//! * [`emissions_log`]: an `emissions.csv` in CodeCarbon's columns.
//! * [`units`]: joules and kilowatt-hours.
//!
//! See `docs/energy.md` for the models, their sources and their limits.
//!
//! ```
//! use dsnn_energy::{measure, CarbonAccount, CarbonTables, GridLocation, MeterSpec, Provenance};
//!
//! // Measure what this machine can measure (RAPL, NVML), estimate the rest.
//! let mut built = MeterSpec::default().build()?;
//! let (sum, reading) = measure(&mut built.meter, || (0..100_000u64).sum::<u64>())?;
//! assert_eq!(sum, 4_999_950_000);
//! if reading.provenance == Provenance::Estimated {
//!     // Say so wherever the figure is shown.
//! }
//!
//! // Emissions in France, in a data centre with a PUE of 1.2.
//! let tables = CarbonTables::embedded()?;
//! let grid = tables.intensity(&GridLocation::Country { iso3: "FRA".into() })?;
//! let footprint = CarbonAccount::new(grid, 1.2)?.footprint(reading.energy);
//! assert!(footprint.emissions_g >= 0.0);
//! # Ok::<(), dsnn_energy::EnergyError>(())
//! ```

pub mod carbon;
pub mod config;
pub mod cpu_tdp;
mod csv;
pub mod emissions_log;
pub mod error;
pub mod estimator;
pub mod meter;
pub mod nvml;
pub mod opcount;
pub mod profile;
pub mod rapl;
pub mod units;

pub use carbon::{
    CarbonAccount, CarbonIntensity, CarbonTables, EnergyRecord, Footprint, GridLocation,
};
pub use config::{BuiltMeter, MeterSpec};
pub use emissions_log::{EmissionsLog, EmissionsRow, RunInfo};
pub use error::{EnergyError, Result};
pub use estimator::{CpuPowerMode, EstimatorConfig, EstimatorMeter};
pub use meter::{
    measure, CombinedMeter, Component, ComponentEnergy, CpuClock, EnergyMeter, EnergyReading,
    Provenance, RegionSpan, RegionTimer, RusageClock,
};
pub use nvml::NvmlMeter;
pub use opcount::{InferenceEnergy, MemoryLevel, OpCountMeter, OpCountModel, OpEnergyTable};
pub use profile::{LayerKind, LayerOps, OpProfile};
pub use rapl::RaplMeter;
pub use units::Energy;
