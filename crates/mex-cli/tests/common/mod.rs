//! What the tests that run the built `mex` binary share: where the
//! workspace is, and `mex` started as a user would start it (this
//! repository's registry, no colour, none of the caller's `MEX_*`
//! settings).
#![allow(
    dead_code,
    reason = "each test binary includes this module and uses part of it"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `mex --home HOME --registry <repo registry> ARGS...`, not yet started.
pub fn command(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mex"));
    c.arg("--home")
        .arg(home)
        .arg("--registry")
        .arg(workspace().join("mechanical_engines.json"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("MEX_HOME")
        .env_remove("MEX_POLICY")
        .env_remove("MEX_REGISTRY_DIR");
    c
}

/// Runs `mex` to completion (see [`command`]).
pub fn mex(home: &Path, args: &[&str]) -> Output {
    match command(home, args).output() {
        Ok(out) => out,
        Err(e) => panic!("could not start mex: {e}"),
    }
}

/// Bytes as text, invalid UTF-8 replaced.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
