//! The launcher half: what `mex-sandbox-exec` does in its own process
//! before it `exec`s the target. Kept in the library so any binary can host
//! it (`mex-sandbox-exec` here; an engine crate may ship its own copy).
//!
//! Order: parse arguments, set rlimits, build and apply the Landlock ruleset
//! (which also sets `no_new_privs`), report one header line on stderr, then
//! `exec`. Any failure before `exec` is reported as an error header and exit
//! status [`SETUP_FAILED_STATUS`]; nothing runs unconfined unless
//! `--degraded-ok` was passed (the trusted policy's switch).

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, LandlockStatus, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};
use rustix::process::{Resource, Rlimit, setrlimit};

/// Marker that starts the launcher's one header line on stderr.
pub const HEADER_MARK: &str = "\u{1}MEX-SANDBOX ";
/// Exit status of the launcher when confinement could not be set up.
pub const SETUP_FAILED_STATUS: u8 = 125;
/// The oldest Landlock ABI accepted without degraded mode: 4 is the first
/// with TCP bind/connect rules.
pub const MIN_LANDLOCK_ABI: ABI = ABI::V4;

#[derive(Debug, Default)]
struct Args {
    probe: bool,
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
/// Returns only on failure (or after `--probe`); on success the process
/// becomes the target program.
pub fn main_from_env() -> ExitCode {
    run(std::env::args_os().skip(1))
}

/// Run the launcher over explicit arguments. See [`main_from_env`].
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = match parse(args) {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
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
    let error = std::process::Command::new(&program)
        .args(&args.program_args)
        .exec();
    // exec returned: the target could not be started (ENOENT, EACCES...).
    let _ = writeln!(
        std::io::stderr(),
        "mex-sandbox-exec: cannot execute {}: {error}",
        program.display()
    );
    ExitCode::from(126)
}
