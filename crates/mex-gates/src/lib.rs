//! # mex-gates: admission control
//!
//! Owns the [`Gate`] trait (engine-specific gates; open), the sealed
//! [`GlobalGate`](internal::GlobalGate) trait (the six global gates; no other crate can add one),
//! the capability policy (profiles, consent records, scope matching:
//! [`policy`]), the six global gates' rules ([`gates`]), the [`Pipeline`](internal::Pipeline)
//! that runs them and returns one [`Admission`](internal::Admission) value with every decision,
//! and the result checks the runtime applies after execution ([`results`]).
//!
//! An [`Admitted`](internal::Admitted) decision is not a permission to run: mex-runtime mints
//! its `AdmissionProof` only from the decision of the pipeline it built
//! itself, so a pipeline built elsewhere (with an approve-everything
//! [`InputVerifier`](internal::InputVerifier), say) yields nothing that can dispatch an engine.
//!
//! Does not own parsing (mex-envelope), the registry format (mex-registry),
//! artifact storage (mex-artifacts), recording (mex-recorder) or execution
//! (mex-runtime). The registry, the store and the record of admitted op ids
//! reach the gates through three small traits, [`Catalog`](internal::Catalog),
//! [`InputVerifier`](internal::InputVerifier) and [`OpClaims`](internal::OpClaims); the first two are implemented here
//! for `mex_registry::Registry` ([`RegistryCatalog`](internal::RegistryCatalog)) and
//! `mex_artifacts::ArtifactStore`, the third by the runtime over the Flight
//! Recorder's claim table.
//!
//! ## Replay
//!
//! G-INTEGRITY looks the op id up in [`OpClaims`](internal::OpClaims) (one indexed lookup) and
//! denies a used one (`G-INTEGRITY.REPLAYED_OP_ID`). The pipeline claims
//! nothing: the runtime claims the op id atomically in the transaction that
//! records receipt and admission, and a request that loses that race is
//! denied with the same code ([`replayed_op_id`](internal::replayed_op_id)). See
//! [`gates::integrity`].
//!
//! ## Trust
//!
//! Everything a gate decides on comes from the trusted side: the registry,
//! the policy file, the store, the clock. The operation is only ever the
//! thing being judged; nothing in it (params included) can add a grant, a
//! consent, a budget ceiling or a gate.
//!
//! ## Codes
//!
//! Every denial carries a stable code; [`CODES`] is the one table of them
//! with their meanings (a test keeps it complete both ways). The gate of a
//! code is the code without its last part. Post-execution checks report
//! under `G-RESULT`.

// docs/contract.md §7.1 fixes `fn check(&self, op) -> Result<(), GateDenial>`; a
// denial is a rich record by design, so large `Err` variants are expected here.
#![allow(
    clippy::result_large_err,
    reason = "the gate interface returns a GateDenial by value (docs/contract.md §7.1); a denial is a rich record by design"
)]

pub mod codes;
pub mod error;
#[doc(hidden)]
pub mod facts;
#[doc(hidden)]
pub mod gates;
#[doc(hidden)]
pub mod pipeline;
pub mod policy;
#[doc(hidden)]
pub mod registry;
#[doc(hidden)]
pub mod results;
mod store;

pub use codes::CODES;
pub use error::GatesError;
/// The global gate ids; their one home is `mex_registry`.
pub use mex_registry::{
    GATE_BUDGET, GATE_CAP, GATE_DET, GATE_INTEGRITY, GATE_PROVENANCE, GATE_SCHEMA, GLOBAL_GATES,
};
pub use pipeline::{Gate, GateContext};
pub use policy::{CapabilityPolicy, ConsentRecord, GrantPattern, MAX_POLICY_BYTES, Profile};

/// Public only for sibling crates (the runtime's admission and result
/// checks, the MCP server's consent flow): not a stable API, and hidden from
/// the docs. See ARCHITECTURE.md, "API boundary".
#[doc(hidden)]
pub mod internal {
    pub use crate::facts::{
        Catalog, GateNeed, ImplementationFacts, ImplementationKind, OperationFacts,
    };
    pub use crate::gates::cap::{CapabilityRuling, GRANTED_BY};
    pub use crate::gates::integrity::{
        Claimed, InputVerifier, MemoryClaims, OpClaims, replayed_op_id,
    };
    pub use crate::pipeline::{
        Admission, Admitted, GateOutcome, GlobalGate, Pipeline, PipelineError,
    };
    pub use crate::registry::RegistryCatalog;
}
