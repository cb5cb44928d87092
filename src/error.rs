//! Error type of the crate, with a stable mapping to process exit codes.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, grouped by who has to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input audio cannot be used (unreadable, not a WAV, truncated, unsupported format, …).
    #[error("{path}: {msg}")]
    Input {
        /// Offending input file (may be empty for in-memory data).
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The output cannot be written (unwritable directory, output == input, disk full, …).
    #[error("{path}: {msg}")]
    Output {
        /// Offending output path.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The model file is missing, unreadable, or not a Thunder ONNX graph.
    #[error("model {path}: {msg}")]
    Model {
        /// Model path.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// ONNX Runtime could not be found or loaded, or an execution provider is unavailable.
    #[error("{0}")]
    Runtime(String),
    /// Invalid configuration (bad option values).
    #[error("{0}")]
    Config(String),
    /// Inference failed at run time (should not happen with a valid model).
    #[error("inference failed: {0}")]
    Inference(String),
    /// An audio device is missing, cannot be opened, or failed while running (live mode).
    #[error("audio device: {0}")]
    Audio(String),
}

impl Error {
    /// Process exit code for this error, as documented in `enhance --help`.
    ///
    /// 0 success, 1 internal/inference error, 2 usage or configuration error, 3 bad input,
    /// 4 output not writable, 5 bad or missing model, 6 ONNX Runtime missing or unusable,
    /// 7 audio device missing or failed (live mode).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Inference(_) => 1,
            Error::Config(_) => 2,
            Error::Input { .. } => 3,
            Error::Output { .. } => 4,
            Error::Model { .. } => 5,
            Error::Runtime(_) => 6,
            Error::Audio(_) => 7,
        }
    }

    /// Shorthand for an [`Error::Input`].
    pub fn input(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Input {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// Shorthand for an [`Error::Output`].
    pub fn output(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Output {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// Shorthand for an [`Error::Model`].
    pub fn model(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Model {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
