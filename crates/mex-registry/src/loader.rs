//! The loader: JSON text -> wire types -> every rule checked -> [`Registry`].
//!
//! It never stops at the first problem: each engine is decoded on its own, and
//! each rule is checked on everything that decoded, so one load reports every
//! problem it can see, each with a JSON pointer and a line and column.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use mex_envelope::{
    BudgetSpec, Capability, CapabilityKind, DeterminismLevel, EngineId, ErrorCode, GateId,
    MediaType, OperationName, PlannedOperation, Sha256Digest,
};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use crate::error::{Problem, ProblemKind, RegistryError};
use crate::format::{
    EngineDecl, ExpectDecl, GateDecl, ImplementationDecl, ImplementationKind, OperationDecl,
    ParamsSchemaDecl, RegistryVersion, VectorDecl, VectorKind,
};
use crate::gates;
use crate::model::{
    ArtifactParam, BudgetLimits, ConformanceVector, Engine, EngineGate, Expectation, FailureCode,
    Implementation, Operation, PayloadKind, PinnedFile, ProcessSpec, Registry, SchemaSource,
    VectorPayload,
};
use crate::span::{self, Positions};
use crate::{MAX_PAYLOAD_DIR_FILES, MAX_REFERENCED_FILE_BYTES, MAX_REGISTRY_BYTES};
use mex_envelope::json::JsonError;
use mex_envelope::pointer;

/// The engine gate the loader adds to every engine with a process
/// implementation (required).
pub const PROCESS_GATE: &str = "G-SAFETY.PROCESS";

/// The draft every params schema is compiled as.
const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    #[serde(rename = "$schema", default)]
    _schema: Option<String>,
    #[serde(rename = "registry_version")]
    _registry_version: RegistryVersion,
    #[serde(rename = "engines")]
    _engines: Vec<IgnoredAny>,
}

/// A referenced file that has been read and scanned.
struct SourceFile {
    name: String,
    positions: Positions,
}

struct Loader {
    source_name: String,
    base_dir: PathBuf,
    base_canon: Option<PathBuf>,
    positions: Positions,
    problems: Vec<Problem>,
}

/// Load registry text; `base_dir` resolves referenced files.
pub(crate) fn load_text(
    text: &str,
    base_dir: &Path,
    source_name: String,
) -> Result<Registry, RegistryError> {
    let mut loader = Loader {
        source_name: source_name.clone(),
        base_dir: base_dir.to_path_buf(),
        base_canon: base_dir.canonicalize().ok(),
        positions: Positions::default(),
        problems: Vec::new(),
    };
    let engines = loader.run(text);
    let mut problems = loader.problems;
    match engines {
        Some(engines) if problems.is_empty() => Ok(Registry {
            source_name,
            base_dir: base_dir.to_path_buf(),
            engines,
        }),
        _ => {
            problems.sort();
            problems.dedup();
            Err(RegistryError::Invalid {
                source_name,
                problems,
            })
        }
    }
}

fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(idx) if message[idx..].contains(" column ") => &message[..idx],
        _ => message,
    }
}

/// Turn a serde error into (pointer suffix, message).
fn serde_problem(e: &serde_path_to_error::Error<serde_json::Error>) -> (String, String) {
    let mut at = pointer::from_serde_path(e.path());
    let raw = e.inner().to_string();
    let message = strip_position(&raw).to_owned();
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
    {
        at = pointer::join(&at, name);
        return (at, format!("missing required field {name:?}"));
    }
    (at, message)
}

impl Loader {
    fn report(&mut self, at: &str, kind: ProblemKind, message: impl Into<String>) {
        let pos = self.positions.locate(at);
        self.problems.push(Problem {
            file: self.source_name.clone(),
            line: pos.line,
            column: pos.column,
            pointer: at.to_owned(),
            kind,
            message: message.into(),
        });
    }

    fn report_in(&mut self, file: &SourceFile, at: &str, kind: ProblemKind, message: String) {
        let pos = file.positions.locate(at);
        self.problems.push(Problem {
            file: file.name.clone(),
            line: pos.line,
            column: pos.column,
            pointer: at.to_owned(),
            kind,
            message,
        });
    }

    fn run(&mut self, text: &str) -> Option<BTreeMap<EngineId, Engine>> {
        if text.len() > MAX_REGISTRY_BYTES {
            self.report(
                "",
                ProblemKind::TooLarge,
                format!(
                    "the registry is {} bytes, over the {MAX_REGISTRY_BYTES}-byte limit; move params schemas into files",
                    text.len()
                ),
            );
            return None;
        }
        // The strict reader refuses duplicate member names, numbers beyond
        // ±(2^53-1) and a byte-order mark; duplicates are then listed all at
        // once from the position scan.
        let parsed = mex_envelope::json::from_str(text);
        self.positions = span::scan(text);
        let value: Value = match parsed {
            Ok(v) => v,
            Err(e) => {
                let duplicates = std::mem::take(&mut self.positions.duplicate_keys);
                if matches!(e, JsonError::DuplicateKey { .. }) && !duplicates.is_empty() {
                    for (at, _, key) in duplicates {
                        self.report(&at, ProblemKind::DuplicateKey, duplicate_message(&key));
                    }
                } else {
                    let name = self.source_name.clone();
                    self.problems
                        .push(json_problem(name, &e, json_problem_kind(&e)));
                }
                return None;
            }
        };
        if !value.is_object() {
            self.report(
                "",
                ProblemKind::Structure,
                "the registry must be a JSON object with \"registry_version\" and \"engines\"",
            );
            return None;
        }
        if let Err(e) = serde_path_to_error::deserialize::<_, Header>(&value) {
            let (at, message) = serde_problem(&e);
            self.report(&at, ProblemKind::Structure, message);
        }
        let engine_values = value.get("engines").and_then(Value::as_array)?;

        let mut engines = BTreeMap::new();
        let mut first_index: HashMap<String, usize> = HashMap::new();
        for (i, ev) in engine_values.iter().enumerate() {
            let at = format!("/engines/{i}");
            if let Some(id) = ev.get("engine_id").and_then(Value::as_str) {
                if let Some(first) = first_index.get(id) {
                    self.report(
                        &format!("{at}/engine_id"),
                        ProblemKind::DuplicateEngine,
                        format!(
                            "engine {id:?} is already declared at /engines/{first}; declare each engine once"
                        ),
                    );
                } else {
                    first_index.insert(id.to_owned(), i);
                }
            }
            match serde_path_to_error::deserialize::<_, EngineDecl>(ev) {
                Ok(decl) => {
                    if let Some(engine) = self.engine(&at, decl) {
                        engines.entry(engine.id.clone()).or_insert(engine);
                    }
                }
                Err(e) => {
                    let (rel, message) = serde_problem(&e);
                    self.report(&format!("{at}{rel}"), ProblemKind::Structure, message);
                    // Decode the operations one by one to surface their problems too.
                    if let Some(ops) = ev.get("operations").and_then(Value::as_array) {
                        for (j, ov) in ops.iter().enumerate() {
                            if let Err(e) = serde_path_to_error::deserialize::<_, OperationDecl>(ov)
                            {
                                let (rel, message) = serde_problem(&e);
                                self.report(
                                    &format!("{at}/operations/{j}{rel}"),
                                    ProblemKind::Structure,
                                    message,
                                );
                            }
                        }
                    }
                }
            }
        }
        Some(engines)
    }

    fn parse<T: std::str::FromStr>(&mut self, at: &str, text: &str, kind: ProblemKind) -> Option<T>
    where
        T::Err: std::fmt::Display,
    {
        match text.parse::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                self.report(
                    at,
                    kind,
                    e.to_string()
                        .replace("invalid value at / (document root): ", ""),
                );
                None
            }
        }
    }

    fn non_empty(&mut self, at: &str, text: &str, what: &str) {
        if text.trim().is_empty() {
            self.report(
                at,
                ProblemKind::Structure,
                format!("{what} must not be empty: say it in a sentence"),
            );
        }
    }

    fn capabilities(&mut self, at: &str, list: &[String]) -> Vec<Capability> {
        let mut out = Vec::new();
        for (k, text) in list.iter().enumerate() {
            let here = format!("{at}/{k}");
            if let Some(cap) = self.parse::<Capability>(&here, text, ProblemKind::Capability) {
                if out.contains(&cap) {
                    self.report(
                        &here,
                        ProblemKind::Duplicate,
                        format!("capability {text:?} is listed twice"),
                    );
                } else {
                    out.push(cap);
                }
            }
        }
        out
    }

    fn budget(&mut self, at: &str, spec: &BudgetSpec) -> Option<BudgetLimits> {
        let mut get = |name: &str, v: Option<u64>| {
            if v.is_none() {
                self.report(
                    &pointer::join(at, name),
                    ProblemKind::Budget,
                    format!(
                        "missing {name}: the registry is the trusted source of budgets, so every limit must be set"
                    ),
                );
            }
            v
        };
        let cpu = get("cpu_time_ms", spec.cpu_time_ms);
        let wall = get("wall_time_ms", spec.wall_time_ms);
        let mem = get("memory_bytes", spec.memory_bytes);
        let out = get("output_bytes", spec.output_bytes);
        Some(BudgetLimits {
            cpu_time_ms: cpu?,
            wall_time_ms: wall?,
            memory_bytes: mem?,
            output_bytes: out?,
        })
    }

    fn engine(&mut self, at: &str, d: EngineDecl) -> Option<Engine> {
        let before = self.problems.len();
        let id = self.parse::<EngineId>(
            &format!("{at}/engine_id"),
            &d.engine_id,
            ProblemKind::InvalidValue,
        );
        let interface_version = self.parse::<semver::Version>(
            &format!("{at}/interface_version"),
            &d.interface_version,
            ProblemKind::InvalidValue,
        );
        self.non_empty(&format!("{at}/domain"), &d.domain, "domain");
        self.non_empty(&format!("{at}/description"), &d.description, "description");

        // Failure-code catalogue.
        let mut failure_codes: Vec<FailureCode> = Vec::new();
        for (k, fc) in d.failure_codes.iter().enumerate() {
            let here = format!("{at}/failure_codes/{k}/code");
            if let Some(code) = self.parse::<ErrorCode>(&here, &fc.code, ProblemKind::InvalidValue)
            {
                if failure_codes.iter().any(|f| f.code == code) {
                    self.report(
                        &here,
                        ProblemKind::Duplicate,
                        format!("failure code {code} is declared twice"),
                    );
                } else {
                    failure_codes.push(FailureCode {
                        code,
                        description: fc.description.clone(),
                    });
                }
            }
        }
        let catalogue: BTreeSet<String> = d.failure_codes.iter().map(|f| f.code.clone()).collect();

        // Operation names first: gates and vectors refer to them.
        let mut names: Vec<Option<OperationName>> = Vec::new();
        let mut declared: BTreeSet<String> = BTreeSet::new();
        for (j, op) in d.operations.iter().enumerate() {
            let here = format!("{at}/operations/{j}/name");
            let name = self.parse::<OperationName>(&here, &op.name, ProblemKind::InvalidValue);
            if let (Some(name), Some(id)) = (&name, &id)
                && !name.belongs_to(id)
            {
                self.report(
                    &here,
                    ProblemKind::OperationPrefix,
                    format!(
                        "operation {name} does not belong to {id}: its name must start with \"{}.\"",
                        id.name()
                    ),
                );
            }
            if !declared.insert(op.name.clone()) {
                self.report(
                    &here,
                    ProblemKind::Duplicate,
                    format!(
                        "operation {:?} is declared twice in this engine; declare each operation once",
                        op.name
                    ),
                );
            }
            names.push(name);
        }
        if d.operations.is_empty() {
            self.report(
                &format!("{at}/operations"),
                ProblemKind::Structure,
                "an engine must declare at least one operation",
            );
        }

        let gates = self.gates(at, &d.gates, &declared);
        let default_capabilities = self.capabilities(
            &format!("{at}/default_capabilities"),
            &d.default_capabilities,
        );
        let default_budget = self.budget(&format!("{at}/default_budget"), &d.default_budget);
        let max_budget = self.budget(&format!("{at}/max_budget"), &d.max_budget);
        let (def, max) = (&d.default_budget, &d.max_budget);
        for (name, dv, mv) in [
            ("cpu_time_ms", def.cpu_time_ms, max.cpu_time_ms),
            ("wall_time_ms", def.wall_time_ms, max.wall_time_ms),
            ("memory_bytes", def.memory_bytes, max.memory_bytes),
            ("output_bytes", def.output_bytes, max.output_bytes),
        ] {
            if let (Some(dv), Some(mv)) = (dv, mv)
                && dv > mv
            {
                self.report(
                    &format!("{at}/default_budget/{name}"),
                    ProblemKind::Budget,
                    format!(
                        "default {name} {dv} is above the maximum {mv}; lower the default or raise max_budget.{name}"
                    ),
                );
            }
        }
        let implementations = self.implementations(at, &d.implementations);
        let mut gates = gates;
        if implementations.iter().any(|i| i.kind.is_protocol_process())
            && !gates.iter().any(|g| g.gate.as_str() == PROCESS_GATE)
        {
            gates.push(EngineGate {
                gate: GateId::from_static(PROCESS_GATE),
                requirement: crate::format::GateRequirement::Required,
                operations: Vec::new(),
                when_capabilities: Vec::new(),
                reason: "added by the loader: every engine with a process or host_process implementation is checked by G-SAFETY.PROCESS (pinned digest, interpreter allowlist, confinement)".into(),
            });
        }

        let mut operations = BTreeMap::new();
        for (j, (op, name)) in d.operations.iter().zip(names).enumerate() {
            let here = format!("{at}/operations/{j}");
            if let Some(op) = self.operation(&here, op, name, d.determinism_ceiling, &catalogue) {
                operations.entry(op.name.clone()).or_insert(op);
            }
        }

        let vectors = match &id {
            Some(id) => self.vectors(
                at,
                id,
                &d.conformance_vectors,
                &operations,
                &declared,
                &catalogue,
            ),
            None => Vec::new(),
        };

        if self.problems.len() != before {
            return None;
        }
        Some(Engine {
            id: id?,
            interface_version: interface_version?,
            domain: d.domain,
            description: d.description,
            determinism_ceiling: d.determinism_ceiling,
            gates,
            default_capabilities,
            default_budget: default_budget?,
            max_budget: max_budget?,
            implementations,
            failure_codes,
            operations,
            vectors,
        })
    }

    fn gates(
        &mut self,
        at: &str,
        list: &[GateDecl],
        declared: &BTreeSet<String>,
    ) -> Vec<EngineGate> {
        let mut out: Vec<EngineGate> = Vec::new();
        for (k, g) in list.iter().enumerate() {
            let here = format!("{at}/gates/{k}");
            let gate_at = format!("{here}/gate");
            let Some(gate) = self.parse::<GateId>(&gate_at, &g.gate, ProblemKind::InvalidValue)
            else {
                continue;
            };
            if gates::is_global_gate(gate.as_str()) {
                self.report(
                    &gate_at,
                    ProblemKind::GlobalGateListed,
                    format!(
                        "{gate} is a global gate and always runs; list only engine-specific gates (a stricter mode is written {gate}.<MODE>)"
                    ),
                );
                continue;
            }
            if !gates::is_engine_gate(gate.as_str()) {
                let known: Vec<&str> = gates::ENGINE_GATES.iter().map(|(g, _)| *g).collect();
                self.report(
                    &gate_at,
                    ProblemKind::UnknownGate,
                    format!(
                        "unknown gate {gate}; known engine-specific gates: {}",
                        known.join(", ")
                    ),
                );
                continue;
            }
            let mut operations = Vec::new();
            for (m, name) in g.operations.iter().enumerate() {
                if declared.contains(name) {
                    if let Ok(n) = name.parse::<OperationName>() {
                        operations.push(n);
                    }
                } else {
                    self.report(
                        &format!("{here}/operations/{m}"),
                        ProblemKind::UndeclaredOperation,
                        format!("gate {gate} names operation {name:?}, which this engine does not declare"),
                    );
                }
            }
            for (m, kind) in g.when_capabilities.iter().enumerate() {
                if !CapabilityKind::ALL.iter().any(|k| k.as_str() == kind) {
                    let known: Vec<&str> = CapabilityKind::ALL.iter().map(|k| k.as_str()).collect();
                    self.report(
                        &format!("{here}/when_capabilities/{m}"),
                        ProblemKind::Capability,
                        format!(
                            "{kind:?} is not a capability kind; known kinds: {}",
                            known.join(", ")
                        ),
                    );
                }
            }
            self.non_empty(&format!("{here}/reason"), &g.reason, "reason");
            if out.iter().any(|e| e.gate == gate) {
                self.report(
                    &gate_at,
                    ProblemKind::Duplicate,
                    format!("gate {gate} is listed twice; merge the entries"),
                );
                continue;
            }
            out.push(EngineGate {
                gate,
                requirement: g.requirement,
                operations,
                when_capabilities: g.when_capabilities.clone(),
                reason: g.reason.clone(),
            });
        }
        out
    }

    fn implementations(&mut self, at: &str, list: &[ImplementationDecl]) -> Vec<Implementation> {
        let mut out: Vec<Implementation> = Vec::new();
        for (k, imp) in list.iter().enumerate() {
            let here = format!("{at}/implementations/{k}");
            let id_ok = {
                let mut c = imp.id.chars();
                imp.id.len() <= 64
                    && matches!(c.next(), Some('a'..='z'))
                    && c.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
            };
            if !id_ok {
                self.report(
                    &format!("{here}/id"),
                    ProblemKind::InvalidValue,
                    format!(
                        "{:?} is not an implementation id: expected [a-z][a-z0-9-]* (at most 64 characters), e.g. \"mex-engine-physics\"",
                        imp.id
                    ),
                );
            }
            let version = self.parse::<semver::Version>(
                &format!("{here}/version"),
                &imp.version,
                ProblemKind::InvalidValue,
            );
            match imp.kind {
                ImplementationKind::Subprocess if imp.executables.is_empty() => self.report(
                    &format!("{here}/executables"),
                    ProblemKind::Implementation,
                    "a subprocess implementation needs a non-empty executables allowlist (exec is denied unless allowlisted)",
                ),
                ImplementationKind::InProcess if !imp.executables.is_empty() => self.report(
                    &format!("{here}/executables"),
                    ProblemKind::Implementation,
                    "an in_process implementation cannot execute programs; remove executables or make it a subprocess",
                ),
                ImplementationKind::HostProcess if !imp.executables.is_empty() => self.report(
                    &format!("{here}/executables"),
                    ProblemKind::Implementation,
                    "a host_process implementation runs only the host executable; remove executables",
                ),
                ImplementationKind::Wasm if !imp.executables.is_empty() => self.report(
                    &format!("{here}/executables"),
                    ProblemKind::Implementation,
                    "a wasm implementation runs only its pinned module, which cannot execute programs; remove executables",
                ),
                ImplementationKind::Process if !imp.executables.is_empty() => self.report(
                    &format!("{here}/executables"),
                    ProblemKind::Implementation,
                    "a process implementation runs only its pinned file (and its interpreter); remove executables",
                ),
                _ => {}
            }
            let process = self.process_spec(&here, imp);
            let wasm = self.wasm_module(&here, imp);
            for (m, exe) in imp.executables.iter().enumerate() {
                let mut c = exe.chars();
                let ok = exe.len() <= 64
                    && matches!(c.next(), Some(c) if c.is_ascii_alphanumeric())
                    && c.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'));
                if !ok {
                    self.report(
                        &format!("{here}/executables/{m}"),
                        ProblemKind::Implementation,
                        format!(
                            "{exe:?} is not an executable name: expected a bare program name [A-Za-z0-9][A-Za-z0-9._+-]* (no paths; the sandbox resolves it on a trusted PATH)"
                        ),
                    );
                }
            }
            if let Some(version) = version {
                if let Some(other) = out.iter().find(|i| i.version == version) {
                    self.report(
                        &format!("{here}/version"),
                        ProblemKind::Duplicate,
                        format!(
                            "version {version} is already declared by implementation {}; versions must be unique per engine so that engine_version_req resolves to exactly one implementation",
                            other.id
                        ),
                    );
                    continue;
                }
                out.push(Implementation {
                    id: imp.id.clone(),
                    version,
                    kind: imp.kind,
                    executables: imp.executables.clone(),
                    process,
                    wasm,
                });
            }
        }
        out.sort_by(|a, b| b.version.cmp(&a.version).then_with(|| a.id.cmp(&b.id)));
        out
    }

    /// The process fields of an implementation: required for `process`,
    /// refused for builtin kinds.
    fn process_spec(&mut self, here: &str, imp: &ImplementationDecl) -> Option<ProcessSpec> {
        if imp.kind == ImplementationKind::Wasm {
            return None;
        }
        if imp.kind != ImplementationKind::Process {
            for (field, set) in [
                ("path", imp.path.is_some()),
                ("sha256", imp.sha256.is_some()),
                ("interpreter", imp.interpreter.is_some()),
                ("files", !imp.files.is_empty()),
            ] {
                if set {
                    self.report(
                        &format!("{here}/{field}"),
                        ProblemKind::Implementation,
                        format!(
                            "{field} is only for kind \"process\"; a builtin implementation is compiled into the host"
                        ),
                    );
                }
            }
            return None;
        }
        let before = self.problems.len();
        let pinned = |this: &mut Self, at: &str, path: Option<&str>, sha: Option<&str>| {
            let Some(rel) = path else {
                this.report(
                    &format!("{at}/path"),
                    ProblemKind::Implementation,
                    "a process implementation needs \"path\": its executable or script, relative to this registry file",
                );
                return None;
            };
            let digest = match sha {
                None => {
                    this.report(
                        &format!("{at}/sha256"),
                        ProblemKind::Implementation,
                        format!(
                            "{rel:?} needs \"sha256\": the SHA-256 of its bytes (`mex registry pin` or `sha256sum` prints it)"
                        ),
                    );
                    None
                }
                Some(text) => this.parse::<Sha256Digest>(
                    &format!("{at}/sha256"),
                    text,
                    ProblemKind::InvalidValue,
                ),
            };
            let resolved = match this.resolve(rel) {
                Ok(p) => Some(p),
                Err((kind, message)) => {
                    this.report(&format!("{at}/path"), kind, message);
                    None
                }
            };
            Some(PinnedFile {
                rel: rel.to_owned(),
                path: resolved?,
                sha256: digest?,
            })
        };
        let program = pinned(self, here, imp.path.as_deref(), imp.sha256.as_deref());
        let mut files = Vec::new();
        for (k, f) in imp.files.iter().enumerate() {
            let at = format!("{here}/files/{k}");
            if let Some(p) = pinned(self, &at, Some(&f.path), Some(&f.sha256)) {
                if files
                    .iter()
                    .any(|o: &PinnedFile| o.file_name() == p.file_name())
                    || program
                        .as_ref()
                        .is_some_and(|m| m.file_name() == p.file_name())
                {
                    self.report(
                        &format!("{at}/path"),
                        ProblemKind::Duplicate,
                        format!(
                            "{:?}: another pinned file has the same file name; they are copied side by side into the jail, so names must differ",
                            f.path
                        ),
                    );
                }
                files.push(p);
            }
        }
        if let Some(interpreter) = &imp.interpreter {
            let mut c = interpreter.chars();
            let ok = interpreter.len() <= 64
                && matches!(c.next(), Some(c) if c.is_ascii_alphanumeric())
                && c.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'));
            if !ok {
                self.report(
                    &format!("{here}/interpreter"),
                    ProblemKind::Implementation,
                    format!(
                        "{interpreter:?} is not an interpreter name: expected a bare program name such as \"python3\" (the sandbox resolves it on a trusted path)"
                    ),
                );
            }
        }
        if self.problems.len() != before {
            return None;
        }
        Some(ProcessSpec {
            program: program?,
            interpreter: imp.interpreter.clone(),
            files,
            declared_in: self.base_dir.clone(),
        })
    }

    /// The module of a `wasm` implementation: `path` and `sha256` required,
    /// `interpreter` and `files` refused (a module is one file and imports
    /// only WASI).
    fn wasm_module(&mut self, here: &str, imp: &ImplementationDecl) -> Option<PinnedFile> {
        if imp.kind != ImplementationKind::Wasm {
            return None;
        }
        for (field, set) in [
            ("interpreter", imp.interpreter.is_some()),
            ("files", !imp.files.is_empty()),
        ] {
            if set {
                self.report(
                    &format!("{here}/{field}"),
                    ProblemKind::Implementation,
                    format!(
                        "{field} is not for kind \"wasm\": a wasm implementation is one pinned module (path + sha256); remove {field}"
                    ),
                );
            }
        }
        let Some(rel) = imp.path.as_deref() else {
            self.report(
                &format!("{here}/path"),
                ProblemKind::Implementation,
                "a wasm implementation needs \"path\": its .wasm module, relative to this registry file",
            );
            return None;
        };
        let Some(text) = imp.sha256.as_deref() else {
            self.report(
                &format!("{here}/sha256"),
                ProblemKind::Implementation,
                format!(
                    "{rel:?} needs \"sha256\": the SHA-256 of its bytes (`mex registry pin` or `sha256sum` prints it)"
                ),
            );
            return None;
        };
        let digest =
            self.parse::<Sha256Digest>(&format!("{here}/sha256"), text, ProblemKind::InvalidValue);
        let path = match self.resolve(rel) {
            Ok(p) => Some(p),
            Err((kind, message)) => {
                self.report(&format!("{here}/path"), kind, message);
                None
            }
        };
        Some(PinnedFile {
            rel: rel.to_owned(),
            path: path?,
            sha256: digest?,
        })
    }

    fn operation(
        &mut self,
        at: &str,
        op: &OperationDecl,
        name: Option<OperationName>,
        ceiling: DeterminismLevel,
        catalogue: &BTreeSet<String>,
    ) -> Option<Operation> {
        let before = self.problems.len();
        self.non_empty(&format!("{at}/description"), &op.description, "description");
        let compiled = self.params_schema(&format!("{at}/params_schema"), &op.params_schema);
        let properties: Option<BTreeSet<String>> = compiled.as_ref().map(|(schema, _, _)| {
            schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default()
        });

        let mut artifact_params: Vec<ArtifactParam> = Vec::new();
        for (k, ap) in op.artifact_params.iter().enumerate() {
            let here = format!("{at}/artifact_params/{k}");
            if let Some(props) = &properties
                && !props.contains(&ap.param)
            {
                self.report(
                    &format!("{here}/param"),
                    ProblemKind::ParamsSchema,
                    format!(
                        "artifact param {:?} is not a property of the params schema",
                        ap.param
                    ),
                );
            }
            if artifact_params.iter().any(|a| a.param == ap.param) {
                self.report(
                    &format!("{here}/param"),
                    ProblemKind::Duplicate,
                    format!("artifact param {:?} is listed twice", ap.param),
                );
            }
            let mut media_types = Vec::new();
            for (m, mt) in ap.media_types.iter().enumerate() {
                if let Some(mt) = self.parse::<MediaType>(
                    &format!("{here}/media_types/{m}"),
                    mt,
                    ProblemKind::InvalidValue,
                ) {
                    media_types.push(mt);
                }
            }
            artifact_params.push(ArtifactParam {
                param: ap.param.clone(),
                many: ap.many,
                media_types,
                entity_ref: ap.entity_ref,
            });
        }
        if op.seed_required_at.is_some()
            && let Some(props) = &properties
            && !props.contains("seed")
        {
            self.report(
                &format!("{at}/seed_required_at"),
                ProblemKind::ParamsSchema,
                "seed_required_at is set but the params schema has no \"seed\" property",
            );
        }
        if op.outputs.is_empty() {
            self.report(
                &format!("{at}/outputs"),
                ProblemKind::Structure,
                "an operation must declare at least one output (outputs are artifacts)",
            );
        }
        for (k, out) in op.outputs.iter().enumerate() {
            for (m, mt) in out.media_types.iter().enumerate() {
                self.parse::<MediaType>(
                    &format!("{at}/outputs/{k}/media_types/{m}"),
                    mt,
                    ProblemKind::InvalidValue,
                );
            }
        }
        let required_capabilities = self.capabilities(
            &format!("{at}/required_capabilities"),
            &op.required_capabilities,
        );
        let optional_capabilities = self.capabilities(
            &format!("{at}/optional_capabilities"),
            &op.optional_capabilities,
        );
        if op.determinism > ceiling {
            self.report(
                &format!("{at}/determinism"),
                ProblemKind::DeterminismAboveCeiling,
                format!(
                    "operation determinism {} is above the engine's ceiling {ceiling}; lower it to {ceiling} or below",
                    op.determinism
                ),
            );
        }
        let mut failure_codes = Vec::new();
        for (k, code) in op.failure_codes.iter().enumerate() {
            let here = format!("{at}/failure_codes/{k}");
            if let Some(c) = self.parse::<ErrorCode>(&here, code, ProblemKind::InvalidValue) {
                if catalogue.contains(code) {
                    failure_codes.push(c);
                } else {
                    self.report(
                        &here,
                        ProblemKind::UnknownFailureCode,
                        format!("failure code {code} is not in the engine's failure_codes catalogue; add it there first"),
                    );
                }
            }
        }
        for (k, token) in op.required_evidence.iter().enumerate() {
            let mut c = token.chars();
            let ok = token.len() <= 64
                && matches!(c.next(), Some('a'..='z'))
                && c.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'));
            if !ok {
                self.report(
                    &format!("{at}/required_evidence/{k}"),
                    ProblemKind::InvalidValue,
                    format!("{token:?} is not an evidence token: expected [a-z][a-z0-9_]*, e.g. \"snapshot\""),
                );
            }
        }
        if self.problems.len() != before {
            return None;
        }
        let (params_schema, schema_source, validator) = compiled?;
        Some(Operation {
            name: name?,
            description: op.description.clone(),
            params_schema,
            schema_source,
            artifact_params,
            seed_required_at: op.seed_required_at,
            outputs: op.outputs.clone(),
            required_capabilities,
            optional_capabilities,
            determinism: op.determinism,
            failure_codes,
            required_evidence: op.required_evidence.clone(),
            validator,
        })
    }

    /// Resolve a path relative to the registry directory, refusing escapes.
    /// The spelling is checked by the store's one set of relative-path rules
    /// (`mex_artifacts::RelPath`); the filesystem check below adds symlinks.
    fn resolve(&self, rel: &str) -> Result<PathBuf, (ProblemKind, String)> {
        self.resolve_as(rel, false)
    }

    /// Resolve a referenced path inside the registry's directory; `dir`:
    /// it must be a directory, else a regular file.
    fn resolve_as(&self, rel: &str, dir: bool) -> Result<PathBuf, (ProblemKind, String)> {
        if rel.is_empty() {
            return Err((ProblemKind::FileMissing, "empty path".to_owned()));
        }
        let checked = mex_artifacts::RelPath::parse(rel).map_err(|e| {
            (
                ProblemKind::PathEscape,
                format!(
                    "{e}; referenced files are named relative to the registry's directory and must stay inside it"
                ),
            )
        })?;
        let path = Path::new(checked.as_str());
        let full = self.base_dir.join(path);
        let (Ok(canon), Some(base)) = (full.canonicalize(), &self.base_canon) else {
            return Err((
                ProblemKind::FileMissing,
                format!("{rel:?} does not exist in the registry's directory"),
            ));
        };
        if !canon.starts_with(base) {
            return Err((
                ProblemKind::PathEscape,
                format!(
                    "{rel:?} resolves outside the registry's directory (through a symlink); referenced files must stay inside it"
                ),
            ));
        }
        if dir && !canon.is_dir() {
            return Err((
                ProblemKind::FileMissing,
                format!(
                    "{rel:?} is not a directory; name a directory with \"dir\" or a file with \"file\""
                ),
            ));
        }
        if !dir && !canon.is_file() {
            return Err((
                ProblemKind::FileMissing,
                format!("{rel:?} is not a regular file"),
            ));
        }
        Ok(canon)
    }

    /// Resolve a directory payload and compute the bundle it becomes: the
    /// canonical index's SHA-256 and size, as the artifact store's `put_dir`
    /// (line endings kept) would store it. Read under the bounds of a
    /// referenced file: at most [`MAX_PAYLOAD_DIR_FILES`] files and
    /// [`MAX_REFERENCED_FILE_BYTES`] bytes in all; regular files and
    /// directories only (no symlinks, so nothing outside is reached), names
    /// already in the store's canonical form.
    fn read_dir_payload(&mut self, at: &str, rel: &str) -> Option<(PathBuf, Sha256Digest, u64)> {
        let root = match self.resolve_as(rel, true) {
            Ok(p) => p,
            Err((kind, message)) => {
                self.report(at, kind, message);
                return None;
            }
        };
        let mut walk = DirPayload {
            rel,
            builder: mex_artifacts::BundleBuilder::new(false),
            files: 0,
            bytes: 0,
        };
        if let Err(message) = walk.walk(&root, &mut Vec::new()) {
            self.report(at, ProblemKind::Vector, message);
            return None;
        }
        let index = walk.builder.finish();
        match mex_envelope::canonical::to_vec(&index) {
            Ok(bytes) => Some((root, Sha256Digest::of(&bytes), bytes.len() as u64)),
            Err(e) => {
                self.report(
                    at,
                    ProblemKind::Vector,
                    format!("{rel:?}: its bundle index cannot be written: {e}"),
                );
                None
            }
        }
    }

    /// Resolve and read a referenced file.
    fn read_file(&mut self, at: &str, rel: &str) -> Option<(PathBuf, Vec<u8>)> {
        let path = match self.resolve(rel) {
            Ok(p) => p,
            Err((kind, message)) => {
                self.report(at, kind, message);
                return None;
            }
        };
        let too_big = std::fs::metadata(&path)
            .map(|m| m.len() > MAX_REFERENCED_FILE_BYTES)
            .unwrap_or(false);
        if too_big {
            self.report(
                at,
                ProblemKind::FileMissing,
                format!("{rel:?} is larger than {MAX_REFERENCED_FILE_BYTES} bytes"),
            );
            return None;
        }
        match mex_envelope::json::read_file_at_most(&path, MAX_REFERENCED_FILE_BYTES) {
            Ok(bytes) => Some((path, bytes)),
            Err(e) => {
                self.report(
                    at,
                    ProblemKind::FileMissing,
                    format!("cannot read {rel:?}: {e}"),
                );
                None
            }
        }
    }

    fn params_schema(
        &mut self,
        at: &str,
        decl: &ParamsSchemaDecl,
    ) -> Option<(Value, SchemaSource, jsonschema::Validator)> {
        match decl {
            ParamsSchemaDecl::Inline(schema) => {
                let file = SourceFile {
                    name: self.source_name.clone(),
                    positions: Positions::default(),
                };
                let base = format!("{at}/inline");
                let validator = self.compile(schema, &base, &file)?;
                Some((schema.clone(), SchemaSource::Inline, validator))
            }
            ParamsSchemaDecl::File(rel) => {
                let (_, bytes) = self.read_file(&format!("{at}/file"), rel)?;
                let text = String::from_utf8_lossy(&bytes);
                let schema: Value = match mex_envelope::json::from_slice(&bytes) {
                    Ok(v) => v,
                    Err(e) => {
                        let kind = match e {
                            JsonError::DuplicateKey { .. } => ProblemKind::DuplicateKey,
                            _ => ProblemKind::ParamsSchema,
                        };
                        self.problems.push(json_problem(rel.clone(), &e, kind));
                        return None;
                    }
                };
                let file = SourceFile {
                    name: rel.clone(),
                    positions: span::scan(&text),
                };
                let validator = self.compile(&schema, "", &file)?;
                Some((schema, SchemaSource::File(PathBuf::from(rel)), validator))
            }
        }
    }

    /// Check the registry's rules on a params schema and compile it.
    /// Problems are located at `base` + pointer, in `file` when the schema is
    /// a file, else in the registry.
    fn compile(
        &mut self,
        schema: &Value,
        base: &str,
        file: &SourceFile,
    ) -> Option<jsonschema::Validator> {
        let in_registry = base.starts_with("/engines");
        let problem = |loader: &mut Self, rel: &str, message: String| {
            let at = format!("{base}{rel}");
            if in_registry {
                loader.report(&at, ProblemKind::ParamsSchema, message);
            } else {
                loader.report_in(file, &at, ProblemKind::ParamsSchema, message);
            }
        };
        let Some(obj) = schema.as_object() else {
            problem(self, "", "a params schema must be a JSON object".to_owned());
            return None;
        };
        let before = self.problems.len();
        if let Some(draft) = obj.get("$schema")
            && draft.as_str() != Some(DRAFT_2020_12)
        {
            problem(
                self,
                "/$schema",
                format!(
                    "params schemas are draft 2020-12: set \"$schema\" to {DRAFT_2020_12:?} or leave it out"
                ),
            );
        }
        if obj.get("type").and_then(Value::as_str) != Some("object") {
            problem(
                self,
                "/type",
                "params are always an object: the schema must say \"type\": \"object\"".to_owned(),
            );
        }
        let closed = obj.get("additionalProperties") == Some(&Value::Bool(false))
            || obj.get("unevaluatedProperties") == Some(&Value::Bool(false));
        if !closed {
            problem(
                self,
                "/additionalProperties",
                "params schemas must be closed (\"additionalProperties\": false): the planner is untrusted and unknown params are refused".to_owned(),
            );
        }
        if self.problems.len() != before {
            return None;
        }
        let meta = jsonschema::draft202012::meta::validator();
        let mut meta_errors: Vec<(String, String)> = meta
            .iter_errors(schema)
            .map(|e| (e.instance_path().as_str().to_owned(), e.to_string()))
            .collect();
        if !meta_errors.is_empty() {
            meta_errors.sort();
            meta_errors.dedup();
            for (rel, message) in meta_errors {
                problem(
                    self,
                    &rel,
                    format!("the params schema is not a valid draft 2020-12 schema: {message}"),
                );
            }
            return None;
        }
        let built = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .should_ignore_unknown_formats(false)
            .build(schema);
        match built {
            Ok(v) => Some(v),
            Err(e) => {
                let rel = e.instance_path().as_str().to_owned();
                problem(
                    self,
                    &rel,
                    format!("the params schema does not compile: {e}"),
                );
                None
            }
        }
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the vector loader threads the loader state, the engine, its operations and positions; a struct for one call would only rename them"
    )]
    fn vectors(
        &mut self,
        at: &str,
        engine: &EngineId,
        list: &[VectorDecl],
        operations: &BTreeMap<OperationName, Operation>,
        declared: &BTreeSet<String>,
        catalogue: &BTreeSet<String>,
    ) -> Vec<ConformanceVector> {
        let mut out: Vec<ConformanceVector> = Vec::new();
        let mut ids: BTreeSet<String> = BTreeSet::new();
        for (k, v) in list.iter().enumerate() {
            let here = format!("{at}/conformance_vectors/{k}");
            let before = self.problems.len();
            let id_ok = {
                let mut c = v.id.chars();
                v.id.len() <= 64
                    && matches!(c.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
                    && c.all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
                    })
            };
            if !id_ok {
                self.report(
                    &format!("{here}/id"),
                    ProblemKind::InvalidValue,
                    format!(
                        "{:?} is not a vector id: expected [a-z0-9][a-z0-9_-]*",
                        v.id
                    ),
                );
            }
            if !ids.insert(v.id.clone()) {
                self.report(
                    &format!("{here}/id"),
                    ProblemKind::Duplicate,
                    format!("vector id {:?} is used twice in this engine", v.id),
                );
            }
            self.non_empty(
                &format!("{here}/description"),
                &v.description,
                "description",
            );
            let op_name = self.parse::<OperationName>(
                &format!("{here}/operation"),
                &v.operation,
                ProblemKind::InvalidValue,
            );
            if op_name.is_some() && !declared.contains(&v.operation) {
                self.report(
                    &format!("{here}/operation"),
                    ProblemKind::UndeclaredOperation,
                    format!(
                        "vector {:?} names operation {:?}, which {engine} does not declare",
                        v.id, v.operation
                    ),
                );
            }
            let op = op_name.as_ref().and_then(|n| operations.get(n));
            let expect = self.expectation(&format!("{here}/expect"), v, op, catalogue);

            let mut planned = None;
            if let Some(rel) = &v.operation_file {
                planned = self.vector_file(
                    &format!("{here}/operation_file"),
                    rel,
                    engine,
                    v,
                    op,
                    &expect,
                );
            }
            let mut payloads = Vec::new();
            if !v.payloads.is_empty() && v.operation_file.is_none() {
                self.report(
                    &format!("{here}/payloads"),
                    ProblemKind::Vector,
                    "payloads back the inputs of an operation file; add operation_file or remove payloads",
                );
            }
            for (m, p) in v.payloads.iter().enumerate() {
                let p_here = format!("{here}/payloads/{m}");
                let (p_at, rel, read) = match (&p.file, &p.dir) {
                    (Some(file), None) => {
                        let p_at = format!("{p_here}/file");
                        let read = self.read_file(&p_at, file).map(|(path, bytes)| {
                            (
                                path,
                                Sha256Digest::of(&bytes),
                                bytes.len() as u64,
                                PayloadKind::File,
                            )
                        });
                        (p_at, file, read)
                    }
                    (None, Some(dir)) => {
                        let p_at = format!("{p_here}/dir");
                        let read = self
                            .read_dir_payload(&p_at, dir)
                            .map(|(path, digest, size)| (path, digest, size, PayloadKind::Dir));
                        (p_at, dir, read)
                    }
                    (Some(_), Some(_)) => {
                        self.report(
                            &p_here,
                            ProblemKind::Vector,
                            "a payload is a \"file\" or a \"dir\", not both; keep the one the input's handle was made from",
                        );
                        continue;
                    }
                    (None, None) => {
                        self.report(
                            &p_here,
                            ProblemKind::Vector,
                            "a payload names its content: add \"file\" (stored as its bytes) or \"dir\" (stored as a bundle)",
                        );
                        continue;
                    }
                };
                let Some((path, digest, size, kind)) = read else {
                    continue;
                };
                if let Some((_, op)) = &planned {
                    let op: &PlannedOperation = op;
                    let handle = op
                        .inputs
                        .iter()
                        .filter_map(|i| i.as_artifact())
                        .find(|h| h.artifact_id == p.artifact_id);
                    match handle {
                        None => self.report(
                            &format!("{p_here}/artifact_id"),
                            ProblemKind::Vector,
                            format!("the operation file has no input artifact {}", p.artifact_id),
                        ),
                        Some(h) => {
                            if digest != h.content_hash || size != h.size_bytes {
                                let what = match kind {
                                    PayloadKind::File => "",
                                    PayloadKind::Dir => " as a bundle index",
                                };
                                self.report(
                                    &p_at,
                                    ProblemKind::Vector,
                                    format!(
                                        "{rel:?}{what} has sha256 {digest} and {size} bytes, but input {} says {} and {} bytes; regenerate the handle",
                                        p.artifact_id, h.content_hash, h.size_bytes
                                    ),
                                );
                            }
                            let is_bundle = h.kind == mex_envelope::ArtifactKind::Bundle;
                            if is_bundle != (kind == PayloadKind::Dir) {
                                self.report(
                                    &p_at,
                                    ProblemKind::Vector,
                                    if is_bundle {
                                        format!("input {} is a bundle, so its payload must be a \"dir\"", p.artifact_id)
                                    } else {
                                        format!("a \"dir\" payload is stored as a bundle, but input {} is of another kind; give a \"file\" or make the input a bundle", p.artifact_id)
                                    },
                                );
                            }
                        }
                    }
                }
                payloads.push(VectorPayload {
                    artifact_id: p.artifact_id,
                    path,
                    kind,
                });
            }
            if self.problems.len() != before {
                continue;
            }
            if let (Some(operation), Some(expect)) = (op_name, expect) {
                out.push(ConformanceVector {
                    id: v.id.clone(),
                    kind: v.kind,
                    description: v.description.clone(),
                    operation,
                    planned,
                    payloads,
                    expect,
                    optional: v.optional,
                });
            }
        }
        out
    }

    fn expectation(
        &mut self,
        at: &str,
        v: &VectorDecl,
        op: Option<&Operation>,
        catalogue: &BTreeSet<String>,
    ) -> Option<Expectation> {
        let consistent = matches!(
            (v.kind, &v.expect),
            (VectorKind::Golden, ExpectDecl::Succeeded { .. })
                | (
                    VectorKind::Reject,
                    ExpectDecl::Denied { .. } | ExpectDecl::Failed { .. }
                )
        );
        if !consistent {
            self.report(
                &format!("{at}/outcome"),
                ProblemKind::Vector,
                "a golden vector expects outcome \"succeeded\"; a reject vector expects \"denied\" or \"failed\"",
            );
        }
        match &v.expect {
            ExpectDecl::Succeeded {
                stability,
                output_digest,
            } => {
                if let Some(op) = op
                    && *stability > op.determinism
                {
                    self.report(
                        &format!("{at}/stability"),
                        ProblemKind::Vector,
                        format!(
                            "stability {stability} is above the operation's determinism {}",
                            op.determinism
                        ),
                    );
                }
                let digest = match output_digest {
                    Some(d) => Some(self.parse::<Sha256Digest>(
                        &format!("{at}/output_digest"),
                        d,
                        ProblemKind::InvalidValue,
                    )?),
                    None => None,
                };
                Some(Expectation::Succeeded {
                    stability: *stability,
                    output_digest: digest,
                })
            }
            ExpectDecl::Denied { gate, code } => {
                let g =
                    self.parse::<GateId>(&format!("{at}/gate"), gate, ProblemKind::InvalidValue);
                let c =
                    self.parse::<ErrorCode>(&format!("{at}/code"), code, ProblemKind::InvalidValue);
                if g.is_some() && !gates::is_known_gate(gate) {
                    self.report(
                        &format!("{at}/gate"),
                        ProblemKind::UnknownGate,
                        format!("unknown gate {gate}; a reject vector must name a global or known engine-specific gate"),
                    );
                }
                if c.is_some() && !code.starts_with(&format!("{gate}.")) {
                    self.report(
                        &format!("{at}/code"),
                        ProblemKind::Vector,
                        format!("a gate's codes are written \"{gate}.<REASON>\"; {code} does not start with \"{gate}.\""),
                    );
                }
                Some(Expectation::Denied { gate: g?, code: c? })
            }
            ExpectDecl::Failed { code } => {
                let c =
                    self.parse::<ErrorCode>(&format!("{at}/code"), code, ProblemKind::InvalidValue);
                if c.is_some() && !catalogue.contains(code) {
                    self.report(
                        &format!("{at}/code"),
                        ProblemKind::UnknownFailureCode,
                        format!(
                            "failure code {code} is not in the engine's failure_codes catalogue"
                        ),
                    );
                }
                Some(Expectation::Failed { code: c? })
            }
        }
    }

    fn vector_file(
        &mut self,
        at: &str,
        rel: &str,
        engine: &EngineId,
        v: &VectorDecl,
        op: Option<&Operation>,
        expect: &Option<Expectation>,
    ) -> Option<(PathBuf, PlannedOperation)> {
        let (path, bytes) = self.read_file(at, rel)?;
        let text = String::from_utf8_lossy(&bytes);
        let file = SourceFile {
            name: rel.to_owned(),
            positions: span::scan(&text),
        };
        let planned = match PlannedOperation::from_json_slice(&bytes) {
            Ok(p) => p,
            Err(e) => {
                let at = e.pointer().unwrap_or("").to_owned();
                let mut problem_text = e.to_string();
                if let mex_envelope::EnvelopeError::Syntax { line, column, .. } = &e {
                    self.problems.push(Problem {
                        file: rel.to_owned(),
                        line: *line,
                        column: *column,
                        pointer: String::new(),
                        kind: ProblemKind::Vector,
                        message: std::mem::take(&mut problem_text),
                    });
                    return None;
                }
                self.report_in(
                    &file,
                    &at,
                    ProblemKind::Vector,
                    format!("not a valid poe-1.0 PlannedOperation: {problem_text}"),
                );
                return None;
            }
        };
        if planned.engine_id != *engine {
            self.report_in(
                &file,
                "/engine_id",
                ProblemKind::Vector,
                format!(
                    "the vector belongs to {engine} but its operation file runs {}",
                    planned.engine_id
                ),
            );
        }
        if planned.operation.as_str() != v.operation {
            self.report_in(
                &file,
                "/operation",
                ProblemKind::Vector,
                format!(
                    "the vector declares operation {} but its operation file runs {}",
                    v.operation, planned.operation
                ),
            );
        }
        let schema_reject = matches!(expect, Some(Expectation::Denied { gate, .. }) if gate.as_str() == crate::GATE_SCHEMA);
        if let Some(op) = op
            && !schema_reject
        {
            let params = Value::Object(planned.params.clone());
            for e in op.params_errors(&params) {
                self.report_in(
                    &file,
                    &e.envelope_pointer(),
                    ProblemKind::Vector,
                    format!(
                        "params fail the schema of {} (only a G-SCHEMA reject vector may do that): {}",
                        op.name, e.message
                    ),
                );
            }
        }
        // Returned even when it disagrees with the vector (the problems are
        // recorded and the vector is dropped), so payloads are still checked.
        Some((path, planned))
    }
}

/// The walk of one directory payload (see `read_dir_payload`).
struct DirPayload<'a> {
    rel: &'a str,
    builder: mex_artifacts::BundleBuilder,
    files: usize,
    bytes: u64,
}

impl DirPayload<'_> {
    fn walk(&mut self, disk: &Path, segments: &mut Vec<String>) -> Result<(), String> {
        let rel = self.rel;
        let shown = |segments: &[String]| format!("{rel}/{}", segments.join("/"));
        let listing = std::fs::read_dir(disk)
            .map_err(|e| format!("cannot list {:?}: {e}", shown(segments)))?;
        let mut names = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|e| format!("cannot list {:?}: {e}", shown(segments)))?;
            names.push(entry.file_name());
        }
        names.sort();
        for name in names {
            let Some(name_str) = name.to_str() else {
                return Err(format!(
                    "{:?} holds a name that is not valid UTF-8 ({name:?}); rename it",
                    shown(segments)
                ));
            };
            segments.push(name_str.to_owned());
            let here = shown(segments);
            let inside = segments.join("/");
            if let Err(e) = mex_artifacts::RelPath::parse_canonical(&inside) {
                return Err(format!(
                    "{here:?} is not a valid bundle entry: {e}; rename it"
                ));
            }
            let path = disk.join(&name);
            let meta = std::fs::symlink_metadata(&path)
                .map_err(|e| format!("cannot read {here:?}: {e}"))?;
            let ft = meta.file_type();
            if ft.is_symlink() {
                return Err(format!(
                    "{here:?} is a symbolic link; a directory payload holds regular files and directories only, so copy the file in"
                ));
            } else if ft.is_dir() {
                self.walk(&path, segments)?;
            } else if ft.is_file() {
                self.files += 1;
                if self.files > MAX_PAYLOAD_DIR_FILES {
                    return Err(format!(
                        "{rel:?} holds more than {MAX_PAYLOAD_DIR_FILES} files; make the payload smaller"
                    ));
                }
                let left = MAX_REFERENCED_FILE_BYTES.saturating_sub(self.bytes);
                if meta.len() > left {
                    return Err(format!(
                        "{rel:?} holds more than {MAX_REFERENCED_FILE_BYTES} bytes in all (at {here:?}); make the payload smaller"
                    ));
                }
                let bytes = mex_envelope::json::read_file_at_most(&path, left)
                    .map_err(|e| format!("cannot read {here:?}: {e}"))?;
                self.bytes += bytes.len() as u64;
                self.builder
                    .add(&inside, Sha256Digest::of(&bytes), bytes.len() as u64)
                    .map_err(|e| format!("{here:?} cannot be a bundle entry: {e}"))?;
            } else {
                return Err(format!(
                    "{here:?} is not a regular file or directory (a FIFO, socket or device); remove it"
                ));
            }
            segments.pop();
        }
        Ok(())
    }
}

fn duplicate_message(key: &str) -> String {
    format!(
        "key {key:?} appears more than once in this object; readers disagree on which copy wins, so remove the duplicate"
    )
}

/// The problem kind of a refusal by the strict JSON reader.
fn json_problem_kind(e: &JsonError) -> ProblemKind {
    match e {
        JsonError::DuplicateKey { .. } => ProblemKind::DuplicateKey,
        JsonError::NumberOutOfRange { .. } => ProblemKind::InvalidValue,
        JsonError::TooComplex { .. } => ProblemKind::TooLarge,
        _ => ProblemKind::Syntax,
    }
}

/// A problem record for a refusal by the strict JSON reader, in `file`.
fn json_problem(file: String, e: &JsonError, kind: ProblemKind) -> Problem {
    let (line, column) = e.position();
    let message = match e {
        JsonError::Syntax { message, hint, .. } => format!("not valid JSON: {message}; {hint}"),
        JsonError::DuplicateKey { key, .. } => duplicate_message(key),
        other => other.to_string(),
    };
    Problem {
        file,
        line,
        column,
        pointer: e.pointer().unwrap_or("").to_owned(),
        kind,
        message,
    }
}
