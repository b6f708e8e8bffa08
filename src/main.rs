//! The `dsnn` command line: dsnn's built-in registry behind the whole CLI
//! of [`dsnn::cli::main`].

fn main() -> std::process::ExitCode {
    dsnn::cli::main(dsnn::builtins::registry())
}
