//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

use mex_envelope::{EnvelopeError, Sha256Digest};
use thiserror::Error;
use uuid::Uuid;

/// Everything that can go wrong in the artifact store. Each message says what
/// went wrong, where (a path, an artifact id) and what to do about it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ArtifactError {
    /// A filesystem operation inside the store failed.
    #[error(
        "artifact store I/O error: could not {action} {path}: {source}; check that the store directory exists, is writable and is not on a failing disk"
    )]
    Io {
        /// What the store was doing, e.g. "create directory".
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The filesystem holding the store ran out of space (ENOSPC or EDQUOT).
    #[error(
        "disk full while {action} {path} after {written} bytes: {source}; free space on the filesystem holding the store (or run gc), then retry; no partial artifact was created"
    )]
    DiskFull {
        /// What the store was doing.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// Bytes written to the temporary file before the failure.
        written: u64,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The source of a put could not be read.
    #[error(
        "cannot read the source {source_name} after {read} bytes: {source}; check that it exists, is readable and is a regular file; nothing was stored"
    )]
    SourceUnreadable {
        /// The source path, or `<reader>` for a reader.
        source_name: String,
        /// Bytes read before the failure.
        read: u64,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The source of a put is not a regular file (a directory, FIFO, device
    /// or socket).
    #[error(
        "refused source {path}: it is a {file_type}, not a regular file; put a regular file, or use put_dir for a directory"
    )]
    NotARegularFile {
        /// The source path.
        path: PathBuf,
        /// What it is.
        file_type: &'static str,
    },
    /// The content did not match the hash and size the caller expected.
    #[error(
        "content of {source_name} does not match what was expected: expected sha256 {expected_hash} ({expected_size} bytes), got sha256 {actual_hash} ({actual_size} bytes); check the source or the expected digest; nothing was stored"
    )]
    ExpectedMismatch {
        /// The source path, or `<reader>`.
        source_name: String,
        /// Expected digest.
        expected_hash: Sha256Digest,
        /// Expected size.
        expected_size: u64,
        /// Digest of what was read.
        actual_hash: Sha256Digest,
        /// Size of what was read.
        actual_size: u64,
    },
    /// The put options are invalid.
    #[error("invalid put options: {message}")]
    InvalidOptions {
        /// What is wrong and what to do.
        message: String,
    },
    /// The content is larger than the caller's limit.
    #[error(
        "content of {source_name} exceeds the limit of {limit} bytes; raise the limit (output budget) or store less; nothing was stored"
    )]
    TooLarge {
        /// The source path, or `<reader>`.
        source_name: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A stored payload does not match its recorded hash or size: it was
    /// changed on disk. It is never served.
    #[error(
        "integrity failure for artifact {artifact}: payload {path} should be sha256 {expected_hash} ({expected_size} bytes) but {found}; the payload was changed or damaged on disk and will not be served: run `verify`, then restore the file from a backup or put the content again"
    )]
    Integrity {
        /// The artifact id, or `-` when only a blob is concerned.
        artifact: String,
        /// The payload path.
        path: PathBuf,
        /// Recorded digest.
        expected_hash: Sha256Digest,
        /// Recorded size.
        expected_size: u64,
        /// What was found instead.
        found: String,
    },
    /// No record with this id.
    #[error(
        "artifact {artifact_id} not found in the store at {root}; check the id, or whether gc removed it (see the gc reports)"
    )]
    NotFound {
        /// The id.
        artifact_id: Uuid,
        /// The store root.
        root: PathBuf,
    },
    /// A handle presented by a caller does not match the stored record.
    #[error(
        "handle for artifact {artifact_id} does not match the stored manifest at {path}: field {field} differs (handle says {claimed}, store says {stored}); use the handle the store returned, unchanged"
    )]
    HandleMismatch {
        /// The id.
        artifact_id: Uuid,
        /// The manifest path.
        path: PathBuf,
        /// The first differing field.
        field: &'static str,
        /// The handle's value.
        claimed: String,
        /// The stored value.
        stored: String,
    },
    /// A sidecar manifest could not be read or parsed.
    #[error(
        "invalid sidecar manifest {path}: {message}; the record is damaged: restore the store's index.db (or, in a store of an older layout, the record file) from a backup"
    )]
    ManifestInvalid {
        /// The manifest path.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A relative path (from a bundle, params, or a URI) is unsafe or malformed.
    #[error(
        "refused path {path:?}: {reason}; use a relative path of '/'-separated names without '..', '.', '\\\\', control characters or a leading '/'"
    )]
    UnsafePath {
        /// The path as given (lossy for non-UTF-8).
        path: String,
        /// Why.
        reason: String,
    },
    /// An artifact URI is malformed.
    #[error(
        "refused artifact URI {uri:?}: {reason}; expected mex://artifact/<uuid>[/<path>] or mex://sha256/<64 lowercase hex>[/<path>]"
    )]
    InvalidUri {
        /// The URI as given.
        uri: String,
        /// Why.
        reason: String,
    },
    /// A directory entry could not be put into a bundle.
    #[error(
        "refused bundle entry {entry:?} under {root}: {reason}; remove or replace it, then retry"
    )]
    UnsafeEntry {
        /// The bundle source root.
        root: PathBuf,
        /// The entry path relative to the root (lossy).
        entry: String,
        /// Why.
        reason: String,
    },
    /// A bundle (index or entry lookup) is malformed or lacks an entry.
    #[error("bundle {artifact_id}: {message}")]
    Bundle {
        /// The bundle artifact.
        artifact_id: Uuid,
        /// What is wrong and what to do.
        message: String,
    },
    /// Canonical JSON could not be produced.
    #[error("cannot canonicalize a bundle index: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The store lock could not be taken.
    #[error(
        "cannot lock the artifact store at {path}: {source}; check permissions on the store directory"
    )]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = ArtifactError> = std::result::Result<T, E>;

/// Whether an I/O error means "out of space" (ENOSPC, or EDQUOT for quotas).
pub(crate) fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error())
        || e.raw_os_error() == Some(rustix::io::Errno::DQUOT.raw_os_error())
}

/// Classify a store-side I/O error: disk full gets its own variant.
pub(crate) fn store_io(
    action: &'static str,
    path: PathBuf,
    written: u64,
    source: io::Error,
) -> ArtifactError {
    if is_disk_full(&source) {
        ArtifactError::DiskFull {
            action,
            path,
            written,
            source,
        }
    } else {
        ArtifactError::Io {
            action,
            path,
            source,
        }
    }
}
