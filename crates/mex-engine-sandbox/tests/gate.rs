//! The G-SAFETY.SANDBOX gate's rules, one by one, on bare operations.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "test code: a failed expectation panics, which is the test failing"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "tests prepare files and listeners on the host, outside the engine, to attack it"
)]

use std::path::PathBuf;

use mex_engine_sandbox::{DEFAULT_INTERPRETERS, GATE_CODES, SandboxGate};
use mex_envelope::{DenialSeverity, PlannedOperation};
use mex_gates::Gate;
use mex_sandbox::SandboxConfig;
use serde_json::{Value, json};

fn config() -> SandboxConfig {
    SandboxConfig {
        launcher: Some(PathBuf::from(env!("CARGO_BIN_EXE_mex-engine-sandbox-exec"))),
        ..SandboxConfig::default()
    }
}

fn op(operation: &str, params: Value, caps: &[&str]) -> PlannedOperation {
    PlannedOperation::from_json_value(json!({
        "schema_version": "poe-1.0", "op_id": "7d3c1f0e-0000-4000-8000-00000000aaaa",
        "engine_id": "engine.sandbox", "engine_version_req": "^0.1", "operation": operation,
        "inputs": [], "params": params, "capabilities_requested": caps,
        "budget": {"wall_time_ms": 1000, "output_bytes": 1024}, "determinism": "D2"
    }))
    .unwrap()
}

fn codes(gate: &SandboxGate, op: &PlannedOperation) -> Vec<(String, Option<String>)> {
    let findings = gate.check_all(op);
    for f in &findings {
        assert_eq!(f.gate.as_str(), "G-SAFETY.SANDBOX");
        assert!(
            GATE_CODES.iter().any(|(c, _)| *c == f.code.as_str()),
            "{} not in GATE_CODES",
            f.code
        );
    }
    findings
        .into_iter()
        .map(|f| (f.code.as_str().to_owned(), f.pointer))
        .collect()
}

#[test]
fn clean_operations_pass() {
    let gate = SandboxGate::new(&config(), DEFAULT_INTERPRETERS, false);
    assert_eq!(gate.id().as_str(), "G-SAFETY.SANDBOX");
    assert!(
        codes(
            &gate,
            &op("sandbox.run_python", json!({}), &["proc.exec:python3"])
        )
        .is_empty()
    );
    assert!(
        codes(
            &gate,
            &op(
                "sandbox.run_shell",
                json!({"shell": "bash"}),
                &["proc.exec:bash"]
            )
        )
        .is_empty()
    );
    assert!(
        gate.check(&op("sandbox.run_python", json!({}), &["proc.exec:python3"]))
            .is_ok()
    );
}

#[test]
fn a_shell_off_the_allowlist_is_exec_denied() {
    let gate = SandboxGate::new(&config(), DEFAULT_INTERPRETERS, false);
    let found = codes(
        &gate,
        &op(
            "sandbox.run_shell",
            json!({"shell": "pwsh"}),
            &["proc.exec:pwsh"],
        ),
    );
    assert!(
        found.contains(&(
            "G-SAFETY.SANDBOX.EXEC_DENIED".into(),
            Some("/params/shell".into())
        )),
        "{found:?}"
    );
    assert!(
        found.contains(&(
            "G-SAFETY.SANDBOX.EXEC_DENIED".into(),
            Some("/capabilities_requested/0".into())
        )),
        "{found:?}"
    );
}

#[test]
fn a_proc_exec_off_the_allowlist_is_exec_denied() {
    let gate = SandboxGate::new(&config(), DEFAULT_INTERPRETERS, false);
    let found = codes(
        &gate,
        &op(
            "sandbox.run_python",
            json!({}),
            &["proc.exec:python3", "proc.exec:perl"],
        ),
    );
    assert_eq!(
        found,
        [(
            "G-SAFETY.SANDBOX.EXEC_DENIED".to_owned(),
            Some("/capabilities_requested/1".to_owned())
        )]
    );
}

#[test]
fn run_shell_must_request_its_shell() {
    let gate = SandboxGate::new(&config(), DEFAULT_INTERPRETERS, false);
    let found = codes(
        &gate,
        &op(
            "sandbox.run_shell",
            json!({"shell": "bash"}),
            &["fs.read:inputs"],
        ),
    );
    assert_eq!(
        found,
        [(
            "G-SAFETY.SANDBOX.EXEC_NOT_REQUESTED".to_owned(),
            Some("/capabilities_requested".to_owned())
        )]
    );
}

#[test]
fn an_allowlisted_interpreter_that_is_not_installed_is_refused() {
    let gate = SandboxGate::new(&config(), &["bash", "no-such-interpreter-xyz"], false);
    let found = codes(
        &gate,
        &op(
            "sandbox.run_shell",
            json!({"shell": "no-such-interpreter-xyz"}),
            &["proc.exec:no-such-interpreter-xyz"],
        ),
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "G-SAFETY.SANDBOX.INTERPRETER_UNAVAILABLE");
}

#[test]
fn unknown_operations_are_refused() {
    let gate = SandboxGate::new(&config(), DEFAULT_INTERPRETERS, false);
    let found = codes(&gate, &op("sandbox.run_ruby", json!({}), &[]));
    assert_eq!(found[0].0, "G-SAFETY.SANDBOX.UNKNOWN_OPERATION");
}

#[test]
fn no_launcher_means_fail_closed_even_with_degraded_allowed() {
    let broken = SandboxConfig {
        launcher: Some(PathBuf::from("/nonexistent/mex-sandbox-exec")),
        ..SandboxConfig::default()
    };
    for degraded in [false, true] {
        let gate = SandboxGate::new(&broken, DEFAULT_INTERPRETERS, degraded);
        assert!(gate.enforcement().is_err());
        let findings = gate.check_all(&op("sandbox.run_python", json!({}), &["proc.exec:python3"]));
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].code.as_str(), "G-SAFETY.SANDBOX.UNAVAILABLE");
        assert_eq!(findings[0].severity, DenialSeverity::Deny);
    }
}

#[test]
fn the_probe_reports_landlock() {
    let gate = SandboxGate::new(&config(), DEFAULT_INTERPRETERS, false);
    let e = gate
        .enforcement()
        .unwrap_or_else(|e| panic!("Landlock missing on this machine ({e}): FAIL"));
    assert!(
        e.landlock_abi >= 4 && e.fully_enforced && !e.degraded,
        "{e:?}"
    );
}
