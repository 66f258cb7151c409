//! The example wasm engine (examples/engines/context_wasm): its committed
//! module is its WAT source compiled, the overlay pins that module, and it
//! finds the TODO lines of its golden vector through the real runtime.
//! `MEX_BLESS=1` rewrites the module from the source.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/engines/context_wasm")
}

#[test]
fn the_committed_module_is_the_wat_source_compiled_and_pinned() {
    let built = wat::parse_file(dir().join("find_todos.wat")).unwrap();
    let path = dir().join("find_todos.wasm");
    if std::env::var_os("MEX_BLESS").is_some() {
        std::fs::write(&path, &built).unwrap();
    }
    let committed = std::fs::read(&path).unwrap();
    assert!(
        committed == built,
        "find_todos.wasm is not find_todos.wat compiled; run this test with MEX_BLESS=1 and re-pin"
    );
    let overlay: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir().join("context.json")).unwrap()).unwrap();
    assert_eq!(
        overlay["engines"][0]["implementations"][0]["sha256"],
        mex_envelope::Sha256Digest::of(&committed).to_string()
    );
}
