//! Every escape attempt we guard against (filesystem, network, exec,
//! process and resource limits), against the real kernel: each must be
//! blocked and come back with the right typed outcome. If Landlock is
//! missing these tests FAIL (they never pass vacuously).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mex_sandbox::{Confinement, Denial, Limits, Outcome, Request, SandboxConfig, Termination};

fn config() -> SandboxConfig {
    SandboxConfig {
        launcher: Some(PathBuf::from(env!("CARGO_BIN_EXE_mex-sandbox-exec"))),
        ..SandboxConfig::default()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    work: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::Builder::new()
        .prefix("mex-sbx-test")
        .tempdir()
        .unwrap();
    let work = dir.path().join("work");
    mex_sandbox::prepare_workdir(&config(), &work).unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    Fixture { _dir: dir, work }
}

fn exe(name: &str) -> PathBuf {
    mex_sandbox::resolve_executable(name).unwrap()
}

fn request(work: &Path, program: &str, args: &[&str], extra_exec: &[&str]) -> Request {
    let mut executables = vec![exe(program)];
    executables.extend(extra_exec.iter().map(|e| exe(e)));
    executables.extend(mex_sandbox::dynamic_loaders());
    let mut read_write = vec![work.to_path_buf()];
    read_write.extend(mex_sandbox::system_read_write_paths());
    Request {
        program: exe(program),
        args: args.iter().map(Into::into).collect(),
        workdir: work.to_path_buf(),
        env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("HOME".into(), work.display().to_string()),
            ("LANG".into(), "C.UTF-8".into()),
        ],
        limits: Limits {
            memory_bytes: 256 << 20,
            cpu_time_ms: 2000,
            processes: 32,
            stdout_bytes: 64 << 10,
            stderr_bytes: 64 << 10,
            ..Limits::default()
        },
        confinement: Confinement {
            read_only: mex_sandbox::system_read_only_paths(),
            read_write,
            executables,
            network: false,
            allow_degraded: false,
        },
        deadline: Instant::now() + Duration::from_secs(10),
    }
}

fn bash(work: &Path, script: &str, extra_exec: &[&str]) -> Request {
    request(work, "bash", &["-c", script], extra_exec)
}

fn run(req: &Request) -> Outcome {
    mex_sandbox::run(&config(), req).unwrap()
}

fn stdout(o: &Outcome) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn landlock_is_available_and_enforced() {
    let e = mex_sandbox::probe(&config(), false).unwrap_or_else(|e| {
        panic!("Landlock is missing or too old on this machine ({e}); the sandbox tests cannot prove confinement and FAIL on purpose")
    });
    assert!(
        e.landlock_abi >= 4,
        "Landlock ABI {} < 4: no network rules; FAIL",
        e.landlock_abi
    );
    assert!(e.fully_enforced && e.no_new_privs && !e.degraded, "{e:?}");
}

#[test]
fn a_plain_script_runs_with_a_cleared_environment() {
    let f = fixture();
    let o = run(&bash(
        &f.work,
        "echo hello; echo out > file.txt; cat file.txt; echo \"[$MEX_SECRET_PROBE]\"; echo \"$PATH\"",
        &["cat"],
    ));
    assert!(o.success(), "{o:?}");
    assert_eq!(stdout(&o), "hello\nout\n[]\n/usr/bin:/bin\n");
    assert!(o.enforcement.landlock_abi >= 4 && o.enforcement.fully_enforced);
    assert_eq!(
        std::fs::read_to_string(f.work.join("file.txt")).unwrap(),
        "out\n"
    );
}

#[test]
fn reading_etc_passwd_is_denied() {
    let f = fixture();
    // /etc/passwd is world-readable: only Landlock can refuse it.
    let o = run(&bash(&f.work, "cat /etc/passwd", &["cat"]));
    assert_eq!(o.termination, Termination::Exited(1), "{o:?}");
    assert!(!stdout(&o).contains("root:"));
    assert_eq!(
        o.denial(),
        Some(Denial::Filesystem),
        "{}",
        o.stderr_tail(400)
    );
    // Without the coreutils: a bash redirection is refused the same way.
    let o = run(&bash(
        &f.work,
        "read -r line < /etc/passwd; echo \"$line\"",
        &[],
    ));
    assert!(!stdout(&o).contains("root:"));
    assert_eq!(
        o.denial(),
        Some(Denial::Filesystem),
        "{}",
        o.stderr_tail(400)
    );
}

#[test]
fn reading_the_users_home_is_denied() {
    let f = fixture();
    let home = tempfile::Builder::new()
        .prefix("mex-sbx-home")
        .tempdir()
        .unwrap();
    std::fs::write(home.path().join("secret"), "s3cret").unwrap();
    std::fs::set_permissions(
        home.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(
        home.path().join("secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let script = format!("cat {}/secret; ls /root", home.path().display());
    let o = run(&bash(&f.work, &script, &["cat", "ls"]));
    assert_ne!(o.termination, Termination::Exited(0));
    assert!(!stdout(&o).contains("s3cret"));
    assert_eq!(
        o.denial(),
        Some(Denial::Filesystem),
        "{}",
        o.stderr_tail(400)
    );
}

#[test]
fn writing_outside_the_workspace_is_denied() {
    let f = fixture();
    let target = std::env::temp_dir().join(format!("mex-sbx-outside-{}", std::process::id()));
    let _ = std::fs::remove_file(&target);
    // /tmp is world-writable: only Landlock can refuse it.
    let o = run(&bash(
        &f.work,
        &format!("echo pwned > {}", target.display()),
        &[],
    ));
    assert_eq!(o.termination, Termination::Exited(1), "{o:?}");
    assert!(!target.exists(), "the write escaped");
    assert_eq!(
        o.denial(),
        Some(Denial::Filesystem),
        "{}",
        o.stderr_tail(400)
    );
}

#[test]
fn a_symlink_out_of_the_workspace_does_not_escape() {
    let f = fixture();
    let o = run(&bash(
        &f.work,
        "ln -s /etc/passwd link && cat link",
        &["ln", "cat"],
    ));
    assert_eq!(o.termination, Termination::Exited(1), "{o:?}");
    assert!(!stdout(&o).contains("root:"));
    assert_eq!(
        o.denial(),
        Some(Denial::Filesystem),
        "{}",
        o.stderr_tail(400)
    );
    // The link itself exists in the workspace (harmless); following it is not allowed.
    assert!(
        f.work
            .join("link")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    (l, port)
}

const PY_CONNECT: &str = "import socket,sys\ns=socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=2)\ns.sendall(b'hello')\ns.close()\nprint('connected')";

#[test]
fn connecting_without_net_is_denied() {
    let f = fixture();
    // Both layers, then Landlock alone (no network namespace helper).
    for netns in [true, false] {
        let config = SandboxConfig {
            netns_helper: if netns { config().netns_helper } else { None },
            ..config()
        };
        assert!(
            !netns || config.netns_helper.is_some(),
            "/usr/bin/unshare is missing"
        );
        let (l, port) = listener();
        let port = port.to_string();
        let o = mex_sandbox::run(
            &config,
            &request(&f.work, "python3", &["-c", PY_CONNECT, &port], &[]),
        )
        .unwrap();
        assert_eq!(o.termination, Termination::Exited(1), "{o:?}");
        assert_eq!(o.enforcement.network_namespace, netns);
        assert!(!stdout(&o).contains("connected"));
        // Landlock refuses TCP connect before routing sees the empty namespace.
        let expected = "PermissionError";
        assert!(
            o.stderr_tail(2000).contains(expected),
            "{}",
            o.stderr_tail(2000)
        );
        assert_eq!(o.denial(), Some(Denial::Network), "{}", o.stderr_tail(400));
        assert!(l.accept().is_err(), "a connection reached the listener");
        // bash's /dev/tcp is refused too.
        let o = mex_sandbox::run(
            &config,
            &bash(&f.work, &format!("exec 3<>/dev/tcp/127.0.0.1/{port}"), &[]),
        )
        .unwrap();
        assert_ne!(o.termination, Termination::Exited(0));
        assert_eq!(o.denial(), Some(Denial::Network), "{}", o.stderr_tail(400));
        assert!(l.accept().is_err());
    }
}

#[test]
fn udp_without_net_goes_nowhere() {
    let f = fixture();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    let script = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.sendto(b'leak', ('127.0.0.1', {port}))\nprint('sent')"
    );
    let o = run(&request(&f.work, "python3", &["-c", &script], &[]));
    assert!(o.enforcement.network_namespace, "{o:?}");
    assert_ne!(o.termination, Termination::Exited(0), "{o:?}");
    assert_eq!(o.denial(), Some(Denial::Network), "{}", o.stderr_tail(400));
    let mut buf = [0u8; 16];
    assert!(
        sock.recv(&mut buf).is_err(),
        "a UDP datagram left the sandbox"
    );
}

#[test]
fn connecting_with_net_granted_works() {
    let f = fixture();
    let (l, port) = listener();
    let server = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match l.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    let mut buf = Vec::new();
                    s.read_to_end(&mut buf).unwrap();
                    return buf;
                }
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("no connection: {e}"),
            }
        }
    });
    let mut req = request(
        &f.work,
        "python3",
        &["-c", PY_CONNECT, &port.to_string()],
        &[],
    );
    req.confinement.network = true;
    let o = run(&req);
    assert!(o.success(), "{o:?} {}", o.stderr_tail(1000));
    assert_eq!(server.join().unwrap(), b"hello");
}

#[test]
fn exec_of_a_binary_off_the_allowlist_is_denied() {
    let f = fixture();
    let o = run(&bash(&f.work, "/usr/bin/id", &[]));
    assert_eq!(o.termination, Termination::Exited(126), "{o:?}");
    assert_eq!(o.denial(), Some(Denial::Exec), "{}", o.stderr_tail(400));
    // Copying an allowed binary into the workspace does not make it executable there.
    let o = run(&bash(&f.work, "cp /usr/bin/id ./id && ./id", &["cp"]));
    assert_eq!(o.termination, Termination::Exited(126), "{o:?}");
}

/// Processes of `uid`, zombies included (killed orphans are re-parented to
/// the supervising process and reaped by it, so none may be left).
fn uid_process_count(uid: u32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("status"))
                .ok()
                .filter(|s| {
                    !s.lines()
                        .any(|l| l.starts_with("State:") && l.contains('Z'))
                })
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("Uid:"))
                        .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
                })
                .is_some_and(|u| u == uid.to_string())
        })
        .count()
}

#[test]
fn a_fork_bomb_is_contained() {
    // Its own uid, so the bomb neither counts nor is counted against the
    // other tests' children running in parallel as the default uid.
    let config = SandboxConfig {
        run_as: (60_123, 60_123),
        ..config()
    };
    let dir = tempfile::Builder::new()
        .prefix("mex-sbx-test")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let work = dir.path().join("work");
    mex_sandbox::prepare_workdir(&config, &work).unwrap();
    let f = Fixture { _dir: dir, work };
    let mut req = bash(&f.work, "b(){ b | b & }; b; wait", &[]);
    req.limits.processes = 16;
    req.deadline = Instant::now() + Duration::from_millis(1500);
    let o = mex_sandbox::run(&config, &req).unwrap();
    // Depending on timing, the shell notices the refused forks (Processes),
    // runs into the deadline (WallTime), or returns while its subshells are
    // still being refused, in which case the leftover group is killed
    // (stragglers_killed). Containment is what the survivor count proves.
    assert!(
        matches!(
            o.termination,
            Termination::Processes | Termination::WallTime
        ) || (matches!(o.termination, Termination::Exited(_)) && o.stragglers_killed),
        "{o:?}"
    );
    // Whoever runs the test: every process of the bomb has the workspace as
    // its working directory, and none may be left.
    let left = processes_in(&f.work);
    assert!(left.is_empty(), "fork-bomb processes survived: {left:?}");
    // As root the bomb ran under its own uid: none of that uid either.
    if let Some((uid, _)) = config.effective_run_as() {
        assert_eq!(
            uid_process_count(uid),
            0,
            "processes of the sandbox uid survived"
        );
    }
}

/// Live processes whose working directory is `work`. Readable for the
/// processes of one's own uid and, as root, for every process: so it holds
/// for whoever runs the tests.
fn processes_in(work: &Path) -> Vec<i32> {
    let work = std::fs::canonicalize(work).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == work)
                && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    stat.rfind(')')
                        .and_then(|i| stat[i + 1..].split_whitespace().next())
                        .is_some_and(|state| state != "Z")
                })
        })
        .collect()
}

#[test]
fn allocating_past_the_memory_budget_is_stopped() {
    let f = fixture();
    let mut req = request(
        &f.work,
        "python3",
        &["-c", "x = bytearray(400 * 1024 * 1024)\nprint(len(x))"],
        &[],
    );
    req.limits.memory_bytes = 128 << 20;
    let o = run(&req);
    assert_eq!(
        o.termination,
        Termination::Memory,
        "{o:?} {}",
        o.stderr_tail(400)
    );
    assert!(o.termination.is_budget_overrun());
}

#[test]
fn spinning_past_the_cpu_budget_is_stopped() {
    let f = fixture();
    let mut req = bash(&f.work, "while :; do :; done", &[]);
    req.limits.cpu_time_ms = 300; // rounded up to 1 s
    // The wall-time deadline is far away (120 s: even a machine so loaded
    // that the spinner gets 1% of a core reaches 1 s of CPU first), so only
    // the CPU limit can have stopped it, and the outcome says which did.
    req.deadline = Instant::now() + Duration::from_secs(120);
    let o = run(&req);
    assert_eq!(o.termination, Termination::CpuTime, "{o:?}");
}

#[test]
fn printing_without_end_is_cut_off() {
    let f = fixture();
    let o = run(&bash(
        &f.work,
        "while :; do echo aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; done",
        &[],
    ));
    assert_eq!(o.termination, Termination::Output, "{o:?}");
    assert_eq!(o.stdout.len(), 64 << 10);
    // A file written past RLIMIT_FSIZE is an output overrun too.
    let mut req = bash(&f.work, "head -c 2000000 /dev/zero > big", &["head"]);
    req.limits.file_size_bytes = 1 << 20;
    let o = run(&req);
    assert_eq!(o.termination, Termination::Output, "{o:?}");
}

#[test]
fn sleeping_past_the_wall_time_is_killed() {
    let f = fixture();
    let mut req = bash(&f.work, "sleep 30 & sleep 30", &["sleep"]);
    req.deadline = Instant::now() + Duration::from_millis(300);
    let o = run(&req);
    assert_eq!(o.termination, Termination::WallTime, "{o:?}");
}

#[test]
fn stdin_is_null() {
    let f = fixture();
    let o = run(&bash(&f.work, "read -r x; echo \"rc=$? x=[$x]\"", &[]));
    assert_eq!(stdout(&o), "rc=1 x=[]\n");
    let _ = std::io::stdout().flush();
}

#[test]
fn background_processes_left_behind_are_killed_and_reported() {
    let f = fixture();
    let o = run(&bash(&f.work, "sleep 30 & echo started", &["sleep"]));
    // Exited(0), not WallTime: the run ended when the shell did, and the
    // left-over sleep was killed rather than waited for.
    assert_eq!(o.termination, Termination::Exited(0), "{o:?}");
    assert!(o.stragglers_killed, "{o:?}");
    assert!(
        processes_in(&f.work).is_empty(),
        "the background sleep survived"
    );
}

#[test]
fn without_landlock_the_sandbox_fails_closed_unless_degraded_is_allowed() {
    let f = fixture();
    let config = SandboxConfig {
        simulate_missing_landlock: true,
        ..config()
    };
    // Fail closed: the target never runs.
    let marker = f.work.join("ran");
    let req = bash(&f.work, "echo yes > ran", &[]);
    match mex_sandbox::run(&config, &req) {
        Err(mex_sandbox::SandboxError::ConfinementUnavailable { reason }) => {
            assert!(reason.contains("Landlock"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!marker.exists(), "the target ran without confinement");
    assert!(mex_sandbox::probe(&config, false).is_err());
    // Degraded by the trusted policy's leave: runs, and says so.
    let mut req = req;
    req.confinement.allow_degraded = true;
    let o = mex_sandbox::run(&config, &req).unwrap();
    assert!(o.success(), "{o:?}");
    assert!(
        o.enforcement.degraded && o.enforcement.landlock_abi == 0,
        "{:?}",
        o.enforcement
    );
    assert!(o.enforcement.no_new_privs);
    assert!(marker.exists());
    assert!(mex_sandbox::probe(&config, true).unwrap().degraded);
}

#[test]
fn a_cancelled_run_is_killed_with_its_group() {
    let f = fixture();
    // A marker file appears once the script (and its background child) run.
    let mut req = bash(
        &f.work,
        "sleep 613.4217 & touch started; wait",
        &["sleep", "touch"],
    );
    req.deadline = Instant::now() + Duration::from_secs(120);
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = cancel.clone();
    let marker = f.work.join("started");
    let watcher = std::thread::spawn(move || {
        while !marker.exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let o = mex_sandbox::run_cancellable(&config(), &req, &cancel).unwrap();
    watcher.join().unwrap();
    assert_eq!(o.termination, Termination::Cancelled, "{o:?}");
    assert!(!o.termination.is_budget_overrun());
    // Nothing of the group survives: no process runs the marked sleep.
    let survivors = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c.windows(8).any(|w| w == b"613.4217"))
        })
        .count();
    assert_eq!(survivors, 0);
}
