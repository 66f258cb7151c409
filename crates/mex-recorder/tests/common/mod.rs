//! Shared test helpers.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "shared test helpers: not every test binary uses every helper, and a failed expectation panics"
)]

use mex_envelope::{DenialSeverity, GateDenial, ResultStatus};
use mex_recorder::{EventDraft, FlightRecorder};
use serde_json::json;
use uuid::Uuid;

/// A denial by G-CAP for engine.physics / physics.convert_units.
pub fn denial(severity: DenialSeverity) -> GateDenial {
    GateDenial {
        gate: "G-CAP".parse().unwrap(),
        code: "G-CAP.CONSENT_MISSING".parse().unwrap(),
        rule: "cap.consent_required".to_owned(),
        message: "net.http needs a consent record; ask the user".to_owned(),
        pointer: Some("/capabilities_requested/0".to_owned()),
        details: Some(json!({"capability": "net.http"})),
        severity,
    }
}

/// The drafts of one small operation: received, gate passed, started,
/// finished, completed.
pub fn op_drafts(op: Uuid, i: u64) -> Vec<EventDraft> {
    let engine = "engine.physics".parse().unwrap();
    let operation: mex_envelope::OperationName = "physics.convert_units".parse().unwrap();
    vec![
        EventDraft::new(mex_recorder::EventKind::OpReceived)
            .with_op_id(op)
            .with_engine("engine.physics".parse().unwrap())
            .with_operation(operation.clone())
            .with_payload(json!({"i": i})),
        EventDraft::gate_passed(op, "G-SCHEMA".parse().unwrap(), "schema.params_valid"),
        EventDraft::engine_started(op, engine, operation),
        EventDraft::op_completed(op, ResultStatus::Succeeded),
    ]
}

/// Append `n` single events (one transaction each).
pub fn append_n(rec: &dyn FlightRecorder, n: u64) {
    for i in 0..n {
        rec.append(
            EventDraft::new(mex_recorder::EventKind::OpReceived)
                .with_op_id(Uuid::new_v4())
                .with_payload(json!({"i": i})),
        )
        .unwrap();
    }
}

/// Append `n` events in transactions of 100 (the fast path).
pub fn append_bulk(rec: &dyn FlightRecorder, n: u64) {
    let drafts: Vec<EventDraft> = (0..n)
        .map(|i| {
            EventDraft::new(mex_recorder::EventKind::OpReceived)
                .with_op_id(Uuid::new_v4())
                .with_payload(json!({"i": i}))
        })
        .collect();
    for chunk in drafts.chunks(100) {
        rec.append_batch(chunk.to_vec()).unwrap();
    }
}
