//! Every stable denial code of the gates, in one table, and the helpers that
//! build [`GateDenial`]s from them.
//!
//! The gate of a code is the code without its last part: `G-CAP.DUPLICATE`
//! belongs to `G-CAP`, `G-SAFETY.SANDBOX.UNAVAILABLE` to `G-SAFETY.SANDBOX`.

use mex_envelope::{DenialSeverity, ErrorCode, GateDenial, GateId};

/// A gate finding: a [`GateDenial`].
pub type Finding = GateDenial;

/// `(code, meaning)` for every code the gates emit. The README of the crate
/// renders this table; a test checks every code is well-formed.
pub const CODES: &[(&str, &str)] = &[
    (
        "G-SCHEMA.ENVELOPE_INVALID",
        "the document is not a valid poe-1.0 envelope (pointer says where)",
    ),
    (
        "G-SCHEMA.UNSUPPORTED_VERSION",
        "schema_version is another poe-* version",
    ),
    (
        "G-SCHEMA.NOT_AN_ENGINE_INVOCATION",
        "schema_version is not poe-*",
    ),
    (
        "G-SCHEMA.UNKNOWN_ENGINE",
        "engine_id is not declared in the registry",
    ),
    (
        "G-SCHEMA.UNKNOWN_OPERATION",
        "the operation is not declared for the engine",
    ),
    (
        "G-SCHEMA.PARAMS_INVALID",
        "params fail the operation's params schema (one denial per error)",
    ),
    (
        "G-CAP.UNKNOWN_KIND",
        "a capability string does not parse (unknown kind, bad scope, look-alike characters)",
    ),
    (
        "G-CAP.UNKNOWN_PROFILE",
        "the caller's profile is not in the policy",
    ),
    ("G-CAP.DUPLICATE", "a capability is requested twice"),
    (
        "G-CAP.NOT_ALLOWED_BY_OPERATION",
        "the operation does not declare the capability",
    ),
    (
        "G-CAP.NOT_GRANTED",
        "the caller's profile does not grant the capability",
    ),
    (
        "G-CAP.REQUIRED_MISSING",
        "a capability the operation requires is not requested",
    ),
    (
        "G-CAP.CONSENT_MISSING",
        "a sensitive capability has no consent record",
    ),
    (
        "G-CAP.CONSENT_EXPIRED",
        "every covering consent record is expired or not yet valid",
    ),
    (
        "G-CAP.CONSENT_SCOPE_MISMATCH",
        "consent exists for the kind but not for this scope or profile",
    ),
    (
        "G-INTEGRITY.ARTIFACT_MISSING",
        "an input handle is not in the store",
    ),
    (
        "G-INTEGRITY.HASH_MISMATCH",
        "an input's stored bytes do not hash to its content_hash",
    ),
    (
        "G-INTEGRITY.SIZE_MISMATCH",
        "an input's size differs from its size_bytes (even if the hash matches)",
    ),
    (
        "G-INTEGRITY.HANDLE_MISMATCH",
        "the handle's id is stored with a different hash, size or kind",
    ),
    (
        "G-INTEGRITY.PARAMS_TOO_LARGE",
        "canonical params exceed 32768 bytes; pass them as an input artifact",
    ),
    (
        "G-INTEGRITY.UNDECLARED_REFERENCE",
        "a params artifact reference is not among the declared inputs",
    ),
    (
        "G-INTEGRITY.PATH_ESCAPE",
        "a path or URI in params is absolute, has .., or otherwise escapes the store",
    ),
    (
        "G-INTEGRITY.REPLAYED_OP_ID",
        "the op_id was already admitted; use a fresh op_id",
    ),
    ("G-BUDGET.ZERO", "a budget field is zero"),
    (
        "G-BUDGET.ABOVE_MAXIMUM",
        "a budget field exceeds the registry maximum",
    ),
    (
        "G-BUDGET.NO_DEFAULT",
        "wall time or output bytes is absent and the registry has no default for it",
    ),
    (
        "G-BUDGET.OUTPUT_SPEC_EXCEEDS_BUDGET",
        "output_spec limits do not fit the output budget",
    ),
    (
        "G-BUDGET.UNENFORCEABLE",
        "a memory or CPU budget on an implementation that cannot enforce it",
    ),
    (
        "G-BUDGET.UNENFORCEABLE_DEGRADED",
        "as above, admitted as degraded because the policy allows it",
    ),
    (
        "G-PROVENANCE.NO_IMPLEMENTATION",
        "no implementation satisfies engine_version_req (or the engine is declared only)",
    ),
    (
        "G-PROVENANCE.AMBIGUOUS_IMPLEMENTATION",
        "more than one implementation has the selected version",
    ),
    (
        "G-PROVENANCE.INPUT_NOT_HASHED",
        "an input is not a hashed artifact handle",
    ),
    (
        "G-PROVENANCE.EVIDENCE_POLICY_MISSING",
        "the operation needs an evidence policy for its provenance",
    ),
    (
        "G-DET.ABOVE_CEILING",
        "the requested determinism is above the operation's or engine's ceiling",
    ),
    (
        "G-DET.EVIDENCE_POLICY_REQUIRED",
        "D0/D1 without an evidence policy",
    ),
    (
        "G-DET.EVIDENCE_NOT_REQUIRED",
        "D0/D1 with an evidence policy that does not require evidence",
    ),
    (
        "G-DET.SEED_MISSING",
        "the operation declares a seed param, required at D2/D3, and none was given",
    ),
    (
        "G-GATE.NOT_INSTALLED",
        "a recommended engine-specific gate is not installed (degraded)",
    ),
    (
        "G-GATE.NOT_IMPLEMENTED",
        "the registry names an engine-specific gate with no implementation (fail closed)",
    ),
    (
        "G-RESULT.OUTPUT_UNVERIFIED",
        "after the run: an output, evidence or log artifact does not verify in the store",
    ),
    (
        "G-RESULT.OUTPUT_BUDGET_EXCEEDED",
        "after the run: outputs, evidence and logs exceed the output budget",
    ),
    (
        "G-RESULT.TOO_MANY_OUTPUTS",
        "after the run: more outputs than output_spec.max_outputs",
    ),
    (
        "G-RESULT.OUTPUT_SPEC_LIMIT",
        "after the run: output bytes above output_spec.max_output_bytes",
    ),
    (
        "G-RESULT.OUTPUT_TYPE",
        "after the run: an output kind or media type output_spec does not allow",
    ),
    (
        "G-RESULT.EVIDENCE_MISSING",
        "after the run: a D0/D1 result without evidence",
    ),
    (
        "G-RESULT.PROVENANCE_INCOMPLETE",
        "after the run: provenance does not describe the run",
    ),
    (
        "G-RESULT.CAPABILITIES_EXCEED_REQUEST",
        "after the run: granted capabilities are not a subset of requested",
    ),
];

/// Build a deny finding. The gate is the code without its last part.
pub fn deny(
    code: &'static str,
    rule: &str,
    message: impl Into<String>,
    pointer: Option<String>,
) -> Finding {
    finding(code, rule, message, pointer, DenialSeverity::Deny)
}

/// Build a degraded finding.
pub fn degraded(
    code: &'static str,
    rule: &str,
    message: impl Into<String>,
    pointer: Option<String>,
) -> Finding {
    finding(code, rule, message, pointer, DenialSeverity::Degraded)
}

fn finding(
    code: &'static str,
    rule: &str,
    message: impl Into<String>,
    pointer: Option<String>,
    severity: DenialSeverity,
) -> Finding {
    let gate = code.rsplit_once('.').map_or(code, |(g, _)| g);
    GateDenial {
        gate: GateId::from_static(gate),
        code: ErrorCode::from_static(code),
        rule: rule.to_owned(),
        message: message.into(),
        pointer,
        details: None,
        severity,
    }
}

/// The gate a code belongs to, as text.
pub fn gate_of(code: &str) -> &str {
    code.rsplit_once('.').map_or(code, |(g, _)| g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_and_gate_is_well_formed_and_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for (code, meaning) in CODES {
            assert!(code.parse::<ErrorCode>().is_ok(), "{code}");
            assert!(gate_of(code).parse::<GateId>().is_ok(), "{code}");
            assert!(!meaning.is_empty());
            assert!(seen.insert(*code), "duplicate {code}");
        }
    }
}
