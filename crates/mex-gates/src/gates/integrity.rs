//! G-INTEGRITY: inputs verified in the store, params references and paths,
//! the 32 KiB inline rule, replayed op ids.
//!
//! Replay decision: a replayed `op_id` is **refused** (`G-INTEGRITY.REPLAYED_OP_ID`),
//! never answered from a record. An op id is claimed only when the whole
//! pipeline admits the operation, atomically ([`OpLedger::claim`]), so a
//! denied operation can be fixed and resent under the same id, and two
//! concurrent admissions of one id cannot both pass. Refusing is simpler to
//! audit than idempotent answers, and idempotency is better served by the D3
//! result cache, which keys on content rather than on an id a planner chose.

use std::collections::BTreeSet;

use mex_envelope::{ArtifactHandle, Input, MAX_INLINE_PARAMS_BYTES, PlannedOperation};
use serde_json::Value;
use uuid::Uuid;

use mex_artifacts::{PathRef, UriTarget};

use crate::codes::{Finding, deny};

/// Checks an input handle against the artifact store: present, and stored
/// bytes match its hash and size. The artifact store implements it.
pub trait InputVerifier: Send + Sync {
    /// `Ok` when the handle resolves and verifies; otherwise a G-INTEGRITY
    /// finding (`ARTIFACT_MISSING`, `HASH_MISMATCH`, `SIZE_MISMATCH`,
    /// `HANDLE_MISMATCH`) without a pointer (the gate adds it).
    fn verify_input(&self, handle: &ArtifactHandle) -> Result<(), Finding>;
}

/// Remembers admitted op ids.
pub trait OpLedger: Send + Sync {
    /// Whether `op_id` was already admitted.
    fn seen(&self, op_id: Uuid) -> bool;
    /// Atomically record `op_id` as admitted; `false` when it already was.
    fn claim(&self, op_id: Uuid) -> bool;
}

/// An in-memory ledger (per process). The runtime backs it with the recorder
/// so that replays are refused across restarts.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    ids: std::sync::Mutex<std::collections::HashSet<Uuid>>,
}

impl OpLedger for MemoryLedger {
    fn seen(&self, op_id: Uuid) -> bool {
        match self.ids.lock() {
            Ok(ids) => ids.contains(&op_id),
            Err(poisoned) => poisoned.into_inner().contains(&op_id),
        }
    }
    fn claim(&self, op_id: Uuid) -> bool {
        match self.ids.lock() {
            Ok(mut ids) => ids.insert(op_id),
            Err(poisoned) => poisoned.into_inner().insert(op_id),
        }
    }
}

/// Check the inline rule, references, paths, inputs and replay.
pub fn check_integrity(
    op: &PlannedOperation,
    artifact_ref_params: &[String],
    entity_ref_params: &[String],
    store: &dyn InputVerifier,
    ledger: &dyn OpLedger,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    match op.params_canonical_len() {
        Ok(len) if len > MAX_INLINE_PARAMS_BYTES => findings.push(deny(
            "G-INTEGRITY.PARAMS_TOO_LARGE",
            "contract.inline_limit",
            format!("params are {len} bytes in canonical form, over the {MAX_INLINE_PARAMS_BYTES}-byte inline limit; put the large value in an input artifact and reference it from params"),
            Some("/params".into()),
        )),
        Ok(_) => {}
        Err(e) => findings.push(deny("G-INTEGRITY.PARAMS_TOO_LARGE", "contract.inline_limit", format!("params cannot be canonicalized: {e}"), Some("/params".into()))),
    }

    let mut declared = BTreeSet::new();
    let mut handles = Vec::new();
    let entities: BTreeSet<&str> = op
        .inputs
        .iter()
        .filter_map(|i| match i {
            Input::Entity(e) => Some(e.entity_id.as_str()),
            Input::Artifact(_) => None,
        })
        .collect();
    for (i, input) in op.inputs.iter().enumerate() {
        if let Input::Artifact(handle) = input {
            declared.insert(handle.artifact_id);
            handles.push(handle);
            if let Err(mut finding) = store.verify_input(handle) {
                finding.pointer = Some(format!("/inputs/{i}"));
                findings.push(finding);
            }
        }
    }

    for (key, value) in &op.params {
        let is_ref = key.ends_with("_ref")
            || key.ends_with("_refs")
            || artifact_ref_params.iter().any(|p| p == key);
        let pointer = format!("/params/{}", key.replace('~', "~0").replace('/', "~1"));
        let entity_ok = entity_ref_params.iter().any(|p| p == key);
        if is_ref && !(entity_ok && value.as_str().is_some_and(|v| entities.contains(v))) {
            check_reference(value, &pointer, &declared, &mut findings);
        }
        check_paths(key, value, &pointer, &handles, &mut findings);
    }

    if ledger.seen(op.op_id) {
        findings.push(deny(
            "G-INTEGRITY.REPLAYED_OP_ID",
            "integrity.op_id_unique",
            format!(
                "op_id {} was already admitted; every operation needs a fresh op_id",
                op.op_id
            ),
            Some("/op_id".into()),
        ));
    }
    findings
}

fn check_reference(
    value: &Value,
    pointer: &str,
    declared: &BTreeSet<Uuid>,
    findings: &mut Vec<Finding>,
) {
    match value {
        Value::String(s) => match Uuid::parse_str(s) {
            Ok(id) if declared.contains(&id) => {}
            Ok(id) => findings.push(deny(
                "G-INTEGRITY.UNDECLARED_REFERENCE",
                "integrity.params_reference_declared_inputs",
                format!("{pointer} references artifact {id}, which is not among the operation's inputs; add its handle to inputs"),
                Some(pointer.to_owned()),
            )),
            Err(_) => findings.push(deny(
                "G-INTEGRITY.UNDECLARED_REFERENCE",
                "integrity.params_reference_declared_inputs",
                format!("{pointer} must be the artifact_id (a UUID) of one of the operation's inputs, found {:?}", truncate(s)),
                Some(pointer.to_owned()),
            )),
        },
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_reference(item, &format!("{pointer}/{i}"), declared, findings);
            }
        }
        Value::Null => {}
        _ => findings.push(deny(
            "G-INTEGRITY.UNDECLARED_REFERENCE",
            "integrity.params_reference_declared_inputs",
            format!("{pointer} must be an artifact_id string (or an array of them)"),
            Some(pointer.to_owned()),
        )),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Keys whose string values are treated as store paths or URIs.
fn is_path_like_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["path", "file", "dir", "uri", "filename"]
        .iter()
        .any(|k| key == *k || key.ends_with(&format!("_{k}")) || key.ends_with(&format!("_{k}s")))
        || key == "paths"
        || key == "files"
}

/// Paths and URIs anywhere in params: any `mex:` or `file:` URI, and any value of a path-like key, must be a safe
/// relative path or a `mex://` URI (grammar: `mex_artifacts::path`), and a
/// `mex://` URI must name a declared input.
fn check_paths(
    key: &str,
    value: &Value,
    pointer: &str,
    declared: &[&ArtifactHandle],
    findings: &mut Vec<Finding>,
) {
    let path_like = is_path_like_key(key);
    walk_strings(value, pointer, &mut |s, at| {
        let lower = s.to_ascii_lowercase();
        // Network URLs (https:, ...) are not store paths; G-CAP governs the network.
        let uri = lower.starts_with("file:") || lower.starts_with("mex:");
        if !(uri || path_like) {
            return;
        }
        let escape = |why: String| {
            deny(
                "G-INTEGRITY.PATH_ESCAPE",
                "integrity.no_path_escape",
                format!(
                    "{at} = {:?}: {why}; refer to data by input artifact, or use a plain relative path",
                    truncate(s)
                ),
                Some(at.to_owned()),
            )
        };
        if let Some(why) = suspicious_spelling(s) {
            findings.push(escape(why.to_owned()));
            return;
        }
        match mex_artifacts::validate_reference(s) {
            Err(e) => findings.push(escape(e.to_string())),
            Ok(PathRef::Uri(uri)) => {
                let known = match uri.target {
                    UriTarget::Artifact(id) => declared.iter().any(|h| h.artifact_id == id),
                    UriTarget::Content(d) => declared.iter().any(|h| h.content_hash == d),
                };
                if !known {
                    findings.push(deny(
                        "G-INTEGRITY.UNDECLARED_REFERENCE",
                        "integrity.params_reference_declared_inputs",
                        format!("{at} = {uri} names an artifact that is not among the operation's inputs; add its handle to inputs"),
                        Some(at.to_owned()),
                    ));
                }
            }
            Ok(PathRef::Relative(_)) => {}
        }
    });
}

/// Spellings the path grammar accepts as literal names but that tools
/// downstream might decode or fold into a traversal: percent-encoded dots and
/// separators, look-alike dots and slashes, and home references.
fn suspicious_spelling(s: &str) -> Option<&'static str> {
    let lower = s.to_ascii_lowercase();
    if ["%2e", "%2f", "%5c", "%00"]
        .iter()
        .any(|p| lower.contains(p))
    {
        return Some("it contains percent-encoded path characters");
    }
    if s.chars().any(|c| {
        matches!(
            c,
            '\u{FF0E}'
                | '\u{FF0F}'
                | '\u{2024}'
                | '\u{2215}'
                | '\u{2044}'
                | '\u{FE52}'
                | '\u{FF3C}'
        )
    }) {
        return Some("it contains a look-alike dot or slash");
    }
    if s.starts_with('~') {
        return Some("it refers to a home directory");
    }
    None
}

fn walk_strings(value: &Value, at: &str, f: &mut dyn FnMut(&str, &str)) {
    match value {
        Value::String(s) => f(s, at),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_strings(item, &format!("{at}/{i}"), f);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                walk_strings(
                    item,
                    &format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    f,
                );
            }
        }
        _ => {}
    }
}
