// A decision from a pipeline built outside the runtime (with an
// approve-everything input verifier, say) cannot be turned into a proof:
// minting is private to mex-runtime, and no conversion exists.
fn forge(admitted: mex_gates::internal::Admitted) -> mex_runtime::AdmissionProof {
    mex_runtime::AdmissionProof::mint(admitted)
}

fn convert(admitted: mex_gates::internal::Admitted) -> mex_runtime::AdmissionProof {
    admitted.into()
}

fn main() {}
