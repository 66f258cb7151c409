//! Attacks on the gc and verify walks: an altered records table whose id
//! column is not unique (a walk by key in chunks steps over rows that share
//! a key across a chunk boundary), and entries in `blobs/sha256/` whose
//! shard and name make a digest only when joined (`a/bcd…`), which a read
//! never looks at; a gc killed while its scratch database exists.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

#[path = "support/bulk.rs"]
mod bulk;
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
    let expiring = PutOptions {
        retention_ttl_days: Some(1),
        ..PutOptions::default()
    };
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

/// Move payload `d`'s file to `blobs/sha256/<first hex>/<other 63 hex>`:
/// the two names still join into its digest, but a read looks only at
/// `<2 hex>/<62 hex>`.
fn misplace(root: &Path, d: &Sha256Digest) -> std::path::PathBuf {
    let hex = d.to_hex();
    let shard = root.join("blobs/sha256").join(&hex[..1]);
    std::fs::create_dir_all(&shard).unwrap();
    let to = shard.join(&hex[1..]);
    std::fs::rename(blob_file(root, d), &to).unwrap();
    to
}

#[test]
fn verify_does_not_take_a_misplaced_file_for_a_missing_payload() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    let store = ArtifactStore::at(&root).unwrap();
    let h = store.put_bytes(&large(4), &PutOptions::default()).unwrap();
    let moved = misplace(&root, &h.content_hash);
    assert!(store.read(&h).is_err(), "the read must miss the payload");
    let report = store.verify().unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::PayloadMissing && p.artifact_id == Some(h.artifact_id)),
        "the payload reads cannot find is not reported missing: {:#?}",
        report.problems
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::Stray && p.path == moved),
        "{:#?}",
        report.problems
    );
}

/// gc runs and keeps the payload it must, whatever `plant` left in
/// `blobs/sha256/`; returns the store's directory and gc's report.
fn gc_beside(plant: impl FnOnce(&Path)) -> (tempfile::TempDir, mex_artifacts::GcReport) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    let store = ArtifactStore::at(&root).unwrap();
    let kept = store.put_bytes(&large(5), &PutOptions::default()).unwrap();
    plant(&root);
    let report = store
        .gc(UtcTimestamp::now())
        .expect("gc must not stop at an entry that is not a payload");
    assert_eq!(store.read(&kept).unwrap(), large(5));
    (dir, report)
}

#[test]
fn gc_leaves_a_file_under_a_one_letter_shard_alone() {
    let (_dir, report) = gc_beside(|root| {
        // An unreferenced payload moved under a one-letter shard: the
        // delete looked for `<2 hex>/<62 hex>` in that directory.
        let store = ArtifactStore::at(root).unwrap();
        let orphan = store.put_bytes(&large(6), &PutOptions::default()).unwrap();
        drop(store);
        let moved = misplace(root, &orphan.content_hash);
        support::index_db(root)
            .execute(
                "DELETE FROM records WHERE id = ?1",
                [orphan.artifact_id.hyphenated().to_string()],
            )
            .unwrap();
        assert!(moved.exists());
    });
    assert_eq!(report.blobs_deleted_count, 0, "{:?}", report.blobs_deleted);
}

#[test]
fn gc_leaves_a_directory_named_like_a_payload_alone() {
    let mut odd = None;
    let (_dir, report) = gc_beside(|root| {
        let path = blob_file(root, &Sha256Digest::of(b"not stored"));
        std::fs::create_dir_all(&path).unwrap();
        odd = Some(path);
    });
    assert!(odd.unwrap().is_dir(), "gc removed a directory");
    assert_eq!(report.blobs_deleted_count, 0, "{:?}", report.blobs_deleted);
}

const KILL_CHILD_ENV: &str = "MEX_ARTIFACTS_WALKS_KILL_CHILD";

/// The child of the test below: one gc of the store named by the
/// environment (expiry a year ahead and the quota it names), then exits.
#[test]
fn gc_kill_child() {
    let Ok(spec) = std::env::var(KILL_CHILD_ENV) else {
        return;
    };
    let (root, quota) = spec.split_once('|').unwrap();
    let store = ArtifactStore::at(root).unwrap();
    println!("ready");
    let ahead =
        UtcTimestamp::from_unix_millis(UtcTimestamp::now().unix_millis() + 365 * 86_400_000)
            .unwrap();
    let mut options = GcOptions::at(ahead);
    options.max_total_bytes = Some(quota.parse().unwrap());
    store.gc_with(&options).unwrap();
    println!("done");
}

/// The names of gc scratch databases in the store's `tmp/`.
fn scratch_files(root: &Path) -> Vec<String> {
    std::fs::read_dir(root.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gc-") && n.ends_with(".db"))
        .collect()
}

/// SIGKILL a gc of a store of several chunks while its scratch database
/// exists (expired chunks partly deleted, quota evictions partly
/// committed, payloads partly removed): the next open removes the
/// scratch file, verify is clean, every record reads back, and the next gc
/// (killed again, or finishing) keeps it so.
#[test]
fn sigkill_while_gc_holds_its_scratch_database_loses_nothing_referenced() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    bulk::fill(&root, 6_000, 9);
    let mut killed_mid_gc = 0;
    for round in 0..6u64 {
        let quota = 140_000 - round * 12_000;
        let (mut child, mut out) = support::spawn_self(
            "gc_kill_child",
            &[(KILL_CHILD_ENV, format!("{}|{quota}", root.display()))],
        );
        support::wait_for(&mut out, "ready");
        // Wait until gc has made its scratch database (or finished), then
        // let it run a little further, more each round.
        while scratch_files(&root).is_empty() && child.try_wait().unwrap().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        std::thread::sleep(std::time::Duration::from_millis(round * 40));
        child.kill().unwrap();
        child.wait().unwrap();
        if !scratch_files(&root).is_empty() {
            killed_mid_gc += 1;
        }
        let store = ArtifactStore::at(&root).unwrap();
        assert_eq!(scratch_files(&root), Vec::<String>::new(), "round {round}");
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "round {round}: {:#?}", report.problems);
        for id in store.list().unwrap() {
            let h = store.handle(id).unwrap();
            assert_eq!(store.read(&h).unwrap().len() as u64, h.size_bytes);
        }
    }
    assert!(killed_mid_gc > 0, "no round killed gc mid-walk");
    let store = ArtifactStore::at(&root).unwrap();
    let report = store.gc_with(&GcOptions::at(UtcTimestamp::now())).unwrap();
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    assert!(store.verify().unwrap().is_ok());
}

/// verify shares the store lock with puts, so puts commit while it walks:
/// a record committed after verify hashed the payloads, found by the
/// record walk, has a payload verify never saw. It is no missing payload.
#[test]
fn verify_during_puts_reports_no_payload_of_a_new_record_missing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    bulk::fill(&root, 5_000, 11);
    let store = ArtifactStore::at(&root).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (report, puts) = std::thread::scope(|s| {
        let putter = s.spawn(|| {
            let mut n = 0u32;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let mut big = large(7);
                big.extend_from_slice(&n.to_le_bytes());
                store.put_bytes(&big, &PutOptions::default()).unwrap();
                store
                    .put_bytes(format!("small {n}").as_bytes(), &PutOptions::default())
                    .unwrap();
                n += 1;
            }
            n
        });
        // Let the putter start before the walk (its first put is committed).
        while store.list().unwrap().len() < 5_006 {
            std::thread::yield_now();
        }
        let report = store.verify().unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (report, putter.join().unwrap())
    });
    assert!(puts > 0);
    assert!(report.is_ok(), "{:#?}", report.problems);
    assert!(store.verify().unwrap().is_ok());
}
