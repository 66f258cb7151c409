//! Result checks: what the runtime applies after an engine ran and before it
//! assembles the EngineResult. Findings are reported under `G-RESULT`.
//!
//! * `G-RESULT.OUTPUT_UNVERIFIED`: an output, evidence or log handle does not
//!   resolve in the store or its bytes do not match its hash and size.
//! * `G-RESULT.OUTPUT_BUDGET_EXCEEDED`: outputs + evidence + logs exceed the
//!   resolved output budget.
//! * `G-RESULT.TOO_MANY_OUTPUTS`: more outputs than `output_spec.max_outputs`.
//! * `G-RESULT.OUTPUT_SPEC_LIMIT`: output bytes above `output_spec.max_output_bytes`.
//! * `G-RESULT.OUTPUT_TYPE`: an output's kind or media type is not one the
//!   `output_spec` allows.
//! * `G-RESULT.EVIDENCE_MISSING`: a D0/D1 result without evidence.
//! * `G-RESULT.PROVENANCE_INCOMPLETE`: the provenance does not describe this
//!   run (engine, operation, implementation, config hash, inputs, outputs,
//!   determinism) or lacks environment identifiers.
//! * `G-RESULT.CAPABILITIES_EXCEED_REQUEST`: granted is not a subset of requested.

use std::collections::BTreeSet;

use mex_envelope::{ArtifactHandle, GateDenial, ProvenanceRecord};

use crate::codes::deny;
use crate::gates::integrity::InputVerifier;
use crate::pipeline::Admitted;

/// What a run produced, as the runtime saw it.
#[derive(Debug, Clone, Copy)]
pub struct Produced<'a> {
    /// Output handles.
    pub outputs: &'a [ArtifactHandle],
    /// Evidence handles.
    pub evidence: &'a [ArtifactHandle],
    /// The log artifact, if any.
    pub logs: Option<&'a ArtifactHandle>,
    /// The provenance the runtime assembled.
    pub provenance: &'a ProvenanceRecord,
}

/// Check a finished run against its admission. Empty means the result may be
/// reported as succeeded.
pub fn check_result(
    admitted: &Admitted,
    produced: &Produced<'_>,
    store: &dyn InputVerifier,
) -> Vec<GateDenial> {
    let op = admitted.operation();
    let mut findings = Vec::new();
    let all = produced
        .outputs
        .iter()
        .chain(produced.evidence)
        .chain(produced.logs);
    for handle in all.clone() {
        if let Err(f) = store.verify_input(handle) {
            findings.push(deny(
                "G-RESULT.OUTPUT_UNVERIFIED",
                "result.outputs_in_store",
                format!(
                    "artifact {} does not verify in the store: {}",
                    handle.artifact_id, f.message
                ),
                None,
            ));
        }
    }
    let total: u64 = all.map(|h| h.size_bytes).fold(0u64, u64::saturating_add);
    if total > admitted.budget().output_bytes {
        findings.push(deny(
            "G-RESULT.OUTPUT_BUDGET_EXCEEDED",
            "budget.output_bytes",
            format!(
                "outputs, evidence and logs total {total} bytes, over the output budget of {}",
                admitted.budget().output_bytes
            ),
            None,
        ));
    }
    if let Some(spec) = &op.output_spec {
        if let Some(max) = spec.max_outputs
            && produced.outputs.len() as u64 > max
        {
            findings.push(deny(
                "G-RESULT.TOO_MANY_OUTPUTS",
                "output_spec.max_outputs",
                format!(
                    "{} outputs, but output_spec allows at most {max}",
                    produced.outputs.len()
                ),
                None,
            ));
        }
        let output_bytes: u64 = produced
            .outputs
            .iter()
            .map(|h| h.size_bytes)
            .fold(0u64, u64::saturating_add);
        if let Some(max) = spec.max_output_bytes
            && output_bytes > max
        {
            findings.push(deny(
                "G-RESULT.OUTPUT_SPEC_LIMIT",
                "output_spec.max_output_bytes",
                format!("outputs total {output_bytes} bytes, but output_spec allows at most {max}"),
                None,
            ));
        }
        for handle in produced.outputs {
            let kind_ok = spec.kinds.is_empty() || spec.kinds.contains(&handle.kind);
            let media_ok = spec.media_types.is_empty()
                || handle
                    .media_type
                    .as_ref()
                    .is_some_and(|m| spec.media_types.contains(m));
            if !kind_ok || !media_ok {
                findings.push(deny(
                    "G-RESULT.OUTPUT_TYPE",
                    "output_spec.types",
                    format!(
                        "output {} is a {} artifact of media type {}, which output_spec does not allow (kinds {}, media types {}); ask for what the operation produces (its registry entry lists its outputs), or leave output_spec.kinds and media_types empty",
                        handle.artifact_id,
                        word(&handle.kind),
                        handle
                            .media_type
                            .as_ref()
                            .map_or("(none)", |m| m.as_str()),
                        list(spec.kinds.iter().map(word)),
                        list(spec.media_types.iter().map(|m| m.as_str().to_owned())),
                    ),
                    Some("/output_spec".to_owned()),
                ));
            }
        }
    }
    if op.determinism.requires_evidence() && produced.evidence.is_empty() {
        findings.push(deny(
            "G-RESULT.EVIDENCE_MISSING",
            "contract.determinism.evidence",
            format!(
                "a {} result must carry evidence artifacts; the engine produced none",
                op.determinism
            ),
            None,
        ));
    }
    findings.extend(check_provenance(admitted, produced));
    findings
}

fn check_provenance(admitted: &Admitted, produced: &Produced<'_>) -> Vec<GateDenial> {
    let op = admitted.operation();
    let p = produced.provenance;
    let mut missing = Vec::new();
    if p.engine_id != op.engine_id {
        missing.push("engine_id");
    }
    if p.operation != op.operation {
        missing.push("operation");
    }
    if p.engine_version != *admitted.engine_version() {
        missing.push("engine_version");
    }
    if p.implementation_id != admitted.implementation().id
        || p.implementation_version != admitted.implementation().version
    {
        missing.push("implementation");
    }
    if p.determinism != op.determinism {
        missing.push("determinism");
    }
    if op.config_hash().ok() != Some(p.config_hash) {
        missing.push("config_hash");
    }
    let inputs: Vec<&ArtifactHandle> = op.inputs.iter().filter_map(|i| i.as_artifact()).collect();
    if p.inputs.iter().collect::<Vec<_>>() != inputs {
        missing.push("inputs");
    }
    if p.outputs != produced.outputs {
        missing.push("outputs");
    }
    if p.environment.is_empty() {
        missing.push("environment");
    }
    let mut findings = Vec::new();
    if !missing.is_empty() {
        findings.push(deny(
            "G-RESULT.PROVENANCE_INCOMPLETE",
            "provenance.complete",
            format!(
                "provenance does not describe this run: {} missing or wrong",
                missing.join(", ")
            ),
            None,
        ));
    }
    let requested: BTreeSet<_> = op.capabilities_requested.iter().collect();
    let extra: Vec<String> = p
        .capabilities_granted
        .iter()
        .filter(|c| !requested.contains(c))
        .map(ToString::to_string)
        .collect();
    if !extra.is_empty() {
        findings.push(deny(
            "G-RESULT.CAPABILITIES_EXCEED_REQUEST",
            "provenance.granted_subset_of_requested",
            format!(
                "granted capabilities {} were never requested",
                extra.join(", ")
            ),
            None,
        ));
    }
    findings
}

/// The wire word of a unit enum (`dataset_slice`), for messages.
fn word<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_owned(),
    }
}

/// `[a, b]`, or `any` for an empty list.
fn list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        "any".to_owned()
    } else {
        format!("[{}]", items.join(", "))
    }
}
