//! WebAssembly guests written in WAT, one misbehaviour each, run through
//! the real runtime: each ends with its typed outcome, on record, and
//! nothing reaches the store; a well-behaved guest succeeds and its
//! compiled module is reused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::sync::Arc;

use mex_artifacts::ArtifactStore;
use mex_engine_wasm::{WasmEngine, WasmEngineConfig, WasmHost};
use mex_envelope::{EngineResult, ResultStatus};
use mex_gates::CapabilityPolicy;
use mex_recorder::{EventQuery, FlightRecorder, MemoryRecorder};
use mex_registry::Registry;
use mex_runtime::{Engine, MexRuntime};
use serde_json::json;

/// Shared WAT: WASI imports, one page of memory and helpers. Preopens: fd 3
/// is `/in` (read-only), fd 4 is `/out`.
fn guest(data: &str, body: &str) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  {data}
  ;; write(fd, ptr, len): one iovec at 0, nwritten at 8
  (func $write (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
  ;; open(dirfd, ptr, len, oflags) -> fd, or -errno; the fd lands at 12
  (func $open (param $dir i32) (param $ptr i32) (param $len i32) (param $oflags i32) (result i32)
    (local $e i32)
    (local.set $e (call $path_open (local.get $dir) (i32.const 0) (local.get $ptr) (local.get $len)
      (local.get $oflags) (i64.const 66) (i64.const 66) (i32.const 0) (i32.const 12)))
    (if (result i32) (local.get $e)
      (then (i32.sub (i32.const 0) (local.get $e)))
      (else (i32.load (i32.const 12)))))
  (func (export "_start") (local $fd i32) (local $i i32)
    {body}))"#
    )
}

/// A data segment at `at` with `text`, and its (ptr, len).
fn data(at: u32, text: &str) -> (String, u32, usize) {
    let escaped: String = text.bytes().map(|b| format!("\\{b:02x}")).collect();
    (
        format!(r#"(data (i32.const {at}) "{escaped}")"#),
        at,
        text.len(),
    )
}

const OK_COMPLETION: &str = r#"{"protocol":"mex-engine-1","status":"succeeded","outputs":[{"file":"result.json","kind":"artifact.dataset","media_type":"application/json"}],"environment":{"lang":"wat"}}"#;

fn ok_guest() -> String {
    let (d1, p1, l1) = data(1024, "result.json");
    let (d2, p2, l2) = data(1100, r#"{"ok":true}"#);
    let (d3, p3, l3) = data(1200, "a line of log\n");
    let (d4, p4, l4) = data(2048, OK_COMPLETION);
    guest(
        &format!("{d1} {d2} {d3} {d4}"),
        &format!(
            "(local.set $fd (call $open (i32.const 4) (i32.const {p1}) (i32.const {l1}) (i32.const 9)))
             (if (i32.lt_s (local.get $fd) (i32.const 0)) (then (call $exit (i32.const 7))))
             (drop (call $write (local.get $fd) (i32.const {p2}) (i32.const {l2})))
             (drop (call $write (i32.const 2) (i32.const {p3}) (i32.const {l3})))
             (drop (call $write (i32.const 1) (i32.const {p4}) (i32.const {l4})))"
        ),
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    registry: Arc<Registry>,
    module: std::path::PathBuf,
}

fn registry_json(digest: &str) -> serde_json::Value {
    json!({
        "registry_version": "1.0",
        "engines": [{
            "engine_id": "engine.guest",
            "interface_version": "1.0.0",
            "domain": "Tests",
            "description": "A wasm engine that misbehaves as it was written to.",
            "determinism_ceiling": "D3",
            "default_capabilities": ["fs.write:artifacts"],
            "default_budget": {"cpu_time_ms": 10000, "wall_time_ms": 20000, "memory_bytes": 268435456, "output_bytes": 1048576},
            "max_budget": {"cpu_time_ms": 60000, "wall_time_ms": 60000, "memory_bytes": 2147483648u64, "output_bytes": 16777216},
            "implementations": [{
                "id": "guest-wat", "version": "0.1.0", "kind": "wasm",
                "path": "guest.wasm", "sha256": digest
            }],
            "failure_codes": [{"code": "GUEST_DENIED", "description": "the host refused what it tried"}],
            "operations": [{
                "name": "guest.run",
                "description": "Run the guest.",
                "params_schema": {"inline": {
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "type": "object", "additionalProperties": false, "properties": {}
                }},
                "outputs": [{"type": "artifact.dataset", "media_types": ["application/json"], "optional": true}],
                "required_capabilities": ["fs.write:artifacts"],
                "determinism": "D3",
                "failure_codes": ["GUEST_DENIED"]
            }]
        }]
    })
}

fn setup_bytes(bytes: &[u8]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("guest.wasm");
    std::fs::write(&module, bytes).unwrap();
    let digest = mex_envelope::Sha256Digest::of(bytes).to_string();
    let file = dir.path().join("mechanical_engines.json");
    std::fs::write(&file, registry_json(&digest).to_string()).unwrap();
    let registry = Arc::new(Registry::load(&file).unwrap());
    Setup {
        _dir: dir,
        registry,
        module,
    }
}

fn setup(wat: &str) -> Setup {
    setup_bytes(&wat::parse_str(wat).unwrap())
}

fn host() -> Arc<WasmHost> {
    Arc::new(
        WasmHost::new(WasmEngineConfig {
            jail_root: std::env::temp_dir().join("mex-wasm-tests"),
            ..Default::default()
        })
        .unwrap(),
    )
}

struct Run {
    result: EngineResult,
    store: Arc<ArtifactStore>,
    recorder: Arc<MemoryRecorder>,
    _home: tempfile::TempDir,
}

fn engine(s: &Setup, host: &Arc<WasmHost>) -> Arc<WasmEngine> {
    let e = s.registry.engines().next().unwrap();
    Arc::new(WasmEngine::new(e, &e.implementations[0], host.clone()).unwrap())
}

fn run_on(s: &Setup, engine: Arc<WasmEngine>, budget: serde_json::Value) -> Run {
    let home = tempfile::tempdir().unwrap();
    let store = Arc::new(ArtifactStore::at(home.path().join("artifacts")).unwrap());
    let recorder = Arc::new(MemoryRecorder::new());
    let rt = MexRuntime::builder()
        .registry(s.registry.clone())
        .policy(CapabilityPolicy::default_non_sensitive())
        .store(store.clone())
        .recorder(recorder.clone() as Arc<dyn FlightRecorder>)
        .workspace_root(home.path().join("runs"))
        .trust_uncertified("engine.guest".parse().unwrap())
        .result_cache(false)
        .engine(engine as Arc<dyn Engine>)
        .build()
        .unwrap();
    let op = json!({
        "schema_version": "poe-1.0",
        "op_id": uuid::Uuid::new_v4(),
        "engine_id": "engine.guest",
        "engine_version_req": "^0.1",
        "operation": "guest.run",
        "inputs": [],
        "params": {},
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

fn run(s: &Setup, budget: serde_json::Value) -> Run {
    run_on(s, engine(s, &host()), budget)
}

fn default_budget() -> serde_json::Value {
    json!({"wall_time_ms": 20000})
}

/// The run ended with `status` and `code`, on record, and nothing was
/// stored.
fn assert_outcome(r: &Run, status: ResultStatus, code: &str) {
    assert_outcome_any(r, status, &[code]);
}

/// As [`assert_outcome`], with any one of `codes`.
fn assert_outcome_any(r: &Run, status: ResultStatus, codes: &[&str]) {
    assert_eq!(r.result.status, status, "{:?}", r.result.errors);
    let code = r
        .result
        .errors
        .iter()
        .map(|e| e.code.as_str())
        .find(|c| codes.contains(c))
        .unwrap_or_else(|| panic!("expected one of {codes:?}, got {:?}", r.result.errors));
    assert!(r.result.outputs.is_empty());
    assert!(r.result.logs_ref.is_none());
    assert!(
        r.store.list().unwrap().is_empty(),
        "nothing may reach the store"
    );
    let events = r.recorder.events(&EventQuery::default()).unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.code.as_ref().is_some_and(|c| c.as_str() == code)),
        "{code} is on record: {events:?}"
    );
}

#[test]
fn a_well_behaved_guest_succeeds_with_its_output_log_and_environment() {
    let s = setup(&ok_guest());
    let r = run(&s, default_budget());
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
    assert_eq!(log, b"a line of log\n");
    let env = &r.result.provenance.as_ref().unwrap().environment;
    assert_eq!(env.get("engine.lang").map(String::as_str), Some("wat"));
    let digest = mex_envelope::Sha256Digest::of(&std::fs::read(&s.module).unwrap());
    assert_eq!(
        env.get("wasm.sha256").map(String::as_str),
        Some(digest.to_string().as_str())
    );
    assert!(env.get("wasm.fuel_used").unwrap().parse::<u64>().unwrap() > 0);
}

#[test]
fn the_module_is_compiled_once_and_reused_by_digest() {
    let s = setup(&ok_guest());
    let host = host();
    let e = engine(&s, &host);
    assert_eq!(
        e.code_digest(),
        mex_envelope::Sha256Digest::of(&std::fs::read(&s.module).unwrap())
    );
    for _ in 0..2 {
        let r = run_on(&s, e.clone(), default_budget());
        assert_eq!(
            r.result.status,
            ResultStatus::Succeeded,
            "{:?}",
            r.result.errors
        );
    }
    assert_eq!(host.compilations(), 1);
}

#[test]
fn fuel_is_deterministic_across_runs() {
    let s = setup(&ok_guest());
    let fuel =
        |r: &Run| r.result.provenance.as_ref().unwrap().environment["wasm.fuel_used"].clone();
    let a = run(&s, default_budget());
    let b = run(&s, default_budget());
    assert_eq!(fuel(&a), fuel(&b));
}

/// Tries to open `path` under the `/in` preopen; reports GUEST_DENIED with
/// the errno when refused, or succeeds if the host let it through.
fn escape_guest(path: &str) -> String {
    let (d1, p1, l1) = data(1024, path);
    let (d2, p2, l2) = data(
        2048,
        r#"{"protocol":"mex-engine-1","status":"failed","error":{"code":"GUEST_DENIED","message":"the host refused to open it"}}"#,
    );
    let (d3, p3, l3) = data(
        3072,
        r#"{"protocol":"mex-engine-1","status":"succeeded","outputs":[]}"#,
    );
    guest(
        &format!("{d1} {d2} {d3}"),
        &format!(
            "(local.set $fd (call $open (i32.const 3) (i32.const {p1}) (i32.const {l1}) (i32.const 0)))
             (if (i32.lt_s (local.get $fd) (i32.const 0))
               (then (drop (call $write (i32.const 1) (i32.const {p2}) (i32.const {l2}))))
               (else (drop (call $write (i32.const 1) (i32.const {p3}) (i32.const {l3})))))"
        ),
    )
}

#[test]
fn reading_outside_the_preopens_is_refused() {
    for path in ["/etc/passwd", "../../../../../../etc/passwd", "../out"] {
        let s = setup(&escape_guest(path));
        let r = run(&s, default_budget());
        assert_outcome(&r, ResultStatus::Failed, "GUEST_DENIED");
    }
}

#[test]
fn an_infinite_loop_runs_out_of_fuel() {
    let s = setup(&guest("", "(loop $l (br $l))"));
    let r = run(&s, json!({"wall_time_ms": 60000, "cpu_time_ms": 50}));
    assert_outcome(&r, ResultStatus::BudgetExceeded, "WASM_CPU_TIME_EXCEEDED");
}

#[test]
fn an_infinite_loop_is_stopped_at_the_wall_time_budget() {
    let s = setup(&guest("", "(loop $l (br $l))"));
    let r = run(&s, json!({"wall_time_ms": 300, "cpu_time_ms": 60000}));
    // The adapter stops the module just before the deadline; the runtime's
    // watchdog answers at the deadline: either names the wall-time budget.
    assert_outcome_any(
        &r,
        ResultStatus::BudgetExceeded,
        &["WASM_WALL_TIME_EXCEEDED", "RUNTIME.WALL_TIME_EXCEEDED"],
    );
}

#[test]
fn a_memory_bomb_is_a_typed_memory_overrun() {
    let s = setup(&guest(
        "",
        "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable",
    ));
    let r = run(&s, json!({"wall_time_ms": 20000, "memory_bytes": 16777216}));
    assert_outcome(&r, ResultStatus::BudgetExceeded, "WASM_MEMORY_EXCEEDED");
}

#[test]
fn a_stdout_flood_is_refused() {
    let s = setup(&guest(
        "",
        "(loop $l (drop (call $write (i32.const 1) (i32.const 0) (i32.const 60000))) (br $l))",
    ));
    let r = run(&s, default_budget());
    assert_outcome(&r, ResultStatus::Failed, "PROC_COMPLETION_TOO_LARGE");
}

#[test]
fn an_output_file_flood_is_an_output_overrun() {
    let (d1, p1, l1) = data(1024, "flood.bin");
    let s = setup(&guest(
        &d1,
        &format!(
            "(local.set $fd (call $open (i32.const 4) (i32.const {p1}) (i32.const {l1}) (i32.const 9)))
             (loop $l (drop (call $write (local.get $fd) (i32.const 0) (i32.const 60000))) (br $l))"
        ),
    ));
    let r = run(&s, json!({"wall_time_ms": 20000, "output_bytes": 1048576}));
    assert_outcome(
        &r,
        ResultStatus::BudgetExceeded,
        "RUNTIME.OUTPUT_BUDGET_EXCEEDED",
    );
}

#[test]
fn a_clock_read_in_a_d3_run_is_refused() {
    let s = setup(&guest(
        "",
        "(drop (call $clock (i32.const 0) (i64.const 1) (i32.const 16)))",
    ));
    let r = run(&s, default_budget());
    assert_outcome(&r, ResultStatus::Failed, "WASM_NONDETERMINISM_DENIED");
}

#[test]
fn a_malformed_module_is_refused() {
    let s = setup_bytes(b"\0asm\x01\0\0\0 this is not a module");
    let r = run(&s, default_budget());
    assert_outcome(&r, ResultStatus::Failed, "WASM_MALFORMED_MODULE");
}

#[test]
fn a_module_importing_anything_but_wasi_is_refused() {
    let s = setup(r#"(module (import "env" "escape" (func)) (func (export "_start")))"#);
    let r = run(&s, default_budget());
    assert_outcome(&r, ResultStatus::Failed, "WASM_MALFORMED_MODULE");
}

#[test]
fn a_module_changed_after_pinning_is_refused_before_it_runs() {
    let s = setup(&ok_guest());
    let e = engine(&s, &host());
    std::fs::write(&s.module, wat::parse_str(escape_guest("x")).unwrap()).unwrap();
    let r = run_on(&s, e, default_budget());
    assert_outcome(&r, ResultStatus::Failed, "WASM_DIGEST_MISMATCH");
}

#[test]
fn a_non_zero_exit_is_a_failure_even_with_a_completion() {
    let (d, p, l) = data(
        2048,
        r#"{"protocol":"mex-engine-1","status":"succeeded","outputs":[]}"#,
    );
    let s = setup(&guest(
        &d,
        &format!(
            "(drop (call $write (i32.const 1) (i32.const {p}) (i32.const {l}))) (call $exit (i32.const 3))"
        ),
    ));
    let r = run(&s, default_budget());
    assert_outcome(&r, ResultStatus::Failed, "WASM_EXIT_FAILURE");
}
