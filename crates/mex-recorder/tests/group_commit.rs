//! Group commit under attack, through the recorder's public API: a child
//! process whose eight threads append, admit and complete ops (so groups
//! mix fsynced and deferred requests, each committed by whichever caller
//! leads) is killed with SIGKILL again and again; several processes race
//! admitting claims on the same op ids; two connections open a new log at
//! the same instant.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use mex_envelope::ResultStatus;
use mex_recorder::internal::{Claim, ClaimOutcome};
use mex_recorder::{
    ClaimState, DB_FILE_NAME, EventDraft, EventKind, EventQuery, FlightRecorder, SqliteRecorder,
};
use serde_json::json;
use uuid::Uuid;

const CRASH_CHILD_ENV: &str = "MEX_RECORDER_GROUP_CRASH_DIR";
const RACE_CHILD_ENV: &str = "MEX_RECORDER_GROUP_RACE_DIR";
const RACE_OPS_ENV: &str = "MEX_RECORDER_GROUP_RACE_OPS";
const CRASH_THREADS: usize = 8;
const ROUNDS: usize = 6;
const RACE_PROCESSES: usize = 3;
const RACE_THREADS: usize = 4;
const RACE_OPS: usize = 40;

/// Receipt and admission of `op` (what the runtime commits with the claim).
fn admission(op: Uuid) -> Vec<EventDraft> {
    let mut drafts = common::op_drafts(op, 0);
    drafts.truncate(3);
    drafts
}

fn recorded(outcome: ClaimOutcome) -> Vec<mex_recorder::Event> {
    match outcome {
        ClaimOutcome::Recorded(events) => events,
        ClaimOutcome::AlreadyClaimed(state) => panic!("a fresh op id was claimed: {state:?}"),
    }
}

/// One step of a crash-child thread, printing what was acknowledged:
/// `ADMIT <op>` (deferred commit), `DONE <op>` (fsynced) and `ACK <seq>
/// <hash>` for every event returned. Any error is printed as `ERR`.
fn step(rec: &SqliteRecorder, t: usize, i: u64, print: bool) -> Vec<String> {
    let op = Uuid::new_v4();
    let mut lines = Vec::new();
    let ack = |events: &[mex_recorder::Event], lines: &mut Vec<String>| {
        for e in events {
            lines.push(format!("ACK {} {}", e.seq, e.hash));
        }
    };
    match rec.append_claiming(Claim::Admit(op), admission(op)) {
        Ok(outcome) => {
            let events = recorded(outcome);
            ack(&events, &mut lines);
            lines.push(format!("ADMIT {op}"));
        }
        Err(e) => lines.push(format!("ERR {e}")),
    }
    // Every other op completes; the rest stay admitted until the kill.
    if i.is_multiple_of(2) {
        match rec.append_claiming(
            Claim::Complete(op),
            vec![EventDraft::op_completed(op, ResultStatus::Succeeded)],
        ) {
            Ok(outcome) => {
                let events = recorded(outcome);
                ack(&events, &mut lines);
                lines.push(format!("DONE {op}"));
            }
            Err(e) => lines.push(format!("ERR {e}")),
        }
    }
    match rec.append(
        EventDraft::new(EventKind::OpReceived)
            .with_op_id(Uuid::new_v4())
            .with_payload(json!({"thread": t, "i": i})),
    ) {
        Ok(e) => ack(&[e], &mut lines),
        Err(e) => lines.push(format!("ERR {e}")),
    }
    if print {
        let mut out = std::io::stdout().lock();
        for line in &lines {
            writeln!(out, "{line}").unwrap();
        }
        out.flush().unwrap();
    }
    lines
}

/// What a crash child acknowledged, from its output lines.
#[derive(Default)]
struct Acked {
    events: Vec<(u64, String)>,
    admitted: Vec<Uuid>,
    completed: HashSet<Uuid>,
    errors: Vec<String>,
}

impl Acked {
    fn take(&mut self, line: &str) {
        if let Some(rest) = line.split("ACK ").nth(1) {
            let (seq, hash) = rest.split_once(' ').unwrap();
            self.events.push((seq.parse().unwrap(), hash.to_owned()));
        } else if let Some(op) = line.split("ADMIT ").nth(1) {
            self.admitted.push(op.parse().unwrap());
        } else if let Some(op) = line.split("DONE ").nth(1) {
            self.completed.insert(op.parse().unwrap());
        } else if let Some(e) = line.split("ERR ").nth(1) {
            self.errors.push(e.to_owned());
        }
    }
}

/// Every acknowledged event is on record with its hash, every acknowledged
/// claim is there (an admitted one found interrupted once its process is
/// gone), and the chain verifies.
fn check_reopened(rec: &SqliteRecorder, acked: &Acked, context: &str) {
    let report = rec.verify().unwrap();
    assert!(report.is_ok(), "{context}: {report:?}");
    let events = rec.events(&EventQuery::all()).unwrap();
    for (k, e) in events.iter().enumerate() {
        assert_eq!(e.seq, k as u64 + 1, "{context}: seqs not dense");
    }
    for (seq, hash) in &acked.events {
        let e = events
            .get(usize::try_from(*seq - 1).unwrap())
            .unwrap_or_else(|| {
                panic!(
                    "{context}: acknowledged seq {seq} is missing ({} stored)",
                    events.len()
                )
            });
        assert_eq!(&e.hash.to_hex(), hash, "{context}: seq {seq} changed");
    }
    for op in &acked.admitted {
        let state = rec.claim_state(*op).unwrap();
        let want = if acked.completed.contains(op) {
            ClaimState::Completed
        } else {
            // Its process is dead: the reopen reconciled it, unless the
            // completion committed but was not acknowledged before the kill.
            match state {
                Some(ClaimState::Completed) => ClaimState::Completed,
                _ => ClaimState::Interrupted,
            }
        };
        assert_eq!(state, Some(want), "{context}: claim of {op}");
    }
}

/// In the child (env var set): eight threads step forever. Run by the
/// harness itself, a few steps each into a fresh log, checked the same way.
#[test]
fn group_crash_child() {
    let Ok(dir) = std::env::var(CRASH_CHILD_ENV) else {
        let dir = tempfile::tempdir().unwrap();
        let rec = Arc::new(SqliteRecorder::open(dir.path()).unwrap());
        let lines = run_threads(&rec, Some(4), false);
        let mut acked = Acked::default();
        lines.iter().for_each(|l| acked.take(l));
        assert_eq!(acked.errors, Vec::<String>::new());
        assert_eq!(acked.admitted.len(), CRASH_THREADS * 4);
        assert_eq!(acked.completed.len(), CRASH_THREADS * 2);
        drop(Arc::into_inner(rec).unwrap());
        let rec = SqliteRecorder::open(dir.path()).unwrap();
        check_reopened(&rec, &acked, "in one process");
        return;
    };
    let rec = Arc::new(SqliteRecorder::open(&dir).unwrap());
    run_threads(&rec, None, true);
}

fn run_threads(rec: &Arc<SqliteRecorder>, steps: Option<u64>, print: bool) -> Vec<String> {
    let threads: Vec<_> = (0..CRASH_THREADS)
        .map(|t| {
            let rec = Arc::clone(rec);
            std::thread::spawn(move || {
                (0..steps.unwrap_or(u64::MAX))
                    .flat_map(|i| step(&rec, t, i, print))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

fn random_below(n: u64) -> u64 {
    let r = u64::from_le_bytes(Uuid::new_v4().as_bytes()[..8].try_into().unwrap());
    r % n
}

/// SIGKILL lands while eight threads append, admit (deferred commits) and
/// complete (fsynced) through group commit: after each kill the log
/// reopens, verifies, and holds every acknowledged event and claim.
#[test]
fn acknowledged_work_of_eight_threads_survives_sigkill() {
    if std::env::var(CRASH_CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked = Acked::default();
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "group_crash_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // A first acknowledgement however slow the machine, then a kill at
        // a random moment.
        let before = acked.events.len();
        for line in lines.by_ref() {
            acked.take(&line.unwrap());
            if acked.events.len() > before {
                break;
            }
        }
        assert!(
            acked.events.len() > before,
            "round {round}: the child acknowledged nothing"
        );
        let reader = std::thread::spawn(move || {
            let mut more = Acked::default();
            for line in lines {
                let Ok(line) = line else { break };
                more.take(&line);
            }
            more
        });
        std::thread::sleep(Duration::from_millis(random_below(300)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let more = reader.join().unwrap();
        acked.events.extend(more.events);
        acked.admitted.extend(more.admitted);
        acked.completed.extend(more.completed);
        acked.errors.extend(more.errors);
        assert_eq!(acked.errors, Vec::<String>::new(), "round {round}");

        let rec = SqliteRecorder::open(dir.path()).unwrap();
        check_reopened(&rec, &acked, &format!("round {round}"));
    }
}

/// In a racing child (env vars set): four threads try to admit each of the
/// given op ids; print `WON <op>` for each claim won.
#[test]
fn group_race_child() {
    let (Ok(dir), Ok(ops)) = (std::env::var(RACE_CHILD_ENV), std::env::var(RACE_OPS_ENV)) else {
        return;
    };
    let ops: Vec<Uuid> = ops.split(',').map(|o| o.parse().unwrap()).collect();
    let rec = Arc::new(SqliteRecorder::open(&dir).unwrap());
    let threads: Vec<_> = (0..RACE_THREADS)
        .map(|t| {
            let (rec, ops) = (Arc::clone(&rec), ops.clone());
            std::thread::spawn(move || {
                let mut won = Vec::new();
                // Each thread walks the ops from another start, so claims of
                // one op id meet inside groups and across processes.
                for k in 0..ops.len() {
                    let op = ops[(k + t * ops.len() / RACE_THREADS) % ops.len()];
                    match rec
                        .append_claiming(Claim::Admit(op), admission(op))
                        .unwrap()
                    {
                        ClaimOutcome::Recorded(events) => {
                            assert_eq!(events.len(), 3);
                            won.push(op);
                        }
                        // Interrupted: the winner's process has already
                        // exited, and this one's open reconciled its claims.
                        ClaimOutcome::AlreadyClaimed(state) => assert!(
                            matches!(state, ClaimState::Admitted | ClaimState::Interrupted),
                            "{op}: {state:?}"
                        ),
                    }
                }
                won
            })
        })
        .collect();
    let mut out = std::io::stdout().lock();
    for t in threads {
        for op in t.join().unwrap() {
            writeln!(out, "WON {op}").unwrap();
        }
    }
    out.flush().unwrap();
}

/// Three processes of four threads each race to admit the same op ids:
/// each op id is won exactly once, and only its winner's events are on
/// record.
#[test]
fn one_claimant_of_each_op_wins_across_processes_and_threads() {
    if std::env::var(RACE_CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The log exists before the race (the open race is tested below).
    drop(SqliteRecorder::open(dir.path()).unwrap());
    let ops: Vec<Uuid> = (0..RACE_OPS).map(|_| Uuid::new_v4()).collect();
    let list = ops
        .iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..RACE_PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "group_race_child",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(RACE_CHILD_ENV, dir.path())
                .env(RACE_OPS_ENV, &list)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut wins: HashMap<Uuid, usize> = HashMap::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "a racing child failed: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for op in text.lines().filter_map(|l| l.split("WON ").nth(1)) {
            *wins.entry(op.parse().unwrap()).or_default() += 1;
        }
    }
    for op in &ops {
        assert_eq!(
            wins.get(op),
            Some(&1),
            "op {op} won {:?} times",
            wins.get(op)
        );
    }
    let rec = SqliteRecorder::open(dir.path()).unwrap();
    assert!(rec.verify().unwrap().is_ok());
    for op in &ops {
        // The winner's receipt, admission and start; then (its process
        // gone) the interruption this open recorded.
        let kinds: Vec<EventKind> = rec
            .events(&EventQuery::op(*op))
            .unwrap()
            .iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                EventKind::OpReceived,
                EventKind::GatePassed,
                EventKind::EngineStarted,
                EventKind::OpCompleted
            ],
            "op {op}: only the winner's events"
        );
        assert_eq!(rec.claim_state(*op).unwrap(), Some(ClaimState::Interrupted));
    }
}

/// Another connection holding a new log's write lock (another process
/// creating the same new home at that instant) makes opening it wait, not
/// fail at once with "database is locked". SQLite answers that case without
/// its busy handler, so the recorder's own wait is what is tested: the lock
/// is released while the open waits (the pause below only lets the open
/// meet the lock first; were it late, the test could only pass, not fail
/// wrongly).
#[test]
fn opening_a_new_log_waits_for_another_connection_creating_it() {
    let dir = tempfile::tempdir().unwrap();
    let holder = rusqlite::Connection::open(dir.path().join(DB_FILE_NAME)).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let home = dir.path().to_owned();
    let opener = std::thread::spawn(move || SqliteRecorder::open(home).map(drop));
    std::thread::sleep(Duration::from_millis(300));
    holder.execute_batch("COMMIT").unwrap();
    opener.join().unwrap().unwrap();
}
