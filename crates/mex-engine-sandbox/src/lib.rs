//! # mex-engine-sandbox: `engine.sandbox` and its `G-SAFETY.SANDBOX` gate
//!
//! Owns the `engine.sandbox` implementation (`mex-engine-sandbox` 0.1.0):
//! `sandbox.run_shell` (bash), `sandbox.run_python` (the machine's
//! `/usr/bin/python3`, never a user's shim), `sandbox.run_js` (node, when
//! installed; otherwise refused by the gate with
//! `G-SAFETY.SANDBOX.INTERPRETER_UNAVAILABLE`), the [`SandboxGate`], and the
//! mapping of sandbox outcomes to `SBOX_*` codes.
//!
//! Does not own: OS confinement (mex-sandbox), admission (mex-gates),
//! storage, recording or EngineResult assembly (mex-runtime).
//!
//! ## One run
//!
//! 1. Re-check what the gate checked (defence in depth): interpreter on the
//!    allowlist, `proc.exec:<interpreter>` granted.
//! 2. Read the script, the output spec and (run_shell) the command allowlist
//!    through the context; every command must be on the engine's trusted
//!    ceiling ([`SandboxEngineConfig::shell_commands`]) or the run is
//!    refused (`SBOX_POLICY_DENIED`).
//! 3. Make a per-run jail under [`SandboxEngineConfig::jail_root`]: `in/`
//!    (root-owned, read-only to the child: the script and the inputs, named
//!    by artifact id) and `work/` (the child's only writable tree, its cwd
//!    and `HOME`). The jail is deleted after the run. (The runtime's shadow
//!    workspace is private to the runtime's uid, so the unprivileged child
//!    gets this sibling jail instead.) A jail is locked while its run lives
//!    (`mex_runtime::reclaim::LiveDir`); jails of runs whose process was
//!    killed are removed when an engine starts ([`reclaim_jails`], also run
//!    by `mex gc`), never those of live runs.
//! 4. Run the interpreter through [`mex_sandbox::run`], killed before the
//!    run's deadline; network only when `net.http` was granted.
//! 5. Map the outcome (table below). On success, collect the bundle:
//!    stdout, stderr and every declared file (opened with cap-std below
//!    `work/`, so a symlink out of the workspace is refused, not followed).
//! 6. Record environment identifiers (kernel, Landlock ABI, limits, uid).
//!
//! ## Output spec (`output_spec_ref`, JSON)
//!
//! `{"stdout": "path", "stderr": "path", "files": ["path", ...]}`, all
//! optional (defaults `stdout.txt`, `stderr.txt`, no files); at most 64
//! files. Paths follow the artifact store's rules (mex-artifacts' `path`
//! module, through `mex_runtime::BundleBuilder`): relative, `/`-separated,
//! no `.`/`..`, no control, bidirectional or invisible characters; stored
//! under their NFC form; two paths that are the same name after
//! normalization, case folding or compatibility folding are refused. They
//! are checked before the script runs and again when the index is built.
//!
//! ## Outputs: a canonical bundle
//!
//! The store reserves kind `bundle` for directory ingests, so the bundle is
//! written through the context as: first output, the canonical
//! [`BundleIndex`] (RFC 8785 bytes, kind `report`, media type
//! [`BUNDLE_INDEX_MEDIA_TYPE`]) whose content hash *is* the bundle hash
//! ([`BundleIndex::content_hash`]); then one output per entry in path order
//! (stdout/stderr `tool_output` `text/plain`, files `file`).
//!
//! ## Codes
//!
//! | outcome | status | code |
//! |---|---|---|
//! | exit 0, no refusal on stderr | succeeded | |
//! | wall time reached (killed) | budget_exceeded | `SBOX_TIMEOUT`, message `wall time: ...` |
//! | CPU limit reached | budget_exceeded | `SBOX_TIMEOUT`, message `CPU time: ...` |
//! | address-space limit reached | budget_exceeded | `SBOX_RUNTIME_ERROR`, message `memory budget: ...` |
//! | stdout/stderr cap or file-size limit reached (killed) | budget_exceeded | `SBOX_RUNTIME_ERROR`, message `output budget: ...` |
//! | a file refusal on stderr (read or write outside, symlink out), or a declared output that escapes `work/` | failed | `SBOX_FS_ESCAPE_DETECTED` |
//! | a network or exec refusal on stderr, the process limit (fork bomb), processes left running after the script ended, a command off the ceiling, a bad output spec, no confinement | failed | `SBOX_POLICY_DENIED` |
//! | any other non-zero exit or signal, a declared file missing | failed | `SBOX_RUNTIME_ERROR` |
//!
//! The spec declares exactly four `SBOX_*` codes (the registry test pins
//! the totals), so memory and output overruns use `SBOX_RUNTIME_ERROR` with
//! status `budget_exceeded` and a message naming the budget; the typed
//! [`Termination`] is what mex-sandbox reports.
//!
//! A refusal seen on stderr fails the run even when the script exits 0:
//! an escape attempt is never a success. The kernel is the fence; reading
//! stderr only *names* the refusal.
//!
//! ## Limits
//!
//! The child's CPU and memory limits are the op's resolved budget
//! (`ExecutionContext::budget()`, admitted by G-BUDGET) capped by the trusted
//! [`SandboxEngineConfig::limits`]: an op can ask for less than the host
//! allows, never more.

mod gate;

pub use gate::{DEFAULT_INTERPRETERS, GATE_CODES, SandboxGate, interpreter_of};

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mex_envelope::{ArtifactKind, BundleIndex, CapabilityKind, EngineId, Sha256Digest};
use mex_runtime::{Completion, Engine, EngineFailure, ExecutionContext};
use mex_sandbox::{Confinement, Denial, Limits, Outcome, Request, SandboxConfig, Termination};
use serde_json::Value;

/// Media type of the bundle index output.
pub const BUNDLE_INDEX_MEDIA_TYPE: &str = "application/vnd.mex.bundle-index+json";

/// Extra address space granted to node for V8's up-front reservations.
pub const NODE_RESERVATION_BYTES: u64 = 1 << 30;

/// The failure codes this engine reports.
pub const FAILURE_CODES: &[&str] = &[
    "SBOX_POLICY_DENIED",
    "SBOX_RUNTIME_ERROR",
    "SBOX_TIMEOUT",
    "SBOX_FS_ESCAPE_DETECTED",
];

/// Errors building the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxEngineError {
    /// The jail root could not be prepared.
    #[error(
        "cannot prepare the sandbox jail root {path}: {source}; choose a jail_root on a local filesystem whose ancestors the sandbox uid can traverse (e.g. under /tmp)"
    )]
    JailRoot {
        /// The jail root.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A bug: a constant failed to parse.
    #[error("internal error building engine.sandbox: {0}; please report it")]
    Internal(String),
}

/// Trusted configuration of the engine (host operator's, never the op's).
#[derive(Debug, Clone)]
pub struct SandboxEngineConfig {
    /// Launcher and uid.
    pub sandbox: SandboxConfig,
    /// Where per-run jails are made (mode 0711).
    pub jail_root: PathBuf,
    /// Limits of every child (see the crate docs' known gap).
    pub limits: Limits,
    /// The commands a `sandbox.run_shell` allowlist may name.
    pub shell_commands: Vec<String>,
    /// Trusted policy's `degraded.sandbox_without_landlock`.
    pub allow_degraded: bool,
}

impl Default for SandboxEngineConfig {
    fn default() -> Self {
        Self {
            sandbox: SandboxConfig::default(),
            jail_root: std::env::temp_dir().join("mex-sandbox"),
            limits: Limits {
                memory_bytes: 512 << 20,
                cpu_time_ms: 10_000,
                ..Limits::default()
            },
            shell_commands: [
                "cat",
                "ls",
                "head",
                "tail",
                "wc",
                "sort",
                "uniq",
                "cut",
                "tr",
                "grep",
                "sed",
                "mkdir",
                "cp",
                "mv",
                "rm",
                "tee",
                "basename",
                "dirname",
                "date",
                "sleep",
                "true",
                "false",
                "printf",
                "seq",
                "ln",
                "touch",
                "sha256sum",
                "id",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
            allow_degraded: false,
        }
    }
}

impl SandboxEngineConfig {
    /// Take the degraded switch from the trusted policy
    /// (`degraded.sandbox_without_landlock`): the one place it may come from.
    pub fn with_policy(mut self, policy: &mex_gates::CapabilityPolicy) -> Self {
        self.allow_degraded = policy.degraded.sandbox_without_landlock;
        self
    }
}

/// The `engine.sandbox` implementation.
pub struct SandboxEngine {
    id: EngineId,
    config: SandboxEngineConfig,
    reclaimed: mex_runtime::reclaim::Reclaimed,
}

impl SandboxEngine {
    /// Build the engine; creates the jail root (0711).
    pub fn new(config: SandboxEngineConfig) -> Result<Self, SandboxEngineError> {
        let jail_err = |source| SandboxEngineError::JailRoot {
            path: config.jail_root.clone(),
            source,
        };
        #[expect(
            clippy::disallowed_methods,
            reason = "the jail root is the sandbox engine's own directory on the host"
        )]
        std::fs::create_dir_all(&config.jail_root).map_err(jail_err)?;
        std::fs::set_permissions(&config.jail_root, std::fs::Permissions::from_mode(0o711))
            .map_err(jail_err)?;
        let reclaimed = reclaim_jails(&config.jail_root).map_err(jail_err)?;
        let id = "engine.sandbox"
            .parse()
            .map_err(|e: mex_envelope::EnvelopeError| {
                SandboxEngineError::Internal(e.to_string())
            })?;
        Ok(Self {
            id,
            config,
            reclaimed,
        })
    }

    /// Jails of dead runs that building this engine removed.
    pub fn reclaimed_at_open(&self) -> &mex_runtime::reclaim::Reclaimed {
        &self.reclaimed
    }

    /// Where the per-run jails are made.
    pub fn jail_root(&self) -> &Path {
        &self.config.jail_root
    }

    /// The gate to install with this engine (same launcher, uid and
    /// degraded switch).
    pub fn gate(&self) -> SandboxGate {
        SandboxGate::new(
            &self.config.sandbox,
            DEFAULT_INTERPRETERS,
            self.config.allow_degraded,
        )
    }
}

fn policy(msg: impl Into<String>) -> EngineFailure {
    EngineFailure::new("SBOX_POLICY_DENIED", msg)
}

fn runtime_error(msg: impl Into<String>) -> EngineFailure {
    EngineFailure::new("SBOX_RUNTIME_ERROR", msg)
}

/// The parsed output spec.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputSpecDoc {
    #[serde(default)]
    stdout: Option<String>,
    #[serde(default)]
    stderr: Option<String>,
    #[serde(default)]
    files: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandAllowlist {
    commands: Vec<String>,
}

/// Check the output spec's paths with the store's path rules before the
/// run (bundle entry names: NFC, no bidi controls or invisible characters,
/// no twins); the index is built with the same rules afterwards.
fn check_bundle_paths(paths: &[String]) -> Result<(), EngineFailure> {
    let mut builder = mex_runtime::BundleBuilder::new(false);
    for p in paths {
        builder
            .add(p, Sha256Digest::of(b""), 0)
            .map_err(|e| policy(format!("output spec path {p:?}: {e}; fix the output spec")))?;
    }
    Ok(())
}

/// Prefix of per-run jail directories under the jail root.
#[doc(hidden)]
pub const JAIL_PREFIX: &str = "run-";

/// Remove the jails of runs that are over but were not cleaned up (their
/// process was killed): every `run-*` directory under `jail_root` that no
/// live run holds (see `mex_runtime::reclaim`).
#[doc(hidden)]
pub fn reclaim_jails(jail_root: &Path) -> std::io::Result<mex_runtime::reclaim::Reclaimed> {
    mex_runtime::reclaim::reclaim(jail_root, |name| name.starts_with(JAIL_PREFIX))
}

fn media_for(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("json") => "application/json",
        Some("txt" | "log" | "md") => "text/plain",
        Some("csv") => "text/csv",
        _ => "application/octet-stream",
    }
}

impl Engine for SandboxEngine {
    /// Its work runs in a sandboxed child it supervises.
    fn execution(&self) -> mex_runtime::Execution {
        mex_runtime::Execution::Supervised
    }

    fn engine_id(&self) -> EngineId {
        self.id.clone()
    }

    fn implementation_id(&self) -> &str {
        "mex-engine-sandbox"
    }

    fn implementation_version(&self) -> semver::Version {
        semver::Version::new(0, 1, 0)
    }

    fn execute<'run>(
        &self,
        ctx: &ExecutionContext<'run>,
    ) -> Result<Completion<'run>, EngineFailure> {
        let operation = ctx.operation().as_str().to_owned();
        let (interpreter, ext) = match operation.as_str() {
            "sandbox.run_python" => ("python3".to_owned(), "py"),
            "sandbox.run_js" => ("node".to_owned(), "js"),
            "sandbox.run_shell" => (
                ctx.params()
                    .get("shell")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                "sh",
            ),
            other => return Err(policy(format!("{other} is not a sandbox operation"))),
        };
        if !DEFAULT_INTERPRETERS.contains(&interpreter.as_str()) || interpreter == "pwsh" {
            return Err(policy(format!(
                "interpreter {interpreter:?} is not allowlisted"
            )));
        }
        let granted = |kind: CapabilityKind, scope: Option<&str>| {
            ctx.capabilities().iter().any(|c| {
                c.kind() == kind
                    && scope
                        .is_none_or(|s| c.scope().unwrap_or_default().split(',').any(|x| x == s))
            })
        };
        if !granted(CapabilityKind::ProcExec, Some(&interpreter)) {
            return Err(policy(format!(
                "proc.exec:{interpreter} was not granted to this run"
            )));
        }
        let network = granted(CapabilityKind::NetHttp, None);
        let program =
            mex_sandbox::resolve_executable(&interpreter).map_err(|e| policy(format!("{e}")))?;

        // Inputs through the context.
        let read = |param: &str| {
            ctx.read_param_input(param)
                .map_err(|e| runtime_error(format!("params.{param}: {e}")))
        };
        let script = read("script_ref")?;
        let spec: OutputSpecDoc =
            serde_json::from_slice(&read("output_spec_ref")?).map_err(|e| {
                policy(format!(
                    "output spec is not {{\"stdout\"?, \"stderr\"?, \"files\"?}}: {e}"
                ))
            })?;
        let stdout_path = spec.stdout.clone().unwrap_or_else(|| "stdout.txt".into());
        let stderr_path = spec.stderr.clone().unwrap_or_else(|| "stderr.txt".into());
        if spec.files.len() > 64 {
            return Err(policy("output spec declares more than 64 files"));
        }
        let mut all_paths = vec![stdout_path.clone(), stderr_path.clone()];
        all_paths.extend(spec.files.iter().cloned());
        check_bundle_paths(&all_paths)?;
        let mut executables = vec![program.clone()];
        if operation == "sandbox.run_shell" {
            let list: CommandAllowlist = serde_json::from_slice(&read("command_allowlist_ref")?)
                .map_err(|e| {
                    policy(format!(
                        "command allowlist is not {{\"commands\": [..]}}: {e}"
                    ))
                })?;
            for command in &list.commands {
                if !self.config.shell_commands.iter().any(|c| c == command) {
                    return Err(policy(format!(
                        "command {command:?} in the command allowlist is not on this host's sandbox ceiling ({})",
                        self.config.shell_commands.join(", ")
                    )));
                }
                executables.push(
                    mex_sandbox::resolve_executable(command).map_err(|e| policy(e.to_string()))?,
                );
            }
        }
        executables.extend(mex_sandbox::dynamic_loaders());

        // The jail: live (locked) while this run lasts, removed when it
        // ends, reclaimed by the next engine start if this process dies.
        let io = |what: &str, e: std::io::Error| {
            runtime_error(format!("cannot prepare the sandbox jail ({what}): {e}"))
        };
        let jail = mex_runtime::reclaim::LiveDir::create(&self.config.jail_root, JAIL_PREFIX)
            .map_err(|e| io("run dir", e))?;
        let root = jail.path().to_path_buf();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| io("run dir", e))?;
        let in_dir = root.join("in");
        let work = root.join("work");
        std::fs::create_dir(&in_dir).map_err(|e| io("in", e))?;
        std::fs::set_permissions(&in_dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io("in", e))?;
        let script_path = in_dir.join(format!("script.{ext}"));
        write_ro(&script_path, &script).map_err(|e| io("script", e))?;
        if let Some(ids) = ctx.params().get("inputs").and_then(Value::as_array) {
            for id in ids.iter().filter_map(Value::as_str) {
                let handle = ctx
                    .inputs()
                    .iter()
                    .find(|h| h.artifact_id.to_string() == id)
                    .cloned()
                    .ok_or_else(|| {
                        runtime_error(format!(
                            "params.inputs names {id}, which is not an input of this run"
                        ))
                    })?;
                let bytes = ctx
                    .read_input(&handle)
                    .map_err(|e| runtime_error(format!("input {id}: {e}")))?;
                write_ro(&in_dir.join(id), &bytes).map_err(|e| io("input", e))?;
            }
        }
        mex_sandbox::prepare_workdir(&self.config.sandbox, &work)
            .map_err(|e| runtime_error(format!("cannot prepare the workspace: {e}")))?;

        // The op's resolved budget tightens the trusted limits, never loosens them.
        let mut limits = self.config.limits;
        if let Some(memory) = ctx.budget().memory_bytes {
            limits.memory_bytes = limits.memory_bytes.min(memory);
        }
        if let Some(cpu) = ctx.budget().cpu_time_ms {
            limits.cpu_time_ms = limits.cpu_time_ms.min(cpu);
        }
        let args: Vec<std::ffi::OsString> = match interpreter.as_str() {
            "python3" => vec!["-I".into(), "-B".into(), script_path.clone().into()],
            "bash" => vec![
                "--noprofile".into(),
                "--norc".into(),
                script_path.clone().into(),
            ],
            _ => {
                // V8 reserves about 1 GiB of address space up front (code
                // range, cage) that it never touches: the heap is capped by
                // V8's own flag at the memory limit, the address space at the
                // limit plus that reservation.
                let heap_mib = (limits.memory_bytes >> 20).max(16);
                limits.memory_bytes = limits.memory_bytes.saturating_add(NODE_RESERVATION_BYTES);
                vec![
                    format!("--max-old-space-size={heap_mib}").into(),
                    script_path.clone().into(),
                ]
            }
        };
        let now = Instant::now();
        let remaining = ctx.deadline().saturating_duration_since(now);
        let margin = (remaining / 10).min(Duration::from_millis(100));
        let mut read_only = mex_sandbox::system_read_only_paths();
        read_only.push(in_dir.clone());
        let mut read_write = vec![work.clone()];
        read_write.extend(mex_sandbox::system_read_write_paths());
        let work_s = work.display().to_string();
        let request = Request {
            program: program.clone(),
            args,
            workdir: work.clone(),
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("HOME".into(), work_s.clone()),
                ("TMPDIR".into(), work_s),
                ("LANG".into(), "C.UTF-8".into()),
                ("LC_ALL".into(), "C.UTF-8".into()),
                ("TZ".into(), "UTC".into()),
                ("PYTHONHASHSEED".into(), "0".into()),
                ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
                ("MEX_INPUT_DIR".into(), in_dir.display().to_string()),
            ],
            limits,
            confinement: Confinement {
                read_only,
                read_write,
                executables,
                network,
                allow_degraded: self.config.allow_degraded,
            },
            deadline: now + remaining.saturating_sub(margin),
        };
        let outcome = match mex_sandbox::run_cancellable(
            &self.config.sandbox,
            &request,
            &ctx.cancellation(),
        ) {
            Ok(o) => o,
            Err(mex_sandbox::SandboxError::ConfinementUnavailable { reason }) => {
                return Err(policy(format!(
                    "the sandbox could not confine the child and refused to run it (fail closed): {reason}"
                )));
            }
            Err(e) => return Err(runtime_error(e.to_string())),
        };
        record(ctx, &outcome, &limits, &program, network);
        check_outcome(&outcome)?;

        // Collect the bundle.
        let mut entries: Vec<(String, ArtifactKind, &'static str, Vec<u8>)> = vec![
            (
                stdout_path,
                ArtifactKind::ToolOutput,
                "text/plain",
                outcome.stdout.clone(),
            ),
            (
                stderr_path,
                ArtifactKind::ToolOutput,
                "text/plain",
                outcome.stderr.clone(),
            ),
        ];
        let dir = cap_std::fs::Dir::open_ambient_dir(&work, cap_std::ambient_authority())
            .map_err(|e| runtime_error(format!("cannot open the workspace: {e}")))?;
        for file in &spec.files {
            entries.push((
                file.clone(),
                ArtifactKind::File,
                media_for(file),
                read_declared(&dir, file, self.config.limits.file_size_bytes)?,
            ));
        }
        drop(jail);
        // The index through the store's path rules: entries named in NFC,
        // twins refused, sorted by bytes; outputs follow in that order.
        let mut builder = mex_runtime::BundleBuilder::new(false);
        let mut named = Vec::with_capacity(entries.len());
        for (path, kind, media, bytes) in entries {
            let rel = builder
                .add(&path, Sha256Digest::of(&bytes), bytes.len() as u64)
                .map_err(|e| policy(format!("output path {path:?}: {e}")))?;
            named.push((rel.as_str().to_owned(), kind, media, bytes));
        }
        named.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let entries = named;
        let index: BundleIndex = builder.finish();
        let index_bytes = mex_envelope::canonical::to_vec(&index)
            .map_err(|e| runtime_error(format!("cannot serialize the bundle index: {e}")))?;
        let write_err =
            |e: mex_runtime::WriteError| runtime_error(format!("cannot write an output: {e}"));
        ctx.write_output(
            ArtifactKind::Report,
            BUNDLE_INDEX_MEDIA_TYPE.parse().ok(),
            &index_bytes,
        )
        .map_err(write_err)?;
        for (_, kind, media, bytes) in &entries {
            ctx.write_output(*kind, media.parse().ok(), bytes)
                .map_err(write_err)?;
        }
        Ok(ctx.complete())
    }
}

#[expect(
    clippy::disallowed_methods,
    reason = "the sandbox engine builds each run's jail on the host: this is the boundary, not an engine reaching past it"
)]
fn write_ro(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444))
}

fn read_declared(dir: &cap_std::fs::Dir, path: &str, max: u64) -> Result<Vec<u8>, EngineFailure> {
    let file = match dir.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(runtime_error(format!(
                "declared output {path:?} was not produced by the script"
            )));
        }
        Err(e) => {
            return Err(EngineFailure::new(
                "SBOX_FS_ESCAPE_DETECTED",
                format!(
                    "declared output {path:?} resolves outside the workspace (symlink or special file) and was not read: {e}"
                ),
            ));
        }
    };
    let meta = file
        .metadata()
        .map_err(|e| runtime_error(format!("declared output {path:?}: {e}")))?;
    if !meta.is_file() {
        return Err(EngineFailure::new(
            "SBOX_FS_ESCAPE_DETECTED",
            format!("declared output {path:?} is not a regular file"),
        ));
    }
    let mut bytes = Vec::new();
    file.into_std()
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| runtime_error(format!("declared output {path:?}: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(EngineFailure::over_budget(
            "SBOX_RUNTIME_ERROR",
            format!("declared output {path:?} is larger than the {max}-byte file limit"),
        ));
    }
    Ok(bytes)
}

fn record(
    ctx: &ExecutionContext<'_>,
    outcome: &Outcome,
    limits: &Limits,
    program: &Path,
    network: bool,
) {
    let e = &outcome.enforcement;
    ctx.record_environment("sandbox.kernel", &mex_sandbox::kernel_release());
    ctx.record_environment("sandbox.landlock_abi", &e.landlock_abi.to_string());
    ctx.record_environment(
        "sandbox.landlock_fully_enforced",
        &e.fully_enforced.to_string(),
    );
    ctx.record_environment("sandbox.no_new_privs", &e.no_new_privs.to_string());
    ctx.record_environment("sandbox.degraded", &e.degraded.to_string());
    ctx.record_environment("sandbox.network", &network.to_string());
    ctx.record_environment("sandbox.interpreter", &program.display().to_string());
    if let Some((uid, gid)) = e.run_as {
        ctx.record_environment("sandbox.run_as", &format!("{uid}:{gid}"));
    }
    for (k, v) in limits.identifiers() {
        ctx.record_environment(k, &v);
    }
}

fn check_outcome(o: &Outcome) -> Result<(), EngineFailure> {
    let tail = o.stderr_tail(600);
    let with_tail = |msg: String| {
        if tail.is_empty() {
            msg
        } else {
            format!("{msg}; stderr ends: {tail}")
        }
    };
    match o.termination {
        Termination::WallTime => {
            return Err(EngineFailure::over_budget(
                "SBOX_TIMEOUT",
                format!(
                    "wall time: the script ran past its wall time and was killed after {} ms",
                    o.elapsed.as_millis()
                ),
            ));
        }
        Termination::CpuTime => {
            return Err(EngineFailure::over_budget(
                "SBOX_TIMEOUT",
                "CPU time: the script used up its CPU time limit and was killed",
            ));
        }
        Termination::Memory => {
            return Err(EngineFailure::over_budget(
                "SBOX_RUNTIME_ERROR",
                with_tail("memory budget: the script allocated past its memory limit".into()),
            ));
        }
        Termination::Output => {
            return Err(EngineFailure::over_budget(
                "SBOX_RUNTIME_ERROR",
                "output budget: the script printed or wrote past its output limit and was killed",
            ));
        }
        Termination::Cancelled => {
            return Err(runtime_error(
                "the run was cancelled; the script's process group was killed",
            ));
        }
        Termination::Processes => {
            return Err(policy(with_tail(
                "the script hit the process limit (fork bomb?) and was stopped".into(),
            )));
        }
        _ => {}
    }
    match o.denial() {
        Some(Denial::Filesystem) => {
            return Err(EngineFailure::new(
                "SBOX_FS_ESCAPE_DETECTED",
                with_tail(format!(
                    "the script tried to reach a file outside its workspace and was refused ({:?})",
                    o.termination
                )),
            ));
        }
        Some(Denial::Network) => {
            return Err(policy(with_tail(format!(
                "the script tried to use the network without net.http and was refused ({:?})",
                o.termination
            ))));
        }
        Some(Denial::Exec) => {
            return Err(policy(with_tail(format!(
                "the script tried to execute a program off the allowlist and was refused ({:?})",
                o.termination
            ))));
        }
        _ => {}
    }
    if o.stragglers_killed {
        return Err(policy(with_tail(
            "the script left processes running when it ended (background jobs or a fork bomb); they were killed, and a sandboxed run must not leave processes behind".into(),
        )));
    }
    match o.termination {
        Termination::Exited(0) => Ok(()),
        Termination::Exited(c) => Err(runtime_error(with_tail(format!(
            "the script exited with status {c}"
        )))),
        Termination::Signaled(s) => Err(runtime_error(with_tail(format!(
            "the script was killed by signal {s}"
        )))),
        other => Err(runtime_error(format!("the script ended as {other:?}"))),
    }
}
