//! UUIDs on the wire have exactly one spelling: 36 characters, lowercase hex
//! in groups 8-4-4-4-12 separated by hyphens. The `uuid` crate also reads
//! braced, unhyphenated, uppercase and `urn:uuid:` forms; the published
//! schemas refuse those, so the parser refuses them too.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserializer;
use uuid::Uuid;

use crate::error::EnvelopeError;

/// The one accepted spelling, as a JSON Schema pattern.
pub const UUID_PATTERN: &str = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";

fn is_canonical(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
        })
}

fn message(text: &str) -> String {
    let shown: String = text.chars().take(64).collect();
    let more = if shown.len() < text.len() { "…" } else { "" };
    format!(
        "expected a UUID written as 36 lowercase characters, hex digits in groups 8-4-4-4-12 joined by hyphens (e.g. \"11111111-1111-4111-8111-000000000001\"); found {shown:?}{more}: write it in that form (no braces, no urn:uuid: prefix, no uppercase)"
    )
}

/// Parse a UUID in its one wire spelling (see [`UUID_PATTERN`]).
pub fn parse_uuid(text: &str) -> Result<Uuid, EnvelopeError> {
    if !is_canonical(text) {
        return Err(EnvelopeError::invalid("", message(text)));
    }
    Uuid::parse_str(text).map_err(|e| EnvelopeError::invalid("", e.to_string()))
}

/// `deserialize_with` for `Uuid` fields of wire types.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
    d.deserialize_str(UuidText)
}

/// Reads the text where it lies (`Cow<str>` would copy it into a `String`
/// first).
struct UuidText;

impl serde::de::Visitor<'_> for UuidText {
    type Value = Uuid;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a UUID string")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Uuid, E> {
        if !is_canonical(text) {
            return Err(E::custom(message(text)));
        }
        Uuid::parse_str(text).map_err(E::custom)
    }
}

/// Schema stand-in for `Uuid` fields of wire types.
pub(crate) struct CanonicalUuid;

impl JsonSchema for CanonicalUuid {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Uuid")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "uuid",
            "pattern": UUID_PATTERN,
            "description": "A UUID in its one wire spelling: lowercase hex, 8-4-4-4-12, hyphenated.",
        })
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
    fn only_the_canonical_spelling_parses() {
        let canonical = "11111111-1111-4111-8111-000000000001";
        assert!(parse_uuid(canonical).is_ok());
        for other in [
            "{11111111-1111-4111-8111-000000000001}",
            "111111111111411181110000000000001",
            "11111111111141118111000000000001",
            "urn:uuid:11111111-1111-4111-8111-000000000001",
            "11111111-1111-4111-8111-00000000000A",
            "11111111-1111-4111-8111-0000000000001",
            " 11111111-1111-4111-8111-000000000001",
            "",
        ] {
            let err = parse_uuid(other).unwrap_err();
            assert!(err.to_string().contains("8-4-4-4-12"), "{other}: {err}");
        }
    }
}
