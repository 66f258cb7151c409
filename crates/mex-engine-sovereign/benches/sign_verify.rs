//! sign and verify of a 1 MiB input through the handler (a request laid out
//! like the jail in a temporary directory; file I/O included).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmark code: a failed setup panics"
)]

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use mex_engine_sdk::Request;
use serde_json::{Value, json};

const ED_KEY: &str =
    "MEX-ED25519-SECRET-KEY-9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

fn request(dir: &Path, op: &str, mut params: Value, inputs: &[(&str, &Path)]) -> Vec<u8> {
    let mut docs = Vec::new();
    for (i, (param, path)) in inputs.iter().enumerate() {
        let id = format!("00000000-0000-4000-8000-{:012}", i + 1);
        params[*param] = json!(id);
        let bytes = std::fs::read(path).unwrap();
        docs.push(json!({
            "artifact_id": id, "path": path.display().to_string(), "kind": "file",
            "content_hash": mex_envelope::Sha256Digest::of(&bytes).to_string(),
            "size_bytes": bytes.len(),
        }));
    }
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let doc = json!({
        "protocol": "mex-engine-1", "op_id": "5c0c4ef0-0000-4000-8000-000000000001",
        "engine_id": "engine.sovereign", "implementation_id": "mex-engine-sovereign",
        "implementation_version": "0.1.0", "operation": op, "params": params, "inputs": docs,
        "budget": {"cpu_time_ms": 10000, "wall_time_ms": 60000, "memory_bytes": 536870912, "output_bytes": 67108864},
        "determinism": "D2", "output_dir": out.display().to_string(),
        "secrets": {"k": ED_KEY},
    });
    serde_json::to_vec(&doc).unwrap()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let msg = dir.path().join("msg");
    std::fs::write(&msg, vec![0x42u8; 1 << 20]).unwrap();
    let pk = dir.path().join("pk");
    std::fs::write(
        &pk,
        mex_engine_sovereign::HeldKey::parse(ED_KEY)
            .unwrap()
            .public_text(),
    )
    .unwrap();
    let sign = request(
        dir.path(),
        "sovereign.sign",
        json!({"key_id": "k", "sig_format": "minisign"}),
        &[("input_ref", &msg)],
    );
    mex_engine_sovereign::handle(&mut Request::from_slice(&sign).unwrap()).unwrap();
    let sig = dir.path().join("sig");
    std::fs::copy(dir.path().join("out/signature.minisig"), &sig).unwrap();

    let mut g = c.benchmark_group("sovereign");
    g.throughput(criterion::Throughput::Bytes(1 << 20));
    g.bench_function("sign_1MiB", |b| {
        b.iter(|| {
            mex_engine_sovereign::handle(&mut Request::from_slice(&sign).unwrap()).unwrap();
        });
    });
    let verify = request(
        dir.path(),
        "sovereign.verify",
        json!({"output": "json"}),
        &[("input_ref", &msg), ("sig_ref", &sig), ("pubkey_ref", &pk)],
    );
    g.bench_function("verify_1MiB", |b| {
        b.iter(|| {
            mex_engine_sovereign::handle(&mut Request::from_slice(&verify).unwrap()).unwrap();
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
