//! Chain verification, shared by every recorder.
//!
//! Walking the events in seq order, the verifier checks for each event that
//! its seq is the next one (a gap means deleted events), that it decodes,
//! that its `hash` matches its content (an edit, or a row moved to another
//! position), that its `prev_hash` is the previous event's hash (reordered,
//! inserted or deleted events), and that time does not run backwards. At the
//! end it compares the last event with the **checkpoint** (the chain head:
//! last seq and hash, written in the same transaction as the events):
//! fewer events than the checkpoint means a truncated tail, more means events
//! added behind the recorder's back.
//!
//! ## What this cannot catch
//!
//! The chain is unkeyed: someone who can write the database file can rewrite
//! a suffix of the log, recompute every hash and update the checkpoint to
//! match, and the file alone will look valid; truncating the tail and
//! rewriting the checkpoint to the new last event is the simplest case. Only a
//! copy of a head kept where that person cannot write catches it: export
//! [`ChainHead`]s (the runtime can put the current head in each
//! EngineResult's provenance, an operator can write it to a ticket or a
//! separate host) and check them with `verify_anchored`, which fails when the
//! anchored event is missing or differs.

use mex_envelope::{Sha256Digest, UtcTimestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::{Event, GENESIS_HASH};

/// The head of the chain: the last event's seq and hash. Kept as a
/// checkpoint next to the events, and exportable as an anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChainHead {
    /// Seq of the last event.
    pub seq: u64,
    /// Hash of the last event.
    pub hash: Sha256Digest,
}

/// What kind of damage verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BreakKind {
    /// The stored row does not decode as an event.
    Unreadable,
    /// The event's hash does not match its content: edited, or moved here
    /// from another position.
    HashMismatch,
    /// The event's `prev_hash` is not the previous event's hash: events were
    /// reordered, inserted or deleted before it.
    PrevHashMismatch,
    /// Seq numbers jump: the events in between were deleted.
    Missing,
    /// The event's time is earlier than the previous event's.
    TimeRegression,
    /// The log ends before the checkpoint: the tail was cut off.
    Truncated,
    /// There are events after the checkpoint: appended behind the recorder's
    /// back.
    BeyondCheckpoint,
    /// The checkpoint's hash differs from the last event's, or the
    /// checkpoint is missing while events exist.
    CheckpointMismatch,
    /// An anchor given to `verify_anchored` does not match the log.
    AnchorMismatch,
    /// The event lacks a valid writer tag on a keyed home: another writer
    /// (not a runtime holding the home's key) appended it (see
    /// [`crate::tag`]).
    ForeignWriter,
}

/// The first place the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChainBreak {
    /// The first bad sequence number.
    pub seq: u64,
    /// What was wrong there.
    pub kind: BreakKind,
    /// Details for a person.
    pub detail: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyReport {
    /// Events checked (up to and including the first break).
    pub events_checked: u64,
    /// The checkpoint found in storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<ChainHead>,
    /// The first break, if any. `None` means the chain verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_break: Option<ChainBreak>,
}

impl VerifyReport {
    /// Whether the chain verified.
    pub fn is_ok(&self) -> bool {
        self.first_break.is_none()
    }
}

/// Whether an event's stored hash matches its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HashCheck {
    /// It does (current or legacy spelling of the time).
    Matches,
    /// It does not; the content hashes to this.
    Differs(Sha256Digest),
    /// The content cannot be hashed.
    Unreadable(String),
}

impl HashCheck {
    pub(crate) fn of(event: &Event) -> Self {
        match event.compute_hash() {
            Ok(h) if h == event.hash => Self::Matches,
            Ok(_) if matches!(event.compute_legacy_hash(), Ok(Some(l)) if l == event.hash) => {
                Self::Matches
            }
            // The generic canonicalizer is the reference the fast form is
            // tested against; asked only when the fast form disagrees.
            Ok(_)
                if matches!(
                    event.hash_with_canonicalizer(&event.recorded_at.to_string()),
                    Ok(h) if h == event.hash
                ) =>
            {
                Self::Matches
            }
            Ok(h) => Self::Differs(h),
            Err(e) => Self::Unreadable(e.to_string()),
        }
    }

    /// [`HashCheck::of`], first trying the payload text as stored (it is
    /// stored in canonical form, so hashing it spares re-serializing the
    /// parsed payload); any disagreement is decided by [`HashCheck::of`].
    pub(crate) fn of_stored(event: &Event, payload_text: Option<&str>) -> Self {
        if let Some(text) = payload_text
            && !event.payload.is_null()
            && matches!(
                event.hash_with(&event.recorded_at.to_string(), Some(text.as_bytes())),
                Ok(h) if h == event.hash
            )
        {
            return Self::Matches;
        }
        Self::of(event)
    }
}

/// A row with its hash checked.
pub(crate) type CheckedRow = (u64, Result<(Event, HashCheck), String>);

/// Turn `rows` into checked rows with `check` on up to `threads` threads
/// (scoped; no pool), keeping their order.
pub(crate) fn check_rows<T: Send>(
    rows: Vec<T>,
    threads: usize,
    check: impl Fn(T) -> CheckedRow + Sync,
) -> Vec<CheckedRow> {
    let check = &check;
    let threads = threads.max(1);
    if threads == 1 || rows.len() < 256 {
        return rows.into_iter().map(check).collect();
    }
    let per = rows.len().div_ceil(threads);
    let mut parts: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut rest = rows;
    while rest.len() > per {
        let tail = rest.split_off(per);
        parts.push(rest);
        rest = tail;
    }
    parts.push(rest);
    std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| s.spawn(move || part.into_iter().map(check).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec![(0, Err("a hashing thread panicked".to_owned()))])
            })
            .collect()
    })
}

/// Streaming verifier: feed rows in seq order, then finish with the
/// checkpoint.
pub(crate) struct ChainVerifier {
    next_seq: u64,
    prev_hash: Sha256Digest,
    prev_time: Option<UtcTimestamp>,
    checked: u64,
    first_break: Option<ChainBreak>,
    anchor: Option<ChainHead>,
    anchor_seen: bool,
}

impl ChainVerifier {
    pub(crate) fn new(anchor: Option<ChainHead>) -> Self {
        Self {
            next_seq: 1,
            prev_hash: GENESIS_HASH,
            prev_time: None,
            checked: 0,
            first_break: None,
            anchor,
            anchor_seen: false,
        }
    }

    fn fail(&mut self, seq: u64, kind: BreakKind, detail: String) {
        if self.first_break.is_none() {
            self.first_break = Some(ChainBreak { seq, kind, detail });
        }
    }

    /// Feed the row stored at `seq`. Returns `false` once broken (stop).
    pub(crate) fn push(&mut self, seq: u64, event: Result<Event, String>) -> bool {
        let checked = event.map(|e| {
            let check = HashCheck::of(&e);
            (e, check)
        });
        self.push_checked(seq, checked)
    }

    /// [`ChainVerifier::push`] with the event's hash already checked (so
    /// the hashing of many events can run in parallel, see
    /// [`check_rows`]).
    pub(crate) fn push_checked(
        &mut self,
        seq: u64,
        event: Result<(Event, HashCheck), String>,
    ) -> bool {
        if self.first_break.is_some() {
            return false;
        }
        self.checked += 1;
        if seq != self.next_seq {
            let detail = format!(
                "expected seq {} next but found {seq}: events deleted",
                self.next_seq
            );
            self.fail(self.next_seq, BreakKind::Missing, detail);
            return false;
        }
        let (event, check) = match event {
            Ok(e) => e,
            Err(detail) => {
                self.fail(seq, BreakKind::Unreadable, detail);
                return false;
            }
        };
        match check {
            HashCheck::Matches => {}
            HashCheck::Differs(h) => {
                let detail = format!(
                    "content hashes to {h} but the stored hash is {}: the event was edited or moved",
                    event.hash
                );
                self.fail(seq, BreakKind::HashMismatch, detail);
                return false;
            }
            HashCheck::Unreadable(e) => {
                self.fail(seq, BreakKind::Unreadable, e);
                return false;
            }
        }
        if event.prev_hash != self.prev_hash {
            let detail = format!(
                "prev_hash is {} but the previous event's hash is {}: events were reordered, inserted or deleted",
                event.prev_hash, self.prev_hash
            );
            self.fail(seq, BreakKind::PrevHashMismatch, detail);
            return false;
        }
        if let Some(prev) = self.prev_time
            && event.recorded_at < prev
        {
            let detail = format!(
                "recorded at {} before the previous event ({prev})",
                event.recorded_at
            );
            self.fail(seq, BreakKind::TimeRegression, detail);
            return false;
        }
        if let Some(anchor) = self.anchor
            && anchor.seq == seq
        {
            self.anchor_seen = true;
            if anchor.hash != event.hash {
                let detail = format!(
                    "anchor says hash {} but the event's hash is {}",
                    anchor.hash, event.hash
                );
                self.fail(seq, BreakKind::AnchorMismatch, detail);
                return false;
            }
        }
        self.prev_hash = event.hash;
        self.prev_time = Some(event.recorded_at);
        self.next_seq = seq + 1;
        true
    }

    pub(crate) fn finish(mut self, checkpoint: Option<ChainHead>) -> VerifyReport {
        if self.first_break.is_none() {
            let last = self.next_seq - 1;
            match checkpoint {
                None if last > 0 => self.fail(
                    1,
                    BreakKind::CheckpointMismatch,
                    format!("{last} events but no checkpoint: the checkpoint was deleted"),
                ),
                None => {}
                Some(cp) if cp.seq > last => self.fail(
                    last + 1,
                    BreakKind::Truncated,
                    format!("checkpoint says the log ends at seq {} but the last event is seq {last}: the tail was cut off", cp.seq),
                ),
                Some(cp) if cp.seq < last => self.fail(
                    cp.seq + 1,
                    BreakKind::BeyondCheckpoint,
                    format!("events after the checkpoint at seq {}: appended outside the recorder", cp.seq),
                ),
                Some(cp) if cp.hash != self.prev_hash => self.fail(
                    cp.seq,
                    BreakKind::CheckpointMismatch,
                    format!("checkpoint hash {} differs from the last event's {}", cp.hash, self.prev_hash),
                ),
                Some(_) => {}
            }
        }
        if self.first_break.is_none()
            && let Some(anchor) = self.anchor
            && !self.anchor_seen
        {
            self.fail(
                anchor.seq,
                BreakKind::AnchorMismatch,
                format!(
                    "the anchored event seq {} is not in the log: the tail was cut off",
                    anchor.seq
                ),
            );
        }
        VerifyReport {
            events_checked: self.checked,
            checkpoint,
            first_break: self.first_break,
        }
    }
}
