//! The flow of one operation as typed stages. Each stage is one small
//! function whose value is the next one's input:
//!
//! ```text
//! Received --admit--> Cleared --serve_from_cache--> (Settled)
//!          \-> Settled (denied)
//! Cleared --ready--> Ready --claim--> Claimed --dispatch--> Ran --settle--> Settled
//!         \-> Settled (refused before dispatch)
//! Settled --record--> EngineResult
//! ```
//!
//! Admission runs once ([`MexRuntime::admit`]); every later stage reads the
//! [`AdmissionProof`] and the capability rulings it produced, never the
//! findings' pointers.

// A stage's value moves once per operation, from one stage to the next;
// boxing the large ones would add allocations and buy nothing.
#![allow(
    clippy::result_large_err,
    reason = "stage values move once per operation"
)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mex_envelope::{
    DeterminismLevel, EngineError, ErrorCode, GateDenial, PlannedOperation, ResultStatus,
    Sha256Digest, UtcTimestamp,
};
use mex_gates::internal::{CapabilityRuling, GateOutcome, InputVerifier as _};
use mex_recorder::EventDraft;
use mex_recorder::internal::{Claim, ClaimOutcome};
use uuid::Uuid;

use crate::cache::{self, CachedResult};
use crate::engine::{Engine, EngineFailure, RunState};
use crate::proof::AdmissionProof;
use crate::runtime::{CancelToken, MexRuntime, RunEnd, run_on_worker};
use crate::settle::Outputs;

/// An in-progress result: the pieces the runtime assembles at the end.
pub(crate) struct Draft {
    pub op_id: Uuid,
    pub started_at: UtcTimestamp,
    pub status: ResultStatus,
    pub errors: Vec<EngineError>,
    pub denials: Vec<GateDenial>,
}

impl Draft {
    pub(crate) fn new(op_id: Uuid, started_at: UtcTimestamp, status: ResultStatus) -> Self {
        Self {
            op_id,
            started_at,
            status,
            errors: Vec::new(),
            denials: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, code: &'static str, message: impl Into<String>) {
        self.errors.push(EngineError {
            code: ErrorCode::from_static(code),
            message: message.into(),
            details_ref: None,
        });
    }
}

/// What recording an outcome does to the op id's claim (see
/// `mex_recorder::claim`).
pub(crate) enum Claiming {
    /// Nothing: the operation was not admitted, or never reached its claim.
    None,
    /// Admitted, and completing in the same batch (cache hit, refusal before
    /// dispatch): claim it as completed; a lost race ends denied.
    AdmitCompleted {
        op: Box<PlannedOperation>,
        outcomes: Vec<GateOutcome>,
    },
    /// The run this process claimed has ended: mark the claim completed.
    Complete,
}

/// Stage 0: a parsed operation, not yet judged.
pub(crate) struct Received {
    pub op: PlannedOperation,
    pub started_at: UtcTimestamp,
}

/// Stage 1: every gate admitted. The receipt and admission events wait to
/// be recorded with the op id's claim.
pub(crate) struct Cleared {
    proof: AdmissionProof,
    outcomes: Vec<GateOutcome>,
    events: Vec<EventDraft>,
    draft: Draft,
    cache_key: Option<Sha256Digest>,
}

/// Stage 2: the engine is installed and certified.
pub(crate) struct Ready {
    cleared: Cleared,
    engine: Arc<dyn Engine>,
}

/// Stage 3: the op id's claim committed with receipt, admission and
/// `engine_started`; nothing else may run it.
pub(crate) struct Claimed {
    proof: AdmissionProof,
    draft: Draft,
    engine: Arc<dyn Engine>,
    cache_key: Option<Sha256Digest>,
}

/// Stage 4: the engine's part has ended.
pub(crate) struct Ran {
    pub proof: AdmissionProof,
    pub draft: Draft,
    pub cache_key: Option<Sha256Digest>,
    pub state: Arc<RunState>,
    pub end: RunEnd,
}

/// Stage 5: the outcome, ready to be recorded and answered.
pub(crate) struct Settled {
    pub draft: Draft,
    pub events: Vec<EventDraft>,
    pub outputs: Outputs,
    pub cached: bool,
    pub claiming: Claiming,
}

impl Settled {
    /// An outcome without outputs.
    pub(crate) fn bare(draft: Draft, events: Vec<EventDraft>, claiming: Claiming) -> Self {
        Self {
            draft,
            events,
            outputs: Outputs::default(),
            cached: false,
            claiming,
        }
    }
}

impl MexRuntime {
    /// The whole flow, stage by stage.
    /// With `check`, the cache is not consulted and the engine runs twice
    /// (see [`MexRuntime::execute_checked`]).
    pub(crate) fn run_stages(
        &self,
        received: Received,
        cancel: Option<&CancelToken>,
        check: bool,
    ) -> mex_envelope::EngineResult {
        let cleared = match self.admit(received) {
            Ok(cleared) => cleared,
            Err(denied) => return self.record(denied),
        };
        let cleared = if check {
            cleared
        } else {
            match self.serve_from_cache(cleared) {
                Ok(hit) => return self.record(hit),
                Err(miss) => miss,
            }
        };
        let ready = match self.ready(cleared, cancel) {
            Ok(ready) => ready,
            Err(refused) => return self.record(refused),
        };
        let claimed = match self.claim(ready) {
            Ok(claimed) => claimed,
            Err(answer) => return answer,
        };
        let ran = self.dispatch(claimed, cancel, check);
        self.record(self.settle(ran))
    }

    /// Receipt and admission: run the pipeline once; mint the proof from its
    /// decision, or settle as denied. Nothing is recorded yet: receipt and
    /// admission are recorded with the claim (or with the outcome).
    fn admit(&self, received: Received) -> Result<Cleared, Settled> {
        let Received { op, started_at } = received;
        let admission = self.pipeline.admit(op.clone());
        let mut events = admission_events(&op, &admission.outcomes, &admission.capabilities);
        let mut draft = Draft::new(op.op_id, started_at, ResultStatus::Failed);
        let admitted = match admission.result {
            Ok(admitted) => admitted,
            Err(denials) => {
                draft.status = ResultStatus::Denied;
                draft.denials = denials;
                return Err(Settled::bare(draft, events, Claiming::None));
            }
        };
        events.extend(admission.capabilities.iter().filter_map(|r| match r {
            CapabilityRuling::Granted {
                capability, rule, ..
            } => Some(EventDraft::capability(
                op.op_id,
                capability.to_string(),
                true,
                *rule,
            )),
            CapabilityRuling::Denied { .. } => None,
        }));
        let proof = AdmissionProof::mint(admitted);
        draft.denials.extend(proof.degraded().iter().cloned());
        let cache_key = match (&self.cache, op.determinism) {
            (Some(_), DeterminismLevel::D3) => self.code_of(&proof).and_then(|code| {
                let mut identity = cache::code_identity(&self.registry, &proof);
                identity.push(format!("{}={}", code.kind, code.digest));
                cache::key(&proof, &identity, &self.salt)
            }),
            _ => None,
        };
        Ok(Cleared {
            proof,
            outcomes: admission.outcomes,
            events,
            draft,
            cache_key,
        })
    }

    /// The D3 result cache: a hit whose artifacts all still verify settles
    /// as succeeded (claimed and completed in one transaction); a stale hit
    /// is forgotten.
    fn serve_from_cache(&self, cleared: Cleared) -> Result<Settled, Cleared> {
        let (Some(cache), Some(key)) = (&self.cache, cleared.cache_key) else {
            return Err(cleared);
        };
        // An unreadable cache is a miss, never an error of the operation.
        let Ok(Some(hit)) = cache.get(&key) else {
            return Err(cleared);
        };
        let all_verify = hit
            .outputs
            .iter()
            .chain(&hit.evidence)
            .chain(&hit.logs)
            .all(|h| self.store.verify_input(h).is_ok());
        if !all_verify {
            cache.forget(&key, "stale");
            return Err(cleared);
        }
        cache.served(&key);
        self.maybe_reexecute(&cleared.proof, key, &hit);
        let CachedResult {
            outputs,
            evidence,
            logs,
            mut provenance,
        } = hit;
        provenance
            .environment
            .insert("served_from_cache".into(), "true".into());
        let Cleared {
            proof,
            outcomes,
            events,
            mut draft,
            ..
        } = cleared;
        draft.status = ResultStatus::Succeeded;
        Ok(Settled {
            draft,
            events,
            outputs: Outputs {
                outputs,
                evidence,
                logs,
                provenance: Some(provenance),
            },
            cached: true,
            claiming: admit_completed(&proof, outcomes),
        })
    }

    /// The code digest of the engine an admitted operation resolves to;
    /// `None` (then nothing is cached or served from the cache) when this
    /// runtime has no such engine, its code cannot be identified or it is not
    /// certified. A
    /// persistent cache entry is thereby bound to the code that made it: a
    /// rebuilt host or a changed engine never sees an older build's hits.
    fn code_of(&self, proof: &AdmissionProof) -> Option<crate::identity::CodeDigest> {
        let imp = proof.implementation();
        let engine = self.engines.get(&(imp.id.clone(), imp.version.clone()))?;
        let code = crate::identity::code_digest(&**engine).ok()?;
        // Not certified (any more): no hit either; the run is then refused
        // by `ready` with its reason.
        let engine_id = &proof.operation().engine_id;
        self.certifier
            .check(engine_id, &imp.id, &imp.version, &code)
            .ok()?;
        Some(code)
    }

    /// Implementation, certification and a last look at
    /// the caller's cancel token: what must hold before the claim.
    fn ready(&self, cleared: Cleared, cancel: Option<&CancelToken>) -> Result<Ready, Settled> {
        let imp = cleared.proof.implementation().clone();
        let engine_id = &cleared.proof.operation().engine_id;
        let Some(engine) = self
            .engines
            .get(&(imp.id.clone(), imp.version.clone()))
            .cloned()
        else {
            let why = format!(
                "{engine_id} resolves to {}@{}, which this runtime does not have; register the engine with the runtime builder",
                imp.id, imp.version
            );
            return Err(refuse(cleared, None, "RUNTIME.ENGINE_NOT_INSTALLED", why));
        };
        let certified = crate::identity::code_digest(&*engine).and_then(|code| {
            self.certifier
                .check(engine_id, &imp.id, &imp.version, &code)
        });
        if let Err(why) = certified {
            let denied = Some(ResultStatus::Denied);
            return Err(refuse(cleared, denied, "RUNTIME.ENGINE_NOT_CERTIFIED", why));
        }
        if cancel.is_some_and(CancelToken::is_cancelled) {
            let Cleared {
                events, mut draft, ..
            } = cleared;
            draft.error(
                "RUNTIME.CANCELLED",
                "the caller cancelled the operation before the engine started; nothing ran",
            );
            return Err(Settled::bare(draft, events, Claiming::None));
        }
        Ok(Ready { cleared, engine })
    }

    /// Record receipt, admission and `engine_started` in the transaction that
    /// claims the op id. A lost claim is answered denied; an unrecordable
    /// start is answered failed; in both cases nothing runs.
    fn claim(&self, ready: Ready) -> Result<Claimed, mex_envelope::EngineResult> {
        let Ready { cleared, engine } = ready;
        let Cleared {
            proof,
            outcomes,
            mut events,
            mut draft,
            cache_key,
        } = cleared;
        let op = proof.operation();
        events.push(EventDraft::engine_started(
            op.op_id,
            op.engine_id.clone(),
            op.operation.clone(),
        ));
        match self
            .recorder
            .append_claiming(Claim::Admit(op.op_id), events)
        {
            Ok(ClaimOutcome::Recorded(_)) => Ok(Claimed {
                proof,
                draft,
                engine,
                cache_key,
            }),
            Ok(ClaimOutcome::AlreadyClaimed(how)) => {
                Err(self.deny_lost_claim(&draft, op, &outcomes, how))
            }
            Err(e) => {
                draft.error(
                    "RUNTIME.RECORDER_UNAVAILABLE",
                    format!(
                        "receipt, admission and engine start could not be recorded, so nothing ran: {e}"
                    ),
                );
                Err(self.finish_unrecorded(draft))
            }
        }
    }

    /// Run the engine on a worker under the watchdog, with the context the
    /// proof allows (its budget and granted capabilities). With `check`
    /// (a D3 operation, see [`MexRuntime::execute_checked`]), a run that
    /// completed is run once more in a fresh workspace, and the two runs'
    /// outputs (kind, media type, SHA-256, in order) must be identical, else
    /// the run ends `RUNTIME.NONDETERMINISTIC` and nothing is ingested.
    fn dispatch(&self, claimed: Claimed, cancel: Option<&CancelToken>, check: bool) -> Ran {
        let Claimed {
            proof,
            draft,
            engine,
            cache_key,
        } = claimed;
        let state = Arc::new(run_state(&proof, &self.workspace_root, self.store.clone()));
        self.runs.fetch_add(1, Ordering::Relaxed);
        let wall = Duration::from_millis(proof.budget().wall_time_ms);
        let mut end = run_on_worker(engine.clone(), state.clone(), wall, cancel);
        if check && matches!(end, RunEnd::Completed) {
            end = self.run_again(&proof, engine, &state, wall, cancel);
        }
        Ran {
            proof,
            draft,
            cache_key,
            state,
            end,
        }
    }
}

impl MexRuntime {
    /// The second run of a checked D3 operation: in a fresh workspace, with
    /// a fresh context; `Completed` when its outputs equal the first run's.
    fn run_again(
        &self,
        proof: &AdmissionProof,
        engine: Arc<dyn Engine>,
        first: &RunState,
        wall: Duration,
        cancel: Option<&CancelToken>,
    ) -> RunEnd {
        let op = proof.operation();
        let who = format!(
            "{} ({} {})",
            op.engine_id,
            engine.implementation_id(),
            engine.implementation_version()
        );
        let state = Arc::new(run_state(proof, &self.workspace_root, self.store.clone()));
        self.runs.fetch_add(1, Ordering::Relaxed);
        let end = run_on_worker(engine, state.clone(), wall, cancel);
        state.close();
        let unavailable = state.workspace.failure();
        state.workspace.remove();
        if let Some(why) = unavailable {
            return RunEnd::Failed(EngineFailure::new(
                "RUNTIME.WORKSPACE_UNAVAILABLE",
                format!("the determinism check could not run a second time: {why}"),
            ));
        }
        let second = match end {
            RunEnd::Completed if !state.overflowed.load(Ordering::SeqCst) => outputs_of(&state),
            RunEnd::Completed
            | RunEnd::Failed(_)
            | RunEnd::Panicked(_)
            | RunEnd::TimedOut
            | RunEnd::Foreign => {
                return RunEnd::Nondeterministic(format!(
                    "{who} is not deterministic: operation {} succeeded once, then did not succeed when run again in a fresh workspace ({}); a D3 engine must give the same result every time",
                    op.operation,
                    end.describe()
                ));
            }
            RunEnd::Cancelled | RunEnd::Nondeterministic(_) => return end,
        };
        let first = outputs_of(first);
        if first == second {
            return RunEnd::Completed;
        }
        let list = |o: &[(String, String)]| {
            o.iter()
                .map(|(d, what)| format!("{what} sha256:{d}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        RunEnd::Nondeterministic(format!(
            "{who} is not deterministic: operation {} ran twice in fresh workspaces and wrote different outputs (first run: [{}]; second run: [{}]); fix the engine, or declare the operation below D3 in the registry",
            op.operation,
            list(&first),
            list(&second)
        ))
    }
}

/// A run's outputs as compared by the determinism check: (SHA-256, kind and
/// media type), in the order written.
fn outputs_of(state: &RunState) -> Vec<(String, String)> {
    state
        .staged()
        .into_iter()
        .filter(|s| s.role == crate::engine::Role::Output)
        .map(|s| {
            let media = s.media_type.map(|m| m.to_string()).unwrap_or_default();
            (s.digest.to_hex(), format!("{:?} {media}", s.kind))
        })
        .collect()
}

/// The state one run's [`crate::ExecutionContext`] reads and writes; its
/// workspace is made under `workspace_root` when first needed.
fn run_state(
    proof: &AdmissionProof,
    workspace_root: &std::path::Path,
    store: Arc<mex_artifacts::ArtifactStore>,
) -> RunState {
    RunState::new(
        proof.operation(),
        proof.budget(),
        proof.capabilities_granted().to_vec(),
        store,
        workspace_root,
        execution_of(proof),
    )
}

/// How the registry says the admitted implementation runs.
pub(crate) fn execution_of(proof: &AdmissionProof) -> crate::engine::Execution {
    match proof.implementation().kind {
        mex_gates::internal::ImplementationKind::InProcess => crate::engine::Execution::InProcess,
        mex_gates::internal::ImplementationKind::Subprocess => crate::engine::Execution::Supervised,
    }
}

/// The claim of an admitted operation that ends in the batch that records it.
fn admit_completed(proof: &AdmissionProof, outcomes: Vec<GateOutcome>) -> Claiming {
    Claiming::AdmitCompleted {
        op: Box::new(proof.operation().clone()),
        outcomes,
    }
}

/// Settle an admitted operation refused before dispatch (`code`, `why`):
/// failed unless `status` says otherwise; the op id is claimed, completed.
fn refuse(
    cleared: Cleared,
    status: Option<ResultStatus>,
    code: &'static str,
    why: String,
) -> Settled {
    let Cleared {
        proof,
        outcomes,
        events,
        mut draft,
        ..
    } = cleared;
    if let Some(status) = status {
        draft.status = status;
    }
    draft.error(code, why);
    Settled::bare(draft, events, admit_completed(&proof, outcomes))
}

/// Receipt and every gate outcome; after each G-CAP finding that refuses a
/// requested capability, that capability's refusal (from the typed
/// rulings, in the order G-CAP reported them).
pub(crate) fn admission_events(
    op: &PlannedOperation,
    outcomes: &[GateOutcome],
    rulings: &[CapabilityRuling],
) -> Vec<EventDraft> {
    let mut refused = rulings
        .iter()
        .filter_map(|r| match r {
            CapabilityRuling::Denied { capability, denial } => Some((capability, denial)),
            CapabilityRuling::Granted { .. } => None,
        })
        .peekable();
    let mut events = vec![EventDraft::op_received(op)];
    for outcome in outcomes {
        if outcome.findings.is_empty() {
            events.push(EventDraft::gate_passed(
                op.op_id,
                outcome.gate.clone(),
                "all rules of the gate",
            ));
        }
        for finding in &outcome.findings {
            events.push(EventDraft::gate_outcome(op.op_id, finding));
            if let Some((capability, denial)) = refused.next_if(|(_, d)| *d == finding) {
                events.push(EventDraft::capability(
                    op.op_id,
                    capability.to_string(),
                    false,
                    denial.rule.clone(),
                ));
            }
        }
    }
    events
}
