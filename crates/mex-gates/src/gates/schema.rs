//! G-SCHEMA: the document against poe-1.0, params against the operation's
//! schema, engine and operation declared.

use mex_envelope::{EnvelopeError, PlannedOperation};

use crate::codes::{Finding, deny};

/// Map a front-door parse error to its finding. A malformed capability is
/// attributed to G-CAP (`G-CAP.UNKNOWN_KIND`), because capability strings are
/// G-CAP's business; everything else is G-SCHEMA's.
pub fn parse_failure(err: &EnvelopeError) -> Finding {
    let pointer = err.pointer().map(str::to_owned);
    let message = err.to_string();
    match err {
        EnvelopeError::UnsupportedVersion { .. } => deny(
            "G-SCHEMA.UNSUPPORTED_VERSION",
            "poe.schema_version",
            message,
            pointer,
        ),
        EnvelopeError::NotAnEngineInvocation { .. } => deny(
            "G-SCHEMA.NOT_AN_ENGINE_INVOCATION",
            "poe.schema_version",
            message,
            pointer,
        ),
        _ if pointer
            .as_deref()
            .is_some_and(|p| p.starts_with("/capabilities_requested/")) =>
        {
            deny("G-CAP.UNKNOWN_KIND", "capability.grammar", message, pointer)
        }
        _ => deny(
            "G-SCHEMA.ENVELOPE_INVALID",
            "poe-1.0.schema",
            message,
            pointer,
        ),
    }
}

/// Check a typed operation: cross-field rules, declared engine and operation
/// (`declared`: the catalog's answer, looked up once per admission, with its
/// findings when the engine or operation is unknown), params schema
/// (`params_errors`: the catalog's answer for a declared operation, see
/// [`crate::facts::Catalog::validate_params`]).
pub fn check_schema(
    op: &PlannedOperation,
    declared: Result<(), &[Finding]>,
    params_errors: &[(String, String)],
) -> Vec<Finding> {
    if let Err(e) = op.validate() {
        return vec![parse_failure(&e)];
    }
    if let Err(findings) = declared {
        return findings.to_vec();
    }
    params_errors
        .iter()
        .map(|(pointer, message)| {
            deny(
                "G-SCHEMA.PARAMS_INVALID",
                "registry.operation.params_schema",
                format!(
                    "params do not match the schema of {}: {message}",
                    op.operation
                ),
                Some(pointer.clone()),
            )
        })
        .collect()
}
