//! Op ids across real `mex` processes: several `mex run` with one op id run
//! it once; a run killed with SIGKILL is recorded as interrupted on the next
//! open, shows in Problems, and its op id never runs again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use mex_artifacts::{ArtifactStore, PutOptions};
use mex_envelope::{ArtifactHandle, ArtifactKind, Classification, ResultStatus};
use mex_recorder::{
    ClaimState, EventKind, EventQuery, FlightRecorder, INTERRUPTED_CODE, SqliteRecorder,
};
use serde_json::{Value, json};
use uuid::Uuid;

mod common;
use common::{command, mex, text};

fn spawn(home: &Path, args: &[&str]) -> Child {
    command(home, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A fresh home with engine.sandbox certified, and a `sandbox.run_shell`
/// operation running `script` written to `op.json`. Returns the op id.
fn home_with_shell_op(home: &Path, script: &str) -> (PathBuf, Uuid) {
    let out = mex(home, &["conformance", "--engine", "engine.sandbox"]);
    assert!(
        out.status.success(),
        "certifying engine.sandbox failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let store = ArtifactStore::at(home.join("artifacts")).unwrap();
    let put = |bytes: &[u8], media: &str| -> ArtifactHandle {
        let mut options = PutOptions::new(ArtifactKind::File, Classification::Low);
        options.media_type = media.parse().ok();
        store.put_bytes(bytes, &options).unwrap()
    };
    let script = put(script.as_bytes(), "text/plain");
    let allow = put(br#"{"commands": ["sleep"]}"#, "application/json");
    let spec = put(br#"{"files": []}"#, "application/json");
    let op_id = Uuid::new_v4();
    let op = json!({
        "schema_version": "poe-1.0", "op_id": op_id.to_string(),
        "engine_id": "engine.sandbox", "engine_version_req": "^0.1", "operation": "sandbox.run_shell",
        "inputs": [script, allow, spec],
        "params": {
            "script_ref": script.artifact_id.to_string(), "shell": "bash",
            "command_allowlist_ref": allow.artifact_id.to_string(),
            "inputs": [], "output_spec_ref": spec.artifact_id.to_string()
        },
        "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts", "proc.exec:bash"],
        "budget": {"wall_time_ms": 120000, "output_bytes": 1048576},
        "determinism": "D2"
    });
    let path = home.join("op.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&op).unwrap()).unwrap();
    (path, op_id)
}

fn events(home: &Path, op: Uuid, kind: EventKind) -> Vec<mex_recorder::Event> {
    SqliteRecorder::open(home)
        .unwrap()
        .events(&EventQuery {
            op_id: Some(op),
            kind: Some(kind),
            ..EventQuery::default()
        })
        .unwrap()
}

fn result_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not an EngineResult ({e}):\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

#[test]
fn three_processes_racing_one_fresh_op_id_run_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    // The run lasts a second, so every process is admitted while the
    // winner is still running: only an atomic claim keeps the others out.
    let (op, op_id) = home_with_shell_op(home, "sleep 1\n");
    let op = op.to_str().unwrap();
    let children: Vec<Child> = (0..4)
        .map(|_| spawn(home, &["run", op, "--json"]))
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let statuses: Vec<String> = outs
        .iter()
        .map(|o| result_of(o)["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| *s == "succeeded").count(),
        1,
        "{statuses:?}\n{}",
        outs.iter()
            .map(|o| format!("{}{}", text(&o.stdout), text(&o.stderr)))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for out in outs
        .iter()
        .filter(|o| result_of(o)["status"] == json!("denied"))
    {
        let result = result_of(out);
        assert_eq!(
            result["denials"][0]["code"],
            json!("G-INTEGRITY.REPLAYED_OP_ID"),
            "{result}"
        );
        assert_eq!(out.status.code(), Some(3));
    }
    assert_eq!(statuses.iter().filter(|s| *s == "denied").count(), 3);
    assert_eq!(events(home, op_id, EventKind::EngineStarted).len(), 1);
    let completed = events(home, op_id, EventKind::OpCompleted);
    assert_eq!(completed.len(), 4, "every process's outcome is on record");
    assert_eq!(
        completed
            .iter()
            .filter(|e| e.status == Some(ResultStatus::Succeeded))
            .count(),
        1
    );
}

#[test]
fn a_run_killed_mid_run_is_recorded_interrupted_and_never_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let (op, op_id) = home_with_shell_op(home, "sleep 60\n");
    let op = op.to_str().unwrap();
    let mut child = spawn(home, &["run", op, "--json"]);

    // Wait (bounded) until the run is admitted and started.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let started = !events(home, op_id, EventKind::EngineStarted).is_empty();
        if started {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "mex run ended ({status}) before its engine started:\n{}\n{}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        assert!(
            Instant::now() < deadline,
            "the run was never admitted: no engine_started on record"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A second open while the run is alive leaves it alone.
    {
        let rec = SqliteRecorder::open(home).unwrap();
        assert_eq!(rec.claim_state(op_id).unwrap(), Some(ClaimState::Admitted));
        assert!(rec.reconcile_interrupted().unwrap().is_empty());
    }

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // The next open (here, `mex problems`) records the run as interrupted.
    let problems = mex(home, &["problems"]);
    assert!(problems.status.success(), "{}", text(&problems.stderr));
    assert!(
        text(&problems.stdout).contains(INTERRUPTED_CODE),
        "{}",
        text(&problems.stdout)
    );
    let completed = events(home, op_id, EventKind::OpCompleted);
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(completed[0].status, Some(ResultStatus::Failed));
    assert_eq!(
        completed[0].code.as_ref().map(|c| c.as_str()),
        Some(INTERRUPTED_CODE)
    );

    // The op id never runs again.
    let again = mex(home, &["run", op, "--json"]);
    let result = result_of(&again);
    assert_eq!(result["status"], json!("denied"), "{result}");
    assert_eq!(
        result["denials"][0]["code"],
        json!("G-INTEGRITY.REPLAYED_OP_ID")
    );
    assert_eq!(events(home, op_id, EventKind::EngineStarted).len(), 1);
    let rec = SqliteRecorder::open(home).unwrap();
    assert_eq!(
        rec.claim_state(op_id).unwrap(),
        Some(ClaimState::Interrupted)
    );
    assert!(rec.verify().unwrap().is_ok());
}
