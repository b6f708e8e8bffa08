//! Hyperparameter values and the architecture hyperparameters a backbone
//! declares ([`ArchParam`]): the vocabulary shared by backbones (which
//! declare and read them) and the recipe (which checks and applies them).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A hyperparameter's value as it comes from a configuration, a file or a
/// command line: an integer, a number or a word.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Setting {
    /// A whole number.
    Int(i64),
    /// A real number.
    Float(f64),
    /// A word (a choice).
    Text(String),
}

impl Setting {
    /// The value as an integer, if it is a whole number.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Setting::Int(i) => Some(*i),
            Setting::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            _ => None,
        }
    }

    /// The value as a real number, if it is a number.
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Setting::Int(i) => Some(*i as f64),
            Setting::Float(f) => Some(*f),
            Setting::Text(_) => None,
        }
    }

    /// The value as a word, if it is one.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Setting::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Setting::Int(i) => write!(f, "{i}"),
            Setting::Float(x) => write!(f, "{x}"),
            Setting::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// The architecture hyperparameters of a network (widths, depths, kernel
/// sizes: whatever its backbone declares), by name.
pub type ArchValues = BTreeMap<String, Setting>;

/// What a hyperparameter may be.
#[derive(Debug, Clone, PartialEq)]
pub enum Allowed {
    /// A whole number in `min..=max`.
    Int {
        /// Smallest value.
        min: i64,
        /// Largest value.
        max: i64,
    },
    /// A real number in `min..=max`.
    Float {
        /// Smallest value.
        min: f64,
        /// Largest value.
        max: f64,
    },
    /// One of these words.
    Choice(Vec<String>),
}

impl fmt::Display for Allowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Allowed::Int { min, max } => write!(f, "{min}..={max}"),
            Allowed::Float { min, max } => write!(f, "{min} to {max}"),
            Allowed::Choice(c) => f.write_str(&c.join(", ")),
        }
    }
}

/// An architecture hyperparameter a backbone takes.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchParam {
    /// Its name in experiment files and search spaces.
    pub name: String,
    /// One line on what it changes.
    pub description: String,
    /// Its value when neither `[model]` nor the search space sets it.
    pub default: Setting,
    /// What it may be.
    pub allowed: Allowed,
}

impl ArchParam {
    /// An integer hyperparameter.
    pub fn int(name: &str, description: &str, default: i64, min: i64, max: i64) -> Self {
        ArchParam {
            name: name.into(),
            description: description.into(),
            default: Setting::Int(default),
            allowed: Allowed::Int { min, max },
        }
    }

    /// Checks `value`, returning it in its canonical form (integers as
    /// [`Setting::Int`], numbers as [`Setting::Float`]).
    pub fn check(&self, value: &Setting) -> Result<Setting, RecipeError> {
        let wrong = |expected: &str| RecipeError::WrongType {
            name: self.name.clone(),
            expected: expected.into(),
            got: value.clone(),
        };
        let out_of_range = || RecipeError::OutOfRange {
            name: self.name.clone(),
            value: value.clone(),
            allowed: self.allowed.to_string(),
        };
        match &self.allowed {
            Allowed::Int { min, max } => {
                let v = value.as_int().ok_or_else(|| wrong("an integer"))?;
                if v < *min || v > *max {
                    return Err(out_of_range());
                }
                Ok(Setting::Int(v))
            }
            Allowed::Float { min, max } => {
                let v = value.as_float().ok_or_else(|| wrong("a number"))?;
                if !(v >= *min && v <= *max) {
                    return Err(out_of_range());
                }
                Ok(Setting::Float(v))
            }
            Allowed::Choice(choices) => {
                let v = value.as_text().ok_or_else(|| wrong("a word"))?;
                if !choices.iter().any(|c| c == v) {
                    return Err(out_of_range());
                }
                Ok(Setting::Text(v.to_string()))
            }
        }
    }
}

/// A hyperparameter value that cannot be used; every variant names it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecipeError {
    /// No such hyperparameter.
    #[error("{} has no hyperparameter `{name}` (allowed: {})", backbone.as_ref().map_or("the DSNN objective".to_string(), |b| format!("backbone `{b}`")), allowed.join(", "))]
    Unknown {
        /// The name given.
        name: String,
        /// The names there are.
        allowed: Vec<String>,
        /// The backbone, for an architecture hyperparameter.
        backbone: Option<String>,
    },
    /// The value has the wrong type.
    #[error("hyperparameter `{name}` must be {expected}, got {got}")]
    WrongType {
        /// The hyperparameter.
        name: String,
        /// What it must be.
        expected: String,
        /// What it was.
        got: Setting,
    },
    /// The value is out of range.
    #[error("`{name}` = {value} is out of range (allowed: {allowed})")]
    OutOfRange {
        /// The hyperparameter.
        name: String,
        /// The value given.
        value: Setting,
        /// What is allowed.
        allowed: String,
    },
}

impl RecipeError {
    /// The hyperparameter the error is about.
    pub fn name(&self) -> &str {
        match self {
            RecipeError::Unknown { name, .. }
            | RecipeError::WrongType { name, .. }
            | RecipeError::OutOfRange { name, .. } => name,
        }
    }
}
