//! The verify walk of before its memory was bounded (every payload's
//! state and every reference in hash maps), kept as the oracle the bounded
//! walk must agree with.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;

use cap_std::fs::OpenOptionsExt as _;
use mex_envelope::{ArtifactKind, ArtifactManifest, Sha256Digest};
use uuid::Uuid;

use super::{Problem, ProblemKind, VerifyReport};
use crate::bundle::parse_index;
use crate::error::{Result, store_io};
use crate::index::{INDEX, INLINE_MAX};
use crate::ingest;
use crate::store::{
    ArtifactStore, BLOBS, MAX_RECORD_BYTES, RECORDS, canonical_id, parse_manifest, record_id,
};

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

/// `result`, or nothing read when the index is known to be damaged (that is
/// reported already; the walk goes on with what can be read).
fn unless_damaged<T: Default>(damaged: bool, result: Result<T>) -> Result<T> {
    match result {
        Err(_) if damaged => Ok(T::default()),
        other => other,
    }
}

impl ArtifactStore {
    /// Walk the whole store: hash every payload once, check every record's
    /// manifest, payload hash and size, and every bundle's index and entries.
    /// Reports every bad artifact rather than stopping at the first.
    pub(crate) fn old_verify(&self) -> Result<VerifyReport> {
        let _lock = self.lock(false)?;
        let mut report = VerifyReport::default();
        let damaged = self.index.quick_check()?;
        if let Some(why) = &damaged {
            report.problems.push(Problem {
                artifact_id: None,
                path: self.index.path().to_path_buf(),
                kind: ProblemKind::Unreadable,
                message: format!(
                    "the index fails SQLite's integrity check ({why}); records and small payloads may be damaged: restore index.db from a backup"
                ),
            });
        }
        let mut blobs = self.old_hash_all_blobs(&mut report)?;
        // An inline row is where a read looks first, so it stands for its
        // digest whatever file there may also be.
        // A damaged index may fail to list its rows: that is reported above,
        // and the walk goes on with what can be read.
        let tolerate = damaged.is_some();
        let inline = unless_damaged(tolerate, self.old_hash_inline_blobs(&mut report))?;
        // A damaged file behind an inline row is never served, but the row
        // must not hide it from the report either.
        let mut hidden: Vec<(Sha256Digest, Problem)> = Vec::new();
        for digest in inline.keys() {
            let (kind, message) = match blobs.get(digest) {
                Some(BlobState::Bad(actual, size)) => (
                    ProblemKind::HashMismatch,
                    format!(
                        "payload file hashes to {actual} ({size} bytes), not its name; reads use the inline row of that digest instead: delete the file"
                    ),
                ),
                Some(BlobState::Unreadable(e)) => (
                    ProblemKind::Unreadable,
                    format!(
                        "payload file cannot be read ({e}); reads use the inline row of that digest instead: delete the file"
                    ),
                ),
                _ => continue,
            };
            hidden.push((
                *digest,
                Problem {
                    artifact_id: None,
                    path: self.blob_path(digest),
                    kind,
                    message,
                },
            ));
        }
        hidden.sort_by_key(|(d, _)| *d);
        report.problems.extend(hidden.into_iter().map(|(_, p)| p));
        blobs.extend(inline);
        self.old_report_record_files(&mut report)?;
        let mut referenced: HashMap<Sha256Digest, ()> = HashMap::new();
        let rows = unless_damaged(tolerate, self.index.record_rows(MAX_RECORD_BYTES))?;
        for (id_text, bytes) in rows {
            let path = self.root_path.join(format!("{INDEX}[records:{id_text}]"));
            let Some(id) = canonical_id(&id_text) else {
                report.problems.push(Problem {
                    artifact_id: None,
                    path,
                    kind: ProblemKind::ManifestInvalid,
                    message: "a record row whose id is not a lower-case hyphenated artifact id; it is never listed or served: restore index.db from a backup".into(),
                });
                continue;
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
                    report.problems.push(Problem {
                        artifact_id: Some(id),
                        path,
                        kind: ProblemKind::ManifestInvalid,
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            referenced.insert(manifest.artifact.content_hash, ());
            if let Some(p) = self.old_check_payload(
                &blobs,
                Some(id),
                "",
                &manifest.artifact.content_hash,
                manifest.artifact.size_bytes,
            ) {
                report.problems.push(p);
                continue;
            }
            if manifest.artifact.kind == ArtifactKind::Bundle {
                self.old_check_bundle(&blobs, &manifest, &mut referenced, &mut report);
            }
        }
        // Damaged blobs that no record references still deserve a line.
        let mut unreferenced_bad: Vec<_> = blobs
            .iter()
            .filter(|(d, s)| {
                !referenced.contains_key(*d)
                    && !matches!(s, BlobState::Good(_) | BlobState::Inline(_))
            })
            .collect();
        unreferenced_bad.sort_by_key(|(d, _)| **d);
        for (digest, state) in unreferenced_bad {
            let (kind, message) = match state {
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
            report.problems.push(Problem {
                artifact_id: None,
                path: self.old_payload_path(digest),
                kind,
                message,
            });
        }
        Ok(report)
    }

    /// Where `digest`'s payload is: its inline row (where reads look first),
    /// or its file. Asked only for a problem's path.
    fn old_payload_path(&self, digest: &Sha256Digest) -> PathBuf {
        if matches!(self.index.inline_blob(digest), Ok(Some(_))) {
            self.inline_path(digest)
        } else {
            self.blob_path(digest)
        }
    }

    /// Anything left in `records/` (a layout-2 directory) after the
    /// migration to layout 3: files it could not import, strays of older
    /// layouts, or imported files whose removal has not happened yet.
    fn old_report_record_files(&self, report: &mut VerifyReport) -> Result<()> {
        let records_path = self.root_path.join(RECORDS);
        let records = match self.root.open_dir(RECORDS) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(store_io("open directory", records_path, 0, e)),
        };
        let mut names = Vec::new();
        for entry in records
            .entries()
            .map_err(|e| store_io("list", records_path.clone(), 0, e))?
        {
            let entry = entry.map_err(|e| store_io("list", records_path.clone(), 0, e))?;
            names.push(entry.file_name());
        }
        names.sort();
        for name in names {
            report.problems.push(Problem {
                artifact_id: record_id(&name),
                path: records_path.join(&name),
                kind: ProblemKind::Stray,
                message: "left in records/, which this layout no longer reads (records live in index.db): the migration could not import it or has not removed it yet; move it out of the store".into(),
            });
        }
        Ok(())
    }

    /// Hash every inline payload row.
    fn old_hash_inline_blobs(
        &self,
        report: &mut VerifyReport,
    ) -> Result<HashMap<Sha256Digest, BlobState>> {
        let mut out = HashMap::new();
        for (text, _) in self.index.inline_hashes()? {
            let path = self.root_path.join(format!("{INDEX}[inline_blobs:{text}]"));
            let Some(digest) = text
                .parse::<Sha256Digest>()
                .ok()
                .filter(|d| d.to_hex() == text)
            else {
                report.problems.push(Problem {
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
                Some(row) => match row.bytes {
                    None => BlobState::Unreadable(format!(
                        "its row holds {} bytes, more than an inline payload may ({INLINE_MAX})",
                        row.len
                    )),
                    Some(bytes) => {
                        report.blobs += 1;
                        report.bytes_hashed += bytes.len() as u64;
                        let got = Sha256Digest::of(&bytes);
                        let len = bytes.len() as u64;
                        if got != digest {
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
                },
            };
            // A damaged row stands for its digest too (reads refuse it).
            out.insert(digest, state);
        }
        Ok(out)
    }

    fn old_hash_all_blobs(
        &self,
        report: &mut VerifyReport,
    ) -> Result<HashMap<Sha256Digest, BlobState>> {
        let mut out = HashMap::new();
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
                    report.problems.push(Problem {
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
                let Ok(digest) = format!("{shard_name}{name}").parse::<Sha256Digest>() else {
                    report.problems.push(Problem {
                        artifact_id: None,
                        path,
                        kind: ProblemKind::Stray,
                        message:
                            "not a payload (the name is not a digest); move it out of the store"
                                .into(),
                    });
                    continue;
                };
                // Opened without blocking, and hashed only if it is a
                // regular file: a FIFO here would block verify for good.
                let opened = shard_dir.open_with(
                    entry.file_name(),
                    cap_std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(crate::store::nonblock()),
                );
                let state = match opened.map(cap_std::fs::File::into_std) {
                    Ok(file) if !file.metadata().is_ok_and(|m| m.is_file()) => {
                        BlobState::Unreadable("not a regular file".to_owned())
                    }
                    Ok(mut file) => match ingest::hash_reader(&mut file) {
                        Ok(got) => {
                            report.blobs += 1;
                            report.bytes_hashed += got.size;
                            if got.digest == digest {
                                BlobState::Good(got.size)
                            } else {
                                BlobState::Bad(got.digest, got.size)
                            }
                        }
                        Err(ingest::IngestError::Read { read, source }) => BlobState::Unreadable(
                            format!("reading failed after {read} bytes: {source}"),
                        ),
                        Err(_) => {
                            BlobState::Unreadable("the payload could not be hashed".to_owned())
                        }
                    },
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => BlobState::Unreadable(e.to_string()),
                };
                out.insert(digest, state);
            }
        }
        Ok(out)
    }

    fn old_check_payload(
        &self,
        blobs: &HashMap<Sha256Digest, BlobState>,
        id: Option<Uuid>,
        what: &str,
        digest: &Sha256Digest,
        size: u64,
    ) -> Option<Problem> {
        let (kind, message) = match blobs.get(digest) {
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
            ) if *actual != size => (
                ProblemKind::SizeMismatch,
                format!(
                    "{what}payload is {actual} bytes, the record says {size}: it was truncated or replaced; restore it or put the content again"
                ),
            ),
            Some(BlobState::Good(_) | BlobState::Inline(_)) => return None,
            Some(BlobState::Bad(actual, _)) => (
                ProblemKind::HashMismatch,
                format!(
                    "{what}payload hashes to {actual}, the record says {digest}: it was modified on disk; restore it or put the content again"
                ),
            ),
        };
        Some(Problem {
            artifact_id: id,
            path: self.old_payload_path(digest),
            kind,
            message,
        })
    }

    fn old_check_bundle(
        &self,
        blobs: &HashMap<Sha256Digest, BlobState>,
        manifest: &ArtifactManifest,
        referenced: &mut HashMap<Sha256Digest, ()>,
        report: &mut VerifyReport,
    ) {
        let handle = &manifest.artifact;
        let id = handle.artifact_id;
        let index = self
            .read_blob(&id.to_string(), &handle.content_hash, handle.size_bytes)
            .and_then(|bytes| parse_index(&bytes, id));
        let index = match index {
            Ok(i) => i,
            Err(e) => {
                report.problems.push(Problem {
                    artifact_id: Some(id),
                    path: self.old_payload_path(&handle.content_hash),
                    kind: ProblemKind::BundleInvalid,
                    message: e.to_string(),
                });
                return;
            }
        };
        for entry in &index.entries {
            referenced.insert(entry.content_hash, ());
            if let Some(p) = self.old_check_payload(
                blobs,
                Some(id),
                &format!("bundle entry {:?}: ", entry.path),
                &entry.content_hash,
                entry.size_bytes,
            ) {
                report.problems.push(p);
            }
        }
    }
}

/// The bounded verify and the old one on a store of 40,000 records damaged
/// in every way verify reports: the same counts, and the same problems in
/// the same order (the bounded report lists the first `REPORT_LIST_MAX`
/// and counts the rest).
#[test]
#[allow(
    clippy::unwrap_used,
    reason = "test code: a failed expectation panics, which is the test failing"
)]
fn bounded_verify_agrees_with_the_old_verify_on_a_damaged_large_store() {
    use crate::scratch::{CHUNK_ROWS, MOST_ROWS_HELD};
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    crate::bulk::fill(&root, 40_000, 2);
    let store = ArtifactStore::at(&root).unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("large"), vec![4u8; 20_000]).unwrap();
    std::fs::write(tree.join("small"), b"bulk 2 shared 9").unwrap();
    store
        .put_dir(&tree, &crate::BundleOptions::default())
        .unwrap();
    let db = rusqlite::Connection::open(root.join("index.db")).unwrap();
    db.execute_batch(
        "UPDATE inline_blobs SET bytes = bytes || X'00' WHERE rowid % 16 = 0;
         UPDATE inline_blobs SET size = size + 1 WHERE rowid % 16 = 1;
         UPDATE inline_blobs SET bytes = CAST(X'41' || substr(bytes, 2) AS BLOB)
             WHERE rowid % 16 = 2;
         INSERT INTO inline_blobs (hash, size, bytes) VALUES ('not-a-digest', 1, X'00');
         INSERT INTO records (id, manifest) VALUES ('not-an-id', X'7b7d');
         INSERT INTO records (id, manifest) VALUES ('00000000-0000-4000-8000-000000000001', X'7b');",
    )
    .unwrap();
    let shard_of = |d: &Sha256Digest| {
        let hex = d.to_hex();
        let shard = root.join(BLOBS).join(&hex[..2]);
        std::fs::create_dir_all(&shard).unwrap();
        shard.join(&hex[2..])
    };
    let replace = |path: &std::path::Path, bytes: &[u8]| {
        if path.exists() {
            let mut perms = std::fs::metadata(path).unwrap().permissions();
            #[allow(
                clippy::permissions_set_readonly_false,
                reason = "a test tampering with a payload"
            )]
            perms.set_readonly(false);
            std::fs::set_permissions(path, perms).unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    };
    // The shared large payload modified, the doomed one's removed, a file
    // behind an intact inline row damaged, an unreferenced bad file, a
    // stray.
    replace(
        &shard_of(&Sha256Digest::of(&vec![2u8; 64 * 1024])),
        b"changed",
    );
    let mut orphan = vec![2u8; 64 * 1024];
    orphan.push(1);
    std::fs::remove_file(shard_of(&Sha256Digest::of(&orphan))).unwrap();
    replace(&shard_of(&Sha256Digest::of(b"bulk 2 shared 11")), b"not it");
    replace(
        &shard_of(&Sha256Digest::of(b"referenced by nobody")),
        b"nor this",
    );
    std::fs::write(root.join(BLOBS).join("ab-junk"), b"stray").unwrap();

    let old = store.old_verify().unwrap();
    MOST_ROWS_HELD.store(0, Relaxed);
    let new = store.verify().unwrap();
    let most = MOST_ROWS_HELD.load(Relaxed);
    assert!(most > 0 && most <= CHUNK_ROWS, "{most} rows held at once");
    let cap = crate::REPORT_LIST_MAX;
    assert!(old.problems.len() > cap, "{} problems", old.problems.len());
    for kind in [
        ProblemKind::ManifestInvalid,
        ProblemKind::PayloadMissing,
        ProblemKind::SizeMismatch,
        ProblemKind::HashMismatch,
        ProblemKind::Stray,
        ProblemKind::Unreadable,
    ] {
        assert!(
            old.problems.iter().any(|p| p.kind == kind),
            "no {kind:?} problem planted"
        );
    }
    assert_eq!(
        (new.records, new.blobs, new.bytes_hashed),
        (old.records, old.blobs, old.bytes_hashed)
    );
    assert_eq!(new.problem_count(), old.problems.len() as u64);
    assert_eq!(new.problems, old.problems[..cap]);
    // And the tail the cap hides agrees too: the old report's last problems
    // are the unreferenced ones, which the bounded walk finds last.
    assert!(!new.is_ok());
}

/// The bounded verify and the old one on a store of a few chunks damaged
/// in the ways the large comparison above does not plant: a bundle whose
/// payload is no bundle index, a bundle entry's file missing, a FIFO at a
/// payload's path, record rows keyed by a BLOB, by an upper-case id, with
/// a number or more than 1 MiB as their manifest. The same problems, in the
/// same order, and the same counts.
#[test]
#[allow(
    clippy::unwrap_used,
    reason = "test code: a failed expectation panics, which is the test failing"
)]
fn bounded_verify_agrees_with_the_old_verify_on_hostile_rows_and_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    crate::bulk::fill(&root, 3_000, 5);
    let store = ArtifactStore::at(&root).unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("large"), vec![6u8; 20_000]).unwrap();
    std::fs::write(tree.join("small"), b"bulk 5 shared 3").unwrap();
    let bundle = store
        .put_dir(&tree, &crate::BundleOptions::default())
        .unwrap();
    let fifo_payload: Vec<u8> = (0..20_000u32).map(|i| (i % 7) as u8).collect();
    let fifo_target = store
        .put_bytes(&fifo_payload, &crate::PutOptions::default())
        .unwrap();
    // A record of kind bundle whose payload is a small text, not an index.
    let mut fake = store.manifest(bundle.artifact_id).unwrap();
    let text = b"bulk 5 shared 3";
    fake.artifact.artifact_id = Uuid::from_u128(0xfeed);
    fake.artifact.content_hash = Sha256Digest::of(text);
    fake.artifact.size_bytes = text.len() as u64;
    let fake_bytes = store.manifest_bytes(&fake).unwrap();
    let upper = Uuid::from_u128(0xabcd_ef00_1234);
    let mut upper_m = store.manifest(fifo_target.artifact_id).unwrap();
    upper_m.artifact.artifact_id = upper;
    let upper_bytes = store.manifest_bytes(&upper_m).unwrap();
    let db = rusqlite::Connection::open(root.join("index.db")).unwrap();
    db.execute(
        "INSERT INTO records (id, manifest) VALUES (?1, ?2)",
        rusqlite::params![
            fake.artifact.artifact_id.hyphenated().to_string(),
            fake_bytes
        ],
    )
    .unwrap();
    db.execute(
        "INSERT INTO records (id, manifest) VALUES (?1, ?2)",
        rusqlite::params![upper.hyphenated().to_string().to_uppercase(), upper_bytes],
    )
    .unwrap();
    db.execute_batch(
        "INSERT INTO records (id, manifest)
             VALUES (CAST('00000000-0000-4000-8000-00000000000b' AS BLOB), X'7b7d');
         INSERT INTO records (id, manifest) VALUES ('00000000-0000-4000-8000-00000000000c', 5);
         INSERT INTO records (id, manifest)
             VALUES ('00000000-0000-4000-8000-00000000000d', zeroblob(1048577));",
    )
    .unwrap();
    drop(db);
    let file_of = |d: &Sha256Digest| {
        let hex = d.to_hex();
        root.join(BLOBS).join(&hex[..2]).join(&hex[2..])
    };
    std::fs::remove_file(file_of(&Sha256Digest::of(&vec![6u8; 20_000]))).unwrap();
    let fifo = file_of(&fifo_target.content_hash);
    std::fs::remove_file(&fifo).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();

    let old = store.old_verify().unwrap();
    let new = store.verify().unwrap();
    for kind in [
        ProblemKind::ManifestInvalid,
        ProblemKind::PayloadMissing,
        ProblemKind::BundleInvalid,
        ProblemKind::Unreadable,
    ] {
        assert!(
            old.problems.iter().any(|p| p.kind == kind),
            "no {kind:?} problem planted: {:#?}",
            old.problems
        );
    }
    assert_eq!(old.problems.len(), 7, "{:#?}", old.problems);
    assert_eq!(
        (new.records, new.blobs, new.bytes_hashed),
        (old.records, old.blobs, old.bytes_hashed)
    );
    assert_eq!(new.problems, old.problems);
    assert_eq!(new.problems_omitted, 0);
}
