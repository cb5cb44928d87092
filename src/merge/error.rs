//! Error type of the merge module, with the exit code the CLI maps each kind to.

use std::path::PathBuf;

/// Everything that can go wrong while planning or running a merge.
///
/// Every variant carries enough context (file, tensor) for the user to act on it.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The recipe or the command line is inconsistent (exit code 2).
    #[error("recipe error: {0}")]
    Recipe(String),
    /// An input file is missing, unreadable or malformed (exit code 3).
    #[error("invalid input {path}: {msg}")]
    Input {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it and, where possible, what to do.
        msg: String,
    },
    /// Inputs disagree with each other (names, shapes, dtypes, non-float payloads) (exit code 3).
    #[error("inputs do not match: tensor `{tensor}` in {path}: {msg}")]
    Mismatch {
        /// The first offending tensor.
        tensor: String,
        /// The file in which it differs from the base.
        path: PathBuf,
        /// How it differs.
        msg: String,
    },
    /// A tensor holds NaN/Inf values or a decomposition failed (exit code 4).
    #[error("numerical error in tensor `{tensor}`{}: {msg}", .path.as_ref().map(|p| format!(" of {}", p.display())).unwrap_or_default())]
    Numeric {
        /// The tensor being processed.
        tensor: String,
        /// The input file, when the problem is in an input.
        path: Option<PathBuf>,
        /// What failed.
        msg: String,
    },
    /// Writing the output failed (exit code 5).
    #[error("cannot write {path}: {source}")]
    Output {
        /// The output file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

impl MergeError {
    /// Process exit code for this error (documented in the `thunder-merge --help` text).
    pub fn exit_code(&self) -> i32 {
        match self {
            MergeError::Recipe(_) => 2,
            MergeError::Input { .. } | MergeError::Mismatch { .. } => 3,
            MergeError::Numeric { .. } => 4,
            MergeError::Output { .. } => 5,
        }
    }

    /// Shorthand for an [`MergeError::Input`] error.
    pub fn input(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        MergeError::Input {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// Shorthand for a [`MergeError::Numeric`] error without a file.
    pub fn numeric(tensor: &str, msg: impl Into<String>) -> Self {
        MergeError::Numeric {
            tensor: tensor.to_string(),
            path: None,
            msg: msg.into(),
        }
    }
}

/// Result alias of the merge module.
pub type Result<T> = std::result::Result<T, MergeError>;
