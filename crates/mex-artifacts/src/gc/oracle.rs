//! The gc of before its memory was bounded (every manifest loaded at
//! once, reference counts in hash maps), kept as the oracle the bounded
//! gc must agree with.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::collections::{BTreeMap, HashMap};

use mex_envelope::UtcTimestamp;
use mex_envelope::{
    ArtifactHandle, ArtifactKind, ArtifactManifest, Classification, MediaType, Sha256Digest,
};
use serde_json::json;
use uuid::Uuid;

use super::{GcDeletion, GcOptions, expiry_reason};
use crate::bundle::parse_index;
use crate::error::{Result, store_io};
use crate::index::Op;
use crate::store::{
    ArtifactStore, BLOBS, MAX_RECORD_BYTES, PutOptions, blob_location, canonical_id, fsync_dir,
    parse_manifest,
};

/// The old [`super::GcReport`]: every list whole.
#[derive(Debug)]
pub(crate) struct OldGcReport {
    pub deleted: Vec<GcDeletion>,
    pub blobs_deleted: Vec<(Sha256Digest, u64)>,
    pub bytes_freed: u64,
    pub temp_entries_removed: usize,
    pub temp_entries: Vec<String>,
    pub total_bytes_after: u64,
    pub quota_unmet: bool,
    pub notes: Vec<String>,
    pub report: ArtifactHandle,
}

impl ArtifactStore {
    /// Delete expired, unpinned artifacts, then (with a quota) the oldest
    /// unpinned artifacts until the quota holds, then every payload no record
    /// references and every leftover in `tmp/`; finally store a gc-report
    /// artifact listing what was deleted and why. Holds the exclusive store
    /// lock: puts wait meanwhile.
    pub(crate) fn old_gc_with(&self, options: &GcOptions) -> Result<OldGcReport> {
        let _lock = self.lock(true)?;
        let mut notes = Vec::new();
        let temp_entries = self.clean_tmp()?;
        let temp_entries_removed = temp_entries.len();
        // Record files a migration imported and did not get to remove.
        self.remove_imported_records(&mut crate::migrate::Steps::new(&mut |_| {}))?;

        // Load every record.
        let mut manifests: Vec<ArtifactManifest> = Vec::new();
        let mut blob_deletion_safe = true;
        // Record files of an older layout that are not rows (a migration
        // that never imported them, the marker then rewritten): not
        // artifacts, but maybe records the store still needs.
        let (left, first_left) = self.record_files_left()?;
        if left > 0 {
            blob_deletion_safe = false;
            notes.push(format!(
                "payload deletion skipped: {} holds {} record file(s) of an older layout that are not rows of index.db (e.g. {:?}); verify lists them: re-import or remove them, then run gc again",
                self.root_path.join(crate::store::RECORDS).display(),
                left,
                first_left.as_deref().unwrap_or("")
            ));
        }
        for (id_text, bytes) in self.index.record_rows(MAX_RECORD_BYTES)? {
            let Some(id) = canonical_id(&id_text) else {
                blob_deletion_safe = false;
                notes.push(format!(
                    "record row {id_text:?} kept and payload deletion skipped: its id is not an artifact id"
                ));
                continue;
            };
            let path = self.manifest_path(id);
            let parsed = match bytes {
                Ok(bytes) => parse_manifest(&bytes, &path, Some(id)),
                Err(why) => Err(crate::ArtifactError::ManifestInvalid { path, message: why }),
            };
            match parsed {
                Ok(m) => manifests.push(m),
                Err(e) => {
                    blob_deletion_safe = false;
                    notes.push(format!(
                        "record {id} kept and payload deletion skipped: {e}"
                    ));
                }
            }
        }

        // Expiry: the records go in one transaction.
        let mut expired = Vec::new();
        let mut deleted = Vec::new();
        let mut survivors = Vec::new();
        for m in manifests {
            match expiry_reason(&m, options.now) {
                Some(reason) => {
                    expired.push(Op::DeleteRecord {
                        id: m.artifact.artifact_id,
                    });
                    deleted.push(GcDeletion {
                        artifact_id: m.artifact.artifact_id,
                        content_hash: m.artifact.content_hash,
                        size_bytes: m.artifact.size_bytes,
                        created_at: m.created_at,
                        reason,
                    });
                }
                None => survivors.push(m),
            }
        }
        self.index.commit(expired)?;

        // Reference counts of what survives (bundle entries count too).
        let mut refs: HashMap<Sha256Digest, (u64, usize)> = HashMap::new();
        let mut per_record: BTreeMap<Uuid, Vec<(Sha256Digest, u64)>> = BTreeMap::new();
        for m in &survivors {
            let mut digests = vec![(m.artifact.content_hash, m.artifact.size_bytes)];
            if m.artifact.kind == ArtifactKind::Bundle {
                let id = m.artifact.artifact_id;
                match self
                    .read_blob(
                        &id.to_string(),
                        &m.artifact.content_hash,
                        m.artifact.size_bytes,
                    )
                    .and_then(|b| parse_index(&b, id))
                {
                    Ok(index) => {
                        digests.extend(index.entries.iter().map(|e| (e.content_hash, e.size_bytes)))
                    }
                    Err(e) => {
                        blob_deletion_safe = false;
                        notes.push(format!(
                            "bundle {id} unreadable ({e}); payload deletion skipped"
                        ));
                    }
                }
            }
            digests.sort();
            digests.dedup();
            for (d, size) in &digests {
                refs.entry(*d).or_insert((*size, 0)).1 += 1;
            }
            per_record.insert(m.artifact.artifact_id, digests);
        }
        let mut total: u64 = refs.values().map(|(size, _)| *size).sum();

        // Quota: oldest unpinned first.
        let mut quota_unmet = false;
        let mut evicted = Vec::new();
        if let Some(max) = options.max_total_bytes {
            let mut candidates: Vec<&ArtifactManifest> =
                survivors.iter().filter(|m| !m.pinned).collect();
            candidates.sort_by_key(|m| (m.created_at, m.artifact.artifact_id));
            let mut candidates = candidates.into_iter();
            while total > max {
                let Some(m) = candidates.next() else {
                    quota_unmet = true;
                    notes.push(format!(
                        "quota of {max} bytes not met: {total} bytes remain in pinned artifacts"
                    ));
                    break;
                };
                let before = total;
                evicted.push(Op::DeleteRecord {
                    id: m.artifact.artifact_id,
                });
                for (d, _) in per_record
                    .remove(&m.artifact.artifact_id)
                    .unwrap_or_default()
                {
                    if let Some(entry) = refs.get_mut(&d) {
                        entry.1 -= 1;
                        if entry.1 == 0 {
                            total -= entry.0;
                            refs.remove(&d);
                        }
                    }
                }
                deleted.push(GcDeletion {
                    artifact_id: m.artifact.artifact_id,
                    content_hash: m.artifact.content_hash,
                    size_bytes: m.artifact.size_bytes,
                    created_at: m.created_at,
                    reason: format!("quota: payloads took {before} bytes, over the quota of {max}; oldest unpinned artifact evicted first"),
                });
            }
        }

        self.index.commit(evicted)?;

        // Unreferenced payloads.
        let mut blobs_deleted = Vec::new();
        if blob_deletion_safe {
            blobs_deleted = self.old_remove_unreferenced_blobs(&refs)?;
        }
        let bytes_freed = blobs_deleted.iter().map(|(_, s)| *s).sum();

        let body = json!({
            "schema_version": "mex-gc-report-1.0",
            "now": options.now.to_string(),
            "max_total_bytes": options.max_total_bytes,
            "deleted": deleted.iter().map(|d| json!({
                "artifact_id": d.artifact_id.to_string(),
                "content_hash": d.content_hash.to_string(),
                "size_bytes": d.size_bytes,
                "created_at": d.created_at.to_string(),
                "reason": d.reason,
            })).collect::<Vec<_>>(),
            "payloads_deleted": blobs_deleted.iter().map(|(d, s)| json!({
                "content_hash": d.to_string(),
                "size_bytes": s,
                "reason": "no remaining record or bundle references it",
            })).collect::<Vec<_>>(),
            "bytes_freed": bytes_freed,
            "temp_entries_removed": temp_entries_removed,
            "temp_entries": temp_entries,
            "total_bytes_after": total,
            "quota_unmet": quota_unmet,
            "notes": notes,
        });
        let payload = mex_envelope::canonical::to_vec(&body)?;
        let mut put = PutOptions::new(ArtifactKind::Report, Classification::Low);
        put.media_type = "application/json".parse::<MediaType>().ok();
        put.retention_ttl_days = options.report_ttl_days;
        let got = self.store_blob(&mut &payload[..], "<gc report>", None, None)?;
        let report = self.write_record(got, Vec::new(), &put, false)?;
        Ok(OldGcReport {
            deleted,
            blobs_deleted,
            bytes_freed,
            temp_entries_removed,
            temp_entries,
            total_bytes_after: total,
            quota_unmet,
            notes,
            report,
        })
    }

    fn old_remove_unreferenced_blobs(
        &self,
        refs: &HashMap<Sha256Digest, (u64, usize)>,
    ) -> Result<Vec<(Sha256Digest, u64)>> {
        let blobs_path = self.root_path.join(BLOBS);
        let mut out = Vec::new();
        // Inline payloads, in one transaction (rows whose hash is not a
        // digest are left for verify to report).
        let mut gone = Vec::new();
        for (text, len) in self.index.inline_hashes()? {
            if let Ok(digest) = text.parse::<Sha256Digest>()
                && digest.to_hex() == text
                && !refs.contains_key(&digest)
            {
                gone.push(Op::DeleteInline { hash: digest });
                out.push((digest, len));
            }
        }
        self.index.commit(gone)?;
        for shard in self
            .blobs
            .entries()
            .map_err(|e| store_io("list", blobs_path.clone(), 0, e))?
        {
            let shard = shard.map_err(|e| store_io("list", blobs_path.clone(), 0, e))?;
            let shard_name = shard.file_name().to_string_lossy().into_owned();
            let Ok(shard_dir) = shard.open_dir() else {
                continue;
            };
            let mut removed_any = false;
            for entry in shard_dir
                .entries()
                .map_err(|e| store_io("list", blobs_path.join(&shard_name), 0, e))?
            {
                let entry =
                    entry.map_err(|e| store_io("list", blobs_path.join(&shard_name), 0, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(digest) = format!("{shard_name}{name}").parse::<Sha256Digest>() else {
                    continue;
                };
                if refs.contains_key(&digest) {
                    continue;
                }
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                let (_, file) = blob_location(&digest);
                shard_dir
                    .remove_file(&file)
                    .map_err(|e| store_io("delete payload", self.blob_path(&digest), 0, e))?;
                removed_any = true;
                out.push((digest, size));
            }
            if removed_any {
                fsync_dir(&shard_dir, &blobs_path.join(&shard_name))?;
            }
        }
        out.sort();
        Ok(out)
    }
}

/// What a store holds apart from gc report `report`: record ids, inline
/// payload hashes, payload file names.
fn contents(store: &ArtifactStore, report: &ArtifactHandle) -> [Vec<String>; 3] {
    let id = report.artifact_id.hyphenated().to_string();
    let hash = report.content_hash.to_hex();
    let mut records = store.index.record_ids().unwrap();
    records.retain(|r| *r != id);
    let mut inline: Vec<String> = store
        .index
        .inline_hashes()
        .unwrap()
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    inline.retain(|h| *h != hash);
    let mut files = Vec::new();
    for shard in std::fs::read_dir(store.root().join(BLOBS)).unwrap() {
        let shard = shard.unwrap();
        for f in std::fs::read_dir(shard.path()).unwrap() {
            let name = format!(
                "{}{}",
                shard.file_name().to_string_lossy(),
                f.unwrap().file_name().to_string_lossy()
            );
            if name != hash {
                files.push(name);
            }
        }
    }
    files.sort();
    [records, inline, files]
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// The bounded gc and the old one, each on its own copy of a store of
/// 40,000 records (expiry, a quota evicting thousands, payloads shared by
/// survivors and doomed records, bundles, then damaged rows): the same
/// records and payloads go, the reports agree (the bounded one lists the
/// first `REPORT_LIST_MAX` of each list and counts all), and no more than a
/// chunk of rows was ever held at once.
#[test]
fn bounded_gc_agrees_with_the_old_gc_on_a_large_store() {
    use crate::scratch::{CHUNK_ROWS, MOST_ROWS_HELD};
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("old"), dir.path().join("new"));
    crate::bulk::fill(&a, 40_000, 1);
    {
        let store = ArtifactStore::at(&a).unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join("large"), vec![3u8; 20_000]).unwrap();
        std::fs::write(tree.join("small"), b"bulk 1 shared 7").unwrap();
        let doomed = PutOptions {
            retention_ttl_days: Some(1),
            ..PutOptions::default()
        };
        for put in [PutOptions::default(), doomed.clone()] {
            let options = crate::BundleOptions {
                put,
                normalize_line_endings: false,
            };
            store.put_dir(&tree, &options).unwrap();
        }
        std::fs::write(tree.join("other"), b"only in a doomed bundle").unwrap();
        let options = crate::BundleOptions {
            put: doomed,
            normalize_line_endings: false,
        };
        store.put_dir(&tree, &options).unwrap();
    }
    copy_dir(&a, &b);
    let ahead = UtcTimestamp::from_unix_millis(UtcTimestamp::now().unix_millis() + 10 * 86_400_000)
        .unwrap();
    let options = GcOptions {
        now: ahead,
        max_total_bytes: Some(150_000),
        report_ttl_days: None,
    };
    let (old_store, new_store) = (
        ArtifactStore::at(&a).unwrap(),
        ArtifactStore::at(&b).unwrap(),
    );
    let old = old_store.old_gc_with(&options).unwrap();
    MOST_ROWS_HELD.store(0, Relaxed);
    let new = new_store.gc_with(&options).unwrap();
    let most = MOST_ROWS_HELD.load(Relaxed);
    assert!(most > 0 && most <= CHUNK_ROWS, "{most} rows held at once");
    let cap = crate::REPORT_LIST_MAX;
    assert!(
        old.deleted.len() > cap && old.blobs_deleted.len() > cap,
        "the lists must outgrow the cap: {} records, {} payloads deleted",
        old.deleted.len(),
        old.blobs_deleted.len()
    );
    assert!(
        old.deleted.iter().any(|d| d.reason.starts_with("quota"))
            && old.deleted.iter().any(|d| d.reason.starts_with("expired")),
        "both expiry and the quota must delete records"
    );
    assert_eq!(new.deleted_count, old.deleted.len() as u64);
    assert_eq!(new.deleted, old.deleted[..cap]);
    assert_eq!(new.blobs_deleted_count, old.blobs_deleted.len() as u64);
    assert_eq!(new.blobs_deleted, old.blobs_deleted[..cap]);
    assert_eq!(new.bytes_freed, old.bytes_freed);
    assert_eq!(new.total_bytes_after, old.total_bytes_after);
    assert_eq!(new.quota_unmet, old.quota_unmet);
    assert_eq!(new.notes, old.notes);
    assert_eq!(new.notes_omitted, 0);
    assert_eq!(
        (new.temp_entries_removed, &new.temp_entries),
        (old.temp_entries_removed, &old.temp_entries)
    );
    assert_eq!(
        contents(&new_store, &new.report),
        contents(&old_store, &old.report)
    );
    assert!(new_store.verify().unwrap().is_ok());

    // Damaged rows in both: payload deletion is skipped with the same notes.
    for root in [&a, &b] {
        let db = rusqlite::Connection::open(root.join("index.db")).unwrap();
        db.execute_batch(
            "INSERT INTO records (id, manifest) VALUES ('not-an-id', X'7b7d');
             INSERT INTO records (id, manifest) VALUES ('00000000-0000-4000-8000-000000000001', X'7b');",
        )
        .unwrap();
    }
    let options = GcOptions::at(ahead);
    let old_again = old_store.old_gc_with(&options).unwrap();
    let new_again = new_store.gc_with(&options).unwrap();
    assert_eq!(old_again.notes.len(), 2, "{:?}", old_again.notes);
    let at_b = |notes: &[String]| -> Vec<String> {
        let (a, b) = (a.display().to_string(), b.display().to_string());
        notes.iter().map(|n| n.replace(&a, &b)).collect()
    };
    assert_eq!(new_again.notes, at_b(&old_again.notes));
    assert_eq!(new_again.deleted, old_again.deleted);
    assert!(new_again.blobs_deleted.is_empty() && old_again.blobs_deleted.is_empty());
}

/// Quota eviction when every candidate was created at the same instant
/// (ties broken by id), with pinned records and bundles whose entries are
/// shared with survivors: the bounded gc evicts exactly what the old one
/// did, in the same order, and deletes the same payloads.
#[test]
fn bounded_quota_agrees_with_the_old_one_on_ties_in_created_at() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("old"), dir.path().join("new"));
    crate::bulk::fill(&a, 3_000, 7);
    {
        let store = ArtifactStore::at(&a).unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join("large"), vec![8u8; 20_000]).unwrap();
        std::fs::write(tree.join("small"), b"bulk 7 shared 5").unwrap();
        for _ in 0..3 {
            store
                .put_dir(&tree, &crate::BundleOptions::default())
                .unwrap();
        }
    }
    // Every record created at one instant, none expiring.
    let tie = UtcTimestamp::from_unix_millis(1_700_000_000_000).unwrap();
    let mut db = rusqlite::Connection::open(a.join("index.db")).unwrap();
    let tx = db.transaction().unwrap();
    let rows: Vec<(String, Vec<u8>)> = tx
        .prepare("SELECT id, manifest FROM records")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    for (id, bytes) in rows {
        let mut m: ArtifactManifest = serde_json::from_slice(&bytes).unwrap();
        m.created_at = tie;
        m.artifact.retention_ttl_days = None;
        let mut out = serde_json::to_vec_pretty(&m).unwrap();
        out.push(b'\n');
        tx.execute(
            "UPDATE records SET manifest = ?2 WHERE id = ?1",
            rusqlite::params![id, out],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    drop(db);
    copy_dir(&a, &b);
    let options = GcOptions {
        now: UtcTimestamp::now(),
        max_total_bytes: Some(40_000),
        report_ttl_days: None,
    };
    let (old_store, new_store) = (
        ArtifactStore::at(&a).unwrap(),
        ArtifactStore::at(&b).unwrap(),
    );
    let old = old_store.old_gc_with(&options).unwrap();
    let new = new_store.gc_with(&options).unwrap();
    assert!(
        old.deleted.len() > 100 && old.deleted.iter().all(|d| d.reason.starts_with("quota")),
        "{} deleted",
        old.deleted.len()
    );
    let cap = crate::REPORT_LIST_MAX.min(old.deleted.len());
    assert_eq!(new.deleted_count, old.deleted.len() as u64);
    assert_eq!(new.deleted, old.deleted[..cap]);
    assert_eq!(new.blobs_deleted_count, old.blobs_deleted.len() as u64);
    assert_eq!(new.bytes_freed, old.bytes_freed);
    assert_eq!(new.total_bytes_after, old.total_bytes_after);
    assert_eq!(new.quota_unmet, old.quota_unmet);
    assert_eq!(
        contents(&new_store, &new.report),
        contents(&old_store, &old.report)
    );
    assert!(new_store.verify().unwrap().is_ok());
}
