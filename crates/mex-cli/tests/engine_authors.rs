//! `docs/engine-authors.md` is run as written: the `sh` block under "From
//! nothing to a certified engine" executes in bash with `mex` bound to the
//! built binary, in a scratch directory that sees the repository's files.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::Path;
use std::process::Command;

#[test]
fn the_engine_authors_guide_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    let guide = std::fs::read_to_string(root.join("docs/engine-authors.md")).unwrap();
    let section = guide
        .split("## From nothing to a certified engine")
        .nth(1)
        .expect("the walkthrough section");
    let script = section
        .split("```sh\n")
        .nth(1)
        .unwrap()
        .split("\n```")
        .next()
        .unwrap();
    assert!(script.lines().filter(|l| l.starts_with("mex ")).count() >= 6);
    let scratch = tempfile::tempdir().unwrap();
    for dir in ["examples", "sdk", "registry"] {
        std::os::unix::fs::symlink(root.join(dir), scratch.path().join(dir)).unwrap();
    }
    let full =
        format!("set -euo pipefail\nmex() {{ \"$MEX_BIN\" \"$@\"; }}\n{script}\necho GUIDE-DONE\n");
    let out = Command::new("bash")
        .arg("-c")
        .arg(&full)
        .current_dir(scratch.path())
        .env("MEX_BIN", env!("CARGO_BIN_EXE_mex"))
        .env("NO_COLOR", "1")
        .env("MEX_REGISTRY", root.join("mechanical_engines.json"))
        .env_remove("MEX_HOME")
        .env_remove("MEX_REGISTRY_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("GUIDE-DONE"),
        "guide failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(stdout.contains("\"output_digest\""), "{stdout}");
    assert!(stdout.contains("certified:"), "{stdout}");
    assert!(stdout.contains("succeeded"), "{stdout}");
}
