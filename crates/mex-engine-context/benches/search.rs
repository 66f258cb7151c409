//! `context.search` and `context.find_todos` over a bundle of 10^4 files
//! (about 40 lines, 1.6 KiB each: 16 MiB), through the handler as a
//! host_process child runs it (walk, sort, search, write the JSON result).
//!
//! `cargo bench -p mex-engine-context --bench search`
//!
//! The tree lives on tmpfs (`/dev/shm` when present) so the figure measures
//! the engine, not the disk; set `MEX_BENCH_DIR` to measure another
//! filesystem.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmarks fail loudly on a broken setup instead of handling it"
)]

use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mex_engine_sdk::Request;
use serde_json::{Value, json};

const FILES: usize = 10_000;

fn bench_dir() -> PathBuf {
    if let Ok(d) = std::env::var("MEX_BENCH_DIR") {
        return PathBuf::from(d);
    }
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

fn make_tree(root: &Path) -> u64 {
    let mut total = 0u64;
    for i in 0..FILES {
        let dir = root.join(format!("src/m{:03}", i % 100));
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = String::new();
        for l in 0..40 {
            if l == 17 && i % 10 == 0 {
                text.push_str(&format!("    // TODO: handle the needle case {i}\n"));
            } else {
                text.push_str(&format!("    let value_{l} = compute(input_{l}, {i});\n"));
            }
        }
        total += text.len() as u64;
        std::fs::write(dir.join(format!("f{i:05}.rs")), text).unwrap();
    }
    total
}

fn request(root: &Path, out: &Path, operation: &str, params: Value) -> Request {
    let doc = json!({
        "protocol": "mex-engine-1",
        "op_id": "5c0c4ef0-0000-4000-8000-000000000001",
        "engine_id": "engine.context",
        "implementation_id": "mex-engine-context",
        "implementation_version": "0.1.0",
        "operation": operation,
        "params": params,
        "inputs": [{
            "artifact_id": "0f6b1c9e-5d7a-4c1e-9a55-2f1d8b0c3e71",
            "path": root.display().to_string(),
            "kind": "bundle",
            "content_hash": "0".repeat(64),
            "size_bytes": 0,
        }],
        "budget": {},
        "determinism": "D3",
        "output_dir": out.display().to_string(),
    });
    Request::from_slice(&serde_json::to_vec(&doc).unwrap()).unwrap()
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir_in(bench_dir()).unwrap();
    let (root, out) = (tmp.path().join("bundle"), tmp.path().join("out"));
    std::fs::create_dir_all(&out).unwrap();
    let bytes = make_tree(&root);
    let mut g = c.benchmark_group("context_10k_files");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(bytes));
    let cases = [
        (
            "search_literal",
            "context.search",
            json!({"query": "needle", "scopes": [], "mode": "literal", "k": 10000, "output": "json"}),
        ),
        (
            "search_regex",
            "context.search",
            json!({"query": r"needle case \d+", "scopes": [], "mode": "regex", "k": 10000, "output": "json"}),
        ),
        (
            "find_todos",
            "context.find_todos",
            json!({"scopes": [], "output": "json"}),
        ),
    ];
    for (name, op, params) in cases {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut req = request(&root, &out, op, params.clone());
                mex_engine_context::handle(&mut req).unwrap();
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
