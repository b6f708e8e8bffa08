//! One module per `dsnn` subcommand: its arguments and its handler.

pub mod plugins;
pub mod train;
