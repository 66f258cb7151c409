//! The `verify` walk over the whole store.

use std::io;
use std::path::PathBuf;

use cap_std::fs::OpenOptionsExt as _;
use mex_envelope::{ArtifactKind, ArtifactManifest, Sha256Digest};
use rusqlite::{OptionalExtension as _, params};
use uuid::Uuid;

use crate::bundle::parse_index;
use crate::error::{Result, store_io};
use crate::index::{INDEX, INLINE_MAX};
use crate::ingest;
use crate::scratch::{CHUNK_BYTES, CHUNK_ROWS, Scratch, Smallest};
use crate::store::{
    ArtifactStore, BLOBS, MAX_RECORD_BYTES, RECORDS, canonical_id, parse_manifest, record_id,
};

#[cfg(test)]
mod oracle;

/// What kind of problem `verify` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A sidecar manifest is missing, unreadable or invalid.
    ManifestInvalid,
    /// A record's payload file is missing.
    PayloadMissing,
    /// A payload has the wrong size.
    SizeMismatch,
    /// A payload has the right size but the wrong hash.
    HashMismatch,
    /// A bundle's index is not a canonical bundle index.
    BundleInvalid,
    /// A file in the store that does not belong there.
    Stray,
    /// A payload could not be read.
    Unreadable,
}

/// One problem found by `verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The artifact concerned, if a record is.
    pub artifact_id: Option<Uuid>,
    /// The file concerned.
    pub path: PathBuf,
    /// What kind of problem.
    pub kind: ProblemKind,
    /// What is wrong and what to do.
    pub message: String,
}

/// The outcome of a `verify` walk.
///
/// Bounded whatever the store holds: `problems` lists at most
/// [`crate::REPORT_LIST_MAX`] problems verbatim, in the order found, and
/// `problems_omitted` counts the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records examined.
    pub records: usize,
    /// Payload files hashed.
    pub blobs: usize,
    /// Bytes hashed.
    pub bytes_hashed: u64,
    /// The problems found (the first [`crate::REPORT_LIST_MAX`]); empty
    /// when the store is sound.
    pub problems: Vec<Problem>,
    /// Problems found beyond those listed.
    pub problems_omitted: u64,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty() && self.problems_omitted == 0
    }

    /// Every problem found, listed or not.
    pub fn problem_count(&self) -> u64 {
        self.problems.len() as u64 + self.problems_omitted
    }

    fn push(&mut self, problem: Problem) {
        if self.problems.len() < crate::REPORT_LIST_MAX {
            self.problems.push(problem);
        } else {
            self.problems_omitted += 1;
        }
    }
}

#[derive(Debug, Clone)]
enum BlobState {
    /// Content matches the name; size.
    Good(u64),
    /// An inline row whose content matches its hash; size.
    Inline(u64),
    /// Content does not match: actual digest and size.
    Bad(Sha256Digest, u64),
    /// Could not be read.
    Unreadable(String),
}

/// Column values of a [`BlobState`] in the scratch tables: state, size,
/// actual digest, error.
const GOOD: i64 = 0;
const INLINE: i64 = 1;
const BAD: i64 = 2;
const UNREADABLE: i64 = 3;

impl BlobState {
    fn columns(&self) -> (i64, i64, Option<String>, Option<&str>) {
        match self {
            Self::Good(size) => (GOOD, *size as i64, None, None),
            Self::Inline(size) => (INLINE, *size as i64, None, None),
            Self::Bad(actual, size) => (BAD, *size as i64, Some(actual.to_hex()), None),
            Self::Unreadable(e) => (UNREADABLE, 0, None, Some(e)),
        }
    }

    /// From `state, size, actual, err` columns starting at `first`.
    fn from_row(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Self> {
        let size = r.get::<_, i64>(first + 1)? as u64;
        Ok(match r.get::<_, i64>(first)? {
            GOOD => Self::Good(size),
            INLINE => Self::Inline(size),
            BAD => match r.get::<_, Option<String>>(first + 2)?.map(|a| a.parse()) {
                Some(Ok(actual)) => Self::Bad(actual, size),
                _ => Self::Unreadable("its digest could not be noted".to_owned()),
            },
            _ => Self::Unreadable(r.get::<_, Option<String>>(first + 3)?.unwrap_or_default()),
        })
    }
}

/// verify's scratch tables: the state of every payload file (`blobs`,
/// then every inline row's too, which stands for its digest), the inline
/// rows' states while they are gathered (`inline`), and every digest a
/// record or bundle references (`referenced`).
const VERIFY_SCHEMA: &str = "
    CREATE TABLE blobs (hash TEXT PRIMARY KEY, state INTEGER NOT NULL, size INTEGER NOT NULL,
                        actual TEXT, err TEXT) WITHOUT ROWID;
    CREATE TABLE inline (hash TEXT PRIMARY KEY, state INTEGER NOT NULL, size INTEGER NOT NULL,
                         actual TEXT, err TEXT) WITHOUT ROWID;
    CREATE TABLE referenced (hash TEXT PRIMARY KEY) WITHOUT ROWID;
";

/// `result`, or nothing read when the index is known to be damaged (that is
/// reported already; the walk goes on with what can be read).
fn unless_damaged<T: Default>(damaged: bool, result: Result<T>) -> Result<T> {
    match result {
        Err(_) if damaged => Ok(T::default()),
        other => other,
    }
}

/// What the file `name` in `shard_dir` holds as payload `digest` (hashed,
/// and counted in `report`); `None` when there is no such file. Opened
/// without blocking, and hashed only if it is a regular file: a FIFO here
/// would block verify for good.
fn file_state(
    shard_dir: &cap_std::fs::Dir,
    name: &str,
    digest: &Sha256Digest,
    report: &mut VerifyReport,
) -> Option<BlobState> {
    let opened = shard_dir.open_with(
        name,
        cap_std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(crate::store::nonblock()),
    );
    Some(match opened.map(cap_std::fs::File::into_std) {
        Ok(file) if !file.metadata().is_ok_and(|m| m.is_file()) => {
            BlobState::Unreadable("not a regular file".to_owned())
        }
        Ok(mut file) => match ingest::hash_reader(&mut file) {
            Ok(got) => {
                report.blobs += 1;
                report.bytes_hashed += got.size;
                if got.digest == *digest {
                    BlobState::Good(got.size)
                } else {
                    BlobState::Bad(got.digest, got.size)
                }
            }
            Err(ingest::IngestError::Read { read, source }) => {
                BlobState::Unreadable(format!("reading failed after {read} bytes: {source}"))
            }
            Err(_) => BlobState::Unreadable("the payload could not be hashed".to_owned()),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => BlobState::Unreadable(e.to_string()),
    })
}

/// What inline row `row` holds as payload `digest` (hashed, and counted in
/// `report`).
fn inline_state(
    row: crate::index::InlineRow,
    digest: &Sha256Digest,
    report: &mut VerifyReport,
) -> BlobState {
    match row.bytes {
        None => BlobState::Unreadable(format!(
            "its row holds {} bytes, more than an inline payload may ({INLINE_MAX})",
            row.len
        )),
        Some(bytes) => {
            report.blobs += 1;
            report.bytes_hashed += bytes.len() as u64;
            let got = Sha256Digest::of(&bytes);
            let len = bytes.len() as u64;
            if got != *digest {
                BlobState::Bad(got, len)
            } else if row.size != Some(len) {
                BlobState::Unreadable(format!(
                    "its size column says {} but it holds {len} bytes",
                    row.size
                        .map_or_else(|| "nothing valid".to_owned(), |s| s.to_string())
                ))
            } else {
                BlobState::Inline(len)
            }
        }
    }
}

impl ArtifactStore {
    /// Walk the whole store: hash every payload once, check every record's
    /// manifest, payload hash and size, and every bundle's index and entries.
    /// Reports every bad artifact rather than stopping at the first.
    ///
    /// Memory stays bounded whatever the store holds: records and inline
    /// rows are read in chunks, and what the walk remembers of each payload
    /// lives in a scratch database in `tmp/` (see `scratch.rs`).
    pub fn verify(&self) -> Result<VerifyReport> {
        let _lock = self.lock(false)?;
        let mut report = VerifyReport::default();
        let damaged = self.index.quick_check()?;
        if let Some(why) = &damaged {
            report.push(Problem {
                artifact_id: None,
                path: self.index.path().to_path_buf(),
                kind: ProblemKind::Unreadable,
                message: format!(
                    "the index fails SQLite's integrity check ({why}); records and small payloads may be damaged: restore index.db from a backup"
                ),
            });
        }
        // The walk by key below reads every row only if the key is unique.
        let unique = match self.index.record_ids_unique() {
            Ok(unique) => unique,
            // Reported above already.
            Err(_) if damaged.is_some() => true,
            Err(e) => return Err(e),
        };
        if !unique {
            report.push(Problem {
                artifact_id: None,
                path: self.index.path().to_path_buf(),
                kind: ProblemKind::ManifestInvalid,
                message: "the index's records table has no unique key on its id column (the table was altered): rows sharing an id may be missed by this walk and by gc, which keeps every payload meanwhile; restore index.db from a backup".into(),
            });
        }
        let scratch = Scratch::create(&self.root_path, &self.tmp, "verify", VERIFY_SCHEMA)?;
        self.hash_all_blobs(&mut report, &scratch)?;
        // An inline row is where a read looks first, so it stands for its
        // digest whatever file there may also be.
        // A damaged index may fail to list its rows: that is reported above,
        // and the walk goes on with what can be read.
        let tolerate = damaged.is_some();
        if unless_damaged(
            tolerate,
            self.hash_inline_blobs(&mut report, &scratch).map(Some),
        )?
        .is_none()
        {
            scratch.exec("forget the inline rows in", "DELETE FROM inline;")?;
        }
        // A damaged file behind an inline row is never served, but the row
        // must not hide it from the report either.
        scratch.with("compare inline rows and files in", |c| {
            let mut stmt = c.prepare(
                "SELECT i.hash, b.state, b.size, b.actual, b.err
                 FROM inline i JOIN blobs b ON b.hash = i.hash
                 WHERE b.state IN (?1, ?2) ORDER BY i.hash",
            )?;
            let mut rows = stmt.query(params![BAD, UNREADABLE])?;
            while let Some(r) = rows.next()? {
                let Ok(digest) = r.get::<_, String>(0)?.parse::<Sha256Digest>() else {
                    continue;
                };
                let (kind, message) = match BlobState::from_row(r, 1)? {
                    BlobState::Bad(actual, size) => (
                        ProblemKind::HashMismatch,
                        format!(
                            "payload file hashes to {actual} ({size} bytes), not its name; reads use the inline row of that digest instead: delete the file"
                        ),
                    ),
                    BlobState::Unreadable(e) => (
                        ProblemKind::Unreadable,
                        format!(
                            "payload file cannot be read ({e}); reads use the inline row of that digest instead: delete the file"
                        ),
                    ),
                    BlobState::Good(_) | BlobState::Inline(_) => continue,
                };
                report.push(Problem {
                    artifact_id: None,
                    path: self.blob_path(&digest),
                    kind,
                    message,
                });
            }
            Ok(())
        })?;
        scratch.exec(
            "merge the inline rows in",
            "INSERT OR REPLACE INTO blobs SELECT * FROM inline; DELETE FROM inline;",
        )?;
        self.report_record_files(&mut report)?;
        let mut after = None;
        loop {
            let rows = unless_damaged(
                tolerate,
                self.index.record_rows_after(
                    after.as_ref(),
                    CHUNK_ROWS,
                    CHUNK_BYTES,
                    MAX_RECORD_BYTES,
                ),
            )?;
            crate::scratch::holding(rows.len());
            let Some((last, _, _)) = rows.last() else {
                break;
            };
            after = Some(last.clone());
            for (_, id_text, bytes) in rows {
                self.check_record(&scratch, &id_text, bytes, &mut report)?;
            }
        }
        // Damaged blobs that no record references still deserve a line.
        scratch.with("list unreferenced payloads in", |c| {
            let mut stmt = c.prepare(
                "SELECT b.hash, b.state, b.size, b.actual, b.err FROM blobs b
                 WHERE b.state IN (?1, ?2)
                   AND NOT EXISTS (SELECT 1 FROM referenced r WHERE r.hash = b.hash)
                 ORDER BY b.hash",
            )?;
            let mut rows = stmt.query(params![BAD, UNREADABLE])?;
            while let Some(r) = rows.next()? {
                let Ok(digest) = r.get::<_, String>(0)?.parse::<Sha256Digest>() else {
                    continue;
                };
                let (kind, message) = match BlobState::from_row(r, 1)? {
                    BlobState::Unreadable(e) => (
                        ProblemKind::Unreadable,
                        format!("unreferenced payload cannot be read: {e}"),
                    ),
                    BlobState::Bad(actual, size) => (
                        ProblemKind::HashMismatch,
                        format!(
                            "unreferenced payload hashes to {actual} ({size} bytes), not its name; gc will remove it"
                        ),
                    ),
                    BlobState::Good(_) | BlobState::Inline(_) => continue,
                };
                report.push(Problem {
                    artifact_id: None,
                    path: self.payload_path(&digest),
                    kind,
                    message,
                });
            }
            Ok(())
        })?;
        Ok(report)
    }

    /// Check one record row: its manifest, its payload, a bundle's entries;
    /// note what it references.
    fn check_record(
        &self,
        scratch: &Scratch<'_>,
        id_text: &str,
        bytes: crate::index::RecordBytes,
        report: &mut VerifyReport,
    ) -> Result<()> {
        let path = self.root_path.join(format!("{INDEX}[records:{id_text}]"));
        let Some(id) = canonical_id(id_text) else {
            report.push(Problem {
                artifact_id: None,
                path,
                kind: ProblemKind::ManifestInvalid,
                message: "a record row whose id is not a lower-case hyphenated artifact id; it is never listed or served: restore index.db from a backup".into(),
            });
            return Ok(());
        };
        report.records += 1;
        let manifest = match bytes {
            Ok(bytes) => parse_manifest(&bytes, &path, Some(id)),
            Err(why) => Err(crate::ArtifactError::ManifestInvalid {
                path: path.clone(),
                message: why,
            }),
        };
        let manifest = match manifest {
            Ok(m) => m,
            Err(e) => {
                report.push(Problem {
                    artifact_id: Some(id),
                    path,
                    kind: ProblemKind::ManifestInvalid,
                    message: e.to_string(),
                });
                return Ok(());
            }
        };
        Self::note_referenced(scratch, &manifest.artifact.content_hash)?;
        if let Some(p) = self.check_payload(
            scratch,
            Some(id),
            "",
            &manifest.artifact.content_hash,
            manifest.artifact.size_bytes,
            report,
        )? {
            report.push(p);
            return Ok(());
        }
        if manifest.artifact.kind == ArtifactKind::Bundle {
            self.check_bundle(scratch, &manifest, report)?;
        }
        Ok(())
    }

    fn note_referenced(scratch: &Scratch<'_>, digest: &Sha256Digest) -> Result<()> {
        scratch.with("note a reference in", |c| {
            c.prepare_cached("INSERT OR IGNORE INTO referenced (hash) VALUES (?1)")?
                .execute([digest.to_hex()])
                .map(drop)
        })
    }

    /// What the store holds at payload `digest` now: its inline row, where
    /// reads look first, else its file (hashed, and counted in `report`).
    fn payload_state_now(
        &self,
        digest: &Sha256Digest,
        report: &mut VerifyReport,
    ) -> Result<Option<BlobState>> {
        if let Some(row) = self.index.inline_blob(digest)? {
            return Ok(Some(inline_state(row, digest, report)));
        }
        let (shard, name) = crate::store::blob_location(digest);
        Ok(match self.blobs.open_dir(&shard) {
            Ok(dir) => file_state(&dir, &name, digest, report),
            Err(_) => None,
        })
    }

    /// What the walk found at `digest`, if anything.
    fn blob_state(scratch: &Scratch<'_>, digest: &Sha256Digest) -> Result<Option<BlobState>> {
        scratch.with("look up a payload in", |c| {
            c.prepare_cached("SELECT state, size, actual, err FROM blobs WHERE hash = ?1")?
                .query_row([digest.to_hex()], |r| BlobState::from_row(r, 0))
                .optional()
        })
    }

    /// Note what the walk found at `digest`.
    fn note_state(
        scratch: &Scratch<'_>,
        table: &'static str,
        digest: &Sha256Digest,
        state: &BlobState,
    ) -> Result<()> {
        let (kind, size, actual, err) = state.columns();
        scratch.with("note a payload in", |c| {
            c.prepare_cached(&format!(
                "INSERT OR REPLACE INTO {table} (hash, state, size, actual, err)
                 VALUES (?1, ?2, ?3, ?4, ?5)"
            ))?
            .execute(params![digest.to_hex(), kind, size, actual, err])
            .map(drop)
        })
    }

    /// Where `digest`'s payload is: its inline row (where reads look first),
    /// or its file. Asked only for a problem's path.
    fn payload_path(&self, digest: &Sha256Digest) -> PathBuf {
        if matches!(self.index.inline_blob(digest), Ok(Some(_))) {
            self.inline_path(digest)
        } else {
            self.blob_path(digest)
        }
    }

    /// Anything left in `records/` (a layout-2 directory) after the
    /// migration to layout 3: files it could not import, strays of older
    /// layouts, or imported files whose removal has not happened yet.
    fn report_record_files(&self, report: &mut VerifyReport) -> Result<()> {
        let records_path = self.root_path.join(RECORDS);
        let records = match self.root.open_dir(RECORDS) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(store_io("open directory", records_path, 0, e)),
        };
        let mut names = Smallest::default();
        for entry in records
            .entries()
            .map_err(|e| store_io("list", records_path.clone(), 0, e))?
        {
            let entry = entry.map_err(|e| store_io("list", records_path.clone(), 0, e))?;
            names.push(entry.file_name());
        }
        let total = names.total;
        let names = names.into_sorted();
        report.problems_omitted += (total - names.len()) as u64;
        for name in names {
            report.push(Problem {
                artifact_id: record_id(&name),
                path: records_path.join(&name),
                kind: ProblemKind::Stray,
                message: "left in records/, which this layout no longer reads (records live in index.db): the migration could not import it or has not removed it yet; move it out of the store".into(),
            });
        }
        Ok(())
    }

    /// Hash every inline payload row, noting each one's state in the
    /// scratch `inline`.
    fn hash_inline_blobs(&self, report: &mut VerifyReport, scratch: &Scratch<'_>) -> Result<()> {
        let mut after = None;
        loop {
            let rows = self.index.inline_hashes_after(after.as_ref(), CHUNK_ROWS)?;
            crate::scratch::holding(rows.len());
            let Some((last, _, _)) = rows.last() else {
                return Ok(());
            };
            after = Some(last.clone());
            for (_, text, _) in rows {
                let path = self.root_path.join(format!("{INDEX}[inline_blobs:{text}]"));
                let Some(digest) = text
                    .parse::<Sha256Digest>()
                    .ok()
                    .filter(|d| d.to_hex() == text)
                else {
                    report.push(Problem {
                        artifact_id: None,
                        path,
                        kind: ProblemKind::Stray,
                        message: "an inline payload row whose hash is not a lower-case SHA-256 digest; it is never served: restore index.db from a backup".into(),
                    });
                    continue;
                };
                let state = match self.index.inline_row_by_text(&text)? {
                    // Removed since listed: cannot happen under the lock held.
                    None => continue,
                    Some(row) => inline_state(row, &digest, report),
                };
                // A damaged row stands for its digest too (reads refuse it).
                Self::note_state(scratch, "inline", &digest, &state)?;
            }
        }
    }

    /// Hash every payload file, noting each one's state in the scratch
    /// `blobs`.
    fn hash_all_blobs(&self, report: &mut VerifyReport, scratch: &Scratch<'_>) -> Result<()> {
        let blobs_path = self.root_path.join(BLOBS);
        for shard in self
            .blobs
            .entries()
            .map_err(|e| store_io("list", blobs_path.clone(), 0, e))?
        {
            let shard = shard.map_err(|e| store_io("list", blobs_path.clone(), 0, e))?;
            let shard_name = shard.file_name().to_string_lossy().into_owned();
            let shard_dir = match shard.open_dir() {
                Ok(d) => d,
                Err(e) => {
                    report.push(Problem {
                        artifact_id: None,
                        path: blobs_path.join(&shard_name),
                        kind: ProblemKind::Stray,
                        message: format!("not a shard directory ({e}); move it out of the store"),
                    });
                    continue;
                }
            };
            let shard_path = blobs_path.join(&shard_name);
            for entry in shard_dir
                .entries()
                .map_err(|e| store_io("list", shard_path.clone(), 0, e))?
            {
                let entry = entry.map_err(|e| store_io("list", shard_path.clone(), 0, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = shard_path.join(&name);
                let Some(digest) = crate::store::blob_at(&shard_name, &name) else {
                    report.push(Problem {
                        artifact_id: None,
                        path,
                        kind: ProblemKind::Stray,
                        message:
                            "not a payload (its directory and name are not the two and 62 hex digits of a digest); move it out of the store"
                                .into(),
                    });
                    continue;
                };
                let Some(state) = file_state(&shard_dir, &name, &digest, report) else {
                    continue;
                };
                Self::note_state(scratch, "blobs", &digest, &state)?;
            }
        }
        Ok(())
    }

    /// The problem with payload `digest` of `size` bytes that a record (or
    /// a bundle entry) names, if any. A payload the first passes did not
    /// see is looked up again: puts share the store lock with verify, so a
    /// record committed since then has its payload committed since too
    /// (hashed now, and remembered).
    fn check_payload(
        &self,
        scratch: &Scratch<'_>,
        id: Option<Uuid>,
        what: &str,
        digest: &Sha256Digest,
        size: u64,
        report: &mut VerifyReport,
    ) -> Result<Option<Problem>> {
        let mut state = Self::blob_state(scratch, digest)?;
        if state.is_none() {
            state = self.payload_state_now(digest, report)?;
            if let Some(found) = &state {
                Self::note_state(scratch, "blobs", digest, found)?;
            }
        }
        let (kind, message) = match state {
            None => (
                ProblemKind::PayloadMissing,
                format!(
                    "{what}payload sha256 {digest} ({size} bytes) is missing; restore it from a backup or put the content again"
                ),
            ),
            Some(BlobState::Unreadable(e)) => (
                ProblemKind::Unreadable,
                format!("{what}payload cannot be read: {e}"),
            ),
            Some(
                BlobState::Good(actual) | BlobState::Inline(actual) | BlobState::Bad(_, actual),
            ) if actual != size => (
                ProblemKind::SizeMismatch,
                format!(
                    "{what}payload is {actual} bytes, the record says {size}: it was truncated or replaced; restore it or put the content again"
                ),
            ),
            Some(BlobState::Good(_) | BlobState::Inline(_)) => return Ok(None),
            Some(BlobState::Bad(actual, _)) => (
                ProblemKind::HashMismatch,
                format!(
                    "{what}payload hashes to {actual}, the record says {digest}: it was modified on disk; restore it or put the content again"
                ),
            ),
        };
        Ok(Some(Problem {
            artifact_id: id,
            path: self.payload_path(digest),
            kind,
            message,
        }))
    }

    fn check_bundle(
        &self,
        scratch: &Scratch<'_>,
        manifest: &ArtifactManifest,
        report: &mut VerifyReport,
    ) -> Result<()> {
        let handle = &manifest.artifact;
        let id = handle.artifact_id;
        let index = self
            .read_blob(&id.to_string(), &handle.content_hash, handle.size_bytes)
            .and_then(|bytes| parse_index(&bytes, id));
        let index = match index {
            Ok(i) => i,
            Err(e) => {
                report.push(Problem {
                    artifact_id: Some(id),
                    path: self.payload_path(&handle.content_hash),
                    kind: ProblemKind::BundleInvalid,
                    message: e.to_string(),
                });
                return Ok(());
            }
        };
        for entry in &index.entries {
            Self::note_referenced(scratch, &entry.content_hash)?;
            if let Some(p) = self.check_payload(
                scratch,
                Some(id),
                &format!("bundle entry {:?}: ", entry.path),
                &entry.content_hash,
                entry.size_bytes,
                report,
            )? {
                report.push(p);
            }
        }
        Ok(())
    }
}
