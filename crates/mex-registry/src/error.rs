//! The one error type of this crate, and the problem records the loader
//! collects.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// What kind of problem the loader found; each has a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The file is not JSON.
    Syntax,
    /// The file is larger than [`crate::MAX_REGISTRY_BYTES`].
    TooLarge,
    /// An object repeats a key (JSON parsers silently keep the last one).
    DuplicateKey,
    /// A value has the wrong shape: missing or unknown field, wrong type.
    Structure,
    /// An identifier, code or version does not parse.
    InvalidValue,
    /// Two engines share an `engine_id`.
    DuplicateEngine,
    /// An engine declares an operation (or vector, code, gate, implementation) twice.
    Duplicate,
    /// An operation name's prefix is not its engine's name.
    OperationPrefix,
    /// A capability string does not parse.
    Capability,
    /// A gate name is not one this runtime knows.
    UnknownGate,
    /// A global gate is listed as engine-specific.
    GlobalGateListed,
    /// An operation claims a determinism level above its engine's ceiling.
    DeterminismAboveCeiling,
    /// A budget is incomplete or its default exceeds its maximum.
    Budget,
    /// A params schema does not compile or breaks a registry rule.
    ParamsSchema,
    /// A referenced file does not exist or cannot be read.
    FileMissing,
    /// A referenced path is absolute, uses `..`, or resolves outside the registry directory.
    PathEscape,
    /// Something names an operation the engine does not declare.
    UndeclaredOperation,
    /// A code is not in the engine's failure-code catalogue.
    UnknownFailureCode,
    /// An implementation is malformed (kind/allowlist mismatch, bad executable).
    Implementation,
    /// A conformance vector is inconsistent with itself, its file or its engine.
    Vector,
}

impl ProblemKind {
    /// The stable code, e.g. `REGISTRY.DUPLICATE_ENGINE`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Syntax => "REGISTRY.SYNTAX",
            Self::TooLarge => "REGISTRY.TOO_LARGE",
            Self::DuplicateKey => "REGISTRY.DUPLICATE_KEY",
            Self::Structure => "REGISTRY.STRUCTURE",
            Self::InvalidValue => "REGISTRY.INVALID_VALUE",
            Self::DuplicateEngine => "REGISTRY.DUPLICATE_ENGINE",
            Self::Duplicate => "REGISTRY.DUPLICATE",
            Self::OperationPrefix => "REGISTRY.OPERATION_PREFIX",
            Self::Capability => "REGISTRY.CAPABILITY",
            Self::UnknownGate => "REGISTRY.UNKNOWN_GATE",
            Self::GlobalGateListed => "REGISTRY.GLOBAL_GATE_LISTED",
            Self::DeterminismAboveCeiling => "REGISTRY.DETERMINISM_ABOVE_CEILING",
            Self::Budget => "REGISTRY.BUDGET",
            Self::ParamsSchema => "REGISTRY.PARAMS_SCHEMA",
            Self::FileMissing => "REGISTRY.FILE_MISSING",
            Self::PathEscape => "REGISTRY.PATH_ESCAPE",
            Self::UndeclaredOperation => "REGISTRY.UNDECLARED_OPERATION",
            Self::UnknownFailureCode => "REGISTRY.UNKNOWN_FAILURE_CODE",
            Self::Implementation => "REGISTRY.IMPLEMENTATION",
            Self::Vector => "REGISTRY.VECTOR",
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One problem in a registry, located precisely.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Problem {
    /// The file it is in: the registry's file name (or `<string>` for
    /// [`crate::Registry::from_str`]), or a referenced file relative to the
    /// registry directory.
    pub file: String,
    /// 1-based line in `file`.
    pub line: usize,
    /// 1-based column in `file`, counted in characters.
    pub column: usize,
    /// JSON pointer (RFC 6901) of the offending value in `file`; empty for the root.
    pub pointer: String,
    /// What kind of problem.
    pub kind: ProblemKind,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pointer = if self.pointer.is_empty() {
            "/ (root)"
        } else {
            &self.pointer
        };
        write!(
            f,
            "{}:{}:{}: {} at {pointer}: {}",
            self.file, self.line, self.column, self.kind, self.message
        )
    }
}

/// One way a params object fails its operation's schema.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParamsError {
    /// JSON pointer into the params object (empty for the params object itself).
    pub pointer: String,
    /// JSON pointer of the schema keyword that failed.
    pub schema_pointer: String,
    /// What is wrong.
    pub message: String,
}

impl ParamsError {
    /// The pointer of the offending value inside a PlannedOperation
    /// (`/params` + [`ParamsError::pointer`]).
    pub fn envelope_pointer(&self) -> String {
        format!("/params{}", self.pointer)
    }
}

impl fmt::Display for ParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.envelope_pointer(), self.message)
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry file could not be read.
    #[error("cannot read registry file {}: {source}; check the path and its permissions", path.display())]
    Io {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The registry has problems; every one found is listed.
    #[error("{}", render_problems(source_name, problems))]
    Invalid {
        /// The registry file name, or `<string>`.
        source_name: String,
        /// Every problem, in file and position order.
        problems: Vec<Problem>,
    },
    /// No engine with this id is declared.
    #[error(
        "engine {engine_id} is not declared in the registry, and only declared engines can run; declared engines: {declared}"
    )]
    UnknownEngine {
        /// The engine asked for.
        engine_id: String,
        /// The declared ids, comma-separated.
        declared: String,
    },
    /// The engine does not declare this operation.
    #[error(
        "operation {operation} is not declared by {engine_id}; declared operations: {declared}"
    )]
    UnknownOperation {
        /// The engine.
        engine_id: String,
        /// The operation asked for.
        operation: String,
        /// Its declared operations, comma-separated.
        declared: String,
    },
    /// The engine is declared but has no implementation.
    #[error(
        "engine {engine_id}: declared, no implementation: not callable (the registry lists no implementation for it)"
    )]
    NotCallable {
        /// The engine.
        engine_id: String,
    },
    /// No implementation satisfies the version requirement.
    #[error(
        "no implementation of {engine_id} satisfies engine_version_req {requirement:?}; available: {available}; ask for a version the registry declares"
    )]
    NoMatchingImplementation {
        /// The engine.
        engine_id: String,
        /// The requirement given.
        requirement: String,
        /// Available `id@version`s, comma-separated.
        available: String,
    },
    /// Params do not match the operation's schema.
    #[error(
        "params do not match the schema of {operation}: {}",
        render_params(errors)
    )]
    InvalidParams {
        /// The operation.
        operation: String,
        /// Every failure found (at most [`crate::MAX_PARAMS_ERRORS`]).
        errors: Vec<ParamsError>,
    },
}

impl RegistryError {
    /// The problems of an [`RegistryError::Invalid`] error; empty otherwise.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

fn render_problems(source: &str, problems: &[Problem]) -> String {
    let mut out = format!(
        "registry {source} is invalid ({} problem{}); fix each and load again:",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&p.to_string());
    }
    out
}

fn render_params(errors: &[ParamsError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
