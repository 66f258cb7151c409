//! A hostile process engine (tests/fixtures/hostile.py, one misbehaviour per
//! `params.mode`) run through the real runtime, sandbox and gate: each
//! misbehaviour ends with its typed outcome and nothing reaches the store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mex_artifacts::ArtifactStore;
use mex_envelope::{EngineResult, ResultStatus};
use mex_gates::CapabilityPolicy;
use mex_recorder::{EventKind, EventQuery, FlightRecorder, MemoryRecorder};
use mex_registry::Registry;
use mex_runtime::MexRuntime;
use serde_json::json;

const SCRIPT: &str = include_str!("fixtures/hostile.py");

struct Setup {
    dir: tempfile::TempDir,
    registry: Arc<Registry>,
}

fn registry_json(interpreter: &str, digest: &str) -> serde_json::Value {
    json!({
        "registry_version": "1.0",
        "engines": [{
            "engine_id": "engine.hostile",
            "interface_version": "1.0.0",
            "domain": "Tests",
            "description": "A process engine that misbehaves on request.",
            "determinism_ceiling": "D3",
            "default_capabilities": ["fs.write:artifacts"],
            "default_budget": {"cpu_time_ms": 10000, "wall_time_ms": 20000, "memory_bytes": 536870912, "output_bytes": 1048576},
            "max_budget": {"cpu_time_ms": 60000, "wall_time_ms": 60000, "memory_bytes": 2147483648u64, "output_bytes": 16777216},
            "implementations": [{
                "id": "hostile-py", "version": "0.1.0", "kind": "process",
                "path": "hostile.py", "sha256": digest, "interpreter": interpreter
            }],
            "failure_codes": [{"code": "HOSTILE_REFUSED", "description": "it refused"}],
            "operations": [{
                "name": "hostile.run",
                "description": "Misbehave as params.mode says.",
                "params_schema": {"inline": {
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "type": "object", "additionalProperties": false,
                    "required": ["mode"], "properties": {"mode": {"type": "string"}}
                }},
                "outputs": [{"type": "artifact.dataset", "media_types": ["application/json"], "optional": true}],
                "required_capabilities": ["fs.write:artifacts"],
                "determinism": "D3",
                "failure_codes": ["HOSTILE_REFUSED"]
            }]
        }]
    })
}

fn setup_with(interpreter: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hostile.py"), SCRIPT).unwrap();
    let digest = mex_envelope::Sha256Digest::of(SCRIPT.as_bytes()).to_string();
    let file = dir.path().join("mechanical_engines.json");
    std::fs::write(&file, registry_json(interpreter, &digest).to_string()).unwrap();
    let registry = Arc::new(Registry::load(&file).unwrap());
    Setup { dir, registry }
}

fn setup() -> Setup {
    setup_with("python3")
}

fn config() -> mex_engine_process::ProcessEngineConfig {
    let mut config = mex_engine_process::ProcessEngineConfig {
        jail_root: std::env::temp_dir().join("mex-process-tests"),
        ..Default::default()
    };
    config.sandbox.launcher = Some(PathBuf::from(env!("CARGO_BIN_EXE_mex-engine-process-exec")));
    config
}

struct Run {
    result: EngineResult,
    store: Arc<ArtifactStore>,
    recorder: Arc<MemoryRecorder>,
    _home: tempfile::TempDir,
}

fn run(s: &Setup, mode: &str, budget: serde_json::Value) -> Run {
    let home = tempfile::tempdir().unwrap();
    let store = Arc::new(ArtifactStore::at(home.path().join("artifacts")).unwrap());
    let recorder = Arc::new(MemoryRecorder::new());
    let (engines, gate, errors) = mex_engine_process::process_engines(&s.registry, config());
    assert!(errors.is_empty(), "{errors:?}");
    let mut builder = MexRuntime::builder()
        .registry(s.registry.clone())
        .policy(CapabilityPolicy::default_non_sensitive())
        .store(store.clone())
        .recorder(recorder.clone() as Arc<dyn FlightRecorder>)
        .workspace_root(home.path().join("runs"))
        .engine_gate(gate)
        .trust_uncertified("engine.hostile".parse().unwrap())
        .result_cache(false);
    for e in engines {
        builder = builder.engine(e);
    }
    let rt = builder.build().unwrap();
    let op = json!({
        "schema_version": "poe-1.0",
        "op_id": uuid::Uuid::new_v4(),
        "engine_id": "engine.hostile",
        "engine_version_req": "^0.1",
        "operation": "hostile.run",
        "inputs": [],
        "params": {"mode": mode},
        "capabilities_requested": ["fs.write:artifacts"],
        "budget": budget,
        "determinism": "D3"
    });
    let result = rt.execute_json(op.to_string().as_bytes());
    Run {
        result,
        store,
        recorder,
        _home: home,
    }
}

fn default_budget() -> serde_json::Value {
    json!({"wall_time_ms": 20000})
}

fn codes(r: &EngineResult) -> Vec<String> {
    r.errors
        .iter()
        .map(|e| e.code.to_string())
        .chain(r.denials.iter().map(|d| d.code.to_string()))
        .collect()
}

/// The run ended with `status` and `code`, and nothing was stored.
fn assert_outcome(r: &Run, status: ResultStatus, code: &str) {
    assert_eq!(r.result.status, status, "{:?}", r.result.errors);
    assert!(
        codes(&r.result).iter().any(|c| c == code),
        "expected {code}, got {:?}",
        r.result.errors
    );
    assert!(r.result.outputs.is_empty());
    assert!(r.result.logs_ref.is_none());
    assert!(
        r.store.list().unwrap().is_empty(),
        "nothing may reach the store"
    );
}

#[test]
fn a_well_behaved_engine_succeeds_with_its_output_and_log() {
    let s = setup();
    let r = run(&s, "ok", default_budget());
    assert_eq!(
        r.result.status,
        ResultStatus::Succeeded,
        "{:?}",
        r.result.errors
    );
    assert_eq!(r.result.outputs.len(), 1);
    assert_eq!(
        r.store.read(&r.result.outputs[0]).unwrap(),
        br#"{"ok":true}"#
    );
    let log = r.store.read(r.result.logs_ref.as_ref().unwrap()).unwrap();
    assert!(String::from_utf8_lossy(&log).contains("a line of log"));
    let env = &r.result.provenance.as_ref().unwrap().environment;
    assert_eq!(env.get("engine.python").map(String::as_str), Some("3"));
    assert_eq!(
        env.get("process.protocol").map(String::as_str),
        Some("mex-engine-1")
    );
}

#[test]
fn writing_outside_the_output_directory_is_refused_by_the_sandbox() {
    let s = setup();
    let _ = std::fs::remove_file("/tmp/mex-process-hostile-escape");
    let r = run(&s, "write_outside", default_budget());
    assert_outcome(&r, ResultStatus::Failed, "PROC_POLICY_DENIED");
    assert!(!Path::new("/tmp/mex-process-hostile-escape").exists());
}

#[test]
fn claiming_a_file_outside_the_output_directory_is_an_escape() {
    let s = setup();
    let r = run(&s, "claim_outside", default_budget());
    assert_outcome(&r, ResultStatus::Failed, "PROC_OUTPUT_ESCAPE");
}

#[test]
fn a_symlink_out_of_the_output_directory_is_not_followed() {
    let s = setup();
    let r = run(&s, "symlink_out", default_budget());
    assert_outcome(&r, ResultStatus::Failed, "PROC_OUTPUT_ESCAPE");
}

#[test]
fn an_undeclared_kind_is_refused() {
    let s = setup();
    let r = run(&s, "undeclared_kind", default_budget());
    assert_outcome(&r, ResultStatus::Failed, "PROC_UNDECLARED_OUTPUT");
}

#[test]
fn an_undeclared_media_type_is_refused() {
    let s = setup();
    let r = run(&s, "undeclared_media", default_budget());
    assert_outcome(&r, ResultStatus::Failed, "PROC_UNDECLARED_OUTPUT");
}

#[test]
fn a_claimed_file_that_does_not_exist_is_missing() {
    let s = setup();
    let r = run(&s, "missing_output", default_budget());
    assert_outcome(&r, ResultStatus::Failed, "PROC_OUTPUT_MISSING");
}

#[test]
fn flooding_stdout_is_a_completion_too_large() {
    let s = setup();
    let r = run(&s, "flood", default_budget());
    assert_outcome(&r, ResultStatus::Failed, "PROC_COMPLETION_TOO_LARGE");
}

#[test]
fn a_cpu_budget_is_enforced() {
    let s = setup();
    let r = run(
        &s,
        "cpu",
        json!({"cpu_time_ms": 1000, "wall_time_ms": 30000}),
    );
    assert_outcome(&r, ResultStatus::BudgetExceeded, "PROC_CPU_TIME_EXCEEDED");
}

#[test]
fn a_memory_budget_is_enforced() {
    let s = setup();
    let r = run(
        &s,
        "memory",
        json!({"memory_bytes": 128 << 20, "wall_time_ms": 20000}),
    );
    assert_outcome(&r, ResultStatus::BudgetExceeded, "PROC_MEMORY_EXCEEDED");
}

#[test]
fn a_wall_time_budget_is_enforced() {
    let s = setup();
    let r = run(&s, "wall", json!({"wall_time_ms": 1500}));
    assert_eq!(
        r.result.status,
        ResultStatus::BudgetExceeded,
        "{:?}",
        r.result.errors
    );
    // The sandbox kills the group just before the deadline; the runtime's
    // watchdog answers at the deadline: either names the wall-time budget.
    assert!(
        codes(&r.result)
            .iter()
            .any(|c| c == "PROC_WALL_TIME_EXCEEDED" || c == "RUNTIME.WALL_TIME_EXCEEDED"),
        "{:?}",
        r.result.errors
    );
    assert!(r.result.outputs.is_empty());
    assert!(r.store.list().unwrap().is_empty());
}

#[test]
fn exiting_without_a_completion_is_typed() {
    let s = setup();
    let r = run(&s, "no_completion", default_budget());
    assert_outcome(&r, ResultStatus::Failed, "PROC_NO_COMPLETION");
}

#[test]
fn a_completion_with_unknown_fields_is_malformed() {
    let s = setup();
    let r = run(&s, "malformed", default_budget());
    assert_outcome(&r, ResultStatus::Failed, "PROC_MALFORMED_COMPLETION");
}

#[test]
fn a_completion_that_is_not_json_is_malformed() {
    let s = setup();
    let r = run(&s, "not_json", default_budget());
    assert_outcome(&r, ResultStatus::Failed, "PROC_MALFORMED_COMPLETION");
}

#[test]
fn a_reserved_provenance_key_is_refused() {
    let s = setup();
    let r = run(&s, "reserved_env", default_budget());
    assert_outcome(&r, ResultStatus::Failed, "PROC_MALFORMED_COMPLETION");
}

#[test]
fn a_declared_failure_code_is_reported_as_is() {
    let s = setup();
    let r = run(&s, "declared_failure", default_budget());
    assert_outcome(&r, ResultStatus::Failed, "HOSTILE_REFUSED");
}

#[test]
fn an_undeclared_failure_code_becomes_a_runtime_code() {
    let s = setup();
    let r = run(&s, "undeclared_failure", default_budget());
    assert_outcome(&r, ResultStatus::Failed, "PROC_UNDECLARED_FAILURE_CODE");
    assert!(r.result.errors[0].message.contains("SOMETHING_ELSE"));
}

#[test]
fn one_byte_changed_in_the_engine_file_is_refused_before_it_runs() {
    let s = setup();
    let mut bytes = SCRIPT.as_bytes().to_vec();
    bytes[0] ^= 0x01;
    std::fs::write(s.dir.path().join("hostile.py"), bytes).unwrap();
    let r = run(&s, "ok", default_budget());
    assert_eq!(
        r.result.status,
        ResultStatus::Denied,
        "{:?}",
        r.result.errors
    );
    assert!(codes(&r.result).contains(&"G-SAFETY.PROCESS.DIGEST_MISMATCH".to_owned()));
    assert!(r.store.list().unwrap().is_empty());
    let events = r.recorder.events(&EventQuery::default()).unwrap();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert!(
        !kinds.contains(&EventKind::EngineStarted),
        "the engine must not start: {kinds:?}"
    );
    assert!(
        kinds.contains(&EventKind::GateDenied),
        "the denial is on record: {kinds:?}"
    );
}

#[test]
fn an_interpreter_off_the_allowlist_is_denied_by_the_gate() {
    let s = setup_with("perl");
    let r = run(&s, "ok", default_budget());
    assert_eq!(
        r.result.status,
        ResultStatus::Denied,
        "{:?}",
        r.result.errors
    );
    assert!(
        codes(&r.result).contains(&"G-SAFETY.PROCESS.INTERPRETER_DENIED".to_owned()),
        "{:?}",
        r.result.errors
    );
    assert!(r.store.list().unwrap().is_empty());
}

#[test]
fn the_loader_adds_the_process_gate_as_required() {
    let s = setup();
    let engine = s
        .registry
        .engine(&"engine.hostile".parse().unwrap())
        .unwrap();
    assert!(
        engine
            .gates
            .iter()
            .any(|g| g.gate.as_str() == "G-SAFETY.PROCESS"
                && g.requirement == mex_registry::GateRequirement::Required)
    );
}
