//! Events: the wire type of the Flight Recorder, the drafts callers append,
//! and the hash that chains them.

use std::fmt;
use std::str::FromStr;

use mex_envelope::{
    EngineId, EngineResult, ErrorCode, GateDenial, GateId, OperationName, PlannedOperation,
    ResultStatus, Sha256Digest, UtcTimestamp,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::RecorderError;
use crate::redact::Redactor;

/// Largest canonical (RFC 8785) size of an event payload, in bytes. A larger
/// payload is replaced by a truncation marker (see [`TRUNCATED_MARKER`]).
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024;

/// Longest string value kept whole inside a payload, in bytes; longer strings
/// keep a prefix and say how long they were. This is what keeps raw artifact
/// bytes (base64 or otherwise) out of the log: artifacts are recorded by digest.
pub const MAX_PAYLOAD_STRING_BYTES: usize = 2048;

/// Longest message kept, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 2048;

/// Longest rule name or capability text kept, in bytes.
pub const MAX_LABEL_BYTES: usize = 256;

/// Deepest payload nesting kept; deeper values are replaced by a marker.
pub const MAX_PAYLOAD_DEPTH: usize = 32;

/// The key of the object that replaces an oversized payload:
/// `{"$truncated": {"original_bytes": n, "sha256": "...", "preview": "..."}}`.
pub const TRUNCATED_MARKER: &str = "$truncated";

/// The `prev_hash` of the first event: 32 zero bytes.
pub const GENESIS_HASH: Sha256Digest = Sha256Digest::from_bytes([0; 32]);

/// What happened. The text form (`snake_case`) is stable: it is stored,
/// exported and hashed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The runtime received a PlannedOperation (after parsing).
    OpReceived,
    /// A gate passed the operation; `gate` and `rule` say which.
    GatePassed,
    /// A gate denied the operation; `gate`, `rule` and `code` say why.
    GateDenied,
    /// A gate let the operation run in a degraded mode.
    GateDegraded,
    /// A capability was granted; `capability` names it.
    CapabilityAllowed,
    /// A capability was refused.
    CapabilityDenied,
    /// An engine implementation started.
    EngineStarted,
    /// An engine implementation finished; `status` says how.
    EngineFinished,
    /// An output artifact was written; `artifact` is its digest.
    ArtifactWritten,
    /// A budget (time, memory, output) was exceeded.
    BudgetExceeded,
    /// The engine's result failed the runtime's result checks.
    ResultRejected,
    /// The operation completed; `status` is its result status.
    OpCompleted,
    /// A conformance run finished; `decision` is allow when the engine was
    /// certified callable.
    ConformanceRun,
    /// A person resolved a problem; the payload names its fingerprint.
    ProblemResolved,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 14] = [
        Self::OpReceived,
        Self::GatePassed,
        Self::GateDenied,
        Self::GateDegraded,
        Self::CapabilityAllowed,
        Self::CapabilityDenied,
        Self::EngineStarted,
        Self::EngineFinished,
        Self::ArtifactWritten,
        Self::BudgetExceeded,
        Self::ResultRejected,
        Self::OpCompleted,
        Self::ConformanceRun,
        Self::ProblemResolved,
    ];

    /// The stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpReceived => "op_received",
            Self::GatePassed => "gate_passed",
            Self::GateDenied => "gate_denied",
            Self::GateDegraded => "gate_degraded",
            Self::CapabilityAllowed => "capability_allowed",
            Self::CapabilityDenied => "capability_denied",
            Self::EngineStarted => "engine_started",
            Self::EngineFinished => "engine_finished",
            Self::ArtifactWritten => "artifact_written",
            Self::BudgetExceeded => "budget_exceeded",
            Self::ResultRejected => "result_rejected",
            Self::OpCompleted => "op_completed",
            Self::ConformanceRun => "conformance_run",
            Self::ProblemResolved => "problem_resolved",
        }
    }

    /// The decision a kind always carries, if it has a fixed one.
    pub fn fixed_decision(self) -> Option<Decision> {
        match self {
            Self::GatePassed | Self::CapabilityAllowed => Some(Decision::Allow),
            Self::GateDenied | Self::CapabilityDenied => Some(Decision::Deny),
            Self::GateDegraded => Some(Decision::Degrade),
            _ => None,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not an event kind"))
    }
}

/// The decision an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Allowed / passed / certified.
    Allow,
    /// Denied / refused / not certified.
    Deny,
    /// Allowed in a degraded mode.
    Degrade,
}

impl Decision {
    /// The stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Degrade => "degrade",
        }
    }
}

impl FromStr for Decision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Self::Allow),
            "deny" => Ok(Self::Deny),
            "degrade" => Ok(Self::Degrade),
            _ => Err(format!("{s:?} is not a decision")),
        }
    }
}

pub(crate) fn parse_status(s: &str) -> Result<ResultStatus, String> {
    [
        ResultStatus::Succeeded,
        ResultStatus::Failed,
        ResultStatus::Denied,
        ResultStatus::BudgetExceeded,
    ]
    .into_iter()
    .find(|st| st.as_str() == s)
    .ok_or_else(|| format!("{s:?} is not a result status"))
}

/// One recorded event: the wire form of the Flight Recorder, as stored,
/// queried and exported (one canonical JSON object per line in JSONL).
///
/// `hash` is SHA-256 over the RFC 8785 canonical form of the event without
/// its `hash` member; `prev_hash` is the previous event's hash
/// ([`GENESIS_HASH`] for seq 1), so the events form one chain. Optional
/// members are omitted when absent, which is what lets a newer schema add an
/// optional member without changing the hash of old events.
///
/// `recorded_at` is written in the fixed-width millisecond form
/// (`2026-11-27T12:00:00.120Z`). Events recorded before that form was adopted
/// were hashed with the shortest spelling of the same instant
/// (`2026-11-27T12:00:00.12Z`); [`Event::hash_is_valid`] and verification
/// accept a hash over either spelling, which name the same content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Position in the log: 1, 2, 3, ... with no gaps.
    pub seq: u64,
    /// When the recorder committed it (UTC, millisecond precision; never
    /// earlier than the previous event's).
    pub recorded_at: UtcTimestamp,
    /// What happened.
    pub kind: EventKind,
    /// The operation it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_id: Option<Uuid>,
    /// The engine it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_id: Option<EngineId>,
    /// The operation name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<OperationName>,
    /// The gate that decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateId>,
    /// The rule that decided, named so an auditor can find it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The capability decided on (as requested, so possibly unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    /// The decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The result status (engine_finished, op_completed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ResultStatus>,
    /// Stable code, e.g. `G-CAP.CONSENT_MISSING`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    /// Digest of the artifact written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Sha256Digest>,
    /// For a person: what happened and what to do (redacted, bounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Bounded (16 KiB canonical), redacted structured details.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub payload: Value,
    /// Hash of the previous event.
    pub prev_hash: Sha256Digest,
    /// SHA-256 of the canonical form of this event without `hash`.
    pub hash: Sha256Digest,
}

/// The hashed view of an event: every member but `hash`, spelled exactly as
/// [`Event`] spells them (a test checks the two agree).
#[derive(Serialize)]
struct EventBody<'a> {
    seq: u64,
    recorded_at: &'a str,
    kind: EventKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    op_id: &'a Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    engine_id: &'a Option<EngineId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    operation: &'a Option<OperationName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gate: &'a Option<GateId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    capability: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: &'a Option<Decision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: &'a Option<ResultStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: &'a Option<ErrorCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact: &'a Option<Sha256Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: &'a Option<String>,
    #[serde(skip_serializing_if = "Value::is_null")]
    payload: &'a Value,
    prev_hash: &'a Sha256Digest,
}

impl Event {
    /// The hash this event should carry: SHA-256 of its canonical form
    /// without `hash`.
    pub fn compute_hash(&self) -> Result<Sha256Digest, RecorderError> {
        self.hash_with_time(&self.recorded_at.to_string())
    }

    /// Only what links it into the chain (seq, kind, time, hashes); every
    /// other member is dropped.
    pub(crate) fn chain_links(self) -> Self {
        Self {
            seq: self.seq,
            recorded_at: self.recorded_at,
            kind: self.kind,
            op_id: None,
            engine_id: None,
            operation: None,
            gate: None,
            rule: None,
            capability: None,
            decision: None,
            status: None,
            code: None,
            artifact: None,
            message: None,
            payload: Value::Null,
            prev_hash: self.prev_hash,
            hash: self.hash,
        }
    }

    /// The hash this event carried if it was recorded before the fixed-width
    /// time form: the same body with `recorded_at` in its shortest spelling.
    /// `None` when that spelling is the fixed-width one (nothing to retry).
    pub fn compute_legacy_hash(&self) -> Result<Option<Sha256Digest>, RecorderError> {
        match self.recorded_at.to_shortest_rfc3339() {
            Some(text) if text != self.recorded_at.to_string() => {
                self.hash_with_time(&text).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Whether `hash` is this event's hash, in the current or the legacy time
    /// spelling.
    pub fn hash_matches(&self) -> Result<bool, RecorderError> {
        if self.compute_hash()? == self.hash {
            return Ok(true);
        }
        Ok(self.compute_legacy_hash()? == Some(self.hash))
    }

    fn hash_with_time(&self, recorded_at: &str) -> Result<Sha256Digest, RecorderError> {
        self.hash_with(recorded_at, None)
    }

    /// The hash over `recorded_at` as given; `payload` is the canonical
    /// text of `self.payload` when the caller already has it.
    pub(crate) fn hash_with(
        &self,
        recorded_at: &str,
        payload: Option<&[u8]>,
    ) -> Result<Sha256Digest, RecorderError> {
        if let Some(body) = self.canonical_body(recorded_at, payload) {
            return Ok(Sha256Digest::of(&body));
        }
        self.hash_with_canonicalizer(recorded_at)
    }

    /// The RFC 8785 form of [`EventBody`], written member by member in the
    /// canonical order (every member name is ASCII, so byte order is UTF-16
    /// order) instead of going through the generic canonicalizer, which
    /// builds and sorts a map per object: this is the hot path of every
    /// append and of verification. Strings are escaped by serde_json, whose
    /// escaping is RFC 8785's (a test checks both agree on hostile text).
    /// `None` when the fast form does not apply (a `seq` above 2^53, which
    /// RFC 8785 spells as a double); the canonicalizer then decides.
    fn canonical_body(&self, recorded_at: &str, payload: Option<&[u8]>) -> Option<Vec<u8>> {
        const MAX_EXACT: u64 = 1 << 53;
        if self.seq > MAX_EXACT {
            return None;
        }
        let mut out = Vec::with_capacity(512);
        out.push(b'{');
        let mut first = true;
        let mut member = |out: &mut Vec<u8>, name: &str| {
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
        };
        fn string<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Option<()> {
            serde_json::to_writer(out, value).ok()
        }
        // A digest is its lowercase hex in quotes (what its `Serialize`
        // writes), spelled here without allocating.
        fn digest(out: &mut Vec<u8>, value: &Sha256Digest) {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push(b'"');
            for b in value.as_bytes() {
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0x0f)]);
            }
            out.push(b'"');
        }
        if let Some(v) = &self.artifact {
            member(&mut out, "artifact");
            digest(&mut out, v);
        }
        if let Some(v) = &self.capability {
            member(&mut out, "capability");
            string(&mut out, v)?;
        }
        if let Some(v) = &self.code {
            member(&mut out, "code");
            string(&mut out, v)?;
        }
        if let Some(v) = &self.decision {
            member(&mut out, "decision");
            string(&mut out, v)?;
        }
        if let Some(v) = &self.engine_id {
            member(&mut out, "engine_id");
            string(&mut out, v)?;
        }
        if let Some(v) = &self.gate {
            member(&mut out, "gate");
            string(&mut out, v)?;
        }
        member(&mut out, "kind");
        string(&mut out, &self.kind)?;
        if let Some(v) = &self.message {
            member(&mut out, "message");
            string(&mut out, v)?;
        }
        if let Some(v) = &self.op_id {
            member(&mut out, "op_id");
            string(&mut out, v)?;
        }
        if let Some(v) = &self.operation {
            member(&mut out, "operation");
            string(&mut out, v)?;
        }
        if !self.payload.is_null() {
            member(&mut out, "payload");
            match payload {
                Some(text) => out.extend_from_slice(text),
                None => {
                    out.extend_from_slice(&mex_envelope::canonical::to_vec(&self.payload).ok()?)
                }
            }
        }
        member(&mut out, "prev_hash");
        digest(&mut out, &self.prev_hash);
        member(&mut out, "recorded_at");
        string(&mut out, recorded_at)?;
        if let Some(v) = &self.rule {
            member(&mut out, "rule");
            string(&mut out, v)?;
        }
        member(&mut out, "seq");
        out.extend_from_slice(self.seq.to_string().as_bytes());
        if let Some(v) = &self.status {
            member(&mut out, "status");
            string(&mut out, v)?;
        }
        out.push(b'}');
        Some(out)
    }

    /// The hash through the generic RFC 8785 canonicalizer (the reference
    /// the fast form is tested against).
    pub(crate) fn hash_with_canonicalizer(
        &self,
        recorded_at: &str,
    ) -> Result<Sha256Digest, RecorderError> {
        let body = EventBody {
            seq: self.seq,
            recorded_at,
            kind: self.kind,
            op_id: &self.op_id,
            engine_id: &self.engine_id,
            operation: &self.operation,
            gate: &self.gate,
            rule: &self.rule,
            capability: &self.capability,
            decision: &self.decision,
            status: &self.status,
            code: &self.code,
            artifact: &self.artifact,
            message: &self.message,
            payload: &self.payload,
            prev_hash: &self.prev_hash,
        };
        mex_envelope::canonical::digest(&body).map_err(RecorderError::canonicalization)
    }

    /// Whether `hash` matches the content.
    pub fn hash_is_valid(&self) -> bool {
        self.hash_matches().unwrap_or(false)
    }

    /// The canonical (RFC 8785) JSON of the whole event: one JSONL line.
    pub fn to_canonical_json(&self) -> Result<Vec<u8>, RecorderError> {
        mex_envelope::canonical::to_vec(self).map_err(RecorderError::canonicalization)
    }
}

/// What a caller appends: the content of an event. The recorder assigns
/// `seq`, `recorded_at`, `prev_hash` and `hash`, redacts secrets and bounds
/// the payload.
///
/// Build one with a constructor named after its kind
/// ([`EventDraft::gate_outcome`], [`EventDraft::op_completed`], ...) or with
/// [`EventDraft::new`] and the `with_*` setters.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDraft {
    kind: EventKind,
    op_id: Option<Uuid>,
    engine_id: Option<EngineId>,
    operation: Option<OperationName>,
    gate: Option<GateId>,
    rule: Option<String>,
    capability: Option<String>,
    decision: Option<Decision>,
    status: Option<ResultStatus>,
    code: Option<ErrorCode>,
    artifact: Option<Sha256Digest>,
    message: Option<String>,
    payload: Value,
}

impl EventDraft {
    /// A bare draft of `kind`; kinds with a fixed decision get it here.
    pub fn new(kind: EventKind) -> Self {
        Self {
            kind,
            op_id: None,
            engine_id: None,
            operation: None,
            gate: None,
            rule: None,
            capability: None,
            decision: kind.fixed_decision(),
            status: None,
            code: None,
            artifact: None,
            message: None,
            payload: Value::Null,
        }
    }

    /// `op_received` for an operation: its ids, config hash, determinism and
    /// requested capabilities (never its params, which may hold anything).
    pub fn op_received(op: &PlannedOperation) -> Self {
        let config_hash = op.config_hash().ok().map(|d| d.to_hex());
        Self::new(EventKind::OpReceived)
            .with_op_id(op.op_id)
            .with_engine(op.engine_id.clone())
            .with_operation(op.operation.clone())
            .with_payload(json!({
                "config_hash": config_hash,
                "determinism": op.determinism,
                "capabilities_requested": op.capabilities_requested,
                "inputs": op.inputs.len(),
            }))
    }

    /// `gate_passed`: `gate` passed the operation under `rule`.
    pub fn gate_passed(op_id: Uuid, gate: GateId, rule: impl Into<String>) -> Self {
        Self::new(EventKind::GatePassed)
            .with_op_id(op_id)
            .with_gate(gate)
            .with_rule(rule)
    }

    /// `gate_denied` or `gate_degraded` from a gate's denial record.
    pub fn gate_outcome(op_id: Uuid, denial: &GateDenial) -> Self {
        let kind = match denial.severity {
            mex_envelope::DenialSeverity::Deny => EventKind::GateDenied,
            mex_envelope::DenialSeverity::Degraded => EventKind::GateDegraded,
        };
        let mut payload = serde_json::Map::new();
        if let Some(p) = &denial.pointer {
            payload.insert("pointer".into(), Value::String(p.clone()));
        }
        if let Some(d) = &denial.details {
            payload.insert("details".into(), d.clone());
        }
        let draft = Self::new(kind)
            .with_op_id(op_id)
            .with_gate(denial.gate.clone())
            .with_rule(denial.rule.clone())
            .with_code(denial.code.clone())
            .with_message(denial.message.clone());
        if payload.is_empty() {
            draft
        } else {
            draft.with_payload(Value::Object(payload))
        }
    }

    /// `capability_allowed` / `capability_denied` for a requested capability
    /// (as text: an unknown capability is denied, and recorded as asked).
    pub fn capability(
        op_id: Uuid,
        capability: impl Into<String>,
        allowed: bool,
        rule: impl Into<String>,
    ) -> Self {
        let kind = if allowed {
            EventKind::CapabilityAllowed
        } else {
            EventKind::CapabilityDenied
        };
        let mut draft = Self::new(kind).with_op_id(op_id).with_rule(rule);
        draft.capability = Some(capability.into());
        draft
    }

    /// `engine_started`.
    pub fn engine_started(op_id: Uuid, engine: EngineId, operation: OperationName) -> Self {
        Self::new(EventKind::EngineStarted)
            .with_op_id(op_id)
            .with_engine(engine)
            .with_operation(operation)
    }

    /// `engine_finished` with the engine's status.
    pub fn engine_finished(
        op_id: Uuid,
        engine: EngineId,
        operation: OperationName,
        status: ResultStatus,
    ) -> Self {
        Self::new(EventKind::EngineFinished)
            .with_op_id(op_id)
            .with_engine(engine)
            .with_operation(operation)
            .with_status(status)
    }

    /// `artifact_written`: the artifact by digest and size, never its bytes.
    pub fn artifact_written(
        op_id: Uuid,
        digest: Sha256Digest,
        size_bytes: u64,
        media_type: &str,
    ) -> Self {
        let mut draft = Self::new(EventKind::ArtifactWritten)
            .with_op_id(op_id)
            .with_payload(json!({"size_bytes": size_bytes, "media_type": media_type}));
        draft.artifact = Some(digest);
        draft
    }

    /// `budget_exceeded`.
    pub fn budget_exceeded(op_id: Uuid, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(EventKind::BudgetExceeded)
            .with_op_id(op_id)
            .with_code(code)
            .with_message(message)
    }

    /// `result_rejected`: a result check refused the engine's result.
    pub fn result_rejected(op_id: Uuid, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(EventKind::ResultRejected)
            .with_op_id(op_id)
            .with_code(code)
            .with_message(message)
    }

    /// `op_completed` with a status.
    pub fn op_completed(op_id: Uuid, status: ResultStatus) -> Self {
        Self::new(EventKind::OpCompleted)
            .with_op_id(op_id)
            .with_status(status)
    }

    /// `op_completed` from the runtime's EngineResult: status, the first error
    /// code and message, and counts and digests of outputs (never contents).
    pub fn op_completed_from(result: &EngineResult) -> Self {
        let mut draft = Self::op_completed(result.op_id, result.status);
        if let Some(p) = &result.provenance {
            draft = draft
                .with_engine(p.engine_id.clone())
                .with_operation(p.operation.clone());
        }
        if let Some(err) = result.errors.first() {
            draft = draft
                .with_code(err.code.clone())
                .with_message(err.message.clone());
        }
        let outputs: Vec<String> = result
            .outputs
            .iter()
            .map(|h| h.content_hash.to_hex())
            .collect();
        draft.with_payload(json!({
            "outputs": outputs,
            "errors": result.errors.len(),
            "denials": result.denials.len(),
            "served_from_cache": result.served_from_cache,
        }))
    }

    /// `conformance_run` for an engine: `certified` is the decision.
    pub fn conformance_run(engine: EngineId, certified: bool, summary: Value) -> Self {
        let mut draft = Self::new(EventKind::ConformanceRun)
            .with_engine(engine)
            .with_payload(summary);
        draft.decision = Some(if certified {
            Decision::Allow
        } else {
            Decision::Deny
        });
        draft
    }

    /// Set the op id, engine and operation from a PlannedOperation.
    #[must_use]
    pub fn with_op(mut self, op: &PlannedOperation) -> Self {
        self.op_id = Some(op.op_id);
        self.engine_id = Some(op.engine_id.clone());
        self.operation = Some(op.operation.clone());
        self
    }

    /// Set the operation id. When the engine or operation is not set, the
    /// recorder fills them from the `op_received` event of this op id, so
    /// every event of an operation (and every problem it raises) is
    /// attributed to its engine and operation.
    #[must_use]
    pub fn with_op_id(mut self, op_id: Uuid) -> Self {
        self.op_id = Some(op_id);
        self
    }
    /// Set the engine.
    #[must_use]
    pub fn with_engine(mut self, engine: EngineId) -> Self {
        self.engine_id = Some(engine);
        self
    }
    /// Set the operation name.
    #[must_use]
    pub fn with_operation(mut self, operation: OperationName) -> Self {
        self.operation = Some(operation);
        self
    }
    /// Set the gate.
    #[must_use]
    pub fn with_gate(mut self, gate: GateId) -> Self {
        self.gate = Some(gate);
        self
    }
    /// Set the rule that decided.
    #[must_use]
    pub fn with_rule(mut self, rule: impl Into<String>) -> Self {
        self.rule = Some(rule.into());
        self
    }
    /// Set the capability text.
    #[must_use]
    pub fn with_capability(mut self, capability: impl Into<String>) -> Self {
        self.capability = Some(capability.into());
        self
    }
    /// Set the decision (must agree with the kind's fixed decision, if any).
    #[must_use]
    pub fn with_decision(mut self, decision: Decision) -> Self {
        self.decision = Some(decision);
        self
    }
    /// Set the result status.
    #[must_use]
    pub fn with_status(mut self, status: ResultStatus) -> Self {
        self.status = Some(status);
        self
    }
    /// Set the stable code.
    #[must_use]
    pub fn with_code(mut self, code: ErrorCode) -> Self {
        self.code = Some(code);
        self
    }
    /// Set the artifact digest.
    #[must_use]
    pub fn with_artifact(mut self, digest: Sha256Digest) -> Self {
        self.artifact = Some(digest);
        self
    }
    /// Set the message (redacted and bounded on append).
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
    /// Set the payload (redacted and bounded on append). Pass artifacts by
    /// digest, never their bytes.
    #[must_use]
    pub fn with_payload(mut self, payload: Value) -> Self {
        self.payload = payload;
        self
    }

    /// The kind.
    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// Check the draft, redact it and bound it: the form the recorder seals.
    pub(crate) fn prepare(self, redactor: &Redactor) -> Result<PreparedDraft, RecorderError> {
        let kind = self.kind;
        let invalid = |detail: String| RecorderError::InvalidEvent {
            kind: kind.as_str(),
            detail,
        };
        let need = |present: bool, what: &str| {
            if present {
                Ok(())
            } else {
                Err(invalid(format!("{what} is required for this kind")))
            }
        };
        match kind {
            EventKind::GatePassed | EventKind::GateDenied | EventKind::GateDegraded => {
                need(self.gate.is_some(), "gate (with_gate)")?;
                need(
                    self.rule.as_deref().is_some_and(|r| !r.trim().is_empty()),
                    "a non-empty rule (with_rule)",
                )?;
            }
            EventKind::CapabilityAllowed | EventKind::CapabilityDenied => {
                need(
                    self.capability.as_deref().is_some_and(|c| !c.is_empty()),
                    "capability (with_capability)",
                )?;
            }
            EventKind::EngineFinished | EventKind::OpCompleted => {
                need(self.status.is_some(), "status (with_status)")?;
            }
            EventKind::ArtifactWritten => {
                need(self.artifact.is_some(), "artifact digest (with_artifact)")?
            }
            EventKind::ConformanceRun => {
                need(self.engine_id.is_some(), "engine (with_engine)")?;
                need(self.decision.is_some(), "decision (with_decision)")?;
            }
            EventKind::OpReceived => need(self.op_id.is_some(), "op_id (with_op_id)")?,
            EventKind::ProblemResolved => need(self.code.is_some(), "code (with_code)")?,
            EventKind::EngineStarted | EventKind::BudgetExceeded | EventKind::ResultRejected => {}
        }
        if let (Some(fixed), Some(given)) = (kind.fixed_decision(), self.decision)
            && fixed != given
        {
            return Err(invalid(format!(
                "decision {} contradicts the kind, which always records {}",
                given.as_str(),
                fixed.as_str()
            )));
        }
        let (payload, payload_text) = bound_payload_text(redactor.redact_value(self.payload))?;
        Ok(PreparedDraft {
            kind,
            op_id: self.op_id,
            engine_id: self.engine_id,
            operation: self.operation,
            gate: self.gate,
            rule: self
                .rule
                .map(|r| truncate_text(&redactor.redact_text(&r), MAX_LABEL_BYTES)),
            capability: self
                .capability
                .map(|c| truncate_text(&redactor.redact_text(&c), MAX_LABEL_BYTES)),
            decision: self.decision.or(kind.fixed_decision()),
            status: self.status,
            code: self.code,
            artifact: self.artifact,
            message: self
                .message
                .map(|m| truncate_text(&redactor.redact_text(&m), MAX_MESSAGE_BYTES)),
            payload,
            payload_text,
        })
    }
}

/// A checked, redacted, bounded draft; sealing it into an [`Event`] only adds
/// the chain fields.
#[derive(Debug, Clone)]
pub(crate) struct PreparedDraft {
    kind: EventKind,
    op_id: Option<Uuid>,
    engine_id: Option<EngineId>,
    operation: Option<OperationName>,
    gate: Option<GateId>,
    rule: Option<String>,
    capability: Option<String>,
    decision: Option<Decision>,
    status: Option<ResultStatus>,
    code: Option<ErrorCode>,
    artifact: Option<Sha256Digest>,
    message: Option<String>,
    payload: Value,
    /// The canonical text of `payload` (`None` when it is null): hashed and
    /// stored as is, never serialized again.
    payload_text: Option<String>,
}

impl PreparedDraft {
    /// The canonical text of the payload, as stored.
    pub(crate) fn payload_text(&self) -> Option<&str> {
        self.payload_text.as_deref()
    }

    /// The op id whose `op_received` event should supply a missing engine
    /// or operation.
    pub(crate) fn needs_context(&self) -> Option<Uuid> {
        if self.engine_id.is_some() && self.operation.is_some()
            || self.kind == EventKind::OpReceived
        {
            None
        } else {
            self.op_id
        }
    }

    /// Fill a missing engine and operation (set ones are kept).
    pub(crate) fn fill_context(
        &mut self,
        engine_id: Option<EngineId>,
        operation: Option<OperationName>,
    ) {
        if self.engine_id.is_none() {
            self.engine_id = engine_id;
        }
        if self.operation.is_none() {
            self.operation = operation;
        }
    }

    /// Seal into an event at `seq`, chained after `prev_hash`.
    pub(crate) fn seal(
        &self,
        seq: u64,
        recorded_at: UtcTimestamp,
        prev_hash: Sha256Digest,
    ) -> Result<Event, RecorderError> {
        let mut event = Event {
            seq,
            recorded_at,
            kind: self.kind,
            op_id: self.op_id,
            engine_id: self.engine_id.clone(),
            operation: self.operation.clone(),
            gate: self.gate.clone(),
            rule: self.rule.clone(),
            capability: self.capability.clone(),
            decision: self.decision,
            status: self.status,
            code: self.code.clone(),
            artifact: self.artifact,
            message: self.message.clone(),
            payload: self.payload.clone(),
            prev_hash,
            hash: GENESIS_HASH,
        };
        event.hash = event.hash_with(
            &recorded_at.to_string(),
            self.payload_text.as_deref().map(str::as_bytes),
        )?;
        Ok(event)
    }
}

/// Cut text to at most `max` bytes on a character boundary, saying so.
pub(crate) fn truncate_text(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let marker = format!("…[truncated, {} bytes]", text.len());
    let mut cut = max.saturating_sub(marker.len());
    while cut > 0 && !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{marker}", &text[..cut])
}

fn bound_strings(value: Value, depth: usize) -> Value {
    if depth > MAX_PAYLOAD_DEPTH {
        return Value::String(format!(
            "[nesting deeper than {MAX_PAYLOAD_DEPTH} levels removed]"
        ));
    }
    match value {
        Value::String(s) if s.len() > MAX_PAYLOAD_STRING_BYTES => {
            let digest = Sha256Digest::of(s.as_bytes());
            let mut cut = 256;
            while cut > 0 && !s.is_char_boundary(cut) {
                cut -= 1;
            }
            Value::String(format!(
                "{}…[truncated: {} bytes, sha256 {digest}]",
                &s[..cut],
                s.len()
            ))
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| bound_strings(v, depth + 1))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, bound_strings(v, depth + 1)))
                .collect(),
        ),
        other => other,
    }
}

/// Bound a (redacted) payload: long strings and deep nesting cut, then the
/// whole canonical form capped at [`MAX_PAYLOAD_BYTES`]. The result is the
/// canonical form parsed back, so what is stored is exactly what is hashed.
#[cfg(test)]
pub(crate) fn bound_payload(payload: Value) -> Result<Value, RecorderError> {
    bound_payload_text(payload).map(|(value, _)| value)
}

/// [`bound_payload`], also returning the canonical text of the result
/// (`None` for null).
pub(crate) fn bound_payload_text(payload: Value) -> Result<(Value, Option<String>), RecorderError> {
    if payload.is_null() {
        return Ok((Value::Null, None));
    }
    let bounded = bound_strings(payload, 0);
    let bytes =
        mex_envelope::canonical::to_vec(&bounded).map_err(RecorderError::canonicalization)?;
    let bytes = if bytes.len() > MAX_PAYLOAD_BYTES {
        let text = String::from_utf8_lossy(&bytes);
        let mut cut = 1024;
        while cut > 0 && !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let marker = json!({ TRUNCATED_MARKER: {
            "original_bytes": bytes.len(),
            "sha256": Sha256Digest::of(&bytes).to_hex(),
            "preview": &text[..cut],
        }});
        mex_envelope::canonical::to_vec(&marker).map_err(RecorderError::canonicalization)?
    } else {
        bytes
    };
    let value = serde_json::from_slice(&bytes).map_err(RecorderError::canonicalization)?;
    let text = String::from_utf8(bytes).map_err(RecorderError::canonicalization)?;
    Ok((value, Some(text)))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]
    use super::*;

    /// The hand-written canonical body hashes exactly as the generic RFC
    /// 8785 canonicalizer, for every kind and every optional member, with
    /// hostile text (quotes, backslashes, control characters, non-ASCII,
    /// U+2028) and a payload.
    #[test]
    fn fast_canonical_body_matches_the_canonicalizer() {
        let texts = [
            "plain",
            "q\"uote\\back/slash",
            "ctl\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f}",
            "é ü 漢字 🦀 \u{2028}\u{2029} \u{fffd}",
            "",
        ];
        let mut checked = 0;
        for kind in EventKind::ALL {
            for (i, text) in texts.iter().enumerate() {
                let mut e = sample();
                e.kind = kind;
                e.seq = [1, 42, 1 << 53, (1 << 53) + 1, u64::MAX][i];
                e.op_id = (i % 2 == 0).then(Uuid::new_v4);
                e.operation = (i % 3 == 0).then(|| "physics.convert_units".parse().unwrap());
                e.rule = Some((*text).to_owned());
                e.capability = (i != 1).then(|| format!("cap {text}"));
                e.message = (i != 2).then(|| format!("msg {text}"));
                e.code = (i == 3).then(|| "G-CAP.CONSENT_MISSING".parse().unwrap());
                e.decision = [
                    Some(Decision::Allow),
                    Some(Decision::Deny),
                    None,
                    Some(Decision::Degrade),
                    None,
                ][i];
                e.status = (i == 1).then_some(ResultStatus::Failed);
                e.artifact = (i == 4).then(|| Sha256Digest::of(b"a"));
                e.payload = if i == 2 {
                    Value::Null
                } else {
                    json!({"text": text, "n": [1.5, 1e21, -0.0, 9007199254740993_u64], "z": {"b": 1, "a": null}})
                };
                for time in [
                    e.recorded_at.to_string(),
                    "2026-11-27T12:00:00.12Z".to_owned(),
                ] {
                    assert_eq!(
                        e.hash_with(&time, None).unwrap(),
                        e.hash_with_canonicalizer(&time).unwrap(),
                        "{kind} #{i}"
                    );
                    let text = mex_envelope::canonical::to_vec(&e.payload).unwrap();
                    if !e.payload.is_null() {
                        assert_eq!(
                            e.hash_with(&time, Some(&text)).unwrap(),
                            e.hash_with_canonicalizer(&time).unwrap()
                        );
                    }
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, EventKind::ALL.len() * texts.len() * 2);
    }

    fn sample() -> Event {
        EventDraft::gate_passed(Uuid::nil(), "G-CAP".parse().unwrap(), "cap.default_deny")
            .with_engine("engine.physics".parse().unwrap())
            .with_payload(json!({"x": 1.5, "y": [1, 2]}))
            .prepare(&Redactor::new())
            .unwrap()
            .seal(1, UtcTimestamp::now(), GENESIS_HASH)
            .unwrap()
    }

    #[test]
    fn body_view_matches_wire_form() {
        let event = sample();
        let mut wire = serde_json::to_value(&event).unwrap();
        wire.as_object_mut().unwrap().remove("hash");
        let expected = Sha256Digest::of(&mex_envelope::canonical::to_vec(&wire).unwrap());
        assert_eq!(event.compute_hash().unwrap(), expected);
        assert!(event.hash_is_valid());
        let back: Event = serde_json::from_slice(&event.to_canonical_json().unwrap()).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn unknown_fields_refused() {
        let mut wire = serde_json::to_value(sample()).unwrap();
        wire["extra"] = json!(1);
        assert!(serde_json::from_value::<Event>(wire).is_err());
    }

    #[test]
    fn payload_cap_and_string_cap() {
        let big = json!({"blob": "a".repeat(100_000)});
        let bounded = bound_payload(big).unwrap();
        assert!(
            bounded["blob"]
                .as_str()
                .unwrap()
                .contains("truncated: 100000 bytes")
        );
        let many: Vec<String> = (0..100)
            .map(|i| format!("{i}{}", "b".repeat(1000)))
            .collect();
        let bounded = bound_payload(json!({ "many": many })).unwrap();
        assert!(bounded.get(TRUNCATED_MARKER).is_some());
        assert!(mex_envelope::canonical::to_vec(&bounded).unwrap().len() <= MAX_PAYLOAD_BYTES);
    }

    #[test]
    fn drafts_are_checked() {
        let r = Redactor::new();
        let no_rule = EventDraft::new(EventKind::GateDenied).with_gate("G-CAP".parse().unwrap());
        assert!(matches!(
            no_rule.prepare(&r),
            Err(RecorderError::InvalidEvent { .. })
        ));
        let contradiction = EventDraft::gate_passed(Uuid::nil(), "G-CAP".parse().unwrap(), "r")
            .with_decision(Decision::Deny);
        assert!(contradiction.prepare(&r).is_err());
        assert!(EventDraft::new(EventKind::OpCompleted).prepare(&r).is_err());
        let long = EventDraft::op_completed(Uuid::nil(), ResultStatus::Failed)
            .with_message("m".repeat(10_000));
        let sealed = long
            .prepare(&r)
            .unwrap()
            .seal(1, UtcTimestamp::now(), GENESIS_HASH)
            .unwrap();
        assert!(sealed.message.unwrap().len() <= MAX_MESSAGE_BYTES);
    }
}
