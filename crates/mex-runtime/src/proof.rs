//! [`AdmissionProof`]: the permission to dispatch one operation.
//!
//! mex-gates decides ([`mex_gates::internal::Admitted`]); only this crate turns a
//! decision into a proof, and only in the admission stage of
//! [`crate::MexRuntime`], from the decision of the pipeline the runtime built
//! itself (its registry, policy, store and claim table). A pipeline built
//! anywhere else, with an approve-everything input verifier say, yields a
//! decision that nothing accepts. The proof has private fields and no public
//! constructor, `Clone` or `Default` (trybuild tests under `tests/ui`).

use std::ops::Deref;

use mex_gates::internal::Admitted;

/// Proof that the runtime's own pipeline admitted one operation. Required to
/// dispatch it; read the decision through `Deref` ([`Admitted`]).
#[derive(Debug)]
pub struct AdmissionProof {
    admitted: Admitted,
}

impl AdmissionProof {
    /// Mint a proof. Called only by the admission stage, with the decision
    /// of the runtime's own pipeline.
    pub(crate) fn mint(admitted: Admitted) -> Self {
        Self { admitted }
    }
}

impl Deref for AdmissionProof {
    type Target = Admitted;
    fn deref(&self) -> &Admitted {
        &self.admitted
    }
}
