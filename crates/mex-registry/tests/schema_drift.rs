//! The committed `schemas/mechanical-engines.schema.json` equals what the code
//! generates. `MEX_BLESS=1 cargo test -p mex-registry --test schema_drift`
//! rewrites it; commit the result.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::PathBuf;

#[test]
fn committed_registry_schema_matches_the_code() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../schemas/mechanical-engines.schema.json");
    let generated = mex_registry::internal::render_schema(&mex_registry::schema());
    if std::env::var_os("MEX_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} drifted from the code; run `MEX_BLESS=1 cargo test -p mex-registry --test schema_drift` and commit the result",
        path.display()
    );
}

/// The generated schema is draft 2020-12, compiles, and accepts the shipped
/// registry (so the schema and the loader agree on the shape).
#[test]
fn generated_schema_compiles_and_accepts_the_shipped_registry() {
    let schema = serde_json::to_value(mex_registry::schema()).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../mechanical_engines.json"),
    )
    .unwrap();
    let shipped: serde_json::Value = serde_json::from_str(&text).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&shipped)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .take(10)
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let mut broken = shipped.clone();
    broken["engines"][0]["determinism_ceiling"] = "D9".into();
    assert!(!validator.is_valid(&broken));
}
