//! The example operations under `examples/ops/` are checked both ways: the
//! committed JSON Schema (through the jsonschema crate) and the typed parser
//! must agree that every valid example is valid and every invalid one is
//! invalid, and the typed parser must give the code and pointer recorded in
//! the example's `.expected.json` sidecar. A sidecar with `below_schema`
//! (its reason) marks a document refused below the level a JSON Schema sees:
//! duplicate member names or a byte-order mark, which the strict reader
//! refuses before any schema could be applied.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::{Path, PathBuf};

use mex_envelope::PlannedOperation;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn validator() -> jsonschema::Validator {
    let text =
        std::fs::read_to_string(root().join("schemas/planned-operation.schema.json")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

fn examples(dir: &str) -> Vec<(String, PathBuf)> {
    let mut out: Vec<_> = std::fs::read_dir(root().join("examples/ops").join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| !p.to_string_lossy().ends_with(".expected.json"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    out.sort();
    out
}

#[test]
fn valid_examples_pass_schema_and_parser() {
    let validator = validator();
    let valid = examples("valid");
    assert!(
        valid.len() >= 5,
        "need at least 5 valid examples, found {}",
        valid.len()
    );
    for (name, path) in valid {
        let text = std::fs::read_to_string(&path).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{name}: schema refused a valid example: {errors:?}"
        );
        let op = PlannedOperation::from_json_str(&text)
            .unwrap_or_else(|e| panic!("{name}: parser refused: {e}"));
        // Round trip: parse -> serialize -> parse gives the same canonical form.
        let again = PlannedOperation::from_json_str(&op.to_json().unwrap()).unwrap();
        assert_eq!(
            op.canonical_bytes().unwrap(),
            again.canonical_bytes().unwrap(),
            "{name}"
        );
    }
}

#[test]
fn invalid_examples_fail_schema_and_parser_with_expected_error() {
    let validator = validator();
    let invalid = examples("invalid");
    assert!(
        invalid.len() >= 12,
        "need at least 12 invalid examples, found {}",
        invalid.len()
    );
    let mut messages = Vec::new();
    for (name, path) in invalid {
        let bytes = std::fs::read(&path).unwrap();
        let expected: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(path.with_extension("expected.json")).unwrap(),
        )
        .unwrap();
        if let Some(why) = expected.get("below_schema") {
            // Refused before there is a document for a schema to see
            // (duplicate members, a byte-order mark): the sidecar says why,
            // and the strict reader must refuse the bytes.
            assert!(why.as_str().is_some_and(|w| !w.is_empty()), "{name}");
            assert!(
                mex_envelope::json::from_slice(&bytes).is_err(),
                "{name}: the strict reader accepts it"
            );
        } else {
            let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert!(
                !validator.is_valid(&value),
                "{name}: the committed schema accepts an invalid example"
            );
        }
        let err = PlannedOperation::from_json_slice(&bytes).expect_err(&name);
        assert_eq!(
            err.code(),
            expected["code"].as_str().unwrap(),
            "{name}: {err}"
        );
        assert_eq!(
            err.pointer().unwrap_or(""),
            expected["pointer"].as_str().unwrap(),
            "{name}: {err}"
        );
        messages.push(format!("{name}: [{}] {err}", err.code()));
    }
    insta::assert_snapshot!("invalid_example_errors", messages.join("\n"));
}
