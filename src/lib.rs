//! dsnn's run layer: experiment files, objectives, executors and the
//! crash-safe run store that turn `dsnn-core`, `dsnn-search` and
//! `dsnn-energy` into `dsnn run exp.toml`, and a framework for research
//! code: a [`registry::Registry`] of everything swappable (backbones, data
//! sets, objectives, optimizers, schedules, spaces, meters, executors), and
//! the whole command line as a library function ([`cli::main`], feature
//! `cli`) so a research crate gets its own `dsnn`-like binary.
//!
//! Three ways in (`docs/library.md`): ask/tell in your own loop with
//! `dsnn-search`; a registered objective or backbone run through
//! [`runner::run_experiment`]; your own binary with [`cli::main`].

#![warn(missing_docs)]

pub mod builtins;
#[cfg(feature = "cli")]
pub mod cli;
pub mod dsnn_objective;
pub mod executor;
pub mod experiment;
pub mod objective;
#[cfg(feature = "plugins")]
pub mod plugins;
pub mod problem_objective;
pub mod registry;
pub mod report;
pub mod runner;
pub mod settings;
pub mod store;
pub mod study;
