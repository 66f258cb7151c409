//! Tamper tests: each kind of edit made with raw SQL behind the recorder's
//! back is found by `verify`, at the first bad seq.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use mex_envelope::ResultStatus;
use mex_recorder::{
    BreakKind, EventDraft, EventKind, EventQuery, FlightRecorder, RecorderError, SqliteRecorder,
};
use rusqlite::{Connection, params};
use serde_json::json;
use uuid::Uuid;

const N: u64 = 10;

/// A recorder with N events, and a raw connection to the same file.
fn setup() -> (tempfile::TempDir, SqliteRecorder, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let rec = SqliteRecorder::open(dir.path()).unwrap();
    let op = Uuid::new_v4();
    for i in 0..N {
        rec.append(
            EventDraft::new(EventKind::OpReceived)
                .with_op_id(op)
                .with_payload(json!({"i": i})),
        )
        .unwrap();
    }
    assert!(rec.verify().unwrap().is_ok());
    let raw = Connection::open(rec.path()).unwrap();
    (dir, rec, raw)
}

fn first_break(rec: &SqliteRecorder) -> (u64, BreakKind) {
    let report = rec.verify().unwrap();
    let b = report.first_break.expect("tampering must be detected");
    (b.seq, b.kind)
}

/// Rewrite one row's hash so that it matches its (tampered) content, as an
/// attacker who knows the scheme would.
fn rehash(rec: &SqliteRecorder, raw: &Connection, seq: u64) {
    let mut e = rec
        .events(&EventQuery {
            after_seq: Some(seq - 1),
            limit: Some(1),
            ..EventQuery::all()
        })
        .unwrap()
        .remove(0);
    e.hash = e.compute_hash().unwrap();
    raw.execute(
        "UPDATE events SET hash = ?1 WHERE seq = ?2",
        params![e.hash.as_bytes().as_slice(), seq as i64],
    )
    .unwrap();
}

#[test]
fn untouched_log_verifies() {
    let (_d, rec, _raw) = setup();
    let report = rec.verify().unwrap();
    assert!(report.is_ok());
    assert_eq!(report.events_checked, N);
    assert_eq!(report.checkpoint.unwrap().seq, N);
}

#[test]
fn edited_payload() {
    let (_d, rec, raw) = setup();
    raw.execute(
        "UPDATE events SET payload = '{\"i\":999}' WHERE seq = 5",
        [],
    )
    .unwrap();
    assert_eq!(first_break(&rec), (5, BreakKind::HashMismatch));
}

/// The hash covers the payload's content, not its spelling: a stored
/// payload re-spelled (spaces, member order) without changing its content
/// still verifies, though verification first hashes the stored text as is,
/// and a query reads the same event. A re-spelling that changes a value is
/// found.
#[test]
fn respelled_payload_with_the_same_content_still_verifies() {
    let (_d, rec, raw) = setup();
    raw.execute(
        "UPDATE events SET payload = '{ \"i\" : 4.0 }' WHERE seq = 5",
        [],
    )
    .unwrap();
    let report = rec.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.events_checked, N);
    let five = &rec.events(&EventQuery::all()).unwrap()[4];
    assert!(five.hash_is_valid());
    raw.execute(
        "UPDATE events SET payload = '{ \"i\" : 4.5 }' WHERE seq = 5",
        [],
    )
    .unwrap();
    assert_eq!(first_break(&rec), (5, BreakKind::HashMismatch));
}

#[test]
fn edited_time_or_kind_column() {
    let (_d, rec, raw) = setup();
    raw.execute("UPDATE events SET ts_ms = ts_ms + 1 WHERE seq = 3", [])
        .unwrap();
    assert_eq!(first_break(&rec), (3, BreakKind::HashMismatch));
    raw.execute("UPDATE events SET kind = 'gate_passed' WHERE seq = 2", [])
        .unwrap();
    assert_eq!(first_break(&rec), (2, BreakKind::HashMismatch));
}

#[test]
fn edited_and_rehashed_event_breaks_the_link() {
    let (_d, rec, raw) = setup();
    raw.execute(
        "UPDATE events SET payload = '{\"i\":999}' WHERE seq = 5",
        [],
    )
    .unwrap();
    rehash(&rec, &raw, 5);
    assert_eq!(first_break(&rec), (6, BreakKind::PrevHashMismatch));
}

#[test]
fn unreadable_row_is_a_break_and_a_query_error() {
    let (_d, rec, raw) = setup();
    raw.execute("UPDATE events SET kind = 'no_such_kind' WHERE seq = 4", [])
        .unwrap();
    assert_eq!(first_break(&rec), (4, BreakKind::Unreadable));
    let err = rec.events(&EventQuery::all()).unwrap_err();
    assert!(
        matches!(err, RecorderError::CorruptEvent { seq: 4, .. }),
        "{err}"
    );
}

#[test]
fn deleted_event() {
    let (_d, rec, raw) = setup();
    raw.execute("DELETE FROM events WHERE seq = 4", []).unwrap();
    assert_eq!(first_break(&rec), (4, BreakKind::Missing));
}

#[test]
fn deleted_first_event() {
    let (_d, rec, raw) = setup();
    raw.execute("DELETE FROM events WHERE seq = 1", []).unwrap();
    assert_eq!(first_break(&rec), (1, BreakKind::Missing));
}

#[test]
fn swapped_events() {
    let (_d, rec, raw) = setup();
    // Swap the content of rows 3 and 6, keeping the seq column in place.
    let cols = "ts_ms, kind, op_id, engine_id, operation, gate, rule, capability, decision, status, code, artifact, message, payload, prev_hash, hash";
    raw.execute_batch(&format!(
        "CREATE TEMP TABLE t AS SELECT seq, {cols} FROM events WHERE seq IN (3, 6);
         UPDATE events SET ({cols}) = (SELECT {cols} FROM t WHERE t.seq = 9 - events.seq) WHERE seq IN (3, 6);"
    ))
    .unwrap();
    assert_eq!(first_break(&rec), (3, BreakKind::HashMismatch));
}

#[test]
fn swapped_and_rehashed_events() {
    let (_d, rec, raw) = setup();
    let cols = "payload";
    raw.execute_batch(&format!(
        "CREATE TEMP TABLE t AS SELECT seq, {cols} FROM events WHERE seq IN (3, 4);
         UPDATE events SET {cols} = (SELECT {cols} FROM t WHERE t.seq = 7 - events.seq) WHERE seq IN (3, 4);"
    ))
    .unwrap();
    rehash(&rec, &raw, 3);
    rehash(&rec, &raw, 4);
    assert_eq!(first_break(&rec), (4, BreakKind::PrevHashMismatch));
}

#[test]
fn inserted_event_in_the_middle() {
    let (_d, rec, raw) = setup();
    // Make room at seq 6 and insert a forged event whose own hash and
    // prev_hash are perfect (the attacker knows the scheme).
    raw.execute_batch("UPDATE events SET seq = seq + 1000 WHERE seq > 5; UPDATE events SET seq = seq - 999 WHERE seq > 1000;")
        .unwrap();
    let prev = rec
        .events(&EventQuery {
            after_seq: Some(4),
            limit: Some(1),
            ..EventQuery::all()
        })
        .unwrap()
        .remove(0);
    let mut forged = prev.clone();
    forged.seq = 6;
    forged.prev_hash = prev.hash;
    forged.payload = json!({"i": "forged"});
    forged.hash = forged.compute_hash().unwrap();
    raw.execute(
        "INSERT INTO events (seq, ts_ms, kind, op_id, payload, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            6,
            forged.recorded_at.unix_millis(),
            forged.kind.as_str(),
            forged.op_id.map(|u| u.to_string()),
            forged.payload.to_string(),
            forged.prev_hash.as_bytes().as_slice(),
            forged.hash.as_bytes().as_slice()
        ],
    )
    .unwrap();
    // The forged event itself is flawless; the event it displaced is not.
    assert_eq!(first_break(&rec), (7, BreakKind::HashMismatch));
}

#[test]
fn inserted_event_at_the_end() {
    let (_d, rec, raw) = setup();
    // A perfectly chained event appended without updating the checkpoint.
    let last = rec
        .events(&EventQuery {
            after_seq: Some(N - 1),
            ..EventQuery::all()
        })
        .unwrap()
        .remove(0);
    let mut forged = last.clone();
    forged.seq = N + 1;
    forged.prev_hash = last.hash;
    forged.hash = forged.compute_hash().unwrap();
    raw.execute(
        "INSERT INTO events (seq, ts_ms, kind, op_id, payload, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            (N + 1) as i64,
            forged.recorded_at.unix_millis(),
            forged.kind.as_str(),
            forged.op_id.map(|u| u.to_string()),
            forged.payload.to_string(),
            forged.prev_hash.as_bytes().as_slice(),
            forged.hash.as_bytes().as_slice()
        ],
    )
    .unwrap();
    assert_eq!(first_break(&rec), (N + 1, BreakKind::BeyondCheckpoint));
}

#[test]
fn truncated_tail() {
    let (_d, rec, raw) = setup();
    raw.execute("DELETE FROM events WHERE seq > 7", []).unwrap();
    assert_eq!(first_break(&rec), (8, BreakKind::Truncated));
}

#[test]
fn truncated_to_nothing() {
    let (_d, rec, raw) = setup();
    raw.execute("DELETE FROM events", []).unwrap();
    assert_eq!(first_break(&rec), (1, BreakKind::Truncated));
}

#[test]
fn deleted_checkpoint() {
    let (_d, rec, raw) = setup();
    raw.execute("DELETE FROM chain_head", []).unwrap();
    assert_eq!(first_break(&rec), (1, BreakKind::CheckpointMismatch));
}

/// The documented limit: cutting the tail AND rewriting the checkpoint
/// leaves a file that verifies on its own. An anchor kept elsewhere catches it.
#[test]
fn truncation_with_rewritten_checkpoint_needs_an_anchor() {
    let (_d, rec, raw) = setup();
    let anchor = rec.head().unwrap().unwrap();
    raw.execute("DELETE FROM events WHERE seq > 7", []).unwrap();
    raw.execute(
        "UPDATE chain_head SET seq = 7, hash = (SELECT hash FROM events WHERE seq = 7)",
        [],
    )
    .unwrap();
    assert!(
        rec.verify().unwrap().is_ok(),
        "undetectable from the file alone (documented)"
    );
    let report = rec.verify_anchored(anchor).unwrap();
    let b = report.first_break.unwrap();
    assert_eq!((b.seq, b.kind), (N, BreakKind::AnchorMismatch));
}

#[test]
fn anchor_with_a_different_hash() {
    let (_d, rec, _raw) = setup();
    let mut anchor = rec.head().unwrap().unwrap();
    anchor.seq = 3;
    let b = rec.verify_anchored(anchor).unwrap().first_break.unwrap();
    assert_eq!((b.seq, b.kind), (3, BreakKind::AnchorMismatch));
}

#[test]
fn appends_after_a_clean_verify_still_verify() {
    let (_d, rec, _raw) = setup();
    rec.append(EventDraft::op_completed(
        Uuid::nil(),
        ResultStatus::Succeeded,
    ))
    .unwrap();
    assert!(rec.verify().unwrap().is_ok());
}
