//! engine.wrangler through the real binary, from a fresh home: certified by
//! `mex conformance`'s vectors, hostile rejects included, inside the jail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use serde_json::Value;

mod common;
use common::{mex, report as text};

/// Every registry vector of engine.wrangler passes inside the jail, from a
/// fresh home: the goldens with their recorded digests, and the hostile
/// rejects (a CSV quote never closed, bytes that are not UTF-8) with the
/// engine's own codes, which only the handler in the jailed child produces.
#[test]
fn vectors_and_hostile_rejects_pass_in_the_jail() {
    let home_dir = tempfile::tempdir().unwrap();
    let home = home_dir.path().join("mex");
    let o = mex(
        &home,
        &["conformance", "--engine", "engine.wrangler", "--json"],
    );
    let report: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&o)));
    let cases = report["engines"][0]["report"]["cases"].as_array().unwrap();
    let vectors: Vec<&Value> = cases
        .iter()
        .filter(|c| c["id"].as_str().unwrap().starts_with("vector."))
        .collect();
    assert_eq!(vectors.len(), 8, "{cases:?}");
    for c in &vectors {
        assert_eq!(c["verdict"], "pass", "{c}");
    }
    let observed = |id: &str| {
        vectors.iter().find(|c| c["id"] == id).unwrap()["observed"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(observed("vector.reject-unbalanced-quote").contains("WR_DATA_PARSE_ERROR"));
    assert!(observed("vector.reject-invalid-utf8").contains("WR_DATA_PARSE_ERROR"));
}
