//! The PlannedOperation envelope (`poe-1.0`, docs/contract.md §3) and its strict
//! front-door parser.

use std::io::Read;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::artifact::Input;
use crate::budget::{BudgetSpec, EvidencePolicy, OutputSpec};
use crate::canonical;
use crate::capability::Capability;
use crate::determinism::DeterminismLevel;
use crate::digest::Sha256Digest;
use crate::error::EnvelopeError;
use crate::ids::{EngineId, OperationName, SchemaVersion};
use crate::{MAX_SAFE_INTEGER, json, pointer};

/// The largest envelope document the parser reads (1 MiB). Inline params are
/// capped far lower by G-INTEGRITY; this cap bounds parsing work and memory.
/// Every entry point reads at most this plus one byte (see
/// [`read_envelope_bytes`]) and refuses a document that fills it.
pub const MAX_ENVELOPE_BYTES: usize = 1 << 20;

/// The most memory the front door lets a parsed envelope take (8 MiB,
/// estimated conservatively by [`json::from_slice_within`]): a 1 MiB document
/// of tiny nested objects would otherwise take about a hundred times its size.
/// An admissible envelope (inline params at most 32 KiB) needs well under it.
pub const MAX_ENVELOPE_VALUE_BYTES: usize = 8 << 20;

/// Read an envelope from `reader` (a file, stdin, a socket), stopping after
/// [`MAX_ENVELOPE_BYTES`] + 1 bytes: enough for
/// [`PlannedOperation::from_json_slice`] to refuse an oversized document
/// without ever holding it. Memory used is bounded whatever the input.
pub fn read_envelope_bytes<R: Read>(reader: R) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_ENVELOPE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The largest document [`PlannedOperation::from_json_slice`] reads straight
/// into the typed value without first scanning it (32 KiB). The strict reader
/// charges at most 180 bytes of estimated memory per byte of text (the
/// densest text, objects nested in objects, charges 896 bytes per 5-byte
/// `{"":}` level), so such a document stays far below
/// [`MAX_ENVELOPE_VALUE_BYTES`], and the budget cannot refuse it.
pub(crate) const FAST_PATH_MAX_BYTES: usize = 32 << 10;

const _: () = assert!(FAST_PATH_MAX_BYTES * 180 < MAX_ENVELOPE_VALUE_BYTES);

/// The most capabilities one operation may request. The list is small by
/// nature (one entry per kind and scope); the bound keeps a hostile list from
/// turning into thousands of gate findings on the record.
pub const MAX_CAPABILITIES: usize = 64;

/// The most inputs one operation may name.
pub const MAX_INPUTS: usize = 1024;

/// The inline rule (`docs/contract.md §3.1`): canonical params above this
/// many bytes must be passed as an input artifact.
pub const MAX_INLINE_PARAMS_BYTES: usize = 32 * 1024;

/// One engine invocation, planned by an untrusted author.
///
/// Fields are public so embedders can build operations in code; a value built
/// that way has well-formed identifiers by construction but has not passed the
/// cross-field rules, which [`PlannedOperation::validate`] checks and G-SCHEMA
/// re-runs on every operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "PlannedOperation (poe-1.0)")]
pub struct PlannedOperation {
    /// Always `poe-1.0`.
    pub schema_version: SchemaVersion,
    /// Unique per operation.
    #[serde(deserialize_with = "crate::uuid_text::deserialize")]
    #[schemars(with = "crate::uuid_text::CanonicalUuid")]
    pub op_id: Uuid,
    /// The engine to run.
    pub engine_id: EngineId,
    /// Semver requirement the implementation must satisfy, e.g. `^1.0`. The
    /// pattern admits every requirement the parser accepts; the finer rules
    /// of the semver grammar (no leading zeros, where a wildcard may stand)
    /// are the parser's.
    #[schemars(
        with = "String",
        regex(
            pattern = r"^ *[=<>~^]{0,2} *[0-9xX*][0-9A-Za-z.*+-]*( *, *[=<>~^]{0,2} *[0-9xX*][0-9A-Za-z.*+-]*)* *$"
        )
    )]
    pub engine_version_req: semver::VersionReq,
    /// The operation; its prefix must be the engine's name.
    pub operation: OperationName,
    /// Input artifacts and entity references (at most [`MAX_INPUTS`]).
    #[schemars(length(max = 1024))]
    pub inputs: Vec<Input>,
    /// Engine-specific params, validated against the operation's schema.
    /// Every number in them, at any depth, is within ±(2^53-1).
    #[serde(deserialize_with = "crate::json::strict_object")]
    #[schemars(with = "crate::json::SafeJsonObject")]
    pub params: Map<String, Value>,
    /// Capabilities the operation asks for (at most [`MAX_CAPABILITIES`]).
    #[schemars(length(max = 64))]
    pub capabilities_requested: Vec<Capability>,
    /// Resource budget.
    #[serde(deserialize_with = "budget_object")]
    pub budget: BudgetSpec,
    /// Requested determinism level.
    pub determinism: DeterminismLevel,
    /// Evidence to capture; required for D0/D1.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "evidence_policy_object"
    )]
    pub evidence_policy: Option<EvidencePolicy>,
    /// Expected outputs and limits.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "output_spec_object"
    )]
    pub output_spec: Option<OutputSpec>,
}

// The members the schema says are objects are read only from objects (see
// `json::object`).
fn budget_object<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BudgetSpec, D::Error> {
    json::object(
        d,
        "an object of budget limits by name, e.g. {\"wall_time_ms\": 5000}",
    )
}

fn evidence_policy_object<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<EvidencePolicy>, D::Error> {
    json::optional_object(
        d,
        "an object, e.g. {\"required\": true, \"capture\": [\"snapshot\"]}, or null",
    )
}

fn output_spec_object<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<OutputSpec>, D::Error> {
    json::optional_object(d, "an object, e.g. {\"max_outputs\": 4}, or null")
}

impl PlannedOperation {
    /// Parse untrusted bytes. Every error names a JSON pointer (or a line and
    /// column) and what was expected.
    ///
    /// An object of at most 32 KiB, or a larger plain one (see the
    /// [`json`](crate::json) module docs), is read once, straight into the
    /// typed value, with the strict reader's rules; any other document, and
    /// any failure, goes through the strict reader, which alone decides what
    /// is refused and where.
    ///
    /// # Example
    ///
    /// ```rust
    /// use mex_envelope::{DeterminismLevel, PlannedOperation};
    ///
    /// let valid = br#"{
    ///     "schema_version": "poe-1.0",
    ///     "op_id": "7d3c1f0e-0000-4000-8000-000000000101",
    ///     "engine_id": "engine.physics",
    ///     "engine_version_req": "^0.1",
    ///     "operation": "physics.evaluate_formula",
    ///     "inputs": [],
    ///     "params": {"output_unit": "Pa"},
    ///     "capabilities_requested": ["fs.write:artifacts"],
    ///     "budget": {"wall_time_ms": 5000, "output_bytes": 1048576},
    ///     "determinism": "D3"
    /// }"#;
    /// let op = PlannedOperation::from_json_slice(valid)?;
    /// assert_eq!(op.operation.as_str(), "physics.evaluate_formula");
    /// assert_eq!(op.determinism, DeterminismLevel::D3);
    ///
    /// // A refused document says what, where, and a stable code.
    /// let other_version = br#"{"schema_version": "poe-2.0"}"#;
    /// let err = PlannedOperation::from_json_slice(other_version).unwrap_err();
    /// assert_eq!(err.code(), "ENVELOPE.UNSUPPORTED_VERSION");
    /// assert_eq!(err.pointer(), Some("/schema_version"));
    ///
    /// // A member named twice is refused before anything else is looked at.
    /// let twice = br#"{"schema_version": "poe-1.0", "schema_version": "poe-1.0"}"#;
    /// let err = PlannedOperation::from_json_slice(twice).unwrap_err();
    /// assert_eq!(err.code(), "ENVELOPE.DUPLICATE_KEY");
    /// assert_eq!(err.pointer(), Some("/schema_version"));
    /// # Ok::<(), mex_envelope::EnvelopeError>(())
    /// ```
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge {
                size: bytes.len(),
                limit: MAX_ENVELOPE_BYTES,
            });
        }
        // The fast path: read once, straight into the typed value, and
        // check. The typed reading refuses what the strict reader refuses
        // (serde refuses a field named twice; params and inputs are read by
        // the strict reader's own visitor; every typed number is bounded),
        // except the memory budget, which a document of at most
        // `FAST_PATH_MAX_BYTES` cannot reach; a larger one is read this way
        // only when the byte scan of `json::is_plain_within` finds it plain.
        // Anything else, and any failure, goes the strict way below, which
        // decides and says where.
        let object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if object
            && (bytes.len() <= FAST_PATH_MAX_BYTES
                || json::is_plain_within(bytes, MAX_ENVELOPE_VALUE_BYTES))
            && let Ok(op) = serde_json::from_slice::<Self>(bytes)
            && op.validate().is_ok()
        {
            return Ok(op);
        }
        let value = json::from_slice_within(bytes, MAX_ENVELOPE_VALUE_BYTES)
            .map_err(EnvelopeError::from_json)?;
        // The strict reader already refused every number beyond ±(2^53-1).
        let (rest, params) = prepare(value, NumbersChecked::Yes)?;
        match Self::deserialize(rest) {
            Ok(op) => op.with_params(params),
            // Only a refused document pays for pointer tracking: read it
            // again through the path-tracking pass, which fails the same way
            // and says where.
            Err(_) => Self::from_json_value(
                json::from_slice_within(bytes, MAX_ENVELOPE_VALUE_BYTES)
                    .map_err(EnvelopeError::from_json)?,
            ),
        }
    }

    /// The op id a document *claims*, found without parsing it: the value of
    /// the one top-level `"op_id"` member, when it is a UUID in its wire
    /// spelling. `None` when there is no such member, more than one, or the
    /// bytes are not an object. Used only to label the record of a refused
    /// document; it scans the bytes once and allocates nothing, so it is safe
    /// on documents of any size or depth.
    pub fn claimed_op_id(bytes: &[u8]) -> Option<Uuid> {
        claimed_op_id(bytes)
    }

    /// The id under which a refused document is recorded and answered: the
    /// op id it claims ([`PlannedOperation::claimed_op_id`]), else a fresh
    /// random one, so that every refusal of an unreadable document has a
    /// record of its own that `mex log --op <id>` finds (they were all
    /// filed under the nil id once).
    pub fn refusal_id(claimed: Option<Uuid>) -> Uuid {
        claimed.unwrap_or_else(Uuid::new_v4)
    }

    /// Parse untrusted text.
    pub fn from_json_str(text: &str) -> Result<Self, EnvelopeError> {
        Self::from_json_slice(text.as_bytes())
    }

    /// Parse an already-decoded JSON value with the same strictness.
    pub fn from_json_value(value: Value) -> Result<Self, EnvelopeError> {
        let (rest, params) = prepare(value, NumbersChecked::No)?;
        let op: Self = serde_path_to_error::deserialize(rest).map_err(|e| serde_error(&e))?;
        op.with_params(params)
    }

    /// Put the params [`prepare`] moved aside back, then check the
    /// cross-field rules.
    fn with_params(mut self, params: Option<Map<String, Value>>) -> Result<Self, EnvelopeError> {
        if let Some(params) = params {
            self.params = params;
        }
        self.validate()?;
        Ok(self)
    }

    /// The cross-field rules that types alone cannot state: the operation
    /// belongs to the engine, params integers are exact under RFC 8785, and
    /// evidence tokens are well-formed.
    pub fn validate(&self) -> Result<(), EnvelopeError> {
        for (pointer, len, max) in [
            ("/inputs", self.inputs.len(), MAX_INPUTS),
            (
                "/capabilities_requested",
                self.capabilities_requested.len(),
                MAX_CAPABILITIES,
            ),
        ] {
            if len > max {
                return Err(EnvelopeError::invalid(
                    pointer,
                    format!(
                        "{len} entries, over the limit of {max}: name each input or capability once"
                    ),
                ));
            }
        }
        if !self.operation.belongs_to(&self.engine_id) {
            return Err(EnvelopeError::invalid(
                "/operation",
                format!(
                    "operation {:?} does not belong to engine {:?}: its prefix must be {:?} (e.g. \"{}.<op>\")",
                    self.operation.as_str(),
                    self.engine_id.as_str(),
                    self.engine_id.name(),
                    self.engine_id.name()
                ),
            ));
        }
        // Pointers are built only when some number is out of range.
        if self.params.values().any(|v| !safe_numbers(v)) {
            let mut at = String::from("/params");
            for (key, v) in &self.params {
                let len = at.len();
                at.push('/');
                pointer::push_token(&mut at, key);
                check_safe_integers(v, &mut at)?;
                at.truncate(len);
            }
        }
        if let Some(policy) = &self.evidence_policy {
            policy.check_tokens().map_err(|(i, m)| {
                EnvelopeError::invalid(format!("/evidence_policy/capture/{i}"), m)
            })?;
        }
        Ok(())
    }

    /// Serialize to compact JSON.
    pub fn to_json(&self) -> Result<String, EnvelopeError> {
        serde_json::to_string(self).map_err(|e| EnvelopeError::Canonicalization {
            message: e.to_string(),
        })
    }

    /// The RFC 8785 canonical bytes of the whole envelope.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        canonical::to_vec(self)
    }

    /// The canonical digest of the whole envelope.
    pub fn canonical_digest(&self) -> Result<Sha256Digest, EnvelopeError> {
        canonical::digest(self)
    }

    /// The config hash: the canonical digest of the params.
    pub fn config_hash(&self) -> Result<Sha256Digest, EnvelopeError> {
        canonical::config_hash(&self.params)
    }

    /// Size of the params in canonical form, which the inline rule bounds by
    /// [`MAX_INLINE_PARAMS_BYTES`].
    pub fn params_canonical_len(&self) -> Result<usize, EnvelopeError> {
        canonical::object_len(&self.params)
    }
}

/// Whether every number of a value is already known to be within
/// ±(2^53-1) (the strict reader refuses the others).
#[derive(Clone, Copy, PartialEq, Eq)]
enum NumbersChecked {
    Yes,
    No,
}

/// The checks before the typed pass: an object, `schema_version` first,
/// numbers in range (unless already checked); then the params moved aside, so
/// the typed pass does not rebuild them value by value.
fn prepare(
    mut value: Value,
    numbers: NumbersChecked,
) -> Result<(Value, Option<Map<String, Value>>), EnvelopeError> {
    let Some(object) = value.as_object() else {
        return Err(EnvelopeError::invalid(
            "",
            format!(
                "expected a JSON object (a PlannedOperation), found {}",
                type_name(&value)
            ),
        ));
    };
    match object.get("schema_version") {
        None => {
            return Err(EnvelopeError::invalid(
                "/schema_version",
                "missing field schema_version: expected \"poe-1.0\"",
            ));
        }
        Some(Value::String(v)) => {
            v.parse::<SchemaVersion>()?;
        }
        Some(other) => {
            return Err(EnvelopeError::invalid(
                "/schema_version",
                format!(
                    "expected the string \"poe-1.0\", found {}",
                    type_name(other)
                ),
            ));
        }
    }
    if numbers == NumbersChecked::No {
        check_safe_integers(&value, &mut String::new())?;
    }
    let params = match value.as_object_mut().and_then(|o| o.get_mut("params")) {
        Some(Value::Object(map)) => Some(std::mem::take(map)),
        Some(other) => {
            return Err(EnvelopeError::invalid(
                "/params",
                format!(
                    "expected an object of engine-specific params, found {}",
                    type_name(other)
                ),
            ));
        }
        None => None,
    };
    Ok((value, params))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn serde_error(e: &serde_path_to_error::Error<serde_json::Error>) -> EnvelopeError {
    let mut at = pointer::from_serde_path(e.path());
    let raw = e.inner().to_string();
    let (inner, message) = pointer::unmark(pointer::strip_position(&raw));
    at.push_str(&inner);
    let message = pointer::strip_position(&message).to_owned();
    // Point at the missing value itself, not at its parent.
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
    {
        at.push('/');
        at.push_str(&pointer::escape_token(name));
        return EnvelopeError::invalid(at, format!("missing required field {name:?}"));
    }
    EnvelopeError::invalid(at, message)
}

/// Whether every number in `value` is within ±(2^53-1).
fn safe_numbers(value: &Value) -> bool {
    match value {
        Value::Number(n) => !out_of_range(n),
        Value::Array(items) => items.iter().all(safe_numbers),
        Value::Object(map) => map.values().all(safe_numbers),
        _ => true,
    }
}

/// Whether RFC 8785 cannot represent `n` exactly (beyond ±(2^53-1)).
#[allow(
    clippy::cast_precision_loss,
    reason = "comparing against 2^53 - 1, which is exactly representable as a double"
)]
fn out_of_range(n: &serde_json::Number) -> bool {
    if let Some(u) = n.as_u64() {
        u > MAX_SAFE_INTEGER
    } else if let Some(i) = n.as_i64() {
        i.unsigned_abs() > MAX_SAFE_INTEGER
    } else {
        n.as_f64()
            .is_some_and(|f| f.abs() > MAX_SAFE_INTEGER as f64)
    }
}

/// Refuse integers that RFC 8785 cannot represent exactly.
fn check_safe_integers(value: &Value, at: &mut String) -> Result<(), EnvelopeError> {
    match value {
        Value::Number(n) => {
            let too_big = out_of_range(n);
            if too_big {
                return Err(EnvelopeError::invalid(
                    at.clone(),
                    format!(
                        "the number {n} is outside ±(2^53-1) = ±9007199254740991, the range JSON hashing keeps exact; send a smaller number, or a string"
                    ),
                ));
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = at.len();
                at.push('/');
                at.push_str(&i.to_string());
                check_safe_integers(item, at)?;
                at.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = at.len();
                at.push('/');
                pointer::push_token(at, key);
                check_safe_integers(item, at)?;
                at.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// See [`PlannedOperation::claimed_op_id`]. A single pass with a depth
/// counter: strings are skipped honouring escapes, and only members of the
/// root object are looked at.
fn claimed_op_id(bytes: &[u8]) -> Option<Uuid> {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    if bytes[start] != b'{' {
        return None;
    }
    let mut depth = 0usize;
    let mut expect_key = false;
    let mut key_is_op_id = false;
    let mut value_is_op_id = false;
    let mut found: Option<&[u8]> = None;
    let mut seen = 0usize;
    let mut i = start;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' {
            let from = i + 1;
            let mut j = from;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            let text = bytes.get(from..j)?;
            if depth == 1 && expect_key {
                key_is_op_id = text == b"op_id";
                expect_key = false;
            } else if depth == 1 && value_is_op_id {
                seen += 1;
                found = Some(text);
                value_is_op_id = false;
            }
            i = j + 1;
            continue;
        }
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if depth == 1 && value_is_op_id {
            // The op_id member holds something other than a string.
            seen += 1;
            found = None;
            value_is_op_id = false;
        }
        match b {
            b'{' | b'[' => {
                depth += 1;
                expect_key = depth == 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => expect_key = true,
            b':' if depth == 1 => {
                value_is_op_id = key_is_op_id;
                key_is_op_id = false;
            }
            _ => {}
        }
        i += 1;
    }
    if seen != 1 {
        return None;
    }
    crate::uuid_text::parse_uuid(std::str::from_utf8(found?).ok()?).ok()
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]
    use super::*;

    /// `count` copies of `item`, comma-separated, in an array of at most
    /// `FAST_PATH_MAX_BYTES` bytes.
    fn filled(item: &str) -> String {
        let count = (FAST_PATH_MAX_BYTES - 2) / (item.len() + 1);
        format!("[{}]", vec![item; count].join(","))
    }

    #[test]
    fn a_document_the_fast_path_reads_unscanned_cannot_reach_the_memory_budget() {
        // The densest shapes the strict reader charges: objects nested in
        // objects (to the recursion limit), tiny objects, nested arrays,
        // empty strings, many distinct names. Each, at the fast path's size
        // limit, is charged under 180 bytes per byte of text.
        let nested = |depth: usize| format!("{}0{}", "{\"\":".repeat(depth), "}".repeat(depth));
        let wide: String = (0..FAST_PATH_MAX_BYTES / 12)
            .map(|i| format!("\"{i:x}\":0"))
            .collect::<Vec<_>>()
            .join(",");
        let docs = [
            filled(&nested(120)),
            filled(&nested(3)),
            filled("{\"\":0}"),
            filled("{\"\":[]}"),
            filled(&format!("{}0{}", "[".repeat(120), "]".repeat(120))),
            filled("[0]"),
            filled("\"\""),
            filled("0"),
            format!("{{{wide}}}"),
        ];
        for doc in docs {
            assert!(doc.len() <= FAST_PATH_MAX_BYTES, "{}", doc.len());
            let within = json::from_slice_within(doc.as_bytes(), doc.len() * 180);
            assert!(within.is_ok(), "{}: {within:?}", &doc[..40]);
        }
    }
}
