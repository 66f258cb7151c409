//! Admission of a typical operation without artifact I/O, as a ratio against
//! parsing the same envelope with serde_json alone, in the same run; and
//! admission of an operation with a 1 MiB input to verify.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmarks fail loudly on a broken setup instead of handling it"
)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use mex_artifacts::{ArtifactStore, PutOptions, StoreConfig};
use mex_envelope::{ArtifactKind, Classification, PlannedOperation};
use mex_gates::internal::{Claimed, OpClaims, Pipeline, RegistryCatalog};
use mex_gates::{CapabilityPolicy, GateContext};
use mex_registry::Registry;
use serde_json::json;

/// Benchmarks admit the same op id repeatedly; no op id is ever claimed.
struct NoClaims;
impl OpClaims for NoClaims {
    fn claimed(&self, _: uuid::Uuid) -> Result<Option<Claimed>, String> {
        Ok(None)
    }
}

fn bench(c: &mut Criterion) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let registry = Arc::new(Registry::load(fixtures.join("registry.json")).unwrap());
    let policy = CapabilityPolicy::from_json_str(
        &std::fs::read_to_string(fixtures.join("policy.json")).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // No verification cache: every admission re-hashes the input.
    let config = StoreConfig {
        verify_cache: false,
        ..StoreConfig::default()
    };
    let store = Arc::new(ArtifactStore::with_config(dir.path(), config).unwrap());
    let ctx = GateContext::new(
        Arc::new(RegistryCatalog::new(registry)),
        Arc::new(policy),
        None,
        store.clone(),
        Arc::new(NoClaims),
    );
    let pipeline = Pipeline::new(ctx);

    let typical = serde_json::to_vec(&json!({
        "schema_version": "poe-1.0", "op_id": "11111111-1111-4111-8111-000000000001",
        "engine_id": "engine.layout", "engine_version_req": "*", "operation": "layout.generate",
        "inputs": [], "params": {"seed": 7, "format": "svg"}, "capabilities_requested": ["fs.write:artifacts"],
        "budget": {"wall_time_ms": 1000}, "determinism": "D2"
    }))
    .unwrap();
    assert!(pipeline.admit_json(&typical).result.is_ok());

    let big = vec![b'x'; 1 << 20];
    let handle = store
        .put_bytes(
            &big,
            &PutOptions::new(ArtifactKind::File, Classification::Low),
        )
        .unwrap();
    let with_input = serde_json::to_vec(&json!({
        "schema_version": "poe-1.0", "op_id": "11111111-1111-4111-8111-000000000002",
        "engine_id": "engine.physics", "engine_version_req": "*", "operation": "physics.check_units",
        "inputs": [handle], "params": {"expr_ref": handle.artifact_id.to_string()},
        "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts"], "budget": {}, "determinism": "D3"
    }))
    .unwrap();
    let admitted = pipeline.admit_json(&with_input);
    assert!(admitted.result.is_ok(), "{:?}", admitted.outcomes);

    let mut group = c.benchmark_group("admission");
    group.bench_function("serde_json_parse_only", |b| {
        b.iter(|| {
            black_box(serde_json::from_slice::<serde_json::Value>(black_box(&typical)).unwrap())
        })
    });
    // The envelope's share of an admission: the typed, strict parse alone.
    group.bench_function("typed_parse_only", |b| {
        b.iter(|| black_box(PlannedOperation::from_json_slice(black_box(&typical)).unwrap()))
    });
    group.bench_function("admit_typical_no_io", |b| {
        b.iter(|| black_box(pipeline.admit_json(black_box(&typical))))
    });
    group.bench_function("admit_with_1mib_input", |b| {
        b.iter(|| black_box(pipeline.admit_json(black_box(&with_input))))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
