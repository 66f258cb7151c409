//! Differential: the committed JSON Schema (`schemas/planned-operation.schema.json`,
//! checked by the independent `jsonschema` crate with formats on) and the typed
//! parser (`PlannedOperation::from_json_slice`) accept the same documents.
//!
//! The only documents they may disagree on are those the parser refuses for a
//! rule JSON Schema cannot state; each is listed in [`beyond_schema`].
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mex_envelope::{EnvelopeError, PlannedOperation};

fn validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schemas/planned-operation.schema.json"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let schema: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    })
}

/// Refusals for rules a JSON Schema cannot express:
/// * the document cap (a byte count, not a shape);
/// * duplicate member names (a schema sees only the parsed value);
/// * the operation's prefix must equal the engine's name (a cross-field rule);
/// * the parser's memory budget for a document within the byte cap
///   (`ENVELOPE.TOO_COMPLEX`);
/// * evidence-capture tokens that are well-formed but contradictory;
/// * the fine grammar of a semver requirement (leading zeros, where a
///   wildcard may stand), which the schema's pattern only bounds from above.
fn beyond_schema(e: &EnvelopeError) -> bool {
    match e {
        EnvelopeError::TooLarge { .. } => true,
        EnvelopeError::Invalid { pointer, message } => {
            (pointer == "/operation" && message.contains("does not belong"))
                || pointer.starts_with("/evidence_policy/capture/")
                || pointer == "/engine_version_req"
        }
        other => matches!(
            other.code(),
            "ENVELOPE.DUPLICATE_KEY" | "ENVELOPE.TOO_COMPLEX"
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = PlannedOperation::from_json_slice(data);
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        assert!(
            parsed.is_err(),
            "the parser accepted bytes that are not JSON: {:?}",
            String::from_utf8_lossy(data)
        );
        return;
    };
    let schema_ok = validator().is_valid(&value);
    match (&parsed, schema_ok) {
        (Ok(_), false) => panic!(
            "the parser accepted a document the schema refuses: {}",
            String::from_utf8_lossy(data)
        ),
        (Err(e), true) if !beyond_schema(e) => panic!(
            "the schema accepts a document the parser refuses ({e}): {}",
            String::from_utf8_lossy(data)
        ),
        _ => {}
    }
});
