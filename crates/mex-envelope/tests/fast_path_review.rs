//! Hostile documents read on the fast path (`from_json_slice`) and on the
//! strict reader followed by the typed pass must get the same answer, and
//! every accepted document must be one the published schema accepts.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use mex_envelope::{MAX_ENVELOPE_VALUE_BYTES, PlannedOperation};
use serde_json::{Value, json};

fn base() -> Value {
    json!({
        "schema_version": "poe-1.0",
        "op_id": "11111111-1111-4111-8111-000000000001",
        "engine_id": "engine.physics",
        "engine_version_req": "^0.1",
        "operation": "physics.evaluate_formula",
        "inputs": [{
            "artifact_id": "00000000-0000-4000-8000-000000000001",
            "kind": "file",
            "content_hash": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "size_bytes": 0,
            "classification": "low",
            "exportable": true
        }],
        "params": {"output_unit": "Pa", "zz": 0},
        "capabilities_requested": ["fs.read:inputs"],
        "budget": {"wall_time_ms": 1},
        "evidence_policy": {"required": false},
        "output_spec": {"max_outputs": 1},
        "determinism": "D3"
    })
}

fn schema() -> jsonschema::Validator {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../schemas/planned-operation.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&schema)
        .unwrap()
}

/// The fast path's answer against the strict reader's, as text.
fn compare(text: &str) -> Result<PlannedOperation, String> {
    let fast = PlannedOperation::from_json_slice(text.as_bytes());
    match mex_envelope::json::from_slice_within(text.as_bytes(), MAX_ENVELOPE_VALUE_BYTES) {
        Ok(v) => match (&fast, PlannedOperation::from_json_value(v)) {
            (Ok(a), Ok(b)) => assert_eq!(a, &b, "{text}"),
            (Err(a), Err(b)) => {
                assert_eq!(a.code(), b.code(), "{text}");
                assert_eq!(a.pointer(), b.pointer(), "{text}");
            }
            (a, b) => panic!("fast {a:?} vs strict {b:?} on {text}"),
        },
        Err(refused) => {
            let err = fast
                .as_ref()
                .err()
                .unwrap_or_else(|| panic!("fast accepted, strict refused {refused} on {text}"));
            assert_eq!(err.pointer(), refused.pointer(), "{text}");
        }
    }
    fast.map_err(|e| e.to_string())
}

fn replaced(from: &str, to: &str) -> String {
    let text = base().to_string();
    assert!(text.contains(from), "{from}");
    text.replacen(from, to, 1)
}

#[test]
fn hostile_spellings_get_the_same_answer_on_both_readings() {
    let validator = schema();
    let mut docs = vec![base().to_string()];
    for (from, to) in [
        ("\"op_id\"", "\"op\\u005fid\""),
        (
            "\"op_id\"",
            "\"op_id\":\"11111111-1111-4111-8111-000000000001\",\"op\\u005fid\"",
        ),
        (
            "\"wall_time_ms\":1",
            "\"wall_time_ms\":1,\"wall_time_ms\":1",
        ),
        (
            "\"wall_time_ms\":1",
            "\"wall_time_ms\":1,\"wall\\u005ftime_ms\":2",
        ),
        (
            "\"required\":false",
            "\"required\":false,\"required\":false",
        ),
        ("\"max_outputs\":1", "\"max_outputs\":1,\"max_outputs\":1"),
        (
            "\"exportable\":true",
            "\"exportable\":true,\"exportable\":true",
        ),
        ("\"zz\":0", "\"zz\":{\"a\":[{\"b\":1,\"b\":1}]}"),
        ("\"wall_time_ms\":1", "\"wall_time_ms\":1e3"),
        ("\"wall_time_ms\":1", "\"wall_time_ms\":-0"),
        ("\"wall_time_ms\":1", "\"wall_time_ms\":1.0"),
        ("\"wall_time_ms\":1", "\"wall_time_ms\":9007199254740992"),
        ("\"wall_time_ms\":1", "\"wall_time_ms\":9007199254740991.4"),
        ("\"wall_time_ms\":1", "\"wall_time_ms\":1e400"),
        ("\"wall_time_ms\":1", "\"wall_time_ms\":1e-400"),
        ("\"wall_time_ms\":1", "\"wall_time_ms\":01"),
        ("\"wall_time_ms\":1", "\"wall_time_ms\":null"),
        ("\"size_bytes\":0", "\"size_bytes\":-0"),
        ("\"size_bytes\":0", "\"size_bytes\":0.0"),
        ("\"zz\":0", "\"zz\":-0"),
        ("\"zz\":0", "\"zz\":1e-400"),
        ("\"zz\":0", "\"zz\":NaN"),
        ("\"zz\":0", "\"zz\":\"\\ud800\""),
        ("\"zz\":0", "\"zz\":\"\\udc00\\ud800\""),
        ("\"determinism\":\"D3\"", "\"determinism\":{\"D3\":null}"),
        ("\"determinism\":\"D3\"", "\"determinism\":{\"D3\":[]}"),
        ("\"kind\":\"file\"", "\"kind\":{\"file\":null}"),
        (
            "\"classification\":\"low\"",
            "\"classification\":{\"low\":null}",
        ),
        ("\"budget\":{\"wall_time_ms\":1}", "\"budget\":null"),
        (
            "\"evidence_policy\":{\"required\":false}",
            "\"evidence_policy\":[]",
        ),
        ("\"inputs\":[", "\"inputs\":{\"0\":"),
        (
            "\"exportable\":true",
            "\"exportable\":true,\"retention_ttl_days\":null,\"media_type\":null",
        ),
        (
            "\"exportable\":true",
            "\"exportable\":true,\"retention_ttl_days\":30.0",
        ),
        (
            "\"exportable\":true",
            "\"exportable\":true,\"retention_ttl_days\":0",
        ),
        (
            "\"max_outputs\":1",
            "\"max_outputs\":null,\"max_output_bytes\":null,\"kinds\":null",
        ),
        (
            "\"required\":false",
            "\"required\":false,\"capture\":null,\"max_bytes\":null",
        ),
        ("\"required\":false", "\"required\":null"),
        (
            "\"engine_id\":\"engine.physics\"",
            "\"engine_id\":\"engine\\u002ephysics\"",
        ),
        (
            "\"op_id\":\"11111111-1111-4111-8111-000000000001\"",
            "\"op_id\":\"11111111-1111-4111-8111-00000000000A\"",
        ),
        ("\"zz\":0", "\"zz\":9007199254740991"),
        ("\"zz\":0", "\"zz\":-9007199254740991.0"),
        ("\"zz\":0", "\"zz\":0.1e1"),
        ("\"params\":{", "\"params\":{\"\":1,"),
        (
            "\"capabilities_requested\":[\"fs.read:inputs\"]",
            "\"capabilities_requested\":[\"fs.read:inputs\",\"fs.read:inputs\"]",
        ),
    ] {
        docs.push(replaced(from, to));
    }
    docs.push(format!("\u{feff}{}", base()));
    docs.push(format!("\u{c}{}", base()));
    docs.push(format!("{}\u{c}", base()));
    docs.push(format!("{} x", base()));
    docs.push(format!("{}{}", base(), base()));
    let mut accepted_off_schema = Vec::new();
    for doc in &docs {
        if compare(doc).is_ok() {
            let value: Value = serde_json::from_str(doc).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| e.to_string())
                .collect();
            if !errors.is_empty() {
                accepted_off_schema.push(format!("{doc}: {errors:?}"));
            }
        }
    }
    assert!(accepted_off_schema.is_empty(), "{accepted_off_schema:#?}");
    // Every variant name still reads, and serializes back to itself.
    for name in ["D0", "D1", "D2", "D3"] {
        let level: mex_envelope::DeterminismLevel = serde_json::from_value(json!(name)).unwrap();
        assert_eq!(serde_json::to_value(level).unwrap(), json!(name));
    }
    for name in [
        "file",
        "tool_output",
        "transcript",
        "dataset_slice",
        "prompt_payload",
        "report",
        "bundle",
    ] {
        let kind: mex_envelope::ArtifactKind = serde_json::from_value(json!(name)).unwrap();
        assert_eq!(serde_json::to_value(kind).unwrap(), json!(name));
    }
    for name in ["low", "medium", "high"] {
        let c: mex_envelope::Classification = serde_json::from_value(json!(name)).unwrap();
        assert_eq!(serde_json::to_value(c).unwrap(), json!(name));
    }
}

#[test]
fn documents_around_the_fast_path_size_get_the_same_answer() {
    for target in [32 * 1024 - 1, 32 * 1024, 32 * 1024 + 1] {
        for filler in ["\"x\"", "{\"a\":{\"a\":{\"a\":0}}}", "[[[[0]]]]"] {
            let mut v = base();
            v["params"]["pad"] = json!([]);
            let empty = v.to_string().len();
            let mut items = Vec::new();
            let mut len = empty;
            while len + filler.len() < target {
                items.push(filler);
                len += filler.len() + usize::from(items.len() > 1);
            }
            let text =
                v.to_string()
                    .replacen("\"pad\":[]", &format!("\"pad\":[{}]", items.join(",")), 1);
            let pad = target - text.len();
            let text = format!("{}{}", " ".repeat(pad), text);
            assert_eq!(text.len(), target);
            compare(&text).unwrap();
            // The same with a member named twice deep in the params.
            let twice = text.replacen("\"pad\":[", "\"pad\":[{\"q\":1,\"q\":1},", 1);
            assert!(compare(&twice).is_err());
        }
    }
}
