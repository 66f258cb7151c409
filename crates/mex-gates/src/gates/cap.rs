//! G-CAP: capabilities and consent, default deny.
//!
//! Rules, in order, each producing its own code (all denials are collected):
//!
//! 1. `G-CAP.DUPLICATE`: a capability is requested twice.
//! 2. `G-CAP.NOT_ALLOWED_BY_OPERATION`: the request is not covered by the
//!    operation's required or optional capabilities in the registry.
//! 3. `G-CAP.NOT_GRANTED`: the caller's profile grants no pattern covering it.
//! 4. `G-CAP.REQUIRED_MISSING`: a capability the operation requires is not
//!    requested.
//! 5. Sensitive kinds (`device.*`, `net.http`, `secrets.use:*`) need a consent
//!    record that covers the request, applies to the profile and is in force:
//!    `G-CAP.CONSENT_MISSING` (none of that kind), `G-CAP.CONSENT_SCOPE_MISMATCH`
//!    (only for another scope), `G-CAP.CONSENT_EXPIRED` (only expired or not
//!    yet valid ones).
//!
//! Unknown kinds never reach this function: the envelope parser refuses them,
//! and the pipeline attributes such a parse failure to G-CAP as
//! `G-CAP.UNKNOWN_KIND`.

use std::collections::BTreeSet;

use mex_envelope::{Capability, UtcTimestamp};

use crate::codes::{Finding, deny};
use crate::policy::{CapabilityPolicy, GrantPattern, same_kind_consents};

/// What the registry says an operation may and must request.
#[derive(Debug, Clone, Default)]
pub struct OperationCapabilities {
    /// Capabilities the operation needs; each must be requested.
    pub required: Vec<GrantPattern>,
    /// Capabilities the operation may use.
    pub optional: Vec<GrantPattern>,
}

/// The outcome of the capability check when it admits: consent ids used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilityDecision {
    /// Consent records that authorized sensitive capabilities.
    pub consent_refs: Vec<String>,
}

/// Check `requested` against the operation's declaration, the profile's
/// grants and the consent records.
pub fn check_capabilities(
    requested: &[Capability],
    operation: &OperationCapabilities,
    policy: &CapabilityPolicy,
    profile: Option<&str>,
    now: UtcTimestamp,
) -> Result<CapabilityDecision, Vec<Finding>> {
    let mut findings = Vec::new();
    let Some((profile_name, profile)) = policy.profile(profile) else {
        return Err(vec![deny(
            "G-CAP.UNKNOWN_PROFILE",
            "policy.profiles",
            format!(
                "caller profile {:?} is not in the policy; use one of {:?}",
                profile.unwrap_or(""),
                policy.profiles.keys().collect::<Vec<_>>()
            ),
            None,
        )]);
    };
    let mut seen = BTreeSet::new();
    let mut consent_refs = Vec::new();
    for (i, cap) in requested.iter().enumerate() {
        let pointer = Some(format!("/capabilities_requested/{i}"));
        if !seen.insert(cap) {
            findings.push(deny(
                "G-CAP.DUPLICATE",
                "capabilities.unique",
                format!("{cap} is requested more than once; request each capability once"),
                pointer,
            ));
            continue;
        }
        let allowed = operation
            .required
            .iter()
            .chain(&operation.optional)
            .any(|p| p.covers(cap));
        if !allowed {
            findings.push(deny(
                "G-CAP.NOT_ALLOWED_BY_OPERATION",
                "registry.operation.capabilities",
                format!("{cap} is not among the capabilities this operation may use; remove it"),
                pointer.clone(),
            ));
            continue;
        }
        if !profile.grants.iter().any(|g| g.covers(cap)) {
            findings.push(deny(
                "G-CAP.NOT_GRANTED",
                "policy.profile.grants",
                format!("profile {profile_name:?} does not grant {cap}; an operator must add a grant to the policy"),
                pointer.clone(),
            ));
            continue;
        }
        if cap.is_sensitive() {
            let covering: Vec<_> = policy.consents_for(profile_name, cap).collect();
            if let Some(consent) = covering.iter().find(|c| c.in_force(now)) {
                consent_refs.push(consent.id.clone());
            } else if !covering.is_empty() {
                findings.push(deny(
                    "G-CAP.CONSENT_EXPIRED",
                    "policy.consent.in_force",
                    format!("every consent covering {cap} is expired or not yet valid ({}); renew the consent", covering.iter().map(|c| c.id.as_str()).collect::<Vec<_>>().join(", ")),
                    pointer,
                ));
            } else if same_kind_consents(policy, cap.kind()).next().is_some() {
                findings.push(deny(
                    "G-CAP.CONSENT_SCOPE_MISMATCH",
                    "policy.consent.scope",
                    format!("consent exists for {} but not for {cap} (or not for profile {profile_name:?}); request a consented scope or add a consent", cap.kind()),
                    pointer,
                ));
            } else {
                findings.push(deny(
                    "G-CAP.CONSENT_MISSING",
                    "policy.consent.required",
                    format!("{cap} is sensitive and needs an explicit consent record in the policy; none exists"),
                    pointer,
                ));
            }
        }
    }
    for req in &operation.required {
        if !requested.iter().any(|c| req.covers(c)) {
            findings.push(deny(
                "G-CAP.REQUIRED_MISSING",
                "registry.operation.required_capabilities",
                format!(
                    "this operation requires {}; add it to capabilities_requested",
                    req.0
                ),
                Some("/capabilities_requested".into()),
            ));
        }
    }
    if findings.is_empty() {
        Ok(CapabilityDecision { consent_refs })
    } else {
        Err(findings)
    }
}
