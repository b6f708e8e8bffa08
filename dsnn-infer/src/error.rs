//! Errors of the integer inference engine.

use std::path::PathBuf;

/// Everything that can go wrong while exporting, loading or running an integer model.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The trained network cannot be expressed in integers with the documented semantics.
    #[error("cannot export layer `{layer}`: {reason}")]
    Unsupported {
        /// The layer (or setting) at fault.
        layer: String,
        /// Why, and what is supported instead.
        reason: String,
    },
    /// A statically bounded accumulator or requantisation would overflow.
    #[error("overflow in layer `{layer}`: {reason}")]
    Overflow {
        /// The layer at fault.
        layer: String,
        /// Which bound was exceeded.
        reason: String,
    },
    /// An integer model's description is out of range or inconsistent (a
    /// corrupt or hand-edited file, or a hand-built model).
    #[error("invalid integer model at `{part}`: {reason}")]
    Invalid {
        /// The layer, step or setting at fault.
        part: String,
        /// What is wrong, and what is allowed.
        reason: String,
    },
    /// A model or weights file is missing, unreadable or malformed.
    #[error("{path}: {reason}")]
    File {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Input images do not match the model.
    #[error("bad input: {0}")]
    Input(String),
    /// An error of dsnn-core (building or loading the trained network).
    #[error(transparent)]
    Core(#[from] dsnn_core::CoreError),
    /// A tensor operation failed while reading trained parameters.
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
}

impl InferError {
    /// An [`InferError::Unsupported`] for `layer`.
    pub fn unsupported(layer: &str, reason: impl Into<String>) -> Self {
        InferError::Unsupported {
            layer: layer.to_string(),
            reason: reason.into(),
        }
    }

    /// An [`InferError::Invalid`] for `part`.
    pub fn invalid(part: &str, reason: impl Into<String>) -> Self {
        InferError::Invalid {
            part: part.to_string(),
            reason: reason.into(),
        }
    }

    /// An [`InferError::File`] for `path`.
    pub fn file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        InferError::File {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Result type of dsnn-infer.
pub type Result<T, E = InferError> = std::result::Result<T, E>;
