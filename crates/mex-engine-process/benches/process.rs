//! A trivial operation (write `{"ok":true}`) as a process engine (Python,
//! through the sandbox and the protocol) against the same logic as a builtin
//! engine, both through the full runtime. The ratio is the cost of running
//! an engine mex was not built with.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmarks fail loudly on a broken setup instead of handling it"
)]

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use mex_artifacts::ArtifactStore;
use mex_envelope::{ArtifactKind, EngineId};
use mex_gates::CapabilityPolicy;
use mex_recorder::MemoryRecorder;
use mex_registry::Registry;
use mex_runtime::{Completion, Engine, EngineFailure, ExecutionContext, MexRuntime};
use serde_json::json;

const SCRIPT: &str = include_str!("../tests/fixtures/hostile.py");

fn hostile() -> EngineId {
    match "engine.hostile".parse() {
        Ok(id) => id,
        Err(e) => panic!("{e}"),
    }
}

struct Builtin;

impl Engine for Builtin {
    fn engine_id(&self) -> EngineId {
        hostile()
    }
    fn implementation_id(&self) -> &str {
        "hostile-builtin"
    }
    fn implementation_version(&self) -> semver::Version {
        semver::Version::new(0, 2, 0)
    }
    fn execute<'run>(
        &self,
        ctx: &ExecutionContext<'run>,
    ) -> Result<Completion<'run>, EngineFailure> {
        ctx.write_output(
            ArtifactKind::Report,
            "application/json".parse().ok(),
            br#"{"ok":true}"#,
        )
        .map_err(|e| EngineFailure::new("HOSTILE_REFUSED", e.to_string()))?;
        Ok(ctx.complete())
    }
}

fn registry(dir: &std::path::Path) -> Registry {
    std::fs::write(dir.join("hostile.py"), SCRIPT).unwrap_or_default();
    let digest = mex_envelope::Sha256Digest::of(SCRIPT.as_bytes()).to_string();
    let doc = json!({"registry_version": "1.0", "engines": [{
        "engine_id": "engine.hostile", "interface_version": "1.0.0", "domain": "Bench",
        "description": "A trivial operation.", "determinism_ceiling": "D3",
        "default_capabilities": ["fs.write:artifacts"],
        "default_budget": {"cpu_time_ms": 10000, "wall_time_ms": 20000, "memory_bytes": 536870912, "output_bytes": 1048576},
        "max_budget": {"cpu_time_ms": 60000, "wall_time_ms": 60000, "memory_bytes": 2147483648u64, "output_bytes": 16777216},
        "implementations": [
            {"id": "hostile-py", "version": "0.1.0", "kind": "process", "path": "hostile.py", "sha256": digest, "interpreter": "python3"},
            {"id": "hostile-builtin", "version": "0.2.0", "kind": "in_process"}
        ],
        "failure_codes": [{"code": "HOSTILE_REFUSED", "description": "it refused"}],
        "operations": [{"name": "hostile.run", "description": "Write a trivial output.",
            "params_schema": {"inline": {"$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object", "additionalProperties": false, "properties": {"mode": {"type": "string"}}}},
            "outputs": [{"type": "artifact.dataset", "media_types": ["application/json"]}],
            "required_capabilities": ["fs.write:artifacts"], "determinism": "D3",
            "failure_codes": ["HOSTILE_REFUSED"]}]
    }]});
    let file = dir.join("mechanical_engines.json");
    std::fs::write(&file, doc.to_string()).unwrap_or_default();
    match Registry::load(&file) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

fn bench(c: &mut Criterion) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let registry = Arc::new(registry(dir.path()));
    let Ok(store) = ArtifactStore::at(dir.path().join("artifacts")) else {
        return;
    };
    let mut config = mex_engine_process::ProcessEngineConfig {
        jail_root: std::env::temp_dir().join("mex-process-bench"),
        ..Default::default()
    };
    config.sandbox.launcher = Some(PathBuf::from(env!("CARGO_BIN_EXE_mex-engine-process-exec")));
    let (engines, gate, _) = mex_engine_process::process_engines(&registry, config);
    let mut builder = MexRuntime::builder()
        .registry(registry)
        .policy(CapabilityPolicy::default_non_sensitive())
        .store(Arc::new(store))
        .recorder(Arc::new(MemoryRecorder::new()))
        .workspace_root(dir.path().join("runs"))
        .engine_gate(gate)
        .engine(Arc::new(Builtin))
        .trust_uncertified(hostile())
        .result_cache(false);
    for e in engines {
        builder = builder.engine(e);
    }
    let Ok(rt) = builder.build() else { return };
    let op = |req: &str| {
        json!({"schema_version": "poe-1.0", "op_id": uuid::Uuid::new_v4(),
            "engine_id": "engine.hostile", "engine_version_req": req, "operation": "hostile.run",
            "inputs": [], "params": {"mode": "ok"}, "capabilities_requested": ["fs.write:artifacts"],
            "budget": {}, "determinism": "D3"})
        .to_string()
    };
    let mut group = c.benchmark_group("trivial_op");
    group.sample_size(20);
    group.bench_function("builtin", |b| {
        b.iter(|| rt.execute_json(op("=0.2.0").as_bytes()));
    });
    group.bench_function("process_python", |b| {
        b.iter(|| rt.execute_json(op("=0.1.0").as_bytes()));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
