//! Adversarial cases through real `mex` processes: read-only commands on a
//! home that does not exist, trusted files that never end, published
//! schemas for every `--json` report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

mod common;
use common::{command, mex, text, workspace};
use std::process::Command;

#[test]
fn engines_on_a_home_that_does_not_exist_lists_them_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("never-created");
    let out = mex(&home, &["engines"]);
    assert!(
        out.status.success(),
        "`mex engines` on a missing home failed:\n{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("engine.physics"));
    assert!(!home.exists(), "`mex engines` created {}", home.display());
}

#[test]
fn a_policy_path_that_never_ends_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("h");
    // Bound the address space so that a regression fails the test instead of
    // exhausting the machine's memory.
    let c = command(&home, &["--policy", "/dev/zero", "engines"]);
    let program = c.get_program().to_owned();
    let args: Vec<_> = c.get_args().map(|a| a.to_owned()).collect();
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 2000000; exec \"$@\"")
        .arg("sh")
        .arg(program)
        .args(args)
        .env_remove("MEX_HOME")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("larger than"), "{err}");
    assert!(!err.contains("out of memory"), "{err}");
}

#[test]
fn gc_json_validates_against_its_published_schema() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("h");
    let help = mex(&home, &["gc", "--help"]);
    assert!(
        text(&help.stdout).contains("schema: gc-report"),
        "`mex gc --help` names no schema"
    );
    let schema = mex(&home, &["schema", "gc-report"]);
    assert!(schema.status.success(), "{}", text(&schema.stderr));
    let schema: serde_json::Value = serde_json::from_slice(&schema.stdout).unwrap();
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("schemas/gc-report.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(schema, committed, "schemas/gc-report.schema.json is stale");
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let out = mex(&home, &["gc", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{doc:#}");
}

#[test]
fn a_megabyte_long_value_is_not_echoed_back_whole() {
    let home = tempfile::tempdir().unwrap();
    let mut op: serde_json::Value = serde_json::from_slice(
        &std::fs::read(workspace().join("examples/ops/valid/physics-convert-units.json")).unwrap(),
    )
    .unwrap();
    op["engine_id"] = serde_json::Value::String(format!("engine.{}", "A".repeat(1_000_000)));
    let file = home.path().join("op.json");
    std::fs::write(&file, serde_json::to_vec(&op).unwrap()).unwrap();
    for json in [false, true] {
        let mut args = vec!["validate", file.to_str().unwrap()];
        if json {
            args.push("--json");
        }
        let out = mex(&home.path().join("home"), &args);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(said.contains("/engine_id"), "{said}");
        assert!(said.contains("1000007 bytes in all"), "{said}");
        assert!(said.len() < 4096, "{} bytes echoed", said.len());
    }
}

#[test]
fn a_registry_that_never_ends_is_refused_without_reading_it_all() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mex"))
        .args(["--home", home.path().to_str().unwrap()])
        .args(["--registry", "/dev/zero", "engines"])
        .env("NO_COLOR", "1")
        .env_remove("MEX_HOME")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = text(&out.stderr);
    assert!(said.contains("larger than"), "{said}");
}
