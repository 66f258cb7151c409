//! Operations per second for a trivial D3 engine with durable recording; the
//! runtime's overhead against calling the same engine logic directly, in the
//! same run; and the latency of a D3 cache hit.
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
use mex_artifacts::ArtifactStore;
use mex_envelope::{ArtifactKind, EngineId, PlannedOperation, Sha256Digest};
use mex_gates::CapabilityPolicy;
use mex_recorder::{FlightRecorder, SqliteRecorder};
use mex_registry::Registry;
use mex_runtime::{Completion, Engine, EngineFailure, ExecutionContext, MexRuntime};
use serde_json::json;

/// The engine logic under test: echo the text.
fn logic(text: &str) -> Vec<u8> {
    format!("echo: {text}").into_bytes()
}

struct Echo;

impl Engine for Echo {
    fn engine_id(&self) -> EngineId {
        "engine.calc".parse().unwrap()
    }
    fn implementation_id(&self) -> &str {
        "calc"
    }
    fn implementation_version(&self) -> semver::Version {
        semver::Version::new(1, 0, 0)
    }
    fn execute<'run>(
        &self,
        ctx: &ExecutionContext<'run>,
    ) -> Result<Completion<'run>, EngineFailure> {
        let text = ctx
            .params()
            .get("text")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        ctx.write_output(ArtifactKind::Report, None, &logic(text))
            .map_err(|e| EngineFailure::new("CALC_FAILED", e.to_string()))?;
        Ok(ctx.complete())
    }
}

fn op(text: &str) -> PlannedOperation {
    PlannedOperation::from_json_value(json!({
        "schema_version": "poe-1.0", "op_id": uuid::Uuid::new_v4().to_string(), "engine_id": "engine.calc",
        "engine_version_req": "^1", "operation": "calc.echo", "inputs": [], "params": {"text": text},
        "capabilities_requested": ["fs.write:artifacts"], "budget": {"wall_time_ms": 2000}, "determinism": "D3"
    }))
    .unwrap()
}

fn runtime(dir: &Path, cache: bool) -> MexRuntime {
    let registry = Arc::new(
        Registry::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/registry.json"))
            .unwrap(),
    );
    let policy = CapabilityPolicy::from_json_str(
        r#"{"policy_version":"mex-policy-1","default_profile":"d","profiles":{"d":{"grants":["fs.read:*","fs.write:artifacts"]}}}"#,
    )
    .unwrap();
    let recorder: Arc<dyn FlightRecorder> = Arc::new(SqliteRecorder::open(dir).unwrap());
    MexRuntime::builder()
        .registry(registry)
        .policy(policy)
        .store(Arc::new(ArtifactStore::at(dir.join("artifacts")).unwrap()))
        .recorder(recorder)
        .engine(Arc::new(Echo))
        .trust_uncertified("engine.calc".parse().unwrap())
        .result_cache(cache)
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), false);
    let mut group = c.benchmark_group("runtime");
    let mut n = 0u64;
    group.bench_function("direct_engine_logic_and_hash", |b| {
        b.iter(|| {
            n += 1;
            black_box(Sha256Digest::of(&logic(&n.to_string())))
        })
    });
    group.bench_function("execute_trivial_d3_durable", |b| {
        b.iter(|| {
            n += 1;
            let result = rt.execute(op(&n.to_string()));
            assert_eq!(result.status, mex_envelope::ResultStatus::Succeeded);
            black_box(result)
        })
    });
    let cached_dir = tempfile::tempdir().unwrap();
    let cached = runtime(cached_dir.path(), true);
    assert!(!cached.execute(op("hot")).served_from_cache);
    group.bench_function("execute_d3_cache_hit", |b| {
        b.iter(|| {
            let result = cached.execute(op("hot"));
            assert!(result.served_from_cache);
            black_box(result)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
