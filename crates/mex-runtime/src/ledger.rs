//! Replay protection backed by the Flight Recorder's op-id claims: the gates
//! look an op id up here (one primary-key lookup, whatever the size of the
//! log); the runtime claims it when it records receipt and admission.

use std::sync::Arc;

use mex_gates::internal::{Claimed, OpClaims};
use mex_recorder::{ClaimState, FlightRecorder};
use uuid::Uuid;

/// The recorder's claim table, as the gates' [`OpClaims`].
pub(crate) struct RecorderClaims {
    recorder: Arc<dyn FlightRecorder>,
}

impl RecorderClaims {
    pub(crate) fn new(recorder: Arc<dyn FlightRecorder>) -> Self {
        Self { recorder }
    }
}

/// The gates' view of a recorder claim.
pub(crate) fn claimed(state: ClaimState) -> Claimed {
    match state {
        ClaimState::Admitted => Claimed::Running,
        ClaimState::Completed => Claimed::Completed,
        ClaimState::Interrupted => Claimed::Interrupted,
    }
}

impl OpClaims for RecorderClaims {
    fn claimed(&self, op_id: Uuid) -> Result<Option<Claimed>, String> {
        self.recorder
            .claim_state(op_id)
            .map(|state| state.map(claimed))
            .map_err(|e| e.to_string())
    }
}
