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
        "document is over the {limit}-byte envelope limit (read {size} bytes before stopping); pass large data as input artifacts"
    )]
    TooLarge {
        /// Bytes read before refusing: the whole document, or `limit + 1`
        /// when the reader stopped early (see `read_envelope_bytes`).
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// Holding the document would take more memory than the front door
    /// allows (see `MAX_ENVELOPE_VALUE_BYTES`).
    #[error(
        "the document is too complex: holding it would take more than {budget} bytes of memory (stopped at {}, line {line}, column {column}); a PlannedOperation is small: pass large data as input artifacts",
        display_pointer(.pointer)
    )]
    TooComplex {
        /// The memory budget, in bytes.
        budget: usize,
        /// JSON pointer of the value being read when the budget ran out.
        pointer: String,
        /// 1-based line where the reader stopped.
        line: usize,
        /// 1-based column where the reader stopped.
        column: usize,
    },
    /// An object names the same member twice; readers disagree on which copy
    /// wins, so the document is refused.
    #[error(
        "duplicate key {key:?} at {} (line {line}, column {column}): an object may name each member once, and readers disagree on which copy wins; remove one of them",
        display_pointer(.pointer)
    )]
    DuplicateKey {
        /// JSON pointer of the repeated member.
        pointer: String,
        /// The repeated name.
        key: String,
        /// 1-based line where the duplicate was seen (just after its name).
        line: usize,
        /// 1-based column where the duplicate was seen.
        column: usize,
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
            Self::DuplicateKey { .. } => "ENVELOPE.DUPLICATE_KEY",
            Self::TooComplex { .. } => "ENVELOPE.TOO_COMPLEX",
            Self::Invalid { .. } => "ENVELOPE.INVALID",
            Self::UnsupportedVersion { .. } => "ENVELOPE.UNSUPPORTED_VERSION",
            Self::NotAnEngineInvocation { .. } => "ENVELOPE.NOT_AN_ENGINE_INVOCATION",
            Self::Canonicalization { .. } => "ENVELOPE.CANONICALIZATION",
        }
    }

    /// The JSON pointer of the offending value, when there is one.
    pub fn pointer(&self) -> Option<&str> {
        match self {
            Self::Invalid { pointer, .. }
            | Self::DuplicateKey { pointer, .. }
            | Self::TooComplex { pointer, .. } => Some(pointer),
            Self::UnsupportedVersion { .. } | Self::NotAnEngineInvocation { .. } => {
                Some("/schema_version")
            }
            _ => None,
        }
    }

    /// Wrap a refusal of the strict JSON reader.
    pub(crate) fn from_json(e: crate::json::JsonError) -> Self {
        use crate::json::JsonError;
        match e {
            JsonError::DuplicateKey {
                pointer,
                key,
                line,
                column,
            } => Self::DuplicateKey {
                pointer,
                key,
                line,
                column,
            },
            JsonError::NumberOutOfRange {
                pointer,
                number,
                line,
                column,
            } => Self::Invalid {
                pointer,
                message: format!(
                    "the number {number} (line {line}, column {column}) is outside ±(2^53-1) = ±9007199254740991, the range JSON hashing keeps exact; send a smaller number, or a string"
                ),
            },
            JsonError::TooComplex {
                budget,
                pointer,
                line,
                column,
            } => Self::TooComplex {
                budget,
                pointer,
                line,
                column,
            },
            JsonError::ByteOrderMark { encoding } => Self::Syntax {
                line: 1,
                column: 1,
                message: format!(
                    "the document starts with a {encoding} byte-order mark, which JSON forbids: save it as UTF-8 without a BOM"
                ),
            },
            JsonError::Syntax {
                line,
                column,
                message,
                hint,
            } => Self::Syntax {
                line,
                column,
                message: format!("{message}; {hint}"),
            },
        }
    }

    pub(crate) fn invalid(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

/// Caller-supplied text quoted for an error message: the first 64
/// characters in Rust's debug quoting (control characters escaped), and the
/// whole length when it was cut, so that a megabyte-long value never comes
/// back whole in a denial.
///
/// ```
/// assert_eq!(mex_envelope::excerpt("engine.x"), r#""engine.x""#);
/// let long = "a".repeat(1_000_000);
/// assert!(mex_envelope::excerpt(&long).ends_with("(1000000 bytes in all)"));
/// ```
pub fn excerpt(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    match text.char_indices().nth(MAX_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes in all)", &text[..cut], text.len()),
    }
}
