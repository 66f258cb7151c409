//! gc and verify in bounded memory: child processes walk a store of
//! 60,000 records (verify alone, then gc and verify again) with their
//! address space limited (`RLIMIT_AS`) to what they had mapped plus
//! [`BUDGET_MB`]. Holding every manifest at once, as gc and verify once
//! did, needs more (gc about three times that, verify half as much again).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

#[path = "support/bulk.rs"]
mod bulk;
mod support;

use std::io::{BufRead as _, Write as _};

use mex_artifacts::{ArtifactStore, GcOptions};
use mex_envelope::UtcTimestamp;

const CHILD_ENV: &str = "MEX_ARTIFACTS_MEMORY_CHILD";
const WALK_ENV: &str = "MEX_ARTIFACTS_MEMORY_WALK";

/// Address space the walks may add to what the child had mapped.
const BUDGET_MB: u64 = 24;

/// The records of the store walked under the limit.
const RECORDS: u64 = 60_000;

/// The child's mapped address space, from `/proc/self/status`.
fn vm_size() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmSize:"))
        .expect("VmSize in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmSize in kB");
    kib * 1024
}

/// With `gc`, gc (ten days ahead: a third of the records expired); then
/// verify. Returns the records gc deleted and whether verify found the
/// store sound.
fn walk(root: &std::path::Path, gc: bool) -> (usize, bool) {
    let store = ArtifactStore::at(root).unwrap();
    let ahead = UtcTimestamp::from_unix_millis(UtcTimestamp::now().unix_millis() + 10 * 86_400_000)
        .unwrap();
    let deleted = if gc {
        store.gc_with(&GcOptions::at(ahead)).unwrap().deleted.len()
    } else {
        0
    };
    (deleted, store.verify().unwrap().is_ok())
}

/// The child: walk the store its env var names, under the limit. Run by
/// the harness, it walks a small store without one.
#[test]
fn memory_child() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        let dir = tempfile::tempdir().unwrap();
        bulk::fill(dir.path(), 300, 3);
        let (deleted, ok) = walk(dir.path(), true);
        assert!(deleted > 0 && ok);
        return;
    };
    let limit = vm_size() + BUDGET_MB * 1024 * 1024;
    let (_, hard) = {
        let l = rustix::process::getrlimit(rustix::process::Resource::As);
        (l.current, l.maximum)
    };
    rustix::process::setrlimit(
        rustix::process::Resource::As,
        rustix::process::Rlimit {
            current: Some(limit),
            maximum: hard,
        },
    )
    .unwrap();
    let gc = std::env::var(WALK_ENV).is_ok_and(|w| w == "gc");
    let (deleted, ok) = walk(std::path::Path::new(&root), gc);
    println!("walked: {deleted} deleted, verify ok: {ok}");
    std::io::stdout().flush().unwrap();
}

#[test]
fn gc_and_verify_of_a_large_store_fit_in_a_fixed_address_space() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    bulk::fill(&root, RECORDS, 3);
    for walk in ["verify", "gc"] {
        // One malloc arena: the child's address space grows only with what
        // it allocates, not by a reservation per thread.
        let (mut child, out) = support::spawn_self(
            "memory_child",
            &[
                (CHILD_ENV, root.display().to_string()),
                (WALK_ENV, walk.to_owned()),
                ("MALLOC_ARENA_MAX", "1".to_owned()),
            ],
        );
        let lines: Vec<String> = out.lines().map(Result::unwrap).collect();
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "{walk}: the walk did not fit in {BUDGET_MB} MB more address space: {status}; {lines:?}"
        );
        let walked = lines
            .iter()
            .find_map(|l| l.find("walked:").map(|at| &l[at..]))
            .unwrap_or_else(|| panic!("the child reports its walk: {lines:?}"));
        assert!(walked.ends_with("verify ok: true"), "{walk}: {walked}");
        assert_eq!(walk == "gc", !walked.starts_with("walked: 0 "), "{walked}");
    }
}
