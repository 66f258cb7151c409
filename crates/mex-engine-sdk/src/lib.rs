//! # mex-engine-sdk: a mex process engine in Rust
//!
//! A process engine is a program mex runs under its sandbox and talks to
//! through the `mex-engine-1` protocol (`docs/engine-protocol.md`): one
//! request as JSON on stdin, outputs as files in the request's output
//! directory, one completion as JSON on stdout, logs on stderr. This crate
//! does the protocol; the engine is a function:
//!
//! ```no_run
//! use mex_engine_sdk::{Fail, Request};
//!
//! fn main() -> std::process::ExitCode {
//!     mex_engine_sdk::run(|req: &mut Request| {
//!         let name = req.param_str("name")?.to_owned();
//!         req.write_json("greeting.json", "artifact.dataset", &serde_json::json!({"hello": name}))
//!     })
//! }
//! ```
//!
//! Return [`Fail`] with a code from the engine's failure-code catalogue to
//! fail; mex maps any other code to `PROC_UNDECLARED_FAILURE_CODE`. The
//! wire types are `mex_envelope::protocol`'s, so the SDK cannot drift from
//! what mex parses.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

pub use mex_envelope::protocol::{
    CompletionError, CompletionOutput, CompletionStatus, EngineCompletion, EngineRequest,
    ProtocolVersion,
};
use serde_json::{Map, Value};

/// The largest request read from stdin (2 MiB; mex's envelopes are at most 1 MiB).
pub const MAX_REQUEST_BYTES: u64 = 2 << 20;

/// A typed failure: `code` from the engine's catalogue, and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    /// Failure code, e.g. `FOOD_MODEL_ERROR`.
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
}

impl Fail {
    /// A failure with this code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// One request, and the outputs claimed so far.
#[derive(Debug)]
pub struct Request {
    /// The request as mex sent it.
    pub doc: EngineRequest,
    outputs: Vec<CompletionOutput>,
    environment: BTreeMap<String, String>,
}

impl Request {
    /// Parse a request (what mex writes on stdin).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Fail> {
        let doc = serde_json::from_slice(bytes).map_err(|e| {
            Fail::new(
                "PROC_BAD_REQUEST",
                format!("not a mex-engine-1 request: {e}"),
            )
        })?;
        Ok(Self {
            doc,
            outputs: Vec::new(),
            environment: BTreeMap::new(),
        })
    }

    /// The operation, e.g. `food_safety.pasteurization_time`.
    pub fn operation(&self) -> &str {
        self.doc.operation.as_str()
    }

    /// The params (validated by mex against the operation's schema).
    pub fn params(&self) -> &Map<String, Value> {
        &self.doc.params
    }

    /// A string param.
    pub fn param_str(&self, name: &str) -> Result<&str, Fail> {
        self.params()
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| Fail::new("PROC_BAD_REQUEST", format!("params.{name} is not a string")))
    }

    /// A number param.
    pub fn param_f64(&self, name: &str) -> Result<f64, Fail> {
        self.params()
            .get(name)
            .and_then(Value::as_f64)
            .ok_or_else(|| Fail::new("PROC_BAD_REQUEST", format!("params.{name} is not a number")))
    }

    /// The path of the input a `*_ref` param names.
    pub fn input_path(&self, param: &str) -> Result<PathBuf, Fail> {
        let id = self.param_str(param)?;
        self.doc
            .inputs
            .iter()
            .find(|i| i.artifact_id.to_string() == id)
            .map(|i| PathBuf::from(&i.path))
            .ok_or_else(|| Fail::new("PROC_BAD_REQUEST", format!("params.{param} names no input")))
    }

    /// The bytes of the input a `*_ref` param names.
    pub fn read_input(&self, param: &str) -> Result<Vec<u8>, Fail> {
        let path = self.input_path(param)?;
        std::fs::read(&path)
            .map_err(|e| Fail::new("PROC_BAD_REQUEST", format!("{}: {e}", path.display())))
    }

    /// Write `bytes` as the output file `file` (relative to the output
    /// directory) and claim it with its registry output `kind` and media type.
    pub fn write_output(
        &mut self,
        file: &str,
        kind: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), Fail> {
        let path = PathBuf::from(&self.doc.output_dir).join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                Fail::new("PROC_OUTPUT_ERROR", format!("{}: {e}", parent.display()))
            })?;
        }
        std::fs::write(&path, bytes)
            .map_err(|e| Fail::new("PROC_OUTPUT_ERROR", format!("{}: {e}", path.display())))?;
        self.outputs.push(CompletionOutput {
            file: file.to_owned(),
            kind: kind.to_owned(),
            media_type: media_type.to_owned(),
        });
        Ok(())
    }

    /// The key material of a granted `secrets.use:<key_id>` capability, as
    /// mex delivered it in the request (never from a file). `None` when the
    /// key was not granted to this run. Do not copy it into outputs, logs or
    /// failure messages; it is zeroed when the request is dropped.
    pub fn secret(&self, key_id: &str) -> Option<&str> {
        self.doc.secrets.get(key_id).map(|s| s.expose())
    }

    /// Whether the run was granted `capability` (e.g. `net.http`), exactly
    /// as written.
    pub fn has_capability(&self, capability: &str) -> bool {
        self.doc
            .capabilities
            .iter()
            .any(|c| c.to_string() == capability)
    }

    /// Create the output file `file` (relative to the output directory) for
    /// streaming writes; claim it with [`Request::claim_output`] once it is
    /// complete.
    pub fn create_output(&self, file: &str) -> Result<(std::fs::File, PathBuf), Fail> {
        let path = PathBuf::from(&self.doc.output_dir).join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                Fail::new("PROC_OUTPUT_ERROR", format!("{}: {e}", parent.display()))
            })?;
        }
        let f = std::fs::File::create(&path)
            .map_err(|e| Fail::new("PROC_OUTPUT_ERROR", format!("{}: {e}", path.display())))?;
        Ok((f, path))
    }

    /// Claim a file written through [`Request::create_output`].
    pub fn claim_output(&mut self, file: &str, kind: &str, media_type: &str) {
        self.outputs.push(CompletionOutput {
            file: file.to_owned(),
            kind: kind.to_owned(),
            media_type: media_type.to_owned(),
        });
    }

    /// Write a JSON output (`application/json`) in a stable form.
    pub fn write_json(&mut self, file: &str, kind: &str, value: &Value) -> Result<(), Fail> {
        let bytes =
            serde_json::to_vec(value).map_err(|e| Fail::new("PROC_OUTPUT_ERROR", e.to_string()))?;
        self.write_output(file, kind, "application/json", &bytes)
    }

    /// Add an environment identifier to the run's provenance (recorded as
    /// `engine.<key>`; reserved keys are refused by mex).
    pub fn environment(&mut self, key: &str, value: &str) {
        self.environment.insert(key.to_owned(), value.to_owned());
    }

    /// The completion for what was claimed.
    pub fn completion(self) -> EngineCompletion {
        EngineCompletion {
            protocol: ProtocolVersion::V1,
            status: CompletionStatus::Succeeded,
            outputs: self.outputs,
            error: None,
            environment: self.environment,
        }
    }
}

/// The completion of a failure.
pub fn failed(fail: Fail) -> EngineCompletion {
    EngineCompletion {
        protocol: ProtocolVersion::V1,
        status: CompletionStatus::Failed,
        outputs: Vec::new(),
        error: Some(CompletionError {
            code: fail.code,
            message: fail.message,
        }),
        environment: BTreeMap::new(),
    }
}

/// Read the request from stdin, call `engine`, print the completion on
/// stdout. The exit status is 0 whenever a completion was printed.
pub fn run(engine: impl FnOnce(&mut Request) -> Result<(), Fail>) -> ExitCode {
    let mut bytes = Vec::new();
    let read = std::io::stdin()
        .take(MAX_REQUEST_BYTES)
        .read_to_end(&mut bytes);
    let parsed = read.map(|_| Request::from_slice(&bytes));
    // The request may carry key material: zero the raw copy at once.
    zeroize::Zeroize::zeroize(&mut bytes);
    let completion = match parsed {
        Err(e) => failed(Fail::new(
            "PROC_BAD_REQUEST",
            format!("cannot read stdin: {e}"),
        )),
        Ok(parsed) => match parsed {
            Err(f) => failed(f),
            Ok(mut req) => match engine(&mut req) {
                Ok(()) => req.completion(),
                Err(f) => failed(f),
            },
        },
    };
    let Ok(text) = serde_json::to_vec(&completion) else {
        return ExitCode::FAILURE;
    };
    let mut out = std::io::stdout().lock();
    if out.write_all(&text).and_then(|()| out.flush()).is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
