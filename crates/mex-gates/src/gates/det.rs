//! G-DET: determinism ceiling and evidence policy.
//!
//! * `G-DET.ABOVE_CEILING`: the requested level is above the operation's level
//!   or the engine's ceiling (the lower of the two binds).
//! * `G-DET.EVIDENCE_POLICY_REQUIRED`: D0/D1 without an evidence policy.
//! * `G-DET.EVIDENCE_NOT_REQUIRED`: D0/D1 whose policy has `required: false`.
//! * `G-DET.SEED_MISSING`: the registry requires a `seed` from some level on
//!   (typically D2), the requested level is at or above it, and params carry
//!   no integer `seed`.

use mex_envelope::{DeterminismLevel, PlannedOperation};

use crate::codes::{Finding, deny};

/// What the registry says about determinism for one operation.
#[derive(Debug, Clone)]
pub struct DeterminismFacts {
    /// The engine's ceiling.
    pub engine_ceiling: DeterminismLevel,
    /// The operation's own level (at most the engine's ceiling).
    pub operation_level: DeterminismLevel,
    /// The level from which params must carry an integer `seed`.
    pub seed_required_at: Option<DeterminismLevel>,
}

/// Check one operation.
pub fn check_determinism(op: &PlannedOperation, facts: &DeterminismFacts) -> Vec<Finding> {
    let mut findings = Vec::new();
    let ceiling = facts.engine_ceiling.min(facts.operation_level);
    if op.determinism > ceiling {
        findings.push(deny(
            "G-DET.ABOVE_CEILING",
            "registry.determinism_ceiling",
            format!(
                "{} requested, but {} allows at most {ceiling} (engine ceiling {}, operation level {}); request {ceiling} or lower",
                op.determinism, op.operation, facts.engine_ceiling, facts.operation_level
            ),
            Some("/determinism".into()),
        ));
    }
    if op.determinism.requires_evidence() {
        match &op.evidence_policy {
            None => findings.push(deny(
                "G-DET.EVIDENCE_POLICY_REQUIRED",
                "contract.determinism.evidence",
                format!(
                    "{} operations must carry an evidence_policy with required: true",
                    op.determinism
                ),
                Some("/evidence_policy".into()),
            )),
            Some(policy) if !policy.required => findings.push(deny(
                "G-DET.EVIDENCE_NOT_REQUIRED",
                "contract.determinism.evidence",
                format!(
                    "{} operations must require evidence; set evidence_policy.required to true",
                    op.determinism
                ),
                Some("/evidence_policy/required".into()),
            )),
            Some(_) => {}
        }
    }
    if let Some(at) = facts.seed_required_at
        && op.determinism >= at
        && !op
            .params
            .get("seed")
            .is_some_and(|v| v.is_i64() || v.is_u64())
    {
        findings.push(deny(
            "G-DET.SEED_MISSING",
            "registry.operation.seed_param",
            format!(
                "{} at {} needs an integer params.seed so the result is reproducible",
                op.operation, op.determinism
            ),
            Some("/params/seed".into()),
        ));
    }
    findings
}
