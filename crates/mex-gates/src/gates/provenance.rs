//! G-PROVENANCE: what the provenance record will need is present before the
//! run: exactly one implementation, hashed inputs, an evidence policy where
//! required.

use mex_envelope::{Input, PlannedOperation};

use crate::codes::{Finding, deny};
use crate::facts::Catalog;

/// Check one operation.
pub fn check_provenance(op: &PlannedOperation, catalog: &dyn Catalog) -> Vec<Finding> {
    let mut findings = Vec::new();
    let entity_ok = catalog
        .operation_facts(op)
        .is_ok_and(|f| f.entity_inputs_allowed);
    if let Err(finding) = catalog.resolve_implementation(op) {
        findings.push(finding);
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
