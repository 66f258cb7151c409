//! The in-process side of the MCP overhead figure: mean latency of one
//! trivial D3 `physics.evaluate_formula` through `MexRuntime::execute`
//! (durable recorder, D3 cache on, as `mex serve` runs it). The MCP side is
//! `crates/mex-mcp/tests/py/bench.py`; the README note has both figures.
//! Run: `cargo bench -p mex-mcp --bench in_process`.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "benchmarks fail loudly on a broken setup instead of handling it"
)]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use mex_artifacts::{ArtifactStore, PutOptions};
use mex_envelope::{ArtifactKind, Classification, PlannedOperation, ResultStatus};
use mex_gates::CapabilityPolicy;
use mex_recorder::{FlightRecorder, SqliteRecorder};
use mex_registry::Registry;
use mex_runtime::MexRuntime;
use serde_json::json;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(
        Registry::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mechanical_engines.json"))
            .unwrap(),
    );
    let store = Arc::new(ArtifactStore::at(dir.path().join("artifacts")).unwrap());
    let recorder: Arc<dyn FlightRecorder> = Arc::new(SqliteRecorder::open(dir.path()).unwrap());
    let rt = MexRuntime::builder()
        .registry(registry)
        .policy(CapabilityPolicy::default_non_sensitive())
        .store(store.clone())
        .recorder(recorder)
        .engine(Arc::new(mex_engine_physics::PhysicsEngine::new().unwrap()))
        .trust_uncertified("engine.physics".parse().unwrap())
        .build()
        .unwrap();
    let put = |bytes: &[u8], media: &str| {
        let mut o = PutOptions::new(ArtifactKind::File, Classification::Low);
        o.media_type = Some(media.parse().unwrap());
        store.put_bytes(bytes, &o).unwrap()
    };
    let expr = put(b"F / A", "text/plain");
    let vars = put(
        br#"{"F": {"value": 1500, "unit": "N"}, "A": {"value": 0.25, "unit": "m^2"}}"#,
        "application/json",
    );
    let op = || {
        PlannedOperation::from_json_value(json!({
            "schema_version": "poe-1.0", "op_id": uuid::Uuid::new_v4().to_string(),
            "engine_id": "engine.physics", "engine_version_req": "*",
            "operation": "physics.evaluate_formula", "inputs": [expr, vars],
            "params": {"expr_ref": expr.artifact_id.to_string(), "vars_ref": vars.artifact_id.to_string(), "output_unit": "kPa"},
            "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts"], "budget": {}, "determinism": "D3"
        }))
        .unwrap()
    };
    for _ in 0..20 {
        assert_eq!(rt.execute(op()).status, ResultStatus::Succeeded);
    }
    let n = 300;
    let t = Instant::now();
    for _ in 0..n {
        assert_eq!(rt.execute(op()).status, ResultStatus::Succeeded);
    }
    let per = t.elapsed().as_secs_f64() / f64::from(n);
    println!(
        "in_process evaluate_formula (D3, cache on, durable): {:.3} ms/call, {:.0} calls/s",
        per * 1e3,
        1.0 / per
    );
}
