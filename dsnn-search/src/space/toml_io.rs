//! TOML (and generic serde) form of [`ConfigurationSpace`].
//!
//! ```toml
//! name = "example"
//! [[hyperparameters]]
//! name = "lr"
//! type = "float"
//! lower = 0.001
//! upper = 0.2
//! log = true
//! default = 0.1
//!
//! [[conditions]]
//! type = "in"
//! child = "momentum"
//! parent = "optimizer"
//! values = ["SGD", "RMSprop"]
//!
//! [[forbidden]]
//! type = "and"
//! clauses = [ { type = "equals", name = "a", value = 1 }, { type = "equals", name = "b", value = 2 } ]
//! ```

use serde::{Deserialize, Serialize};

use super::{Condition, ConfigurationSpace, Forbidden, Hyperparameter, SpaceError};

/// The serialised shape of a space; converted to and from [`ConfigurationSpace`]
/// with full validation, so a space read from a file is always consistent.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpaceFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    hyperparameters: Vec<Hyperparameter>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    forbidden: Vec<Forbidden>,
}

impl TryFrom<SpaceFile> for ConfigurationSpace {
    type Error = SpaceError;
    fn try_from(f: SpaceFile) -> Result<Self, SpaceError> {
        let s = ConfigurationSpace::new(f.hyperparameters, f.conditions, f.forbidden)?;
        Ok(match f.name {
            Some(n) => s.with_name(n),
            None => s,
        })
    }
}

impl From<&ConfigurationSpace> for SpaceFile {
    fn from(s: &ConfigurationSpace) -> Self {
        SpaceFile {
            name: s.name.clone(),
            hyperparameters: s.hyperparameters.clone(),
            conditions: s.conditions.clone(),
            forbidden: s.forbidden.clone(),
        }
    }
}

impl Serialize for ConfigurationSpace {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SpaceFile::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ConfigurationSpace {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let f = SpaceFile::deserialize(deserializer)?;
        ConfigurationSpace::try_from(f).map_err(serde::de::Error::custom)
    }
}

impl ConfigurationSpace {
    /// Parse a space from TOML text (see the module docs for the layout).
    pub fn from_toml_str(text: &str) -> Result<Self, SpaceError> {
        toml::from_str(text).map_err(|e| SpaceError::Toml(e.to_string()))
    }

    /// Write the space as TOML text (defaults made explicit).
    pub fn to_toml_string(&self) -> Result<String, SpaceError> {
        toml::to_string_pretty(self).map_err(|e| SpaceError::Toml(e.to_string()))
    }

    /// Read a space from a TOML file.
    pub fn from_toml_file(path: impl AsRef<std::path::Path>) -> Result<Self, SpaceError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| SpaceError::Toml(format!("{}: {e}", path.display())))?;
        Self::from_toml_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{SearchSpace, Value};
    use super::*;

    const TEXT: &str = r#"
name = "t"
[[hyperparameters]]
name = "opt"
type = "categorical"
choices = ["sgd", "adam"]

[[hyperparameters]]
name = "momentum"
type = "float"
lower = 0
upper = 0.9
default = 0.9

[[hyperparameters]]
name = "bits"
type = "int"
lower = 2
upper = 5

[[hyperparameters]]
name = "depth"
type = "ordinal"
sequence = [1, 2, 4]
default = 4

[[conditions]]
type = "equals"
child = "momentum"
parent = "opt"
value = "sgd"

[[forbidden]]
type = "and"
clauses = [ { type = "equals", name = "opt", value = "adam" }, { type = "in", name = "bits", values = [2, 3] } ]
"#;

    #[test]
    fn toml_round_trip() {
        let s = ConfigurationSpace::from_toml_str(TEXT).unwrap();
        assert_eq!(s.name(), Some("t"));
        assert_eq!(s.dim(), 4);
        let d = s.default_configuration();
        assert_eq!(d.get_str("opt"), Some("sgd"));
        assert_eq!(d.get_i64("bits"), Some(4)); // midpoint 3.5 rounds to 4
        assert_eq!(d.get("depth"), Some(&Value::Int(4)));
        let written = s.to_toml_string().unwrap();
        let again = ConfigurationSpace::from_toml_str(&written).unwrap();
        assert_eq!(s, again);
    }

    #[test]
    fn toml_errors_are_reported() {
        let e = ConfigurationSpace::from_toml_str(&TEXT.replace("upper = 5", "upper = 1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bits") && e.contains("lower <= upper"), "{e}");
        let e = ConfigurationSpace::from_toml_str(
            &TEXT.replace("type = \"int\"", "type = \"integer\""),
        )
        .unwrap_err();
        assert!(matches!(e, SpaceError::Toml(_)));
    }
}
