//! The conformance report: a JSON document (schema generated with schemars,
//! published as `schemas/conformance-report.schema.json`) and a readable table.
//!
//! The report holds no timestamps, durations, op ids or paths, so two runs of
//! a D3 engine against the same registry entry give the same report digest.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use mex_envelope::Sha256Digest;

use crate::ConformanceError;

/// What a case checks (the categories of docs/contract.md §9, plus the registry's vectors).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// G-SCHEMA refuses invalid envelopes and params.
    Schema,
    /// G-INTEGRITY refuses tampered inputs.
    Integrity,
    /// G-CAP refuses missing, ungranted and unconsented capabilities.
    Capability,
    /// Too-small budgets end the run as budget exceeded.
    Budget,
    /// More than 32 KiB inline is refused; every output is an artifact.
    ArtifactFirst,
    /// Provenance describes the run completely.
    Provenance,
    /// Determinism and evidence for the engine's class.
    Determinism,
    /// A registry conformance vector.
    Vector,
}

/// How a case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The engine and runtime behaved as the contract says.
    Pass,
    /// They did not; see `finding`.
    Fail,
    /// The case does not apply to this engine (says why); never blocks
    /// certification.
    NotApplicable,
}

/// One case of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseReport {
    /// Stable id, e.g. `cap.not_granted` or `vector.golden-evaluate-formula`.
    pub id: String,
    /// Category.
    pub category: Category,
    /// What the case proves.
    pub description: String,
    /// What the contract requires, e.g. `denied by G-CAP with G-CAP.NOT_GRANTED`.
    pub expected: String,
    /// What happened (status, then gate/code pairs or error codes).
    pub observed: String,
    /// The verdict.
    pub verdict: Verdict,
    /// For a failure: what is wrong and what to do. For n/a: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<String>,
}

/// The report of one suite run against one engine implementation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConformanceReport {
    /// Always [`crate::REPORT_VERSION`].
    pub report_version: String,
    /// The suite that ran ([`crate::SUITE_VERSION`]).
    pub suite_version: String,
    /// Engine id.
    pub engine_id: String,
    /// Implementation id.
    pub implementation_id: String,
    /// Implementation version.
    pub implementation_version: String,
    /// Digest of the engine's registry entry (see [`crate::registry_entry_digest`]).
    pub registry_entry_digest: Sha256Digest,
    /// The kind of code that ran: `builtin` (compiled into the host) or the
    /// external kind (`process`, ...); see `mex_runtime::CodeIdentity`.
    pub code_kind: String,
    /// The code digest of the engine that ran (`mex_runtime::code_digest`):
    /// the host build for a builtin, the pinned program, files and
    /// interpreter for a process engine, always with the engine's Rust type.
    pub code_digest: Sha256Digest,
    /// The engine's determinism ceiling, which selects the determinism cases.
    pub determinism_ceiling: String,
    /// Every case, in suite order.
    pub cases: Vec<CaseReport>,
    /// Counts.
    pub summary: Summary,
    /// True when no case failed: the engine may be certified.
    pub passed: bool,
}

/// Case counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Passed cases.
    pub passed: u32,
    /// Failed cases.
    pub failed: u32,
    /// Cases that do not apply.
    pub not_applicable: u32,
}

impl ConformanceReport {
    /// The SHA-256 of the report's RFC 8785 canonical JSON (what a
    /// certificate records).
    pub fn digest(&self) -> Result<Sha256Digest, ConformanceError> {
        mex_envelope::canonical::digest(self).map_err(|e| ConformanceError::Format {
            what: "conformance report".into(),
            message: e.to_string(),
        })
    }

    /// The failed cases.
    pub fn failures(&self) -> impl Iterator<Item = &CaseReport> {
        self.cases.iter().filter(|c| c.verdict == Verdict::Fail)
    }

    /// The case with this id.
    pub fn case(&self, id: &str) -> Option<&CaseReport> {
        self.cases.iter().find(|c| c.id == id)
    }

    /// A plain-text table: one row per case, then every finding in full.
    pub fn table(&self) -> String {
        let mut out = format!(
            "conformance {} for {} ({} {}), suite {}\n\n",
            if self.passed { "PASSED" } else { "FAILED" },
            self.engine_id,
            self.implementation_id,
            self.implementation_version,
            self.suite_version
        );
        let width = self
            .cases
            .iter()
            .map(|c| c.id.len())
            .max()
            .unwrap_or(4)
            .max(4);
        out.push_str(&format!(
            "{:<width$}  {:<6}  {}\n",
            "case", "result", "observed"
        ));
        out.push_str(&format!("{:-<width$}  {:-<6}  {:-<40}\n", "", "", ""));
        for c in &self.cases {
            let verdict = match c.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail => "FAIL",
                Verdict::NotApplicable => "n/a",
            };
            out.push_str(&format!(
                "{:<width$}  {:<6}  {}\n",
                c.id, verdict, c.observed
            ));
        }
        out.push_str(&format!(
            "\n{} passed, {} failed, {} not applicable\n",
            self.summary.passed, self.summary.failed, self.summary.not_applicable
        ));
        let findings: Vec<&CaseReport> =
            self.cases.iter().filter(|c| c.finding.is_some()).collect();
        if !findings.is_empty() {
            out.push_str("\nfindings:\n");
            for c in findings {
                out.push_str(&format!(
                    "- {} [{}]: expected {}; {}\n",
                    c.id,
                    match c.verdict {
                        Verdict::Fail => "FAIL",
                        _ => "note",
                    },
                    c.expected,
                    c.finding.as_deref().unwrap_or_default()
                ));
            }
        }
        out
    }
}

/// The JSON Schema of [`ConformanceReport`].
pub fn report_schema() -> schemars::Schema {
    schemars::schema_for!(ConformanceReport)
}

/// The JSON Schema of [`crate::Certificate`].
pub fn certificate_schema() -> schemars::Schema {
    schemars::schema_for!(crate::Certificate)
}
