//! `cannot` proofs (trybuild, toolchain pinned in rust-toolchain.toml so the
//! expected compiler output stays stable): the sealed [`GlobalGate`] trait
//! cannot be implemented outside mex-gates, and an `Admitted` decision cannot
//! be built by hand. That a decision cannot become an `AdmissionProof` is
//! proved in mex-runtime's `tests/ui`.
//!
//! [`GlobalGate`]: mex_gates::internal::GlobalGate

#[test]
fn sealed_and_private_cannot_be_forged() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
