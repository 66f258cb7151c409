//! The EngineResult envelope and what it carries: status, typed errors, gate
//! denials and the provenance record (docs/contract.md §4).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::artifact::ArtifactHandle;
use crate::capability::Capability;
use crate::determinism::DeterminismLevel;
use crate::digest::Sha256Digest;
use crate::ids::{EngineId, ErrorCode, GateId, OperationName};
use crate::timestamp::UtcTimestamp;

/// The outcome of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultStatus {
    /// The engine ran and every result check passed.
    Succeeded,
    /// The engine ran (or tried to) and failed; see `errors`.
    Failed,
    /// A gate refused the operation; nothing ran. See `denials`.
    Denied,
    /// A budget (wall time, output, memory, CPU) was exceeded; partial outputs
    /// were discarded.
    BudgetExceeded,
}

impl ResultStatus {
    /// The text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Denied => "denied",
            Self::BudgetExceeded => "budget_exceeded",
        }
    }
}

/// A typed error from an engine or the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EngineError {
    /// Stable code, e.g. `PHYS_UNIT_MISMATCH` or `RUNTIME.PANIC`.
    pub code: ErrorCode,
    /// What went wrong and what to do, for a person.
    pub message: String,
    /// Optional artifact with the details (large diagnostics travel as artifacts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details_ref: Option<ArtifactHandle>,
}

/// Whether a gate outcome blocks the operation or lets it run in a degraded mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DenialSeverity {
    /// The operation is refused.
    Deny,
    /// The operation may run, but the outcome is recorded as degraded.
    Degraded,
}

/// A gate's refusal (or degradation) of an operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateDenial {
    /// The gate that decided, e.g. `G-CAP`.
    pub gate: GateId,
    /// Stable code, e.g. `G-CAP.CONSENT_MISSING`.
    pub code: ErrorCode,
    /// The rule that decided, named so an auditor can find it.
    pub rule: String,
    /// What was wrong and what to do.
    pub message: String,
    /// JSON pointer into the operation, when the denial is about one value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// Bounded structured details (never secret values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    /// Deny or degraded.
    pub severity: DenialSeverity,
}

/// Provenance of a run: what ran, on what, under which authority
/// (maps onto an in-toto Statement with a SLSA Provenance predicate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvenanceRecord {
    /// Engine.
    pub engine_id: EngineId,
    /// Engine interface version from the registry.
    #[schemars(with = "String")]
    pub engine_version: semver::Version,
    /// Implementation that ran.
    pub implementation_id: String,
    /// Its version.
    #[schemars(with = "String")]
    pub implementation_version: semver::Version,
    /// Operation.
    pub operation: OperationName,
    /// Determinism level admitted.
    pub determinism: DeterminismLevel,
    /// RFC 8785 digest of the params.
    pub config_hash: Sha256Digest,
    /// Inputs, as handles.
    pub inputs: Vec<ArtifactHandle>,
    /// Outputs, as handles.
    pub outputs: Vec<ArtifactHandle>,
    /// Capabilities the run was granted (a subset of those requested).
    pub capabilities_granted: Vec<Capability>,
    /// Ids of the consent records that authorized sensitive capabilities.
    #[serde(default)]
    pub consent_refs: Vec<String>,
    /// Environment identifiers (runtime version, OS, sandbox facts).
    pub environment: BTreeMap<String, String>,
}

/// The answer to one PlannedOperation. Assembled by the runtime, never by an engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EngineResult {
    /// The operation it answers.
    #[serde(deserialize_with = "crate::uuid_text::deserialize")]
    #[schemars(with = "crate::uuid_text::CanonicalUuid")]
    pub op_id: Uuid,
    /// Outcome.
    pub status: ResultStatus,
    /// When the runtime received the operation.
    pub started_at: UtcTimestamp,
    /// When the runtime finished with it.
    pub ended_at: UtcTimestamp,
    /// Output artifacts.
    pub outputs: Vec<ArtifactHandle>,
    /// Evidence artifacts; required for D0/D1.
    pub evidence: Vec<ArtifactHandle>,
    /// Provenance; absent only when nothing ran (denied before dispatch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<ProvenanceRecord>,
    /// Typed errors.
    #[serde(default)]
    pub errors: Vec<EngineError>,
    /// Gate denials and degradations.
    #[serde(default)]
    pub denials: Vec<GateDenial>,
    /// Engine logs, as an artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs_ref: Option<ArtifactHandle>,
    /// Whether the result was served from the D3 result cache.
    #[serde(default)]
    pub served_from_cache: bool,
}
