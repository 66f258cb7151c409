//! What admission pays for replay protection, with 10^3 and with 10^6 events
//! on record.
//!
//! * `claims/lookup_used/<n>`: the G-INTEGRITY check of an op id that was
//!   used (`claim_state`, one primary-key lookup in `op_claims`).
//! * `claims/lookup_fresh/<n>`: the same for a fresh op id (the common case).
//! * `claims/admit/<n>`: the claim itself, committed with receipt, six gate
//!   outcomes and engine start (`append_claiming`, one durable, fsynced
//!   transaction).
//! * `claims/old_replay_query/<n>`: for contrast, the check this replaced
//!   (the `op_completed` events of the op id, through `events()`), which
//!   SQLite answers from the `kind` index by reading every completed op.
//!
//! Each log is built once per run through the real bulk path
//! (`append_batch`, 10 events per op, hash chain intact). The claim rows of
//! those ops are then inserted directly in SQLite in one transaction (one
//! per op, `completed`, as the schema migration derives them), because
//! claiming each op in its own durable transaction would take hours; the
//! chain is untouched by that and still verifies. Set
//! `MEX_CLAIMS_BENCH_EVENTS` for a smaller large log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmarks fail loudly on a broken setup instead of handling it"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use mex_envelope::{EngineId, OperationName, ResultStatus};
use mex_recorder::internal::{Claim, ClaimOutcome};
use mex_recorder::{ClaimState, EventDraft, EventKind, EventQuery, FlightRecorder, SqliteRecorder};
use serde_json::json;
use uuid::Uuid;

fn engine() -> EngineId {
    "engine.physics".parse().unwrap()
}
fn operation() -> OperationName {
    "physics.convert_units".parse().unwrap()
}

/// Receipt, six gates passed, engine started: what a claim commits with.
fn admission(op: Uuid) -> Vec<EventDraft> {
    let mut v = vec![
        EventDraft::new(EventKind::OpReceived)
            .with_op_id(op)
            .with_engine(engine())
            .with_operation(operation())
            .with_payload(json!({"config_hash": "5f2b0c9d1e8a7b6c5f2b0c9d1e8a7b6c5f2b0c9d1e8a7b6c5f2b0c9d1e8a7b6c"})),
    ];
    for g in [
        "G-SCHEMA",
        "G-CAP",
        "G-INTEGRITY",
        "G-BUDGET",
        "G-PROVENANCE",
        "G-DET",
    ] {
        v.push(
            EventDraft::gate_passed(op, g.parse().unwrap(), "default")
                .with_engine(engine())
                .with_operation(operation()),
        );
    }
    v.push(EventDraft::engine_started(op, engine(), operation()));
    v
}

/// The ten events of one completed op.
fn op_events(op: Uuid) -> Vec<EventDraft> {
    let mut v = admission(op);
    v.push(EventDraft::engine_finished(
        op,
        engine(),
        operation(),
        ResultStatus::Succeeded,
    ));
    v.push(
        EventDraft::op_completed(op, ResultStatus::Succeeded)
            .with_engine(engine())
            .with_operation(operation()),
    );
    v
}

/// A log of `total` events (10 per op) with a claim per op; returns the
/// recorder, the temp dir and an op id from the middle of the log.
fn build(total: u64) -> (SqliteRecorder, tempfile::TempDir, Uuid) {
    let dir = tempfile::tempdir().unwrap();
    let rec = SqliteRecorder::open(dir.path()).unwrap();
    let built = Instant::now();
    let ops = total / 10;
    let mut target = Uuid::nil();
    let mut batch = Vec::with_capacity(10_000);
    for k in 0..ops {
        let op = Uuid::new_v4();
        if k == ops / 2 {
            target = op;
        }
        batch.extend(op_events(op));
        if batch.len() >= 10_000 {
            rec.append_batch(std::mem::take(&mut batch)).unwrap();
        }
    }
    if !batch.is_empty() {
        rec.append_batch(batch).unwrap();
    }
    let conn = rusqlite::Connection::open(rec.path()).unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         INSERT OR IGNORE INTO op_claims (op_id, state, owner, pid, claimed_ms, ended_ms)
             SELECT op_id, 'completed', '', 0, MIN(ts_ms), MAX(ts_ms) FROM events
             WHERE kind = 'op_completed' GROUP BY op_id;
         COMMIT;",
    )
    .unwrap();
    drop(conn);
    let head = rec.head().unwrap().unwrap();
    {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "built a log of {} events ({} claims) in {:.1?}",
            head.seq,
            ops,
            built.elapsed()
        );
    }
    assert_eq!(
        rec.claim_state(target).unwrap(),
        Some(ClaimState::Completed)
    );
    (rec, dir, target)
}

fn bench_claims(c: &mut Criterion) {
    let large: u64 = std::env::var("MEX_CLAIMS_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut group = c.benchmark_group("claims");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for total in [1_000, large] {
        let (rec, _dir, target) = build(total);
        group.bench_with_input(BenchmarkId::new("lookup_used", total), &total, |b, _| {
            b.iter(|| black_box(rec.claim_state(target).unwrap()));
        });
        group.bench_with_input(BenchmarkId::new("lookup_fresh", total), &total, |b, _| {
            b.iter(|| black_box(rec.claim_state(Uuid::new_v4()).unwrap()));
        });
        group.bench_with_input(BenchmarkId::new("admit", total), &total, |b, _| {
            b.iter_batched(
                || {
                    let op = Uuid::new_v4();
                    (op, admission(op))
                },
                |(op, drafts)| {
                    let out = rec.append_claiming(Claim::Admit(op), drafts).unwrap();
                    assert!(matches!(out, ClaimOutcome::Recorded(_)));
                    black_box(out)
                },
                BatchSize::SmallInput,
            );
        });
        group.bench_with_input(
            BenchmarkId::new("old_replay_query", total),
            &total,
            |b, _| {
                b.iter(|| {
                    let query = EventQuery {
                        op_id: Some(target),
                        kind: Some(EventKind::OpCompleted),
                        ..EventQuery::default()
                    };
                    let found = rec.events(&query).unwrap();
                    assert_eq!(found.len(), 1);
                    black_box(found)
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_claims);
criterion_main!(benches);
