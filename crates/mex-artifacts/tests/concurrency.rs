//! Concurrency: many threads and two processes putting the same and
//! different content (with gc running meanwhile) never corrupt the store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

mod support;

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::sync::Arc;

use mex_artifacts::{ArtifactStore, PutOptions};
use mex_envelope::{ArtifactHandle, Sha256Digest, UtcTimestamp};
use support::{PatternReader, spawn_self, wait_for};

const CHILD_ENV: &str = "MEX_ARTIFACTS_CONCURRENCY_CHILD";

fn put_mix(store: &ArtifactStore, worker: u64, n: u64) -> Vec<ArtifactHandle> {
    let mut out = Vec::new();
    for i in 0..n {
        // Even i: content shared by every worker (small and pipelined sizes);
        // odd i: unique to this worker.
        let (seed, len) = if i % 2 == 0 {
            (i, if i % 4 == 0 { 1500 } else { 1_300_000 })
        } else {
            (1000 * (worker + 1) + i, 70_000)
        };
        out.push(
            store
                .put_reader(&mut PatternReader::new(seed, len), &PutOptions::default())
                .unwrap(),
        );
    }
    out
}

/// Payloads stored: files, and small ones inline in the index.
fn blob_count(store: &ArtifactStore) -> usize {
    support::blob_file_count(store.root()) + support::inline_count(store.root())
}

#[test]
fn many_threads_same_and_different_content() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ArtifactStore::at(dir.path()).unwrap());
    let threads: Vec<_> = (0..8u64)
        .map(|w| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || put_mix(&store, w, 12))
        })
        .collect();
    let handles: Vec<ArtifactHandle> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(handles.len(), 96);
    assert_eq!(store.list().unwrap().len(), 96);
    let distinct: HashSet<Sha256Digest> = handles.iter().map(|h| h.content_hash).collect();
    assert_eq!(distinct.len(), 6 + 8 * 6);
    assert_eq!(
        blob_count(&store),
        distinct.len(),
        "one payload per distinct content"
    );
    for h in &handles {
        store.read(h).unwrap();
    }
    assert!(store.verify().unwrap().is_ok());
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
}

/// Child: put a mix and print every handle as a JSON line, when run by the
/// test below (the env var names the store and the worker). Run by the
/// harness itself, it checks the same mix in a fresh store: every handle
/// reads back and the store verifies.
#[test]
fn concurrency_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::at(dir.path()).unwrap();
        let handles = put_mix(&store, 0, 8);
        assert_eq!(handles.len(), 8);
        for h in &handles {
            store.read(h).unwrap();
        }
        assert_eq!(store.list().unwrap().len(), 8);
        assert!(store.verify().unwrap().is_ok());
        return;
    };
    let (root, worker) = spec.split_once('|').unwrap();
    let store = ArtifactStore::at(root).unwrap();
    println!("ready");
    let mut out = std::io::stdout().lock();
    for h in put_mix(&store, worker.parse().unwrap(), 24) {
        writeln!(out, "{}", serde_json::to_string(&h).unwrap()).unwrap();
    }
    writeln!(out, "done").unwrap();
    out.flush().unwrap();
}

#[test]
fn two_processes_and_a_concurrent_gc() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = ArtifactStore::at(&root).unwrap();
    let mut children: Vec<_> = (0..2)
        .map(|w| {
            spawn_self(
                "concurrency_child",
                &[(CHILD_ENV, format!("{}|{w}", root.display()))],
            )
        })
        .collect();
    for (_, out) in &mut children {
        wait_for(out, "ready");
    }
    // gc runs in a loop while both children put: thanks to the store lock
    // it must neither delete a payload a put is about to reference nor a
    // temp file in use.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gc_thread = {
        let stop = Arc::clone(&stop);
        let root = root.clone();
        std::thread::spawn(move || {
            let store = ArtifactStore::at(&root).unwrap();
            let mut runs = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store.gc(UtcTimestamp::now()).unwrap();
                runs += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            runs
        })
    };
    let mut handles = Vec::new();
    for (mut child, out) in children {
        // Read to EOF, past "done": closing the pipe early would make the
        // child's own test harness fail on a broken pipe.
        for line in out.lines() {
            let line = line.unwrap();
            if let Some(i) = line.find('{') {
                handles.push(serde_json::from_str::<ArtifactHandle>(&line[i..]).unwrap());
            }
        }
        assert!(child.wait().unwrap().success(), "a writer process failed");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let gcs = gc_thread.join().unwrap();
    assert_eq!(handles.len(), 48);
    for h in &handles {
        store.read(h).unwrap();
    }
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(store.list().unwrap().len(), 48 + gcs);
    println!("{gcs} gc runs interleaved with two writer processes");
}

/// Two processes opening one new store at once: the one that finds the
/// other creating `index.db` waits for its lock instead of failing with
/// "database is locked" (SQLite does not wait by itself when switching to
/// WAL mode).
#[test]
fn opening_a_new_store_waits_for_another_connection_creating_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    std::fs::create_dir(&root).unwrap();
    let holder = rusqlite::Connection::open(root.join("index.db")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let opener = std::thread::spawn(move || ArtifactStore::at(root).map(drop));
    std::thread::sleep(std::time::Duration::from_millis(300));
    holder.execute_batch("COMMIT").unwrap();
    opener.join().unwrap().unwrap();
}
