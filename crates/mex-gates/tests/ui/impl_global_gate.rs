// No crate but mex-gates can implement a global gate: the trait is sealed,
// so nothing can stand among the six (engine gates implement `Gate`).
struct Approve(mex_envelope::GateId);

impl mex_gates::internal::GlobalGate for Approve {
    fn id(&self) -> &mex_envelope::GateId {
        &self.0
    }
}

fn main() {}
