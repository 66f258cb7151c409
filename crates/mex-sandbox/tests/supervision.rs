//! Nothing sandboxed outlives its supervisor or its deadline, with real
//! processes: a supervising process is SIGKILLed while its sandboxed shell
//! has a background job and a `setsid`-escaped python running, and every one
//! of them must be gone; the launcher, left alone without a lifeline, stops
//! its program at the deadline by itself.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mex_sandbox::{Confinement, Limits, Request, SandboxConfig, Termination};

const CHILD_ENV: &str = "MEX_SANDBOX_SUPERVISION_CHILD";

fn launcher() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mex-sandbox-exec"))
}

fn config() -> SandboxConfig {
    SandboxConfig {
        launcher: Some(launcher()),
        ..SandboxConfig::default()
    }
}

/// A jail-like directory the sandbox uid can reach: `<tmp>/x/work`.
fn workdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("mex-sbx-sup")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let work = dir.path().join("work");
    mex_sandbox::prepare_workdir(&config(), &work).unwrap();
    (dir, work)
}

fn exe(name: &str) -> PathBuf {
    mex_sandbox::resolve_executable(name).unwrap()
}

/// A shell with a background `sleep` and a python that leaves the process
/// group (`setsid`); it writes their pids (and its own) to `pids` and waits.
const SCRIPT: &str = r#"sleep 30 &
echo $! > pids.tmp
python3 -c 'import os,time; os.setsid(); open("escaped.pid","w").write(str(os.getpid())); time.sleep(30)' &
echo $$ >> pids.tmp
until [ -s escaped.pid ]; do :; done
cat escaped.pid >> pids.tmp
echo >> pids.tmp
mv pids.tmp pids
wait
"#;

fn request(work: &Path, deadline: Duration) -> Request {
    let mut read_write = vec![work.to_path_buf()];
    read_write.extend(mex_sandbox::system_read_write_paths());
    let mut executables = vec![
        exe("bash"),
        exe("sleep"),
        exe("python3"),
        exe("cat"),
        exe("mv"),
    ];
    executables.extend(mex_sandbox::dynamic_loaders());
    Request {
        program: exe("bash"),
        args: vec!["-c".into(), SCRIPT.into()],
        workdir: work.to_path_buf(),
        env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("HOME".into(), work.display().to_string()),
        ],
        limits: Limits {
            cpu_time_ms: 60_000,
            processes: 32,
            ..Limits::default()
        },
        confinement: Confinement {
            read_only: mex_sandbox::system_read_only_paths(),
            read_write,
            executables,
            network: false,
            allow_degraded: false,
        },
        deadline: Instant::now() + deadline,
    }
}

/// Whether `pid` is a live process (a zombie is dead: it only waits to be
/// reaped by whoever adopted it).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

/// Wait (at most a generous bound, so a regression fails instead of
/// hanging) until none of `pids` is alive and no live process has `work` as
/// its working directory; returns the survivors. The launcher is one of the
/// latter: it reaps the program's group and reports before it exits, so it
/// may still be running for a moment after the last of `pids` is gone.
fn survivors_after_waiting(pids: &[i32], work: &Path) -> Vec<i32> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let mut left: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        for pid in processes_in(work) {
            if !left.contains(&pid) {
                left.push(pid);
            }
        }
        if left.is_empty() || Instant::now() >= until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Live processes whose working directory is `work` (every process of the
/// script has it).
fn processes_in(work: &Path) -> Vec<i32> {
    let work = std::fs::canonicalize(work).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == work)
                && alive(*pid)
        })
        .collect()
}

fn wait_for_pids(work: &Path) -> Vec<i32> {
    let file = work.join("pids");
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let pids: Vec<i32> = text
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect();
            assert_eq!(pids.len(), 3, "{text:?}");
            return pids;
        }
        assert!(
            Instant::now() < until,
            "the sandboxed script never wrote its pids"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Run by the test below as a separate process (the env var names the
/// workspace): supervise the script until killed. Run by the test harness
/// itself, it checks the same script under a short deadline: the run ends as
/// `WallTime`, and the shell, its background job and the escaped python are
/// all gone when `run` returns.
#[test]
fn supervisor_child() {
    if let Ok(work) = std::env::var(CHILD_ENV) {
        println!("supervising");
        let outcome = mex_sandbox::run(
            &config(),
            &request(Path::new(&work), Duration::from_secs(60)),
        );
        panic!("the supervisor was meant to be killed, but the run ended: {outcome:?}");
    }
    let (_dir, work) = workdir();
    // A deadline long enough for the script to write its pids, however
    // loaded the machine: the script then waits forever.
    let handle = {
        let work = work.clone();
        std::thread::spawn(move || {
            mex_sandbox::run(&config(), &request(&work, Duration::from_secs(8)))
        })
    };
    let pids = wait_for_pids(&work);
    let outcome = handle.join().unwrap().unwrap();
    assert_eq!(outcome.termination, Termination::WallTime, "{outcome:?}");
    // Already gone when run returned: no waiting.
    let mut left: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    left.extend(processes_in(&work));
    assert!(
        left.is_empty(),
        "still running after the deadline: {left:?} of {pids:?}"
    );
}

#[test]
fn a_sigkilled_supervisor_takes_every_sandboxed_process_with_it() {
    let (_dir, work) = workdir();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "supervisor_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &work)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("supervising") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the child exited early"
        );
    }
    let pids = wait_for_pids(&work);
    assert!(pids.iter().all(|p| alive(*p)), "{pids:?}");
    child.kill().unwrap(); // SIGKILL: no destructor, no cleanup code runs
    child.wait().unwrap();
    let left = survivors_after_waiting(&pids, &work);
    assert!(
        left.is_empty(),
        "sandboxed processes outlived their SIGKILLed supervisor: {left:?} of {pids:?} (shell, background sleep, setsid python)"
    );
}

#[test]
fn the_launcher_enforces_the_deadline_without_its_parent() {
    let (_dir, work) = workdir();
    // The launcher as the parent would start it, but with no lifeline and
    // nobody enforcing the deadline but the launcher itself.
    let req = request(&work, Duration::ZERO);
    let mut cmd = Command::new(launcher());
    cmd.env_clear()
        .current_dir(&work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .arg("--deadline-ms=6000")
        .arg("--nproc=32");
    if let Some((uid, gid)) = config().effective_run_as() {
        std::os::unix::process::CommandExt::uid(&mut cmd, uid);
        std::os::unix::process::CommandExt::gid(&mut cmd, gid);
    }
    for p in &req.confinement.read_only {
        cmd.arg(format!("--ro={}", p.display()));
    }
    for p in &req.confinement.read_write {
        cmd.arg(format!("--rw={}", p.display()));
    }
    for p in &req.confinement.executables {
        cmd.arg(format!("--exec={}", p.display()));
    }
    cmd.arg("--").arg(&req.program).args(&req.args);
    let mut launcher = cmd.spawn().unwrap();
    let mut stderr = launcher.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    // The script's processes exist (the deadline is far enough away for
    // them to start on a loaded machine).
    let pids = wait_for_pids(&work);
    assert!(pids.iter().all(|p| alive(*p)), "{pids:?}");
    // Bounded, so a launcher that never stops fails the test instead of
    // hanging it.
    let until = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = launcher.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= until {
            launcher.kill().unwrap();
            panic!("the launcher did not stop its program at its own deadline");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Checked before reading stderr to its end: a survivor would hold it open.
    // A process sent SIGKILL by the launcher just before it exited may still
    // be tearing down on a loaded machine: wait for that (bounded), but a
    // process the launcher did not kill never goes and fails the test.
    let left = survivors_after_waiting(&pids, &work);
    assert!(
        left.is_empty(),
        "processes of the run outlived the launcher: {left:?}"
    );
    let stderr = reader.join().unwrap();
    let trailer = stderr
        .lines()
        .last()
        .unwrap_or_default()
        .strip_prefix(mex_sandbox::launcher::TRAILER_MARK)
        .unwrap_or_else(|| panic!("no trailer: {stderr:?}"))
        .to_owned();
    assert!(trailer.contains("reason=deadline"), "{trailer}");
    assert!(trailer.contains("signal=9"), "{trailer}");
    assert_eq!(status.code(), Some(128 + 9), "{stderr}");
}
