//! Consent by elicitation.
//!
//! When an operation is denied **only** because consent records are missing,
//! expired or for another scope (`G-CAP.CONSENT_MISSING`,
//! `G-CAP.CONSENT_EXPIRED`, `G-CAP.CONSENT_SCOPE_MISMATCH`), and the client
//! declared the elicitation capability, the server asks the human through
//! the client (`elicitation/create`: a server → client request on protocols
//! up to 2025-11-25, an `InputRequiredResult` on 2026-07-28). The question
//! names the operation, each capability and the expiry of the consent it
//! would write ([`ConsentOptions::ttl`](crate::ConsentOptions), one hour by
//! default).
//!
//! Guards, checked against the trusted policy file as it is on disk when the
//! question is asked and again when the answer comes:
//! - every denial of the run is one of the consent codes above (a run
//!   denied for any other reason too is answered as is, nobody is asked);
//! - each capability is sensitive and granted by the caller's profile (the
//!   policy allows it subject to consent); a capability the policy does not
//!   grant is never asked about.
//!
//! On accept, one consent record per capability (id `mcp-consent-<uuid>`,
//! the caller's profile, `granted_at` now, `expires_at` now + TTL) is added
//! to the policy file's `consents`, keeping the rest of the document; the
//! file is replaced atomically (a temporary file in the same directory,
//! fsynced, renamed over it, the directory fsynced). A `capability_allowed`
//! event (rule `policy.consent.elicited`, the record in its payload) goes on
//! the record under the op id, the server's runtime is rebuilt from the home
//! so the new policy is in force, and the call runs again with the same op
//! id (a denied operation does not claim its id). On decline or cancel, a
//! `capability_denied` event (rule `policy.consent.declined`) is recorded,
//! the policy is left alone and the denial is answered with a note.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mex_envelope::{Capability, EngineResult, ResultStatus, UtcTimestamp};
use mex_gates::{CapabilityPolicy, ConsentRecord, GrantPattern};
use mex_recorder::{EventDraft, FlightRecorder};
use mex_runtime::MexRuntime;
use rmcp::model::{ElicitRequestParams, ElicitationSchema};
use serde_json::{Value, json};
use uuid::Uuid;

/// The consent codes that may be answered by asking the human.
pub const CONSENT_CODES: [&str; 3] = [
    "G-CAP.CONSENT_MISSING",
    "G-CAP.CONSENT_EXPIRED",
    "G-CAP.CONSENT_SCOPE_MISMATCH",
];
/// The key of the consent question in an `InputRequiredResult`.
pub const INPUT_KEY: &str = "mex_consent";
/// How long the server waits for the human's answer (server → client
/// request).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// Builds a fresh runtime from the home (after the policy changed).
pub type Rebuild = Arc<dyn Fn() -> Result<MexRuntime, String> + Send + Sync>;

/// How the server grants consent through elicitation.
#[derive(Clone)]
pub struct ConsentOptions {
    /// Rebuilds the runtime so that a new consent record is in force.
    pub rebuild: Rebuild,
    /// How long a consent granted through elicitation lasts.
    pub ttl: Duration,
}

impl ConsentOptions {
    /// Consents lasting one hour.
    pub fn new(rebuild: Rebuild) -> Self {
        Self {
            rebuild,
            ttl: Duration::from_secs(3600),
        }
    }
}

impl std::fmt::Debug for ConsentOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentOptions")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// One question to the human: the capabilities an operation needs consent
/// for, and the denied result to answer when the human says no.
#[derive(Debug, Clone)]
pub struct Ask {
    /// The tool called.
    pub tool: String,
    /// `engine.operation`.
    pub operation: String,
    /// The op id of the denied run (reused by the re-run).
    pub op_id: Uuid,
    /// The capabilities to consent to, deduplicated.
    pub capabilities: Vec<Capability>,
    /// The caller's profile (the policy's default profile).
    pub profile: String,
    /// The denied result.
    pub denied: Box<EngineResult>,
}

fn load(policy_path: &Path) -> Result<(String, CapabilityPolicy), String> {
    let bytes = mex_envelope::json::read_file_at_most(policy_path, mex_gates::MAX_POLICY_BYTES)
        .map_err(|e| format!("cannot read the policy {}: {e}", policy_path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("the policy {} is not UTF-8", policy_path.display()))?;
    let policy = CapabilityPolicy::from_json_str(&text)
        .map_err(|e| format!("the policy {} does not load: {e}", policy_path.display()))?;
    Ok((text, policy))
}

/// Whether `policy` grants `cap` to `profile` subject to consent.
fn consentable(policy: &CapabilityPolicy, profile: &str, cap: &Capability) -> bool {
    cap.is_sensitive()
        && policy
            .profile(Some(profile))
            .is_some_and(|(_, p)| p.grants.iter().any(|g| g.covers(cap)))
}

/// The question to ask for a denied run, if asking is allowed at all.
pub fn ask_for(
    tool: &str,
    operation: String,
    result: &EngineResult,
    requested: &[Capability],
    policy_path: &Path,
) -> Option<Ask> {
    if result.status != ResultStatus::Denied
        || !result.errors.is_empty()
        || result.denials.is_empty()
    {
        return None;
    }
    let mut capabilities: Vec<Capability> = Vec::new();
    for d in &result.denials {
        if d.gate.as_str() != mex_registry::GATE_CAP || !CONSENT_CODES.contains(&d.code.as_str()) {
            return None;
        }
        let index: usize = d
            .pointer
            .as_deref()?
            .strip_prefix("/capabilities_requested/")?
            .parse()
            .ok()?;
        let cap = requested.get(index)?;
        if !capabilities.contains(cap) {
            capabilities.push(cap.clone());
        }
    }
    let (_, policy) = load(policy_path).ok()?;
    let profile = policy.default_profile.clone();
    if !capabilities
        .iter()
        .all(|c| consentable(&policy, &profile, c))
    {
        return None;
    }
    Some(Ask {
        tool: tool.to_owned(),
        operation,
        op_id: result.op_id,
        capabilities,
        profile,
        denied: Box::new(result.clone()),
    })
}

fn list(caps: &[Capability]) -> String {
    caps.iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn human_duration(ttl: Duration) -> String {
    let secs = ttl.as_secs();
    match secs {
        3600 => "1 hour".to_owned(),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

/// The elicitation request for `ask`.
pub fn request(ask: &Ask, policy_path: &Path, ttl: Duration) -> ElicitRequestParams {
    let message = format!(
        "mex asks for your consent. The operation `{}` (tool {}, op {}) needs {}, which the trusted policy {} allows to profile {:?} only with an explicit consent. Accepting writes a consent record for {} into that policy, valid for {} from now, and runs the call again; declining changes nothing and the call stays denied.",
        ask.operation,
        ask.tool,
        ask.op_id,
        list(&ask.capabilities),
        policy_path.display(),
        ask.profile,
        list(&ask.capabilities),
        human_duration(ttl),
    );
    ElicitRequestParams::FormElicitationParams {
        meta: None,
        message,
        requested_schema: ElicitationSchema::new(std::collections::BTreeMap::new()),
    }
}

/// Write one consent record per capability of `ask` into the policy file
/// (atomically), record each, and return the records written.
pub fn grant(
    ask: &Ask,
    policy_path: &Path,
    ttl: Duration,
    granted_by: &str,
    recorder: &dyn FlightRecorder,
) -> Result<Vec<ConsentRecord>, String> {
    let (text, policy) = load(policy_path)?;
    let now = UtcTimestamp::now();
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let expires = UtcTimestamp::from_unix_millis(now.unix_millis().saturating_add(ttl_ms))
        .ok_or_else(|| format!("a consent of {ttl:?} ends past the representable time"))?;
    let mut records = Vec::new();
    for cap in &ask.capabilities {
        if !consentable(&policy, &ask.profile, cap) {
            return Err(format!(
                "the policy {} no longer grants {cap} to profile {:?}; nothing was written",
                policy_path.display(),
                ask.profile
            ));
        }
        if policy
            .consents_for(&ask.profile, cap)
            .any(|c| c.in_force(now))
        {
            continue; // granted meanwhile (another call asked too)
        }
        records.push(ConsentRecord {
            id: format!("mcp-consent-{}", Uuid::new_v4()),
            capability: GrantPattern(cap.clone()),
            granted_by: granted_by.to_owned(),
            granted_at: now,
            expires_at: expires,
            profiles: vec![ask.profile.clone()],
        });
    }
    if !records.is_empty() {
        let mut doc: Value = serde_json::from_str(&text)
            .map_err(|e| format!("the policy {} is not JSON: {e}", policy_path.display()))?;
        let Some(obj) = doc.as_object_mut() else {
            return Err(format!(
                "the policy {} is not a JSON object",
                policy_path.display()
            ));
        };
        let consents = obj.entry("consents").or_insert_with(|| json!([]));
        let Some(items) = consents.as_array_mut() else {
            return Err(format!(
                "`consents` in the policy {} is not an array",
                policy_path.display()
            ));
        };
        for r in &records {
            items.push(serde_json::to_value(r).map_err(|e| e.to_string())?);
        }
        let new_text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())? + "\n";
        CapabilityPolicy::from_json_str(&new_text).map_err(|e| {
            format!("the policy with the new consent would not load ({e}); nothing was written")
        })?;
        write_atomically(policy_path, new_text.as_bytes()).map_err(|e| {
            format!(
                "cannot replace the policy {}: {e}; nothing was written",
                policy_path.display()
            )
        })?;
    }
    for r in &records {
        let draft = EventDraft::capability(
            ask.op_id,
            r.capability.0.to_string(),
            true,
            "policy.consent.elicited",
        )
        .with_message(format!(
            "consent {} granted through MCP elicitation until {}",
            r.id,
            r.expires_at.to_shortest_rfc3339().unwrap_or_default()
        ))
        .with_payload(json!({
            "consent": r,
            "policy": policy_path.display().to_string(),
            "operation": ask.operation,
        }));
        recorder
            .append(draft)
            .map_err(|e| format!("the consent was written but could not be recorded: {e}"))?;
    }
    Ok(records)
}

/// Record that the human declined (or cancelled) the question.
pub fn record_decline(ask: &Ask, action: &str, recorder: &dyn FlightRecorder) -> bool {
    ask.capabilities.iter().all(|cap| {
        let draft =
            EventDraft::capability(ask.op_id, cap.to_string(), false, "policy.consent.declined")
                .with_message(format!(
                    "the human answered {action} to the consent question through the MCP client"
                ));
        recorder.append(draft).is_ok()
    })
}

/// Replace `path` with `bytes`: a temporary file in the same directory,
/// written and fsynced, renamed over `path`, then the directory fsynced.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "policy.json".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", Uuid::new_v4().simple()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
