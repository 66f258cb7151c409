//! The registry as the gates' [`Catalog`]: maps `mex_registry` types onto the
//! facts the gates decide on.

use std::sync::Arc;

use mex_envelope::{BudgetSpec, PlannedOperation};
use mex_registry::{BudgetLimits, GateRequirement, Registry, RegistryError};

use crate::codes::{Finding, deny};
use crate::facts::{Catalog, GateNeed, ImplementationFacts, ImplementationKind, OperationFacts};
use crate::gates::cap::OperationCapabilities;
use crate::gates::det::DeterminismFacts;
use crate::policy::GrantPattern;

/// A loaded registry, shared.
#[derive(Debug, Clone)]
pub struct RegistryCatalog {
    registry: Arc<Registry>,
}

impl RegistryCatalog {
    /// Wrap a loaded registry.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

fn spec(limits: &BudgetLimits) -> BudgetSpec {
    BudgetSpec {
        cpu_time_ms: Some(limits.cpu_time_ms),
        wall_time_ms: Some(limits.wall_time_ms),
        memory_bytes: Some(limits.memory_bytes),
        output_bytes: Some(limits.output_bytes),
    }
}

impl Catalog for RegistryCatalog {
    fn operation_facts(&self, op: &PlannedOperation) -> Result<OperationFacts, Vec<Finding>> {
        let engine = self.registry.engine(&op.engine_id).map_err(|e| {
            vec![deny(
                "G-SCHEMA.UNKNOWN_ENGINE",
                "registry.engines",
                e.to_string(),
                Some("/engine_id".into()),
            )]
        })?;
        let operation = engine.operation(&op.operation).map_err(|e| {
            vec![deny(
                "G-SCHEMA.UNKNOWN_OPERATION",
                "registry.engine.operations",
                e.to_string(),
                Some("/operation".into()),
            )]
        })?;
        let engine_gates = engine
            .gates_for(&op.operation, &op.capabilities_requested)
            .map(|g| {
                let need = match g.requirement {
                    GateRequirement::Required => GateNeed::Required,
                    GateRequirement::Recommended => GateNeed::Recommended,
                    GateRequirement::Optional => GateNeed::Optional,
                };
                (g.gate.clone(), need)
            })
            .collect();
        Ok(OperationFacts {
            engine_version: engine.interface_version.clone(),
            determinism: DeterminismFacts {
                engine_ceiling: engine.determinism_ceiling,
                operation_level: operation.determinism,
                seed_required_at: operation.seed_required_at,
            },
            capabilities: OperationCapabilities {
                required: operation
                    .required_capabilities
                    .iter()
                    .cloned()
                    .map(GrantPattern)
                    .collect(),
                optional: operation
                    .optional_capabilities
                    .iter()
                    .cloned()
                    .map(GrantPattern)
                    .collect(),
            },
            default_budget: spec(&engine.default_budget),
            max_budget: spec(&engine.max_budget),
            engine_gates,
            entity_inputs_allowed: operation.artifact_params.iter().any(|p| p.entity_ref),
            entity_ref_params: operation
                .artifact_params
                .iter()
                .filter(|p| p.entity_ref)
                .map(|p| p.param.clone())
                .collect(),
            artifact_ref_params: operation
                .artifact_params
                .iter()
                .map(|p| p.param.clone())
                .collect(),
        })
    }

    fn validate_params(
        &self,
        op: &PlannedOperation,
        params: &serde_json::Value,
    ) -> Vec<(String, String)> {
        let Ok(operation) = self.registry.operation(&op.engine_id, &op.operation) else {
            return Vec::new();
        };
        // The compiled validator's yes/no first; every error is collected
        // (with its pointer and message) only when the params fail.
        let errors = match operation.validate_params(params) {
            Ok(()) => return Vec::new(),
            Err(RegistryError::InvalidParams { errors, .. }) => errors,
            Err(_) => operation.params_errors(params),
        };
        errors
            .into_iter()
            .map(|e| (format!("/params{}", e.pointer), e.message))
            .collect()
    }

    fn resolve_implementation(
        &self,
        op: &PlannedOperation,
    ) -> Result<ImplementationFacts, Finding> {
        let engine = self.registry.engine(&op.engine_id).map_err(|e| {
            deny(
                "G-PROVENANCE.NO_IMPLEMENTATION",
                "registry.implementations",
                e.to_string(),
                Some("/engine_id".into()),
            )
        })?;
        let implementation = engine.implementation(&op.engine_version_req).map_err(|e| {
            let hint = match e {
                RegistryError::NotCallable { .. } => {
                    "; this engine is declared only and cannot run yet"
                }
                _ => "; adjust engine_version_req",
            };
            deny(
                "G-PROVENANCE.NO_IMPLEMENTATION",
                "registry.implementations",
                format!("{e}{hint}"),
                Some("/engine_version_req".into()),
            )
        })?;
        let same_version = engine
            .implementations
            .iter()
            .filter(|i| i.version == implementation.version)
            .count();
        if same_version > 1 {
            return Err(deny(
                "G-PROVENANCE.AMBIGUOUS_IMPLEMENTATION",
                "registry.implementations.unique_version",
                format!(
                    "{same_version} implementations of {} have version {}; provenance needs exactly one",
                    op.engine_id, implementation.version
                ),
                Some("/engine_version_req".into()),
            ));
        }
        Ok(ImplementationFacts {
            id: implementation.id.clone(),
            version: implementation.version.clone(),
            kind: match implementation.kind {
                mex_registry::ImplementationKind::InProcess => ImplementationKind::InProcess,
                // A process engine runs in a sandboxed child: the OS enforces
                // CPU and memory budgets, as for a builtin subprocess engine.
                // A wasm engine meters CPU (fuel) and memory (a limiter) in
                // the runtime: every budget is enforced, as in a child.
                mex_registry::ImplementationKind::Subprocess
                | mex_registry::ImplementationKind::Process
                | mex_registry::ImplementationKind::HostProcess => ImplementationKind::Subprocess,
                mex_registry::ImplementationKind::Wasm => ImplementationKind::Subprocess,
            },
        })
    }
}
