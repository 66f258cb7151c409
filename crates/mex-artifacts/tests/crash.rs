//! Crash safety: a child process is SIGKILLed in the middle of large puts,
//! repeatedly; afterwards no partial artifact is visible, every visible
//! artifact verifies, and the store accepts new puts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

mod support;

use std::io::Write;
use std::time::Duration;

use mex_artifacts::{ArtifactStore, PutOptions};
use mex_envelope::UtcTimestamp;
use support::{PatternReader, spawn_self, wait_for};

const CHILD_ENV: &str = "MEX_ARTIFACTS_CRASH_CHILD";

/// The child: puts 6 MiB artifacts forever when run by the parent below
/// (the env var names the store). Run by the harness itself, it checks the
/// same workload for a few rounds in a fresh store: every put is readable
/// and verifies, and nothing is left in `tmp/`.
#[test]
fn crash_child() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::at(dir.path()).unwrap();
        put_forever(&store, Some(2));
        assert_eq!(store.list().unwrap().len(), 4);
        assert!(store.verify().unwrap().is_ok());
        assert_eq!(tmp_entries(dir.path()), 0);
        return;
    };
    let store = ArtifactStore::at(&root).unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    put_forever(&store, None);
}

/// Put a 6 MiB and a small artifact per round, `rounds` times (or forever).
fn put_forever(store: &ArtifactStore, rounds: Option<u64>) {
    let pid = u64::from(std::process::id());
    for i in 0u64..rounds.unwrap_or(u64::MAX) {
        let mut reader = PatternReader::new(pid << 20 | i, 6 << 20);
        store
            .put_reader(&mut reader, &PutOptions::default())
            .unwrap();
        // Some small ones too, so records are written often.
        store
            .put_bytes(
                format!("small {pid} {i}").as_bytes(),
                &PutOptions::default(),
            )
            .unwrap();
        println!("stored");
    }
}

fn tmp_entries(root: &std::path::Path) -> usize {
    std::fs::read_dir(root.join("tmp")).unwrap().count()
}

#[test]
fn sigkill_during_large_puts_leaves_store_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let mut killed_mid_put = 0;
    let mut records_seen = 0;
    for round in 0..6u64 {
        let junk_before = if root.exists() { tmp_entries(&root) } else { 0 };
        let (mut child, mut out) =
            spawn_self("crash_child", &[(CHILD_ENV, root.display().to_string())]);
        wait_for(&mut out, "ready");
        // At least one put completes in every round however slow the
        // machine is; then the kill lands while the next put streams.
        wait_for(&mut out, "stored");
        std::thread::sleep(Duration::from_millis((round * 137) % 300));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let junk = tmp_entries(&root);
        if junk > junk_before {
            killed_mid_put += 1;
        }

        // The next open reclaims what the killed put left, and says so.
        let store = ArtifactStore::at(&root).unwrap();
        assert_eq!(store.reclaimed_at_open().len(), junk, "round {round}");
        assert_eq!(tmp_entries(&root), 0, "round {round}");
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "round {round}: {report:#?}");
        let ids = store.list().unwrap();
        for id in &ids {
            let handle = store.handle(*id).unwrap();
            let mut sink = std::io::sink();
            std::io::copy(&mut store.open(&handle).unwrap(), &mut sink).unwrap();
        }
        records_seen = ids.len();
    }
    assert!(
        records_seen > 0,
        "no put ever completed: the test did not check surviving artifacts"
    );
    assert!(
        killed_mid_put > 0,
        "no kill landed in the middle of a put: the test did not exercise the window"
    );

    let store = ArtifactStore::at(&root).unwrap();
    let h = store
        .put_reader(&mut PatternReader::new(7, 3 << 20), &PutOptions::default())
        .unwrap();
    store.read(&h).unwrap();
    let gc = store.gc(UtcTimestamp::now()).unwrap();
    assert_eq!(tmp_entries(&root), 0);
    assert!(gc.temp_entries.is_empty(), "{:?}", gc.temp_entries);
    assert!(gc.deleted.is_empty());
    assert!(store.verify().unwrap().is_ok());
    assert_eq!(store.list().unwrap().len(), records_seen + 2); // + the new put + the gc report
    println!(
        "killed mid-put in {killed_mid_put}/6 rounds; {records_seen} records survived; gc removed {} temp entries and {} orphan payloads",
        gc.temp_entries_removed,
        gc.blobs_deleted.len()
    );
}
