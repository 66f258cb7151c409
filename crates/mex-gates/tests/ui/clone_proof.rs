// A proof cannot be duplicated to dispatch a second run.
fn duplicate(proof: &mex_gates::AdmissionProof) -> mex_gates::AdmissionProof {
    proof.clone()
}

fn main() {}
