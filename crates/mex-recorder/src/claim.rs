//! Op-id claims: which operation ids have been admitted, durably, so that an
//! op id runs at most once per home, across threads, processes and crashes.
//!
//! A claim is made by [`FlightRecorder::append_claiming`] in the **same
//! transaction** as the events it is handed (the runtime hands it receipt and
//! admission): either the claim row is inserted and the events are recorded,
//! or the op id was already claimed and nothing is written
//! ([`ClaimOutcome::AlreadyClaimed`]). The claim table is keyed by op id, so
//! exactly one writer wins however many processes race, and looking a claim
//! up ([`FlightRecorder::claim_state`]) is one primary-key lookup whatever
//! the size of the log.
//!
//! A claim moves `admitted -> completed` in the transaction that records the
//! op's `op_completed`, or `admitted -> interrupted` when its owner died
//! before completing (see [`FlightRecorder::reconcile_interrupted`]). A claim
//! is never removed: an interrupted op id can never run again.
//!
//! [`FlightRecorder::append_claiming`]: crate::FlightRecorder::append_claiming
//! [`FlightRecorder::claim_state`]: crate::FlightRecorder::claim_state
//! [`FlightRecorder::reconcile_interrupted`]: crate::FlightRecorder::reconcile_interrupted

use mex_envelope::{ErrorCode, ResultStatus};
use serde_json::json;
use uuid::Uuid;

use crate::event::{Event, EventDraft};

/// The error code of the `op_completed` event recorded for a run whose
/// process ended (crash, kill, power loss) after admission and before it
/// completed.
pub const INTERRUPTED_CODE: &str = "RUNTIME.INTERRUPTED";

/// Where an admitted op id stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClaimState {
    /// Admitted; its run has not completed (it is running, or its process
    /// died and the next reconciliation will mark it interrupted).
    Admitted,
    /// Its `op_completed` is on record.
    Completed,
    /// Its process ended before it completed; recorded as failed with
    /// [`INTERRUPTED_CODE`].
    Interrupted,
}

impl ClaimState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admitted => "admitted",
            Self::Completed => "completed",
            Self::Interrupted => "interrupted",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        match text {
            "admitted" => Ok(Self::Admitted),
            "completed" => Ok(Self::Completed),
            "interrupted" => Ok(Self::Interrupted),
            other => Err(format!("unknown claim state {other:?}")),
        }
    }
}

impl std::fmt::Display for ClaimState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an [`append_claiming`](crate::FlightRecorder::append_claiming) does to
/// the claims, in the same transaction as its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Claim the op id for a run that starts after this batch commits
    /// (state `admitted`, owned by this recorder). Refused when already
    /// claimed.
    Admit(Uuid),
    /// Claim the op id for an operation whose `op_completed` is in this same
    /// batch (state `completed`; e.g. a cache hit, or a refusal after
    /// admission). Refused when already claimed.
    AdmitCompleted(Uuid),
    /// Mark this op id's `admitted` claim `completed` (the batch holds its
    /// `op_completed`). Never refused: the events are always recorded. A claim
    /// that is not `admitted` (already interrupted) is left as it is, so the
    /// record then shows both endings.
    Complete(Uuid),
}

impl Claim {
    /// The op id concerned.
    pub fn op_id(self) -> Uuid {
        match self {
            Self::Admit(id) | Self::AdmitCompleted(id) | Self::Complete(id) => id,
        }
    }
}

/// The outcome of an [`append_claiming`](crate::FlightRecorder::append_claiming).
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    /// The claim (if any) was made and the events recorded, as stored.
    Recorded(Vec<Event>),
    /// The op id was already claimed (in this state); nothing was written.
    AlreadyClaimed(ClaimState),
}

/// The `op_completed` recorded for an interrupted run.
pub(crate) fn interrupted_draft(op_id: Uuid) -> EventDraft {
    EventDraft::op_completed(op_id, ResultStatus::Failed)
        .with_code(ErrorCode::from_static(INTERRUPTED_CODE))
        .with_message(format!(
            "op {op_id} was admitted, but the process running it ended (crash, kill or power loss) before it completed; anything it staged was discarded and the op id stays used: send the operation again under a fresh op_id"
        ))
        .with_payload(json!({
            "outputs": [],
            "errors": 1,
            "denials": 0,
            "served_from_cache": false,
        }))
}
