//! Crash safety: a child process is SIGKILLed in the middle of puts,
//! repeatedly, with anonymous (`O_TMPFILE`) temp files and with the named
//! fallback; afterwards no partial artifact is visible (every record row
//! of `index.db` parses), every visible artifact verifies, and the store
//! accepts new puts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

mod support;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use mex_artifacts::{ArtifactStore, PutOptions};
use mex_envelope::{ArtifactManifest, UtcTimestamp};
use support::{PatternReader, spawn_self, wait_for};

const CHILD_ENV: &str = "MEX_ARTIFACTS_CRASH_CHILD";
/// "1": the child uses named temp files (the fallback without O_TMPFILE).
const NAMED_ENV: &str = "MEX_ARTIFACTS_CRASH_NAMED";
/// "small": the child puts only small artifacts (a record every put);
/// "small-threads": the same from several threads at once (group commits).
const LOAD_ENV: &str = "MEX_ARTIFACTS_CRASH_LOAD";

/// Threads of the "small-threads" load.
const THREADS: u64 = 4;

/// The child: puts artifacts forever when run by the parent below (the env
/// var names the store). Run by the harness itself, it checks the same
/// workload for a few rounds in a fresh store, in both temp-file modes:
/// every put is readable and verifies, and nothing is left in `tmp/`.
#[test]
fn crash_child() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        for named in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let store = ArtifactStore::at(dir.path()).unwrap();
            store.use_named_temp_files(named);
            put_forever(&store, Some(2), false);
            assert_eq!(store.list().unwrap().len(), 4);
            assert!(store.verify().unwrap().is_ok());
            assert_eq!(tmp_entries(dir.path()), 0);
        }
        return;
    };
    let store = ArtifactStore::at(&root).unwrap();
    store.use_named_temp_files(std::env::var(NAMED_ENV).is_ok_and(|v| v == "1"));
    let load = std::env::var(LOAD_ENV).unwrap_or_default();
    println!("ready");
    std::io::stdout().flush().unwrap();
    if load == "small-threads" {
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let store = &store;
                s.spawn(move || put_small_forever(store, t));
            }
        });
    } else {
        put_forever(&store, None, load == "small");
    }
}

/// Put small artifacts (inline payloads) forever, as thread `thread`.
fn put_small_forever(store: &ArtifactStore, thread: u64) {
    let pid = std::process::id();
    for i in 0u64.. {
        store
            .put_bytes(
                format!("small {pid} thread {thread} {i}").as_bytes(),
                &PutOptions::default(),
            )
            .unwrap();
        println!("stored");
    }
}

/// Put a 6 MiB and a small artifact per round (or only small ones),
/// `rounds` times (or forever).
fn put_forever(store: &ArtifactStore, rounds: Option<u64>, small_only: bool) {
    let pid = u64::from(std::process::id());
    for i in 0u64..rounds.unwrap_or(u64::MAX) {
        if !small_only {
            let mut reader = PatternReader::new(pid << 20 | i, 6 << 20);
            store
                .put_reader(&mut reader, &PutOptions::default())
                .unwrap();
        }
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

fn tmp_entries(root: &Path) -> usize {
    std::fs::read_dir(root.join("tmp")).unwrap().count()
}

/// Every record row in `index.db` (read directly, before the store is
/// opened again) is a complete manifest of its id, and no `records/`
/// directory came back. Returns how many there are.
fn every_record_is_complete(root: &Path, round: &str) -> usize {
    assert!(!root.join("records").exists(), "{round}: records/ exists");
    let db = support::index_db(root);
    let mut stmt = db.prepare("SELECT id, manifest FROM records").unwrap();
    let rows: Vec<(String, Vec<u8>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (id, bytes) in &rows {
        let manifest: ArtifactManifest = serde_json::from_slice(bytes)
            .unwrap_or_else(|e| panic!("{round}: record {id} is not a whole manifest: {e}"));
        assert_eq!(&manifest.artifact.artifact_id.to_string(), id, "{round}");
    }
    rows.len()
}

/// Whether process `pid` has a file open in the store's `tmp/` (an
/// anonymous temp file reads as `<root>/tmp/#<inode> (deleted)`).
fn has_temp_file_open(pid: u32, root: &Path) -> bool {
    let tmp = root.join("tmp").canonicalize().unwrap();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .any(|target| target.starts_with(&tmp))
}

/// Kill a child putting `load` artifacts at `rounds` moments; check after
/// each kill. Returns (rounds in which the kill landed while a temp file was
/// open, records visible at the end).
fn kill_puts_repeatedly(named: bool, load: &str, rounds: u64, delay_ms: u64) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let mode = if named { "named" } else { "anonymous" };
    let mut killed_mid_put = 0;
    let mut records_seen = 0;
    for round in 0..rounds {
        let what = format!("{mode} temp files, {load} puts, round {round}");
        let junk_before = if root.exists() { tmp_entries(&root) } else { 0 };
        let (mut child, mut out) = spawn_self(
            "crash_child",
            &[
                (CHILD_ENV, root.display().to_string()),
                (NAMED_ENV, if named { "1" } else { "0" }.to_owned()),
                (LOAD_ENV, load.to_owned()),
            ],
        );
        wait_for(&mut out, "ready");
        // At least one put completes in every round however slow the
        // machine is; then the kill lands while later puts run.
        wait_for(&mut out, "stored");
        std::thread::sleep(Duration::from_millis((round * 137) % delay_ms));
        let open_before_kill = has_temp_file_open(child.id(), &root);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let junk = tmp_entries(&root);
        if named {
            if junk > junk_before {
                killed_mid_put += 1;
            }
        } else {
            // Anonymous temp files have no name: a kill leaves nothing.
            assert_eq!(junk, 0, "{what}: a name was left in tmp/");
            if open_before_kill {
                killed_mid_put += 1;
            }
        }
        // Before anything reopens the store: no half record is visible.
        let visible = every_record_is_complete(&root, &what);

        // The next open reclaims what the killed put left, and says so.
        let store = ArtifactStore::at(&root).unwrap();
        assert_eq!(store.reclaimed_at_open().len(), junk, "{what}");
        assert_eq!(tmp_entries(&root), 0, "{what}");
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "{what}: {report:#?}");
        let ids = store.list().unwrap();
        assert_eq!(ids.len(), visible, "{what}");
        for id in &ids {
            let handle = store.handle(*id).unwrap();
            let mut sink = std::io::sink();
            std::io::copy(&mut store.open(&handle).unwrap(), &mut sink).unwrap();
            assert_eq!(store.read(&handle).unwrap().len() as u64, handle.size_bytes);
        }
        records_seen = ids.len();
    }
    assert!(
        records_seen > 0,
        "no put ever completed: the test did not check surviving artifacts"
    );

    let store = ArtifactStore::at(&root).unwrap();
    store.use_named_temp_files(named);
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
        "{mode}, {load}: killed mid-put in {killed_mid_put}/{rounds} rounds; {records_seen} records survived; gc removed {} orphan payloads",
        gc.blobs_deleted.len()
    );
    (killed_mid_put, records_seen)
}

#[test]
fn sigkill_during_large_puts_leaves_store_consistent() {
    for named in [false, true] {
        let (killed_mid_put, _) = kill_puts_repeatedly(named, "large", 6, 300);
        assert!(
            killed_mid_put > 0,
            "named={named}: no kill landed in the middle of a put: the test did not exercise the window"
        );
    }
}

/// A record appears only complete: a child writing small artifacts (one
/// record per put, so most of its time is spent committing records) is
/// killed again and again, and every visible record row parses.
#[test]
fn sigkill_during_small_puts_never_shows_a_partial_record() {
    for named in [false, true] {
        let (_, records) = kill_puts_repeatedly(named, "small", 12, 23);
        assert!(records > 0);
    }
}

/// Small puts from several threads of one process share group commits: a
/// child doing that is killed again and again, and after reopening every
/// visible record is whole, reads back and verifies (its inline payload was
/// committed with it).
#[test]
fn sigkill_during_concurrent_small_puts_loses_no_committed_payload() {
    let (_, records) = kill_puts_repeatedly(false, "small-threads", 10, 29);
    assert!(records > 0);
}
