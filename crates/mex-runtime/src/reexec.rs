//! Sampled re-execution of D3 cache hits.
//!
//! A D3 engine promises the same outputs for the same key. A fraction of
//! hits ([`crate::MexRuntimeBuilder::cache_reexecute_fraction`]) runs the
//! engine again on a background thread, after the hit was answered, in a
//! shadow workspace of its own, under the same budget and capabilities. Its
//! staged outputs are hashed and compared with the cached ones; nothing it
//! writes reaches the store. On a difference the entry is dropped and a
//! `result_rejected` event (`RUNTIME.CACHE_NONDETERMINISTIC`, naming the
//! engine and operation) is recorded under the hit's op id, which makes a
//! Problem. A re-execution that does not complete (fails, times out) proves
//! nothing and changes nothing.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use mex_envelope::{ErrorCode, Sha256Digest};
use mex_recorder::EventDraft;
use uuid::Uuid;

use crate::cache::CachedResult;
use crate::engine::{Role, RunState};
use crate::proof::AdmissionProof;
use crate::runtime::{MexRuntime, RunEnd, run_on_worker};

/// The code of the event (and Problem) a differing re-execution records.
pub(crate) const NONDETERMINISTIC: &str = "RUNTIME.CACHE_NONDETERMINISTIC";

/// Whether this hit is sampled, with probability `fraction`.
fn sampled(fraction: f64) -> bool {
    if fraction <= 0.0 {
        return false;
    }
    if fraction >= 1.0 {
        return true;
    }
    let bits = Uuid::new_v4().as_u64_pair().0 >> 11;
    // 53 random bits, uniform in [0, 1).
    #[allow(
        clippy::cast_precision_loss,
        reason = "53 bits are exact in an f64 mantissa"
    )]
    let draw = bits as f64 / (1u64 << 53) as f64;
    draw < fraction
}

impl MexRuntime {
    /// Maybe start a re-execution of the hit `hit` of `proof` under `key`.
    pub(crate) fn maybe_reexecute(
        &self,
        proof: &AdmissionProof,
        key: Sha256Digest,
        hit: &CachedResult,
    ) {
        let Some(cache) = self.cache.clone() else {
            return;
        };
        if !sampled(self.reexecute_fraction) {
            return;
        }
        let imp = proof.implementation();
        let Some(engine) = self
            .engines
            .get(&(imp.id.clone(), imp.version.clone()))
            .cloned()
        else {
            return;
        };
        let implementation = format!("{}@{}", imp.id, imp.version);
        let op = proof.operation().clone();
        let budget = *proof.budget();
        let capabilities = proof.capabilities_granted().to_vec();
        let expected: Vec<(Role, Sha256Digest)> = hit
            .outputs
            .iter()
            .map(|h| (Role::Output, h.content_hash))
            .chain(
                hit.evidence
                    .iter()
                    .map(|h| (Role::Evidence, h.content_hash)),
            )
            .collect();
        let store = self.store.clone();
        let recorder = self.recorder.clone();
        let root = self.workspace_root.clone();
        let spawned = std::thread::Builder::new()
            .name("mex-cache-reexecute".into())
            .spawn(move || {
                cache.reexecuted();
                let state = Arc::new(RunState::new(
                    &op,
                    &budget,
                    capabilities,
                    store,
                    &root,
                    engine.execution(),
                ));
                let wall = Duration::from_millis(budget.wall_time_ms);
                let end = run_on_worker(engine, state.clone(), wall, None);
                // Closed and removed whatever happened, even if the engine's
                // thread is still running.
                state.close();
                let unavailable = state.workspace.failure().is_some();
                state.workspace.remove();
                // Only a run that completed with a workspace it needed says
                // anything about determinism.
                if !matches!(end, RunEnd::Completed) || unavailable {
                    return;
                }
                let got: Vec<(Role, Sha256Digest)> = state
                    .staged()
                    .into_iter()
                    .filter(|s| s.role != Role::Log)
                    .map(|s| (s.role, s.digest))
                    .collect();
                if got == expected {
                    return;
                }
                cache.forget(&key, "mismatches");
                let message = format!(
                    "engine {} ({implementation}), operation {}, is declared D3 but re-executing cached operation {} produced different outputs; the cache entry was dropped. Make the engine deterministic, or declare the operation D2 or lower",
                    op.engine_id, op.operation, op.op_id
                );
                let event = EventDraft::result_rejected(
                    op.op_id,
                    ErrorCode::from_static(NONDETERMINISTIC),
                    message,
                )
                .with_engine(op.engine_id.clone())
                .with_operation(op.operation.clone());
                let _ = recorder.append_batch(vec![event]);
            });
        if let Ok(handle) = spawned {
            let mut pending = self
                .reexecutions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            pending.retain(|h| !h.is_finished());
            pending.push(handle);
        }
    }
}
