//! Durability per kind of commit: an admitting claim commits to the WAL
//! without waiting for an fsync, everything else commits fsynced; and an
//! acknowledged admission that was never fsynced survives SIGKILL of its
//! process (a real child process is killed).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use mex_envelope::ResultStatus;
use mex_recorder::internal::{Claim, ClaimOutcome};
use mex_recorder::{
    ClaimState, CommitStats, DB_FILE_NAME, EventDraft, EventKind, EventQuery, FlightRecorder,
    SqliteRecorder,
};
use uuid::Uuid;

const CHILD_ENV: &str = "MEX_RECORDER_ADMIT_CHILD_DIR";

/// Receipt, a gate and engine start of `op`: what the runtime admits with.
fn admission(op: Uuid) -> Vec<EventDraft> {
    let mut drafts = common::op_drafts(op, 0);
    drafts.truncate(3);
    drafts
}

fn recorded(outcome: ClaimOutcome) -> Vec<mex_recorder::Event> {
    match outcome {
        ClaimOutcome::Recorded(events) => events,
        ClaimOutcome::AlreadyClaimed(state) => panic!("unexpectedly claimed already: {state}"),
    }
}

/// The commit path each kind of append takes, as the writer connection
/// reports its `synchronous` level back: only `Claim::Admit` defers.
#[test]
fn only_an_admitting_claim_commits_without_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let rec = SqliteRecorder::open(dir.path()).unwrap();
    let mut last = rec.commit_stats();
    let mut step = |what: &str, expect: CommitStats| {
        let now = rec.commit_stats();
        let delta = CommitStats {
            fsynced: now.fsynced - last.fsynced,
            deferred: now.deferred - last.deferred,
        };
        assert_eq!(delta, expect, "{what}");
        last = now;
    };
    let fsynced = CommitStats {
        fsynced: 1,
        deferred: 0,
    };
    let deferred = CommitStats {
        fsynced: 0,
        deferred: 1,
    };

    let op = Uuid::new_v4();
    recorded(
        rec.append_claiming(Claim::Admit(op), admission(op))
            .unwrap(),
    );
    step("Claim::Admit", deferred);
    recorded(
        rec.append_claiming(
            Claim::Complete(op),
            vec![EventDraft::op_completed(op, ResultStatus::Succeeded)],
        )
        .unwrap(),
    );
    step("Claim::Complete", fsynced);

    let cached = Uuid::new_v4();
    recorded(
        rec.append_claiming(Claim::AdmitCompleted(cached), common::op_drafts(cached, 1))
            .unwrap(),
    );
    step("Claim::AdmitCompleted", fsynced);

    rec.append(EventDraft::new(EventKind::OpReceived).with_op_id(Uuid::new_v4()))
        .unwrap();
    step("append", fsynced);
    rec.append_batch(common::op_drafts(Uuid::new_v4(), 2))
        .unwrap();
    step("append_batch", fsynced);

    // Admitting again after fsynced commits still defers; a refused admit
    // writes nothing but is a transaction all the same.
    let again = Uuid::new_v4();
    recorded(
        rec.append_claiming(Claim::Admit(again), admission(again))
            .unwrap(),
    );
    step("Claim::Admit after fsynced commits", deferred);
    assert_eq!(
        rec.append_claiming(Claim::Admit(again), admission(again))
            .unwrap(),
        ClaimOutcome::AlreadyClaimed(ClaimState::Admitted)
    );
    step("a refused Claim::Admit", deferred);
    assert!(rec.verify().unwrap().is_ok());
}

/// In the child (env var set): admit fresh ops forever, printing each
/// acknowledged admission with the commit counts at that moment. Run by the
/// harness itself, it admits a few ops and checks them.
#[test]
fn admit_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        let dir = tempfile::tempdir().unwrap();
        let rec = SqliteRecorder::open(dir.path()).unwrap();
        for _ in 0..3 {
            let op = Uuid::new_v4();
            recorded(
                rec.append_claiming(Claim::Admit(op), admission(op))
                    .unwrap(),
            );
            assert_eq!(rec.claim_state(op).unwrap(), Some(ClaimState::Admitted));
        }
        assert_eq!(rec.commit_stats().deferred, 3);
        return;
    };
    let rec = SqliteRecorder::open(&dir).unwrap();
    loop {
        let op = Uuid::new_v4();
        let events = recorded(
            rec.append_claiming(Claim::Admit(op), admission(op))
                .unwrap(),
        );
        let stats = rec.commit_stats();
        let mut out = std::io::stdout().lock();
        for e in &events {
            writeln!(
                out,
                "ACK {op} {} {} {} {}",
                e.seq, e.hash, stats.fsynced, stats.deferred
            )
            .unwrap();
        }
        out.flush().unwrap();
    }
}

#[test]
fn an_acknowledged_admission_survives_sigkill_before_any_fsync() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["admit_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read acknowledgements until a few admissions are in, then SIGKILL the
    // child while it is still admitting.
    let mut acks: Vec<(Uuid, u64, String, u64)> = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let Some(rest) = line.split("ACK ").nth(1) else {
            continue;
        };
        let f: Vec<&str> = rest.split(' ').collect();
        acks.push((
            f[0].parse().unwrap(),
            f[1].parse().unwrap(),
            f[2].to_owned(),
            f[3].parse().unwrap(),
        ));
        if acks.len() >= 3 * 5 {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert_eq!(acks.len(), 15, "the child acknowledged too little");
    // Not one of the acknowledged admissions was fsynced by the child: they
    // were answered from the WAL alone.
    assert!(
        acks.iter().all(|a| a.3 == 0),
        "the child fsynced an admission: {acks:?}"
    );

    // Before any recorder reopens (and reconciles), the claims are in the
    // file as the child left it.
    {
        let conn = rusqlite::Connection::open(dir.path().join(DB_FILE_NAME)).unwrap();
        for (op, ..) in &acks {
            let state: String = conn
                .query_row(
                    "SELECT state FROM op_claims WHERE op_id = ?1",
                    [op.to_string()],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(state, "admitted", "op {op}");
        }
    }

    let rec = SqliteRecorder::open(dir.path()).unwrap();
    assert!(rec.verify().unwrap().is_ok());
    let events = rec.events(&EventQuery::all()).unwrap();
    for (op, seq, hash, _) in &acks {
        let e = &events[usize::try_from(*seq - 1).unwrap()];
        assert_eq!((e.seq, e.hash.to_hex()), (*seq, hash.clone()));
        // Its owner is dead, so reopening recorded the run as interrupted:
        // the claim stays, the op id is never reused.
        assert_eq!(
            rec.claim_state(*op).unwrap(),
            Some(ClaimState::Interrupted),
            "op {op}"
        );
    }
}
