//! Artifact handles, entity references, the input union, bundle indexes and
//! the sidecar manifest (docs/contract.md §5).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::budget::safe;
use crate::canonical;
use crate::determinism::DeterminismLevel;
use crate::digest::Sha256Digest;
use crate::error::EnvelopeError;
use crate::ids::{EngineId, OperationName};
use crate::pointer;
use crate::timestamp::UtcTimestamp;

/// The kind of an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// A plain file.
    File,
    /// Output of a tool (stdout, a generated file).
    ToolOutput,
    /// A transcript (e.g. an HTTP exchange).
    Transcript,
    /// A slice of a dataset.
    DatasetSlice,
    /// A payload meant for a prompt.
    PromptPayload,
    /// A report.
    Report,
    /// A bundle: its payload is a canonical [`BundleIndex`].
    Bundle,
}

/// Data classification, ordered `low < medium < high`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    /// Low sensitivity.
    Low,
    /// Medium sensitivity.
    Medium,
    /// High sensitivity.
    High,
}

// Read from their names only (see `determinism::named_variant`).
impl<'de> Deserialize<'de> for ArtifactKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::determinism::named_variant(
            d,
            &[
                "file",
                "tool_output",
                "transcript",
                "dataset_slice",
                "prompt_payload",
                "report",
                "bundle",
            ],
            &[
                Self::File,
                Self::ToolOutput,
                Self::Transcript,
                Self::DatasetSlice,
                Self::PromptPayload,
                Self::Report,
                Self::Bundle,
            ],
        )
    }
}

impl<'de> Deserialize<'de> for Classification {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::determinism::named_variant(
            d,
            &["low", "medium", "high"],
            &[Self::Low, Self::Medium, Self::High],
        )
    }
}

/// A media type such as `application/json` or `text/x-python`: lowercase
/// `type/subtype`, no parameters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MediaType(String);

impl MediaType {
    /// The text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_media_token(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 64
        && matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "!#$&^_.+-".contains(c))
}

impl FromStr for MediaType {
    type Err = EnvelopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((t, sub)) if is_media_token(t) && is_media_token(sub) => Ok(Self(s.to_owned())),
            _ => Err(EnvelopeError::invalid(
                "",
                format!(
                    "{} is not a media type: expected lowercase \"type/subtype\" without parameters, e.g. \"application/json\"",
                    crate::excerpt(s)
                ),
            )),
        }
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for MediaType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MediaType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(d)?;
        text.parse().map_err(|e: EnvelopeError| match e {
            EnvelopeError::Invalid { message, .. } => serde::de::Error::custom(message),
            other => serde::de::Error::custom(other),
        })
    }
}

impl JsonSchema for MediaType {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("MediaType")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$",
            "description": "Lowercase media type type/subtype, e.g. application/json.",
        })
    }
}

/// A reference to an immutable artifact in the store: everything large
/// travels as one of these.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactHandle {
    /// Unique id of this artifact record.
    #[serde(deserialize_with = "crate::uuid_text::deserialize")]
    #[schemars(with = "crate::uuid_text::CanonicalUuid")]
    pub artifact_id: Uuid,
    /// What kind of artifact it is.
    pub kind: ArtifactKind,
    /// SHA-256 of the payload bytes (for a bundle: of its canonical index).
    pub content_hash: Sha256Digest,
    /// Payload size in bytes; checked together with the hash.
    #[serde(deserialize_with = "safe::u64")]
    #[schemars(range(max = 9_007_199_254_740_991u64))]
    pub size_bytes: u64,
    /// Sensitivity.
    pub classification: Classification,
    /// Whether it may leave the mex home.
    pub exportable: bool,
    /// Days to keep it after creation; absent means no expiry.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "retention_days"
    )]
    #[schemars(range(min = 1, max = 36500))]
    pub retention_ttl_days: Option<u32>,
    /// Media type of the payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
}

/// `retention_ttl_days` within the schema's range, 1..=36500 (the store
/// refuses any other at put, so no stored artifact has one).
fn retention_days<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let days = Option::<u32>::deserialize(d)?;
    match days {
        Some(n) if !(1..=36_500).contains(&n) => Err(serde::de::Error::custom(format!(
            "retention_ttl_days {n} is out of range: expected 1 to 36500 days, or leave it out to keep the artifact"
        ))),
        _ => Ok(days),
    }
}

/// A reference to an entity outside the artifact store (a repository, a
/// mailbox, a device) that an engine resolves under its own capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EntityRef {
    /// What kind of entity, e.g. `git_repo` or `mailbox`: `[a-z][a-z0-9_]*`.
    #[schemars(regex(pattern = "^[a-z][a-z0-9_]{0,63}$"))]
    pub entity_type: String,
    /// The entity's id within its type; 1-256 printable characters.
    #[schemars(length(min = 1, max = 256))]
    pub entity_id: String,
    /// Optional version or revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub version: Option<String>,
}

impl EntityRef {
    fn check(&self) -> Result<(), (String, String)> {
        let mut chars = self.entity_type.chars();
        let type_ok = self.entity_type.len() <= 64
            && matches!(chars.next(), Some('a'..='z'))
            && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'));
        if !type_ok {
            return Err((
                "/entity_type".into(),
                format!(
                    "{:?} is not an entity type: expected [a-z][a-z0-9_]*",
                    self.entity_type
                ),
            ));
        }
        for (field, value) in [
            ("entity_id", Some(&self.entity_id)),
            ("version", self.version.as_ref()),
        ] {
            if let Some(v) = value {
                let n = v.chars().count();
                if n == 0 || n > 256 || v.chars().any(char::is_control) {
                    return Err((
                        format!("/{field}"),
                        format!("{field} must be 1-256 characters without control characters"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One input of a PlannedOperation: an artifact handle or an entity reference.
/// An object with `artifact_id` is a handle; one with `entity_type` is an
/// entity reference; anything else is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Input {
    /// An artifact in the store.
    Artifact(ArtifactHandle),
    /// An entity outside the store.
    Entity(EntityRef),
}

impl Input {
    /// The artifact handle, when this input is one.
    pub fn as_artifact(&self) -> Option<&ArtifactHandle> {
        match self {
            Self::Artifact(h) => Some(h),
            Self::Entity(_) => None,
        }
    }
}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        // Strictly: a member named twice is refused here too, since the
        // typed pass below would only see the copy kept.
        let value = crate::json::strict_value(d)?;
        let Some(object) = value.as_object() else {
            return Err(D::Error::custom(
                "expected an object: an artifact handle (with artifact_id) or an entity reference (with entity_type)",
            ));
        };
        let nested = |e: serde_path_to_error::Error<serde_json::Error>| {
            let relative = pointer::from_serde_path(e.path());
            let (inner, message) = pointer::unmark(&e.inner().to_string());
            D::Error::custom(pointer::mark(
                &format!("{relative}{inner}"),
                pointer::strip_position(&message),
            ))
        };
        if object.contains_key("artifact_id") {
            serde_path_to_error::deserialize(value)
                .map(Input::Artifact)
                .map_err(nested)
        } else if object.contains_key("entity_type") {
            let entity: EntityRef = serde_path_to_error::deserialize(value).map_err(nested)?;
            entity
                .check()
                .map_err(|(p, m)| D::Error::custom(pointer::mark(&p, &m)))?;
            Ok(Input::Entity(entity))
        } else {
            Err(D::Error::custom(
                "expected an artifact handle (with artifact_id) or an entity reference (with entity_type)",
            ))
        }
    }
}

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BundleEntry {
    /// Normalized relative path: `/`-separated, no `.`/`..` segments, no
    /// leading `/`, NFC, no control characters (mex-artifacts enforces it).
    pub path: String,
    /// SHA-256 of the entry's bytes (after line-ending normalization when the
    /// index says so).
    pub content_hash: Sha256Digest,
    /// Size of those bytes.
    #[serde(deserialize_with = "safe::u64")]
    #[schemars(range(max = 9_007_199_254_740_991u64))]
    pub size_bytes: u64,
}

/// The canonical index of a bundle. A bundle's content hash is the SHA-256 of
/// this index's RFC 8785 form, never of container bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BundleIndex {
    /// Whether CRLF and CR were normalized to LF before hashing text entries.
    pub normalize_line_endings: bool,
    /// Entries sorted by path (byte order), paths unique.
    pub entries: Vec<BundleEntry>,
}

impl BundleIndex {
    /// Sort entries by path so that the index is canonical.
    pub fn sort(&mut self) {
        self.entries
            .sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    }

    /// The bundle's content hash: SHA-256 over the canonical JSON of the
    /// sorted index.
    pub fn content_hash(&self) -> Result<Sha256Digest, EnvelopeError> {
        let mut sorted = self.clone();
        sorted.sort();
        canonical::digest(&sorted)
    }
}

/// The manifest format version written into every sidecar.
pub const MANIFEST_SCHEMA_VERSION: &str = "mex-artifact-1.0";

/// Who produced an artifact: present for engine outputs, absent for artifacts
/// put by a user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactProducer {
    /// The operation that produced it.
    #[serde(deserialize_with = "crate::uuid_text::deserialize")]
    #[schemars(with = "crate::uuid_text::CanonicalUuid")]
    pub op_id: Uuid,
    /// Engine.
    pub engine_id: EngineId,
    /// Engine interface version.
    #[schemars(with = "String")]
    pub engine_version: semver::Version,
    /// Implementation id.
    pub implementation_id: String,
    /// Implementation version.
    #[schemars(with = "String")]
    pub implementation_version: semver::Version,
    /// Operation.
    pub operation: OperationName,
    /// RFC 8785 hash of the params.
    pub config_hash: Sha256Digest,
    /// Content hashes of the inputs, in input order.
    pub input_hashes: Vec<Sha256Digest>,
    /// Determinism level the run was admitted at.
    pub determinism: DeterminismLevel,
}

/// The record stored beside every payload (one row per artifact in the store's index).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactManifest {
    /// Always [`MANIFEST_SCHEMA_VERSION`].
    #[schemars(regex(pattern = "^mex-artifact-1\\.0$"))]
    pub schema_version: String,
    /// The handle, including classification, exportability and retention.
    pub artifact: ArtifactHandle,
    /// When it was stored.
    pub created_at: UtcTimestamp,
    /// Pinned artifacts are never evicted by gc or quotas.
    pub pinned: bool,
    /// Whether text was stored with normalized line endings.
    #[serde(default)]
    pub normalize_line_endings: bool,
    /// Producer, for engine outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<ArtifactProducer>,
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]
    use super::*;

    fn entry(path: &str, byte: u8) -> BundleEntry {
        BundleEntry {
            path: path.into(),
            content_hash: Sha256Digest::of(&[byte]),
            size_bytes: 1,
        }
    }

    #[test]
    fn bundle_hash_is_order_independent() {
        let a = BundleIndex {
            normalize_line_endings: false,
            entries: vec![entry("a", 1), entry("b/c", 2)],
        };
        let b = BundleIndex {
            normalize_line_endings: false,
            entries: vec![entry("b/c", 2), entry("a", 1)],
        };
        assert_eq!(a.content_hash().unwrap(), b.content_hash().unwrap());
        let c = BundleIndex {
            normalize_line_endings: true,
            ..a.clone()
        };
        assert_ne!(a.content_hash().unwrap(), c.content_hash().unwrap());
    }

    #[test]
    fn media_types() {
        assert!("application/json".parse::<MediaType>().is_ok());
        assert!("text/x-python".parse::<MediaType>().is_ok());
        assert!("Application/JSON".parse::<MediaType>().is_err());
        assert!("text/plain; charset=utf-8".parse::<MediaType>().is_err());
    }
}
