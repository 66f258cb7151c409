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

/// The first `sh` block under `heading` in the repository file `doc`.
pub fn sh_block(doc: &str, heading: &str) -> String {
    let text = std::fs::read_to_string(workspace().join(doc))
        .unwrap_or_else(|e| panic!("cannot read {doc}: {e}"));
    let Some(section) = text.split(heading).nth(1) else {
        panic!("{doc} has no section {heading:?}");
    };
    let Some(block) = section.split("```sh\n").nth(1) else {
        panic!("{doc}: the section {heading:?} has no sh block");
    };
    block.split("\n```").next().unwrap_or_default().to_owned()
}

/// Runs a documented `sh` block as written: in bash with `set -euo
/// pipefail`, `mex` bound to the built binary, the repository's registry,
/// from a scratch directory in which each of `links` is a symlink to the
/// repository's directory of that name. Panics, with both streams, unless
/// the script ran to its end; returns its stdout and the scratch directory.
pub fn run_as_written(script: &str, links: &[&str]) -> (String, tempfile::TempDir) {
    let Ok(root) = workspace().canonicalize() else {
        panic!("the workspace root does not resolve");
    };
    let Ok(scratch) = tempfile::tempdir() else {
        panic!("no scratch directory");
    };
    for dir in links {
        if let Err(e) = std::os::unix::fs::symlink(root.join(dir), scratch.path().join(dir)) {
            panic!("cannot link {dir}: {e}");
        }
    }
    let full = format!(
        "set -euo pipefail\nmex() {{ \"$MEX_BIN\" \"$@\"; }}\n{script}\necho SCRIPT-DONE\n"
    );
    let out = match Command::new("bash")
        .arg("-c")
        .arg(&full)
        .current_dir(scratch.path())
        .env("MEX_BIN", env!("CARGO_BIN_EXE_mex"))
        .env("NO_COLOR", "1")
        .env("MEX_REGISTRY", root.join("mechanical_engines.json"))
        .env_remove("MEX_HOME")
        .env_remove("MEX_POLICY")
        .env_remove("MEX_REGISTRY_DIR")
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!("cannot start bash: {e}"),
    };
    let stdout = text(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("SCRIPT-DONE"),
        "the script stopped early\n--- script\n{script}\n--- stdout\n{stdout}\n--- stderr\n{}",
        text(&out.stderr)
    );
    (stdout, scratch)
}

/// A finished `mex` run for a failure message: exit status and both streams.
pub fn report(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
