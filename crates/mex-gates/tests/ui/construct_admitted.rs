// An `Admitted` decision is built only by `Pipeline::admit`: its fields are
// private (it is still no permission to run; see mex-runtime's proof).
fn main() {
    let _decision = mex_gates::internal::Admitted {};
}
