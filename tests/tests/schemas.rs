//! Schema drift: the committed files under `schemas/` must equal what the code
//! generates. Fix a failure with `cargo xtask schemas` and commit the result.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::Path;

#[test]
fn committed_schemas_match_the_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("schemas");
    for (name, generated) in mex_cli::published_schemas() {
        let path = dir.join(format!("{name}.schema.json"));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} drifted from the code; run `cargo xtask schemas` and commit the result",
            path.display()
        );
    }
}

#[test]
fn schemas_are_draft_2020_12_and_compile() {
    for named in mex_envelope::schema::all() {
        let value = serde_json::to_value(&named.schema).unwrap();
        assert_eq!(
            value["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{}",
            named.name
        );
        jsonschema::draft202012::new(&value).unwrap();
    }
}
