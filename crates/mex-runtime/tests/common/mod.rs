//! Test engines and a runtime wired to a temporary home.
#![allow(
    dead_code,
    reason = "shared test helpers: not every test binary uses every helper, and a failed expectation panics"
)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mex_envelope::{ArtifactKind, EngineId, PlannedOperation};
use mex_gates::CapabilityPolicy;
use mex_recorder::{FlightRecorder, SqliteRecorder};
use mex_registry::Registry;
use mex_runtime::{
    Completion, Engine, EngineFailure, ExecutionContext, MexRuntime, MexRuntimeBuilder,
};
use serde_json::{Value, json};

/// One test engine for several engine ids: its behaviour comes from params.
pub struct TestEngine {
    pub id: &'static str,
    pub imp: &'static str,
}

impl Engine for TestEngine {
    fn engine_id(&self) -> EngineId {
        self.id.parse().unwrap()
    }
    fn implementation_id(&self) -> &str {
        self.imp
    }
    fn implementation_version(&self) -> semver::Version {
        semver::Version::new(1, 0, 0)
    }
    fn execute<'run>(
        &self,
        ctx: &ExecutionContext<'run>,
    ) -> Result<Completion<'run>, EngineFailure> {
        let text = ctx
            .params()
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let write = |bytes: &[u8]| {
            ctx.write_output(ArtifactKind::Report, "text/plain".parse().ok(), bytes)
                .map_err(|e| EngineFailure::new("CALC_FAILED", e.to_string()))
        };
        match ctx
            .params()
            .get("behaviour")
            .and_then(Value::as_str)
            .unwrap_or("ok")
        {
            "fail" => return Err(EngineFailure::new("CALC_FAILED", "asked to fail")),
            "over_budget" => {
                write(b"partial")?;
                return Err(EngineFailure::over_budget(
                    "CALC_FAILED",
                    "child killed for CPU",
                ));
            }
            "env" => {
                ctx.record_environment("kernel", "6.1-test");
                write(text.as_bytes())?;
            }
            "env_forged" => {
                ctx.record_environment("kernel", "6.1-test");
                ctx.record_environment("runtime", "forged");
                write(text.as_bytes())?;
            }
            "panic" => panic!("asked to panic"),
            "sleep" => {
                write(b"partial")?;
                let ms = ctx
                    .params()
                    .get("sleep_ms")
                    .and_then(Value::as_u64)
                    .unwrap_or(10_000);
                let until = Instant::now() + Duration::from_millis(ms);
                while Instant::now() < until && !ctx.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                write(b"late")?;
            }
            "spin" => {
                // Ignores cancellation entirely: the watchdog must still answer.
                let until = Instant::now()
                    + Duration::from_millis(
                        ctx.params()
                            .get("sleep_ms")
                            .and_then(Value::as_u64)
                            .unwrap_or(1000),
                    );
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            }
            "overflow" => {
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..64 {
                    if ctx
                        .write_output(ArtifactKind::Report, None, &chunk)
                        .is_err()
                    {
                        break;
                    }
                }
            }
            "read_foreign" => {
                let handle: mex_envelope::ArtifactHandle = serde_json::from_str(
                    ctx.params()
                        .get("foreign_handle")
                        .and_then(Value::as_str)
                        .unwrap_or("{}"),
                )
                .map_err(|e| EngineFailure::new("CALC_FAILED", e.to_string()))?;
                let bytes = ctx
                    .read_input(&handle)
                    .map_err(|e| EngineFailure::new("CALC_FAILED", e.to_string()))?;
                write(&bytes)?;
            }
            "big" | "big_tamper" => {
                // Past what the runtime holds in memory: staged as a file.
                let bytes = vec![b'b'; 300 * 1024];
                write(&bytes)?;
                if ctx.params().get("behaviour").and_then(Value::as_str) == Some("big_tamper") {
                    // A hostile engine rewrites its staged output after writing it.
                    let staged = ctx.workspace().join("staged").join("0000");
                    std::fs::write(&staged, vec![b'X'; 300 * 1024])
                        .map_err(|e| EngineFailure::new("CALC_FAILED", e.to_string()))?;
                }
            }
            "big_log_tamper" => {
                // A log part past the memory limit is staged as a file; the
                // engine rewrites it after writing it.
                ctx.write_log(&"l".repeat(300 * 1024))
                    .map_err(|e| EngineFailure::new("CALC_FAILED", e.to_string()))?;
                let staged = ctx.workspace().join("staged").join("0000");
                std::fs::write(&staged, "X".repeat(300 * 1024))
                    .map_err(|e| EngineFailure::new("CALC_FAILED", e.to_string()))?;
                write(text.as_bytes())?;
            }
            "scratch" => {
                let scratch = ctx.workspace().join("scratch.txt");
                std::fs::write(&scratch, text.as_bytes())
                    .map_err(|e| EngineFailure::new("CALC_FAILED", e.to_string()))?;
                let back = std::fs::read(&scratch)
                    .map_err(|e| EngineFailure::new("CALC_FAILED", e.to_string()))?;
                write(&back)?;
            }
            "log" => {
                ctx.write_log("line one\n")
                    .map_err(|e| EngineFailure::new("CALC_FAILED", e.to_string()))?;
                ctx.write_log("line two\n")
                    .map_err(|e| EngineFailure::new("CALC_FAILED", e.to_string()))?;
                write(text.as_bytes())?;
            }
            _ => {
                if let Ok(input) = ctx.read_param_input("input_ref") {
                    write(&input)?;
                }
                write(format!("echo: {text}").as_bytes())?;
                if ctx.operation().as_str() == "live.fetch" && text != "no-evidence" {
                    ctx.write_evidence(
                        ArtifactKind::Transcript,
                        "text/plain".parse().ok(),
                        b"captured",
                    )
                    .map_err(|e| EngineFailure::new("CALC_FAILED", e.to_string()))?;
                }
            }
        }
        Ok(ctx.complete())
    }
}

pub fn registry() -> Arc<Registry> {
    Arc::new(
        Registry::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/registry.json"))
            .unwrap(),
    )
}

pub fn policy() -> CapabilityPolicy {
    CapabilityPolicy::from_json_str(
        r#"{"policy_version":"mex-policy-1","default_profile":"default","profiles":{"default":{"grants":["fs.read:*","fs.write:artifacts"]}}}"#,
    )
    .unwrap()
}

pub struct Home {
    pub dir: tempfile::TempDir,
    pub recorder: Arc<dyn FlightRecorder>,
    pub store: Arc<mex_artifacts::ArtifactStore>,
}

pub fn home() -> Home {
    let dir = tempfile::tempdir().unwrap();
    let recorder: Arc<dyn FlightRecorder> = Arc::new(SqliteRecorder::open(dir.path()).unwrap());
    let store = Arc::new(mex_artifacts::ArtifactStore::at(dir.path().join("artifacts")).unwrap());
    Home {
        dir,
        recorder,
        store,
    }
}

pub fn builder(home: &Home) -> MexRuntimeBuilder {
    MexRuntime::builder()
        .registry(registry())
        .policy(policy())
        .store(home.store.clone())
        .recorder(home.recorder.clone())
        .engine(Arc::new(TestEngine {
            id: "engine.calc",
            imp: "calc",
        }))
        .engine(Arc::new(TestEngine {
            id: "engine.live",
            imp: "live",
        }))
        .engine(Arc::new(TestEngine {
            id: "engine.other",
            imp: "other",
        }))
        .trust_uncertified("engine.calc".parse().unwrap())
        .trust_uncertified("engine.live".parse().unwrap())
}

pub fn runtime(home: &Home) -> MexRuntime {
    builder(home).build().unwrap()
}

pub fn op(operation: &str, params: Value) -> PlannedOperation {
    let (engine, det, evidence) = match operation.split('.').next().unwrap() {
        "live" => (
            "engine.live",
            "D1",
            json!({"required": true, "capture": ["transcript"]}),
        ),
        "other" => ("engine.other", "D3", Value::Null),
        _ => ("engine.calc", "D3", Value::Null),
    };
    let mut doc = json!({
        "schema_version": "poe-1.0", "op_id": uuid::Uuid::new_v4().to_string(), "engine_id": engine,
        "engine_version_req": "^1", "operation": operation, "inputs": [], "params": params,
        "capabilities_requested": ["fs.write:artifacts"], "budget": {"wall_time_ms": 2000, "output_bytes": 1048576},
        "determinism": det
    });
    if !evidence.is_null() {
        doc["evidence_policy"] = evidence;
    }
    PlannedOperation::from_json_value(doc).unwrap()
}
