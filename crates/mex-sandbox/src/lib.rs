//! # mex-sandbox: run one untrusted child process under OS confinement
//!
//! Owns the reusable way an engine runs a child process: an environment
//! cleared down to an allowlist, the working directory the caller gives (the
//! run's workspace), stdin null (or given bytes, [`run_with_stdin`]), stdout and stderr captured with caps,
//! rlimits (address space, CPU time, file size, open files, processes), a new
//! process group killed on wall-time expiry, on output overrun and on drop,
//! `no_new_privs`, and Landlock (read-only paths, one read-write tree,
//! execute only for allowlisted binaries, TCP bind/connect denied unless the
//! network was granted). Budget overruns come back as typed
//! [`Termination`]s.
//!
//! Does not own: deciding *what* may run (the engine's gate and the trusted
//! policy do), staging inputs or collecting outputs as artifacts (the
//! engine, through the runtime's context), or recording (the runtime).
//!
//! ## How confinement is applied without `unsafe`
//!
//! `CommandExt::pre_exec` is `unsafe`, which the workspace forbids. So the
//! confinement runs in a separate **launcher** binary, `mex-sandbox-exec`
//! (this crate's `[[bin]]`, code in [`launcher`]): the parent spawns it with
//! the cleared environment, the new process group and (when the parent is
//! root) an unprivileged uid/gid. The launcher stays as a small supervisor
//! and starts a confined copy of itself, which sets a parent-death signal,
//! the rlimits, the Landlock ruleset (which sets `no_new_privs`), writes one
//! header line to stderr (stripped by the parent) and `exec`s the target. Where Landlock is
//! missing or older than ABI 4, the launcher refuses (fail closed) unless
//! [`Confinement::allow_degraded`] is set, and the outcome says degraded.
//!
//! The launcher is found by [`find_launcher`]: `$MEX_SANDBOX_EXEC` if set,
//! else `mex-sandbox-exec` next to the current executable or in its parent
//! directory (cargo puts test binaries in `target/*/deps/`). Callers may
//! also give an explicit path in [`SandboxConfig::launcher`].
//!
//! ## Supervision
//!
//! Nothing sandboxed outlives this process or its deadline, however this
//! process ends (SIGKILL included): the launcher's stdin is a *lifeline*
//! pipe whose only writer is this process; when it closes (a stop asked
//! here, or this process died) the launcher kills the program and sweeps
//! every process below it, as their subreaper, including any that left the
//! process group with `setsid`. The launcher also enforces the deadline
//! itself ([`launcher::DEADLINE_GRACE`] after it), and the confined program
//! has a parent-death signal tied to the launcher. A stop (deadline, output
//! cap) closes the lifeline first and kills the group from here only if the
//! launcher has not finished after a grace period. The launcher's last
//! stderr line (a trailer, stripped) says how the program ended and whether
//! processes were left behind. See [`launcher`] for the details.
//!
//! The parent waits for the launcher's exit with `waitid(WNOWAIT)` on a
//! waiter thread (no polling), so the leader stays a zombie, and its pid,
//! which is the group id, stays reserved, until every kill of the group is
//! done; only then is it reaped. A group is never signalled once seen
//! empty (the id could be reused). Processes still in the group when the
//! main process ends are killed and reported
//! ([`Outcome::stragglers_killed`]). The first [`run`] makes the calling
//! process a *child subreaper* (`PR_SET_CHILD_SUBREAPER`), so orphans of a
//! sandboxed group are re-parented to it and reaped here rather than left
//! as zombies under an init that may not reap (zombies would keep counting
//! against `RLIMIT_NPROC`). A host that runs other daemonizing children
//! inherits their orphans too.
//!
//! ## Known limits (documented, not hidden)
//!
//! * `RLIMIT_NPROC` does not bind uid 0, so a root parent runs the child as
//!   [`SandboxConfig::run_as`] (default 65534:65534); the limit counts every
//!   process of that uid.
//! * `RLIMIT_CPU` has one-second granularity: CPU budgets are rounded up to
//!   whole seconds.
//! * Memory is an address-space limit (cgroups here are v1); an allocation
//!   past it fails inside the child. Classifying that failure as
//!   [`Termination::Memory`] reads the child's stderr for the usual
//!   out-of-memory messages, so it is a classification, not the fence.
//! * Landlock (ABI <= 7) does not cover UDP: without the network, the
//!   launcher is started through `unshare --net --map-current-user`
//!   ([`SandboxConfig::netns_helper`]), an empty network namespace, so UDP
//!   and raw sockets have nowhere to go either. Without that helper only
//!   TCP is denied ([`Enforcement::network_namespace`] says which).
//!   Abstract unix sockets and signals are scoped (ABI 6).

#[doc(hidden)]
pub mod launcher;

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

/// What went wrong setting up or supervising a sandboxed child. Budget
/// overruns and denials are *not* errors: they are [`Termination`]s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The launcher binary was not found.
    #[error(
        "the sandbox launcher `mex-sandbox-exec` was not found (looked in {looked}); build it (`cargo build -p mex-sandbox`), install it next to the executable, or set MEX_SANDBOX_EXEC"
    )]
    LauncherNotFound {
        /// Where it was looked for.
        looked: String,
    },
    /// The launcher could not be spawned.
    #[error(
        "cannot start the sandbox launcher {launcher}: {source}; check it exists and is executable"
    )]
    Spawn {
        /// The launcher path.
        launcher: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The launcher refused to run: confinement could not be applied (e.g.
    /// no Landlock and degraded mode not allowed).
    #[error("the sandbox refused to start the child: {reason}")]
    ConfinementUnavailable {
        /// The launcher's reason.
        reason: String,
    },
    /// An executable was not found on the trusted search path.
    #[error(
        "executable {name:?} not found in {searched}; install it or remove it from the allowlist"
    )]
    ExecutableNotFound {
        /// The name asked for.
        name: String,
        /// The directories searched.
        searched: String,
    },
    /// Supervising the child failed (wait, pipes).
    #[error("supervising the sandboxed child failed: {0}")]
    Supervise(#[from] std::io::Error),
}

/// Resource limits of one child. Every field is enforced by the kernel
/// (rlimits) or by the supervising parent (wall time via the deadline,
/// capture caps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Address-space limit (`RLIMIT_AS`), bytes.
    pub memory_bytes: u64,
    /// CPU time (`RLIMIT_CPU`), milliseconds, rounded up to whole seconds.
    pub cpu_time_ms: u64,
    /// Largest file the child may write (`RLIMIT_FSIZE`), bytes.
    pub file_size_bytes: u64,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    pub open_files: u64,
    /// Processes of the child's uid (`RLIMIT_NPROC`).
    pub processes: u64,
    /// Captured stdout bytes; more kills the child ([`Termination::Output`]).
    pub stdout_bytes: u64,
    /// Captured stderr bytes; more kills the child ([`Termination::Output`]).
    pub stderr_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 512 << 20,
            cpu_time_ms: 10_000,
            file_size_bytes: 64 << 20,
            open_files: 256,
            processes: 64,
            stdout_bytes: 16 << 20,
            stderr_bytes: 1 << 20,
        }
    }
}

impl Limits {
    /// `key=value` identifiers for provenance.
    pub fn identifiers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("sandbox.limit.memory_bytes", self.memory_bytes.to_string()),
            (
                "sandbox.limit.cpu_time_s",
                cpu_seconds(self.cpu_time_ms).to_string(),
            ),
            (
                "sandbox.limit.file_size_bytes",
                self.file_size_bytes.to_string(),
            ),
            ("sandbox.limit.open_files", self.open_files.to_string()),
            ("sandbox.limit.processes", self.processes.to_string()),
            ("sandbox.limit.stdout_bytes", self.stdout_bytes.to_string()),
            ("sandbox.limit.stderr_bytes", self.stderr_bytes.to_string()),
        ]
    }
}

fn cpu_seconds(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

/// What the child may touch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    /// Read-only trees or files (inputs, system paths). See
    /// [`system_read_only_paths`].
    pub read_only: Vec<PathBuf>,
    /// Read-write trees (the workspace). Never executable.
    pub read_write: Vec<PathBuf>,
    /// The only files that may be `exec`ed (absolute, resolved paths). See
    /// [`resolve_executable`].
    pub executables: Vec<PathBuf>,
    /// TCP bind and connect allowed (only when `net.http` was granted).
    pub network: bool,
    /// Run without Landlock where the kernel lacks it (trusted policy's
    /// `degraded.sandbox_without_landlock`); the outcome says degraded.
    pub allow_degraded: bool,
}

/// Trusted, per-host configuration of the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// The launcher; `None` = [`find_launcher`].
    pub launcher: Option<PathBuf>,
    /// uid/gid the child runs as when the parent is root (so that
    /// `RLIMIT_NPROC` binds and the child owns nothing). Ignored when the
    /// parent is not root.
    pub run_as: (u32, u32),
    /// When the network is not granted, start the launcher through
    /// `unshare --net --map-current-user` (util-linux) so the child has an
    /// empty network namespace: no TCP, no UDP, no raw sockets. Landlock
    /// alone (ABI <= 7) only covers TCP. `None` = don't; the default is
    /// `/usr/bin/unshare` when it exists.
    pub netns_helper: Option<PathBuf>,
    /// Make the launcher behave as on a kernel without Landlock (tests of
    /// the fail-closed and degraded paths). Never set it in production.
    pub simulate_missing_landlock: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            launcher: None,
            run_as: (65534, 65534),
            netns_helper: Some(PathBuf::from("/usr/bin/unshare")).filter(|p| p.is_file()),
            simulate_missing_landlock: false,
        }
    }
}

impl SandboxConfig {
    /// The uid/gid the child will run as, if the parent will switch.
    pub fn effective_run_as(&self) -> Option<(u32, u32)> {
        rustix::process::geteuid().is_root().then_some(self.run_as)
    }
}

/// One child to run.
#[derive(Debug, Clone)]
pub struct Request {
    /// Absolute path of the program (must be in `confinement.executables`).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Working directory (the run's workspace).
    pub workdir: PathBuf,
    /// The whole environment of the child (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// Resource limits.
    pub limits: Limits,
    /// Filesystem, exec and network confinement.
    pub confinement: Confinement,
    /// Wall-time deadline: the process group is killed at this instant.
    pub deadline: Instant,
}

/// How the child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Termination {
    /// Exited by itself with this status.
    Exited(i32),
    /// Killed by this signal (not one the sandbox attributes to a limit).
    Signaled(i32),
    /// Still running at the deadline; the group was killed.
    WallTime,
    /// Hit `RLIMIT_CPU` (SIGXCPU / SIGKILL at the hard limit).
    CpuTime,
    /// An allocation failed at the address-space limit.
    Memory,
    /// Printed past a capture cap (or wrote a file past `RLIMIT_FSIZE`);
    /// the group was killed.
    Output,
    /// Could not fork: the process limit bound (e.g. a fork bomb).
    Processes,
    /// The caller cancelled the run ([`run_cancellable`]); the group was
    /// killed.
    Cancelled,
}

impl Termination {
    /// Whether this is a budget overrun (time, CPU, memory, output).
    pub fn is_budget_overrun(self) -> bool {
        matches!(
            self,
            Self::WallTime | Self::CpuTime | Self::Memory | Self::Output
        )
    }
}

/// A confinement refusal the child most likely ran into, read from its
/// stderr (the kernel enforces; this only names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// A file outside the allowed trees.
    Filesystem,
    /// A TCP connect or bind.
    Network,
    /// An `exec` of a binary off the allowlist.
    Exec,
}

/// What was actually enforced for one child (from the launcher's header).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Enforcement {
    /// Landlock ABI in effect (0 = none).
    pub landlock_abi: u32,
    /// Every requested Landlock right was enforced.
    pub fully_enforced: bool,
    /// `no_new_privs` set.
    pub no_new_privs: bool,
    /// Ran without Landlock by the trusted policy's leave.
    pub degraded: bool,
    /// uid/gid the child ran as, when switched.
    pub run_as: Option<(u32, u32)>,
    /// The child ran in an empty network namespace (no network at all).
    pub network_namespace: bool,
}

/// The result of one sandboxed run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How it ended.
    pub termination: Termination,
    /// Captured stdout (at most the cap).
    pub stdout: Vec<u8>,
    /// Captured stderr (at most the cap; the launcher header removed).
    pub stderr: Vec<u8>,
    /// What was enforced.
    pub enforcement: Enforcement,
    /// Wall time from spawn to reap.
    pub elapsed: Duration,
    /// Processes of the child's group were still running when the main
    /// process ended (background jobs, a fork bomb); they were killed.
    pub stragglers_killed: bool,
}

impl Outcome {
    /// Whether the child exited 0 within every limit.
    pub fn success(&self) -> bool {
        self.termination == Termination::Exited(0)
    }

    /// The confinement refusal the child's stderr shows, if any.
    pub fn denial(&self) -> Option<Denial> {
        classify_denial(
            &String::from_utf8_lossy(&self.stderr),
            self.enforcement.network_namespace,
        )
    }

    /// The last `max` bytes of stderr as text, for messages.
    pub fn stderr_tail(&self, max: usize) -> String {
        let start = self.stderr.len().saturating_sub(max);
        String::from_utf8_lossy(&self.stderr[start..])
            .trim()
            .to_owned()
    }
}

/// `in_netns`: the child had no network namespace of its own network, so
/// "network is unreachable" is the sandbox's refusal, not the world's.
fn classify_denial(stderr: &str, in_netns: bool) -> Option<Denial> {
    let text = stderr.to_ascii_lowercase();
    if in_netns
        && text
            .lines()
            .any(|l| l.contains("network is unreachable") || l.contains("enetunreach"))
    {
        return Some(Denial::Network);
    }
    let denial_lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains("permission denied")
                || l.contains("operation not permitted")
                || l.contains("eacces")
        })
        .collect();
    if denial_lines.is_empty() {
        return None;
    }
    let network_words = ["connect", "bind", "/dev/tcp", "urlopen"];
    if denial_lines
        .iter()
        .any(|l| network_words.iter().any(|w| l.contains(w)))
        || ["socket.py", "create_connection", ".connect(", ".bind("]
            .iter()
            .any(|w| text.contains(w))
    {
        return Some(Denial::Network);
    }
    if denial_lines.iter().any(|l| is_exec_denial_line(l))
        || ["subprocess.py", "os.exec", "child_process"]
            .iter()
            .any(|w| text.contains(w))
    {
        return Some(Denial::Exec);
    }
    Some(Denial::Filesystem)
}

/// bash reports a refused exec as `bash: line N: /usr/bin/x: Permission
/// denied` and a refused read as `bash: line N: /etc/x: Permission denied`:
/// the subject is the part just before the message.
fn is_exec_denial_line(lower: &str) -> bool {
    if lower.contains("cannot execute") || lower.contains("execve") || lower.contains("spawn ") {
        return true;
    }
    let parts: Vec<&str> = lower.split(": ").collect();
    parts
        .iter()
        .position(|p| p.starts_with("permission denied"))
        .and_then(|i| i.checked_sub(1))
        .and_then(|i| parts.get(i))
        .is_some_and(|subject| looks_like_binary_dir(subject) || subject.starts_with("./"))
}

fn looks_like_binary_dir(path: &str) -> bool {
    [
        "/usr/bin/",
        "/bin/",
        "/usr/sbin/",
        "/sbin/",
        "/usr/local/bin/",
    ]
    .iter()
    .any(|d| path.starts_with(d))
}

/// System paths an interpreter needs read-only: `/usr`, `/lib`, `/lib64`,
/// `/bin`, `/sbin`, the loader cache and config, locale and time zone data,
/// and the harmless devices. Not `/etc/passwd`, `/root` or `/home`.
pub fn system_read_only_paths() -> Vec<PathBuf> {
    [
        "/usr",
        "/lib",
        "/lib64",
        "/lib32",
        "/bin",
        "/sbin",
        "/etc/ld.so.cache",
        "/etc/ld.so.conf",
        "/etc/ld.so.conf.d",
        "/etc/localtime",
        "/etc/alternatives",
        "/etc/ssl",
        "/dev/urandom",
        "/dev/random",
        "/dev/zero",
    ]
    .iter()
    .map(PathBuf::from)
    .collect()
}

/// Paths the child may write besides its workspace: `/dev/null` only.
pub fn system_read_write_paths() -> Vec<PathBuf> {
    vec![PathBuf::from("/dev/null")]
}

/// The trusted search path for executables (never the caller's `PATH`).
pub const TRUSTED_PATH: &[&str] = &["/usr/bin", "/bin", "/usr/local/bin"];

/// Resolve an allowlisted executable name (`bash`, `python3`) on
/// [`TRUSTED_PATH`] to its canonical path (symlinks resolved, which is what
/// Landlock checks on `exec`).
pub fn resolve_executable(name: &str) -> Result<PathBuf, SandboxError> {
    let not_found = || SandboxError::ExecutableNotFound {
        name: name.to_owned(),
        searched: TRUSTED_PATH.join(":"),
    };
    if name.is_empty() || name.contains('/') {
        return Err(not_found());
    }
    for dir in TRUSTED_PATH {
        let candidate = Path::new(dir).join(name);
        if let Ok(real) = std::fs::canonicalize(&candidate)
            && real.is_file()
        {
            return Ok(real);
        }
    }
    Err(not_found())
}

/// The ELF interpreters (dynamic loaders) present: exec'ing a dynamically
/// linked allowlisted binary needs them executable.
#[doc(hidden)]
pub fn dynamic_loaders() -> Vec<PathBuf> {
    [
        "/lib64/ld-linux-x86-64.so.2",
        "/lib/ld-linux-aarch64.so.1",
        "/lib/ld-linux-x86-64.so.2",
    ]
    .iter()
    .filter_map(|p| std::fs::canonicalize(p).ok())
    .collect()
}

/// Find the launcher: `$MEX_SANDBOX_EXEC`, else `mex-sandbox-exec` next to
/// the current executable or in its parent directory.
pub fn find_launcher() -> Result<PathBuf, SandboxError> {
    let mut looked = Vec::new();
    if let Some(p) = std::env::var_os("MEX_SANDBOX_EXEC") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        looked.push(p);
    }
    if let Ok(exe) = std::env::current_exe() {
        let mut dir = exe.parent().map(Path::to_path_buf);
        for _ in 0..2 {
            if let Some(d) = dir {
                let candidate = d.join("mex-sandbox-exec");
                if candidate.is_file() {
                    return Ok(candidate);
                }
                looked.push(candidate);
                dir = d.parent().map(Path::to_path_buf);
            }
        }
    }
    Err(SandboxError::LauncherNotFound {
        looked: looked
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Make `dir` the child's private writable workspace: mode 0700, owned by
/// the uid/gid the child runs as (when the parent is root). Its ancestors
/// must be traversable by that uid (e.g. under `/tmp`).
#[doc(hidden)]
pub fn prepare_workdir(config: &SandboxConfig, dir: &Path) -> Result<(), SandboxError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    if let Some((uid, gid)) = config.effective_run_as() {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// The running kernel's release (`uname -r`), for provenance.
#[doc(hidden)]
pub fn kernel_release() -> String {
    String::from_utf8_lossy(rustix::system::uname().release().to_bytes()).into_owned()
}

/// Run the launcher in `--probe` mode: it applies an empty ruleset to itself
/// and reports what the kernel enforces. Fails (fail closed) when Landlock
/// is missing or too old and `allow_degraded` is false.
pub fn probe(config: &SandboxConfig, allow_degraded: bool) -> Result<Enforcement, SandboxError> {
    let launcher = launcher_path(config)?;
    let mut cmd = Command::new(&launcher);
    cmd.env_clear()
        .arg("--probe")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if allow_degraded {
        cmd.arg("--degraded-ok");
    }
    if config.simulate_missing_landlock {
        cmd.arg("--simulate-no-landlock");
    }
    let run_as = config.effective_run_as();
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid);
    }
    let out = cmd.output().map_err(|source| SandboxError::Spawn {
        launcher: launcher.clone(),
        source,
    })?;
    let (header, _) = split_header(&out.stderr);
    let mut enforcement = parse_header(header.as_deref())?;
    enforcement.run_as = run_as;
    Ok(enforcement)
}

fn launcher_path(config: &SandboxConfig) -> Result<PathBuf, SandboxError> {
    match &config.launcher {
        Some(p) => Ok(p.clone()),
        None => find_launcher(),
    }
}

/// How long the launcher gets to stop the program after the lifeline is
/// closed, before the process group is killed from here.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Why the launcher stopped waiting (from its trailer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Exited,
    Lifeline,
    Deadline,
}

/// The launcher's trailer line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Trailer {
    exit: Option<i32>,
    signal: Option<i32>,
    stragglers: bool,
    reason: StopReason,
}

impl Trailer {
    /// The launcher exits with the program's status, or 128 + its signal.
    fn agrees_with(&self, launcher_code: Option<i32>) -> bool {
        match (self.exit, self.signal, launcher_code) {
            (Some(e), None, Some(c)) => e == c,
            (None, Some(s), Some(c)) => c == 128 + s,
            _ => false,
        }
    }
}

/// Split the launcher's trailer off the end of stderr. Only a trailer that
/// is the very last line counts: the program can print the marker too, but
/// the launcher writes after every process below it is gone.
fn split_trailer(stderr: Vec<u8>) -> (Option<Trailer>, Vec<u8>) {
    let mark = launcher::TRAILER_MARK.as_bytes();
    let Some(at) = stderr.windows(mark.len()).rposition(|w| w == mark) else {
        return (None, stderr);
    };
    let line = &stderr[at + mark.len()..];
    let Some(line) = line.strip_suffix(b"\n") else {
        return (None, stderr);
    };
    if line.contains(&b'\n') {
        return (None, stderr);
    }
    let mut t = Trailer {
        exit: None,
        signal: None,
        stragglers: false,
        reason: StopReason::Exited,
    };
    for field in String::from_utf8_lossy(line).split_whitespace() {
        match field.split_once('=') {
            Some(("exit", v)) => t.exit = v.parse().ok(),
            Some(("signal", v)) => t.signal = v.parse().ok(),
            Some(("stragglers", v)) => t.stragglers = v == "true",
            Some(("reason", "lifeline")) => t.reason = StopReason::Lifeline,
            Some(("reason", "deadline")) => t.reason = StopReason::Deadline,
            _ => {}
        }
    }
    if t.exit.is_none() == t.signal.is_none() {
        return (None, stderr);
    }
    let mut rest = stderr;
    rest.truncate(at);
    (Some(t), rest)
}

fn split_header(stderr: &[u8]) -> (Option<String>, Vec<u8>) {
    let mark = launcher::HEADER_MARK.as_bytes();
    if stderr.starts_with(mark) {
        let end = stderr
            .iter()
            .position(|b| *b == b'\n')
            .unwrap_or(stderr.len());
        let line = String::from_utf8_lossy(&stderr[mark.len()..end]).into_owned();
        let rest = stderr.get(end + 1..).unwrap_or_default().to_vec();
        (Some(line), rest)
    } else {
        (None, stderr.to_vec())
    }
}

fn parse_header(header: Option<&str>) -> Result<Enforcement, SandboxError> {
    let Some(header) = header else {
        return Err(SandboxError::ConfinementUnavailable {
            reason: "the launcher did not report its confinement (is it the mex-sandbox-exec of this version?)".into(),
        });
    };
    if let Some(reason) = header.strip_prefix("error ") {
        return Err(SandboxError::ConfinementUnavailable {
            reason: reason.to_owned(),
        });
    }
    let Some(fields) = header.strip_prefix("ok ") else {
        return Err(SandboxError::ConfinementUnavailable {
            reason: format!("unexpected launcher header {header:?}"),
        });
    };
    let mut e = Enforcement::default();
    for field in fields.split_whitespace() {
        match field.split_once('=') {
            Some(("abi", v)) => e.landlock_abi = v.parse().unwrap_or(0),
            Some(("full", v)) => e.fully_enforced = v == "true",
            Some(("nnp", v)) => e.no_new_privs = v == "true",
            Some(("degraded", v)) => e.degraded = v == "true",
            _ => {}
        }
    }
    Ok(e)
}

/// Kills the process group when dropped (unless disarmed after reaping).
struct GroupGuard {
    pgid: Option<Pid>,
}

impl GroupGuard {
    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            let _ = kill_process_group(pgid, Signal::KILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Events the supervising thread waits for.
enum Event {
    /// The main process exited (still a zombie: not reaped, so its pid and
    /// the group id stay reserved and killing the group is safe).
    Exited,
    /// A capture cap was reached.
    Overflow,
}

fn capture(
    mut reader: impl Read,
    cap: u64,
    over: &AtomicBool,
    events: &mpsc::Sender<Event>,
) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                let room =
                    usize::try_from(cap.saturating_sub(buf.len() as u64)).unwrap_or(usize::MAX);
                if n > room {
                    buf.extend_from_slice(&chunk[..room]);
                    over.store(true, Ordering::SeqCst);
                    let _ = events.send(Event::Overflow);
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    buf
}

const MEMORY_MARKERS: &[&str] = &[
    "MemoryError",
    "Cannot allocate memory",
    "cannot allocate memory",
    "out of memory",
    "xmalloc",
    "xrealloc",
    "bad_alloc",
    "Fatal process OOM",
    "heap out of memory",
];

const FORK_MARKERS: &[&str] = &[
    "fork: Resource temporarily unavailable",
    "fork: retry",
    "BlockingIOError: [Errno 11]",
];

/// Become the child subreaper of this process (once), so that orphans of a
/// sandboxed group are re-parented here and reaped by [`reap_group`]
/// instead of lingering as zombies under an init that does not reap (their
/// zombies would otherwise keep counting against `RLIMIT_NPROC`).
fn ensure_subreaper() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    });
}

/// `(pid, ppid, state)` of every process in group `pgid`, from `/proc`.
fn group_members(pgid: Pid) -> Vec<(i32, i32, char)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let want = pgid.as_raw_nonzero().get();
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid pgrp ..."; comm may hold spaces and parens.
            let rest = &stat[stat.rfind(')')? + 1..];
            let mut f = rest.split_whitespace();
            let state = f.next()?.chars().next()?;
            let ppid = f.next()?.parse().ok()?;
            let pgrp: i32 = f.next()?.parse().ok()?;
            (pgrp == want).then_some((pid, ppid, state))
        })
        .collect()
}

/// Kill what is left of the group and reap the orphans re-parented here,
/// for at most `budget`.
fn reap_group(pgid: Pid, budget: Duration) {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let until = Instant::now() + budget;
    loop {
        // Scan first, kill only a group seen non-empty: once it is empty its
        // id may be reused. (A member that dies between the scan and the
        // kill leaves a window of microseconds, for a pid to be reused.)
        let members = group_members(pgid);
        if members.is_empty() {
            return;
        }
        let _ = kill_process_group(pgid, Signal::KILL);
        for (pid, ppid, _) in members {
            if ppid == me
                && let Some(pid) = Pid::from_raw(pid)
            {
                let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG);
            }
        }
        if Instant::now() >= until {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// How often a running child's supervisor looks at the cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(20);

/// Run one child under the request's confinement and limits, and wait for
/// it (at most until `request.deadline`).
pub fn run(config: &SandboxConfig, request: &Request) -> Result<Outcome, SandboxError> {
    run_with(config, request, None, &AtomicBool::new(false))
}

/// [`run`], and kill the process group as soon as `cancel` is set (polled
/// every few milliseconds); the outcome is then [`Termination::Cancelled`].
pub fn run_cancellable(
    config: &SandboxConfig,
    request: &Request,
    cancel: &AtomicBool,
) -> Result<Outcome, SandboxError> {
    run_with(config, request, None, cancel)
}

/// [`run`], with `stdin` written to the child's standard input (then closed)
/// instead of a null stdin. A child that does not read it just sees a closed
/// pipe; the writer never blocks the supervision.
pub fn run_with_stdin(
    config: &SandboxConfig,
    request: &Request,
    stdin: Vec<u8>,
) -> Result<Outcome, SandboxError> {
    run_with(config, request, Some(stdin), &AtomicBool::new(false))
}

/// The general form: optional bytes for the child's standard input, and a
/// cancel flag. The bytes travel to the launcher first, over its lifeline
/// pipe (announced by `--stdin-bytes=N`); the launcher hands them to the
/// program on a pipe of its own, so the lifeline stays open for the run.
pub fn run_with(
    config: &SandboxConfig,
    request: &Request,
    stdin: Option<Vec<u8>>,
    cancel: &AtomicBool,
) -> Result<Outcome, SandboxError> {
    let launcher = launcher_path(config)?;
    ensure_subreaper();
    let limits = &request.limits;
    let conf = &request.confinement;
    let netns = match (&config.netns_helper, conf.network) {
        (Some(helper), false) => Some(helper.clone()),
        _ => None,
    };
    let mut cmd = match &netns {
        Some(helper) => {
            let mut c = Command::new(helper);
            c.args(["--net", "--map-current-user", "--"]).arg(&launcher);
            c
        }
        None => Command::new(&launcher),
    };
    cmd.env_clear()
        .envs(request.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&request.workdir)
        // The lifeline: the launcher stops the child when this pipe closes,
        // i.e. when we ask for a stop or when this process dies.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let run_as = config.effective_run_as();
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid);
    }
    cmd.arg(format!("--as={}", limits.memory_bytes))
        .arg(format!("--cpu={}", cpu_seconds(limits.cpu_time_ms)))
        .arg(format!("--fsize={}", limits.file_size_bytes))
        .arg(format!("--nofile={}", limits.open_files))
        .arg(format!("--nproc={}", limits.processes));
    let path_arg = |flag: &str, p: &Path| {
        let mut a = OsString::from(flag);
        a.push(p.as_os_str());
        a
    };
    for p in &conf.read_only {
        cmd.arg(path_arg("--ro=", p));
    }
    for p in &conf.read_write {
        cmd.arg(path_arg("--rw=", p));
    }
    for p in &conf.executables {
        cmd.arg(path_arg("--exec=", p));
    }
    if conf.network {
        cmd.arg("--net");
    }
    if conf.allow_degraded {
        cmd.arg("--degraded-ok");
    }
    if config.simulate_missing_landlock {
        cmd.arg("--simulate-no-landlock");
    }
    let started = Instant::now();
    let budget_ms = request
        .deadline
        .saturating_duration_since(started)
        .as_millis();
    if let Some(bytes) = &stdin {
        cmd.arg(format!("--stdin-bytes={}", bytes.len()));
    }
    cmd.arg("--lifeline")
        .arg(format!("--deadline-ms={budget_ms}"))
        .arg("--")
        .arg(&request.program)
        .args(&request.args);
    let mut child = cmd.spawn().map_err(|source| SandboxError::Spawn {
        launcher: launcher.clone(),
        source,
    })?;
    let mut lifeline = child.stdin.take();
    if let (Some(bytes), Some(pipe)) = (stdin, lifeline.as_ref()) {
        // A second handle on the lifeline for the writer; the launcher reads
        // the announced bytes before anything else, and if it dies first the
        // write fails with EPIPE and the thread ends.
        let writer = std::fs::File::from(std::os::fd::AsFd::as_fd(pipe).try_clone_to_owned()?);
        std::thread::Builder::new()
            .name("mex-sandbox-stdin".into())
            .spawn(move || {
                use std::io::Write;
                let (mut writer, mut bytes) = (writer, bytes);
                let _ = writer.write_all(&bytes);
                // The input may carry key material: zero it once delivered.
                zeroize::Zeroize::zeroize(&mut bytes);
            })?;
    }
    let pgid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let guard = GroupGuard { pgid };
    let over = Arc::new(AtomicBool::new(false));
    let (events_tx, events_rx) = mpsc::channel::<Event>();
    let (tx, rx) = mpsc::channel::<(bool, Vec<u8>)>();
    let streams = [
        (
            true,
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            limits.stdout_bytes,
        ),
        (
            false,
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            // Room for the launcher's header and trailer lines.
            limits.stderr_bytes.saturating_add(8192),
        ),
    ];
    let mut readers = 0;
    for (is_stdout, stream, cap) in streams {
        let Some(stream) = stream else { continue };
        let (tx, over, events) = (tx.clone(), over.clone(), events_tx.clone());
        readers += 1;
        std::thread::Builder::new()
            .name("mex-sandbox-capture".into())
            .spawn(move || {
                let bytes = capture(stream, cap, &over, &events);
                let _ = tx.send((is_stdout, bytes));
            })?;
    }
    drop(tx);
    // The waiter sees the exit without reaping (WNOWAIT): until this thread
    // reaps the leader below, its pid (= the group id) cannot be reused, so
    // every kill of the group before that hits only the sandboxed processes.
    if let Some(p) = pgid {
        let events = events_tx.clone();
        std::thread::Builder::new()
            .name("mex-sandbox-wait".into())
            .spawn(move || {
                let _ = rustix::process::waitid(
                    rustix::process::WaitId::Pid(p),
                    rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOWAIT,
                );
                let _ = events.send(Event::Exited);
            })?;
    }
    drop(events_tx);
    // Stopping (deadline, output cap) closes the lifeline: the launcher
    // then kills the program and every process below it, escaped ones
    // included. If it has not exited STOP_GRACE later, the group is killed
    // from here.
    let mut timed_out = false;
    let mut stopping = false;
    let mut killed = false;
    let mut cancelled = false;
    let mut wake = request.deadline;
    loop {
        let remaining = wake.saturating_duration_since(Instant::now());
        // Until the run is being stopped, wake up regularly to notice a
        // caller's cancellation.
        let slice = if stopping {
            remaining
        } else {
            remaining.min(CANCEL_POLL)
        };
        match events_rx.recv_timeout(slice) {
            Ok(Event::Exited) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Ok(Event::Overflow) => {
                if !stopping {
                    stopping = true;
                    drop(lifeline.take());
                    wake = Instant::now() + STOP_GRACE;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) if !stopping && cancel.load(Ordering::SeqCst) => {
                cancelled = true;
                stopping = true;
                drop(lifeline.take());
                wake = Instant::now() + STOP_GRACE;
            }
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < wake => {}
            Err(mpsc::RecvTimeoutError::Timeout) if !stopping => {
                timed_out = true;
                stopping = true;
                drop(lifeline.take());
                wake = Instant::now() + STOP_GRACE;
            }
            Err(mpsc::RecvTimeoutError::Timeout) if !killed => {
                killed = true;
                guard.kill();
                wake = Instant::now() + Duration::from_secs(5);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(SandboxError::Supervise(std::io::Error::other(
                    "the sandboxed child did not die within 5 s of SIGKILL",
                )));
            }
        }
    }
    drop(lifeline);
    // The leader is a zombie (or gone): kill whatever is left of the group
    // while its id is still reserved, then reap the leader.
    guard.kill();
    let status = child.wait()?;
    // Stragglers (background jobs, a fork bomb) were killed above; orphans
    // re-parented here are reaped. Fast path: the group is already empty.
    let group_alive = pgid.is_some_and(|g| rustix::process::test_kill_process_group(g).is_ok());
    let mut stragglers_killed = group_alive && pgid.is_some_and(|g| !group_members(g).is_empty());
    if group_alive && let Some(g) = pgid {
        reap_group(g, Duration::from_millis(200));
    }
    // From here the group id may be reused: never signal it again.
    let mut guard = guard;
    guard.pgid = None;
    let (mut stdout, mut stderr_raw) = (Vec::new(), Vec::new());
    let drain_until = Instant::now() + Duration::from_millis(500);
    for _ in 0..readers {
        match rx.recv_timeout(drain_until.saturating_duration_since(Instant::now())) {
            Ok((true, b)) => stdout = b,
            Ok((false, b)) => stderr_raw = b,
            Err(_) => break,
        }
    }
    let elapsed = started.elapsed();
    drop(guard);

    let (header, stderr) = split_header(&stderr_raw);
    let (trailer, mut stderr) = split_trailer(stderr);
    // No header, or an error header: confinement was not applied and the
    // target never ran.
    let mut enforcement = parse_header(header.as_deref())?;
    // How the program ended: the launcher's trailer, when it agrees with
    // the launcher's own exit status (which relays the program's).
    let (code, signal) = match trailer.filter(|t| t.agrees_with(status.code())) {
        Some(t) => {
            timed_out |= t.reason == StopReason::Deadline;
            stragglers_killed |= t.stragglers;
            (t.exit, t.signal)
        }
        None => (status.code(), status.signal()),
    };
    enforcement.run_as = run_as;
    enforcement.network_namespace = netns.is_some();
    stderr.truncate(usize::try_from(limits.stderr_bytes).unwrap_or(usize::MAX));

    let text = String::from_utf8_lossy(&stderr);
    let has = |markers: &[&str]| markers.iter().any(|m| text.contains(m));
    let termination = if cancelled {
        Termination::Cancelled
    } else if timed_out {
        Termination::WallTime
    } else if over.load(Ordering::SeqCst) {
        Termination::Output
    } else {
        match (code, signal) {
            (_, Some(s)) if s == Signal::XCPU.as_raw() => Termination::CpuTime,
            (_, Some(s)) if s == Signal::XFSZ.as_raw() => Termination::Output,
            (Some(c), _) if c == 128 + Signal::XCPU.as_raw() => Termination::CpuTime,
            (Some(c), _) if c == 128 + Signal::XFSZ.as_raw() => Termination::Output,
            (Some(_), _) if has(FORK_MARKERS) => Termination::Processes,
            (Some(c), _) if c != 0 && has(MEMORY_MARKERS) => Termination::Memory,
            (_, Some(s)) if s == Signal::KILL.as_raw() && has(MEMORY_MARKERS) => {
                Termination::Memory
            }
            (_, Some(s)) if s == Signal::KILL.as_raw() => {
                // Nobody here sent SIGKILL: the CPU hard limit did.
                Termination::CpuTime
            }
            (_, Some(s)) if has(MEMORY_MARKERS) && s == Signal::ABORT.as_raw() => {
                Termination::Memory
            }
            (_, Some(s)) => Termination::Signaled(s),
            (Some(c), None) => Termination::Exited(c),
            (None, None) => Termination::Signaled(0),
        }
    };
    Ok(Outcome {
        termination,
        stdout,
        stderr,
        enforcement,
        elapsed,
        stragglers_killed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_classification() {
        assert_eq!(
            classify_denial("cat: /etc/passwd: Permission denied", false),
            Some(Denial::Filesystem)
        );
        assert_eq!(
            classify_denial("bash: line 1: /usr/bin/id: Permission denied", false),
            Some(Denial::Exec)
        );
        assert_eq!(
            classify_denial("bash: connect: Permission denied", false),
            Some(Denial::Network)
        );
        assert_eq!(classify_denial("all good", false), None);
        assert_eq!(
            classify_denial("OSError: [Errno 101] Network is unreachable", true),
            Some(Denial::Network)
        );
        assert_eq!(
            classify_denial("OSError: [Errno 101] Network is unreachable", false),
            None
        );
        assert_eq!(
            classify_denial(
                "/usr/bin/bash: line 1: /tmp/x-exec: Permission denied",
                false
            ),
            Some(Denial::Filesystem)
        );
        assert_eq!(
            classify_denial("/usr/bin/bash: line 1: ./id: Permission denied", false),
            Some(Denial::Exec)
        );
        assert_eq!(
            classify_denial(
                "  sock.connect(sa)\nPermissionError: [Errno 13] Permission denied",
                false
            ),
            Some(Denial::Network)
        );
    }

    #[test]
    fn header_parsing() {
        let (h, rest) =
            split_header(b"\x01MEX-SANDBOX ok abi=7 full=true nnp=true degraded=false\nhello");
        assert_eq!(rest, b"hello");
        let e = parse_header(h.as_deref()).unwrap();
        assert_eq!(e.landlock_abi, 7);
        assert!(e.fully_enforced && e.no_new_privs && !e.degraded);
        let (h, _) = split_header(b"\x01MEX-SANDBOX error no landlock\n");
        assert!(matches!(
            parse_header(h.as_deref()),
            Err(SandboxError::ConfinementUnavailable { .. })
        ));
        assert!(parse_header(None).is_err());
    }
}
