//! Differential: the committed `schemas/planned-operation.schema.json`
//! (through the jsonschema crate, reading the text as plain `serde_json`
//! does) and the typed front door (`PlannedOperation::from_json_str`) must
//! accept exactly the same documents, spelling by spelling: integers and
//! integral floats in integer fields and in params, numbers beyond
//! ±(2^53-1), and UUID spellings.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::Path;

use mex_envelope::PlannedOperation;

fn validator() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("schemas/planned-operation.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

/// A valid envelope as text, with `{slot}` markers the cases replace.
const TEMPLATE: &str = r#"{
  "schema_version": "poe-1.0",
  "op_id": "{op_id}",
  "engine_id": "engine.physics",
  "engine_version_req": "^0.1",
  "operation": "physics.convert_units",
  "inputs": [{
    "artifact_id": "{artifact_id}",
    "kind": "file",
    "content_hash": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "size_bytes": {size_bytes},
    "classification": "low",
    "exportable": true
  }],
  "params": {"v": {param}, "deep": [{"w": {param}}]},
  "capabilities_requested": ["fs.read:inputs"],
  "budget": {"wall_time_ms": {budget}},
  "determinism": "D3",
  "output_spec": {"max_outputs": {budget}}
}"#;

const ID: &str = "11111111-1111-4111-8111-000000000001";

fn document(slot: &str, value: &str) -> String {
    let mut text = TEMPLATE.to_owned();
    for (name, default) in [
        ("op_id", ID),
        ("artifact_id", ID),
        ("size_bytes", "0"),
        ("param", "1"),
        ("budget", "5000"),
    ] {
        let v = if name == slot { value } else { default };
        text = text.replace(&format!("{{{name}}}"), v);
    }
    text
}

/// Run one spelling through both sides; return (schema accepts, parser accepts).
fn both(validator: &jsonschema::Validator, text: &str) -> (bool, bool) {
    let schema_ok = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => validator.is_valid(&value),
        Err(_) => false,
    };
    let parser_ok = PlannedOperation::from_json_str(text).is_ok();
    (schema_ok, parser_ok)
}

const NUMBERS: &[(&str, bool)] = &[
    // (spelling, whether an integer field accepts it)
    ("0", true),
    ("5000", true),
    ("5000.0", true),
    ("5e3", true),
    ("5E+3", true),
    ("5000.5", false),
    ("-1", false),
    ("-0.0", true),
    ("9007199254740991", true),
    ("9007199254740991.0", true),
    ("9007199254740992", false),
    ("9007199254740993.0", false),
    ("18446744073709551615", false),
    ("18446744073709551616", false),
    ("18446744073709551617", false),
    ("1e300", false),
    ("\"5000\"", false),
    ("null", false),
];

#[test]
fn integer_fields_agree_on_every_number_spelling() {
    let validator = validator();
    for slot in ["size_bytes", "budget"] {
        for (spelling, accepted) in NUMBERS {
            // `null` is "absent" for the optional budget fields.
            let accepted = *accepted || (slot == "budget" && *spelling == "null");
            let text = document(slot, spelling);
            let (schema, parser) = both(&validator, &text);
            assert_eq!(
                (schema, parser),
                (accepted, accepted),
                "{slot} = {spelling}: schema accepts: {schema}, parser accepts: {parser}"
            );
        }
    }
}

#[test]
fn params_agree_on_every_number_spelling() {
    let validator = validator();
    for (spelling, accepted) in [
        ("1", true),
        ("-9007199254740991", true),
        ("1.5", true),
        ("1e-300", true),
        ("5000.0", true),
        ("9007199254740992", false),
        ("-9007199254740992", false),
        ("9007199254740993.0", false),
        ("18446744073709551616", false),
        ("18446744073709551617", false),
        ("1e300", false),
        ("-1e300", false),
    ] {
        let text = document("param", spelling);
        let (schema, parser) = both(&validator, &text);
        assert_eq!(
            (schema, parser),
            (accepted, accepted),
            "params = {spelling}: schema accepts: {schema}, parser accepts: {parser}"
        );
    }
}

#[test]
fn uuid_fields_agree_on_every_spelling() {
    let validator = validator();
    for slot in ["op_id", "artifact_id"] {
        for (spelling, accepted) in [
            (ID, true),
            ("00000000-0000-0000-0000-000000000000", true),
            ("{11111111-1111-4111-8111-000000000001}", false),
            ("11111111111141118111000000000001", false),
            ("urn:uuid:11111111-1111-4111-8111-000000000001", false),
            ("11111111-1111-4111-8111-00000000000A", false),
            ("AAAAAAAA-1111-4111-8111-000000000001", false),
            ("11111111-1111-4111-8111-0000000000001", false),
            ("11111111-1111-4111-8111-00000000001", false),
            (" 11111111-1111-4111-8111-000000000001", false),
            ("11111111_1111_4111_8111_000000000001", false),
            ("", false),
        ] {
            let text = document(slot, spelling);
            let (schema, parser) = both(&validator, &text);
            assert_eq!(
                (schema, parser),
                (accepted, accepted),
                "{slot} = {spelling:?}: schema accepts: {schema}, parser accepts: {parser}"
            );
        }
    }
}

#[test]
fn two_integers_beyond_2_53_never_share_a_config_hash() {
    // Both are refused, so neither can be hashed; below the bound, distinct
    // integers keep distinct hashes.
    for v in ["18446744073709551616", "18446744073709551617"] {
        assert!(PlannedOperation::from_json_str(&document("param", v)).is_err());
    }
    let a = PlannedOperation::from_json_str(&document("param", "9007199254740990")).unwrap();
    let b = PlannedOperation::from_json_str(&document("param", "9007199254740991")).unwrap();
    assert_ne!(a.config_hash().unwrap(), b.config_hash().unwrap());
}
