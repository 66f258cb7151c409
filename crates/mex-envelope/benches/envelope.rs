//! Parse + canonical hash of a typical envelope and of one carrying 32 KiB of
//! params, with plain `serde_json::from_slice::<Value>` of the same bytes as the
//! in-run baseline.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmarks fail loudly on a broken setup instead of handling it"
)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mex_envelope::PlannedOperation;
use std::hint::black_box;

fn typical() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/ops/valid/sandbox-run-shell.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn with_32k_params() -> serde_json::Value {
    let mut v = typical();
    let mut params = serde_json::Map::new();
    // ~32 KiB of mixed params: strings, numbers, nested objects.
    for i in 0..256 {
        params.insert(
            format!("field_{i:04}"),
            serde_json::json!({"label": format!("value number {i} with some text"), "n": i, "x": i as f64 * 0.25, "tags": ["a", "b", "c"]}),
        );
    }
    v["params"] = serde_json::Value::Object(params);
    v
}

fn bench(c: &mut Criterion) {
    for (name, value) in [("typical", typical()), ("params_32k", with_32k_params())] {
        let bytes = serde_json::to_vec(&value).unwrap();
        let mut group = c.benchmark_group(format!("envelope/{name}"));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function("serde_json_value_only", |b| {
            b.iter(|| {
                black_box(serde_json::from_slice::<serde_json::Value>(black_box(&bytes)).unwrap())
            })
        });
        group.bench_function("parse", |b| {
            b.iter(|| black_box(PlannedOperation::from_json_slice(black_box(&bytes)).unwrap()))
        });
        group.bench_function("parse_and_canonical_hash", |b| {
            b.iter(|| {
                let op = PlannedOperation::from_json_slice(black_box(&bytes)).unwrap();
                black_box(op.canonical_digest().unwrap())
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
