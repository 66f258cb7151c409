//! Validated identifiers: engine ids, operation names, stable codes, gate ids
//! and the schema version. Each is built only through `FromStr`/`TryFrom`, so a
//! value of the type is always well-formed.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::EnvelopeError;

/// `[a-z][a-z0-9_]*`, 1..=64 characters.
fn is_snake_word(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && s.len() <= 64
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// `[A-Z][A-Z0-9_-]*`, 1..=64 characters.
/// `[A-Z][A-Z0-9_-]{0,63}`, checked byte by byte: every allowed character is
/// ASCII, so a multi-byte character fails as it would character by
/// character (codes are checked on every finding a gate builds).
fn is_upper_word(s: &[u8]) -> bool {
    matches!(s.first(), Some(b'A'..=b'Z'))
        && s.len() <= 64
        && s.iter()
            .all(|c| matches!(c, b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-'))
}

/// How [`parse_str`] words a refusal.
#[derive(Clone, Copy)]
pub(crate) enum Messages {
    /// An `Invalid` error's message alone (the caller adds where).
    Bare,
    /// The whole error.
    Whole,
}

/// Deserialize a string-spelled value from the text where it lies:
/// `Cow<str>` would copy the text into a `String` first, and the value's own
/// parser copies what it keeps anyway.
pub(crate) fn parse_str<'de, D, T>(d: D, messages: Messages) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr<Err = EnvelopeError>,
{
    d.deserialize_str(ParseStr {
        messages,
        target: std::marker::PhantomData,
    })
}

struct ParseStr<T> {
    messages: Messages,
    target: std::marker::PhantomData<T>,
}

impl<T: std::str::FromStr<Err = EnvelopeError>> serde::de::Visitor<'_> for ParseStr<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<T, E> {
        text.parse().map_err(|e| match (self.messages, e) {
            (Messages::Bare, EnvelopeError::Invalid { message, .. }) => E::custom(message),
            (_, other) => E::custom(other),
        })
    }
}

/// Implements the string plumbing shared by every validated identifier:
/// Display, AsRef, TryFrom<&str>/<String>, serde through `FromStr`, and a
/// JSON Schema of `type: string` with the documented pattern.
macro_rules! string_newtype {
    ($ty:ident, $schema_name:literal, $pattern:literal, $description:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl $ty {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<&str> for $ty {
            type Error = EnvelopeError;
            fn try_from(value: &str) -> Result<Self, Self::Error> {
                value.parse()
            }
        }
        impl TryFrom<String> for $ty {
            type Error = EnvelopeError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                value.parse()
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                parse_str(d, Messages::Bare)
            }
        }
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed($schema_name)
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "pattern": $pattern,
                    "description": $description,
                })
            }
        }
    };
}

/// An engine identifier: `engine.<name>` with `<name>` in `[a-z][a-z0-9_]*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EngineId(String);

impl EngineId {
    /// The name after `engine.`; operation names of this engine start with it.
    pub fn name(&self) -> &str {
        self.0.strip_prefix("engine.").unwrap_or(&self.0)
    }
}

impl FromStr for EngineId {
    type Err = EnvelopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("engine.") {
            Some(name) if is_snake_word(name) => Ok(Self(s.to_owned())),
            _ => Err(EnvelopeError::invalid(
                "",
                format!(
                    "{} is not an engine id: expected \"engine.<name>\" with <name> in [a-z][a-z0-9_]* (at most 64 characters), e.g. \"engine.physics\"",
                    crate::excerpt(s)
                ),
            )),
        }
    }
}
string_newtype!(
    EngineId,
    "EngineId",
    "^engine\\.[a-z][a-z0-9_]{0,63}$",
    "Engine identifier, e.g. engine.physics."
);

/// An operation name: `<engine name>.<op>`, e.g. `physics.convert_units`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OperationName(String);

impl OperationName {
    /// The part before the dot; it must equal the engine's name.
    pub fn prefix(&self) -> &str {
        self.0.split_once('.').map_or(&self.0[..], |(p, _)| p)
    }

    /// The part after the dot.
    pub fn local_name(&self) -> &str {
        self.0.split_once('.').map_or("", |(_, op)| op)
    }

    /// Whether this operation belongs to `engine` by its prefix.
    pub fn belongs_to(&self, engine: &EngineId) -> bool {
        self.prefix() == engine.name()
    }
}

impl FromStr for OperationName {
    type Err = EnvelopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('.') {
            Some((prefix, op)) if is_snake_word(prefix) && is_snake_word(op) => {
                Ok(Self(s.to_owned()))
            }
            _ => Err(EnvelopeError::invalid(
                "",
                format!(
                    "{} is not an operation name: expected \"<engine name>.<operation>\" in [a-z][a-z0-9_]*, e.g. \"physics.convert_units\"",
                    crate::excerpt(s)
                ),
            )),
        }
    }
}
string_newtype!(
    OperationName,
    "OperationName",
    "^[a-z][a-z0-9_]{0,63}\\.[a-z][a-z0-9_]{0,63}$",
    "Operation name <engine name>.<op>, e.g. physics.convert_units."
);

/// A stable, machine-readable code such as `PHYS_UNIT_MISMATCH` or
/// `G-CAP.CONSENT_MISSING`: upper-case words joined by dots.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ErrorCode(Cow<'static, str>);

impl FromStr for ErrorCode {
    type Err = EnvelopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_error_code(s) {
            Ok(Self(Cow::Owned(s.to_owned())))
        } else {
            Err(EnvelopeError::invalid(
                "",
                format!(
                    "{} is not a stable code: expected upper-case words [A-Z][A-Z0-9_-]* joined by '.', e.g. \"G-CAP.CONSENT_MISSING\"",
                    crate::excerpt(s)
                ),
            ))
        }
    }
}
/// `[A-Z][A-Z0-9_-]*` words joined by dots, at most 128 bytes.
fn is_error_code(s: &str) -> bool {
    s.len() <= 128 && s.as_bytes().split(|&b| b == b'.').all(is_upper_word)
}

/// `G-<NAME>` or `G-<NAME>.<SUB>`, each part an upper-case word without `-`.
fn is_gate_id(s: &str) -> bool {
    s.strip_prefix("G-").is_some_and(|rest| {
        let mut parts = rest.as_bytes().split(|&b| b == b'.');
        let word = |p: &[u8]| is_upper_word(p) && !p.contains(&b'-');
        parts.next().is_some_and(word) && parts.next().is_none_or(word) && parts.next().is_none()
    })
}

impl ErrorCode {
    /// An infallible constructor for codes written in source. A well-formed
    /// code is kept as is; anything else is sanitized into a well-formed code
    /// (invalid characters become `_`, parts get an `X` prefix when needed),
    /// so this never panics. Tables of constant codes should have a test that
    /// every entry parses with `FromStr`, which proves sanitizing never applies.
    /// A valid code is borrowed, not copied: building or cloning one
    /// allocates nothing.
    pub fn from_static(code: &'static str) -> Self {
        if is_error_code(code) {
            Self(Cow::Borrowed(code))
        } else {
            Self(Cow::Owned(sanitize_upper_dotted(code, 0)))
        }
    }
}

/// Make `s` match `[A-Z][A-Z0-9_-]*(\.[A-Z][A-Z0-9_-]*)*` with at most
/// `max_parts` parts (0 = unlimited).
fn sanitize_upper_dotted(s: &str, max_parts: usize) -> String {
    let mut parts: Vec<String> = s
        .split('.')
        .map(|p| {
            let mut part: String = p
                .chars()
                .take(63)
                .map(|c| {
                    let c = c.to_ascii_uppercase();
                    if c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if !part.starts_with(|c: char| c.is_ascii_uppercase()) {
                part.insert(0, 'X');
            }
            part
        })
        .collect();
    if max_parts > 0 && parts.len() > max_parts {
        let tail = parts.split_off(max_parts - 1).join("_");
        parts.push(tail);
    }
    parts.join(".")
}

string_newtype!(
    ErrorCode,
    "ErrorCode",
    "^[A-Z][A-Z0-9_-]{0,63}(\\.[A-Z][A-Z0-9_-]{0,63})*$",
    "Stable machine-readable code, e.g. G-CAP.CONSENT_MISSING or PHYS_UNIT_MISMATCH."
);

/// A gate identifier: `G-<NAME>` optionally followed by `.<SUB>`, e.g.
/// `G-SCHEMA` or `G-SAFETY.SANDBOX`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GateId(Cow<'static, str>);

impl FromStr for GateId {
    type Err = EnvelopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_gate_id(s) {
            Ok(Self(Cow::Owned(s.to_owned())))
        } else {
            Err(EnvelopeError::invalid(
                "",
                format!(
                    "{} is not a gate id: expected \"G-<NAME>\" or \"G-<NAME>.<SUB>\" in [A-Z0-9_], e.g. \"G-SAFETY.SANDBOX\"",
                    crate::excerpt(s)
                ),
            ))
        }
    }
}
impl GateId {
    /// An infallible constructor for gate ids written in source; see
    /// [`ErrorCode::from_static`] for the sanitizing rule. A valid id is
    /// borrowed, not copied.
    pub fn from_static(id: &'static str) -> Self {
        if is_gate_id(id) {
            Self(Cow::Borrowed(id))
        } else {
            let body =
                sanitize_upper_dotted(id.strip_prefix("G-").unwrap_or(id), 2).replace('-', "_");
            Self(Cow::Owned(format!("G-{body}")))
        }
    }
}

string_newtype!(
    GateId,
    "GateId",
    "^G-[A-Z][A-Z0-9_]{0,63}(\\.[A-Z][A-Z0-9_]{0,63})?$",
    "Gate identifier, e.g. G-CAP or G-SAFETY.SANDBOX."
);

/// The envelope schema version. Only `poe-1.0` is representable: another
/// `poe-*` is an unsupported version, anything else is not an engine invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SchemaVersion {
    /// `poe-1.0`.
    #[default]
    Poe1_0,
}

impl SchemaVersion {
    /// The text form.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Poe1_0 => "poe-1.0",
        }
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SchemaVersion {
    type Err = EnvelopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "poe-1.0" => Ok(Self::Poe1_0),
            other if other.starts_with("poe-") => Err(EnvelopeError::UnsupportedVersion {
                found: other.to_owned(),
            }),
            other => Err(EnvelopeError::NotAnEngineInvocation {
                found: other.to_owned(),
            }),
        }
    }
}

impl Serialize for SchemaVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SchemaVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str(d, Messages::Whole)
    }
}

impl JsonSchema for SchemaVersion {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("SchemaVersion")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "const": "poe-1.0",
            "description": "Envelope schema version; this runtime speaks poe-1.0.",
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
    fn engine_ids() {
        assert_eq!(
            "engine.physics".parse::<EngineId>().unwrap().name(),
            "physics"
        );
        for bad in [
            "physics",
            "engine.",
            "engine.Physics",
            "engine.phys-ics",
            "Engine.physics",
            "engine.phy sics",
            "engine.ⅰ",
        ] {
            assert!(bad.parse::<EngineId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn operation_names() {
        let op: OperationName = "physics.convert_units".parse().unwrap();
        assert!(op.belongs_to(&"engine.physics".parse().unwrap()));
        assert!(!op.belongs_to(&"engine.sandbox".parse().unwrap()));
        assert_eq!(op.local_name(), "convert_units");
        for bad in ["physics", ".x", "x.", "a.b.c", "A.b"] {
            assert!(bad.parse::<OperationName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn codes_and_gates() {
        assert!("G-CAP.CONSENT_MISSING".parse::<ErrorCode>().is_ok());
        assert!("PHYS_UNIT_MISMATCH".parse::<ErrorCode>().is_ok());
        assert!("g-cap".parse::<ErrorCode>().is_err());
        assert!("G-SAFETY.SANDBOX".parse::<GateId>().is_ok());
        assert!("G-SCHEMA".parse::<GateId>().is_ok());
        assert!("G-A.B.C".parse::<GateId>().is_err());
        assert!("SCHEMA".parse::<GateId>().is_err());
        for bad in [
            "G-", "G-A.", "G-.A", "G-A-B", "G-A.B-C", "G-a", "G-A..B", "G-CAPÄ", "G-É",
        ] {
            assert!(bad.parse::<GateId>().is_err(), "{bad}");
        }
        // Words are checked byte by byte: a multi-byte character never
        // passes, and the length bound counts bytes.
        for bad in ["G-CAP.É", "ÉCAP", "A.", ".A", "A..B", "A B"] {
            assert!(bad.parse::<ErrorCode>().is_err(), "{bad}");
        }
        let word = "W".repeat(64);
        assert!(format!("G-{word}").parse::<GateId>().is_ok());
        assert!(format!("G-{word}W").parse::<GateId>().is_err());
        assert!(format!("{word}.{word}-1").parse::<ErrorCode>().is_err());
        assert!(format!("{word}.A-1").parse::<ErrorCode>().is_ok());
        // A borrowed static id and a parsed one are the same value.
        let parsed: GateId = "G-SAFETY.SANDBOX".parse().unwrap();
        assert_eq!(GateId::from_static("G-SAFETY.SANDBOX"), parsed);
        let parsed: ErrorCode = "G-CAP.DUPLICATE".parse().unwrap();
        assert_eq!(ErrorCode::from_static("G-CAP.DUPLICATE"), parsed);
        assert_eq!(format!("{parsed:?}"), r#"ErrorCode("G-CAP.DUPLICATE")"#);
    }

    #[test]
    fn static_constructors_always_give_well_formed_values() {
        for raw in [
            "G-CAP.DUPLICATE",
            "bad code",
            "",
            "g-x.y.z.w",
            "G-ä.b",
            "..",
            "1.2",
        ] {
            let code = ErrorCode::from_static(raw);
            assert!(
                code.as_str().parse::<ErrorCode>().is_ok(),
                "{raw:?} -> {code}"
            );
            let gate = GateId::from_static(raw);
            assert!(gate.as_str().parse::<GateId>().is_ok(), "{raw:?} -> {gate}");
        }
        assert_eq!(
            ErrorCode::from_static("G-CAP.DUPLICATE").as_str(),
            "G-CAP.DUPLICATE"
        );
        assert_eq!(
            GateId::from_static("G-SAFETY.SANDBOX").as_str(),
            "G-SAFETY.SANDBOX"
        );
    }

    #[test]
    fn schema_versions() {
        assert_eq!(
            "poe-1.0".parse::<SchemaVersion>().unwrap(),
            SchemaVersion::Poe1_0
        );
        assert!(matches!(
            "poe-2.0".parse::<SchemaVersion>(),
            Err(EnvelopeError::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            "pe-1.0".parse::<SchemaVersion>(),
            Err(EnvelopeError::NotAnEngineInvocation { .. })
        ));
    }
}
