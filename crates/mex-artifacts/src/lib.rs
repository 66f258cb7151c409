//! # mex-artifacts: the content-addressed artifact store
//!
//! This crate owns the bytes of every MEX artifact (docs/contract.md §5): storing
//! payloads under their SHA-256, the sidecar manifest (typed as
//! [`mex_envelope::ArtifactManifest`]) of every artifact record, atomic and
//! crash-safe writes, streaming hashing in constant memory, verified reads,
//! the `verify` walk, canonical bundles of directory trees, validation of
//! untrusted relative paths and `mex://` URIs, and retention (`gc`, expiry,
//! size quota).
//!
//! It does **not** own the wire types (they are `mex-envelope`'s), policy
//! (who may read what classification, what may be exported: the gates and the
//! runtime decide that), the Flight Recorder, or shadow workspaces.
//!
//! ## On-disk layout (layout 3)
//!
//! ```text
//! <root>/                       the store root, e.g. <mex home>/artifacts
//!   LAYOUT                      "mex-artifacts-store-3": refuses to open an unknown layout
//!   lock                        flock(2) target: puts share it, gc, pinning and migration
//!                               take it exclusively
//!   index.db (+ -wal, -shm)     SQLite, WAL mode, synchronous=FULL:
//!                                 records(id, manifest)           one row per artifact: its
//!                                                                 sidecar manifest bytes
//!                                 inline_blobs(hash, size, bytes) payloads of at most
//!                                                                 INLINE_MAX (16 KiB) bytes
//!   blobs/sha256/ab/cdef…       larger payloads, named by their SHA-256 (2 hex shard + 62
//!                               hex), mode 0444, shared by every record with the same bytes
//!   tmp/                        anonymous temp files of large puts in flight (no names);
//!                               named ones only where O_TMPFILE is missing; emptied by gc
//!                               and on open when no put is in flight; gc-<uuid>.db and
//!                               verify-<uuid>.db: scratch databases of a running gc/verify
//! ```
//!
//! An *artifact* exists exactly when its row in `records` exists (the id in
//! its lower-case hyphenated form); a row with any other id is reported by
//! `verify` and never listed. A payload's home follows from its size: at
//! most [`INLINE_MAX`] bytes, a row of `inline_blobs`; larger, a file. A read
//! looks for an inline row first, then a file (a store migrated from layout
//! 2 keeps its small payloads as files). A bundle's payload is the RFC 8785
//! canonical JSON of its [`mex_envelope::BundleIndex`] (so its content hash
//! is `BundleIndex::content_hash()`), and each entry is a payload of its own
//! (inline or a file by the same rule).
//!
//! Small payloads live inline because a put's cost was its durable new
//! files: creating, writing and fsyncing a file and fsyncing its directory
//! costs several times one fsync, and the common output is tens of bytes.
//! Inline, a small put is *one* transaction (one WAL fsync), makes no
//! inode, and concurrent puts share that fsync (group commit, below).
//! Above 16 KiB a payload's cost is its bytes, not its inode, and a file
//! can be streamed through a fixed buffer pool and handed out as a
//! descriptor; below it, holding the payload in memory to hash and commit
//! it is cheap.
//!
//! The index is opened without following symlinks and only if it is a
//! regular file (its `-wal` and `-shm` too); one that is not an SQLite
//! database, an SQLite database without the store's two tables (another
//! program's), a table with other columns, a trigger or view (which
//! could undo a put's rows behind its back), or an index missing from a
//! store whose marker says layout 3 (all its records are in it), is a clear
//! error rather than an empty store (whose gc would delete every payload).
//! The marker itself is read only if it is a small regular file. While
//! `records/` still holds record files that are not rows, gc deletes no
//! payload. Payload files are opened without
//! blocking and used only if they are regular files (a FIFO planted at a
//! payload path is refused, never waited on), and a record over 1 MiB is
//! refused unread. A store whose `blobs/`, `blobs/sha256/`, `tmp/` or
//! (during a migration) `records/` is a symlink is refused on open
//! (`tmp -> blobs/sha256` would have the open empty the payloads as crash
//! leftovers).
//!
//! ### Older layouts and their migration
//!
//! Layout 1 (`mex-artifacts-store-1`) kept a record as
//! `records/<id>/artifact.json`, layout 2 (`mex-artifacts-store-2`) as the
//! file `records/<id>.json`, with every payload a file. Opening such a store
//! migrates it (1 to 2, then 2 to 3) under the exclusive store lock, so it
//! waits for puts in flight in other processes: every record file the
//! reader accepts is imported, exact bytes, into `index.db` (transactions
//! of a few thousand, each durable), then the marker is replaced (durably),
//! then the imported files and `records/` are removed. A process killed at
//! any instant leaves a store the next open finishes migrating with no
//! record lost, duplicated or changed (see `migrate.rs` for each step).
//! Anything the reader refuses is left in `records/` for `verify` to report
//! as a stray. Payload files stay files. A marker naming a newer layout is
//! refused.
//!
//! ## How a put stays atomic and crash-safe
//!
//! 1. The first `INLINE_MAX + 1` bytes of the source are read into memory
//!    ([`PutOptions::max_bytes`] is checked as they come).
//! 2. *Small payload* (the source ended within `INLINE_MAX` bytes): it is
//!    hashed in memory ([`PutOptions::expected`] checked) and nothing is
//!    written yet.
//! 3. *Large payload*: those bytes and the rest of the source stream
//!    through a fixed pool of 1 MiB buffers into an anonymous temp file
//!    (`open(O_TMPFILE)` in `tmp/`: an inode with no name, which the kernel
//!    frees if the writer dies), hashed on the way (failure just closes the
//!    file). If a blob with that hash and size already exists and hashes
//!    right (or a valid verification-cache entry vouches for it), the temp
//!    file is dropped without an fsync; with [`PutOptions::expected`] set
//!    and that blob present, nothing is written at all. Any other file at
//!    its path (wrong size or bytes, a symlink, a FIFO) is replaced by the
//!    fresh verified bytes (given a temp name, then renamed over it).
//!    Otherwise the temp file is made read-only, fsynced, and given its
//!    name in `blobs/` by `linkat` of `/proc/self/fd/N` with
//!    `AT_SYMLINK_FOLLOW` (no clobber: if another writer won the race, its
//!    identical blob stays), and the shard directory is fsynced (a group
//!    fsync shared by concurrent puts). The payload is durable before its
//!    record can exist.
//! 4. One transaction inserts the record row and, for a small payload, its
//!    `inline_blobs` row (absent, or present with other bytes: a damaged
//!    row is repaired with the verified bytes; present and equal: left
//!    alone). A damaged *file* at a small payload's blob path (a layout-2
//!    copy, or one planted there) is removed first; an intact one stays.
//!    The artifact exists when that transaction commits; with
//!    `synchronous=FULL` in WAL mode the commit is durable when it returns.
//!
//! The commit is a *group commit*: a put adds its rows to a pending list;
//! the first waiter that finds no commit running takes every pending put's
//! rows and commits them in one transaction, then wakes the others, and
//! each put returns only after the transaction holding its rows is durable.
//! So a small put costs one WAL fsync and no inode, and concurrent puts in
//! one process share fsyncs; reads use their own connections and never
//! wait for the writer. Across processes SQLite's lock serializes writers
//! (busy timeout 30 s).
//!
//! What a crash leaves, at each step: during 1 to 2, nothing; during 3, no
//! name in `tmp/` (named temp files with the fallback, which the next open
//! or gc removes) and possibly a complete, unreferenced blob file, which gc
//! removes; during 4, the transaction either committed (the artifact exists
//! whole, with its payload) or rolls back on the next open of the database
//! (no trace). A record never names a payload a crash can lose.
//!
//! Where `O_TMPFILE` is not supported (the open fails with `EOPNOTSUPP`,
//! `EISDIR` or `EINVAL`; remembered for the store's lifetime) or
//! `/proc/self/fd` is missing, large payloads are written to named temp
//! files `tmp/put-<uuid>.tmp` instead, hard-linked into place, and the temp
//! name removed. Re-pinning ([`ArtifactStore::set_pinned`]) rewrites the
//! record row in one transaction under the exclusive lock.
//!
//! Opening the store also empties `tmp/` ([`ArtifactStore::reclaim_temp`],
//! [`ArtifactStore::reclaimed_at_open`]) when it can take the exclusive lock
//! without waiting, i.e. when no put is in flight in any process. `gc` takes
//! the exclusive lock so that it never deletes a payload between a put's
//! payload step and its record commit, nor a temp file in use. Puts hold
//! the shared lock for their whole duration, so under a continuous stream
//! of puts `gc` may wait (flock(2) does not queue writers ahead of
//! readers); schedule gc in quiet periods. A full disk (ENOSPC, EDQUOT, or
//! SQLite's "database or disk is full") gives [`ArtifactError::DiskFull`]
//! and leaves no temp file and no record.
//!
//! ## Reading: what is verified, and the cache trade-off
//!
//! Every read checks that the handle matches the stored record
//! ([`ArtifactStore::check_handle`]) and that the payload has the recorded
//! size *and* hash; a changed payload gives [`ArtifactError::Integrity`] and
//! is never served. An inline payload is re-hashed on every read (it is at
//! most 16 KiB), whichever method reads it: a row changed in the database
//! is refused exactly like a changed file.
//!
//! * [`ArtifactStore::read`] reads into memory and hashes that memory: the
//!   bytes returned are exactly the bytes verified. No residual risk.
//! * [`ArtifactStore::open_streaming`] hashes while the caller reads and
//!   fails at the end: single pass, but the caller must not act on the data
//!   before the final `Ok(0)`.
//! * [`ArtifactStore::open`] hashes the open file first, then hands out the
//!   same file descriptor rewound (an inline payload: the very bytes hashed,
//!   from memory). Repeated opens may skip the hash through
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
//! before `now` and that are not pinned (a transaction per chunk of records
//! read), then payloads no surviving record or bundle references (inline
//! rows a transaction per chunk, then files), then `tmp/` leftovers and
//! record files a migration imported but did not get to remove, and stores
//! a JSON gc-report artifact (kind `report`) listing what it deleted and
//! why. With a quota ([`GcOptions::max_total_bytes`]) it evicts the oldest
//! unpinned artifacts until the payloads fit; pinned artifacts are never
//! evicted. If a manifest or bundle index cannot be read, or the records
//! table does not read back whole or has no unique binary key on its id
//! (an altered table, whose walk by key could step over rows sharing an
//! id), gc keeps every payload (and says so); verify reports such a table.
//! A file in `blobs/sha256/` is a payload only at `<2 hex>/<62 hex>`, where
//! reads look; verify looks a payload up again before calling it missing
//! (puts share the store lock with verify and may commit during its walk).
//!
//! gc and verify run in memory bounded independently of the store's size:
//! they read `index.db` in chunks of at most 1,024 rows (and 4 MiB of
//! manifests), each its own short read (the WAL is never pinned for the
//! whole walk), and keep what they must remember per payload and record
//! (reference counts, eviction candidates, payload states, references) in a
//! scratch SQLite database in `tmp/` (no journal, no fsync, an 8 MiB page
//! cache, spilling to the store's own disk), removed when they end. Their
//! reports list at most [`REPORT_LIST_MAX`] items per list and count the
//! rest ([`GcReport::deleted_count`], [`VerifyReport::problems_omitted`]).
//! A 200,000-record store: gc 281 MB -> 22 MB, verify 133 MB -> 18 MB of
//! peak RSS (debug build, `examples/walk.rs`).

// The large-store builder of the integration tests, for the unit tests
// that compare gc and verify with their former whole-store versions.
#[cfg(test)]
extern crate self as mex_artifacts;
#[cfg(test)]
#[path = "../tests/support/bulk.rs"]
mod bulk;

pub mod bundle;
mod dirsync;
mod error;
mod gc;
mod index;
mod ingest;
mod migrate;
pub mod path;
mod scratch;
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

/// The most items a gc or verify report lists verbatim per list (records
/// deleted, payloads deleted, notes, temp entries, problems); each report
/// also counts everything, so a huge store's report stays bounded.
pub const REPORT_LIST_MAX: usize = 1_000;
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
