//! Process engines through the `mex` binary, from a fresh home: the example
//! engines under examples/engines/ are declared by overlay
//! (`--registry-dir`), certified by `mex conformance --engine`, and run by
//! `mex run`; a changed engine file is refused before it runs and shows in
//! Problems.
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

/// Store `file` in the home and return its handle.
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

fn scale_op(handle: &Value) -> Value {
    json!({
        "schema_version": "poe-1.0",
        "op_id": uuid::Uuid::new_v4(),
        "engine_id": "engine.sous_chef",
        "engine_version_req": "^0.1",
        "operation": "sous_chef.scale_recipe",
        "inputs": [handle],
        "params": {"recipe_ref": handle["artifact_id"], "servings_to": 4, "output": "json"},
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

#[test]
fn the_python_example_is_declared_by_overlay_certified_and_run_by_mex() {
    let home = tempfile::tempdir().unwrap();
    let dir = root().join("examples/engines/sous_chef");
    let o = mex(
        home.path(),
        &dir,
        &["conformance", "--engine", "engine.sous_chef"],
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
        &dir.join("vectors/bread.json"),
        "application/json",
    );
    let (o, result) = run_json(home.path(), &dir, &scale_op(&handle));
    assert_eq!(result["status"], "succeeded", "{}", text(&o));
    let out_id = result["outputs"][0]["artifact_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = mex(home.path(), &dir, &["artifacts", "get", &out_id]);
    let scaled: Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(scaled["servings"], 4.0);
    assert_eq!(scaled["ingredients"][0]["quantity"], 1000.0);
    assert_eq!(scaled["ingredients"][1]["bakers_percent"], 70.0);
}

#[test]
fn the_sdk_copy_in_the_example_is_the_sdk() {
    assert_eq!(
        std::fs::read(root().join("sdk/python/mex_engine.py")).unwrap(),
        std::fs::read(root().join("examples/engines/sous_chef/mex_engine.py")).unwrap()
    );
}

#[test]
fn an_uncertified_process_engine_is_refused_with_a_hint_that_works_for_it() {
    let home = tempfile::tempdir().unwrap();
    let dir = root().join("examples/engines/sous_chef");
    let handle = put(
        home.path(),
        &dir,
        &dir.join("vectors/bread.json"),
        "application/json",
    );
    let (o, result) = run_json(home.path(), &dir, &scale_op(&handle));
    assert_eq!(result["status"], "denied", "{}", text(&o));
    let message = result["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("mex conformance --engine engine.sous_chef"),
        "{message}"
    );
}

#[test]
fn a_changed_engine_file_is_refused_before_it_runs_and_shows_in_problems() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("sous_chef");
    copy_dir(&root().join("examples/engines/sous_chef"), &dir);
    let o = mex(
        home.path(),
        &dir,
        &["conformance", "--engine", "engine.sous_chef"],
    );
    assert!(o.status.success(), "{}", text(&o));
    // One byte changed (a comment), after certification.
    let mut bytes = std::fs::read(dir.join("engine.py")).unwrap();
    bytes[0] = b'#';
    std::fs::write(dir.join("engine.py"), bytes).unwrap();

    let handle = put(
        home.path(),
        &dir,
        &dir.join("vectors/bread.json"),
        "application/json",
    );
    let op = scale_op(&handle);
    let (o, result) = run_json(home.path(), &dir, &op);
    assert_eq!(result["status"], "denied", "{}", text(&o));
    assert_eq!(
        result["denials"][0]["code"],
        "G-SAFETY.PROCESS.DIGEST_MISMATCH"
    );
    assert!(result["outputs"].as_array().unwrap().is_empty());

    let events = mex(
        home.path(),
        &dir,
        &[
            "recorder",
            "events",
            "--op",
            op["op_id"].as_str().unwrap(),
            "--json",
        ],
    );
    let events = String::from_utf8_lossy(&events.stdout);
    assert!(
        events.contains("G-SAFETY.PROCESS.DIGEST_MISMATCH"),
        "{events}"
    );
    assert!(
        !events.contains("engine_started"),
        "it must not start: {events}"
    );
    let problems = mex(home.path(), &dir, &["problems", "--json"]);
    let problems = String::from_utf8_lossy(&problems.stdout);
    assert!(
        problems.contains("G-SAFETY.PROCESS.DIGEST_MISMATCH"),
        "{problems}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The Rust example is built here (a workspace member), copied into a
/// scratch overlay directory, pinned with `mex registry pin --overlay` (a
/// build's digest differs per toolchain and profile, so the committed
/// overlay carries a placeholder pin), certified and run.
#[test]
fn the_rust_example_is_built_pinned_certified_and_run_by_mex() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = Command::new(cargo)
        .args([
            "build",
            "-p",
            "mex-example-food-safety",
            "--bin",
            "food-safety-engine",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", text(&build));
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("food_safety");
    copy_dir(&root().join("examples/engines/food_safety"), &dir);
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy(
        target.join("debug/food-safety-engine"),
        dir.join("bin/food-safety-engine"),
    )
    .unwrap();
    let overlay = dir.join("food_safety.json");
    let o = mex(
        home.path(),
        &dir,
        &["registry", "pin", "--overlay", overlay.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = mex(
        home.path(),
        &dir,
        &["conformance", "--engine", "engine.food_safety"],
    );
    assert!(o.status.success(), "{}", text(&o));

    let mut op: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("vectors/golden-pasteurization.json")).unwrap(),
    )
    .unwrap();
    op["op_id"] = json!(uuid::Uuid::new_v4());
    let (o, result) = run_json(home.path(), &dir, &op);
    assert_eq!(result["status"], "succeeded", "{}", text(&o));
    let out_id = result["outputs"][0]["artifact_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = mex(home.path(), &dir, &["artifacts", "get", &out_id]);
    let answer: Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(answer["food"], "chicken");
    assert!(answer["total_minutes"].as_f64().unwrap() > answer["hold_minutes"].as_f64().unwrap());
}
