//! Attacks on the bounded gc and verify walks (chunked reads of index.db
//! by key): an altered records table whose id column is not unique, so a
//! walk by key steps over rows that share a key across a chunk boundary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

mod support;

use std::path::Path;

use mex_artifacts::{ArtifactStore, GcOptions, INLINE_MAX, ProblemKind, PutOptions};
use mex_envelope::{Sha256Digest, UtcTimestamp};
use uuid::Uuid;

fn large(seed: u8) -> Vec<u8> {
    (0..INLINE_MAX as usize + 100)
        .map(|i| (i % 251) as u8 ^ seed)
        .collect()
}

fn blob_file(root: &Path, d: &Sha256Digest) -> std::path::PathBuf {
    let hex = d.to_hex();
    root.join("blobs/sha256").join(&hex[..2]).join(&hex[2..])
}

/// A manifest's bytes with its id replaced by `to` (and, when asked, pinned).
fn re_id(bytes: &[u8], from: Uuid, to: &str, pin: bool) -> Vec<u8> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let from = from.hyphenated().to_string();
    assert!(text.contains(&from));
    let mut out = text.replace(&from, to);
    if pin {
        assert!(out.contains("\"pinned\": false"), "{out}");
        out = out.replace("\"pinned\": false", "\"pinned\": true");
    }
    out.into_bytes()
}

/// The store of the attack: `records` rebuilt without a key, holding 1,021
/// expired fillers, an expired record `e` with a pinned twin of the same
/// id, and two surviving rows sharing the id `k` that reference different
/// payloads `p` and `r`. Sorted by id, the first chunk of 1,024 rows ends
/// at the first `k` row, so a walk by `id > last` never reads the second.
/// Returns the two payloads of the `k` rows.
fn altered_store(root: &Path) -> (Sha256Digest, Sha256Digest) {
    let store = ArtifactStore::at(root).unwrap();
    let keep = PutOptions::default();
    let hp = store.put_bytes(&large(1), &keep).unwrap();
    let hr = store.put_bytes(&large(2), &keep).unwrap();
    let mut expiring = PutOptions::default();
    expiring.retention_ttl_days = Some(1);
    let he = store.put_bytes(&large(3), &expiring).unwrap();
    drop(store);
    let mp = support::record_row(root, hp.artifact_id).unwrap();
    let mr = support::record_row(root, hr.artifact_id).unwrap();
    let me = support::record_row(root, he.artifact_id).unwrap();
    let k = "ffffffff-ffff-4fff-bfff-fffffffffffe";
    let e = "eeeeeeee-0000-4000-8000-000000000000";
    let mut db = support::index_db(root);
    let tx = db.transaction().unwrap();
    tx.execute_batch(
        "CREATE TABLE r2 (id TEXT, manifest BLOB);
         DROP TABLE records;
         ALTER TABLE r2 RENAME TO records;",
    )
    .unwrap();
    {
        let mut insert = tx
            .prepare("INSERT INTO records (id, manifest) VALUES (?1, ?2)")
            .unwrap();
        for i in 0..1021u64 {
            let id = format!("00000000-0000-4000-8000-{i:012x}");
            insert
                .execute(rusqlite::params![
                    id,
                    re_id(&me, he.artifact_id, &id, false)
                ])
                .unwrap();
        }
        insert
            .execute(rusqlite::params![e, re_id(&me, he.artifact_id, e, false)])
            .unwrap();
        insert
            .execute(rusqlite::params![e, re_id(&me, he.artifact_id, e, true)])
            .unwrap();
        insert
            .execute(rusqlite::params![k, re_id(&mp, hp.artifact_id, k, false)])
            .unwrap();
        insert
            .execute(rusqlite::params![k, re_id(&mr, hr.artifact_id, k, false)])
            .unwrap();
    }
    tx.commit().unwrap();
    (hp.content_hash, hr.content_hash)
}

#[test]
fn gc_keeps_every_payload_when_the_records_table_has_no_unique_key() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    let (p, r) = altered_store(&root);
    let store = ArtifactStore::at(&root).unwrap();
    let far = UtcTimestamp::from_unix_millis(UtcTimestamp::now().unix_millis() + 400 * 86_400_000)
        .unwrap();
    let report = store.gc_with(&GcOptions::at(far)).unwrap();
    for d in [p, r] {
        assert!(
            blob_file(&root, &d).exists(),
            "gc deleted payload {d}, which a surviving record row references; deleted {:?}, notes {:?}",
            report.blobs_deleted,
            report.notes
        );
    }
    assert!(
        report.notes.iter().any(|n| n.contains("unique")),
        "{:?}",
        report.notes
    );
}

#[test]
fn verify_reports_a_records_table_without_a_unique_key() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    altered_store(&root);
    let store = ArtifactStore::at(&root).unwrap();
    let report = store.verify().unwrap();
    assert!(!report.is_ok(), "{report:?}");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::ManifestInvalid && p.message.contains("unique")),
        "{:#?}",
        report.problems
    );
}
