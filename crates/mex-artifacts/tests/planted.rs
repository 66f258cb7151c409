//! Hostile state planted in a store where records and payloads live: a
//! FIFO is refused without blocking the reader, an oversized record is
//! refused without being read into memory, a tampered inline payload or a
//! garbage record row is refused and reported (never a panic), and an
//! `index.db` that is a symlink or not a database is a clear error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

mod support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use mex_artifacts::{ArtifactError, ArtifactStore, INLINE_MAX, ProblemKind, PutOptions};
use uuid::Uuid;

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
}

/// Run `f` on another thread and return what it returns. Should it be
/// blocked on opening or reading the FIFO at `fifo` (what these tests are
/// about), the FIFO is opened for writing and closed, which gives the reader
/// an end of file, so the test ends and judges what came back.
fn unblocked<T: Send + 'static>(fifo: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    unblocked_feeding(fifo, b"", f)
}

/// [`unblocked`], writing `feed` into the FIFO when unblocking it: a reader
/// that was blocked on it then reads those bytes, which the test can see.
fn unblocked_feeding<T: Send + 'static>(
    fifo: &Path,
    feed: &[u8],
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    loop {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(v) => return v,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(mut w) = fs::OpenOptions::new().write(true).open(fifo) {
                    let _ = w.write_all(feed);
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// The record bytes of a valid manifest for artifact `id` (another store's
/// record with the id changed).
fn manifest_for(id: Uuid) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::at(dir.path()).unwrap();
    let h = store.put_bytes(b"kept", &PutOptions::default()).unwrap();
    drop(store);
    let mut m: serde_json::Value =
        serde_json::from_slice(&support::record_row(dir.path(), h.artifact_id).unwrap()).unwrap();
    m["artifact"]["artifact_id"] = serde_json::json!(id.to_string());
    serde_json::to_vec_pretty(&m).unwrap()
}

/// A payload too large to be kept inline: a file of its own.
fn large(seed: u8) -> Vec<u8> {
    vec![seed; INLINE_MAX as usize + 1]
}

fn blob_path(root: &Path, hex: &str) -> PathBuf {
    root.join("blobs/sha256").join(&hex[..2]).join(&hex[2..])
}

/// A FIFO at a record's name in a layout-2 store: the migration, verify
/// and gc never wait on it (had one blocked, the unblocking writer would
/// have fed it a valid record, and that record would have been imported).
#[test]
fn a_fifo_at_a_record_name_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    fs::create_dir(root.join("records")).unwrap();
    let id = Uuid::new_v4();
    let fifo = root.join("records").join(format!("{id}.json"));
    mkfifo(&fifo);
    fs::write(root.join("LAYOUT"), "mex-artifacts-store-2\n").unwrap();
    let feed = manifest_for(id);

    let r = root.clone();
    let store = std::sync::Arc::new(
        unblocked_feeding(&fifo, &feed, move || ArtifactStore::at(&r)).unwrap(),
    );
    assert!(matches!(
        store.manifest(id),
        Err(ArtifactError::NotFound { .. })
    ));
    assert!(
        support::record_row(&root, id).is_none(),
        "the FIFO was read"
    );

    let s = store.clone();
    let report = unblocked_feeding(&fifo, &feed, move || s.verify()).unwrap();
    let problem = report
        .problems
        .iter()
        .find(|p| p.path == fifo)
        .unwrap_or_else(|| panic!("{report:#?}"));
    assert_eq!(problem.kind, ProblemKind::Stray);

    let s = store.clone();
    unblocked_feeding(&fifo, &feed, move || {
        s.gc(mex_envelope::UtcTimestamp::now())
    })
    .unwrap();
    assert!(
        support::record_row(&root, id).is_none(),
        "the FIFO was read"
    );
    assert!(fifo.exists());
}

#[test]
fn a_fifo_at_a_payload_path_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let store = std::sync::Arc::new(ArtifactStore::at(&root).unwrap());
    let h = store.put_bytes(&large(1), &PutOptions::default()).unwrap();
    let fifo = blob_path(&root, &h.content_hash.to_hex());
    fs::remove_file(&fifo).unwrap();
    mkfifo(&fifo);

    let (s, handle) = (store.clone(), h.clone());
    let err = unblocked(&fifo, move || s.read(&handle)).unwrap_err();
    assert!(err.to_string().contains("FIFO"), "{err}");

    let s = store.clone();
    let report = unblocked(&fifo, move || s.verify()).unwrap();
    let problem = report
        .problems
        .iter()
        .find(|p| p.path == fifo)
        .unwrap_or_else(|| panic!("{report:#?}"));
    assert!(
        problem.message.contains("not a regular file"),
        "{problem:?}"
    );
}

#[test]
fn an_oversized_record_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::at(dir.path()).unwrap();
    let id = Uuid::new_v4();
    support::index_db(dir.path())
        .execute(
            "INSERT INTO records (id, manifest) VALUES (?1, zeroblob(2097152))",
            [id.to_string()],
        )
        .unwrap();
    let err = store.manifest(id).unwrap_err();
    assert!(err.to_string().contains("larger than any record"), "{err}");
    let report = store.verify().unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.artifact_id == Some(id) && p.kind == ProblemKind::ManifestInvalid),
        "{report:#?}"
    );
    // In a layout-2 store, such a file is not imported and stays put.
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("records")).unwrap();
    let path = dir.path().join("records").join(format!("{id}.json"));
    // Sparse: takes no disk space.
    fs::File::create(&path).unwrap().set_len(2 << 20).unwrap();
    fs::write(dir.path().join("LAYOUT"), "mex-artifacts-store-2\n").unwrap();
    let store = ArtifactStore::at(dir.path()).unwrap();
    assert!(store.list().unwrap().is_empty());
    assert!(path.exists());
}

/// `tmp -> blobs` would have every open empty the payloads as crash
/// leftovers; `blobs -> tmp` lose them the same way.
#[test]
fn a_store_directory_replaced_by_a_symlink_is_refused_not_emptied() {
    for (planted, target) in [("tmp", "blobs/sha256"), ("blobs", "tmp")] {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::at(dir.path()).unwrap();
        let h = store.put_bytes(&large(2), &PutOptions::default()).unwrap();
        drop(store);
        let hex = h.content_hash.to_hex();
        if planted == "tmp" {
            fs::remove_dir(dir.path().join("tmp")).unwrap();
        } else {
            // The payloads move to tmp/, and blobs/ points there.
            fs::remove_dir(dir.path().join("tmp")).unwrap();
            fs::rename(dir.path().join("blobs"), dir.path().join("tmp")).unwrap();
        }
        std::os::unix::fs::symlink(target, dir.path().join(planted)).unwrap();
        let err = ArtifactStore::at(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("symbolic link"),
            "{planted}: {err}"
        );
        let kept = if planted == "tmp" {
            blob_path(dir.path(), &hex)
        } else {
            dir.path()
                .join("tmp/sha256")
                .join(&hex[..2])
                .join(&hex[2..])
        };
        assert!(kept.exists(), "{planted}: the payload is gone");
    }
}

/// A small payload's row changed in the database is an integrity error on
/// every read path, and verify reports it; a new put of the same bytes
/// repairs the row.
#[test]
fn a_tampered_inline_payload_is_refused_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::at(dir.path()).unwrap();
    let h = store
        .put_bytes(b"small and inline", &PutOptions::default())
        .unwrap();
    let hex = h.content_hash.to_hex();
    assert_eq!(
        support::inline_row(dir.path(), &hex).unwrap(),
        b"small and inline"
    );
    support::set_inline_row(dir.path(), &hex, b"small and INLINE");
    for err in [
        store.read(&h).unwrap_err(),
        store.open(&h).unwrap_err(),
        store.open_streaming(&h).unwrap_err(),
    ] {
        assert!(matches!(err, ArtifactError::Integrity { .. }), "{err}");
        assert!(err.to_string().contains("index.db[inline_blobs:"), "{err}");
    }
    let report = store.verify().unwrap();
    assert_eq!(report.problems.len(), 1, "{report:#?}");
    assert_eq!(report.problems[0].kind, ProblemKind::HashMismatch);
    assert_eq!(report.problems[0].artifact_id, Some(h.artifact_id));
    assert_eq!(
        report.problems[0].path,
        dir.path().join(format!("index.db[inline_blobs:{hex}]"))
    );
    // Putting the same bytes again repairs the row.
    store
        .put_bytes(b"small and inline", &PutOptions::default())
        .unwrap();
    assert_eq!(store.read(&h).unwrap(), b"small and inline");
    assert!(store.verify().unwrap().is_ok());
}

/// Record rows that are garbage (not JSON, not a manifest of their id, an
/// id that is not an artifact id) are reported by verify and refused by
/// reads, never a panic; gc keeps every payload then.
#[test]
fn garbage_record_rows_are_reported_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::at(dir.path()).unwrap();
    let a = store.put_bytes(b"a", &PutOptions::default()).unwrap();
    let b = store.put_bytes(b"b", &PutOptions::default()).unwrap();
    support::set_record_row(dir.path(), a.artifact_id, b"\xff\x00 not json");
    let b_bytes = support::record_row(dir.path(), b.artifact_id).unwrap();
    let other = Uuid::new_v4();
    support::index_db(dir.path())
        .execute(
            "INSERT INTO records (id, manifest) VALUES (?1, ?2), ('NOT-AN-ID', x'00'), (42, 7)",
            rusqlite::params![other.to_string(), b_bytes],
        )
        .unwrap();
    let err = store.read(&a).unwrap_err();
    assert!(
        matches!(err, ArtifactError::ManifestInvalid { .. }),
        "{err}"
    );
    assert!(matches!(
        store.manifest(other),
        Err(ArtifactError::ManifestInvalid { .. })
    ));
    assert_eq!(store.list().unwrap().len(), 3);
    let report = store.verify().unwrap();
    let invalid = report
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::ManifestInvalid)
        .count();
    assert_eq!(invalid, 4, "{report:#?}");
    let gc = store.gc(mex_envelope::UtcTimestamp::now()).unwrap();
    assert!(gc.blobs_deleted.is_empty());
    assert!(!gc.notes.is_empty());
    assert_eq!(store.read(&b).unwrap(), b"b");
}

/// A damaged page in `index.db`: verify says the index fails its integrity
/// check and what to do, instead of failing or passing.
#[test]
fn a_damaged_index_is_reported_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::at(dir.path()).unwrap();
    for i in 0..50 {
        store
            .put_bytes(format!("payload {i}").as_bytes(), &PutOptions::default())
            .unwrap();
    }
    drop(store);
    // Page 2 onwards hold the tables (page 1 is the schema, left intact so
    // the store opens); the WAL was checkpointed into the file on close.
    assert!(!dir.path().join("index.db-wal").exists());
    let mut bytes = fs::read(dir.path().join("index.db")).unwrap();
    let page = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    assert!(bytes.len() >= 3 * page);
    for b in &mut bytes[page..3 * page] {
        *b = 0xA5;
    }
    fs::write(dir.path().join("index.db"), &bytes).unwrap();
    let store = ArtifactStore::at(dir.path()).unwrap();
    let report = store.verify().unwrap();
    let problem = report
        .problems
        .iter()
        .find(|p| p.path == dir.path().join("index.db"))
        .unwrap_or_else(|| panic!("{report:#?}"));
    assert!(
        problem.message.contains("integrity check") && problem.message.contains("backup"),
        "{problem:?}"
    );
}

/// `index.db` replaced by a symlink (even to a real index) or by a file
/// that is not a database: opening the store says so and what to do.
#[test]
fn an_index_that_is_a_symlink_or_not_a_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = ArtifactStore::at(&root).unwrap();
    store.put_bytes(b"kept", &PutOptions::default()).unwrap();
    drop(store);
    let index = root.join("index.db");
    fs::rename(&index, dir.path().join("real.db")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("real.db"), &index).unwrap();
    let err = ArtifactStore::at(&root).unwrap_err().to_string();
    assert!(
        err.contains("index.db") && err.contains("symbolic link") && err.contains("backup"),
        "{err}"
    );
    fs::remove_file(&index).unwrap();
    fs::write(&index, vec![b'x'; 8192]).unwrap();
    let err = ArtifactStore::at(&root).unwrap_err().to_string();
    assert!(
        err.contains("index.db")
            && err.contains("not an SQLite database")
            && err.contains("backup"),
        "{err}"
    );
    fs::remove_file(&index).unwrap();
    let err = ArtifactStore::at(&root).unwrap_err().to_string();
    assert!(err.contains("index.db is missing"), "{err}");
}
