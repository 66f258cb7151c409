//! The shipped engine.physics against the shipped registry: the suite passes,
//! certification writes a certificate the runtime accepts, and the runtime
//! refuses the engine when the certificate is missing or stale.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::PathBuf;
use std::sync::Arc;

use mex_conformance::{Harness, Verdict};
use mex_engine_physics::PhysicsEngine;

fn registry_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../mechanical_engines.json")
}

#[test]
fn physics_passes_the_suite() {
    let harness = Harness::load(registry_file()).unwrap();
    let report = harness
        .run(Arc::new(PhysicsEngine::new().unwrap()))
        .unwrap();
    println!("{}", report.table());
    assert!(report.passed, "{}", report.table());
    for id in [
        "schema.envelope_invalid",
        "schema.params_invalid",
        "integrity.hash_mismatch",
        "integrity.size_mismatch",
        "cap.required_missing",
        "cap.not_granted",
        "cap.unconsented",
        "budget.output_bytes",
        "budget.wall_time",
        "artifact_first.params_too_large",
        "artifact_first.outputs_are_artifacts",
        "artifact_first.declared_types",
        "artifact_first.no_forged_artifacts",
        "provenance.complete",
        "determinism.d3",
        "vector.golden-evaluate-formula",
        "vector.reject-unit-mismatch",
    ] {
        assert_eq!(
            report.case(id).map(|c| c.verdict),
            Some(Verdict::Pass),
            "{id}"
        );
    }
}

mod through_the_runtime {
    use super::*;
    use mex_artifacts::{ArtifactStore, PutOptions};
    use mex_envelope::{ArtifactKind, Classification, EngineResult, ResultStatus};
    use mex_gates::CapabilityPolicy;
    use mex_recorder::MemoryRecorder;
    use mex_registry::Registry;
    use mex_runtime::MexRuntime;
    use serde_json::{Value, json};

    fn runtime(home: &std::path::Path) -> MexRuntime {
        MexRuntime::builder()
            .registry(Arc::new(Registry::load(registry_file()).unwrap()))
            .policy(
                CapabilityPolicy::from_json_str(
                    r#"{"policy_version":"mex-policy-1","default_profile":"default","profiles":{"default":{"grants":["fs.read:*","fs.write:artifacts"]}}}"#,
                )
                .unwrap(),
            )
            .store(Arc::new(ArtifactStore::at(home.join("artifacts")).unwrap()))
            .recorder(Arc::new(MemoryRecorder::new()))
            .engine(Arc::new(PhysicsEngine::new().unwrap()))
            .trust_uncertified("engine.physics".parse().unwrap())
            .build()
            .unwrap()
    }

    fn run(
        rt: &MexRuntime,
        operation: &str,
        inputs: &[(&str, &[u8], &str)],
        extra: Value,
    ) -> (EngineResult, Value) {
        let mut params = extra;
        let mut handles = Vec::new();
        for (param, bytes, media) in inputs {
            let mut o = PutOptions::new(ArtifactKind::File, Classification::Low);
            o.media_type = media.parse().ok();
            let h = rt.store().put_bytes(bytes, &o).unwrap();
            params[*param] = json!(h.artifact_id.to_string());
            handles.push(h);
        }
        let op = json!({
            "schema_version": "poe-1.0", "op_id": uuid::Uuid::new_v4().to_string(),
            "engine_id": "engine.physics", "engine_version_req": "^0.1",
            "operation": operation, "inputs": handles, "params": params,
            "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts"],
            "budget": {"wall_time_ms": 5000, "output_bytes": 65536}, "determinism": "D3"
        });
        let r = rt.execute_json(&serde_json::to_vec(&op).unwrap());
        let out = r
            .outputs
            .first()
            .map(|h| serde_json::from_slice(&rt.store().read(h).unwrap()).unwrap())
            .unwrap_or(Value::Null);
        (r, out)
    }

    #[test]
    fn check_units_reports_mismatches_as_a_dataset() {
        let home = tempfile::tempdir().unwrap();
        let rt = runtime(home.path());
        let (r, out) = run(
            &rt,
            "physics.check_units",
            &[
                ("expr_ref", b"3 Pa * 2 m^2\n1 m + 1 s\n", "text/plain"),
                (
                    "unit_policy_ref",
                    br#"{"expected_unit": "N"}"#,
                    "application/json",
                ),
            ],
            json!({}),
        );
        assert_eq!(r.status, ResultStatus::Succeeded, "{r:?}");
        assert_eq!(out["mismatches"], 1);
        assert_eq!(out["expressions"][0]["result"], "6 N");
    }

    #[test]
    fn convert_units_to_metric_and_refuses_pdf() {
        let home = tempfile::tempdir().unwrap();
        let rt = runtime(home.path());
        let doc: &[u8] = b"name,value,unit\nspan,12,ft\nload,100,lbf\n";
        let (r, out) = run(
            &rt,
            "physics.convert_units",
            &[("doc_ref", doc, "text/csv")],
            json!({"target_system": "metric", "report_format": "json"}),
        );
        assert_eq!(r.status, ResultStatus::Succeeded, "{r:?}");
        assert_eq!(out["quantities"][0]["to"], "3.6576 m");
        assert_eq!(out["quantities"][1]["unit"], "N");
        let (r, _) = run(
            &rt,
            "physics.convert_units",
            &[("doc_ref", doc, "text/csv")],
            json!({"target_system": "metric", "report_format": "pdf"}),
        );
        assert_eq!(r.status, ResultStatus::Failed);
        assert_eq!(r.errors[0].code.as_str(), "PHYS_EVAL_ERROR");
    }
}
