//! Measure the bulk path: append N events (default 1,000,000) of the shape
//! `mex bench --preload-events` uses, in batches of 4096, to a fresh log in
//! a temp dir, and print the rate.
//!
//! `cargo run --profile bench -p mex-recorder --example preload -- 1000000`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "a measuring tool fails loudly on a broken setup"
)]

use std::io::Write;
use std::time::Instant;

use mex_recorder::{EventDraft, EventKind, FlightRecorder, SqliteRecorder};
use serde_json::json;

const BATCH: usize = 4096;

fn main() {
    let total: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let rec = SqliteRecorder::open(dir.path()).unwrap();
    let started = Instant::now();
    let mut left = total;
    let mut report_at = total.saturating_sub(total / 10);
    while left > 0 {
        let n = left.min(BATCH);
        let batch: Vec<EventDraft> = (0..n)
            .map(|_| {
                EventDraft::new(EventKind::OpReceived)
                    .with_op_id(uuid::Uuid::new_v4())
                    .with_payload(json!({"bench": "preload"}))
            })
            .collect();
        rec.append_batch(batch).unwrap();
        left -= n;
        if left <= report_at && left > 0 {
            let done = total - left;
            let _ = writeln!(
                std::io::stderr(),
                "{done} events in {:.1?} ({:.0} events/s)",
                started.elapsed(),
                done as f64 / started.elapsed().as_secs_f64()
            );
            report_at = report_at.saturating_sub(total / 10);
        }
    }
    let took = started.elapsed();
    let head = rec.head().unwrap().map_or(0, |h| h.seq);
    let _ = writeln!(
        std::io::stdout(),
        "preloaded {head} events in {took:.1?}: {:.0} events/s",
        head as f64 / took.as_secs_f64()
    );
}
