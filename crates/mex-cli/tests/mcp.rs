//! `mex serve` end to end, driven by the official Python MCP SDK (the `mcp`
//! package) over stdio and streamable HTTP. The client scenarios live in
//! `crates/mex-mcp/tests/py/mcp_client.py`; `cargo xtask test` prepares a
//! virtual environment with the pinned SDK and exports its interpreter as
//! `MEX_TEST_PYTHON`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const MEX: &str = env!("CARGO_BIN_EXE_mex");

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../mex-mcp/tests/py/mcp_client.py")
}

/// The interpreter with the `mcp` package; fails (never skips) without it.
fn python() -> PathBuf {
    let Some(python) = std::env::var_os("MEX_TEST_PYTHON") else {
        panic!(
            "MEX_TEST_PYTHON is not set. These tests drive `mex serve` with the official Python MCP SDK: run `cargo xtask test`, which creates target/py-venv with the pinned `mcp` package and runs the whole suite"
        );
    };
    let ok = Command::new(&python)
        .args(["-c", "import mcp, httpx2, anyio"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "MEX_TEST_PYTHON={} cannot import the `mcp` package; run `cargo xtask test` to (re)create target/py-venv",
        python.to_string_lossy()
    );
    PathBuf::from(python)
}

/// A fresh home with the shipped engines certified.
fn home() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("mex");
    let out = Command::new(MEX)
        .arg("--home")
        .arg(&home)
        .arg("conformance")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "conformance failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, home)
}

fn run_scenario(args: &[&str]) {
    let out = Command::new(python())
        .arg(script())
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(&format!("ok {}", args[0])),
        "scenario {} failed:\n{stdout}\n{stderr}",
        args[0]
    );
}

fn stdio(scenario: &str) {
    let (_dir, home) = home();
    run_scenario(&[scenario, "stdio", MEX, home.to_str().unwrap()]);
}

/// `mex serve --http` on a free loopback port; killed on drop.
struct HttpServer {
    child: Child,
    url: String,
    token_file: PathBuf,
    home: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_server() -> HttpServer {
    let (dir, home) = home();
    http_server_on(dir, home)
}

fn http_server_on(dir: tempfile::TempDir, home: PathBuf) -> HttpServer {
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{}\n", uuid_like())).unwrap();
    let mut child = Command::new(MEX)
        .arg("--home")
        .arg(&home)
        .args(["serve", "--http", "127.0.0.1:0", "--token-file"])
        .arg(&token_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("mex serve ended before it listened")
            .unwrap();
        if let Some(url) = line.strip_prefix("mex: serving MCP at ") {
            break url.trim().to_owned();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    HttpServer {
        child,
        url,
        token_file,
        home,
        _dir: dir,
    }
}

fn uuid_like() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn http(scenario: &str) {
    let server = http_server();
    run_scenario(&[
        scenario,
        "http",
        &server.url,
        server.token_file.to_str().unwrap(),
    ]);
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod over_stdio {
            $( #[test] fn $name() { super::stdio(stringify!($name)); } )*
        }
        mod over_http {
            $( #[test] fn $name() { super::http(stringify!($name)); } )*
        }
    };
}

scenarios!(
    tools, evaluate, bad_param, capability, replay, concurrent, cancel, hostile, strict
);

/// A home whose default profile grants `net.http` subject to consent (no
/// consent record yet).
fn consent_home() -> (tempfile::TempDir, PathBuf) {
    let (dir, home) = home();
    let path = home.join("policy.json");
    let mut policy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let profile = policy["default_profile"].as_str().unwrap().to_owned();
    policy["profiles"][&profile]["grants"]
        .as_array_mut()
        .unwrap()
        .push("net.http".into());
    std::fs::write(&path, serde_json::to_string_pretty(&policy).unwrap()).unwrap();
    (dir, home)
}

fn consent(scenario: &str, grants_network: bool) {
    let (_dir, home) = if grants_network {
        consent_home()
    } else {
        home()
    };
    run_scenario(&[scenario, "stdio", MEX, home.to_str().unwrap()]);
}

#[test]
fn consent_accepted_through_elicitation_is_written_recorded_and_in_force() {
    consent("consent_accept", true);
}

#[test]
fn consent_declined_through_elicitation_leaves_the_policy_and_the_denial() {
    consent("consent_decline", true);
}

#[test]
fn consent_accepted_through_a_legacy_elicitation_request() {
    consent("consent_accept_legacy", true);
}

#[test]
fn consent_declined_through_a_legacy_elicitation_request() {
    consent("consent_decline_legacy", true);
}

/// A consent scenario against `mex serve --http`: the question travels
/// over the HTTP transport and the answer writes the server's policy.
fn consent_over_http(scenario: &str) {
    let (dir, home) = consent_home();
    let server = http_server_on(dir, home);
    run_scenario(&[
        scenario,
        "http",
        &server.url,
        server.token_file.to_str().unwrap(),
        server.home.to_str().unwrap(),
    ]);
}

#[test]
fn consent_accepted_through_elicitation_over_http() {
    consent_over_http("consent_accept");
}

#[test]
fn consent_declined_through_elicitation_over_http() {
    consent_over_http("consent_decline");
}

#[test]
fn a_capability_the_policy_does_not_grant_is_never_asked_about() {
    consent("consent_not_granted", false);
}

#[test]
fn an_operation_denied_for_another_reason_too_is_never_asked_about() {
    consent("consent_mixed", true);
}

#[test]
fn without_elicitation_the_denial_says_how_to_grant_consent() {
    consent("consent_without_elicitation", true);
}

#[test]
fn http_without_the_token_is_401_and_oversized_bodies_413() {
    http("unauthorized");
}

#[test]
fn http_refuses_to_start_without_a_token() {
    let (_dir, home) = home();
    let out = Command::new(MEX)
        .arg("--home")
        .arg(&home)
        .args(["serve", "--http", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no bearer token") && err.contains("--insecure-no-auth"),
        "{err}"
    );
}

#[test]
fn insecure_no_auth_is_refused_off_loopback() {
    let (_dir, home) = home();
    let out = Command::new(MEX)
        .arg("--home")
        .arg(&home)
        .args(["serve", "--http", "0.0.0.0:0", "--insecure-no-auth"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only allowed on a loopback address"), "{err}");
}

#[test]
fn a_short_token_is_refused() {
    let (dir, home) = home();
    let token = dir.path().join("token");
    std::fs::write(&token, "short").unwrap();
    let out = Command::new(MEX)
        .arg("--home")
        .arg(&home)
        .args(["serve", "--http", "127.0.0.1:0", "--token-file"])
        .arg(&token)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16"));
}
