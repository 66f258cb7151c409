//! The example wasm engine through the `mex` binary, from a fresh home:
//! examples/engines/context_wasm is declared by overlay
//! (`--registry-dir`), certified by `mex conformance --engine`, and run by
//! `mex run`; a changed module is refused before it runs.
#![cfg(feature = "wasm")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn mex(home: &Path, registry_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mex"))
        .arg("--home")
        .arg(home)
        .arg("--registry")
        .arg(root().join("mechanical_engines.json"))
        .arg("--registry-dir")
        .arg(registry_dir)
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

fn put(home: &Path, dir: &Path, file: &Path, media: &str) -> Value {
    let o = mex(
        home,
        dir,
        &[
            "artifacts",
            "put",
            file.to_str().unwrap(),
            "--media-type",
            media,
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap();
    serde_json::from_str(line).unwrap()
}

fn find_todos_op(handle: &Value) -> Value {
    json!({
        "schema_version": "poe-1.0",
        "op_id": uuid::Uuid::new_v4(),
        "engine_id": "engine.context_wasm",
        "engine_version_req": "^0.1",
        "operation": "context_wasm.find_todos",
        "inputs": [handle],
        "params": {"source_ref": handle["artifact_id"]},
        "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts"],
        "budget": {"wall_time_ms": 10000},
        "determinism": "D3"
    })
}

fn run_json(home: &Path, dir: &Path, op: &Value) -> (Output, Value) {
    let file = home.join(format!("op-{}.json", op["op_id"].as_str().unwrap()));
    std::fs::write(&file, op.to_string()).unwrap();
    let o = mex(home, dir, &["run", file.to_str().unwrap(), "--json"]);
    let result = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not an EngineResult ({e}): {}", text(&o)));
    (o, result)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn the_wasm_example_is_declared_by_overlay_certified_and_run_by_mex() {
    let home = tempfile::tempdir().unwrap();
    let dir = root().join("examples/engines/context_wasm");
    let o = mex(
        home.path(),
        &dir,
        &["conformance", "--engine", "engine.context_wasm"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("certified:"),
        "{}",
        text(&o)
    );

    let handle = put(
        home.path(),
        &dir,
        &dir.join("vectors/sample.rs"),
        "text/plain",
    );
    let (o, result) = run_json(home.path(), &dir, &find_todos_op(&handle));
    assert_eq!(result["status"], "succeeded", "{}", text(&o));
    let out_id = result["outputs"][0]["artifact_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = mex(home.path(), &dir, &["artifacts", "get", &out_id]);
    let todos: Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(todos, json!({"count": 3, "lines": [2, 5, 8]}));
    // Determinism checked, not claimed: `mex run --check` runs it twice in
    // fresh workspaces and compares the outputs.
    let op = find_todos_op(&handle);
    let file = home.path().join("checked.json");
    std::fs::write(&file, op.to_string()).unwrap();
    let o = mex(
        home.path(),
        &dir,
        &["run", file.to_str().unwrap(), "--check", "--json"],
    );
    let checked: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not an EngineResult ({e}): {}", text(&o)));
    assert_eq!(checked["status"], "succeeded", "{}", text(&o));
    let env = &result["provenance"]["environment"];
    assert_eq!(
        env["wasm.sha256"],
        mex_envelope::Sha256Digest::of(&std::fs::read(dir.join("find_todos.wasm")).unwrap())
            .to_string()
    );
}

#[test]
fn a_changed_module_is_refused_before_it_runs() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("context_wasm");
    copy_dir(&root().join("examples/engines/context_wasm"), &dir);
    let o = mex(
        home.path(),
        &dir,
        &["conformance", "--engine", "engine.context_wasm"],
    );
    assert!(o.status.success(), "{}", text(&o));
    // One byte of a data segment changed, after certification: still a
    // valid module, no longer the pinned one.
    let mut bytes = std::fs::read(dir.join("find_todos.wasm")).unwrap();
    let at = bytes.windows(4).position(|w| w == b"TODO").unwrap();
    bytes[at] = b'X';
    std::fs::write(dir.join("find_todos.wasm"), bytes).unwrap();

    let handle = put(
        home.path(),
        &dir,
        &dir.join("vectors/sample.rs"),
        "text/plain",
    );
    let (o, result) = run_json(home.path(), &dir, &find_todos_op(&handle));
    // The adapter re-hashes the module before every run (a certificate
    // naming the code digest would deny it even earlier, at admission).
    let codes: Vec<&str> = result["errors"]
        .as_array()
        .into_iter()
        .chain(result["denials"].as_array())
        .flatten()
        .filter_map(|e| e["code"].as_str())
        .collect();
    assert!(
        (result["status"] == "failed" && codes.contains(&"WASM_DIGEST_MISMATCH"))
            || result["status"] == "denied",
        "{}",
        text(&o)
    );
    assert!(result["outputs"].as_array().unwrap().is_empty());
}
