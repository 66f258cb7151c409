//! The crate's one error type.

use std::path::PathBuf;

/// What stopped the harness or the certifier from doing its job. A *failing
/// engine* is not an error: it is a report with failed cases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConformanceError {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}; check the path and its permissions")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The registry file is not what the loaded registry says it is.
    #[error("registry {path}: {message}")]
    Registry {
        /// The registry file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The engine is not one the harness can test.
    #[error("cannot test {engine}: {message}")]
    Subject {
        /// Engine id.
        engine: String,
        /// Why, and what to do.
        message: String,
    },
    /// The test environment (store, recorder, runtime) could not be set up.
    #[error("cannot set up the conformance environment: {0}")]
    Setup(String),
    /// A certificate or report could not be (de)serialized.
    #[error("{what}: {message}")]
    Format {
        /// Which document.
        what: String,
        /// What is wrong.
        message: String,
    },
}

impl ConformanceError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
