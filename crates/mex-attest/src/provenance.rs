//! in-toto Statement v1 with a SLSA Provenance v1 predicate for one
//! operation, and its DSSE envelope.
//!
//! The facts come from what mex recorded ([`ProvenanceFacts`]): the
//! EngineResult and its provenance when the caller has it (`mex run
//! --attest`), or the Flight Recorder's events of the operation plus the
//! sidecar manifests of the artifacts it produced (`mex attest OP_ID`). The
//! meaning of every field, and of [`BUILD_TYPE`], is written down in
//! `docs/attestation.md`.

use std::collections::BTreeMap;

use mex_envelope::{ArtifactHandle, ArtifactManifest, EngineResult, Sha256Digest};
use mex_recorder::{Event, EventKind};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::AttestError;
use crate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::keys::HomeKey;

/// in-toto Statement v1 type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// SLSA Provenance v1 predicate type.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The build type: one MEX operation admitted and run by the mex runtime
/// (defined in `docs/attestation.md`).
pub const BUILD_TYPE: &str = "mex://build-type/operation/v1";

/// The engine implementation that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImplementationRef {
    /// Engine id, e.g. `engine.physics`.
    pub engine_id: String,
    /// Engine interface version from the registry.
    pub engine_version: String,
    /// Implementation id.
    pub implementation_id: String,
    /// Implementation version.
    pub implementation_version: String,
    /// SHA-256 of the implementation's code, when the runtime knows it
    /// (becomes the dependency's `digest`).
    pub code_digest: Option<Sha256Digest>,
}

/// Everything a provenance statement says about one operation.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvenanceFacts {
    /// The operation (the invocation id).
    pub op_id: Uuid,
    /// Operation name, e.g. `physics.evaluate_formula`.
    pub operation: String,
    /// Result status (`succeeded`, ...).
    pub status: String,
    /// The engine implementation.
    pub implementation: ImplementationRef,
    /// Output artifacts: the subjects.
    pub outputs: Vec<ArtifactHandle>,
    /// Evidence artifacts: byproducts.
    pub evidence: Vec<ArtifactHandle>,
    /// Input artifacts (id may be unknown when only the digest was recorded).
    pub inputs: Vec<InputRef>,
    /// RFC 8785 digest of the params.
    pub config_hash: Option<Sha256Digest>,
    /// The params themselves, when the operation document is at hand.
    pub params: Option<Value>,
    /// Determinism level admitted (`D0`..`D3`).
    pub determinism: Option<String>,
    /// The resolved budget, when known.
    pub budget: Option<Value>,
    /// Capabilities granted.
    pub capabilities_granted: Vec<String>,
    /// Environment facts (runtime version, OS, sandbox).
    pub environment: BTreeMap<String, String>,
    /// Whether the result was served from the D3 cache.
    pub served_from_cache: bool,
    /// When the runtime received the operation.
    pub started_on: String,
    /// When it finished.
    pub finished_on: String,
    /// The Flight Recorder events of the operation, in seq order.
    pub events: Vec<Event>,
}

/// One input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRef {
    /// The artifact id, when known.
    pub artifact_id: Option<Uuid>,
    /// Its content hash.
    pub content_hash: Sha256Digest,
    /// Its media type, when known.
    pub media_type: Option<String>,
}

impl ProvenanceFacts {
    /// From the EngineResult the runtime returned, and the operation's
    /// events. `params` and `budget` come from the operation document.
    pub fn from_result(
        result: &EngineResult,
        events: Vec<Event>,
        params: Option<Value>,
        budget: Option<Value>,
    ) -> Result<Self, AttestError> {
        let p = result.provenance.as_ref().ok_or_else(|| {
            AttestError::Unattestable(format!(
                "operation {} has no provenance (status {}): nothing ran, so there is nothing to attest",
                result.op_id,
                result.status.as_str()
            ))
        })?;
        Ok(Self {
            op_id: result.op_id,
            operation: p.operation.to_string(),
            status: result.status.as_str().to_owned(),
            implementation: ImplementationRef {
                engine_id: p.engine_id.to_string(),
                engine_version: p.engine_version.to_string(),
                implementation_id: p.implementation_id.clone(),
                implementation_version: p.implementation_version.to_string(),
                code_digest: None,
            },
            outputs: result.outputs.clone(),
            evidence: result.evidence.clone(),
            inputs: p
                .inputs
                .iter()
                .map(|h| InputRef {
                    artifact_id: Some(h.artifact_id),
                    content_hash: h.content_hash,
                    media_type: h.media_type.as_ref().map(|m| m.to_string()),
                })
                .collect(),
            config_hash: Some(p.config_hash),
            params,
            determinism: Some(p.determinism.as_str().to_owned()),
            budget,
            capabilities_granted: p
                .capabilities_granted
                .iter()
                .map(|c| c.to_string())
                .collect(),
            environment: p.environment.clone(),
            served_from_cache: result.served_from_cache,
            started_on: result.started_at.to_string(),
            finished_on: result.ended_at.to_string(),
            events,
        })
    }

    /// From what was recorded: the operation's events (seq order) and the
    /// manifests of the artifacts it produced (`producer.op_id` = op).
    /// Outputs are the digests the `op_completed` event lists; other
    /// produced artifacts are evidence.
    pub fn from_record(
        op_id: Uuid,
        events: Vec<Event>,
        produced: &[ArtifactManifest],
    ) -> Result<Self, AttestError> {
        let completed = events
            .iter()
            .rev()
            .find(|e| e.kind == EventKind::OpCompleted)
            .ok_or_else(|| {
                AttestError::Unattestable(format!(
                    "operation {op_id} has no op_completed event in the Flight Recorder: it is unknown here, or still running"
                ))
            })?;
        let received = events.iter().find(|e| e.kind == EventKind::OpReceived);
        let output_hashes: Vec<String> = completed
            .payload
            .get("outputs")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let find = |hex: &str| {
            produced
                .iter()
                .find(|m| m.artifact.content_hash.to_hex() == hex)
        };
        let mut outputs = Vec::new();
        for hex in &output_hashes {
            let m = find(hex).ok_or_else(|| {
                AttestError::Unattestable(format!(
                    "output {hex} of operation {op_id} has no manifest in the artifact store (collected by gc?); it cannot be named as a subject"
                ))
            })?;
            outputs.push(m.artifact.clone());
        }
        let evidence = produced
            .iter()
            .filter(|m| !output_hashes.contains(&m.artifact.content_hash.to_hex()))
            .map(|m| m.artifact.clone())
            .collect();
        let producer = produced.iter().find_map(|m| m.producer.as_ref());
        let implementation = match producer {
            Some(p) => ImplementationRef {
                engine_id: p.engine_id.to_string(),
                engine_version: p.engine_version.to_string(),
                implementation_id: p.implementation_id.clone(),
                implementation_version: p.implementation_version.to_string(),
                code_digest: None,
            },
            None => {
                return Err(AttestError::Unattestable(format!(
                    "operation {op_id} produced no artifacts (status {}); an attestation needs at least one output as its subject",
                    completed.status.map(|s| s.as_str()).unwrap_or("unknown")
                )));
            }
        };
        Ok(Self {
            op_id,
            operation: completed
                .operation
                .as_ref()
                .map(|o| o.to_string())
                .unwrap_or_default(),
            status: completed
                .status
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            implementation,
            outputs,
            evidence,
            inputs: producer
                .map(|p| {
                    p.input_hashes
                        .iter()
                        .map(|h| InputRef {
                            artifact_id: None,
                            content_hash: *h,
                            media_type: None,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            config_hash: producer.map(|p| p.config_hash),
            params: None,
            determinism: producer.map(|p| p.determinism.as_str().to_owned()),
            budget: None,
            capabilities_granted: events
                .iter()
                .filter(|e| e.kind == EventKind::CapabilityAllowed)
                .filter_map(|e| e.capability.clone())
                .collect(),
            environment: BTreeMap::new(),
            served_from_cache: completed
                .payload
                .get("served_from_cache")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            started_on: received
                .map(|e| e.recorded_at.to_string())
                .unwrap_or_else(|| completed.recorded_at.to_string()),
            finished_on: completed.recorded_at.to_string(),
            events,
        })
    }
}

fn artifact_descriptor(h: &ArtifactHandle) -> Value {
    let mut d = json!({
        "name": format!("mex://artifact/{}", h.artifact_id.hyphenated()),
        "uri": format!("mex://artifact/{}", h.artifact_id.hyphenated()),
        "digest": {"sha256": h.content_hash.to_hex()},
        "annotations": {"size_bytes": h.size_bytes, "kind": h.kind},
    });
    if let (Some(m), Some(obj)) = (&h.media_type, d.as_object_mut()) {
        obj.insert("mediaType".into(), Value::String(m.to_string()));
    }
    d
}

/// The digest of the operation's events as JSON Lines (one RFC 8785 event
/// per line, exactly as `mex recorder export` writes them), and the lines.
fn events_log(events: &[Event]) -> Result<(String, Vec<u8>), AttestError> {
    let mut out = Vec::new();
    for e in events {
        out.extend(e.to_canonical_json()?);
        out.push(b'\n');
    }
    Ok((Sha256Digest::of(&out).to_hex(), out))
}

/// The in-toto Statement (as JSON) for the facts; `builder_id` names the
/// mex home that ran the operation.
pub fn statement(facts: &ProvenanceFacts, builder_id: &str) -> Result<Value, AttestError> {
    if facts.outputs.is_empty() {
        return Err(AttestError::Unattestable(format!(
            "operation {} has no outputs (status {}); an in-toto statement needs at least one subject",
            facts.op_id, facts.status
        )));
    }
    let subject: Vec<Value> = facts
        .outputs
        .iter()
        .map(|h| {
            let mut d = artifact_descriptor(h);
            if let Some(obj) = d.as_object_mut() {
                obj.remove("uri");
            }
            d
        })
        .collect();

    let mut external = Map::new();
    external.insert("op_id".into(), json!(facts.op_id));
    external.insert("engine_id".into(), json!(facts.implementation.engine_id));
    external.insert("operation".into(), json!(facts.operation));
    if let Some(c) = &facts.config_hash {
        external.insert("config_hash".into(), json!(c.to_hex()));
    }
    if let Some(p) = &facts.params {
        external.insert("params".into(), p.clone());
    }

    let mut internal = Map::new();
    if let Some(d) = &facts.determinism {
        internal.insert("determinism".into(), json!(d));
    }
    if let Some(b) = &facts.budget {
        internal.insert("budget".into(), b.clone());
    }
    internal.insert(
        "capabilities_granted".into(),
        json!(facts.capabilities_granted),
    );
    internal.insert("served_from_cache".into(), json!(facts.served_from_cache));
    if !facts.environment.is_empty() {
        internal.insert("environment".into(), json!(facts.environment));
    }

    let mut deps: Vec<Value> = facts
        .inputs
        .iter()
        .map(|i| {
            let mut d = json!({"digest": {"sha256": i.content_hash.to_hex()}});
            if let Some(obj) = d.as_object_mut() {
                if let Some(id) = i.artifact_id {
                    obj.insert(
                        "uri".into(),
                        json!(format!("mex://artifact/{}", id.hyphenated())),
                    );
                } else {
                    obj.insert(
                        "uri".into(),
                        json!(format!("mex://sha256/{}", i.content_hash.to_hex())),
                    );
                }
                if let Some(m) = &i.media_type {
                    obj.insert("mediaType".into(), json!(m));
                }
            }
            d
        })
        .collect();
    let imp = &facts.implementation;
    let mut engine = json!({
        "name": imp.implementation_id,
        "uri": format!(
            "mex://engine/{}/{}@{}",
            imp.engine_id, imp.implementation_id, imp.implementation_version
        ),
        "annotations": {
            "engine_id": imp.engine_id,
            "engine_version": imp.engine_version,
            "implementation_version": imp.implementation_version,
        },
    });
    if let (Some(d), Some(obj)) = (&imp.code_digest, engine.as_object_mut()) {
        obj.insert("digest".into(), json!({"sha256": d.to_hex()}));
    }
    deps.push(engine);

    let (log_digest, _) = events_log(&facts.events)?;
    let mut byproducts: Vec<Value> = facts.evidence.iter().map(artifact_descriptor).collect();
    let first = facts.events.first().map(|e| e.seq);
    let last = facts.events.last();
    byproducts.push(json!({
        "name": "flight-recorder-events.jsonl",
        "digest": {"sha256": log_digest},
        "mediaType": "application/jsonl",
        "annotations": {
            "first_seq": first,
            "last_seq": last.map(|e| e.seq),
            "last_event_hash": last.map(|e| e.hash.to_hex()),
            "events": facts.events.len(),
            "status": facts.status,
        },
    }));

    let mut builder = json!({"id": builder_id});
    if let (Some(v), Some(obj)) = (facts.environment.get("runtime"), builder.as_object_mut()) {
        obj.insert("version".into(), json!({"mex-runtime": v}));
    }
    Ok(json!({
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": Value::Object(external),
                "internalParameters": Value::Object(internal),
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": builder,
                "metadata": {
                    "invocationId": facts.op_id.hyphenated().to_string(),
                    "startedOn": facts.started_on,
                    "finishedOn": facts.finished_on,
                },
                "byproducts": byproducts,
            },
        },
    }))
}

/// The builder id of a home: `mex://builder/` and the key's name.
pub fn builder_id(key: &HomeKey) -> String {
    format!("mex://builder/{}", key.public().note_name())
}

/// The signed DSSE envelope of the statement for `facts`.
pub fn attest(facts: &ProvenanceFacts, key: &HomeKey) -> Result<Envelope, AttestError> {
    let statement = statement(facts, &builder_id(key))?;
    let body = serde_json::to_vec(&statement).map_err(|e| AttestError::Json {
        what: "in-toto statement",
        detail: e.to_string(),
    })?;
    Ok(Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &body, key))
}
