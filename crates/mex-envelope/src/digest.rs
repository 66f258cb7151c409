//! SHA-256 digests. The one text form is exactly 64 lowercase hex characters.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::EnvelopeError;

/// A SHA-256 digest. Displayed and serialized as 64 lowercase hex characters;
/// upper-case, prefixed or short forms are refused so that one digest has one
/// spelling.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// Wrap raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Hash a byte slice.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The lowercase hex text form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", self.to_hex())
    }
}

impl FromStr for Sha256Digest {
    type Err = EnvelopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let well_formed =
            s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let mut out = [0u8; 32];
        if well_formed && hex::decode_to_slice(s, &mut out).is_ok() {
            Ok(Self(out))
        } else {
            Err(EnvelopeError::invalid(
                "",
                format!(
                    "{} is not a SHA-256 digest: expected exactly 64 lowercase hex characters, no prefix",
                    crate::excerpt(s)
                ),
            ))
        }
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(d)?;
        text.parse().map_err(|e: EnvelopeError| match e {
            EnvelopeError::Invalid { message, .. } => serde::de::Error::custom(message),
            other => serde::de::Error::custom(other),
        })
    }
}

impl JsonSchema for Sha256Digest {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Sha256Digest")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": "SHA-256 digest as 64 lowercase hex characters.",
        })
    }
}

/// An `io::Write` sink that hashes and counts what passes through it, for
/// streaming digests in constant memory.
#[derive(Default, Clone)]
pub struct Sha256Writer {
    hasher: Sha256,
    len: u64,
}

impl Sha256Writer {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no bytes were seen.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest and the number of bytes hashed.
    pub fn finish(self) -> (Sha256Digest, u64) {
        (Sha256Digest(self.hasher.finalize().into()), self.len)
    }
}

impl io::Write for Sha256Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn known_vector_and_text_form() {
        assert_eq!(Sha256Digest::of(b"").to_string(), EMPTY);
        let d: Sha256Digest = EMPTY.parse().unwrap();
        assert_eq!(d, Sha256Digest::of(b""));
        assert!(EMPTY.to_uppercase().parse::<Sha256Digest>().is_err());
        assert!(format!("sha256:{EMPTY}").parse::<Sha256Digest>().is_err());
        assert!(EMPTY[..63].parse::<Sha256Digest>().is_err());
    }

    #[test]
    fn streaming_equals_one_shot() {
        let mut w = Sha256Writer::new();
        w.update(b"hello ");
        w.update(b"world");
        let (d, n) = w.finish();
        assert_eq!(n, 11);
        assert_eq!(d, Sha256Digest::of(b"hello world"));
    }
}
