//! One function per subcommand.

use std::io::{Read, Write};
use std::path::Path;

use mex_artifacts::PutOptions;
use mex_envelope::{ArtifactKind, Classification, ResultStatus};
use mex_recorder::{EventKind, EventQuery, ProblemFilter};

use crate::cli::{ArtifactsCommand, Cli, Command, PutArgs, RecorderCommand, RegistryCommand};
use crate::home::{Home, engines};
use crate::out::{out, outln};
use crate::{CliError, exit, render};

/// Run the parsed command; returns the exit code.
pub fn run(cli: &Cli) -> Result<u8, CliError> {
    if let Command::Schema { name } = &cli.command {
        return schema(name);
    }
    let home = Home::prepare(cli)?;
    match &cli.command {
        Command::Run { op, json, attest } => run_op(&home, op, *json, *attest),
        Command::Validate { op, json } => validate(&home, op, *json),
        Command::Artifacts(cmd) => artifacts(&home, cmd),
        Command::Recorder(cmd) => recorder(&home, cmd),
        Command::Problems { json } => problems(&home, *json),
        Command::Registry(RegistryCommand::Check { file }) => registry_check(
            file.as_deref().unwrap_or(&home.registry_path),
            &home.registry_dirs,
        ),
        Command::Registry(cmd) => crate::vector::registry(&home, cmd),
        Command::Engines => list_engines(&home),
        Command::Conformance { engine } => {
            conformance(&home, engine.as_deref()).map(|(code, _)| code)
        }
        Command::Demo => crate::demo::run(&home),
        Command::Keys(cmd) => crate::trust::keys(&home, cmd),
        Command::Attest { op_id, op, out } => {
            crate::trust::attest(&home, op_id, op.as_deref(), out.as_deref())
        }
        Command::Schema { .. } => Ok(exit::OK),
    }
}

fn read_input(path: &Path) -> Result<Vec<u8>, CliError> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| CliError::usage(format!("cannot read stdin: {e}")))?;
        return Ok(bytes);
    }
    std::fs::read(path).map_err(|e| {
        CliError::usage(format!(
            "cannot read {}: {e}; give a PlannedOperation JSON file, or - for stdin",
            path.display()
        ))
    })
}

fn run_op(home: &Home, op: &Path, json: bool, attest: bool) -> Result<u8, CliError> {
    let bytes = read_input(op)?;
    let key = attest
        .then(|| crate::trust::require_key(home))
        .transpose()?;
    let runtime = home.runtime()?;
    let result = runtime.execute_json(&bytes);
    if let Some(key) = &key {
        crate::trust::attest_run(home, key, &bytes, &result);
    }
    if json {
        let text =
            serde_json::to_string_pretty(&result).map_err(|e| CliError::internal(e.to_string()))?;
        outln!("{text}");
    } else {
        out!("{}", render::result_summary(&result));
    }
    Ok(match result.status {
        ResultStatus::Succeeded => exit::OK,
        ResultStatus::Denied => exit::DENIED,
        ResultStatus::Failed => exit::FAILED,
        ResultStatus::BudgetExceeded => exit::BUDGET,
    })
}

fn validate(home: &Home, op: &Path, json: bool) -> Result<u8, CliError> {
    let bytes = read_input(op)?;
    let runtime = home.runtime()?;
    let outcomes = runtime.validate_json(&bytes);
    let denied = outcomes.iter().any(|o| o.denied());
    if json {
        let value: Vec<_> = outcomes
            .iter()
            .map(|o| serde_json::json!({"gate": o.gate, "verdict": if o.findings.is_empty() { "passed" } else if o.denied() { "denied" } else { "degraded" }, "findings": o.findings}))
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&value).map_err(|e| CliError::internal(e.to_string()))?
        );
    } else {
        out!("{}", render::outcomes(&outcomes));
        outln!(
            "{}",
            if denied {
                "=> denied (nothing was executed)"
            } else {
                "=> admissible (nothing was executed)"
            }
        );
    }
    Ok(if denied { exit::DENIED } else { exit::OK })
}

fn parse_kind(kind: &str) -> Result<ArtifactKind, CliError> {
    serde_json::from_value(serde_json::Value::String(kind.to_owned()))
        .map_err(|_| CliError::usage(format!("unknown artifact kind {kind:?}; use file, tool_output, transcript, dataset_slice, prompt_payload, report or bundle")))
}

fn artifacts(home: &Home, cmd: &ArtifactsCommand) -> Result<u8, CliError> {
    let store = home.store()?;
    match cmd {
        ArtifactsCommand::Put(PutArgs {
            files,
            media_type,
            kind,
            json,
        }) => {
            let mut options = PutOptions::new(parse_kind(kind)?, Classification::Low);
            if let Some(m) = media_type {
                options.media_type = Some(
                    m.parse()
                        .map_err(|e| CliError::usage(format!("--media-type: {e}")))?,
                );
            }
            for file in files {
                let handle = store
                    .put_path(file, &options)
                    .map_err(|e| CliError::usage(format!("{}: {e}", file.display())))?;
                if *json {
                    outln!(
                        "{}",
                        serde_json::to_string(&handle)
                            .map_err(|e| CliError::internal(e.to_string()))?
                    );
                } else {
                    outln!(
                        "{}  {}  {} bytes  sha256 {}",
                        handle.artifact_id,
                        file.display(),
                        handle.size_bytes,
                        handle.content_hash
                    );
                }
            }
            Ok(exit::OK)
        }
        ArtifactsCommand::Get { id, out } => {
            let id = uuid::Uuid::parse_str(id)
                .map_err(|_| CliError::usage(format!("{id:?} is not an artifact id (a UUID)")))?;
            let handle = store
                .handle(id)
                .map_err(|e| CliError::usage(e.to_string()))?;
            let bytes = store.read(&handle).map_err(|e| CliError {
                code: exit::FAILED,
                message: e.to_string(),
            })?;
            match out {
                Some(path) => std::fs::write(path, &bytes).map_err(|e| {
                    CliError::usage(format!("cannot write {}: {e}", path.display()))
                })?,
                None => std::io::stdout()
                    .write_all(&bytes)
                    .map_err(|e| CliError::internal(e.to_string()))?,
            }
            Ok(exit::OK)
        }
        ArtifactsCommand::Verify => {
            let report = store
                .verify()
                .map_err(|e| CliError::internal(e.to_string()))?;
            outln!(
                "{} records, {} payloads, {} bytes hashed",
                report.records,
                report.blobs,
                report.bytes_hashed
            );
            for p in &report.problems {
                outln!("PROBLEM  {p:?}");
            }
            if report.is_ok() {
                outln!("store verified: no problems");
                Ok(exit::OK)
            } else {
                outln!(
                    "{} problem(s): the store has been tampered with or damaged",
                    report.problems.len()
                );
                Ok(exit::FAILED)
            }
        }
        ArtifactsCommand::Gc => {
            let report = store
                .gc(mex_envelope::UtcTimestamp::now())
                .map_err(|e| CliError::internal(e.to_string()))?;
            outln!(
                "deleted {} artifact(s), freed {} bytes; report artifact {}",
                report.deleted.len(),
                report.bytes_freed,
                report.report.artifact_id
            );
            Ok(exit::OK)
        }
    }
}

fn recorder(home: &Home, cmd: &RecorderCommand) -> Result<u8, CliError> {
    let recorder = home.recorder()?;
    match cmd {
        RecorderCommand::Events {
            op,
            engine,
            kind,
            json,
        } => {
            let mut query = EventQuery::default();
            if let Some(op) = op {
                query.op_id = Some(uuid::Uuid::parse_str(op).map_err(|_| {
                    CliError::usage(format!("--op {op:?} is not an op id (a UUID)"))
                })?);
            }
            if let Some(engine) = engine {
                query.engine_id = Some(
                    engine
                        .parse()
                        .map_err(|e| CliError::usage(format!("--engine: {e}")))?,
                );
            }
            if let Some(kind) = kind {
                query.kind = Some(
                    serde_json::from_value::<EventKind>(serde_json::Value::String(kind.clone()))
                        .map_err(|_| CliError::usage(format!("--kind {kind:?} is not an event kind (e.g. op_received, gate_denied, op_completed)")))?,
                );
            }
            let events = recorder
                .events(&query)
                .map_err(|e| CliError::internal(e.to_string()))?;
            for e in &events {
                if *json {
                    outln!(
                        "{}",
                        serde_json::to_string(e).map_err(|e| CliError::internal(e.to_string()))?
                    );
                } else {
                    let what = [
                        e.gate.as_ref().map(|g| g.to_string()),
                        e.capability.clone(),
                        e.status.map(|s| s.as_str().to_owned()),
                        e.code.as_ref().map(|c| format!("[{c}]")),
                        e.message.clone(),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                    outln!(
                        "{:>6} {} {:<18} {} {what}",
                        e.seq,
                        e.recorded_at,
                        e.kind.as_str(),
                        e.op_id.map(|i| i.to_string()).unwrap_or_else(|| "-".into())
                    );
                }
            }
            if !*json {
                outln!("{} event(s)", events.len());
            }
            Ok(exit::OK)
        }
        RecorderCommand::Verify { checkpoint, key } => {
            let report = recorder
                .verify()
                .map_err(|e| CliError::internal(e.to_string()))?;
            outln!("{} event(s) checked", report.events_checked);
            if report.is_ok() {
                outln!(
                    "chain verified: no edits, deletions, insertions, reorders or truncation found"
                );
                crate::trust::verify_signing(
                    home,
                    &*recorder,
                    checkpoint.as_deref(),
                    key.as_deref(),
                )
            } else {
                outln!("CHAIN BROKEN: {:?}", report.first_break);
                crate::trust::verify_signing(
                    home,
                    &*recorder,
                    checkpoint.as_deref(),
                    key.as_deref(),
                )?;
                Ok(exit::FAILED)
            }
        }
        RecorderCommand::Checkpoint => crate::trust::checkpoint(home, &*recorder),
        RecorderCommand::Prove { seq } => crate::trust::prove(home, &*recorder, *seq),
        RecorderCommand::Export { jsonl: _ } => {
            let mut out = std::io::stdout().lock();
            recorder
                .export_jsonl(&EventQuery::default(), &mut out)
                .map_err(|e| CliError::internal(e.to_string()))?;
            Ok(exit::OK)
        }
    }
}

fn problems(home: &Home, json: bool) -> Result<u8, CliError> {
    let recorder = home.recorder()?;
    let problems = recorder
        .problems(&ProblemFilter::default())
        .map_err(|e| CliError::internal(e.to_string()))?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&problems)
                .map_err(|e| CliError::internal(e.to_string()))?
        );
        return Ok(exit::OK);
    }
    if problems.is_empty() {
        outln!("no problems");
    }
    for p in &problems {
        let where_ = [
            p.engine_id.as_ref().map(|e| e.to_string()),
            p.operation.as_ref().map(|o| o.to_string()),
            p.gate.as_ref().map(|g| g.to_string()),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        outln!(
            "{:>4}x [{}] {where_} ({:?}, {:?}, last {}): {}",
            p.count,
            p.code,
            p.severity,
            p.state,
            p.last_seen,
            p.message
        );
    }
    Ok(exit::OK)
}

fn registry_check(path: &Path, dirs: &[std::path::PathBuf]) -> Result<u8, CliError> {
    match mex_registry::Registry::load_with_overlays(path, dirs) {
        Ok(registry) => {
            let engines = registry.engines().len();
            let ops: usize = registry.engines().map(|e| e.operations.len()).sum();
            outln!(
                "{}: ok ({engines} engines, {ops} operations)",
                path.display()
            );
            Ok(exit::OK)
        }
        Err(e) => {
            outln!("{}: invalid\n{e}", path.display());
            Ok(exit::USAGE)
        }
    }
}

fn list_engines(home: &Home) -> Result<u8, CliError> {
    let registry = home.registry()?;
    let shipped: Vec<(String, String)> = engines()
        .iter()
        .map(|e| (e.engine_id().to_string(), e.implementation_id().to_owned()))
        .collect();
    for engine in registry.engines() {
        let status = match engine.status() {
            mex_registry::EngineStatus::DeclaredOnly => {
                "declared only: no implementation, not callable".to_owned()
            }
            mex_registry::EngineStatus::CallableCandidate => {
                let installed = engine.implementations.iter().any(|i| {
                    shipped
                        .iter()
                        .any(|(e, imp)| *e == engine.id.to_string() && *imp == i.id)
                });
                let refusal = engine.implementations.iter().find_map(|i| {
                    mex_runtime::Certifier::check(&home.certifier(), &engine.id, &i.id, &i.version)
                        .err()
                });
                if installed && refusal.is_none() {
                    "callable: implemented, shipped and certified".to_owned()
                } else if installed {
                    format!("uncertified: {}", refusal.unwrap_or_default())
                } else {
                    "implemented in the registry, not in this binary: not callable".to_owned()
                }
            }
        };
        outln!(
            "{:<22} {} {:<3} {}",
            engine.id.as_str(),
            engine.interface_version,
            engine.determinism_ceiling.as_str(),
            status
        );
    }
    Ok(exit::OK)
}

/// Run the suite for the shipped engines (or one); returns the exit code and
/// the engines that were certified.
pub fn conformance(home: &Home, only: Option<&str>) -> Result<(u8, Vec<String>), CliError> {
    let registry = home.registry()?;
    let (mut subjects, gates) =
        mex_cli::process_engines::engines_with_gates(&home.policy()?, &registry);
    let harness = mex_conformance::Harness::with_registry(registry, &home.registry_path)
        .with_registry_dirs(home.registry_dirs.clone())
        .with_engine_gates(gates)
        .with_certificate_key(crate::trust::home_key(home)?);
    let recorder = home.recorder()?;
    if let Some(id) = only {
        subjects.retain(|e| e.engine_id().as_str() == id);
        if subjects.is_empty() {
            return Err(CliError::usage(format!(
                "no implementation of {id} can run here: it is neither shipped with this binary nor declared as a process implementation in the registry or its overlays; see `mex engines`"
            )));
        }
    }
    let mut code = exit::OK;
    let mut certified = Vec::new();
    for engine in subjects {
        let id = engine.engine_id();
        outln!(
            "conformance: {id} ({} {})",
            engine.implementation_id(),
            engine.implementation_version()
        );
        let mut n = 0;
        let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let outcome = mex_conformance::certify(
            &harness,
            engine,
            &home.certificates(),
            Some(&*recorder),
            &mut |case| {
                n += 1;
                let verdict = match case.verdict {
                    mex_conformance::Verdict::Pass => "pass",
                    mex_conformance::Verdict::Fail => "FAIL",
                    mex_conformance::Verdict::NotApplicable => "n/a ",
                };
                tracing::info!("[{n:>2}] {verdict} {}", case.id);
                // Progress on a terminal only; piped output stays quiet.
                if progress {
                    eprint!("\r  case {n:>2}: {verdict} {:<48}", case.id);
                }
            },
        )
        .map_err(|e| CliError::internal(e.to_string()))?;
        if progress {
            eprint!("\r{:<72}\r", "");
        }
        let s = &outcome.report.summary;
        match &outcome.certificate {
            Some((_, path)) => {
                outln!(
                    "  certified: {} passed, {} not applicable; certificate {}",
                    s.passed,
                    s.not_applicable,
                    path.display()
                );
                certified.push(id.to_string());
            }
            None => {
                out!("{}", outcome.report.table());
                outln!("  NOT certified: {} failed", s.failed);
                code = exit::FAILED;
            }
        }
    }
    Ok((code, certified))
}

fn schema(name: &str) -> Result<u8, CliError> {
    let all = all_schemas();
    match all.iter().find(|(n, _)| n == name) {
        Some((_, text)) => {
            out!("{text}");
            Ok(exit::OK)
        }
        None => Err(CliError::usage(format!(
            "unknown schema {name:?}; known: {}",
            all.iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn all_schemas() -> Vec<(String, String)> {
    mex_cli::published_schemas()
}
