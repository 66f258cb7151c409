//! The D3 result cache.
//!
//! Only successful D3 results are cached. The key is the canonical (RFC 8785)
//! hash of: engine, implementation id and version, operation, canonical
//! params, input digests and sizes, the resolved budget, the determinism level
//! and a runtime salt. A hit is served only if every cached artifact still
//! verifies in the store.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::proof::AdmissionProof;
use mex_envelope::{ArtifactHandle, ProvenanceRecord, Sha256Digest, canonical};
use serde_json::json;

/// What a cache hit returns.
#[derive(Debug, Clone)]
pub(crate) struct CachedResult {
    pub outputs: Vec<ArtifactHandle>,
    pub evidence: Vec<ArtifactHandle>,
    pub logs: Option<ArtifactHandle>,
    pub provenance: ProvenanceRecord,
}

#[derive(Debug, Default)]
pub(crate) struct ResultCache {
    entries: Mutex<HashMap<Sha256Digest, CachedResult>>,
}

/// The cache key of an admitted operation, or `None` when it cannot be
/// computed (then the run is simply not cached).
pub(crate) fn key(proof: &AdmissionProof, salt: &str) -> Option<Sha256Digest> {
    let op = proof.operation();
    let inputs: Vec<_> = op
        .inputs
        .iter()
        .filter_map(|i| i.as_artifact())
        .map(|h| json!({"content_hash": h.content_hash, "size_bytes": h.size_bytes}))
        .collect();
    let material = json!({
        "engine_id": op.engine_id,
        "implementation_id": proof.implementation().id,
        "implementation_version": proof.implementation().version.to_string(),
        "operation": op.operation,
        "params": op.params,
        "inputs": inputs,
        "budget": proof.budget().to_spec(),
        "determinism": op.determinism,
        "salt": salt,
    });
    canonical::digest(&material).ok()
}

impl ResultCache {
    pub(crate) fn get(&self, key: &Sha256Digest) -> Option<CachedResult> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    pub(crate) fn put(&self, key: Sha256Digest, value: CachedResult) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, value);
    }

    pub(crate) fn forget(&self, key: &Sha256Digest) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}
