//! Canonical JSON (RFC 8785, the JSON Canonicalization Scheme) and the SHA-256
//! digests computed over it.
//!
//! Canonicalization is delegated to `serde_json_canonicalizer`, a maintained
//! implementation tested against the RFC's vectors (and ours, see the tests).
//! RFC 8785 serializes numbers as IEEE 754 doubles, so integers above 2^53-1
//! would silently lose precision; the parser refuses them before they get here.

use serde::Serialize;

use crate::digest::Sha256Digest;
use crate::error::EnvelopeError;

/// The RFC 8785 canonical bytes of any serializable value.
pub fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, EnvelopeError> {
    serde_json_canonicalizer::to_vec(value).map_err(|e| EnvelopeError::Canonicalization {
        message: e.to_string(),
    })
}

/// The RFC 8785 canonical text of any serializable value.
///
/// # Example
///
/// Member order and insignificant whitespace do not change the canonical
/// form, so they do not change the digest either:
///
/// ```rust
/// use mex_envelope::{Sha256Digest, canonical};
/// use serde_json::json;
///
/// let a = json!({"b": 2, "a": [1, "x"], "c": 1.50});
/// let b: serde_json::Value = serde_json::from_str(r#"{ "c": 1.5, "a": [1, "x"], "b": 2 }"#)?;
/// let text = canonical::to_string(&a)?;
/// assert_eq!(text, r#"{"a":[1,"x"],"b":2,"c":1.5}"#);
/// assert_eq!(canonical::to_string(&b)?, text);
///
/// // `digest` is the SHA-256 of exactly those bytes.
/// assert_eq!(canonical::digest(&a)?, Sha256Digest::of(text.as_bytes()));
/// assert_eq!(canonical::digest(&a)?, canonical::digest(&b)?);
/// assert_ne!(canonical::digest(&a)?, canonical::digest(&json!({"b": 3}))?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn to_string<T: Serialize>(value: &T) -> Result<String, EnvelopeError> {
    serde_json_canonicalizer::to_string(value).map_err(|e| EnvelopeError::Canonicalization {
        message: e.to_string(),
    })
}

/// SHA-256 of the canonical form of a value: the canonical digest of any wire
/// value.
pub fn digest<T: Serialize>(value: &T) -> Result<Sha256Digest, EnvelopeError> {
    Ok(Sha256Digest::of(&to_vec(value)?))
}

/// The config hash of an operation: the canonical digest of its params.
pub fn config_hash(
    params: &serde_json::Map<String, serde_json::Value>,
) -> Result<Sha256Digest, EnvelopeError> {
    digest(params)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]
    use super::*;

    #[test]
    fn sorts_keys_and_strips_whitespace() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{ "b": 1, "a": [true, null, "x"] }"#).unwrap();
        assert_eq!(to_string(&v).unwrap(), r#"{"a":[true,null,"x"],"b":1}"#);
    }
}
