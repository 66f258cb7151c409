//! The `verify` walk over the whole store.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;

use cap_std::fs::OpenOptionsExt as _;
use mex_envelope::{ArtifactKind, ArtifactManifest, Sha256Digest};
use uuid::Uuid;

use crate::bundle::parse_index;
use crate::error::{Result, store_io};
use crate::ingest;
use crate::store::{ArtifactStore, BLOBS, RECORDS, parse_manifest, record_id, record_name};

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records examined.
    pub records: usize,
    /// Payload files hashed.
    pub blobs: usize,
    /// Bytes hashed.
    pub bytes_hashed: u64,
    /// Every problem found; empty when the store is sound.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Debug, Clone)]
enum BlobState {
    /// Content matches the name; size.
    Good(u64),
    /// Content does not match: actual digest and size.
    Bad(Sha256Digest, u64),
    /// Could not be read.
    Unreadable(String),
}

impl ArtifactStore {
    /// Walk the whole store: hash every payload once, check every record's
    /// manifest, payload hash and size, and every bundle's index and entries.
    /// Reports every bad artifact rather than stopping at the first.
    pub fn verify(&self) -> Result<VerifyReport> {
        let _lock = self.lock(false)?;
        let mut report = VerifyReport::default();
        let blobs = self.hash_all_blobs(&mut report)?;
        let mut referenced: HashMap<Sha256Digest, ()> = HashMap::new();
        let records_path = self.root_path.join(RECORDS);
        let mut names = Vec::new();
        for entry in self
            .records
            .entries()
            .map_err(|e| store_io("list", records_path.clone(), 0, e))?
        {
            let entry = entry.map_err(|e| store_io("list", records_path.clone(), 0, e))?;
            names.push(entry.file_name());
        }
        names.sort();
        for name in names {
            let path = records_path.join(&name);
            let Some(id) = record_id(&name) else {
                report.problems.push(Problem {
                    artifact_id: None,
                    path,
                    kind: ProblemKind::Stray,
                    message:
                        "not a record (a record is a file named <artifact id>.json); move it out of the store"
                            .into(),
                });
                continue;
            };
            report.records += 1;
            // `record_id` holds only for the name `record_name(id)`.
            let manifest = match crate::store::read_record(&self.records, &record_name(id)) {
                Ok(bytes) => parse_manifest(&bytes, &path, Some(id)),
                Err(e) => Err(store_io("read", path.clone(), 0, e)),
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
            if let Some(p) = self.check_payload(
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
                self.check_bundle(&blobs, &manifest, &mut referenced, &mut report);
            }
        }
        // Damaged blobs that no record references still deserve a line.
        let mut unreferenced_bad: Vec<_> = blobs
            .iter()
            .filter(|(d, s)| !referenced.contains_key(*d) && !matches!(s, BlobState::Good(_)))
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
                BlobState::Good(_) => continue,
            };
            report.problems.push(Problem {
                artifact_id: None,
                path: self.blob_path(digest),
                kind,
                message,
            });
        }
        Ok(report)
    }

    fn hash_all_blobs(
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

    fn check_payload(
        &self,
        blobs: &HashMap<Sha256Digest, BlobState>,
        id: Option<Uuid>,
        what: &str,
        digest: &Sha256Digest,
        size: u64,
    ) -> Option<Problem> {
        let path = self.blob_path(digest);
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
            Some(BlobState::Good(actual) | BlobState::Bad(_, actual)) if *actual != size => (
                ProblemKind::SizeMismatch,
                format!(
                    "{what}payload is {actual} bytes, the record says {size}: it was truncated or replaced; restore it or put the content again"
                ),
            ),
            Some(BlobState::Good(_)) => return None,
            Some(BlobState::Bad(actual, _)) => (
                ProblemKind::HashMismatch,
                format!(
                    "{what}payload hashes to {actual}, the record says {digest}: it was modified on disk; restore it or put the content again"
                ),
            ),
        };
        Some(Problem {
            artifact_id: id,
            path,
            kind,
            message,
        })
    }

    fn check_bundle(
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
                    path: self.blob_path(&handle.content_hash),
                    kind: ProblemKind::BundleInvalid,
                    message: e.to_string(),
                });
                return;
            }
        };
        for entry in &index.entries {
            referenced.insert(entry.content_hash, ());
            if let Some(p) = self.check_payload(
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
