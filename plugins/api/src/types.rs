//! The data types that cross the library boundary, with conversions to and
//! from the `dsnn-search` types that plugin and host code work with.
//!
//! All of them derive [`StableAbi`], so the host checks their layout when it
//! loads a plugin. Enums here are exhaustive: adding a variant needs a new
//! major interface version (see the crate documentation).

use std::fmt;

use abi_stable::std_types::{RString, RVec, Tuple2};
use abi_stable::StableAbi;
use dsnn_search::{Configuration, Observation, OptimizerError, Outcome, Trial, Value};

/// One hyperparameter value: boolean, integer, real number or string.
#[repr(u8)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub enum PValue {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A real number.
    Float(f64),
    /// A string (categorical choices).
    Str(RString),
}

impl From<&Value> for PValue {
    fn from(v: &Value) -> Self {
        match v {
            Value::Bool(b) => PValue::Bool(*b),
            Value::Int(i) => PValue::Int(*i),
            Value::Float(x) => PValue::Float(*x),
            Value::Str(s) => PValue::Str(s.as_str().into()),
        }
    }
}

impl From<PValue> for Value {
    fn from(v: PValue) -> Self {
        match v {
            PValue::Bool(b) => Value::Bool(b),
            PValue::Int(i) => Value::Int(i),
            PValue::Float(x) => Value::Float(x),
            PValue::Str(s) => Value::Str(s.into_string()),
        }
    }
}

/// A configuration: the values of the active hyperparameters as
/// (name, value) pairs, in name order.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Default)]
pub struct PConfiguration {
    /// The (name, value) pairs.
    pub values: RVec<Tuple2<RString, PValue>>,
}

impl From<&Configuration> for PConfiguration {
    fn from(c: &Configuration) -> Self {
        PConfiguration {
            values: c
                .iter()
                .map(|(k, v)| Tuple2(k.as_str().into(), PValue::from(v)))
                .collect(),
        }
    }
}

impl From<PConfiguration> for Configuration {
    fn from(c: PConfiguration) -> Self {
        c.values
            .into_iter()
            .map(|Tuple2(k, v)| (k.into_string(), Value::from(v)))
            .collect()
    }
}

/// A trial handed out by `ask`: evaluate `config` at `budget`.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct PTrial {
    /// Identifier to pass back to `tell`, unique within one optimizer.
    pub id: u64,
    /// The configuration to evaluate.
    pub config: PConfiguration,
    /// The fidelity (epochs, data fraction, ...).
    pub budget: f64,
}

impl From<&Trial> for PTrial {
    fn from(t: &Trial) -> Self {
        PTrial {
            id: t.id,
            config: PConfiguration::from(&t.config),
            budget: t.budget,
        }
    }
}

impl From<PTrial> for Trial {
    fn from(t: PTrial) -> Self {
        Trial {
            id: t.id,
            config: t.config.into(),
            budget: t.budget,
        }
    }
}

/// What an optimizer plugin is told about the run it serves (since
/// interface 1.1): passed to [`crate::OptimizerPlugin::create_with_context`]
/// and [`crate::OptimizerPlugin::create_proposer`].
///
/// It is passed by value, so its layout is fixed for major version 1: a
/// later minor version that tells plugins more adds a new root-module field
/// with a new context type rather than changing this one.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq)]
pub struct PContext {
    /// Number of objectives of every successful outcome the plugin is told.
    pub objectives: u64,
    /// Smallest budget a trial runs at (`fidelity.min`; equal to
    /// `max_budget` in a run at one fidelity).
    pub min_budget: f64,
    /// The full budget (`fidelity.max`): in a run at one fidelity, every
    /// trial's budget must be exactly this.
    pub max_budget: f64,
    /// Whether trials run at several budgets (Hyperband, successive
    /// halving): then the host runs the plugin's proposer and chooses the
    /// budgets itself.
    pub multi_fidelity: bool,
}

/// A finished trial as a proposer is told it (since interface 1.1): which
/// configuration ran at which budget, and what came of it.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct PObservation {
    /// The host's trial identifier (unique within one run).
    pub id: u64,
    /// The configuration evaluated.
    pub config: PConfiguration,
    /// The budget it ran at.
    pub budget: f64,
    /// Its objective values or failure.
    pub outcome: POutcome,
}

impl From<&Observation> for PObservation {
    fn from(o: &Observation) -> Self {
        PObservation {
            id: o.id,
            config: PConfiguration::from(&o.config),
            budget: o.budget,
            outcome: POutcome::from(&o.outcome),
        }
    }
}

impl From<PObservation> for Observation {
    fn from(o: PObservation) -> Self {
        Observation {
            id: o.id,
            config: o.config.into(),
            budget: o.budget,
            outcome: o.outcome.into(),
        }
    }
}

/// The outcome of a trial: objective values (all minimised) or a failure.
#[repr(u8)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub enum POutcome {
    /// The trial finished with these objective values.
    Success(RVec<f64>),
    /// The trial crashed or was invalid; the message says why.
    Failure(RString),
}

impl From<&Outcome> for POutcome {
    fn from(o: &Outcome) -> Self {
        match o {
            Outcome::Success(f) => POutcome::Success(f.iter().copied().collect()),
            Outcome::Failure(m) => POutcome::Failure(m.as_str().into()),
        }
    }
}

impl From<POutcome> for Outcome {
    fn from(o: POutcome) -> Self {
        match o {
            POutcome::Success(f) => Outcome::Success(f.into_vec()),
            POutcome::Failure(m) => Outcome::Failure(m.into_string()),
        }
    }
}

/// An error returned by plugin code (optimizer or meter).
#[repr(u8)]
#[derive(StableAbi, Clone, Debug, PartialEq, thiserror::Error)]
pub enum PError {
    /// `tell` named a trial that is not pending.
    #[error("trial {0} is not pending (never asked, or already told)")]
    UnknownTrial(u64),
    /// The objective vector's length differs from the expected one.
    #[error("trial {id}: expected {expected} objectives, got {got}")]
    ObjectiveCount {
        /// Trial identifier.
        id: u64,
        /// Number of objectives expected.
        expected: u64,
        /// Number given.
        got: u64,
    },
    /// An objective value is NaN or infinite.
    #[error("trial {0}: objectives must be finite (report a failure instead)")]
    NonFinite(u64),
    /// A setting is invalid (the message names the key and what is allowed).
    #[error("invalid setting: {0}")]
    Invalid(RString),
    /// The search space could not be read or used.
    #[error("search space: {0}")]
    Space(RString),
    /// A meter cannot work on this machine; the message says why.
    #[error("unavailable: {0}")]
    Unavailable(RString),
    /// A meter was stopped without being started.
    #[error("stopped without being started")]
    NotStarted,
    /// A meter was started twice.
    #[error("started twice")]
    AlreadyStarted,
    /// Plugin code panicked (caught by [`crate::guard`]).
    #[error("{0}")]
    Panic(RString),
    /// Any other error, in the plugin's words.
    #[error("{0}")]
    Other(RString),
}

impl PError {
    /// Shorthand for [`PError::Invalid`].
    pub fn invalid(message: impl fmt::Display) -> Self {
        PError::Invalid(message.to_string().into())
    }

    /// Shorthand for [`PError::Other`].
    pub fn other(message: impl fmt::Display) -> Self {
        PError::Other(message.to_string().into())
    }
}

impl From<OptimizerError> for PError {
    fn from(e: OptimizerError) -> Self {
        match e {
            OptimizerError::UnknownTrial(id) => PError::UnknownTrial(id),
            OptimizerError::ObjectiveCount { id, expected, got } => PError::ObjectiveCount {
                id,
                expected: expected as u64,
                got: got as u64,
            },
            OptimizerError::NonFinite(id) => PError::NonFinite(id),
            OptimizerError::Invalid(m) => PError::Invalid(m.into()),
            OptimizerError::Space(s) => PError::Space(s.to_string().into()),
            other => PError::Other(other.to_string().into()),
        }
    }
}

impl From<dsnn_search::SpaceError> for PError {
    fn from(e: dsnn_search::SpaceError) -> Self {
        PError::Space(e.to_string().into())
    }
}

/// The part of the machine a meter reading belongs to.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PComponent {
    /// CPU packages.
    Cpu,
    /// GPUs or other accelerators.
    Gpu,
    /// Main memory.
    Ram,
    /// Anything else (a wall-plug meter, a whole node).
    Other,
}

/// What an energy meter reports for one region of work.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct PReading {
    /// Energy used during the region, in joules.
    pub joules: f64,
    /// Wall-clock length of the region, in seconds.
    pub seconds: f64,
    /// Which meter produced the figure (e.g. `constant-power`).
    pub source: RString,
    /// The component the energy belongs to.
    pub component: PComponent,
    /// `true` if read from a hardware counter, `false` if estimated by a model.
    pub measured: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_and_outcomes_round_trip() {
        let mut c = Configuration::new();
        c.insert("lr", 0.1);
        c.insert("bits", 5i64);
        c.insert("opt", "adam");
        c.insert("nesterov", true);
        let t = Trial {
            id: 9,
            config: c,
            budget: 3.0,
        };
        let back: Trial = PTrial::from(&t).into();
        assert_eq!(back, t);
        for o in [
            Outcome::Success(vec![0.5, -1.0]),
            Outcome::Failure("oom".into()),
        ] {
            assert_eq!(Outcome::from(POutcome::from(&o)), o);
        }
    }

    #[test]
    fn optimizer_errors_keep_their_kind() {
        assert_eq!(
            PError::from(OptimizerError::UnknownTrial(3)),
            PError::UnknownTrial(3)
        );
        let e = PError::from(OptimizerError::ObjectiveCount {
            id: 1,
            expected: 2,
            got: 3,
        });
        assert_eq!(e.to_string(), "trial 1: expected 2 objectives, got 3");
    }
}
