//! G-PROVENANCE: what the provenance record will need is present before the
//! run: exactly one implementation, hashed inputs, an evidence policy where
//! required.

use mex_envelope::{Input, PlannedOperation};

use crate::codes::{Finding, deny};

/// Check one declared operation over the admission's facts: whether its
/// inputs may be entity references, and the implementation it resolved to
/// (or the finding saying why none did).
pub fn check_provenance(
    op: &PlannedOperation,
    entity_inputs_allowed: bool,
    implementation: Result<(), &Finding>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let entity_ok = entity_inputs_allowed;
    if let Err(finding) = implementation {
        findings.push(finding.clone());
    }
    for (i, input) in op.inputs.iter().enumerate() {
        if let Input::Entity(entity) = input
            && !entity_ok
        {
            findings.push(deny(
                "G-PROVENANCE.INPUT_NOT_HASHED",
                "provenance.inputs_hashed",
                format!(
                    "input {i} is an entity reference ({} {:?}), but {} takes only hashed artifacts; snapshot it into an artifact and pass the handle",
                    entity.entity_type, entity.entity_id, op.operation
                ),
                Some(format!("/inputs/{i}")),
            ));
        }
    }
    if op.determinism.requires_evidence() && op.evidence_policy.is_none() {
        findings.push(deny(
            "G-PROVENANCE.EVIDENCE_POLICY_MISSING",
            "provenance.evidence_policy",
            format!(
                "a {} result's provenance rests on evidence; add an evidence_policy",
                op.determinism
            ),
            Some("/evidence_policy".into()),
        ));
    }
    findings
}
