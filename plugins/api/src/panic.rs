//! Catching panics inside plugin code.
//!
//! A panic that unwinds out of an `extern "C"` function aborts the whole
//! process, so every entry point of a plugin runs its body inside [`guard`],
//! which turns a panic into [`PError::Panic`] for the host to report.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::std_types::RResult;

use crate::types::PError;

/// Runs `body`, returning its result as an [`RResult`], or
/// [`PError::Panic`] (naming `what`, e.g. `"ask"`) if it panicked.
///
/// The plugin's state may be inconsistent after a panic; the host therefore
/// refuses further calls on an instance that panicked.
pub fn guard<T>(what: &str, body: impl FnOnce() -> Result<T, PError>) -> RResult<T, PError> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(v)) => RResult::ROk(v),
        Ok(Err(e)) => RResult::RErr(e),
        Err(payload) => RResult::RErr(PError::Panic(
            format!("panicked in {what}: {}", panic_message(payload.as_ref())).into(),
        )),
    }
}

/// The message of a panic payload (`panic!("...")` gives a `&str` or a
/// `String`; anything else is described as such).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic payload that is not a string".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_errors_and_values_pass_through() {
        let r: RResult<u32, PError> = guard("ask", || panic!("boom {}", 7));
        match r {
            RResult::RErr(PError::Panic(m)) => assert_eq!(m.as_str(), "panicked in ask: boom 7"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(guard("tell", || Ok(3)), RResult::ROk(3));
        assert_eq!(
            guard::<()>("tell", || Err(PError::UnknownTrial(4))),
            RResult::RErr(PError::UnknownTrial(4))
        );
    }
}
