//! Compile-fail proofs of the no-bypass engine API (trybuild; the toolchain is
//! pinned in rust-toolchain.toml so compiler output stays stable). Each file
//! under tests/ui is one thing an engine or embedder must not be able to do.

#[test]
fn engines_cannot_bypass_the_runtime() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
