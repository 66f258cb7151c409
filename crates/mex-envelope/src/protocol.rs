//! The engine protocol (`mex-engine-1`): how mex talks to a *process*
//! engine, an executable or script it was not built with.
//!
//! One request in, one completion out. mex writes an [`EngineRequest`] as
//! JSON on the engine's stdin and closes it; the engine writes its outputs
//! as files under the request's `output_dir` and prints exactly one
//! [`EngineCompletion`] as JSON on stdout; anything on stderr becomes the
//! run's log. `docs/engine-protocol.md` holds a complete worked example.
//!
//! Everything an engine says is untrusted: a completion is read with a size
//! cap, parsed strictly (`deny_unknown_fields`, [`EngineCompletion::from_slice`]
//! checks the cross-field rules), and the runtime side checks every claimed
//! file, kind and media type against the registry before anything is stored.
//! Nothing in a completion sets status, timestamps or reserved provenance
//! keys: the runtime assembles the EngineResult.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{ArtifactKind, BudgetSpec, DeterminismLevel, EngineId, OperationName, Sha256Digest};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: &str = "mex-engine-1";

/// The largest completion document mex reads from an engine's stdout
/// (64 KiB); more is a typed failure, not a truncated parse.
pub const MAX_COMPLETION_BYTES: usize = 64 << 10;

/// At most this many outputs in one completion.
pub const MAX_COMPLETION_OUTPUTS: usize = 64;

/// At most this many environment identifiers in one completion.
pub const MAX_COMPLETION_ENVIRONMENT: usize = 32;

/// Provenance keys an engine may never set (the runtime's own).
pub const RESERVED_ENVIRONMENT_KEYS: &[&str] = &[
    "runtime",
    "os",
    "arch",
    "execution",
    "served_from_cache",
    "status",
    "started_at",
    "ended_at",
];

/// The protocol version tag (one value today).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ProtocolVersion {
    /// `mex-engine-1`.
    #[serde(rename = "mex-engine-1")]
    V1,
}

/// What mex writes on a process engine's stdin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "EngineRequest (mex-engine-1)",
    description = "Written by mex as JSON on a process engine's stdin: one operation to run."
)]
pub struct EngineRequest {
    /// Always `mex-engine-1`.
    pub protocol: ProtocolVersion,
    /// The operation's id.
    pub op_id: Uuid,
    /// The engine being run.
    pub engine_id: EngineId,
    /// The implementation id (from the registry).
    pub implementation_id: String,
    /// The implementation version (from the registry).
    pub implementation_version: String,
    /// The operation, e.g. `sous_chef.scale_recipe`.
    pub operation: OperationName,
    /// The params, already validated against the operation's params schema.
    pub params: Map<String, Value>,
    /// The input artifacts, verified, each as a read-only file in the jail.
    pub inputs: Vec<RequestInput>,
    /// The resolved budget (every field set); the OS enforces it.
    pub budget: BudgetSpec,
    /// The determinism level requested.
    pub determinism: DeterminismLevel,
    /// The one directory the engine may write its outputs to (absolute).
    pub output_dir: String,
    /// The capabilities granted to this run (by G-CAP, from the policy), so
    /// an engine can check a requirement again before acting on it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<crate::Capability>,
    /// Key material of the `secrets.use:<key_id>` capabilities granted to
    /// this run, by key id, and nothing else. Delivered only here, on the
    /// engine's stdin; never written to a file, recorded or logged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretValue>,
}

/// One secret as it crosses the engine's stdin: its `Debug` form never shows
/// the value, and the bytes are zeroed when it is dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wrap key material (taken by value so no other copy is left behind).
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The key material.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue([REDACTED])")
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// One input artifact as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestInput {
    /// The handle's artifact id (what `*_ref` params name).
    pub artifact_id: Uuid,
    /// Absolute path of the read-only copy in the jail.
    pub path: String,
    /// The handle's kind.
    pub kind: ArtifactKind,
    /// The handle's media type, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// SHA-256 of the bytes (verified before the run).
    pub content_hash: Sha256Digest,
    /// Size in bytes (verified before the run).
    pub size_bytes: u64,
}

/// How the engine says its run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompletionStatus {
    /// The outputs listed are the result.
    Succeeded,
    /// The engine refused or failed; `error` says why.
    Failed,
}

/// What a process engine prints on stdout, once, when it is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "EngineCompletion (mex-engine-1)",
    description = "Printed by a process engine as JSON on stdout when it is done: its outputs (files in the output directory), or a failure with a code from the engine's catalogue."
)]
pub struct EngineCompletion {
    /// Always `mex-engine-1`.
    pub protocol: ProtocolVersion,
    /// `succeeded` (with outputs) or `failed` (with an error).
    pub status: CompletionStatus,
    /// The outputs, in order; only with `succeeded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<CompletionOutput>,
    /// Why it failed; only with `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CompletionError>,
    /// Environment identifiers for provenance (e.g. the interpreter's
    /// version); keys `[A-Za-z0-9._-]{1,64}`, values at most 256 characters;
    /// reserved keys are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
}

/// One output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompletionOutput {
    /// Path relative to the output directory (`/`-separated, no `..`).
    pub file: String,
    /// The registry output type it is, e.g. `artifact.dataset`; must be one
    /// the operation declares.
    #[schemars(regex(pattern = r"^artifact\.[a-z0-9]+$"))]
    pub kind: String,
    /// Its media type; must be one the declared output allows.
    pub media_type: String,
}

/// A failure the engine reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompletionError {
    /// A code from the engine's failure-code catalogue (anything else is
    /// reported as `PROC_UNDECLARED_FAILURE_CODE`).
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
}

/// Why a completion document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompletionParseError {
    /// Larger than [`MAX_COMPLETION_BYTES`].
    #[error("the completion is {0} bytes, over the {MAX_COMPLETION_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not one JSON document of the right shape.
    #[error("the completion is not a mex-engine-1 completion: {0}")]
    Malformed(String),
}

impl EngineCompletion {
    /// Parse untrusted completion bytes (what the engine printed on stdout,
    /// surrounding whitespace allowed) and check the cross-field rules.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CompletionParseError> {
        if bytes.len() > MAX_COMPLETION_BYTES {
            return Err(CompletionParseError::TooLarge(bytes.len()));
        }
        let bad = CompletionParseError::Malformed;
        let c: Self = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        match (c.status, &c.error) {
            (CompletionStatus::Succeeded, Some(_)) => {
                return Err(bad("status succeeded must not carry an error".into()));
            }
            (CompletionStatus::Failed, None) => {
                return Err(bad("status failed needs an error {code, message}".into()));
            }
            (CompletionStatus::Failed, Some(_)) if !c.outputs.is_empty() => {
                return Err(bad("status failed must not list outputs".into()));
            }
            _ => {}
        }
        if c.outputs.len() > MAX_COMPLETION_OUTPUTS {
            return Err(bad(format!(
                "{} outputs, more than the {MAX_COMPLETION_OUTPUTS} allowed",
                c.outputs.len()
            )));
        }
        if c.environment.len() > MAX_COMPLETION_ENVIRONMENT {
            return Err(bad(format!(
                "{} environment identifiers, more than the {MAX_COMPLETION_ENVIRONMENT} allowed",
                c.environment.len()
            )));
        }
        for (k, v) in &c.environment {
            let key_ok = !k.is_empty()
                && k.len() <= 64
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !key_ok {
                return Err(bad(format!(
                    "environment key {k:?} is not [A-Za-z0-9._-]{{1,64}}"
                )));
            }
            if RESERVED_ENVIRONMENT_KEYS.contains(&k.as_str()) || k.starts_with("sandbox.") {
                return Err(bad(format!(
                    "environment key {k:?} is reserved for the runtime; an engine cannot set it"
                )));
            }
            if v.chars().count() > 256 {
                return Err(bad(format!(
                    "environment value of {k:?} is longer than 256 characters"
                )));
            }
        }
        if let Some(e) = &c.error
            && (e.code.len() > 128 || e.message.len() > 4096)
        {
            return Err(bad(
                "error code longer than 128 or message longer than 4096 bytes".into(),
            ));
        }
        Ok(c)
    }
}
