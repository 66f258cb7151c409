//! Op-id claims: atomic across threads and connections, in the same
//! transaction as their events, durable, and reconciled when their owner
//! dies. (Claims raced by real `mex run` processes are tested in mex-cli.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

mod common;

use std::sync::{Arc, Barrier};

use mex_envelope::ResultStatus;
use mex_recorder::internal::{Claim, ClaimOutcome};
use mex_recorder::{
    ClaimState, DB_FILE_NAME, EventDraft, EventKind, EventQuery, FlightRecorder, INTERRUPTED_CODE,
    MemoryRecorder, ProblemFilter, SqliteRecorder,
};
use rusqlite::Connection;
use uuid::Uuid;

/// Receipt and admission of `op` (what the runtime commits with the claim).
fn admission(op: Uuid) -> Vec<EventDraft> {
    let mut drafts = common::op_drafts(op, 0);
    drafts.truncate(3); // received, gate passed, engine started
    drafts
}

/// Race `claimers` concurrent `Admit` claims of one op id; return how many
/// won and how many were told it was already claimed.
fn race(recorders: &[Arc<dyn FlightRecorder>], per_recorder: usize, op: Uuid) -> (usize, usize) {
    let barrier = Arc::new(Barrier::new(recorders.len() * per_recorder));
    let handles: Vec<_> = recorders
        .iter()
        .flat_map(|rec| (0..per_recorder).map(move |_| rec.clone()))
        .map(|rec| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                rec.append_claiming(Claim::Admit(op), admission(op))
                    .unwrap()
            })
        })
        .collect();
    let (mut won, mut lost) = (0, 0);
    for h in handles {
        match h.join().unwrap() {
            ClaimOutcome::Recorded(events) => {
                assert_eq!(events.len(), 3);
                won += 1;
            }
            ClaimOutcome::AlreadyClaimed(state) => {
                assert_eq!(state, ClaimState::Admitted);
                lost += 1;
            }
        }
    }
    (won, lost)
}

fn kinds(rec: &dyn FlightRecorder, op: Uuid, kind: EventKind) -> usize {
    rec.events(&EventQuery {
        op_id: Some(op),
        kind: Some(kind),
        ..EventQuery::default()
    })
    .unwrap()
    .len()
}

#[test]
fn one_of_many_threads_wins_a_claim_on_one_sqlite_recorder() {
    let dir = tempfile::tempdir().unwrap();
    let rec: Arc<dyn FlightRecorder> = Arc::new(SqliteRecorder::open(dir.path()).unwrap());
    for _ in 0..5 {
        let op = Uuid::new_v4();
        let (won, lost) = race(std::slice::from_ref(&rec), 12, op);
        assert_eq!((won, lost), (1, 11));
        assert_eq!(kinds(&*rec, op, EventKind::OpReceived), 1);
        assert_eq!(kinds(&*rec, op, EventKind::EngineStarted), 1);
        assert_eq!(rec.claim_state(op).unwrap(), Some(ClaimState::Admitted));
    }
    assert!(rec.verify().unwrap().is_ok());
}

#[test]
fn one_of_many_connections_wins_a_claim_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    // Four recorders: four write connections, four owners, one file.
    let recs: Vec<Arc<dyn FlightRecorder>> = (0..4)
        .map(|_| Arc::new(SqliteRecorder::open(dir.path()).unwrap()) as Arc<dyn FlightRecorder>)
        .collect();
    for _ in 0..5 {
        let op = Uuid::new_v4();
        let (won, lost) = race(&recs, 3, op);
        assert_eq!((won, lost), (1, 11));
        for rec in &recs {
            assert_eq!(kinds(&**rec, op, EventKind::EngineStarted), 1);
        }
    }
    assert!(recs[0].verify().unwrap().is_ok());
}

#[test]
fn one_of_many_threads_wins_a_claim_on_the_memory_recorder() {
    let rec: Arc<dyn FlightRecorder> = Arc::new(MemoryRecorder::new());
    let op = Uuid::new_v4();
    assert_eq!(race(std::slice::from_ref(&rec), 12, op), (1, 11));
    assert_eq!(kinds(&*rec, op, EventKind::EngineStarted), 1);
}

fn lifecycle(rec: &dyn FlightRecorder) {
    let op = Uuid::new_v4();
    assert_eq!(rec.claim_state(op).unwrap(), None);
    // A denial is recorded without claiming: the id stays usable.
    rec.append_batch(vec![EventDraft::op_completed(op, ResultStatus::Denied)])
        .unwrap();
    assert_eq!(rec.claim_state(op).unwrap(), None);
    let ClaimOutcome::Recorded(_) = rec
        .append_claiming(Claim::Admit(op), admission(op))
        .unwrap()
    else {
        panic!("a fresh op id must be claimable");
    };
    assert_eq!(rec.claim_state(op).unwrap(), Some(ClaimState::Admitted));
    let ClaimOutcome::Recorded(done) = rec
        .append_claiming(
            Claim::Complete(op),
            vec![EventDraft::op_completed(op, ResultStatus::Succeeded)],
        )
        .unwrap()
    else {
        panic!("completion is never refused");
    };
    assert_eq!(done[0].kind, EventKind::OpCompleted);
    assert_eq!(rec.claim_state(op).unwrap(), Some(ClaimState::Completed));
    // Claimed for good: a second claim writes nothing.
    let before = rec.events(&EventQuery::all()).unwrap().len();
    assert_eq!(
        rec.append_claiming(Claim::Admit(op), admission(op))
            .unwrap(),
        ClaimOutcome::AlreadyClaimed(ClaimState::Completed)
    );
    assert_eq!(
        rec.append_claiming(
            Claim::AdmitCompleted(op),
            vec![EventDraft::op_completed(op, ResultStatus::Succeeded)]
        )
        .unwrap(),
        ClaimOutcome::AlreadyClaimed(ClaimState::Completed)
    );
    assert_eq!(rec.events(&EventQuery::all()).unwrap().len(), before);

    // Claimed and completed in one batch (a cache hit).
    let hit = Uuid::new_v4();
    let mut drafts = admission(hit);
    drafts.push(EventDraft::op_completed(hit, ResultStatus::Succeeded));
    assert!(matches!(
        rec.append_claiming(Claim::AdmitCompleted(hit), drafts)
            .unwrap(),
        ClaimOutcome::Recorded(_)
    ));
    assert_eq!(rec.claim_state(hit).unwrap(), Some(ClaimState::Completed));
    assert!(rec.verify().unwrap().is_ok());
}

#[test]
fn claims_move_admitted_then_completed_and_denials_claim_nothing() {
    lifecycle(&MemoryRecorder::new());
    let dir = tempfile::tempdir().unwrap();
    lifecycle(&SqliteRecorder::open(dir.path()).unwrap());
}

#[test]
fn a_claim_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let op = Uuid::new_v4();
    {
        let rec = SqliteRecorder::open(dir.path()).unwrap();
        rec.append_claiming(Claim::Admit(op), admission(op))
            .unwrap();
        rec.append_claiming(
            Claim::Complete(op),
            vec![EventDraft::op_completed(op, ResultStatus::Succeeded)],
        )
        .unwrap();
    }
    let rec = SqliteRecorder::open(dir.path()).unwrap();
    assert_eq!(rec.claim_state(op).unwrap(), Some(ClaimState::Completed));
    assert_eq!(
        rec.append_claiming(Claim::Admit(op), admission(op))
            .unwrap(),
        ClaimOutcome::AlreadyClaimed(ClaimState::Completed)
    );
}

#[test]
fn a_run_whose_owner_is_gone_is_recorded_interrupted_once() {
    let dir = tempfile::tempdir().unwrap();
    let op = Uuid::new_v4();
    {
        let owner = SqliteRecorder::open(dir.path()).unwrap();
        owner
            .append_claiming(Claim::Admit(op), admission(op))
            .unwrap();
        // While the owner lives, another recorder on the same file (as
        // another process would) leaves its run alone.
        let other = SqliteRecorder::open(dir.path()).unwrap();
        assert_eq!(other.reconcile_interrupted().unwrap(), Vec::<Uuid>::new());
        assert_eq!(other.claim_state(op).unwrap(), Some(ClaimState::Admitted));
        assert_eq!(kinds(&other, op, EventKind::OpCompleted), 0);
    } // the owner goes away without completing its run

    let rec = SqliteRecorder::open(dir.path()).unwrap();
    assert_eq!(rec.claim_state(op).unwrap(), Some(ClaimState::Interrupted));
    let completed = rec
        .events(&EventQuery {
            op_id: Some(op),
            kind: Some(EventKind::OpCompleted),
            ..EventQuery::default()
        })
        .unwrap();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].status, Some(ResultStatus::Failed));
    assert_eq!(
        completed[0].code.as_ref().map(|c| c.as_str()),
        Some(INTERRUPTED_CODE)
    );
    // Engine and operation come from the op's receipt.
    assert_eq!(
        completed[0].engine_id.as_ref().map(|e| e.as_str()),
        Some("engine.physics")
    );
    let problems = rec.problems(&ProblemFilter::default()).unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.code.as_str() == INTERRUPTED_CODE && p.last_op_id == Some(op)),
        "{problems:?}"
    );
    // Reconciling again (or reopening) records nothing more, and the op id
    // can never be claimed again.
    assert_eq!(rec.reconcile_interrupted().unwrap(), Vec::<Uuid>::new());
    drop(rec);
    let rec = SqliteRecorder::open(dir.path()).unwrap();
    assert_eq!(kinds(&rec, op, EventKind::OpCompleted), 1);
    assert_eq!(
        rec.append_claiming(Claim::Admit(op), admission(op))
            .unwrap(),
        ClaimOutcome::AlreadyClaimed(ClaimState::Interrupted)
    );
    assert!(rec.verify().unwrap().is_ok());
    // Only live owners keep lock files.
    let owners = dir.path().join(format!("{DB_FILE_NAME}-owners"));
    let left: Vec<_> = std::fs::read_dir(&owners).unwrap().flatten().collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn a_version_2_log_is_migrated_with_its_history_claimed() {
    let dir = tempfile::tempdir().unwrap();
    let (done, denied, crashed) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    {
        let rec = SqliteRecorder::open(dir.path()).unwrap();
        rec.append_batch(common::op_drafts(done, 0)).unwrap();
        rec.append_batch(vec![
            EventDraft::new(EventKind::OpReceived).with_op_id(denied),
            EventDraft::op_completed(denied, ResultStatus::Denied),
        ])
        .unwrap();
        rec.append_batch(admission(crashed)).unwrap();
    }
    // Back to version 2 as it shipped: no claims table.
    Connection::open(dir.path().join(DB_FILE_NAME))
        .unwrap()
        .execute_batch("DROP TABLE op_claims; PRAGMA user_version = 2;")
        .unwrap();
    let rec = SqliteRecorder::open(dir.path()).unwrap();
    assert_eq!(rec.claim_state(done).unwrap(), Some(ClaimState::Completed));
    assert_eq!(rec.claim_state(denied).unwrap(), None);
    assert_eq!(
        rec.claim_state(crashed).unwrap(),
        Some(ClaimState::Interrupted)
    );
    assert_eq!(kinds(&rec, crashed, EventKind::OpCompleted), 1);
    assert!(rec.verify().unwrap().is_ok());
}
