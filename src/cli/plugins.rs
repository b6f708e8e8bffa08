//! `dsnn plugins`: list the plugins in the plugin directories, and say in
//! one line why each unusable library cannot be loaded.

use anyhow::{bail, Context, Result};
use clap::Args;
use dsnn_plugin_host::{PluginHost, PLUGIN_PATH_ENV};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PluginsArgs {
    /// An extra plugin directory (repeatable). Searched after `./plugins`
    /// and before the directories in DSNN_PLUGIN_PATH.
    #[arg(long = "dir", value_name = "DIR")]
    dirs: Vec<PathBuf>,
}

pub fn run(args: PluginsArgs) -> Result<()> {
    for d in &args.dirs {
        if !d.is_dir() {
            bail!("plugin directory `{}` does not exist", d.display());
        }
    }
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let host = PluginHost::standard(&cwd, &args.dirs);
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
        "Plugin directories, in order of precedence (./plugins, --dir, {PLUGIN_PATH_ENV}): {}",
        dirs.join(", ")
    );

    let entries = host.list();
    if entries.is_empty() {
        println!("No plugin libraries found.");
        return Ok(());
    }
    let mut rows = vec![[
        "NAME".to_string(),
        "KIND".to_string(),
        "INTERFACE".to_string(),
        "PATH".to_string(),
        "DESCRIPTION".to_string(),
    ]];
    let mut unusable = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for e in &entries {
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
    Ok(())
}
