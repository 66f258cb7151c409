//! G-DET: determinism ceiling and evidence policy.
//!
//! * `G-DET.ABOVE_CEILING`: the requested level is above the operation's level
//!   or the engine's ceiling (the lower of the two binds).
//! * `G-DET.EVIDENCE_POLICY_REQUIRED`: D0/D1 without an evidence policy.
//! * `G-DET.EVIDENCE_NOT_REQUIRED`: D0/D1 whose policy has `required: false`.
//! * `G-DET.SEED_MISSING`: the operation declares a seed param and the
//!   requested level is D2 or D3, but params carry no integer seed.

use mex_envelope::{DeterminismLevel, PlannedOperation};

use crate::codes::{Finding, deny};

/// What the registry says about determinism for one operation.
#[derive(Debug, Clone)]
pub struct DeterminismFacts {
    /// The engine's ceiling.
    pub engine_ceiling: DeterminismLevel,
    /// The operation's own level (at most the engine's ceiling).
    pub operation_level: DeterminismLevel,
    /// Name of a params field that must hold an integer seed at D2/D3.
    pub seed_param: Option<String>,
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
    if let Some(seed) = &facts.seed_param
        && op.determinism >= DeterminismLevel::D2
        && !op
            .params
            .get(seed)
            .is_some_and(|v| v.is_i64() || v.is_u64())
    {
        findings.push(deny(
            "G-DET.SEED_MISSING",
            "registry.operation.seed_param",
            format!(
                "{} at {} needs an integer params.{seed} so the result is reproducible",
                op.operation, op.determinism
            ),
            Some(format!("/params/{seed}")),
        ));
    }
    findings
}
