//! A jail-like request for the handler: inputs as files in a temp dir, an
//! output directory, and the completion's outputs read back.
#![allow(dead_code, reason = "each test file uses part of the helper")]

use std::path::{Path, PathBuf};

use mex_engine_sdk::{Fail, Request};
use serde_json::{Value, json};

pub struct Jail {
    pub dir: tempfile::TempDir,
    inputs: Vec<Value>,
    n: u32,
    /// The run's output budget.
    pub output_bytes: u64,
}

impl Jail {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        Self {
            dir,
            inputs: Vec::new(),
            n: 0,
            output_bytes: 268_435_456,
        }
    }

    /// Add an input file; returns its artifact id.
    pub fn input(&mut self, bytes: &[u8], media_type: &str) -> String {
        self.n += 1;
        let id = format!("00000000-0000-4000-8000-{:012}", self.n);
        let path = self.dir.path().join(format!("in-{}", self.n));
        std::fs::write(&path, bytes).unwrap();
        self.input_path(&id, &path, media_type);
        id
    }

    /// Add an input that is already on disk (big hostile files).
    pub fn input_path(&mut self, id: &str, path: &Path, media_type: &str) {
        let size = std::fs::metadata(path).unwrap().len();
        self.inputs.push(json!({
            "artifact_id": id,
            "path": path.to_str().unwrap(),
            "kind": "file",
            "media_type": media_type,
            "content_hash": "0".repeat(64),
            "size_bytes": size,
        }));
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Run `operation` with `params`; on success, the outputs as
    /// (file, media type, bytes).
    pub fn run(
        &self,
        operation: &str,
        params: Value,
    ) -> Result<Vec<(String, String, Vec<u8>)>, Fail> {
        let out = self.dir.path().join("out");
        let request = json!({
            "protocol": "mex-engine-1",
            "op_id": "00000000-0000-4000-8000-000000000000",
            "engine_id": "engine.wrangler",
            "implementation_id": "mex-engine-wrangler",
            "implementation_version": "0.1.0",
            "operation": operation,
            "params": params,
            "inputs": self.inputs,
            "budget": {"cpu_time_ms": 60000, "wall_time_ms": 120000, "memory_bytes": 1073741824u64, "output_bytes": self.output_bytes},
            "determinism": "D2",
            "output_dir": out.to_str().unwrap(),
        });
        let mut req = Request::from_slice(&serde_json::to_vec(&request).unwrap()).unwrap();
        mex_engine_wrangler::handle(&mut req)?;
        let completion = req.completion();
        Ok(completion
            .outputs
            .iter()
            .map(|o| {
                let bytes = std::fs::read(out.join(&o.file)).unwrap();
                (o.file.clone(), o.media_type.clone(), bytes)
            })
            .collect())
    }

    /// Run and parse the single JSON output.
    pub fn run_json(&self, operation: &str, params: Value) -> Value {
        let outs = self.run(operation, params).unwrap();
        assert_eq!(outs.len(), 1);
        serde_json::from_slice(&outs[0].2).unwrap()
    }

    /// Run, expecting a typed failure; returns it.
    pub fn fail(&self, operation: &str, params: Value) -> Fail {
        match self.run(operation, params) {
            Ok(o) => panic!(
                "expected a failure, got outputs {:?}",
                o.iter().map(|x| &x.0).collect::<Vec<_>>()
            ),
            Err(f) => f,
        }
    }
}
