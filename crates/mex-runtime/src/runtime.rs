//! [`MexRuntime`]: builder, `execute`, and the flow of one operation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use mex_artifacts::{ArtifactStore, PutOptions};
use mex_envelope::{
    ArtifactHandle, ArtifactKind, ArtifactProducer, Classification, DenialSeverity, EngineError,
    EngineId, EngineResult, ErrorCode, GateDenial, PlannedOperation, ProvenanceRecord,
    ResultStatus, UtcTimestamp,
};
use mex_gates::results::{Produced, check_result};
use mex_gates::{
    AdmissionProof, CapabilityPolicy, Gate, GateContext, GateOutcome, InputVerifier, Pipeline,
    RegistryCatalog, replayed_op_id,
};
use mex_recorder::{Claim, ClaimOutcome, ClaimState, EventDraft, FlightRecorder};
use mex_registry::Registry;
use uuid::Uuid;

use crate::cache::{self, CachedResult, ResultCache};
use crate::engine::{Engine, EngineFailure, ExecutionContext, Role, RunState, Staged};
use crate::error::RuntimeError;
use crate::ledger::{RecorderClaims, claimed};

/// Decides whether an engine implementation may be dispatched. The
/// conformance harness supplies certificate-backed ones; the default refuses
/// everything not explicitly trusted.
pub trait Certifier: Send + Sync {
    /// `Ok` when certified; otherwise why not (shown to the user).
    fn check(
        &self,
        engine: &EngineId,
        implementation_id: &str,
        version: &semver::Version,
    ) -> Result<(), String>;
}

/// Trusts exactly the listed engines (for tests and development).
#[derive(Debug, Default)]
struct TrustList(BTreeSet<EngineId>);

impl Certifier for TrustList {
    fn check(&self, engine: &EngineId, _: &str, _: &semver::Version) -> Result<(), String> {
        if self.0.contains(engine) {
            Ok(())
        } else {
            Err(format!(
                "{engine} has no conformance certificate; run `mex conformance --engine {engine}` (with the same --registry and --registry-dir), or trust it explicitly for tests"
            ))
        }
    }
}

/// Lets a caller cancel an operation in flight
/// ([`MexRuntime::execute_with_cancel`]). Cloning shares the flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }
    /// Cancel the operation: before dispatch nothing runs; while it runs the
    /// engine is told to stop (a sandboxed process group is killed) and the
    /// result is `failed` with `RUNTIME.CANCELLED`.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How often the watchdog looks at a caller's [`CancelToken`].
const CANCEL_POLL: Duration = Duration::from_millis(20);
/// How long a cancelled engine gets to stop before its result is given up.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Builds a [`MexRuntime`].
#[derive(Default)]
pub struct MexRuntimeBuilder {
    registry: Option<Arc<Registry>>,
    policy: Option<CapabilityPolicy>,
    profile: Option<String>,
    store: Option<Arc<ArtifactStore>>,
    recorder: Option<Arc<dyn FlightRecorder>>,
    engines: Vec<Arc<dyn Engine>>,
    engine_gates: Vec<Arc<dyn Gate>>,
    certifier: Option<Arc<dyn Certifier>>,
    trusted: BTreeSet<EngineId>,
    cache: bool,
    salt: String,
    workspace_root: Option<PathBuf>,
}

impl MexRuntimeBuilder {
    /// The loaded registry.
    pub fn registry(mut self, registry: Arc<Registry>) -> Self {
        self.registry = Some(registry);
        self
    }
    /// The trusted capability policy.
    pub fn policy(mut self, policy: CapabilityPolicy) -> Self {
        self.policy = Some(policy);
        self
    }
    /// The caller's policy profile (default: the policy's default profile).
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }
    /// The artifact store.
    pub fn store(mut self, store: Arc<ArtifactStore>) -> Self {
        self.store = Some(store);
        self
    }
    /// The Flight Recorder.
    pub fn recorder(mut self, recorder: Arc<dyn FlightRecorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }
    /// Register an engine implementation.
    pub fn engine(mut self, engine: Arc<dyn Engine>) -> Self {
        self.engines.push(engine);
        self
    }
    /// Install an engine-specific gate (e.g. `G-SAFETY.SANDBOX`).
    pub fn engine_gate(mut self, gate: Arc<dyn Gate>) -> Self {
        self.engine_gates.push(gate);
        self
    }
    /// Use certificates to decide which engines may run.
    pub fn certifier(mut self, certifier: Arc<dyn Certifier>) -> Self {
        self.certifier = Some(certifier);
        self
    }
    /// Trust an engine without a certificate. For tests and development only;
    /// the default is to refuse uncertified engines.
    pub fn trust_uncertified(mut self, engine: EngineId) -> Self {
        self.trusted.insert(engine);
        self
    }
    /// Turn the D3 result cache on or off (default: on).
    pub fn result_cache(mut self, enabled: bool) -> Self {
        self.cache = enabled;
        self
    }
    /// Salt mixed into every cache key (change it to invalidate the cache).
    pub fn cache_salt(mut self, salt: impl Into<String>) -> Self {
        self.salt = salt.into();
        self
    }
    /// Where shadow workspaces are created (default: `<store root>/../runs`).
    pub fn workspace_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.workspace_root = Some(root.into());
        self
    }

    /// Build the runtime.
    pub fn build(self) -> Result<MexRuntime, RuntimeError> {
        let registry = self.registry.ok_or(RuntimeError::Missing("registry"))?;
        let policy = self.policy.ok_or(RuntimeError::Missing("policy"))?;
        let store = self.store.ok_or(RuntimeError::Missing("store"))?;
        let recorder = self.recorder.ok_or(RuntimeError::Missing("recorder"))?;
        let mut engines = HashMap::new();
        for engine in self.engines {
            let id = engine.engine_id();
            let imp = engine.implementation_id().to_owned();
            let version = engine.implementation_version();
            let declared = registry.engine(&id).ok().is_some_and(|e| {
                e.implementations
                    .iter()
                    .any(|i| i.id == imp && i.version == version)
            });
            if !declared {
                return Err(RuntimeError::UndeclaredEngine {
                    engine: id.to_string(),
                    implementation: imp,
                    version: version.to_string(),
                });
            }
            if engines
                .insert((imp.clone(), version.clone()), engine)
                .is_some()
            {
                return Err(RuntimeError::DuplicateEngine(format!("{imp}@{version}")));
            }
        }
        let workspace_root = self.workspace_root.unwrap_or_else(|| {
            store
                .root()
                .parent()
                .map_or_else(|| store.root().join("runs"), |p| p.join("runs"))
        });
        std::fs::create_dir_all(&workspace_root).map_err(|source| RuntimeError::Workspace {
            path: workspace_root.display().to_string(),
            source,
        })?;
        // Shadow workspaces of runs killed in any process before they
        // cleaned up (see `reclaim`).
        let reclaimed = crate::reclaim::reclaim_workspaces(&workspace_root).unwrap_or_else(|e| {
            crate::reclaim::Reclaimed {
                failed: vec![(workspace_root.clone(), e.to_string())],
                ..Default::default()
            }
        });
        let ctx = GateContext::new(
            Arc::new(RegistryCatalog::new(registry.clone())),
            Arc::new(policy),
            self.profile,
            store.clone(),
            Arc::new(RecorderClaims::new(recorder.clone())),
        );
        let mut pipeline = Pipeline::new(ctx);
        for gate in self.engine_gates {
            pipeline = pipeline
                .with_engine_gate(gate)
                .map_err(|e| RuntimeError::Gate(e.to_string()))?;
        }
        let certifier: Arc<dyn Certifier> = match self.certifier {
            Some(c) if self.trusted.is_empty() => c,
            Some(c) => Arc::new(Either(c, TrustList(self.trusted))),
            None => Arc::new(TrustList(self.trusted)),
        };
        Ok(MexRuntime {
            registry,
            store,
            recorder,
            pipeline,
            engines,
            certifier,
            cache: self.cache.then(ResultCache::default),
            salt: self.salt,
            workspace_root,
            reclaimed,
            runs: AtomicU64::new(0),
        })
    }
}

struct Either(Arc<dyn Certifier>, TrustList);

impl Certifier for Either {
    fn check(&self, engine: &EngineId, imp: &str, version: &semver::Version) -> Result<(), String> {
        self.1
            .check(engine, imp, version)
            .or_else(|_| self.0.check(engine, imp, version))
    }
}

/// The runtime. `Send + Sync`: share it (e.g. in an `Arc`) and call
/// [`MexRuntime::execute`] from many threads.
pub struct MexRuntime {
    registry: Arc<Registry>,
    store: Arc<ArtifactStore>,
    recorder: Arc<dyn FlightRecorder>,
    pipeline: Pipeline,
    engines: HashMap<(String, semver::Version), Arc<dyn Engine>>,
    certifier: Arc<dyn Certifier>,
    cache: Option<ResultCache>,
    salt: String,
    workspace_root: PathBuf,
    reclaimed: crate::reclaim::Reclaimed,
    runs: AtomicU64,
}

/// How the engine's part of a run ended.
enum RunEnd {
    Completed,
    Failed(EngineFailure),
    Panicked(String),
    TimedOut,
    Foreign,
    Cancelled,
}

/// What recording an outcome does to the op id's claim (see
/// `mex_recorder::claim`).
enum Claiming<'a> {
    /// Nothing: the operation was not admitted.
    None,
    /// Admitted, and completing in the same batch (cache hit, refusal before
    /// dispatch): claim it as completed; a lost race ends denied.
    AdmitCompleted {
        op: &'a PlannedOperation,
        outcomes: &'a [GateOutcome],
    },
    /// The run this process claimed has ended: mark the claim completed.
    Complete,
}

/// An in-progress result: the pieces the runtime assembles at the end.
struct Draft {
    op_id: Uuid,
    started_at: UtcTimestamp,
    status: ResultStatus,
    errors: Vec<EngineError>,
    denials: Vec<GateDenial>,
}

impl Draft {
    fn error(&mut self, code: &'static str, message: impl Into<String>) {
        self.errors.push(EngineError {
            code: ErrorCode::from_static(code),
            message: message.into(),
            details_ref: None,
        });
    }
}

impl MexRuntime {
    /// Start building a runtime.
    pub fn builder() -> MexRuntimeBuilder {
        MexRuntimeBuilder {
            cache: true,
            salt: "mex-runtime-1".into(),
            ..MexRuntimeBuilder::default()
        }
    }

    /// The registry this runtime admits against.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The artifact store.
    pub fn store(&self) -> &Arc<ArtifactStore> {
        &self.store
    }

    /// The recorder.
    pub fn recorder(&self) -> &Arc<dyn FlightRecorder> {
        &self.recorder
    }

    /// Run the admission pipeline only (nothing executes, nothing is claimed:
    /// the op id stays usable). Returns every gate outcome, including
    /// `G-INTEGRITY.REPLAYED_OP_ID` for an op id already used.
    pub fn validate_json(&self, bytes: &[u8]) -> Vec<GateOutcome> {
        // Admission only looks claims up; the claim is made by `execute`
        // when it records the admission.
        self.pipeline.admit_json(bytes).1.outcomes
    }

    /// Execute untrusted JSON. Always returns an EngineResult, and never
    /// without a record.
    pub fn execute_json(&self, bytes: &[u8]) -> EngineResult {
        let started_at = UtcTimestamp::now();
        match PlannedOperation::from_json_slice(bytes) {
            Ok(op) => self.execute_at(op, started_at, None),
            Err(_) => {
                // Not an operation: record the refusal under the op id it
                // claims, when there is one, else the nil id. The claim is
                // found by a scan that allocates nothing, never by parsing
                // the refused document again (it may be huge or hostile);
                // `admit_json` re-reads it only within the envelope cap.
                let op_id = PlannedOperation::claimed_op_id(bytes).unwrap_or(Uuid::nil());
                let (_, admission) = self.pipeline.admit_json(bytes);
                let denials = admission.result.err().unwrap_or_default();
                let mut draft = Draft {
                    op_id,
                    started_at,
                    status: ResultStatus::Denied,
                    errors: Vec::new(),
                    denials,
                };
                let events: Vec<EventDraft> = draft
                    .denials
                    .iter()
                    .map(|d| EventDraft::gate_outcome(op_id, d))
                    .collect();
                if let Err(e) = self.recorder.append_batch(events) {
                    draft.status = ResultStatus::Failed;
                    draft.error(
                        "RUNTIME.RECORDER_UNAVAILABLE",
                        format!("the refusal could not be recorded: {e}"),
                    );
                }
                self.finish_without_outputs(draft, Vec::new())
            }
        }
    }

    /// Execute a typed operation.
    pub fn execute(&self, op: PlannedOperation) -> EngineResult {
        self.execute_at(op, UtcTimestamp::now(), None)
    }

    /// [`MexRuntime::execute`], cancellable through `cancel` from another
    /// thread. A cancelled operation is recorded and answered as `failed`
    /// with `RUNTIME.CANCELLED`.
    pub fn execute_with_cancel(&self, op: PlannedOperation, cancel: &CancelToken) -> EngineResult {
        self.execute_at(op, UtcTimestamp::now(), Some(cancel))
    }

    fn execute_at(
        &self,
        op: PlannedOperation,
        started_at: UtcTimestamp,
        cancel: Option<&CancelToken>,
    ) -> EngineResult {
        let mut draft = Draft {
            op_id: op.op_id,
            started_at,
            status: ResultStatus::Failed,
            errors: Vec::new(),
            denials: Vec::new(),
        };
        // 1-2. Receipt and admission. Both are recorded in one transaction
        // that commits before anything is dispatched (admission itself has no
        // side effects but claiming the op id), so a crash during admission
        // loses nothing that ran. An operation that cannot be recorded does
        // not run.
        //
        // The op id is claimed in that same transaction (or, for an outcome
        // decided before dispatch, in the one that records it): the gates
        // only looked it up, and of several requests racing with one op id,
        // in this process or others, exactly one claim commits. A request
        // that loses is denied (G-INTEGRITY.REPLAYED_OP_ID), recorded
        // without claiming, and never dispatched.
        let admission = self.pipeline.admit(op.clone());
        let outcomes = admission.outcomes;
        let mut events = admission_events(&op, &outcomes);
        let proof = match admission.result {
            Ok(proof) => {
                for cap in proof.capabilities_granted() {
                    events.push(EventDraft::capability(
                        op.op_id,
                        cap.to_string(),
                        true,
                        "policy.profile.grants",
                    ));
                }
                proof
            }
            Err(denials) => {
                draft.status = ResultStatus::Denied;
                draft.denials = denials;
                return self.finish_without_outputs(draft, events);
            }
        };
        draft.denials.extend(proof.degraded().iter().cloned());

        // 3. D3 result cache.
        let cache_key = match (&self.cache, op.determinism) {
            (Some(_), mex_envelope::DeterminismLevel::D3) => cache::key(&proof, &self.salt),
            _ => None,
        };
        if let (Some(cache), Some(key)) = (&self.cache, cache_key)
            && let Some(hit) = cache.get(&key)
        {
            {
                let all_verify = hit
                    .outputs
                    .iter()
                    .chain(&hit.evidence)
                    .chain(&hit.logs)
                    .all(|h| self.store.verify_input(h).is_ok());
                if all_verify {
                    draft.status = ResultStatus::Succeeded;
                    let mut provenance = hit.provenance.clone();
                    provenance
                        .environment
                        .insert("served_from_cache".into(), "true".into());
                    return self.record_then_finish(
                        draft,
                        events,
                        hit.outputs,
                        hit.evidence,
                        hit.logs,
                        Some(provenance),
                        true,
                        Claiming::AdmitCompleted {
                            op: &op,
                            outcomes: &outcomes,
                        },
                    );
                }
                cache.forget(&key);
            }
        }

        // 4. Implementation and certification.
        let imp = proof.implementation().clone();
        let Some(engine) = self
            .engines
            .get(&(imp.id.clone(), imp.version.clone()))
            .cloned()
        else {
            draft.error("RUNTIME.ENGINE_NOT_INSTALLED", format!("{} resolves to {}@{}, which this runtime does not have; register the engine with the runtime builder", op.engine_id, imp.id, imp.version));
            return self.finish_admitted(draft, events, &op, &outcomes);
        };
        if let Err(why) = self.certifier.check(&op.engine_id, &imp.id, &imp.version) {
            draft.status = ResultStatus::Denied;
            draft.error("RUNTIME.ENGINE_NOT_CERTIFIED", why);
            return self.finish_admitted(draft, events, &op, &outcomes);
        }

        // 5. Shadow workspace.
        let workspace = match crate::reclaim::create_workspace(&self.workspace_root, &op.op_id) {
            Ok(dir) => dir,
            Err(e) => {
                draft.error(
                    "RUNTIME.WORKSPACE_UNAVAILABLE",
                    format!(
                        "cannot create a shadow workspace under {}: {e}",
                        self.workspace_root.display()
                    ),
                );
                return self.finish_admitted(draft, events, &op, &outcomes);
            }
        };
        if let Err(e) = std::fs::create_dir(workspace.path().join("staged")) {
            draft.error(
                "RUNTIME.WORKSPACE_UNAVAILABLE",
                format!("cannot prepare the shadow workspace: {e}"),
            );
            return self.finish_admitted(draft, events, &op, &outcomes);
        }

        // 6. Execute on a worker under a watchdog.
        if cancel.is_some_and(CancelToken::is_cancelled) {
            draft.error(
                "RUNTIME.CANCELLED",
                "the caller cancelled the operation before the engine started; nothing ran",
            );
            return self.finish_without_outputs(draft, events);
        }
        events.push(EventDraft::engine_started(
            op.op_id,
            op.engine_id.clone(),
            op.operation.clone(),
        ));
        match self
            .recorder
            .append_claiming(Claim::Admit(op.op_id), std::mem::take(&mut events))
        {
            Ok(ClaimOutcome::Recorded(_)) => {}
            Ok(ClaimOutcome::AlreadyClaimed(how)) => {
                drop(workspace);
                return self.deny_lost_claim(&draft, &op, &outcomes, how);
            }
            Err(e) => {
                draft.error(
                    "RUNTIME.RECORDER_UNAVAILABLE",
                    format!(
                        "receipt, admission and engine start could not be recorded, so nothing ran: {e}"
                    ),
                );
                return self.finish_unrecorded(draft);
            }
        }
        let budget = *proof.budget();
        let state = Arc::new(RunState {
            run_token: Uuid::new_v4(),
            op: Arc::new(op.clone()),
            inputs: op
                .inputs
                .iter()
                .filter_map(|i| i.as_artifact().cloned())
                .collect(),
            store: self.store.clone(),
            workspace: workspace.path().to_path_buf(),
            output_budget: budget.output_bytes,
            budget: budget.to_spec(),
            deadline: Instant::now() + Duration::from_millis(budget.wall_time_ms),
            capabilities: proof.capabilities_granted().to_vec(),
            cancelled: Arc::new(AtomicBool::new(false)),
            overflowed: AtomicBool::new(false),
            bytes_written: AtomicU64::new(0),
            staged: Mutex::new(Vec::new()),
            environment: Mutex::new(BTreeMap::new()),
        });
        self.runs.fetch_add(1, Ordering::Relaxed);
        let end = run_on_worker(
            engine,
            state.clone(),
            Duration::from_millis(budget.wall_time_ms),
            cancel,
        );
        let mut events = Vec::new();
        match end {
            RunEnd::Completed if state.overflowed.load(Ordering::SeqCst) => {
                draft.status = ResultStatus::BudgetExceeded;
                draft.error("RUNTIME.OUTPUT_BUDGET_EXCEEDED", format!("the engine wrote past its output budget of {} bytes; partial outputs were discarded", budget.output_bytes));
            }
            RunEnd::Completed => draft.status = ResultStatus::Succeeded,
            RunEnd::Failed(_)
                if state.cancelled.load(Ordering::SeqCst) || Instant::now() >= state.deadline =>
            {
                draft.status = ResultStatus::BudgetExceeded;
                draft.error(
                    "RUNTIME.WALL_TIME_EXCEEDED",
                    format!("the engine ran into its wall-time budget of {} ms and gave up; partial outputs were discarded", budget.wall_time_ms),
                );
            }
            RunEnd::Failed(f) if f.budget_exceeded => {
                draft.status = ResultStatus::BudgetExceeded;
                draft.errors.push(EngineError {
                    code: f.code,
                    message: f.message,
                    details_ref: None,
                });
            }
            RunEnd::Failed(f) if state.overflowed.load(Ordering::SeqCst) => {
                draft.status = ResultStatus::BudgetExceeded;
                draft.error(
                    "RUNTIME.OUTPUT_BUDGET_EXCEEDED",
                    format!(
                        "output budget of {} bytes exceeded; the engine then failed: [{}] {}",
                        budget.output_bytes, f.code, f.message
                    ),
                );
            }
            RunEnd::Failed(f) => {
                draft.status = ResultStatus::Failed;
                draft.errors.push(EngineError {
                    code: f.code,
                    message: f.message,
                    details_ref: None,
                });
            }
            RunEnd::Panicked(msg) => {
                draft.status = ResultStatus::Failed;
                draft.error("RUNTIME.ENGINE_PANICKED", format!("the engine panicked: {msg}; the panic was contained and partial outputs were discarded"));
            }
            RunEnd::TimedOut => {
                draft.status = ResultStatus::BudgetExceeded;
                draft.error("RUNTIME.WALL_TIME_EXCEEDED", format!("the engine ran past its wall-time budget of {} ms; it was cancelled and partial outputs were discarded", budget.wall_time_ms));
            }
            RunEnd::Cancelled => {
                draft.status = ResultStatus::Failed;
                draft.error("RUNTIME.CANCELLED", "the caller cancelled the operation while it ran; the engine was stopped (a sandboxed process group is killed) and partial outputs were discarded");
            }
            RunEnd::Foreign => {
                draft.status = ResultStatus::Failed;
                draft.error("RUNTIME.FOREIGN_COMPLETION", "the engine returned a completion that was not issued for this run; the result is rejected");
            }
        }
        if draft.status == ResultStatus::BudgetExceeded
            && let Some(e) = draft.errors.last()
        {
            {
                events.push(EventDraft::budget_exceeded(
                    op.op_id,
                    e.code.clone(),
                    e.message.clone(),
                ));
            }
        }
        events.push(EventDraft::engine_finished(
            op.op_id,
            op.engine_id.clone(),
            op.operation.clone(),
            draft.status,
        ));

        // 7. Result checks, then ingest with sidecar manifests.
        let (mut outputs, mut evidence, mut logs, mut provenance) =
            (Vec::new(), Vec::new(), None, None);
        if draft.status == ResultStatus::Succeeded {
            let engine_env = state
                .environment
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            match self.check_and_ingest(&proof, &state.staged(), workspace.path(), engine_env) {
                Ok((o, e, l, p)) => {
                    for h in o.iter().chain(&e).chain(&l) {
                        events.push(EventDraft::artifact_written(
                            op.op_id,
                            h.content_hash,
                            h.size_bytes,
                            h.media_type
                                .as_ref()
                                .map_or("application/octet-stream", |m| m.as_str()),
                        ));
                    }
                    (outputs, evidence, logs, provenance) = (o, e, l, Some(p));
                }
                Err(findings) => {
                    draft.status = ResultStatus::Failed;
                    for f in findings {
                        events.push(EventDraft::result_rejected(
                            op.op_id,
                            f.code.clone(),
                            f.message.clone(),
                        ));
                        draft.errors.push(EngineError {
                            code: f.code,
                            message: f.message,
                            details_ref: None,
                        });
                    }
                }
            }
        }
        drop(workspace);
        if draft.status == ResultStatus::Succeeded
            && let (Some(cache), Some(key), Some(p)) = (&self.cache, cache_key, &provenance)
        {
            cache.put(
                key,
                CachedResult {
                    outputs: outputs.clone(),
                    evidence: evidence.clone(),
                    logs: logs.clone(),
                    provenance: p.clone(),
                },
            );
        }
        self.record_then_finish(
            draft,
            events,
            outputs,
            evidence,
            logs,
            provenance,
            false,
            Claiming::Complete,
        )
    }

    /// Check the staged outputs against the admission, then ingest them into
    /// the store with their sidecar manifests.
    #[allow(clippy::type_complexity)]
    fn check_and_ingest(
        &self,
        proof: &AdmissionProof,
        staged: &[Staged],
        workspace: &std::path::Path,
        engine_env: BTreeMap<String, String>,
    ) -> Result<
        (
            Vec<ArtifactHandle>,
            Vec<ArtifactHandle>,
            Option<ArtifactHandle>,
            ProvenanceRecord,
        ),
        Vec<GateDenial>,
    > {
        let op = proof.operation();
        // Logs: all parts become one artifact.
        let mut parts: Vec<Staged> = staged
            .iter()
            .filter(|s| s.role != Role::Log)
            .cloned()
            .collect();
        let log_parts: Vec<&Staged> = staged.iter().filter(|s| s.role == Role::Log).collect();
        if !log_parts.is_empty() {
            let mut text = Vec::new();
            for part in &log_parts {
                text.extend(
                    std::fs::read(&part.path)
                        .map_err(|e| vec![internal(format!("log part unreadable: {e}"))])?,
                );
            }
            let path = workspace.join("log.txt");
            std::fs::write(&path, &text)
                .map_err(|e| vec![internal(format!("cannot stage the log: {e}"))])?;
            parts.push(Staged {
                role: Role::Log,
                path,
                kind: ArtifactKind::Transcript,
                media_type: "text/plain".parse().ok(),
                digest: mex_envelope::Sha256Digest::of(&text),
                size: text.len() as u64,
            });
        }
        let provisional: Vec<(Staged, ArtifactHandle)> = parts
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
            .collect();
        let pick = |role: Role| -> Vec<ArtifactHandle> {
            provisional
                .iter()
                .filter(|(s, _)| s.role == role)
                .map(|(_, h)| h.clone())
                .collect()
        };
        let (outs, evid) = (pick(Role::Output), pick(Role::Evidence));
        let log = pick(Role::Log).into_iter().next();
        let mut environment = engine_env;
        environment.extend(environment_base());
        let mut prov = provenance(proof, &outs, environment.clone());
        let verifier = StagedVerifier(&provisional);
        let findings = check_result(
            proof,
            &Produced {
                outputs: &outs,
                evidence: &evid,
                logs: log.as_ref(),
                provenance: &prov,
            },
            &verifier,
        );
        if !findings.is_empty() {
            return Err(findings);
        }
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
        let mut final_handles = Vec::new();
        for (staged, handle) in &provisional {
            let mut options = PutOptions::new(handle.kind, classification);
            options.media_type = handle.media_type.clone();
            options.exportable = classification != Classification::High;
            options.producer = Some(producer.clone());
            options.expected = Some(mex_artifacts::Expected {
                hash: handle.content_hash,
                size: handle.size_bytes,
            });
            let stored = self
                .store
                .put_path(&staged.path, &options)
                .map_err(|e| vec![internal(format!("cannot store output: {e}"))])?;
            final_handles.push((staged.role, stored));
        }
        let pick_final = |role: Role| -> Vec<ArtifactHandle> {
            final_handles
                .iter()
                .filter(|(r, _)| *r == role)
                .map(|(_, h)| h.clone())
                .collect()
        };
        let (outs, evid) = (pick_final(Role::Output), pick_final(Role::Evidence));
        let log = pick_final(Role::Log).into_iter().next();
        prov.outputs = outs.clone();
        Ok((outs, evid, log, prov))
    }

    #[allow(clippy::too_many_arguments)]
    fn record_then_finish(
        &self,
        mut draft: Draft,
        mut events: Vec<EventDraft>,
        outputs: Vec<ArtifactHandle>,
        evidence: Vec<ArtifactHandle>,
        logs: Option<ArtifactHandle>,
        provenance: Option<ProvenanceRecord>,
        cached: bool,
        claiming: Claiming<'_>,
    ) -> EngineResult {
        let mut result = self.finish_draft(
            &draft,
            outputs.clone(),
            evidence.clone(),
            logs.clone(),
            provenance.clone(),
            cached,
        );
        events.push(EventDraft::op_completed_from(&result));
        let recorded = match &claiming {
            Claiming::None => self
                .recorder
                .append_batch(events)
                .map(ClaimOutcome::Recorded),
            Claiming::AdmitCompleted { .. } => self
                .recorder
                .append_claiming(Claim::AdmitCompleted(draft.op_id), events),
            Claiming::Complete => self
                .recorder
                .append_claiming(Claim::Complete(draft.op_id), events),
        };
        match (recorded, claiming) {
            (Ok(ClaimOutcome::Recorded(_)), _) => {}
            (Ok(ClaimOutcome::AlreadyClaimed(how)), Claiming::AdmitCompleted { op, outcomes }) => {
                return self.deny_lost_claim(&draft, op, outcomes, how);
            }
            (Ok(ClaimOutcome::AlreadyClaimed(_)), _) => {
                // Only a new claim can be refused; answer as unrecorded.
                draft.status = ResultStatus::Failed;
                draft.error(
                    "RUNTIME.RECORDER_UNAVAILABLE",
                    "the recorder refused to record the outcome",
                );
                result = self.finish_draft(&draft, Vec::new(), Vec::new(), None, provenance, false);
            }
            (Err(e), _) => {
                // Never report success without a record.
                draft.status = ResultStatus::Failed;
                draft.error(
                    "RUNTIME.RECORDER_UNAVAILABLE",
                    format!("the outcome could not be recorded: {e}"),
                );
                result = self.finish_draft(&draft, Vec::new(), Vec::new(), None, provenance, false);
            }
        }
        result
    }

    /// Record and answer a run that produced nothing and was not admitted
    /// (denied, or not an operation): nothing is claimed.
    fn finish_without_outputs(&self, draft: Draft, events: Vec<EventDraft>) -> EngineResult {
        self.record_then_finish(
            draft,
            events,
            Vec::new(),
            Vec::new(),
            None,
            None,
            false,
            Claiming::None,
        )
    }

    /// Record and answer an admitted operation that ends before dispatch
    /// (engine not installed or not certified, no workspace): the op id is
    /// claimed, completed, in the same transaction.
    fn finish_admitted(
        &self,
        draft: Draft,
        events: Vec<EventDraft>,
        op: &PlannedOperation,
        outcomes: &[GateOutcome],
    ) -> EngineResult {
        self.record_then_finish(
            draft,
            events,
            Vec::new(),
            Vec::new(),
            None,
            None,
            false,
            Claiming::AdmitCompleted { op, outcomes },
        )
    }

    /// The op id was claimed by another request between the gates' lookup
    /// and this request's claim: deny as a replay, and record the denial
    /// (receipt, gate outcomes with the denial, completion) without claiming.
    fn deny_lost_claim(
        &self,
        draft: &Draft,
        op: &PlannedOperation,
        outcomes: &[GateOutcome],
        how: ClaimState,
    ) -> EngineResult {
        let denial = replayed_op_id(op.op_id, claimed(how));
        let mut outcomes = outcomes.to_vec();
        match outcomes.iter_mut().find(|o| o.gate == denial.gate) {
            Some(o) => o.findings.push(denial.clone()),
            None => outcomes.push(GateOutcome {
                gate: denial.gate.clone(),
                findings: vec![denial.clone()],
            }),
        }
        let denied = Draft {
            op_id: op.op_id,
            started_at: draft.started_at,
            status: ResultStatus::Denied,
            errors: Vec::new(),
            denials: vec![denial],
        };
        self.finish_without_outputs(denied, admission_events(op, &outcomes))
    }

    fn finish_unrecorded(&self, mut draft: Draft) -> EngineResult {
        draft.status = ResultStatus::Failed;
        self.finish_draft(&draft, Vec::new(), Vec::new(), None, None, false)
    }

    fn finish_draft(
        &self,
        draft: &Draft,
        outputs: Vec<ArtifactHandle>,
        evidence: Vec<ArtifactHandle>,
        logs: Option<ArtifactHandle>,
        provenance: Option<ProvenanceRecord>,
        cached: bool,
    ) -> EngineResult {
        EngineResult {
            op_id: draft.op_id,
            status: draft.status,
            started_at: draft.started_at,
            ended_at: UtcTimestamp::now(),
            outputs,
            evidence,
            provenance,
            errors: draft.errors.clone(),
            denials: draft
                .denials
                .iter()
                .filter(|d| {
                    d.severity == DenialSeverity::Deny || draft.status != ResultStatus::Denied
                })
                .cloned()
                .collect(),
            logs_ref: logs,
            served_from_cache: cached,
        }
    }

    /// Shadow workspaces of dead runs that building this runtime removed.
    pub fn reclaimed_at_open(&self) -> &crate::reclaim::Reclaimed {
        &self.reclaimed
    }

    /// Where shadow workspaces are made.
    pub fn workspace_root(&self) -> &std::path::Path {
        &self.workspace_root
    }

    /// How many engine runs this runtime dispatched (cache hits excluded).
    pub fn runs_dispatched(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }
}

/// Receipt and every gate outcome (with the capability refusals G-CAP names).
fn admission_events(op: &PlannedOperation, outcomes: &[GateOutcome]) -> Vec<EventDraft> {
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
            if finding.gate.as_str() == "G-CAP"
                && let Some(i) = finding
                    .pointer
                    .as_deref()
                    .and_then(|p| p.strip_prefix("/capabilities_requested/"))
                    .and_then(|i| i.parse::<usize>().ok())
                && let Some(cap) = op.capabilities_requested.get(i)
            {
                events.push(EventDraft::capability(
                    op.op_id,
                    cap.to_string(),
                    false,
                    finding.rule.clone(),
                ));
            }
        }
    }
    events
}

fn internal(message: String) -> GateDenial {
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
            .is_some_and(|(s, _)| {
                std::fs::read(&s.path).is_ok_and(|bytes| {
                    bytes.len() as u64 == handle.size_bytes
                        && mex_envelope::Sha256Digest::of(&bytes) == handle.content_hash
                })
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

fn environment_base() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "runtime".to_owned(),
            format!("mex-runtime {}", env!("CARGO_PKG_VERSION")),
        ),
        ("os".to_owned(), std::env::consts::OS.to_owned()),
        ("arch".to_owned(), std::env::consts::ARCH.to_owned()),
        ("execution".to_owned(), "in_process".to_owned()),
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

/// Run the engine on its own thread; wait at most `wall`. A panic is caught
/// on the worker. On timeout the run is cancelled; the worker cannot be
/// killed (threads cannot be), so it is left to notice `is_cancelled` and
/// everything it writes afterwards is refused and discarded.
/// A caller's `cancel` is polled every [`CANCEL_POLL`]; on cancellation the
/// run's flag is set and the engine gets [`CANCEL_GRACE`] to stop.
fn run_on_worker(
    engine: Arc<dyn Engine>,
    state: Arc<RunState>,
    wall: Duration,
    cancel: Option<&CancelToken>,
) -> RunEnd {
    let (tx, rx) = mpsc::channel();
    let worker_state = state.clone();
    let spawned = std::thread::Builder::new()
        .name("mex-engine".into())
        .spawn(move || {
            let ctx = ExecutionContext::new(&worker_state);
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.execute(&ctx)));
            let end = match outcome {
                Ok(Ok(completion)) if completion.run_token == worker_state.run_token => {
                    RunEnd::Completed
                }
                Ok(Ok(_)) => RunEnd::Foreign,
                Ok(Err(failure)) => RunEnd::Failed(failure),
                Err(payload) => RunEnd::Panicked(
                    payload
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "non-text panic payload".to_owned()),
                ),
            };
            let _ = tx.send(end);
        });
    if let Err(e) = spawned {
        return RunEnd::Failed(EngineFailure::new(
            "RUNTIME.WORKER_UNAVAILABLE",
            format!("cannot start a worker thread: {e}"),
        ));
    }
    let deadline = Instant::now() + wall;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let slice = match cancel {
            Some(_) => remaining.min(CANCEL_POLL),
            None => remaining,
        };
        match rx.recv_timeout(slice) {
            Ok(end) => return end,
            Err(mpsc::RecvTimeoutError::Timeout)
                if cancel.is_some_and(CancelToken::is_cancelled) =>
            {
                state.cancelled.store(true, Ordering::SeqCst);
                let _ = rx.recv_timeout(CANCEL_GRACE);
                return RunEnd::Cancelled;
            }
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
            Err(_) => {
                state.cancelled.store(true, Ordering::SeqCst);
                return RunEnd::TimedOut;
            }
        }
    }
}
