//! `wrangler.profile_dataset` over 10^5 CSV rows (5 columns, every metric),
//! the figure `docs/engines/wrangler.md` quotes; also `convert_table` CSV to
//! JSON Lines over the same rows.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "bench"
)]

use std::fmt::Write as _;

use criterion::{Criterion, criterion_group, criterion_main};
use mex_engine_sdk::Request;
use serde_json::{Value, json};

const ROWS: usize = 100_000;

fn request(dir: &std::path::Path, operation: &str, params: Value) -> Request {
    let out = dir.join("out");
    let doc = json!({
        "protocol": "mex-engine-1",
        "op_id": "00000000-0000-4000-8000-000000000000",
        "engine_id": "engine.wrangler",
        "implementation_id": "mex-engine-wrangler",
        "implementation_version": "0.1.0",
        "operation": operation,
        "params": params,
        "inputs": [{
            "artifact_id": "00000000-0000-4000-8000-000000000001",
            "path": dir.join("data.csv").to_str().unwrap(),
            "kind": "file",
            "media_type": "text/csv",
            "content_hash": "0".repeat(64),
            "size_bytes": 0,
        }],
        "budget": {"output_bytes": 268_435_456u64},
        "determinism": "D2",
        "output_dir": out.to_str().unwrap(),
    });
    Request::from_slice(&serde_json::to_vec(&doc).unwrap()).unwrap()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let mut csv = String::from("id,name,score,active,city\n");
    for i in 0..ROWS {
        let _ = writeln!(
            csv,
            "{i},name{},{}.{},{},\"City {}, X\"",
            i % 5000,
            i % 977,
            i % 10,
            i % 2 == 0,
            i % 50
        );
    }
    std::fs::write(dir.path().join("data.csv"), csv).unwrap();
    let id = "00000000-0000-4000-8000-000000000001";
    let mut g = c.benchmark_group("wrangler");
    g.sample_size(10);
    g.bench_function("profile_dataset_1e5_rows", |b| {
        b.iter(|| {
            let mut req = request(
                dir.path(),
                "wrangler.profile_dataset",
                json!({"dataset_ref": id, "output": "json",
                       "metrics": ["count", "nulls", "distinct", "min", "max", "mean", "stddev", "histogram"]}),
            );
            mex_engine_wrangler::handle(&mut req).unwrap();
        });
    });
    g.bench_function("convert_table_csv_to_jsonl_1e5_rows", |b| {
        b.iter(|| {
            let mut req = request(
                dir.path(),
                "wrangler.convert_table",
                json!({"input_ref": id, "target": "jsonl", "output": "dataset", "infer_types": true}),
            );
            mex_engine_wrangler::handle(&mut req).unwrap();
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
