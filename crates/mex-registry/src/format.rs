//! The wire format of `mechanical_engines.json`: plain serde + schemars types
//! with `deny_unknown_fields`. These are what the file *says*; the loader
//! turns them into the validated model ([`crate::Registry`]).
//!
//! Identifiers, capabilities, codes and versions are carried as strings here
//! (their JSON Schema still carries the envelope's patterns) so that the
//! loader can check every one of them and report all problems at once,
//! instead of stopping at the first one serde meets.

use mex_envelope::{
    BudgetSpec, Capability, DeterminismLevel, EngineId, ErrorCode, GateId, MediaType,
    OperationName, Sha256Digest,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The whole registry file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "mechanical_engines.json (MEX engine registry)",
    description = "Declares every engine mex may run: operations, params schemas, capabilities, budgets, determinism ceilings, gates, implementations and conformance vectors. An engine that is not declared here cannot be called."
)]
pub struct RegistryDocument {
    /// Optional editor hint: the path or URL of this format's JSON Schema.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Version of the registry format; this loader reads `"1.0"`.
    pub registry_version: RegistryVersion,
    /// Every declared engine, at most once each.
    pub engines: Vec<EngineDecl>,
}

/// Version of the registry format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RegistryVersion {
    /// Format 1.0, described by this crate.
    #[serde(rename = "1.0")]
    V1_0,
}

/// One engine.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EngineDecl {
    /// `engine.<name>`; operation names of this engine start with `<name>.`.
    #[schemars(with = "EngineId")]
    pub engine_id: String,
    /// Semver version of the engine interface (MEX v1.2 declares 1.0.0 for
    /// all 22, docs/contract.md §8.1).
    #[schemars(with = "String")]
    pub interface_version: String,
    /// Product domain, e.g. "Engineering & Manufacturing".
    pub domain: String,
    /// What the engine does, in a sentence.
    pub description: String,
    /// The highest determinism level any operation of this engine may claim.
    pub determinism_ceiling: DeterminismLevel,
    /// Engine-specific gates, beyond the six global gates that always run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateDecl>,
    /// Capabilities a typical operation of this engine is granted when the
    /// caller's policy allows them (still subject to G-CAP and consent).
    #[schemars(with = "Vec<Capability>")]
    pub default_capabilities: Vec<String>,
    /// Budget used for every field the operation leaves out; all four fields set.
    pub default_budget: BudgetSpec,
    /// Trusted ceiling: an operation asking for more is refused; all four fields set.
    pub max_budget: BudgetSpec,
    /// Implementations; empty means the engine is *declared* only and not callable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub implementations: Vec<ImplementationDecl>,
    /// The engine's catalogue of failure codes.
    pub failure_codes: Vec<FailureCodeDecl>,
    /// The engine's operations.
    pub operations: Vec<OperationDecl>,
    /// Golden and reject vectors the engine must pass to be certified callable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conformance_vectors: Vec<VectorDecl>,
}

/// An engine-specific gate and when it runs.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateDecl {
    /// A known gate id (see the crate docs for the list).
    #[schemars(with = "GateId")]
    pub gate: String,
    /// Whether the gate must run, or runs when the caller's policy enables it.
    pub requirement: GateRequirement,
    /// Operations it applies to; empty means every operation of the engine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<OperationName>")]
    pub operations: Vec<String>,
    /// Capability kinds (e.g. `net.http`) that trigger it; empty means always.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when_capabilities: Vec<String>,
    /// Why the gate is there, for auditors.
    pub reason: String,
}

/// How binding an engine-specific gate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GateRequirement {
    /// Always runs where it applies; an operation cannot be admitted without it.
    Required,
    /// Runs when the caller's policy turns it on (default profile: on).
    Recommended,
    /// Runs when the caller's policy turns it on (default profile: off).
    Optional,
}

/// One implementation of an engine.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImplementationDecl {
    /// Implementation id, `[a-z][a-z0-9-]*`, usually the crate name.
    #[schemars(regex(pattern = "^[a-z][a-z0-9-]{0,63}$"))]
    pub id: String,
    /// Semver version; `engine_version_req` in an operation matches it.
    #[schemars(with = "String")]
    pub version: String,
    /// Builtin (`in_process`, `subprocess`: compiled into the host binary),
    /// `host_process` (compiled into the host binary, run as a separate
    /// sandboxed process through the engine protocol), `process` (an
    /// executable or script mex runs through the engine protocol) or `wasm`
    /// (a WASI preview-1 module mex runs in wasmtime through the same
    /// protocol).
    pub kind: ImplementationKind,
    /// Subprocess only: program names it may execute, resolved by the sandbox
    /// on a trusted path (`[A-Za-z0-9][A-Za-z0-9._+-]*`, no `/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub executables: Vec<String>,
    /// Process and wasm: the engine's executable, script or `.wasm` module, relative to the
    /// directory of the registry file that declares it (forward slashes, no
    /// `..`, no absolute paths, no symlinks out of that directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Process and wasm: SHA-256 of the file at `path` (64 lowercase hex); mex
    /// checks it before every run and refuses a mismatch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Sha256Digest>")]
    pub sha256: Option<String>,
    /// Process only: the interpreter that runs a script at `path` (a bare
    /// program name, e.g. `python3`; it must be on the host's sandbox
    /// allowlist, checked by `G-SAFETY.PROCESS`). Absent: `path` is executed
    /// itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    /// Process only: further files the engine needs (modules, data), each
    /// pinned like `path` and copied beside it, read-only, for every run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<PinnedFileDecl>,
}

/// A file pinned by its SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PinnedFileDecl {
    /// Relative to the declaring registry file's directory.
    pub path: String,
    /// SHA-256 of its bytes (64 lowercase hex).
    #[schemars(with = "Sha256Digest")]
    pub sha256: String,
}

/// Where an implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImplementationKind {
    /// Builtin: a Rust engine inside the runtime process (trusted code only).
    InProcess,
    /// Builtin: a Rust engine compiled into the host that runs its work in
    /// a sandboxed child process.
    Subprocess,
    /// An executable or script the host was not built with, run under
    /// mex-sandbox with the operation's budgets and spoken to through the
    /// engine protocol (`mex-engine-1`); pinned by SHA-256.
    Process,
    /// A Rust engine compiled into the host binary that runs as a separate
    /// process: the host executable itself, started as `mex-engine-exec
    /// <engine id>` in the same jail, with the same budgets and protocol as a
    /// `process` implementation (for engines that parse untrusted data). Its
    /// code identity is the host executable.
    HostProcess,
    /// A WebAssembly module (WASI preview 1) the host was not built with,
    /// run in wasmtime with fuel, epoch and memory metering and spoken to
    /// through the engine protocol (`mex-engine-1`); pinned by SHA-256.
    Wasm,
}

impl ImplementationKind {
    /// Whether the implementation is compiled into the host binary.
    pub fn is_builtin(self) -> bool {
        !matches!(self, Self::Process | Self::Wasm)
    }

    /// Whether the implementation runs as a separate process through the
    /// engine protocol (`process` or `host_process`), checked by
    /// `G-SAFETY.PROCESS`.
    pub fn is_protocol_process(self) -> bool {
        matches!(self, Self::Process | Self::HostProcess)
    }
}

/// One failure code of an engine's catalogue.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailureCodeDecl {
    /// The code, e.g. `PHYS_UNIT_MISMATCH`.
    #[schemars(with = "ErrorCode")]
    pub code: String,
    /// When the engine reports it.
    pub description: String,
}

/// One operation.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperationDecl {
    /// `<engine name>.<op>`.
    #[schemars(with = "OperationName")]
    pub name: String,
    /// What the operation does.
    pub description: String,
    /// JSON Schema (draft 2020-12) of the params object.
    pub params_schema: ParamsSchemaDecl,
    /// Params whose values are artifact references: the `artifact_id` (a UUID
    /// string) of one of the operation's `inputs`, or an array of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifact_params: Vec<ArtifactParamDecl>,
    /// When set, a `seed` param is required at this determinism level and above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_required_at: Option<DeterminismLevel>,
    /// What the operation produces.
    pub outputs: Vec<OutputDecl>,
    /// Capabilities the operation cannot run without.
    #[schemars(with = "Vec<Capability>")]
    pub required_capabilities: Vec<String>,
    /// Capabilities it may additionally request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<Capability>")]
    pub optional_capabilities: Vec<String>,
    /// The highest level this operation may claim; at most the engine's ceiling.
    pub determinism: DeterminismLevel,
    /// Failure codes it may report; each is in the engine's catalogue.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<ErrorCode>")]
    pub failure_codes: Vec<String>,
    /// Evidence tokens the operation's evidence policy must capture
    /// (e.g. `snapshot`, `screenshot`), checked by G-DET.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_evidence: Vec<String>,
}

/// Where a params schema lives.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ParamsSchemaDecl {
    /// A file path relative to the registry file's directory (forward
    /// slashes, no `..`, no absolute paths, no symlinks out of the directory).
    File(String),
    /// The schema itself.
    Inline(serde_json::Value),
}

/// A param that names input artifacts.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactParamDecl {
    /// Name of the param (a property of the params schema).
    pub param: String,
    /// The value is an array of references rather than one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub many: bool,
    /// Media types the referenced artifact may have; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<MediaType>")]
    pub media_types: Vec<String>,
    /// The value may instead name an `EntityRef` input by its `entity_id`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub entity_ref: bool,
}

/// One declared output.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputDecl {
    /// The spec's output type, e.g. `artifact.dataset`.
    #[serde(rename = "type")]
    pub output_type: OutputType,
    /// Media types it may have; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<MediaType>")]
    pub media_types: Vec<String>,
    /// The operation may omit this output.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// The output types of the MEX v1.2 operations catalogue.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum OutputType {
    /// A 3D model or point cloud.
    #[serde(rename = "artifact.model3d")]
    Model3d,
    /// An image (raster or SVG).
    #[serde(rename = "artifact.image")]
    Image,
    /// A video.
    #[serde(rename = "artifact.video")]
    Video,
    /// Audio, MIDI included.
    #[serde(rename = "artifact.audio")]
    Audio,
    /// A document (PDF, HTML, text, font file).
    #[serde(rename = "artifact.document")]
    Document,
    /// A dataset or structured report (JSON, CSV, Parquet).
    #[serde(rename = "artifact.dataset")]
    Dataset,
    /// A bundle of files with a canonical index.
    #[serde(rename = "artifact.bundle")]
    Bundle,
    /// A captured snapshot (a bundle with evidence).
    #[serde(rename = "artifact.snapshot")]
    Snapshot,
    /// G-code.
    #[serde(rename = "artifact.gcode")]
    Gcode,
    /// Logs.
    #[serde(rename = "artifact.logs")]
    Logs,
}

/// A conformance vector.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VectorDecl {
    /// Unique within the engine, `[a-z0-9][a-z0-9_-]*`.
    #[schemars(regex(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$"))]
    pub id: String,
    /// Golden (a stable result) or reject (a named gate or error refuses).
    pub kind: VectorKind,
    /// What the vector proves.
    pub description: String,
    /// The operation it exercises; must be declared by the engine.
    #[schemars(with = "OperationName")]
    pub operation: String,
    /// A poe-1.0 PlannedOperation file relative to the registry directory.
    /// Absent: the vector is *pending* (declared, not yet written; docs/contract.md §8.4)
    /// and the conformance harness reports it as not runnable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_file: Option<String>,
    /// Payload files for the operation's input artifacts; each must hash to
    /// the handle's `content_hash` and `size_bytes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payloads: Vec<PayloadDecl>,
    /// What must happen.
    pub expect: ExpectDecl,
    /// The spec marks this vector optional for certification.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// Golden or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VectorKind {
    /// Must succeed with a stable result.
    Golden,
    /// Must be refused by a gate or fail with an engine code.
    Reject,
}

/// The payload of one input artifact of a vector: a file (stored as its
/// bytes) or a directory (stored as a bundle). Exactly one of `file` and
/// `dir` is given.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["file"]}, {"required": ["dir"]}]))]
pub struct PayloadDecl {
    /// The `artifact_id` of the input it backs.
    pub artifact_id: uuid::Uuid,
    /// A file, relative to the registry directory; its bytes are the
    /// artifact's payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub file: Option<String>,
    /// A directory, relative to the registry directory, stored as a bundle
    /// (regular files and directories only, no symlinks, names already in
    /// the store's canonical form, line endings kept); the handle's hash and
    /// size are those of the bundle's canonical index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub dir: Option<String>,
}

/// The expected outcome of a vector.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "outcome", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExpectDecl {
    /// Succeeds; outputs are stable at `stability`.
    Succeeded {
        /// The level at which repeated runs must agree (D3: bytes, D2: canonical form).
        stability: DeterminismLevel,
        /// The stable digest of the outputs (SHA-256 of the canonical list of
        /// output content hashes); absent until first certified.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(with = "Option<Sha256Digest>")]
        output_digest: Option<String>,
    },
    /// Refused by a gate before the engine runs.
    Denied {
        /// The gate that must refuse.
        #[schemars(with = "GateId")]
        gate: String,
        /// Its code, `<gate>.<REASON>`.
        #[schemars(with = "ErrorCode")]
        code: String,
    },
    /// The engine runs and fails with one of its failure codes.
    Failed {
        /// A code from the engine's catalogue.
        #[schemars(with = "ErrorCode")]
        code: String,
    },
}
