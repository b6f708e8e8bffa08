//! One module per `dsnn` subcommand: its arguments and its handler.

pub mod export;
pub mod infer;
pub mod pareto; // and `dsnn report`
pub mod plugin_support;
pub mod plugins;
pub mod run;
pub mod train;
pub mod trial;
