//! Retention: expiry, size quota and the gc report.

use std::collections::{BTreeMap, HashMap};

use mex_envelope::{
    ArtifactHandle, ArtifactKind, ArtifactManifest, Classification, MediaType, Sha256Digest,
    UtcTimestamp,
};
use serde_json::json;
use uuid::Uuid;

use crate::bundle::parse_index;
use crate::error::{Result, store_io};
use crate::index::Op;
use crate::store::{
    ArtifactStore, BLOBS, MAX_RECORD_BYTES, PutOptions, TMP, blob_location, canonical_id,
    fsync_dir, parse_manifest,
};

const DAY_MS: i64 = 86_400_000;

/// Options for [`ArtifactStore::gc_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcOptions {
    /// The time against which expiry is judged.
    pub now: UtcTimestamp,
    /// Evict the oldest unpinned artifacts until the payloads take at most
    /// this many bytes. Pinned artifacts are never evicted, even if the quota
    /// then cannot be met.
    pub max_total_bytes: Option<u64>,
    /// Retention of the gc-report artifact itself.
    pub report_ttl_days: Option<u32>,
}

impl GcOptions {
    /// Expiry only, at `now`.
    pub fn at(now: UtcTimestamp) -> Self {
        Self {
            now,
            max_total_bytes: None,
            report_ttl_days: None,
        }
    }
}

/// One artifact record removed by gc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcDeletion {
    /// The artifact.
    pub artifact_id: Uuid,
    /// Its content hash.
    pub content_hash: Sha256Digest,
    /// Its size.
    pub size_bytes: u64,
    /// When it was created.
    pub created_at: UtcTimestamp,
    /// Why it was removed.
    pub reason: String,
}

/// What gc did. The same information is stored as the report artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Records removed, with reasons.
    pub deleted: Vec<GcDeletion>,
    /// Payloads removed because nothing referenced them any more.
    pub blobs_deleted: Vec<(Sha256Digest, u64)>,
    /// Bytes of payload freed.
    pub bytes_freed: u64,
    /// Leftovers of interrupted puts removed from `tmp/`.
    pub temp_entries_removed: usize,
    /// Their names (in `tmp/`), sorted.
    pub temp_entries: Vec<String>,
    /// Payload bytes still referenced after gc.
    pub total_bytes_after: u64,
    /// Whether a quota was asked for and could not be met (only pinned or
    /// unreadable artifacts were left).
    pub quota_unmet: bool,
    /// Notes, e.g. why payload deletion was skipped.
    pub notes: Vec<String>,
    /// The gc-report artifact (kind `report`, JSON).
    pub report: ArtifactHandle,
}

fn expiry_reason(m: &ArtifactManifest, now: UtcTimestamp) -> Option<String> {
    if m.pinned {
        return None;
    }
    let ttl = m.artifact.retention_ttl_days?;
    let expires = m
        .created_at
        .unix_millis()
        .saturating_add(i64::from(ttl).saturating_mul(DAY_MS));
    (expires < now.unix_millis()).then(|| {
        let at = UtcTimestamp::from_unix_millis(expires).map_or_else(|| expires.to_string(), |t| t.to_string());
        format!("expired: created {} with a retention of {ttl} days, so it expired at {at}, before {now}; not pinned", m.created_at)
    })
}

impl ArtifactStore {
    /// Delete expired, unpinned artifacts and unreferenced payloads as of
    /// `now`, and write a gc-report artifact.
    pub fn gc(&self, now: UtcTimestamp) -> Result<GcReport> {
        self.gc_with(&GcOptions::at(now))
    }

    /// Delete expired, unpinned artifacts, then (with a quota) the oldest
    /// unpinned artifacts until the quota holds, then every payload no record
    /// references and every leftover in `tmp/`; finally store a gc-report
    /// artifact listing what was deleted and why. Holds the exclusive store
    /// lock: puts wait meanwhile.
    pub fn gc_with(&self, options: &GcOptions) -> Result<GcReport> {
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
        let left = self.record_files_left()?;
        if !left.is_empty() {
            blob_deletion_safe = false;
            notes.push(format!(
                "payload deletion skipped: {} holds {} record file(s) of an older layout that are not rows of index.db (e.g. {:?}); verify lists them: re-import or remove them, then run gc again",
                self.root_path.join(crate::store::RECORDS).display(),
                left.len(),
                left.first().map_or("", String::as_str)
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
            blobs_deleted = self.remove_unreferenced_blobs(&refs)?;
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
        Ok(GcReport {
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

    /// Remove everything in `tmp/` (only called under the exclusive lock,
    /// when no put is in flight); returns the names removed, sorted.
    pub(crate) fn clean_tmp(&self) -> Result<Vec<String>> {
        let path = self.root_path.join(TMP);
        let mut removed_names = Vec::new();
        for entry in self
            .tmp
            .entries()
            .map_err(|e| store_io("list", path.clone(), 0, e))?
        {
            let entry = entry.map_err(|e| store_io("list", path.clone(), 0, e))?;
            let name = entry.file_name();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let removed = if is_dir {
                self.tmp.remove_dir_all(&name)
            } else {
                self.tmp.remove_file(&name)
            };
            removed.map_err(|e| store_io("delete", path.join(&name), 0, e))?;
            removed_names.push(name.to_string_lossy().into_owned());
        }
        removed_names.sort();
        Ok(removed_names)
    }

    fn remove_unreferenced_blobs(
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
