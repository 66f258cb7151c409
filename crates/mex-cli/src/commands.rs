//! One function per subcommand.

use std::io::Write;
use std::path::Path;

use mex_artifacts::PutOptions;
use mex_cli::report;
use mex_envelope::{ArtifactKind, Classification, ResultStatus};
use mex_recorder::{BreakKind, EventKind, EventQuery, FlightRecorder, ProblemFilter};
use serde::Serialize;

use crate::cli::{ArtifactsCommand, Cli, Command, PutArgs, RecorderCommand, RegistryCommand};
use crate::home::Home;
use crate::out::{out, outln};
use crate::{CliError, exit, render};

/// Run the parsed command; returns the exit code.
pub fn run(cli: &Cli) -> Result<u8, CliError> {
    if let Command::Schema { name } = &cli.command {
        return schema(name);
    }
    // Read-only commands never create a home.
    let home = if cli.command.is_read_only() {
        Home::locate(cli)
    } else {
        Home::prepare(cli)?
    };
    match &cli.command {
        Command::Run {
            op,
            json,
            attest,
            check,
        } => run_op(&home, op, *json, *attest, *check),
        Command::Validate { op, json } => validate(&home, op, *json),
        Command::Artifacts(cmd) => artifacts(&home, cmd),
        Command::Recorder(cmd) => recorder(&home, cmd),
        Command::Problems { json } => problems(&home, *json),
        Command::Registry(RegistryCommand::Check { file, json }) => registry_check(
            file.as_deref().unwrap_or(&home.registry_path),
            &home.registry_dirs,
            *json,
        ),
        Command::Registry(cmd) => crate::vector::registry(&home, cmd),
        Command::Engines { json } => list_engines(&home, *json),
        Command::Conformance { engine, json } => {
            conformance_command(&home, engine.as_deref(), *json)
        }
        Command::Demo => crate::demo::run(&home),
        Command::Keys(cmd) => crate::trust::keys(&home, cmd),
        Command::Secrets(cmd) => crate::secrets::run(&home, cmd),
        Command::Attest { op_id, op, out } => {
            crate::trust::attest(&home, op_id, op.as_deref(), out.as_deref())
        }
        Command::Gc { json } => crate::gc::run(&home, *json),
        Command::Cache(cmd) => crate::cache::run(&home, cmd),
        Command::Bench(args) => crate::bench::run(&home, args),
        Command::Serve(args) => crate::serve::run(&home, args),
        Command::Schema { .. } => Ok(exit::OK),
    }
}

/// Print `value` as JSON: pretty (a report), or compact on one line (a JSON
/// Lines record).
fn print_json<T: Serialize + ?Sized>(value: &T, pretty: bool) -> Result<(), CliError> {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    }
    .map_err(|e| CliError::internal(format!("cannot render JSON: {e}")))?;
    outln!("{text}");
    Ok(())
}

/// Read an envelope, stopping after the envelope limit plus one byte (the
/// front door then refuses an oversized document without mex ever holding it).
fn read_input(path: &Path) -> Result<Vec<u8>, CliError> {
    if path == Path::new("-") {
        return mex_envelope::read_envelope_bytes(std::io::stdin().lock())
            .map_err(|e| CliError::usage(format!("cannot read stdin: {e}")));
    }
    std::fs::File::open(path)
        .and_then(mex_envelope::read_envelope_bytes)
        .map_err(|e| {
            CliError::usage(format!(
                "cannot read {}: {e}; give a PlannedOperation JSON file, or - for stdin",
                path.display()
            ))
        })
}

fn run_op(home: &Home, op: &Path, json: bool, attest: bool, check: bool) -> Result<u8, CliError> {
    let bytes = read_input(op)?;
    let key = attest
        .then(|| crate::trust::require_key(home))
        .transpose()?;
    let runtime = home.runtime()?;
    let parsed = check
        .then(|| mex_envelope::PlannedOperation::from_json_slice(&bytes).ok())
        .flatten();
    let result = match parsed {
        // `--check` on a document that is not an operation: the normal
        // path denies it with every finding.
        None => runtime.execute_json(&bytes),
        Some(planned) => runtime
            .execute_checked(planned)
            .map_err(|e| CliError::usage(format!("{}: --check refused: {e}", op.display())))?,
    };
    if let Some(key) = &key {
        crate::trust::attest_run(home, key, &bytes, &result);
    }
    if json {
        print_json(&result, true)?;
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
        let listing: report::ValidateListing = outcomes
            .iter()
            .map(|o| report::GateVerdict {
                gate: o.gate.clone(),
                verdict: if o.findings.is_empty() {
                    report::Verdict::Passed
                } else if o.denied() {
                    report::Verdict::Denied
                } else {
                    report::Verdict::Degraded
                },
                findings: o.findings.clone(),
            })
            .collect();
        print_json(&listing, true)?;
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

/// Record an imported artifact (`artifact_written` under the nil op id),
/// so `mex artifacts verify` can tell it from one that appeared behind
/// mex's back.
pub(crate) fn record_import(
    home: &Home,
    handle: &mex_envelope::ArtifactHandle,
) -> Result<(), CliError> {
    home.writer_recorder()?
        .append(mex_recorder::EventDraft::artifact_written(
            uuid::Uuid::nil(),
            handle.content_hash,
            handle.size_bytes,
            handle
                .media_type
                .as_ref()
                .map_or("application/octet-stream", |m| m.as_str()),
        ))
        .map(drop)
        .map_err(|e| {
            CliError::internal(format!(
                "the artifact was stored but its import could not be recorded: {e}"
            ))
        })
}

/// Records that no `artifact_written` event accounts for: a record naming a
/// producer needs that operation's event for its hash; a record without one
/// (an import) needs some event for its hash.
fn unaccounted_records(
    home: &Home,
    store: &mex_artifacts::ArtifactStore,
) -> Result<Vec<report::StoreProblem>, CliError> {
    use std::collections::BTreeSet;
    // A home without a recorder has no events (and a read-only command
    // creates none): then every record is unaccounted for.
    let events = if home.root.join(mex_recorder::DB_FILE_NAME).exists() {
        home.recorder()?
            .events(&mex_recorder::EventQuery::kind(
                mex_recorder::EventKind::ArtifactWritten,
            ))
            .map_err(|e| CliError::internal(format!("cannot read the Flight Recorder: {e}")))?
    } else {
        Vec::new()
    };
    let by_op: BTreeSet<(uuid::Uuid, mex_envelope::Sha256Digest)> = events
        .iter()
        .filter_map(|e| Some((e.op_id?, e.artifact?)))
        .collect();
    let hashes: BTreeSet<mex_envelope::Sha256Digest> =
        events.iter().filter_map(|e| e.artifact).collect();
    let ids = store
        .list()
        .map_err(|e| CliError::internal(format!("cannot list the artifact store: {e}")))?;
    let mut problems = Vec::new();
    for id in ids {
        // Unreadable manifests are already reported by the store's verify.
        let Ok(m) = store.manifest(id) else { continue };
        let hash = m.artifact.content_hash;
        let (accounted, claim) = match &m.producer {
            Some(p) => (
                by_op.contains(&(p.op_id, hash)),
                format!("names operation {} as its producer", p.op_id),
            ),
            None => (hashes.contains(&hash), "claims to be an import".to_owned()),
        };
        if !accounted {
            problems.push(report::StoreProblem {
                kind: report::StoreProblemKind::Unaccounted,
                artifact_id: Some(id),
                path: store.record_location(id).display().to_string(),
                message: format!(
                    "the record {claim}, but no artifact_written event in the Flight Recorder accounts for sha256 {hash}: it was not written by a mex run or import"
                ),
                action: "treat the artifact as untrusted: find out who could write the store, then remove the record (its row in the store's index.db, named by the path; then `mex gc`) or re-import the original with `mex artifacts put`".to_owned(),
            });
        }
    }
    Ok(problems)
}

fn artifacts(home: &Home, cmd: &ArtifactsCommand) -> Result<u8, CliError> {
    if let ArtifactsCommand::Verify { .. } | ArtifactsCommand::Get { .. } = cmd {
        let verb = if matches!(cmd, ArtifactsCommand::Get { .. }) {
            "artifacts get"
        } else {
            "artifacts verify"
        };
        home.require(&home.store_path(), "artifact store", verb)?;
    }
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
                record_import(home, &handle)?;
                if *json {
                    print_json(&handle, false)?;
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
        ArtifactsCommand::Verify { json } => {
            let found = store
                .verify()
                .map_err(|e| CliError::internal(e.to_string()))?;
            let mut report = render::store_report(&found, &home.store_path());
            let unaccounted = unaccounted_records(home, &store)?;
            report.ok &= unaccounted.is_empty();
            report.problems.extend(unaccounted);
            if *json {
                print_json(&report, true)?;
            } else {
                out!("{}", render::store_verify(&report));
            }
            Ok(if report.ok { exit::OK } else { exit::FAILED })
        }
        ArtifactsCommand::Gc { json } => {
            let now = mex_envelope::UtcTimestamp::now();
            let done = store
                .gc(now)
                .map_err(|e| CliError::internal(e.to_string()))?;
            let report = render::gc_report(&done, now);
            if *json {
                print_json(&report, true)?;
            } else {
                out!("{}", render::gc(&report));
            }
            Ok(exit::OK)
        }
    }
}

fn recorder(home: &Home, cmd: &RecorderCommand) -> Result<u8, CliError> {
    let verb = match cmd {
        RecorderCommand::Events { .. } => "recorder events",
        RecorderCommand::Verify { .. } => "recorder verify",
        RecorderCommand::Export { .. } => "recorder export",
        RecorderCommand::Checkpoint => "recorder checkpoint",
        RecorderCommand::Prove { .. } => "recorder prove",
    };
    home.require(&home.recorder_path(), "Flight Recorder", verb)?;
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
                    print_json(e, false)?;
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
        RecorderCommand::Verify {
            checkpoint,
            key,
            json,
        } => {
            if *json && (checkpoint.is_some() || key.is_some()) {
                return Err(CliError::usage(
                    "--json reports the hash chain only; run `mex recorder verify --checkpoint FILE` without --json to check a checkpoint",
                ));
            }
            let report = recorder
                .verify()
                .map_err(|e| CliError::internal(e.to_string()))?;
            if *json {
                print_json(&report, true)?;
            } else {
                let at = report
                    .first_break
                    .as_ref()
                    .and_then(|b| event_at(&*recorder, b.seq, b.kind));
                out!(
                    "{}",
                    render::chain_verify(&report, at.as_ref(), &home.recorder_path())
                );
                let signing = crate::trust::verify_signing(
                    home,
                    &*recorder,
                    checkpoint.as_deref(),
                    key.as_deref(),
                )?;
                if report.is_ok() {
                    return Ok(signing);
                }
            }
            Ok(if report.is_ok() {
                exit::OK
            } else {
                exit::FAILED
            })
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

/// The event stored at `seq`, to say which operation a chain break concerns
/// (none when it is the damaged row itself or is missing).
fn event_at(
    recorder: &dyn FlightRecorder,
    seq: u64,
    kind: BreakKind,
) -> Option<mex_recorder::Event> {
    if matches!(kind, BreakKind::Unreadable | BreakKind::Truncated) {
        return None;
    }
    let query = EventQuery {
        after_seq: Some(seq.checked_sub(1)?),
        limit: Some(1),
        ..EventQuery::all()
    };
    let event = recorder.events(&query).ok()?.into_iter().next()?;
    (event.seq == seq).then_some(event)
}

fn problems(home: &Home, json: bool) -> Result<u8, CliError> {
    home.require(&home.recorder_path(), "Flight Recorder", "problems")?;
    let recorder = home.recorder()?;
    let problems = recorder
        .problems(&ProblemFilter::default())
        .map_err(|e| CliError::internal(e.to_string()))?;
    if json {
        print_json(&problems, true)?;
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
            "{:>4}x [{}] {where_} ({}, {}, last {}): {}",
            p.count,
            p.code,
            json_word(&p.severity),
            json_word(&p.state),
            p.last_seen,
            p.message
        );
    }
    Ok(exit::OK)
}

/// The snake_case word serde gives a unit enum variant (for text output).
fn json_word<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_owned(),
    }
}

fn registry_check(path: &Path, dirs: &[std::path::PathBuf], json: bool) -> Result<u8, CliError> {
    let mut report = report::RegistryCheckReport {
        file: path.display().to_string(),
        ok: false,
        engines: None,
        operations: None,
        problems: Vec::new(),
    };
    let mut text;
    match mex_registry::Registry::load_with_overlays(path, dirs) {
        Ok(registry) => {
            let engines = registry.engines().len();
            let ops: usize = registry.engines().map(|e| e.operations.len()).sum();
            report.ok = true;
            report.engines = Some(engines as u64);
            report.operations = Some(ops as u64);
            text = format!(
                "{}: ok ({engines} engines, {ops} operations)",
                path.display()
            );
        }
        Err(mex_registry::RegistryError::Invalid { problems, .. }) => {
            report.problems = problems
                .iter()
                .map(|p| report::RegistryProblem {
                    file: p.file.clone(),
                    line: p.line as u64,
                    column: p.column as u64,
                    pointer: p.pointer.clone(),
                    kind: p.kind.to_string(),
                    message: p.message.clone(),
                })
                .collect();
            text = format!("{}: invalid, {} problem(s)", path.display(), problems.len());
            for p in &problems {
                text.push_str(&format!("\n{p}"));
            }
        }
        Err(e) => {
            report.problems.push(report::RegistryProblem {
                file: path.display().to_string(),
                line: 0,
                column: 0,
                pointer: String::new(),
                kind: "unreadable".to_owned(),
                message: e.to_string(),
            });
            text = format!("{}: invalid\n{e}", path.display());
        }
    }
    if json {
        print_json(&report, true)?;
    } else {
        outln!("{text}");
    }
    Ok(if report.ok { exit::OK } else { exit::USAGE })
}

fn list_engines(home: &Home, json: bool) -> Result<u8, CliError> {
    let registry = home.registry()?;
    // Installed: shipped with this binary, or a process implementation the
    // registry (and its overlays) declares, which this binary runs.
    // (A listing needs no home: without a policy file, the default one.)
    let (runnable, _) = mex_cli::process_engines::engines_with_gates(&home.policy()?, &registry);
    let shipped: Vec<(String, String)> = runnable
        .iter()
        .map(|e| (e.engine_id().to_string(), e.implementation_id().to_owned()))
        .collect();
    let certifier = home.certifier();
    let mut listing = report::EnginesListing::new();
    for engine in registry.engines() {
        use report::Availability;
        let (availability, detail) = match engine.status() {
            mex_registry::EngineStatus::DeclaredOnly => (
                Availability::DeclaredOnly,
                "declared only: no implementation, not callable".to_owned(),
            ),
            mex_registry::EngineStatus::CallableCandidate => {
                let installed = engine.implementations.iter().any(|i| {
                    shipped
                        .iter()
                        .any(|(e, imp)| *e == engine.id.to_string() && *imp == i.id)
                });
                // Certified means: a certificate for the code this binary
                // would run (the installed engine's code digest).
                let refusal = engine.implementations.iter().find_map(|i| {
                    let Some(installed) = runnable.iter().find(|e| {
                        e.engine_id() == engine.id
                            && e.implementation_id() == i.id
                            && e.implementation_version() == i.version
                    }) else {
                        return Some("not installed".to_owned());
                    };
                    mex_runtime::code_digest(&**installed)
                        .and_then(|code| {
                            mex_runtime::Certifier::check(
                                &certifier, &engine.id, &i.id, &i.version, &code,
                            )
                        })
                        .err()
                });
                if installed && refusal.is_none() {
                    (
                        Availability::Callable,
                        "callable: implemented, shipped and certified".to_owned(),
                    )
                } else if installed {
                    (
                        Availability::Uncertified,
                        format!("uncertified: {}", refusal.unwrap_or_default()),
                    )
                } else {
                    (
                        Availability::NotInThisBinary,
                        "implemented in the registry, not in this binary: not callable".to_owned(),
                    )
                }
            }
        };
        listing.push(report::EngineListing {
            engine_id: engine.id.to_string(),
            interface_version: engine.interface_version.to_string(),
            determinism_ceiling: engine.determinism_ceiling.as_str().to_owned(),
            availability,
            detail,
        });
    }
    if json {
        return print_json(&listing, true).map(|()| exit::OK);
    }
    for e in &listing {
        outln!(
            "{:<22} {} {:<3} {}",
            e.engine_id,
            e.interface_version,
            e.determinism_ceiling,
            e.detail
        );
    }
    Ok(exit::OK)
}

/// `mex conformance [--json]`.
fn conformance_command(home: &Home, only: Option<&str>, json: bool) -> Result<u8, CliError> {
    let mut run = report::ConformanceRun {
        ok: true,
        engines: Vec::new(),
    };
    let (code, _) = conformance_with(home, only, json, &mut |outcome| {
        run.ok &= outcome.certified;
        run.engines.push(outcome);
    })?;
    if json {
        print_json(&run, true)?;
    }
    Ok(code)
}

/// Run the suite for every engine this binary can run (or one); returns the exit code and
/// the engines that were certified.
pub fn conformance(home: &Home, only: Option<&str>) -> Result<(u8, Vec<String>), CliError> {
    conformance_with(home, only, false, &mut |_| {})
}

/// [`conformance`], handing each engine's outcome to `each`; `quiet` prints
/// nothing on stdout (the caller prints JSON).
fn conformance_with(
    home: &Home,
    only: Option<&str>,
    quiet: bool,
    each: &mut dyn FnMut(report::ConformanceOutcome),
) -> Result<(u8, Vec<String>), CliError> {
    let registry = home.registry()?;
    let (mut subjects, gates) =
        mex_cli::process_engines::engines_with_gates(&home.policy()?, &registry);
    // The engine runs in the production runtime's workspace root: it sees
    // the paths it sees in production.
    let harness = mex_conformance::Harness::with_registry(registry, &home.registry_path)
        .with_workspace_root(home.workspace_root())
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
        if !quiet {
            outln!(
                "conformance: {id} ({} {})",
                engine.implementation_id(),
                engine.implementation_version()
            );
        }
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
                if !quiet {
                    outln!(
                        "  certified: {} passed, {} not applicable; certificate {}",
                        s.passed,
                        s.not_applicable,
                        path.display()
                    );
                }
                certified.push(id.to_string());
            }
            None => {
                if !quiet {
                    out!("{}", outcome.report.table());
                    outln!("  NOT certified: {} failed", s.failed);
                }
                code = exit::FAILED;
            }
        }
        each(report::ConformanceOutcome {
            certified: outcome.certificate.is_some(),
            certificate: outcome
                .certificate
                .as_ref()
                .map(|(_, path)| path.display().to_string()),
            report: outcome.report,
        });
    }
    Ok((code, certified))
}

fn schema(name: &str) -> Result<u8, CliError> {
    let all = mex_cli::published_schemas();
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
