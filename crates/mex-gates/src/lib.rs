//! # mex-gates: admission control
//!
//! Owns the `Gate` trait, the capability policy (profiles, consent records,
//! scope matching), the six global gates, the pipeline that runs them and
//! issues the admission proof, and the result checks the runtime applies
//! after execution.
//!
//! Does not own parsing (mex-envelope), the registry format (mex-registry),
//! artifact storage (mex-artifacts), recording (mex-recorder) or execution
//! (mex-runtime).

pub mod codes;
pub mod error;
pub mod gates;
pub mod policy;

pub use error::GatesError;
pub use policy::{CapabilityPolicy, ConsentRecord, GrantPattern, Profile};
