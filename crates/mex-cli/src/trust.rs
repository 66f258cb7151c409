//! Keys, signed checkpoints, inclusion proofs and attestations: the
//! commands on top of `mex-attest`.
//!
//! * `mex keys init|show`: the home's Ed25519 key (`<home>/keys/signing.pem`).
//! * `mex recorder checkpoint`: a C2SP signed checkpoint of the whole log.
//! * `mex recorder prove --seq N`: an RFC 6962 inclusion proof of one event.
//! * `mex recorder verify [--checkpoint FILE] [--key FILE]`: the signing
//!   status, and whether the log still extends an earlier checkpoint.
//! * `mex attest OP_ID [--op FILE] [--out FILE]` and `mex run --attest`: a
//!   DSSE envelope with an in-toto/SLSA provenance statement. `run --attest`
//!   writes it to `<home>/attestations/<op_id>.intoto.json` and names the file
//!   on stderr, so stdout stays the result.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mex_attest::provenance::{self, ProvenanceFacts};
use mex_attest::{AttestError, HomeKey, PublicKey};
use mex_envelope::{EngineResult, PlannedOperation};
use mex_gates::internal::Catalog as _;
use mex_recorder::{EventQuery, FlightRecorder};
use serde_json::Value;
use uuid::Uuid;

use crate::cli::KeysCommand;
use crate::home::Home;
use crate::out::{out, outln};
use crate::{CliError, exit};

/// Where `mex run --attest` writes envelopes, under the home.
pub const ATTESTATION_DIR: &str = "attestations";

fn attest_err(e: AttestError) -> CliError {
    match e {
        AttestError::Io { .. } | AttestError::Json { .. } | AttestError::Recorder(_) => {
            CliError::internal(e.to_string())
        }
        AttestError::BadSignature { .. } => CliError {
            code: exit::FAILED,
            message: e.to_string(),
        },
        _ => CliError::usage(e.to_string()),
    }
}

/// The home's key, or a usage error saying how to create one.
pub fn require_key(home: &Home) -> Result<HomeKey, CliError> {
    HomeKey::require(&home.root).map_err(attest_err)
}

/// The home's key, if it has one (for signing certificates).
pub fn home_key(home: &Home) -> Result<Option<Arc<HomeKey>>, CliError> {
    HomeKey::load(&home.root)
        .map(|k| k.map(Arc::new))
        .map_err(attest_err)
}

/// The public key certificates must be signed by (the home's), if any. A
/// key file that exists but cannot be loaded fails closed: no certificate
/// verifies until it is fixed.
pub fn trusted_certificate_key(home: &Home) -> Option<PublicKey> {
    match HomeKey::load(&home.root) {
        Ok(key) => key.map(|k| k.public().clone()),
        Err(e) => {
            tracing::warn!("{e}; no certificate is accepted until the key loads");
            Some(PublicKey::refusing_all())
        }
    }
}

fn print_public(key: &PublicKey) {
    out!("{}", key.to_pem());
    outln!("verifier key: {}", key.verifier_key());
    outln!("key id:       {}", key.key_id());
}

/// `mex keys init|show`.
pub fn keys(home: &Home, cmd: &KeysCommand) -> Result<u8, CliError> {
    match cmd {
        KeysCommand::Init => {
            let key = HomeKey::init(&home.root).map_err(attest_err)?;
            print_public(key.public());
            eprintln!(
                "mex: created {} (mode 0600). Keep a copy of the public key above outside this home: verifiers should pin it. Certificates written before now are unsigned and are refused from now on: run `mex conformance` again to sign them.",
                mex_attest::key_path(&home.root).display()
            );
        }
        KeysCommand::Show => print_public(require_key(home)?.public()),
    }
    Ok(exit::OK)
}

/// `mex recorder checkpoint`: print a signed checkpoint of the whole log.
pub fn checkpoint(home: &Home, recorder: &dyn FlightRecorder) -> Result<u8, CliError> {
    let key = require_key(home)?;
    let (_, note) = mex_attest::log::checkpoint(recorder, &key).map_err(attest_err)?;
    out!("{note}");
    Ok(exit::OK)
}

/// `mex recorder prove --seq N`: print an inclusion proof (JSON).
pub fn prove(home: &Home, recorder: &dyn FlightRecorder, seq: u64) -> Result<u8, CliError> {
    let key = HomeKey::load(&home.root).map_err(attest_err)?;
    let doc = mex_attest::log::prove(recorder, seq, key.as_ref()).map_err(attest_err)?;
    outln!(
        "{}",
        serde_json::to_string_pretty(&doc).map_err(|e| CliError::internal(e.to_string()))?
    );
    Ok(exit::OK)
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, CliError> {
    std::fs::read(path)
        .map_err(|e| CliError::usage(format!("cannot read {what} {}: {e}", path.display())))
}

/// The signing part of `mex recorder verify`, run after the chain check.
/// Says whether the home is unsigned; with `checkpoint`, checks that the log
/// still extends it (signed by `--key`, else by the home's key).
pub fn verify_signing(
    home: &Home,
    recorder: &dyn FlightRecorder,
    checkpoint: Option<&Path>,
    key_file: Option<&Path>,
) -> Result<u8, CliError> {
    let trusted = match key_file {
        Some(path) => {
            let text = String::from_utf8(read_file(path, "key file")?)
                .map_err(|_| CliError::usage(format!("{} is not text", path.display())))?;
            Some(PublicKey::parse(&text).map_err(attest_err)?)
        }
        None => HomeKey::load(&home.root)
            .map_err(attest_err)?
            .map(|k| k.public().clone()),
    };
    let Some(trusted) = trusted else {
        outln!(
            "signing: UNSIGNED: this home has no signing key, so nothing here can be checked off this machine (`mex keys init` creates one)"
        );
        return match checkpoint {
            Some(_) => Err(CliError::usage(
                "--checkpoint needs the public key that signed it: pass --key FILE (PEM or verifier key)",
            )),
            None => Ok(exit::OK),
        };
    };
    outln!("signing: key {}", trusted.verifier_key());
    let Some(path) = checkpoint else {
        outln!(
            "no --checkpoint given: `mex recorder checkpoint > FILE` makes one; keep it off this machine and check later with --checkpoint FILE"
        );
        return Ok(exit::OK);
    };
    let note = read_file(path, "checkpoint")?;
    match mex_attest::log::verify_checkpoint(recorder, &note, &trusted) {
        Ok(report) if report.consistent => {
            outln!(
                "checkpoint {}: consistent: {}",
                path.display(),
                report.detail
            );
            Ok(exit::OK)
        }
        Ok(report) => {
            outln!(
                "CHECKPOINT INCONSISTENT ({}): {}",
                path.display(),
                report.detail
            );
            Ok(exit::FAILED)
        }
        Err(e @ (AttestError::BadSignature { .. } | AttestError::Malformed { .. })) => {
            outln!("CHECKPOINT REFUSED ({}): {e}", path.display());
            Ok(exit::FAILED)
        }
        Err(e) => Err(attest_err(e)),
    }
}

fn op_events(
    recorder: &dyn FlightRecorder,
    op_id: Uuid,
) -> Result<Vec<mex_recorder::Event>, CliError> {
    recorder
        .events(&EventQuery::op(op_id))
        .map_err(|e| CliError::internal(e.to_string()))
}

/// The budget G-BUDGET resolves for `op` (the gate's own function, with the
/// registry's defaults and maximums and the policy), as JSON.
fn resolved_budget(home: &Home, op: &PlannedOperation) -> Option<Value> {
    let registry = home.registry().ok()?;
    let policy = home.policy().ok()?;
    let catalog = mex_gates::internal::RegistryCatalog::new(registry);
    let facts = catalog.operation_facts(op).ok()?;
    let enforces = catalog
        .resolve_implementation(op)
        .map(|i| i.kind == mex_gates::internal::ImplementationKind::Subprocess)
        .unwrap_or(false);
    let budget_facts = mex_gates::gates::budget::BudgetFacts {
        default: facts.default_budget,
        maximum: facts.max_budget,
        enforces_cpu_and_memory: enforces,
        allow_degraded: policy.degraded.unenforceable_budgets,
    };
    let (resolved, _) = mex_gates::gates::budget::check_budget(op, &budget_facts);
    serde_json::to_value(resolved?.to_spec()).ok()
}

type OpParameters = (Value, Option<Value>, Option<mex_envelope::Sha256Digest>);

/// Params, resolved budget and config hash from the operation document.
fn op_parameters(home: &Home, op_bytes: &[u8], op_id: Uuid) -> Result<OpParameters, CliError> {
    let op = PlannedOperation::from_json_slice(op_bytes)
        .map_err(|e| CliError::usage(format!("--op: {e}")))?;
    if op.op_id != op_id {
        return Err(CliError::usage(format!(
            "--op is operation {}, not {op_id}",
            op.op_id
        )));
    }
    Ok((
        Value::Object(op.params.clone()),
        resolved_budget(home, &op),
        op.config_hash().ok(),
    ))
}

/// `mex attest OP_ID`: print (or write) the DSSE envelope.
pub fn attest(
    home: &Home,
    op_id: &str,
    op_file: Option<&Path>,
    out_file: Option<&Path>,
) -> Result<u8, CliError> {
    let op_id = Uuid::parse_str(op_id)
        .map_err(|_| CliError::usage(format!("{op_id:?} is not an op id (a UUID)")))?;
    let key = require_key(home)?;
    let recorder = home.recorder()?;
    let store = home.store()?;
    let events = op_events(&*recorder, op_id)?;
    let mut produced = Vec::new();
    for id in store
        .list()
        .map_err(|e| CliError::internal(e.to_string()))?
    {
        if let Ok(m) = store.manifest(id)
            && m.producer.as_ref().is_some_and(|p| p.op_id == op_id)
        {
            produced.push(m);
        }
    }
    produced.sort_by_key(|m| m.artifact.artifact_id);
    let mut facts = ProvenanceFacts::from_record(op_id, events, &produced).map_err(attest_err)?;
    if let Some(path) = op_file {
        let bytes = read_file(path, "operation")?;
        let (params, budget, config_hash) = op_parameters(home, &bytes, op_id)?;
        if let Some(recorded) = facts.config_hash
            && config_hash != Some(recorded)
        {
            return Err(CliError::usage(format!(
                "--op {}: its params do not hash to the recorded config hash {recorded}; it is not the document that ran",
                path.display()
            )));
        }
        facts.params = Some(params);
        facts.budget = budget;
    }
    let envelope = provenance::attest(&facts, &key).map_err(attest_err)?;
    let text = envelope.to_json().map_err(attest_err)?;
    match out_file {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| CliError::usage(format!("cannot write {}: {e}", path.display())))?,
        None => out!("{text}"),
    }
    Ok(exit::OK)
}

/// `mex run --attest`, after the run: write the envelope under the home and
/// name it on stderr. A result that cannot be attested (denied, no outputs)
/// is said on stderr; the run's own exit code stands.
pub fn attest_run(home: &Home, key: &HomeKey, op_bytes: &[u8], result: &EngineResult) {
    match attest_run_inner(home, key, op_bytes, result) {
        Ok(path) => eprintln!("mex: attestation written to {}", path.display()),
        Err(e) => eprintln!("mex: no attestation written: {}", e.message),
    }
}

fn attest_run_inner(
    home: &Home,
    key: &HomeKey,
    op_bytes: &[u8],
    result: &EngineResult,
) -> Result<PathBuf, CliError> {
    let recorder = home.recorder()?;
    let events = op_events(&*recorder, result.op_id)?;
    let (params, budget) = match op_parameters(home, op_bytes, result.op_id) {
        Ok((p, b, _)) => (Some(p), b),
        Err(_) => (None, None),
    };
    let facts = ProvenanceFacts::from_result(result, events, params, budget).map_err(attest_err)?;
    let envelope = provenance::attest(&facts, key).map_err(attest_err)?;
    let dir = home.root.join(ATTESTATION_DIR);
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::internal(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join(format!("{}.intoto.json", result.op_id.hyphenated()));
    std::fs::write(&path, envelope.to_json().map_err(attest_err)?)
        .map_err(|e| CliError::internal(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}
