//! The [`Gate`] trait, the six global gates as values holding their context,
//! and the [`Pipeline`] that runs them and issues the [`AdmissionProof`].
//!
//! Invariants:
//! * The global gates are fixed: built by [`Pipeline::new`] in the order
//!   G-SCHEMA, G-CAP, G-INTEGRITY, G-BUDGET, G-PROVENANCE, G-DET. There is no
//!   API to remove, reorder or replace them; an engine gate with a global id is
//!   refused.
//! * Every gate runs on every parsed operation and every finding is
//!   collected; only a document that does not parse stops early (there is no
//!   typed operation for the other gates to read).
//! * An engine-specific gate the registry marks *required* but that is not
//!   installed denies (`G-GATE.NOT_IMPLEMENTED`, under the missing gate's id):
//!   fail closed. A *recommended* one that is missing degrades
//!   (`G-GATE.NOT_INSTALLED`); an *optional* one that is missing is skipped.
//! * [`AdmissionProof`] has private fields and no public constructor: only
//!   [`Pipeline::admit`] makes one, after every gate admitted. Admission
//!   claims nothing: the proof says the op id was unused when looked up; the
//!   runtime claims it atomically when it records the admission, and does
//!   not dispatch when that claim is lost.

use std::collections::BTreeMap;
use std::sync::Arc;

use mex_envelope::{
    Capability, DenialSeverity, GateDenial, GateId, PlannedOperation, UtcTimestamp,
};

use crate::codes::{degraded, deny};
use crate::facts::{Catalog, GateNeed, ImplementationFacts};
use crate::gates::budget::{BudgetFacts, ResolvedBudget, check_budget};
use crate::gates::cap::check_capabilities;
use crate::gates::det::check_determinism;
use crate::gates::integrity::{InputVerifier, OpClaims, check_integrity};
use crate::gates::provenance::check_provenance;
use crate::gates::schema::{check_schema, parse_failure};
use crate::policy::CapabilityPolicy;

/// A gate: one named check of a PlannedOperation.
pub trait Gate: Send + Sync {
    /// The gate's id, e.g. `G-CAP`.
    fn id(&self) -> &GateId;

    /// Every finding (denials and degradations). Empty means admitted.
    fn check_all(&self, op: &PlannedOperation) -> Vec<GateDenial>;

    /// The interface of `docs/contract.md §7.1`: `Ok` when admitted cleanly,
    /// otherwise the first denial (or, when there is none, the first degradation).
    fn check(&self, op: &PlannedOperation) -> Result<(), GateDenial> {
        let mut findings = self.check_all(op);
        match findings
            .iter()
            .position(|f| f.severity == DenialSeverity::Deny)
        {
            Some(i) => Err(findings.swap_remove(i)),
            None if !findings.is_empty() => Err(findings.swap_remove(0)),
            None => Ok(()),
        }
    }
}

/// The shared, trusted context the global gates hold.
pub struct GateContext {
    catalog: Arc<dyn Catalog>,
    policy: Arc<CapabilityPolicy>,
    profile: Option<String>,
    store: Arc<dyn InputVerifier>,
    claims: Arc<dyn OpClaims>,
    clock: Arc<dyn Fn() -> UtcTimestamp + Send + Sync>,
}

impl GateContext {
    /// A context. `profile` is the caller's policy profile (`None` = the
    /// policy's default profile).
    pub fn new(
        catalog: Arc<dyn Catalog>,
        policy: Arc<CapabilityPolicy>,
        profile: Option<String>,
        store: Arc<dyn InputVerifier>,
        claims: Arc<dyn OpClaims>,
    ) -> Self {
        Self {
            catalog,
            policy,
            profile,
            store,
            claims,
            clock: Arc::new(UtcTimestamp::now),
        }
    }

    /// Replace the clock (consent expiry is checked against it).
    pub fn with_clock(mut self, clock: Arc<dyn Fn() -> UtcTimestamp + Send + Sync>) -> Self {
        self.clock = clock;
        self
    }

    /// The policy.
    pub fn policy(&self) -> &CapabilityPolicy {
        &self.policy
    }

    fn budget_facts(&self, op: &PlannedOperation) -> Option<BudgetFacts> {
        let facts = self.catalog.operation_facts(op).ok()?;
        let enforces = self
            .catalog
            .resolve_implementation(op)
            .map(|i| i.kind == crate::facts::ImplementationKind::Subprocess)
            .unwrap_or(false);
        Some(BudgetFacts {
            default: facts.default_budget,
            maximum: facts.max_budget,
            enforces_cpu_and_memory: enforces,
            allow_degraded: self.policy.degraded.unenforceable_budgets,
        })
    }
}

macro_rules! global_gate {
    ($name:ident, $id:literal, $doc:literal, |$ctx:ident, $op:ident| $body:expr) => {
        #[doc = $doc]
        pub struct $name {
            id: GateId,
            ctx: Arc<GateContext>,
        }
        impl $name {
            fn new(ctx: Arc<GateContext>) -> Self {
                Self {
                    id: GateId::from_static($id),
                    ctx,
                }
            }
        }
        impl Gate for $name {
            fn id(&self) -> &GateId {
                &self.id
            }
            fn check_all(&self, $op: &PlannedOperation) -> Vec<GateDenial> {
                let $ctx = &*self.ctx;
                $body
            }
        }
    };
}

global_gate!(
    SchemaGate,
    "G-SCHEMA",
    "G-SCHEMA: see [`crate::gates::schema`].",
    |ctx, op| check_schema(op, &*ctx.catalog)
);
global_gate!(
    CapGate,
    "G-CAP",
    "G-CAP: see [`crate::gates::cap`]. Silent for an undeclared operation, which G-SCHEMA denies.",
    |ctx, op| match ctx.catalog.operation_facts(op) {
        Ok(facts) => check_capabilities(
            &op.capabilities_requested,
            &facts.capabilities,
            &ctx.policy,
            ctx.profile.as_deref(),
            (ctx.clock)()
        )
        .err()
        .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
);
global_gate!(
    IntegrityGate,
    "G-INTEGRITY",
    "G-INTEGRITY: see [`crate::gates::integrity`].",
    |ctx, op| {
        let (refs, entity_refs) = ctx
            .catalog
            .operation_facts(op)
            .map(|f| (f.artifact_ref_params, f.entity_ref_params))
            .unwrap_or_default();
        check_integrity(op, &refs, &entity_refs, &*ctx.store, &*ctx.claims)
    }
);
global_gate!(
    BudgetGate,
    "G-BUDGET",
    "G-BUDGET: see [`crate::gates::budget`]. Silent for an undeclared operation, which G-SCHEMA denies.",
    |ctx, op| match ctx.budget_facts(op) {
        Some(facts) => check_budget(op, &facts).1,
        None => Vec::new(),
    }
);
global_gate!(
    ProvenanceGate,
    "G-PROVENANCE",
    "G-PROVENANCE: see [`crate::gates::provenance`]. Silent for an undeclared operation, which G-SCHEMA denies.",
    |ctx, op| if ctx.catalog.operation_facts(op).is_ok() {
        check_provenance(op, &*ctx.catalog)
    } else {
        Vec::new()
    }
);
global_gate!(
    DetGate,
    "G-DET",
    "G-DET: see [`crate::gates::det`]. Silent for an undeclared operation, which G-SCHEMA denies.",
    |ctx, op| match ctx.catalog.operation_facts(op) {
        Ok(facts) => check_determinism(op, &facts.determinism),
        Err(_) => Vec::new(),
    }
);

/// What one gate decided.
#[derive(Debug, Clone, PartialEq)]
pub struct GateOutcome {
    /// The gate.
    pub gate: GateId,
    /// Its findings; empty means passed.
    pub findings: Vec<GateDenial>,
}

impl GateOutcome {
    /// Whether the gate denied.
    pub fn denied(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.severity == DenialSeverity::Deny)
    }
}

/// Proof that the pipeline admitted one operation. Only [`Pipeline::admit`]
/// can build it; the runtime requires it to dispatch.
#[derive(Debug)]
pub struct AdmissionProof {
    op: PlannedOperation,
    engine_version: semver::Version,
    implementation: ImplementationFacts,
    budget: ResolvedBudget,
    capabilities_granted: Vec<Capability>,
    consent_refs: Vec<String>,
    degraded: Vec<GateDenial>,
}

impl AdmissionProof {
    /// The admitted operation.
    pub fn operation(&self) -> &PlannedOperation {
        &self.op
    }
    /// Engine interface version.
    pub fn engine_version(&self) -> &semver::Version {
        &self.engine_version
    }
    /// The implementation it resolved to.
    pub fn implementation(&self) -> &ImplementationFacts {
        &self.implementation
    }
    /// The budget, resolved against registry defaults and maximums.
    pub fn budget(&self) -> &ResolvedBudget {
        &self.budget
    }
    /// Capabilities granted (exactly those requested: all were admitted).
    pub fn capabilities_granted(&self) -> &[Capability] {
        &self.capabilities_granted
    }
    /// Consent record ids that authorized sensitive capabilities.
    pub fn consent_refs(&self) -> &[String] {
        &self.consent_refs
    }
    /// Degraded outcomes the run carries.
    pub fn degraded(&self) -> &[GateDenial] {
        &self.degraded
    }
}

/// The outcome of admission: every gate's outcome, and the proof or the denials.
#[derive(Debug)]
pub struct Admission {
    /// Per gate, in the order run.
    pub outcomes: Vec<GateOutcome>,
    /// The proof when admitted, else every denial.
    pub result: Result<AdmissionProof, Vec<GateDenial>>,
}

/// Errors building a pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// An engine gate tried to take a global gate's id.
    #[error(
        "engine gate {0} would replace a global gate; global gates cannot be replaced, give it an engine-specific id such as G-SAFETY.<NAME>"
    )]
    ReplacesGlobalGate(GateId),
}

/// The six global gates plus installed engine-specific gates.
pub struct Pipeline {
    ctx: Arc<GateContext>,
    global: [Box<dyn Gate>; 6],
    engine_gates: BTreeMap<GateId, Arc<dyn Gate>>,
}

/// The ids of the global gates, in the order they run.
pub const GLOBAL_GATES: [&str; 6] = [
    "G-SCHEMA",
    "G-CAP",
    "G-INTEGRITY",
    "G-BUDGET",
    "G-PROVENANCE",
    "G-DET",
];

impl Pipeline {
    /// A pipeline over `ctx` with the six global gates.
    pub fn new(ctx: GateContext) -> Self {
        let ctx = Arc::new(ctx);
        let global: [Box<dyn Gate>; 6] = [
            Box::new(SchemaGate::new(ctx.clone())),
            Box::new(CapGate::new(ctx.clone())),
            Box::new(IntegrityGate::new(ctx.clone())),
            Box::new(BudgetGate::new(ctx.clone())),
            Box::new(ProvenanceGate::new(ctx.clone())),
            Box::new(DetGate::new(ctx.clone())),
        ];
        Self {
            ctx,
            global,
            engine_gates: BTreeMap::new(),
        }
    }

    /// Install an engine-specific gate (e.g. `G-SAFETY.SANDBOX`). It runs only
    /// for operations whose registry entry names it.
    pub fn with_engine_gate(mut self, gate: Arc<dyn Gate>) -> Result<Self, PipelineError> {
        if GLOBAL_GATES.contains(&gate.id().as_str()) {
            return Err(PipelineError::ReplacesGlobalGate(gate.id().clone()));
        }
        self.engine_gates.insert(gate.id().clone(), gate);
        Ok(self)
    }

    /// The ids of the gates that run for every operation, in order.
    pub fn global_gate_ids(&self) -> Vec<&GateId> {
        self.global.iter().map(|g| g.id()).collect()
    }

    /// Admit raw, untrusted bytes.
    pub fn admit_json(&self, bytes: &[u8]) -> (Option<PlannedOperation>, Admission) {
        match PlannedOperation::from_json_slice(bytes) {
            Ok(op) => {
                let admission = self.admit(op.clone());
                (Some(op), admission)
            }
            Err(e) => {
                let finding = parse_failure(&e);
                let outcome = GateOutcome {
                    gate: finding.gate.clone(),
                    findings: vec![finding.clone()],
                };
                (
                    None,
                    Admission {
                        outcomes: vec![outcome],
                        result: Err(vec![finding]),
                    },
                )
            }
        }
    }

    /// Admit a typed operation: run every gate, collect every finding, and on
    /// success issue the proof. Nothing is claimed (see the module docs).
    pub fn admit(&self, op: PlannedOperation) -> Admission {
        let mut outcomes: Vec<GateOutcome> = self
            .global
            .iter()
            .map(|g| GateOutcome {
                gate: g.id().clone(),
                findings: g.check_all(&op),
            })
            .collect();
        if let Ok(facts) = self.ctx.catalog.operation_facts(&op) {
            for (named, need) in &facts.engine_gates {
                let findings = match (self.engine_gates.get(named), need) {
                    (Some(gate), _) => gate.check_all(&op),
                    (None, GateNeed::Required) => {
                        let mut f = deny(
                            "G-GATE.NOT_IMPLEMENTED",
                            "registry.engine_gates.required",
                            format!(
                                "the registry requires gate {named} for {}, but no implementation is installed; the operation cannot be admitted (fail closed)",
                                op.operation
                            ),
                            None,
                        );
                        f.gate = named.clone();
                        vec![f]
                    }
                    (None, GateNeed::Recommended) => {
                        let mut f = degraded(
                            "G-GATE.NOT_INSTALLED",
                            "registry.engine_gates.recommended",
                            format!(
                                "the registry recommends gate {named} for {}, but it is not installed; running without it",
                                op.operation
                            ),
                            None,
                        );
                        f.gate = named.clone();
                        vec![f]
                    }
                    (None, GateNeed::Optional) => continue,
                };
                outcomes.push(GateOutcome {
                    gate: named.clone(),
                    findings,
                });
            }
        }
        let denials: Vec<GateDenial> = outcomes
            .iter()
            .flat_map(|o| o.findings.iter())
            .filter(|f| f.severity == DenialSeverity::Deny)
            .cloned()
            .collect();
        if !denials.is_empty() {
            return Admission {
                outcomes,
                result: Err(denials),
            };
        }
        let result = self.issue_proof(op, &outcomes);
        if let Err(denials) = &result {
            outcomes.extend(denials.iter().map(|d| GateOutcome {
                gate: d.gate.clone(),
                findings: vec![d.clone()],
            }));
        }
        Admission { outcomes, result }
    }

    fn issue_proof(
        &self,
        op: PlannedOperation,
        outcomes: &[GateOutcome],
    ) -> Result<AdmissionProof, Vec<GateDenial>> {
        let internal = |what: &str| {
            vec![deny(
                "G-PROVENANCE.NO_IMPLEMENTATION",
                "pipeline.consistency",
                format!("admission facts changed while admitting ({what}); retry"),
                None,
            )]
        };
        let facts = self
            .ctx
            .catalog
            .operation_facts(&op)
            .map_err(|_| internal("operation"))?;
        let implementation = self
            .ctx
            .catalog
            .resolve_implementation(&op)
            .map_err(|f| vec![f])?;
        let budget_facts = self
            .ctx
            .budget_facts(&op)
            .ok_or_else(|| internal("budget"))?;
        let budget = check_budget(&op, &budget_facts)
            .0
            .ok_or_else(|| internal("budget"))?;
        let decision = check_capabilities(
            &op.capabilities_requested,
            &facts.capabilities,
            &self.ctx.policy,
            self.ctx.profile.as_deref(),
            (self.ctx.clock)(),
        )?;
        let degraded = outcomes
            .iter()
            .flat_map(|o| o.findings.iter())
            .filter(|f| f.severity == DenialSeverity::Degraded)
            .cloned()
            .collect();
        Ok(AdmissionProof {
            capabilities_granted: op.capabilities_requested.clone(),
            engine_version: facts.engine_version,
            implementation,
            budget,
            consent_refs: decision.consent_refs,
            degraded,
            op,
        })
    }
}
