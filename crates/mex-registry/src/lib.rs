//! # mex-registry: the engine registry
//!
//! This crate owns `mechanical_engines.json`, the single declaration of what
//! may run: its format ([`format`](mod@format), with a generated JSON Schema, see
//! [`schema`]), its loader and every validation rule, and the params
//! validators compiled from it. An engine that is not declared here cannot be
//! called, and what the registry says (capabilities, budgets, ceilings, gates)
//! binds the gates and the runtime.
//!
//! It does **not** own the gates, the capability policy, the runtime, the
//! engines or the conformance harness: it tells them what is declared, they
//! decide and enforce. It does no network I/O; it reads only the registry
//! file and the files it references, inside the registry's directory.
//!
//! ## Loading
//!
//! [`Registry::load`] (a file) and [`Registry::from_str`] (text plus the
//! directory referenced files resolve against) return a validated
//! [`Registry`] or [`RegistryError::Invalid`] with **every** problem found,
//! each a [`Problem`] with a stable code, the file, a JSON pointer, and a line
//! and column. Every params schema is compiled once, at load; validating
//! params afterwards ([`Operation::validate_params`]) compiles nothing.
//!
//! Rules checked (codes in [`ProblemKind`]): JSON syntax; duplicate object
//! keys (serde_json would silently keep the last); the shape of every value
//! (`deny_unknown_fields` everywhere); duplicate engine ids, operations,
//! failure codes, gates, implementations, vector ids; an operation whose
//! prefix is not its engine's name; identifiers, versions, codes, media types
//! and capabilities that do not parse; unknown gate names, or a global gate
//! listed as engine-specific; an operation determinism above the engine's
//! ceiling; incomplete budgets or a default above the maximum; params schemas
//! that are not closed objects or do not compile (draft 2020-12, `format`
//! validated, unknown formats refused, no remote `$ref` resolution);
//! referenced files that are missing, absolute, use `..` or resolve outside
//! the registry's directory through a symlink; artifact params or `seed`
//! rules naming params the schema lacks; failure codes outside the engine's
//! catalogue; vectors naming undeclared operations, whose kind and outcome
//! disagree, whose operation file is not a valid poe-1.0 PlannedOperation for
//! that engine and operation, whose params fail the schema (unless the vector
//! expects a G-SCHEMA denial), or whose payloads do not match the input
//! handles' hash and size (a `"dir"` payload: the hash and size of the
//! bundle index the artifact store makes of the directory; it must be a
//! `bundle` input, read under the referenced-file bounds, with no symlink,
//! special file or non-canonical name).
//!
//! ## The format (registry_version "1.0")
//!
//! ```json
//! {
//!   "$schema": "schemas/mechanical-engines.schema.json",
//!   "registry_version": "1.0",
//!   "engines": [{
//!     "engine_id": "engine.physics",
//!     "interface_version": "1.0.0",
//!     "domain": "Engineering & Manufacturing",
//!     "description": "Dimensional analysis and unit conversion.",
//!     "determinism_ceiling": "D3",
//!     "gates": [{ "gate": "G-SAFETY.SANDBOX", "requirement": "required",
//!                 "operations": [], "when_capabilities": [], "reason": "..." }],
//!     "default_capabilities": ["fs.read:inputs", "fs.write:artifacts"],
//!     "default_budget": { "cpu_time_ms": 2000, "wall_time_ms": 5000,
//!                         "memory_bytes": 268435456, "output_bytes": 1048576 },
//!     "max_budget":     { "cpu_time_ms": 10000, "wall_time_ms": 30000,
//!                         "memory_bytes": 1073741824, "output_bytes": 16777216 },
//!     "implementations": [{ "id": "mex-engine-physics", "version": "0.1.0",
//!                           "kind": "in_process" }],
//!     "failure_codes": [{ "code": "PHYS_UNIT_MISMATCH", "description": "..." }],
//!     "operations": [{
//!       "name": "physics.evaluate_formula",
//!       "description": "...",
//!       "params_schema": { "file": "registry/params/engine.physics/evaluate_formula.schema.json" },
//!       "artifact_params": [{ "param": "expr_ref", "media_types": ["text/plain"] }],
//!       "outputs": [{ "type": "artifact.dataset", "media_types": ["application/json"] }],
//!       "required_capabilities": ["fs.read:inputs", "fs.write:artifacts"],
//!       "determinism": "D3",
//!       "failure_codes": ["PHYS_PARSE_ERROR"]
//!     }],
//!     "conformance_vectors": [{
//!       "id": "golden-evaluate-formula", "kind": "golden",
//!       "description": "...", "operation": "physics.evaluate_formula",
//!       "operation_file": "registry/vectors/engine.physics/golden-evaluate-formula.json",
//!       "payloads": [{ "artifact_id": "…", "file": "registry/vectors/engine.physics/…" }],
//!       "expect": { "outcome": "succeeded", "stability": "D3" }
//!     }]
//!   }]
//! }
//! ```
//!
//! * **Budgets**: both budgets set all four limits. The default fills the
//!   fields an operation leaves out; the maximum is the trusted ceiling.
//! * **Implementations**: none means the engine is *declared only*;
//!   [`Engine::status`] says "declared, no implementation: not callable" and
//!   [`Registry::implementation`] returns [`RegistryError::NotCallable`].
//!   Otherwise the highest version matching the operation's
//!   `engine_version_req` is chosen. A `subprocess` implementation must list
//!   its executable allowlist (bare program names); an `in_process` one may not.
//! * **Params schemas**: `{"file": "<path>"}` (relative to the registry
//!   file's directory; the shipped registry keeps them under
//!   `registry/params/<engine_id>/<op>.schema.json`) or `{"inline": {...}}`.
//!   Each must be draft 2020-12, `"type": "object"` and closed
//!   (`"additionalProperties": false`).
//! * **Artifact references**: a param listed in `artifact_params` holds the
//!   `artifact_id` (UUID string) of one of the operation's `inputs` (an array
//!   of them with `"many": true`); with `"entity_ref": true` it may instead
//!   name an EntityRef input by `entity_id`. `seed_required_at: "D2"` means a
//!   `seed` param is required when the operation asks for D2 or above.
//! * **Outputs**: the typed outputs of `docs/contract.md §8.1`
//!   (`artifact.dataset`, ...), with optional media types.
//! * **Gates**: the six global gates ([`GLOBAL_GATES`]) always run and are
//!   never listed. `gates` lists engine-specific ones ([`ENGINE_GATES`]) with
//!   a requirement (`required`, `recommended`: on in the default policy,
//!   `optional`: off unless the policy enables it), optionally restricted to
//!   some operations and/or to operations requesting some capability kinds.
//! * **Conformance vectors**: `golden` expects `{"outcome": "succeeded",
//!   "stability": "D2|D3", "output_digest"?}`; `reject` expects
//!   `{"outcome": "denied", "gate", "code": "<gate>.<REASON>"}` or
//!   `{"outcome": "failed", "code"}` with a code from the catalogue. A vector
//!   without `operation_file` is *pending* (`docs/contract.md §8.4`:
//!   declared, not yet written) and the conformance harness reports it as not
//!   runnable.
//!
//! ## Gate names
//!
//! Known engine-specific gates: `G-SAFETY.GEOM`, `G-SAFETY.GCODE`,
//! `G-SAFETY.FOOD`, `G-SAFETY.SANDBOX`, `G-LICENSE` (named by MEX v1.2,
//! `docs/contract.md §8.2`); `G-POLICY.DEVICE` (the spec's per-device/port
//! consent gate),
//! `G-POLICY.CONNECTOR` (connector policy gate), `G-POLICY.SECRETS` (policy
//! gate for secrets and remote profiles), `G-POLICY.REMOTE` (remote VCS
//! operations); and stricter modes of global gates: `G-BUDGET.STRICT`,
//! `G-DET.EVIDENCE`, `G-SCHEMA.EXPECTATIONS`, `G-BUDGET.SNIPPETS`.

mod error;
pub mod format;
mod gates;
mod loader;
mod model;
mod span;

use std::path::{Path, PathBuf};

pub use error::{ParamsError, Problem, ProblemKind, RegistryError};
pub use format::{GateRequirement, ImplementationKind, OutputDecl, OutputType, VectorKind};
pub use gates::{
    ENGINE_GATES, GATE_BUDGET, GATE_CAP, GATE_DET, GATE_INTEGRITY, GATE_PROVENANCE, GATE_SCHEMA,
    GLOBAL_GATES,
};

/// Public only for sibling crates (the gates' name checks, `mex` and xtask's
/// schema and overlay handling): not a stable API, and hidden from the docs.
/// See ARCHITECTURE.md, "API boundary".
#[doc(hidden)]
pub mod internal {
    pub use crate::gates::{is_engine_gate, is_global_gate, is_known_gate};
    pub use crate::{overlay_files, render_schema};
}
pub use loader::PROCESS_GATE;
pub use model::{
    ArtifactParam, BudgetLimits, ConformanceVector, Engine, EngineGate, EngineStatus, Expectation,
    FailureCode, Implementation, Operation, PayloadKind, PinnedFile, ProcessSpec, Registry,
    SchemaSource, VectorPayload,
};
pub use span::Position;

/// The largest registry file the loader reads (8 MiB).
pub const MAX_REGISTRY_BYTES: usize = 8 << 20;

/// The largest referenced file (params schema, vector, payload) the loader reads (1 MiB).
pub const MAX_REFERENCED_FILE_BYTES: u64 = 1 << 20;

/// The most files a directory payload of a conformance vector may hold; all
/// of them together are read under [`MAX_REFERENCED_FILE_BYTES`].
pub const MAX_PAYLOAD_DIR_FILES: usize = 1024;

/// At most this many params errors are reported for one params object.
pub const MAX_PARAMS_ERRORS: usize = 64;

/// The conventional file name of the registry.
pub const REGISTRY_FILE_NAME: &str = "mechanical_engines.json";

/// The directory of overlays beside a registry file.
pub const OVERLAY_DIR_NAME: &str = "registry.d";

/// At most this many overlay files are read.
pub const MAX_OVERLAY_FILES: usize = 256;

/// The overlay files that apply to the registry at `registry_file`, in the
/// order they are merged: `registry.d/*.json` beside it, then each of
/// `extra_dirs`' `*.json`, each directory sorted by file name. A missing
/// directory contributes nothing. Sibling crates reach it as
/// `internal::overlay_files`.
#[doc(hidden)]
pub fn overlay_files(
    registry_file: &Path,
    extra_dirs: &[PathBuf],
) -> Result<Vec<PathBuf>, RegistryError> {
    let beside = match registry_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join(OVERLAY_DIR_NAME),
        _ => PathBuf::from(OVERLAY_DIR_NAME),
    };
    let mut out: Vec<PathBuf> = Vec::new();
    for dir in std::iter::once(&beside).chain(extra_dirs) {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && *dir == beside => continue,
            Err(source) => {
                return Err(RegistryError::Io {
                    path: dir.clone(),
                    source,
                });
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
            .collect();
        files.sort();
        for f in files {
            let canon = f.canonicalize().unwrap_or_else(|_| f.clone());
            if !out
                .iter()
                .any(|o| o.canonicalize().unwrap_or_else(|_| o.clone()) == canon)
            {
                out.push(f);
            }
        }
    }
    if out.len() > MAX_OVERLAY_FILES {
        return Err(RegistryError::Invalid {
            source_name: beside.display().to_string(),
            problems: vec![Problem {
                file: beside.display().to_string(),
                line: 1,
                column: 1,
                pointer: String::new(),
                kind: ProblemKind::TooLarge,
                message: format!(
                    "{} overlay files, more than the {MAX_OVERLAY_FILES} read; merge some",
                    out.len()
                ),
            }],
        });
    }
    Ok(out)
}

impl Registry {
    /// Load and validate a registry file and the overlays beside it
    /// (`registry.d/*.json`); referenced files resolve against the directory
    /// of the file that references them.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, RegistryError> {
        Self::load_with_overlays(path, &[])
    }

    /// [`Registry::load`] plus the `*.json` overlays in `extra_dirs`
    /// (e.g. `mex --registry-dir`).
    ///
    /// An overlay is a registry document of its own (same format, same
    /// rules, errors reported against the overlay file). Its engines are
    /// merged into the main registry: a new engine id is added; an engine the
    /// main registry declares *without implementations* (declared only) is
    /// replaced by the overlay's declaration; an engine that already has
    /// implementations, or that another overlay declares, is a
    /// `REGISTRY.DUPLICATE_ENGINE` problem at the overlay's position.
    pub fn load_with_overlays(
        path: impl AsRef<Path>,
        extra_dirs: &[PathBuf],
    ) -> Result<Self, RegistryError> {
        let path = path.as_ref();
        let mut main = Self::load_file(path, None);
        let overlays = overlay_files(path, extra_dirs)?;
        if overlays.is_empty() {
            return main;
        }
        let mut problems = match &mut main {
            Ok(_) => Vec::new(),
            Err(RegistryError::Invalid { problems, .. }) => std::mem::take(problems),
            Err(_) => return main,
        };
        let mut from_overlay: std::collections::BTreeMap<mex_envelope::EngineId, String> =
            std::collections::BTreeMap::new();
        let mut merged = Vec::new();
        for file in &overlays {
            let label = file.display().to_string();
            match Self::load_file(file, Some(label.clone())) {
                Ok(overlay) => merged.push((label, file.clone(), overlay)),
                Err(RegistryError::Invalid { problems: p, .. }) => problems.extend(p),
                Err(e) => return Err(e),
            }
        }
        for (label, file, overlay) in merged {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let positions = span::scan(&text);
            let ids: Vec<Option<String>> = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("engines").and_then(|e| e.as_array()).cloned())
                .unwrap_or_default()
                .iter()
                .map(|e| {
                    e.get("engine_id")
                        .and_then(|i| i.as_str())
                        .map(str::to_owned)
                })
                .collect();
            for (id, engine) in overlay.engines {
                let index = ids
                    .iter()
                    .position(|i| i.as_deref() == Some(id.as_str()))
                    .unwrap_or(0);
                let at = format!("/engines/{index}/engine_id");
                let pos = positions.locate(&at);
                let clash = if let Some(other) = from_overlay.get(&id) {
                    Some(format!(
                        "engine {id} is already declared by the overlay {other}; declare each engine in one overlay"
                    ))
                } else if let Ok(m) = &main
                    && m.engines
                        .get(&id)
                        .is_some_and(|e| !e.implementations.is_empty())
                {
                    Some(format!(
                        "engine {id} is already declared with implementations by {}; an overlay may add a new engine or replace one that is declared only",
                        m.source_name
                    ))
                } else {
                    None
                };
                if let Some(message) = clash {
                    problems.push(Problem {
                        file: label.clone(),
                        line: pos.line,
                        column: pos.column,
                        pointer: at,
                        kind: ProblemKind::DuplicateEngine,
                        message,
                    });
                    continue;
                }
                from_overlay.insert(id.clone(), label.clone());
                if let Ok(m) = &mut main {
                    m.engines.insert(id, engine);
                }
            }
        }
        match main {
            Ok(m) if problems.is_empty() => Ok(m),
            Ok(m) => Err(RegistryError::Invalid {
                source_name: m.source_name,
                problems,
            }),
            Err(RegistryError::Invalid { source_name, .. }) => {
                problems.sort();
                problems.dedup();
                Err(RegistryError::Invalid {
                    source_name,
                    problems,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Load one registry document (no overlays); `label` names it in problems.
    fn load_file(path: &Path, label: Option<String>) -> Result<Self, RegistryError> {
        let io = |source| RegistryError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        let name = label.unwrap_or_else(|| {
            path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        });
        if meta.len() > MAX_REGISTRY_BYTES as u64 {
            return Err(RegistryError::Invalid {
                source_name: name.clone(),
                problems: vec![Problem {
                    file: name,
                    line: 1,
                    column: 1,
                    pointer: String::new(),
                    kind: ProblemKind::TooLarge,
                    message: format!(
                        "the registry is {} bytes, over the {MAX_REGISTRY_BYTES}-byte limit",
                        meta.len()
                    ),
                }],
            });
        }
        // The metadata check above gives the plain message for a regular
        // file; the bounded read holds for a FIFO or a file that grows.
        let bytes =
            mex_envelope::json::read_file_at_most(path, MAX_REGISTRY_BYTES as u64).map_err(io)?;
        let text = String::from_utf8_lossy(&bytes);
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        loader::load_text(&text, dir, name)
    }

    /// Load and validate registry text; referenced files resolve against `base_dir`.
    #[allow(
        clippy::should_implement_trait,
        reason = "it takes a base directory too, so it cannot be FromStr"
    )]
    pub fn from_str(text: &str, base_dir: impl AsRef<Path>) -> Result<Self, RegistryError> {
        loader::load_text(text, base_dir.as_ref(), "<string>".to_owned())
    }
}

/// The JSON Schema of the registry format (committed as
/// `schemas/mechanical-engines.schema.json`).
pub fn schema() -> schemars::Schema {
    schemars::schema_for!(format::RegistryDocument)
}

/// Render a schema the way it is committed: pretty JSON and a trailing newline.
#[doc(hidden)]
pub fn render_schema(schema: &schemars::Schema) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}
