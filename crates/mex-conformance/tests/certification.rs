//! Certification end to end: a passing run writes a certificate; a runtime
//! with `CertificateCertifier` dispatches the engine only while the
//! certificate matches the registry entry and the implementation version.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mex_artifacts::{ArtifactStore, PutOptions};
use mex_conformance::{
    CertificateCertifier, Harness, SUITE_VERSION, certify, read_certificate, registry_entry_digest,
};
use mex_engine_physics::PhysicsEngine;
use mex_envelope::{ArtifactKind, Classification, EngineResult, ResultStatus};
use mex_gates::CapabilityPolicy;
use mex_recorder::{EventKind, EventQuery, FlightRecorder, MemoryRecorder};
use mex_registry::Registry;
use mex_runtime::{Certifier, MexRuntime};
use serde_json::json;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A private copy of the shipped registry (so the test can edit it).
fn registry_copy(dir: &Path) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::copy(
        root.join("mechanical_engines.json"),
        dir.join("mechanical_engines.json"),
    )
    .unwrap();
    copy_dir(&root.join("registry"), &dir.join("registry"));
    dir.join("mechanical_engines.json")
}

fn runtime(registry_file: &Path, certs: &Path, home: &Path) -> MexRuntime {
    let policy = CapabilityPolicy::from_json_str(
        r#"{"policy_version":"mex-policy-1","default_profile":"default","profiles":{"default":{"grants":["fs.read:*","fs.write:artifacts"]}}}"#,
    )
    .unwrap();
    MexRuntime::builder()
        .registry(Arc::new(Registry::load(registry_file).unwrap()))
        .policy(policy)
        .store(Arc::new(ArtifactStore::at(home.join("artifacts")).unwrap()))
        .recorder(Arc::new(MemoryRecorder::new()))
        .engine(Arc::new(PhysicsEngine::new().unwrap()))
        .certifier(Arc::new(CertificateCertifier::new(registry_file, certs)))
        .build()
        .unwrap()
}

fn evaluate(rt: &MexRuntime) -> EngineResult {
    let put = |bytes: &[u8], media: &str| {
        let mut o = PutOptions::new(ArtifactKind::File, Classification::Low);
        o.media_type = media.parse().ok();
        rt.store().put_bytes(bytes, &o).unwrap()
    };
    let expr = put(b"F / A\n", "text/plain");
    let vars = put(
        br#"{"F": {"value": 10, "unit": "N"}, "A": {"value": 2, "unit": "m^2"}}"#,
        "application/json",
    );
    let op = json!({
        "schema_version": "poe-1.0", "op_id": uuid::Uuid::new_v4().to_string(),
        "engine_id": "engine.physics", "engine_version_req": "^0.1",
        "operation": "physics.evaluate_formula", "inputs": [expr, vars],
        "params": {"expr_ref": expr.artifact_id.to_string(), "vars_ref": vars.artifact_id.to_string(), "output_unit": "kPa"},
        "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts"],
        "budget": {"wall_time_ms": 5000, "output_bytes": 65536}, "determinism": "D3"
    });
    rt.execute_json(&serde_json::to_vec(&op).unwrap())
}

fn codes(r: &EngineResult) -> Vec<String> {
    r.errors.iter().map(|e| e.code.to_string()).collect()
}

#[test]
fn certificate_gates_dispatch() {
    let dir = tempfile::tempdir().unwrap();
    let registry_file = registry_copy(dir.path());
    let certs = dir.path().join("certificates");
    let home = dir.path().join("home");

    // 1. No certificate yet: refused with its own code.
    let rt = runtime(&registry_file, &certs, &home);
    let r = evaluate(&rt);
    assert_eq!(r.status, ResultStatus::Denied, "{r:?}");
    assert_eq!(codes(&r), ["RUNTIME.ENGINE_NOT_CERTIFIED"]);
    assert!(
        r.errors[0]
            .message
            .contains("mex conformance --engine engine.physics")
    );

    // 2. Certify: the certificate names what it certifies; the run is recorded.
    let harness = Harness::load(&registry_file).unwrap();
    let recorder = MemoryRecorder::new();
    let mut seen = 0;
    let outcome = certify(
        &harness,
        Arc::new(PhysicsEngine::new().unwrap()),
        &certs,
        Some(&recorder),
        &mut |_| seen += 1,
    )
    .unwrap();
    assert!(outcome.report.passed, "{}", outcome.report.table());
    assert_eq!(seen, outcome.report.cases.len());
    let (cert, path) = outcome.certificate.unwrap();
    assert_eq!(
        path,
        certs.join("engine.physics/mex-engine-physics-0.1.0.json")
    );
    assert_eq!(read_certificate(&path).unwrap(), cert);
    assert_eq!(cert.engine_id, "engine.physics");
    assert_eq!(cert.implementation_version, "0.1.0");
    assert_eq!(cert.suite_version, SUITE_VERSION);
    assert_eq!(cert.report_digest, outcome.report.digest().unwrap());
    assert_eq!(
        cert.registry_entry_digest,
        registry_entry_digest(&registry_file, "engine.physics").unwrap()
    );
    assert!(path.with_extension("report.json").exists());
    let events = recorder
        .events(&EventQuery::kind(EventKind::ConformanceRun))
        .unwrap();
    assert_eq!(events.len(), 1);

    // 3. Certified: dispatched, exact D3 output.
    let r = evaluate(&rt);
    assert_eq!(r.status, ResultStatus::Succeeded, "{r:?}");
    let out: serde_json::Value =
        serde_json::from_slice(&rt.store().read(&r.outputs[0]).unwrap()).unwrap();
    assert_eq!(out["result"], "0.005 kPa");

    // 4. Another implementation version: refused.
    let certifier = CertificateCertifier::new(&registry_file, &certs);
    let code = mex_runtime::code_digest(&PhysicsEngine::new().unwrap()).unwrap();
    let id = "engine.physics".parse().unwrap();
    let why = certifier
        .check(
            &id,
            "mex-engine-physics",
            &semver::Version::new(0, 2, 0),
            &code,
        )
        .unwrap_err();
    assert!(why.contains("no conformance certificate"), "{why}");

    // 5. The registry entry changes (even a referenced file): refused.
    let schema = dir
        .path()
        .join("registry/params/engine.physics/evaluate_formula.schema.json");
    let text = std::fs::read_to_string(&schema).unwrap();
    std::fs::write(&schema, text.replace("target unit", "the target unit")).unwrap();
    let r = evaluate(&rt);
    assert_eq!(r.status, ResultStatus::Denied, "{r:?}");
    assert_eq!(codes(&r), ["RUNTIME.ENGINE_NOT_CERTIFIED"]);
    assert!(
        r.errors[0].message.contains("changed since certification"),
        "{r:?}"
    );
    std::fs::write(&schema, text).unwrap();
    assert!(
        certifier
            .check(
                &id,
                "mex-engine-physics",
                &semver::Version::new(0, 1, 0),
                &code
            )
            .is_ok()
    );

    // 6. A tampered certificate (other digest) is refused.
    let tampered = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&cert.registry_entry_digest.to_string(), &"0".repeat(64));
    std::fs::write(&path, tampered).unwrap();
    let why = certifier
        .check(
            &id,
            "mex-engine-physics",
            &semver::Version::new(0, 1, 0),
            &code,
        )
        .unwrap_err();
    assert!(why.contains("changed since certification"), "{why}");
}

#[test]
fn a_failing_report_writes_no_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let registry_file = registry_copy(dir.path());
    // Break the golden expectation: the suite must fail, and certify must
    // not write anything.
    let text = std::fs::read_to_string(&registry_file).unwrap();
    let broken = text.replace(
        "f7a3e19c1b33864008786b4f72a302efac7bb0ba41cd638e3cfdb5ed064493b8",
        &"ab".repeat(32),
    );
    assert_ne!(text, broken, "the golden output_digest is in the registry");
    std::fs::write(&registry_file, broken).unwrap();
    let harness = Harness::load(&registry_file).unwrap();
    let certs = dir.path().join("certificates");
    let outcome = certify(
        &harness,
        Arc::new(PhysicsEngine::new().unwrap()),
        &certs,
        None,
        &mut |_| {},
    )
    .unwrap();
    assert!(!outcome.report.passed);
    assert!(outcome.certificate.is_none());
    assert!(!certs.exists());
    let c = outcome
        .report
        .case("vector.golden-evaluate-formula")
        .unwrap();
    assert!(
        c.finding
            .as_deref()
            .unwrap()
            .contains("differs from the registry"),
        "{c:?}"
    );
}

#[test]
fn the_report_is_reproducible_and_matches_its_schema() {
    let harness = Harness::load(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../mechanical_engines.json"),
    )
    .unwrap();
    let a = harness
        .run(Arc::new(PhysicsEngine::new().unwrap()))
        .unwrap();
    let b = harness
        .run(Arc::new(PhysicsEngine::new().unwrap()))
        .unwrap();
    // budget.wall_time may legitimately differ (finished inside 1 ms or not);
    // compare everything else.
    let strip = |r: &mex_conformance::ConformanceReport| {
        let mut r = r.clone();
        r.cases.retain(|c| c.id != "budget.wall_time");
        r
    };
    assert_eq!(strip(&a), strip(&b));
    let schema = serde_json::to_value(mex_conformance::report_schema()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let doc = serde_json::to_value(&a).unwrap();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "the report does not match its schema: {errors:?}"
    );
}
