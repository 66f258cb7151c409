//! Compile-fail proofs that only the harness makes certificates (trybuild;
//! the toolchain is pinned in rust-toolchain.toml so the expected compiler
//! output is stable).

#[test]
fn only_the_harness_makes_certificates() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
