//! The built-in `configuration` space kind: dsnn-search's
//! `ConfigurationSpace`, from a file (TOML, or ConfigSpace JSON) or written
//! inline in `[space]`.

use std::path::Path;
use std::sync::Arc;

use dsnn_search::ConfigurationSpace;
use serde::Deserialize;

use crate::registry::{Registry, SpaceBuild, SpaceFactory};
use crate::settings::{ConfigError, Section};

/// Registers `configuration`.
pub fn register(r: &mut Registry) {
    r.register_space(
        crate::experiment::space::DEFAULT_KIND,
        Arc::new(ConfigurationSpaceFactory),
    );
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpaceToml {
    /// A space file (`.toml`, or `.json` in ConfigSpace's format), relative
    /// to the experiment file.
    #[serde(default)]
    file: Option<std::path::PathBuf>,
    /// Inline hyperparameters.
    #[serde(default)]
    hyperparameters: Option<Vec<toml::Value>>,
    /// Inline conditions.
    #[serde(default)]
    conditions: Option<Vec<toml::Value>>,
    /// Inline forbidden clauses.
    #[serde(default)]
    forbidden: Option<Vec<toml::Value>>,
}

/// `ConfigurationSpace` from `[space] file` or inline tables.
pub struct ConfigurationSpaceFactory;

impl SpaceFactory for ConfigurationSpaceFactory {
    fn description(&self) -> String {
        "hyperparameters, conditions and forbidden clauses: a file (`file`, TOML or ConfigSpace JSON) or inline".into()
    }

    fn build(&self, settings: &Section, base_dir: &Path) -> Result<SpaceBuild, ConfigError> {
        let t: SpaceToml = settings.parse()?;
        let inline = t.hyperparameters.is_some() || t.conditions.is_some() || t.forbidden.is_some();
        let space = match (&t.file, inline) {
            (Some(_), true) => {
                return Err(settings.error(
                    "file",
                    "give the space either as `space.file` or inline, not both",
                ))
            }
            (None, false) => {
                return Err(settings.error(
                    "",
                    "`[space]` is empty: set `file = \"space.toml\"` or add `[[space.hyperparameters]]`",
                ))
            }
            (Some(file), false) => {
                let path = base_dir.join(file);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    settings.error(
                        "file",
                        format!("cannot read the space file {}: {e}", path.display()),
                    )
                })?;
                let parsed = if path.extension().is_some_and(|e| e == "json") {
                    ConfigurationSpace::from_configspace_json(&text)
                } else {
                    ConfigurationSpace::from_toml_str(&text)
                };
                parsed.map_err(|e| settings.error("file", format!("in {}: {e}", path.display())))?
            }
            (None, true) => inline_space(settings, &t)?,
        };
        // Stored inline, so the resolved experiment is self-contained.
        let text = space
            .to_toml_string()
            .map_err(|e| settings.error("", e.to_string()))?;
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| settings.error("", e.to_string()))?;
        table.retain(|_, v| !matches!(v, toml::Value::Array(a) if a.is_empty()));
        Ok(SpaceBuild {
            space: Arc::new(space),
            resolved: toml::Value::Table(table),
        })
    }
}

/// The space of inline tables. An error is located at the first entry
/// whose addition makes the space invalid: hyperparameters one by one,
/// then conditions, then forbidden clauses.
fn inline_space(settings: &Section, t: &SpaceToml) -> Result<ConfigurationSpace, ConfigError> {
    let parse = |hps: &[toml::Value], conds: &[toml::Value], forb: &[toml::Value]| {
        let mut table = toml::Table::new();
        for (k, v) in [
            ("hyperparameters", hps),
            ("conditions", conds),
            ("forbidden", forb),
        ] {
            if !v.is_empty() {
                table.insert(k.into(), toml::Value::Array(v.to_vec()));
            }
        }
        let text = toml::to_string(&table).map_err(|e| e.to_string())?;
        ConfigurationSpace::from_toml_str(&text).map_err(|e| e.to_string())
    };
    let hps = t.hyperparameters.clone().unwrap_or_default();
    let conds = t.conditions.clone().unwrap_or_default();
    let forb = t.forbidden.clone().unwrap_or_default();
    if let Ok(space) = parse(&hps, &conds, &forb) {
        return Ok(space);
    }
    let locate = |key: &str, e: String| settings.error(key, format!("in `[space]`: {e}"));
    for i in 0..hps.len() {
        if let Err(e) = parse(&hps[..=i], &[], &[]) {
            return Err(locate(&format!("hyperparameters.{i}"), e));
        }
    }
    for i in 0..conds.len() {
        if let Err(e) = parse(&hps, &conds[..=i], &[]) {
            return Err(locate(&format!("conditions.{i}"), e));
        }
    }
    for i in 0..forb.len() {
        if let Err(e) = parse(&hps, &conds, &forb[..=i]) {
            return Err(locate(&format!("forbidden.{i}"), e));
        }
    }
    parse(&hps, &conds, &forb).map_err(|e| locate("", e))
}
