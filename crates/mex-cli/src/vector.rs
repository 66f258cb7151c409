//! `mex registry pin` and `mex registry vector new`: the authoring helpers
//! that fill in digests and sizes, so an engine author never computes one by
//! hand.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use mex_envelope::{ArtifactKind, Classification, Input, PlannedOperation, Sha256Digest};
use serde_json::{Map, Value, json};

use crate::cli::RegistryCommand;
use crate::home::Home;
use crate::out::outln;
use crate::{CliError, exit};

/// `mex registry pin`
#[derive(Debug, Args)]
pub struct PinArgs {
    /// Files to hash.
    pub files: Vec<PathBuf>,
    /// Rewrite the pins in this overlay: every `sha256` of a process
    /// implementation (and of its `files`) becomes its file's current digest.
    #[arg(long)]
    pub overlay: Option<PathBuf>,
}

/// `mex registry vector ...`
#[derive(Debug, Subcommand)]
pub enum VectorCommand {
    /// Write a golden vector: the PlannedOperation file (input digests and
    /// sizes filled in) and its payloads under `vectors/` beside the file
    /// that declares the engine; run it once (the engine need not be
    /// certified yet) and print the `conformance_vectors` entry to add,
    /// with the output digest recorded.
    New(VectorNewArgs),
}

/// `mex registry vector new`
#[derive(Debug, Args)]
pub struct VectorNewArgs {
    /// Engine id, e.g. engine.sous_chef.
    #[arg(long)]
    pub engine: String,
    /// Operation, e.g. sous_chef.scale_recipe.
    #[arg(long)]
    pub op: String,
    /// Input files, in order. A param the operation declares as an artifact
    /// param and `--params` leaves out gets the next input; `"$1"`, `"$2"`
    /// in `--params` name inputs explicitly.
    #[arg(long = "input", num_args = 1..)]
    pub inputs: Vec<PathBuf>,
    /// The params object (JSON).
    #[arg(long, default_value = "{}")]
    pub params: String,
    /// Vector id (default: golden-<op name>).
    #[arg(long)]
    pub id: Option<String>,
}

/// Dispatch `mex registry pin|vector`.
pub fn registry(home: &Home, cmd: &RegistryCommand) -> Result<u8, CliError> {
    match cmd {
        RegistryCommand::Pin(args) => pin(args),
        RegistryCommand::Vector(VectorCommand::New(args)) => vector_new(home, args),
        RegistryCommand::Check { .. } => Ok(exit::OK),
    }
}

fn digest_of(path: &Path) -> Result<Sha256Digest, CliError> {
    std::fs::read(path)
        .map(|b| Sha256Digest::of(&b))
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))
}

fn pin(args: &PinArgs) -> Result<u8, CliError> {
    for f in &args.files {
        outln!("{}  {}", digest_of(f)?, f.display());
    }
    let Some(overlay) = &args.overlay else {
        return Ok(exit::OK);
    };
    let mut text = std::fs::read_to_string(overlay)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", overlay.display())))?;
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::usage(format!("{} is not JSON: {e}", overlay.display())))?;
    let base = overlay.parent().unwrap_or(Path::new("."));
    let mut changed = 0;
    let engines = doc.get("engines").and_then(Value::as_array).cloned();
    for engine in engines.unwrap_or_default() {
        let imps = engine.get("implementations").and_then(Value::as_array);
        for imp in imps.into_iter().flatten() {
            if !matches!(
                imp.get("kind").and_then(Value::as_str),
                Some("process" | "wasm")
            ) {
                continue;
            }
            let mut pins = vec![imp.clone()];
            pins.extend(
                imp.get("files")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            );
            for p in pins {
                let (Some(rel), Some(old)) = (
                    p.get("path").and_then(Value::as_str),
                    p.get("sha256").and_then(Value::as_str),
                ) else {
                    continue;
                };
                let new = digest_of(&base.join(rel))?.to_string();
                if new != old {
                    // Digests are unique 64-hex strings: replace the text
                    // so the rest of the file keeps its layout.
                    text = text.replace(&format!("\"{old}\""), &format!("\"{new}\""));
                    outln!("pinned {rel}: {new}");
                    changed += 1;
                }
            }
        }
    }
    if changed > 0 {
        std::fs::write(overlay, text)
            .map_err(|e| CliError::usage(format!("cannot write {}: {e}", overlay.display())))?;
    }
    outln!(
        "{}: {changed} pin(s) updated; re-certify with `mex conformance --engine ...`",
        overlay.display()
    );
    Ok(exit::OK)
}

/// A stable UUID (version 4 layout) from a name.
fn stable_uuid(name: &str) -> uuid::Uuid {
    let d = Sha256Digest::of(name.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_bytes()[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

fn media_type_of(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => "application/json",
        Some("md") => "text/markdown",
        Some("csv") => "text/csv",
        Some("txt") => "text/plain",
        Some("html") => "text/html",
        _ => "application/octet-stream",
    }
}

/// The file that declares `engine`: the overlay in effect, else the main
/// registry file.
fn declaring_file(home: &Home, engine: &str) -> Result<PathBuf, CliError> {
    let overlays = mex_registry::internal::overlay_files(&home.registry_path, &home.registry_dirs)
        .map_err(|e| CliError::usage(e.to_string()))?;
    for f in overlays {
        let declares = std::fs::read_to_string(&f)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v.get("engines").and_then(Value::as_array).cloned())
            .is_some_and(|es| {
                es.iter()
                    .any(|e| e.get("engine_id").and_then(Value::as_str) == Some(engine))
            });
        if declares {
            return Ok(f);
        }
    }
    Ok(home.registry_path.clone())
}

fn vector_new(home: &Home, args: &VectorNewArgs) -> Result<u8, CliError> {
    let registry = home.registry()?;
    let engine_id = args
        .engine
        .parse()
        .map_err(|e| CliError::usage(format!("--engine: {e}")))?;
    let op_name = args
        .op
        .parse()
        .map_err(|e| CliError::usage(format!("--op: {e}")))?;
    let engine = registry
        .engine(&engine_id)
        .map_err(|e| CliError::usage(e.to_string()))?;
    let operation = engine
        .operation(&op_name)
        .map_err(|e| CliError::usage(e.to_string()))?;
    let short = args.op.split_once('.').map_or(args.op.as_str(), |(_, o)| o);
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("golden-{}", short.replace('_', "-")));
    let decl = declaring_file(home, &args.engine)?;
    let base = decl.parent().unwrap_or(Path::new(".")).to_path_buf();
    let vectors = base.join("vectors");
    std::fs::create_dir_all(&vectors)
        .map_err(|e| CliError::usage(format!("cannot create {}: {e}", vectors.display())))?;
    let base_canon = base.canonicalize().unwrap_or_else(|_| base.clone());

    // Inputs: payload files inside the declaring directory (copied there
    // when they are elsewhere) and their handles.
    let mut handles = Vec::new();
    let mut payloads = Vec::new();
    for (n, input) in args.inputs.iter().enumerate() {
        let bytes = std::fs::read(input)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", input.display())))?;
        let canon = input.canonicalize().unwrap_or_else(|_| input.clone());
        let rel = match canon.strip_prefix(&base_canon) {
            Ok(rel) => rel.to_path_buf(),
            Err(_) => {
                let name = input.file_name().map_or_else(
                    || format!("input-{n}"),
                    |n| n.to_string_lossy().into_owned(),
                );
                let rel = PathBuf::from("vectors").join(format!("{id}.{name}"));
                std::fs::write(base.join(&rel), &bytes)
                    .map_err(|e| CliError::usage(format!("cannot write {}: {e}", rel.display())))?;
                rel
            }
        };
        let artifact_id = stable_uuid(&format!("{}/{id}/input/{n}", args.engine));
        handles.push(json!({
            "artifact_id": artifact_id,
            "kind": "file",
            "content_hash": Sha256Digest::of(&bytes),
            "size_bytes": bytes.len(),
            "classification": "low",
            "exportable": true,
            "media_type": media_type_of(input),
        }));
        payloads.push(json!({"artifact_id": artifact_id, "file": rel.to_string_lossy()}));
    }

    // Params: "$n" placeholders, then artifact params filled in order.
    let mut params: Map<String, Value> = serde_json::from_str(&args.params)
        .map_err(|e| CliError::usage(format!("--params is not a JSON object: {e}")))?;
    let id_of = |n: usize| handles.get(n).map(|h| h["artifact_id"].clone());
    let mut used = vec![false; handles.len()];
    for v in params.values_mut() {
        if let Some(n) = v
            .as_str()
            .and_then(|s| s.strip_prefix('$'))
            .and_then(|s| s.parse::<usize>().ok())
            && n >= 1
            && let Some(idv) = id_of(n - 1)
        {
            *v = idv;
            used[n - 1] = true;
        }
    }
    let mut next = used.iter().position(|u| !u);
    for ap in &operation.artifact_params {
        if params.contains_key(&ap.param) {
            continue;
        }
        if ap.many {
            let rest: Vec<Value> = (0..handles.len())
                .filter(|i| !used[*i])
                .filter_map(id_of)
                .collect();
            used.iter_mut().for_each(|u| *u = true);
            params.insert(ap.param.clone(), Value::Array(rest));
        } else if let Some(n) = next {
            used[n] = true;
            if let Some(idv) = id_of(n) {
                params.insert(ap.param.clone(), idv);
            }
        }
        next = used.iter().position(|u| !u);
    }

    let op_doc = json!({
        "schema_version": "poe-1.0",
        "op_id": stable_uuid(&format!("{}/{id}/op", args.engine)),
        "engine_id": args.engine,
        "engine_version_req": "*",
        "operation": args.op,
        "inputs": handles,
        "params": params,
        "capabilities_requested": operation.required_capabilities.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "budget": {},
        "determinism": operation.determinism.to_string(),
    });
    let op_text = serde_json::to_string_pretty(&op_doc)
        .map_err(|e| CliError::internal(e.to_string()))?
        + "\n";
    let planned = PlannedOperation::from_json_str(&op_text)
        .map_err(|e| CliError::usage(format!("the vector's operation does not parse: {e}")))?;
    let op_rel = PathBuf::from("vectors").join(format!("{id}.json"));
    std::fs::write(base.join(&op_rel), &op_text)
        .map_err(|e| CliError::usage(format!("cannot write {}: {e}", op_rel.display())))?;
    outln!("wrote {}", base.join(&op_rel).display());

    // One run, in a scratch home, to record the output digest.
    let digest = run_once(home, registry.clone(), &planned, &args.inputs)?;
    let mut expect =
        json!({"outcome": "succeeded", "stability": operation.determinism.to_string()});
    if let Some(d) = &digest {
        expect["output_digest"] = json!(d.to_string());
    }
    let entry = json!({
        "id": id,
        "kind": "golden",
        "description": format!("{} on {} input(s); output digest recorded by `mex registry vector new`", args.op, args.inputs.len()),
        "operation": args.op,
        "operation_file": op_rel.to_string_lossy(),
        "payloads": payloads,
        "expect": expect,
    });
    outln!(
        "add this to the \"conformance_vectors\" of {} in {}:",
        args.engine,
        decl.display()
    );
    outln!(
        "{}",
        serde_json::to_string_pretty(&entry).map_err(|e| CliError::internal(e.to_string()))?
    );
    Ok(exit::OK)
}

fn run_once(
    home: &Home,
    registry: Arc<mex_registry::Registry>,
    planned: &PlannedOperation,
    inputs: &[PathBuf],
) -> Result<Option<Sha256Digest>, CliError> {
    let scratch =
        tempfile::tempdir().map_err(|e| CliError::internal(format!("scratch directory: {e}")))?;
    let store = Arc::new(
        mex_artifacts::ArtifactStore::at(scratch.path().join("artifacts"))
            .map_err(|e| CliError::internal(e.to_string()))?,
    );
    let mut op = planned.clone();
    let mut renames = Vec::new();
    for (input, path) in op.inputs.iter_mut().zip(inputs) {
        if let Input::Artifact(h) = input {
            let bytes = std::fs::read(path)
                .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
            let mut options =
                mex_artifacts::PutOptions::new(ArtifactKind::File, Classification::Low);
            options.media_type = h.media_type.clone();
            let stored = store
                .put_bytes(&bytes, &options)
                .map_err(|e| CliError::internal(e.to_string()))?;
            renames.push((h.artifact_id.to_string(), stored.artifact_id.to_string()));
            *h = stored;
        }
    }
    for v in op.params.values_mut() {
        rename(v, &renames);
    }
    let policy = home.policy()?;
    let (engines, gates) = mex_cli::process_engines::engines_with_gates(&policy, &registry);
    let mut builder = mex_runtime::MexRuntime::builder()
        .registry(registry)
        .policy(policy)
        .store(store)
        .recorder(Arc::new(mex_recorder::MemoryRecorder::new()))
        .workspace_root(scratch.path().join("runs"))
        .trust_uncertified(op.engine_id.clone())
        .result_cache(false);
    for e in engines {
        builder = builder.engine(e);
    }
    for g in gates {
        builder = builder.engine_gate(g);
    }
    let runtime = builder
        .build()
        .map_err(|e| CliError::internal(format!("cannot build the runtime: {e}")))?;
    let result = runtime.execute(op);
    outln!("ran it: {}", result.status.as_str());
    for e in &result.errors {
        outln!("  [{}] {}", e.code, e.message);
    }
    if result.status != mex_envelope::ResultStatus::Succeeded {
        return Err(CliError {
            code: exit::FAILED,
            message: "the vector's operation did not succeed, so no output digest was recorded; fix the engine or the inputs and run this again".into(),
        });
    }
    Ok(mex_conformance::output_digest(&result))
}

fn rename(v: &mut Value, renames: &[(String, String)]) {
    match v {
        Value::String(s) => {
            if let Some((_, new)) = renames.iter().find(|(old, _)| old == s) {
                *s = new.clone();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rename(i, renames)),
        _ => {}
    }
}
