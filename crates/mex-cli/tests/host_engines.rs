//! Host engines (registry kind `host_process`): engines compiled into `mex`
//! that run as the `mex` binary itself, started as `mex-engine-exec <engine
//! id>` inside the process-engine jail. Through the real binary, from a
//! fresh home.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn mex(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mex"))
        .arg("--home")
        .arg(home)
        .arg("--registry")
        .arg(root().join("mechanical_engines.json"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("MEX_HOME")
        .env_remove("MEX_REGISTRY_DIR")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Started under the host name with an engine id it does not host, the
/// binary answers one protocol request with a failed completion (and does
/// not act as the CLI).
#[test]
fn the_binary_started_as_mex_engine_exec_speaks_the_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("mex-engine-exec-test");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_mex"), &link).unwrap();
    let request = json!({
        "protocol": "mex-engine-1",
        "op_id": "7d3c1f0e-0000-4000-8000-000000000999",
        "engine_id": "engine.nope",
        "implementation_id": "nope",
        "implementation_version": "0.1.0",
        "operation": "nope.op",
        "params": {},
        "inputs": [],
        "budget": {},
        "determinism": "D3",
        "output_dir": dir.path().display().to_string()
    });
    let mut child = Command::new(&link)
        .arg("engine.nope")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let completion: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(completion["status"], "failed", "{completion}");
    assert_eq!(completion["error"]["code"], "PROC_BAD_REQUEST");
    assert!(
        completion["error"]["message"]
            .as_str()
            .unwrap()
            .contains("engine.dba"),
        "the message lists what is hosted: {completion}"
    );
}

/// `mex engines` lists engine.dba as a runnable (here: uncertified)
/// implementation, and `mex conformance` runs it under the sandbox: the
/// invalid-SQL vector comes back with the engine's own code, which only the
/// handler inside the jailed child can produce.
#[test]
fn a_host_engine_is_listed_and_runs_in_the_jail() {
    let home = tempfile::tempdir().unwrap();
    let o = mex(home.path(), &["engines"]);
    let listing = String::from_utf8_lossy(&o.stdout);
    let line = listing
        .lines()
        .find(|l| l.starts_with("engine.dba"))
        .unwrap_or_else(|| panic!("{}", text(&o)));
    assert!(
        !line.contains("declared only") && !line.contains("not installed"),
        "{line}"
    );
    let o = mex(
        home.path(),
        &["conformance", "--engine", "engine.dba", "--json"],
    );
    let report: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&o)));
    let cases = report["engines"][0]["report"]["cases"].as_array().unwrap();
    let reject = cases
        .iter()
        .find(|c| c["id"] == "vector.reject-invalid-sql")
        .unwrap();
    assert_eq!(reject["verdict"], "pass", "{reject}");
    assert!(
        reject["observed"]
            .as_str()
            .unwrap()
            .contains("DBA_SQL_ERROR"),
        "{reject}"
    );
}
