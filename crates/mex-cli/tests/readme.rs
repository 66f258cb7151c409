//! The README's walkthrough is run as written: the `sh` block under "Your
//! first operation, step by step" executes in bash with `mex` bound to the
//! built binary, from the repository root, in a scratch directory for the
//! files it writes. If a command there stops working, this test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::Path;
use std::process::Command;

fn walkthrough(readme: &str) -> String {
    let section = readme
        .split("## Your first operation, step by step")
        .nth(1)
        .expect("the walkthrough section");
    let block = section.split("```sh\n").nth(1).expect("its sh block");
    block.split("\n```").next().unwrap().to_owned()
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    let script = walkthrough(&std::fs::read_to_string(root.join("README.md")).unwrap());
    assert!(
        script.lines().filter(|l| l.starts_with("mex ")).count() >= 8,
        "the walkthrough lost its commands:\n{script}"
    );
    let scratch = tempfile::tempdir().unwrap();
    // Files the walkthrough writes (handles, my-op.json) go to a scratch
    // directory that sees the repository's examples; the registry is the
    // repository's (named by MEX_REGISTRY, as the README's cwd would find it).
    std::os::unix::fs::symlink(root.join("examples"), scratch.path().join("examples")).unwrap();
    let full = format!(
        "set -euo pipefail\nmex() {{ \"$MEX_BIN\" \"$@\"; }}\n{script}\necho WALKTHROUGH-DONE\n"
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&full)
        .current_dir(scratch.path())
        .env("MEX_BIN", env!("CARGO_BIN_EXE_mex"))
        .env("NO_COLOR", "1")
        .env("MEX_REGISTRY", root.join("mechanical_engines.json"))
        .env_remove("MEX_HOME")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("WALKTHROUGH-DONE"),
        "walkthrough failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    // What a newcomer should have seen along the way.
    assert!(stdout.contains("certified:"), "{stdout}");
    assert!(stdout.contains("=> admissible"), "{stdout}");
    assert!(stdout.contains("status    succeeded"), "{stdout}");
    assert!(
        stdout.contains("\"result\":\"5 kPa\"") || stdout.contains("output "),
        "{stdout}"
    );
    assert!(stdout.contains("op_completed"), "{stdout}");
    assert!(stdout.contains("chain verified"), "{stdout}");
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(scratch.path().join("result.json")).unwrap())
            .unwrap();
    assert_eq!(
        result["status"], "denied",
        "the replayed op_id must be refused"
    );
}
