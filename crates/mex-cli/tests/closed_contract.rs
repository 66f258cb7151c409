//! The in-process contract, attacked as an engine author outside the
//! workspace would: each engine here uses only public APIs, and each attack
//! ends in a refusal, a failed run with a named code, or a problem that
//! `mex artifacts verify` / `mex recorder verify` reports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use mex_artifacts::{ArtifactStore, PutOptions};
use mex_envelope::{
    ArtifactHandle, ArtifactKind, ArtifactProducer, Classification, EngineId, EngineResult,
    ResultStatus, Sha256Digest,
};
use mex_gates::CapabilityPolicy;
use mex_recorder::{EventDraft, EventKind, FlightRecorder, SqliteRecorder};
use mex_registry::Registry;
use mex_runtime::{
    Completion, Engine, EngineFailure, ExecutionContext, MexRuntime, MexRuntimeBuilder,
    RuntimeError, WriteError,
};
use serde_json::{Value, json};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shipped_registry() -> Arc<Registry> {
    Arc::new(Registry::load(workspace().join("mechanical_engines.json")).unwrap())
}

/// The shipped registry with an in-process implementation for
/// `engine.sous_chef` (declared-only in the shipped file).
fn chef_registry(dir: &Path) -> Arc<Registry> {
    let mut doc: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("mechanical_engines.json")).unwrap(),
    )
    .unwrap();
    for e in doc["engines"].as_array_mut().unwrap() {
        if e["engine_id"] == "engine.sous_chef" {
            e["implementations"] =
                json!([{"id": "chef", "version": "0.1.0", "kind": "in_process"}]);
        }
    }
    copy_tree(&workspace().join("registry"), &dir.join("registry"));
    let path = dir.join("mechanical_engines.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    Arc::new(Registry::load(&path).unwrap())
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// What the attacking engine does.
#[derive(Clone)]
enum Attack {
    WriteAfterComplete,
    BehindTheBack,
    PlantCorruptBlob,
    Png,
    Environment(&'static str),
}

struct Attacker {
    engine: &'static str,
    imp: &'static str,
    attack: Attack,
    /// The home, as an attacker who found it would know it.
    home: PathBuf,
    seen: Arc<Mutex<Vec<String>>>,
}

const REPORT: &[u8] = br#"{"value": 5}"#;

impl Engine for Attacker {
    fn engine_id(&self) -> EngineId {
        self.engine.parse().unwrap()
    }
    fn implementation_id(&self) -> &str {
        self.imp
    }
    fn implementation_version(&self) -> semver::Version {
        semver::Version::new(0, 1, 0)
    }
    fn execute<'run>(
        &self,
        ctx: &ExecutionContext<'run>,
    ) -> Result<Completion<'run>, EngineFailure> {
        let seen = |s: String| self.seen.lock().unwrap().push(s);
        let json = || "application/json".parse().ok();
        let fail = |e: WriteError| EngineFailure::new("PHYS_EVAL_ERROR", e.to_string());
        match &self.attack {
            Attack::WriteAfterComplete => {
                ctx.write_output(ArtifactKind::DatasetSlice, json(), REPORT)
                    .map_err(fail)?;
                let done = ctx.complete();
                let late = ctx.write_output(ArtifactKind::DatasetSlice, json(), b"{\"late\":1}");
                seen(format!("{late:?}"));
                return Ok(done);
            }
            Attack::BehindTheBack => {
                // The workspace path does not lead back to the home.
                for dir in ctx.workspace().ancestors() {
                    if dir.join("recorder.sqlite3").exists() || dir.join("artifacts").exists() {
                        seen(format!("home derivable: {}", dir.display()));
                    }
                }
                // Knowing the home anyway: a record with a forged producer
                // through the public store API...
                let store = ArtifactStore::at(self.home.join("artifacts")).unwrap();
                let mut options = PutOptions::new(ArtifactKind::Report, Classification::Low);
                options.producer = Some(ArtifactProducer {
                    op_id: ctx.op_id(),
                    engine_id: self.engine_id(),
                    engine_version: semver::Version::new(0, 1, 0),
                    implementation_id: self.imp.to_owned(),
                    implementation_version: semver::Version::new(0, 1, 0),
                    operation: ctx.operation().clone(),
                    config_hash: Sha256Digest::of(b""),
                    input_hashes: Vec::new(),
                    determinism: ctx.determinism(),
                });
                let forged = store.put_bytes(b"forged by producer", &options).unwrap();
                // ...a blob and a record written with plain std::fs...
                let bytes = b"planted with std::fs";
                let hex = Sha256Digest::of(bytes).to_hex();
                let shard = self.home.join("artifacts/blobs/sha256").join(&hex[..2]);
                std::fs::create_dir_all(&shard).unwrap();
                std::fs::write(shard.join(&hex[2..]), bytes).unwrap();
                let mut manifest = store.manifest(forged.artifact_id).unwrap();
                manifest.artifact.artifact_id = uuid::Uuid::new_v4();
                manifest.artifact.content_hash = Sha256Digest::of(bytes);
                manifest.artifact.size_bytes = bytes.len() as u64;
                manifest.producer = None;
                rusqlite::Connection::open(self.home.join("artifacts/index.db"))
                    .unwrap()
                    .execute(
                        "INSERT INTO records (id, manifest) VALUES (?1, ?2)",
                        rusqlite::params![
                            manifest.artifact.artifact_id.to_string(),
                            serde_json::to_vec(&manifest).unwrap()
                        ],
                    )
                    .unwrap();
                // ...and a forged completion in the Flight Recorder.
                let recorder = SqliteRecorder::open(&self.home).unwrap();
                recorder
                    .append(
                        EventDraft::new(EventKind::OpCompleted)
                            .with_op_id(uuid::Uuid::new_v4())
                            .with_status(ResultStatus::Succeeded),
                    )
                    .unwrap();
                seen(forged.artifact_id.to_string());
                seen(manifest.artifact.artifact_id.to_string());
            }
            Attack::PlantCorruptBlob => {
                // Same size as the real output, wrong bytes, at its digest's path.
                let hex = Sha256Digest::of(REPORT).to_hex();
                let shard = self.home.join("artifacts/blobs/sha256").join(&hex[..2]);
                std::fs::create_dir_all(&shard).unwrap();
                let path = shard.join(&hex[2..]);
                if !path.exists() {
                    std::fs::write(&path, vec![b'x'; REPORT.len()]).unwrap();
                }
            }
            Attack::Png => {
                ctx.write_output(
                    ArtifactKind::DatasetSlice,
                    "image/png".parse().ok(),
                    b"\x89PNG",
                )
                .map_err(fail)?;
                return Ok(ctx.complete());
            }
            Attack::Environment(key) => ctx.record_environment(key, "forged"),
        }
        ctx.write_output(ArtifactKind::DatasetSlice, json(), REPORT)
            .map_err(fail)?;
        Ok(ctx.complete())
    }
}

struct Home {
    dir: tempfile::TempDir,
    store: Arc<ArtifactStore>,
    recorder: Arc<dyn FlightRecorder>,
}

fn home() -> Home {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ArtifactStore::at(dir.path().join("artifacts")).unwrap());
    let recorder: Arc<dyn FlightRecorder> =
        Arc::new(SqliteRecorder::open_keyed(dir.path()).unwrap());
    Home {
        dir,
        store,
        recorder,
    }
}

fn builder(home: &Home, registry: Arc<Registry>, engine: Arc<dyn Engine>) -> MexRuntimeBuilder {
    let id = engine.engine_id();
    MexRuntime::builder()
        .registry(registry)
        .policy(CapabilityPolicy::default_non_sensitive())
        .store(home.store.clone())
        .recorder(home.recorder.clone())
        .engine(engine)
        .trust_uncertified(id)
        .result_cache(false)
}

fn attacker(home: &Home, attack: Attack) -> (Arc<Attacker>, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let engine = Arc::new(Attacker {
        engine: "engine.physics",
        imp: "mex-engine-physics",
        attack,
        home: home.dir.path().to_path_buf(),
        seen: seen.clone(),
    });
    (engine, seen)
}

/// An import, recorded the way `mex artifacts put` records it.
fn input(home: &Home, bytes: &[u8], media: &str) -> ArtifactHandle {
    let mut options = PutOptions::new(ArtifactKind::File, Classification::Low);
    options.media_type = media.parse().ok();
    let h = home.store.put_bytes(bytes, &options).unwrap();
    home.recorder
        .append(EventDraft::artifact_written(
            uuid::Uuid::nil(),
            h.content_hash,
            h.size_bytes,
            media,
        ))
        .unwrap();
    h
}

fn physics_op(home: &Home) -> Value {
    let expr = input(home, b"F / A", "text/plain");
    let vars = input(home, br#"{"F": "10 N", "A": "2 m^2"}"#, "application/json");
    json!({
        "schema_version": "poe-1.0",
        "op_id": uuid::Uuid::new_v4(),
        "engine_id": "engine.physics",
        "engine_version_req": "^0.1",
        "operation": "physics.evaluate_formula",
        "inputs": [expr, vars],
        "params": {"expr_ref": expr.artifact_id, "vars_ref": vars.artifact_id, "output_unit": "Pa"},
        "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts"],
        "budget": {"wall_time_ms": 10000, "output_bytes": 1048576},
        "determinism": "D3"
    })
}

fn run(rt: &MexRuntime, op: &Value) -> EngineResult {
    rt.execute_json(op.to_string().as_bytes())
}

fn has_code(r: &EngineResult, code: &str) -> bool {
    r.errors.iter().any(|e| e.code.as_str() == code)
}

fn mex(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mex"))
        .args(["--home", home.to_str().unwrap()])
        .arg("--registry")
        .arg(workspace().join("mechanical_engines.json"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("MEX_HOME")
        .output()
        .unwrap()
}

#[test]
fn a_write_after_complete_is_refused_and_never_lands() {
    let home = home();
    let (engine, seen) = attacker(&home, Attack::WriteAfterComplete);
    let rt = builder(&home, shipped_registry(), engine).build().unwrap();
    let r = run(&rt, &physics_op(&home));
    assert_eq!(r.status, ResultStatus::Succeeded, "{r:?}");
    assert_eq!(seen.lock().unwrap().as_slice(), ["Err(Closed)"]);
    assert_eq!(r.outputs.len(), 1, "{r:?}");
    assert_eq!(home.store.read(&r.outputs[0]).unwrap(), REPORT);
}

#[test]
fn writes_behind_the_runtimes_back_are_reported_by_both_verifiers() {
    let home = home();
    let (engine, seen) = attacker(&home, Attack::BehindTheBack);
    let rt = builder(&home, shipped_registry(), engine).build().unwrap();
    let r = run(&rt, &physics_op(&home));
    assert_eq!(r.status, ResultStatus::Succeeded, "{r:?}");
    let seen = seen.lock().unwrap().clone();
    assert!(
        !seen.iter().any(|s| s.starts_with("home derivable")),
        "{seen:?}"
    );
    assert!(!rt.workspace_root().starts_with(home.dir.path()));
    drop(rt);

    let out = mex(home.dir.path(), &["artifacts", "verify", "--json"]);
    assert!(!out.status.success(), "artifacts verify passed");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let unaccounted: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "unaccounted")
        .map(|p| p["artifact_id"].as_str().unwrap())
        .collect();
    // Both planted records, and nothing the runtime wrote.
    assert_eq!(unaccounted.len(), 2, "{report:#}");
    // Each names the record to look at: its row in the store's index.
    for p in report["problems"].as_array().unwrap() {
        if p["kind"] == "unaccounted" {
            let path = p["path"].as_str().unwrap();
            let want = home.dir.path().join(format!(
                "artifacts/index.db[records:{}]",
                p["artifact_id"].as_str().unwrap()
            ));
            assert_eq!(path, want.display().to_string(), "{report:#}");
        }
    }
    for id in &seen {
        assert!(
            unaccounted.contains(&id.as_str()),
            "{id} not reported: {report:#}"
        );
    }

    let out = mex(home.dir.path(), &["recorder", "verify", "--json"]);
    assert!(!out.status.success(), "recorder verify passed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("foreign_writer"), "{text}");
}

#[test]
fn a_recorder_verify_of_an_untouched_keyed_home_passes() {
    // The counterpart of the forged-event case: the runtime's own events
    // all carry valid tags.
    let home = home();
    let (engine, _) = attacker(&home, Attack::Environment("kernel"));
    let rt = builder(&home, shipped_registry(), engine).build().unwrap();
    assert_eq!(run(&rt, &physics_op(&home)).status, ResultStatus::Succeeded);
    assert!(home.recorder.verify().unwrap().is_ok());
    drop(rt);
    let out = mex(home.dir.path(), &["artifacts", "verify", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_corrupt_blob_planted_at_an_outputs_path_is_repaired() {
    let home = home();
    let (engine, _) = attacker(&home, Attack::PlantCorruptBlob);
    let rt = builder(&home, shipped_registry(), engine).build().unwrap();
    for _ in 0..2 {
        let r = run(&rt, &physics_op(&home));
        assert_eq!(r.status, ResultStatus::Succeeded, "{r:?}");
        assert_eq!(home.store.read(&r.outputs[0]).unwrap(), REPORT);
    }
    assert!(home.store.verify().unwrap().is_ok());
}

#[test]
fn an_image_for_a_recipe_fails_the_run() {
    let home = home();
    let scratch = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let engine = Arc::new(Attacker {
        engine: "engine.sous_chef",
        imp: "chef",
        attack: Attack::Png,
        home: home.dir.path().to_path_buf(),
        seen,
    });
    let rt = builder(&home, chef_registry(scratch.path()), engine)
        .build()
        .unwrap();
    let recipe = input(&home, b"2 eggs\n100 g flour", "text/plain");
    let op = json!({
        "schema_version": "poe-1.0",
        "op_id": uuid::Uuid::new_v4(),
        "engine_id": "engine.sous_chef",
        "engine_version_req": "^0.1",
        "operation": "sous_chef.parse_recipe",
        "inputs": [recipe],
        "params": {"recipe_ref": recipe.artifact_id, "output": "json"},
        "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts"],
        "budget": {"wall_time_ms": 10000, "output_bytes": 1048576},
        "determinism": "D3"
    });
    let r = run(&rt, &op);
    assert_eq!(r.status, ResultStatus::Failed, "{r:?}");
    assert!(has_code(&r, "RUNTIME.UNDECLARED_OUTPUT"), "{:?}", r.errors);
    assert!(r.outputs.is_empty());
}

#[test]
fn reserved_environment_keys_fail_the_run_in_any_spelling() {
    let home = home();
    for key in [
        "Execution",
        "EXECUTION",
        "sandbox.x",
        "Sandbox.Kernel",
        "EXECUT\u{130}ON",
        "\u{17F}andbox.x",
        "served_from_CACHE",
    ] {
        let (engine, _) = attacker(&home, Attack::Environment(key));
        let rt = builder(&home, shipped_registry(), engine).build().unwrap();
        let r = run(&rt, &physics_op(&home));
        assert_eq!(r.status, ResultStatus::Failed, "{key}: {r:?}");
        assert!(
            has_code(&r, "RUNTIME.RESERVED_ENVIRONMENT_KEY"),
            "{key}: {:?}",
            r.errors
        );
    }
}

/// Reports a process implementation's identity but runs in process.
struct Impostor;

impl Engine for Impostor {
    fn engine_id(&self) -> EngineId {
        "engine.sandbox".parse().unwrap()
    }
    fn implementation_id(&self) -> &str {
        "mex-engine-sandbox"
    }
    fn implementation_version(&self) -> semver::Version {
        semver::Version::new(0, 1, 0)
    }
    fn execute<'run>(
        &self,
        ctx: &ExecutionContext<'run>,
    ) -> Result<Completion<'run>, EngineFailure> {
        Ok(ctx.complete())
    }
}

#[test]
fn an_in_process_impostor_for_a_sandboxed_implementation_is_refused_at_build() {
    let home = home();
    let built = builder(&home, shipped_registry(), Arc::new(Impostor)).build();
    match built {
        Err(RuntimeError::EngineKindMismatch {
            declared, actual, ..
        }) => assert_eq!((declared, actual), ("subprocess", "in_process")),
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("the impostor was accepted"),
    }
}

#[test]
fn builder_default_and_runtime_builder_agree() {
    // Both start with the D3 result cache on: a repeated D3 operation is
    // served from the cache by either.
    for from_default in [false, true] {
        let home = home();
        let (engine, _) = attacker(&home, Attack::Environment("kernel"));
        let start = if from_default {
            MexRuntimeBuilder::default()
        } else {
            MexRuntime::builder()
        };
        let rt = start
            .registry(shipped_registry())
            .policy(CapabilityPolicy::default_non_sensitive())
            .store(home.store.clone())
            .recorder(home.recorder.clone())
            .engine(engine)
            .trust_uncertified("engine.physics".parse().unwrap())
            .build()
            .unwrap();
        let mut op = physics_op(&home);
        assert_eq!(run(&rt, &op).status, ResultStatus::Succeeded);
        op["op_id"] = json!(uuid::Uuid::new_v4());
        let again = run(&rt, &op);
        assert_eq!(again.status, ResultStatus::Succeeded, "{again:?}");
        assert!(again.served_from_cache, "from_default={from_default}");
        assert_eq!(rt.runs_dispatched(), 1, "from_default={from_default}");
    }
}
