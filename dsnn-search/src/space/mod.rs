//! Search spaces: typed hyperparameters, conditions, forbidden clauses,
//! seeded sampling, validation and the unit-cube encoding that optimizers use.
//!
//! The [`SearchSpace`] trait is what optimizers depend on; [`ConfigurationSpace`]
//! is the standard implementation, loadable from TOML ([`ConfigurationSpace::from_toml_str`])
//! and from the JSON format of the Python `ConfigSpace` library
//! ([`ConfigurationSpace::from_configspace_json`]).

mod configspace_json;
mod toml_io;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

/// How many times sampling retries to avoid a forbidden combination before failing.
const MAX_SAMPLE_TRIES: usize = 1000;

/// Errors raised while building, loading or using a search space.
#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    /// A value is outside the allowed range of its hyperparameter.
    #[error("hyperparameter `{name}`: value {value} is outside the allowed range {allowed}")]
    OutOfRange {
        /// Hyperparameter name.
        name: String,
        /// The offending value, printed.
        value: String,
        /// The allowed range or set, printed.
        allowed: String,
    },
    /// A value has the wrong type for its hyperparameter.
    #[error("hyperparameter `{name}`: expected {expected}, got {value}")]
    WrongType {
        /// Hyperparameter name.
        name: String,
        /// The expected type.
        expected: String,
        /// The offending value, printed.
        value: String,
    },
    /// An active hyperparameter has no value.
    #[error("hyperparameter `{0}` is active but has no value")]
    Missing(String),
    /// An inactive hyperparameter has a value.
    #[error("hyperparameter `{0}` is inactive (its condition is not met) but has a value")]
    Inactive(String),
    /// A configuration names a hyperparameter the space does not have.
    #[error("unknown hyperparameter `{0}`")]
    Unknown(String),
    /// A configuration matches a forbidden clause.
    #[error("configuration is forbidden by clause {0}")]
    Forbidden(String),
    /// The space definition itself is invalid.
    #[error("invalid search space: {0}")]
    Invalid(String),
    /// Sampling could not find an allowed configuration.
    #[error(
        "could not sample an allowed configuration in {0} tries (forbidden clauses too strict?)"
    )]
    SamplingFailed(usize),
    /// A unit-cube vector has the wrong length.
    #[error("vector has {got} entries, the space has {expected} dimensions")]
    Dimension {
        /// Number of dimensions of the space.
        expected: usize,
        /// Length of the vector given.
        got: usize,
    },
    /// Reading or writing TOML failed.
    #[error("TOML: {0}")]
    Toml(String),
    /// Reading or writing JSON failed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The value of one hyperparameter in a configuration.
///
/// Serialised untagged, so `0.1`, `5`, `"Adam"` and `true` read naturally in TOML and JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A boolean (ConfigSpace categoricals may have `true`/`false` choices).
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A real number.
    Float(f64),
    /// A string (categorical choices).
    Str(String),
}

impl Value {
    /// The value as a number, if it is numeric (integers widen to `f64`).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value as an integer, if it is an integer or a float with no fractional part.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            _ => None,
        }
    }

    /// The value as a string slice, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Equality that treats `Int(2)` and `Float(2.0)` as equal, as ConfigSpace files
    /// often write condition values with either type.
    pub fn loosely_equals(&self, other: &Value) -> bool {
        match (self.as_f64(), other.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => self == other,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Float(x)
    }
}
impl From<i64> for Value {
    fn from(x: i64) -> Self {
        Value::Int(x)
    }
}
impl From<&str> for Value {
    fn from(x: &str) -> Self {
        Value::Str(x.to_string())
    }
}
impl From<String> for Value {
    fn from(x: String) -> Self {
        Value::Str(x)
    }
}
impl From<bool> for Value {
    fn from(x: bool) -> Self {
        Value::Bool(x)
    }
}

/// A configuration: the values of the active hyperparameters, by name.
///
/// Inactive hyperparameters are simply absent. Ordered by name so that its
/// serialisation and hashing are deterministic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Configuration {
    values: BTreeMap<String, Value>,
}

impl Configuration {
    /// An empty configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `name`, if it is set (active).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// The value of `name` as a float (integers widen).
    pub fn get_f64(&self, name: &str) -> Option<f64> {
        self.get(name).and_then(Value::as_f64)
    }

    /// The value of `name` as an integer.
    pub fn get_i64(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(Value::as_i64)
    }

    /// The value of `name` as a string.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_str)
    }

    /// Set `name` to `value`, returning the previous value.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        self.values.insert(name.into(), value.into())
    }

    /// Remove `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        self.values.remove(name)
    }

    /// Iterate over `(name, value)` pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.values.iter()
    }

    /// Number of set (active) hyperparameters.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when no hyperparameter is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl FromIterator<(String, Value)> for Configuration {
    fn from_iter<T: IntoIterator<Item = (String, Value)>>(iter: T) -> Self {
        Configuration {
            values: iter.into_iter().collect(),
        }
    }
}

impl fmt::Display for Configuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{")?;
        for (i, (k, v)) in self.values.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{k}: {v}")?;
        }
        write!(f, "}}")
    }
}

/// Largest integer bound magnitude (2^53: integers stay exact in the
/// unit-cube encoding's `f64`).
const MAX_EXACT_INT: u64 = 1 << 53;

/// One hyperparameter: its type, range and default.
///
/// In TOML each is a table with a `type` key (`float`, `int`, `categorical`,
/// `ordinal`, `constant`); a missing `default` is filled in when the space is
/// built (midpoint, geometric midpoint when `log`, or the first choice).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Hyperparameter {
    /// A real number in `[lower, upper]`, uniform on a linear or log scale.
    Float {
        /// Name.
        name: String,
        /// Lower bound (inclusive).
        lower: f64,
        /// Upper bound (inclusive).
        upper: f64,
        /// Sample and encode on a log scale (requires `lower > 0`).
        #[serde(default)]
        log: bool,
        /// Default value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default: Option<f64>,
    },
    /// An integer in `[lower, upper]`, uniform on a linear or log scale.
    Int {
        /// Name.
        name: String,
        /// Lower bound (inclusive).
        lower: i64,
        /// Upper bound (inclusive).
        upper: i64,
        /// Sample and encode on a log scale (requires `lower >= 1`).
        #[serde(default)]
        log: bool,
        /// Default value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default: Option<i64>,
    },
    /// One of an unordered set of choices.
    Categorical {
        /// Name.
        name: String,
        /// The choices (strings, numbers or booleans).
        choices: Vec<Value>,
        /// Default choice.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default: Option<Value>,
        /// Optional sampling weights, one per choice.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weights: Option<Vec<f64>>,
    },
    /// One of an ordered sequence of values (neighbours are adjacent elements).
    Ordinal {
        /// Name.
        name: String,
        /// The ordered values.
        sequence: Vec<Value>,
        /// Default element.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default: Option<Value>,
    },
    /// A fixed value (kept so that spaces round-trip from ConfigSpace).
    Constant {
        /// Name.
        name: String,
        /// The value.
        value: Value,
    },
}

/// What kind of coordinate a hyperparameter occupies in the unit cube, so that
/// variation operators can treat integers and categories suitably.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DimKind {
    /// A continuous coordinate (float hyperparameter).
    Continuous,
    /// An integer-valued coordinate with `n` bins (int hyperparameter or ordinal).
    Integer(usize),
    /// An unordered coordinate with `n` bins (categorical).
    Categorical(usize),
    /// A coordinate that never changes (constant).
    Constant,
}

impl DimKind {
    /// One over the number of coordinates that vary (at least one): the
    /// usual default probability of mutating each gene, so that a child
    /// differs from its parent in one coordinate on average.
    pub fn one_per_varying(kinds: &[DimKind]) -> f64 {
        let varying = kinds.iter().filter(|k| **k != DimKind::Constant).count();
        1.0 / varying.max(1) as f64
    }
}

impl Hyperparameter {
    /// The hyperparameter's name.
    pub fn name(&self) -> &str {
        match self {
            Hyperparameter::Float { name, .. }
            | Hyperparameter::Int { name, .. }
            | Hyperparameter::Categorical { name, .. }
            | Hyperparameter::Ordinal { name, .. }
            | Hyperparameter::Constant { name, .. } => name,
        }
    }

    /// Convenience constructor for a float hyperparameter.
    pub fn float(name: &str, lower: f64, upper: f64, log: bool, default: Option<f64>) -> Self {
        Hyperparameter::Float {
            name: name.into(),
            lower,
            upper,
            log,
            default,
        }
    }

    /// Convenience constructor for an integer hyperparameter.
    pub fn int(name: &str, lower: i64, upper: i64, log: bool, default: Option<i64>) -> Self {
        Hyperparameter::Int {
            name: name.into(),
            lower,
            upper,
            log,
            default,
        }
    }

    /// Convenience constructor for a categorical hyperparameter with string choices.
    pub fn categorical(name: &str, choices: &[&str], default: Option<&str>) -> Self {
        Hyperparameter::Categorical {
            name: name.into(),
            choices: choices.iter().map(|c| Value::from(*c)).collect(),
            default: default.map(Value::from),
            weights: None,
        }
    }

    /// Convenience constructor for an ordinal hyperparameter.
    pub fn ordinal(name: &str, sequence: Vec<Value>, default: Option<Value>) -> Self {
        Hyperparameter::Ordinal {
            name: name.into(),
            sequence,
            default,
        }
    }

    /// The kind of unit-cube coordinate this hyperparameter uses.
    pub fn kind(&self) -> DimKind {
        match self {
            Hyperparameter::Float { .. } => DimKind::Continuous,
            Hyperparameter::Int { lower, upper, .. } => {
                DimKind::Integer((upper - lower + 1).max(1) as usize)
            }
            Hyperparameter::Categorical { choices, .. } => DimKind::Categorical(choices.len()),
            Hyperparameter::Ordinal { sequence, .. } => DimKind::Integer(sequence.len()),
            Hyperparameter::Constant { .. } => DimKind::Constant,
        }
    }

    /// A human-readable description of the allowed values, used in errors.
    pub fn allowed(&self) -> String {
        match self {
            Hyperparameter::Float {
                lower, upper, log, ..
            } => format!("[{lower}, {upper}]{}", if *log { " (log)" } else { "" }),
            Hyperparameter::Int {
                lower, upper, log, ..
            } => format!(
                "integers [{lower}, {upper}]{}",
                if *log { " (log)" } else { "" }
            ),
            Hyperparameter::Categorical { choices, .. } => format!("one of {}", list(choices)),
            Hyperparameter::Ordinal { sequence, .. } => format!("one of {}", list(sequence)),
            Hyperparameter::Constant { value, .. } => format!("exactly {value}"),
        }
    }

    /// The default value (always set once the space is built).
    pub fn default_value(&self) -> Value {
        match self {
            Hyperparameter::Float {
                lower,
                upper,
                log,
                default,
                ..
            } => Value::Float(default.unwrap_or_else(|| {
                if *log {
                    (lower.ln() * 0.5 + upper.ln() * 0.5).exp()
                } else {
                    0.5 * (lower + upper)
                }
            })),
            Hyperparameter::Int {
                lower,
                upper,
                log,
                default,
                ..
            } => Value::Int(default.unwrap_or_else(|| {
                if *log {
                    ((*lower as f64).ln() * 0.5 + (*upper as f64).ln() * 0.5)
                        .exp()
                        .round() as i64
                } else {
                    ((*lower as f64 + *upper as f64) * 0.5).round() as i64
                }
            })),
            Hyperparameter::Categorical {
                choices,
                default,
                weights,
                ..
            } => default.clone().unwrap_or_else(|| match weights {
                Some(w) => {
                    let mut best = 0;
                    for (i, wi) in w.iter().enumerate() {
                        if *wi > w[best] {
                            best = i;
                        }
                    }
                    choices[best].clone()
                }
                None => choices[0].clone(),
            }),
            Hyperparameter::Ordinal {
                sequence, default, ..
            } => default.clone().unwrap_or_else(|| sequence[0].clone()),
            Hyperparameter::Constant { value, .. } => value.clone(),
        }
    }

    /// Check the definition itself (bounds ordered, log bounds positive, default inside).
    fn check_definition(&self) -> Result<(), SpaceError> {
        let bad = |msg: String| Err(SpaceError::Invalid(format!("`{}`: {msg}", self.name())));
        // A NaN or infinite choice cannot be written to ConfigSpace JSON or
        // compared reliably.
        let non_finite = |values: &[Value]| match values
            .iter()
            .find(|v| matches!(v, Value::Float(f) if !f.is_finite()))
        {
            Some(v) => bad(format!("values must be finite numbers, got {v}")),
            None => Ok(()),
        };
        match self {
            Hyperparameter::Float {
                lower, upper, log, ..
            } => {
                if !(lower.is_finite() && upper.is_finite() && lower < upper) {
                    return bad(format!(
                        "needs finite lower < upper, got [{lower}, {upper}]"
                    ));
                }
                if *log && *lower <= 0.0 {
                    return bad(format!("log scale needs lower > 0, got {lower}"));
                }
            }
            Hyperparameter::Int {
                lower, upper, log, ..
            } => {
                if lower > upper {
                    return bad(format!("needs lower <= upper, got [{lower}, {upper}]"));
                }
                // The unit-cube encoding holds integers in f64: beyond 2^53 they
                // are inexact, and the width `upper - lower + 1` overflowed i64.
                if lower.unsigned_abs().max(upper.unsigned_abs()) > MAX_EXACT_INT {
                    return bad(format!(
                        "integer bounds must lie within +-2^53, got [{lower}, {upper}]"
                    ));
                }
                if *log && *lower < 1 {
                    return bad(format!("log scale needs lower >= 1, got {lower}"));
                }
            }
            Hyperparameter::Categorical {
                choices, weights, ..
            } => {
                non_finite(choices)?;
                if choices.is_empty() {
                    return bad("needs at least one choice".into());
                }
                for (i, c) in choices.iter().enumerate() {
                    if choices[..i].iter().any(|d| d.loosely_equals(c)) {
                        return bad(format!("duplicate choice {c}"));
                    }
                }
                if let Some(w) = weights {
                    if w.len() != choices.len()
                        || w.iter().any(|x| !x.is_finite() || *x < 0.0)
                        || w.iter().sum::<f64>() <= 0.0
                    {
                        return bad(
                            "weights must be one non-negative number per choice, not all zero"
                                .into(),
                        );
                    }
                }
            }
            Hyperparameter::Ordinal { sequence, .. } => {
                non_finite(sequence)?;
                if sequence.is_empty() {
                    return bad("needs a non-empty sequence".into());
                }
                for (i, c) in sequence.iter().enumerate() {
                    if sequence[..i].iter().any(|d| d.loosely_equals(c)) {
                        return bad(format!("duplicate element {c}"));
                    }
                }
            }
            Hyperparameter::Constant { value, .. } => non_finite(std::slice::from_ref(value))?,
        }
        self.check_value(&self.default_value())
            .map_err(|e| SpaceError::Invalid(format!("default: {e}")))
    }

    /// Check that `v` is an allowed value, with an error naming the range.
    pub fn check_value(&self, v: &Value) -> Result<(), SpaceError> {
        let out = || SpaceError::OutOfRange {
            name: self.name().to_string(),
            value: v.to_string(),
            allowed: self.allowed(),
        };
        let wrong = |expected: &str| SpaceError::WrongType {
            name: self.name().to_string(),
            expected: expected.to_string(),
            value: v.to_string(),
        };
        match self {
            Hyperparameter::Float { lower, upper, .. } => {
                let x = v.as_f64().ok_or_else(|| wrong("a number"))?;
                if !(x >= *lower && x <= *upper) {
                    return Err(out());
                }
            }
            Hyperparameter::Int { lower, upper, .. } => {
                let x = v.as_i64().ok_or_else(|| wrong("an integer"))?;
                if x < *lower || x > *upper {
                    return Err(out());
                }
            }
            Hyperparameter::Categorical { choices, .. } => {
                if !choices.iter().any(|c| c.loosely_equals(v)) {
                    return Err(out());
                }
            }
            Hyperparameter::Ordinal { sequence, .. } => {
                if !sequence.iter().any(|c| c.loosely_equals(v)) {
                    return Err(out());
                }
            }
            Hyperparameter::Constant { value, .. } => {
                if !value.loosely_equals(v) {
                    return Err(out());
                }
            }
        }
        Ok(())
    }

    /// Encode an allowed value to `[0, 1]`.
    ///
    /// Floats map linearly (or in log space); integers and ordinals map to the
    /// centre of their bin, so that decoding rounds back exactly; categoricals
    /// likewise by index.
    pub fn encode(&self, v: &Value) -> Result<f64, SpaceError> {
        self.check_value(v)?;
        Ok(match self {
            Hyperparameter::Float {
                lower, upper, log, ..
            } => {
                let x = v.as_f64().unwrap_or(*lower);
                if *log {
                    (x.ln() - lower.ln()) / (upper.ln() - lower.ln())
                } else {
                    (x - lower) / (upper - lower)
                }
            }
            Hyperparameter::Int {
                lower, upper, log, ..
            } => {
                let x = v.as_i64().unwrap_or(*lower) as f64;
                let (lo, hi) = int_edges(*lower, *upper, *log);
                if *log {
                    (x.ln() - lo) / (hi - lo)
                } else {
                    (x - lo) / (hi - lo)
                }
            }
            Hyperparameter::Categorical { choices, .. } => {
                let i = choices
                    .iter()
                    .position(|c| c.loosely_equals(v))
                    .unwrap_or(0);
                (i as f64 + 0.5) / choices.len() as f64
            }
            Hyperparameter::Ordinal { sequence, .. } => {
                let i = sequence
                    .iter()
                    .position(|c| c.loosely_equals(v))
                    .unwrap_or(0);
                (i as f64 + 0.5) / sequence.len() as f64
            }
            Hyperparameter::Constant { .. } => 0.5,
        })
    }

    /// Decode a unit-cube coordinate (clamped to `[0, 1]`) to a value.
    pub fn decode(&self, u: f64) -> Value {
        let u = if u.is_nan() { 0.5 } else { u.clamp(0.0, 1.0) };
        match self {
            Hyperparameter::Float {
                lower, upper, log, ..
            } => {
                let x = if *log {
                    (lower.ln() + u * (upper.ln() - lower.ln())).exp()
                } else {
                    lower + u * (upper - lower)
                };
                Value::Float(x.clamp(*lower, *upper))
            }
            Hyperparameter::Int {
                lower, upper, log, ..
            } => {
                let (lo, hi) = int_edges(*lower, *upper, *log);
                let t = lo + u * (hi - lo);
                let x = if *log { t.exp() } else { t };
                Value::Int((x.round() as i64).clamp(*lower, *upper))
            }
            Hyperparameter::Categorical { choices, .. } => choices[bin(u, choices.len())].clone(),
            Hyperparameter::Ordinal { sequence, .. } => sequence[bin(u, sequence.len())].clone(),
            Hyperparameter::Constant { value, .. } => value.clone(),
        }
    }

    /// Draw a value from the hyperparameter's prior (uniform on its scale, or by weights).
    pub fn sample(&self, rng: &mut dyn RngCore) -> Value {
        match self {
            Hyperparameter::Categorical {
                choices,
                weights: Some(w),
                ..
            } => {
                let total: f64 = w.iter().sum();
                let mut r = rng.random::<f64>() * total;
                for (c, wi) in choices.iter().zip(w) {
                    if r < *wi {
                        return c.clone();
                    }
                    r -= wi;
                }
                choices[choices.len() - 1].clone()
            }
            _ => self.decode(rng.random::<f64>()),
        }
    }

    /// Canonical form of an allowed value (e.g. `Float(3.0)` becomes `Int(3)` for
    /// an integer hyperparameter, a choice takes the type written in the space).
    fn canonical(&self, v: &Value) -> Value {
        match self {
            Hyperparameter::Float { .. } => v.as_f64().map(Value::Float).unwrap_or(v.clone()),
            Hyperparameter::Int { .. } => v.as_i64().map(Value::Int).unwrap_or(v.clone()),
            Hyperparameter::Categorical { choices: s, .. }
            | Hyperparameter::Ordinal { sequence: s, .. } => s
                .iter()
                .find(|c| c.loosely_equals(v))
                .cloned()
                .unwrap_or(v.clone()),
            Hyperparameter::Constant { value, .. } => value.clone(),
        }
    }
}

fn list(values: &[Value]) -> String {
    let items: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    format!("[{}]", items.join(", "))
}

fn bin(u: f64, n: usize) -> usize {
    ((u * n as f64).floor() as usize).min(n - 1)
}

/// Continuous edges of an integer range: each integer owns a bin of equal width
/// (in log space when `log`).
fn int_edges(lower: i64, upper: i64, log: bool) -> (f64, f64) {
    let lo = lower as f64 - 0.5;
    let hi = upper as f64 + 0.5;
    if log {
        (lo.max(0.5).ln(), hi.ln())
    } else {
        (lo, hi)
    }
}

/// A condition: the child hyperparameter is active only when its parent's value
/// satisfies it (and the parent is itself active).
///
/// Several conditions on the same child must all hold (as an `and`); use
/// [`Condition::Or`] for alternatives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// Parent equals `value`.
    Equals {
        /// Conditioned hyperparameter.
        child: String,
        /// Hyperparameter whose value decides.
        parent: String,
        /// Required value.
        value: Value,
    },
    /// Parent differs from `value`.
    NotEquals {
        /// Conditioned hyperparameter.
        child: String,
        /// Hyperparameter whose value decides.
        parent: String,
        /// Excluded value.
        value: Value,
    },
    /// Parent is less than `value` (numbers, or position for ordinals).
    LessThan {
        /// Conditioned hyperparameter.
        child: String,
        /// Hyperparameter whose value decides.
        parent: String,
        /// Bound.
        value: Value,
    },
    /// Parent is greater than `value` (numbers, or position for ordinals).
    GreaterThan {
        /// Conditioned hyperparameter.
        child: String,
        /// Hyperparameter whose value decides.
        parent: String,
        /// Bound.
        value: Value,
    },
    /// Parent is one of `values`.
    In {
        /// Conditioned hyperparameter.
        child: String,
        /// Hyperparameter whose value decides.
        parent: String,
        /// Allowed values.
        values: Vec<Value>,
    },
    /// All sub-conditions hold (they must share the child).
    And {
        /// Sub-conditions.
        conditions: Vec<Condition>,
    },
    /// At least one sub-condition holds (they must share the child).
    Or {
        /// Sub-conditions.
        conditions: Vec<Condition>,
    },
}

impl Condition {
    /// The conditioned hyperparameter (for conjunctions, that of the first part).
    pub fn child(&self) -> Option<&str> {
        match self {
            Condition::Equals { child, .. }
            | Condition::NotEquals { child, .. }
            | Condition::LessThan { child, .. }
            | Condition::GreaterThan { child, .. }
            | Condition::In { child, .. } => Some(child),
            Condition::And { conditions } | Condition::Or { conditions } => {
                conditions.first().and_then(|c| c.child())
            }
        }
    }

    /// All parents this condition reads.
    pub fn parents(&self) -> Vec<&str> {
        match self {
            Condition::Equals { parent, .. }
            | Condition::NotEquals { parent, .. }
            | Condition::LessThan { parent, .. }
            | Condition::GreaterThan { parent, .. }
            | Condition::In { parent, .. } => vec![parent],
            Condition::And { conditions } | Condition::Or { conditions } => {
                conditions.iter().flat_map(|c| c.parents()).collect()
            }
        }
    }

    fn children(&self, out: &mut Vec<String>) {
        match self {
            Condition::And { conditions } | Condition::Or { conditions } => {
                for c in conditions {
                    c.children(out);
                }
            }
            _ => out.push(self.child().unwrap_or_default().to_string()),
        }
    }

    /// Whether the condition holds for the (partially built) configuration.
    /// An inactive (absent) parent makes a leaf condition false.
    fn holds(&self, config: &Configuration, space: &ConfigurationSpace) -> bool {
        let parent_value = |p: &str| config.get(p);
        match self {
            Condition::Equals { parent, value, .. } => {
                parent_value(parent).is_some_and(|v| v.loosely_equals(value))
            }
            Condition::NotEquals { parent, value, .. } => {
                parent_value(parent).is_some_and(|v| !v.loosely_equals(value))
            }
            Condition::LessThan { parent, value, .. } => parent_value(parent)
                .is_some_and(|v| space.compare(parent, v, value) == Some(std::cmp::Ordering::Less)),
            Condition::GreaterThan { parent, value, .. } => parent_value(parent).is_some_and(|v| {
                space.compare(parent, v, value) == Some(std::cmp::Ordering::Greater)
            }),
            Condition::In { parent, values, .. } => {
                parent_value(parent).is_some_and(|v| values.iter().any(|x| x.loosely_equals(v)))
            }
            Condition::And { conditions } => conditions.iter().all(|c| c.holds(config, space)),
            Condition::Or { conditions } => conditions.iter().any(|c| c.holds(config, space)),
        }
    }
}

/// A forbidden clause: configurations that match it are not allowed.
///
/// A clause only matches when every hyperparameter it names is active.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Forbidden {
    /// `name == value` is forbidden.
    Equals {
        /// Hyperparameter.
        name: String,
        /// Forbidden value.
        value: Value,
    },
    /// `name` in `values` is forbidden.
    In {
        /// Hyperparameter.
        name: String,
        /// Forbidden values.
        values: Vec<Value>,
    },
    /// The conjunction of all clauses is forbidden.
    And {
        /// The clauses.
        clauses: Vec<Forbidden>,
    },
    /// `left < right` is forbidden.
    LessThanRelation {
        /// Left hyperparameter.
        left: String,
        /// Right hyperparameter.
        right: String,
    },
    /// `left == right` is forbidden.
    EqualsRelation {
        /// Left hyperparameter.
        left: String,
        /// Right hyperparameter.
        right: String,
    },
    /// `left > right` is forbidden.
    GreaterThanRelation {
        /// Left hyperparameter.
        left: String,
        /// Right hyperparameter.
        right: String,
    },
}

impl Forbidden {
    /// Whether the clause matches (forbids) the configuration.
    pub fn matches(&self, config: &Configuration) -> bool {
        let rel = |l: &str, r: &str| -> Option<std::cmp::Ordering> {
            let (a, b) = (config.get(l)?, config.get(r)?);
            match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => x.partial_cmp(&y),
                _ => match (a.as_str(), b.as_str()) {
                    (Some(x), Some(y)) => Some(x.cmp(y)),
                    _ => None,
                },
            }
        };
        match self {
            Forbidden::Equals { name, value } => {
                config.get(name).is_some_and(|v| v.loosely_equals(value))
            }
            Forbidden::In { name, values } => config
                .get(name)
                .is_some_and(|v| values.iter().any(|x| x.loosely_equals(v))),
            Forbidden::And { clauses } => {
                !clauses.is_empty() && clauses.iter().all(|c| c.matches(config))
            }
            Forbidden::LessThanRelation { left, right } => {
                rel(left, right) == Some(std::cmp::Ordering::Less)
            }
            Forbidden::EqualsRelation { left, right } => {
                rel(left, right) == Some(std::cmp::Ordering::Equal)
            }
            Forbidden::GreaterThanRelation { left, right } => {
                rel(left, right) == Some(std::cmp::Ordering::Greater)
            }
        }
    }

    fn names(&self) -> Vec<&str> {
        match self {
            Forbidden::Equals { name, .. } | Forbidden::In { name, .. } => vec![name],
            Forbidden::And { clauses } => clauses.iter().flat_map(|c| c.names()).collect(),
            Forbidden::LessThanRelation { left, right }
            | Forbidden::EqualsRelation { left, right }
            | Forbidden::GreaterThanRelation { left, right } => vec![left, right],
        }
    }

    /// A short human-readable form, used in errors.
    pub fn describe(&self) -> String {
        match self {
            Forbidden::Equals { name, value } => format!("{name} == {value}"),
            Forbidden::In { name, values } => format!("{name} in {}", list(values)),
            Forbidden::And { clauses } => {
                let parts: Vec<String> = clauses.iter().map(|c| c.describe()).collect();
                format!("({})", parts.join(" && "))
            }
            Forbidden::LessThanRelation { left, right } => format!("{left} < {right}"),
            Forbidden::EqualsRelation { left, right } => format!("{left} == {right}"),
            Forbidden::GreaterThanRelation { left, right } => format!("{left} > {right}"),
        }
    }
}

/// The interface optimizers use to work with a search space.
///
/// Object safe: optimizers hold an `Arc<dyn SearchSpace>`. The unit-cube encoding
/// has one coordinate per hyperparameter, in [`SearchSpace::names`] order; inactive
/// hyperparameters encode as `NaN` and any value decodes for them.
pub trait SearchSpace: Send + Sync {
    /// Hyperparameter names, in unit-cube coordinate order.
    fn names(&self) -> Vec<String>;
    /// Number of unit-cube coordinates.
    fn dim(&self) -> usize;
    /// The kind of each coordinate (continuous, integer, categorical, constant).
    fn kinds(&self) -> Vec<DimKind>;
    /// The default configuration.
    fn default_configuration(&self) -> Configuration;
    /// Draw a random allowed configuration (deterministic for a given rng state).
    fn sample(&self, rng: &mut dyn RngCore) -> Result<Configuration, SpaceError>;
    /// Check a configuration: every active value in range, inactive ones absent,
    /// no unknown names, no forbidden clause matched.
    fn validate(&self, config: &Configuration) -> Result<(), SpaceError>;
    /// Encode a valid configuration to the unit cube (`NaN` for inactive).
    fn encode(&self, config: &Configuration) -> Result<Vec<f64>, SpaceError>;
    /// Decode a unit-cube vector (values clamped; `NaN` taken as 0.5) into a
    /// configuration with the right set of active hyperparameters. The result may
    /// be forbidden; check with [`SearchSpace::is_forbidden`].
    fn decode(&self, x: &[f64]) -> Result<Configuration, SpaceError>;
    /// Whether a configuration matches a forbidden clause.
    fn is_forbidden(&self, config: &Configuration) -> bool;
    /// Allowed neighbours of a configuration for local search: each active
    /// hyperparameter changed alone (`per_numeric` Gaussian steps in the unit cube
    /// for numbers, every other choice for categoricals, adjacent elements for
    /// ordinals), children of a changed parent re-activated at their defaults.
    fn neighbours(
        &self,
        config: &Configuration,
        rng: &mut dyn RngCore,
        per_numeric: usize,
    ) -> Vec<Configuration>;

    /// The space as a [`ConfigurationSpace`], when it is one (optimizer
    /// plugins receive spaces as ConfigSpace JSON, which only that type
    /// writes).
    fn as_configuration_space(&self) -> Option<&ConfigurationSpace> {
        None
    }

    /// The encoding of the configuration that the cube point `u` decodes to
    /// (rounded to bins, `NaN` for inactive), or `None` if that configuration is
    /// forbidden. Model-based optimizers call this in their inner loops; the
    /// default goes through [`SearchSpace::decode`] and [`SearchSpace::encode`].
    fn canonical_encoding(&self, u: &[f64]) -> Option<Vec<f64>> {
        let c = self.decode(u).ok()?;
        if self.is_forbidden(&c) {
            return None;
        }
        self.encode(&c).ok()
    }
}

/// The standard search space: hyperparameters, conditions and forbidden clauses.
///
/// Build it with [`ConfigurationSpace::new`] or load it from TOML or ConfigSpace JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigurationSpace {
    name: Option<String>,
    hyperparameters: Vec<Hyperparameter>,
    conditions: Vec<Condition>,
    forbidden: Vec<Forbidden>,
    index: HashMap<String, usize>,
    /// Hyperparameter indices, parents before children.
    order: Vec<usize>,
    /// Conditions that apply to each hyperparameter (by index into `conditions`).
    conditions_of: Vec<Vec<usize>>,
}

impl ConfigurationSpace {
    /// Build and check a space: names unique, definitions valid, conditions
    /// naming known hyperparameters without cycles, forbidden clauses naming known
    /// hyperparameters and not forbidding the default configuration.
    pub fn new(
        hyperparameters: Vec<Hyperparameter>,
        conditions: Vec<Condition>,
        forbidden: Vec<Forbidden>,
    ) -> Result<Self, SpaceError> {
        let mut hyperparameters = hyperparameters;
        let mut index = HashMap::new();
        for (i, hp) in hyperparameters.iter().enumerate() {
            hp.check_definition()?;
            if index.insert(hp.name().to_string(), i).is_some() {
                return Err(SpaceError::Invalid(format!(
                    "duplicate hyperparameter `{}`",
                    hp.name()
                )));
            }
        }
        // Fill in defaults so that the space is explicit when written back.
        for hp in hyperparameters.iter_mut() {
            let d = hp.default_value();
            match hp {
                Hyperparameter::Float { default, .. } => *default = d.as_f64(),
                Hyperparameter::Int { default, .. } => *default = d.as_i64(),
                Hyperparameter::Categorical {
                    default, choices, ..
                } => *default = choices.iter().find(|c| c.loosely_equals(&d)).cloned(),
                Hyperparameter::Ordinal {
                    default, sequence, ..
                } => *default = sequence.iter().find(|c| c.loosely_equals(&d)).cloned(),
                Hyperparameter::Constant { .. } => {}
            }
        }
        let n = hyperparameters.len();
        let mut conditions_of = vec![Vec::new(); n];
        let mut parents_of: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (ci, c) in conditions.iter().enumerate() {
            let mut children = Vec::new();
            c.children(&mut children);
            let child = children
                .first()
                .ok_or_else(|| SpaceError::Invalid("empty conjunction in conditions".into()))?;
            if children.iter().any(|x| x != child) {
                return Err(SpaceError::Invalid(format!(
                    "a conjunction must condition a single child, found {children:?}"
                )));
            }
            let &ci_child = index
                .get(child)
                .ok_or_else(|| SpaceError::Invalid(format!("condition on unknown `{child}`")))?;
            for p in c.parents() {
                let &pi = index.get(p).ok_or_else(|| {
                    SpaceError::Invalid(format!("condition of `{child}` on unknown parent `{p}`"))
                })?;
                if pi == ci_child {
                    return Err(SpaceError::Invalid(format!("`{child}` conditions itself")));
                }
                parents_of[ci_child].push(pi);
            }
            conditions_of[ci_child].push(ci);
        }
        // Topological order (Kahn), stable in definition order.
        let mut order = Vec::with_capacity(n);
        let mut placed = vec![false; n];
        while order.len() < n {
            let before = order.len();
            for i in 0..n {
                if !placed[i] && parents_of[i].iter().all(|&p| placed[p]) {
                    placed[i] = true;
                    order.push(i);
                }
            }
            if order.len() == before {
                return Err(SpaceError::Invalid("conditions form a cycle".into()));
            }
        }
        for f in &forbidden {
            for name in f.names() {
                if !index.contains_key(name) {
                    return Err(SpaceError::Invalid(format!(
                        "forbidden clause {} names unknown `{name}`",
                        f.describe()
                    )));
                }
            }
        }
        let space = ConfigurationSpace {
            name: None,
            hyperparameters,
            conditions,
            forbidden,
            index,
            order,
            conditions_of,
        };
        // Check condition values against their parents' ranges.
        for c in &space.conditions {
            space.check_condition_values(c)?;
        }
        let default = space.default_configuration();
        if let Some(f) = space.forbidden.iter().find(|f| f.matches(&default)) {
            return Err(SpaceError::Invalid(format!(
                "the default configuration is forbidden by {}",
                f.describe()
            )));
        }
        Ok(space)
    }

    fn check_condition_values(&self, c: &Condition) -> Result<(), SpaceError> {
        let check = |parent: &str, v: &Value| -> Result<(), SpaceError> {
            let hp = &self.hyperparameters[self.index[parent]];
            hp.check_value(v)
                .map_err(|e| SpaceError::Invalid(format!("condition value: {e}")))
        };
        match c {
            Condition::Equals { parent, value, .. }
            | Condition::NotEquals { parent, value, .. } => check(parent, value),
            Condition::LessThan { parent, value, .. }
            | Condition::GreaterThan { parent, value, .. } => {
                let hp = &self.hyperparameters[self.index[parent]];
                match hp {
                    Hyperparameter::Categorical { .. } => Err(SpaceError::Invalid(format!(
                        "`{parent}` is categorical: less/greater-than conditions need an order"
                    ))),
                    Hyperparameter::Ordinal { .. } => check(parent, value),
                    _ if value.as_f64().is_none() => Err(SpaceError::Invalid(format!(
                        "condition on `{parent}` compares with non-number {value}"
                    ))),
                    _ => Ok(()),
                }
            }
            Condition::In { parent, values, .. } => {
                values.iter().try_for_each(|v| check(parent, v))
            }
            Condition::And { conditions } | Condition::Or { conditions } => conditions
                .iter()
                .try_for_each(|c| self.check_condition_values(c)),
        }
    }

    /// Set an optional name for the space (kept in ConfigSpace JSON).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The space's name, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The hyperparameters in definition order.
    pub fn hyperparameters(&self) -> &[Hyperparameter] {
        &self.hyperparameters
    }

    /// The conditions.
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// The forbidden clauses.
    pub fn forbidden(&self) -> &[Forbidden] {
        &self.forbidden
    }

    /// The hyperparameter called `name`.
    pub fn get(&self, name: &str) -> Option<&Hyperparameter> {
        self.index.get(name).map(|&i| &self.hyperparameters[i])
    }

    /// Compare two values of hyperparameter `name`: numerically, or by position
    /// for ordinals.
    fn compare(&self, name: &str, a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
        match self.get(name)? {
            Hyperparameter::Ordinal { sequence, .. } => {
                let ia = sequence.iter().position(|x| x.loosely_equals(a))?;
                let ib = sequence.iter().position(|x| x.loosely_equals(b))?;
                Some(ia.cmp(&ib))
            }
            _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
        }
    }

    /// Whether hyperparameter index `i` is active given the values set so far.
    fn is_active(&self, i: usize, config: &Configuration) -> bool {
        self.conditions_of[i]
            .iter()
            .all(|&ci| self.conditions[ci].holds(config, self))
    }

    /// Build a configuration by visiting hyperparameters parents-first and taking
    /// each active one's value from `value_of` (index, hyperparameter).
    fn build(&self, mut value_of: impl FnMut(usize, &Hyperparameter) -> Value) -> Configuration {
        let mut config = Configuration::new();
        for &i in &self.order {
            if self.is_active(i, &config) {
                let hp = &self.hyperparameters[i];
                let v = value_of(i, hp);
                config.insert(hp.name(), v);
            }
        }
        config
    }

    /// Re-derive activity after changing `config`: drop values of inactive
    /// hyperparameters, give newly active ones their defaults.
    fn repair(&self, config: &Configuration) -> Configuration {
        self.build(|_, hp| {
            config
                .get(hp.name())
                .cloned()
                .unwrap_or_else(|| hp.default_value())
        })
    }
}

impl SearchSpace for ConfigurationSpace {
    fn as_configuration_space(&self) -> Option<&ConfigurationSpace> {
        Some(self)
    }

    fn names(&self) -> Vec<String> {
        self.hyperparameters
            .iter()
            .map(|h| h.name().to_string())
            .collect()
    }

    fn dim(&self) -> usize {
        self.hyperparameters.len()
    }

    fn kinds(&self) -> Vec<DimKind> {
        self.hyperparameters.iter().map(|h| h.kind()).collect()
    }

    fn default_configuration(&self) -> Configuration {
        self.build(|_, hp| hp.default_value())
    }

    fn sample(&self, rng: &mut dyn RngCore) -> Result<Configuration, SpaceError> {
        for _ in 0..MAX_SAMPLE_TRIES {
            let config = self.build(|_, hp| hp.sample(rng));
            if !self.is_forbidden(&config) {
                return Ok(config);
            }
        }
        Err(SpaceError::SamplingFailed(MAX_SAMPLE_TRIES))
    }

    fn validate(&self, config: &Configuration) -> Result<(), SpaceError> {
        for (name, _) in config.iter() {
            if !self.index.contains_key(name) {
                return Err(SpaceError::Unknown(name.clone()));
            }
        }
        for &i in &self.order {
            let hp = &self.hyperparameters[i];
            let active = self.is_active(i, config);
            match (active, config.get(hp.name())) {
                (true, Some(v)) => hp.check_value(v)?,
                (true, None) => return Err(SpaceError::Missing(hp.name().to_string())),
                (false, Some(_)) => return Err(SpaceError::Inactive(hp.name().to_string())),
                (false, None) => {}
            }
        }
        if let Some(f) = self.forbidden.iter().find(|f| f.matches(config)) {
            return Err(SpaceError::Forbidden(f.describe()));
        }
        Ok(())
    }

    fn encode(&self, config: &Configuration) -> Result<Vec<f64>, SpaceError> {
        self.validate(config)?;
        self.hyperparameters
            .iter()
            .map(|hp| match config.get(hp.name()) {
                Some(v) => hp.encode(v),
                None => Ok(f64::NAN),
            })
            .collect()
    }

    fn decode(&self, x: &[f64]) -> Result<Configuration, SpaceError> {
        if x.len() != self.dim() {
            return Err(SpaceError::Dimension {
                expected: self.dim(),
                got: x.len(),
            });
        }
        Ok(self.build(|i, hp| hp.decode(x[i])))
    }

    fn is_forbidden(&self, config: &Configuration) -> bool {
        self.forbidden.iter().any(|f| f.matches(config))
    }

    fn canonical_encoding(&self, u: &[f64]) -> Option<Vec<f64>> {
        if !(self.conditions.is_empty() && self.forbidden.is_empty()) || u.len() != self.dim() {
            let c = self.decode(u).ok()?;
            if self.is_forbidden(&c) {
                return None;
            }
            return self.encode(&c).ok();
        }
        // No conditions and no forbidden clauses: round each coordinate alone.
        Some(
            self.hyperparameters
                .iter()
                .zip(u)
                .map(|(hp, &x)| {
                    let x = if x.is_nan() { 0.5 } else { x.clamp(0.0, 1.0) };
                    match hp.kind() {
                        DimKind::Continuous => x,
                        DimKind::Constant => 0.5,
                        DimKind::Integer(_) | DimKind::Categorical(_) => {
                            hp.encode(&hp.decode(x)).unwrap_or(x)
                        }
                    }
                })
                .collect(),
        )
    }

    fn neighbours(
        &self,
        config: &Configuration,
        rng: &mut dyn RngCore,
        per_numeric: usize,
    ) -> Vec<Configuration> {
        let mut out = Vec::new();
        for hp in &self.hyperparameters {
            let Some(current) = config.get(hp.name()) else {
                continue;
            };
            let mut candidates: Vec<Value> = Vec::new();
            match hp {
                Hyperparameter::Float { .. } | Hyperparameter::Int { .. } => {
                    let Ok(u) = hp.encode(current) else { continue };
                    for _ in 0..per_numeric {
                        // Up to a few tries to move off the current value (integers).
                        for _ in 0..8 {
                            let step = 0.2 * standard_normal(rng);
                            let v = hp.decode((u + step).clamp(0.0, 1.0));
                            if !v.loosely_equals(current) {
                                candidates.push(v);
                                break;
                            }
                        }
                    }
                }
                Hyperparameter::Categorical { choices, .. } => {
                    candidates.extend(
                        choices
                            .iter()
                            .filter(|c| !c.loosely_equals(current))
                            .cloned(),
                    );
                }
                Hyperparameter::Ordinal { sequence, .. } => {
                    if let Some(i) = sequence.iter().position(|c| c.loosely_equals(current)) {
                        if i > 0 {
                            candidates.push(sequence[i - 1].clone());
                        }
                        if i + 1 < sequence.len() {
                            candidates.push(sequence[i + 1].clone());
                        }
                    }
                }
                Hyperparameter::Constant { .. } => {}
            }
            for v in candidates {
                let mut c = config.clone();
                c.insert(hp.name(), hp.canonical(&v));
                let c = self.repair(&c);
                if !self.is_forbidden(&c) && !out.contains(&c) && c != *config {
                    out.push(c);
                }
            }
        }
        out
    }
}

/// A standard normal draw (Box-Muller), so that no distribution crate is needed.
pub(crate) fn standard_normal(rng: &mut dyn RngCore) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn small_space() -> ConfigurationSpace {
        ConfigurationSpace::new(
            vec![
                Hyperparameter::categorical("opt", &["sgd", "adam"], Some("sgd")),
                Hyperparameter::float("momentum", 0.0, 0.9, false, Some(0.9)),
                Hyperparameter::float("lr", 1e-4, 1e-1, true, None),
                Hyperparameter::int("bits", 2, 5, false, Some(5)),
                Hyperparameter::int("batch", 16, 512, true, None),
                Hyperparameter::ordinal(
                    "depth",
                    vec![Value::Int(1), Value::Int(2), Value::Int(4)],
                    None,
                ),
            ],
            vec![Condition::Equals {
                child: "momentum".into(),
                parent: "opt".into(),
                value: "sgd".into(),
            }],
            vec![Forbidden::And {
                clauses: vec![
                    Forbidden::Equals {
                        name: "opt".into(),
                        value: "adam".into(),
                    },
                    Forbidden::Equals {
                        name: "bits".into(),
                        value: Value::Int(2),
                    },
                ],
            }],
        )
        .unwrap()
    }

    #[test]
    fn defaults_are_filled_in() {
        let s = small_space();
        let d = s.default_configuration();
        assert_eq!(d.get_str("opt"), Some("sgd"));
        assert_eq!(d.get_f64("momentum"), Some(0.9));
        assert!((d.get_f64("lr").unwrap() - 10f64.powf(-2.5)).abs() < 1e-12);
        assert_eq!(d.get_i64("batch"), Some(91)); // sqrt(16*512) = 90.5 -> 91
        assert_eq!(d.get("depth"), Some(&Value::Int(1)));
        s.validate(&d).unwrap();
    }

    #[test]
    fn sampling_is_seeded_valid_and_respects_conditions() {
        let s = small_space();
        let mut a = ChaCha8Rng::seed_from_u64(7);
        let mut b = ChaCha8Rng::seed_from_u64(7);
        let mut saw_inactive = false;
        for _ in 0..300 {
            let x = s.sample(&mut a).unwrap();
            assert_eq!(x, s.sample(&mut b).unwrap());
            s.validate(&x).unwrap();
            if x.get_str("opt") == Some("adam") {
                assert!(x.get("momentum").is_none());
                assert_ne!(x.get_i64("bits"), Some(2), "forbidden combination sampled");
                saw_inactive = true;
            }
        }
        assert!(saw_inactive);
    }

    #[test]
    fn validation_errors_name_the_hyperparameter_and_range() {
        let s = small_space();
        let mut c = s.default_configuration();
        c.insert("lr", 0.5);
        let e = s.validate(&c).unwrap_err().to_string();
        assert!(e.contains("`lr`") && e.contains("[0.0001, 0.1]"), "{e}");
        let mut c = s.default_configuration();
        c.insert("opt", "adam");
        assert!(matches!(s.validate(&c), Err(SpaceError::Inactive(n)) if n == "momentum"));
        c.remove("momentum");
        c.insert("bits", 2i64);
        assert!(matches!(s.validate(&c), Err(SpaceError::Forbidden(_))));
        let mut c = s.default_configuration();
        c.insert("bits", 3.5);
        assert!(matches!(s.validate(&c), Err(SpaceError::WrongType { .. })));
        let mut c = s.default_configuration();
        c.insert("nope", 1i64);
        assert!(matches!(s.validate(&c), Err(SpaceError::Unknown(_))));
        let mut c = s.default_configuration();
        c.remove("lr");
        assert!(matches!(s.validate(&c), Err(SpaceError::Missing(n)) if n == "lr"));
    }

    #[test]
    fn encode_decode_round_trip_with_inactive() {
        let s = small_space();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..200 {
            let c = s.sample(&mut rng).unwrap();
            let x = s.encode(&c).unwrap();
            assert_eq!(x.len(), s.dim());
            for (name, u) in s.names().iter().zip(&x) {
                if c.get(name).is_none() {
                    assert!(u.is_nan());
                } else {
                    assert!((0.0..=1.0).contains(u), "{name}: {u}");
                }
            }
            let back = s.decode(&x).unwrap();
            assert_eq!(back.get_str("opt"), c.get_str("opt"));
            assert_eq!(back.get_i64("bits"), c.get_i64("bits"));
            assert_eq!(back.get_i64("batch"), c.get_i64("batch"));
            assert_eq!(back.get("depth"), c.get("depth"));
            let lr = c.get_f64("lr").unwrap();
            assert!((back.get_f64("lr").unwrap() - lr).abs() < 1e-12 * lr.max(1.0));
        }
        // Integer bins have equal width: decode of the cube's extremes hits the bounds.
        let hp = s.get("bits").unwrap();
        assert_eq!(hp.decode(0.0), Value::Int(2));
        assert_eq!(hp.decode(1.0), Value::Int(5));
        assert_eq!(hp.decode(0.26), Value::Int(3));
        assert!(s.decode(&[0.5]).is_err());
    }

    #[test]
    fn neighbours_change_one_value_and_stay_valid() {
        let s = small_space();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let c = s.default_configuration();
        let ns = s.neighbours(&c, &mut rng, 4);
        assert!(ns.len() >= 8);
        for n in &ns {
            s.validate(n).unwrap();
            let changed = s.names().iter().filter(|k| n.get(k) != c.get(k)).count();
            // A changed parent may also deactivate its child.
            assert!((1..=2).contains(&changed), "{c} vs {n}");
        }
        // The switch to adam deactivates momentum.
        assert!(ns
            .iter()
            .any(|n| n.get_str("opt") == Some("adam") && n.get("momentum").is_none()));
        // Ordinal neighbours are adjacent: from 1 only 2.
        assert!(ns.iter().any(|n| n.get("depth") == Some(&Value::Int(2))));
        assert!(!ns.iter().any(|n| n.get("depth") == Some(&Value::Int(4))));
    }

    #[test]
    fn canonical_encoding_agrees_with_decode_then_encode() {
        let plain = ConfigurationSpace::new(
            vec![
                Hyperparameter::float("a", 1e-3, 1.0, true, None),
                Hyperparameter::int("b", 1, 7, false, None),
                Hyperparameter::categorical("c", &["x", "y", "z"], None),
            ],
            vec![],
            vec![],
        )
        .unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for s in [&plain as &dyn SearchSpace, &small_space()] {
            for _ in 0..200 {
                let u: Vec<f64> = (0..s.dim()).map(|_| rng.random::<f64>()).collect();
                let fast = s.canonical_encoding(&u);
                let c = s.decode(&u).unwrap();
                let slow = if s.is_forbidden(&c) {
                    None
                } else {
                    Some(s.encode(&c).unwrap())
                };
                match (fast, slow) {
                    (Some(a), Some(b)) => {
                        for (x, y) in a.iter().zip(&b) {
                            assert!((x.is_nan() && y.is_nan()) || (x - y).abs() < 1e-12);
                        }
                    }
                    (None, None) => {}
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn invalid_definitions_are_rejected() {
        let bad = |hps, conds, forb| ConfigurationSpace::new(hps, conds, forb).is_err();
        assert!(bad(
            vec![Hyperparameter::float("a", 1.0, 0.0, false, None)],
            vec![],
            vec![]
        ));
        assert!(bad(
            vec![Hyperparameter::float("a", 0.0, 1.0, true, None)],
            vec![],
            vec![]
        ));
        assert!(bad(
            vec![Hyperparameter::float("a", 0.0, 1.0, false, Some(2.0))],
            vec![],
            vec![]
        ));
        assert!(bad(
            vec![
                Hyperparameter::int("a", 0, 3, false, None),
                Hyperparameter::int("a", 0, 3, false, None)
            ],
            vec![],
            vec![]
        ));
        let a = Hyperparameter::categorical("a", &["x", "y"], None);
        let b = Hyperparameter::categorical("b", &["x", "y"], None);
        let cyc = vec![
            Condition::Equals {
                child: "a".into(),
                parent: "b".into(),
                value: "x".into(),
            },
            Condition::Equals {
                child: "b".into(),
                parent: "a".into(),
                value: "x".into(),
            },
        ];
        assert!(bad(vec![a.clone(), b.clone()], cyc, vec![]));
        let forbid_default = vec![Forbidden::Equals {
            name: "a".into(),
            value: "x".into(),
        }];
        assert!(bad(vec![a.clone()], vec![], forbid_default));
        let unknown_value = vec![Condition::Equals {
            child: "a".into(),
            parent: "b".into(),
            value: "z".into(),
        }];
        assert!(bad(vec![a, b], unknown_value, vec![]));
    }

    #[test]
    fn nested_conditions_and_or() {
        let s = ConfigurationSpace::new(
            vec![
                Hyperparameter::categorical("k", &["lin", "rbf", "poly"], None),
                Hyperparameter::float("gamma", 0.1, 1.0, false, None),
                Hyperparameter::int("degree", 2, 5, false, None),
                Hyperparameter::float("coef", 0.0, 1.0, false, None),
            ],
            vec![
                Condition::In {
                    child: "gamma".into(),
                    parent: "k".into(),
                    values: vec!["rbf".into(), "poly".into()],
                },
                Condition::Equals {
                    child: "degree".into(),
                    parent: "k".into(),
                    value: "poly".into(),
                },
                Condition::Or {
                    conditions: vec![
                        Condition::GreaterThan {
                            child: "coef".into(),
                            parent: "degree".into(),
                            value: Value::Int(3),
                        },
                        Condition::LessThan {
                            child: "coef".into(),
                            parent: "gamma".into(),
                            value: Value::Float(0.2),
                        },
                    ],
                },
            ],
            vec![],
        )
        .unwrap();
        let mut c = Configuration::new();
        c.insert("k", "poly");
        c.insert("gamma", 0.5);
        c.insert("degree", 4i64);
        c.insert("coef", 0.3);
        s.validate(&c).unwrap();
        c.insert("degree", 3i64);
        assert!(matches!(s.validate(&c), Err(SpaceError::Inactive(n)) if n == "coef"));
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..200 {
            s.validate(&s.sample(&mut rng).unwrap()).unwrap();
        }
    }
}
