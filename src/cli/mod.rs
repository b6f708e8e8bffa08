//! One module per `dsnn` subcommand: its arguments and its handler.

pub mod export;
pub mod infer;
pub mod train;
