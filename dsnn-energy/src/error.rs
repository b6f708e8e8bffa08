//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while measuring or accounting for energy.
#[derive(Debug, thiserror::Error)]
pub enum EnergyError {
    /// The meter cannot work on this machine (no counters, no driver, no
    /// permission). `reason` says why, in words a user can act on.
    #[error("{meter} meter unavailable: {reason}")]
    Unavailable {
        /// Which meter (for example `rapl` or `nvml`).
        meter: String,
        /// Why it is unavailable.
        reason: String,
    },
    /// `stop` was called on a meter that was not started.
    #[error("{0} meter was stopped without being started")]
    NotStarted(String),
    /// `start` was called twice without a `stop` in between.
    #[error("{0} meter was started twice")]
    AlreadyStarted(String),
    /// A counter or table could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// A counter or table held text that is not what it should be.
    #[error("cannot parse {what}: {detail}")]
    Parse {
        /// What was being parsed (a file, a table).
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// A country code that the energy-mix table does not know.
    #[error("unknown country ISO-3 code `{0}` (the energy-mix table has no entry for it)")]
    UnknownCountry(String),
    /// A cloud provider and region that the impact table does not know.
    #[error("unknown cloud region `{provider}/{region}` (not in the cloud impact table)")]
    UnknownCloudRegion {
        /// The provider as given (for example `gcp`).
        provider: String,
        /// The region as given (for example `europe-west1`).
        region: String,
    },
    /// A meter loaded from a plugin failed (it panicked, or reported an
    /// error of its own); the message names the plugin and what happened.
    #[error("meter plugin: {0}")]
    Plugin(String),
    /// A configuration value is out of its valid range.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// The setting.
        what: String,
        /// Why it is invalid.
        detail: String,
    },
}

impl EnergyError {
    /// Shorthand for [`EnergyError::Unavailable`].
    pub fn unavailable(meter: impl Into<String>, reason: impl Into<String>) -> Self {
        EnergyError::Unavailable {
            meter: meter.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`EnergyError::Invalid`].
    pub fn invalid(what: impl Into<String>, detail: impl Into<String>) -> Self {
        EnergyError::Invalid {
            what: what.into(),
            detail: detail.into(),
        }
    }

    /// Whether this error means "this meter cannot work here" rather than a
    /// misuse or a transient failure; callers fall back to another meter.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, EnergyError::Unavailable { .. })
    }
}

/// Result alias of this crate.
pub type Result<T, E = EnergyError> = std::result::Result<T, E>;
