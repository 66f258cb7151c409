//! Property tests: random mutations of an admitted operation are admitted only
//! when they stay valid under the schema and the policy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

mod common;

use mex_envelope::{Classification, PlannedOperation};
use proptest::prelude::*;
use serde_json::{Value, json};

fn admitted_physics(env: &common::Env) -> Value {
    json!({
        "schema_version": "poe-1.0",
        "op_id": uuid::Uuid::new_v4().to_string(),
        "engine_id": "engine.physics",
        "engine_version_req": "*",
        "operation": "physics.evaluate_formula",
        "inputs": [env.handles["expr"], env.handles["vars"]],
        "params": {"expr_ref": env.handles["expr"].artifact_id.to_string(), "vars_ref": env.handles["vars"].artifact_id.to_string(), "output_unit": "Pa"},
        "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts"],
        "budget": {},
        "determinism": "D3"
    })
}

fn admit(pipeline: &mex_gates::internal::Pipeline, doc: &Value) -> mex_gates::internal::Admission {
    pipeline.admit_json(&serde_json::to_vec(doc).unwrap())
}

const NOT_ALLOWED_OR_NOT_GRANTED: [&str; 10] = [
    "net.http",
    "gpu.compute",
    "device.camera",
    "device.mic",
    "proc.exec:bash",
    "proc.exec:sh",
    "secrets.use:key-1",
    "fs.write:/",
    "fs.read:*",
    "fs.write:inputs",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn adding_a_capability_that_is_not_allowed_is_always_denied(i in 0..NOT_ALLOWED_OR_NOT_GRANTED.len(), at in 0usize..3) {
        let env = common::env(Classification::Low);
        let pipeline = common::pipeline(&env, common::policy(), None, None);
        let mut doc = admitted_physics(&env);
        prop_assert!(admit(&pipeline, &doc).result.is_ok());
        doc["op_id"] = json!(uuid::Uuid::new_v4().to_string());
        let caps = doc["capabilities_requested"].as_array_mut().unwrap();
        caps.insert(at.min(caps.len()), json!(NOT_ALLOWED_OR_NOT_GRANTED[i]));
        let admission = admit(&pipeline, &doc);
        let denials = admission.result.expect_err("an ungranted capability was admitted");
        prop_assert!(denials.iter().any(|d| d.gate.as_str() == "G-CAP"), "{:?}", denials);
    }

    #[test]
    fn budgets_are_admitted_exactly_within_their_bounds(wall in 0u64..130_000, output in 0u64..70_000_000) {
        let env = common::env(Classification::Low);
        let pipeline = common::pipeline(&env, common::policy(), None, None);
        let mut doc = admitted_physics(&env);
        doc["budget"] = json!({"wall_time_ms": wall, "output_bytes": output});
        let valid = (1..=60_000).contains(&wall) && (1..=67_108_864).contains(&output);
        let admission = admit(&pipeline, &doc);
        prop_assert_eq!(admission.result.is_ok(), valid, "{:?}", admission.outcomes);
    }

    #[test]
    fn any_extra_param_or_level_above_ceiling_is_denied(key in "[a-z]{1,12}", level in 0usize..4) {
        let env = common::env(Classification::Low);
        let pipeline = common::pipeline(&env, common::policy(), None, None);
        let mut doc = admitted_physics(&env);
        let known = ["expr_ref", "vars_ref", "output_unit"];
        if !known.contains(&key.as_str()) {
            doc["params"][&key] = json!(1);
        }
        doc["determinism"] = json!(["D0", "D1", "D2", "D3"][level]);
        let admission = admit(&pipeline, &doc);
        // D0/D1 lack evidence here; D2 and D3 are within physics' D3 ceiling.
        let valid = known.contains(&key.as_str()) && level >= 2;
        prop_assert_eq!(admission.result.is_ok(), valid, "{:?}", admission.outcomes);
    }

    #[test]
    fn typed_and_raw_admission_agree(flip in any::<bool>()) {
        let env = common::env(Classification::Low);
        let pipeline = common::pipeline(&env, common::policy(), None, None);
        let mut doc = admitted_physics(&env);
        if flip {
            doc["capabilities_requested"] = json!(["fs.read:inputs"]);
        }
        let raw = admit(&pipeline, &doc).result.is_ok();
        doc["op_id"] = json!(uuid::Uuid::new_v4().to_string());
        let typed = pipeline.admit(PlannedOperation::from_json_value(doc).unwrap()).result.is_ok();
        prop_assert_eq!(raw, typed);
        prop_assert_eq!(raw, !flip);
    }
}

#[test]
fn global_gates_cannot_be_replaced() {
    let env = common::env(Classification::Low);
    let pipeline = common::pipeline(&env, common::policy(), None, None);
    assert_eq!(
        pipeline
            .global_gate_ids()
            .iter()
            .map(|g| g.as_str())
            .collect::<Vec<_>>(),
        [
            "G-SCHEMA",
            "G-CAP",
            "G-INTEGRITY",
            "G-BUDGET",
            "G-PROVENANCE",
            "G-DET"
        ]
    );
    for id in [
        "G-SCHEMA",
        "G-CAP",
        "G-INTEGRITY",
        "G-BUDGET",
        "G-PROVENANCE",
        "G-DET",
    ] {
        let gate = std::sync::Arc::new(common::TestGate {
            id: id.parse().unwrap(),
            deny: false,
        });
        assert!(
            common::pipeline(&env, common::policy(), None, None)
                .with_engine_gate(gate)
                .is_err(),
            "{id} was replaceable"
        );
    }
}
