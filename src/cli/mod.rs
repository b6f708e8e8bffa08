//! The command line as a library function (feature `cli`): [`main`] runs
//! `run`, `check`, `trial`, `study`, `pareto`, `report`, `plugins`, `train`,
//! `export` and `infer` with the names of the registry it is given.
//!
//! dsnn's own binary is `dsnn::cli::main(dsnn::builtins::registry())`. A
//! research crate registers its backbones, objectives, data sets or
//! schedules and calls the same function: its binary has the whole CLI with
//! its names included, and the processes and SLURM executors start that
//! binary for trials, so its objectives run there unchanged.
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     let mut registry = dsnn::builtins::registry();
//!     registry.register_backbone(std::sync::Arc::new(dsnn_core::backbone::LeNet5));
//!     dsnn::cli::main(registry)
//! }
//! ```

pub mod export;
pub mod infer;
pub mod output;
pub mod pareto; // and `dsnn report`
pub mod plugins;
pub mod run;
pub mod study;
pub mod train;
pub mod trial;

use clap::{Parser, Subcommand};

use crate::registry::Registry;

/// Find Deep Shift Neural Networks that are accurate and frugal with energy.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train one DSNN configuration and report its test accuracy.
    Train(train::TrainArgs),
    /// Carry out the search an experiment file describes (or resume it).
    Run(run::RunArgs),
    /// Validate an experiment file without running it.
    Check(run::CheckArgs),
    /// Evaluate one trial (used by the process and cluster executors).
    Trial(trial::TrialArgs),
    /// Carry out (or resume) a study: variants x seeds of runs, and its
    /// report (`--report`: only the report).
    Study(study::StudyArgs),
    /// Show the Pareto front and summary of a run directory.
    Pareto(pareto::ParetoArgs),
    /// Write a run directory's summary, front and SVG plots (the front with
    /// the default marked, hypervolume over trials and over wall time).
    Report(pareto::ReportArgs),
    /// List what experiment files can name: backbones, data sets,
    /// objectives, optimizers, schedules, meters, executors, and the
    /// plugins in the plugin directories.
    Plugins(plugins::PluginsArgs),
    /// Export trained weights to an integer shift-add model.
    Export(export::ExportArgs),
    /// Run an integer model on a data set: accuracy, latency, throughput.
    Infer(infer::InferArgs),
}

/// Runs the command line with the names of `registry`; returns the exit
/// code (0 on success; 1 with `error: ...` on stderr otherwise). Output to
/// a closed pipe ends the command quietly; a full disk is an error.
pub fn main(registry: Registry) -> std::process::ExitCode {
    dsnn_core::runtime::tune_process();
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).build();
    let level = logger.filter();
    if log::set_boxed_logger(Box::new(run::BarAwareLogger(logger))).is_ok() {
        log::set_max_level(level);
    }
    let program = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "dsnn".into());
    let cli = match <Cli as clap::Parser>::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return std::process::ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Train(a) => train::run(a, &registry),
        Command::Run(a) => run::run(a, &registry),
        Command::Check(a) => run::check(a, &registry),
        Command::Trial(a) => trial::run(a, &registry),
        Command::Study(a) => study::run(a, &registry),
        Command::Pareto(a) => pareto::run(a),
        Command::Report(a) => pareto::report(a),
        Command::Plugins(a) => plugins::run(a, &registry),
        Command::Export(a) => export::run(a, &registry),
        Command::Infer(a) => infer::run(a, &registry),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if output::is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<trial::InfrastructureError>().is_some() => {
            output::err(format_args!("error: {e:#}\n"));
            std::process::ExitCode::from(crate::executor::EXIT_INFRASTRUCTURE as u8)
        }
        Err(e) => {
            // The whole cause chain on one line, without a backtrace.
            output::err(format_args!("error: {e:#}\n"));
            log::debug!("{program} failed: {e:?}");
            std::process::ExitCode::FAILURE
        }
    }
}
