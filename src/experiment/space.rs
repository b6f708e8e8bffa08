//! `[space]`: the search space, through a registered space kind (the
//! built-in `configuration` kind reads a file or inline hyperparameters),
//! checked against the objective.

use std::path::Path;
use std::sync::Arc;

use dsnn_search::SearchSpace;

use crate::objective::Objective;
use crate::registry::Registry;
use crate::settings::{ConfigError, Section, Source};

/// The space kind used when `[space]` names none.
pub const DEFAULT_KIND: &str = "configuration";

/// Reads `[space]` (or takes the objective's own space) and checks it
/// against the objective. Returns the space and what to store as `[space]`
/// in the resolved file (`None`: the objective brings its own).
pub fn read(
    source: &Source,
    document: &toml::Table,
    registry: &Registry,
    objective: &dyn Objective,
    objective_kind: &str,
    base_dir: &Path,
) -> Result<(Arc<dyn SearchSpace>, Option<toml::Value>), ConfigError> {
    let section = Section::new(source, vec!["space".into()], document.get("space").cloned());
    if let Some(own) = objective.own_space() {
        if document.contains_key("space") {
            let what = if objective_kind == "problem" {
                "a `[problem]`".to_string()
            } else {
                format!("objective `{objective_kind}`")
            };
            return Err(section.error(
                "",
                format!("{what} brings its own search space; remove `[space]`"),
            ));
        }
        return Ok((own, None));
    }
    if !document.contains_key("space") {
        return Err(section.error(
            "",
            "the experiment needs a `[space]`: `file = \"space.toml\"` or inline `[[space.hyperparameters]]`",
        ));
    }
    let kind = match section.value().get("kind") {
        Some(k) => k
            .as_str()
            .ok_or_else(|| section.error("kind", "`space.kind` must be a name"))?
            .to_string(),
        None => DEFAULT_KIND.to_string(),
    };
    let factory = registry
        .space(&kind)
        .map_err(|e| section.error("kind", format!("`space.kind`: {e}")))?;
    let settings = section.without(&["kind"]);
    let built = factory.build(&settings, base_dir)?;
    if let Err(issue) = objective.check_space(built.space.as_ref()) {
        let key = issue
            .hyperparameter
            .as_deref()
            .and_then(|name| hyperparameter_key(&section, name))
            .unwrap_or_default();
        return Err(section.error(&key, issue.message));
    }
    let mut resolved = match built.resolved {
        toml::Value::Table(t) => t,
        other => {
            let mut t = toml::Table::new();
            t.insert("value".into(), other);
            t
        }
    };
    if kind != DEFAULT_KIND {
        resolved.insert("kind".into(), toml::Value::String(kind));
    }
    Ok((built.space, Some(toml::Value::Table(resolved))))
}

/// `hyperparameters.I` (relative to `[space]`) of the inline hyperparameter
/// named `name`, or `file` for a space read from a file.
fn hyperparameter_key(section: &Section, name: &str) -> Option<String> {
    let value = section.value();
    if let Some(hps) = value.get("hyperparameters").and_then(|h| h.as_array()) {
        return hps
            .iter()
            .position(|h| h.get("name").and_then(|n| n.as_str()) == Some(name))
            .map(|i| format!("hyperparameters.{i}"));
    }
    value.get("file").map(|_| "file".to_string())
}
