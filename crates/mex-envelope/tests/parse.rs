//! Front-door parser: round trips, strictness, pointers, and never panicking.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

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
fn an_envelope_written_as_an_array_of_its_fields_is_refused() {
    // serde would fill the struct from its fields in order; the contract's
    // envelope is an object, on every path.
    let fields = [
        "schema_version",
        "op_id",
        "engine_id",
        "engine_version_req",
        "operation",
        "inputs",
        "params",
        "capabilities_requested",
        "budget",
        "determinism",
    ];
    let b = base();
    let array = Value::Array(fields.iter().map(|f| b[*f].clone()).collect());
    let err = PlannedOperation::from_json_slice(array.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("expected a JSON object"), "{err}");
    let spaced = format!("  \n{array}");
    assert!(PlannedOperation::from_json_slice(spaced.as_bytes()).is_err());
}

#[test]
fn a_nested_object_written_as_an_array_is_refused_with_its_pointer() {
    // The published schema says budget, evidence_policy, output_spec and
    // each input are objects; serde would fill a struct from an array of its
    // fields in order. Refused on both readings (bytes, and a decoded value).
    let cases = [
        ("budget", json!([5000, 1_048_576]), "/budget"),
        ("budget", json!([]), "/budget"),
        (
            "evidence_policy",
            json!([true, ["snapshot"]]),
            "/evidence_policy",
        ),
        ("output_spec", json!([["file"], [], 2]), "/output_spec"),
    ];
    for (field, array, pointer) in cases {
        let mut v = base();
        v[field] = array;
        for err in [
            parse(&v).unwrap_err(),
            PlannedOperation::from_json_value(v.clone()).unwrap_err(),
        ] {
            assert_eq!(err.code(), "ENVELOPE.INVALID", "{field}: {err}");
            assert_eq!(err.pointer(), Some(pointer), "{field}: {err}");
            assert!(err.to_string().contains("expected an object"), "{err}");
        }
    }
    let mut v = base();
    let handle = v["inputs"][0].clone();
    let fields = [
        "artifact_id",
        "kind",
        "content_hash",
        "size_bytes",
        "classification",
        "exportable",
    ];
    v["inputs"][0] = Value::Array(fields.iter().map(|f| handle[*f].clone()).collect());
    let err = parse(&v).unwrap_err();
    assert_eq!(err.pointer(), Some("/inputs/0"), "{err}");
    // The same members as objects are fine.
    let mut v = base();
    v["budget"] = json!({"wall_time_ms": 5000, "output_bytes": 1_048_576});
    v["evidence_policy"] = json!({"required": true, "capture": ["snapshot"]});
    v["output_spec"] = json!({"kinds": ["file"], "max_outputs": 2});
    assert!(parse(&v).is_ok());
    v["evidence_policy"] = Value::Null;
    v["output_spec"] = Value::Null;
    let op = parse(&v).unwrap();
    assert!(op.evidence_policy.is_none() && op.output_spec.is_none());
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
    fn canonical_object_len_is_the_length_of_the_canonical_bytes(
        values in prop::collection::btree_map("\\PC{0,8}", json_value(), 0..6),
        escaped in prop::collection::btree_map(
            "[\\x00-\\x20\"\\\\/a-z\u{e9}\u{1F600}]{0,8}",
            "[\\x00-\\x20\"\\\\/a-z\u{7f}\u{e9}\u{1F600}]{0,12}",
            0..6,
        ),
    ) {
        let mut map: serde_json::Map<String, Value> = values.into_iter().collect();
        map.extend(escaped.into_iter().map(|(k, v)| (k, Value::from(v))));
        prop_assert_eq!(
            mex_envelope::canonical::object_len(&map).unwrap(),
            mex_envelope::canonical::to_vec(&map).unwrap().len()
        );
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
    fn the_one_pass_reading_agrees_with_the_strict_reading(
        v in envelope(),
        key in "[a-z_]{1,20}",
        replacement in json_value(),
        how in 0usize..11,
    ) {
        // Plain documents are read in one pass straight into the typed value;
        // the strict reader followed by the typed pass must decide the same,
        // for valid envelopes, mutated ones, duplicated members and numbers
        // the strict reader normalizes.
        let mut v = v;
        let text = match how {
            0 => v.to_string(),
            1 => {
                if let Some(obj) = v.as_object_mut() {
                    obj.insert(key, replacement);
                }
                v.to_string()
            }
            2 => with_raw_member(&v, &format!("{}: {replacement}", Value::from(key))),
            3..=7 => {
                // A member of params named twice (once with an escape), or a
                // number the strict reader normalizes (5e3 and 5000.0 are
                // the integer 5000, -0 is 0).
                v["params"]["zz"] = Value::from(0);
                let spelled = ["0,\"zz\":1", "5e3", "5000.0", "0,\"z\\u007a\":1", "-0"][how - 3];
                v.to_string().replace("\"zz\":0", &format!("\"zz\":{spelled}"))
            }
            8 => v.to_string().replace("\"budget\":{", "\"budget\":{\"wall_time_ms\":5e3,"),
            // A member of an input named twice; a nested object written as
            // an array of its members.
            9 => v.to_string().replace("\"exportable\":false", "\"exportable\":false,\"exportable\":true"),
            _ => {
                v["budget"] = Value::Array(
                    v["budget"].as_object().into_iter().flat_map(|b| b.values().cloned()).collect(),
                );
                v.to_string()
            }
        };
        let one_pass = PlannedOperation::from_json_str(&text);
        match mex_envelope::json::from_slice_within(
            text.as_bytes(),
            mex_envelope::MAX_ENVELOPE_VALUE_BYTES,
        ) {
            Ok(value) => {
                let strict = PlannedOperation::from_json_value(value);
                prop_assert_eq!(format!("{one_pass:?}"), format!("{strict:?}"));
            }
            Err(refused) => {
                let err = one_pass.unwrap_err();
                prop_assert_eq!(err.pointer(), refused.pointer());
            }
        }
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

// ---------- duplicates, number spellings, op id spellings, bounded reading ----------

fn with_raw_member(v: &Value, raw_member: &str) -> String {
    // Insert a raw `"name": value` member right after the opening brace, so
    // the document carries the same name twice.
    let text = v.to_string();
    format!("{{{raw_member},{}", &text[1..])
}

#[test]
fn duplicate_members_are_refused_at_any_depth() {
    let v = base();
    for (raw, pointer) in [
        (r#""engine_id": "engine.sandbox""#, "/engine_id"),
        (
            r#""op_id": "22222222-2222-4222-8222-000000000002""#,
            "/op_id",
        ),
        (r#""capabilities_requested": []"#, "/capabilities_requested"),
    ] {
        let err = PlannedOperation::from_json_str(&with_raw_member(&v, raw)).unwrap_err();
        assert_eq!(err.code(), "ENVELOPE.DUPLICATE_KEY", "{raw}: {err}");
        assert_eq!(err.pointer(), Some(pointer), "{raw}: {err}");
        assert!(err.to_string().contains("remove one of them"), "{err}");
    }
    let text = v
        .to_string()
        .replace(r#""params":{"#, r#""params":{"deep":{"k":1,"k":2},"#);
    let err = PlannedOperation::from_json_str(&text).unwrap_err();
    assert_eq!(err.code(), "ENVELOPE.DUPLICATE_KEY", "{err}");
    assert_eq!(err.pointer(), Some("/params/deep/k"));
    match err {
        EnvelopeError::DuplicateKey { line, column, .. } => assert_eq!(line, 1, "{column}"),
        other => panic!("{other}"),
    }
}

#[test]
fn integers_beyond_2_53_are_refused_in_every_spelling_so_no_two_share_a_hash() {
    for spelling in [
        "18446744073709551616",
        "18446744073709551617",
        "9007199254740993.0",
        "9007199254740992",
        "1e300",
        "-1E19",
    ] {
        let text = base()
            .to_string()
            .replace(r#""params":{"#, &format!(r#""params":{{"v":{spelling},"#));
        let err = PlannedOperation::from_json_str(&text).unwrap_err();
        assert_eq!(err.pointer(), Some("/params/v"), "{spelling}: {err}");
        assert!(err.to_string().contains("2^53-1"), "{spelling}: {err}");
        let budget = base().to_string().replace(
            r#""budget":{}"#,
            &format!(r#""budget":{{"wall_time_ms":{spelling}}}"#),
        );
        let err = PlannedOperation::from_json_str(&budget).unwrap_err();
        assert_eq!(
            err.pointer(),
            Some("/budget/wall_time_ms"),
            "{spelling}: {err}"
        );
    }
}

#[test]
fn integral_numbers_with_a_fraction_are_the_integer_they_denote() {
    let text = base().to_string().replace(
        r#""budget":{}"#,
        r#""budget":{"wall_time_ms":5000.0,"output_bytes":5e3}"#,
    );
    let op = PlannedOperation::from_json_str(&text).unwrap();
    assert_eq!(op.budget.wall_time_ms, Some(5000));
    assert_eq!(op.budget.output_bytes, Some(5000));
    // And in params, the same canonical bytes (so the same config hash).
    let a = base()
        .to_string()
        .replace(r#""params":{"#, r#""params":{"n":5000.0,"#);
    let b = base()
        .to_string()
        .replace(r#""params":{"#, r#""params":{"n":5000,"#);
    assert_eq!(
        PlannedOperation::from_json_str(&a)
            .unwrap()
            .config_hash()
            .unwrap(),
        PlannedOperation::from_json_str(&b)
            .unwrap()
            .config_hash()
            .unwrap()
    );
}

#[test]
fn budget_errors_say_what_a_budget_looks_like_in_plain_words() {
    for (value, says) in [
        (r#""5000""#, "found the string \"5000\""),
        ("-5", "-5 is negative"),
        ("1.5", "1.5 is not a whole number"),
        ("true", "found true"),
        ("[]", "a whole number from 0 to 9007199254740991"),
    ] {
        let text = base().to_string().replace(
            r#""budget":{}"#,
            &format!(r#""budget":{{"cpu_time_ms":{value}}}"#),
        );
        let err = PlannedOperation::from_json_str(&text).unwrap_err();
        let message = err.to_string();
        assert_eq!(err.pointer(), Some("/budget/cpu_time_ms"), "{message}");
        assert!(message.contains(says), "{value}: {message}");
        assert!(!message.contains("u64"), "{value}: {message}");
    }
}

#[test]
fn a_byte_order_mark_is_refused_in_plain_words() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(base().to_string().as_bytes());
    let err = PlannedOperation::from_json_slice(&bytes).unwrap_err();
    assert_eq!(err.code(), "ENVELOPE.SYNTAX");
    let message = err.to_string();
    assert!(message.contains("byte-order mark"), "{message}");
    assert!(message.contains("without a BOM"), "{message}");
    assert!(!message.contains("expected value"), "{message}");
}

#[test]
fn only_the_canonical_op_id_spelling_parses() {
    for spelling in [
        "{11111111-1111-4111-8111-000000000001}",
        "11111111111141118111000000000001",
        "urn:uuid:11111111-1111-4111-8111-000000000001",
        "11111111-1111-4111-8111-00000000000A",
    ] {
        let mut v = base();
        v["op_id"] = json!(spelling);
        let err = parse(&v).unwrap_err();
        assert_eq!(err.pointer(), Some("/op_id"), "{spelling}: {err}");
        assert!(err.to_string().contains("8-4-4-4-12"), "{err}");
        let mut v = base();
        v["inputs"][0]["artifact_id"] = json!(spelling);
        assert_eq!(
            parse(&v).unwrap_err().pointer(),
            Some("/inputs/0/artifact_id"),
            "{spelling}"
        );
    }
}

#[test]
fn claimed_op_id_reads_only_the_one_top_level_member() {
    let id = "11111111-1111-4111-8111-000000000001";
    let claimed =
        |text: &str| PlannedOperation::claimed_op_id(text.as_bytes()).map(|u| u.to_string());
    assert_eq!(claimed(&base().to_string()).as_deref(), Some(id));
    assert_eq!(
        claimed(&format!(
            r#" {{"a": {{"op_id": "x"}}, "s": "\"op_id\": ", "op_id": "{id}", "z": [1]}}"#
        ))
        .as_deref(),
        Some(id)
    );
    // Nested only, duplicated, not a string, not canonical, not an object.
    assert_eq!(claimed(&format!(r#"{{"a": {{"op_id": "{id}"}}}}"#)), None);
    assert_eq!(
        claimed(&format!(r#"{{"op_id": "{id}", "op_id": "{id}"}}"#)),
        None
    );
    assert_eq!(claimed(r#"{"op_id": {"x": 1}}"#), None);
    assert_eq!(claimed(&format!(r#"{{"op_id": "{{{id}}}"}}"#)), None);
    assert_eq!(claimed(&format!(r#"["op_id", "{id}"]"#)), None);
    // A truncated document still names its op id when the member came first.
    let text = base().to_string();
    let cut = text.find("\"op_id\"").unwrap() + 60;
    assert!(cut < text.len());
    assert_eq!(claimed(&text[..cut]).as_deref(), Some(id));
}

#[test]
fn envelope_reading_stops_after_the_limit_plus_one_byte() {
    let bytes = mex_envelope::read_envelope_bytes(std::io::repeat(b'[')).unwrap();
    assert_eq!(bytes.len(), MAX_ENVELOPE_BYTES + 1);
    assert_eq!(
        PlannedOperation::from_json_slice(&bytes)
            .unwrap_err()
            .code(),
        "ENVELOPE.TOO_LARGE"
    );
    let small = mex_envelope::read_envelope_bytes(&b"{}"[..]).unwrap();
    assert_eq!(small, b"{}");
}

#[test]
fn nesting_far_beyond_the_recursion_limit_is_refused_within_the_cap() {
    for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
        let depth = MAX_ENVELOPE_BYTES / open.len() / 2;
        let text = format!("{}{}", open.repeat(depth), close.repeat(depth));
        assert!(text.len() <= MAX_ENVELOPE_BYTES);
        let err = PlannedOperation::from_json_str(&text).unwrap_err();
        assert_eq!(err.code(), "ENVELOPE.SYNTAX", "{err}");
    }
}

/// A hostile list of repeated capabilities (found by an adversarial review:
/// 20,000 repeats once became 40,000 events on the record) is refused by the
/// front door as one finding, and the committed schema refuses it too.
#[test]
fn capability_and_input_lists_are_bounded() {
    let mut doc: serde_json::Value = serde_json::from_str(include_str!(
        "../../../examples/ops/valid/physics-convert-units.json"
    ))
    .unwrap();
    doc["capabilities_requested"] = serde_json::Value::Array(
        std::iter::repeat_n(serde_json::json!("fs.read:inputs"), 65).collect(),
    );
    let err = PlannedOperation::from_json_value(doc.clone()).unwrap_err();
    assert!(
        err.to_string().contains("/capabilities_requested") && err.to_string().contains("limit"),
        "{err}"
    );
    doc["capabilities_requested"] = serde_json::Value::Array(
        std::iter::repeat_n(serde_json::json!("fs.read:inputs"), 64).collect(),
    );
    // 64 is within the bound (duplicates are G-CAP's business, not the parser's).
    assert!(PlannedOperation::from_json_value(doc).is_ok());
}
