//! Attacks on layout 3 from a review: a foreign or planted index, its WAL
//! planted as a symlink, a layout-2 store whose index already holds stale
//! rows.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

mod support;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use mex_artifacts::{ArtifactStore, GcOptions, INLINE_MAX, PutOptions};
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

/// A layout-2 store (records as files, payloads as files, no index) with
/// one small and one large artifact; returns their handles.
fn make_layout_2(root: &Path) -> Vec<mex_envelope::ArtifactHandle> {
    let store = ArtifactStore::at(root).unwrap();
    let handles = vec![
        store
            .put_bytes(b"small one", &PutOptions::default())
            .unwrap(),
        store.put_bytes(&large(), &PutOptions::default()).unwrap(),
    ];
    drop(store);
    let records = root.join("records");
    fs::create_dir(&records).unwrap();
    for (h, payload) in handles.iter().zip([b"small one".to_vec(), large()]) {
        let id = h.artifact_id;
        let bytes = support::record_row(root, id).unwrap();
        fs::write(records.join(format!("{id}.json")), &bytes).unwrap();
        let hex = h.content_hash.to_hex();
        let shard = root.join("blobs/sha256").join(&hex[..2]);
        fs::create_dir_all(&shard).unwrap();
        let _ = fs::remove_file(shard.join(&hex[2..]));
        fs::write(shard.join(&hex[2..]), &payload).unwrap();
    }
    remove_index(root);
    fs::write(root.join("LAYOUT"), "mex-artifacts-store-2\n").unwrap();
    handles
}

/// An index left by an interrupted 2→3 migration (rows imported, marker
/// still at layout 2) goes stale if the store is then changed as a layout-2
/// store (by an older mex: a record re-pinned, another deleted by its gc
/// together with its payload). While the marker says layout 2 the files
/// are the records: the next migration imports them as they are now.
#[test]
fn a_migration_over_a_stale_index_imports_the_record_files_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    let handles = make_layout_2(&root);
    let (kept, gone) = (&handles[0], &handles[1]);
    let file = |id: uuid::Uuid| root.join("records").join(format!("{id}.json"));
    // The interrupted import: rows as the files were then.
    let conn = support::index_db(&root);
    conn.execute_batch(
        "CREATE TABLE records (id TEXT PRIMARY KEY NOT NULL, manifest BLOB NOT NULL);
         CREATE TABLE inline_blobs (hash TEXT PRIMARY KEY NOT NULL, size INTEGER NOT NULL, bytes BLOB NOT NULL);",
    )
    .unwrap();
    for h in &handles {
        conn.execute(
            "INSERT INTO records (id, manifest) VALUES (?1, ?2)",
            rusqlite::params![
                h.artifact_id.hyphenated().to_string(),
                fs::read(file(h.artifact_id)).unwrap()
            ],
        )
        .unwrap();
    }
    drop(conn);
    // Then, at layout 2: `kept` re-pinned, `gone` deleted with its payload.
    let text = String::from_utf8(fs::read(file(kept.artifact_id)).unwrap()).unwrap();
    let pinned = text.replace("\"pinned\": false", "\"pinned\": true");
    assert_ne!(pinned, text);
    fs::write(file(kept.artifact_id), &pinned).unwrap();
    fs::remove_file(file(gone.artifact_id)).unwrap();
    let hex = gone.content_hash.to_hex();
    fs::remove_file(root.join("blobs/sha256").join(&hex[..2]).join(&hex[2..])).unwrap();

    let store = ArtifactStore::at(&root).unwrap();
    assert_eq!(store.list().unwrap(), [kept.artifact_id]);
    assert!(store.manifest(kept.artifact_id).unwrap().pinned);
    assert_eq!(store.read(kept).unwrap(), b"small one");
    assert!(!root.join("records").exists());
}

/// A record file in `records/` that is not a row (the marker rewritten to
/// layout 3 over a store whose migration never imported it) is not an
/// artifact, but it may be one the store still needs: gc keeps every
/// payload while such a file is there, rather than delete the payload it
/// names.
#[test]
fn gc_keeps_payloads_while_records_holds_a_record_file_that_is_not_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    let store = ArtifactStore::at(&root).unwrap();
    let h = store.put_bytes(&large(), &PutOptions::default()).unwrap();
    drop(store);
    let id = h.artifact_id;
    let bytes = support::record_row(&root, id).unwrap();
    fs::create_dir(root.join("records")).unwrap();
    fs::write(root.join("records").join(format!("{id}.json")), &bytes).unwrap();
    support::index_db(&root)
        .execute(
            "DELETE FROM records WHERE id = ?1",
            [id.hyphenated().to_string()],
        )
        .unwrap();

    let store = ArtifactStore::at(&root).unwrap();
    let report = store.gc(UtcTimestamp::now()).unwrap();
    assert!(
        report.blobs_deleted.is_empty(),
        "{:?}",
        report.blobs_deleted
    );
    assert!(
        report.notes.iter().any(|n| n.contains("records")),
        "{:?}",
        report.notes
    );
    assert_eq!(support::blob_file_count(&root), 1);
}

/// SQLite's `length()` of a TEXT value counts characters up to the first
/// NUL: a row whose column is text starting with a NUL measures 0 and
/// would be read whole however large it is. Such rows are refused by their
/// size in bytes, unread.
#[test]
fn a_text_record_row_behind_a_nul_is_refused_by_its_byte_size() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    let store = ArtifactStore::at(&root).unwrap();
    let h = store.put_bytes(b"x", &PutOptions::default()).unwrap();
    let mut text = String::from("\0");
    text.push_str(&" ".repeat(2 << 20));
    support::index_db(&root)
        .execute(
            "UPDATE records SET manifest = ?2 WHERE id = ?1",
            rusqlite::params![h.artifact_id.hyphenated().to_string(), text],
        )
        .unwrap();
    let err = store.manifest(h.artifact_id).unwrap_err().to_string();
    assert!(err.contains("larger than any record"), "{err}");
}

#[test]
fn a_text_inline_row_behind_a_nul_is_refused_by_its_byte_size() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    let store = ArtifactStore::at(&root).unwrap();
    let h = store.put_bytes(b"small", &PutOptions::default()).unwrap();
    let mut text = String::from("\0");
    text.push_str(&" ".repeat(1 << 20));
    support::index_db(&root)
        .execute(
            "UPDATE inline_blobs SET bytes = ?2 WHERE hash = ?1",
            rusqlite::params![h.content_hash.to_hex(), text],
        )
        .unwrap();
    let err = store.read(&h).unwrap_err().to_string();
    assert!(
        err.contains(&format!("its row holds {} bytes", (1 << 20) + 1)),
        "{err}"
    );
}

const GC_CHILD_ENV: &str = "MEX_ARTIFACTS_REVIEW_GC_CHILD";

/// One round of the gc child: kept (no expiry) and doomed (expired by the
/// gc's clock) artifacts, small and large, some sharing bytes, then a gc
/// ten days ahead.
fn put_and_collect(store: &ArtifactStore, round: u64) {
    let doomed = PutOptions {
        retention_ttl_days: Some(1),
        ..PutOptions::default()
    };
    for i in 0..4u64 {
        let small = format!("round {round} item {i}").into_bytes();
        let mut big = large();
        big.extend_from_slice(&small);
        store.put_bytes(&small, &PutOptions::default()).unwrap();
        store.put_bytes(&big, &PutOptions::default()).unwrap();
        // The same bytes again, doomed: gc must keep them for the kept one.
        store.put_bytes(&small, &doomed).unwrap();
        store.put_bytes(&big, &doomed).unwrap();
        store
            .put_bytes(format!("doomed {round} {i}").as_bytes(), &doomed)
            .unwrap();
    }
    let ahead = UtcTimestamp::from_unix_millis(UtcTimestamp::now().unix_millis() + 10 * 86_400_000)
        .unwrap();
    store.gc_with(&GcOptions::at(ahead)).unwrap();
}

/// The child of the test below: put and gc forever in the store its env
/// var names. Run by the harness, one round in a fresh store.
#[test]
fn gc_crash_child() {
    let Ok(root) = std::env::var(GC_CHILD_ENV) else {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::at(dir.path()).unwrap();
        put_and_collect(&store, 0);
        // 8 kept + the gc report; every doomed one gone.
        assert_eq!(store.list().unwrap().len(), 9);
        assert!(store.verify().unwrap().is_ok());
        return;
    };
    let store = ArtifactStore::at(&root).unwrap();
    for round in 0.. {
        put_and_collect(&store, round);
        println!("collected");
        std::io::stdout().flush().unwrap();
    }
}

/// SIGKILL a process that puts and collects garbage, at many instants:
/// afterwards every record left has its payload (verify is clean and every
/// artifact reads back), whatever step gc was at.
#[test]
fn sigkill_during_gc_leaves_no_record_without_its_payload() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let mut survivors = 0;
    for round in 0..12u64 {
        let (mut child, mut out) = support::spawn_self(
            "gc_crash_child",
            &[(GC_CHILD_ENV, root.display().to_string())],
        );
        support::wait_for(&mut out, "collected");
        std::thread::sleep(Duration::from_millis((round * 37) % 200));
        child.kill().unwrap();
        child.wait().unwrap();
        let store = ArtifactStore::at(&root).unwrap();
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "round {round}: {report:#?}");
        let ids = store.list().unwrap();
        for id in &ids {
            let h = store.handle(*id).unwrap();
            assert_eq!(
                store.read(&h).unwrap().len() as u64,
                h.size_bytes,
                "round {round}"
            );
        }
        survivors = ids.len();
    }
    assert!(survivors > 0);
}

/// A FIFO planted as the layout marker: opening the store is refused
/// without waiting for a writer (before, the open blocked until someone
/// wrote a marker into the FIFO, and took what was written).
#[test]
fn a_fifo_planted_as_the_layout_marker_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    drop(ArtifactStore::at(&root).unwrap());
    let marker = root.join("LAYOUT");
    fs::remove_file(&marker).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &marker,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let opening = root.clone();
    std::thread::spawn(move || {
        let _ = tx.send(ArtifactStore::at(&opening).map(drop));
    });
    // Should the open be blocked on the FIFO, feed it a marker so that the
    // test ends and judges what came back.
    let outcome = loop {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(v) => break v,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(mut w) = fs::OpenOptions::new().write(true).open(&marker) {
                    let _ = w.write_all(b"mex-artifacts-store-3\n");
                }
            }
            Err(e) => panic!("{e}"),
        }
    };
    let err = outcome.unwrap_err().to_string();
    assert!(err.contains("LAYOUT") && err.contains("FIFO"), "{err}");
}

/// A marker too large to be one is refused unread.
#[test]
fn an_oversized_layout_marker_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    drop(ArtifactStore::at(&root).unwrap());
    let mut text = b"mex-artifacts-store-3\n".to_vec();
    text.resize(4 << 20, b' ');
    fs::write(root.join("LAYOUT"), &text).unwrap();
    let err = ArtifactStore::at(&root).unwrap_err().to_string();
    assert!(err.contains("larger than"), "{err}");
}

/// A damaged payload file behind an intact inline row of the same digest
/// is never served (reads take the row), but verify still reports it: the
/// row hid it.
#[test]
fn verify_reports_a_damaged_file_behind_an_intact_inline_row() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    let store = ArtifactStore::at(&root).unwrap();
    let h = store
        .put_bytes(b"small and inline", &PutOptions::default())
        .unwrap();
    let hex = h.content_hash.to_hex();
    let shard = root.join("blobs/sha256").join(&hex[..2]);
    fs::create_dir_all(&shard).unwrap();
    fs::write(shard.join(&hex[2..]), b"small and INLINE").unwrap();
    assert_eq!(store.read(&h).unwrap(), b"small and inline");
    let report = store.verify().unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.path == shard.join(&hex[2..])),
        "{report:#?}"
    );
}

/// Putting the same small bytes again removes a damaged file at their blob
/// path (the inline row holds them), as a layout-2 put replaced one; an
/// intact file there (a layout-2 copy) stays.
#[test]
fn a_put_of_small_bytes_removes_a_damaged_file_at_their_blob_path() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    let store = ArtifactStore::at(&root).unwrap();
    let bytes = b"small and inline";
    let h = store.put_bytes(bytes, &PutOptions::default()).unwrap();
    let hex = h.content_hash.to_hex();
    let shard = root.join("blobs/sha256").join(&hex[..2]);
    fs::create_dir_all(&shard).unwrap();
    let file = shard.join(&hex[2..]);
    fs::write(&file, b"small and INLINE").unwrap();
    assert!(!store.verify().unwrap().is_ok());
    store.put_bytes(bytes, &PutOptions::default()).unwrap();
    assert!(!file.exists(), "the damaged copy is still there");
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:#?}");
    fs::write(&file, bytes).unwrap();
    store.put_bytes(bytes, &PutOptions::default()).unwrap();
    assert_eq!(
        fs::read(&file).unwrap(),
        bytes,
        "an intact copy was removed"
    );
    assert!(store.verify().unwrap().is_ok());
}

/// SQLite keeps a BLOB and a TEXT value apart even when their bytes are
/// equal: a record row keyed by the id's bytes as a BLOB is a second row
/// for that id. It is not an artifact: never listed (the id once), never
/// served, reported by verify.
#[test]
fn a_record_row_keyed_by_a_blob_spelling_of_an_id_is_not_an_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    let store = ArtifactStore::at(&root).unwrap();
    let h = store.put_bytes(b"one", &PutOptions::default()).unwrap();
    let id = h.artifact_id.hyphenated().to_string();
    let manifest = support::record_row(&root, h.artifact_id).unwrap();
    support::index_db(&root)
        .execute(
            "INSERT INTO records (id, manifest) VALUES (?1, ?2)",
            rusqlite::params![id.as_bytes(), manifest],
        )
        .unwrap();
    assert_eq!(store.list().unwrap(), [h.artifact_id]);
    let report = store.verify().unwrap();
    assert_eq!(report.records, 1, "{report:#?}");
    assert_eq!(report.problems.len(), 1, "{report:#?}");
}

/// A manifest column holding an integer or NULL is reported as what it is,
/// not as a record too large to read.
#[test]
fn a_record_row_whose_manifest_is_not_bytes_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    let store = ArtifactStore::at(&root).unwrap();
    let h = store.put_bytes(b"one", &PutOptions::default()).unwrap();
    support::index_db(&root)
        .execute(
            "UPDATE records SET manifest = 5 WHERE id = ?1",
            [h.artifact_id.hyphenated().to_string()],
        )
        .unwrap();
    let err = store.manifest(h.artifact_id).unwrap_err().to_string();
    assert!(!err.contains("larger") && err.contains("integer"), "{err}");
}

/// A trigger planted in index.db (here: one deleting every new payload
/// row) would have puts report success for rows that are gone: the store
/// is refused on open instead.
#[test]
fn an_index_with_a_planted_trigger_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    drop(ArtifactStore::at(&root).unwrap());
    support::index_db(&root)
        .execute_batch(
            "CREATE TRIGGER eat AFTER INSERT ON inline_blobs BEGIN
                 DELETE FROM inline_blobs WHERE hash = new.hash;
             END;",
        )
        .unwrap();
    let outcome = ArtifactStore::at(&root).and_then(|store| {
        let h = store.put_bytes(b"kept?", &PutOptions::default())?;
        store.read(&h)
    });
    let err = outcome.unwrap_err().to_string();
    assert!(err.contains("trigger eat"), "{err}");
}
