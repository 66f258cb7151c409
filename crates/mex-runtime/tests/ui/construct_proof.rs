// Outside code cannot build an admission proof: its fields are private and
// there is no public constructor.
fn main() {
    let _proof = mex_runtime::AdmissionProof {};
}
