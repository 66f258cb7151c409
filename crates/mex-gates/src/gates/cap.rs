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

/// What G-CAP decided about one requested capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapabilityRuling {
    /// Granted: covered by the operation's declaration and a grant of the
    /// caller's profile (and, when sensitive, a consent record in force).
    Granted {
        /// The capability, as requested.
        capability: Capability,
        /// The rule that granted it.
        rule: &'static str,
        /// The consent record that authorized it, when it is sensitive.
        consent: Option<String>,
    },
    /// Refused; `denial` is the G-CAP finding (its rule and code say why).
    Denied {
        /// The capability, as requested.
        capability: Capability,
        /// The finding, exactly as G-CAP reports it.
        denial: Finding,
    },
}

/// The rule under which a capability is granted.
pub const GRANTED_BY: &str = "policy.profile.grants";

/// Every ruling of G-CAP: one per requested capability (in request order;
/// none when the profile is unknown) and every finding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilityRulings {
    /// One per requested capability, in request order.
    pub rulings: Vec<CapabilityRuling>,
    /// Every finding (the denials of `rulings`, then the operation-level ones).
    pub findings: Vec<Finding>,
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
    let all = rule_capabilities(requested, operation, policy, profile, &|| now);
    if !all.findings.is_empty() {
        return Err(all.findings);
    }
    let consent_refs = all
        .rulings
        .into_iter()
        .filter_map(|r| match r {
            CapabilityRuling::Granted { consent, .. } => consent,
            CapabilityRuling::Denied { .. } => None,
        })
        .collect();
    Ok(CapabilityDecision { consent_refs })
}

/// [`check_capabilities`], keeping the ruling on each requested capability.
/// `clock` is read at most once, and only when a sensitive capability needs
/// a consent record checked.
pub fn rule_capabilities(
    requested: &[Capability],
    operation: &OperationCapabilities,
    policy: &CapabilityPolicy,
    profile: Option<&str>,
    clock: &dyn Fn() -> UtcTimestamp,
) -> CapabilityRulings {
    let now = std::cell::OnceCell::new();
    let now = || *now.get_or_init(clock);
    let mut rulings = Vec::new();
    let Some((profile_name, profile)) = policy.profile(profile) else {
        return CapabilityRulings {
            rulings,
            findings: vec![deny(
                "G-CAP.UNKNOWN_PROFILE",
                "policy.profiles",
                format!(
                    "caller profile {:?} is not in the policy; use one of {:?}",
                    profile.unwrap_or(""),
                    policy.profiles.keys().collect::<Vec<_>>()
                ),
                None,
            )],
        };
    };
    let mut seen = BTreeSet::new();
    for (i, cap) in requested.iter().enumerate() {
        rulings.push(rule_one(
            cap,
            &mut seen,
            operation,
            policy,
            (profile_name, profile),
            &now,
            i,
        ));
    }
    let mut findings: Vec<Finding> = rulings
        .iter()
        .filter_map(|r| match r {
            CapabilityRuling::Denied { denial, .. } => Some(denial.clone()),
            CapabilityRuling::Granted { .. } => None,
        })
        .collect();
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
    CapabilityRulings { rulings, findings }
}

/// The caller's profile: its name and its grants.
type ProfileRef<'a> = (&'a str, &'a crate::policy::Profile);

/// The ruling on one requested capability (`index` is its place in
/// `capabilities_requested`); `seen` holds the capabilities ruled on before it.
fn rule_one<'a>(
    cap: &'a Capability,
    seen: &mut BTreeSet<&'a Capability>,
    operation: &OperationCapabilities,
    policy: &CapabilityPolicy,
    (profile_name, profile): ProfileRef<'_>,
    now: &dyn Fn() -> UtcTimestamp,
    index: usize,
) -> CapabilityRuling {
    let denied = |code, rule, message: String| CapabilityRuling::Denied {
        capability: cap.clone(),
        denial: deny(
            code,
            rule,
            message,
            Some(format!("/capabilities_requested/{index}")),
        ),
    };
    if !seen.insert(cap) {
        return denied(
            "G-CAP.DUPLICATE",
            "capabilities.unique",
            format!("{cap} is requested more than once; request each capability once"),
        );
    }
    let allowed = operation
        .required
        .iter()
        .chain(&operation.optional)
        .any(|p| p.covers(cap));
    if !allowed {
        return denied(
            "G-CAP.NOT_ALLOWED_BY_OPERATION",
            "registry.operation.capabilities",
            format!("{cap} is not among the capabilities this operation may use; remove it"),
        );
    }
    if !profile.grants.iter().any(|g| g.covers(cap)) {
        return denied(
            "G-CAP.NOT_GRANTED",
            "policy.profile.grants",
            format!(
                "profile {profile_name:?} does not grant {cap}; an operator must add a grant to the policy"
            ),
        );
    }
    let granted = |consent| CapabilityRuling::Granted {
        capability: cap.clone(),
        rule: GRANTED_BY,
        consent,
    };
    if !cap.is_sensitive() {
        return granted(None);
    }
    let covering: Vec<_> = policy.consents_for(profile_name, cap).collect();
    if let Some(consent) = covering.iter().find(|c| c.in_force(now())) {
        granted(Some(consent.id.clone()))
    } else if !covering.is_empty() {
        denied(
            "G-CAP.CONSENT_EXPIRED",
            "policy.consent.in_force",
            format!(
                "every consent covering {cap} is expired or not yet valid ({}); renew the consent",
                covering
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    } else if same_kind_consents(policy, cap.kind()).next().is_some() {
        denied(
            "G-CAP.CONSENT_SCOPE_MISMATCH",
            "policy.consent.scope",
            format!(
                "consent exists for {} but not for {cap} (or not for profile {profile_name:?}); request a consented scope or add a consent",
                cap.kind()
            ),
        )
    } else {
        denied(
            "G-CAP.CONSENT_MISSING",
            "policy.consent.required",
            format!(
                "{cap} is sensitive and needs an explicit consent record in the policy; none exists"
            ),
        )
    }
}
