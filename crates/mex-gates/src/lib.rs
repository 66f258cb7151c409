//! # mex-gates: admission control
//!
//! Owns the [`Gate`] trait, the capability policy (profiles, consent records,
//! scope matching: [`policy`]), the six global gates ([`gates`]), the
//! [`Pipeline`] that runs them and issues the [`AdmissionProof`], and the
//! result checks the runtime applies after execution ([`results`]).
//!
//! Does not own parsing (mex-envelope), the registry format (mex-registry),
//! artifact storage (mex-artifacts), recording (mex-recorder) or execution
//! (mex-runtime). The registry and the store reach the gates through two
//! small traits, [`Catalog`] and [`InputVerifier`], implemented here for
//! `mex_registry::Registry` ([`RegistryCatalog`]) and
//! `mex_artifacts::ArtifactStore`.
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

// The work order fixes `fn check(&self, op) -> Result<(), GateDenial>`; a
// denial is a rich record by design, so large `Err` variants are expected here.
#![allow(clippy::result_large_err)]

pub mod codes;
pub mod error;
pub mod facts;
pub mod gates;
pub mod pipeline;
pub mod policy;
pub mod registry;
pub mod results;
mod store;

pub use codes::CODES;
pub use error::GatesError;
pub use facts::{Catalog, GateNeed, ImplementationFacts, ImplementationKind, OperationFacts};
pub use gates::integrity::{InputVerifier, MemoryLedger, OpLedger};
pub use pipeline::{
    Admission, AdmissionProof, Gate, GateContext, GateOutcome, Pipeline, PipelineError,
};
pub use policy::{CapabilityPolicy, ConsentRecord, GrantPattern, Profile};
pub use registry::RegistryCatalog;
