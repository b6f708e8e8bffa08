//! Reading a plugin's settings from the TOML text the host passes through.
//!
//! In an experiment file, `optimizer = { plugin = "moead", neighbours = 10 }`
//! hands the plugin the table without its `plugin` key, as TOML text.
//! [`Settings`] reads typed values with defaults and rejects unknown keys,
//! so that a typo is an error that names the key and lists the allowed ones.

use std::collections::BTreeSet;

use crate::types::PError;

/// The settings table of one plugin instance.
#[derive(Debug, Clone)]
pub struct Settings {
    plugin: String,
    table: toml::Table,
    read: BTreeSet<String>,
}

impl Settings {
    /// Parse `text` (a TOML table; empty text is an empty table) for the
    /// plugin called `plugin` (used in error messages).
    pub fn parse(plugin: &str, text: &str) -> Result<Self, PError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            PError::invalid(format!(
                "settings of plugin `{plugin}` are not a TOML table: {}",
                e.message()
            ))
        })?;
        Ok(Settings {
            plugin: plugin.to_string(),
            table,
            read: BTreeSet::new(),
        })
    }

    fn take(&mut self, key: &str) -> Option<&toml::Value> {
        self.read.insert(key.to_string());
        self.table.get(key)
    }

    fn wrong(&self, key: &str, value: &toml::Value, expected: &str) -> PError {
        PError::invalid(format!(
            "plugin `{}` setting `{key}` = {value}: expected {expected}",
            self.plugin
        ))
    }

    /// A real number (an integer is accepted), or `default` when absent.
    pub fn f64(&mut self, key: &str, default: f64) -> Result<f64, PError> {
        match self.take(key).cloned() {
            None => Ok(default),
            Some(toml::Value::Float(x)) if x.is_finite() => Ok(x),
            Some(toml::Value::Integer(i)) => Ok(i as f64),
            Some(v) => Err(self.wrong(key, &v, "a finite number")),
        }
    }

    /// A non-negative integer, or `default` when absent.
    pub fn usize(&mut self, key: &str, default: usize) -> Result<usize, PError> {
        match self.take(key).cloned() {
            None => Ok(default),
            Some(toml::Value::Integer(i)) if i >= 0 => Ok(i as usize),
            Some(v) => Err(self.wrong(key, &v, "a non-negative integer")),
        }
    }

    /// A boolean, or `default` when absent.
    pub fn bool(&mut self, key: &str, default: bool) -> Result<bool, PError> {
        match self.take(key).cloned() {
            None => Ok(default),
            Some(toml::Value::Boolean(b)) => Ok(b),
            Some(v) => Err(self.wrong(key, &v, "true or false")),
        }
    }

    /// A string that must be one of `allowed`, or `default` when absent.
    pub fn choice(&mut self, key: &str, allowed: &[&str], default: &str) -> Result<String, PError> {
        match self.take(key).cloned() {
            None => Ok(default.to_string()),
            Some(toml::Value::String(s)) if allowed.contains(&s.as_str()) => Ok(s),
            Some(v) => Err(self.wrong(key, &v, &format!("one of {allowed:?}"))),
        }
    }

    /// Fails if the table has a key that no getter asked for (a typo or a
    /// setting this plugin does not have), listing the known keys.
    pub fn finish(self) -> Result<(), PError> {
        let unknown: Vec<&String> = self
            .table
            .keys()
            .filter(|k| !self.read.contains(*k))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(PError::invalid(format!(
            "plugin `{}` has no setting {} (its settings: {})",
            self.plugin,
            unknown
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", "),
            self.read
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values_defaults_and_unknown_keys() {
        let mut s = Settings::parse("moead", "neighbours = 10\ndelta = 1\nmode = 'pbi'").unwrap();
        assert_eq!(s.usize("neighbours", 20).unwrap(), 10);
        assert_eq!(s.f64("delta", 0.9).unwrap(), 1.0);
        assert_eq!(s.usize("population", 100).unwrap(), 100);
        let e = s
            .choice("mode", &["tchebycheff"], "tchebycheff")
            .unwrap_err();
        assert!(e.to_string().contains("`mode` = \"pbi\""), "{e}");

        let mut s = Settings::parse("moead", "neighbors = 10").unwrap();
        s.usize("neighbours", 20).unwrap();
        let e = s.finish().unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid setting: plugin `moead` has no setting `neighbors` (its settings: `neighbours`)"
        );
        assert!(Settings::parse("x", "= 3").is_err());
        assert!(Settings::parse("x", "").unwrap().finish().is_ok());
    }
}
