//! Mutant engines prove the harness has teeth: each one fails the suite with
//! the finding that names its defect, while the honest engine passes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use mex_conformance::{ConformanceReport, Harness, Verdict};
use mex_engine_physics::PhysicsEngine;
use mex_envelope::{ArtifactKind, EngineId};
use mex_runtime::{Completion, Engine, EngineFailure, ExecutionContext};

fn shipped() -> Harness {
    Harness::load(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../mechanical_engines.json"))
        .unwrap()
}

fn fixture() -> Harness {
    Harness::load(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/registry.json"))
        .unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Defect {
    /// Writes a record into the store directory with std::fs.
    ForgesStoreRecord,
    /// Labels an output with a media type the registry does not declare.
    ForgesOutputType,
    /// Writes past its output budget.
    OverrunsBudget,
    /// Adds a time-dependent output to a D3 operation.
    VariesBetweenRuns,
    /// Puts its result in the log instead of an output artifact.
    WritesInline,
    /// Puts its data in an error message instead of an artifact.
    DumpsIntoErrorMessage,
}

/// engine.physics with one defect.
struct Mutant(Defect, PhysicsEngine);

fn fail(e: impl std::fmt::Display) -> EngineFailure {
    EngineFailure::new("PHYS_EVAL_ERROR", e.to_string())
}

impl Engine for Mutant {
    fn engine_id(&self) -> EngineId {
        self.1.engine_id()
    }
    fn implementation_id(&self) -> &str {
        self.1.implementation_id()
    }
    fn implementation_version(&self) -> semver::Version {
        self.1.implementation_version()
    }
    fn execute<'run>(
        &self,
        ctx: &ExecutionContext<'run>,
    ) -> Result<Completion<'run>, EngineFailure> {
        match self.0 {
            Defect::ForgesStoreRecord => {
                let done = self.1.execute(ctx)?;
                // <home>/runs/<run> -> <home>/artifacts/records/<id>/artifact.json
                let store = ctx
                    .workspace()
                    .parent()
                    .unwrap()
                    .parent()
                    .unwrap()
                    .join("artifacts");
                let record = store.join("records").join(uuid::Uuid::new_v4().to_string());
                std::fs::create_dir_all(&record).map_err(fail)?;
                std::fs::write(record.join("artifact.json"), b"{\"forged\": true}")
                    .map_err(fail)?;
                Ok(done)
            }
            // Writes before delegating: the run closes when the honest
            // engine completes.
            Defect::ForgesOutputType => {
                ctx.write_output(
                    ArtifactKind::Report,
                    "text/html".parse().ok(),
                    b"<p>5 Pa</p>",
                )
                .map_err(fail)?;
                self.1.execute(ctx)
            }
            Defect::OverrunsBudget => {
                let pad = vec![b' '; 2 * 1024 * 1024];
                // Ignores the WriteError: a careless engine keeps going.
                let _ =
                    ctx.write_output(ArtifactKind::Report, "application/json".parse().ok(), &pad);
                self.1.execute(ctx)
            }
            Defect::VariesBetweenRuns => {
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                ctx.write_output(
                    ArtifactKind::DatasetSlice,
                    "application/json".parse().ok(),
                    format!("{{\"computed_at_ns\": {nanos}}}").as_bytes(),
                )
                .map_err(fail)?;
                self.1.execute(ctx)
            }
            Defect::DumpsIntoErrorMessage => match self.1.execute(ctx) {
                Err(e) => Err(EngineFailure::new(
                    "PHYS_UNIT_MISMATCH",
                    format!("{}; full trace: {}", e.message, "x + t = ? ".repeat(1000)),
                )),
                ok => ok,
            },
            Defect::WritesInline => {
                let expr = ctx.read_param_input("expr_ref").map_err(fail)?;
                ctx.write_log(&format!(
                    "result of {}: 5 Pa",
                    String::from_utf8_lossy(&expr).trim()
                ))
                .map_err(fail)?;
                Ok(ctx.complete())
            }
        }
    }
}

fn run_mutant(defect: Defect) -> ConformanceReport {
    let report = shipped()
        .run(Arc::new(Mutant(defect, PhysicsEngine::new().unwrap())))
        .unwrap();
    assert!(!report.passed, "{defect:?} passed:\n{}", report.table());
    report
}

/// The case failed and its finding mentions `needle`.
fn assert_finding(report: &ConformanceReport, case: &str, needle: &str) {
    let c = report
        .case(case)
        .unwrap_or_else(|| panic!("no case {case}:\n{}", report.table()));
    assert_eq!(c.verdict, Verdict::Fail, "{case}:\n{}", report.table());
    let finding = c.finding.as_deref().unwrap_or_default();
    assert!(
        finding.contains(needle) || c.observed.contains(needle),
        "{case}: expected {needle:?} in {finding:?} / {:?}",
        c.observed
    );
}

#[test]
fn an_engine_that_writes_into_the_store_behind_the_runtime_fails() {
    let r = run_mutant(Defect::ForgesStoreRecord);
    assert_finding(
        &r,
        "artifact_first.no_forged_artifacts",
        "does not account for",
    );
}

#[test]
fn an_engine_that_claims_an_undeclared_output_type_fails() {
    // The runtime refuses the undeclared output at run time, so every run
    // of the operation fails with the named code.
    let r = run_mutant(Defect::ForgesOutputType);
    assert_finding(
        &r,
        "vector.golden-evaluate-formula",
        "RUNTIME.UNDECLARED_OUTPUT",
    );
}

#[test]
fn an_engine_that_overruns_its_budget_fails() {
    let r = run_mutant(Defect::OverrunsBudget);
    assert_finding(
        &r,
        "vector.golden-evaluate-formula",
        "RUNTIME.OUTPUT_BUDGET_EXCEEDED",
    );
    assert_finding(
        &r,
        "artifact_first.outputs_are_artifacts",
        "RUNTIME.OUTPUT_BUDGET_EXCEEDED",
    );
}

#[test]
fn a_d3_engine_whose_output_varies_fails() {
    let r = run_mutant(Defect::VariesBetweenRuns);
    assert_finding(&r, "determinism.d3", "output varies between runs");
    assert_finding(&r, "vector.golden-evaluate-formula", "differ");
}

#[test]
fn an_engine_that_writes_its_output_inline_fails() {
    let r = run_mutant(Defect::WritesInline);
    assert_finding(
        &r,
        "artifact_first.outputs_are_artifacts",
        "never inline in a log",
    );
}

#[test]
fn an_engine_that_dumps_data_into_error_messages_fails() {
    let r = run_mutant(Defect::DumpsIntoErrorMessage);
    assert_finding(&r, "vector.reject-unit-mismatch", "-byte message");
}

/// The D1 fixture engine; with `evidence: false` it omits evidence, with
/// `slow` it sleeps past its 300 ms wall-time budget without polling
/// cancellation.
struct Live {
    evidence: bool,
    slow: bool,
}

impl Engine for Live {
    fn engine_id(&self) -> EngineId {
        "engine.live".parse().unwrap()
    }
    fn implementation_id(&self) -> &str {
        "live"
    }
    fn implementation_version(&self) -> semver::Version {
        semver::Version::new(1, 0, 0)
    }
    fn execute<'run>(
        &self,
        ctx: &ExecutionContext<'run>,
    ) -> Result<Completion<'run>, EngineFailure> {
        let text = ctx
            .params()
            .get("text")
            .and_then(|t| t.as_str())
            .unwrap_or_default();
        if self.slow {
            std::thread::sleep(std::time::Duration::from_millis(600));
        }
        let fetched = format!("fetched: {text}");
        ctx.write_output(
            ArtifactKind::DatasetSlice,
            "text/plain".parse().ok(),
            fetched.as_bytes(),
        )
        .map_err(|e| EngineFailure::new("LIVE_FAILED", e.to_string()))?;
        if self.evidence {
            ctx.write_evidence(
                ArtifactKind::Transcript,
                "text/plain".parse().ok(),
                b"GET /hello -> 200 OK",
            )
            .map_err(|e| EngineFailure::new("LIVE_FAILED", e.to_string()))?;
        }
        Ok(ctx.complete())
    }
}

#[test]
fn the_honest_d1_fixture_engine_passes() {
    let report = fixture()
        .run(Arc::new(Live {
            evidence: true,
            slow: false,
        }))
        .unwrap();
    assert!(report.passed, "{}", report.table());
    assert_eq!(
        report.case("determinism.d1").unwrap().verdict,
        Verdict::Pass
    );
}

#[test]
fn a_d1_engine_that_omits_evidence_fails() {
    let report = fixture()
        .run(Arc::new(Live {
            evidence: false,
            slow: false,
        }))
        .unwrap();
    assert!(!report.passed);
    assert_finding(&report, "determinism.d1", "G-RESULT.EVIDENCE_MISSING");
    assert_finding(&report, "vector.golden-fetch", "G-RESULT.EVIDENCE_MISSING");
}

#[test]
fn an_engine_that_overruns_its_wall_time_fails() {
    let report = fixture()
        .run(Arc::new(Live {
            evidence: true,
            slow: true,
        }))
        .unwrap();
    assert!(!report.passed);
    assert_finding(&report, "vector.golden-fetch", "RUNTIME.WALL_TIME_EXCEEDED");
    assert_finding(
        &report,
        "artifact_first.outputs_are_artifacts",
        "RUNTIME.WALL_TIME_EXCEEDED",
    );
}
