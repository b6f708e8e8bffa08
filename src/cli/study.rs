//! `dsnn study FILE.toml [--report] [--jobs N]`: carry out (or resume) every
//! (variant, seed) run of a study, then write its report; `--report` only
//! rebuilds the report from the run directories.

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::registry::Registry;
use crate::study::{run_study, study_report, write_study_report, RunEnd, Study, StudyOptions};
use crate::{errln, outln};

/// Arguments of `dsnn study`.
#[derive(Args, Debug)]
pub struct StudyArgs {
    /// The study file (see docs/study.md).
    pub study: PathBuf,
    /// Only rebuild the report from the run directories; run nothing.
    #[arg(long)]
    pub report: bool,
    /// Runs carried out at the same time (each with its own executor).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
}

/// Run `dsnn study`.
pub fn run(a: StudyArgs, registry: &Registry) -> Result<()> {
    if a.jobs == 0 {
        anyhow::bail!("--jobs must be at least 1");
    }
    let study = Study::from_file(&a.study, registry)?;
    let mut interrupted = false;
    let mut failed = 0;
    if !a.report {
        errln!(
            "study {}: {} variants x {} seeds -> {}",
            study.name,
            study.variants.len(),
            study.seeds.len(),
            study.dir.display()
        );
        let interrupt = crate::cli::run::RUN_INTERRUPT
            .get_or_init(|| Arc::new(AtomicBool::new(false)))
            .clone();
        crate::cli::run::install_interrupt_handler();
        let options = StudyOptions {
            jobs: a.jobs,
            exe: Some(std::env::current_exe().context("locating the running binary")?),
            interrupt,
            lines: Arc::new(|line: &str| {
                crate::cli::output::err(format_args!("{line}\n"));
            }),
        };
        let outcome = run_study(&study, options);
        interrupted = outcome.interrupted;
        for (variant, seed, _, end) in &outcome.runs {
            if let RunEnd::Failed(e) = end {
                failed += 1;
                errln!("{variant}/seed-{seed} failed: {e}");
            }
        }
    }
    let report = study_report(&study);
    let written = write_study_report(&study, &report)
        .with_context(|| format!("writing the report of {}", study.dir.display()))?;
    for p in written {
        outln!("{}", p.display())?;
    }
    if interrupted {
        anyhow::bail!("interrupted; run `study` on the same file again to resume");
    }
    if failed > 0 {
        anyhow::bail!("{failed} runs failed (above); the report covers the others");
    }
    Ok(())
}
