//! A `mex run` killed with SIGKILL in the middle of a sandboxed script: the
//! confined shell and its background `sleep` die with it, and the run's
//! leftovers (shadow workspace, sandbox jail) are removed and reported by
//! `mex gc`, which leaves a live run's directories alone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

const POLICY: &str = r#"{"policy_version":"mex-policy-1","default_profile":"default",
 "profiles":{"default":{"grants":["fs.read:*","fs.write:artifacts","proc.exec:bash"]}}}"#;

fn command(home: &Path, args: &[&str]) -> Command {
    let mut cmd = common::command(home, &["--policy"]);
    cmd.arg(home.join("../policy.json")).args(args);
    cmd
}

fn mex(home: &Path, args: &[&str]) -> Output {
    let out = command(home, args).output().unwrap();
    assert!(
        out.status.success(),
        "mex {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn put(home: &Path, name: &str, bytes: &str, media: &str) -> Value {
    let file = home.join("..").join(name);
    std::fs::write(&file, bytes).unwrap();
    let out = mex(
        home,
        &[
            "artifacts",
            "put",
            "--json",
            "--media-type",
            media,
            file.to_str().unwrap(),
        ],
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A home with engine.sandbox certified and an op whose script records its
/// pids in `pids-<token>` (in its jail's `work/`) and waits on a
/// background `sleep`.
fn sleeping_op(home: &Path, token: &str) -> PathBuf {
    std::fs::create_dir_all(home).unwrap();
    std::fs::write(home.join("../policy.json"), POLICY).unwrap();
    mex(home, &["conformance", "--engine", "engine.sandbox"]);
    let script = put(
        home,
        "s.sh",
        &format!("sleep 30 &\necho $! > p.tmp\necho $$ >> p.tmp\nmv p.tmp pids-{token}\nwait\n"),
        "text/plain",
    );
    let allow = put(
        home,
        "allow.json",
        r#"{"commands":["sleep","mv"]}"#,
        "application/json",
    );
    let spec = put(home, "spec.json", "{}", "application/json");
    let op = json!({
        "schema_version": "poe-1.0", "op_id": uuid::Uuid::new_v4().to_string(),
        "engine_id": "engine.sandbox", "engine_version_req": "^0.1", "operation": "sandbox.run_shell",
        "inputs": [script, allow, spec],
        "params": {"shell": "bash", "script_ref": script["artifact_id"], "inputs": [],
                   "command_allowlist_ref": allow["artifact_id"], "output_spec_ref": spec["artifact_id"]},
        "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts", "proc.exec:bash"],
        "budget": {"wall_time_ms": 60000, "output_bytes": 1048576}, "determinism": "D2"
    });
    let file = home.join("../op.json");
    std::fs::write(&file, op.to_string()).unwrap();
    file
}

fn jail_root() -> PathBuf {
    std::env::temp_dir().join("mex-sandbox")
}

/// Wait for the script's pid file; returns (its jail, the pids).
fn wait_for_pids(token: &str, run: &mut Child) -> (PathBuf, Vec<i32>) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        for jail in std::fs::read_dir(jail_root()).unwrap().flatten() {
            let file = jail.path().join("work").join(format!("pids-{token}"));
            if let Ok(text) = std::fs::read_to_string(&file) {
                let pids: Vec<i32> = text
                    .split_whitespace()
                    .map(|p| p.parse().unwrap())
                    .collect();
                assert_eq!(pids.len(), 2, "{text:?}");
                return (jail.path(), pids);
            }
        }
        if let Some(status) = run.try_wait().unwrap() {
            panic!("mex run ended before the script started: {status}");
        }
        assert!(Instant::now() < until, "the script never wrote its pids");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

fn workspaces(home: &Path) -> Vec<PathBuf> {
    // Shadow workspaces live off the home, under a root named by a digest
    // of the store's path.
    let root = mex_runtime::reclaim::default_workspace_root(&home.join("artifacts"));
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("{e}"),
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

#[test]
fn a_sigkilled_mex_run_leaves_no_process_and_gc_reclaims_its_directories() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("h");
    let token = uuid::Uuid::new_v4().simple().to_string();
    let op = sleeping_op(&home, &token);
    let mut run = command(&home, &["run", op.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (jail, pids) = wait_for_pids(&token, &mut run);
    assert!(pids.iter().all(|p| alive(*p)), "{pids:?}");
    // The sandbox engine works in its jail: no shadow workspace is made for
    // a run that does not ask for one.
    assert_eq!(workspaces(&home), Vec::<PathBuf>::new());

    // While the run is live, gc leaves its directories alone.
    let live = mex(&home, &["gc", "--json"]);
    let report: Value = serde_json::from_slice(&live.stdout).unwrap();
    assert!(report["live_left_alone"].as_u64().unwrap() >= 1, "{report}");
    assert!(jail.exists());

    run.kill().unwrap(); // SIGKILL
    run.wait().unwrap();
    // The confined shell and its background sleep die with mex.
    let until = Instant::now() + Duration::from_secs(20);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(
        left.is_empty(),
        "sandboxed processes outlived the SIGKILLed mex: {left:?}"
    );

    // Its jail is left over, and so would be a workspace a killed run had
    // made (what one leaves: a workspace-named directory nobody locks; the
    // runtime's own crash test kills runs holding real ones); gc removes and
    // names both. (The jail root is shared by every home on the machine: a
    // sandbox engine started meanwhile by another process may have reclaimed
    // the jail already.)
    let root = mex_runtime::reclaim::default_workspace_root(&home.join("artifacts"));
    let ws = [root.join(format!("{}-deadrun", uuid::Uuid::new_v4().hyphenated()))];
    std::fs::create_dir_all(ws[0].join("staged")).unwrap();
    let jail_left = jail.exists();
    let out = mex(&home, &["gc"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "removed shadow workspace of a dead run: {}",
            ws[0].display()
        )),
        "{text}"
    );
    assert!(
        !jail_left
            || text.contains(&format!(
                "removed sandbox jail of a dead run: {}",
                jail.display()
            )),
        "{text}"
    );
    assert!(!ws[0].exists() && !jail.exists());
    assert!(workspaces(&home).is_empty());
}
