//! Behaviour shared by both recorders, then what only the durable one does:
//! persistence, concurrency, redaction on disk, JSONL export.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

mod common;

use std::sync::Arc;

use mex_envelope::{DenialSeverity, ResultStatus, Sha256Digest, UtcTimestamp};
use mex_recorder::event::{GENESIS_HASH, MAX_PAYLOAD_BYTES, TRUNCATED_MARKER};
use mex_recorder::{
    Decision, EventDraft, EventKind, EventQuery, FlightRecorder, MemoryRecorder, ProblemFilter,
    ProblemSeverity, ProblemState, RecorderError, Redactor, SqliteRecorder,
};
use serde_json::json;
use uuid::Uuid;

use common::{denial, op_drafts};

fn both() -> Vec<(Box<dyn FlightRecorder>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteRecorder::open(dir.path()).unwrap();
    vec![
        (Box::new(MemoryRecorder::new()), None),
        (Box::new(sqlite), Some(dir)),
    ]
}

#[test]
fn chain_seq_and_queries() {
    for (rec, _dir) in both() {
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        let first = rec.append_batch(op_drafts(a, 0)).unwrap();
        assert_eq!(
            first.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert_eq!(first[0].prev_hash, GENESIS_HASH);
        assert!(first.windows(2).all(|w| w[1].prev_hash == w[0].hash));
        assert!(first.iter().all(|e| e.hash_is_valid()));
        let gate = &first[1];
        assert_eq!(gate.rule.as_deref(), Some("schema.params_valid"));
        assert_eq!(gate.decision, Some(Decision::Allow));

        rec.append_batch(op_drafts(b, 1)).unwrap();
        let of_a = rec.events(&EventQuery::op(a)).unwrap();
        assert_eq!(of_a.len(), 4);
        assert!(of_a.iter().all(|e| e.op_id == Some(a)));
        assert_eq!(of_a, first, "query returns the events as appended");

        let started = rec
            .events(&EventQuery::kind(EventKind::EngineStarted))
            .unwrap();
        assert_eq!(started.len(), 2);
        // A kind the partial kind index leaves out is found all the same
        // (by reading the log), in seq order.
        let passed = rec
            .events(&EventQuery::kind(EventKind::GatePassed))
            .unwrap();
        assert_eq!(passed.len(), 2);
        assert!(passed.iter().all(|e| e.kind == EventKind::GatePassed));
        assert!(passed[0].seq < passed[1].seq);
        let physics = rec
            .events(&EventQuery::engine("engine.physics".parse().unwrap()))
            .unwrap();
        assert_eq!(
            physics.len(),
            8,
            "every event of an op is attributed to its engine"
        );
        assert!(
            physics
                .iter()
                .all(|e| e.operation.as_ref().map(|o| o.as_str()) == Some("physics.convert_units"))
        );
        let limited = rec
            .events(&EventQuery {
                limit: Some(3),
                after_seq: Some(2),
                ..EventQuery::all()
            })
            .unwrap();
        assert_eq!(limited.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);

        let t0 = first[0].recorded_at;
        let later = UtcTimestamp::from_unix_millis(t0.unix_millis() + 3_600_000).unwrap();
        assert_eq!(
            rec.events(&EventQuery::between(t0, later)).unwrap().len(),
            8
        );
        assert!(
            rec.events(&EventQuery::between(later, later))
                .unwrap()
                .is_empty()
        );

        let report = rec.verify().unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.events_checked, 8);
        let head = rec.head().unwrap().unwrap();
        assert_eq!(head.seq, 8);
        assert!(rec.verify_anchored(head).unwrap().is_ok());
    }
}

#[test]
fn problems_group_count_and_resolve() {
    for (rec, _dir) in both() {
        let ops: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        for op in &ops {
            rec.append_batch(op_drafts(*op, 0)[..1].to_vec()).unwrap();
            rec.append(EventDraft::gate_outcome(*op, &denial(DenialSeverity::Deny)))
                .unwrap();
            // The completion of a denied op does not count the denial twice.
            rec.append(EventDraft::op_completed(*op, ResultStatus::Denied))
                .unwrap();
        }
        let mut degraded = denial(DenialSeverity::Degraded);
        degraded.code = "G-CAP.SCOPE_NARROWED".parse().unwrap();
        rec.append(EventDraft::gate_outcome(ops[0], &degraded))
            .unwrap();
        rec.append(EventDraft::gate_passed(
            ops[0],
            "G-DET".parse().unwrap(),
            "det.ceiling",
        ))
        .unwrap();
        rec.append(
            EventDraft::op_completed(ops[1], ResultStatus::Failed)
                .with_code("PHYS_UNIT_MISMATCH".parse().unwrap())
                .with_message("metres and seconds do not add"),
        )
        .unwrap();

        let problems = rec.problems(&ProblemFilter::default()).unwrap();
        assert_eq!(problems.len(), 3, "{problems:#?}");
        let denied = problems
            .iter()
            .find(|p| p.severity == ProblemSeverity::Error && p.gate.is_some())
            .unwrap();
        assert_eq!(denied.count, 3);
        assert_eq!(denied.code.as_str(), "G-CAP.CONSENT_MISSING");
        assert_eq!(denied.last_op_id, Some(ops[2]));
        assert_eq!(denied.state, ProblemState::Open);
        assert_eq!(
            denied.engine_id.as_ref().map(|e| e.as_str()),
            Some("engine.physics"),
            "filled from op_received"
        );
        assert_eq!(
            denied.operation.as_ref().map(|e| e.as_str()),
            Some("physics.convert_units")
        );
        assert!(denied.first_seen <= denied.last_seen);
        let degraded = problems
            .iter()
            .find(|p| p.severity == ProblemSeverity::Warning)
            .unwrap();
        assert_eq!(degraded.count, 1);
        let failed = problems
            .iter()
            .find(|p| p.code.as_str() == "PHYS_UNIT_MISMATCH")
            .unwrap();
        assert_eq!(failed.message, "metres and seconds do not add");

        let resolved = rec
            .resolve_problem(&denied.fingerprint, "consent recorded for net.http")
            .unwrap();
        assert_eq!(resolved.state, ProblemState::Resolved);
        assert_eq!(rec.problems(&ProblemFilter::open()).unwrap().len(), 2);
        let audit = rec
            .events(&EventQuery::kind(EventKind::ProblemResolved))
            .unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].payload["fingerprint"], json!(denied.fingerprint));

        // It happens again: reopened, count continues.
        rec.append(EventDraft::gate_outcome(
            ops[0],
            &denial(DenialSeverity::Deny),
        ))
        .unwrap();
        let again = rec.problems(&ProblemFilter::open()).unwrap();
        let reopened = again
            .iter()
            .find(|p| p.fingerprint == denied.fingerprint)
            .unwrap();
        assert_eq!(reopened.count, 4);

        assert!(matches!(
            rec.resolve_problem("nope", "x"),
            Err(RecorderError::UnknownProblem { .. })
        ));
        assert!(rec.verify().unwrap().is_ok());
    }
}

#[test]
fn invalid_drafts_record_nothing() {
    for (rec, _dir) in both() {
        let bad = EventDraft::new(EventKind::GateDenied).with_gate("G-CAP".parse().unwrap());
        let err = rec
            .append_batch(vec![
                EventDraft::op_completed(Uuid::nil(), ResultStatus::Succeeded),
                bad,
            ])
            .unwrap_err();
        assert!(
            matches!(
                err,
                RecorderError::InvalidEvent {
                    kind: "gate_denied",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("rule"), "{err}");
        assert!(
            rec.events(&EventQuery::all()).unwrap().is_empty(),
            "a refused batch records nothing"
        );
    }
}

#[test]
fn payloads_are_bounded() {
    for (rec, _dir) in both() {
        let big: Vec<String> = (0..200)
            .map(|i| format!("{i:04}{}", "x".repeat(500)))
            .collect();
        let e = rec
            .append(EventDraft::conformance_run(
                "engine.physics".parse().unwrap(),
                false,
                json!({ "log": big }),
            ))
            .unwrap();
        assert!(e.payload.get(TRUNCATED_MARKER).is_some());
        assert!(mex_envelope::canonical::to_vec(&e.payload).unwrap().len() <= MAX_PAYLOAD_BYTES);
        let raw = rec.append(
            EventDraft::artifact_written(
                Uuid::nil(),
                Sha256Digest::of(b"x"),
                1,
                "application/octet-stream",
            )
            .with_payload(json!({"bytes_base64": "QUFB".repeat(10_000)})),
        );
        let raw = raw.unwrap();
        assert!(raw.payload["bytes_base64"].as_str().unwrap().len() < 1024);
        assert!(rec.verify().unwrap().is_ok());
    }
}

#[test]
fn jsonl_export_lines_verify_on_their_own() {
    for (rec, _dir) in both() {
        let op = Uuid::new_v4();
        rec.append_batch(op_drafts(op, 7)).unwrap();
        rec.append_batch(op_drafts(Uuid::new_v4(), 8)).unwrap();
        let mut out = Vec::new();
        let n = rec.export_jsonl(&EventQuery::op(op), &mut out).unwrap();
        assert_eq!(n, 4);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        for line in lines {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            let hash = v.as_object_mut().unwrap().remove("hash").unwrap();
            let recomputed = Sha256Digest::of(&mex_envelope::canonical::to_vec(&v).unwrap());
            assert_eq!(hash, json!(recomputed.to_hex()));
            let e: mex_recorder::Event = serde_json::from_str(line).unwrap();
            assert!(e.hash_is_valid());
        }
    }
}

#[test]
fn sqlite_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let op = Uuid::new_v4();
    let appended = {
        let rec = SqliteRecorder::open(dir.path()).unwrap();
        rec.append_batch(op_drafts(op, 0)).unwrap()
    };
    let rec = SqliteRecorder::open(dir.path()).unwrap();
    assert_eq!(rec.events(&EventQuery::op(op)).unwrap(), appended);
    let next = rec
        .append(EventDraft::op_completed(op, ResultStatus::Succeeded))
        .unwrap();
    assert_eq!(next.seq, 5);
    assert_eq!(next.prev_hash, appended[3].hash);
    assert!(rec.verify().unwrap().is_ok());
}

#[test]
fn concurrent_appends_lose_nothing_and_keep_one_chain() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 60;
    let dir = tempfile::tempdir().unwrap();
    let rec: Arc<dyn FlightRecorder> = Arc::new(SqliteRecorder::open(dir.path()).unwrap());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let rec = Arc::clone(&rec);
            std::thread::spawn(move || {
                let op = Uuid::new_v4();
                let mut seqs = Vec::new();
                for i in 0..PER_THREAD {
                    let e = rec
                        .append(
                            EventDraft::new(EventKind::OpReceived)
                                .with_op_id(op)
                                .with_payload(json!({"t": t, "i": i})),
                        )
                        .unwrap();
                    seqs.push(e.seq);
                }
                (op, seqs)
            })
        })
        .collect();
    let mut all_seqs = Vec::new();
    for h in handles {
        let (op, seqs) = h.join().unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one thread's appends keep their order"
        );
        let stored = rec.events(&EventQuery::op(op)).unwrap();
        assert_eq!(stored.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
        let is: Vec<u64> = stored
            .iter()
            .map(|e| e.payload["i"].as_u64().unwrap())
            .collect();
        assert_eq!(is, (0..PER_THREAD).collect::<Vec<_>>());
        all_seqs.extend(seqs);
    }
    all_seqs.sort_unstable();
    assert_eq!(
        all_seqs,
        (1..=THREADS * PER_THREAD).collect::<Vec<_>>(),
        "every seq exactly once"
    );
    let report = rec.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.events_checked, THREADS * PER_THREAD);
}

#[test]
fn memory_recorder_concurrency() {
    let rec = Arc::new(MemoryRecorder::new());
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let rec = Arc::clone(&rec);
            std::thread::spawn(move || common::append_n(rec.as_ref(), 200))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(rec.events(&EventQuery::all()).unwrap().len(), 1600);
    assert!(rec.verify().unwrap().is_ok());
}

#[test]
fn two_handles_on_one_file_share_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let a = SqliteRecorder::open(dir.path()).unwrap();
    let b = SqliteRecorder::open(dir.path()).unwrap();
    for i in 0..10 {
        let rec: &dyn FlightRecorder = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            rec.append(EventDraft::op_completed(
                Uuid::nil(),
                ResultStatus::Succeeded
            ))
            .unwrap()
            .seq,
            i + 1
        );
    }
    assert!(a.verify().unwrap().is_ok());
}

/// The secret must not reach the database, its WAL, or any file next to it.
#[test]
fn secrets_never_reach_the_database_file() {
    const MARKED: &str = "marked-hunter2-SECRET";
    const BY_KEY: &str = "by-key-9f8e7d6c5b4a";
    const REGISTERED: &str = "registered-s3cr3t-0xDEADBEEF";
    const BEARER: &str = "eyJhbGciOiJIUzI1NiJ9.bearer-part";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recorder.sqlite3");
    {
        let rec =
            SqliteRecorder::open_file_with(&path, Redactor::new().with_secret_value(REGISTERED))
                .unwrap();
        let op = Uuid::new_v4();
        rec.append(
            EventDraft::capability(op, "secrets.use:deploy", true, "cap.consent_on_record").with_payload(json!({
                "secret_ref": {"$secret": MARKED},
                "nested": [{"api_key": BY_KEY}, {"headers": {"Authorization": format!("Bearer {BEARER}")}}],
                "note": format!("resolved value {REGISTERED} for the engine"),
            })),
        )
        .unwrap();
        rec.append(
            EventDraft::op_completed(op, ResultStatus::Failed)
                .with_code("RUNTIME.ENGINE_ERROR".parse().unwrap())
                .with_message(format!("engine echoed {REGISTERED} in its error")),
        )
        .unwrap();
        let e = rec.events(&EventQuery::op(op)).unwrap();
        let text = serde_json::to_string(&e).unwrap();
        for s in [MARKED, BY_KEY, REGISTERED, BEARER] {
            assert!(!text.contains(s), "{s} leaked into a query result");
        }
        assert!(text.contains("[REDACTED]"));
        let problems =
            serde_json::to_string(&rec.problems(&ProblemFilter::default()).unwrap()).unwrap();
        assert!(!problems.contains(REGISTERED));
        // Check the files while the recorder is open (WAL not yet
        // checkpointed) and again after close.
        assert_no_secret_in_dir(dir.path(), &[MARKED, BY_KEY, REGISTERED, BEARER]);
    }
    assert_no_secret_in_dir(dir.path(), &[MARKED, BY_KEY, REGISTERED, BEARER]);
    // The test can fail: the same bytes written without redaction are found.
    let control = dir.path().join("control.bin");
    std::fs::write(&control, MARKED).unwrap();
    assert!(std::panic::catch_unwind(|| assert_no_secret_in_dir(dir.path(), &[MARKED])).is_err());
}

fn assert_no_secret_in_dir(dir: &std::path::Path, secrets: &[&str]) {
    assert!(count_files_without_secrets(dir, secrets) >= 1);
}

/// Files under `dir` (recursively), asserting none holds a secret.
fn count_files_without_secrets(dir: &std::path::Path, secrets: &[&str]) -> usize {
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // The owner locks (`recorder.sqlite3-owners/`).
            files += count_files_without_secrets(&path, secrets);
            continue;
        }
        let bytes = std::fs::read(path).unwrap();
        files += 1;
        for s in secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "secret {s} found in a file of {}",
                dir.display()
            );
        }
    }
    files
}
