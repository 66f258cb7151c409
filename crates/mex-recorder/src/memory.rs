//! The in-memory recorder: same rules as the durable one (validation,
//! redaction, chain, problems), nothing kept after drop.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::{Mutex, MutexGuard, PoisonError};

use mex_envelope::{EngineId, OperationName, UtcTimestamp};
use serde_json::json;
use uuid::Uuid;

use crate::claim::{Claim, ClaimOutcome, ClaimState};
use crate::event::{Event, EventDraft, EventKind, GENESIS_HASH, PreparedDraft};
use crate::problem::{self, Problem, ProblemFilter, ProblemState};
use crate::query::EventQuery;
use crate::redact::Redactor;
use crate::verify::{ChainHead, ChainVerifier, VerifyReport};
use crate::{FlightRecorder, RecorderError, write_jsonl_line};

#[derive(Default)]
struct State {
    events: Vec<Event>,
    problems: BTreeMap<String, Problem>,
    /// Engine and operation of each op, from its `op_received` event.
    ops: HashMap<Uuid, (Option<EngineId>, Option<OperationName>)>,
    /// Op-id claims (everything here belongs to this live process, so
    /// nothing is ever interrupted).
    claims: HashMap<Uuid, ClaimState>,
}

/// A [`FlightRecorder`] that keeps everything in memory. For tests and
/// embedders that do not want a file; it is not durable.
#[derive(Default)]
pub struct MemoryRecorder {
    state: Mutex<State>,
    redactor: Redactor,
}

impl MemoryRecorder {
    /// An empty recorder with the default redaction policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty recorder with a custom redaction policy.
    pub fn with_redactor(redactor: Redactor) -> Self {
        Self {
            state: Mutex::default(),
            redactor,
        }
    }

    /// The state. A panic while holding the lock cannot leave it half
    /// updated (every update is computed first and applied without a
    /// fallible step), so a poisoned lock is simply taken over.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn seal_all(
        state: &State,
        prepared: &mut [PreparedDraft],
    ) -> Result<Vec<Event>, RecorderError> {
        let mut ops_in_batch: HashMap<Uuid, (Option<EngineId>, Option<OperationName>)> =
            HashMap::new();
        let (mut seq, mut prev, last_time) = match state.events.last() {
            Some(e) => (e.seq, e.hash, Some(e.recorded_at)),
            None => (0, GENESIS_HASH, None),
        };
        let now = UtcTimestamp::now();
        let ts = last_time.map_or(now, |t| t.max(now));
        let mut out = Vec::with_capacity(prepared.len());
        for p in prepared.iter_mut() {
            if let Some(op) = p.needs_context()
                && let Some((engine, operation)) =
                    ops_in_batch.get(&op).or_else(|| state.ops.get(&op))
            {
                p.fill_context(engine.clone(), operation.clone());
            }
            seq += 1;
            let e = p.seal(seq, ts, prev)?;
            if e.kind == EventKind::OpReceived
                && let Some(op) = e.op_id
            {
                ops_in_batch
                    .entry(op)
                    .or_insert_with(|| (e.engine_id.clone(), e.operation.clone()));
            }
            prev = e.hash;
            out.push(e);
        }
        Ok(out)
    }

    fn commit(state: &mut State, events: &[Event]) {
        for e in events {
            if e.kind == EventKind::OpReceived
                && let Some(op) = e.op_id
            {
                state
                    .ops
                    .entry(op)
                    .or_insert_with(|| (e.engine_id.clone(), e.operation.clone()));
            }
            if let Some(p) = problem::observe(e, |fp| state.problems.get(fp).cloned()) {
                state.problems.insert(p.fingerprint.clone(), p);
            }
        }
        state.events.extend_from_slice(events);
    }
}

impl FlightRecorder for MemoryRecorder {
    fn append_batch(&self, drafts: Vec<EventDraft>) -> Result<Vec<Event>, RecorderError> {
        let mut prepared = drafts
            .into_iter()
            .map(|d| d.prepare(&self.redactor))
            .collect::<Result<Vec<_>, _>>()?;
        let mut state = self.lock();
        let events = Self::seal_all(&state, &mut prepared)?;
        Self::commit(&mut state, &events);
        Ok(events)
    }

    fn append_claiming(
        &self,
        claim: Claim,
        drafts: Vec<EventDraft>,
    ) -> Result<ClaimOutcome, RecorderError> {
        let mut prepared = drafts
            .into_iter()
            .map(|d| d.prepare(&self.redactor))
            .collect::<Result<Vec<_>, _>>()?;
        let mut state = self.lock();
        let op_id = claim.op_id();
        let existing = state.claims.get(&op_id).copied();
        let next = match (claim, existing) {
            (Claim::Admit(_) | Claim::AdmitCompleted(_), Some(found)) => {
                return Ok(ClaimOutcome::AlreadyClaimed(found));
            }
            (Claim::Admit(_), None) => Some(ClaimState::Admitted),
            (Claim::AdmitCompleted(_), None) => Some(ClaimState::Completed),
            (Claim::Complete(_), Some(ClaimState::Admitted)) => Some(ClaimState::Completed),
            (Claim::Complete(_), _) => None,
        };
        let events = Self::seal_all(&state, &mut prepared)?;
        Self::commit(&mut state, &events);
        if let Some(next) = next {
            state.claims.insert(op_id, next);
        }
        Ok(ClaimOutcome::Recorded(events))
    }

    fn claim_state(&self, op_id: Uuid) -> Result<Option<ClaimState>, RecorderError> {
        Ok(self.lock().claims.get(&op_id).copied())
    }

    fn reconcile_interrupted(&self) -> Result<Vec<Uuid>, RecorderError> {
        // Every claim belongs to this process, which is alive.
        Ok(Vec::new())
    }

    fn events(&self, query: &EventQuery) -> Result<Vec<Event>, RecorderError> {
        let state = self.lock();
        let limit = query
            .limit
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        Ok(state
            .events
            .iter()
            .filter(|e| query.matches(e))
            .take(limit)
            .cloned()
            .collect())
    }

    fn export_jsonl(&self, query: &EventQuery, out: &mut dyn Write) -> Result<u64, RecorderError> {
        let events = self.events(query)?;
        for e in &events {
            write_jsonl_line(out, e)?;
        }
        Ok(events.len() as u64)
    }

    fn problems(&self, filter: &ProblemFilter) -> Result<Vec<Problem>, RecorderError> {
        let state = self.lock();
        let mut list: Vec<Problem> = state
            .problems
            .values()
            .filter(|p| filter.matches(p))
            .cloned()
            .collect();
        list.sort_by(|a, b| {
            b.last_seen
                .cmp(&a.last_seen)
                .then(b.last_seq.cmp(&a.last_seq))
        });
        if let Some(limit) = filter.limit {
            list.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        Ok(list)
    }

    fn resolve_problem(&self, fingerprint: &str, note: &str) -> Result<Problem, RecorderError> {
        let mut state = self.lock();
        let Some(mut problem) = state.problems.get(fingerprint).cloned() else {
            return Err(RecorderError::UnknownProblem {
                fingerprint: fingerprint.to_owned(),
            });
        };
        let mut draft = resolution_draft(&problem, note).prepare(&self.redactor)?;
        let events = Self::seal_all(&state, std::slice::from_mut(&mut draft))?;
        Self::commit(&mut state, &events);
        let resolved = events
            .last()
            .map_or_else(UtcTimestamp::now, |e| e.recorded_at);
        problem.state = ProblemState::Resolved;
        problem.resolved_at = Some(resolved);
        problem.resolution = events
            .last()
            .and_then(|e| e.payload.get("note"))
            .and_then(|n| n.as_str())
            .map(str::to_owned);
        state
            .problems
            .insert(problem.fingerprint.clone(), problem.clone());
        Ok(problem)
    }

    fn head(&self) -> Result<Option<ChainHead>, RecorderError> {
        Ok(self.lock().events.last().map(|e| ChainHead {
            seq: e.seq,
            hash: e.hash,
        }))
    }

    fn verify(&self) -> Result<VerifyReport, RecorderError> {
        verify_memory(&self.lock(), None)
    }

    fn verify_anchored(&self, anchor: ChainHead) -> Result<VerifyReport, RecorderError> {
        verify_memory(&self.lock(), Some(anchor))
    }
}

fn verify_memory(state: &State, anchor: Option<ChainHead>) -> Result<VerifyReport, RecorderError> {
    let mut v = ChainVerifier::new(anchor);
    for e in &state.events {
        if !v.push(e.seq, Ok(e.clone())) {
            break;
        }
    }
    let head = state.events.last().map(|e| ChainHead {
        seq: e.seq,
        hash: e.hash,
    });
    Ok(v.finish(head))
}

/// The `problem_resolved` event for a problem.
pub(crate) fn resolution_draft(problem: &Problem, note: &str) -> EventDraft {
    let mut d = EventDraft::new(EventKind::ProblemResolved)
        .with_code(problem.code.clone())
        .with_payload(json!({"fingerprint": problem.fingerprint, "note": note}));
    if let Some(g) = &problem.gate {
        d = d.with_gate(g.clone());
    }
    if let Some(e) = &problem.engine_id {
        d = d.with_engine(e.clone());
    }
    if let Some(o) = &problem.operation {
        d = d.with_operation(o.clone());
    }
    d
}
