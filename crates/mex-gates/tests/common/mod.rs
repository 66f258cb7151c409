//! Shared setup for the gates' integration tests: the fixture registry and
//! policy, a temporary store with known artifacts, and pipelines.
#![allow(
    dead_code,
    reason = "shared test helpers: not every test binary uses every helper, and a failed expectation panics"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mex_artifacts::{ArtifactStore, PutOptions};
use mex_envelope::{
    ArtifactHandle, ArtifactKind, Classification, GateDenial, GateId, MediaType, PlannedOperation,
};
use mex_gates::internal::{MemoryClaims, Pipeline, RegistryCatalog};
use mex_gates::{CapabilityPolicy, Gate, GateContext};
use mex_registry::Registry;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn registry() -> Arc<Registry> {
    Arc::new(
        Registry::load(fixtures().join("registry.json"))
            .unwrap_or_else(|e| panic!("fixture registry: {e}")),
    )
}

pub fn policy() -> CapabilityPolicy {
    CapabilityPolicy::from_json_str(
        &std::fs::read_to_string(fixtures().join("policy.json")).unwrap(),
    )
    .unwrap()
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: Arc<ArtifactStore>,
    pub handles: BTreeMap<String, ArtifactHandle>,
    pub bytes: BTreeMap<String, Vec<u8>>,
    /// The op ids the pipelines of this env see as claimed.
    pub claims: Arc<MemoryClaims>,
}

pub fn env(classification_of_expr: Classification) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ArtifactStore::at(dir.path().join("artifacts")).unwrap());
    let mut handles = BTreeMap::new();
    let mut bytes = BTreeMap::new();
    let unique = uuid::Uuid::new_v4().to_string();
    for (name, content, media, class) in [
        (
            "expr",
            b"F = m * a".to_vec(),
            "text/plain",
            classification_of_expr,
        ),
        (
            "vars",
            br#"{"m": "2 kg", "a": "3 m/s^2"}"#.to_vec(),
            "application/json",
            Classification::Low,
        ),
        (
            "script",
            b"echo hello".to_vec(),
            "text/plain",
            Classification::Low,
        ),
        (
            "victim",
            format!("victim {unique} {}", "v".repeat(4096)).into_bytes(),
            "text/plain",
            Classification::Low,
        ),
    ] {
        let mut options = PutOptions::new(ArtifactKind::File, class);
        options.media_type = Some(media.parse::<MediaType>().unwrap());
        let handle = store.put_bytes(&content, &options).unwrap();
        handles.insert(name.to_owned(), handle);
        bytes.insert(name.to_owned(), content);
    }
    Env {
        dir,
        store,
        handles,
        bytes,
        claims: Arc::new(MemoryClaims::default()),
    }
}

pub struct TestGate {
    pub id: GateId,
    pub deny: bool,
}

impl Gate for TestGate {
    fn id(&self) -> &GateId {
        &self.id
    }
    fn check_all(&self, _op: &PlannedOperation) -> Vec<GateDenial> {
        if self.deny {
            vec![GateDenial {
                gate: self.id.clone(),
                code: "G-SAFETY.SANDBOX.TEST_DENY".parse().unwrap(),
                rule: "test".into(),
                message: "test gate denies everything".into(),
                pointer: None,
                details: None,
                severity: mex_envelope::DenialSeverity::Deny,
            }]
        } else {
            Vec::new()
        }
    }
}

pub fn pipeline(
    env: &Env,
    policy: CapabilityPolicy,
    profile: Option<&str>,
    engine_gate: Option<bool>,
) -> Pipeline {
    let ctx = GateContext::new(
        Arc::new(RegistryCatalog::new(registry())),
        Arc::new(policy),
        profile.map(str::to_owned),
        env.store.clone(),
        env.claims.clone(),
    );
    let mut pipeline = Pipeline::new(ctx);
    if let Some(deny) = engine_gate {
        pipeline = pipeline
            .with_engine_gate(Arc::new(TestGate {
                id: "G-SAFETY.SANDBOX".parse().unwrap(),
                deny,
            }))
            .unwrap();
    }
    pipeline
}
