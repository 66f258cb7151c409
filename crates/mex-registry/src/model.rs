//! The validated registry: what the loader returns once every rule holds.
//! Values of these types are only built by the loader (`#[non_exhaustive]`),
//! so holding one means it passed every check.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mex_envelope::{
    Capability, DeterminismLevel, EngineId, ErrorCode, GateId, MediaType, OperationName,
    PlannedOperation, Sha256Digest,
};
use semver::{Version, VersionReq};
use serde_json::Value;

use crate::MAX_PARAMS_ERRORS;
use crate::error::{ParamsError, RegistryError};
use crate::format::{GateRequirement, ImplementationKind, OutputDecl, VectorKind};

/// A loaded, validated registry.
#[derive(Debug)]
pub struct Registry {
    pub(crate) source_name: String,
    pub(crate) base_dir: PathBuf,
    pub(crate) engines: BTreeMap<EngineId, Engine>,
}

impl Registry {
    /// The registry file name (or `<string>`).
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// The directory referenced files are resolved against.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// Every engine, ordered by id.
    pub fn engines(&self) -> impl ExactSizeIterator<Item = &Engine> {
        self.engines.values()
    }

    /// The engine with this id, or [`RegistryError::UnknownEngine`].
    pub fn engine(&self, id: &EngineId) -> Result<&Engine, RegistryError> {
        self.engines
            .get(id)
            .ok_or_else(|| RegistryError::UnknownEngine {
                engine_id: id.to_string(),
                declared: join(self.engines.keys()),
            })
    }

    /// The operation of an engine, or why there is none.
    pub fn operation(
        &self,
        engine: &EngineId,
        operation: &OperationName,
    ) -> Result<&Operation, RegistryError> {
        self.engine(engine)?.operation(operation)
    }

    /// The highest implementation of `engine` whose version matches `req`.
    /// A declared-only engine is [`RegistryError::NotCallable`].
    pub fn implementation(
        &self,
        engine: &EngineId,
        req: &VersionReq,
    ) -> Result<&Implementation, RegistryError> {
        self.engine(engine)?.implementation(req)
    }

    /// Validate the params of `operation` of `engine` (no compilation happens here).
    pub fn validate_params(
        &self,
        engine: &EngineId,
        operation: &OperationName,
        params: &Value,
    ) -> Result<(), RegistryError> {
        self.operation(engine, operation)?.validate_params(params)
    }
}

/// Whether an engine can be called at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineStatus {
    /// At least one implementation is declared; it still has to pass its
    /// conformance vectors before the runtime treats it as callable.
    CallableCandidate,
    /// Declared, no implementation: not callable.
    DeclaredOnly,
}

impl EngineStatus {
    /// A plain-words reason, for tools and problems lists.
    pub fn reason(self) -> &'static str {
        match self {
            Self::CallableCandidate => {
                "implemented: callable once its conformance vectors pass (certification)"
            }
            Self::DeclaredOnly => "declared, no implementation: not callable",
        }
    }
}

/// A budget with every limit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct BudgetLimits {
    /// CPU time in milliseconds.
    pub cpu_time_ms: u64,
    /// Wall-clock time in milliseconds.
    pub wall_time_ms: u64,
    /// Peak memory in bytes.
    pub memory_bytes: u64,
    /// Total output bytes (outputs, evidence, logs).
    pub output_bytes: u64,
}

/// An engine-specific gate requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineGate {
    /// The gate.
    pub gate: GateId,
    /// How binding it is.
    pub requirement: GateRequirement,
    /// Operations it applies to; empty means all.
    pub operations: Vec<OperationName>,
    /// Capability kinds (text form) that trigger it; empty means always.
    pub when_capabilities: Vec<String>,
    /// Why it is there.
    pub reason: String,
}

impl EngineGate {
    /// Whether the gate applies to `operation` asking for `requested`.
    pub fn applies(&self, operation: &OperationName, requested: &[Capability]) -> bool {
        let op_ok = self.operations.is_empty() || self.operations.contains(operation);
        let cap_ok = self.when_capabilities.is_empty()
            || requested.iter().any(|c| {
                self.when_capabilities
                    .iter()
                    .any(|k| k == c.kind().as_str())
            });
        op_ok && cap_ok
    }
}

/// One implementation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Implementation {
    /// Implementation id.
    pub id: String,
    /// Its version.
    pub version: Version,
    /// In-process or subprocess.
    pub kind: ImplementationKind,
    /// Executable allowlist (subprocess only).
    pub executables: Vec<String>,
    /// What to run, for kind `process` (None for builtin kinds).
    pub process: Option<ProcessSpec>,
    /// The module, for kind `wasm` (None for every other kind).
    pub wasm: Option<PinnedFile>,
}

/// A process implementation: pinned files and how to start them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessSpec {
    /// The executable or script (`path` + `sha256`).
    pub program: PinnedFile,
    /// The interpreter that runs a script, if any (bare name, e.g. `python3`).
    pub interpreter: Option<String>,
    /// Further pinned files, copied beside the program for each run.
    pub files: Vec<PinnedFile>,
    /// The directory of the registry file that declared it.
    pub declared_in: PathBuf,
}

impl ProcessSpec {
    /// The program and every further file, in declaration order.
    pub fn all_files(&self) -> impl Iterator<Item = &PinnedFile> {
        std::iter::once(&self.program).chain(&self.files)
    }
}

/// A file pinned by its SHA-256 digest. The loader checks the path (inside
/// the declaring file's directory, a regular file) but not the digest: the
/// runtime checks it before every run, so that a changed file is refused on
/// record rather than making the whole registry unloadable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PinnedFile {
    /// As written in the registry.
    pub rel: String,
    /// Resolved (canonical) path.
    pub path: PathBuf,
    /// The pinned digest.
    pub sha256: Sha256Digest,
}

impl PinnedFile {
    /// The file's name (how it is called in the jail).
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// One failure code of an engine's catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailureCode {
    /// The code.
    pub code: ErrorCode,
    /// When it is reported.
    pub description: String,
}

/// An engine.
#[derive(Debug)]
#[non_exhaustive]
pub struct Engine {
    /// Its id.
    pub id: EngineId,
    /// Interface version.
    pub interface_version: Version,
    /// Domain.
    pub domain: String,
    /// Description.
    pub description: String,
    /// Determinism ceiling.
    pub determinism_ceiling: DeterminismLevel,
    /// Engine-specific gates (the six global gates always apply besides these).
    pub gates: Vec<EngineGate>,
    /// Default capabilities.
    pub default_capabilities: Vec<Capability>,
    /// Default budget.
    pub default_budget: BudgetLimits,
    /// Maximum budget (trusted ceiling).
    pub max_budget: BudgetLimits,
    /// Implementations, highest version first.
    pub implementations: Vec<Implementation>,
    /// Failure-code catalogue.
    pub failure_codes: Vec<FailureCode>,
    /// Operations by name.
    pub operations: BTreeMap<OperationName, Operation>,
    /// Conformance vectors.
    pub vectors: Vec<ConformanceVector>,
}

impl Engine {
    /// Whether it can be called at all.
    pub fn status(&self) -> EngineStatus {
        if self.implementations.is_empty() {
            EngineStatus::DeclaredOnly
        } else {
            EngineStatus::CallableCandidate
        }
    }

    /// The operation, or [`RegistryError::UnknownOperation`].
    pub fn operation(&self, name: &OperationName) -> Result<&Operation, RegistryError> {
        self.operations
            .get(name)
            .ok_or_else(|| RegistryError::UnknownOperation {
                engine_id: self.id.to_string(),
                operation: name.to_string(),
                declared: join(self.operations.keys()),
            })
    }

    /// The highest implementation matching `req`.
    pub fn implementation(&self, req: &VersionReq) -> Result<&Implementation, RegistryError> {
        if self.implementations.is_empty() {
            return Err(RegistryError::NotCallable {
                engine_id: self.id.to_string(),
            });
        }
        // Sorted highest first, so the first match is the highest.
        self.implementations
            .iter()
            .find(|i| req.matches(&i.version))
            .ok_or_else(|| RegistryError::NoMatchingImplementation {
                engine_id: self.id.to_string(),
                requirement: req.to_string(),
                available: join(
                    self.implementations
                        .iter()
                        .map(|i| format!("{}@{}", i.id, i.version)),
                ),
            })
    }

    /// Engine-specific gates that apply to `operation` asking for `requested`.
    pub fn gates_for<'a>(
        &'a self,
        operation: &'a OperationName,
        requested: &'a [Capability],
    ) -> impl Iterator<Item = &'a EngineGate> + 'a {
        self.gates
            .iter()
            .filter(move |g| g.applies(operation, requested))
    }

    /// Whether `code` is in the failure-code catalogue.
    pub fn has_failure_code(&self, code: &ErrorCode) -> bool {
        self.failure_codes.iter().any(|f| &f.code == code)
    }
}

/// Where an operation's params schema came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaSource {
    /// Inline in the registry.
    Inline,
    /// A file, relative to the registry directory.
    File(PathBuf),
}

/// A param naming input artifacts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArtifactParam {
    /// Param name.
    pub param: String,
    /// An array of references.
    pub many: bool,
    /// Allowed media types; empty means any.
    pub media_types: Vec<MediaType>,
    /// May name an EntityRef by `entity_id` instead.
    pub entity_ref: bool,
}

/// An operation, with its params validator compiled once at load.
#[derive(Debug)]
#[non_exhaustive]
pub struct Operation {
    /// Name.
    pub name: OperationName,
    /// Description.
    pub description: String,
    /// The params schema (draft 2020-12).
    pub params_schema: Value,
    /// Where it came from.
    pub schema_source: SchemaSource,
    /// Params that reference input artifacts.
    pub artifact_params: Vec<ArtifactParam>,
    /// Level from which a `seed` param is required.
    pub seed_required_at: Option<DeterminismLevel>,
    /// Declared outputs.
    pub outputs: Vec<OutputDecl>,
    /// Required capabilities.
    pub required_capabilities: Vec<Capability>,
    /// Optional capabilities.
    pub optional_capabilities: Vec<Capability>,
    /// Highest determinism level it may claim.
    pub determinism: DeterminismLevel,
    /// Failure codes it may report.
    pub failure_codes: Vec<ErrorCode>,
    /// Evidence tokens its evidence policy must capture.
    pub required_evidence: Vec<String>,
    pub(crate) validator: jsonschema::Validator,
}

impl Operation {
    /// The compiled validator (compiled once, at load).
    pub fn params_validator(&self) -> &jsonschema::Validator {
        &self.validator
    }

    /// Whether `params` is valid, without collecting errors.
    pub fn params_are_valid(&self, params: &Value) -> bool {
        self.validator.is_valid(params)
    }

    /// Every way `params` fails the schema (at most [`MAX_PARAMS_ERRORS`]),
    /// each with a pointer into the params object.
    pub fn params_errors(&self, params: &Value) -> Vec<ParamsError> {
        let mut errors: Vec<ParamsError> = self
            .validator
            .iter_errors(params)
            .take(MAX_PARAMS_ERRORS)
            .map(|e| ParamsError {
                pointer: e.instance_path().as_str().to_owned(),
                schema_pointer: e.schema_path().as_str().to_owned(),
                message: e.to_string(),
            })
            .collect();
        errors.sort();
        errors
    }

    /// `Ok` when `params` is valid, else [`RegistryError::InvalidParams`].
    pub fn validate_params(&self, params: &Value) -> Result<(), RegistryError> {
        if self.validator.is_valid(params) {
            return Ok(());
        }
        Err(RegistryError::InvalidParams {
            operation: self.name.to_string(),
            errors: self.params_errors(params),
        })
    }

    /// Whether a `seed` param is required at `level`.
    pub fn seed_required(&self, level: DeterminismLevel) -> bool {
        self.seed_required_at.is_some_and(|at| level >= at)
    }

    /// Whether `cap` is declared (required or optional) by this operation.
    pub fn declares_capability(&self, cap: &Capability) -> bool {
        self.required_capabilities.contains(cap) || self.optional_capabilities.contains(cap)
    }
}

/// What a vector expects.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expectation {
    /// Succeeds, stable at `stability`.
    Succeeded {
        /// Level at which runs must agree.
        stability: DeterminismLevel,
        /// Stable output digest, once known.
        output_digest: Option<Sha256Digest>,
    },
    /// Refused by `gate` with `code`.
    Denied {
        /// The gate.
        gate: GateId,
        /// The code.
        code: ErrorCode,
    },
    /// Fails with an engine code.
    Failed {
        /// The code (in the engine's catalogue).
        code: ErrorCode,
    },
}

/// A conformance vector.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ConformanceVector {
    /// Id, unique in the engine.
    pub id: String,
    /// Golden or reject.
    pub kind: VectorKind,
    /// What it proves.
    pub description: String,
    /// The operation.
    pub operation: OperationName,
    /// The operation file (absolute path) and the parsed operation; `None`
    /// for a pending vector.
    pub planned: Option<(PathBuf, PlannedOperation)>,
    /// Payloads of the operation's input artifacts.
    pub payloads: Vec<VectorPayload>,
    /// Expected outcome.
    pub expect: Expectation,
    /// Optional for certification.
    pub optional: bool,
}

/// The payload of one input artifact of a vector, checked at load against
/// the input's handle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VectorPayload {
    /// The `artifact_id` of the input it backs.
    pub artifact_id: uuid::Uuid,
    /// The file or directory (absolute path).
    pub path: PathBuf,
    /// How it becomes an artifact.
    pub kind: PayloadKind,
}

/// How a vector payload is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadKind {
    /// A file, stored as its bytes.
    File,
    /// A directory, stored as a bundle (line endings kept).
    Dir,
}

impl ConformanceVector {
    /// A vector without an operation file is pending: not runnable yet.
    pub fn is_pending(&self) -> bool {
        self.planned.is_none()
    }
}

fn join<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    let v: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if v.is_empty() {
        "(none)".to_owned()
    } else {
        v.join(", ")
    }
}
