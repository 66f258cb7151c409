//! `cannot` proofs for the admission proof type (trybuild, toolchain pinned in
//! rust-toolchain.toml so the expected compiler output stays stable).

#[test]
fn admission_proof_cannot_be_forged() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
