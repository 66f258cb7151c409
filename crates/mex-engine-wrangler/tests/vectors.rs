//! The registry's engine.wrangler vectors, run through the handler: the
//! params satisfy the operation's params schema, each reject fails with its
//! code, and each golden's output digest is the one the registry records
//! (SHA-256 of the canonical list of output content hashes).
#![allow(clippy::unwrap_used, clippy::panic, missing_docs, reason = "tests")]

mod common;

use std::path::PathBuf;

use common::Jail;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn registry_vectors_hold() {
    let reg: Value =
        serde_json::from_slice(&std::fs::read(repo().join("mechanical_engines.json")).unwrap())
            .unwrap();
    let engine = reg["engines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["engine_id"] == mex_engine_wrangler::ENGINE_ID)
        .unwrap();
    let vectors = engine["conformance_vectors"].as_array().unwrap();
    let mut ops_with_golden = std::collections::BTreeSet::new();
    let mut ops_with_reject = std::collections::BTreeSet::new();
    for v in vectors {
        let id = v["id"].as_str().unwrap();
        let op: Value = serde_json::from_slice(
            &std::fs::read(repo().join(v["operation_file"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        let operation = op["operation"].as_str().unwrap();
        // Params match the operation's schema.
        let schema_file = engine["operations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == operation)
            .unwrap()["params_schema"]["file"]
            .as_str()
            .unwrap();
        let schema: Value =
            serde_json::from_slice(&std::fs::read(repo().join(schema_file)).unwrap()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        assert!(
            validator.is_valid(&op["params"]),
            "{id}: params do not match {schema_file}"
        );

        let mut jail = Jail::new();
        for (input, payload) in op["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .zip(v["payloads"].as_array().unwrap())
        {
            assert_eq!(input["artifact_id"], payload["artifact_id"]);
            let bytes = std::fs::read(repo().join(payload["file"].as_str().unwrap())).unwrap();
            assert_eq!(
                hex(&Sha256::digest(&bytes)),
                input["content_hash"].as_str().unwrap(),
                "{id}"
            );
            let path = jail.path(&format!(
                "payload-{}",
                payload["artifact_id"].as_str().unwrap()
            ));
            std::fs::write(&path, &bytes).unwrap();
            jail.input_path(
                input["artifact_id"].as_str().unwrap(),
                &path,
                input["media_type"].as_str().unwrap(),
            );
        }
        let result = jail.run(operation, op["params"].clone());
        match v["expect"]["outcome"].as_str().unwrap() {
            "failed" => {
                let f = result
                    .err()
                    .unwrap_or_else(|| panic!("{id}: expected a failure"));
                assert_eq!(
                    f.code,
                    v["expect"]["code"].as_str().unwrap(),
                    "{id}: {}",
                    f.message
                );
                ops_with_reject.insert(operation.to_owned());
            }
            "succeeded" => {
                let outs = result.unwrap_or_else(|f| panic!("{id}: {} {}", f.code, f.message));
                let hashes: Vec<String> = outs.iter().map(|o| hex(&Sha256::digest(&o.2))).collect();
                // RFC 8785 form of a list of hex strings is the compact JSON.
                let digest = hex(&Sha256::digest(serde_json::to_vec(&hashes).unwrap()));
                assert_eq!(
                    v["expect"]["output_digest"].as_str(),
                    Some(digest.as_str()),
                    "{id}: record \"output_digest\": \"{digest}\""
                );
                ops_with_golden.insert(operation.to_owned());
            }
            other => panic!("{id}: unexpected outcome {other}"),
        }
    }
    assert_eq!(ops_with_golden.len(), 4, "a golden vector per operation");
    assert_eq!(ops_with_reject.len(), 4, "a reject vector per operation");
}
