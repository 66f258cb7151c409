//! Shared helpers: a jail-like request (one bundle input delivered as a
//! directory, an output directory) and the handler's outcome.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    dead_code,
    reason = "test helpers"
)]

use std::path::{Path, PathBuf};

use mex_engine_sdk::{Fail, Request};
use serde_json::{Value, json};

pub struct Jail {
    pub dir: tempfile::TempDir,
}

impl Jail {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bundle")).unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        Self { dir }
    }

    pub fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Write `bytes` at `rel` inside the bundle, creating directories.
    pub fn file(&self, rel: &str, bytes: impl AsRef<[u8]>) {
        let path = self.bundle().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    pub fn request(&self, operation: &str, params: Value) -> Request {
        self.request_with_inputs(operation, params, vec![input(&self.bundle(), "bundle")])
    }

    pub fn request_with_inputs(
        &self,
        operation: &str,
        params: Value,
        inputs: Vec<Value>,
    ) -> Request {
        let doc = json!({
            "protocol": "mex-engine-1",
            "op_id": "5c0c4ef0-0000-4000-8000-000000000001",
            "engine_id": "engine.context",
            "implementation_id": "mex-engine-context",
            "implementation_version": "0.1.0",
            "operation": operation,
            "params": params,
            "inputs": inputs,
            "budget": {"cpu_time_ms": 5000, "wall_time_ms": 10000, "memory_bytes": 268435456, "output_bytes": 16777216},
            "determinism": "D3",
            "output_dir": self.out().display().to_string(),
        });
        Request::from_slice(&serde_json::to_vec(&doc).unwrap()).unwrap()
    }

    /// Run `operation`; the failure, or the bytes of the one output.
    pub fn run(&self, operation: &str, params: Value) -> Result<Vec<u8>, Fail> {
        run_request(self.request(operation, params), &self.out())
    }

    pub fn json(&self, operation: &str, params: Value) -> Value {
        match self.run(operation, params) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
            Err(f) => panic!("{operation} failed: {f:?}"),
        }
    }

    pub fn fail(&self, operation: &str, params: Value) -> Fail {
        match self.run(operation, params) {
            Ok(bytes) => panic!(
                "{operation} succeeded: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(400)])
            ),
            Err(f) => f,
        }
    }
}

pub fn input(path: &Path, kind: &str) -> Value {
    json!({
        "artifact_id": "0f6b1c9e-5d7a-4c1e-9a55-2f1d8b0c3e71",
        "path": path.display().to_string(),
        "kind": kind,
        "content_hash": "0".repeat(64),
        "size_bytes": 0,
    })
}

pub fn run_request(mut req: Request, out: &Path) -> Result<Vec<u8>, Fail> {
    mex_engine_context::handle(&mut req)?;
    let completion = req.completion();
    assert_eq!(completion.outputs.len(), 1, "one output per operation");
    Ok(std::fs::read(out.join(&completion.outputs[0].file)).unwrap())
}

pub fn search(query: &str, mode: &str, scopes: &[&str]) -> Value {
    json!({"query": query, "scopes": scopes, "mode": mode, "output": "json"})
}
