//! Certificates bound to code, sealed certification, no test mode, and
//! checked determinism, attacked the way an engine author outside the
//! workspace would: with engines written here, against the public API only.
//!
//! - impersonation: another engine struct reporting the certified engine's
//!   implementation id and version is refused at dispatch;
//! - forged certificate: a report edited after certification is refused;
//!   a hand-made certificate in a home with a key is refused;
//! - gaming: an engine that behaves only when its workspace path looks like
//!   the suite's is caught by the suite (which runs it in production paths)
//!   and by `execute_checked`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mex_artifacts::{ArtifactStore, PutOptions};
use mex_conformance::{
    CertificateCertifier, ConformanceReport, Harness, Verdict, certify, report_path,
};
use mex_engine_physics::PhysicsEngine;
use mex_envelope::{
    ArtifactKind, Classification, EngineId, EngineResult, PlannedOperation, ResultStatus,
};
use mex_gates::CapabilityPolicy;
use mex_recorder::{FlightRecorder, MemoryRecorder, ProblemFilter};
use mex_registry::Registry;
use mex_runtime::{CheckRefused, Completion, Engine, EngineFailure, ExecutionContext, MexRuntime};
use serde_json::json;

fn registry_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../mechanical_engines.json")
}

fn physics() -> PhysicsEngine {
    PhysicsEngine::new().unwrap()
}

/// Claims to be the shipped physics implementation; is not.
struct Impostor;

impl Engine for Impostor {
    fn engine_id(&self) -> EngineId {
        "engine.physics".parse().unwrap()
    }
    fn implementation_id(&self) -> &str {
        "mex-engine-physics"
    }
    fn implementation_version(&self) -> semver::Version {
        semver::Version::new(0, 1, 0)
    }
    fn execute<'run>(
        &self,
        ctx: &ExecutionContext<'run>,
    ) -> Result<Completion<'run>, EngineFailure> {
        ctx.write_output(
            ArtifactKind::DatasetSlice,
            "application/json".parse().ok(),
            br#"{"result": "whatever I like"}"#,
        )
        .map_err(|e| EngineFailure::new("PHYS_EVAL_ERROR", e.to_string()))?;
        Ok(ctx.complete())
    }
}

/// Physics when its workspace path looks like the suite's old temporary
/// home; elsewhere a well-formed answer with a random nonce in it (a
/// different output every run). Records every workspace it was given.
struct Gaming {
    inner: PhysicsEngine,
    seen: Arc<Mutex<Vec<PathBuf>>>,
}

impl Gaming {
    fn new() -> Self {
        Self {
            inner: physics(),
            seen: Arc::default(),
        }
    }
}

impl Engine for Gaming {
    fn engine_id(&self) -> EngineId {
        self.inner.engine_id()
    }
    fn implementation_id(&self) -> &str {
        self.inner.implementation_id()
    }
    fn implementation_version(&self) -> semver::Version {
        self.inner.implementation_version()
    }
    fn execute<'run>(
        &self,
        ctx: &ExecutionContext<'run>,
    ) -> Result<Completion<'run>, EngineFailure> {
        let workspace = ctx.workspace().to_path_buf();
        self.seen.lock().unwrap().push(workspace.clone());
        let tested = workspace.to_string_lossy().contains("mex-conformance-");
        if tested || ctx.operation().as_str() != "physics.evaluate_formula" {
            return self.inner.execute(ctx);
        }
        let nonce = uuid::Uuid::new_v4().to_string();
        ctx.write_output(
            ArtifactKind::DatasetSlice,
            "application/json".parse().ok(),
            json!({ "result": "0.005 kPa", "nonce": nonce })
                .to_string()
                .as_bytes(),
        )
        .map_err(|e| EngineFailure::new("PHYS_EVAL_ERROR", e.to_string()))?;
        Ok(ctx.complete())
    }
}

struct Home {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Home {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        Self { _dir: dir, root }
    }
    fn certs(&self) -> PathBuf {
        self.root.join("certificates")
    }
    fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }
}

fn runtime_with(
    home: &Home,
    engine: Arc<dyn Engine>,
    certifier: Option<CertificateCertifier>,
) -> (MexRuntime, Arc<MemoryRecorder>) {
    let policy = CapabilityPolicy::from_json_str(
        r#"{"policy_version":"mex-policy-1","default_profile":"default","profiles":{"default":{"grants":["fs.read:*","fs.write:artifacts"]}}}"#,
    )
    .unwrap();
    let recorder = Arc::new(MemoryRecorder::new());
    let mut builder = MexRuntime::builder()
        .registry(Arc::new(Registry::load(registry_file()).unwrap()))
        .policy(policy)
        .store(Arc::new(
            ArtifactStore::at(home.root.join("artifacts")).unwrap(),
        ))
        .recorder(recorder.clone())
        .workspace_root(home.runs())
        .engine(engine.clone());
    builder = match certifier {
        Some(c) => builder.certifier(Arc::new(c)),
        None => builder.trust_uncertified(engine.engine_id()),
    };
    (builder.build().unwrap(), recorder)
}

fn evaluate_op(rt: &MexRuntime) -> PlannedOperation {
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
    PlannedOperation::from_json_slice(&serde_json::to_vec(&op).unwrap()).unwrap()
}

fn codes(r: &EngineResult) -> Vec<String> {
    r.errors.iter().map(|e| e.code.to_string()).collect()
}

/// Certify the honest physics engine into `home`'s certificates.
fn certify_physics(home: &Home) -> PathBuf {
    let harness = Harness::load(registry_file())
        .unwrap()
        .with_workspace_root(home.runs());
    let outcome = certify(
        &harness,
        Arc::new(physics()),
        &home.certs(),
        None,
        &mut |_| {},
    )
    .unwrap();
    assert!(outcome.report.passed, "{}", outcome.report.table());
    outcome.certificate.unwrap().1
}

#[test]
fn an_impostor_reporting_a_certified_engines_names_does_not_run_under_its_certificate() {
    let home = Home::new();
    certify_physics(&home);
    let certifier = || CertificateCertifier::new(registry_file(), home.certs());

    // The honest engine runs under its certificate.
    let (rt, _) = runtime_with(&home, Arc::new(physics()), Some(certifier()));
    let r = rt.execute(evaluate_op(&rt));
    assert_eq!(r.status, ResultStatus::Succeeded, "{r:?}");

    // Same engine id, implementation id and version, other code: refused.
    let (rt, _) = runtime_with(&home, Arc::new(Impostor), Some(certifier()));
    let r = rt.execute(evaluate_op(&rt));
    assert_eq!(r.status, ResultStatus::Denied, "{r:?}");
    assert_eq!(codes(&r), ["RUNTIME.ENGINE_NOT_CERTIFIED"]);
    let message = &r.errors[0].message;
    assert!(message.contains("other code"), "{message}");
    assert!(
        message.contains("re-certify with `mex conformance --engine engine.physics`"),
        "{message}"
    );
    assert_eq!(rt.runs_dispatched(), 0);
}

#[test]
fn a_report_edited_after_certification_is_refused() {
    let home = Home::new();
    let cert = certify_physics(&home);
    let (rt, _) = runtime_with(
        &home,
        Arc::new(physics()),
        Some(CertificateCertifier::new(registry_file(), home.certs())),
    );
    assert_eq!(rt.execute(evaluate_op(&rt)).status, ResultStatus::Succeeded);

    // A failing report (a case failed), "fixed" by hand: passed = true and
    // the failing case removed, written over the certified report.
    let path = report_path(&cert);
    let mut report: ConformanceReport =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    report.cases[0].verdict = Verdict::Fail;
    report.cases.remove(0);
    report.summary.passed -= 1;
    report.passed = true;
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();

    let r = rt.execute(evaluate_op(&rt));
    assert_eq!(r.status, ResultStatus::Denied, "{r:?}");
    assert_eq!(codes(&r), ["RUNTIME.ENGINE_NOT_CERTIFIED"]);
    assert!(
        r.errors[0].message.contains("edited after certification"),
        "{r:?}"
    );
}

#[test]
fn a_hand_made_certificate_is_refused_in_a_home_with_a_key() {
    // The forger copies a real certificate pair for the honest engine and
    // rewrites its code digest to the impostor's (editing the report to
    // match and the certificate's report digest too): every digest is
    // consistent, but the home's key never signed it.
    let home = Home::new();
    let key = Arc::new(mex_attest::HomeKey::from_seed(&[7; 32]));
    let harness = Harness::load(registry_file())
        .unwrap()
        .with_workspace_root(home.runs())
        .with_certificate_key(Some(key.clone()));
    let outcome = certify(
        &harness,
        Arc::new(physics()),
        &home.certs(),
        None,
        &mut |_| {},
    )
    .unwrap();
    let (cert, path) = outcome.certificate.unwrap();
    let impostor = mex_runtime::code_digest(&Impostor).unwrap();
    let mut report = outcome.report.clone();
    report.code_digest = impostor.digest;
    let mut forged = cert.clone();
    forged.code_digest = impostor.digest;
    forged.report_digest = report.digest().unwrap();
    std::fs::write(
        report_path(&path),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    std::fs::write(&path, serde_json::to_string_pretty(&forged).unwrap()).unwrap();

    let keyed = CertificateCertifier::new(registry_file(), home.certs())
        .with_trusted_key(Some(key.public().clone()));
    let (rt, _) = runtime_with(&home, Arc::new(Impostor), Some(keyed));
    let r = rt.execute(evaluate_op(&rt));
    assert_eq!(r.status, ResultStatus::Denied, "{r:?}");
    assert_eq!(codes(&r), ["RUNTIME.ENGINE_NOT_CERTIFIED"]);
    assert!(r.errors[0].message.contains("signature"), "{r:?}");
}

/// Every workspace under `root`, named `<op uuid>-<suffix>`.
fn assert_production_shaped(paths: &[PathBuf], root: &Path) {
    assert!(!paths.is_empty());
    for p in paths {
        assert_eq!(p.parent(), Some(root), "{}", p.display());
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let (uuid, suffix) = name.split_at(36);
        assert!(uuid::Uuid::parse_str(uuid).is_ok(), "{name}");
        assert!(suffix.starts_with('-') && suffix.len() > 1, "{name}");
        assert!(
            !p.to_string_lossy().contains("conformance"),
            "{}",
            p.display()
        );
    }
}

#[test]
fn the_suite_runs_engines_in_production_paths_so_a_gaming_engine_fails_it() {
    let home = Home::new();
    let gaming = Arc::new(Gaming::new());
    let harness = Harness::load(registry_file())
        .unwrap()
        .with_workspace_root(home.runs());
    let outcome = certify(&harness, gaming.clone(), &home.certs(), None, &mut |_| {}).unwrap();
    assert!(
        !outcome.report.passed,
        "the gaming engine was certified: {}",
        outcome.report.table()
    );
    assert!(outcome.certificate.is_none());
    let failed: Vec<&str> = outcome
        .report
        .cases
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| c.id.as_str())
        .collect();
    assert!(failed.contains(&"determinism.d3"), "{failed:?}");
    let suite_paths = gaming.seen.lock().unwrap().clone();

    // Production, on the same home: the same root and the same shape.
    let (rt, _) = runtime_with(&home, gaming.clone(), None);
    gaming.seen.lock().unwrap().clear();
    let r = rt.execute(evaluate_op(&rt));
    assert_eq!(r.status, ResultStatus::Succeeded, "{r:?}");
    let production_paths = gaming.seen.lock().unwrap().clone();
    assert_production_shaped(&suite_paths, &home.runs());
    assert_production_shaped(&production_paths, &home.runs());

    // Without a production root, the suite's private home is not named
    // after the suite either.
    let gaming = Arc::new(Gaming::new());
    let report = Harness::load(registry_file())
        .unwrap()
        .run(gaming.clone())
        .unwrap();
    assert!(!report.passed);
    let default_paths = gaming.seen.lock().unwrap().clone();
    let root = default_paths[0].parent().unwrap().to_path_buf();
    // The runtime's own default root (off the suite's private home).
    assert!(
        root.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("mex-runs-"),
        "{}",
        root.display()
    );
    assert_production_shaped(&default_paths, &root);
}

#[test]
fn execute_checked_catches_a_nondeterministic_d3_engine_and_names_it() {
    let home = Home::new();
    let (rt, recorder) = runtime_with(&home, Arc::new(Gaming::new()), None);

    // Unchecked, the gaming engine "succeeds" at D3.
    let r = rt.execute(evaluate_op(&rt));
    assert_eq!(r.status, ResultStatus::Succeeded, "{r:?}");

    let before = rt.runs_dispatched();
    let r = rt.execute_checked(evaluate_op(&rt)).unwrap();
    assert_eq!(r.status, ResultStatus::Failed, "{r:?}");
    assert_eq!(codes(&r), ["RUNTIME.NONDETERMINISTIC"]);
    assert!(r.outputs.is_empty(), "{r:?}");
    assert!(
        r.errors[0]
            .message
            .contains("engine.physics (mex-engine-physics 0.1.0)"),
        "{r:?}"
    );
    assert_eq!(rt.runs_dispatched() - before, 2);
    let problems = recorder.problems(&ProblemFilter::default()).unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.code.as_str() == "RUNTIME.NONDETERMINISTIC"
                && p.engine_id.as_ref().map(EngineId::as_str) == Some("engine.physics")),
        "{problems:?}"
    );
}

#[test]
fn execute_checked_passes_a_deterministic_engine_and_refuses_below_d3() {
    let home = Home::new();
    let (rt, _) = runtime_with(&home, Arc::new(physics()), None);
    let op = evaluate_op(&rt);
    // The unchecked run fills the D3 cache; the checked one must not use it.
    let first = rt.execute(op.clone());
    assert_eq!(first.status, ResultStatus::Succeeded, "{first:?}");
    let mut again = op.clone();
    again.op_id = uuid::Uuid::new_v4();
    let before = rt.runs_dispatched();
    let r = rt.execute_checked(again).unwrap();
    assert_eq!(r.status, ResultStatus::Succeeded, "{r:?}");
    assert!(!r.served_from_cache);
    assert_eq!(rt.runs_dispatched() - before, 2);
    assert_eq!(r.outputs[0].content_hash, first.outputs[0].content_hash);

    let mut d2 = op;
    d2.op_id = uuid::Uuid::new_v4();
    d2.determinism = mex_envelope::DeterminismLevel::D2;
    let refused = rt.execute_checked(d2).unwrap_err();
    assert!(matches!(refused, CheckRefused::NotD3(_)));
    assert!(
        refused.to_string().contains("needs a D3 operation"),
        "{refused}"
    );
    assert_eq!(rt.runs_dispatched() - before, 2, "nothing ran");
}
