//! The engine-author API: the [`Engine`] trait and the run-bound
//! [`ExecutionContext`] through which an engine does everything it may do.
//!
//! The context has private fields and no public constructor, is neither
//! `Clone` nor `Default`, and carries an invariant lifetime `'run` that brands
//! everything it hands out. An engine's `execute` is generic over `'run`, so
//! the only [`Completion<'run>`] it can return is the one its own context made
//! with [`ExecutionContext::complete`]; the runtime also checks the run token
//! at run time. Outputs are whatever the engine wrote through the context:
//! there is no way to *claim* an artifact, and no way to set status,
//! timestamps or provenance, which the runtime assembles.
//!
//! What the type system cannot stop, inside an in-process engine: `unsafe`
//! code, ambient `std::fs`/`std::net`/`std::process` calls, spinning past the
//! deadline without polling, or allocating without bound. In-process engines
//! are therefore trusted code (reviewed, certified); untrusted work runs in a
//! sandboxed child process (mex-sandbox), where the OS enforces the limits.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use mex_artifacts::ArtifactStore;

use crate::workspace::LazyWorkspace;
use mex_envelope::{
    ArtifactHandle, ArtifactKind, Capability, EngineId, ErrorCode, MediaType, OperationName,
    PlannedOperation, Sha256Digest,
};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::identity::CodeIdentity;

/// An engine implementation. Implementations are registered with the runtime
/// builder and are only ever called by the runtime.
///
/// # Example: writing an engine
///
/// An engine reads its inputs and writes its outputs only through the
/// [`ExecutionContext`], and ends with [`ExecutionContext::complete`] (the one
/// [`Completion`] it can return) or a typed [`EngineFailure`] whose code is
/// one of its declared failure codes. It never sets status, timestamps or
/// provenance: the runtime does. (The [`MexRuntime`](crate::MexRuntime)
/// example runs an engine like this one end to end.)
///
/// ```rust
/// use std::sync::Arc;
///
/// use mex_envelope::{ArtifactKind, EngineId};
/// use mex_runtime::{Completion, Engine, EngineFailure, ExecutionContext};
///
/// /// Counts the lines of every input and reports them as one JSON dataset.
/// struct LineCounter {
///     id: EngineId,
/// }
///
/// impl Engine for LineCounter {
///     fn engine_id(&self) -> EngineId {
///         self.id.clone()
///     }
///     fn implementation_id(&self) -> &str {
///         "line-counter"
///     }
///     fn implementation_version(&self) -> semver::Version {
///         semver::Version::new(1, 0, 0)
///     }
///     fn execute<'run>(
///         &self,
///         ctx: &ExecutionContext<'run>,
///     ) -> Result<Completion<'run>, EngineFailure> {
///         let mut counts = Vec::new();
///         for handle in ctx.inputs() {
///             if ctx.is_cancelled() {
///                 return Err(EngineFailure::new("COUNT_CANCELLED", "stopped on request"));
///             }
///             // Verified bytes of a declared input; anything else is refused.
///             let bytes = ctx
///                 .read_input(handle)
///                 .map_err(|e| EngineFailure::new("COUNT_INPUT_UNREADABLE", e.to_string()))?;
///             counts.push(serde_json::json!({
///                 "artifact_id": handle.artifact_id,
///                 "lines": bytes.split(|b| *b == b'\n').count(),
///             }));
///         }
///         // Counted against the output budget; staged until the run succeeds.
///         ctx.write_output(
///             ArtifactKind::DatasetSlice,
///             "application/json".parse().ok(),
///             serde_json::Value::from(counts).to_string().as_bytes(),
///         )
///         .map_err(|e| EngineFailure::new("COUNT_OUTPUT_REFUSED", e.to_string()))?;
///         Ok(ctx.complete())
///     }
/// }
///
/// // Register it with `MexRuntime::builder().engine(...)`.
/// let engine: Arc<dyn Engine> = Arc::new(LineCounter { id: "engine.lines".parse()? });
/// assert_eq!(engine.engine_id().as_str(), "engine.lines");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Engine: Send + Sync + 'static {
    /// The engine this implements (must be declared in the registry).
    fn engine_id(&self) -> EngineId;
    /// Implementation id, as declared in the registry.
    fn implementation_id(&self) -> &str;
    /// Implementation version, as declared in the registry.
    fn implementation_version(&self) -> semver::Version;
    /// How this engine runs its work: in the runtime's process (the
    /// default), or in a sandboxed child it supervises. It must match the
    /// registry implementation's kind, or `MexRuntimeBuilder::build` refuses
    /// the engine; only engines that supervise a child may record
    /// `sandbox.*` environment keys.
    fn execution(&self) -> Execution {
        Execution::InProcess
    }
    /// Do the work of one run. Read inputs and write outputs only through
    /// `ctx`; finish with `ctx.complete()`, or fail with an [`EngineFailure`].
    fn execute<'run>(
        &self,
        ctx: &ExecutionContext<'run>,
    ) -> Result<Completion<'run>, EngineFailure>;
    /// What code this engine runs. The default, [`CodeIdentity::Host`],
    /// is right for every engine compiled into the host; an engine that runs
    /// code the host was not built with (a pinned program, a WebAssembly
    /// module) returns [`CodeIdentity::External`] with a digest over that
    /// code. Certificates name the resulting [`crate::CodeDigest`] and the
    /// runtime checks it at every dispatch.
    fn code_identity(&self) -> CodeIdentity {
        CodeIdentity::Host
    }
    /// The engine's Rust type, part of its code digest. Sealed: no engine
    /// can override it (its parameter type cannot be named outside this
    /// crate), so an impostor struct cannot borrow another's identity.
    #[doc(hidden)]
    fn adapter_type(&self, _: sealed::Token) -> &'static str {
        std::any::type_name::<Self>()
    }
}

/// The token that seals [`Engine::adapter_type`]: public in a private
/// module, so code outside this crate can neither name nor make one.
pub(crate) mod sealed {
    /// See the module docs.
    #[derive(Debug, Clone, Copy)]
    pub struct Token;
}

/// How an engine runs its work (see [`Engine::execution`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Execution {
    /// In the runtime's process: a registry `in_process` implementation.
    InProcess,
    /// In a sandboxed child process it supervises: a registry `subprocess`
    /// or `process` implementation.
    Supervised,
}

impl Execution {
    /// The provenance word for it (`environment.execution`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProcess => "in_process",
            Self::Supervised => "subprocess",
        }
    }
}

/// Environment keys the runtime sets itself; an engine recording one (in
/// any letter case) fails its run with `RUNTIME.RESERVED_ENVIRONMENT_KEY`.
pub(crate) const RESERVED_ENVIRONMENT_KEYS: &[&str] =
    &["runtime", "os", "arch", "execution", "served_from_cache"];

/// A typed failure an engine reports. Its code should be one of the engine's
/// declared failure codes; the runtime records it either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineFailure {
    /// Stable code, e.g. `PHYS_UNIT_MISMATCH`.
    pub code: ErrorCode,
    /// What went wrong and what to do.
    pub message: String,
    /// Whether the failure is a budget overrun the engine observed itself
    /// (e.g. a sandboxed child killed for CPU, memory or wall time); the run
    /// then ends as `budget_exceeded` rather than `failed`.
    pub budget_exceeded: bool,
}

impl EngineFailure {
    /// A failure with a code written in source (see `ErrorCode::from_static`).
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::from_static(code),
            message: message.into(),
            budget_exceeded: false,
        }
    }

    /// A budget overrun the engine observed (timeout, memory, CPU, output of
    /// a child process). Partial outputs are discarded like any overrun.
    pub fn over_budget(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            budget_exceeded: true,
            ..Self::new(code, message)
        }
    }
}

/// Invariant in `'run`: neither shortens nor lengthens.
type Brand<'run> = PhantomData<fn(&'run ()) -> &'run ()>;

/// Proof that an engine finished its own run. Only
/// [`ExecutionContext::complete`] makes one.
#[derive(Debug)]
pub struct Completion<'run> {
    pub(crate) run_token: Uuid,
    _brand: Brand<'run>,
}

/// What went wrong writing through the context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The write would exceed the run's output budget; the run will end as
    /// budget exceeded.
    #[error(
        "output budget of {budget} bytes exceeded ({attempted} bytes attempted); the run ends as budget_exceeded"
    )]
    BudgetExceeded {
        /// The budget.
        budget: u64,
        /// Total bytes the write would have reached.
        attempted: u64,
    },
    /// The run was cancelled (deadline passed); nothing more is accepted.
    #[error("the run was cancelled (its wall-time budget expired); stop working")]
    Cancelled,
    /// The run is closed: the engine already called `complete()` (or its
    /// `execute` returned). Write every output before completing.
    #[error(
        "the run is closed (complete() was called or execute returned); nothing written after completion is kept: write every output before calling complete()"
    )]
    Closed,
    /// The shadow workspace could not be written.
    #[error("cannot stage the output in the run's workspace: {0}")]
    Io(String),
}

/// What went wrong reading an input through the context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The handle is not one of this run's inputs.
    #[error(
        "artifact {0} is not an input of this run; engines read only their own verified inputs"
    )]
    NotAnInput(Uuid),
    /// The param does not name an input.
    #[error("params.{0} does not name an input artifact of this run")]
    NoSuchParam(String),
    /// The store refused (integrity, missing).
    #[error("input cannot be read: {0}")]
    Store(String),
}

/// Where a staged artifact goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Output,
    Evidence,
    Log,
}

/// Outputs up to this size are held in memory until ingest; larger ones
/// are staged as files in the run's workspace.
pub(crate) const MEMORY_STAGE_MAX: u64 = 256 * 1024;
/// At most this much of one run's staged bytes is held in memory.
pub(crate) const MEMORY_STAGE_TOTAL: u64 = 4 * 1024 * 1024;

/// Where a staged artifact's bytes are until ingest.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// Held in memory (immutable: nothing can change them before ingest).
    Memory(Arc<[u8]>),
    /// A file in the run's workspace.
    File(PathBuf),
}

impl Body {
    /// The bytes, read from the file if they are in one.
    pub(crate) fn bytes(&self) -> std::io::Result<std::borrow::Cow<'_, [u8]>> {
        match self {
            Self::Memory(bytes) => Ok(std::borrow::Cow::Borrowed(bytes)),
            Self::File(path) => std::fs::read(path).map(std::borrow::Cow::Owned),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Staged {
    pub role: Role,
    pub body: Body,
    pub kind: ArtifactKind,
    pub media_type: Option<MediaType>,
    pub digest: Sha256Digest,
    pub size: u64,
}

/// Shared state of one run: owned by the runtime, borrowed by the context.
pub(crate) struct RunState {
    pub run_token: Uuid,
    pub op: Arc<PlannedOperation>,
    pub inputs: Vec<ArtifactHandle>,
    pub store: Arc<ArtifactStore>,
    pub workspace: LazyWorkspace,
    /// Staged bytes held in memory so far.
    pub memory_staged: AtomicU64,
    pub output_budget: u64,
    pub budget: mex_envelope::BudgetSpec,
    pub deadline: Instant,
    pub capabilities: Vec<Capability>,
    pub cancelled: Arc<AtomicBool>,
    pub overflowed: AtomicBool,
    pub bytes_written: AtomicU64,
    pub staged: Mutex<Vec<Staged>>,
    pub environment: Mutex<std::collections::BTreeMap<String, String>>,
    /// Set by `complete()` and when `execute` returns; every write after
    /// it is refused (checked under the `staged` lock).
    pub closed: AtomicBool,
    /// How the registry says this implementation runs (decides whether
    /// `sandbox.*` keys may be recorded).
    pub execution: Execution,
    /// Environment keys the engine was refused (reserved, or not a plain
    /// ASCII name); any one fails the run.
    pub refused_keys: Mutex<Vec<String>>,
}

impl RunState {
    /// The state of a new run of `op` with `budget`, granted `capabilities`,
    /// its workspace to be made under `workspace_root` when first needed.
    pub(crate) fn new(
        op: &PlannedOperation,
        budget: &mex_gates::gates::budget::ResolvedBudget,
        capabilities: Vec<Capability>,
        store: Arc<ArtifactStore>,
        workspace_root: &Path,
        execution: Execution,
    ) -> Self {
        Self {
            run_token: Uuid::new_v4(),
            op: Arc::new(op.clone()),
            inputs: op
                .inputs
                .iter()
                .filter_map(|i| i.as_artifact().cloned())
                .collect(),
            store,
            workspace: LazyWorkspace::new(workspace_root.to_path_buf(), op.op_id),
            memory_staged: AtomicU64::new(0),
            output_budget: budget.output_bytes,
            budget: budget.to_spec(),
            deadline: Instant::now() + std::time::Duration::from_millis(budget.wall_time_ms),
            capabilities,
            cancelled: Arc::new(AtomicBool::new(false)),
            overflowed: AtomicBool::new(false),
            bytes_written: AtomicU64::new(0),
            staged: Mutex::new(Vec::new()),
            environment: Mutex::new(std::collections::BTreeMap::new()),
            closed: AtomicBool::new(false),
            execution,
            refused_keys: Mutex::new(Vec::new()),
        }
    }

    /// Close the run: no write after this lands.
    pub(crate) fn close(&self) {
        let _staged = self.staged.lock().unwrap_or_else(PoisonError::into_inner);
        self.closed.store(true, Ordering::SeqCst);
    }

    pub(crate) fn staged(&self) -> Vec<Staged> {
        self.staged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The one door an engine has to the world during a run. See the module docs.
pub struct ExecutionContext<'run> {
    state: &'run RunState,
    _brand: Brand<'run>,
}

impl<'run> ExecutionContext<'run> {
    pub(crate) fn new(state: &'run RunState) -> Self {
        Self {
            state,
            _brand: PhantomData,
        }
    }

    /// Finish the run successfully. Outputs are what was written through this
    /// context before this call: the run is closed from here on, and every
    /// later write is refused with [`WriteError::Closed`].
    pub fn complete(&self) -> Completion<'run> {
        self.state.close();
        Completion {
            run_token: self.state.run_token,
            _brand: PhantomData,
        }
    }

    /// The id of the operation being run.
    pub fn op_id(&self) -> Uuid {
        self.state.op.op_id
    }

    /// The determinism level the operation requested (admitted by G-DET).
    pub fn determinism(&self) -> mex_envelope::DeterminismLevel {
        self.state.op.determinism
    }

    /// The operation being run.
    pub fn operation(&self) -> &OperationName {
        &self.state.op.operation
    }

    /// The params of this run's operation (validated by G-SCHEMA).
    pub fn params(&self) -> &Map<String, Value> {
        &self.state.op.params
    }

    /// This run's input handles (verified by G-INTEGRITY).
    pub fn inputs(&self) -> &[ArtifactHandle] {
        &self.state.inputs
    }

    /// Capabilities granted to this run.
    pub fn capabilities(&self) -> &[Capability] {
        &self.state.capabilities
    }

    /// The run's budget, resolved against the registry's defaults and
    /// maximums by G-BUDGET. A subprocess engine applies `cpu_time_ms` and
    /// `memory_bytes` to its child (in-process engines never get them).
    pub fn budget(&self) -> &mex_envelope::BudgetSpec {
        &self.state.budget
    }

    /// When the wall-time budget runs out.
    pub fn deadline(&self) -> Instant {
        self.state.deadline
    }

    /// Whether the run was cancelled; long loops should poll this and stop.
    pub fn is_cancelled(&self) -> bool {
        self.state.cancelled.load(Ordering::SeqCst) || Instant::now() >= self.state.deadline
    }

    /// A flag the runtime sets when the run is cancelled (by the caller, see
    /// [`crate::MexRuntime::execute_with_cancel`], or at the deadline). Hand
    /// it to whatever supervises a child process, so the child is killed.
    pub fn cancellation(&self) -> Arc<AtomicBool> {
        self.state.cancelled.clone()
    }

    /// The run's shadow workspace, a private directory deleted after the run,
    /// made on the first call. Only what is written through `write_*`
    /// becomes an artifact. If it cannot be made, the path returned (the
    /// run's own) does not exist and the run fails with
    /// `RUNTIME.WORKSPACE_UNAVAILABLE`.
    pub fn workspace(&self) -> &Path {
        self.state
            .workspace
            .path()
            .unwrap_or(self.state.workspace.intended())
    }

    /// Add an environment identifier to this run's provenance (e.g. kernel
    /// version, Landlock ABI, limits applied). A key is 1 to 128 ASCII
    /// letters, digits, `.`, `_` or `-`. Keys the runtime sets itself
    /// (`runtime`, `os`, `arch`, `execution`, `served_from_cache`, compared
    /// in any letter case) and, unless the engine supervises a sandboxed
    /// child ([`Engine::execution`]), `sandbox.*` cannot be set: recording
    /// one (or a key that is not a plain ASCII name, such as one spelled
    /// with look-alike Unicode letters) fails the run with
    /// `RUNTIME.RESERVED_ENVIRONMENT_KEY`. After the run is closed this
    /// does nothing.
    pub fn record_environment(&self, key: &str, value: &str) {
        if self.state.closed.load(Ordering::SeqCst) {
            return;
        }
        let plain = !key.is_empty()
            && key.len() <= 128
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        let lower = key.to_ascii_lowercase();
        let reserved = RESERVED_ENVIRONMENT_KEYS.contains(&lower.as_str())
            || (lower.starts_with("sandbox.") && self.state.execution != Execution::Supervised);
        if !plain || reserved {
            let mut refused = self
                .state
                .refused_keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if refused.len() < 8 {
                refused.push(key.chars().take(64).collect());
            }
            return;
        }
        let mut env = self
            .state
            .environment
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if env.len() < 64 {
            env.insert(key.to_owned(), value.chars().take(256).collect());
        }
    }

    /// Read one of this run's inputs, verified against its hash and size.
    pub fn read_input(&self, handle: &ArtifactHandle) -> Result<Vec<u8>, ReadError> {
        if !self.state.inputs.iter().any(|h| h == handle) {
            return Err(ReadError::NotAnInput(handle.artifact_id));
        }
        self.state
            .store
            .read(handle)
            .map_err(|e| ReadError::Store(e.to_string()))
    }

    /// Write a bundle input's entries, each verified, as a read-only tree
    /// under `dest` (which must not exist yet): how a bundle reaches an
    /// engine that reads files, e.g. in a process engine's jail. Returns the
    /// number of entries.
    pub fn export_bundle_input(
        &self,
        handle: &ArtifactHandle,
        dest: &Path,
    ) -> Result<usize, ReadError> {
        if !self.state.inputs.iter().any(|h| h == handle) {
            return Err(ReadError::NotAnInput(handle.artifact_id));
        }
        self.state
            .store
            .export_bundle(handle, dest)
            .map_err(|e| ReadError::Store(e.to_string()))
    }

    /// The input named by a `*_ref` param (an artifact id string).
    pub fn input_for_param(&self, param: &str) -> Result<&ArtifactHandle, ReadError> {
        let id = self
            .params()
            .get(param)
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| ReadError::NoSuchParam(param.to_owned()))?;
        self.state
            .inputs
            .iter()
            .find(|h| h.artifact_id == id)
            .ok_or_else(|| ReadError::NoSuchParam(param.to_owned()))
    }

    /// Read the input named by a `*_ref` param.
    pub fn read_param_input(&self, param: &str) -> Result<Vec<u8>, ReadError> {
        let handle = self.input_for_param(param)?.clone();
        self.read_input(&handle)
    }

    /// Write an output artifact. Counts against the output budget.
    pub fn write_output(
        &self,
        kind: ArtifactKind,
        media_type: Option<MediaType>,
        bytes: &[u8],
    ) -> Result<(), WriteError> {
        self.stage(Role::Output, kind, media_type, bytes)
    }

    /// Write an evidence artifact (required for D0/D1). Counts against the output budget.
    pub fn write_evidence(
        &self,
        kind: ArtifactKind,
        media_type: Option<MediaType>,
        bytes: &[u8],
    ) -> Result<(), WriteError> {
        self.stage(Role::Evidence, kind, media_type, bytes)
    }

    /// Append to the run's log; all parts become one log artifact
    /// (`logs_ref`). Counts against the output budget.
    pub fn write_log(&self, text: &str) -> Result<(), WriteError> {
        self.stage(
            Role::Log,
            ArtifactKind::Transcript,
            "text/plain".parse().ok(),
            text.as_bytes(),
        )
    }

    fn stage(
        &self,
        role: Role,
        kind: ArtifactKind,
        media_type: Option<MediaType>,
        bytes: &[u8],
    ) -> Result<(), WriteError> {
        let state = self.state;
        if state.closed.load(Ordering::SeqCst) {
            return Err(WriteError::Closed);
        }
        if self.is_cancelled() {
            return Err(WriteError::Cancelled);
        }
        let len = bytes.len() as u64;
        let before = state.bytes_written.fetch_add(len, Ordering::SeqCst);
        let attempted = before.saturating_add(len);
        if attempted > state.output_budget {
            state.overflowed.store(true, Ordering::SeqCst);
            return Err(WriteError::BudgetExceeded {
                budget: state.output_budget,
                attempted,
            });
        }
        let mut staged = state.staged.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked again under the lock: `close` takes it, so a write that
        // races with completion either lands before it or is refused.
        if state.closed.load(Ordering::SeqCst) {
            return Err(WriteError::Closed);
        }
        let in_memory = len <= MEMORY_STAGE_MAX
            && state.memory_staged.fetch_add(len, Ordering::SeqCst) + len <= MEMORY_STAGE_TOTAL;
        let body = if in_memory {
            Body::Memory(Arc::from(bytes))
        } else {
            let dir = state.workspace.path().map_err(WriteError::Io)?;
            let path = dir
                .join(crate::workspace::STAGED)
                .join(format!("{:04}", staged.len()));
            std::fs::write(&path, bytes)
                .map_err(|e| WriteError::Io(format!("{}: {e}", path.display())))?;
            Body::File(path)
        };
        staged.push(Staged {
            role,
            body,
            kind,
            media_type,
            digest: Sha256Digest::of(bytes),
            size: len,
        });
        Ok(())
    }
}
