//! Event queries.

use mex_envelope::{EngineId, UtcTimestamp};
use uuid::Uuid;

use crate::event::{Event, EventKind};

/// Which events to return. Every filter set must hold (AND); events come in
/// seq order. The default returns every event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events of this operation.
    pub op_id: Option<Uuid>,
    /// Only events about this engine.
    pub engine_id: Option<EngineId>,
    /// Only events of this kind.
    pub kind: Option<EventKind>,
    /// Only events recorded at or after this time.
    pub since: Option<UtcTimestamp>,
    /// Only events recorded strictly before this time.
    pub until: Option<UtcTimestamp>,
    /// Only events with a seq greater than this (for paging).
    pub after_seq: Option<u64>,
    /// At most this many events.
    pub limit: Option<u64>,
}

impl EventQuery {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }
    /// Events of one operation.
    pub fn op(op_id: Uuid) -> Self {
        Self {
            op_id: Some(op_id),
            ..Self::default()
        }
    }
    /// Events about one engine.
    pub fn engine(engine_id: EngineId) -> Self {
        Self {
            engine_id: Some(engine_id),
            ..Self::default()
        }
    }
    /// Events of one kind.
    pub fn kind(kind: EventKind) -> Self {
        Self {
            kind: Some(kind),
            ..Self::default()
        }
    }
    /// Events in `[since, until)`.
    pub fn between(since: UtcTimestamp, until: UtcTimestamp) -> Self {
        Self {
            since: Some(since),
            until: Some(until),
            ..Self::default()
        }
    }

    /// Whether an event matches (limit aside).
    pub fn matches(&self, e: &Event) -> bool {
        self.op_id.is_none_or(|id| e.op_id == Some(id))
            && self
                .engine_id
                .as_ref()
                .is_none_or(|id| e.engine_id.as_ref() == Some(id))
            && self.kind.is_none_or(|k| e.kind == k)
            && self.since.is_none_or(|t| e.recorded_at >= t)
            && self.until.is_none_or(|t| e.recorded_at < t)
            && self.after_seq.is_none_or(|s| e.seq > s)
    }
}
