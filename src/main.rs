//! The `dsnn` command line: train Deep Shift Neural Networks on real data.

use clap::{Parser, Subcommand};

mod cli;

/// Find Deep Shift Neural Networks that are accurate and frugal with energy.
#[derive(Parser, Debug)]
#[command(name = "dsnn", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train one DSNN configuration and report its test accuracy.
    Train(cli::train::TrainArgs),
    /// Carry out the search an experiment file describes (or resume it).
    Run(cli::run::RunArgs),
    /// Validate an experiment file without running it.
    Check(cli::run::CheckArgs),
    /// Evaluate one trial (used by the process and cluster executors).
    Trial(cli::trial::TrialArgs),
    /// Show the Pareto front and summary of a run directory.
    Pareto(cli::pareto::ParetoArgs),
    /// Write a run directory's summary, front and SVG plots (the front with
    /// the default marked, hypervolume over trials and over wall time).
    Report(cli::pareto::ReportArgs),
    /// List the plugins (optimizers, energy meters) in the plugin directories.
    Plugins(cli::plugins::PluginsArgs),
    /// Export trained weights to an integer shift-add model.
    Export(cli::export::ExportArgs),
    /// Run an integer model on a data set: accuracy, latency, throughput.
    Infer(cli::infer::InferArgs),
}

fn main() -> std::process::ExitCode {
    dsnn_core::runtime::tune_process();
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).build();
    let level = logger.filter();
    if log::set_boxed_logger(Box::new(cli::run::BarAwareLogger(logger))).is_ok() {
        log::set_max_level(level);
    }
    let result = match Cli::parse().command {
        Command::Train(a) => cli::train::run(a),
        Command::Run(a) => cli::run::run(a),
        Command::Check(a) => cli::run::check(a),
        Command::Trial(a) => cli::trial::run(a),
        Command::Pareto(a) => cli::pareto::run(a),
        Command::Report(a) => cli::pareto::report(a),
        Command::Plugins(a) => cli::plugins::run(a),
        Command::Export(a) => cli::export::run(a),
        Command::Infer(a) => cli::infer::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole cause chain on one line, without a backtrace.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
