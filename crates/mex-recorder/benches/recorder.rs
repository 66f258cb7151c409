//! Flight Recorder benchmarks.
//!
//! * `append/durable_1_writer`: one thread, each append a committed and
//!   fsynced transaction (WAL, synchronous=FULL).
//! * `append/durable_8_threads`: 8 threads appending at once; group commit
//!   shares each fsync among the appends queued while the last one ran.
//! * `million/query_one_op`: all events of one op_id in a log of 1,000,000
//!   events (10 per op), through the op_id index.
//! * `million/verify`: verify the whole chain of that log.
//!
//! The million-event log is built once per run with the bulk path
//! (`append_batch` of 10,000 drafts per transaction) in a temp dir. Set
//! `MEX_RECORDER_BENCH_EVENTS` to build a smaller one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmarks fail loudly on a broken setup instead of handling it"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mex_envelope::{EngineId, OperationName, ResultStatus};
use mex_recorder::{EventDraft, EventKind, EventQuery, FlightRecorder, SqliteRecorder};
use serde_json::json;
use uuid::Uuid;

fn engine() -> EngineId {
    "engine.physics".parse().unwrap()
}
fn operation() -> OperationName {
    "physics.convert_units".parse().unwrap()
}

fn draft(op: Uuid, i: u64) -> EventDraft {
    EventDraft::new(EventKind::OpReceived)
        .with_op_id(op)
        .with_engine(engine())
        .with_operation(operation())
        .with_payload(json!({"i": i, "config_hash": "5f2b0c9d1e8a7b6c5f2b0c9d1e8a7b6c5f2b0c9d1e8a7b6c5f2b0c9d1e8a7b6c"}))
}

/// The ten events of one operation.
fn op_events(op: Uuid) -> Vec<EventDraft> {
    let gates = [
        "G-SCHEMA",
        "G-CAP",
        "G-INTEGRITY",
        "G-BUDGET",
        "G-PROVENANCE",
        "G-DET",
    ];
    let mut v = vec![draft(op, 0)];
    for g in gates {
        v.push(
            EventDraft::gate_passed(op, g.parse().unwrap(), "default")
                .with_engine(engine())
                .with_operation(operation()),
        );
    }
    v.push(EventDraft::engine_started(op, engine(), operation()));
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

fn bench_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));

    let dir = tempfile::tempdir().unwrap();
    let rec = SqliteRecorder::open(dir.path()).unwrap();
    let op = Uuid::new_v4();
    let mut i = 0;
    group.bench_function("durable_1_writer", |b| {
        b.iter_batched(
            || {
                i += 1;
                draft(op, i)
            },
            |d| black_box(rec.append(d).unwrap()),
            BatchSize::SmallInput,
        );
    });
    drop(rec);

    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(SqliteRecorder::open(dir.path()).unwrap());
    group.bench_function("durable_8_threads", |b| {
        b.iter_custom(|iters| {
            let threads = 8;
            let start = Instant::now();
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let rec = Arc::clone(&rec);
                    let n = iters / threads + u64::from(t < iters % threads);
                    std::thread::spawn(move || {
                        let op = Uuid::new_v4();
                        for i in 0..n {
                            black_box(rec.append(draft(op, i)).unwrap());
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            start.elapsed()
        });
    });
    group.finish();
    // How many appends shared each fsync (the group-commit figure).
    let appended = rec.head().unwrap().map_or(0, |h| h.seq);
    let stats = rec.commit_stats();
    {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "durable_8_threads: {appended} appends in {} fsynced commits ({:.1} per fsync)",
            stats.fsynced,
            appended as f64 / stats.fsynced.max(1) as f64
        );
    }
}

fn bench_million(c: &mut Criterion) {
    let total: u64 = std::env::var("MEX_RECORDER_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
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
    let head = rec.head().unwrap().unwrap();
    let size = std::fs::metadata(rec.path()).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(rec.path().with_extension("sqlite3-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    let build_time = built.elapsed();
    {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "built a log of {} events in {:.1?} ({:.0} events/s, {:.0} MB)",
            head.seq,
            build_time,
            head.seq as f64 / build_time.as_secs_f64(),
            size as f64 / 1e6
        );
    }

    let mut group = c.benchmark_group("million");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("query_one_op", |b| {
        b.iter(|| {
            let events = rec.events(&EventQuery::op(target)).unwrap();
            assert_eq!(events.len(), 10);
            black_box(events)
        });
    });
    group.sampling_mode(criterion::SamplingMode::Flat);
    group.bench_function("verify", |b| {
        b.iter(|| {
            let report = rec.verify().unwrap();
            assert!(report.is_ok());
            black_box(report)
        });
    });
    group.finish();
}

criterion_group!(benches, bench_append, bench_million);
criterion_main!(benches);
