//! # mex-engine-wasm: WebAssembly engines
//!
//! Owns the adapter that runs a registry implementation of kind `wasm` (a
//! WASI preview-1 module pinned by SHA-256) in wasmtime as an [`Engine`],
//! and the `WASM_*` codes. The engine speaks the same protocol as a process
//! engine (`mex_envelope::protocol`: the request on stdin, one completion
//! on stdout); the completion and output checks are mex-engine-process's
//! ([`mex_engine_process::parse_completion_bytes`],
//! [`mex_engine_process::ingest_completion`]), so one SDK serves both.
//!
//! Does not own: admission (mex-gates), storage, recording or EngineResult
//! assembly (mex-runtime).
//!
//! ## One run
//!
//! 1. Read the module once, hash the bytes read and refuse a mismatch
//!    (`WASM_DIGEST_MISMATCH`, nothing compiled or run).
//! 2. Compile it, or take it from the per-process cache keyed by its digest
//!    ([`WasmHost`]). The cache is in memory only: reusing compiled code
//!    from disk (`Module::deserialize`) is an `unsafe` API in wasmtime (the
//!    bytes are trusted to be wasmtime's own output), and this workspace
//!    forbids `unsafe`; compiling a small module again in each new process
//!    costs milliseconds.
//! 3. Make a per-run directory under [`WasmEngineConfig::jail_root`]: `in/`
//!    (the verified inputs, named by artifact id) and `out/`. The guest sees
//!    exactly two preopens, `/in` (read-only) and `/out` (read-write, the
//!    output directory); nothing else of the host's filesystem.
//! 4. Instantiate with WASI preview 1 only (any other import is refused as
//!    `WASM_MALFORMED_MODULE`) and call `_start` with the request on stdin.
//!    Arguments: the implementation id only. Environment: `MEX_PROTOCOL` only.
//!    No sockets, no name lookup.
//! 5. Map the end (table below), then check the completion and the outputs
//!    exactly as for a process engine. A failure at any step stores nothing.
//!
//! ## Budgets
//!
//! - CPU: fuel. `cpu_time_ms` (the operation's budget, capped by
//!   [`WasmEngineConfig::cpu_time_ms`]) buys `cpu_time_ms *`
//!   [`FUEL_PER_MS`] units of fuel; wasmtime charges about one unit per
//!   WebAssembly instruction, so a run's CPU budget is an instruction count,
//!   the same on every host (deterministic), not a measured time. The fuel
//!   a run used is recorded as `wasm.fuel_used`.
//! - Wall time: epoch interruption. A ticker thread advances the engine's
//!   epoch every [`EPOCH_TICK`] while a run is in progress; at each tick the
//!   run checks its deadline, the caller's cancellation and the size of its
//!   output directory.
//! - Memory: a resource limiter refuses any linear memory (one per instance)
//!   past the memory budget with a typed error ([`MemoryExceeded`]); tables
//!   are capped at [`MAX_TABLE_ELEMENTS`].
//! - Output: the output directory's size, checked at every tick and after
//!   the run, against `output_bytes`; stdout is capped at one completion
//!   ([`MAX_COMPLETION_BYTES`]) and stderr at [`WasmEngineConfig::stderr_bytes`].
//!
//! ## Determinism
//!
//! NaN canonicalization and deterministic relaxed SIMD are on for every
//! module. For an operation run at `D3`, `clock_time_get`, `clock_res_get`,
//! `poll_oneoff` (sleeps are clock reads) and `random_get` trap with
//! [`Nondeterminism`] (`WASM_NONDETERMINISM_DENIED`): a D3 result cannot
//! depend on the time or on chance, and a fixed fake value would hide the
//! dependency rather than refuse it. At `D1`/`D2` they are the host's.
//!
//! ## Codes
//!
//! | outcome | status | code |
//! |---|---|---|
//! | the module does not hash to its pin | failed | `WASM_DIGEST_MISMATCH` |
//! | not a valid module, or it imports anything but WASI preview 1, or has no `_start` | failed | `WASM_MALFORMED_MODULE` |
//! | fuel used up | budget_exceeded | `WASM_CPU_TIME_EXCEEDED` |
//! | wall time | budget_exceeded | `WASM_WALL_TIME_EXCEEDED` |
//! | a memory grown past the budget | budget_exceeded | `WASM_MEMORY_EXCEEDED` |
//! | the output directory or stderr past its cap | budget_exceeded | `RUNTIME.OUTPUT_BUDGET_EXCEEDED` |
//! | a clock or randomness read at D3 | failed | `WASM_NONDETERMINISM_DENIED` |
//! | any other trap (unreachable, out of bounds, stack overflow, ...) | failed | `WASM_TRAP` |
//! | `proc_exit` with a non-zero status | failed | `WASM_EXIT_FAILURE` |
//! | the caller cancelled the run | failed | `WASM_CANCELLED` |
//! | the run directory could not be prepared | failed | `WASM_HOST_ERROR` |
//! | completion and output checks | | the `PROC_*` codes of mex-engine-process |

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mex_engine_process::{CompletionRules, dir_usage, ingest_completion, parse_completion_bytes};
use mex_envelope::protocol::{EngineRequest, MAX_COMPLETION_BYTES, ProtocolVersion, RequestInput};
use mex_envelope::{DeterminismLevel, EngineId, Sha256Digest};
use mex_registry::{Implementation, OutputDecl, PinnedFile, Registry};
use mex_runtime::{Completion, Engine, EngineFailure, ExecutionContext};
use wasmtime::{Linker, Module, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// Fuel bought by one millisecond of `cpu_time_ms` (about a million
/// WebAssembly instructions, roughly a millisecond of compiled code).
pub const FUEL_PER_MS: u64 = 1_000_000;

/// How often the epoch advances while a run is in progress.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The most elements a table may have.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// The largest module read (64 MiB).
pub const MAX_MODULE_BYTES: u64 = 64 << 20;

/// The WASI module every import must come from.
const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// Every code the adapter reports itself, with when (completion and output
/// checks report mex-engine-process's codes).
pub const FAILURE_CODES: &[(&str, &str)] = &[
    (
        "WASM_DIGEST_MISMATCH",
        "the module does not hash to its pin",
    ),
    (
        "WASM_MALFORMED_MODULE",
        "not a valid module, a non-WASI import, or no _start",
    ),
    ("WASM_CPU_TIME_EXCEEDED", "the run used up its fuel"),
    ("WASM_WALL_TIME_EXCEEDED", "the run passed its deadline"),
    ("WASM_MEMORY_EXCEEDED", "a memory grown past the budget"),
    (
        "RUNTIME.OUTPUT_BUDGET_EXCEEDED",
        "the output directory or stderr past its cap",
    ),
    (
        "WASM_NONDETERMINISM_DENIED",
        "a clock or randomness read by a D3 run",
    ),
    ("WASM_TRAP", "the module trapped"),
    ("WASM_EXIT_FAILURE", "proc_exit with a non-zero status"),
    ("WASM_CANCELLED", "the caller cancelled the run"),
    ("WASM_HOST_ERROR", "the run directory could not be prepared"),
];

/// Trusted configuration (the host operator's, never the engine's).
#[derive(Debug, Clone)]
pub struct WasmEngineConfig {
    /// Where per-run directories are made.
    pub jail_root: PathBuf,
    /// Ceiling of `cpu_time_ms` (the op's budget tightens it).
    pub cpu_time_ms: u64,
    /// Ceiling of `memory_bytes` for linear memory.
    pub memory_bytes: u64,
    /// The most stderr kept as the run's log.
    pub stderr_bytes: usize,
}

impl Default for WasmEngineConfig {
    fn default() -> Self {
        Self {
            jail_root: std::env::temp_dir().join("mex-wasm"),
            cpu_time_ms: 60_000,
            memory_bytes: 1 << 30,
            stderr_bytes: 1 << 20,
        }
    }
}

/// Errors setting up wasm engines.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WasmEngineError {
    /// wasmtime refused the configuration.
    #[error("cannot start the WebAssembly runtime: {0}; this is a bug in mex's wasmtime settings")]
    Runtime(String),
    /// The implementation is not of kind `wasm`.
    #[error(
        "{engine} {implementation} is not a wasm implementation; only kind \"wasm\" runs through this adapter"
    )]
    NotWasm {
        /// Engine id.
        engine: String,
        /// Implementation id.
        implementation: String,
    },
    /// The jail root could not be made.
    #[error(
        "cannot prepare the wasm-engine run directory root {path}: {source}; choose a writable directory (e.g. under /tmp)"
    )]
    JailRoot {
        /// The jail root.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A run stopped by the host at an epoch tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Stopped {
    /// The wall-time deadline passed.
    #[error("the wall-time deadline passed")]
    WallTime,
    /// The caller cancelled.
    #[error("the run was cancelled")]
    Cancelled,
    /// Stdout filled past one completion.
    #[error("stdout filled past one completion")]
    StdoutFlood,
    /// The output directory (or stderr) grew past its cap.
    #[error("the output directory is {total} bytes, past the output budget of {budget}")]
    Output {
        /// Bytes in the output directory.
        total: u64,
        /// The budget.
        budget: u64,
    },
}

/// A linear memory was grown past the memory budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("memory: the module asked for {desired} bytes of linear memory; the budget is {limit}")]
pub struct MemoryExceeded {
    /// Bytes asked for.
    pub desired: usize,
    /// The budget.
    pub limit: usize,
}

/// A D3 run read a clock or asked for randomness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the module called {0}, a clock or randomness source, in a D3 run; a D3 result may not depend on time or chance (run at D2, or remove the call)"
)]
pub struct Nondeterminism(pub &'static str);

/// The shared wasmtime engine (configuration, epoch) and the compiled
/// modules, keyed by digest, of one mex process.
pub struct WasmHost {
    engine: wasmtime::Engine,
    modules: Mutex<HashMap<String, Module>>,
    compilations: AtomicU64,
    config: WasmEngineConfig,
}

impl std::fmt::Debug for WasmHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmHost")
            .field("config", &self.config)
            .field("compilations", &self.compilations())
            .finish_non_exhaustive()
    }
}

impl WasmHost {
    /// A runtime with mex's settings: fuel, epochs, NaN canonicalization,
    /// deterministic relaxed SIMD (wasmtime's `threads` feature is not
    /// compiled in, so shared memories and atomics-wait are refused).
    pub fn new(config: WasmEngineConfig) -> Result<Self, WasmEngineError> {
        let mut c = wasmtime::Config::new();
        c.consume_fuel(true)
            .epoch_interruption(true)
            .cranelift_nan_canonicalization(true)
            .relaxed_simd_deterministic(true);
        let engine =
            wasmtime::Engine::new(&c).map_err(|e| WasmEngineError::Runtime(e.to_string()))?;
        std::fs::create_dir_all(&config.jail_root).map_err(|source| WasmEngineError::JailRoot {
            path: config.jail_root.clone(),
            source,
        })?;
        Ok(Self {
            engine,
            modules: Mutex::new(HashMap::new()),
            compilations: AtomicU64::new(0),
            config,
        })
    }

    /// How many modules this host has compiled (a cached module is not
    /// compiled again).
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    /// The compiled module for `bytes`, whose digest is `digest`.
    fn module(&self, digest: &Sha256Digest, bytes: &[u8]) -> Result<Module, EngineFailure> {
        let key = digest.to_string();
        if let Some(m) = self.modules.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(m);
        }
        let module = Module::from_binary(&self.engine, bytes).map_err(|e| {
            fail(
                "WASM_MALFORMED_MODULE",
                format!(
                    "the module (sha256 {digest}) is not valid WebAssembly: {e:#}; rebuild it for wasm32-wasip1"
                ),
            )
        })?;
        if let Some((m, n)) = module
            .imports()
            .map(|i| (i.module().to_owned(), i.name().to_owned()))
            .find(|(m, _)| m != WASI_MODULE)
        {
            return Err(fail(
                "WASM_MALFORMED_MODULE",
                format!(
                    "the module imports {m}::{n}; a wasm engine may import only {WASI_MODULE} (WASI preview 1)"
                ),
            ));
        }
        self.compilations.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.modules.lock() {
            m.insert(key, module.clone());
        }
        Ok(module)
    }
}

/// One wasm implementation as an [`Engine`].
pub struct WasmEngine {
    engine_id: EngineId,
    implementation: Implementation,
    module: PinnedFile,
    catalogue: BTreeSet<String>,
    operations: BTreeMap<String, Vec<OutputDecl>>,
    host: Arc<WasmHost>,
}

impl std::fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmEngine")
            .field("engine_id", &self.engine_id)
            .field("implementation", &self.implementation.id)
            .field("version", &self.implementation.version)
            .field("sha256", &self.module.sha256)
            .finish_non_exhaustive()
    }
}

impl WasmEngine {
    /// The adapter for one wasm implementation of `engine`.
    pub fn new(
        engine: &mex_registry::Engine,
        implementation: &Implementation,
        host: Arc<WasmHost>,
    ) -> Result<Self, WasmEngineError> {
        let module = implementation
            .wasm
            .clone()
            .ok_or_else(|| WasmEngineError::NotWasm {
                engine: engine.id.to_string(),
                implementation: implementation.id.clone(),
            })?;
        Ok(Self {
            engine_id: engine.id.clone(),
            implementation: implementation.clone(),
            module,
            catalogue: engine
                .failure_codes
                .iter()
                .map(|f| f.code.to_string())
                .collect(),
            operations: engine
                .operations
                .iter()
                .map(|(name, op)| (name.to_string(), op.outputs.clone()))
                .collect(),
            host,
        })
    }

    /// The engine's code identity: the SHA-256 of its module as pinned in
    /// the registry (every run re-hashes the module and refuses any other).
    pub fn code_digest(&self) -> Sha256Digest {
        self.module.sha256
    }
}

/// One adapter per wasm implementation in the registry, sharing one
/// [`WasmHost`]. Implementations that cannot be built are skipped with
/// their error (the runtime then answers `RUNTIME.ENGINE_NOT_INSTALLED`).
pub fn wasm_engines(
    registry: &Registry,
    config: WasmEngineConfig,
) -> (Vec<Arc<dyn Engine>>, Vec<WasmEngineError>) {
    let mut engines: Vec<Arc<dyn Engine>> = Vec::new();
    let mut errors = Vec::new();
    let any = registry
        .engines()
        .any(|e| e.implementations.iter().any(|i| i.wasm.is_some()));
    if !any {
        return (engines, errors);
    }
    let host = match WasmHost::new(config) {
        Ok(h) => Arc::new(h),
        Err(e) => return (engines, vec![e]),
    };
    for engine in registry.engines() {
        for imp in &engine.implementations {
            if imp.wasm.is_none() {
                continue;
            }
            match WasmEngine::new(engine, imp, host.clone()) {
                Ok(e) => engines.push(Arc::new(e)),
                Err(e) => errors.push(e),
            }
        }
    }
    (engines, errors)
}

fn fail(code: &'static str, msg: impl Into<String>) -> EngineFailure {
    EngineFailure::new(code, msg)
}

fn over(code: &'static str, msg: impl Into<String>) -> EngineFailure {
    EngineFailure::over_budget(code, msg)
}

/// Read the module (bounded) and check it against its pin.
fn read_module(file: &PinnedFile) -> Result<Vec<u8>, EngineFailure> {
    let mismatch = |m: String| fail("WASM_DIGEST_MISMATCH", m);
    let f = std::fs::File::open(&file.path).map_err(|e| {
        mismatch(format!(
            "module {} cannot be read ({e}); restore it or update the registry's pin",
            file.path.display()
        ))
    })?;
    let mut bytes = Vec::new();
    f.take(MAX_MODULE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| mismatch(format!("module {}: {e}", file.path.display())))?;
    let digest = Sha256Digest::of(&bytes);
    if bytes.len() as u64 > MAX_MODULE_BYTES || digest != file.sha256 {
        return Err(mismatch(format!(
            "{} hashes to {digest}, but the registry pins {}; it was not run. If the change is yours, re-pin it (`mex registry pin FILE`) and re-certify",
            file.path.display(),
            file.sha256
        )));
    }
    Ok(bytes)
}

/// Removes the run directory when the run ends, whatever happens.
struct Jail(PathBuf);

impl Drop for Jail {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "run-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// What a store holds: WASI and the memory limiter.
struct State {
    wasi: WasiP1Ctx,
    limiter: Limiter,
}

struct Limiter {
    memory_bytes: usize,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Err(wasmtime::Error::new(MemoryExceeded {
                desired,
                limit: self.memory_bytes,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }
}

/// How a module's `_start` ended.
enum Ended {
    /// Returned, or `proc_exit` with this status.
    Exit(i32),
    /// Stopped with this failure.
    Failed(EngineFailure),
}

impl WasmEngine {
    /// Everything of a run up to the module's end: the module, the run
    /// directory, WASI and the metering. Returns how it ended, stdout,
    /// stderr and the fuel used.
    #[allow(
        clippy::too_many_arguments,
        reason = "one private call site; the pieces are the run's"
    )]
    fn run_module(
        &self,
        module: &Module,
        stdin: Vec<u8>,
        in_dir: &Path,
        out_dir: &Path,
        determinism: DeterminismLevel,
        budget: &mex_envelope::BudgetSpec,
        deadline: Instant,
        cancel: Arc<AtomicBool>,
    ) -> Result<(Ended, Vec<u8>, Vec<u8>, u64), EngineFailure> {
        let host_err = |what: &str, e: wasmtime::Error| {
            fail(
                "WASM_HOST_ERROR",
                format!("cannot prepare the WebAssembly run ({what}): {e:#}"),
            )
        };
        let config = &self.host.config;
        let stdout = MemoryOutputPipe::new(MAX_COMPLETION_BYTES + 1);
        let stderr = MemoryOutputPipe::new(config.stderr_bytes);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(MemoryInputPipe::new(stdin))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .args(&[self.implementation.id.as_str()])
            .env("MEX_PROTOCOL", "mex-engine-1")
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        wasi.preopened_dir(in_dir, "/in", FsPerms::ReadOnly)
            .map_err(|e| host_err("input directory", e))?;
        wasi.preopened_dir(out_dir, "/out", FsPerms::ReadWrite)
            .map_err(|e| host_err("output directory", e))?;
        let memory_bytes = budget
            .memory_bytes
            .unwrap_or(u64::MAX)
            .min(config.memory_bytes);
        let state = State {
            wasi: wasi.build_p1(),
            limiter: Limiter {
                memory_bytes: usize::try_from(memory_bytes).unwrap_or(usize::MAX),
            },
        };
        let mut store = Store::new(&self.host.engine, state);
        store.limiter(|s| &mut s.limiter);
        let cpu_ms = budget
            .cpu_time_ms
            .unwrap_or(u64::MAX)
            .min(config.cpu_time_ms);
        let fuel = cpu_ms.saturating_mul(FUEL_PER_MS);
        store.set_fuel(fuel).map_err(|e| host_err("fuel", e))?;
        let out_budget = budget.output_bytes.unwrap_or(u64::MAX);
        let watched = out_dir.to_path_buf();
        let (stdout_seen, stderr_seen) = (stdout.clone(), stderr.clone());
        let stderr_cap = config.stderr_bytes;
        store.epoch_deadline_callback(move |_| {
            if cancel.load(Ordering::Relaxed) {
                return Err(wasmtime::Error::new(Stopped::Cancelled));
            }
            if Instant::now() >= deadline {
                return Err(wasmtime::Error::new(Stopped::WallTime));
            }
            // A full stdout or stderr refuses further writes; a guest that
            // ignores that would spin until its deadline.
            if stdout_seen.contents().len() > MAX_COMPLETION_BYTES {
                return Err(wasmtime::Error::new(Stopped::StdoutFlood));
            }
            if stderr_seen.contents().len() >= stderr_cap {
                return Err(wasmtime::Error::new(Stopped::Output {
                    total: stderr_cap as u64,
                    budget: stderr_cap as u64,
                }));
            }
            let (_, total) = dir_usage(&watched);
            if total > out_budget {
                return Err(wasmtime::Error::new(Stopped::Output {
                    total,
                    budget: out_budget,
                }));
            }
            Ok(UpdateDeadline::Continue(1))
        });
        store.set_epoch_deadline(1);

        let mut linker: Linker<State> = Linker::new(&self.host.engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut State| &mut s.wasi)
            .map_err(|e| host_err("WASI", e))?;
        if determinism == DeterminismLevel::D3 {
            deny_nondeterminism(&mut linker).map_err(|e| host_err("WASI", e))?;
        }

        let done = AtomicBool::new(false);
        let engine = self.host.engine.clone();
        let ended = std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            });
            let ended = call_start(&linker, &mut store, module);
            done.store(true, Ordering::Relaxed);
            ended
        });
        let used = fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        drop(store);
        Ok((
            ended,
            stdout.contents().to_vec(),
            stderr.contents().to_vec(),
            used,
        ))
    }
}

/// Replace the clock and randomness imports by traps (D3 runs).
fn deny_nondeterminism(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        WASI_MODULE,
        "clock_time_get",
        |_: i32, _: i64, _: i32| -> wasmtime::Result<i32> {
            Err(wasmtime::Error::new(Nondeterminism("clock_time_get")))
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "clock_res_get",
        |_: i32, _: i32| -> wasmtime::Result<i32> {
            Err(wasmtime::Error::new(Nondeterminism("clock_res_get")))
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "poll_oneoff",
        |_: i32, _: i32, _: i32, _: i32| -> wasmtime::Result<i32> {
            Err(wasmtime::Error::new(Nondeterminism("poll_oneoff")))
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "random_get",
        |_: i32, _: i32| -> wasmtime::Result<i32> {
            Err(wasmtime::Error::new(Nondeterminism("random_get")))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

fn call_start(linker: &Linker<State>, store: &mut Store<State>, module: &Module) -> Ended {
    let instance = match linker.instantiate(&mut *store, module) {
        Ok(i) => i,
        Err(e) => {
            if e.downcast_ref::<MemoryExceeded>().is_some() || e.downcast_ref::<Trap>().is_some() {
                return Ended::Failed(classify(&e));
            }
            return Ended::Failed(fail(
                "WASM_MALFORMED_MODULE",
                format!(
                    "the module cannot be instantiated with WASI preview 1: {e:#}; a wasm engine is a WASI command (wasm32-wasip1) importing only {WASI_MODULE}"
                ),
            ));
        }
    };
    let start = match instance.get_typed_func::<(), ()>(&mut *store, "_start") {
        Ok(f) => f,
        Err(e) => {
            return Ended::Failed(fail(
                "WASM_MALFORMED_MODULE",
                format!(
                    "the module has no `_start` function of type () -> () ({e:#}); a wasm engine is a WASI command"
                ),
            ));
        }
    };
    match start.call(&mut *store, ()) {
        Ok(()) => Ended::Exit(0),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(code)) => Ended::Exit(*code),
            None => Ended::Failed(classify(&e)),
        },
    }
}

/// The typed outcome of a run that did not end by itself.
fn classify(e: &wasmtime::Error) -> EngineFailure {
    if let Some(s) = e.downcast_ref::<Stopped>() {
        return match s {
            Stopped::WallTime => over(
                "WASM_WALL_TIME_EXCEEDED",
                "wall time: the module ran past its wall-time budget and was stopped",
            ),
            Stopped::Cancelled => fail("WASM_CANCELLED", "the run was cancelled and stopped"),
            Stopped::StdoutFlood => fail(
                "PROC_COMPLETION_TOO_LARGE",
                format!(
                    "the module printed more than {MAX_COMPLETION_BYTES} bytes on stdout and was stopped; stdout carries one completion document only (write outputs as files under /out, logs on stderr)"
                ),
            ),
            Stopped::Output { .. } => over(
                "RUNTIME.OUTPUT_BUDGET_EXCEEDED",
                format!("output: {s}; the module was stopped"),
            ),
        };
    }
    if let Some(m) = e.downcast_ref::<MemoryExceeded>() {
        return over("WASM_MEMORY_EXCEEDED", m.to_string());
    }
    if let Some(n) = e.downcast_ref::<Nondeterminism>() {
        return fail("WASM_NONDETERMINISM_DENIED", n.to_string());
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => over(
            "WASM_CPU_TIME_EXCEEDED",
            format!(
                "CPU time: the module used up its fuel ({FUEL_PER_MS} units per millisecond of cpu_time_ms) and was stopped"
            ),
        ),
        Some(Trap::Interrupt) => over(
            "WASM_WALL_TIME_EXCEEDED",
            "wall time: the module was interrupted at its deadline",
        ),
        Some(t) => fail("WASM_TRAP", format!("the module trapped: {t}; {e:#}")),
        None => fail("WASM_TRAP", format!("the module stopped: {e:#}")),
    }
}

impl Engine for WasmEngine {
    /// Its work runs metered and isolated by wasmtime, every budget
    /// enforced, as for a supervised child (the registry maps `wasm` there).
    fn execution(&self) -> mex_runtime::Execution {
        mex_runtime::Execution::Supervised
    }

    /// The module's pinned SHA-256: a certificate names the module it was
    /// earned with, and any other module is refused at dispatch.
    fn code_identity(&self) -> mex_runtime::CodeIdentity {
        mex_runtime::CodeIdentity::External {
            kind: "wasm".into(),
            digest: self.code_digest(),
        }
    }

    fn engine_id(&self) -> EngineId {
        self.engine_id.clone()
    }

    fn implementation_id(&self) -> &str {
        &self.implementation.id
    }

    fn implementation_version(&self) -> semver::Version {
        self.implementation.version.clone()
    }

    fn execute<'run>(
        &self,
        ctx: &ExecutionContext<'run>,
    ) -> Result<Completion<'run>, EngineFailure> {
        // 1-2. The module, checked, then compiled or cached.
        let bytes = read_module(&self.module)?;
        let module = self.host.module(&self.module.sha256, &bytes)?;
        drop(bytes);
        let op_name = ctx.operation().as_str().to_owned();
        let outputs = self.operations.get(&op_name).ok_or_else(|| {
            fail(
                "WASM_HOST_ERROR",
                format!("{op_name} is not an operation of {}", self.engine_id),
            )
        })?;

        // 3. The run directory.
        let root = self.host.config.jail_root.join(unique_name());
        let io = |what: &str, e: std::io::Error| {
            fail(
                "WASM_HOST_ERROR",
                format!("cannot prepare the run directory ({what}): {e}"),
            )
        };
        std::fs::create_dir(&root).map_err(|e| io("run dir", e))?;
        let _jail = Jail(root.clone());
        let (in_dir, out_dir) = (root.join("in"), root.join("out"));
        std::fs::create_dir(&in_dir).map_err(|e| io("in", e))?;
        std::fs::create_dir(&out_dir).map_err(|e| io("out", e))?;
        let mut inputs = Vec::new();
        for handle in ctx.inputs() {
            let data = ctx.read_input(handle).map_err(|e| {
                fail(
                    "WASM_HOST_ERROR",
                    format!("input {}: {e}", handle.artifact_id),
                )
            })?;
            let name = handle.artifact_id.to_string();
            std::fs::write(in_dir.join(&name), &data).map_err(|e| io("input", e))?;
            inputs.push(RequestInput {
                artifact_id: handle.artifact_id,
                path: format!("/in/{name}"),
                kind: handle.kind,
                media_type: handle.media_type.as_ref().map(|m| m.to_string()),
                content_hash: handle.content_hash,
                size_bytes: handle.size_bytes,
            });
        }

        // 4. The request, and the run.
        let request = EngineRequest {
            protocol: ProtocolVersion::V1,
            op_id: ctx.op_id(),
            engine_id: self.engine_id.clone(),
            implementation_id: self.implementation.id.clone(),
            implementation_version: self.implementation.version.to_string(),
            operation: ctx.operation().clone(),
            params: ctx.params().clone(),
            inputs,
            budget: ctx.budget().clone(),
            determinism: ctx.determinism(),
            output_dir: "/out".into(),
            capabilities: ctx.capabilities().to_vec(),
            // A module is handed no key material: secrets reach only
            // process engines, which the OS confines.
            secrets: Default::default(),
        };
        let stdin = serde_json::to_vec(&request)
            .map_err(|e| fail("WASM_HOST_ERROR", format!("request: {e}")))?;
        // Stop a little before the runtime's own deadline, so the overrun
        // is this adapter's typed outcome rather than a cancellation.
        let now = Instant::now();
        let remaining = ctx.deadline().saturating_duration_since(now);
        let deadline =
            now + remaining.saturating_sub((remaining / 10).min(Duration::from_millis(100)));
        let (ended, stdout, stderr, fuel_used) = self.run_module(
            &module,
            stdin,
            &in_dir,
            &out_dir,
            ctx.determinism(),
            ctx.budget(),
            deadline,
            ctx.cancellation(),
        )?;
        ctx.record_environment("wasm.protocol", "mex-engine-1");
        ctx.record_environment("wasm.sha256", &self.module.sha256.to_string());
        ctx.record_environment("wasm.runtime", "wasmtime 48");
        ctx.record_environment("wasm.fuel_used", &fuel_used.to_string());

        // 5. How it ended, then the completion and the outputs.
        if stdout.len() > MAX_COMPLETION_BYTES {
            return Err(fail(
                "PROC_COMPLETION_TOO_LARGE",
                format!(
                    "the module printed more than {MAX_COMPLETION_BYTES} bytes on stdout and was stopped; stdout carries one completion document only (write outputs as files under /out, logs on stderr)"
                ),
            ));
        }
        if stderr.len() >= self.host.config.stderr_bytes {
            return Err(over(
                "RUNTIME.OUTPUT_BUDGET_EXCEEDED",
                format!(
                    "output: the module wrote {} bytes or more on stderr, past the log cap",
                    self.host.config.stderr_bytes
                ),
            ));
        }
        let code = match ended {
            Ended::Failed(f) => return Err(f),
            Ended::Exit(c) => c,
        };
        let (_, total) = dir_usage(&out_dir);
        let out_budget = ctx.budget().output_bytes.unwrap_or(u64::MAX);
        if total > out_budget {
            return Err(over(
                "RUNTIME.OUTPUT_BUDGET_EXCEEDED",
                format!(
                    "output: the module wrote {total} bytes in its output directory, past its output budget of {out_budget} bytes"
                ),
            ));
        }
        let tail: String = {
            let text = String::from_utf8_lossy(&stderr);
            let skip = text.chars().count().saturating_sub(600);
            text.chars().skip(skip).collect()
        };
        let completion = parse_completion_bytes(&stdout, &format!("exit status {code}"), &tail)?;
        if code != 0 {
            return Err(fail(
                "WASM_EXIT_FAILURE",
                format!("the module exited with status {code}; stderr ends: {tail}"),
            ));
        }
        ingest_completion(
            ctx,
            &CompletionRules {
                engine_id: &self.engine_id,
                catalogue: &self.catalogue,
                outputs,
            },
            &completion,
            &out_dir,
            &stderr,
        )
    }
}
