//! Replay protection backed by the Flight Recorder, so that an op id admitted
//! before a restart is still refused after it.

use std::sync::Arc;

use mex_envelope::ResultStatus;
use mex_gates::{MemoryLedger, OpLedger};
use mex_recorder::{EventKind, EventQuery, FlightRecorder};
use uuid::Uuid;

/// `seen` = admitted in this process, or completed (not denied) on record.
pub(crate) struct RecorderLedger {
    recorder: Arc<dyn FlightRecorder>,
    memory: MemoryLedger,
}

impl RecorderLedger {
    pub(crate) fn new(recorder: Arc<dyn FlightRecorder>) -> Self {
        Self {
            recorder,
            memory: MemoryLedger::default(),
        }
    }

    fn on_record(&self, op_id: Uuid) -> bool {
        let query = EventQuery {
            op_id: Some(op_id),
            kind: Some(EventKind::OpCompleted),
            ..EventQuery::default()
        };
        match self.recorder.events(&query) {
            Ok(events) => events
                .iter()
                .any(|e| e.status != Some(ResultStatus::Denied)),
            // Fail closed: if the record cannot be read, treat the id as used.
            Err(_) => true,
        }
    }
}

impl OpLedger for RecorderLedger {
    fn seen(&self, op_id: Uuid) -> bool {
        self.memory.seen(op_id) || self.on_record(op_id)
    }

    fn claim(&self, op_id: Uuid) -> bool {
        !self.on_record(op_id) && self.memory.claim(op_id)
    }
}
