//! `docs/engine-authors.md` is run as written: the `sh` block under "From
//! nothing to a certified engine" executes in bash with `mex` bound to the
//! built binary, in a scratch directory that sees the repository's files.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

mod common;

#[test]
fn the_engine_authors_guide_runs_as_written() {
    let script = common::sh_block(
        "docs/engine-authors.md",
        "## From nothing to a certified engine",
    );
    assert!(script.lines().filter(|l| l.starts_with("mex ")).count() >= 6);
    let (stdout, _scratch) = common::run_as_written(&script, &["examples", "sdk", "registry"]);
    assert!(stdout.contains("\"output_digest\""), "{stdout}");
    assert!(stdout.contains("certified:"), "{stdout}");
    assert!(stdout.contains("succeeded"), "{stdout}");
}
