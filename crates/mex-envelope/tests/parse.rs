//! Front-door parser: round trips, strictness, pointers, and never panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mex_envelope::{EnvelopeError, MAX_ENVELOPE_BYTES, PlannedOperation};
use proptest::prelude::*;
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
        "params": {"output_unit": "Pa"},
        "capabilities_requested": ["fs.read:inputs"],
        "budget": {},
        "determinism": "D3"
    })
}

fn parse(v: &Value) -> Result<PlannedOperation, EnvelopeError> {
    PlannedOperation::from_json_str(&v.to_string())
}

#[test]
fn base_parses_and_round_trips() {
    let op = parse(&base()).unwrap();
    let again = PlannedOperation::from_json_str(&op.to_json().unwrap()).unwrap();
    assert_eq!(op, again);
}

#[test]
fn operation_must_belong_to_engine() {
    let mut v = base();
    v["operation"] = json!("sandbox.run_shell");
    let err = parse(&v).unwrap_err();
    assert_eq!(err.pointer(), Some("/operation"));
    assert!(
        err.to_string().contains("prefix must be \"physics\""),
        "{err}"
    );
}

#[test]
fn huge_integers_in_params_are_refused_with_their_pointer() {
    let mut v = base();
    v["params"] = json!({"deep": {"list": [1, 2, 9_007_199_254_740_992u64]}});
    let err = parse(&v).unwrap_err();
    assert_eq!(err.pointer(), Some("/params/deep/list/2"));
    v["params"] =
        json!({"ok": 9_007_199_254_740_991u64, "neg": -9_007_199_254_740_991i64, "f": 1.5e-300});
    assert!(parse(&v).is_ok());
    // A double beyond the bound is refused too: the reader cannot tell `1e20`
    // from an integer literal that overflowed, and neither is exact.
    v["params"] = json!({"f": 1.5e300});
    assert_eq!(parse(&v).unwrap_err().pointer(), Some("/params/f"));
    v["params"] = json!({"neg": -9_007_199_254_740_992i64});
    assert_eq!(parse(&v).unwrap_err().pointer(), Some("/params/neg"));
}

#[test]
fn pointer_tokens_are_escaped() {
    let mut v = base();
    v["params"] = json!({"a/b~c": 9_007_199_254_740_992u64});
    assert_eq!(parse(&v).unwrap_err().pointer(), Some("/params/a~1b~0c"));
}

#[test]
fn syntax_errors_have_line_and_column() {
    let err = PlannedOperation::from_json_str("{\n  \"schema_version\": \"poe-1.0\",\n  oops\n}")
        .unwrap_err();
    match err {
        EnvelopeError::Syntax { line, column, .. } => assert_eq!((line, column), (3, 3)),
        other => panic!("expected a syntax error, got {other}"),
    }
    assert_eq!(
        PlannedOperation::from_json_slice(b"\xff\xfe")
            .unwrap_err()
            .code(),
        "ENVELOPE.SYNTAX"
    );
}

#[test]
fn oversized_documents_are_refused_before_parsing() {
    let big = vec![b' '; MAX_ENVELOPE_BYTES + 1];
    assert_eq!(
        PlannedOperation::from_json_slice(&big).unwrap_err().code(),
        "ENVELOPE.TOO_LARGE"
    );
}

#[test]
fn entity_errors_point_inside_the_entity() {
    let mut v = base();
    v["inputs"] = json!([{"entity_type": "Git", "entity_id": "x"}]);
    assert_eq!(
        parse(&v).unwrap_err().pointer(),
        Some("/inputs/0/entity_type")
    );
    v["inputs"] = json!([{"entity_type": "git_repo", "entity_id": "x", "uri": "file:///"}]);
    assert_eq!(parse(&v).unwrap_err().pointer(), Some("/inputs/0/uri"));
    v["inputs"] = json!([{"artifact_id": "00000000-0000-4000-8000-000000000001", "kind": "file"}]);
    assert_eq!(
        parse(&v).unwrap_err().pointer(),
        Some("/inputs/0/content_hash")
    );
}

#[test]
fn non_utc_timestamps_and_bad_evidence_tokens_are_refused() {
    let mut v = base();
    v["determinism"] = json!("D1");
    v["evidence_policy"] = json!({"required": true, "capture": ["snapshot", "Bad Token"]});
    assert_eq!(
        parse(&v).unwrap_err().pointer(),
        Some("/evidence_policy/capture/1")
    );
}

// ---------- property tests ----------

fn word() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,10}"
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-9_007_199_254_740_991i64..=9_007_199_254_740_991i64).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite, within ±(2^53-1)", |f| f.is_finite()
                && f.abs() < 9.007_199_254_740_991e15)
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("\\PC{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const CAPS: [&str; 8] = [
    "fs.read:inputs",
    "fs.write:artifacts",
    "net.http",
    "proc.exec:bash",
    "gpu.compute",
    "secrets.use:key-1",
    "device.camera",
    "fs.read:mail/inbox",
];

fn envelope() -> impl Strategy<Value = Value> {
    (
        word(),
        word(),
        any::<u128>(),
        prop::collection::vec(
            (
                any::<u128>(),
                any::<[u8; 32]>(),
                0u64..=9_007_199_254_740_991,
                0usize..7,
            ),
            0..4,
        ),
        prop::collection::btree_map(word(), json_value(), 0..5),
        prop::collection::vec(0usize..CAPS.len(), 0..4),
        (
            prop::option::of(0u64..=9_007_199_254_740_991),
            prop::option::of(1u64..100_000),
        ),
        0usize..4,
    )
        .prop_map(|(engine, op, id, inputs, params, caps, (out, wall), det)| {
            let kinds = [
                "file",
                "tool_output",
                "transcript",
                "dataset_slice",
                "prompt_payload",
                "report",
                "bundle",
            ];
            let inputs: Vec<Value> = inputs
                .into_iter()
                .map(|(aid, hash, size, kind)| {
                    json!({
                        "artifact_id": uuid::Uuid::from_u128(aid).to_string(),
                        "kind": kinds[kind],
                        "content_hash": hex::encode(hash),
                        "size_bytes": size,
                        "classification": "medium",
                        "exportable": false,
                        "media_type": "application/json"
                    })
                })
                .collect();
            let mut budget = serde_json::Map::new();
            if let Some(o) = out {
                budget.insert("output_bytes".into(), o.into());
            }
            if let Some(w) = wall {
                budget.insert("wall_time_ms".into(), w.into());
            }
            let det = ["D0", "D1", "D2", "D3"][det];
            let mut v = json!({
                "schema_version": "poe-1.0",
                "op_id": uuid::Uuid::from_u128(id).to_string(),
                "engine_id": format!("engine.{engine}"),
                "engine_version_req": ">=1.0, <2",
                "operation": format!("{engine}.{op}"),
                "inputs": inputs,
                "params": Value::Object(params.into_iter().collect()),
                "capabilities_requested": caps.into_iter().map(|i| CAPS[i]).collect::<Vec<_>>(),
                "budget": budget,
                "determinism": det,
            });
            if det == "D0" || det == "D1" {
                v["evidence_policy"] = json!({"required": true, "capture": ["snapshot"]});
            }
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_envelopes_round_trip_with_identical_canonical_bytes(v in envelope()) {
        let op = parse(&v).unwrap();
        let canonical = op.canonical_bytes().unwrap();
        // Type -> JSON -> type -> JSON: byte-identical canonical form.
        let again = PlannedOperation::from_json_str(&op.to_json().unwrap()).unwrap();
        prop_assert_eq!(&canonical, &again.canonical_bytes().unwrap());
        // The canonical form of the parsed value equals the canonical form of the input JSON.
        prop_assert_eq!(canonical, mex_envelope::canonical::to_vec(&v).unwrap());
    }

    #[test]
    fn parser_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = PlannedOperation::from_json_slice(&bytes);
    }

    #[test]
    fn parser_never_panics_on_arbitrary_json(v in json_value()) {
        let _ = PlannedOperation::from_json_value(v);
    }

    #[test]
    fn parser_never_panics_on_mutated_envelopes(v in envelope(), key in "[a-z_]{1,20}", replacement in json_value()) {
        let mut v = v;
        if let Some(obj) = v.as_object_mut() {
            obj.insert(key, replacement);
        }
        let _ = PlannedOperation::from_json_value(v);
    }
}
