//! The one error type of this crate (configuration errors; denials are
//! `GateDenial` values, not errors).

use thiserror::Error;

/// Why the gates could not be set up.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GatesError {
    /// The policy file is malformed or inconsistent.
    #[error(
        "invalid capability policy: {message}; fix the policy file (schema: schemas/capability-policy.schema.json)"
    )]
    Policy {
        /// What was wrong and where.
        message: String,
    },
    /// The policy file could not be read.
    #[error("cannot read policy file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}
