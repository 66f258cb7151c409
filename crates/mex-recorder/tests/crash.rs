//! Crash test: a child process appends from several threads and prints each
//! acknowledged event; the parent kills it with SIGKILL at random moments,
//! many times. After each kill the log reopens, verifies, and holds every
//! event the child was told is durable, with the hash it was told.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use mex_recorder::{EventDraft, EventKind, EventQuery, FlightRecorder, SqliteRecorder};
use serde_json::json;
use uuid::Uuid;

const CHILD_ENV: &str = "MEX_RECORDER_CRASH_CHILD_DIR";
const ROUNDS: usize = 12;
const CHILD_THREADS: usize = 4;

/// In the child (env var set): append forever from several threads,
/// printing `ACK <seq> <hash>` after each append returns. Run by the harness
/// itself, it runs the same workload for a few appends per thread into a
/// fresh log, which must then verify and hold every acknowledged event.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        let dir = tempfile::tempdir().unwrap();
        let rec = Arc::new(SqliteRecorder::open(dir.path()).unwrap());
        let acks = append_from_threads(&rec, Some(5), false);
        assert_eq!(acks.len(), CHILD_THREADS * 5);
        assert!(rec.verify().unwrap().is_ok());
        let events = rec.events(&EventQuery::all()).unwrap();
        assert_eq!(events.len(), acks.len());
        for (seq, hash) in acks {
            assert_eq!(
                events[usize::try_from(seq - 1).unwrap()].hash.to_hex(),
                hash
            );
        }
        return;
    };
    let rec = Arc::new(SqliteRecorder::open(&dir).unwrap());
    append_from_threads(&rec, None, true);
}

/// Append from several threads, `per_thread` times each (or forever),
/// printing each acknowledgement when `print`; returns them.
fn append_from_threads(
    rec: &Arc<SqliteRecorder>,
    per_thread: Option<u64>,
    print: bool,
) -> Vec<(u64, String)> {
    let threads: Vec<_> = (0..CHILD_THREADS)
        .map(|t| {
            let rec = Arc::clone(rec);
            std::thread::spawn(move || {
                let op = Uuid::new_v4();
                let mut acks = Vec::new();
                for i in 0u64..per_thread.unwrap_or(u64::MAX) {
                    let draft = EventDraft::new(EventKind::OpReceived)
                        .with_op_id(op)
                        .with_payload(json!({"thread": t, "i": i, "pad": "p".repeat(200)}));
                    let e = rec.append(draft).unwrap();
                    if print {
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {} {}", e.seq, e.hash).unwrap();
                        out.flush().unwrap();
                    }
                    acks.push((e.seq, e.hash.to_hex()));
                }
                acks
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

/// A cheap pseudo-random delay without a rand dependency.
fn random_delay_ms(lo: u64, hi: u64) -> u64 {
    let r = u64::from_le_bytes(Uuid::new_v4().as_bytes()[..8].try_into().unwrap());
    lo + r % (hi - lo)
}

#[test]
fn acknowledged_events_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<(u64, String)> = Vec::new();
    let mut acked_this_run = Vec::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Wait for a first acknowledgement however slow the machine is, so
        // every round has something durable to check; then kill at a
        // random moment.
        let mut first = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.split("ACK ").nth(1) {
                let (seq, hash) = rest.split_once(' ').unwrap();
                first.push((seq.parse::<u64>().unwrap(), hash.to_owned()));
                break;
            }
        }
        assert!(
            !first.is_empty(),
            "round {round}: the child acknowledged nothing"
        );
        let reader = std::thread::spawn(move || {
            let mut acks = first;
            for line in lines {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("ACK ").nth(1) {
                    let (seq, hash) = rest.split_once(' ').unwrap();
                    acks.push((seq.parse::<u64>().unwrap(), hash.to_owned()));
                }
            }
            acks
        });
        std::thread::sleep(Duration::from_millis(random_delay_ms(0, 300)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let acks = reader.join().unwrap();
        acked_this_run.push(acks.len());
        acked.extend(acks);

        // Reopen after every kill: the log verifies and holds every ack.
        let rec = SqliteRecorder::open(dir.path()).unwrap();
        let report = rec.verify().unwrap();
        assert!(report.is_ok(), "round {round}: {report:?}");
        let events = rec.events(&EventQuery::all()).unwrap();
        for (seq, hash) in &acked {
            let e = events
                .get(usize::try_from(*seq - 1).unwrap())
                .unwrap_or_else(|| {
                    panic!(
                        "round {round}: acknowledged seq {seq} is missing ({} events stored)",
                        events.len()
                    )
                });
            assert_eq!(e.seq, *seq);
            assert_eq!(
                &e.hash.to_hex(),
                hash,
                "round {round}: acknowledged seq {seq} changed"
            );
        }
    }
    writeln!(std::io::stderr(), "acks per round: {acked_this_run:?}").unwrap();
    assert!(
        acked.len() >= ROUNDS,
        "the child acknowledged too little to mean anything: {acked_this_run:?}"
    );
}
