//! The trusted facts the gates decide on, and the [`Catalog`] that supplies
//! them. The registry implements `Catalog` (see [`crate::registry`]); tests may
//! use a hand-built one. Nothing here comes from the envelope.

use mex_envelope::{BudgetSpec, GateId, PlannedOperation};
use serde_json::Value;

use crate::codes::Finding;
use crate::gates::cap::OperationCapabilities;
use crate::gates::det::DeterminismFacts;

/// How an implementation runs, which decides what budgets it can enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImplementationKind {
    /// In the runtime's process: wall time and output are enforced; CPU and
    /// memory cannot be.
    InProcess,
    /// In a sandboxed child process: every budget is enforced by the OS.
    Subprocess,
}

/// The implementation an operation resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImplementationFacts {
    /// Implementation id.
    pub id: String,
    /// Its version.
    pub version: semver::Version,
    /// How it runs.
    pub kind: ImplementationKind,
}

/// How binding an engine-specific gate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GateNeed {
    /// Must run; when not installed the operation is denied (fail closed).
    Required,
    /// Runs when installed; when not installed the outcome is degraded.
    Recommended,
    /// Runs when installed; otherwise skipped.
    Optional,
}

/// Everything the registry says about one (engine, operation).
#[derive(Debug, Clone)]
pub struct OperationFacts {
    /// Engine interface version.
    pub engine_version: semver::Version,
    /// Determinism ceiling and seed rule.
    pub determinism: DeterminismFacts,
    /// Required and optional capabilities.
    pub capabilities: OperationCapabilities,
    /// Budget defaults.
    pub default_budget: BudgetSpec,
    /// Budget maximums.
    pub max_budget: BudgetSpec,
    /// Engine-specific gates that apply to this operation and request.
    pub engine_gates: Vec<(GateId, GateNeed)>,
    /// Whether inputs may be entity references (some artifact param accepts one).
    pub entity_inputs_allowed: bool,
    /// Top-level params whose values are artifact references (an artifact id
    /// string, or an array of them). Params named `*_ref` always are.
    pub artifact_ref_params: Vec<String>,
    /// Of those, the params that may instead name an input entity reference
    /// by its `entity_id`.
    pub entity_ref_params: Vec<String>,
}

/// The trusted source of [`OperationFacts`].
pub trait Catalog: Send + Sync {
    /// Facts for the operation's engine and operation, or G-SCHEMA findings
    /// (unknown engine, unknown operation).
    fn operation_facts(&self, op: &PlannedOperation) -> Result<OperationFacts, Vec<Finding>>;

    /// Validate `params` (the operation's params as one JSON value) against
    /// the schema of `op`'s operation: `(pointer, message)` per error,
    /// pointers relative to the envelope (`/params/...`).
    fn validate_params(&self, op: &PlannedOperation, params: &Value) -> Vec<(String, String)>;

    /// Resolve `engine_version_req` to exactly one implementation, or a
    /// G-PROVENANCE finding.
    fn resolve_implementation(&self, op: &PlannedOperation)
    -> Result<ImplementationFacts, Finding>;
}
