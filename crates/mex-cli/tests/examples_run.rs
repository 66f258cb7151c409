//! Every valid example operation under `examples/ops/valid/` runs end to end
//! through the built `mex` binary, with real inputs.
//!
//! Each example has a run sidecar `examples/ops/run/<name>.json`:
//!
//! ```json
//! {"inputs": {"<placeholder artifact id>": "<file, from the workspace root>"},
//!  "expect": {"status": "succeeded"}}
//! ```
//!
//! The test stores each file (`mex artifacts put`, with the example's media
//! type and kind), puts the stored handle in place of the example's
//! placeholder input and every reference to its id, runs the operation
//! (`mex run --json`) in a home whose shipped engines are certified, and
//! checks the outcome. An example that cannot execute here says why in
//! `"admission_only"`, and its expected outcome must then be a denial (with
//! its code): the test checks that nothing ran.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

mod common;
use common::{mex, workspace};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Put every placeholder input of `op` into the store and substitute the
/// stored handles.
fn substitute_inputs(home: &Path, name: &str, op: &Value, sidecar: &Value) -> Value {
    let files = sidecar["inputs"]
        .as_object()
        .unwrap_or_else(|| panic!("{name}: the run sidecar has no \"inputs\" object"));
    let mut doc = op.to_string();
    let mut handles = Vec::new();
    for input in op["inputs"].as_array().unwrap() {
        let Some(id) = input.get("artifact_id").and_then(Value::as_str) else {
            // An entity reference, not an artifact: nothing to store.
            continue;
        };
        let file = files.get(id).and_then(Value::as_str).unwrap_or_else(|| {
            panic!("{name}: the run sidecar gives no file for input artifact {id}")
        });
        let path = workspace().join(file);
        let mut args = vec!["artifacts", "put", "--json"];
        if let Some(media) = input.get("media_type").and_then(Value::as_str) {
            args.extend(["--media-type", media]);
        }
        if let Some(kind) = input.get("kind").and_then(Value::as_str) {
            args.extend(["--kind", kind]);
        }
        args.push(path.to_str().unwrap());
        let put = mex(home, &args);
        assert!(put.status.success(), "{name}: put {file}: {}", text(&put));
        let handle: Value = serde_json::from_slice(&put.stdout).unwrap();
        doc = doc.replace(id, handle["artifact_id"].as_str().unwrap());
        handles.push((handle["artifact_id"].as_str().unwrap().to_owned(), handle));
    }
    assert_eq!(
        handles.len(),
        files.len(),
        "{name}: the run sidecar names inputs the example does not have"
    );
    let mut op: Value = serde_json::from_str(&doc).unwrap();
    for input in op["inputs"].as_array_mut().unwrap() {
        if let Some(id) = input.get("artifact_id").and_then(Value::as_str)
            && let Some((_, handle)) = handles.iter().find(|(h, _)| h == id)
        {
            *input = handle.clone();
        }
    }
    op
}

#[test]
fn every_valid_example_runs_end_to_end_with_real_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let certify = mex(&home, &["conformance"]);
    assert!(certify.status.success(), "{}", text(&certify));

    let mut examples: Vec<PathBuf> = std::fs::read_dir(workspace().join("examples/ops/valid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 5, "{examples:?}");
    let mut executed = 0;
    for path in &examples {
        let name = path.file_stem().unwrap().to_str().unwrap();
        let sidecar_path = workspace()
            .join("examples/ops/run")
            .join(format!("{name}.json"));
        let sidecar: Value = serde_json::from_str(
            &std::fs::read_to_string(&sidecar_path).unwrap_or_else(|e| {
                panic!(
                    "{name}: no run sidecar {} ({e}): say which files are its inputs and what it must do, or why it is admission-only",
                    sidecar_path.display()
                )
            }),
        )
        .unwrap();
        let op: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let op = substitute_inputs(&home, name, &op, &sidecar);
        let file = dir.path().join(format!("{name}.op.json"));
        std::fs::write(&file, op.to_string()).unwrap();
        let out = mex(&home, &["run", "--json", file.to_str().unwrap()]);
        let result: mex_envelope::EngineResult = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{name}: not an EngineResult ({e}): {}", text(&out)));
        let expect = &sidecar["expect"];
        let status = expect["status"].as_str().unwrap();
        assert_eq!(
            result.status.as_str(),
            status,
            "{name}: {}",
            serde_json::to_string_pretty(&result).unwrap()
        );
        let codes: Vec<String> = result
            .denials
            .iter()
            .filter(|d| d.severity == mex_envelope::DenialSeverity::Deny)
            .map(|d| d.code.to_string())
            .chain(result.errors.iter().map(|e| e.code.to_string()))
            .collect();
        match expect.get("code").and_then(Value::as_str) {
            Some(code) => assert!(
                codes.iter().any(|c| c == code),
                "{name}: expected {code} among {codes:?}"
            ),
            None => assert!(codes.is_empty(), "{name}: unexpected {codes:?}"),
        }
        match sidecar.get("admission_only") {
            Some(why) => {
                let why = why.as_str().unwrap_or_default();
                assert!(
                    why.len() >= 20,
                    "{name}: admission_only must say why it cannot run"
                );
                assert_eq!(status, "denied", "{name}: admission-only must be denied");
                assert!(result.provenance.is_none() && result.outputs.is_empty());
            }
            None => {
                assert_eq!(
                    status, "succeeded",
                    "{name}: a runnable example must succeed"
                );
                assert!(!result.outputs.is_empty(), "{name}: no outputs");
                executed += 1;
            }
        }
    }
    // The physics and sandbox examples really execute.
    assert!(executed >= 3, "only {executed} example(s) executed");
    // Everything it did is on record, and the store is sound.
    assert!(mex(&home, &["recorder", "verify"]).status.success());
    assert!(mex(&home, &["artifacts", "verify"]).status.success());
}
