//! Files planted in a store where records and payloads live: a FIFO is
//! refused without blocking the reader, an oversized record file is refused
//! without being read into memory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use mex_artifacts::{ArtifactStore, ProblemKind, PutOptions};
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
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    loop {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(v) => return v,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                drop(fs::OpenOptions::new().write(true).open(fifo));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn blob_path(root: &Path, hex: &str) -> PathBuf {
    root.join("blobs/sha256").join(&hex[..2]).join(&hex[2..])
}

#[test]
fn a_fifo_at_a_record_name_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let store = std::sync::Arc::new(ArtifactStore::at(&root).unwrap());
    store.put_bytes(b"kept", &PutOptions::default()).unwrap();
    let id = Uuid::new_v4();
    let fifo = root.join("records").join(format!("{id}.json"));
    mkfifo(&fifo);

    let s = store.clone();
    let err = unblocked(&fifo, move || s.manifest(id)).unwrap_err();
    assert!(err.to_string().contains("FIFO"), "{err}");

    let s = store.clone();
    let report = unblocked(&fifo, move || s.verify()).unwrap();
    let problem = report
        .problems
        .iter()
        .find(|p| p.artifact_id == Some(id))
        .unwrap_or_else(|| panic!("{report:#?}"));
    assert_eq!(problem.kind, ProblemKind::ManifestInvalid);
    assert!(problem.message.contains("FIFO"), "{problem:?}");

    let s = store.clone();
    let gc = unblocked(&fifo, move || s.gc(mex_envelope::UtcTimestamp::now())).unwrap();
    let notes = format!("{gc:?}");
    assert!(notes.contains("FIFO"), "{notes}");
}

#[test]
fn a_fifo_at_a_payload_path_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let store = std::sync::Arc::new(ArtifactStore::at(&root).unwrap());
    let h = store.put_bytes(b"payload", &PutOptions::default()).unwrap();
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
fn an_oversized_record_file_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::at(dir.path()).unwrap();
    let id = Uuid::new_v4();
    let file = fs::File::create(dir.path().join("records").join(format!("{id}.json"))).unwrap();
    // Sparse: takes no disk space.
    file.set_len(2 << 20).unwrap();
    let err = store.manifest(id).unwrap_err();
    assert!(err.to_string().contains("larger than any record"), "{err}");
}

#[test]
fn a_store_directory_replaced_by_a_symlink_is_refused_not_emptied() {
    for (planted, target) in [("tmp", "records"), ("records", "tmp")] {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::at(dir.path()).unwrap();
        let h = store.put_bytes(b"kept", &PutOptions::default()).unwrap();
        drop(store);
        let record = dir
            .path()
            .join("records")
            .join(format!("{}.json", h.artifact_id));
        if planted == "tmp" {
            fs::remove_dir(dir.path().join("tmp")).unwrap();
        } else {
            // The records move to tmp/, and records/ points there.
            fs::rename(dir.path().join("records"), dir.path().join("old-records")).unwrap();
            fs::remove_dir(dir.path().join("tmp")).unwrap();
            fs::rename(dir.path().join("old-records"), dir.path().join("tmp")).unwrap();
        }
        std::os::unix::fs::symlink(target, dir.path().join(planted)).unwrap();
        let err = ArtifactStore::at(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("symbolic link"),
            "{planted}: {err}"
        );
        let kept = if planted == "tmp" {
            record
        } else {
            dir.path()
                .join("tmp")
                .join(format!("{}.json", h.artifact_id))
        };
        assert!(kept.exists(), "{planted}: the record is gone");
    }
}
