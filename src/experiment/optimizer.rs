//! `[optimizer]`: a registered optimizer or proposer (`kind`), or a plugin
//! (`plugin`), and its settings.

use std::sync::Arc;

use dsnn_search::Optimizer;

use crate::registry::{Kind, OptimizerFactory, OptimizerSetup, Registry};
use crate::settings::{backticked, ConfigError, Section};

/// The run's optimizer, checked.
#[derive(Clone)]
pub struct OptimizerChoice {
    /// The optimizer's name (a registered kind or a plugin's name).
    pub name: String,
    /// Whether it is a plugin.
    pub is_plugin: bool,
    /// Its settings (`[optimizer]` without `kind` / `plugin`).
    pub settings: Section,
    /// Its factory.
    pub factory: Arc<dyn OptimizerFactory>,
}

impl OptimizerChoice {
    /// Reads `[optimizer]` (default: `random`) and checks that it suits a
    /// schedule that is `multi_fidelity` or not.
    pub fn read(
        section: &Section,
        registry: &Registry,
        multi_fidelity: bool,
    ) -> Result<Self, ConfigError> {
        let table = section.table();
        let plugin = table.get("plugin");
        let kind = table.get("kind");
        let (name, is_plugin, factory, settings) = match (plugin, kind) {
            (Some(_), Some(_)) => {
                return Err(section.error(
                    "plugin",
                    "`optimizer` takes either `kind` or `plugin`, not both",
                ))
            }
            (Some(p), None) => {
                let p = p
                    .as_str()
                    .ok_or_else(|| section.error("plugin", "`optimizer.plugin` must be a name"))?;
                if p.is_empty() {
                    return Err(section.error(
                        "plugin",
                        "`optimizer.plugin` is empty (name a plugin that `dsnn plugins` lists)",
                    ));
                }
                let f = registry.plugin_optimizer(p).map_err(|_| {
                    section.error(
                        "plugin",
                        registry.explain_missing_plugin(Kind::Optimizer, p),
                    )
                })?;
                (p.to_string(), true, f, section.without(&["plugin"]))
            }
            (None, Some(k)) => {
                let k = k
                    .as_str()
                    .ok_or_else(|| section.error("kind", "`optimizer.kind` must be a name"))?;
                let f = registry
                    .optimizer(k)
                    .map_err(|e| section.error("kind", format!("`optimizer.kind`: {e}")))?;
                (k.to_string(), false, f, section.without(&["kind"]))
            }
            (None, None) if table.is_empty() => {
                let f = registry
                    .optimizer("random")
                    .map_err(|e| section.error("", e.to_string()))?;
                ("random".to_string(), false, f, section.clone())
            }
            (None, None) => {
                return Err(section.error(
                    "",
                    format!(
                        "`optimizer` needs `kind` (allowed: {}) or `plugin = \"NAME\"`",
                        backticked(registry.names(Kind::Optimizer))
                    ),
                ))
            }
        };
        if multi_fidelity && !factory.multi_fidelity() {
            let message = if is_plugin {
                format!("optimizer plugin `{name}` provides no proposer, so it runs at one budget (interface 1.0 plugins never do; a 1.1 plugin that provides one runs under Hyperband): use `fidelity.kind = \"fixed\"`")
            } else {
                format!(
                    "optimizer `{name}` runs at one budget: use `fidelity.kind = \"fixed\"`, or a proposer such as `random` or `parego` with Hyperband"
                )
            };
            return Err(section.error(if is_plugin { "plugin" } else { "kind" }, message));
        }
        Ok(OptimizerChoice {
            name,
            is_plugin,
            settings,
            factory,
        })
    }

    /// A fresh optimizer for `setup`.
    pub fn build(&self, setup: &OptimizerSetup) -> Result<Box<dyn Optimizer>, ConfigError> {
        self.factory.build(&self.settings, setup)
    }
}
