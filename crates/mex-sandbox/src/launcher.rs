//! The launcher half: what `mex-sandbox-exec` does in its own processes.
//! Kept in the library so any binary can host it (`mex-sandbox-exec` here;
//! an engine crate or the `mex` binary may ship their own copy).
//!
//! ## Two processes: a supervisor and the confined program
//!
//! The launcher the parent spawns (the *supervisor*, the leader of the
//! sandbox's process group) never becomes the target. It makes itself a
//! child subreaper and starts itself again (`/proc/self/exe --confined`)
//! as the *confined* process, which:
//!
//! 1. sets a parent-death signal (`SIGKILL`) and then checks that its parent
//!    is still the supervisor whose pid it was given (`--parent-pid`), so it
//!    never outlives its supervisor, not even when the supervisor died
//!    between the fork and the `prctl`. The supervisor is single-threaded,
//!    so "parent thread exits" and "parent exits" are the same event;
//! 2. sets rlimits, builds and applies the Landlock ruleset (which also sets
//!    `no_new_privs`), reports one header line on stderr, then `exec`s the
//!    target. Any failure before `exec` is reported as an error header and
//!    exit status [`SETUP_FAILED_STATUS`]; nothing runs unconfined unless
//!    `--degraded-ok` was passed (the trusted policy's switch).
//!
//! Meanwhile the supervisor waits (`poll`, no busy loop) for whichever comes
//! first:
//!
//! * the confined program exits: its status is kept;
//! * its *lifeline* closes (`--lifeline`: stdin is a pipe whose only writer is
//!   the parent that started it). That happens when the parent asks for a
//!   stop (deadline, output cap) and also when the parent dies, however it
//!   dies, SIGKILL included: the kernel closes the dead process's pipe end;
//! * its own deadline passes (`--deadline-ms`, plus [`DEADLINE_GRACE`], so the
//!   parent's own kill at the deadline normally comes first): the wall-clock
//!   budget holds even when the parent is gone or stuck.
//!
//! Then it kills the confined program, and *sweeps*: every process still
//! below it (background jobs, a fork bomb's children, processes that left
//! the process group with `setsid`) is re-parented to it as orphans (it is a
//! subreaper) and killed, generation by generation, until it has no children
//! left. Because they are its own children, their pids cannot be reused
//! before it reaps them, so no unrelated process is ever signalled. Finally
//! it writes one trailer line on stderr ([`TRAILER_MARK`]: how the program
//! ended, whether processes were left behind, why it stopped) and exits with
//! the program's exit status (`128 + signal` for a signal). Nothing it
//! started outlives it, and it outlives its parent by at most one sweep.
//!
//! The confined program cannot signal the supervisor: Landlock (ABI 6)
//! scopes signals to the program's own domain, and the supervisor is not in
//! it.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, LandlockStatus, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, Resource, Rlimit, Signal, WaitOptions, setrlimit};

/// Marker that starts the launcher's one header line on stderr.
pub const HEADER_MARK: &str = "\u{1}MEX-SANDBOX ";
/// Marker that starts the supervisor's trailer line, the last line on
/// stderr: `end exit=N|signal=N stragglers=BOOL reason=exited|lifeline|deadline`.
pub const TRAILER_MARK: &str = "\u{1}MEX-SANDBOX end ";
/// Exit status of the launcher when confinement could not be set up.
pub const SETUP_FAILED_STATUS: u8 = 125;
/// The oldest Landlock ABI accepted without degraded mode: 4 is the first
/// with TCP bind/connect rules.
pub const MIN_LANDLOCK_ABI: ABI = ABI::V4;
/// How long after the parent's deadline the supervisor stops the program by
/// itself. The parent stops it at the deadline; this is the backstop for a
/// parent that died or hangs.
pub const DEADLINE_GRACE: Duration = Duration::from_secs(1);
/// The most input (`--stdin-bytes`) the launcher accepts for the program.
pub const MAX_STDIN_BYTES: u64 = 64 * 1024 * 1024;
/// The longest the supervisor spends sweeping left-over processes.
const SWEEP_BUDGET: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Args {
    probe: bool,
    confined: bool,
    parent_pid: Option<i32>,
    lifeline: bool,
    stdin_bytes: Option<u64>,
    deadline_ms: Option<u64>,
    read_only: Vec<PathBuf>,
    read_write: Vec<PathBuf>,
    exec: Vec<PathBuf>,
    net: bool,
    degraded_ok: bool,
    simulate_no_landlock: bool,
    limits: Vec<(Resource, u64, u64)>,
    program: Option<PathBuf>,
    program_args: Vec<OsString>,
}

fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Args, String> {
    let mut out = Args::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            out.program = it.next().map(PathBuf::from);
            out.program_args = it.collect();
            break;
        }
        let text = arg
            .to_str()
            .ok_or_else(|| format!("argument {arg:?} is not UTF-8"))?;
        let (flag, value) = text.split_once('=').unwrap_or((text, ""));
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag} needs a number, got {v:?}"))
        };
        match flag {
            "--probe" => out.probe = true,
            "--confined" => out.confined = true,
            "--lifeline" => out.lifeline = true,
            "--parent-pid" => {
                out.parent_pid = Some(
                    value
                        .parse::<i32>()
                        .map_err(|_| format!("{flag} needs a pid, got {value:?}"))?,
                );
            }
            "--deadline-ms" => out.deadline_ms = Some(number(value)?),
            "--stdin-bytes" => out.stdin_bytes = Some(number(value)?),
            "--net" => out.net = true,
            "--degraded-ok" => out.degraded_ok = true,
            "--simulate-no-landlock" => out.simulate_no_landlock = true,
            "--ro" => out.read_only.push(PathBuf::from(value)),
            "--rw" => out.read_write.push(PathBuf::from(value)),
            "--exec" => out.exec.push(PathBuf::from(value)),
            "--as" => out
                .limits
                .push((Resource::As, number(value)?, number(value)?)),
            "--cpu" => {
                let s = number(value)?;
                out.limits.push((Resource::Cpu, s, s.saturating_add(1)));
            }
            "--fsize" => out
                .limits
                .push((Resource::Fsize, number(value)?, number(value)?)),
            "--nofile" => out
                .limits
                .push((Resource::Nofile, number(value)?, number(value)?)),
            "--nproc" => out
                .limits
                .push((Resource::Nproc, number(value)?, number(value)?)),
            other => return Err(format!("unknown launcher argument {other:?}")),
        }
    }
    if !out.probe && out.program.is_none() {
        return Err("no program after `--`".into());
    }
    if out.confined && out.parent_pid.is_none() {
        return Err("--confined needs --parent-pid".into());
    }
    Ok(out)
}

/// What the launcher applied, as reported in its header line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Applied {
    abi: u32,
    full: bool,
    no_new_privs: bool,
    degraded: bool,
}

fn apply_landlock(args: &Args) -> Result<Applied, String> {
    if args.simulate_no_landlock {
        return Err(
            "Landlock is not available (simulated for a test); refusing to run unconfined".into(),
        );
    }
    let fs_all = AccessFs::from_all(ABI::V5);
    let ro = AccessFs::ReadFile | AccessFs::ReadDir;
    let rw = fs_all & !AccessFs::Execute;
    let exec = AccessFs::Execute | AccessFs::ReadFile;
    let err = |what: &str, e: &dyn std::fmt::Display| format!("landlock: {what}: {e}");

    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(MIN_LANDLOCK_ABI))
        .map_err(|e| err("filesystem rules (ABI 4) unsupported", &e))?;
    if !args.net {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(MIN_LANDLOCK_ABI))
            .map_err(|e| err("TCP rules (ABI 4) unsupported", &e))?;
    }
    let mut ruleset = ruleset
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(fs_all)
        .map_err(|e| err("ioctl rules", &e))?
        .scope(Scope::from_all(ABI::V6))
        .map_err(|e| err("scopes", &e))?
        .create()
        .map_err(|e| err("create ruleset", &e))?;
    let groups: [(&Vec<PathBuf>, landlock::BitFlags<AccessFs>); 3] = [
        (&args.read_only, ro),
        (&args.read_write, rw),
        (&args.exec, exec),
    ];
    for (paths, access) in groups {
        for path in paths {
            let meta = match std::fs::metadata(path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("cannot stat {}: {e}", path.display())),
            };
            let access = if meta.is_dir() {
                access
            } else {
                access & AccessFs::from_file(ABI::V5)
            };
            let fd = PathFd::new(path).map_err(|e| err(&path.display().to_string(), &e))?;
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, access))
                .map_err(|e| err(&path.display().to_string(), &e))?;
        }
    }
    let status = ruleset
        .restrict_self()
        .map_err(|e| err("restrict_self", &e))?;
    let abi = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => effective_abi as u32,
        _ => 0,
    };
    let enforced = status.ruleset != RulesetStatus::NotEnforced && abi >= MIN_LANDLOCK_ABI as u32;
    if !enforced {
        return Err(format!(
            "Landlock is not enforced on this kernel (ABI {abi}, need >= {}); refusing to run unconfined",
            MIN_LANDLOCK_ABI as u32
        ));
    }
    Ok(Applied {
        abi,
        full: status.ruleset == RulesetStatus::FullyEnforced,
        no_new_privs: status.no_new_privs,
        degraded: false,
    })
}

fn header(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{HEADER_MARK}{text}");
    let _ = err.flush();
}

fn fail(message: &str) -> ExitCode {
    let one_line: String = message.replace('\n', " ");
    header(&format!("error {one_line}"));
    ExitCode::from(SETUP_FAILED_STATUS)
}

/// Run the launcher with the process's own arguments (skipping argv\[0\]).
/// See [`run`].
pub fn main_from_env() -> ExitCode {
    run(std::env::args_os().skip(1))
}

/// Run the launcher over explicit arguments: `--probe` reports what the
/// kernel enforces; `--confined` confines this process and `exec`s the
/// target (returns only on failure); anything else supervises a confined
/// copy of itself (see the module docs) and returns its exit status.
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let raw: Vec<OsString> = args.into_iter().collect();
    let args = match parse(raw.iter().cloned()) {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    if args.probe || args.confined {
        confine_and_exec(args)
    } else {
        supervise(&args, &raw)
    }
}

/// The confined half: parent-death signal, rlimits, Landlock, header, exec.
fn confine_and_exec(args: Args) -> ExitCode {
    if let Some(parent) = args.parent_pid {
        if let Err(e) = rustix::process::set_parent_process_death_signal(Some(Signal::KILL)) {
            return fail(&format!("cannot set the parent-death signal: {e}"));
        }
        // The supervisor may have died before the prctl: then the signal
        // will never come, and we were re-parented. Do not run unsupervised.
        let now = rustix::process::getppid().map(|p| p.as_raw_nonzero().get());
        if now != Some(parent) {
            return fail(&format!(
                "the supervising launcher (pid {parent}) is gone; refusing to run unsupervised"
            ));
        }
    }
    for (resource, soft, hard) in &args.limits {
        let limit = Rlimit {
            current: Some(*soft),
            maximum: Some(*hard),
        };
        if let Err(e) = setrlimit(*resource, limit) {
            return fail(&format!("setrlimit {resource:?} = {soft}: {e}"));
        }
    }
    let _ = setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    );
    let applied = match apply_landlock(&args) {
        Ok(a) => a,
        Err(e) if args.degraded_ok => {
            let nnp = rustix::thread::set_no_new_privs(true).is_ok();
            let _ = e;
            Applied {
                abi: 0,
                full: false,
                no_new_privs: nnp,
                degraded: true,
            }
        }
        Err(e) => return fail(&e),
    };
    header(&format!(
        "ok abi={} full={} nnp={} degraded={}",
        applied.abi, applied.full, applied.no_new_privs, applied.degraded
    ));
    if args.probe {
        return ExitCode::SUCCESS;
    }
    let Some(program) = args.program else {
        return fail("no program after `--`");
    };
    let error = Command::new(&program).args(&args.program_args).exec();
    // exec returned: the target could not be started (ENOENT, EACCES...).
    let _ = writeln!(
        std::io::stderr(),
        "mex-sandbox-exec: cannot execute {}: {error}",
        program.display()
    );
    ExitCode::from(126)
}

/// Why the supervisor stopped waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The confined program exited by itself.
    Exited,
    /// The lifeline closed: the parent asked for a stop, or died.
    Lifeline,
    /// The supervisor's own deadline passed.
    Deadline,
}

impl Stop {
    fn as_str(self) -> &'static str {
        match self {
            Self::Exited => "exited",
            Self::Lifeline => "lifeline",
            Self::Deadline => "deadline",
        }
    }
}

/// The supervising half (see the module docs).
fn supervise(args: &Args, raw: &[OsString]) -> ExitCode {
    let started = Instant::now();
    let me = rustix::process::getpid();
    if let Err(e) = rustix::process::set_child_subreaper(Some(me)) {
        return fail(&format!("cannot become a child subreaper: {e}"));
    }
    let deadline = args
        .deadline_ms
        .map(|ms| started + Duration::from_millis(ms) + DEADLINE_GRACE);
    // The program's standard input, when announced, comes first on the
    // lifeline (bounded; the caller is mex, not the program).
    let input = match args.stdin_bytes {
        None => None,
        Some(n) if n > MAX_STDIN_BYTES => {
            return fail(&format!(
                "--stdin-bytes={n} is over the launcher's limit of {MAX_STDIN_BYTES}"
            ));
        }
        Some(n) => {
            let mut buf = vec![0u8; usize::try_from(n).unwrap_or(0)];
            if let Err(e) = std::io::Read::read_exact(&mut std::io::stdin().lock(), &mut buf) {
                return fail(&format!("cannot read the program's {n}-byte input: {e}"));
            }
            Some(buf)
        }
    };
    let mut cmd = Command::new("/proc/self/exe");
    // Under the `mex` binary the launcher is chosen by argv[0].
    if let Some(argv0) = std::env::args_os().next() {
        cmd.arg0(argv0);
    }
    cmd.arg("--confined")
        .arg(format!("--parent-pid={}", me.as_raw_nonzero()))
        .args(raw)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(&format!("cannot start the confined process: {e}")),
    };
    if let (Some(bytes), Some(mut pipe)) = (input, child.stdin.take()) {
        // A program that does not read its input sees a closed pipe; the
        // write then ends with EPIPE, which is the program's business.
        let spawned = std::thread::Builder::new()
            .name("mex-sandbox-input".into())
            .spawn(move || {
                use std::io::Write;
                let mut bytes = bytes;
                let _ = pipe.write_all(&bytes);
                // The input may carry key material: zero it once delivered.
                zeroize::Zeroize::zeroize(&mut bytes);
            });
        if let Err(e) = spawned {
            return fail(&format!("cannot start the input writer: {e}"));
        }
    }
    let child_pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    // A pidfd makes the child's exit pollable; without one (old kernels),
    // poll wakes up every 20 ms to look.
    let pidfd = child_pid
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    let stdin = std::io::stdin();
    let lifeline_open = args.lifeline;
    let stop = loop {
        if let Ok(Some(_)) = child.try_wait() {
            break Stop::Exited;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break Stop::Deadline;
        }
        let mut wait = deadline.map(|d| d.saturating_duration_since(now));
        if pidfd.is_none() {
            wait = Some(wait.map_or(Duration::from_millis(20), |w| {
                w.min(Duration::from_millis(20))
            }));
        }
        let timeout = wait.and_then(|w| Timespec::try_from(w).ok());
        let mut fds = Vec::with_capacity(2);
        if let Some(fd) = &pidfd {
            fds.push(PollFd::new(fd, PollFlags::IN));
        }
        let lifeline_at = fds.len();
        if lifeline_open {
            fds.push(PollFd::from_borrowed_fd(stdin.as_fd(), PollFlags::IN));
        }
        if fds.is_empty() && timeout.is_none() {
            // Nothing to wait on and no deadline: wait for the child.
            let _ = child.wait();
            break Stop::Exited;
        }
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = writeln!(std::io::stderr(), "mex-sandbox-exec: poll failed: {e}");
                break Stop::Lifeline;
            }
        }
        let lifeline_ready = lifeline_open
            && fds
                .get(lifeline_at)
                .is_some_and(|f| !f.revents().is_empty());
        drop(fds);
        if lifeline_ready {
            let mut buf = [0u8; 64];
            match rustix::io::read(stdin.as_fd(), &mut buf) {
                Ok(0) => break Stop::Lifeline,
                Ok(_) | Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                // Not readable as a pipe: treat it as closed.
                Err(_) => break Stop::Lifeline,
            }
        }
    };
    if stop != Stop::Exited {
        let _ = child.kill();
    }
    let status = child.wait();
    let stragglers = sweep(me, SWEEP_BUDGET);
    let (ended, code) = match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => (format!("exit={c}"), u8::try_from(c).unwrap_or(1)),
            (None, Some(sig)) => (
                format!("signal={sig}"),
                u8::try_from(128 + sig).unwrap_or(1),
            ),
            (None, None) => ("exit=1".to_owned(), 1),
        },
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "mex-sandbox-exec: cannot wait for the confined process: {e}"
            );
            ("exit=1".to_owned(), 1)
        }
    };
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "{TRAILER_MARK}{ended} stragglers={stragglers} reason={}",
        stop.as_str()
    );
    let _ = err.flush();
    ExitCode::from(code)
}

/// Kill and reap every process below `me` (a subreaper): kill the live
/// children, reap them, and repeat with the orphans re-parented here, until
/// there are no children left or `budget` is spent. Only own, unreaped
/// children are signalled, so a pid is never reused under us. Returns
/// whether any process was found.
fn sweep(me: Pid, budget: Duration) -> bool {
    let until = Instant::now() + budget;
    let mut found = false;
    loop {
        // Reap whatever already exited.
        loop {
            match rustix::process::waitpid(None, WaitOptions::NOHANG) {
                Ok(Some(_)) => {}
                Err(rustix::io::Errno::CHILD) => return found,
                _ => break,
            }
        }
        let children = live_children(me);
        found |= !children.is_empty();
        for pid in children {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
        if Instant::now() >= until {
            return found;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Live (not zombie) children of `me`, from `/proc`.
fn live_children(me: Pid) -> Vec<Pid> {
    let want = me.as_raw_nonzero().get();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid ..."; comm may hold spaces and parens.
            let rest = &stat[stat.rfind(')')? + 1..];
            let mut f = rest.split_whitespace();
            let state = f.next()?;
            let ppid: i32 = f.next()?.parse().ok()?;
            (ppid == want && state != "Z").then(|| Pid::from_raw(pid))?
        })
        .collect()
}
