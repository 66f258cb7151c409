//! [`MexRuntime`]: builder, `execute`, and the flow of one operation.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use mex_artifacts::ArtifactStore;
use mex_envelope::{
    DenialSeverity, EngineId, EngineResult, PlannedOperation, ResultStatus, UtcTimestamp,
};
use mex_gates::internal::{GateOutcome, Pipeline, RegistryCatalog, replayed_op_id};
use mex_gates::{CapabilityPolicy, Gate, GateContext};
use mex_recorder::internal::{Claim, ClaimOutcome};
use mex_recorder::{ClaimState, EventDraft, FlightRecorder};
use mex_registry::Registry;

use crate::cache::{ActionCache, CacheLimits};
use crate::engine::{Engine, EngineFailure, Execution, ExecutionContext, RunState};
use crate::error::RuntimeError;
use crate::identity::CodeDigest;
use crate::ledger::{RecorderClaims, claimed};
use crate::settle::Outputs;
use crate::stages::{Claiming, Draft, Received, Settled, admission_events};

/// Decides whether an engine implementation may be dispatched. The
/// conformance harness supplies certificate-backed ones; the default refuses
/// everything not explicitly trusted.
///
/// The runtime calls it at every dispatch with the implementation the
/// registry resolved and the [`CodeDigest`] of the engine object it is about
/// to run (see [`crate::code_digest`]); a certificate-backed certifier checks
/// that its certificate names that code, as well as the suite version and
/// the registry entry's digest.
pub trait Certifier: Send + Sync {
    /// `Ok` when certified; otherwise why not and what to do (shown to the
    /// user).
    fn check(
        &self,
        engine: &EngineId,
        implementation_id: &str,
        version: &semver::Version,
        code: &CodeDigest,
    ) -> Result<(), String>;
}

/// Trusts exactly the listed engines (for tests and development).
#[derive(Debug, Default)]
struct TrustList(BTreeSet<EngineId>);

impl Certifier for TrustList {
    fn check(
        &self,
        engine: &EngineId,
        _: &str,
        _: &semver::Version,
        _: &CodeDigest,
    ) -> Result<(), String> {
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

/// The fraction of D3 cache hits re-executed by default to check that the
/// engine is deterministic (see [`MexRuntimeBuilder::cache_reexecute_fraction`]).
pub const DEFAULT_REEXECUTE_FRACTION: f64 = 0.01;

/// How often the watchdog looks at a caller's [`CancelToken`].
const CANCEL_POLL: Duration = Duration::from_millis(20);
/// How long a cancelled engine gets to stop before its result is given up.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Builds a [`MexRuntime`]. `MexRuntimeBuilder::default()` and
/// [`MexRuntime::builder`] are the same starting point (D3 result cache on,
/// the runtime's cache salt).
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
    action_cache: Option<Arc<ActionCache>>,
    cache_limits: CacheLimits,
    reexecute_fraction: Option<f64>,
    salt: String,
    workspace_root: Option<PathBuf>,
}

impl Default for MexRuntimeBuilder {
    fn default() -> Self {
        Self {
            registry: None,
            policy: None,
            profile: None,
            store: None,
            recorder: None,
            engines: Vec::new(),
            engine_gates: Vec::new(),
            certifier: None,
            trusted: BTreeSet::new(),
            cache: true,
            action_cache: None,
            cache_limits: CacheLimits::default(),
            reexecute_fraction: None,
            salt: "mex-runtime-1".into(),
            workspace_root: None,
        }
    }
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
    /// Use this action cache (default: `<home>/action-cache.sqlite3`, the
    /// home being the store root's parent, opened with
    /// [`MexRuntimeBuilder::cache_limits`]).
    pub fn action_cache(mut self, cache: Arc<ActionCache>) -> Self {
        self.action_cache = Some(cache);
        self
    }
    /// Bounds of the default action cache (entries, bytes).
    pub fn cache_limits(mut self, limits: CacheLimits) -> Self {
        self.cache_limits = limits;
        self
    }
    /// The fraction of D3 cache hits re-executed off the caller's path to
    /// check that the engine is deterministic (default
    /// [`DEFAULT_REEXECUTE_FRACTION`]; 0 disables; clamped to 0..=1). A
    /// re-execution whose outputs differ drops the entry and records a
    /// Problem naming the engine (`RUNTIME.CACHE_NONDETERMINISTIC`).
    pub fn cache_reexecute_fraction(mut self, fraction: f64) -> Self {
        self.reexecute_fraction = Some(fraction);
        self
    }
    /// Salt mixed into every cache key (change it to invalidate the cache).
    pub fn cache_salt(mut self, salt: impl Into<String>) -> Self {
        self.salt = salt.into();
        self
    }
    /// Where shadow workspaces are created (default:
    /// [`crate::reclaim::default_workspace_root`] of the store root, a
    /// directory under the system temporary directory whose name does not
    /// lead back to the home). Choose a root from which the home cannot be
    /// derived: an engine sees its workspace path.
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
            let declared = registry.engine(&id).ok().and_then(|e| {
                e.implementations
                    .iter()
                    .find(|i| i.id == imp && i.version == version)
            });
            let Some(declared) = declared else {
                return Err(RuntimeError::UndeclaredEngine {
                    engine: id.to_string(),
                    implementation: imp,
                    version: version.to_string(),
                });
            };
            let wanted = match declared.kind {
                mex_registry::ImplementationKind::InProcess => Execution::InProcess,
                _ => Execution::Supervised,
            };
            if engine.execution() != wanted {
                return Err(RuntimeError::EngineKindMismatch {
                    engine: id.to_string(),
                    implementation: format!("{imp}@{version}"),
                    declared: match declared.kind {
                        mex_registry::ImplementationKind::InProcess => "in_process",
                        mex_registry::ImplementationKind::Subprocess => "subprocess",
                        _ => "process",
                    },
                    actual: engine.execution().as_str(),
                });
            }
            if engines
                .insert((imp.clone(), version.clone()), engine)
                .is_some()
            {
                return Err(RuntimeError::DuplicateEngine(format!("{imp}@{version}")));
            }
        }
        let home = store
            .root()
            .parent()
            .map_or_else(|| store.root().to_path_buf(), Path::to_path_buf);
        let cache = match (self.cache, self.action_cache) {
            (false, _) => None,
            (true, Some(cache)) => Some(cache),
            (true, None) => Some(Arc::new(
                ActionCache::open_in(&home, self.cache_limits).map_err(RuntimeError::Cache)?,
            )),
        };
        let fraction = self
            .reexecute_fraction
            .unwrap_or(DEFAULT_REEXECUTE_FRACTION);
        let reexecute_fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        let (workspace_root, prepared) = match self.workspace_root {
            Some(root) => {
                let made = std::fs::create_dir_all(&root);
                (root, made)
            }
            None => {
                let root = crate::reclaim::default_workspace_root(store.root());
                let made = crate::reclaim::prepare_root(&root, store.root());
                (root, made)
            }
        };
        prepared.map_err(|source| RuntimeError::Workspace {
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
            cache,
            reexecute_fraction,
            reexecutions: Mutex::new(Vec::new()),
            salt: self.salt,
            workspace_root,
            reclaimed,
            runs: AtomicU64::new(0),
        })
    }
}

struct Either(Arc<dyn Certifier>, TrustList);

impl Certifier for Either {
    fn check(
        &self,
        engine: &EngineId,
        imp: &str,
        version: &semver::Version,
        code: &CodeDigest,
    ) -> Result<(), String> {
        self.1
            .check(engine, imp, version, code)
            .or_else(|_| self.0.check(engine, imp, version, code))
    }
}

/// The runtime. `Send + Sync`: share it (e.g. in an `Arc`) and call
/// [`MexRuntime::execute`] from many threads.
///
/// # Example: embedding mex
///
/// Build a runtime on a temporary home (artifact store and Flight Recorder),
/// the shipped registry, the default non-sensitive policy and one engine,
/// then execute a planner's JSON:
///
/// ```rust
/// use std::sync::Arc;
///
/// use mex_artifacts::{ArtifactStore, PutOptions};
/// use mex_envelope::{ArtifactKind, Classification, EngineId, ResultStatus};
/// use mex_gates::CapabilityPolicy;
/// use mex_recorder::{EventQuery, FlightRecorder, SqliteRecorder};
/// use mex_registry::Registry;
/// use mex_runtime::{Completion, Engine, EngineFailure, ExecutionContext, MexRuntime};
///
/// /// A stand-in for `engine.physics` that reports the formula it was given.
/// struct Formula {
///     id: EngineId,
/// }
///
/// impl Engine for Formula {
///     fn engine_id(&self) -> EngineId {
///         self.id.clone()
///     }
///     fn implementation_id(&self) -> &str {
///         "mex-engine-physics" // as declared in the registry
///     }
///     fn implementation_version(&self) -> semver::Version {
///         semver::Version::new(0, 1, 0)
///     }
///     fn execute<'run>(
///         &self,
///         ctx: &ExecutionContext<'run>,
///     ) -> Result<Completion<'run>, EngineFailure> {
///         let expr = ctx
///             .read_param_input("expr_ref")
///             .map_err(|e| EngineFailure::new("PHYS_PARSE_ERROR", e.to_string()))?;
///         let report = serde_json::json!({"expr": String::from_utf8_lossy(&expr)});
///         ctx.write_output(
///             ArtifactKind::DatasetSlice,
///             "application/json".parse().ok(),
///             report.to_string().as_bytes(),
///         )
///         .map_err(|e| EngineFailure::new("PHYS_EVAL_ERROR", e.to_string()))?;
///         Ok(ctx.complete())
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let home = tempfile::tempdir()?;
/// let store = Arc::new(ArtifactStore::at(home.path().join("artifacts"))?);
/// let recorder: Arc<dyn FlightRecorder> = Arc::new(SqliteRecorder::open(home.path())?);
/// let registry = Registry::load(concat!(
///     env!("CARGO_MANIFEST_DIR"),
///     "/../../mechanical_engines.json"
/// ))?;
///
/// let physics: EngineId = "engine.physics".parse()?;
/// let runtime = MexRuntime::builder()
///     .registry(Arc::new(registry))
///     .policy(CapabilityPolicy::default_non_sensitive())
///     .store(store.clone())
///     .recorder(recorder.clone())
///     .engine(Arc::new(Formula { id: physics.clone() }))
///     // Development only: production runtimes use a certifier.
///     .trust_uncertified(physics)
///     .build()?;
///
/// // The planner's inputs are artifacts in the store.
/// let input = |bytes: &[u8], media_type: &str| {
///     let mut options = PutOptions::new(ArtifactKind::File, Classification::Low);
///     options.media_type = media_type.parse().ok();
///     store.put_bytes(bytes, &options)
/// };
/// let expr = input(b"F / A", "text/plain")?;
/// let vars = input(br#"{"F": "10 N", "A": "2 m^2"}"#, "application/json")?;
///
/// let request = serde_json::json!({
///     "schema_version": "poe-1.0",
///     "op_id": uuid::Uuid::new_v4(),
///     "engine_id": "engine.physics",
///     "engine_version_req": "^0.1",
///     "operation": "physics.evaluate_formula",
///     "inputs": [expr, vars],
///     "params": {"expr_ref": expr.artifact_id, "vars_ref": vars.artifact_id, "output_unit": "Pa"},
///     "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts"],
///     "budget": {"wall_time_ms": 5000, "output_bytes": 1048576},
///     "determinism": "D3"
/// });
/// let result = runtime.execute_json(request.to_string().as_bytes());
/// assert_eq!(result.status, ResultStatus::Succeeded, "{:?}", result.errors);
/// assert_eq!(result.outputs.len(), 1);
/// assert_eq!(store.read(&result.outputs[0])?, br#"{"expr":"F / A"}"#);
///
/// // Everything that happened is on record, hash-chained.
/// assert!(!recorder.events(&EventQuery::op(result.op_id))?.is_empty());
/// assert!(recorder.verify()?.is_ok());
/// # Ok(())
/// # }
/// ```
pub struct MexRuntime {
    pub(crate) registry: Arc<Registry>,
    pub(crate) store: Arc<ArtifactStore>,
    pub(crate) recorder: Arc<dyn FlightRecorder>,
    pub(crate) pipeline: Pipeline,
    pub(crate) engines: HashMap<(String, semver::Version), Arc<dyn Engine>>,
    pub(crate) certifier: Arc<dyn Certifier>,
    pub(crate) cache: Option<Arc<ActionCache>>,
    pub(crate) reexecute_fraction: f64,
    pub(crate) reexecutions: Mutex<Vec<std::thread::JoinHandle<()>>>,
    pub(crate) salt: String,
    pub(crate) workspace_root: PathBuf,
    pub(crate) reclaimed: crate::reclaim::Reclaimed,
    pub(crate) runs: AtomicU64,
}

/// How the engine's part of a run ended.
pub(crate) enum RunEnd {
    Completed,
    Failed(EngineFailure),
    Panicked(String),
    TimedOut,
    Foreign,
    Cancelled,
    /// A checked D3 run whose second run disagreed with its first (why).
    Nondeterministic(String),
}

impl RunEnd {
    /// How the run ended, in a few words (for messages).
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Completed => "it completed".into(),
            Self::Failed(f) => format!("it failed with {}: {}", f.code, f.message),
            Self::Panicked(msg) => format!("it panicked: {msg}"),
            Self::TimedOut => "it ran past its wall-time budget".into(),
            Self::Foreign => "it returned a foreign completion".into(),
            Self::Cancelled => "it was cancelled".into(),
            Self::Nondeterministic(why) => why.clone(),
        }
    }
}

/// Why [`MexRuntime::execute_checked`] did not run an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckRefused {
    /// The operation is not D3: only D3 promises identical bytes.
    #[error(
        "the determinism check needs a D3 operation (byte-identical outputs), and /determinism is {0}; run it without the check, or request D3 if the engine's registry entry allows it"
    )]
    NotD3(mex_envelope::DeterminismLevel),
}

impl MexRuntime {
    /// Start building a runtime.
    pub fn builder() -> MexRuntimeBuilder {
        MexRuntimeBuilder::default()
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
        self.pipeline.admit_json(bytes).outcomes
    }

    /// Execute untrusted JSON. Always returns an EngineResult, and never
    /// without a record.
    ///
    /// # Example: refusals need no engine
    ///
    /// A document that does not parse, and one that asks for a capability
    /// the policy does not grant, are both answered `denied` (each denial
    /// names its gate and code) and recorded; nothing runs.
    ///
    /// ```rust
    /// use std::sync::Arc;
    ///
    /// use mex_artifacts::ArtifactStore;
    /// use mex_envelope::ResultStatus;
    /// use mex_gates::CapabilityPolicy;
    /// use mex_recorder::{EventQuery, FlightRecorder, MemoryRecorder};
    /// use mex_registry::Registry;
    /// use mex_runtime::MexRuntime;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let home = tempfile::tempdir()?;
    /// let recorder = Arc::new(MemoryRecorder::new());
    /// let runtime = MexRuntime::builder()
    ///     .registry(Arc::new(Registry::load(concat!(
    ///         env!("CARGO_MANIFEST_DIR"),
    ///         "/../../mechanical_engines.json"
    ///     ))?))
    ///     .policy(CapabilityPolicy::default_non_sensitive())
    ///     .store(Arc::new(ArtifactStore::at(home.path().join("artifacts"))?))
    ///     .recorder(recorder.clone())
    ///     .build()?;
    ///
    /// let result = runtime.execute_json(br#"{"schema_version": "poe-1.0", "op_id": 7}"#);
    /// assert_eq!(result.status, ResultStatus::Denied);
    /// assert!(result.denials.iter().any(|d| d.gate.as_str() == "G-SCHEMA"));
    ///
    /// // `net.http` is not in the default non-sensitive policy.
    /// let fetch = serde_json::json!({
    ///     "schema_version": "poe-1.0",
    ///     "op_id": uuid::Uuid::new_v4(),
    ///     "engine_id": "engine.guide",
    ///     "engine_version_req": "^0.1",
    ///     "operation": "guide.geocode",
    ///     "inputs": [],
    ///     "params": {"query": "Lyon"},
    ///     "capabilities_requested": ["fs.write:artifacts", "net.http"],
    ///     "budget": {"wall_time_ms": 5000, "output_bytes": 1048576},
    ///     "determinism": "D1",
    ///     "evidence_policy": {"required": true, "capture": ["http_transcript"]}
    /// });
    /// let result = runtime.execute_json(fetch.to_string().as_bytes());
    /// assert_eq!(result.status, ResultStatus::Denied);
    /// assert!(result.denials.iter().any(|d| d.gate.as_str() == "G-CAP"));
    /// assert!(!recorder.events(&EventQuery::op(result.op_id))?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn execute_json(&self, bytes: &[u8]) -> EngineResult {
        let started_at = UtcTimestamp::now();
        match PlannedOperation::from_json_slice(bytes) {
            Ok(op) => self.execute_at(op, started_at, None),
            Err(_) => {
                // Not an operation: record the refusal under the op id it
                // claims, when there is one, else a fresh id. The claim is
                // found by a scan that allocates nothing, never by parsing
                // the refused document again (it may be huge or hostile);
                // `admit_json` re-reads it only within the envelope cap.
                let op_id = PlannedOperation::refusal_id(PlannedOperation::claimed_op_id(bytes));
                let admission = self.pipeline.admit_json(bytes);
                let mut draft = Draft::new(op_id, started_at, ResultStatus::Denied);
                draft.denials = admission.result.err().unwrap_or_default();
                let events: Vec<EventDraft> = draft
                    .denials
                    .iter()
                    .map(|d| EventDraft::gate_outcome(op_id, d))
                    .collect();
                self.record(Settled::bare(draft, events, Claiming::None))
            }
        }
    }

    /// Execute a typed operation.
    pub fn execute(&self, op: PlannedOperation) -> EngineResult {
        self.execute_at(op, UtcTimestamp::now(), None)
    }

    /// Execute a D3 operation with its determinism *checked*: the cache is
    /// not consulted, the engine runs twice in fresh shadow workspaces, and
    /// the two runs' outputs (SHA-256, kind and media type, in order) must
    /// be identical. A mismatch (or a second run that does not succeed) is a
    /// `failed` result with `RUNTIME.NONDETERMINISTIC`, a message naming the
    /// engine and both runs' digests, and a `result_rejected` event (so a
    /// Problem names the engine); nothing is ingested. The op id is claimed
    /// once: both runs are one operation on record.
    ///
    /// Refuses, without running or recording anything, an operation that is
    /// not D3 ([`CheckRefused::NotD3`]).
    pub fn execute_checked(&self, op: PlannedOperation) -> Result<EngineResult, CheckRefused> {
        if op.determinism != mex_envelope::DeterminismLevel::D3 {
            return Err(CheckRefused::NotD3(op.determinism));
        }
        let received = Received {
            op,
            started_at: UtcTimestamp::now(),
        };
        Ok(self.run_stages(received, None, true))
    }

    /// [`MexRuntime::execute`], cancellable through `cancel` from another
    /// thread. A cancelled operation is recorded and answered as `failed`
    /// with `RUNTIME.CANCELLED`.
    pub fn execute_with_cancel(&self, op: PlannedOperation, cancel: &CancelToken) -> EngineResult {
        self.execute_at(op, UtcTimestamp::now(), Some(cancel))
    }

    /// One operation, stage by stage (see [`crate::stages`]).
    fn execute_at(
        &self,
        op: PlannedOperation,
        started_at: UtcTimestamp,
        cancel: Option<&CancelToken>,
    ) -> EngineResult {
        self.run_stages(Received { op, started_at }, cancel, false)
    }

    /// Stage 6: record the outcome (claiming as `settled.claiming` says),
    /// then answer. Never reports success without a record; an admitted
    /// operation whose claim is lost here is answered denied.
    pub(crate) fn record(&self, settled: Settled) -> EngineResult {
        let Settled {
            mut draft,
            mut events,
            outputs,
            cached,
            claiming,
        } = settled;
        let result = self.finish_draft(&draft, outputs.clone(), cached);
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
        let why = match (recorded, claiming) {
            (Ok(ClaimOutcome::Recorded(_)), _) => return result,
            (Ok(ClaimOutcome::AlreadyClaimed(how)), Claiming::AdmitCompleted { op, outcomes }) => {
                return self.deny_lost_claim(&draft, &op, &outcomes, how);
            }
            // Only a new claim can be refused; answer as unrecorded.
            (Ok(ClaimOutcome::AlreadyClaimed(_)), _) => {
                "the recorder refused to record the outcome".to_owned()
            }
            (Err(e), _) => format!("the outcome could not be recorded: {e}"),
        };
        draft.status = ResultStatus::Failed;
        draft.error("RUNTIME.RECORDER_UNAVAILABLE", why);
        let kept = Outputs {
            provenance: outputs.provenance,
            ..Outputs::default()
        };
        self.finish_draft(&draft, kept, false)
    }

    /// The op id was claimed by another request between the gates' lookup
    /// and this request's claim: deny as a replay, and record the denial
    /// (receipt, gate outcomes with the denial, completion) without claiming.
    pub(crate) fn deny_lost_claim(
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
        let mut denied = Draft::new(op.op_id, draft.started_at, ResultStatus::Denied);
        denied.denials = vec![denial];
        // Every capability was granted (the operation was admitted), so no
        // ruling adds a refusal event.
        let events = admission_events(op, &outcomes, &[]);
        self.record(Settled::bare(denied, events, Claiming::None))
    }

    pub(crate) fn finish_unrecorded(&self, mut draft: Draft) -> EngineResult {
        draft.status = ResultStatus::Failed;
        self.finish_draft(&draft, Outputs::default(), false)
    }

    fn finish_draft(&self, draft: &Draft, outputs: Outputs, cached: bool) -> EngineResult {
        EngineResult {
            op_id: draft.op_id,
            status: draft.status,
            started_at: draft.started_at,
            ended_at: UtcTimestamp::now(),
            outputs: outputs.outputs,
            evidence: outputs.evidence,
            provenance: outputs.provenance,
            errors: draft.errors.clone(),
            denials: draft
                .denials
                .iter()
                .filter(|d| {
                    d.severity == DenialSeverity::Deny || draft.status != ResultStatus::Denied
                })
                .cloned()
                .collect(),
            logs_ref: outputs.logs,
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

    /// The action cache, when the result cache is on.
    pub fn action_cache(&self) -> Option<&Arc<ActionCache>> {
        self.cache.as_ref()
    }

    /// Wait until every cache-hit re-execution started so far has finished
    /// (they run off the callers' paths; see
    /// [`MexRuntimeBuilder::cache_reexecute_fraction`]).
    pub fn wait_for_reexecutions(&self) {
        let pending = std::mem::take(
            &mut *self
                .reexecutions
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for handle in pending {
            let _ = handle.join();
        }
    }

    /// How many engine runs this runtime dispatched (cache hits excluded).
    pub fn runs_dispatched(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }
}

/// Run the engine on its own thread; wait at most `wall`. A panic is caught
/// on the worker. On timeout the run is cancelled; the worker cannot be
/// killed (threads cannot be), so it is left to notice `is_cancelled` and
/// everything it writes afterwards is refused and discarded.
/// A caller's `cancel` is polled every [`CANCEL_POLL`]; on cancellation the
/// run's flag is set and the engine gets [`CANCEL_GRACE`] to stop.
pub(crate) fn run_on_worker(
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
            // The run closes when `execute` returns, however it returns.
            worker_state.close();
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
