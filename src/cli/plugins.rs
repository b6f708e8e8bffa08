//! `dsnn plugins`: list the plugins in the plugin directories, and say in
//! one line why each unusable library cannot be loaded.

use anyhow::{bail, Context, Result};
use clap::Args;
use dsnn::experiment::{CheckedExperiment, MeterChoice, OptimizerSection};
use dsnn_plugin_host::{PluginHost, PluginKind, PLUGIN_PATH_ENV};
use std::path::PathBuf;

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

pub fn run(args: PluginsArgs) -> Result<()> {
    for d in &args.dirs {
        if !d.is_dir() {
            bail!("plugin directory `{}` does not exist", d.display());
        }
    }
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let exp = match &args.experiment {
        Some(f) => Some(CheckedExperiment::from_file(f)?),
        None => None,
    };
    let (host, order) = match &exp {
        Some(e) => {
            let mut dirs = e.experiment.plugin_dirs.clone();
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
    println!(
        "Plugin directories, in order of precedence ({order}): {}",
        dirs.join(", ")
    );

    let entries = host.list();
    let mut missing = Vec::new();
    if let Some(e) = &exp {
        let wanted = [
            match &e.experiment.optimizer {
                OptimizerSection::Plugin(p) => Some((p.plugin.as_str(), PluginKind::Optimizer)),
                OptimizerSection::BuiltIn(_) => None,
            },
            match &e.experiment.energy.meter {
                MeterChoice::Plugin(p) => Some((p.plugin.as_str(), PluginKind::Meter)),
                _ => None,
            },
        ];
        for (name, kind) in wanted.into_iter().flatten() {
            let found = entries.iter().find_map(|en| {
                en.status
                    .as_ref()
                    .ok()
                    .filter(|i| i.name == name && i.kind == kind)
                    .map(|i| i.path.display().to_string())
            });
            match found {
                Some(path) => println!("The experiment's {kind} plugin `{name}`: found, {path}"),
                None => {
                    println!(
                        "The experiment's {kind} plugin `{name}`: NOT FOUND in these directories"
                    );
                    missing.push(format!("{kind} plugin `{name}`"));
                }
            }
        }
    }
    if entries.is_empty() {
        println!("No plugin libraries found.");
    } else {
        print_table(&entries);
    }
    if !missing.is_empty() {
        bail!(
            "the experiment names {} that the plugin directories do not hold",
            missing.join(" and ")
        );
    }
    Ok(())
}

/// The usable plugins as a table, then one line per unusable library.
fn print_table(entries: &[dsnn_plugin_host::PluginEntry]) {
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
            println!(
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
            );
        }
    } else {
        println!("No usable plugins.");
    }
    if !unusable.is_empty() {
        println!("Unusable libraries:");
        for line in unusable {
            println!("  {line}");
        }
    }
}
