//! The [`Gate`] trait (engine gates), the six global gates as values holding their context,
//! the sealed [`GlobalGate`] trait, and the [`Pipeline`] that runs them and returns one [`Admission`].
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
//! * Admission is computed once and returned as one value, [`Admission`]:
//!   every gate's outcome, the ruling on each requested capability (granted
//!   with its rule and consent, or denied with its finding), and either
//!   [`Admitted`] (implementation, resolved budget, grants, degradations) or
//!   every denial. Nothing downstream re-derives a decision from findings.
//! * [`Admitted`] is a decision, not a permission: anyone may build a
//!   [`Pipeline`] and admit. The permission to dispatch is mex-runtime's
//!   `AdmissionProof`, which only the runtime mints, from the decision of the
//!   pipeline it built itself. Admission claims nothing: the decision says
//!   the op id was unused when looked up; the runtime claims it atomically
//!   when it records the admission, and does not dispatch when that claim
//!   is lost.
//! * The global gates implement [`GlobalGate`], which is sealed: no other
//!   crate can implement it, so no other type can stand among the six.
//!   Engine-specific gates implement the open [`Gate`] trait.

use std::collections::BTreeMap;
use std::sync::Arc;

use mex_envelope::{
    Capability, DenialSeverity, GateDenial, GateId, PlannedOperation, UtcTimestamp,
};
use mex_registry::{
    GATE_BUDGET, GATE_CAP, GATE_DET, GATE_INTEGRITY, GATE_PROVENANCE, GATE_SCHEMA, GLOBAL_GATES,
};

use crate::codes::{degraded, deny};
use crate::facts::{Catalog, GateNeed, ImplementationFacts, ImplementationKind, OperationFacts};
use crate::gates::budget::{BudgetFacts, ResolvedBudget, check_budget};
use crate::gates::cap::{CapabilityRuling, CapabilityRulings, rule_capabilities};
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
}

/// The seal: only this crate can implement [`GlobalGate`], and only it can
/// build the facts and rulings a global gate works on.
mod sealed {
    use super::{CapabilityRulings, ImplementationFacts, OperationFacts, ResolvedBudget};
    use crate::codes::Finding;

    /// Implemented by the six global gates and nothing else.
    pub trait Sealed {}

    /// The trusted facts of one operation, looked up once per admission.
    pub struct Facts {
        /// The operation's facts, or the G-SCHEMA findings saying why there
        /// are none (unknown engine or operation).
        pub(crate) operation: Result<OperationFacts, Vec<Finding>>,
        pub(crate) implementation: Result<ImplementationFacts, Finding>,
        /// The params schema's errors, for a declared operation (empty
        /// otherwise).
        pub(crate) params_errors: Vec<(String, String)>,
    }

    /// What the global gates decided beyond their findings.
    #[derive(Default)]
    pub struct Rulings {
        pub(crate) capabilities: Option<CapabilityRulings>,
        pub(crate) budget: Option<ResolvedBudget>,
    }
}

use sealed::{Facts, Rulings};

/// One of the six global gates (G-SCHEMA, G-CAP, G-INTEGRITY, G-BUDGET,
/// G-PROVENANCE, G-DET). Sealed: only this crate implements it, so the set of
/// global gates is exactly what [`Pipeline::new`] builds. Engine-specific
/// gates implement [`Gate`] instead.
pub trait GlobalGate: sealed::Sealed + Send + Sync {
    /// The gate's id, one of [`GLOBAL_GATES`].
    fn id(&self) -> &GateId;

    /// Every finding for `op` over the admission's facts; records what the
    /// gate decided (capability rulings, the resolved budget) in `rulings`.
    #[doc(hidden)]
    fn judge(&self, op: &PlannedOperation, facts: &Facts, rulings: &mut Rulings)
    -> Vec<GateDenial>;
}

impl Facts {
    /// Look everything up once. The params are validated as one JSON value:
    /// they are moved out of `op` into one for the check and moved back, so
    /// they are never copied.
    fn gather(catalog: &dyn Catalog, op: &mut PlannedOperation) -> Self {
        let operation = catalog.operation_facts(op);
        let params_errors = if operation.is_ok() {
            let params = serde_json::Value::Object(std::mem::take(&mut op.params));
            let errors = catalog.validate_params(op, &params);
            if let serde_json::Value::Object(map) = params {
                op.params = map;
            }
            errors
        } else {
            Vec::new()
        };
        Self {
            operation,
            implementation: catalog.resolve_implementation(op),
            params_errors,
        }
    }

    fn budget(&self, policy: &CapabilityPolicy) -> Option<BudgetFacts> {
        let facts = self.operation.as_ref().ok()?;
        let enforces = self
            .implementation
            .as_ref()
            .is_ok_and(|i| i.kind == ImplementationKind::Subprocess);
        Some(BudgetFacts {
            default: facts.default_budget.clone(),
            maximum: facts.max_budget.clone(),
            enforces_cpu_and_memory: enforces,
            allow_degraded: policy.degraded.unenforceable_budgets,
        })
    }
}

macro_rules! global_gate {
    ($name:ident, $id:expr, $doc:literal, |$ctx:ident, $op:ident, $facts:ident, $rulings:ident| $body:expr) => {
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
        impl sealed::Sealed for $name {}
        impl GlobalGate for $name {
            fn id(&self) -> &GateId {
                &self.id
            }
            fn judge(
                &self,
                $op: &PlannedOperation,
                $facts: &Facts,
                $rulings: &mut Rulings,
            ) -> Vec<GateDenial> {
                let $ctx = &*self.ctx;
                $body
            }
        }
    };
}

global_gate!(
    SchemaGate,
    GATE_SCHEMA,
    "G-SCHEMA: see [`crate::gates::schema`].",
    |_ctx, op, facts, _rulings| check_schema(
        op,
        facts.operation.as_ref().map(|_| ()).map_err(Vec::as_slice),
        &facts.params_errors
    )
);
global_gate!(
    CapGate,
    GATE_CAP,
    "G-CAP: see [`crate::gates::cap`]. Silent for an undeclared operation, which G-SCHEMA denies.",
    |ctx, op, facts, rulings| match &facts.operation {
        Ok(facts) => {
            let mut all = rule_capabilities(
                &op.capabilities_requested,
                &facts.capabilities,
                &ctx.policy,
                ctx.profile.as_deref(),
                &*ctx.clock,
            );
            // The findings are the gate's outcome; the rulings are kept.
            let findings = std::mem::take(&mut all.findings);
            rulings.capabilities = Some(all);
            findings
        }
        Err(_) => Vec::new(),
    }
);
global_gate!(
    IntegrityGate,
    GATE_INTEGRITY,
    "G-INTEGRITY: see [`crate::gates::integrity`].",
    |ctx, op, facts, _rulings| {
        let (refs, entity_refs) = facts.operation.as_ref().map_or((&[][..], &[][..]), |f| {
            (&f.artifact_ref_params[..], &f.entity_ref_params[..])
        });
        check_integrity(op, refs, entity_refs, &*ctx.store, &*ctx.claims)
    }
);
global_gate!(
    BudgetGate,
    GATE_BUDGET,
    "G-BUDGET: see [`crate::gates::budget`]. Silent for an undeclared operation, which G-SCHEMA denies.",
    |ctx, op, facts, rulings| match facts.budget(&ctx.policy) {
        Some(budget) => {
            let (resolved, findings) = check_budget(op, &budget);
            rulings.budget = resolved;
            findings
        }
        None => Vec::new(),
    }
);
global_gate!(
    ProvenanceGate,
    GATE_PROVENANCE,
    "G-PROVENANCE: see [`crate::gates::provenance`]. Silent for an undeclared operation, which G-SCHEMA denies.",
    |_ctx, op, facts, _rulings| match &facts.operation {
        Ok(operation) => check_provenance(
            op,
            operation.entity_inputs_allowed,
            facts.implementation.as_ref().map(|_| ())
        ),
        Err(_) => Vec::new(),
    }
);
global_gate!(
    DetGate,
    GATE_DET,
    "G-DET: see [`crate::gates::det`]. Silent for an undeclared operation, which G-SCHEMA denies.",
    |_ctx, op, facts, _rulings| match &facts.operation {
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

/// What the pipeline decided for an operation every gate admitted: the
/// resolved implementation, budget, grants and degradations. A decision, not
/// a permission to run: the runtime turns the decision of its own pipeline
/// into its `AdmissionProof`. Built only by [`Pipeline::admit`].
#[derive(Debug)]
pub struct Admitted {
    op: PlannedOperation,
    engine_version: semver::Version,
    implementation: ImplementationFacts,
    budget: ResolvedBudget,
    consent_refs: Vec<String>,
    degraded: Vec<GateDenial>,
}

impl Admitted {
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
    /// Capabilities granted (exactly those requested: all were admitted,
    /// so they are read from the operation, not copied).
    pub fn capabilities_granted(&self) -> &[Capability] {
        &self.op.capabilities_requested
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

/// The outcome of admission, computed once: every gate's outcome, the ruling
/// on each requested capability, and the decision or every denial.
#[derive(Debug)]
pub struct Admission {
    /// Per gate, in the order run.
    pub outcomes: Vec<GateOutcome>,
    /// One ruling per requested capability, in request order (granted with
    /// the rule that granted it, or denied with its finding). Empty when G-CAP
    /// did not rule (the document did not parse, the operation is not
    /// declared, or the caller's profile is unknown).
    pub capabilities: Vec<CapabilityRuling>,
    /// The decision when admitted, else every denial.
    pub result: Result<Admitted, Vec<GateDenial>>,
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
    global: [Box<dyn GlobalGate>; 6],
    engine_gates: BTreeMap<GateId, Arc<dyn Gate>>,
}

impl Pipeline {
    /// A pipeline over `ctx` with the six global gates.
    pub fn new(ctx: GateContext) -> Self {
        let ctx = Arc::new(ctx);
        let global: [Box<dyn GlobalGate>; 6] = [
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

    /// Admit raw, untrusted bytes. (An admitted operation is in the
    /// decision; a caller that needs the operation whatever the decision
    /// parses it and calls [`Pipeline::admit`].)
    pub fn admit_json(&self, bytes: &[u8]) -> Admission {
        match PlannedOperation::from_json_slice(bytes) {
            Ok(op) => self.admit(op),
            Err(e) => {
                let finding = parse_failure(&e);
                let outcome = GateOutcome {
                    gate: finding.gate.clone(),
                    findings: vec![finding.clone()],
                };
                Admission {
                    outcomes: vec![outcome],
                    capabilities: Vec::new(),
                    result: Err(vec![finding]),
                }
            }
        }
    }

    /// Admit a typed operation: look its facts up once, run every gate,
    /// collect every finding, and decide. Nothing is claimed (see the module
    /// docs).
    pub fn admit(&self, mut op: PlannedOperation) -> Admission {
        let facts = Facts::gather(&*self.ctx.catalog, &mut op);
        let mut rulings = Rulings::default();
        let engine_gates = facts.operation.as_ref().map_or(0, |f| f.engine_gates.len());
        let mut outcomes = Vec::with_capacity(self.global.len() + engine_gates);
        outcomes.extend(self.global.iter().map(|g| GateOutcome {
            gate: g.id().clone(),
            findings: g.judge(&op, &facts, &mut rulings),
        }));
        self.engine_outcomes(&op, facts.operation.as_ref().ok(), &mut outcomes);
        let capabilities = rulings
            .capabilities
            .as_mut()
            .map(|c| std::mem::take(&mut c.rulings))
            .unwrap_or_default();
        let result = decide(op, facts, rulings, &capabilities, &outcomes);
        if let Err(denials) = &result
            && !outcomes.iter().any(GateOutcome::denied)
        {
            // The facts were inconsistent with the gates' findings: report
            // the denial under its gate, as every other denial is.
            outcomes.extend(denials.iter().map(|d| GateOutcome {
                gate: d.gate.clone(),
                findings: vec![d.clone()],
            }));
        }
        Admission {
            outcomes,
            capabilities,
            result,
        }
    }

    /// Append the outcomes of the engine-specific gates the registry names
    /// for `op`.
    fn engine_outcomes(
        &self,
        op: &PlannedOperation,
        facts: Option<&OperationFacts>,
        outcomes: &mut Vec<GateOutcome>,
    ) {
        let Some(facts) = facts else {
            return;
        };
        outcomes.extend(facts.engine_gates.iter().filter_map(|(named, need)| {
            let findings = match self.engine_gates.get(named) {
                Some(gate) => gate.check_all(op),
                None => vec![missing_gate(named, *need, op)?],
            };
            Some(GateOutcome {
                gate: named.clone(),
                findings,
            })
        }));
    }
}

/// The finding for an engine gate the registry names but that is not
/// installed: required denies (fail closed), recommended degrades, optional
/// is skipped.
fn missing_gate(named: &GateId, need: GateNeed, op: &PlannedOperation) -> Option<GateDenial> {
    let mut f = match need {
        GateNeed::Required => deny(
            "G-GATE.NOT_IMPLEMENTED",
            "registry.engine_gates.required",
            format!(
                "the registry requires gate {named} for {}, but no implementation is installed; the operation cannot be admitted (fail closed)",
                op.operation
            ),
            None,
        ),
        GateNeed::Recommended => degraded(
            "G-GATE.NOT_INSTALLED",
            "registry.engine_gates.recommended",
            format!(
                "the registry recommends gate {named} for {}, but it is not installed; running without it",
                op.operation
            ),
            None,
        ),
        GateNeed::Optional => return None,
    };
    f.gate = named.clone();
    Some(f)
}

/// Every denial, or the [`Admitted`] decision built from the facts and
/// rulings the gates already produced (nothing is computed twice).
fn decide(
    op: PlannedOperation,
    facts: Facts,
    rulings: Rulings,
    capabilities: &[CapabilityRuling],
    outcomes: &[GateOutcome],
) -> Result<Admitted, Vec<GateDenial>> {
    let findings = || outcomes.iter().flat_map(|o| o.findings.iter());
    let denials: Vec<GateDenial> = findings()
        .filter(|f| f.severity == DenialSeverity::Deny)
        .cloned()
        .collect();
    if !denials.is_empty() {
        return Err(denials);
    }
    let internal = |what: &str| {
        vec![deny(
            "G-PROVENANCE.NO_IMPLEMENTATION",
            "pipeline.consistency",
            format!("admission facts changed while admitting ({what}); retry"),
            None,
        )]
    };
    let operation = facts.operation.map_err(|_| internal("operation"))?;
    let implementation = facts.implementation.map_err(|f| vec![f])?;
    let budget = rulings.budget.ok_or_else(|| internal("budget"))?;
    // G-CAP ruled (its rulings were moved into the admission's list).
    rulings
        .capabilities
        .ok_or_else(|| internal("capabilities"))?;
    let consent_refs = capabilities
        .iter()
        .filter_map(|r| match r {
            CapabilityRuling::Granted { consent, .. } => consent.clone(),
            CapabilityRuling::Denied { .. } => None,
        })
        .collect();
    Ok(Admitted {
        engine_version: operation.engine_version,
        implementation,
        budget,
        consent_refs,
        degraded: findings()
            .filter(|f| f.severity == DenialSeverity::Degraded)
            .cloned()
            .collect(),
        op,
    })
}
