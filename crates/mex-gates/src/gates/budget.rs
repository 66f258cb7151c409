//! G-BUDGET: resolve the requested budget against the registry's defaults and
//! maximums.
//!
//! * `G-BUDGET.ZERO`: a field is 0 (a zero budget can never succeed).
//! * `G-BUDGET.ABOVE_MAXIMUM`: a field is above the registry maximum.
//! * `G-BUDGET.NO_DEFAULT`: wall time or output bytes is absent and the
//!   registry has no default for it (every run needs both bounds).
//! * `G-BUDGET.OUTPUT_SPEC_EXCEEDS_BUDGET`: `output_spec.max_output_bytes` (or
//!   the evidence policy's `max_bytes`) is above the resolved output budget.
//! * `G-BUDGET.UNENFORCEABLE` / `G-BUDGET.UNENFORCEABLE_DEGRADED`: a memory or
//!   CPU budget is requested from an implementation that cannot enforce it
//!   (in-process). Denied, unless the trusted policy allows the degraded mode,
//!   in which case the outcome is recorded as degraded.

use mex_envelope::{BudgetSpec, PlannedOperation};

use crate::codes::{Finding, degraded, deny};

/// A budget with every field resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResolvedBudget {
    /// CPU time (ms); `None` when no CPU limit applies.
    pub cpu_time_ms: Option<u64>,
    /// Wall time (ms).
    pub wall_time_ms: u64,
    /// Memory (bytes); `None` when no memory limit applies.
    pub memory_bytes: Option<u64>,
    /// Output bytes (outputs + evidence + logs).
    pub output_bytes: u64,
}

impl ResolvedBudget {
    /// As a wire BudgetSpec (for cache keys and provenance).
    pub fn to_spec(&self) -> BudgetSpec {
        BudgetSpec {
            cpu_time_ms: self.cpu_time_ms,
            wall_time_ms: Some(self.wall_time_ms),
            memory_bytes: self.memory_bytes,
            output_bytes: Some(self.output_bytes),
        }
    }
}

/// What the registry and policy say about budgets for one operation.
#[derive(Debug, Clone)]
pub struct BudgetFacts {
    /// Defaults for absent fields.
    pub default: BudgetSpec,
    /// Maximums.
    pub maximum: BudgetSpec,
    /// Whether the implementation can enforce CPU and memory limits.
    pub enforces_cpu_and_memory: bool,
    /// Whether the trusted policy admits unenforceable limits as degraded.
    pub allow_degraded: bool,
}

/// Resolve and check. Returns the resolved budget (when every required field
/// resolves) and the findings (denials and degradations).
pub fn check_budget(
    op: &PlannedOperation,
    facts: &BudgetFacts,
) -> (Option<ResolvedBudget>, Vec<Finding>) {
    let mut findings = Vec::new();
    let req = &op.budget;
    let mut field = |name: &str,
                     requested: Option<u64>,
                     default: Option<u64>,
                     max: Option<u64>,
                     needed: bool|
     -> Option<u64> {
        let pointer = || Some(format!("/budget/{name}"));
        let value = requested.or(default);
        match (value, max) {
            (Some(0), _) => {
                findings.push(deny(
                    "G-BUDGET.ZERO",
                    "budget.positive",
                    format!("budget.{name} is 0; give a positive value or omit it for the default"),
                    pointer(),
                ));
                None
            }
            (Some(v), Some(m)) if v > m => {
                findings.push(deny(
                    "G-BUDGET.ABOVE_MAXIMUM",
                    "registry.max_budget",
                    format!("budget.{name} = {v} is above this engine's maximum {m}; ask for at most {m}"),
                    pointer(),
                ));
                None
            }
            (None, _) if needed => {
                findings.push(deny(
                    "G-BUDGET.NO_DEFAULT",
                    "registry.default_budget",
                    format!("budget.{name} is absent and the registry declares no default for it; give an explicit value"),
                    pointer(),
                ));
                None
            }
            (v, _) => v,
        }
    };
    let wall = field(
        "wall_time_ms",
        req.wall_time_ms,
        facts.default.wall_time_ms,
        facts.maximum.wall_time_ms,
        true,
    );
    let output = field(
        "output_bytes",
        req.output_bytes,
        facts.default.output_bytes,
        facts.maximum.output_bytes,
        true,
    );
    let cpu = field(
        "cpu_time_ms",
        req.cpu_time_ms,
        facts.default.cpu_time_ms,
        facts.maximum.cpu_time_ms,
        false,
    );
    let memory = field(
        "memory_bytes",
        req.memory_bytes,
        facts.default.memory_bytes,
        facts.maximum.memory_bytes,
        false,
    );

    if !facts.enforces_cpu_and_memory {
        for (name, requested) in [
            ("cpu_time_ms", req.cpu_time_ms),
            ("memory_bytes", req.memory_bytes),
        ] {
            if requested.is_some() {
                let pointer = Some(format!("/budget/{name}"));
                if facts.allow_degraded {
                    findings.push(degraded(
                        "G-BUDGET.UNENFORCEABLE_DEGRADED",
                        "policy.degraded.unenforceable_budgets",
                        format!("budget.{name} cannot be enforced by an in-process implementation; admitted as degraded by policy"),
                        pointer,
                    ));
                } else {
                    findings.push(deny(
                        "G-BUDGET.UNENFORCEABLE",
                        "budget.enforceable",
                        format!("budget.{name} cannot be enforced by an in-process implementation; omit it (or an operator may allow degraded budgets in the policy)"),
                        pointer,
                    ));
                }
            }
        }
    }
    let (cpu, memory) = if facts.enforces_cpu_and_memory {
        (cpu, memory)
    } else {
        (None, None)
    };

    if let Some(output) = output {
        if let Some(limit) = op.output_spec.as_ref().and_then(|s| s.max_output_bytes)
            && limit > output
        {
            findings.push(deny(
                    "G-BUDGET.OUTPUT_SPEC_EXCEEDS_BUDGET",
                    "budget.output_spec_fits",
                    format!("output_spec.max_output_bytes = {limit} does not fit the output budget of {output} bytes"),
                    Some("/output_spec/max_output_bytes".into()),
                ));
        }
        if let Some(limit) = op.evidence_policy.as_ref().and_then(|p| p.max_bytes)
            && limit > output
        {
            findings.push(deny(
                    "G-BUDGET.OUTPUT_SPEC_EXCEEDS_BUDGET",
                    "budget.evidence_fits",
                    format!("evidence_policy.max_bytes = {limit} does not fit the output budget of {output} bytes"),
                    Some("/evidence_policy/max_bytes".into()),
                ));
        }
    }
    let resolved = match (wall, output) {
        (Some(wall_time_ms), Some(output_bytes)) => Some(ResolvedBudget {
            cpu_time_ms: cpu,
            wall_time_ms,
            memory_bytes: memory,
            output_bytes,
        }),
        _ => None,
    };
    (resolved, findings)
}
