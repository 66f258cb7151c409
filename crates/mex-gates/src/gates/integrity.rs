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
    for (i, input) in op.inputs.iter().enumerate() {
        if let Input::Artifact(handle) = input {
            declared.insert(handle.artifact_id);
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
        if is_ref {
            check_reference(value, &pointer, &declared, &mut findings);
        }
        check_paths(key, value, &pointer, &mut findings);
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

/// Paths and URIs anywhere in params: a `mex://` or `file:` URI anywhere, and
/// any value of a path-like key, must be a safe relative path.
fn check_paths(key: &str, value: &Value, pointer: &str, findings: &mut Vec<Finding>) {
    let path_like = is_path_like_key(key);
    walk_strings(value, pointer, &mut |s, at| {
        let lower = s.to_ascii_lowercase();
        let uri = lower.starts_with("file:") || lower.starts_with("mex:");
        if (uri || path_like)
            && let Err(why) = safe_relative(s)
        {
            findings.push(deny(
                    "G-INTEGRITY.PATH_ESCAPE",
                    "integrity.no_path_escape",
                    format!("{at} = {:?} {why}; refer to data by input artifact, or use a plain relative path", truncate(s)),
                    Some(at.to_owned()),
                ));
        }
    });
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

/// A safe relative path: no scheme, not absolute, no `..`, no backslashes,
/// no NUL or control characters, no `~` home references, no percent-encoded
/// dots or slashes, no drive letters.
pub fn safe_relative(s: &str) -> Result<(), &'static str> {
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("file:") {
        return Err("is a file: URI, which can name any host path");
    }
    let s = s.strip_prefix("mex://").unwrap_or(s);
    if s.is_empty() {
        return Err("is empty");
    }
    if s.starts_with('/') || s.starts_with('\\') {
        return Err("is absolute");
    }
    if s.starts_with('~') {
        return Err("refers to a home directory");
    }
    if s.len() >= 2 && s.as_bytes()[1] == b':' {
        return Err("has a drive letter or scheme");
    }
    if s.contains('\\') {
        return Err("contains a backslash");
    }
    if s.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    let lower = s.to_ascii_lowercase();
    if lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains("%00")
    {
        return Err("contains percent-encoded path characters");
    }
    // Full-width and other look-alike dots/slashes that some tools fold.
    if s.chars().any(|c| {
        matches!(
            c,
            '\u{FF0E}' | '\u{FF0F}' | '\u{2024}' | '\u{2215}' | '\u{2044}' | '\u{FE52}'
        )
    }) {
        return Err("contains a look-alike dot or slash");
    }
    if s.split('/').any(|seg| seg == "..") {
        return Err("contains a .. segment");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::safe_relative;

    #[test]
    fn traversal_in_all_its_forms_is_refused() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "file:///etc/passwd",
            "FILE:/x",
            "mex://../x",
            "~/x",
            "~root/x",
            "C:\\x",
            "c:/x",
            "a\\..\\b",
            "a/%2e%2e/b",
            "%2E%2E/x",
            "a%2fb",
            "a\u{0}b",
            "\u{FF0E}\u{FF0E}/x",
            "..",
            "a/..",
            "",
            "mex:///abs",
        ] {
            assert!(safe_relative(bad).is_err(), "{bad:?} passed");
        }
        for ok in [
            "a",
            "a/b.txt",
            "dir/sub/file",
            "mex://out/report.json",
            "a..b",
            "...x",
        ] {
            assert!(safe_relative(ok).is_ok(), "{ok:?} refused");
        }
    }
}
