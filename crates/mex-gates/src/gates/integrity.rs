//! G-INTEGRITY: inputs verified in the store, params references and paths,
//! the 32 KiB inline rule, replayed op ids.
//!
//! Replay decision: a replayed `op_id` is **refused** (`G-INTEGRITY.REPLAYED_OP_ID`),
//! never answered from a record. Refusing is simpler to audit than idempotent
//! answers, and idempotency is better served by the D3 result cache, which
//! keys on content rather than on an id a planner chose.
//!
//! Who claims: the gate only *looks up* the op id in a trusted claim store
//! ([`OpClaims`], one indexed lookup whatever the size of the log); it makes
//! no claim. The claim is made by whoever commits the admission: the runtime
//! claims the op id in the same transaction that records receipt and
//! admission, and that claim is atomic across threads and processes (exactly
//! one wins). A request that passes this lookup but loses that race is
//! denied with the same code ([`replayed_op_id`]). Only admitted operations
//! claim, so a denied operation can be fixed and resent under the same id;
//! an op id whose run was interrupted (its process died) stays claimed and
//! never runs again.

use std::collections::BTreeSet;

use mex_envelope::{ArtifactHandle, Input, MAX_INLINE_PARAMS_BYTES, PlannedOperation};
use serde_json::Value;
use uuid::Uuid;

use mex_artifacts::UriTarget;
use mex_artifacts::internal::PathRef;

use crate::codes::{Finding, deny};

/// Checks an input handle against the artifact store: present, and stored
/// bytes match its hash and size. The artifact store implements it.
pub trait InputVerifier: Send + Sync {
    /// `Ok` when the handle resolves and verifies; otherwise a G-INTEGRITY
    /// finding (`ARTIFACT_MISSING`, `HASH_MISMATCH`, `SIZE_MISMATCH`,
    /// `HANDLE_MISMATCH`) without a pointer (the gate adds it).
    fn verify_input(&self, handle: &ArtifactHandle) -> Result<(), Finding>;
}

/// How an op id was already used, as the claim store says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Claimed {
    /// Admitted; its run has not completed (in progress, or its process died
    /// and it is about to be recorded as interrupted).
    Running,
    /// Admitted and completed.
    Completed,
    /// Admitted, then its process ended before it completed; recorded as
    /// failed (`RUNTIME.INTERRUPTED`).
    Interrupted,
}

/// The trusted record of admitted op ids (a fact source, like [`Catalog`]
/// and [`InputVerifier`]). The runtime implements it over the Flight
/// Recorder's claim table. Looking up makes no claim.
///
/// [`Catalog`]: crate::internal::Catalog
pub trait OpClaims: Send + Sync {
    /// `Ok(None)` when `op_id` was never admitted, `Ok(Some(how))` when it
    /// was, `Err(why)` when the record could not be read (the gate then
    /// treats the id as used: fail closed).
    fn claimed(&self, op_id: Uuid) -> Result<Option<Claimed>, String>;
}

/// An in-memory claim store, for tests and embedders that admit without a
/// runtime: [`MemoryClaims::claim`] is the claim a runtime would make when
/// recording the admission.
#[derive(Debug, Default)]
pub struct MemoryClaims {
    ids: std::sync::Mutex<std::collections::HashMap<Uuid, Claimed>>,
}

impl MemoryClaims {
    /// Claim `op_id` as `how`; `false` (and nothing changes) when it already
    /// was claimed.
    pub fn claim(&self, op_id: Uuid, how: Claimed) -> bool {
        let mut ids = self
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match ids.entry(op_id) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(how);
                true
            }
        }
    }
}

impl OpClaims for MemoryClaims {
    fn claimed(&self, op_id: Uuid) -> Result<Option<Claimed>, String> {
        Ok(self
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&op_id)
            .copied())
    }
}

/// The `G-INTEGRITY.REPLAYED_OP_ID` denial for an op id already used as
/// `how`. Also what the runtime answers when its atomic claim loses a race
/// that this gate's lookup could not see.
pub fn replayed_op_id(op_id: Uuid, how: Claimed) -> Finding {
    let state = match how {
        Claimed::Running => "its run is in progress",
        Claimed::Completed => "it has completed",
        Claimed::Interrupted => {
            "its run was interrupted (recorded as failed, RUNTIME.INTERRUPTED) and an op id never runs twice"
        }
    };
    deny(
        "G-INTEGRITY.REPLAYED_OP_ID",
        "integrity.op_id_unique",
        format!(
            "op_id {op_id} was already admitted ({state}); every operation needs a fresh op_id: send it again under a new one"
        ),
        Some("/op_id".into()),
    )
}

/// Check the inline rule, references, paths, inputs and replay.
pub fn check_integrity(
    op: &PlannedOperation,
    artifact_ref_params: &[String],
    entity_ref_params: &[String],
    store: &dyn InputVerifier,
    claims: &dyn OpClaims,
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
        // The pointer is needed only for a finding; build it once, if at all.
        let pointer = std::cell::OnceCell::new();
        let pointer = || {
            pointer
                .get_or_init(|| mex_envelope::pointer::join("/params", key))
                .as_str()
        };
        let entity_ok = entity_ref_params.iter().any(|p| p == key);
        if is_ref && !(entity_ok && value.as_str().is_some_and(|v| entities.contains(v))) {
            check_reference(value, &pointer, &declared, &mut findings);
        }
        check_paths(key, value, &pointer, &handles, &mut findings);
    }

    match claims.claimed(op.op_id) {
        Ok(None) => {}
        Ok(Some(how)) => findings.push(replayed_op_id(op.op_id, how)),
        Err(why) => findings.push(deny(
            "G-INTEGRITY.REPLAYED_OP_ID",
            "integrity.op_id_unique",
            format!(
                "the record of admitted op ids could not be read ({why}), so op_id {} is treated as used (fail closed); check the Flight Recorder and retry",
                op.op_id
            ),
            Some("/op_id".into()),
        )),
    }
    findings
}

fn check_reference<'p>(
    value: &Value,
    pointer: &dyn Fn() -> &'p str,
    declared: &BTreeSet<Uuid>,
    findings: &mut Vec<Finding>,
) {
    match value {
        Value::String(s) => match Uuid::parse_str(s) {
            Ok(id) if declared.contains(&id) => {}
            Ok(id) => findings.push(deny(
                "G-INTEGRITY.UNDECLARED_REFERENCE",
                "integrity.params_reference_declared_inputs",
                format!("{} references artifact {id}, which is not among the operation's inputs; add its handle to inputs", pointer()),
                Some(pointer().to_owned()),
            )),
            Err(_) => findings.push(deny(
                "G-INTEGRITY.UNDECLARED_REFERENCE",
                "integrity.params_reference_declared_inputs",
                format!("{} must be the artifact_id (a UUID) of one of the operation's inputs, found {}", pointer(), mex_envelope::excerpt(s)),
                Some(pointer().to_owned()),
            )),
        },
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let at = std::cell::OnceCell::new();
                let at = || at.get_or_init(|| format!("{}/{i}", pointer())).as_str();
                check_reference(item, &at, declared, findings);
            }
        }
        Value::Null => {}
        _ => findings.push(deny(
            "G-INTEGRITY.UNDECLARED_REFERENCE",
            "integrity.params_reference_declared_inputs",
            format!("{} must be an artifact_id string (or an array of them)", pointer()),
            Some(pointer().to_owned()),
        )),
    }
}

/// Keys whose string values are treated as store paths or URIs: `path`,
/// `file`, `dir`, `uri`, `filename`, or a key ending in `_<one of them>` or
/// `_<one of them>s`, or `paths` / `files`, ignoring ASCII case. Compared in
/// place: admission runs this for every params key.
fn is_path_like_key(key: &str) -> bool {
    let key = key.as_bytes();
    // `key` ends with `_word`.
    let ends_with_word = |key: &[u8], word: &str| {
        key.len()
            .checked_sub(word.len() + 1)
            .and_then(|i| key.get(i..))
            .is_some_and(|tail| {
                tail.first() == Some(&b'_')
                    && tail
                        .get(1..)
                        .is_some_and(|w| w.eq_ignore_ascii_case(word.as_bytes()))
            })
    };
    let singular = match key.split_last() {
        Some((b's' | b'S', stem)) => Some(stem),
        _ => None,
    };
    ["path", "file", "dir", "uri", "filename"].iter().any(|k| {
        key.eq_ignore_ascii_case(k.as_bytes())
            || ends_with_word(key, k)
            || singular.is_some_and(|stem| ends_with_word(stem, k))
    }) || key.eq_ignore_ascii_case(b"paths")
        || key.eq_ignore_ascii_case(b"files")
}

/// Whether `s` starts with the ASCII `prefix`, ignoring ASCII case.
fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// Paths and URIs anywhere in params: any `mex:` or `file:` URI, and any value of a path-like key, must be a safe
/// relative path or a `mex://` URI (grammar: `mex_artifacts::path`), and a
/// `mex://` URI must name a declared input.
fn check_paths<'p>(
    key: &str,
    value: &Value,
    pointer: &dyn Fn() -> &'p str,
    declared: &[&ArtifactHandle],
    findings: &mut Vec<Finding>,
) {
    let path_like = is_path_like_key(key);
    walk_strings(value, &mut Vec::new(), &mut |s, below| {
        // Network URLs (https:, ...) are not store paths; G-CAP governs the network.
        let uri = starts_with_ignore_case(s, "file:") || starts_with_ignore_case(s, "mex:");
        if !(uri || path_like) {
            return;
        }
        let at = render(pointer(), below);
        let escape = |why: String| {
            deny(
                "G-INTEGRITY.PATH_ESCAPE",
                "integrity.no_path_escape",
                format!(
                    "{at} = {}: {why}; refer to data by input artifact, or use a plain relative path",
                    mex_envelope::excerpt(s)
                ),
                Some(at.clone()),
            )
        };
        if let Some(why) = suspicious_spelling(s) {
            findings.push(escape(why.to_owned()));
            return;
        }
        match mex_artifacts::internal::validate_reference(s) {
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
                        Some(at.clone()),
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

/// A step below a params value: an array index or a member name.
enum Step<'v> {
    Index(usize),
    Key(&'v str),
}

/// `base` followed by the steps, as a JSON pointer (built only for a finding).
fn render(base: &str, steps: &[Step<'_>]) -> String {
    let mut out = base.to_owned();
    for step in steps {
        out.push('/');
        match step {
            Step::Index(i) => out.push_str(&i.to_string()),
            Step::Key(k) => mex_envelope::pointer::push_token(&mut out, k),
        }
    }
    out
}

/// Every string in `value`, with the steps from `value` down to it.
fn walk_strings<'v>(
    value: &'v Value,
    steps: &mut Vec<Step<'v>>,
    f: &mut dyn FnMut(&str, &[Step<'v>]),
) {
    match value {
        Value::String(s) => f(s, steps),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                steps.push(Step::Index(i));
                walk_strings(item, steps, f);
                steps.pop();
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                steps.push(Step::Key(k));
                walk_strings(item, steps, f);
                steps.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]

    use super::*;

    struct AllInputsOk;
    impl InputVerifier for AllInputsOk {
        fn verify_input(&self, _: &ArtifactHandle) -> Result<(), Finding> {
            Ok(())
        }
    }

    struct Unreadable;
    impl OpClaims for Unreadable {
        fn claimed(&self, _: Uuid) -> Result<Option<Claimed>, String> {
            Err("disk on fire".into())
        }
    }

    fn op() -> PlannedOperation {
        PlannedOperation::from_json_slice(
            br#"{"schema_version": "poe-1.0", "op_id": "11111111-1111-4111-8111-000000000001",
                "engine_id": "engine.physics", "engine_version_req": "*",
                "operation": "physics.check_units", "inputs": [], "params": {},
                "capabilities_requested": [], "budget": {"wall_time_ms": 1000},
                "determinism": "D3"}"#,
        )
        .unwrap()
    }

    fn replay_findings(claims: &dyn OpClaims) -> Vec<Finding> {
        check_integrity(&op(), &[], &[], &AllInputsOk, claims)
            .into_iter()
            .filter(|f| f.code.as_str() == "G-INTEGRITY.REPLAYED_OP_ID")
            .collect()
    }

    #[test]
    fn path_like_keys_are_recognised_as_before_ignoring_ascii_case() {
        // The allocating spelling this replaced, kept as the reference.
        fn reference(key: &str) -> bool {
            let key = key.to_ascii_lowercase();
            ["path", "file", "dir", "uri", "filename"].iter().any(|k| {
                key == *k || key.ends_with(&format!("_{k}")) || key.ends_with(&format!("_{k}s"))
            }) || key == "paths"
                || key == "files"
        }
        let keys = [
            "path",
            "PATH",
            "Path",
            "paths",
            "files",
            "file",
            "dir",
            "uri",
            "filename",
            "output_path",
            "OUTPUT_PATH",
            "input_files",
            "input_FILES",
            "src_dirs",
            "a_uri",
            "a_uris",
            "my_filename",
            "my_filenames",
            "_path",
            "_paths",
            "s",
            "S",
            "",
            "_",
            "pathx",
            "xpath",
            "x_pathss",
            "x-path",
            "dirs",
            "uris",
            "filenames",
            "x_dirS",
            "x_Dir",
            "ßpath",
            "é_path",
            "_é",
            "x_ᵖath",
            "seed",
            "format",
            "expr_ref",
        ];
        for key in keys {
            assert_eq!(is_path_like_key(key), reference(key), "{key:?}");
        }
    }

    #[test]
    fn a_fresh_op_id_passes_and_looking_up_claims_nothing() {
        let claims = MemoryClaims::default();
        assert!(replay_findings(&claims).is_empty());
        assert!(replay_findings(&claims).is_empty());
        assert_eq!(claims.claimed(op().op_id), Ok(None));
    }

    #[test]
    fn every_claimed_state_is_refused_with_its_reason() {
        for (how, says) in [
            (Claimed::Running, "in progress"),
            (Claimed::Completed, "completed"),
            (Claimed::Interrupted, "RUNTIME.INTERRUPTED"),
        ] {
            let claims = MemoryClaims::default();
            assert!(claims.claim(op().op_id, how));
            assert!(!claims.claim(op().op_id, Claimed::Completed));
            let found = replay_findings(&claims);
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].pointer.as_deref(), Some("/op_id"));
            assert!(found[0].message.contains(says), "{}", found[0].message);
        }
    }

    #[test]
    fn an_unreadable_claim_store_fails_closed() {
        let found = replay_findings(&Unreadable);
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("disk on fire"));
    }
}
