//! Errors building a runtime. (Running never errors: `execute` always returns
//! an EngineResult.)

use thiserror::Error;

/// Why a runtime could not be built.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// A required builder part is missing.
    #[error("the runtime builder needs {0}; call .{0}(...) before .build()")]
    Missing(&'static str),
    /// An engine is not declared in the registry, or its implementation is not.
    #[error(
        "engine {engine} implementation {implementation}@{version} is not declared in the registry; declare it in mechanical_engines.json first"
    )]
    UndeclaredEngine {
        /// Engine id.
        engine: String,
        /// Implementation id.
        implementation: String,
        /// Version.
        version: String,
    },
    /// An engine runs differently from its registry implementation (say an
    /// in-process engine registered for a process implementation).
    #[error(
        "engine {engine} implementation {implementation} is declared {declared} in the registry, but the engine registered for it runs {actual}; register the engine built for that implementation (a process implementation runs through mex-engine-process), or fix the registry entry"
    )]
    EngineKindMismatch {
        /// Engine id.
        engine: String,
        /// Implementation id and version.
        implementation: String,
        /// The registry's kind.
        declared: &'static str,
        /// How the registered engine says it runs.
        actual: &'static str,
    },
    /// Two engines registered for the same implementation.
    #[error("engine implementation {0} is registered twice")]
    DuplicateEngine(String),
    /// An engine-specific gate could not be installed.
    #[error("cannot install gate: {0}")]
    Gate(String),
    /// The workspace root cannot be created.
    #[error("cannot create the shadow workspace root {path}: {source}")]
    Workspace {
        /// The directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The action cache cannot be opened.
    #[error("cannot open the action cache: {0}")]
    Cache(#[from] crate::cache::CacheError),
}
