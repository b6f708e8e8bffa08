//! `dsnn run EXP.toml` (carry out or resume a search) and `dsnn check
//! EXP.toml` (validate without running).

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::experiment::CheckedExperiment;
use crate::registry::Registry;
use crate::runner::{run_experiment, Progress, RunOptions, RunStatus, StopReason};
use crate::{errln, outln};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Arguments of `dsnn run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The experiment file (see docs/config.md).
    pub experiment: PathBuf,
}

/// Arguments of `dsnn check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The experiment file to validate.
    pub experiment: PathBuf,
}

/// The run loop's interrupt flag, set straight from the signal handler (so
/// the loop sees it before any report of a trial the signal cut short).
pub(crate) static RUN_INTERRUPT: OnceLock<Arc<AtomicBool>> = OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic load and store: async-signal-safe.
    if let Some(flag) = RUN_INTERRUPT.get() {
        flag.store(true, Ordering::SeqCst);
    }
}

/// Stop cleanly on the first Ctrl-C or SIGTERM: the run cancels its trials
/// and keeps its trial log; a second signal kills the process as usual.
pub(crate) fn install_interrupt_handler() {
    #[cfg(unix)]
    // SAFETY: the handler only loads and stores atomics, which is async-signal-safe;
    // SA_RESETHAND restores the default at once, so a second signal kills.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESETHAND;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
    }
}

/// Progress as plain lines on stderr (not a terminal: logs, CI, pipes): one
/// per finished trial, with the run's status after it.
struct LineProgress;

impl Progress for LineProgress {
    fn line(&mut self, line: &str, status: &RunStatus) {
        errln!("{line}; {}", status.describe());
    }

    fn status(&mut self, _: &RunStatus) {}
}

/// The progress bar on screen, if any, for [`BarAwareLogger`].
static ACTIVE_BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// The binary's logger: `env_logger`, printing above the progress bar (which
/// it hides while it writes) instead of through it.
pub struct BarAwareLogger(pub env_logger::Logger);

impl log::Log for BarAwareLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if !self.0.matches(record) {
            return;
        }
        let bar = ACTIVE_BAR.lock().ok().and_then(|b| b.clone());
        match bar {
            Some(bar) => bar.suspend(|| self.0.log(record)),
            None => self.0.log(record),
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Progress on a terminal: finished trials scroll above a bar that shows
/// trials done (out of the limit, if any), running and failed trials, the
/// hypervolume, and the elapsed and remaining time.
struct BarProgress {
    bar: ProgressBar,
}

impl BarProgress {
    fn new(limit: Option<u64>) -> BarProgress {
        let bar = match limit {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template("[{bar:30.cyan/blue}] {pos}/{len} trials, {msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {pos} trials, {msg}")
                    .expect("a valid template"),
            ),
        };
        bar.enable_steady_tick(std::time::Duration::from_millis(250));
        if let Ok(mut active) = ACTIVE_BAR.lock() {
            *active = Some(bar.clone());
        }
        BarProgress { bar }
    }

    fn update(&self, status: &RunStatus) {
        self.bar.set_position(status.finished);
        self.bar.set_message(status.describe());
    }
}

impl Progress for BarProgress {
    fn line(&mut self, line: &str, status: &RunStatus) {
        self.bar.println(line);
        self.update(status);
    }

    fn status(&mut self, status: &RunStatus) {
        self.update(status);
    }
}

impl Drop for BarProgress {
    fn drop(&mut self) {
        if let Ok(mut active) = ACTIVE_BAR.lock() {
            *active = None;
        }
        self.bar.finish_and_clear();
    }
}

/// Run `dsnn check`: validate the file (plugins it names are loaded and
/// check their settings) and say what the run would do.
pub fn check(a: CheckArgs, registry: &Registry) -> Result<()> {
    let exp = CheckedExperiment::from_file(&a.experiment, registry)?;
    outln!("{}: valid", a.experiment.display())?;
    for (k, v) in exp.describe() {
        outln!("  {k}: {v}")?;
    }
    outln!("  run directory: {}", exp.run_dir().display())?;
    Ok(())
}

/// Run `dsnn run`.
pub fn run(a: RunArgs, registry: &Registry) -> Result<()> {
    let exp = CheckedExperiment::from_file(&a.experiment, registry)?;
    let info = exp.describe();
    errln!(
        "{} run: {} ({}; objectives {}; {} hyperparameters; {}) -> {}",
        std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "dsnn".into()),
        exp.name,
        info["target"],
        info["objectives"],
        info["hyperparameters"],
        info["optimizer"],
        exp.run_dir().display()
    );
    let interrupt = RUN_INTERRUPT
        .get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone();
    install_interrupt_handler();
    let progress: Box<dyn Progress> = if std::io::stderr().is_terminal() {
        Box::new(BarProgress::new(exp.stop.trials))
    } else {
        Box::new(LineProgress)
    };
    let options = RunOptions::default()
        .exe(std::env::current_exe().context("locating the running binary")?)
        .interrupt(interrupt)
        .progress(progress);
    let outcome = run_experiment(exp, options)?;
    let s = &outcome.summary;
    errln!(
        "stopped: {}. {} trials ({} failed); Pareto front of {} at budget {}",
        outcome.reason,
        s.trials,
        s.failed,
        s.front.len(),
        s.budget.map_or("-".into(), |b| b.to_string())
    );
    crate::cli::output::out(format_args!("{}", crate::report::summary_markdown(s)))?;
    let mut files: Vec<String> = outcome
        .reports
        .iter()
        .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
        .collect();
    files.push(crate::store::RunStore::LOG.into());
    if outcome.run_dir.join("emissions.csv").is_file() {
        files.push("emissions.csv".into());
    }
    errln!(
        "results in {} ({})",
        outcome.run_dir.display(),
        files.join(", ")
    );
    if outcome.reason == StopReason::Interrupted {
        anyhow::bail!("interrupted; run `run` on the same file again to resume");
    }
    Ok(())
}
