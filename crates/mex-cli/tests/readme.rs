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

mod common;

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let script = common::sh_block("README.md", "## Your first operation, step by step");
    assert!(
        script.lines().filter(|l| l.starts_with("mex ")).count() >= 8,
        "the walkthrough lost its commands:\n{script}"
    );
    // Files the walkthrough writes (handles, my-op.json) go to a scratch
    // directory that sees the repository's examples; the registry is the
    // repository's (named by MEX_REGISTRY, as the README's cwd would find it).
    let (stdout, scratch) = common::run_as_written(&script, &["examples"]);
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
