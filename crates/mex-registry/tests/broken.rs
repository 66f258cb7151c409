//! The broken-registry corpus: every file under `tests/fixtures/broken/` must
//! be refused, with the problem code it was written for among its problems,
//! and with exactly the messages in its insta snapshot. The control fixture
//! `tests/fixtures/valid-minimal.json` (the base all broken files derive
//! from) must load, so each refusal is due to what the fixture breaks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::{Path, PathBuf};

use mex_registry::{Registry, RegistryError};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Fixture name -> a problem code it must produce.
const EXPECTED: &[(&str, &str)] = &[
    ("artifact-param-not-in-schema", "REGISTRY.PARAMS_SCHEMA"),
    ("bad-capability", "REGISTRY.CAPABILITY"),
    ("budget-default-above-max", "REGISTRY.BUDGET"),
    (
        "determinism-above-ceiling",
        "REGISTRY.DETERMINISM_ABOVE_CEILING",
    ),
    ("duplicate-engine", "REGISTRY.DUPLICATE_ENGINE"),
    ("duplicate-key", "REGISTRY.DUPLICATE_KEY"),
    ("duplicate-operation", "REGISTRY.DUPLICATE"),
    ("global-gate-listed", "REGISTRY.GLOBAL_GATE_LISTED"),
    ("implementation-invalid", "REGISTRY.IMPLEMENTATION"),
    ("integer-beyond-2-53", "REGISTRY.INVALID_VALUE"),
    ("invalid-identifiers", "REGISTRY.INVALID_VALUE"),
    ("many-problems-at-once", "REGISTRY.UNDECLARED_OPERATION"),
    ("not-an-object", "REGISTRY.STRUCTURE"),
    ("operation-prefix-mismatch", "REGISTRY.OPERATION_PREFIX"),
    ("params-schema-bad-regex", "REGISTRY.PARAMS_SCHEMA"),
    ("params-schema-does-not-compile", "REGISTRY.PARAMS_SCHEMA"),
    ("params-schema-file-duplicate-key", "REGISTRY.DUPLICATE_KEY"),
    ("params-schema-open", "REGISTRY.PARAMS_SCHEMA"),
    ("params-schema-remote-ref", "REGISTRY.PARAMS_SCHEMA"),
    ("params-schema-unknown-format", "REGISTRY.PARAMS_SCHEMA"),
    ("schema-file-missing", "REGISTRY.FILE_MISSING"),
    ("schema-path-escape", "REGISTRY.PATH_ESCAPE"),
    ("syntax-error", "REGISTRY.SYNTAX"),
    ("unknown-failure-code", "REGISTRY.UNKNOWN_FAILURE_CODE"),
    ("unknown-field-and-wrong-type", "REGISTRY.STRUCTURE"),
    ("unknown-gate", "REGISTRY.UNKNOWN_GATE"),
    ("unsupported-registry-version", "REGISTRY.STRUCTURE"),
    ("vector-file-duplicate-key", "REGISTRY.VECTOR"),
    ("vector-file-mismatch", "REGISTRY.VECTOR"),
    ("vector-inconsistent", "REGISTRY.VECTOR"),
    (
        "vector-undeclared-operation",
        "REGISTRY.UNDECLARED_OPERATION",
    ),
];

fn broken_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join("broken"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn stem(p: &Path) -> String {
    p.file_stem().unwrap().to_string_lossy().into_owned()
}

#[test]
fn the_control_fixture_loads() {
    let r = Registry::load(fixtures().join("valid-minimal.json"));
    assert!(r.is_ok(), "{}", r.unwrap_err());
}

#[test]
fn corpus_is_complete_and_large_enough() {
    let names: Vec<String> = broken_files().iter().map(|p| stem(p)).collect();
    let expected: Vec<String> = EXPECTED.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(names, expected, "every fixture needs an expected code");
    assert!(names.len() >= 15);
}

#[test]
fn every_broken_registry_is_refused_with_its_messages() {
    for path in broken_files() {
        let name = stem(&path);
        let code = EXPECTED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| *c)
            .unwrap();
        let err = match Registry::load(&path) {
            Ok(_) => panic!("{name}: loaded, but it is broken"),
            Err(e) => e,
        };
        let RegistryError::Invalid { problems, .. } = &err else {
            panic!("{name}: unexpected error {err}");
        };
        assert!(
            problems.iter().any(|p| p.kind.code() == code),
            "{name}: expected a {code} problem, got:\n{err}"
        );
        for p in problems {
            assert!(p.line >= 1 && p.column >= 1, "{name}: {p}");
        }
        insta::assert_snapshot!(name, err.to_string());
    }
}

#[test]
fn many_problems_are_reported_in_one_load() {
    let err = Registry::load(fixtures().join("broken/many-problems-at-once.json")).unwrap_err();
    let codes: std::collections::BTreeSet<&str> =
        err.problems().iter().map(|p| p.kind.code()).collect();
    for code in [
        "REGISTRY.CAPABILITY",
        "REGISTRY.UNKNOWN_GATE",
        "REGISTRY.UNDECLARED_OPERATION",
        "REGISTRY.DETERMINISM_ABOVE_CEILING",
    ] {
        assert!(codes.contains(code), "{code} missing from:\n{err}");
    }
}

#[test]
fn positions_point_at_the_offending_value() {
    let text =
        std::fs::read_to_string(fixtures().join("broken/determinism-above-ceiling.json")).unwrap();
    let err = Registry::from_str(&text, fixtures().join("broken")).unwrap_err();
    let p = err
        .problems()
        .iter()
        .find(|p| p.kind.code() == "REGISTRY.DETERMINISM_ABOVE_CEILING")
        .unwrap();
    assert_eq!(p.pointer, "/engines/0/operations/0/determinism");
    assert_eq!(p.file, "<string>");
    let line = text.lines().nth(p.line - 1).unwrap();
    let rest: String = line.chars().skip(p.column - 1).collect();
    assert!(
        rest.starts_with("\"D3\""),
        "{line:?} at column {}",
        p.column
    );
}
