//! The shipped `mechanical_engines.json` loads, validates, and says what the
//! spec says: 22 engines, 83 operations, 83 failure codes, 45 vectors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::PathBuf;

use mex_envelope::{DeterminismLevel, EngineId, OperationName, PlannedOperation};
use mex_registry::{EngineStatus, ImplementationKind, Registry, RegistryError};
use semver::VersionReq;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shipped() -> Registry {
    match Registry::load(root().join("mechanical_engines.json")) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

fn id(s: &str) -> EngineId {
    s.parse().unwrap()
}

fn op(s: &str) -> OperationName {
    s.parse().unwrap()
}

#[test]
fn shipped_registry_loads_and_matches_the_spec_totals() {
    let r = shipped();
    assert_eq!(r.engines().len(), 22);
    let ops: usize = r.engines().map(|e| e.operations.len()).sum();
    let codes: usize = r.engines().map(|e| e.failure_codes.len()).sum();
    let vectors: usize = r.engines().map(|e| e.vectors.len()).sum();
    // engine.wrangler: + WR_LIMIT_EXCEEDED, 8 vectors in place of 2;
    // engine.dba: + DBA_LIMIT_EXCEEDED, 5 vectors in place of 2;
    // engine.context: 8 vectors in place of 2.
    assert_eq!((ops, codes, vectors), (83, 85, 60));
    let count = |level| {
        r.engines()
            .filter(|e| e.determinism_ceiling == level)
            .count()
    };
    assert_eq!(
        [
            count(DeterminismLevel::D3),
            count(DeterminismLevel::D2),
            count(DeterminismLevel::D1),
            count(DeterminismLevel::D0)
        ],
        [6, 13, 2, 1]
    );
    for e in r.engines() {
        assert_eq!(e.interface_version, semver::Version::new(1, 0, 0));
        assert!(e.vectors.len() >= 2, "{}", e.id);
    }
}

#[test]
fn implemented_and_declared_engines_say_so() {
    let r = shipped();
    let physics = r.engine(&id("engine.physics")).unwrap();
    assert_eq!(physics.status(), EngineStatus::CallableCandidate);
    let imp = r
        .implementation(&id("engine.physics"), &VersionReq::parse("^0.1").unwrap())
        .unwrap();
    assert_eq!(
        (imp.id.as_str(), imp.kind),
        ("mex-engine-physics", ImplementationKind::InProcess)
    );
    let sandbox = r
        .implementation(&id("engine.sandbox"), &VersionReq::parse("^0.1").unwrap())
        .unwrap();
    assert_eq!(sandbox.kind, ImplementationKind::Subprocess);
    assert_eq!(sandbox.executables, ["bash", "python3", "node"]);

    let spatial = r.engine(&id("engine.spatial")).unwrap();
    assert_eq!(spatial.status(), EngineStatus::DeclaredOnly);
    assert_eq!(
        spatial.status().reason(),
        "declared, no implementation: not callable"
    );
    let err = r
        .implementation(&id("engine.spatial"), &VersionReq::STAR)
        .unwrap_err();
    assert!(matches!(err, RegistryError::NotCallable { .. }));
    assert!(
        err.to_string()
            .contains("declared, no implementation: not callable"),
        "{err}"
    );
    let err = r
        .implementation(&id("engine.physics"), &VersionReq::parse("^2").unwrap())
        .unwrap_err();
    assert!(matches!(
        err,
        RegistryError::NoMatchingImplementation { .. }
    ));
    assert!(
        err.to_string().contains("mex-engine-physics@0.1.0"),
        "{err}"
    );
}

#[test]
fn unknown_engines_and_operations_are_named() {
    let r = shipped();
    let err = r.engine(&id("engine.nope")).unwrap_err();
    assert!(err.to_string().contains("not declared"), "{err}");
    let err = r
        .operation(&id("engine.physics"), &op("physics.nope"))
        .unwrap_err();
    assert!(
        err.to_string().contains("physics.evaluate_formula"),
        "{err}"
    );
}

#[test]
fn params_validation_reports_pointers() {
    let r = shipped();
    let operation = r
        .operation(&id("engine.physics"), &op("physics.evaluate_formula"))
        .unwrap();
    let good = serde_json::json!({
        "expr_ref": "00000000-0000-4000-8000-000000000001",
        "vars_ref": "00000000-0000-4000-8000-000000000002",
        "output_unit": "Pa"
    });
    operation.validate_params(&good).unwrap();
    let bad = serde_json::json!({
        "expr_ref": "not-a-uuid",
        "vars_ref": "00000000-0000-4000-8000-000000000002",
        "output_unit": "Pa",
        "extra": 1
    });
    let errors = operation.params_errors(&bad);
    let pointers: Vec<String> = errors.iter().map(|e| e.envelope_pointer()).collect();
    assert!(
        pointers.contains(&"/params/expr_ref".to_owned()),
        "{pointers:?}"
    );
    assert!(pointers.contains(&"/params".to_owned()), "{pointers:?}");
    let err = operation.validate_params(&bad).unwrap_err();
    assert!(matches!(err, RegistryError::InvalidParams { .. }));
    // A missing required param points at the params object.
    let missing = serde_json::json!({ "expr_ref": "00000000-0000-4000-8000-000000000001" });
    assert!(!operation.params_are_valid(&missing));
}

#[test]
fn gates_and_seeds_are_exposed_for_the_gate_pipeline() {
    let r = shipped();
    let machinist = r.engine(&id("engine.machinist")).unwrap();
    let generate = op("machinist.generate_gcode");
    let visualize = op("machinist.visualize_toolpath");
    assert_eq!(machinist.gates_for(&generate, &[]).count(), 1);
    assert_eq!(machinist.gates_for(&visualize, &[]).count(), 0);
    let version = r.engine(&id("engine.version")).unwrap();
    let merge = op("version.merge");
    assert_eq!(version.gates_for(&merge, &[]).count(), 0);
    let net = ["net.http".parse().unwrap()];
    assert_eq!(version.gates_for(&merge, &net).count(), 1);
    let layout = r
        .operation(&id("engine.spatial"), &op("spatial.generate_layout"))
        .unwrap();
    assert!(layout.seed_required(DeterminismLevel::D2));
    assert!(!layout.seed_required(DeterminismLevel::D1));
}

#[test]
fn runnable_vectors_parse_and_pending_ones_are_marked() {
    let r = shipped();
    let mut runnable = 0;
    for e in r.engines() {
        for v in &e.vectors {
            if let Some((path, planned)) = &v.planned {
                assert!(path.starts_with(root().canonicalize().unwrap()));
                assert_eq!(planned.engine_id, e.id);
                assert_eq!(planned.operation, v.operation);
                runnable += 1;
            } else {
                assert!(v.is_pending());
            }
        }
    }
    assert_eq!(
        runnable, 27,
        "physics, dba, sandbox, wrangler, sovereign and context vectors have files"
    );
}

/// Every example operation of the workspace validates against the shipped
/// params schemas: the examples and the registry agree.
#[test]
fn workspace_examples_pass_the_registry_params_schemas() {
    let r = shipped();
    let dir = root().join("examples/ops/valid");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let planned = PlannedOperation::from_json_slice(&std::fs::read(&path).unwrap()).unwrap();
        let params = serde_json::Value::Object(planned.params.clone());
        let operation = r.operation(&planned.engine_id, &planned.operation).unwrap();
        assert!(
            operation.params_errors(&params).is_empty(),
            "{}: {:?}",
            path.display(),
            operation.params_errors(&params)
        );
        seen += 1;
    }
    assert!(seen >= 5);
}
