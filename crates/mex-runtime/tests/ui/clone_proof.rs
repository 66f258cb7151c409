// A proof cannot be duplicated to dispatch a second run.
fn duplicate(proof: &mex_runtime::AdmissionProof) -> mex_runtime::AdmissionProof {
    proof.clone()
}

fn main() {}
