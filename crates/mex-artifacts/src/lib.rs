//! # mex-artifacts: the content-addressed artifact store
//!
//! This crate owns the bytes of every MEX artifact (docs/contract.md §5): storing
//! payloads under their SHA-256, the sidecar manifest (`records/<id>.json`,
//! typed as [`mex_envelope::ArtifactManifest`]) of every artifact record,
//! atomic and crash-safe writes, streaming hashing in constant memory,
//! verified reads, the `verify` walk, canonical bundles of directory trees,
//! validation of untrusted relative paths and `mex://` URIs, and retention
//! (`gc`, expiry, size quota).
//!
//! It does **not** own the wire types (they are `mex-envelope`'s), policy
//! (who may read what classification, what may be exported: the gates and the
//! runtime decide that), the Flight Recorder, or shadow workspaces.
//!
//! ## On-disk layout
//!
//! ```text
//! <root>/                       the store root, e.g. <mex home>/artifacts
//!   LAYOUT                      "mex-artifacts-store-2": refuses to open an unknown layout
//!   lock                        flock(2) target: puts share it, gc, pinning and migration
//!                               take it exclusively
//!   blobs/sha256/ab/cdef…       payloads, named by their SHA-256 (2 hex shard + 62 hex), mode 0444,
//!                               shared by every record with the same bytes
//!   records/<artifact_id>.json  one file per artifact: its sidecar manifest
//!   tmp/                        anonymous temp files of puts in flight (no names); named
//!                               ones only where O_TMPFILE is missing; emptied by gc and on
//!                               open when no put is in flight
//! ```
//!
//! An *artifact* exists exactly when `records/<id>.json` exists (the id in
//! its lower-case hyphenated form); anything else in `records/` is a stray
//! that `verify` reports. A bundle's payload is the RFC 8785 canonical JSON
//! of its [`mex_envelope::BundleIndex`] (so its content hash is
//! `BundleIndex::content_hash()`), and each entry is a blob of its own.
//! Record files and payloads are opened without blocking and used only if
//! they are regular files (a FIFO planted at either name is refused, never
//! waited on), and a record file over 1 MiB is refused unread. A store
//! whose `blobs/`, `blobs/sha256/`, `records/` or `tmp/` is a symlink is
//! refused on open (`tmp -> records` would have the open empty `records/`
//! as crash leftovers).
//!
//! ### Layout 1 and its migration
//!
//! Layout 1 (`mex-artifacts-store-1`) kept a record as a directory,
//! `records/<id>/artifact.json`. Opening such a store migrates it first,
//! under the exclusive store lock: each manifest is hard-linked to
//! `records/<id>.json` (the same, already fsynced file), `records/` is
//! fsynced, the old directories are removed, `records/` is fsynced again,
//! and only then is the marker replaced. A process killed at any instant
//! leaves the marker at layout 1 and every record in its old or new form
//! (or both, as one file), and the next open finishes the job; nothing is
//! lost or listed twice. A record directory that is not a plain manifest
//! (its `artifact.json` a symlink, other files inside, or its new name
//! taken by a different file) is left for `verify` to report as a stray.
//! A marker naming a newer layout is refused.
//!
//! ## How a put stays atomic and crash-safe
//!
//! 1. The source streams through a fixed pool of 1 MiB buffers into an
//!    anonymous temp file (`open(O_TMPFILE)` in `tmp/`: an inode with no
//!    name, which the kernel frees if the writer dies), hashed on the way
//!    ([`PutOptions::expected`] and [`PutOptions::max_bytes`] are checked;
//!    failure just closes the file).
//! 2. If a blob with that hash and size already exists, the temp file is
//!    dropped without an fsync: the second put of the same bytes costs one
//!    read and hash, no payload sync. With [`PutOptions::expected`] set and
//!    the blob present, nothing is written at all. The existing blob is
//!    reused only if it hashes right (or a valid verification-cache entry
//!    vouches for it); any other file at its path (wrong size or bytes, a
//!    symlink, a FIFO) is replaced by the fresh verified bytes (given a temp
//!    name, then renamed over it).
//! 3. Otherwise the temp file is made read-only, fsynced, and given its
//!    name in `blobs/` by `linkat` of `/proc/self/fd/N` with
//!    `AT_SYMLINK_FOLLOW` (no privilege needed; no clobber: if another
//!    writer won the race, its identical blob stays), and the shard
//!    directory is fsynced.
//! 4. The manifest is written to another anonymous temp file, fsynced, and
//!    linked to `records/<id>.json` the same way (the record appears whole
//!    or not at all), and `records/` is fsynced.
//!
//! Where `O_TMPFILE` is not supported (the open fails with `EOPNOTSUPP`,
//! `EISDIR` or `EINVAL`; remembered for the store's lifetime) or
//! `/proc/self/fd` is missing, the temp files are named
//! `tmp/put-<uuid>.tmp` and `tmp/rec-<uuid>.tmp` instead: blobs are
//! hard-linked into place and records renamed into place, and the temp
//! name is removed. Re-pinning ([`ArtifactStore::set_pinned`]) always
//! writes a named temp file and renames it over the record.
//!
//! The directory fsyncs of steps 3 and 4 are *group* fsyncs: concurrent
//! puts in one process add their directory to a pending set and one of them
//! fsyncs every directory in it once, waking the others (leader and
//! followers). A put still returns only after an fsync of its directory that
//! began after its link, so what a returned put promises is unchanged; the
//! fsyncs per put are 4 (blob, shard, manifest, `records/`) and drop towards
//! 2 as concurrency grows; a put makes 2 inodes (the blob, the record) and
//! no name in `tmp/`. The blob is durable (step 3) before its record can
//! appear (step 4), so a record never names a payload a crash can lose.
//!
//! A process killed at any point leaves nothing in `tmp/` (named temp
//! files with the fallback) and possibly a complete, unreferenced blob;
//! neither is an artifact, and `gc` removes both. Opening the store also
//! empties `tmp/` ([`ArtifactStore::reclaim_temp`],
//! [`ArtifactStore::reclaimed_at_open`]) when it can take the exclusive lock
//! without waiting, i.e. when no put is in flight in any process. No shared
//! file is ever rewritten in place: the only read-modify-write
//! ([`ArtifactStore::set_pinned`]) replaces the manifest by rename under the
//! exclusive lock. `gc` takes the exclusive lock so that it never deletes a
//! blob between a put's blob step and its record step, nor a temp file in
//! use. Puts hold the shared lock for their whole duration, so under a
//! continuous stream of puts `gc` may wait (flock(2) does not queue writers
//! ahead of readers); schedule gc in quiet periods. A full disk (ENOSPC,
//! EDQUOT) gives [`ArtifactError::DiskFull`] and leaves no temp file.
//!
//! ## Reading: what is verified, and the cache trade-off
//!
//! Every read checks that the handle matches the stored record
//! ([`ArtifactStore::check_handle`]) and that the payload has the recorded
//! size *and* hash; a changed payload gives [`ArtifactError::Integrity`] and
//! is never served.
//!
//! * [`ArtifactStore::read`] reads into memory and hashes that memory: the
//!   bytes returned are exactly the bytes verified. No residual risk.
//! * [`ArtifactStore::open_streaming`] hashes while the caller reads and
//!   fails at the end: single pass, but the caller must not act on the data
//!   before the final `Ok(0)`.
//! * [`ArtifactStore::open`] hashes the open file first, then hands out the
//!   same file descriptor rewound. Repeated opens may skip the hash through
//!   the verification cache: an in-memory map from digest to (device, inode,
//!   size, mtime, ctime) recorded when a full hash succeeded. Any write,
//!   truncation, `chmod`, `utimes` or replacement by rename changes one of
//!   those, so it forces a re-hash. The cache **cannot** detect: in-place
//!   writes through the raw block device or by a filesystem that does not
//!   update ctime (some network/FUSE filesystems), silent media corruption
//!   (bit rot), someone with root resetting the clock to forge ctime, or a
//!   write that lands after verification while the caller is reading from
//!   the already-verified descriptor. Entries younger than
//!   [`StoreConfig::racy_window`] are never cached, so a write in the same
//!   timestamp tick cannot hide (git's "racy index" rule). Turn it off with
//!   [`StoreConfig::verify_cache`] when that matters; `verify` always
//!   re-hashes everything.
//!
//! ## Paths and bundles
//!
//! [`RelPath`], [`ArtifactUri`] and `internal::validate_reference` validate untrusted
//! strings (grammar in [`path`]). [`ArtifactStore::put_dir`] walks a source
//! directory through `cap_std::fs::Dir` (ambient authority is used only to
//! open that root), so symlinks are resolved beneath the root and cannot
//! escape it; names must be UTF-8 without control, bidirectional or
//! invisible characters, are converted to NFC and refused if two are twins
//! (equal after NFC, case folding or NFKC, see `internal::look_alike_key`); FIFOs, sockets and devices are refused;
//! symlinks to files inside the root are stored as those files. Line endings
//! are normalized (CRLF and CR to LF) only when asked, and only in text
//! entries (valid UTF-8, no NUL).
//!
//! ## Retention
//!
//! [`ArtifactStore::gc`] removes records whose `created_at + ttl days` is
//! before `now` and that are not pinned, then payloads no surviving record or
//! bundle references, then `tmp/` leftovers, and stores a JSON gc-report
//! artifact (kind `report`) listing what it deleted and why. With a quota
//! ([`GcOptions::max_total_bytes`]) it evicts the oldest unpinned artifacts
//! until the payloads fit; pinned artifacts are never evicted. If a manifest
//! or bundle index cannot be read, gc keeps every payload (and says so).

pub mod bundle;
mod dirsync;
mod error;
mod gc;
mod index;
mod ingest;
mod migrate;
pub mod path;
mod store;
mod verify;

#[cfg(test)]
mod tests;

pub use bundle::{
    BUNDLE_MEDIA_TYPE, BundleBuilder, BundleOptions, normalize_line_endings, validate_bundle_index,
};
pub use error::{ArtifactError, Result};
pub use gc::{GcDeletion, GcOptions, GcReport};
pub use index::INLINE_MAX;
pub use path::{ArtifactUri, RelPath, UriTarget};

/// Public only for sibling crates (the gates' reference checks, the
/// engine crates): not a stable API, and hidden from the docs. See
/// ARCHITECTURE.md, "API boundary".
#[doc(hidden)]
pub mod internal {
    pub use crate::path::{PathRef, look_alike_key, validate_reference};
}
pub use store::{ArtifactStore, Expected, PutOptions, StoreConfig, VerifiedFile, VerifyingReader};
pub use verify::{Problem, ProblemKind, VerifyReport};
