// A proof cannot be conjured from a Default impl.
fn main() {
    let _proof: mex_runtime::AdmissionProof = Default::default();
}
