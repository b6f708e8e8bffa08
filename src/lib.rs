//! dsnn's run layer: experiment files, the DSNN objective, executors and the
//! crash-safe run store that turn `dsnn-core`, `dsnn-search` and `dsnn-energy`
//! into `dsnn run exp.toml`.
//!
//! The binary (`src/main.rs`) is a thin command line over this library, so
//! researchers can drive the same machinery from their own code.

#![warn(missing_docs)]

pub mod executor;
pub mod experiment;
pub mod local;
pub mod objective;
pub mod report;
pub mod runner;
pub mod slurm;
pub mod store;
