//! Result checks after execution: each rule is exercised on a real admission
//! proof and a real store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

mod common;

use std::collections::BTreeMap;

use mex_artifacts::PutOptions;
use mex_envelope::{ArtifactHandle, ArtifactKind, Classification, ProvenanceRecord};
use mex_gates::internal::Admitted as AdmissionProof;
use mex_gates::results::{Produced, check_result};
use serde_json::json;

fn admit(env: &common::Env, doc: serde_json::Value) -> AdmissionProof {
    let pipeline = common::pipeline(env, common::policy(), None, None);
    let admission = pipeline.admit_json(&serde_json::to_vec(&doc).unwrap());
    admission.result.unwrap_or_else(|d| panic!("{d:?}"))
}

fn physics(env: &common::Env, output_spec: serde_json::Value) -> serde_json::Value {
    json!({
        "schema_version": "poe-1.0", "op_id": uuid::Uuid::new_v4().to_string(),
        "engine_id": "engine.physics", "engine_version_req": "*", "operation": "physics.evaluate_formula",
        "inputs": [env.handles["expr"]], "params": {"expr_ref": env.handles["expr"].artifact_id.to_string(), "output_unit": "Pa"},
        "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts"], "budget": {"output_bytes": 4096},
        "determinism": "D3", "output_spec": output_spec
    })
}

fn provenance(proof: &AdmissionProof, outputs: &[ArtifactHandle]) -> ProvenanceRecord {
    let op = proof.operation();
    ProvenanceRecord {
        engine_id: op.engine_id.clone(),
        engine_version: proof.engine_version().clone(),
        implementation_id: proof.implementation().id.clone(),
        implementation_version: proof.implementation().version.clone(),
        operation: op.operation.clone(),
        determinism: op.determinism,
        config_hash: op.config_hash().unwrap(),
        inputs: op
            .inputs
            .iter()
            .filter_map(|i| i.as_artifact().cloned())
            .collect(),
        outputs: outputs.to_vec(),
        capabilities_granted: proof.capabilities_granted().to_vec(),
        consent_refs: proof.consent_refs().to_vec(),
        environment: BTreeMap::from([("runtime".to_owned(), "test".to_owned())]),
    }
}

fn codes(findings: &[mex_envelope::GateDenial]) -> Vec<String> {
    findings.iter().map(|f| f.code.to_string()).collect()
}

fn put(env: &common::Env, bytes: &[u8]) -> ArtifactHandle {
    let mut options = PutOptions::new(ArtifactKind::Report, Classification::Low);
    options.media_type = Some("application/json".parse().unwrap());
    env.store.put_bytes(bytes, &options).unwrap()
}

#[test]
fn a_clean_run_passes() {
    let env = common::env(Classification::Low);
    let proof = admit(
        &env,
        physics(&env, json!({"kinds": ["report"], "max_outputs": 1})),
    );
    let out = vec![put(&env, b"{\"p\": 1}")];
    let prov = provenance(&proof, &out);
    let produced = Produced {
        outputs: &out,
        evidence: &[],
        logs: None,
        provenance: &prov,
    };
    assert_eq!(
        codes(&check_result(&proof, &produced, &*env.store)),
        Vec::<String>::new()
    );
}

#[test]
fn each_rule_catches_its_violation() {
    let env = common::env(Classification::Low);
    let proof = admit(
        &env,
        physics(
            &env,
            json!({"kinds": ["file"], "max_outputs": 1, "max_output_bytes": 100}),
        ),
    );
    let big = put(&env, &[b'x'; 200]);
    let small = put(&env, b"{}");
    let out = vec![big.clone(), small];
    let mut prov = provenance(&proof, &out);
    prov.capabilities_granted.push("net.http".parse().unwrap());
    prov.config_hash = mex_envelope::Sha256Digest::of(b"other params");
    let produced = Produced {
        outputs: &out,
        evidence: &[],
        logs: None,
        provenance: &prov,
    };
    let mut got = codes(&check_result(&proof, &produced, &*env.store));
    got.sort();
    got.dedup();
    assert_eq!(
        got,
        [
            "G-RESULT.CAPABILITIES_EXCEED_REQUEST",
            "G-RESULT.OUTPUT_SPEC_LIMIT",
            "G-RESULT.OUTPUT_TYPE",
            "G-RESULT.PROVENANCE_INCOMPLETE",
            "G-RESULT.TOO_MANY_OUTPUTS",
        ]
    );
}

#[test]
fn outputs_over_budget_or_missing_from_the_store_are_caught() {
    let env = common::env(Classification::Low);
    let proof = admit(&env, physics(&env, json!({})));
    let huge = put(&env, &[b'y'; 5000]);
    let mut forged = huge.clone();
    forged.artifact_id = uuid::Uuid::new_v4();
    let out = vec![huge, forged];
    let prov = provenance(&proof, &out);
    let produced = Produced {
        outputs: &out,
        evidence: &[],
        logs: None,
        provenance: &prov,
    };
    let got = codes(&check_result(&proof, &produced, &*env.store));
    assert!(
        got.contains(&"G-RESULT.OUTPUT_BUDGET_EXCEEDED".to_owned()),
        "{got:?}"
    );
    assert!(
        got.contains(&"G-RESULT.OUTPUT_UNVERIFIED".to_owned()),
        "{got:?}"
    );
}

#[test]
fn d1_results_need_evidence() {
    let env = common::env(Classification::Low);
    let proof = admit(
        &env,
        json!({
            "schema_version": "poe-1.0", "op_id": uuid::Uuid::new_v4().to_string(),
            "engine_id": "engine.web", "engine_version_req": "*", "operation": "web.capture",
            "inputs": [], "params": {"url": "https://example.org/"},
            "capabilities_requested": ["fs.write:artifacts", "net.http"], "budget": {},
            "determinism": "D1", "evidence_policy": {"required": true, "capture": ["snapshot"]}
        }),
    );
    assert_eq!(proof.consent_refs(), ["consent-net"]);
    let out = vec![put(&env, b"page")];
    let prov = provenance(&proof, &out);
    let without = Produced {
        outputs: &out,
        evidence: &[],
        logs: None,
        provenance: &prov,
    };
    assert_eq!(
        codes(&check_result(&proof, &without, &*env.store)),
        ["G-RESULT.EVIDENCE_MISSING"]
    );
    let evidence = vec![put(&env, b"snapshot bytes")];
    let with = Produced {
        outputs: &out,
        evidence: &evidence,
        logs: None,
        provenance: &prov,
    };
    assert!(check_result(&proof, &with, &*env.store).is_empty());
}
