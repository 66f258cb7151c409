//! Retention: expiry, size quota and the gc report.

use mex_envelope::{
    ArtifactHandle, ArtifactKind, ArtifactManifest, Classification, MediaType, Sha256Digest,
    UtcTimestamp,
};
use rusqlite::{OptionalExtension as _, params};
use serde_json::json;
use uuid::Uuid;

use crate::bundle::parse_index;
use crate::error::{Result, store_io};
use crate::index::Op;
use crate::scratch::{CHUNK_BYTES, CHUNK_ROWS, Capped, Scratch, Smallest};
use crate::store::{
    ArtifactStore, BLOBS, MAX_RECORD_BYTES, PutOptions, TMP, blob_at, blob_location, canonical_id,
    fsync_dir, parse_manifest,
};

#[cfg(test)]
mod oracle;

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
///
/// Its lists are bounded: each holds at most [`crate::REPORT_LIST_MAX`]
/// items verbatim, and the counts beside them (`deleted_count`,
/// `blobs_deleted_count`, `temp_entries_removed`, `notes_omitted`) cover
/// everything gc did, so a gc of millions of records reports in bounded
/// memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Records removed, with reasons: the first [`crate::REPORT_LIST_MAX`]
    /// in the order gc removed them (expired ones by id, then quota
    /// evictions oldest first).
    pub deleted: Vec<GcDeletion>,
    /// How many records were removed in all.
    pub deleted_count: u64,
    /// Payloads removed because nothing referenced them any more: the
    /// [`crate::REPORT_LIST_MAX`] first by digest.
    pub blobs_deleted: Vec<(Sha256Digest, u64)>,
    /// How many payloads were removed in all.
    pub blobs_deleted_count: u64,
    /// Bytes of payload freed (all of them).
    pub bytes_freed: u64,
    /// Leftovers of interrupted puts removed from `tmp/`.
    pub temp_entries_removed: usize,
    /// Their names (in `tmp/`): the [`crate::REPORT_LIST_MAX`] first, sorted.
    pub temp_entries: Vec<String>,
    /// Payload bytes still referenced after gc.
    pub total_bytes_after: u64,
    /// Whether a quota was asked for and could not be met (only pinned or
    /// unreadable artifacts were left).
    pub quota_unmet: bool,
    /// Notes, e.g. why payload deletion was skipped: the first
    /// [`crate::REPORT_LIST_MAX`].
    pub notes: Vec<String>,
    /// Notes beyond those listed.
    pub notes_omitted: u64,
    /// The gc-report artifact (kind `report`, JSON).
    pub report: ArtifactHandle,
}

/// gc's scratch tables: the reference count and size of every payload a
/// surviving record references (`refs`), and, with a quota, the unpinned
/// survivors (`cands`, by age) and what each references (`cand_refs`);
/// `gone` lists the payloads deleted.
const GC_SCHEMA: &str = "
    CREATE TABLE refs (hash TEXT PRIMARY KEY, size INTEGER NOT NULL, n INTEGER NOT NULL)
        WITHOUT ROWID;
    CREATE TABLE cands (id TEXT PRIMARY KEY, created INTEGER NOT NULL,
                        created_text TEXT NOT NULL, hash TEXT NOT NULL, size INTEGER NOT NULL)
        WITHOUT ROWID;
    CREATE INDEX cands_by_age ON cands (created, id);
    CREATE TABLE cand_refs (id TEXT NOT NULL, hash TEXT NOT NULL, size INTEGER NOT NULL,
                            PRIMARY KEY (id, hash, size)) WITHOUT ROWID;
    CREATE TABLE gone (hash TEXT NOT NULL, size INTEGER NOT NULL);
";

/// A size as SQLite's signed integer, bit for bit (and back with `as u64`).
fn sql_size(size: u64) -> i64 {
    size as i64
}

/// One unpinned survivor, the next to evict under a quota.
struct Candidate {
    id: Uuid,
    id_text: String,
    created: i64,
    created_at: UtcTimestamp,
    content_hash: Sha256Digest,
    size_bytes: u64,
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
    ///
    /// Memory stays bounded whatever the store holds: records are read in
    /// chunks (each expired chunk deleted in one transaction), and the
    /// reference counts live in a scratch database in `tmp/` (see
    /// `scratch.rs`), as do the payloads deleted until the report lists the
    /// first of them.
    pub fn gc_with(&self, options: &GcOptions) -> Result<GcReport> {
        let _lock = self.lock(true)?;
        let mut notes = Capped::default();
        let temp = self.clean_tmp_bounded()?;
        let temp_entries_removed = temp.total;
        let temp_entries = temp.into_sorted();
        // Record files a migration imported and did not get to remove.
        self.remove_imported_records(&mut crate::migrate::Steps::new(&mut |_| {}))?;
        let scratch = Scratch::create(&self.root_path, &self.tmp, "gc", GC_SCHEMA)?;
        let quota = options.max_total_bytes;

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

        // A walk by key reads every row only if the key is unique (an
        // altered table with two rows of one id would have it step over the
        // second at a chunk boundary, and its payloads go).
        if !self.index.record_ids_unique()? {
            blob_deletion_safe = false;
            notes.push(format!(
                "payload deletion skipped: index.db's records table has no unique key on its id column (the table was altered), so a walk by id can miss rows; restore {} from a backup",
                self.index.path().display()
            ));
        }

        // Every record, chunk by chunk: the expired ones go (one
        // transaction per chunk), the survivors' references are counted.
        let mut deleted: Capped<GcDeletion> = Capped::default();
        let mut total: u64 = 0;
        let mut rows_read: u64 = 0;
        let mut expired_count: u64 = 0;
        let mut after = None;
        loop {
            let rows = self.index.record_rows_after(
                after.as_ref(),
                CHUNK_ROWS,
                CHUNK_BYTES,
                MAX_RECORD_BYTES,
            )?;
            crate::scratch::holding(rows.len());
            let Some((last, _, _)) = rows.last() else {
                break;
            };
            after = Some(last.clone());
            let mut expired = Vec::new();
            for (_, id_text, bytes) in rows {
                rows_read += 1;
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
                let m = match parsed {
                    Ok(m) => m,
                    Err(e) => {
                        blob_deletion_safe = false;
                        notes.push(format!(
                            "record {id} kept and payload deletion skipped: {e}"
                        ));
                        continue;
                    }
                };
                match expiry_reason(&m, options.now) {
                    Some(reason) => {
                        expired.push(Op::DeleteRecord { id });
                        deleted.push(GcDeletion {
                            artifact_id: id,
                            content_hash: m.artifact.content_hash,
                            size_bytes: m.artifact.size_bytes,
                            created_at: m.created_at,
                            reason,
                        });
                    }
                    None => {
                        let safe = self.count_references(
                            &scratch,
                            &m,
                            quota.is_some(),
                            &mut total,
                            &mut notes,
                        )?;
                        blob_deletion_safe &= safe;
                    }
                }
            }
            expired_count += expired.len() as u64;
            self.index.commit(expired)?;
        }
        // Nobody else writes under the exclusive lock: every row left plus
        // every row deleted is every row read, unless the key column is not
        // unique (an altered table), which a walk by key would skip past.
        let rows_left = self.index.record_count()?;
        if rows_left + expired_count != rows_read {
            blob_deletion_safe = false;
            notes.push(format!(
                "payload deletion skipped: index.db's records table held {} rows but a walk by id read {rows_read} (its id column is not unique: the table was altered); restore index.db from a backup",
                rows_left + expired_count
            ));
        }

        // Quota: oldest unpinned first.
        let mut quota_unmet = false;
        if let Some(max) = quota {
            let mut after: Option<(i64, String)> = None;
            'quota: while total > max {
                let chunk = self.candidates_after(&scratch, after.as_ref())?;
                let Some(last) = chunk.last() else {
                    quota_unmet = true;
                    notes.push(format!(
                        "quota of {max} bytes not met: {total} bytes remain in pinned artifacts"
                    ));
                    break;
                };
                after = Some((last.created, last.id_text.clone()));
                let mut evicted = Vec::new();
                for c in chunk {
                    if total <= max {
                        self.index.commit(evicted)?;
                        break 'quota;
                    }
                    let before = total;
                    evicted.push(Op::DeleteRecord { id: c.id });
                    total = total.saturating_sub(self.release_references(&scratch, &c.id_text)?);
                    deleted.push(GcDeletion {
                        artifact_id: c.id,
                        content_hash: c.content_hash,
                        size_bytes: c.size_bytes,
                        created_at: c.created_at,
                        reason: format!("quota: payloads took {before} bytes, over the quota of {max}; oldest unpinned artifact evicted first"),
                    });
                }
                self.index.commit(evicted)?;
            }
        }

        // Unreferenced payloads.
        let mut blobs_deleted_count = 0;
        let mut bytes_freed: u64 = 0;
        if blob_deletion_safe {
            (blobs_deleted_count, bytes_freed) = self.remove_unreferenced_blobs(&scratch)?;
        }
        let blobs_deleted = scratch.with("list the payloads deleted in", |c| {
            let mut stmt = c.prepare("SELECT hash, size FROM gone ORDER BY hash, size LIMIT ?1")?;
            let rows = stmt.query_map([crate::REPORT_LIST_MAX as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (hash, size) = row?;
                if let Ok(d) = hash.parse::<Sha256Digest>() {
                    out.push((d, size));
                }
            }
            Ok(out)
        })?;
        drop(scratch);

        let body = json!({
            "schema_version": "mex-gc-report-1.0",
            "now": options.now.to_string(),
            "max_total_bytes": options.max_total_bytes,
            "deleted": deleted.items.iter().map(|d| json!({
                "artifact_id": d.artifact_id.to_string(),
                "content_hash": d.content_hash.to_string(),
                "size_bytes": d.size_bytes,
                "created_at": d.created_at.to_string(),
                "reason": d.reason,
            })).collect::<Vec<_>>(),
            "deleted_count": deleted.total,
            "payloads_deleted": blobs_deleted.iter().map(|(d, s)| json!({
                "content_hash": d.to_string(),
                "size_bytes": s,
                "reason": "no remaining record or bundle references it",
            })).collect::<Vec<_>>(),
            "payloads_deleted_count": blobs_deleted_count,
            "bytes_freed": bytes_freed,
            "temp_entries_removed": temp_entries_removed,
            "temp_entries": temp_entries,
            "total_bytes_after": total,
            "quota_unmet": quota_unmet,
            "notes": notes.items,
            "notes_omitted": notes.omitted(),
        });
        let payload = mex_envelope::canonical::to_vec(&body)?;
        drop(body);
        let mut put = PutOptions::new(ArtifactKind::Report, Classification::Low);
        put.media_type = "application/json".parse::<MediaType>().ok();
        put.retention_ttl_days = options.report_ttl_days;
        let got = self.store_blob(&mut &payload[..], "<gc report>", None, None)?;
        let report = self.write_record(got, Vec::new(), &put, false)?;
        let notes_omitted = notes.omitted();
        Ok(GcReport {
            deleted_count: deleted.total,
            deleted: deleted.items,
            blobs_deleted,
            blobs_deleted_count,
            bytes_freed,
            temp_entries_removed,
            temp_entries,
            total_bytes_after: total,
            quota_unmet,
            notes: notes.items,
            notes_omitted,
            report,
        })
    }

    /// Count the references of surviving record `m` (its payload, and a
    /// bundle's entries) in the scratch `refs`, adding each payload's size
    /// to `total` the first time it is referenced; with a quota, note it as
    /// a candidate for eviction when unpinned. Returns whether its
    /// references are all known (an unreadable bundle's are not).
    fn count_references(
        &self,
        scratch: &Scratch<'_>,
        m: &ArtifactManifest,
        quota: bool,
        total: &mut u64,
        notes: &mut Capped<String>,
    ) -> Result<bool> {
        let mut known = true;
        let id = m.artifact.artifact_id;
        let mut digests = vec![(m.artifact.content_hash, m.artifact.size_bytes)];
        if m.artifact.kind == ArtifactKind::Bundle {
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
                    known = false;
                    notes.push(format!(
                        "bundle {id} unreadable ({e}); payload deletion skipped"
                    ));
                }
            }
        }
        digests.sort();
        digests.dedup();
        let candidate = quota && !m.pinned;
        let id_text = id.hyphenated().to_string();
        scratch.with("count references in", |c| {
            if candidate {
                c.prepare_cached(
                    "INSERT INTO cands (id, created, created_text, hash, size)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    id_text,
                    m.created_at.unix_millis(),
                    m.created_at.to_string(),
                    m.artifact.content_hash.to_hex(),
                    sql_size(m.artifact.size_bytes)
                ])?;
            }
            for (d, size) in &digests {
                let n: i64 = c
                    .prepare_cached(
                        "INSERT INTO refs (hash, size, n) VALUES (?1, ?2, 1)
                         ON CONFLICT (hash) DO UPDATE SET n = n + 1 RETURNING n",
                    )?
                    .query_row(params![d.to_hex(), sql_size(*size)], |r| r.get(0))?;
                if n == 1 {
                    *total = total.saturating_add(*size);
                }
                if candidate {
                    c.prepare_cached("INSERT INTO cand_refs (id, hash, size) VALUES (?1, ?2, ?3)")?
                        .execute(params![id_text, d.to_hex(), sql_size(*size)])?;
                }
            }
            Ok(())
        })?;
        Ok(known)
    }

    /// The next unpinned survivors by age after `after` (created, id).
    fn candidates_after(
        &self,
        scratch: &Scratch<'_>,
        after: Option<&(i64, String)>,
    ) -> Result<Vec<Candidate>> {
        let rows = scratch.with("list eviction candidates in", |c| {
            let mut stmt = match after {
                Some(_) => c.prepare_cached(
                    "SELECT id, created, created_text, hash, size FROM cands
                     WHERE (created, id) > (?1, ?2) ORDER BY created, id LIMIT ?3",
                )?,
                None => c.prepare_cached(
                    "SELECT id, created, created_text, hash, size FROM cands
                     WHERE ?1 IS NULL AND ?2 IS NULL ORDER BY created, id LIMIT ?3",
                )?,
            };
            let rows = stmt.query_map(
                params![after.map(|a| a.0), after.map(|a| &a.1), CHUNK_ROWS as i64],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)? as u64,
                    ))
                },
            )?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        crate::scratch::holding(rows.len());
        let mut out = Vec::with_capacity(rows.len());
        for (id_text, created, created_text, hash, size_bytes) in rows {
            // Written by this gc from parsed values: they parse back.
            let (Some(id), Ok(content_hash)) = (canonical_id(&id_text), hash.parse()) else {
                continue;
            };
            let Some(created_at) = created_text
                .parse()
                .ok()
                .or_else(|| UtcTimestamp::from_unix_millis(created))
            else {
                continue;
            };
            out.push(Candidate {
                id,
                id_text,
                created,
                created_at,
                content_hash,
                size_bytes,
            });
        }
        Ok(out)
    }

    /// Drop evicted record `id_text`'s references; returns the bytes of the
    /// payloads nothing references any more.
    fn release_references(&self, scratch: &Scratch<'_>, id_text: &str) -> Result<u64> {
        scratch.with("release references in", |c| {
            let hashes = c
                .prepare_cached("SELECT hash FROM cand_refs WHERE id = ?1")?
                .query_map([id_text], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut freed: u64 = 0;
            for hash in hashes {
                let left = c
                    .prepare_cached("UPDATE refs SET n = n - 1 WHERE hash = ?1 RETURNING n, size")?
                    .query_row([&hash], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
                    })
                    .optional()?;
                if let Some((0, size)) = left {
                    freed = freed.saturating_add(size);
                    c.prepare_cached("DELETE FROM refs WHERE hash = ?1")?
                        .execute([&hash])?;
                }
            }
            c.prepare_cached("DELETE FROM cand_refs WHERE id = ?1")?
                .execute([id_text])?;
            Ok(freed)
        })
    }

    /// Whether a surviving record references `digest`.
    fn referenced(scratch: &Scratch<'_>, digest: &Sha256Digest) -> Result<bool> {
        scratch.with("look up references in", |c| {
            c.prepare_cached("SELECT 1 FROM refs WHERE hash = ?1")?
                .query_row([digest.to_hex()], |_| Ok(()))
                .optional()
                .map(|found| found.is_some())
        })
    }

    /// Note a deleted payload for the report.
    fn gone(scratch: &Scratch<'_>, digest: &Sha256Digest, size: u64) -> Result<()> {
        scratch.with("note a deleted payload in", |c| {
            c.prepare_cached("INSERT INTO gone (hash, size) VALUES (?1, ?2)")?
                .execute(params![digest.to_hex(), sql_size(size)])
                .map(drop)
        })
    }

    /// Remove everything in `tmp/` (only called under the exclusive lock,
    /// when no put is in flight); returns the names removed, sorted.
    pub(crate) fn clean_tmp(&self) -> Result<Vec<String>> {
        self.clean_tmp_bounded().map(Smallest::into_sorted)
    }

    /// [`ArtifactStore::clean_tmp`], keeping only the first names (sorted)
    /// and counting them all.
    fn clean_tmp_bounded(&self) -> Result<Smallest<String>> {
        let path = self.root_path.join(TMP);
        let mut removed_names = Smallest::default();
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
        Ok(removed_names)
    }

    /// Delete every payload (inline row or file) that no surviving record
    /// references, noting each in the scratch `gone`; returns how many and
    /// their bytes.
    fn remove_unreferenced_blobs(&self, scratch: &Scratch<'_>) -> Result<(u64, u64)> {
        let blobs_path = self.root_path.join(BLOBS);
        let (mut count, mut bytes) = (0u64, 0u64);
        // Inline payloads, a transaction per chunk (rows whose hash is not
        // a digest are left for verify to report).
        let mut after = None;
        loop {
            let rows = self.index.inline_hashes_after(after.as_ref(), CHUNK_ROWS)?;
            crate::scratch::holding(rows.len());
            let Some((last, _, _)) = rows.last() else {
                break;
            };
            after = Some(last.clone());
            let mut gone = Vec::new();
            for (_, text, len) in rows {
                if let Ok(digest) = text.parse::<Sha256Digest>()
                    && digest.to_hex() == text
                    && !Self::referenced(scratch, &digest)?
                {
                    gone.push(Op::DeleteInline { hash: digest });
                    Self::gone(scratch, &digest, len)?;
                    count += 1;
                    bytes = bytes.saturating_add(len);
                }
            }
            self.index.commit(gone)?;
        }
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
                // Anything that is not a payload's file (another name, a
                // directory) is left for verify to report.
                let Some(digest) = blob_at(&shard_name, &name) else {
                    continue;
                };
                if entry.file_type().is_ok_and(|t| t.is_dir())
                    || Self::referenced(scratch, &digest)?
                {
                    continue;
                }
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                let (_, file) = blob_location(&digest);
                shard_dir
                    .remove_file(&file)
                    .map_err(|e| store_io("delete payload", self.blob_path(&digest), 0, e))?;
                removed_any = true;
                Self::gone(scratch, &digest, size)?;
                count += 1;
                bytes = bytes.saturating_add(size);
            }
            if removed_any {
                fsync_dir(&shard_dir, &blobs_path.join(&shard_name))?;
            }
        }
        Ok((count, bytes))
    }
}
