//! Writing to stdout and stderr without panicking: a closed pipe ends the
//! command quietly, a full disk is an error (stdout) or is ignored (stderr,
//! which has no one left to tell).

use std::io::Write;

/// Writes to stdout; errors (a closed pipe, a full disk) are returned.
pub fn out(args: std::fmt::Arguments) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_fmt(args)?;
    stdout.flush()
}

/// Writes to stderr, ignoring failures (there is nowhere left to report
/// them).
pub fn err(args: std::fmt::Arguments) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// Whether `e` is a write to a closed pipe (`dsnn ... | head`), which ends a
/// command quietly.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `println!` to stdout that returns an error instead of panicking.
#[macro_export]
#[doc(hidden)]
macro_rules! outln {
    () => { $crate::cli::output::out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::output::out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprintln!` that never panics.
#[macro_export]
#[doc(hidden)]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::cli::output::err(format_args!("{}\n", format_args!($($arg)*))) };
}
