//! Opening one plugin library and checking it, with one-line reasons for
//! every way it can fail.
//!
//! Each file is opened on its own with [`RawLibrary::load_at`] (not with
//! `RootModule::load_from_file`, whose per-type cache would hand back the
//! first library for every later file of the same kind). The checks, in
//! order: the library opens; it exports an `abi_stable` root module; it was
//! built with a compatible `abi_stable`; the root module is a dsnn optimizer
//! or meter module; its interface has this host's major version; the layout
//! of every type in the module matches (an optimizer library of interface
//! 1.0 against the frozen 1.0 layout, [`dsnn_plugin_api::v1_0`], since
//! `abi_stable` refuses a root module with fewer fields than the host's). Results are cached per path for the
//! life of the process, and libraries are never unloaded.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use dsnn_plugin_api::abi_stable::library::{
    abi_header_from_raw_library, LibHeader, LibraryError, RawLibrary,
};
use dsnn_plugin_api::abi_stable::sabi_types::VersionNumber;
use dsnn_plugin_api::{
    v1_0, MeterPluginRef, OptimizerPluginRef, INTERFACE_MAJOR, INTERFACE_VERSION,
    METER_MODULE_NAME, OPTIMIZER_MODULE_NAME,
};

/// What a plugin provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginKind {
    /// An ask/tell optimizer (`dsnn_search::Optimizer`).
    Optimizer,
    /// An energy meter (`dsnn_energy::EnergyMeter`).
    Meter,
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginKind::Optimizer => "optimizer",
            PluginKind::Meter => "meter",
        })
    }
}

/// A loadable plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The name experiment files use.
    pub name: String,
    /// Optimizer or meter.
    pub kind: PluginKind,
    /// The interface version the plugin was built against.
    pub interface_version: String,
    /// The plugin's one-line description.
    pub description: String,
    /// The library file.
    pub path: PathBuf,
    /// Whether the optimizer plugin provides a proposer (interface 1.1 and
    /// later), so that it runs under Hyperband or successive halving.
    pub proposer: bool,
}

/// The checked root module of a loaded library.
#[derive(Clone, Copy)]
pub(crate) enum Module {
    /// An optimizer plugin of interface 1.1 or a later minor version.
    Optimizer(OptimizerPluginRef),
    /// An optimizer plugin of interface 1.0, checked against the frozen
    /// 1.0 layout.
    OptimizerV1_0(v1_0::OptimizerPluginRef),
    Meter(MeterPluginRef),
}

type Loaded = Result<(PluginInfo, Module), String>;

fn cache() -> &'static Mutex<HashMap<PathBuf, Loaded>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Loaded>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Load the library at `path` (once per process) and describe the plugin in
/// it, or say in one line why it is not a usable plugin.
pub fn inspect(path: &Path) -> Result<PluginInfo, String> {
    open(path).map(|(info, _)| info)
}

/// Load (or fetch from the cache) the library at `path`.
pub(crate) fn open(path: &Path) -> Loaded {
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mut cache = cache().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(hit) = cache.get(&key) {
        return hit.clone();
    }
    let loaded = open_uncached(path).map_err(|reason| one_line(&reason));
    cache.insert(key, loaded.clone());
    loaded
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn open_uncached(path: &Path) -> Loaded {
    let raw = RawLibrary::load_at(path).map_err(|e| match e {
        LibraryError::OpenError { err, .. } => {
            format!("not a loadable dynamic library ({err})")
        }
        other => format!("cannot be opened: {other}"),
    })?;
    // The library stays loaded for the life of the process: the root module
    // and every object created from it point into its code.
    let raw: &'static RawLibrary = Box::leak(Box::new(raw));

    // SAFETY: `raw` is never unloaded, so the header's 'static references
    // stay valid.
    let header_ref = unsafe { abi_header_from_raw_library(raw) }.map_err(|e| match e {
        LibraryError::GetSymbolError { .. } => {
            "not a dsnn plugin (it exports no abi_stable root module; \
             was it built with #[export_root_module]?)"
                .to_string()
        }
        other => format!("not a dsnn plugin: {other}"),
    })?;
    let header: &'static LibHeader = header_ref.upgrade().map_err(|e| match e {
        LibraryError::InvalidAbiHeader(h) => format!(
            "built with an incompatible abi_stable (its ABI {}.{}, this host's {}.{}); \
             rebuild it with abi_stable 0.11",
            h.abi_major,
            h.abi_minor,
            dsnn_plugin_api::abi_stable::library::AbiHeader::VALUE.abi_major,
            dsnn_plugin_api::abi_stable::library::AbiHeader::VALUE.abi_minor,
        ),
        LibraryError::InvalidCAbi { .. } => {
            "its C ABI differs from this host's (built by an incompatible compiler or target)"
                .to_string()
        }
        other => format!("invalid abi_stable header: {other}"),
    })?;

    let consts = header.root_mod_consts();
    let module_name = consts.name().as_str();
    let kind = match module_name {
        OPTIMIZER_MODULE_NAME => PluginKind::Optimizer,
        METER_MODULE_NAME => PluginKind::Meter,
        other => {
            return Err(format!(
                "not a dsnn plugin (an abi_stable library whose root module is `{other}`, \
                 expected `{OPTIMIZER_MODULE_NAME}` or `{METER_MODULE_NAME}`)"
            ))
        }
    };
    let version_strings = consts.version_strings();
    let version_text = version_strings.version.as_str().to_string();
    let version = VersionNumber::new(version_strings)
        .map_err(|_| format!("unreadable interface version `{version_text}`"))?;
    if version.major != INTERFACE_MAJOR {
        return Err(format!(
            "{kind} plugin built against dsnn plugin interface {version_text}, \
             this dsnn speaks interface {INTERFACE_VERSION}: rebuild it against \
             dsnn-plugin-api {INTERFACE_MAJOR}.x"
        ));
    }

    let layout_error = |e: LibraryError| -> String {
        match e {
            LibraryError::AbiInstability(report) => {
                log::debug!("layout report for {}: {report}", path.display());
                format!(
                    "{kind} plugin for interface {version_text} whose types differ from this \
                     host's (built against a modified dsnn-plugin-api?); \
                     RUST_LOG=dsnn_plugin_host=debug prints the full layout report"
                )
            }
            LibraryError::RootModule { err, .. } => {
                format!("its root-module loader failed: {err}")
            }
            other => format!("{other}"),
        }
    };

    let (module, name, description, proposer) = match kind {
        // `abi_stable` refuses a root module with fewer fields than the
        // host's, so a 1.0 library is checked against the frozen 1.0 layout.
        PluginKind::Optimizer if version.minor == 0 => {
            header
                .ensure_layout::<v1_0::OptimizerPluginRef>()
                .map_err(layout_error)?;
            // SAFETY: the layout was checked just above.
            let m = unsafe { header.unchecked_layout::<v1_0::OptimizerPluginRef>() }
                .map_err(|e| e.into_library_error::<v1_0::OptimizerPluginRef>())
                .map_err(layout_error)?;
            (Module::OptimizerV1_0(m), m.name(), m.description(), false)
        }
        PluginKind::Optimizer => {
            header
                .ensure_layout::<OptimizerPluginRef>()
                .map_err(layout_error)?;
            // SAFETY: the layout was checked just above.
            let m = unsafe { header.unchecked_layout::<OptimizerPluginRef>() }
                .map_err(|e| e.into_library_error::<OptimizerPluginRef>())
                .map_err(layout_error)?;
            let proposer = m.create_proposer().flatten().is_some();
            (Module::Optimizer(m), m.name(), m.description(), proposer)
        }
        PluginKind::Meter => {
            header
                .ensure_layout::<MeterPluginRef>()
                .map_err(layout_error)?;
            // SAFETY: the layout was checked just above.
            let m = unsafe { header.unchecked_layout::<MeterPluginRef>() }
                .map_err(|e| e.into_library_error::<MeterPluginRef>())
                .map_err(layout_error)?;
            (Module::Meter(m), m.name(), m.description(), false)
        }
    };
    let info = PluginInfo {
        name: name.as_str().to_string(),
        kind,
        interface_version: version_text,
        description: description.as_str().to_string(),
        path: path.to_path_buf(),
        proposer,
    };
    log::debug!(
        "{} plugin `{}` (interface {}) at {}",
        info.kind,
        info.name,
        info.interface_version,
        path.display()
    );
    Ok((info, module))
}
