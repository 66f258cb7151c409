//! The certificate loader on arbitrary bytes (through a file, as the
//! certifier reads them): never panics.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mex-fuzz-cert-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dir.join("certificate.json")
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    if std::fs::write(path, data).is_err() {
        return;
    }
    let _ = mex_conformance::read_certificate(path);
});
