//! The one error type of this crate.

use thiserror::Error;

/// Why a wire document was refused. Every variant says where (a JSON pointer,
/// or a line and column for syntax errors), what was wrong, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The bytes are not JSON at all.
    #[error(
        "not valid JSON at line {line}, column {column}: {message}; send one UTF-8 JSON object"
    )]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the JSON parser saw.
        message: String,
    },
    /// The document is larger than the envelope cap.
    #[error(
        "document is {size} bytes, over the {limit}-byte envelope limit; pass large data as input artifacts"
    )]
    TooLarge {
        /// Size of the document.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The document is JSON but a value is wrong.
    #[error("invalid value at {}: {message}", display_pointer(.pointer))]
    Invalid {
        /// JSON pointer (RFC 6901) of the offending value; empty for the root.
        pointer: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// `schema_version` names another poe version.
    #[error(
        "unsupported schema_version {found:?} at /schema_version: this runtime speaks poe-1.0 only"
    )]
    UnsupportedVersion {
        /// The version found.
        found: String,
    },
    /// `schema_version` is not `poe-*`: this is not an engine invocation.
    #[error(
        "schema_version {found:?} at /schema_version is not an engine invocation (expected \"poe-1.0\"); document-edit plans are not accepted here"
    )]
    NotAnEngineInvocation {
        /// The version found.
        found: String,
    },
    /// A value could not be canonicalized (RFC 8785) for hashing.
    #[error("cannot canonicalize value for hashing: {message}")]
    Canonicalization {
        /// Why.
        message: String,
    },
}

fn display_pointer(pointer: &str) -> &str {
    if pointer.is_empty() {
        "/ (document root)"
    } else {
        pointer
    }
}

impl EnvelopeError {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Syntax { .. } => "ENVELOPE.SYNTAX",
            Self::TooLarge { .. } => "ENVELOPE.TOO_LARGE",
            Self::Invalid { .. } => "ENVELOPE.INVALID",
            Self::UnsupportedVersion { .. } => "ENVELOPE.UNSUPPORTED_VERSION",
            Self::NotAnEngineInvocation { .. } => "ENVELOPE.NOT_AN_ENGINE_INVOCATION",
            Self::Canonicalization { .. } => "ENVELOPE.CANONICALIZATION",
        }
    }

    /// The JSON pointer of the offending value, when there is one.
    pub fn pointer(&self) -> Option<&str> {
        match self {
            Self::Invalid { pointer, .. } => Some(pointer),
            Self::UnsupportedVersion { .. } | Self::NotAnEngineInvocation { .. } => {
                Some("/schema_version")
            }
            _ => None,
        }
    }

    pub(crate) fn invalid(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}
