//! # mex-recorder: the Flight Recorder and Problems
//!
//! This crate owns the durable, append-only, hash-chained audit log of
//! everything the mex runtime decided and did (docs/contract.md §10), the Problems
//! list derived from it, the queries over both, and verification of the
//! chain. It defines the [`FlightRecorder`] trait and two implementations:
//! [`SqliteRecorder`] (the durable default, `<mex home>/recorder.sqlite3`)
//! and [`MemoryRecorder`] (tests and embedders that keep nothing).
//!
//! It does **not** decide anything: gates, capabilities and budgets live in
//! their crates and tell the recorder what they decided through
//! [`EventDraft`]s. It does not store artifacts (only their digests) and it
//! does not depend on any mex crate but `mex-envelope`.
//!
//! ## Events and the chain
//!
//! Callers append [`EventDraft`]s; the recorder checks them, applies
//! [redaction](redact) and the payload bounds, then assigns `seq` (1, 2, 3,
//! ... without gaps, one total order across all threads and processes),
//! `recorded_at` (never earlier than the previous event), `prev_hash` and
//! `hash` = SHA-256 of the RFC 8785 canonical form of the [`Event`] without
//! its `hash`. [`FlightRecorder::verify`] walks the chain and reports the
//! first bad seq; see the [`verify`] module for what it catches and,
//! honestly, what it cannot.
//!
//! ## Durability (the decision)
//!
//! [`SqliteRecorder`] runs SQLite in WAL mode. Two commit paths:
//!
//! * **Fsynced** (`synchronous=FULL`), for every append that reports an
//!   outcome: plain [`FlightRecorder::append`] / [`FlightRecorder::append_batch`],
//!   `Claim::AdmitCompleted` and `Claim::Complete` claims, problem
//!   resolutions, interruptions. The call returns only after the
//!   transaction is in the WAL **and fsynced**, so an acknowledged *result*
//!   survives a crash of the process (SIGKILL included, tested) **and** a
//!   power cut or kernel crash, provided the disk honours fsync (a drive or
//!   virtual disk that lies about flushes can lose the last acknowledged
//!   transactions on power loss; nothing in software can fix that).
//! * **Deferred** (`synchronous=NORMAL`), for an admitting claim only
//!   (`Claim::Admit`: an op's receipt and admission, recorded before its
//!   engine runs). The transaction is in the WAL when the call returns:
//!   visible to every process and durable against a crash of the process at
//!   once (tested with SIGKILL), and durable against power loss as soon as
//!   any later fsynced commit lands, since an fsync of the WAL covers
//!   everything before it. An op in flight at a power cut may lose its
//!   receipt; it never returned a result, and its result would have been
//!   fsynced with everything before it.
//!
//! If a group commit holds any request that needs an fsync, the whole group
//! is fsynced. [`SqliteRecorder::commit_stats`] counts the commits of each
//! kind (as the writer connection reports its `synchronous` level back).
//! Everything but admission pays one fsync per commit, amortized by group
//! commit: an audit log that forgets a denial or a result it reported is
//! worse than a slower one.
//!
//! ## Group commit
//!
//! Appending threads prepare their drafts (validation, redaction, canonical
//! payload) in parallel and queue them. The first queued caller that finds
//! no commit running becomes the leader: it takes everything queued,
//! commits it on the write connection in one transaction (one fsync; more
//! than 8,192 drafts are cut into transactions of at most that many, never
//! splitting one caller's batch) and wakes every caller in the group with
//! its events (the protocol is the `mex-group` crate's). There is no writer thread: a lone caller commits
//! its own append on its own thread, without handing it to another thread
//! and back. When fewer requests are queued than the last group held, the
//! leader waits for the others (the callers just answered, preparing their
//! next append), at most as long as the last commit took; a lone caller
//! never waits. With many concurrent writers the fsync cost is shared,
//! which is what the `append/durable_8_threads` bench measures.
//!
//! ## Checkpoints
//!
//! SQLite copies the WAL into the main file in *checkpoints*. By default
//! the commit that pushes the WAL past 1000 pages runs one, and its callers
//! wait for the copy and the main file's fsync. [`SqliteRecorder`] moves
//! that work to a checkpointer thread with its own connection, woken each
//! 1000 pages of growth; it copies while commits go on. One commit in
//! about 8000 pages still checkpoints, briefly, so that the WAL starts
//! again from its beginning (see `checkpoint.rs`);
//! [`SqliteRecorder::checkpoint_stats`] counts both kinds and the WAL's
//! size. A reader holding an old snapshot lets the WAL grow further, as in
//! any WAL database; once it ends, the WAL starts again and its file is cut
//! back to about that size.
//!
//! ## Op-id claims
//!
//! The recorder also keeps which op ids were admitted ([`claim`]): a claim
//! commits in the same transaction as the events handed to
//! [`FlightRecorder::append_claiming`] (the runtime hands it receipt and
//! admission), exactly one claimant of an op id wins across threads and
//! processes, a claim is looked up by primary key, and runs whose process
//! died are recorded as interrupted ([`FlightRecorder::reconcile_interrupted`],
//! run on every [`SqliteRecorder`] open).
//!
//! ## Problems
//!
//! Denials, failures and degraded outcomes raise [`Problem`]s, grouped by a
//! fingerprint of code + gate + engine + operation, in the same transaction
//! as the event; see [`problem`] for the rules.

mod checkpoint;
pub mod claim;
pub mod error;
pub mod event;
mod memory;
pub mod problem;
pub mod query;
pub mod redact;
mod sqlite;
pub mod tag;
pub mod verify;

use std::io::Write;

use uuid::Uuid;

pub use checkpoint::CheckpointStats;
pub use claim::{ClaimState, INTERRUPTED_CODE};

/// Public only for sibling crates (the runtime's op-id claims): not a
/// stable API, and hidden from the docs. See ARCHITECTURE.md, "API boundary".
#[doc(hidden)]
pub mod internal {
    pub use crate::claim::{Claim, ClaimOutcome};
}
pub use error::RecorderError;
pub use event::{Decision, Event, EventDraft, EventKind};
pub use memory::MemoryRecorder;
pub use problem::{Problem, ProblemFilter, ProblemSeverity, ProblemState};
pub use query::EventQuery;
pub use redact::Redactor;
pub use sqlite::{CommitStats, DB_FILE_NAME, SCHEMA_VERSION, SqliteRecorder};
pub use verify::{BreakKind, ChainBreak, ChainHead, VerifyReport};

/// The Flight Recorder: what the runtime records to, and what operators and
/// auditors query. Object-safe; share it as `Arc<dyn FlightRecorder>`.
///
/// Every method is safe to call from many threads at once. `append` returns
/// only once the event is durable (for [`SqliteRecorder`], fsynced; an
/// admitting claim is in the WAL, see the crate docs, "Durability").
pub trait FlightRecorder: Send + Sync {
    /// Record one event; returns it as stored (with seq, time and hashes).
    fn append(&self, draft: EventDraft) -> Result<Event, RecorderError> {
        let mut events = self.append_batch(vec![draft])?;
        events.pop().ok_or(RecorderError::InvalidEvent {
            kind: "batch",
            detail: "the recorder returned no event for one draft".to_owned(),
        })
    }

    /// Record several events atomically and contiguously (all or none), in
    /// the order given. This is also the fast bulk path.
    fn append_batch(&self, drafts: Vec<EventDraft>) -> Result<Vec<Event>, RecorderError>;

    /// Record several events atomically, as [`FlightRecorder::append_batch`],
    /// and apply `claim` in the **same transaction**: either both the claim
    /// and the events commit, or (op id already claimed) neither, answered
    /// `ClaimOutcome::AlreadyClaimed`. Exactly one of any number of
    /// concurrent claims of one op id wins, across threads and processes.
    /// See [`claim`]. For the runtime only (ARCHITECTURE.md, "API boundary").
    #[doc(hidden)]
    fn append_claiming(
        &self,
        claim: claim::Claim,
        drafts: Vec<EventDraft>,
    ) -> Result<claim::ClaimOutcome, RecorderError>;

    /// The claim on `op_id`, if any: one primary-key lookup, whatever the
    /// size of the log.
    fn claim_state(&self, op_id: Uuid) -> Result<Option<ClaimState>, RecorderError>;

    /// Record every `admitted` claim whose owner is no longer alive as
    /// interrupted: an `op_completed` (status failed, code
    /// [`INTERRUPTED_CODE`]) in the same transaction as the claim moves to
    /// `interrupted`. Claims of live owners (other processes running now)
    /// are left alone. Returns the op ids marked. [`SqliteRecorder`] runs it
    /// on open; a long-lived process may call it again at any time (it is
    /// idempotent, and safe against concurrent reconcilers).
    fn reconcile_interrupted(&self) -> Result<Vec<Uuid>, RecorderError>;

    /// Events matching a query, in seq order.
    fn events(&self, query: &EventQuery) -> Result<Vec<Event>, RecorderError>;

    /// Write the matching events as JSON Lines, one canonical (RFC 8785)
    /// event per line; returns how many were written. Each line verifies on
    /// its own: its `hash` is SHA-256 of the line without `hash`.
    fn export_jsonl(&self, query: &EventQuery, out: &mut dyn Write) -> Result<u64, RecorderError>;

    /// The problems matching a filter, most recently seen first.
    fn problems(&self, filter: &ProblemFilter) -> Result<Vec<Problem>, RecorderError>;

    /// Mark a problem resolved, recording a `problem_resolved` event with the
    /// note (redacted) in the same transaction. It reopens if it recurs.
    fn resolve_problem(&self, fingerprint: &str, note: &str) -> Result<Problem, RecorderError>;

    /// The current head of the chain (`None` when empty). Keep copies of it
    /// elsewhere as anchors for [`FlightRecorder::verify_anchored`].
    fn head(&self) -> Result<Option<ChainHead>, RecorderError>;

    /// Verify the whole chain against the stored checkpoint. Damage is
    /// reported in the [`VerifyReport`], not as an error; an error means the
    /// log could not be read at all.
    fn verify(&self) -> Result<VerifyReport, RecorderError>;

    /// Verify as [`FlightRecorder::verify`], and also that the log still
    /// holds the anchored event with the anchored hash (catches a truncation
    /// or rewrite that also rewrote the checkpoint).
    fn verify_anchored(&self, anchor: ChainHead) -> Result<VerifyReport, RecorderError>;
}

/// JSON Schemas of this crate's wire types, named for `schemas/<name>.schema.json`,
/// in a stable order: the event (one JSONL export line), the problem and the
/// verification report.
pub fn schemas() -> Vec<(&'static str, schemars::Schema)> {
    vec![
        ("recorder-event", schemars::schema_for!(Event)),
        ("recorder-problem", schemars::schema_for!(Problem)),
        (
            "recorder-verify-report",
            schemars::schema_for!(VerifyReport),
        ),
    ]
}

pub(crate) fn write_jsonl_line(out: &mut dyn Write, event: &Event) -> Result<(), RecorderError> {
    let mut line = event.to_canonical_json()?;
    line.push(b'\n');
    out.write_all(&line).map_err(|e| RecorderError::Export {
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]

    #[test]
    fn event_schema_names_every_kind_and_refuses_unknown_fields() {
        let schemas = super::schemas();
        let text = serde_json::to_string(&schemas[0].1).unwrap();
        for kind in super::EventKind::ALL {
            assert!(
                text.contains(&format!("\"{kind}\"")),
                "{kind} missing from the event schema"
            );
        }
        assert!(text.contains("\"additionalProperties\":false"));
    }
}
