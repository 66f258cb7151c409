//! Records written before `recorded_at` took its fixed-width millisecond form
//! (`...T12:00:00.120Z`) were hashed over the shortest spelling
//! (`...T12:00:00.12Z`, `...T12:00:00Z`). The fixtures were written by that
//! older code: a database and its JSONL export, with times on a whole second,
//! on tenths, hundredths and whole milliseconds. They must still verify.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use mex_recorder::{BreakKind, Event, EventQuery, FlightRecorder, SqliteRecorder};
use rusqlite::{Connection, params};

const DB: &[u8] = include_bytes!("fixtures/legacy-millis.sqlite");
const JSONL: &str = include_str!("fixtures/legacy-millis.jsonl");

fn open_fixture() -> (tempfile::TempDir, SqliteRecorder) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(mex_recorder::DB_FILE_NAME);
    std::fs::write(&path, DB).unwrap();
    let rec = SqliteRecorder::open_file(&path).unwrap();
    (dir, rec)
}

#[test]
fn a_log_written_with_the_shortest_time_spelling_still_verifies() {
    let (_dir, rec) = open_fixture();
    let report = rec.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.events_checked, 6);
    // Reading it back renders the fixed-width form.
    let events = rec.events(&EventQuery::all()).unwrap();
    let times: Vec<String> = events.iter().map(|e| e.recorded_at.to_string()).collect();
    assert_eq!(
        times,
        [
            "2026-11-27T12:00:00.000Z",
            "2026-11-27T12:00:00.100Z",
            "2026-11-27T12:00:00.120Z",
            "2026-11-27T12:00:00.123Z",
            "2026-11-27T12:00:01.500Z",
            "2026-11-27T12:00:02.999Z",
        ]
    );
    assert!(events.iter().all(Event::hash_is_valid));
}

#[test]
fn the_legacy_spelling_grants_no_slack_to_edits() {
    let (_dir, rec) = open_fixture();
    let raw = Connection::open(rec.path()).unwrap();
    // One millisecond later: neither spelling of the new time matches.
    raw.execute(
        "UPDATE events SET ts_ms = ts_ms + 1 WHERE seq = 3",
        params![],
    )
    .unwrap();
    let b = rec
        .verify()
        .unwrap()
        .first_break
        .expect("edit must be found");
    assert_eq!((b.seq, b.kind), (3, BreakKind::HashMismatch));
}

#[test]
fn exported_legacy_lines_still_carry_valid_hashes() {
    for line in JSONL.lines() {
        let event: Event = serde_json::from_str(line).unwrap();
        assert!(event.hash_is_valid(), "{line}");
        // Re-exported, the time has the fixed-width form; the hash still
        // checks.
        let again: Event = serde_json::from_slice(&event.to_canonical_json().unwrap()).unwrap();
        assert_eq!(again.recorded_at.to_string().len(), 24);
        assert!(again.hash_is_valid(), "{line}");
    }
}

#[test]
fn new_events_are_hashed_over_the_fixed_width_form() {
    let (_dir, rec) = open_fixture();
    let e = rec
        .append(
            mex_recorder::EventDraft::new(mex_recorder::EventKind::OpReceived)
                .with_op_id(uuid::Uuid::new_v4()),
        )
        .unwrap();
    assert_eq!(e.compute_hash().unwrap(), e.hash);
    let text = String::from_utf8(e.to_canonical_json().unwrap()).unwrap();
    assert!(text.contains(&format!("\"recorded_at\":\"{}\"", e.recorded_at)));
    assert!(rec.verify().unwrap().is_ok());
}
