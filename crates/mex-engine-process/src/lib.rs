//! # mex-engine-process: engines run as separate, sandboxed processes
//!
//! Owns the adapter that runs a registry implementation of kind `process`
//! (an executable, or a script run by an allowlisted interpreter, pinned by
//! SHA-256) or of kind `host_process` (an engine compiled into the host
//! executable, which the adapter starts as [`HOST_ENGINE_NAME`] with the
//! engine id as its one argument: see [`HostProgram`]) as an [`Engine`], the
//! `G-SAFETY.PROCESS` gate ([`ProcessGate`]), and the `PROC_*` codes. The protocol's wire types live in
//! `mex_envelope::protocol`; `docs/engine-protocol.md` is the author's view.
//!
//! Does not own: OS confinement (mex-sandbox), admission (mex-gates),
//! storage, recording or EngineResult assembly (mex-runtime).
//!
//! ## Host engines (`host_process`)
//!
//! The program is the host executable itself, exec'ed in place through
//! [`HostProgram::path`] (a link whose file name tells the binary to act as
//! the engine host; it is not copied into the jail): same jail, budgets,
//! confinement (exec allowed for that one file and the dynamic loader) and
//! protocol as a `process` implementation, no pinned files and no
//! interpreter. Its code identity is the host executable's SHA-256
//! ([`HostProgram::code_digest`], [`ProcessEngine::code_digest`]), computed
//! once per process and recorded as `process.sha256`. Without a
//! [`ProcessEngineConfig::host_program`] a host implementation is not built
//! ([`ProcessEngineError::NoHostProgram`]).
//!
//! ## One run
//!
//! 1. Read every pinned file once, hash the bytes read, and refuse a
//!    mismatch (`PROC_DIGEST_MISMATCH`, before anything runs). The gate has
//!    already refused a mismatch at admission; this catches a file changed
//!    between admission and run. The bytes that were hashed are the bytes
//!    copied into the jail and run, so there is no window in between.
//! 2. Make a per-run jail under [`ProcessEngineConfig::jail_root`]:
//!    `engine/` (the pinned files, read-only), `in/` (the verified inputs,
//!    read-only, named by artifact id; a bundle input is the directory
//!    `in/<id>/` of its entries, through
//!    `ExecutionContext::export_bundle_input`) and `out/` (the only writable tree:
//!    the output directory, also cwd, `HOME` and `TMPDIR`).
//! 3. Run it through [`mex_sandbox::run_with`] with the operation's
//!    resolved budget (capped by the trusted [`ProcessEngineConfig::limits`]),
//!    network only when `net.http` was granted, exec limited to the program
//!    (or its interpreter) and the dynamic loader; the request
//!    ([`mex_envelope::protocol::EngineRequest`]) on stdin.
//! 4. Map the termination (table below), then parse stdout as one
//!    [`mex_envelope::protocol::EngineCompletion`] (at most
//!    [`MAX_COMPLETION_BYTES`]).
//! 5. Check each claimed output (a relative path inside `out/`, a regular
//!    file and not a symlink, a kind and media type the operation declares,
//!    within the output budget) and only then write them through the
//!    context. Stderr becomes the run's log. Environment identifiers pass
//!    the protocol's rules (no reserved keys) and are recorded under
//!    `engine.`.
//!
//! A failure at any step discards everything: nothing reaches the store.
//!
//! ## Codes
//!
//! | outcome | status | code |
//! |---|---|---|
//! | a pinned file does not hash to its pin | failed | `PROC_DIGEST_MISMATCH` |
//! | interpreter off the allowlist, confinement unavailable, a file, network or exec refusal, processes left behind | failed | `PROC_POLICY_DENIED` |
//! | wall time | budget_exceeded | `PROC_WALL_TIME_EXCEEDED` |
//! | CPU time | budget_exceeded | `PROC_CPU_TIME_EXCEEDED` |
//! | memory | budget_exceeded | `PROC_MEMORY_EXCEEDED` |
//! | stderr or a file past its cap, the output directory or the outputs past the output budget | budget_exceeded | `RUNTIME.OUTPUT_BUDGET_EXCEEDED` (the runtime's code for every output overrun) |
//! | stdout larger than a completion may be (a flood) | failed | `PROC_COMPLETION_TOO_LARGE` |
//! | exit without a completion on stdout | failed | `PROC_NO_COMPLETION` |
//! | a completion that does not parse or breaks a rule (reserved keys, ...) | failed | `PROC_MALFORMED_COMPLETION` |
//! | non-zero exit or a signal, even with a completion | failed | `PROC_EXIT_FAILURE` |
//! | an output path outside `out/`, a symlink, not a regular file | failed | `PROC_OUTPUT_ESCAPE` |
//! | an output file missing, or a required output not claimed | failed | `PROC_OUTPUT_MISSING` |
//! | an output kind or media type the operation does not declare | failed | `PROC_UNDECLARED_OUTPUT` |
//! | `status: failed` with a code from the engine's catalogue | failed | that code |
//! | `status: failed` with any other code | failed | `PROC_UNDECLARED_FAILURE_CODE` (the message quotes the engine's) |
//! | the jail could not be prepared, the launcher could not start | failed | `PROC_SANDBOX_ERROR` |
//! | the caller cancelled the run (the process group is killed) | failed | `PROC_CANCELLED` (the runtime reports `RUNTIME.CANCELLED`) |

mod gate;

pub use gate::{GATE_CODES, ProcessGate};

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mex_envelope::protocol::{
    CompletionStatus, EngineCompletion, EngineRequest, MAX_COMPLETION_BYTES, ProtocolVersion,
    RequestInput,
};
use mex_envelope::{ArtifactKind, CapabilityKind, EngineId, ErrorCode, MediaType, Sha256Digest};
use mex_registry::{
    Implementation, ImplementationKind, OutputDecl, OutputType, ProcessSpec, Registry,
};
use mex_runtime::{Completion, Engine, EngineFailure, ExecutionContext};
use mex_sandbox::{Limits, Outcome, Request, SandboxConfig, Termination};

/// Every code the adapter reports, with when.
pub const FAILURE_CODES: &[(&str, &str)] = &[
    (
        "PROC_DIGEST_MISMATCH",
        "a pinned file does not hash to its pin",
    ),
    (
        "PROC_POLICY_DENIED",
        "interpreter not allowed, no confinement, or a confinement refusal",
    ),
    ("PROC_WALL_TIME_EXCEEDED", "killed at the wall-time budget"),
    (
        "PROC_CANCELLED",
        "the caller cancelled the run; the process group was killed",
    ),
    ("PROC_CPU_TIME_EXCEEDED", "killed at the CPU-time budget"),
    (
        "PROC_MEMORY_EXCEEDED",
        "an allocation failed at the memory budget",
    ),
    (
        "RUNTIME.OUTPUT_BUDGET_EXCEEDED",
        "stderr, a file or the outputs past their cap",
    ),
    (
        "PROC_COMPLETION_TOO_LARGE",
        "stdout larger than a completion may be",
    ),
    (
        "PROC_NO_COMPLETION",
        "exited without a completion on stdout",
    ),
    (
        "PROC_MALFORMED_COMPLETION",
        "the completion is not mex-engine-1",
    ),
    ("PROC_EXIT_FAILURE", "non-zero exit status or a signal"),
    (
        "PROC_OUTPUT_ESCAPE",
        "an output outside the output directory",
    ),
    (
        "PROC_OUTPUT_MISSING",
        "a claimed output file is missing, or a required output was not claimed",
    ),
    (
        "PROC_UNDECLARED_OUTPUT",
        "an output kind or media type the operation does not declare",
    ),
    (
        "PROC_UNDECLARED_FAILURE_CODE",
        "a failure code outside the engine's catalogue",
    ),
    ("PROC_SANDBOX_ERROR", "the jail or the launcher failed"),
];

/// The largest pinned file read (256 MiB).
pub const MAX_PINNED_FILE_BYTES: u64 = 256 << 20;

/// Interpreters a process engine may name by default (the sandbox allowlist
/// of `engine.sandbox`).
pub const DEFAULT_INTERPRETERS: &[&str] = &["python3", "bash", "node"];

/// The file name (prefix) under which the host executable acts as the host of
/// its compiled-in engines: started as `mex-engine-exec... <engine id>`, it
/// reads one `mex-engine-1` request on stdin and answers on stdout.
pub const HOST_ENGINE_NAME: &str = "mex-engine-exec";

/// The host executable as the program of `host_process` implementations.
#[derive(Debug)]
pub struct HostProgram {
    path: PathBuf,
    exe: PathBuf,
    engines: Vec<String>,
    digest: OnceLock<Result<Sha256Digest, String>>,
}

impl HostProgram {
    /// `path` is what is exec'ed: an absolute path whose file name starts
    /// with [`HOST_ENGINE_NAME`] (a link to the host executable, so that the
    /// binary knows to act as the engine host), traversable and executable
    /// by the sandbox uid. `exe` is the host executable it leads to (the code
    /// identity). `engines` are the engine ids it hosts.
    pub fn new(path: PathBuf, exe: PathBuf, engines: &[&str]) -> Self {
        Self {
            path,
            exe,
            engines: engines.iter().map(|e| (*e).to_owned()).collect(),
            digest: OnceLock::new(),
        }
    }

    /// Whether the host executable hosts `engine_id`.
    pub fn hosts(&self, engine_id: &str) -> bool {
        self.engines.iter().any(|e| e == engine_id)
    }

    /// What is exec'ed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host executable.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// The SHA-256 of the host executable: the code identity of every
    /// `host_process` engine. Computed once per process (streamed, the file
    /// is large), then remembered.
    pub fn code_digest(&self) -> Result<Sha256Digest, String> {
        self.digest
            .get_or_init(|| {
                use sha2::Digest as _;
                let mut file = std::fs::File::open(&self.exe)
                    .map_err(|e| format!("{}: {e}", self.exe.display()))?;
                let mut hasher = sha2::Sha256::new();
                std::io::copy(&mut file, &mut hasher)
                    .map_err(|e| format!("{}: {e}", self.exe.display()))?;
                Ok(Sha256Digest::from_bytes(hasher.finalize().into()))
            })
            .clone()
    }
}

/// Trusted configuration (the host operator's, never the engine's).
#[derive(Debug, Clone)]
pub struct ProcessEngineConfig {
    /// Launcher and uid.
    pub sandbox: SandboxConfig,
    /// Where per-run jails are made (mode 0711).
    pub jail_root: PathBuf,
    /// Ceiling of every child; the op's budget tightens it.
    pub limits: Limits,
    /// Interpreters a registry entry may name.
    pub interpreters: Vec<String>,
    /// Trusted policy's `degraded.sandbox_without_landlock`.
    pub allow_degraded: bool,
    /// The host secret store (`<home>/secrets`): for each granted
    /// `secrets.use:<key_id>`, the file `<key_id>` there is delivered in the
    /// request (stdin only; never copied into the jail). `None`: no secrets.
    pub secrets_dir: Option<PathBuf>,
    /// The program of `host_process` implementations (None: they are not
    /// built).
    pub host_program: Option<Arc<HostProgram>>,
}

/// The largest held key read from the secret store.
pub const MAX_SECRET_BYTES: u64 = 4096;

/// The key material of every granted `secrets.use:<key_id>` that the store
/// holds. A key that is missing or unreadable is left out (the engine then
/// fails with its own "key not delivered" code); the file is opened without
/// following a symlink and must be a regular file of at most
/// [`MAX_SECRET_BYTES`].
fn granted_secrets(
    dir: Option<&Path>,
    granted: &[mex_envelope::Capability],
) -> std::collections::BTreeMap<String, mex_envelope::protocol::SecretValue> {
    let mut out = std::collections::BTreeMap::new();
    let Some(dir) = dir else { return out };
    for cap in granted {
        let (CapabilityKind::SecretsUse, Some(id)) = (cap.kind(), cap.scope()) else {
            continue;
        };
        // Key ids are single path components (the store refuses others).
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            continue;
        }
        let path = dir.join(id);
        // Not a symlink, a regular file (the store directory is 0700).
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file()) {
            continue;
        }
        let Ok(f) = std::fs::File::open(&path) else {
            continue;
        };
        let mut bytes = zeroize::Zeroizing::new(Vec::new());
        if f.take(MAX_SECRET_BYTES + 1)
            .read_to_end(&mut bytes)
            .is_err()
            || bytes.len() as u64 > MAX_SECRET_BYTES
        {
            continue;
        }
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let value = mex_envelope::protocol::SecretValue::new(text.trim().to_owned());
            out.insert(id.to_owned(), value);
        }
    }
    out
}

#[cfg(test)]
mod granted_secrets_tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    #[test]
    fn only_granted_regular_files_are_delivered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k1"), "secret-one\n").unwrap();
        std::fs::write(dir.path().join("k2"), "secret-two").unwrap();
        std::os::unix::fs::symlink(dir.path().join("k1"), dir.path().join("link")).unwrap();
        std::fs::write(dir.path().join("big"), vec![b'x'; 5000]).unwrap();
        let caps: Vec<mex_envelope::Capability> = [
            "secrets.use:k1",
            "secrets.use:link",
            "secrets.use:big",
            "secrets.use:none",
            "net.http",
        ]
        .iter()
        .map(|c| c.parse().unwrap())
        .collect();
        let got = granted_secrets(Some(dir.path()), &caps);
        assert_eq!(got.keys().collect::<Vec<_>>(), ["k1"]);
        assert_eq!(got["k1"].expose(), "secret-one");
        assert!(granted_secrets(None, &caps).is_empty());
    }
}

impl Default for ProcessEngineConfig {
    fn default() -> Self {
        Self {
            sandbox: SandboxConfig::default(),
            jail_root: std::env::temp_dir().join("mex-process"),
            limits: Limits {
                memory_bytes: 1 << 30,
                cpu_time_ms: 60_000,
                stdout_bytes: MAX_COMPLETION_BYTES as u64 + 1,
                ..Limits::default()
            },
            interpreters: DEFAULT_INTERPRETERS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            allow_degraded: false,
            secrets_dir: None,
            host_program: None,
        }
    }
}

impl ProcessEngineConfig {
    /// Take the degraded switch from the trusted policy.
    pub fn with_policy(mut self, policy: &mex_gates::CapabilityPolicy) -> Self {
        self.allow_degraded = policy.degraded.sandbox_without_landlock;
        self
    }
}

/// Errors building an adapter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessEngineError {
    /// The implementation is not of kind `process` or `host_process`.
    #[error(
        "{engine} {implementation} is not a process implementation; only kinds \"process\" and \"host_process\" run through this adapter"
    )]
    NotProcess {
        /// Engine id.
        engine: String,
        /// Implementation id.
        implementation: String,
    },
    /// A `host_process` implementation, but no host program configured.
    #[error(
        "{engine} {implementation} is a host_process implementation, but this host has no engine host program (only the `mex` executable can host its compiled-in engines); run it through `mex`"
    )]
    NoHostProgram {
        /// Engine id.
        engine: String,
        /// Implementation id.
        implementation: String,
    },
    /// A `host_process` implementation the host executable does not host.
    #[error(
        "{engine} {implementation} is declared host_process, but this mex binary does not host {engine}; use a mex built with it, or declare another implementation"
    )]
    NotHosted {
        /// Engine id.
        engine: String,
        /// Implementation id.
        implementation: String,
    },
    /// The jail root could not be prepared.
    #[error(
        "cannot prepare the process-engine jail root {path}: {source}; choose a directory on a local filesystem whose ancestors the sandbox uid can traverse (e.g. under /tmp)"
    )]
    JailRoot {
        /// The jail root.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What the adapter knows of one operation (from the registry).
#[derive(Debug, Clone)]
struct OpInfo {
    outputs: Vec<OutputDecl>,
}

/// What a process implementation runs.
#[derive(Debug, Clone)]
enum Program {
    /// Kind `process`: pinned files.
    Pinned(ProcessSpec),
    /// Kind `host_process`: the host executable.
    Host(Arc<HostProgram>),
}

/// One process implementation as an [`Engine`].
pub struct ProcessEngine {
    engine_id: EngineId,
    implementation: Implementation,
    program: Program,
    catalogue: BTreeSet<String>,
    operations: std::collections::BTreeMap<String, OpInfo>,
    config: Arc<ProcessEngineConfig>,
}

impl std::fmt::Debug for ProcessEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessEngine")
            .field("engine_id", &self.engine_id)
            .field("implementation", &self.implementation.id)
            .field("version", &self.implementation.version)
            .finish_non_exhaustive()
    }
}

impl ProcessEngine {
    /// The adapter for one process implementation of `engine`: kind
    /// `process` (its pinned files) or kind `host_process` (the host program
    /// of `config`, [`ProcessEngineConfig::host_program`]).
    pub fn new(
        engine: &mex_registry::Engine,
        implementation: &Implementation,
        config: Arc<ProcessEngineConfig>,
    ) -> Result<Self, ProcessEngineError> {
        let program = match (&implementation.process, implementation.kind) {
            (Some(spec), _) => Program::Pinned(spec.clone()),
            (None, ImplementationKind::HostProcess) => {
                let host = config.host_program.clone().ok_or_else(|| {
                    ProcessEngineError::NoHostProgram {
                        engine: engine.id.to_string(),
                        implementation: implementation.id.clone(),
                    }
                })?;
                if !host.hosts(engine.id.as_str()) {
                    return Err(ProcessEngineError::NotHosted {
                        engine: engine.id.to_string(),
                        implementation: implementation.id.clone(),
                    });
                }
                Program::Host(host)
            }
            (None, _) => {
                return Err(ProcessEngineError::NotProcess {
                    engine: engine.id.to_string(),
                    implementation: implementation.id.clone(),
                });
            }
        };
        let jail_err = |source| ProcessEngineError::JailRoot {
            path: config.jail_root.clone(),
            source,
        };
        std::fs::create_dir_all(&config.jail_root).map_err(jail_err)?;
        std::fs::set_permissions(&config.jail_root, std::fs::Permissions::from_mode(0o711))
            .map_err(jail_err)?;
        Ok(Self {
            engine_id: engine.id.clone(),
            implementation: implementation.clone(),
            program,
            catalogue: engine
                .failure_codes
                .iter()
                .map(|f| f.code.to_string())
                .collect(),
            operations: engine
                .operations
                .iter()
                .map(|(name, op)| {
                    (
                        name.to_string(),
                        OpInfo {
                            outputs: op.outputs.clone(),
                        },
                    )
                })
                .collect(),
            config,
        })
    }

    /// The code identity of what runs: the pinned program's SHA-256 (kind
    /// `process`), or the host executable's (kind `host_process`, computed
    /// once per process).
    pub fn code_digest(&self) -> Result<Sha256Digest, String> {
        match &self.program {
            Program::Pinned(spec) => Ok(spec.program.sha256),
            Program::Host(host) => host.code_digest(),
        }
    }
}

/// One adapter per process implementation in the registry, and the gate
/// they need. Implementations that cannot be built are skipped with their
/// error (the caller logs them; the runtime then answers
/// `RUNTIME.ENGINE_NOT_INSTALLED`).
pub fn process_engines(
    registry: &Registry,
    config: ProcessEngineConfig,
) -> (
    Vec<Arc<dyn Engine>>,
    Arc<ProcessGate>,
    Vec<ProcessEngineError>,
) {
    let config = Arc::new(config);
    let mut engines: Vec<Arc<dyn Engine>> = Vec::new();
    let mut errors = Vec::new();
    for engine in registry.engines() {
        for imp in &engine.implementations {
            if !imp.kind.is_protocol_process() {
                continue;
            }
            match ProcessEngine::new(engine, imp, config.clone()) {
                Ok(e) => engines.push(Arc::new(e)),
                Err(e) => errors.push(e),
            }
        }
    }
    let gate = Arc::new(ProcessGate::new(registry, &config));
    (engines, gate, errors)
}

fn fail(code: &'static str, msg: impl Into<String>) -> EngineFailure {
    EngineFailure::new(code, msg)
}

fn over(code: &'static str, msg: impl Into<String>) -> EngineFailure {
    EngineFailure::over_budget(code, msg)
}

/// Read a pinned file (bounded) and check it against its pin.
pub fn read_pinned(file: &mex_registry::PinnedFile) -> Result<Vec<u8>, EngineFailure> {
    let f = std::fs::File::open(&file.path).map_err(|e| {
        fail(
            "PROC_DIGEST_MISMATCH",
            format!(
                "pinned file {} cannot be read ({e}); restore it or update the registry's pin",
                file.path.display()
            ),
        )
    })?;
    let mut bytes = Vec::new();
    f.take(MAX_PINNED_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            fail(
                "PROC_DIGEST_MISMATCH",
                format!("pinned file {}: {e}", file.path.display()),
            )
        })?;
    let digest = Sha256Digest::of(&bytes);
    if bytes.len() as u64 > MAX_PINNED_FILE_BYTES || digest != file.sha256 {
        return Err(fail(
            "PROC_DIGEST_MISMATCH",
            format!(
                "{} hashes to {digest}, but the registry pins {}; it was not run. If the change is yours, re-pin it (`mex registry pin FILE`) and re-certify",
                file.path.display(),
                file.sha256
            ),
        ));
    }
    Ok(bytes)
}

/// Removes the jail when the run ends, whatever happens.
struct Jail(PathBuf);

impl Drop for Jail {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unique_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "run-{}-{:?}-{nanos}",
        std::process::id(),
        std::thread::current().id()
    )
    .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "")
}

fn write_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    std::fs::write(path, bytes)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// The artifact kind an output type is stored as.
fn artifact_kind(t: OutputType) -> ArtifactKind {
    match t {
        OutputType::Logs => ArtifactKind::Transcript,
        OutputType::Dataset | OutputType::Bundle | OutputType::Snapshot => ArtifactKind::Report,
        _ => ArtifactKind::File,
    }
}

impl Engine for ProcessEngine {
    /// Its work runs in a sandboxed child it supervises.
    fn execution(&self) -> mex_runtime::Execution {
        mex_runtime::Execution::Supervised
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

    /// The code it runs: SHA-256 of the RFC 8785 form of the interpreter's
    /// name (or null) and the name and pinned digest of the program and of
    /// every further file, in declaration order. The files are checked
    /// against those pins before every run, so the digest names the bytes
    /// that run.
    ///
    /// A `host_process` implementation runs the host executable itself, so
    /// its identity is the host's (as for builtin engines).
    fn code_identity(&self) -> mex_runtime::CodeIdentity {
        let spec = match &self.program {
            Program::Pinned(spec) => spec,
            Program::Host(_) => return mex_runtime::CodeIdentity::Host,
        };
        let files: Vec<_> = spec
            .files
            .iter()
            .map(|f| serde_json::json!({"name": f.file_name(), "sha256": f.sha256.to_string()}))
            .collect();
        let descriptor = serde_json::json!({
            "interpreter": spec.interpreter,
            "program": {
                "name": spec.program.file_name(),
                "sha256": spec.program.sha256.to_string(),
            },
            "files": files,
        });
        let bytes = mex_envelope::canonical::to_vec(&descriptor)
            .unwrap_or_else(|_| descriptor.to_string().into_bytes());
        mex_runtime::CodeIdentity::External {
            kind: "process".into(),
            digest: Sha256Digest::of(&bytes),
        }
    }

    fn execute<'run>(
        &self,
        ctx: &ExecutionContext<'run>,
    ) -> Result<Completion<'run>, EngineFailure> {
        // 1. Pinned files, read once and checked (none for a host engine).
        let (spec, host) = match &self.program {
            Program::Pinned(spec) => (Some(spec), None),
            Program::Host(host) => (None, Some(host)),
        };
        let mut files = Vec::new();
        for f in spec.into_iter().flat_map(ProcessSpec::all_files) {
            files.push((f.file_name(), read_pinned(f)?));
        }
        let code_digest = self.code_digest().map_err(|e| {
            fail(
                "PROC_SANDBOX_ERROR",
                format!("the host executable cannot be read to identify its code: {e}"),
            )
        })?;
        let program_name = spec.map(|s| s.program.file_name()).unwrap_or_default();
        let spec_interpreter = spec.and_then(|s| s.interpreter.as_deref());
        let interpreter = match spec_interpreter {
            Some(name) => {
                if !self.config.interpreters.iter().any(|i| i == name) {
                    return Err(fail(
                        "PROC_POLICY_DENIED",
                        format!(
                            "interpreter {name:?} is not on this host's allowlist ({})",
                            self.config.interpreters.join(", ")
                        ),
                    ));
                }
                Some(
                    mex_sandbox::resolve_executable(name)
                        .map_err(|e| fail("PROC_POLICY_DENIED", e.to_string()))?,
                )
            }
            None => None,
        };
        let op_name = ctx.operation().as_str().to_owned();
        let info = self.operations.get(&op_name).ok_or_else(|| {
            fail(
                "PROC_POLICY_DENIED",
                format!("{op_name} is not an operation of {}", self.engine_id),
            )
        })?;

        // 2. The jail.
        let root = self.config.jail_root.join(unique_name());
        let io = |what: &str, e: std::io::Error| {
            fail(
                "PROC_SANDBOX_ERROR",
                format!("cannot prepare the jail ({what}): {e}"),
            )
        };
        std::fs::create_dir(&root).map_err(|e| io("run dir", e))?;
        let _jail = Jail(root.clone());
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| io("run dir", e))?;
        let (engine_dir, in_dir, out_dir) =
            (root.join("engine"), root.join("in"), root.join("out"));
        for d in [&engine_dir, &in_dir] {
            std::fs::create_dir(d).map_err(|e| io("dir", e))?;
        }
        for (name, bytes) in &files {
            let mode = if interpreter.is_none() && *name == program_name {
                0o555
            } else {
                0o444
            };
            write_mode(&engine_dir.join(name), bytes, mode).map_err(|e| io("engine file", e))?;
        }
        let mut inputs = Vec::new();
        for handle in ctx.inputs() {
            let path = in_dir.join(handle.artifact_id.to_string());
            let input_fail = |e: mex_runtime::ReadError| {
                fail(
                    "PROC_SANDBOX_ERROR",
                    format!("input {}: {e}", handle.artifact_id),
                )
            };
            if handle.kind == ArtifactKind::Bundle {
                // A bundle arrives as its tree: `in/<id>/<entry path>`.
                ctx.export_bundle_input(handle, &path).map_err(input_fail)?;
            } else {
                let bytes = ctx.read_input(handle).map_err(input_fail)?;
                write_mode(&path, &bytes, 0o444).map_err(|e| io("input", e))?;
            }
            inputs.push(RequestInput {
                artifact_id: handle.artifact_id,
                path: path.display().to_string(),
                kind: handle.kind,
                media_type: handle.media_type.as_ref().map(|m| m.to_string()),
                content_hash: handle.content_hash,
                size_bytes: handle.size_bytes,
            });
        }
        for d in [&engine_dir, &in_dir] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o555))
                .map_err(|e| io("dir", e))?;
        }
        mex_sandbox::prepare_workdir(&self.config.sandbox, &out_dir)
            .map_err(|e| fail("PROC_SANDBOX_ERROR", format!("output directory: {e}")))?;

        // 3. Request and run.
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
            output_dir: out_dir.display().to_string(),
            capabilities: ctx.capabilities().to_vec(),
            secrets: granted_secrets(self.config.secrets_dir.as_deref(), ctx.capabilities()),
        };
        // The request may carry key material: it lives only in this buffer,
        // written to the child's stdin pipe, and is zeroed when dropped.
        let mut stdin = zeroize::Zeroizing::new(
            serde_json::to_vec(&request)
                .map_err(|e| fail("PROC_SANDBOX_ERROR", format!("request: {e}")))?,
        );
        drop(request);
        let mut limits = self.config.limits;
        limits.stdout_bytes = limits.stdout_bytes.min(MAX_COMPLETION_BYTES as u64 + 1);
        if let Some(m) = ctx.budget().memory_bytes {
            limits.memory_bytes = limits.memory_bytes.min(m);
        }
        if let Some(c) = ctx.budget().cpu_time_ms {
            limits.cpu_time_ms = limits.cpu_time_ms.min(c);
        }
        if let Some(o) = ctx.budget().output_bytes {
            limits.file_size_bytes = limits.file_size_bytes.min(o);
        }
        let program_in_jail = engine_dir.join(&program_name);
        let (program, args): (PathBuf, Vec<std::ffi::OsString>) =
            match (&interpreter, spec_interpreter) {
                // The host executable, exec'ed in place (not copied): its
                // link's name makes it the engine host; the engine id picks
                // the compiled-in handler.
                _ if host.is_some() => (
                    host.map(|h| h.path().to_path_buf()).unwrap_or_default(),
                    vec![self.engine_id.as_str().into()],
                ),
                (Some(interp), Some("python3")) => (
                    interp.clone(),
                    vec![
                        "-E".into(),
                        "-s".into(),
                        "-B".into(),
                        program_in_jail.clone().into(),
                    ],
                ),
                (Some(interp), Some("bash")) => (
                    interp.clone(),
                    vec![
                        "--noprofile".into(),
                        "--norc".into(),
                        program_in_jail.clone().into(),
                    ],
                ),
                (Some(interp), _) => (interp.clone(), vec![program_in_jail.clone().into()]),
                (None, _) => (program_in_jail.clone(), Vec::new()),
            };
        let network = ctx
            .capabilities()
            .iter()
            .any(|c| c.kind() == CapabilityKind::NetHttp);
        let mut executables = vec![program.clone()];
        executables.extend(mex_sandbox::dynamic_loaders());
        let mut read_only = mex_sandbox::system_read_only_paths();
        read_only.push(engine_dir.clone());
        read_only.push(in_dir.clone());
        let mut read_write = vec![out_dir.clone()];
        read_write.extend(mex_sandbox::system_read_write_paths());
        let out_s = out_dir.display().to_string();
        let now = Instant::now();
        let remaining = ctx.deadline().saturating_duration_since(now);
        let margin = (remaining / 10).min(Duration::from_millis(100));
        let sandbox_request = Request {
            program: program.clone(),
            args,
            workdir: out_dir.clone(),
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("HOME".into(), out_s.clone()),
                ("TMPDIR".into(), out_s),
                ("LANG".into(), "C.UTF-8".into()),
                ("LC_ALL".into(), "C.UTF-8".into()),
                ("TZ".into(), "UTC".into()),
                ("PYTHONHASHSEED".into(), "0".into()),
                ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
                ("MEX_PROTOCOL".into(), "mex-engine-1".into()),
            ],
            limits,
            confinement: mex_sandbox::Confinement {
                read_only,
                read_write,
                executables,
                network,
                allow_degraded: self.config.allow_degraded,
            },
            deadline: now + remaining.saturating_sub(margin),
        };
        let outcome = match mex_sandbox::run_with(
            &self.config.sandbox,
            &sandbox_request,
            // Moved out: mex-sandbox zeroes it once it is on the pipe.
            Some(std::mem::take(&mut *stdin)),
            &ctx.cancellation(),
        ) {
            Ok(o) => o,
            Err(mex_sandbox::SandboxError::ConfinementUnavailable { reason }) => {
                return Err(fail(
                    "PROC_POLICY_DENIED",
                    format!(
                        "the sandbox could not confine the engine and refused to run it (fail closed): {reason}"
                    ),
                ));
            }
            Err(e) => return Err(fail("PROC_SANDBOX_ERROR", e.to_string())),
        };
        record(ctx, &outcome, &limits, &program, network, &code_digest);

        // 4. Termination, then the completion.
        check_termination(&outcome)?;
        // A file cut at the file-size limit, or a directory past the output
        // budget, is an overrun whatever the engine printed (an interpreter
        // that ignores SIGXFSZ sees EFBIG and may just crash).
        let (largest, total) = dir_usage(&out_dir);
        let out_budget = ctx.budget().output_bytes.unwrap_or(u64::MAX);
        if largest >= limits.file_size_bytes || total > out_budget {
            return Err(over(
                "RUNTIME.OUTPUT_BUDGET_EXCEEDED",
                format!(
                    "output: the engine wrote {total} bytes in its output directory (largest file {largest} bytes), past its output budget of {out_budget} bytes"
                ),
            ));
        }
        let completion = parse_completion(&outcome)?;
        if let Termination::Exited(c) = outcome.termination
            && c != 0
        {
            return Err(fail(
                "PROC_EXIT_FAILURE",
                with_tail(&outcome, format!("the engine exited with status {c}")),
            ));
        }
        ingest_completion(
            ctx,
            &CompletionRules {
                engine_id: &self.engine_id,
                catalogue: &self.catalogue,
                outputs: &info.outputs,
            },
            &completion,
            &out_dir,
            &outcome.stderr,
        )
    }
}

/// What the shared completion checks know of the engine that answered: its
/// id, its failure-code catalogue and the outputs the operation declares.
/// Every engine speaking `mex-engine-1` (process and wasm) goes through
/// [`parse_completion_bytes`] and [`ingest_completion`], so one SDK serves
/// both.
#[derive(Debug, Clone, Copy)]
pub struct CompletionRules<'a> {
    /// The engine that answered.
    pub engine_id: &'a EngineId,
    /// Its failure codes (text form).
    pub catalogue: &'a BTreeSet<String>,
    /// The outputs the operation declares.
    pub outputs: &'a [OutputDecl],
}

/// After a clean end with a parsed completion: a `failed` status becomes the
/// engine's failure (its catalogue code, or `PROC_UNDECLARED_FAILURE_CODE`);
/// otherwise every claimed output is checked (a plain relative path inside
/// `out_dir`, a regular file, a declared kind and media type, within the
/// output budget together with `stderr`) and required outputs must be
/// claimed. Only then are the environment identifiers recorded (under
/// `engine.`), `stderr` written as the log and the outputs stored. A failure
/// at any step stores nothing.
pub fn ingest_completion<'run>(
    ctx: &ExecutionContext<'run>,
    rules: &CompletionRules<'_>,
    completion: &EngineCompletion,
    out_dir: &Path,
    stderr: &[u8],
) -> Result<Completion<'run>, EngineFailure> {
    if completion.status == CompletionStatus::Failed {
        return Err(engine_failure(rules, completion));
    }
    let op_name = ctx.operation().as_str();
    let dir = cap_std::fs::Dir::open_ambient_dir(out_dir, cap_std::ambient_authority())
        .map_err(|e| fail("PROC_SANDBOX_ERROR", format!("output directory: {e}")))?;
    let budget = ctx.budget().output_bytes.unwrap_or(u64::MAX);
    let mut total: u64 = stderr.len() as u64;
    let mut staged: Vec<(ArtifactKind, MediaType, Vec<u8>)> = Vec::new();
    let mut claimed_types = BTreeSet::new();
    for (i, out) in completion.outputs.iter().enumerate() {
        let (output_type, media) = check_declared(rules.outputs, &out.kind, &out.media_type)
            .map_err(|m| fail("PROC_UNDECLARED_OUTPUT", format!("outputs[{i}]: {m}")))?;
        claimed_types.insert(output_type);
        let bytes = read_output(&dir, &out.file, budget.saturating_sub(total))?;
        total = total.saturating_add(bytes.len() as u64);
        staged.push((artifact_kind(output_type), media, bytes));
    }
    for decl in rules.outputs {
        if !decl.optional && !claimed_types.contains(&decl.output_type) {
            return Err(fail(
                "PROC_OUTPUT_MISSING",
                format!(
                    "{op_name} declares a required {} output, and the completion claims none",
                    type_name(decl.output_type)
                ),
            ));
        }
    }
    for (k, v) in &completion.environment {
        ctx.record_environment(&format!("engine.{k}"), v);
    }
    let write_err = |e: mex_runtime::WriteError| match e {
        mex_runtime::WriteError::BudgetExceeded { .. } => {
            over("RUNTIME.OUTPUT_BUDGET_EXCEEDED", e.to_string())
        }
        other => fail("PROC_SANDBOX_ERROR", other.to_string()),
    };
    if !stderr.is_empty() {
        ctx.write_log(&String::from_utf8_lossy(stderr))
            .map_err(write_err)?;
    }
    for (kind, media, bytes) in staged {
        ctx.write_output(kind, Some(media), &bytes)
            .map_err(write_err)?;
    }
    Ok(ctx.complete())
}

fn engine_failure(rules: &CompletionRules<'_>, completion: &EngineCompletion) -> EngineFailure {
    let Some(err) = &completion.error else {
        return fail(
            "PROC_MALFORMED_COMPLETION",
            "status failed without an error",
        );
    };
    let message: String = err.message.chars().take(2000).collect();
    match err.code.parse::<ErrorCode>() {
        Ok(code) if rules.catalogue.contains(code.as_str()) => EngineFailure {
            code,
            message,
            budget_exceeded: false,
        },
        _ => fail(
            "PROC_UNDECLARED_FAILURE_CODE",
            format!(
                "the engine failed with code {:?}, which is not in {}'s failure codes; its message: {message}",
                err.code.chars().take(128).collect::<String>(),
                rules.engine_id
            ),
        ),
    }
}

fn type_name(t: OutputType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn check_declared(
    outputs: &[OutputDecl],
    kind: &str,
    media: &str,
) -> Result<(OutputType, MediaType), String> {
    let declared: Vec<String> = outputs.iter().map(|o| type_name(o.output_type)).collect();
    let output_type: OutputType =
        serde_json::from_value(serde_json::Value::String(kind.to_owned())).map_err(|_| {
            format!(
                "kind {kind:?} is not an output type (declared: {})",
                declared.join(", ")
            )
        })?;
    let Some(decl) = outputs.iter().find(|o| o.output_type == output_type) else {
        return Err(format!(
            "kind {kind:?} is not declared by this operation (declared: {})",
            declared.join(", ")
        ));
    };
    let media_type: MediaType = media
        .parse()
        .map_err(|_| format!("media type {media:?} is not a media type"))?;
    if !decl.media_types.is_empty() && !decl.media_types.iter().any(|m| m == media_type.as_str()) {
        return Err(format!(
            "media type {media:?} is not one the {kind} output allows ({})",
            decl.media_types.join(", ")
        ));
    }
    Ok((output_type, media_type))
}

fn read_output(dir: &cap_std::fs::Dir, file: &str, max: u64) -> Result<Vec<u8>, EngineFailure> {
    // The store's one set of relative-path rules, in their strict form:
    // the name must already be canonical.
    if let Err(e) = mex_runtime::RelPath::parse_canonical(file) {
        return Err(fail(
            "PROC_OUTPUT_ESCAPE",
            format!(
                "output {file:?} is not a plain relative path inside the output directory: {e}"
            ),
        ));
    }
    match dir.symlink_metadata(file) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(fail(
                "PROC_OUTPUT_ESCAPE",
                format!(
                    "output {file:?} is a symlink; outputs must be regular files in the output directory"
                ),
            ));
        }
        Ok(m) if !m.is_file() => {
            return Err(fail(
                "PROC_OUTPUT_ESCAPE",
                format!("output {file:?} is not a regular file"),
            ));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail(
                "PROC_OUTPUT_MISSING",
                format!("output {file:?} was claimed but is not in the output directory"),
            ));
        }
        Err(e) => {
            return Err(fail(
                "PROC_OUTPUT_ESCAPE",
                format!(
                    "output {file:?} resolves outside the output directory and was not read: {e}"
                ),
            ));
        }
    }
    let f = dir.open(file).map_err(|e| {
        fail(
            "PROC_OUTPUT_ESCAPE",
            format!("output {file:?} resolves outside the output directory and was not read: {e}"),
        )
    })?;
    let mut bytes = Vec::new();
    f.into_std()
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| fail("PROC_SANDBOX_ERROR", format!("output {file:?}: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(over(
            "RUNTIME.OUTPUT_BUDGET_EXCEEDED",
            format!("output {file:?} takes the run past its output budget"),
        ));
    }
    Ok(bytes)
}

/// The largest file and the total size under `dir` (symlinks not
/// followed; at most 10,000 entries looked at).
pub fn dir_usage(dir: &Path) -> (u64, u64) {
    let (mut largest, mut total, mut seen) = (0u64, 0u64, 0usize);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > 10_000 {
                return (largest, total);
            }
            let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                largest = largest.max(m.len());
                total = total.saturating_add(m.len());
            }
        }
    }
    (largest, total)
}

fn with_tail(o: &Outcome, msg: String) -> String {
    let tail = o.stderr_tail(600);
    if tail.is_empty() {
        msg
    } else {
        format!("{msg}; stderr ends: {tail}")
    }
}

fn check_termination(o: &Outcome) -> Result<(), EngineFailure> {
    match o.termination {
        Termination::WallTime => {
            return Err(over(
                "PROC_WALL_TIME_EXCEEDED",
                format!(
                    "wall time: the engine ran past its wall-time budget and was killed after {} ms",
                    o.elapsed.as_millis()
                ),
            ));
        }
        Termination::CpuTime => {
            return Err(over(
                "PROC_CPU_TIME_EXCEEDED",
                "CPU time: the engine used up its CPU-time budget and was killed",
            ));
        }
        Termination::Memory => {
            return Err(over(
                "PROC_MEMORY_EXCEEDED",
                with_tail(
                    o,
                    "memory: the engine allocated past its memory budget".into(),
                ),
            ));
        }
        Termination::Output if o.stdout.len() > MAX_COMPLETION_BYTES => {
            return Err(fail(
                "PROC_COMPLETION_TOO_LARGE",
                format!(
                    "the engine printed more than {MAX_COMPLETION_BYTES} bytes on stdout and was killed; stdout carries one completion document only (write outputs as files, logs on stderr)"
                ),
            ));
        }
        Termination::Output => {
            return Err(over(
                "RUNTIME.OUTPUT_BUDGET_EXCEEDED",
                "output: the engine wrote past its stderr or file-size cap and was killed",
            ));
        }
        Termination::Cancelled => {
            return Err(fail(
                "PROC_CANCELLED",
                "the run was cancelled; the engine's process group was killed",
            ));
        }
        Termination::Processes => {
            return Err(fail(
                "PROC_POLICY_DENIED",
                with_tail(o, "the engine hit the process limit and was stopped".into()),
            ));
        }
        _ => {}
    }
    if let Some(d) = o.denial() {
        return Err(fail(
            "PROC_POLICY_DENIED",
            with_tail(
                o,
                format!("the engine ran into the sandbox ({d:?} refused)"),
            ),
        ));
    }
    if o.stragglers_killed {
        return Err(fail(
            "PROC_POLICY_DENIED",
            "the engine left processes running when it ended; they were killed",
        ));
    }
    if let Termination::Signaled(s) = o.termination {
        return Err(fail(
            "PROC_EXIT_FAILURE",
            with_tail(o, format!("the engine was killed by signal {s}")),
        ));
    }
    Ok(())
}

fn parse_completion(o: &Outcome) -> Result<EngineCompletion, EngineFailure> {
    let ended = match o.termination {
        Termination::Exited(c) => format!("exit status {c}"),
        other => format!("{other:?}"),
    };
    parse_completion_bytes(&o.stdout, &ended, &o.stderr_tail(600))
}

/// Parse an engine's stdout as one `mex-engine-1` completion: at most
/// [`MAX_COMPLETION_BYTES`] (`PROC_COMPLETION_TOO_LARGE`), not empty
/// (`PROC_NO_COMPLETION`; `ended` says how the engine ended) and well
/// formed (`PROC_MALFORMED_COMPLETION`). `stderr_tail` (possibly empty) is
/// quoted in the message.
pub fn parse_completion_bytes(
    stdout: &[u8],
    ended: &str,
    stderr_tail: &str,
) -> Result<EngineCompletion, EngineFailure> {
    let tail = |msg: String| {
        if stderr_tail.is_empty() {
            msg
        } else {
            format!("{msg}; stderr ends: {stderr_tail}")
        }
    };
    if stdout.len() > MAX_COMPLETION_BYTES {
        return Err(fail(
            "PROC_COMPLETION_TOO_LARGE",
            format!(
                "the engine printed {} bytes or more on stdout; a completion is at most {MAX_COMPLETION_BYTES} (write outputs as files, logs on stderr)",
                stdout.len()
            ),
        ));
    }
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Err(fail(
            "PROC_NO_COMPLETION",
            tail(format!(
                "the engine ended ({ended}) without printing a completion on stdout"
            )),
        ));
    }
    EngineCompletion::from_slice(stdout)
        .map_err(|e| fail("PROC_MALFORMED_COMPLETION", tail(e.to_string())))
}

fn record(
    ctx: &ExecutionContext<'_>,
    outcome: &Outcome,
    limits: &Limits,
    program: &Path,
    network: bool,
    code_digest: &Sha256Digest,
) {
    let e = &outcome.enforcement;
    ctx.record_environment("process.protocol", "mex-engine-1");
    ctx.record_environment("process.sha256", &code_digest.to_string());
    ctx.record_environment("sandbox.kernel", &mex_sandbox::kernel_release());
    ctx.record_environment("sandbox.landlock_abi", &e.landlock_abi.to_string());
    ctx.record_environment("sandbox.degraded", &e.degraded.to_string());
    ctx.record_environment("sandbox.network", &network.to_string());
    ctx.record_environment("sandbox.program", &program.display().to_string());
    for (k, v) in limits.identifiers() {
        ctx.record_environment(k, &v);
    }
}
