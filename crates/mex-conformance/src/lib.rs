//! # mex-conformance: the conformance harness and certification
//!
//! Owns the standard conformance suite (docs/contract.md §9), the runner of the
//! registry's per-engine golden and reject vectors, the report (JSON with a
//! generated schema, plus a readable table), certificates, and
//! [`CertificateCertifier`], the [`mex_runtime::Certifier`] that makes the
//! runtime refuse engines without a valid certificate
//! (`RUNTIME.ENGINE_NOT_CERTIFIED`, status denied).
//!
//! It does not own the gates, the runtime or any engine: it drives them
//! through their public APIs only (`MexRuntime::execute_json`, the artifact
//! store's reads, the recorder's queries), in a private temporary mex home,
//! exactly as a planner and an auditor would. There is no test mode: the
//! home has no telling name, and with [`Harness::with_workspace_root`] (which
//! `mex conformance` sets to the home's production workspace root) the
//! engine's shadow workspaces are the very paths production gives it. Its runtimes trust the engine
//! under test without a certificate (that is what is being decided), turn
//! the D3 result cache off (so "run twice" really runs twice), and use a
//! policy that grants what the engine's operations declare, with no consent
//! records, plus a second profile that grants nothing.
//!
//! ## The suite ([`SUITE_VERSION`])
//!
//! The standard cases derive from the engine's first golden vector (the
//! *base operation*): its payloads are stored (a file as its bytes, a
//! directory as a bundle), the operation is rewritten to
//! their handles, then mutated per case. Every case asserts the *named* gate
//! and code; a refusal by another gate is a failure.
//!
//! | case | mutation | expected |
//! |---|---|---|
//! | `schema.envelope_invalid` | unknown top-level field | denied, `G-SCHEMA.ENVELOPE_INVALID` |
//! | `schema.params_invalid` | unknown param | denied, `G-SCHEMA.PARAMS_INVALID` |
//! | `integrity.hash_mismatch` | first input's hash changed | denied, `G-INTEGRITY.HASH_MISMATCH` |
//! | `integrity.size_mismatch` | first input's size + 1 | denied, `G-INTEGRITY.SIZE_MISMATCH` |
//! | `cap.required_missing` | a required capability dropped | denied, `G-CAP.REQUIRED_MISSING` |
//! | `cap.not_granted` | run under a profile granting nothing | denied, `G-CAP.NOT_GRANTED` |
//! | `cap.unconsented` | a consent-requiring capability the op declares, granted without consent (or `net.http` when it declares none) | denied, `G-CAP.CONSENT_MISSING` (or `G-CAP.NOT_ALLOWED_BY_OPERATION`) |
//! | `budget.output_bytes` | `output_bytes = 1` | budget_exceeded, `RUNTIME.OUTPUT_BUDGET_EXCEEDED`, no outputs |
//! | `budget.wall_time` | `wall_time_ms = 1` | budget_exceeded, `RUNTIME.WALL_TIME_EXCEEDED` (an engine that finishes inside 1 ms passes with a note) |
//! | `artifact_first.params_too_large` | 32 KiB + 1 of inline params | denied, `G-INTEGRITY.PARAMS_TOO_LARGE` |
//! | `artifact_first.outputs_are_artifacts` | base op | succeeded; every required declared output present as a verified artifact whose manifest names the op |
//! | `artifact_first.declared_types` | base op | every output's media type and kind are declared for the operation in the registry |
//! | `artifact_first.no_forged_artifacts` | base op | the store gains exactly the result's artifacts and still verifies |
//! | `provenance.complete` | base op | provenance, manifests and Flight Recorder events describe the run |
//! | `determinism.d3` / `.d2` | base op twice | identical output hashes (D3) / canonical digests (D2) |
//! | `determinism.d1` / `.d0` | base op | evidence present |
//! | `vector.<id>` | each registry vector | its expectation; goldens run twice and compare `output_digest` |
//!
//! ### What "forging an output" can mean under the no-bypass API
//!
//! An engine cannot claim an artifact, set a hash, status or provenance: the
//! runtime assembles all of them from what was written through the
//! `ExecutionContext` (mex-runtime's trybuild tests prove it). What remains
//! for a trusted in-process engine is (1) writing into the store directory
//! behind the runtime's back with `std::fs`, caught by
//! `artifact_first.no_forged_artifacts` (store diff and verify walk), and
//! (2) labelling an output with a kind or media type its registry entry does
//! not declare, caught by `artifact_first.declared_types`.
//!
//! ## Certification
//!
//! [`certify`] runs the suite and, when every case passes, writes a
//! [`Certificate`] (engine id, implementation id and version, registry entry
//! digest, code kind and digest, suite version, report digest) to
//! `<dir>/<engine_id>/<implementation_id>-<version>.json`, with the report
//! next to it. The conventional `dir` is `<mex home>/certificates`.
//! [`CertificateCertifier`] checks those files at every dispatch, against the
//! code digest of the engine about to run (`mex_runtime::code_digest`), and
//! checks that the report beside the certificate is the one it names.
//!
//! Only the harness makes certificates: [`Harness::run_sealed`] returns a
//! [`SuiteOutcome`] (private fields, no constructor) and [`write_certificate`]
//! accepts nothing else (compile-fail proofs in `tests/ui`). A signature
//! slots in there: with a home key ([`Harness::with_certificate_key`]) the
//! certificate's exact bytes are signed as a detached DSSE envelope
//! (Ed25519, mex-attest), and a certifier given the public key
//! ([`CertificateCertifier::with_trusted_key`]) refuses anything the key did
//! not sign.
//!
//! ## From a new crate to a certified engine (for engine authors)
//!
//! 1. Declare the engine in `mechanical_engines.json`: operations with params
//!    schemas (`registry/params/<engine>/<op>.schema.json`), outputs with
//!    media types, capabilities, budgets, failure codes, an implementation
//!    (`id`, `version`, `kind`), and at least one golden and one reject
//!    vector with an operation file and payloads (files, or directories for
//!    bundle inputs; `registry/vectors/<engine>/`). `cargo test -p mex-registry` checks it.
//! 2. Create `crates/mex-engine-<name>` depending on mex-envelope and
//!    mex-runtime only; implement [`mex_runtime::Engine`]: read inputs with
//!    `ctx.read_param_input`, write every result with `ctx.write_output`
//!    (never into a log or an error message), evidence with
//!    `ctx.write_evidence` for D0/D1, fail with your registry's codes.
//! 3. Register it in mex-cli (`shipped_engines_with_gates`) and run
//!    `cargo xtask conformance --engine engine.<name>`, which runs
//!    `mex conformance` from the checkout (a process engine
//!    needs no Rust: declare it in an overlay and run
//!    `mex conformance --engine engine.<name>`, see `docs/engine-authors.md`).
//!    Read the table: every failed case names what is wrong and what to do.
//! 4. When it passes, the certificate is written; copy the printed
//!    `output_digest` of each golden vector into the registry (this changes
//!    the entry digest, so run the suite once more to re-certify).
//! 5. Build the runtime with
//!    `.certifier(Arc::new(CertificateCertifier::new(registry_file, home.join("certificates"))))`.
//!    Any later edit of the engine's registry entry or referenced files, or
//!    a new implementation version, makes the runtime refuse the engine with
//!    `RUNTIME.ENGINE_NOT_CERTIFIED` until it is certified again.

mod certificate;
mod error;
mod harness;
mod memo;
mod report;

use std::path::Path;
use std::sync::Arc;

pub use certificate::{
    CERTIFICATE_PAYLOAD_TYPE, CERTIFICATE_VERSION, Certificate, CertificateCertifier,
    certificate_path, read_certificate, registry_entry_digest, registry_entry_digest_with,
    report_path, signature_path, write_certificate,
};
pub use error::ConformanceError;
pub use harness::{Harness, MAX_ERROR_MESSAGE_BYTES, SuiteOutcome, output_digest};
pub use report::{
    CaseReport, Category, ConformanceReport, Summary, Verdict, certificate_schema, report_schema,
};

use mex_recorder::{EventDraft, FlightRecorder};
use mex_runtime::Engine;

/// The suite version; certificates from another suite version are refused.
pub const SUITE_VERSION: &str = "mex-conformance-suite-1";
/// The report format version.
pub const REPORT_VERSION: &str = "mex-conformance-report-1";

/// What [`certify`] did.
#[derive(Debug)]
#[non_exhaustive]
pub struct Certification {
    /// The report.
    pub report: ConformanceReport,
    /// The certificate and where it was written, when the suite passed.
    pub certificate: Option<(Certificate, std::path::PathBuf)>,
}

/// Run the suite for `engine` and, if it passes, write its certificate
/// under `cert_dir`. When `recorder` is given, a `conformance_run` event
/// (engine, certified or not, summary) is appended to it.
pub fn certify(
    harness: &Harness,
    engine: Arc<dyn Engine>,
    cert_dir: &Path,
    recorder: Option<&dyn FlightRecorder>,
    progress: &mut dyn FnMut(&CaseReport),
) -> Result<Certification, ConformanceError> {
    let outcome = harness.run_sealed(engine, progress)?;
    let certificate = if outcome.report().passed {
        Some(certificate::write_certificate(
            cert_dir,
            &outcome,
            harness.certificate_key(),
        )?)
    } else {
        None
    };
    let report = outcome.into_report();
    if let Some(recorder) = recorder {
        let engine_id = report
            .engine_id
            .parse()
            .map_err(|e| ConformanceError::Format {
                what: "report.engine_id".into(),
                message: format!("{e}"),
            })?;
        let summary = serde_json::json!({
            "suite_version": report.suite_version,
            "implementation_id": report.implementation_id,
            "implementation_version": report.implementation_version,
            "passed": report.summary.passed,
            "failed": report.summary.failed,
            "not_applicable": report.summary.not_applicable,
            "report_digest": report.digest()?.to_string(),
        });
        recorder
            .append(EventDraft::conformance_run(
                engine_id,
                report.passed,
                summary,
            ))
            .map_err(|e| ConformanceError::Setup(format!("recording the conformance run: {e}")))?;
    }
    Ok(Certification {
        report,
        certificate,
    })
}
