//! Settling a run: how the engine's part ended becomes a status, and a
//! successful run's staged outputs are checked against the admission and
//! ingested with their sidecar manifests. Nothing staged by a run that did
//! not succeed reaches the store.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use mex_artifacts::PutOptions;
use mex_envelope::{
    ArtifactHandle, ArtifactKind, ArtifactProducer, Classification, DenialSeverity, EngineError,
    ErrorCode, GateDenial, ProvenanceRecord, ResultStatus,
};
use mex_gates::internal::InputVerifier;
use mex_gates::results::{Produced, check_result};
use mex_recorder::EventDraft;
use mex_registry::OutputType;
use uuid::Uuid;

use crate::cache::CachedResult;
use crate::engine::{Body, EngineFailure, Role, RunState, Staged};
use crate::proof::AdmissionProof;
use crate::runtime::{MexRuntime, RunEnd};
use crate::stages::{Claiming, Ran, Settled};

/// What a run produced, as the EngineResult carries it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outputs {
    pub outputs: Vec<ArtifactHandle>,
    pub evidence: Vec<ArtifactHandle>,
    pub logs: Option<ArtifactHandle>,
    pub provenance: Option<ProvenanceRecord>,
}

impl MexRuntime {
    /// Stage 5: the status from how the run ended, then (on success) result
    /// checks and ingest, then the D3 cache. The workspace goes away here.
    pub(crate) fn settle(&self, ran: Ran) -> Settled {
        let Ran {
            proof,
            mut draft,
            cache_key,
            state,
            end,
        } = ran;
        let op = proof.operation();
        // Whatever the engine's thread still does, nothing more lands.
        state.close();
        let (status, error) = verdict(end, &state, &proof);
        draft.status = status;
        draft.errors.extend(error);
        let mut events = Vec::new();
        if let Some(e) = draft
            .errors
            .iter()
            .find(|e| e.code.as_str() == "RUNTIME.NONDETERMINISTIC")
        {
            events.push(EventDraft::result_rejected(
                op.op_id,
                e.code.clone(),
                e.message.clone(),
            ));
        }
        if let (ResultStatus::BudgetExceeded, Some(e)) = (draft.status, draft.errors.last()) {
            events.push(EventDraft::budget_exceeded(
                op.op_id,
                e.code.clone(),
                e.message.clone(),
            ));
        }
        events.push(EventDraft::engine_finished(
            op.op_id,
            op.engine_id.clone(),
            op.operation.clone(),
            draft.status,
        ));
        let mut outputs = Outputs::default();
        if draft.status == ResultStatus::Succeeded {
            match self.check_and_ingest(&proof, &state) {
                Ok(o) => {
                    events.extend(artifact_events(op.op_id, &o));
                    outputs = o;
                }
                Err(findings) => {
                    draft.status = ResultStatus::Failed;
                    for f in findings {
                        events.push(EventDraft::result_rejected(
                            op.op_id,
                            f.code.clone(),
                            f.message.clone(),
                        ));
                        draft.errors.push(error_of(f.code, f.message));
                    }
                }
            }
        }
        state.workspace.remove();
        self.cache_success(&draft, cache_key, &outputs);
        Settled {
            draft,
            events,
            outputs,
            cached: false,
            claiming: Claiming::Complete,
        }
    }

    /// Remember a successful D3 result under its key.
    fn cache_success(
        &self,
        draft: &crate::stages::Draft,
        key: Option<mex_envelope::Sha256Digest>,
        outputs: &Outputs,
    ) {
        if draft.status == ResultStatus::Succeeded
            && let (Some(cache), Some(key), Some(p)) = (&self.cache, key, &outputs.provenance)
        {
            // A result that cannot be cached is still a result.
            let _ = cache.put(
                &key,
                p.engine_id.as_str(),
                p.operation.as_str(),
                &CachedResult {
                    outputs: outputs.outputs.clone(),
                    evidence: outputs.evidence.clone(),
                    logs: outputs.logs.clone(),
                    provenance: p.clone(),
                },
            );
        }
    }

    /// Check the staged outputs against the admission, then ingest them into
    /// the store with their sidecar manifests.
    fn check_and_ingest(
        &self,
        proof: &AdmissionProof,
        state: &RunState,
    ) -> Result<Outputs, Vec<GateDenial>> {
        let engine_env = state
            .environment
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let provisional = provisional(with_merged_log(state.staged())?);
        let (outs, evid, log) = by_role(&provisional, |(s, h)| (s.role, h));
        let mut environment = engine_env;
        environment.extend(environment_base(state.execution));
        let mut prov = provenance(proof, &outs, environment);
        let produced = Produced {
            outputs: &outs,
            evidence: &evid,
            logs: log.as_ref(),
            provenance: &prov,
        };
        let mut findings = check_result(proof, &produced, &StagedVerifier(&provisional));
        findings.extend(refused_environment(state));
        findings.extend(self.undeclared_outputs(proof, &outs));
        if !findings.is_empty() {
            return Err(findings);
        }
        let stored = self.ingest(proof, &prov, &provisional)?;
        // Each stored output is read back and re-hashed once: a succeeded
        // result never names an artifact the store cannot serve.
        let unservable: Vec<GateDenial> = stored
            .iter()
            .filter_map(|(_, h)| self.reverify(h))
            .collect();
        if !unservable.is_empty() {
            return Err(unservable);
        }
        let (outputs, evidence, logs) = by_role(&stored, |(r, h)| (*r, h));
        prov.outputs = outputs.clone();
        Ok(Outputs {
            outputs,
            evidence,
            logs,
            provenance: Some(prov),
        })
    }

    /// Read a stored artifact back through the store, hashing every byte;
    /// the finding when it does not read back intact.
    fn reverify(&self, handle: &ArtifactHandle) -> Option<GateDenial> {
        let unservable = |why: String| {
            internal(format!(
                "output {} was stored but the store cannot serve it back ({why}); run `mex artifacts verify` and re-run the operation",
                handle.artifact_id
            ))
        };
        let mut reader = match self.store.open_streaming(handle) {
            Ok(reader) => reader,
            Err(e) => return Some(unservable(e.to_string())),
        };
        std::io::copy(&mut reader, &mut std::io::sink())
            .err()
            .map(|e| unservable(e.to_string()))
    }

    /// Outputs whose kind or media type the registry does not declare for
    /// the operation (for every engine, whatever its kind).
    fn undeclared_outputs(
        &self,
        proof: &AdmissionProof,
        outputs: &[ArtifactHandle],
    ) -> Vec<GateDenial> {
        let op = proof.operation();
        let Ok(decl) = self.registry.operation(&op.engine_id, &op.operation) else {
            return vec![undeclared(format!(
                "{} of {} is not in the registry any more; nothing it produced is accepted",
                op.operation, op.engine_id
            ))];
        };
        let decls = &decl.outputs;
        let mut findings = Vec::new();
        for (i, h) in outputs.iter().enumerate() {
            let mt = h.media_type.as_ref().map(|m| m.as_str());
            let is_bundle = h.kind == ArtifactKind::Bundle;
            let allowed = decls.iter().any(|d| {
                let bundle_type =
                    matches!(d.output_type, OutputType::Bundle | OutputType::Snapshot);
                let media_ok = match mt {
                    _ if !d.media_types.is_empty() => {
                        mt.is_some_and(|m| d.media_types.iter().any(|x| x == m))
                    }
                    Some(m) => media_fits_type(d.output_type, m),
                    None => true,
                };
                // A bundle artifact needs a bundle output; a bundle output
                // may be carried by its index (a report).
                (bundle_type || !is_bundle) && media_ok
            });
            if !allowed {
                let declared: Vec<String> = decls
                    .iter()
                    .map(|d| {
                        let t = serde_json::to_value(d.output_type)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default();
                        if d.media_types.is_empty() {
                            t
                        } else {
                            format!("{t} ({})", d.media_types.join(", "))
                        }
                    })
                    .collect();
                findings.push(undeclared(format!(
                    "outputs[{i}] is a {:?} artifact of media type {}, which no output the registry declares for {} allows (declared: {}); write only the outputs its registry entry lists",
                    h.kind,
                    mt.unwrap_or("(none)"),
                    op.operation,
                    if declared.is_empty() { "none".to_owned() } else { declared.join("; ") }
                )));
            }
        }
        findings
    }

    /// Put each checked file into the store, expecting its digest and size.
    fn ingest(
        &self,
        proof: &AdmissionProof,
        prov: &ProvenanceRecord,
        provisional: &[(Staged, ArtifactHandle)],
    ) -> Result<Vec<(Role, ArtifactHandle)>, Vec<GateDenial>> {
        let op = proof.operation();
        // Inputs' highest classification carries over to outputs.
        let classification = op
            .inputs
            .iter()
            .filter_map(|i| i.as_artifact())
            .map(|h| h.classification)
            .max()
            .unwrap_or(Classification::Low);
        let producer = ArtifactProducer {
            op_id: op.op_id,
            engine_id: op.engine_id.clone(),
            engine_version: proof.engine_version().clone(),
            implementation_id: proof.implementation().id.clone(),
            implementation_version: proof.implementation().version.clone(),
            operation: op.operation.clone(),
            config_hash: prov.config_hash,
            input_hashes: prov.inputs.iter().map(|h| h.content_hash).collect(),
            determinism: op.determinism,
        };
        let mut stored = Vec::new();
        for (staged, handle) in provisional {
            let mut options = PutOptions::new(handle.kind, classification);
            options.media_type = handle.media_type.clone();
            options.exportable = classification != Classification::High;
            options.producer = Some(producer.clone());
            options.expected = Some(mex_artifacts::Expected {
                hash: handle.content_hash,
                size: handle.size_bytes,
            });
            let put = match &staged.body {
                Body::Memory(bytes) => self.store.put_bytes(bytes, &options),
                Body::File(path) => self.store.put_path(path, &options),
            };
            let handle = put.map_err(|e| vec![internal(format!("cannot store output: {e}"))])?;
            stored.push((staged.role, handle));
        }
        Ok(stored)
    }
}

/// A status with the error that explains it.
type Verdict = (ResultStatus, Option<EngineError>);

fn verdict_of(status: ResultStatus, code: &'static str, message: String) -> Verdict {
    (
        status,
        Some(error_of(ErrorCode::from_static(code), message)),
    )
}

/// The status and the error (if any) of a run that ended as `end`.
fn verdict(end: RunEnd, state: &RunState, proof: &AdmissionProof) -> Verdict {
    let budget = proof.budget();
    let over = |code, message| verdict_of(ResultStatus::BudgetExceeded, code, message);
    let failed = |code, message: &str| verdict_of(ResultStatus::Failed, code, message.to_owned());
    // A workspace the run needed and could not have explains whatever the
    // engine did next.
    if let (RunEnd::Completed | RunEnd::Failed(_) | RunEnd::Panicked(_), Some(why)) =
        (&end, state.workspace.failure())
    {
        return failed("RUNTIME.WORKSPACE_UNAVAILABLE", &why);
    }
    match end {
        RunEnd::Completed if state.overflowed.load(Ordering::SeqCst) => over(
            "RUNTIME.OUTPUT_BUDGET_EXCEEDED",
            format!(
                "the engine wrote past its output budget of {} bytes; partial outputs were discarded",
                budget.output_bytes
            ),
        ),
        RunEnd::Completed => (ResultStatus::Succeeded, None),
        RunEnd::Failed(f) => failure_verdict(f, state, proof),
        RunEnd::Panicked(msg) => failed(
            "RUNTIME.ENGINE_PANICKED",
            &format!(
                "the engine panicked: {msg}; the panic was contained and partial outputs were discarded"
            ),
        ),
        RunEnd::TimedOut => over(
            "RUNTIME.WALL_TIME_EXCEEDED",
            format!(
                "the engine ran past its wall-time budget of {} ms; it was cancelled and partial outputs were discarded",
                budget.wall_time_ms
            ),
        ),
        RunEnd::Cancelled => failed(
            "RUNTIME.CANCELLED",
            "the caller cancelled the operation while it ran; the engine was stopped (a sandboxed process group is killed) and partial outputs were discarded",
        ),
        RunEnd::Foreign => failed(
            "RUNTIME.FOREIGN_COMPLETION",
            "the engine returned a completion that was not issued for this run; the result is rejected",
        ),
        RunEnd::Nondeterministic(why) => failed("RUNTIME.NONDETERMINISTIC", &why),
    }
}

/// The verdict on an engine that failed: past its deadline (or stopped),
/// over a budget it reports, over its output budget, or its own failure.
fn failure_verdict(f: EngineFailure, state: &RunState, proof: &AdmissionProof) -> Verdict {
    let budget = proof.budget();
    if state.cancelled.load(Ordering::SeqCst) || Instant::now() >= state.deadline {
        return verdict_of(
            ResultStatus::BudgetExceeded,
            "RUNTIME.WALL_TIME_EXCEEDED",
            format!(
                "the engine ran into its wall-time budget of {} ms and gave up; partial outputs were discarded",
                budget.wall_time_ms
            ),
        );
    }
    if f.budget_exceeded {
        return (
            ResultStatus::BudgetExceeded,
            Some(error_of(f.code, f.message)),
        );
    }
    if state.overflowed.load(Ordering::SeqCst) {
        return verdict_of(
            ResultStatus::BudgetExceeded,
            "RUNTIME.OUTPUT_BUDGET_EXCEEDED",
            format!(
                "output budget of {} bytes exceeded; the engine then failed: [{}] {}",
                budget.output_bytes, f.code, f.message
            ),
        );
    }
    (ResultStatus::Failed, Some(error_of(f.code, f.message)))
}

fn error_of(code: ErrorCode, message: String) -> EngineError {
    EngineError {
        code,
        message,
        details_ref: None,
    }
}

/// One `artifact_written` event per stored artifact.
fn artifact_events(op_id: Uuid, o: &Outputs) -> Vec<EventDraft> {
    o.outputs
        .iter()
        .chain(&o.evidence)
        .chain(&o.logs)
        .map(|h| {
            EventDraft::artifact_written(
                op_id,
                h.content_hash,
                h.size_bytes,
                h.media_type
                    .as_ref()
                    .map_or("application/octet-stream", |m| m.as_str()),
            )
        })
        .collect()
}

/// The staged files, with every log part joined into one log artifact
/// (held in memory: the parts were, or were read back to be joined).
fn with_merged_log(staged: Vec<Staged>) -> Result<Vec<Staged>, Vec<GateDenial>> {
    let (log_parts, mut parts): (Vec<Staged>, Vec<Staged>) =
        staged.into_iter().partition(|s| s.role == Role::Log);
    if log_parts.is_empty() {
        return Ok(parts);
    }
    let mut text = Vec::new();
    for part in &log_parts {
        let bytes = part
            .body
            .bytes()
            .map_err(|e| vec![internal(format!("log part unreadable: {e}"))])?;
        // A part staged as a file is re-hashed: it must be what was written.
        if bytes.len() as u64 != part.size || mex_envelope::Sha256Digest::of(&bytes) != part.digest
        {
            return Err(vec![internal(
                "a staged log part changed or vanished before ingest".to_owned(),
            )]);
        }
        text.extend_from_slice(&bytes);
    }
    parts.push(Staged {
        role: Role::Log,
        kind: ArtifactKind::Transcript,
        media_type: "text/plain".parse().ok(),
        digest: mex_envelope::Sha256Digest::of(&text),
        size: text.len() as u64,
        body: Body::Memory(text.into()),
    });
    Ok(parts)
}

/// A provisional handle for each staged file (the store assigns the real
/// one at ingest).
fn provisional(parts: Vec<Staged>) -> Vec<(Staged, ArtifactHandle)> {
    parts
        .into_iter()
        .map(|s| {
            let handle = ArtifactHandle {
                artifact_id: Uuid::new_v4(),
                kind: s.kind,
                content_hash: s.digest,
                size_bytes: s.size,
                classification: Classification::Low,
                exportable: true,
                retention_ttl_days: None,
                media_type: s.media_type.clone(),
            };
            (s, handle)
        })
        .collect()
}

/// Split handles by role: outputs, evidence, and the log (there is at most one).
fn by_role<T>(
    items: &[T],
    role_of: impl Fn(&T) -> (Role, &ArtifactHandle),
) -> (
    Vec<ArtifactHandle>,
    Vec<ArtifactHandle>,
    Option<ArtifactHandle>,
) {
    let pick = |role: Role| -> Vec<ArtifactHandle> {
        items
            .iter()
            .map(&role_of)
            .filter(|(r, _)| *r == role)
            .map(|(_, h)| h.clone())
            .collect()
    };
    (
        pick(Role::Output),
        pick(Role::Evidence),
        pick(Role::Log).into_iter().next(),
    )
}

pub(crate) fn internal(message: String) -> GateDenial {
    GateDenial {
        gate: mex_envelope::GateId::from_static("G-RESULT"),
        code: ErrorCode::from_static("G-RESULT.OUTPUT_UNVERIFIED"),
        rule: "runtime.ingest".into(),
        message,
        pointer: None,
        details: None,
        severity: DenialSeverity::Deny,
    }
}

/// Verifies provisional handles against the staged files they describe.
struct StagedVerifier<'a>(&'a [(Staged, ArtifactHandle)]);

impl InputVerifier for StagedVerifier<'_> {
    fn verify_input(&self, handle: &ArtifactHandle) -> Result<(), GateDenial> {
        let ok = self
            .0
            .iter()
            .find(|(_, h)| h == handle)
            .is_some_and(|(s, _)| match &s.body {
                // Bytes in memory are immutable: the digest taken when they
                // were staged is still theirs.
                Body::Memory(bytes) => bytes.len() as u64 == handle.size_bytes,
                Body::File(path) => std::fs::read(path).is_ok_and(|bytes| {
                    bytes.len() as u64 == handle.size_bytes
                        && mex_envelope::Sha256Digest::of(&bytes) == handle.content_hash
                }),
            });
        if ok {
            Ok(())
        } else {
            Err(internal(format!(
                "staged artifact {} changed or vanished before ingest",
                handle.artifact_id
            )))
        }
    }
}

/// Whether a media type fits an output type whose declaration lists no
/// media types: an image is not a dataset, a dataset is not audio.
fn media_fits_type(t: OutputType, media: &str) -> bool {
    let top = media.split('/').next().unwrap_or("");
    match t {
        OutputType::Image => top == "image",
        OutputType::Video => top == "video",
        OutputType::Audio => top == "audio",
        OutputType::Model3d => matches!(top, "model" | "application" | "text"),
        OutputType::Document => {
            matches!(top, "application" | "text" | "font") || media == "image/svg+xml"
        }
        OutputType::Dataset
        | OutputType::Bundle
        | OutputType::Snapshot
        | OutputType::Gcode
        | OutputType::Logs => matches!(top, "application" | "text"),
        #[allow(unreachable_patterns, reason = "OutputType may grow")]
        _ => true,
    }
}

/// A finding for an output the registry does not declare.
fn undeclared(message: String) -> GateDenial {
    GateDenial {
        gate: mex_envelope::GateId::from_static("G-RESULT"),
        code: ErrorCode::from_static("RUNTIME.UNDECLARED_OUTPUT"),
        rule: "registry.operation.outputs".into(),
        message,
        pointer: None,
        details: None,
        severity: DenialSeverity::Deny,
    }
}

/// The environment keys the engine tried to set and was refused.
fn refused_environment(state: &RunState) -> Option<GateDenial> {
    let refused = state
        .refused_keys
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    (!refused.is_empty()).then(|| GateDenial {
        gate: mex_envelope::GateId::from_static("G-RESULT"),
        code: ErrorCode::from_static("RUNTIME.RESERVED_ENVIRONMENT_KEY"),
        rule: "runtime.provenance.environment".into(),
        message: format!(
            "the engine tried to record environment key(s) {refused:?}, which only the runtime (or a sandboxed engine's supervisor, for sandbox.*) may set, or which are not plain ASCII names; use your own key names (letters, digits, '.', '_', '-')"
        ),
        pointer: None,
        details: None,
        severity: DenialSeverity::Deny,
    })
}

fn environment_base(execution: crate::engine::Execution) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "runtime".to_owned(),
            format!("mex-runtime {}", env!("CARGO_PKG_VERSION")),
        ),
        ("os".to_owned(), std::env::consts::OS.to_owned()),
        ("arch".to_owned(), std::env::consts::ARCH.to_owned()),
        ("execution".to_owned(), execution.as_str().to_owned()),
    ])
}

fn provenance(
    proof: &AdmissionProof,
    outputs: &[ArtifactHandle],
    environment: BTreeMap<String, String>,
) -> ProvenanceRecord {
    let op = proof.operation();
    ProvenanceRecord {
        engine_id: op.engine_id.clone(),
        engine_version: proof.engine_version().clone(),
        implementation_id: proof.implementation().id.clone(),
        implementation_version: proof.implementation().version.clone(),
        operation: op.operation.clone(),
        determinism: op.determinism,
        config_hash: op
            .config_hash()
            .unwrap_or(mex_envelope::Sha256Digest::of(b"")),
        inputs: op
            .inputs
            .iter()
            .filter_map(|i| i.as_artifact().cloned())
            .collect(),
        outputs: outputs.to_vec(),
        capabilities_granted: proof.capabilities_granted().to_vec(),
        consent_refs: proof.consent_refs().to_vec(),
        environment,
    }
}
