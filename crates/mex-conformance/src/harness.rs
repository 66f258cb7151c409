//! The suite: every case, run through `MexRuntime::execute_json` only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mex_artifacts::{ArtifactStore, BundleOptions, PutOptions};
use mex_envelope::{
    ArtifactHandle, ArtifactKind, Capability, DeterminismLevel, EngineResult, Input,
    PlannedOperation, ResultStatus, Sha256Digest,
};
use mex_gates::CapabilityPolicy;
use mex_recorder::{EventKind, EventQuery, FlightRecorder, MemoryRecorder};
use mex_registry::format::{OutputType, VectorKind};
use mex_registry::{ConformanceVector, Expectation, PayloadKind, Registry};
use mex_runtime::{Engine, MexRuntime};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::report::{CaseReport, Category, ConformanceReport, Summary, Verdict};
use crate::{ConformanceError, REPORT_VERSION, SUITE_VERSION, registry_entry_digest_with};

/// Longest error message accepted before the harness calls it inline output.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 4096;

/// Runs the suite against engine implementations declared in one registry.
pub struct Harness {
    registry: Arc<Registry>,
    registry_file: PathBuf,
    registry_dirs: Vec<PathBuf>,
    engine_gates: Vec<Arc<dyn mex_gates::Gate>>,
    certificate_key: Option<Arc<mex_attest::HomeKey>>,
    workspace_root: Option<PathBuf>,
}

/// What one suite run established, sealed: only [`Harness::run_sealed`]
/// makes one (its fields are private and it has no constructor), and only a
/// `SuiteOutcome` can become a certificate ([`crate::write_certificate`]).
/// A report edited by hand, or assembled by other code, therefore cannot.
#[derive(Debug, Clone)]
pub struct SuiteOutcome {
    report: ConformanceReport,
    code: mex_runtime::CodeDigest,
}

impl SuiteOutcome {
    /// The report of the run.
    pub fn report(&self) -> &ConformanceReport {
        &self.report
    }

    /// The code digest of the engine that ran.
    pub fn code(&self) -> &mex_runtime::CodeDigest {
        &self.code
    }

    /// Give up the seal and keep the report.
    pub fn into_report(self) -> ConformanceReport {
        self.report
    }
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("registry_file", &self.registry_file)
            .finish_non_exhaustive()
    }
}

/// The environment of one suite run: a private temporary mex home.
struct Env {
    _home: tempfile::TempDir,
    store: Arc<ArtifactStore>,
    recorder: Arc<dyn FlightRecorder>,
    /// Profile `conformance`: grants what the engine's operations declare.
    rt: MexRuntime,
    /// Profile `conformance-none`: grants nothing.
    rt_none: MexRuntime,
}

/// The outcome of one execution, with what the store gained meanwhile.
struct Run {
    op: PlannedOperation,
    result: EngineResult,
    new_artifacts: BTreeSet<Uuid>,
}

impl Harness {
    /// Load the registry file (`mechanical_engines.json`).
    pub fn load(registry_file: impl Into<PathBuf>) -> Result<Self, ConformanceError> {
        let registry_file = registry_file.into();
        let registry = Registry::load(&registry_file).map_err(|e| ConformanceError::Registry {
            path: registry_file.clone(),
            message: e.to_string(),
        })?;
        Ok(Self {
            registry: Arc::new(registry),
            registry_file,
            registry_dirs: Vec::new(),
            engine_gates: Vec::new(),
            certificate_key: None,
            workspace_root: None,
        })
    }

    /// Use an already loaded registry; `registry_file` must be the file it
    /// was loaded from (its raw entry is what certificates digest).
    pub fn with_registry(registry: Arc<Registry>, registry_file: impl Into<PathBuf>) -> Self {
        Self {
            registry,
            registry_file: registry_file.into(),
            registry_dirs: Vec::new(),
            engine_gates: Vec::new(),
            certificate_key: None,
            workspace_root: None,
        }
    }

    /// The overlay directories the registry was loaded with
    /// (`Registry::load_with_overlays`), so that certificates digest the
    /// entry in effect.
    pub fn with_registry_dirs(mut self, dirs: Vec<PathBuf>) -> Self {
        self.registry_dirs = dirs;
        self
    }

    /// Install engine-specific gates (e.g. `G-SAFETY.SANDBOX`) in the
    /// runtimes the suite builds, as a host would: an engine whose registry
    /// entry requires a gate cannot be admitted without it.
    pub fn with_engine_gates(mut self, gates: Vec<Arc<dyn mex_gates::Gate>>) -> Self {
        self.engine_gates = gates;
        self
    }

    /// Sign the certificates [`crate::certify`] writes with this key (the
    /// home's); a [`crate::CertificateCertifier`] given the public key then
    /// refuses unsigned or foreign certificates.
    pub fn with_certificate_key(mut self, key: Option<Arc<mex_attest::HomeKey>>) -> Self {
        self.certificate_key = key;
        self
    }

    /// Run engines in shadow workspaces under `root`: give it the
    /// workspace root of the production runtime (`MexRuntime::workspace_root`
    /// of the home's runtime), so that an engine under test sees the very
    /// paths it sees in production. Without it, the runtime's default
    /// root for the suite's private temporary home is used (the production
    /// layout, under another home).
    pub fn with_workspace_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.workspace_root = Some(root.into());
        self
    }

    /// The key certificates are signed with, if any.
    pub fn certificate_key(&self) -> Option<&mex_attest::HomeKey> {
        self.certificate_key.as_deref()
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The registry file.
    pub fn registry_file(&self) -> &Path {
        &self.registry_file
    }

    /// Run the standard suite and the engine's vectors; see
    /// [`Harness::run_with_progress`].
    pub fn run(&self, engine: Arc<dyn Engine>) -> Result<ConformanceReport, ConformanceError> {
        self.run_with_progress(engine, &mut |_| {})
    }

    /// Run the suite, calling `progress` after each case. A failing engine
    /// is a report with `passed: false`; `Err` means the suite could not run
    /// at all (unreadable registry, no temporary directory, undeclared engine).
    pub fn run_with_progress(
        &self,
        engine: Arc<dyn Engine>,
        progress: &mut dyn FnMut(&CaseReport),
    ) -> Result<ConformanceReport, ConformanceError> {
        self.run_sealed(engine, progress)
            .map(SuiteOutcome::into_report)
    }

    /// [`Harness::run_with_progress`], returning the sealed outcome that
    /// [`crate::write_certificate`] accepts.
    pub fn run_sealed(
        &self,
        engine: Arc<dyn Engine>,
        progress: &mut dyn FnMut(&CaseReport),
    ) -> Result<SuiteOutcome, ConformanceError> {
        let id = engine.engine_id();
        let code =
            mex_runtime::code_digest(&*engine).map_err(|message| ConformanceError::Subject {
                engine: id.to_string(),
                message,
            })?;
        let entry = self
            .registry
            .engine(&id)
            .map_err(|e| ConformanceError::Subject {
                engine: id.to_string(),
                message: e.to_string(),
            })?;
        let entry_digest =
            registry_entry_digest_with(&self.registry_file, &self.registry_dirs, id.as_str())?;
        let env = self.env(&engine, entry)?;
        let mut cases = Vec::new();
        let mut push = |c: CaseReport, cases: &mut Vec<CaseReport>| {
            progress(&c);
            cases.push(c);
        };

        let base_vector = entry.vectors.iter().find(|v| {
            v.kind == VectorKind::Golden
                && !v.is_pending()
                && matches!(v.expect, Expectation::Succeeded { .. })
        });
        match base_vector.map(|v| prepare(&env.store, v)) {
            Some(Ok(base)) => {
                for c in standard_cases(&env, entry, &engine, &base) {
                    push(c, &mut cases);
                }
            }
            Some(Err(message)) => push(
                fail(
                    "suite.base_operation",
                    Category::Vector,
                    "the golden vector the standard cases derive from can be prepared",
                    "its payloads stored with the hashes its handles claim",
                    "not prepared",
                    message,
                ),
                &mut cases,
            ),
            None => push(
                fail(
                    "suite.base_operation",
                    Category::Vector,
                    "the engine has a runnable golden vector for the standard cases to derive from",
                    "a golden vector with an operation file and payloads",
                    "none declared",
                    "add a golden conformance vector (operation file + payloads) to the engine's registry entry",
                ),
                &mut cases,
            ),
        }
        for v in &entry.vectors {
            push(vector_case(&env, v), &mut cases);
        }

        let count = |v: Verdict| cases.iter().filter(|c| c.verdict == v).count() as u32;
        let summary = Summary {
            passed: count(Verdict::Pass),
            failed: count(Verdict::Fail),
            not_applicable: count(Verdict::NotApplicable),
        };
        let report = ConformanceReport {
            report_version: REPORT_VERSION.into(),
            suite_version: SUITE_VERSION.into(),
            engine_id: id.to_string(),
            implementation_id: engine.implementation_id().to_owned(),
            implementation_version: engine.implementation_version().to_string(),
            registry_entry_digest: entry_digest,
            code_kind: code.kind.clone(),
            code_digest: code.digest,
            determinism_ceiling: entry.determinism_ceiling.to_string(),
            passed: summary.failed == 0,
            summary,
            cases,
        };
        Ok(SuiteOutcome { report, code })
    }

    fn env(
        &self,
        engine: &Arc<dyn Engine>,
        entry: &mex_registry::Engine,
    ) -> Result<Env, ConformanceError> {
        // No telling name: the engine must not be able to recognise the
        // suite by a path (see `with_workspace_root`).
        let home = tempfile::tempdir()
            .map_err(|e| ConformanceError::Setup(format!("temporary mex home: {e}")))?;

        let store = Arc::new(
            ArtifactStore::at(home.path().join("artifacts"))
                .map_err(|e| ConformanceError::Setup(format!("artifact store: {e}")))?,
        );
        let recorder: Arc<dyn FlightRecorder> = Arc::new(MemoryRecorder::new());
        // Grant what the engine's operations declare (consent-requiring kinds
        // included, but no consent records: "unconsented" must be refused).
        let mut grants: BTreeSet<String> =
            ["fs.read:*".to_owned(), "fs.write:artifacts".to_owned()].into();
        for op in entry.operations.values() {
            for c in op
                .required_capabilities
                .iter()
                .chain(&op.optional_capabilities)
            {
                grants.insert(c.to_string());
            }
        }
        grants.insert("net.http".into());
        let policy = json!({
            "policy_version": mex_gates::policy::POLICY_VERSION,
            "default_profile": "conformance",
            "profiles": {
                "conformance": {"description": "what the engine declares", "grants": grants},
                "conformance-none": {"description": "nothing", "grants": []},
            },
        });
        let policy = CapabilityPolicy::from_json_str(&policy.to_string())
            .map_err(|e| ConformanceError::Setup(format!("policy: {e}")))?;
        let build = |profile: &str| {
            let mut builder = MexRuntime::builder();
            for gate in &self.engine_gates {
                builder = builder.engine_gate(gate.clone());
            }
            // Without a root, the runtime's own default, as in production.
            if let Some(root) = &self.workspace_root {
                builder = builder.workspace_root(root.clone());
            }
            builder
                .registry(self.registry.clone())
                .policy(policy.clone())
                .profile(profile)
                .store(store.clone())
                .recorder(recorder.clone())
                .engine(engine.clone())
                .trust_uncertified(engine.engine_id())
                .result_cache(false)
                .build()
                .map_err(|e| ConformanceError::Setup(format!("runtime: {e}")))
        };
        Ok(Env {
            rt: build("conformance")?,
            rt_none: build("conformance-none")?,
            store,
            recorder,
            _home: home,
        })
    }
}

/// Store a vector's payloads and return its operation rewritten to their
/// handles. The store assigns artifact ids, so every occurrence of a
/// vector's artifact id (inputs and params) is replaced by the stored one;
/// hash, size, kind, classification and media type must match the vector's.
fn prepare(store: &ArtifactStore, v: &ConformanceVector) -> Result<PlannedOperation, String> {
    let Some((_, planned)) = &v.planned else {
        return Err(format!("vector {} is pending (no operation file)", v.id));
    };
    let mut op = planned.clone();
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for payload in &v.payloads {
        let (id, path) = (&payload.artifact_id, &payload.path);
        let Some(handle) = op
            .inputs
            .iter()
            .filter_map(Input::as_artifact)
            .find(|h| h.artifact_id == *id)
            .cloned()
        else {
            return Err(format!(
                "vector {}: payload {id} is not an input of its operation",
                v.id
            ));
        };
        let mut options = PutOptions::new(handle.kind, handle.classification);
        options.exportable = handle.exportable;
        options.retention_ttl_days = handle.retention_ttl_days;
        options.media_type = handle.media_type.clone();
        options.expected = Some(mex_artifacts::Expected {
            hash: handle.content_hash,
            size: handle.size_bytes,
        });
        let failed =
            |e: &dyn std::fmt::Display| format!("vector {}: payload {}: {e}", v.id, path.display());
        // A directory becomes a bundle exactly as the registry loader
        // computed its handle: line endings kept.
        let stored = match payload.kind {
            PayloadKind::Dir => store
                .put_dir(
                    path,
                    &BundleOptions {
                        put: options,
                        normalize_line_endings: false,
                    },
                )
                .map_err(|e| failed(&e))?,
            _ => {
                let bytes = std::fs::read(path).map_err(|e| failed(&e))?;
                store.put_bytes(&bytes, &options).map_err(|e| failed(&e))?
            }
        };
        ids.insert(id.to_string(), stored.artifact_id.to_string());
        for input in &mut op.inputs {
            if let Input::Artifact(h) = input
                && h.artifact_id == *id
            {
                *h = stored.clone();
            }
        }
    }
    let mut params = Value::Object(std::mem::take(&mut op.params));
    remap(&mut params, &ids);
    if let Value::Object(map) = params {
        op.params = map;
    }
    op.op_id = Uuid::new_v4();
    Ok(op)
}

fn remap(v: &mut Value, ids: &BTreeMap<String, String>) {
    match v {
        Value::String(s) => {
            if let Some(new) = ids.get(s.as_str()) {
                *s = new.clone();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| remap(i, ids)),
        Value::Object(map) => map.values_mut().for_each(|i| remap(i, ids)),
        _ => {}
    }
}

fn execute(env: &Env, rt: &MexRuntime, op: &PlannedOperation) -> Run {
    let mut op = op.clone();
    op.op_id = Uuid::new_v4();
    execute_value(env, rt, &op, op_json(&op))
}

fn op_json(op: &PlannedOperation) -> Value {
    op.to_json()
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null)
}

fn execute_value(env: &Env, rt: &MexRuntime, op: &PlannedOperation, doc: Value) -> Run {
    let before: BTreeSet<Uuid> = env.store.list().unwrap_or_default().into_iter().collect();
    let bytes = serde_json::to_vec(&doc).unwrap_or_default();
    let result = rt.execute_json(&bytes);
    let after: BTreeSet<Uuid> = env.store.list().unwrap_or_default().into_iter().collect();
    Run {
        op: op.clone(),
        result,
        new_artifacts: after.difference(&before).copied().collect(),
    }
}

/// `status: gate/code, ...` or `status: code, ...`, sorted, for reports.
fn observe(r: &EngineResult) -> String {
    let mut parts: BTreeSet<String> = r
        .denials
        .iter()
        .map(|d| format!("{}/{}", d.gate, d.code))
        .collect();
    parts.extend(r.errors.iter().map(|e| e.code.to_string()));
    let mut s = r.status.as_str().to_owned();
    if r.status == ResultStatus::Succeeded {
        s.push_str(&format!(
            ": {} output(s), {} evidence",
            r.outputs.len(),
            r.evidence.len()
        ));
    }
    if !parts.is_empty() {
        s.push_str(": ");
        s.push_str(&parts.into_iter().collect::<Vec<_>>().join(", "));
    }
    s
}

fn case(
    id: &str,
    category: Category,
    description: &str,
    expected: impl Into<String>,
    observed: impl Into<String>,
    verdict: Verdict,
    finding: Option<String>,
) -> CaseReport {
    CaseReport {
        id: id.to_owned(),
        category,
        description: description.to_owned(),
        expected: expected.into(),
        observed: observed.into(),
        verdict,
        finding,
    }
}

fn fail(
    id: &str,
    category: Category,
    description: &str,
    expected: impl Into<String>,
    observed: impl Into<String>,
    finding: impl Into<String>,
) -> CaseReport {
    case(
        id,
        category,
        description,
        expected,
        observed,
        Verdict::Fail,
        Some(finding.into()),
    )
}

fn not_applicable(id: &str, category: Category, description: &str, why: &str) -> CaseReport {
    case(
        id,
        category,
        description,
        "(not applicable)",
        "not run",
        Verdict::NotApplicable,
        Some(why.to_owned()),
    )
}

/// Pass when the result is a denial that includes `gate`/`code`.
fn expect_denial(
    id: &str,
    category: Category,
    description: &str,
    run: &Run,
    gate: &str,
    code: &str,
) -> CaseReport {
    expect_denial_tolerating(id, category, description, run, gate, code, &[])
}

/// Like [`expect_denial`], also accepting denials with the `tolerated` codes
/// (a mutation that unavoidably trips a second rule, e.g. an oversized
/// unknown param is also a schema violation). Any other denial fails.
fn expect_denial_tolerating(
    id: &str,
    category: Category,
    description: &str,
    run: &Run,
    gate: &str,
    code: &str,
    tolerated: &[&str],
) -> CaseReport {
    let expected = format!("denied by {gate} with {code}");
    let r = &run.result;
    let hit = r
        .denials
        .iter()
        .any(|d| d.gate.as_str() == gate && d.code.as_str() == code);
    let others: Vec<String> = r
        .denials
        .iter()
        .filter(|d| d.code.as_str() != code && !tolerated.contains(&d.code.as_str()))
        .map(|d| d.code.to_string())
        .collect();
    if r.status == ResultStatus::Denied && hit && others.is_empty() {
        return case(
            id,
            category,
            description,
            expected,
            observe(r),
            Verdict::Pass,
            None,
        );
    }
    let finding = if r.status == ResultStatus::Denied && hit {
        format!(
            "{code} was reported, but so were {}: the base operation must pass every other gate, so only the mutated rule refuses",
            others.join(", ")
        )
    } else if r.status == ResultStatus::Denied {
        format!(
            "refused, but not by {gate} with {code}: a denial by the wrong gate or code is a failure"
        )
    } else {
        format!(
            "the runtime did not refuse ({}); {gate} must refuse this operation before the engine runs",
            r.status.as_str()
        )
    };
    fail(id, category, description, expected, observe(r), finding)
}

/// Pass when the result has `status` and an error with `code`, and no outputs.
fn expect_error(
    id: &str,
    category: Category,
    description: &str,
    run: &Run,
    status: ResultStatus,
    code: &str,
) -> CaseReport {
    let expected = format!("{} with {code}, no outputs", status.as_str());
    let r = &run.result;
    let ok = r.status == status
        && r.errors.iter().any(|e| e.code.as_str() == code)
        && r.outputs.is_empty();
    if let Some(e) = r
        .errors
        .iter()
        .find(|e| e.message.len() > MAX_ERROR_MESSAGE_BYTES)
    {
        return fail(
            id,
            category,
            description,
            expected,
            observe(r),
            format!(
                "error {} carries a {}-byte message: errors say what went wrong in a sentence; data belongs in an artifact (details_ref), never inline",
                e.code,
                e.message.len()
            ),
        );
    }
    if ok {
        return case(
            id,
            category,
            description,
            expected,
            observe(r),
            Verdict::Pass,
            None,
        );
    }
    let finding = if r.status == status {
        format!("the status is right but the code is not {code} (or outputs leaked)")
    } else {
        format!("expected {}, got {}", status.as_str(), r.status.as_str())
    };
    fail(id, category, description, expected, observe(r), finding)
}

fn first_input_mut(op: &mut PlannedOperation) -> Option<&mut ArtifactHandle> {
    op.inputs.iter_mut().find_map(|i| match i {
        Input::Artifact(h) => Some(h),
        Input::Entity(_) => None,
    })
}

fn output_hashes(r: &EngineResult) -> Vec<String> {
    r.outputs
        .iter()
        .map(|h| h.content_hash.to_string())
        .collect()
}

/// The registry's `output_digest`: SHA-256 of the RFC 8785 form of the list
/// of output content hashes (hex), in output order.
pub fn output_digest(result: &EngineResult) -> Option<Sha256Digest> {
    mex_envelope::canonical::digest(&output_hashes(result)).ok()
}

/// Canonical digests of the outputs (D2): JSON outputs in RFC 8785 form,
/// anything else by its bytes.
fn canonical_digests(store: &ArtifactStore, r: &EngineResult) -> Vec<String> {
    r.outputs
        .iter()
        .map(|h| match store.read(h) {
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => mex_envelope::canonical::digest(&v)
                    .map_or_else(|_| h.content_hash.to_string(), |d| d.to_string()),
                Err(_) => h.content_hash.to_string(),
            },
            Err(e) => format!("unreadable: {e}"),
        })
        .collect()
}

fn standard_cases(
    env: &Env,
    entry: &mex_registry::Engine,
    engine: &Arc<dyn Engine>,
    base: &PlannedOperation,
) -> Vec<CaseReport> {
    let mut out = Vec::new();
    let op_decl = entry.operations.get(&base.operation);

    // --- Schema -------------------------------------------------------------
    let mut doc = op_json(base);
    doc["op_id"] = json!(Uuid::new_v4().to_string());
    doc["conformance_unknown_field"] = json!(true);
    let run = execute_value(env, &env.rt, base, doc);
    out.push(expect_denial(
        "schema.envelope_invalid",
        Category::Schema,
        "an envelope with an unknown field is refused",
        &run,
        mex_registry::GATE_SCHEMA,
        "G-SCHEMA.ENVELOPE_INVALID",
    ));
    let mut op = base.clone();
    op.params
        .insert("conformance_unknown_param".into(), json!(true));
    out.push(expect_denial(
        "schema.params_invalid",
        Category::Schema,
        "params outside the operation's schema are refused",
        &execute(env, &env.rt, &op),
        mex_registry::GATE_SCHEMA,
        "G-SCHEMA.PARAMS_INVALID",
    ));

    // --- Integrity ----------------------------------------------------------
    let mut op = base.clone();
    match first_input_mut(&mut op) {
        Some(h) => {
            h.content_hash = Sha256Digest::of(b"mex-conformance: tampered input");
            out.push(expect_denial(
                "integrity.hash_mismatch",
                Category::Integrity,
                "an input whose hash does not match the stored bytes is refused",
                &execute(env, &env.rt, &op),
                mex_registry::GATE_INTEGRITY,
                "G-INTEGRITY.HASH_MISMATCH",
            ));
            let mut op = base.clone();
            if let Some(h) = first_input_mut(&mut op) {
                h.size_bytes = h.size_bytes.saturating_add(1);
            }
            out.push(expect_denial(
                "integrity.size_mismatch",
                Category::Integrity,
                "an input whose size does not match is refused",
                &execute(env, &env.rt, &op),
                mex_registry::GATE_INTEGRITY,
                "G-INTEGRITY.SIZE_MISMATCH",
            ));
        }
        None => out.push(not_applicable(
            "integrity.hash_mismatch",
            Category::Integrity,
            "an input whose hash does not match is refused",
            "the base operation has no input artifact",
        )),
    }

    // --- Capabilities -------------------------------------------------------
    let required: Vec<&Capability> = op_decl
        .map(|o| o.required_capabilities.iter().collect())
        .unwrap_or_default();
    match required
        .iter()
        .find(|c| base.capabilities_requested.contains(c))
    {
        Some(cap) => {
            let mut op = base.clone();
            op.capabilities_requested.retain(|c| c != *cap);
            out.push(expect_denial(
                "cap.required_missing",
                Category::Capability,
                "an operation that does not request a capability its operation requires is refused",
                &execute(env, &env.rt, &op),
                mex_registry::GATE_CAP,
                "G-CAP.REQUIRED_MISSING",
            ));
        }
        None => out.push(not_applicable(
            "cap.required_missing",
            Category::Capability,
            "a missing required capability is refused",
            "the operation requires no capability",
        )),
    }
    out.push(expect_denial(
        "cap.not_granted",
        Category::Capability,
        "a capability the caller's profile does not grant is refused",
        &execute(env, &env.rt_none, base),
        mex_registry::GATE_CAP,
        "G-CAP.NOT_GRANTED",
    ));
    let sensitive = op_decl.and_then(|o| {
        o.required_capabilities
            .iter()
            .chain(&o.optional_capabilities)
            .find(|c| c.is_sensitive())
            .cloned()
    });
    let mut op = base.clone();
    let (cap, code, why) = match sensitive {
        Some(cap) => (
            Some(cap),
            "G-CAP.CONSENT_MISSING",
            "granted by the profile but without a consent record",
        ),
        None => (
            "net.http".parse::<Capability>().ok(),
            "G-CAP.NOT_ALLOWED_BY_OPERATION",
            "the operation declares no consent-requiring capability, so asking for one is refused before consent is considered",
        ),
    };
    let Some(cap) = cap else {
        out.push(not_applicable(
            "cap.unconsented",
            Category::Capability,
            "a consent-requiring capability without a consent record is refused",
            "no consent-requiring capability could be formed",
        ));
        return out;
    };
    if !op.capabilities_requested.contains(&cap) {
        op.capabilities_requested.push(cap.clone());
    }
    let mut c = expect_denial(
        "cap.unconsented",
        Category::Capability,
        "a consent-requiring capability without a consent record is refused",
        &execute(env, &env.rt, &op),
        mex_registry::GATE_CAP,
        code,
    );
    if c.verdict == Verdict::Pass {
        c.finding = Some(format!("{cap}: {why}"));
    }
    out.push(c);

    // --- Budgets ------------------------------------------------------------
    let mut op = base.clone();
    op.budget.output_bytes = Some(1);
    op.output_spec = None;
    out.push(expect_error(
        "budget.output_bytes",
        Category::Budget,
        "a 1-byte output budget ends the run as budget exceeded, outputs discarded",
        &execute(env, &env.rt, &op),
        ResultStatus::BudgetExceeded,
        "RUNTIME.OUTPUT_BUDGET_EXCEEDED",
    ));
    let mut op = base.clone();
    op.budget.wall_time_ms = Some(1);
    let run = execute(env, &env.rt, &op);
    let mut c = expect_error(
        "budget.wall_time",
        Category::Budget,
        "a 1 ms wall-time budget ends the run as budget exceeded, outputs discarded",
        &run,
        ResultStatus::BudgetExceeded,
        "RUNTIME.WALL_TIME_EXCEEDED",
    );
    if run.result.status == ResultStatus::Succeeded {
        c.verdict = Verdict::Pass;
        c.finding = Some("the engine finished inside 1 ms, so the deadline was not reached; the watchdog itself is covered by the runtime's tests".into());
    }
    out.push(c);

    // --- Artifact-first I/O -------------------------------------------------
    let mut op = base.clone();
    op.params.insert(
        "conformance_padding".into(),
        json!("x".repeat(mex_envelope::MAX_INLINE_PARAMS_BYTES + 1)),
    );
    out.push(expect_denial_tolerating(
        "artifact_first.params_too_large",
        Category::ArtifactFirst,
        "more than 32 KiB of inline params is refused",
        &execute(env, &env.rt, &op),
        mex_registry::GATE_INTEGRITY,
        "G-INTEGRITY.PARAMS_TOO_LARGE",
        &["G-SCHEMA.PARAMS_INVALID"],
    ));

    let base_run = execute(env, &env.rt, base);
    out.extend(outputs_cases(env, entry, &base_run));
    out.push(provenance_case(env, engine, &base_run));
    out.push(determinism_case(env, &base_run));
    out
}

fn outputs_cases(env: &Env, entry: &mex_registry::Engine, run: &Run) -> Vec<CaseReport> {
    let r = &run.result;
    let decls = entry
        .operations
        .get(&run.op.operation)
        .map(|o| o.outputs.clone())
        .unwrap_or_default();
    let mut out = Vec::new();

    // Every output is an artifact: present, verified, with a manifest naming this op.
    let id = "artifact_first.outputs_are_artifacts";
    let desc =
        "the base operation succeeds and every output is a verified artifact with a manifest";
    let expected = "succeeded; each declared required output present as a verified artifact";
    let mut problems = Vec::new();
    if r.status != ResultStatus::Succeeded {
        problems.push(format!(
            "the base operation did not succeed ({})",
            observe(r)
        ));
    } else {
        let required = decls.iter().filter(|d| !d.optional).count();
        let wanted = required.max(usize::from(!decls.is_empty()));
        if r.outputs.len() < wanted {
            let log = r.logs_ref.as_ref().map_or(String::new(), |l| {
                format!("; its log carries {} bytes", l.size_bytes)
            });
            problems.push(format!(
                "the operation declares {} required output(s) but the result has {} output artifact(s){log}: outputs must be written with write_output, never inline in a log or message",
                wanted,
                r.outputs.len()
            ));
        }
        for h in r.outputs.iter().chain(&r.evidence).chain(&r.logs_ref) {
            if let Err(e) = env.store.read(h) {
                problems.push(format!("{} does not verify: {e}", h.artifact_id));
            }
            match env.store.manifest(h.artifact_id) {
                Ok(m) if m.producer.as_ref().is_some_and(|p| p.op_id == r.op_id) => {}
                Ok(_) => problems.push(format!(
                    "{}'s manifest does not name this operation as its producer",
                    h.artifact_id
                )),
                Err(e) => problems.push(format!("{} has no manifest: {e}", h.artifact_id)),
            }
        }
    }
    out.push(verdict_from(
        id,
        Category::ArtifactFirst,
        desc,
        expected,
        observe(r),
        problems,
    ));

    // Declared types.
    let mut problems = Vec::new();
    let media: BTreeSet<&str> = decls
        .iter()
        .flat_map(|d| d.media_types.iter().map(String::as_str))
        .collect();
    let any_media = decls.iter().any(|d| d.media_types.is_empty());
    let bundles_allowed = decls.iter().any(|d| d.output_type == OutputType::Bundle);
    let non_bundles_allowed = decls.iter().any(|d| d.output_type != OutputType::Bundle);
    for h in &r.outputs {
        let mt = h.media_type.as_ref().map(|m| m.as_str());
        if !any_media && !mt.is_some_and(|m| media.contains(m)) {
            problems.push(format!(
                "output {} claims media type {} which the registry does not declare for {} (declared: {})",
                h.content_hash,
                mt.unwrap_or("(none)"),
                run.op.operation,
                media.iter().copied().collect::<Vec<_>>().join(", ")
            ));
        }
        let is_bundle = h.kind == ArtifactKind::Bundle;
        if (is_bundle && !bundles_allowed) || (!is_bundle && !non_bundles_allowed) {
            problems.push(format!(
                "output {} has kind {:?}, which no declared output type of {} allows",
                h.content_hash, h.kind, run.op.operation
            ));
        }
    }
    out.push(verdict_from(
        "artifact_first.declared_types",
        Category::ArtifactFirst,
        "every output has a kind and media type the registry declares for the operation",
        "outputs within the declared output types",
        observe(r),
        problems,
    ));

    // Nothing reached the store behind the runtime's back.
    let mut problems = Vec::new();
    let accounted: BTreeSet<Uuid> = r
        .outputs
        .iter()
        .chain(&r.evidence)
        .chain(&r.logs_ref)
        .map(|h| h.artifact_id)
        .collect();
    let stray: Vec<String> = run
        .new_artifacts
        .difference(&accounted)
        .map(ToString::to_string)
        .collect();
    if !stray.is_empty() {
        problems.push(format!(
            "artifacts appeared in the store that the result does not account for: {} (an engine must not write to the store except through its ExecutionContext)",
            stray.join(", ")
        ));
    }
    match env.store.verify() {
        Ok(report) if report.is_ok() => {}
        Ok(report) => problems.push(format!(
            "the store does not verify after the run: {report:?}"
        )),
        Err(e) => problems.push(format!("the store cannot be verified: {e}")),
    }
    out.push(verdict_from(
        "artifact_first.no_forged_artifacts",
        Category::ArtifactFirst,
        "the store gains exactly the result's artifacts, and still verifies",
        "no stray or corrupt artifacts",
        format!("{} new artifact(s)", run.new_artifacts.len()),
        problems,
    ));
    out
}

fn verdict_from(
    id: &str,
    category: Category,
    description: &str,
    expected: &str,
    observed: String,
    problems: Vec<String>,
) -> CaseReport {
    if problems.is_empty() {
        case(
            id,
            category,
            description,
            expected,
            observed,
            Verdict::Pass,
            None,
        )
    } else {
        fail(
            id,
            category,
            description,
            expected,
            observed,
            problems.join("; "),
        )
    }
}

fn provenance_case(env: &Env, engine: &Arc<dyn Engine>, run: &Run) -> CaseReport {
    let r = &run.result;
    let op = &run.op;
    let mut problems = Vec::new();
    match (&r.provenance, r.status) {
        (_, s) if s != ResultStatus::Succeeded => {
            problems.push(format!(
                "the base operation did not succeed ({})",
                observe(r)
            ));
        }
        (None, _) => problems.push("a successful result without provenance".into()),
        (Some(p), _) => {
            if p.engine_id != op.engine_id {
                problems.push("engine_id".into());
            }
            if p.implementation_id != engine.implementation_id()
                || p.implementation_version != engine.implementation_version()
            {
                problems.push("implementation id/version".into());
            }
            if p.operation != op.operation {
                problems.push("operation".into());
            }
            if p.determinism != op.determinism {
                problems.push("determinism".into());
            }
            if op.config_hash().ok() != Some(p.config_hash) {
                problems.push("config_hash".into());
            }
            let inputs: Vec<&ArtifactHandle> =
                op.inputs.iter().filter_map(Input::as_artifact).collect();
            if p.inputs.iter().collect::<Vec<_>>() != inputs {
                problems.push("inputs".into());
            }
            if p.outputs != r.outputs {
                problems.push("outputs".into());
            }
            for key in ["runtime", "os", "arch"] {
                if !p.environment.contains_key(key) {
                    problems.push(format!("environment.{key}"));
                }
            }
            if p.capabilities_granted
                .iter()
                .any(|c| !op.capabilities_requested.contains(c))
            {
                problems.push("capabilities_granted exceed the request".into());
            }
            for h in &r.outputs {
                match env.store.manifest(h.artifact_id) {
                    Ok(m)
                        if m.producer
                            .as_ref()
                            .is_some_and(|pr| pr.config_hash == p.config_hash) => {}
                    _ => problems.push(format!("manifest of {} (config hash)", h.artifact_id)),
                }
            }
            if !problems.is_empty() {
                problems.insert(0, "provenance fields missing or wrong:".into());
            }
        }
    }
    match env.recorder.events(&EventQuery::op(r.op_id)) {
        Ok(events) => {
            let kinds: BTreeSet<EventKind> = events.iter().map(|e| e.kind).collect();
            for k in [
                EventKind::OpReceived,
                EventKind::EngineStarted,
                EventKind::EngineFinished,
                EventKind::OpCompleted,
            ] {
                if !kinds.contains(&k) {
                    problems.push(format!(
                        "the Flight Recorder has no {k:?} event for the run"
                    ));
                }
            }
            let written = events
                .iter()
                .filter(|e| e.kind == EventKind::ArtifactWritten)
                .count();
            let produced = r.outputs.len() + r.evidence.len() + usize::from(r.logs_ref.is_some());
            if written < produced {
                problems.push(format!(
                    "{produced} artifact(s) produced but {written} artifact_written event(s) recorded"
                ));
            }
        }
        Err(e) => problems.push(format!("the Flight Recorder cannot be queried: {e}")),
    }
    verdict_from(
        "provenance.complete",
        Category::Provenance,
        "provenance names engine, implementation, operation, determinism, config hash, inputs, outputs, environment; manifests and the Flight Recorder agree",
        "complete provenance and records",
        observe(r),
        problems,
    )
}

fn determinism_case(env: &Env, base: &Run) -> CaseReport {
    let level = base.op.determinism;
    let id = format!("determinism.{level}").to_lowercase();
    let r = &base.result;
    match level {
        DeterminismLevel::D3 | DeterminismLevel::D2 => {
            let second = execute(env, &env.rt, &base.op);
            let (a, b, how) = if level == DeterminismLevel::D3 {
                (
                    output_hashes(r),
                    output_hashes(&second.result),
                    "output content hashes",
                )
            } else {
                (
                    canonical_digests(&env.store, r),
                    canonical_digests(&env.store, &second.result),
                    "canonical output digests",
                )
            };
            let expected = format!("two runs succeed with identical {how}");
            let observed = format!("{} / {}", observe(r), observe(&second.result));
            let mut problems = Vec::new();
            if r.status != ResultStatus::Succeeded
                || second.result.status != ResultStatus::Succeeded
            {
                problems.push("both runs must succeed".to_owned());
            } else if a != b {
                problems.push(format!(
                    "{level} output varies between runs: {how} {a:?} then {b:?}; a {level} engine must not depend on time, randomness, addresses or iteration order"
                ));
            }
            verdict_from(
                &id,
                Category::Determinism,
                "the operation's determinism claim holds when run twice",
                &expected,
                observed,
                problems,
            )
        }
        DeterminismLevel::D1 | DeterminismLevel::D0 => {
            let mut problems = Vec::new();
            if r.errors
                .iter()
                .any(|e| e.code.as_str() == "G-RESULT.EVIDENCE_MISSING")
            {
                problems.push(format!(
                    "a {level} result without evidence was refused by the runtime (G-RESULT.EVIDENCE_MISSING): write evidence with write_evidence"
                ));
            } else if r.status != ResultStatus::Succeeded {
                problems.push(format!(
                    "the base operation did not succeed ({})",
                    observe(r)
                ));
            } else if r.evidence.is_empty() {
                problems.push(format!("a {level} result must carry evidence artifacts"));
            }
            verdict_from(
                &id,
                Category::Determinism,
                "a D0/D1 result carries evidence artifacts",
                "succeeded with evidence",
                observe(r),
                problems,
            )
        }
    }
}

fn vector_case(env: &Env, v: &ConformanceVector) -> CaseReport {
    let id = format!("vector.{}", v.id);
    let op = match prepare(&env.store, v) {
        Ok(op) => op,
        Err(message) if v.is_pending() && v.optional => {
            return not_applicable(&id, Category::Vector, &v.description, &message);
        }
        Err(message) => {
            return fail(
                &id,
                Category::Vector,
                &v.description,
                "a runnable vector",
                "not run",
                message,
            );
        }
    };
    let run = execute(env, &env.rt, &op);
    match &v.expect {
        Expectation::Succeeded {
            stability,
            output_digest: want,
        } => {
            let r = &run.result;
            let expected = format!(
                "succeeded, stable at {stability}{}",
                want.map_or(String::new(), |d| format!(", output digest {d}"))
            );
            let mut problems = Vec::new();
            if r.status != ResultStatus::Succeeded {
                problems.push(format!("the golden vector must succeed ({})", observe(r)));
                return fail(
                    &id,
                    Category::Vector,
                    &v.description,
                    expected,
                    observe(r),
                    problems.join("; "),
                );
            }
            let again = execute(env, &env.rt, &op);
            let same = match stability {
                DeterminismLevel::D3 => output_hashes(r) == output_hashes(&again.result),
                DeterminismLevel::D2 => {
                    canonical_digests(&env.store, r) == canonical_digests(&env.store, &again.result)
                }
                _ => true,
            };
            if !same {
                problems.push(format!("two runs differ at {stability}"));
            }
            let got = output_digest(r);
            let observed = format!(
                "{}; output digest {}",
                observe(r),
                got.map_or("(none)".into(), |d| d.to_string())
            );
            let mut c = match want {
                Some(want) if Some(*want) != got => {
                    problems.push(format!(
                        "output digest {} differs from the registry's {want}",
                        got.map_or("(none)".into(), |d| d.to_string())
                    ));
                    verdict_from(
                        &id,
                        Category::Vector,
                        &v.description,
                        &expected,
                        observed,
                        problems,
                    )
                }
                _ => verdict_from(
                    &id,
                    Category::Vector,
                    &v.description,
                    &expected,
                    observed,
                    problems,
                ),
            };
            if want.is_none() && c.verdict == Verdict::Pass {
                c.finding = Some(format!(
                    "the registry has no output_digest for this vector yet; record \"output_digest\": \"{}\"",
                    got.map_or("(none)".into(), |d| d.to_string())
                ));
            }
            c
        }
        Expectation::Denied { gate, code } => expect_denial(
            &id,
            Category::Vector,
            &v.description,
            &run,
            gate.as_str(),
            code.as_str(),
        ),
        Expectation::Failed { code } => expect_error(
            &id,
            Category::Vector,
            &v.description,
            &run,
            ResultStatus::Failed,
            code.as_str(),
        ),
        _ => fail(
            &id,
            Category::Vector,
            &v.description,
            "a known expectation",
            "not run",
            "this harness does not know the vector's expectation kind; upgrade mex-conformance",
        ),
    }
}
