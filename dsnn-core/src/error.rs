//! Errors of dsnn-core.

use std::path::PathBuf;

/// Everything that can go wrong while loading data, building or training a DSNN.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A tensor operation failed (shape mismatch, unsupported op, ...).
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
    /// A data file is missing, unreadable, truncated or not in the expected format.
    #[error("data file {path}: {reason}")]
    Data {
        /// The file (or directory) at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting is out of range or inconsistent with another.
    #[error("invalid setting `{key}`: {reason}")]
    Config {
        /// The setting's name as the user writes it.
        key: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// Training produced a NaN or infinite loss.
    #[error("training diverged: loss is {loss} at epoch {epoch}, step {step}")]
    Diverged {
        /// The non-finite loss value.
        loss: f32,
        /// Epoch (1-based) in which it happened.
        epoch: usize,
        /// Step within the epoch (0-based).
        step: usize,
    },
    /// Training was stopped from outside (a deadline passed or it was cancelled).
    #[error("training stopped: {reason}")]
    Interrupted {
        /// Why it stopped.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl CoreError {
    /// A [`CoreError::Config`] for `key`.
    pub fn config(key: &str, reason: impl Into<String>) -> Self {
        CoreError::Config {
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    /// A [`CoreError::Data`] for `path`.
    pub fn data(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        CoreError::Data {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Result type of dsnn-core.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
