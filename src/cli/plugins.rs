//! `dsnn plugins`: list the plugins in the plugin directories (saying in
//! one line why each unusable library cannot be loaded), then every name an
//! experiment file can use: the registry's backbones (with their
//! architecture hyperparameters), data sets, objectives, optimizers,
//! spaces, schedules, meters and executors.

use anyhow::{bail, Context, Result};
use clap::Args;
use dsnn_plugin_host::{PluginHost, PluginKind, PLUGIN_PATH_ENV};
use std::path::{Path, PathBuf};

use crate::outln;
use crate::registry::{Kind, Registry};

/// Arguments of `dsnn plugins`.
#[derive(Args, Debug)]
pub struct PluginsArgs {
    /// An extra plugin directory (repeatable). Searched after `./plugins`
    /// and before the directories in DSNN_PLUGIN_PATH.
    #[arg(long = "dir", value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// List what this experiment file's run would see: `plugins/` next to
    /// the file and its `plugin_dirs` (instead of `./plugins`), then the
    /// `--dir`s and DSNN_PLUGIN_PATH; and say whether the plugins it names
    /// are found.
    #[arg(long, value_name = "FILE")]
    experiment: Option<PathBuf>,
}

/// What `dsnn plugins --experiment` needs from an experiment file: where
/// it is, its `plugin_dirs`, and the plugins it names. Read from the raw
/// file, so a missing plugin is reported rather than failing the check.
struct NamedPlugins {
    base_dir: PathBuf,
    plugin_dirs: Vec<PathBuf>,
    wanted: Vec<(String, PluginKind)>,
}

impl NamedPlugins {
    fn read(file: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let doc: toml::Table =
            toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        let base_dir = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let plugin_dirs = doc
            .get("plugin_dirs")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(|d| base_dir.join(d)))
                    .collect()
            })
            .unwrap_or_default();
        let lookup = |path: &[&str]| -> Option<String> {
            let mut v = doc.get(path[0])?;
            for k in &path[1..] {
                v = v.get(k)?;
            }
            v.as_str().map(str::to_string)
        };
        let wanted = [
            (lookup(&["optimizer", "plugin"]), PluginKind::Optimizer),
            (lookup(&["energy", "meter", "plugin"]), PluginKind::Meter),
        ]
        .into_iter()
        .filter_map(|(name, kind)| name.map(|n| (n, kind)))
        .collect();
        Ok(NamedPlugins {
            base_dir,
            plugin_dirs,
            wanted,
        })
    }
}

/// Run `dsnn plugins`.
pub fn run(args: PluginsArgs, registry: &Registry) -> Result<()> {
    for d in &args.dirs {
        if !d.is_dir() {
            bail!("plugin directory `{}` does not exist", d.display());
        }
    }
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let exp = match &args.experiment {
        Some(f) => Some(NamedPlugins::read(f)?),
        None => None,
    };
    let (host, order) = match &exp {
        Some(e) => {
            let mut dirs = e.plugin_dirs.clone();
            dirs.extend(args.dirs.iter().cloned());
            (
                PluginHost::standard(&e.base_dir, &dirs),
                format!("plugins/ next to the experiment file, its plugin_dirs, --dir, {PLUGIN_PATH_ENV}"),
            )
        }
        None => (
            PluginHost::standard(&cwd, &args.dirs),
            format!("./plugins, --dir, {PLUGIN_PATH_ENV}"),
        ),
    };
    let dirs: Vec<String> = host
        .dirs()
        .iter()
        .map(|d| {
            if d.is_dir() {
                d.display().to_string()
            } else {
                format!("{} (absent)", d.display())
            }
        })
        .collect();
    outln!(
        "Plugin directories, in order of precedence ({order}): {}",
        dirs.join(", ")
    )?;

    let entries = host.list();
    let mut missing = Vec::new();
    if let Some(e) = &exp {
        for (name, kind) in &e.wanted {
            let (name, kind) = (name.as_str(), *kind);
            let found = entries.iter().find_map(|en| {
                en.status
                    .as_ref()
                    .ok()
                    .filter(|i| i.name == name && i.kind == kind)
                    .map(|i| i.path.display().to_string())
            });
            match found {
                Some(path) => outln!("The experiment's {kind} plugin `{name}`: found, {path}")?,
                None => {
                    outln!(
                        "The experiment's {kind} plugin `{name}`: NOT FOUND in these directories"
                    )?;
                    missing.push(format!("{kind} plugin `{name}`"));
                }
            }
        }
    }
    if entries.is_empty() {
        outln!("No plugin libraries found.")?;
    } else {
        print_table(&entries)?;
    }
    print_registry(registry)?;
    if !missing.is_empty() {
        bail!(
            "the experiment names {} that the plugin directories do not hold",
            missing.join(" and ")
        );
    }
    Ok(())
}

/// The usable plugins as a table, then one line per unusable library.
fn print_table(entries: &[dsnn_plugin_host::PluginEntry]) -> std::io::Result<()> {
    let mut rows = vec![[
        "NAME".to_string(),
        "KIND".to_string(),
        "INTERFACE".to_string(),
        "PATH".to_string(),
        "DESCRIPTION".to_string(),
    ]];
    let mut unusable = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for e in entries {
        match &e.status {
            Ok(info) => rows.push([
                info.name.clone(),
                info.kind.to_string(),
                info.interface_version.clone(),
                info.path.display().to_string(),
                if seen.insert((info.name.clone(), info.kind)) {
                    info.description.clone()
                } else {
                    "(shadowed by the plugin of the same name above)".to_string()
                },
            ]),
            Err(reason) => unusable.push(format!("{}: {reason}", e.path.display())),
        }
    }
    if rows.len() > 1 {
        let widths: Vec<usize> = (0..4)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for r in &rows {
            outln!(
                "{:w0$}  {:w1$}  {:w2$}  {:w3$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3]
            )?;
        }
    } else {
        outln!("No usable plugins.")?;
    }
    if !unusable.is_empty() {
        outln!("Unusable libraries:")?;
        for line in unusable {
            outln!("  {line}")?;
        }
    }
    Ok(())
}

/// Every registered name by kind, with where it comes from; each backbone
/// with its architecture hyperparameters.
fn print_registry(registry: &Registry) -> std::io::Result<()> {
    let listings = registry.listings();
    outln!()?;
    outln!("Names experiment files can use:")?;
    for kind in Kind::ALL {
        let of_kind: Vec<_> = listings.iter().filter(|l| l.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        outln!("{kind}s:")?;
        let width = of_kind.iter().map(|l| l.name.len()).max().unwrap_or(0);
        for l in of_kind {
            outln!("  {:width$}  {} ({})", l.name, l.description, l.origin)?;
            if kind == Kind::Backbone {
                if let Ok(b) = registry.backbone(&l.name) {
                    for p in b.hyperparameters() {
                        outln!(
                            "  {:width$}    [model] {} = {} (allowed: {}): {}",
                            "",
                            p.name,
                            p.default,
                            p.allowed,
                            p.description
                        )?;
                    }
                }
            }
        }
    }
    Ok(())
}
