//! engine.wrangler through the real binary, from a fresh home: certified by
//! `mex conformance`, then hostile inputs through `mex run` end in typed
//! failures inside the jail (the engine's code, or the runtime's budget code).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn mex(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mex"))
        .arg("--home")
        .arg(home)
        .arg("--registry")
        .arg(root().join("mechanical_engines.json"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("MEX_HOME")
        .env_remove("MEX_REGISTRY_DIR")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn put(home: &Path, file: &Path, media: &str) -> Value {
    let o = mex(
        home,
        &[
            "artifacts",
            "put",
            "--json",
            "--media-type",
            media,
            file.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn run(home: &Path, dir: &Path, handle: &Value, params: Value, budget: Value) -> Value {
    let op = json!({
        "schema_version": "poe-1.0",
        "op_id": "3a7e0000-0000-4000-8000-00000000e2e1",
        "engine_id": "engine.wrangler",
        "engine_version_req": "^0.1",
        "operation": "wrangler.profile_dataset",
        "inputs": [handle],
        "params": params,
        "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts", "proc.exec:data"],
        "budget": budget,
        "determinism": "D2"
    });
    let path = dir.join(format!(
        "op-{}.json",
        handle["artifact_id"].as_str().unwrap()
    ));
    std::fs::write(&path, op.to_string()).unwrap();
    let o = mex(home, &["run", "--json", path.to_str().unwrap()]);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&o)))
}

fn codes(r: &Value) -> Vec<String> {
    r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn certified_then_hostile_inputs_fail_typed_in_the_jail() {
    let home_dir = tempfile::tempdir().unwrap();
    let home = home_dir.path().join("mex");
    let o = mex(&home, &["conformance", "--engine", "engine.wrangler"]);
    assert!(o.status.success(), "{}", text(&o));

    let dir = tempfile::tempdir().unwrap();
    // A 100 MB field: the record bound stops it after 16 MiB is read, well
    // inside a 512 MiB memory budget.
    let huge = dir.path().join("huge.csv");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&huge).unwrap());
        f.write_all(b"a,b\n1,").unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..100 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b"\n").unwrap();
    }
    let h = put(&home, &huge, "text/csv");
    let r = run(
        &home,
        dir.path(),
        &h,
        json!({"dataset_ref": h["artifact_id"], "metrics": ["count"], "output": "json"}),
        json!({"wall_time_ms": 60000, "memory_bytes": 536870912u64, "output_bytes": 1048576}),
    );
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(codes(&r), ["WR_LIMIT_EXCEEDED"], "{r}");

    // An unbalanced quote.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, b"a,b\n1,2\n3,\"x\n4,5\n").unwrap();
    let h = put(&home, &bad, "text/csv");
    let r = run(
        &home,
        dir.path(),
        &h,
        json!({"dataset_ref": h["artifact_id"], "metrics": ["count"], "output": "json"}),
        json!({"wall_time_ms": 60000}),
    );
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(codes(&r), ["WR_DATA_PARSE_ERROR"], "{r}");
}
