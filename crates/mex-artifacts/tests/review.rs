//! Attacks on layout 3 from a review: a foreign or planted index, its WAL
//! planted as a symlink, a layout-2 store whose index already holds stale
//! rows.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

mod support;

use std::fs;
use std::path::Path;

use mex_artifacts::{ArtifactStore, INLINE_MAX, PutOptions};
use mex_envelope::UtcTimestamp;

fn large() -> Vec<u8> {
    (0..INLINE_MAX as usize + 100)
        .map(|i| (i % 251) as u8)
        .collect()
}

fn remove_index(root: &Path) {
    for name in ["index.db", "index.db-wal", "index.db-shm"] {
        let _ = fs::remove_file(root.join(name));
    }
}

#[test]
fn a_foreign_sqlite_database_as_the_index_is_refused_and_payloads_survive() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    let store = ArtifactStore::at(&root).unwrap();
    let payload = large();
    let h = store.put_bytes(&payload, &PutOptions::default()).unwrap();
    drop(store);
    remove_index(&root);
    let foreign = rusqlite::Connection::open(root.join("index.db")).unwrap();
    foreign
        .execute_batch("CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('hi');")
        .unwrap();
    drop(foreign);
    match ArtifactStore::at(&root) {
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains("index.db"), "{text}");
        }
        Ok(store) => {
            let report = store.gc(UtcTimestamp::now()).unwrap();
            panic!(
                "a foreign database opened as an empty store; gc then deleted {:?} (the payload of {})",
                report.blobs_deleted, h.artifact_id
            );
        }
    }
}

#[test]
fn a_records_table_of_another_shape_is_refused_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    drop(ArtifactStore::at(&root).unwrap());
    remove_index(&root);
    let foreign = rusqlite::Connection::open(root.join("index.db")).unwrap();
    foreign
        .execute_batch(
            "CREATE TABLE records (id INTEGER PRIMARY KEY, body TEXT);
             CREATE TABLE inline_blobs (hash TEXT PRIMARY KEY NOT NULL, size INTEGER NOT NULL, bytes BLOB NOT NULL);",
        )
        .unwrap();
    drop(foreign);
    let err = ArtifactStore::at(&root).unwrap_err().to_string();
    assert!(err.contains("records"), "{err}");
}

#[test]
fn a_wal_planted_as_a_symlink_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    let store = ArtifactStore::at(&root).unwrap();
    store.put_bytes(b"first", &PutOptions::default()).unwrap();
    drop(store);
    let _ = fs::remove_file(root.join("index.db-wal"));
    let _ = fs::remove_file(root.join("index.db-shm"));
    let outside = dir.path().join("victim");
    fs::write(&outside, b"precious").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("index.db-wal")).unwrap();
    let err = ArtifactStore::at(&root).unwrap_err().to_string();
    assert!(
        err.contains("index.db-wal") && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(fs::read(&outside).unwrap(), b"precious");
}
