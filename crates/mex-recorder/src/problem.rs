//! Problems: the user-facing list of denials, failures and degraded
//! outcomes, grouped so a repeated problem shows once with a count.
//!
//! A problem is derived from events, in the same transaction that records
//! them: the event that raises it and the problem row commit together or not
//! at all. Which events raise a problem ([`raises_problem`]):
//!
//! | event | severity |
//! |---|---|
//! | `gate_denied`, `capability_denied`, `budget_exceeded`, `result_rejected` | error |
//! | `op_completed` with status `failed` | error |
//! | `conformance_run` with decision `deny` (not certified) | error |
//! | `gate_degraded` | warning |
//!
//! `op_completed` with status `denied` or `budget_exceeded` raises nothing:
//! the gate or budget event that caused it already did, and counting both
//! would double every denial.
//!
//! The fingerprint is the SHA-256 of the canonical JSON of
//! `{code, gate, engine_id, operation}` (absent members omitted). An event
//! without a code is grouped under a code derived from its kind (e.g.
//! `RECORDER.OP_FAILED`). A resolved problem that happens again is reopened.

use std::str::FromStr;

use mex_envelope::{
    EngineId, ErrorCode, GateId, OperationName, ResultStatus, Sha256Digest, UtcTimestamp,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{Decision, Event, EventKind};

/// How bad a problem is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ProblemSeverity {
    /// Degraded: the operation ran, with less than was asked.
    Warning,
    /// Denied or failed.
    Error,
}

impl ProblemSeverity {
    /// The stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

impl FromStr for ProblemSeverity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "warning" => Ok(Self::Warning),
            "error" => Ok(Self::Error),
            _ => Err(format!("{s:?} is not a problem severity")),
        }
    }
}

/// Open or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProblemState {
    /// Needs attention.
    Open,
    /// A person marked it resolved; it reopens if it happens again.
    Resolved,
}

impl ProblemState {
    /// The stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Resolved => "resolved",
        }
    }
}

impl FromStr for ProblemState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(Self::Open),
            "resolved" => Ok(Self::Resolved),
            _ => Err(format!("{s:?} is not a problem state")),
        }
    }
}

/// One grouped problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Problem {
    /// SHA-256 (hex) of the canonical `{code, gate, engine_id, operation}`.
    pub fingerprint: String,
    /// Stable code.
    pub code: ErrorCode,
    /// Gate that decided, when a gate did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateId>,
    /// Engine concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_id: Option<EngineId>,
    /// Operation concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<OperationName>,
    /// The worst severity seen.
    pub severity: ProblemSeverity,
    /// The latest message.
    pub message: String,
    /// How many times it happened.
    pub count: u64,
    /// First occurrence.
    pub first_seen: UtcTimestamp,
    /// Latest occurrence.
    pub last_seen: UtcTimestamp,
    /// Operation of the latest occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_op_id: Option<Uuid>,
    /// Event seq of the latest occurrence.
    pub last_seq: u64,
    /// Open or resolved.
    pub state: ProblemState,
    /// When it was last resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<UtcTimestamp>,
    /// The note given when it was resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
}

/// Which problems to list. The default lists all, most recent first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProblemFilter {
    /// Only problems in this state.
    pub state: Option<ProblemState>,
    /// Only problems about this engine.
    pub engine_id: Option<EngineId>,
    /// At most this many.
    pub limit: Option<u64>,
}

impl ProblemFilter {
    /// Only open problems.
    pub fn open() -> Self {
        Self {
            state: Some(ProblemState::Open),
            ..Self::default()
        }
    }

    pub(crate) fn matches(&self, p: &Problem) -> bool {
        self.state.is_none_or(|s| s == p.state)
            && self
                .engine_id
                .as_ref()
                .is_none_or(|e| p.engine_id.as_ref() == Some(e))
    }
}

/// The severity of the problem an event raises, if it raises one.
pub fn raises_problem(event: &Event) -> Option<ProblemSeverity> {
    match event.kind {
        EventKind::GateDenied
        | EventKind::CapabilityDenied
        | EventKind::BudgetExceeded
        | EventKind::ResultRejected => Some(ProblemSeverity::Error),
        EventKind::GateDegraded => Some(ProblemSeverity::Warning),
        EventKind::OpCompleted if event.status == Some(ResultStatus::Failed) => {
            Some(ProblemSeverity::Error)
        }
        EventKind::ConformanceRun if event.decision == Some(Decision::Deny) => {
            Some(ProblemSeverity::Error)
        }
        _ => None,
    }
}

fn fallback_code(kind: EventKind) -> Option<ErrorCode> {
    let text = match kind {
        EventKind::GateDenied => "RECORDER.GATE_DENIED",
        EventKind::GateDegraded => "RECORDER.GATE_DEGRADED",
        EventKind::CapabilityDenied => "RECORDER.CAPABILITY_DENIED",
        EventKind::BudgetExceeded => "RECORDER.BUDGET_EXCEEDED",
        EventKind::ResultRejected => "RECORDER.RESULT_REJECTED",
        EventKind::ConformanceRun => "RECORDER.CONFORMANCE_FAILED",
        _ => "RECORDER.OP_FAILED",
    };
    // Every literal above is a well-formed code (a unit test checks each).
    text.parse().ok()
}

/// The fingerprint of a problem's identity.
pub fn fingerprint(
    code: &ErrorCode,
    gate: Option<&GateId>,
    engine_id: Option<&EngineId>,
    operation: Option<&OperationName>,
) -> String {
    let key = serde_json::json!({
        "code": code,
        "gate": gate,
        "engine_id": engine_id,
        "operation": operation,
    });
    // Nulls are dropped so the key is exactly the members present.
    let key: serde_json::Map<String, serde_json::Value> = key
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let bytes = mex_envelope::canonical::to_vec(&key).unwrap_or_else(|_| key_fallback(&key));
    Sha256Digest::of(&bytes).to_hex()
}

fn key_fallback(key: &serde_json::Map<String, serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(key).unwrap_or_default()
}

/// Fold one event into the problem it belongs to. `existing` is the current
/// row for the event's fingerprint, if any; returns the new row, or `None`
/// when the event raises no problem.
pub(crate) fn observe(
    event: &Event,
    lookup: impl FnOnce(&str) -> Option<Problem>,
) -> Option<Problem> {
    let severity = raises_problem(event)?;
    let code = event.code.clone().or_else(|| fallback_code(event.kind))?;
    let fp = fingerprint(
        &code,
        event.gate.as_ref(),
        event.engine_id.as_ref(),
        event.operation.as_ref(),
    );
    let message = event.message.clone().unwrap_or_else(|| {
        let mut m = format!("{}", event.kind);
        if let Some(g) = &event.gate {
            m.push_str(&format!(" by {g}"));
        }
        if let Some(r) = &event.rule {
            m.push_str(&format!(" (rule {r})"));
        }
        if let Some(c) = &event.capability {
            m.push_str(&format!(" for capability {c}"));
        }
        m
    });
    Some(match lookup(&fp) {
        Some(mut p) => {
            p.count = p.count.saturating_add(1);
            p.last_seen = event.recorded_at;
            p.last_op_id = event.op_id.or(p.last_op_id);
            p.last_seq = event.seq;
            p.severity = p.severity.max(severity);
            p.message = message;
            p.state = ProblemState::Open;
            p
        }
        None => Problem {
            fingerprint: fp,
            code,
            gate: event.gate.clone(),
            engine_id: event.engine_id.clone(),
            operation: event.operation.clone(),
            severity,
            message,
            count: 1,
            first_seen: event.recorded_at,
            last_seen: event.recorded_at,
            last_op_id: event.op_id,
            last_seq: event.seq,
            state: ProblemState::Open,
            resolved_at: None,
            resolution: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fallback_code_is_well_formed() {
        for kind in EventKind::ALL {
            assert!(fallback_code(kind).is_some(), "{kind}");
        }
    }
}
