//! # mex-runtime: the only road from a PlannedOperation to an engine
//!
//! Owns [`MexRuntime`] (built with [`MexRuntime::builder`] from a registry,
//! a policy, an artifact store, a recorder and the engines), the engine-author
//! API ([`Engine`], [`ExecutionContext`], [`Completion`]), budgets while
//! running (wall time via a watchdog, output bytes via the context's writer,
//! panics contained), result checks, sidecar manifests, the D3 result cache,
//! and EngineResult assembly.
//!
//! Does not own parsing (mex-envelope), admission (mex-gates), storage
//! (mex-artifacts), recording (mex-recorder), or OS confinement (mex-sandbox).
//!
//! ## Flow of one operation
//!
//! The flow is a sequence of typed stages (see `stages.rs`): received →
//! admitted (the [`AdmissionProof`], minted only here) → ready → claimed →
//! dispatched → settled → recorded.
//!
//! 1. Admission: every gate runs once and returns one value with every
//!    decision; the runtime mints its [`AdmissionProof`] from it. Receipt
//!    (`op_received`), every outcome and each capability ruling are recorded
//!    before anything runs; an operation that cannot be recorded does not run.
//!    A denial returns `status: denied` with every denial. G-INTEGRITY only
//!    looks the op id up in the recorder's claim table; the runtime claims it
//!    in the transaction that records receipt and admission (with
//!    `engine_started`, or with the completion when the operation ends before
//!    dispatch). Of any number of requests racing with one op id, in any
//!    number of processes on one home, exactly one claim commits; the others
//!    are denied `G-INTEGRITY.REPLAYED_OP_ID`, recorded without a claim, and
//!    never dispatched. Denied operations claim nothing. The completion marks
//!    the claim completed in the transaction that records `op_completed`.
//!    A run whose process dies before that is recorded as failed
//!    (`RUNTIME.INTERRUPTED`) when the recorder is next opened, and its op id
//!    never runs again (see `mex_recorder::claim`).
//! 3. D3 cache lookup (successful D3 results only; hits re-verify artifacts).
//!    The cache is persistent and shared by every process on the home
//!    ([`ActionCache`], `<home>/action-cache.sqlite3`, bounded, least
//!    recently used out). A fraction of hits is re-executed off the caller's
//!    path; a re-execution whose outputs differ drops the entry and records
//!    `RUNTIME.CACHE_NONDETERMINISTIC` (a Problem naming the engine).
//! 4. Resolve the implementation; refuse one not installed
//!    (`RUNTIME.ENGINE_NOT_INSTALLED`) or not certified
//!    (`RUNTIME.ENGINE_NOT_CERTIFIED`, status denied): the [`Certifier`] is
//!    asked with the [`CodeDigest`] of the engine object about to run
//!    ([`code_digest`]; see [`CodeIdentity`] for what it covers).
//! 5. Prepare the run's shadow workspace, made on first use (the engine
//!    asks for [`ExecutionContext::workspace`], or an output over 256 KiB is
//!    staged as a file; smaller outputs are held in memory) under a root off
//!    the home (see [`reclaim::default_workspace_root`]). It is locked while
//!    the run lives; workspaces of runs whose process died are removed when
//!    a runtime is built ([`reclaim`], also `mex gc`).
//! 6. Execute on a worker thread under a watchdog (twice, in fresh
//!    workspaces, for [`MexRuntime::execute_checked`]): wall time
//!    (`RUNTIME.WALL_TIME_EXCEEDED`), output bytes
//!    (`RUNTIME.OUTPUT_BUDGET_EXCEEDED`), panics (`RUNTIME.ENGINE_PANICKED`).
//! 7. The run closes when the engine returns (or calls `complete()`): later
//!    writes are refused. Result checks (mex-gates), the registry's declared
//!    outputs and the reserved environment keys, then ingest outputs with
//!    sidecar manifests, read each stored output back (re-hashed), assemble
//!    the EngineResult, record completion. Nothing staged by a run that did
//!    not succeed reaches the store.
//!
//! ## Runtime codes
//!
//! | code | status | meaning |
//! |---|---|---|
//! | `RUNTIME.RECORDER_UNAVAILABLE` | failed | the Flight Recorder refused a write; nothing ran, or the outcome is not trusted |
//! | `RUNTIME.ENGINE_NOT_INSTALLED` | failed | the registry resolves to an implementation the runtime was not given |
//! | `RUNTIME.ENGINE_NOT_CERTIFIED` | denied | the implementation has no valid certificate |
//! | `RUNTIME.WORKSPACE_UNAVAILABLE` | failed | the run needed its shadow workspace and it could not be created |
//! | `RUNTIME.WORKER_UNAVAILABLE` | failed | no worker thread could be started |
//! | `RUNTIME.WALL_TIME_EXCEEDED` | budget_exceeded | past the deadline; partial outputs discarded |
//! | `RUNTIME.OUTPUT_BUDGET_EXCEEDED` | budget_exceeded | a write past the output budget; partial outputs discarded |
//! | `RUNTIME.ENGINE_PANICKED` | failed | the engine panicked; contained |
//! | `RUNTIME.CANCELLED` | failed | the caller cancelled (`execute_with_cancel`); the engine was stopped, partial outputs discarded |
//! | `RUNTIME.FOREIGN_COMPLETION` | failed | the engine returned a completion not issued for this run |
//! | `RUNTIME.NONDETERMINISTIC` | failed | [`MexRuntime::execute_checked`]: a D3 operation run twice in fresh workspaces wrote different outputs (or failed the second time); nothing ingested, a `result_rejected` event raises a Problem naming the engine |
//! | `RUNTIME.INTERRUPTED` | failed | recorded (by the recorder, on open) for an admitted run whose process died before it completed |
//! | `RUNTIME.UNDECLARED_OUTPUT` | failed | an output's kind or media type fits no output the registry declares for the operation (checked for every engine) |
//! | `RUNTIME.RESERVED_ENVIRONMENT_KEY` | failed | the engine recorded a runtime-owned environment key (`execution`, `runtime`, `os`, `arch`, `served_from_cache` in any case; `sandbox.*` outside a sandboxed implementation) or a key that is not a plain ASCII name |
//! | `G-RESULT.*` | failed | a result check refused the outputs (see mex-gates); `G-RESULT.OUTPUT_UNVERIFIED` also when a stored output does not read back intact |

mod cache;
mod engine;
mod error;
mod identity;
mod ledger;
mod proof;
#[doc(hidden)]
pub mod reclaim;
mod reexec;
mod runtime;
mod settle;
mod stages;
mod workspace;

pub use cache::{
    ActionCache, CACHE_FILE_NAME, CacheError, CacheLimits, CacheStats, DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
};
pub use engine::{
    Completion, Engine, EngineFailure, Execution, ExecutionContext, ReadError, WriteError,
};
pub use error::RuntimeError;
pub use identity::{CodeDigest, CodeIdentity, HOST_CODE_KIND, code_digest, host_identity};
/// The store's path rules, for engines that name bundle entries.
pub use mex_artifacts::{BundleBuilder, RelPath};
pub use proof::AdmissionProof;
pub use runtime::{
    CancelToken, Certifier, CheckRefused, DEFAULT_REEXECUTE_FRACTION, MexRuntime, MexRuntimeBuilder,
};
