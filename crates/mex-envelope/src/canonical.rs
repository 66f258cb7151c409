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

/// The length in bytes of the RFC 8785 canonical form of a JSON object,
/// computed without writing it: member order does not change the length, so
/// nothing is sorted, and only a number with a fraction is formatted (as
/// [`to_vec`] formats it). Equal to `to_vec(map)?.len()`.
pub fn object_len(
    map: &serde_json::Map<String, serde_json::Value>,
) -> Result<usize, EnvelopeError> {
    let mut len = 2 + map.len().saturating_sub(1);
    for (key, value) in map {
        len += string_len(key) + 1 + value_len(value)?;
    }
    Ok(len)
}

fn value_len(value: &serde_json::Value) -> Result<usize, EnvelopeError> {
    use serde_json::Value;
    Ok(match value {
        Value::Null | Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::String(s) => string_len(s),
        Value::Number(n) => number_len(n)?,
        Value::Array(items) => {
            let mut len = 2 + items.len().saturating_sub(1);
            for item in items {
                len += value_len(item)?;
            }
            len
        }
        Value::Object(map) => object_len(map)?,
    })
}

/// A string with its quotes and escapes: `"` and `\` and the short control
/// escapes take two bytes, other control characters six (`\u001f`), every
/// other character its UTF-8 bytes.
fn string_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | 0x08 | 0x0C | b'\n' | b'\r' | b'\t' => 2,
            0x00..=0x1F => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// An integer within ±(2^53-1) is written as its decimal digits (an integral
/// double below 10^21 has no exponent in RFC 8785); anything else is
/// formatted as [`to_vec`] formats it.
fn number_len(n: &serde_json::Number) -> Result<usize, EnvelopeError> {
    let digits = |u: u64| u.checked_ilog10().map_or(1, |d| d as usize + 1);
    match (n.as_u64(), n.as_i64()) {
        (Some(u), _) if u <= crate::MAX_SAFE_INTEGER => Ok(digits(u)),
        (None, Some(i)) if i.unsigned_abs() <= crate::MAX_SAFE_INTEGER => {
            Ok(1 + digits(i.unsigned_abs()))
        }
        _ => Ok(to_vec(n)?.len()),
    }
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

    #[test]
    fn object_len_is_the_length_of_the_canonical_bytes() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"b": 1, "a": [true, false, null, "x\"\\\/\n\u0001\u001f\u007f é 😀"],
                "c": {"": -0.0, "n": -9007199254740991, "m": 9007199254740991, "z": 0, "y": -1},
                "f": [1.5, -2.25e-7, 1e-300, 123456789.125, 0.1], "e": {}, "d": []}"#,
        )
        .unwrap();
        let map = v.as_object().unwrap();
        assert_eq!(object_len(map).unwrap(), to_vec(map).unwrap().len());
        assert_eq!(object_len(&serde_json::Map::new()).unwrap(), 2);
    }
}
