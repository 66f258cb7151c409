//! `G-POLICY.SECRETS`: key use needs a policy approval, key by key.
//!
//! The policy approves a key by granting `secrets.use:<key_id>` with a
//! consent record (G-CAP checks the grant and the consent). This gate makes
//! the request match the use, so no key travels to an engine that does not
//! name it:
//!
//! * `G-POLICY.SECRETS.KEY_NOT_REQUESTED`: `params.key_id` names a key whose
//!   `secrets.use:<key_id>` is not in `capabilities_requested`.
//! * `G-POLICY.SECRETS.UNUSED_KEY`: a `secrets.use:<id>` is requested that
//!   `params.key_id` does not name (operations without a `key_id` param,
//!   such as `sovereign.sync_push` whose key is named by its remote profile,
//!   may request keys).
//! * `G-POLICY.SECRETS.WILDCARD`: a requested `secrets.use` scope holds `*`;
//!   keys are delivered one by one, by exact id.
//!
//! It decides on the operation only; whether the key exists in the host
//! store is the engine's finding (`SOV_KEY_DENIED`), so a denial never says
//! which keys a host holds.

use mex_envelope::{CapabilityKind, GateDenial, GateId, PlannedOperation};
use mex_gates::Gate;
use mex_gates::codes::deny;

/// Every code this gate emits, with its rule.
pub const GATE_CODES: &[(&str, &str)] = &[
    (
        "G-POLICY.SECRETS.KEY_NOT_REQUESTED",
        "params.key_id names a key that capabilities_requested does not request",
    ),
    (
        "G-POLICY.SECRETS.UNUSED_KEY",
        "a key is requested that params.key_id does not name",
    ),
    (
        "G-POLICY.SECRETS.WILDCARD",
        "a secrets.use scope with a wildcard; keys are requested by exact id",
    ),
];

/// The `G-POLICY.SECRETS` gate.
pub struct SecretsGate {
    id: GateId,
}

impl SecretsGate {
    /// The gate.
    pub fn new() -> Self {
        Self {
            id: GateId::from_static("G-POLICY.SECRETS"),
        }
    }
}

impl Default for SecretsGate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate for SecretsGate {
    fn id(&self) -> &GateId {
        &self.id
    }

    fn check_all(&self, op: &PlannedOperation) -> Vec<GateDenial> {
        let mut findings = Vec::new();
        let key_id = op.params.get("key_id").and_then(|v| v.as_str());
        let mut named_requested = false;
        for (i, cap) in op.capabilities_requested.iter().enumerate() {
            let (CapabilityKind::SecretsUse, Some(scope)) = (cap.kind(), cap.scope()) else {
                continue;
            };
            let pointer = Some(format!("/capabilities_requested/{i}"));
            if scope.contains('*') {
                findings.push(deny(
                    "G-POLICY.SECRETS.WILDCARD",
                    "policy.secrets.exact_key",
                    format!("{cap} requests keys by pattern; request secrets.use:<key_id> for the one key the operation uses"),
                    pointer,
                ));
            } else if Some(scope) == key_id {
                named_requested = true;
            } else if key_id.is_some() {
                findings.push(deny(
                    "G-POLICY.SECRETS.UNUSED_KEY",
                    "policy.secrets.least_privilege",
                    format!(
                        "{cap} is requested but params.key_id names {:?}; request only the key the operation uses",
                        key_id.unwrap_or_default()
                    ),
                    pointer,
                ));
            }
        }
        if let Some(key_id) = key_id
            && !named_requested
        {
            findings.push(deny(
                "G-POLICY.SECRETS.KEY_NOT_REQUESTED",
                "policy.secrets.key_requested",
                format!(
                    "params.key_id names {key_id:?} but secrets.use:{key_id} is not requested; add it to capabilities_requested (an operator grants it with a consent record)"
                ),
                Some("/params/key_id".into()),
            ));
        }
        findings
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    fn codes(caps: &[&str], params: serde_json::Value) -> Vec<String> {
        let doc = serde_json::json!({
            "schema_version": "poe-1.0",
            "op_id": "5c0c4ef0-0000-4000-8000-000000000001",
            "engine_id": "engine.sovereign",
            "engine_version_req": "^0.1",
            "operation": "sovereign.sign",
            "inputs": [],
            "params": params,
            "capabilities_requested": caps,
            "budget": {"wall_time_ms": 1000},
            "determinism": "D2"
        });
        let op = PlannedOperation::from_json_slice(doc.to_string().as_bytes()).unwrap();
        SecretsGate::new()
            .check_all(&op)
            .into_iter()
            .map(|d| d.code.to_string())
            .collect()
    }

    #[test]
    fn the_key_named_is_the_key_requested() {
        let k = serde_json::json!({"key_id": "k1"});
        assert!(codes(&["fs.write:artifacts", "secrets.use:k1"], k.clone()).is_empty());
        assert_eq!(
            codes(&["fs.write:artifacts"], k.clone()),
            ["G-POLICY.SECRETS.KEY_NOT_REQUESTED"]
        );
        assert_eq!(
            codes(&["secrets.use:k1", "secrets.use:k2"], k.clone()),
            ["G-POLICY.SECRETS.UNUSED_KEY"]
        );
        assert_eq!(
            codes(&["secrets.use:*"], k),
            [
                "G-POLICY.SECRETS.WILDCARD",
                "G-POLICY.SECRETS.KEY_NOT_REQUESTED"
            ]
        );
        // No key_id param (sync_push): keys may be requested, by exact id.
        assert!(codes(&["secrets.use:k9"], serde_json::json!({})).is_empty());
    }
}
