// A proof cannot be conjured from a Default impl.
fn main() {
    let _proof: mex_gates::AdmissionProof = Default::default();
}
