//! The registry loader on arbitrary text, resolving referenced files against
//! the shipped `registry/` folder: never panics, reports problems as errors.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use mex_registry::Registry;

fn base() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Registry::from_str(text, base());
});
