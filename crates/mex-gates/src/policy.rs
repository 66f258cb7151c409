//! The capability policy: the trusted side of every authorization decision.
//!
//! A policy file (`policy.json`, schema `schemas/capability-policy.schema.json`)
//! holds **profiles**, each granting capability *patterns*, and **consent
//! records** for the sensitive kinds (`device.*`, `net.http`, `secrets.use:*`).
//! It is loaded by the embedder or the CLI, never from an envelope: nothing in
//! a PlannedOperation or its params can add a grant or a consent.
//!
//! ## Scope matching
//!
//! A grant pattern is written like a capability. Kinds must be equal. Then:
//!
//! | pattern scope | covers a requested scope `s` when |
//! |---|---|
//! | (none, bare kind) | the request is the same bare kind |
//! | `*` | always (any scope of that kind, including a requested `*`) |
//! | `p/*` | `s` starts with `p/` and has at least one more character |
//! | anything else | `s` is byte-for-byte equal |
//!
//! `*` anywhere else in a pattern is literal and matches only itself. A
//! requested scope containing `*` is therefore only covered by `*`, by an equal
//! pattern, or by a `p/*` pattern that prefixes it. Capabilities are ASCII by
//! construction (mex-envelope), so no Unicode normalization is involved.
//!
//! Consent records use the same matching, and additionally must be in force:
//! `granted_at <= now < expires_at`.

use std::collections::BTreeMap;

use mex_envelope::{Capability, CapabilityKind, UtcTimestamp};
use serde::{Deserialize, Serialize};

use crate::error::GatesError;

/// The policy format version this crate reads.
pub const POLICY_VERSION: &str = "mex-policy-1";

/// The largest policy file mex reads (a policy is a small JSON file; a path
/// that names something larger is a mistake or an attack).
pub const MAX_POLICY_BYTES: u64 = 1 << 20;

/// A grant pattern: a capability whose scope may be `*` or end in `/*`.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct GrantPattern(pub Capability);

impl GrantPattern {
    /// Whether this pattern covers `requested` under the rules in the module doc.
    pub fn covers(&self, requested: &Capability) -> bool {
        let pattern = &self.0;
        if pattern.kind() != requested.kind() {
            return false;
        }
        match (pattern.scope(), requested.scope()) {
            (None, None) => true,
            (Some("*"), Some(_)) => true,
            (Some(p), Some(s)) => match p.strip_suffix("/*") {
                Some(prefix) => {
                    s.len() > prefix.len() + 1
                        && s.starts_with(prefix)
                        && s.as_bytes()[prefix.len()] == b'/'
                }
                None => p == s,
            },
            _ => false,
        }
    }
}

/// A named set of grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// What this profile is for.
    #[serde(default)]
    pub description: String,
    /// Capability patterns this profile grants.
    pub grants: Vec<GrantPattern>,
}

/// An explicit, time-bounded approval of one sensitive capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentRecord {
    /// Stable id, recorded in provenance as a consent reference.
    pub id: String,
    /// The capability pattern consented to (e.g. `net.http`, `secrets.use:key-1`).
    pub capability: GrantPattern,
    /// Who approved it.
    pub granted_by: String,
    /// When it starts.
    pub granted_at: UtcTimestamp,
    /// When it ends (exclusive).
    pub expires_at: UtcTimestamp,
    /// Profiles it applies to; empty means every profile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
}

impl ConsentRecord {
    /// Whether the record is in force at `now`.
    pub fn in_force(&self, now: UtcTimestamp) -> bool {
        self.granted_at <= now && now < self.expires_at
    }
}

/// Trusted knobs that allow explicitly degraded operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DegradedModes {
    /// Admit memory/CPU budgets on in-process engines (which cannot enforce
    /// them) as *degraded* instead of denying them.
    #[serde(default)]
    pub unenforceable_budgets: bool,
    /// Run sandboxed engines without full OS confinement (recorded as degraded).
    #[serde(default)]
    pub sandbox_without_landlock: bool,
}

/// The policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "mex capability policy")]
pub struct CapabilityPolicy {
    /// Always `mex-policy-1`.
    pub policy_version: String,
    /// Profile used when the caller names none.
    pub default_profile: String,
    /// Profiles by name.
    pub profiles: BTreeMap<String, Profile>,
    /// Consent records for sensitive capabilities.
    #[serde(default)]
    pub consents: Vec<ConsentRecord>,
    /// Explicitly allowed degraded modes; all off by default.
    #[serde(default)]
    pub degraded: DegradedModes,
}

impl CapabilityPolicy {
    /// Parse and check a policy document. It is read by the strict JSON
    /// reader (`mex_envelope::json`): a duplicate member name, a number
    /// beyond ±(2^53-1) or a byte-order mark is refused with its pointer,
    /// line and column.
    pub fn from_json_str(text: &str) -> Result<Self, GatesError> {
        let value = mex_envelope::json::from_str(text).map_err(|e| GatesError::Policy {
            message: e.to_string(),
        })?;
        let policy: Self =
            serde_path_to_error::deserialize(value).map_err(|e| GatesError::Policy {
                message: format!("at {}: {}", display_path(e.path()), e.inner()),
            })?;
        policy.check()?;
        Ok(policy)
    }

    /// A policy granting only non-sensitive capabilities, with no consents.
    /// `fs.read:workspace` is what engine.context asks for: in mex it reads
    /// only the bundle handed to it as an input, never the host's files.
    pub fn default_non_sensitive() -> Self {
        let grants = [
            "fs.read:inputs",
            "fs.read:workspace",
            "fs.write:artifacts",
            "proc.exec:bash",
            "proc.exec:python3",
        ]
        .iter()
        .filter_map(|c| c.parse().ok())
        .map(GrantPattern)
        .collect();
        let mut profiles = BTreeMap::new();
        profiles.insert(
            "default".to_owned(),
            Profile {
                description: "non-sensitive capabilities only".into(),
                grants,
            },
        );
        Self {
            policy_version: POLICY_VERSION.into(),
            default_profile: "default".into(),
            profiles,
            consents: Vec::new(),
            degraded: DegradedModes::default(),
        }
    }

    fn check(&self) -> Result<(), GatesError> {
        if self.policy_version != POLICY_VERSION {
            return Err(GatesError::Policy {
                message: format!(
                    "policy_version {:?} is not supported; expected {POLICY_VERSION:?}",
                    self.policy_version
                ),
            });
        }
        if !self.profiles.contains_key(&self.default_profile) {
            return Err(GatesError::Policy {
                message: format!(
                    "default_profile {:?} is not among the profiles {:?}",
                    self.default_profile,
                    self.profiles.keys().collect::<Vec<_>>()
                ),
            });
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, consent) in self.consents.iter().enumerate() {
            if !ids.insert(consent.id.as_str()) {
                return Err(GatesError::Policy {
                    message: format!("/consents/{i}: duplicate consent id {:?}", consent.id),
                });
            }
            if !consent.capability.0.is_sensitive() {
                return Err(GatesError::Policy {
                    message: format!(
                        "/consents/{i}: {} is not a sensitive capability; consent records are for device.*, net.http and secrets.use:*",
                        consent.capability.0
                    ),
                });
            }
            if consent.expires_at <= consent.granted_at {
                return Err(GatesError::Policy {
                    message: format!("/consents/{i}: expires_at must be after granted_at"),
                });
            }
            if let Some(p) = consent
                .profiles
                .iter()
                .find(|p| !self.profiles.contains_key(*p))
            {
                return Err(GatesError::Policy {
                    message: format!("/consents/{i}: unknown profile {p:?}"),
                });
            }
        }
        Ok(())
    }

    /// The profile named `name`, or the default profile when `None`.
    pub fn profile(&self, name: Option<&str>) -> Option<(&str, &Profile)> {
        let name = name.unwrap_or(&self.default_profile);
        self.profiles
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
    }

    /// Consent records that cover `requested` for `profile`, in force or not.
    pub fn consents_for<'a>(
        &'a self,
        profile: &'a str,
        requested: &'a Capability,
    ) -> impl Iterator<Item = &'a ConsentRecord> + 'a {
        self.consents.iter().filter(move |c| {
            c.capability.covers(requested)
                && (c.profiles.is_empty() || c.profiles.iter().any(|p| p == profile))
        })
    }
}

/// Consent is about the kind; `secrets.use` consent for another key id, or a
/// device consent, is "for another scope" when the kind matches but the
/// pattern does not cover the request.
pub(crate) fn same_kind_consents<'a>(
    policy: &'a CapabilityPolicy,
    kind: CapabilityKind,
) -> impl Iterator<Item = &'a ConsentRecord> + 'a {
    policy
        .consents
        .iter()
        .filter(move |c| c.capability.0.kind() == kind)
}

/// The JSON Schema of the policy file (committed as
/// `schemas/capability-policy.schema.json`).
pub fn schema() -> schemars::Schema {
    schemars::schema_for!(CapabilityPolicy)
}

fn display_path(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    if text == "." {
        "the document root".into()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(s: &str) -> Capability {
        s.parse().unwrap()
    }
    fn pat(s: &str) -> GrantPattern {
        GrantPattern(cap(s))
    }

    #[test]
    fn scope_matching_rules() {
        assert!(pat("net.http").covers(&cap("net.http")));
        assert!(!pat("net.http").covers(&cap("gpu.compute")));
        assert!(pat("fs.read:*").covers(&cap("fs.read:anything/at/all")));
        assert!(pat("fs.read:*").covers(&cap("fs.read:*")));
        assert!(!pat("fs.read:*").covers(&cap("fs.write:artifacts")));
        assert!(pat("fs.read:mail/*").covers(&cap("fs.read:mail/inbox")));
        assert!(pat("fs.read:mail/*").covers(&cap("fs.read:mail/inbox/2026")));
        assert!(!pat("fs.read:mail/*").covers(&cap("fs.read:mail")));
        assert!(!pat("fs.read:mail/*").covers(&cap("fs.read:mailbox/x")));
        assert!(!pat("fs.read:mail/*").covers(&cap("fs.read:*")));
        assert!(pat("fs.read:inputs").covers(&cap("fs.read:inputs")));
        assert!(!pat("fs.read:inputs").covers(&cap("fs.read:inputs2")));
        assert!(!pat("fs.read:inputs").covers(&cap("fs.read:*")));
        assert!(
            !pat("fs.read:in*").covers(&cap("fs.read:inputs")),
            "a non-trailing * is literal"
        );
    }

    #[test]
    fn default_policy_grants_nothing_sensitive() {
        let p = CapabilityPolicy::default_non_sensitive();
        let (_, profile) = p.profile(None).unwrap();
        assert!(profile.grants.iter().all(|g| !g.0.is_sensitive()));
        assert!(p.consents.is_empty());
    }

    #[test]
    fn policy_checks() {
        let bad = r#"{"policy_version":"mex-policy-1","default_profile":"x","profiles":{}}"#;
        assert!(CapabilityPolicy::from_json_str(bad).is_err());
        let consent_for_non_sensitive = r#"{"policy_version":"mex-policy-1","default_profile":"d","profiles":{"d":{"grants":[]}},
          "consents":[{"id":"c1","capability":"fs.read:*","granted_by":"a","granted_at":"2026-01-01T00:00:00Z","expires_at":"2027-01-01T00:00:00Z"}]}"#;
        assert!(CapabilityPolicy::from_json_str(consent_for_non_sensitive).is_err());
        let unknown = r#"{"policy_version":"mex-policy-1","default_profile":"d","profiles":{"d":{"grants":["fs.read:*"],"extra":1}}}"#;
        let err = CapabilityPolicy::from_json_str(unknown)
            .unwrap_err()
            .to_string();
        assert!(err.contains("profiles.d"), "{err}");
    }

    #[test]
    fn duplicate_members_anywhere_in_the_policy_are_refused_with_pointer_and_line() {
        // A second "grants" would otherwise silently replace the first.
        let text = "{\"policy_version\":\"mex-policy-1\",\"default_profile\":\"d\",\"profiles\":{\"d\":{\n\"grants\":[],\n\"grants\":[\"net.http\"]}}}";
        let err = CapabilityPolicy::from_json_str(text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate key \"grants\""), "{err}");
        assert!(err.contains("/profiles/d/grants"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        let text = r#"{"policy_version":"mex-policy-1","default_profile":"d","default_profile":"e","profiles":{"d":{"grants":[]}}}"#;
        let err = CapabilityPolicy::from_json_str(text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/default_profile"), "{err}");
    }
}
