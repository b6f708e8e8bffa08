//! Errors of finding and creating plugins.

use std::path::PathBuf;

use dsnn_search::SpaceError;

use crate::load::PluginKind;

/// Why a plugin could not be found, loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No loadable plugin of that name and kind in the plugin directories.
    #[error(
        "no {kind} plugin named `{name}` in {dirs} (found: {}){}",
        if available.is_empty() { "none".to_string() } else { available.join(", ") },
        if unusable.is_empty() { String::new() } else { format!("; unusable: {}", unusable.join("; ")) }
    )]
    NotFound {
        /// The requested name.
        name: String,
        /// The requested kind.
        kind: PluginKind,
        /// The directories searched.
        dirs: DirList,
        /// The loadable plugins that were found, as `name (kind)`.
        available: Vec<String>,
        /// The libraries that could not be loaded, as `file: reason`.
        unusable: Vec<String>,
    },
    /// A plugin of that name exists but is of the other kind.
    #[error("plugin `{name}` ({}) is of kind {found}, not {expected}", path.display())]
    WrongKind {
        /// The requested name.
        name: String,
        /// The library.
        path: PathBuf,
        /// The kind asked for.
        expected: PluginKind,
        /// The kind it is.
        found: PluginKind,
    },
    /// The plugin's `create` failed (bad settings, a panic, ...).
    #[error("plugin `{name}` ({}) could not be created: {message}", path.display())]
    Create {
        /// The plugin name.
        name: String,
        /// The library.
        path: PathBuf,
        /// The plugin's message.
        message: String,
    },
    /// A multi-fidelity run needs a proposer, and the plugin provides none.
    #[error(
        "optimizer plugin `{name}` ({}, interface {interface_version}) provides no proposer, so it \
         runs only at one fidelity (`fidelity.kind = \"fixed\"`); a plugin of interface 1.1 \
         that sets `create_proposer` runs under Hyperband and successive halving",
        path.display()
    )]
    NoProposer {
        /// The plugin name.
        name: String,
        /// The library.
        path: PathBuf,
        /// The interface version it was built against.
        interface_version: String,
    },
    /// The search space could not be written for the plugin.
    #[error("cannot pass the search space to the plugin: {0}")]
    Space(SpaceError),
}

/// A list of directories, printed separated by commas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirList(pub Vec<PathBuf>);

impl From<Vec<PathBuf>> for DirList {
    fn from(v: Vec<PathBuf>) -> Self {
        DirList(v)
    }
}

impl std::fmt::Display for DirList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no plugin directory");
        }
        let parts: Vec<String> = self.0.iter().map(|p| p.display().to_string()).collect();
        write!(f, "{}", parts.join(", "))
    }
}
