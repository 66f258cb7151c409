//! `index.db`: the SQLite home of every record and of small payloads.
//!
//! Two tables: `records(id, manifest)` holds each artifact's sidecar
//! manifest bytes (an artifact exists exactly when its row does), and
//! `inline_blobs(hash, size, bytes)` holds payloads of at most
//! [`INLINE_MAX`] bytes. The database runs in WAL mode with
//! `synchronous=FULL`, so a commit is durable when it returns (one fsync of
//! the WAL), and readers never wait for the writer.
//!
//! Writes go through a *group commit*: a writer adds its rows to a pending
//! list and waits; the first waiter that finds no commit running (the
//! leader) takes every pending row and commits them in one transaction,
//! then wakes the others. Each writer returns only after the transaction
//! holding its rows is durable, so concurrent puts in one process share
//! fsyncs instead of queueing for one each. Across processes, SQLite's own
//! lock serializes writers (with a busy timeout of [`BUSY_TIMEOUT`]).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use mex_envelope::Sha256Digest;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use uuid::Uuid;

use crate::error::{ArtifactError, Result};
use mex_group::Group;

/// The file name of the index in the store root.
pub(crate) const INDEX: &str = "index.db";

/// The largest payload kept inline in `index.db` rather than as a file of
/// its own. A trivial operation's output is tens of bytes and a typical
/// report a few kilobytes; 16 KiB keeps those in a database page or four
/// (one commit, no new inode) while anything larger, whose cost is its
/// bytes rather than its inode, stays a file that can be streamed and
/// mapped. Payloads this size are hashed and held in memory on put and read.
pub const INLINE_MAX: u64 = 16 * 1024;

/// How long a writer waits for another process's transaction.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Read connections kept open for reuse.
const READERS_KEPT: usize = 8;

/// One change to the index.
#[derive(Debug)]
pub(crate) enum Op {
    /// Store a small payload (or repair a damaged row of it).
    InlineBlob { hash: Sha256Digest, bytes: Vec<u8> },
    /// Add a new record.
    InsertRecord { id: Uuid, manifest: Vec<u8> },
    /// Rewrite an existing record (pinning).
    ReplaceRecord { id: Uuid, manifest: Vec<u8> },
    /// Remove a record.
    DeleteRecord { id: Uuid },
    /// Remove a small payload.
    DeleteInline { hash: Sha256Digest },
}

/// The outcome of a failed group, kept for its waiters.
#[derive(Debug, Clone)]
struct Failure {
    disk_full: bool,
    why: String,
}

/// The open index of one store.
pub(crate) struct Index {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    group: Group<Vec<Op>, Failure>,
    /// Test hook: the next group's transaction panics.
    #[cfg(test)]
    fault_panic: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// An index error as a store error: what failed, where, and what to do.
pub(crate) fn db_error(action: &'static str, path: &Path, e: &rusqlite::Error) -> ArtifactError {
    let code = e.sqlite_error_code();
    let source = match code {
        Some(rusqlite::ErrorCode::NotADatabase) => io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{e}: {} is not an SQLite database (it was replaced or damaged); restore it from a backup, or move it away to start an empty store",
                path.display()
            ),
        ),
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{e}: the index {} is damaged; restore it from a backup",
                path.display()
            ),
        ),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "{e}: another process held the index for over {} s; retry, and look for a stuck mex process",
                    BUSY_TIMEOUT.as_secs()
                ),
            )
        }
        _ => io::Error::other(e.to_string()),
    };
    if code == Some(rusqlite::ErrorCode::DiskFull) {
        return ArtifactError::DiskFull {
            action,
            path: path.to_path_buf(),
            written: 0,
            source: io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()),
        };
    }
    ArtifactError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The tables of the index and their columns, in order.
const TABLES: [(&str, &[&str]); 2] = [
    ("records", &["id", "manifest"]),
    ("inline_blobs", &["hash", "size", "bytes"]),
];

/// The error for an `index.db` that is an SQLite database but not a store
/// index.
fn foreign_index(path: &Path, what: String) -> ArtifactError {
    ArtifactError::Io {
        action: "open the index",
        path: path.to_path_buf(),
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{what}; restore the store's index.db from a backup, or move the store away to start an empty one"
            ),
        ),
    }
}

fn open_connection(path: &Path, create: bool) -> rusqlite::Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

impl Index {
    /// Open `path` (creating the file when `create`), in WAL mode with
    /// `synchronous=FULL`. The caller has checked that `path` is a regular
    /// file or absent. With `tables_expected` (an existing index of a store
    /// whose marker says layout 3) both tables must already be there: an
    /// SQLite file without them is another program's database, never taken
    /// for an empty store (whose gc would then delete every payload).
    /// Otherwise missing tables are created. Either way each table must
    /// have exactly this crate's columns.
    pub(crate) fn open(path: PathBuf, create: bool, tables_expected: bool) -> Result<Self> {
        let err = |e: rusqlite::Error| db_error("open the index", &path, &e);
        let writer = open_connection(&path, create).map_err(err)?;
        // Waits for another process creating the same new index.
        let mode = mex_sqlite::switch_to_wal(&writer, BUSY_TIMEOUT).map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(db_error(
                "switch to WAL mode",
                &path,
                &rusqlite::Error::InvalidParameterName(format!("journal_mode stayed {mode}")),
            ));
        }
        if tables_expected {
            for (table, _) in TABLES {
                let found: bool = writer
                    .query_row(
                        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                        [table],
                        |r| r.get(0),
                    )
                    .map_err(err)?;
                if !found {
                    return Err(foreign_index(
                        &path,
                        format!(
                            "it has no table {table:?}, so it is not this store's index (another program's database, or a damaged copy)"
                        ),
                    ));
                }
            }
        }
        writer
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS records (
                     id TEXT PRIMARY KEY NOT NULL,
                     manifest BLOB NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS inline_blobs (
                     hash TEXT PRIMARY KEY NOT NULL,
                     size INTEGER NOT NULL,
                     bytes BLOB NOT NULL
                 );",
            )
            .map_err(err)?;
        // Nothing else may act on a write: a trigger planted in the file
        // (say, one deleting every new payload row) would have puts report
        // success for rows that are gone, and a view cannot hold rows.
        let extra: Vec<String> = writer
            .prepare(
                "SELECT type || ' ' || name FROM sqlite_master
                 WHERE type IN ('trigger', 'view')
                    OR (name IN ('records', 'inline_blobs') AND type != 'table')
                 ORDER BY name",
            )
            .and_then(|mut stmt| {
                stmt.query_map([], |r| Ok(text_of(r.get_ref(0)?)))
                    .and_then(|rows| rows.collect())
            })
            .map_err(err)?;
        if !extra.is_empty() {
            return Err(foreign_index(
                &path,
                format!(
                    "it holds {}, which this store never creates (only the tables records and inline_blobs), so it is not this store's index as written",
                    extra.join(", ")
                ),
            ));
        }
        for (table, want) in TABLES {
            let mut stmt = writer
                .prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
                .map_err(err)?;
            let columns = stmt
                .query_map([table], |r| Ok(text_of(r.get_ref(0)?)))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
                .map_err(err)?;
            if columns != want {
                return Err(foreign_index(
                    &path,
                    format!(
                        "its table {table:?} has the columns {columns:?}, not {want:?}, so it is not this store's index"
                    ),
                ));
            }
        }
        Ok(Self {
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            group: Group::default(),
            #[cfg(test)]
            fault_panic: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Where the index is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` on a read connection (WAL readers see the last commit and
    /// never wait for a writer).
    pub(crate) fn read<T>(
        &self,
        action: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => open_connection(&self.path, false)
                .map_err(|e| db_error("open the index", &self.path, &e))?,
        };
        let out = f(&conn).map_err(|e| db_error(action, &self.path, &e));
        let mut pool = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < READERS_KEPT {
            pool.push(conn);
        }
        out
    }

    /// Run `f` inside one immediate transaction on the write connection,
    /// outside the group commit (migration, which holds the exclusive store
    /// lock). Durable when it returns.
    pub(crate) fn write_now<T>(
        &self,
        action: &'static str,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let run = || {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        };
        run().map_err(|e| db_error(action, &self.path, &e))
    }

    /// Apply `ops` in one transaction shared with every concurrent caller's
    /// (see the module docs); returns once that transaction is durable.
    pub(crate) fn commit(&self, ops: Vec<Op>) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let mine = self.enqueue(ops);
        self.wait(mine)
    }

    /// Add `ops` to the pending group; returns its number, which the caller
    /// must then [`Index::wait`] for (it counts as one of its waiters).
    fn enqueue(&self, ops: Vec<Op>) -> u64 {
        self.group.enqueue(|pending| pending.extend(ops))
    }

    /// Wait until group `mine` is committed (leading a commit when none is
    /// running; see [`mex_group::Group`]) and return its outcome.
    fn wait(&self, mine: u64) -> Result<()> {
        let commit = |ops: Vec<Op>| {
            self.apply(&ops).map_err(|e| Failure {
                disk_full: e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
                why: match db_error("commit to", &self.path, &e) {
                    ArtifactError::Io { source, .. } => source.to_string(),
                    other => other.to_string(),
                },
            })
        };
        // A panic while committing (a bug, or a failed allocation that
        // unwinds) fails this group like an error: its transaction rolled
        // back as it unwound.
        let panicked = || {
            Failure {
            disk_full: false,
            why: "the commit stopped on an internal error (a panic) and was rolled back; retry, and report this as a bug".to_owned(),
        }
        };
        self.group
            .wait(mine, commit, panicked)
            .map_err(|f| self.failed(f.disk_full, f.why))
    }

    fn failed(&self, disk_full: bool, why: String) -> ArtifactError {
        if disk_full {
            return ArtifactError::DiskFull {
                action: "commit to",
                path: self.path.clone(),
                written: 0,
                source: io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()),
            };
        }
        ArtifactError::Io {
            action: "commit to",
            path: self.path.clone(),
            source: io::Error::other(why),
        }
    }

    fn apply(&self, ops: &[Op]) -> rusqlite::Result<()> {
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        #[cfg(test)]
        #[allow(clippy::panic, reason = "test hook: a panic in the committer")]
        if self
            .fault_panic
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            panic!("fault injected in the committer");
        }
        for op in ops {
            match op {
                Op::InlineBlob { hash, bytes } => {
                    // A row already holding these bytes is left alone; a
                    // damaged one is repaired with the verified bytes.
                    tx.prepare_cached(
                        "INSERT INTO inline_blobs (hash, size, bytes) VALUES (?1, ?2, ?3)
                         ON CONFLICT (hash) DO UPDATE SET size = excluded.size, bytes = excluded.bytes
                         WHERE inline_blobs.size IS NOT excluded.size
                            OR inline_blobs.bytes IS NOT excluded.bytes",
                    )?
                    .execute(params![hash.to_hex(), bytes.len() as i64, bytes])?;
                }
                Op::InsertRecord { id, manifest } => {
                    tx.prepare_cached("INSERT INTO records (id, manifest) VALUES (?1, ?2)")?
                        .execute(params![id.hyphenated().to_string(), manifest])?;
                }
                Op::ReplaceRecord { id, manifest } => {
                    tx.prepare_cached("UPDATE records SET manifest = ?2 WHERE id = ?1")?
                        .execute(params![id.hyphenated().to_string(), manifest])?;
                }
                Op::DeleteRecord { id } => {
                    tx.prepare_cached("DELETE FROM records WHERE id = ?1")?
                        .execute(params![id.hyphenated().to_string()])?;
                }
                Op::DeleteInline { hash } => {
                    tx.prepare_cached("DELETE FROM inline_blobs WHERE hash = ?1")?
                        .execute(params![hash.to_hex()])?;
                }
            }
        }
        tx.commit()
    }

    /// The manifest bytes of record `id`, if the row exists; `Err(why)` when
    /// the row is larger than `max` (never read whole) or not bytes. Sizes are measured
    /// with `octet_length`: `length` of a TEXT value counts characters up to
    /// the first NUL, so a planted text row starting with one would measure
    /// 0 and be read whole.
    pub(crate) fn record(&self, id: Uuid, max: u64) -> Result<Option<RecordBytes>> {
        self.read("read a record from", |c| {
            c.prepare_cached(
                "SELECT typeof(manifest), octet_length(manifest),
                        CASE WHEN octet_length(manifest) <= ?2 THEN manifest END
                 FROM records WHERE id = ?1",
            )?
            .query_row(params![id.hyphenated().to_string(), max as i64], |r| {
                record_bytes(r, 0, max)
            })
            .optional()
        })
    }

    /// The id column (as text) of every record row, sorted.
    pub(crate) fn record_ids(&self) -> Result<Vec<String>> {
        self.read("list the records of", |c| {
            let mut stmt = c.prepare_cached("SELECT id FROM records ORDER BY id")?;
            let rows = stmt.query_map([], |r| Ok(text_of(r.get_ref(0)?)))?;
            rows.collect()
        })
    }

    /// Every record row: its id column as text, and its manifest bytes
    /// (`Err(why)` when larger than `max` or not bytes), sorted by id. All
    /// at once: only for tests (gc and verify read in chunks).
    #[cfg(test)]
    pub(crate) fn record_rows(&self, max: u64) -> Result<Vec<(String, RecordBytes)>> {
        self.read("list the records of", |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, typeof(manifest), octet_length(manifest),
                        CASE WHEN octet_length(manifest) <= ?1 THEN manifest END
                 FROM records ORDER BY id",
            )?;
            let rows = stmt.query_map(params![max as i64], |r| {
                Ok((text_of(r.get_ref(0)?), record_bytes(r, 1, max)?))
            })?;
            rows.collect()
        })
    }

    /// The next record rows after the key `after` (from the first when
    /// `None`), in key order: at most `limit` rows, and no more once the
    /// manifests read reach `byte_budget` bytes (at least one row when any
    /// is left). Each row: its raw key (to ask for the rows after it), its
    /// id column as text, and its manifest bytes (`Err(why)` when larger
    /// than `max` or not bytes). Each call is its own short read, so a walk
    /// over a large store never pins the WAL.
    pub(crate) fn record_rows_after(
        &self,
        after: Option<&Value>,
        limit: usize,
        byte_budget: u64,
        max: u64,
    ) -> Result<Vec<(Value, String, RecordBytes)>> {
        self.read("list the records of", |c| {
            // Two statements: with `?2 IS NULL OR id > ?2` SQLite would
            // scan from the first row on every call.
            let mut stmt = c.prepare_cached(if after.is_some() {
                "SELECT id, typeof(manifest), octet_length(manifest),
                        CASE WHEN octet_length(manifest) <= ?1 THEN manifest END
                 FROM records WHERE id COLLATE BINARY > ?2 ORDER BY id COLLATE BINARY LIMIT ?3"
            } else {
                "SELECT id, typeof(manifest), octet_length(manifest),
                        CASE WHEN octet_length(manifest) <= ?1 THEN manifest END
                 FROM records WHERE ?2 IS NULL ORDER BY id COLLATE BINARY LIMIT ?3"
            })?;
            let mut rows = stmt.query(params![max as i64, after, limit as i64])?;
            let mut out = Vec::new();
            let mut bytes = 0u64;
            while bytes < byte_budget
                && let Some(r) = rows.next()?
            {
                let key: Value = r.get(0)?;
                let manifest = record_bytes(r, 1, max)?;
                bytes += manifest.as_ref().map_or(0, |m| m.len() as u64);
                out.push((key, text_of(r.get_ref(0)?), manifest));
            }
            Ok(out)
        })
    }

    /// Whether the records table's `id` column is unique by binary
    /// comparison (a unique index on exactly that column, not partial, in
    /// the binary collation: the primary key of the table as created). The
    /// walks by key (`id > last`, binary order) read every row only then:
    /// a table altered to hold two rows with one id has the walk step over
    /// the second when a chunk ends at the first.
    pub(crate) fn record_ids_unique(&self) -> Result<bool> {
        self.read("check the key of the records table of", |c| {
            c.prepare_cached(
                "SELECT EXISTS (
                     SELECT 1 FROM pragma_index_list('records') AS l
                     WHERE l.\"unique\" = 1 AND l.partial = 0
                       AND (SELECT count(*) FROM pragma_index_xinfo(l.name) AS x
                            WHERE x.key = 1) = 1
                       AND EXISTS (SELECT 1 FROM pragma_index_xinfo(l.name) AS x
                                   WHERE x.key = 1 AND x.name = 'id'
                                     AND x.coll = 'BINARY'))",
            )?
            .query_row([], |r| r.get(0))
        })
    }

    /// How many record rows there are.
    pub(crate) fn record_count(&self) -> Result<u64> {
        self.read("count the records of", |c| {
            c.prepare_cached("SELECT count(*) FROM records")?
                .query_row([], |r| Ok(u64_of(r.get_ref(0)?).unwrap_or(0)))
        })
    }

    /// The next inline rows after the key `after` (from the first when
    /// `None`), at most `limit`, in key order: the raw key, the hash column
    /// as text and the length of the bytes. One short read per call.
    pub(crate) fn inline_hashes_after(
        &self,
        after: Option<&Value>,
        limit: usize,
    ) -> Result<Vec<(Value, String, u64)>> {
        self.read("list the payloads of", |c| {
            let mut stmt = c.prepare_cached(if after.is_some() {
                "SELECT hash, octet_length(bytes) FROM inline_blobs
                 WHERE hash > ?1 ORDER BY hash LIMIT ?2"
            } else {
                "SELECT hash, octet_length(bytes) FROM inline_blobs
                 WHERE ?1 IS NULL ORDER BY hash LIMIT ?2"
            })?;
            let rows = stmt.query_map(params![after, limit as i64], |r| {
                Ok((
                    r.get::<_, Value>(0)?,
                    text_of(r.get_ref(0)?),
                    u64_of(r.get_ref(1)?).unwrap_or(0),
                ))
            })?;
            rows.collect()
        })
    }

    /// The inline payload row of `hash`, if there is one; bytes longer
    /// than [`INLINE_MAX`] are not read.
    pub(crate) fn inline_blob(&self, hash: &Sha256Digest) -> Result<Option<InlineRow>> {
        self.inline_row_by_text(&hash.to_hex())
    }

    /// Every inline row's hash column as text and its length in bytes,
    /// sorted by hash. All at once: only for tests.
    #[cfg(test)]
    pub(crate) fn inline_hashes(&self) -> Result<Vec<(String, u64)>> {
        self.read("list the payloads of", |c| {
            let mut stmt = c.prepare_cached(
                "SELECT hash, octet_length(bytes) FROM inline_blobs ORDER BY hash",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((text_of(r.get_ref(0)?), u64_of(r.get_ref(1)?).unwrap_or(0)))
            })?;
            rows.collect()
        })
    }

    /// The inline row whose hash column is `hash_text`.
    pub(crate) fn inline_row_by_text(&self, hash_text: &str) -> Result<Option<InlineRow>> {
        self.read("read a payload from", |c| {
            c.prepare_cached(
                "SELECT size, octet_length(bytes), CASE WHEN octet_length(bytes) <= ?2 THEN bytes END
                 FROM inline_blobs WHERE hash = ?1",
            )?
            .query_row(params![hash_text, INLINE_MAX as i64], inline_row)
            .optional()
        })
    }

    /// `PRAGMA quick_check`: `None` when the database is sound, else what
    /// it reported (or the error it stopped with on a damaged file).
    pub(crate) fn quick_check(&self) -> Result<Option<String>> {
        self.read("check", |c| {
            let run = || -> rusqlite::Result<Vec<String>> {
                let mut stmt = c.prepare("PRAGMA quick_check")?;
                let rows = stmt.query_map([], |r| Ok(text_of(r.get_ref(0)?)))?;
                rows.collect()
            };
            match run() {
                Ok(lines) => Ok((lines != ["ok"]).then(|| lines.join("; "))),
                Err(e)
                    if matches!(
                        e.sqlite_error_code(),
                        Some(
                            rusqlite::ErrorCode::DatabaseCorrupt
                                | rusqlite::ErrorCode::NotADatabase
                        )
                    ) =>
                {
                    Ok(Some(e.to_string()))
                }
                Err(e) => Err(e),
            }
        })
    }
}

/// A record row's manifest bytes, or their length when too large to read.
/// A record row's manifest bytes, or why they were not read (too large,
/// or not bytes at all), in words for an error message.
pub(crate) type RecordBytes = std::result::Result<Vec<u8>, String>;

/// The manifest of a row selected as `typeof(manifest),
/// octet_length(manifest), CASE WHEN ... THEN manifest END` from column
/// `first` on.
fn record_bytes(r: &rusqlite::Row<'_>, first: usize, max: u64) -> rusqlite::Result<RecordBytes> {
    let kind = text_of(r.get_ref(first)?);
    if kind != "blob" && kind != "text" {
        return Ok(Err(format!(
            "its manifest column holds {} ({kind}), not the manifest's bytes",
            if kind == "null" { "NULL" } else { "a number" }
        )));
    }
    let len = u64_of(r.get_ref(first + 1)?).unwrap_or(0);
    Ok(bytes_of(r.get_ref(first + 2)?)
        .ok_or_else(|| format!("it is {len} bytes, larger than any record ({max} bytes at most)")))
}

/// One `inline_blobs` row as read.
#[derive(Debug)]
pub(crate) struct InlineRow {
    /// The size column, if it holds a non-negative integer.
    pub size: Option<u64>,
    /// The length of the bytes column.
    pub len: u64,
    /// The bytes, when at most [`INLINE_MAX`].
    pub bytes: Option<Vec<u8>>,
}

/// Bytes of a column that should be a BLOB; text (a hand edit) is taken as
/// its bytes, anything else as none.
fn bytes_of(v: ValueRef<'_>) -> Option<Vec<u8>> {
    match v {
        ValueRef::Blob(b) | ValueRef::Text(b) => Some(b.to_vec()),
        _ => None,
    }
}

/// A non-negative integer column, if it is one.
fn u64_of(v: ValueRef<'_>) -> Option<u64> {
    match v {
        ValueRef::Integer(i) => u64::try_from(i).ok(),
        _ => None,
    }
}

fn inline_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<InlineRow> {
    Ok(InlineRow {
        size: u64_of(r.get_ref(0)?),
        len: u64_of(r.get_ref(1)?).unwrap_or(0),
        bytes: bytes_of(r.get_ref(2)?),
    })
}

/// A column as text: text as is, anything else as its SQL rendering (a
/// blob as `X'<hex>'`: SQLite keeps a blob apart from text of the same
/// bytes, so a key spelled as a blob must never read as that text).
fn text_of(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Text(b) => String::from_utf8_lossy(b).into_owned(),
        ValueRef::Blob(b) => {
            let mut out = String::with_capacity(3 + 2 * b.len());
            out.push_str("X'");
            for byte in b {
                out.push_str(&format!("{byte:02x}"));
            }
            out.push('\'');
            out
        }
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Null => "NULL".to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn record(id: Uuid) -> Op {
        Op::InsertRecord {
            id,
            manifest: b"{}".to_vec(),
        }
    }

    #[test]
    fn a_failed_group_fails_as_a_whole_and_later_groups_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path().join(INDEX), true, false).unwrap();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        index.commit(vec![record(a)]).unwrap();
        // A second row with the same id violates the primary key: nothing of
        // that transaction lands, b included.
        let err = index.commit(vec![record(b), record(a)]).unwrap_err();
        assert!(
            matches!(
                &err,
                ArtifactError::Io {
                    action: "commit to",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(index.record_ids().unwrap(), [a.hyphenated().to_string()]);
        index.commit(vec![record(b)]).unwrap();
        assert_eq!(index.record_ids().unwrap().len(), 2);
    }

    #[test]
    fn a_panic_in_the_committer_fails_its_group_and_later_commits_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path().join(INDEX), true, false).unwrap();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        index
            .fault_panic
            .store(true, std::sync::atomic::Ordering::Relaxed);
        // An error for the caller, not a panic, and nothing landed.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            index.commit(vec![record(a)])
        }));
        let err = outcome.expect("the commit panicked").unwrap_err();
        assert!(err.to_string().contains("panic"), "{err}");
        assert!(index.record_ids().unwrap().is_empty());
        // The committer is free again: the next commit leads and lands.
        index.commit(vec![record(b)]).unwrap();
        assert_eq!(index.record_ids().unwrap(), [b.hyphenated().to_string()]);
        assert!(index.group.settled());
    }

    /// A waiter that wakes only after many later groups failed still gets
    /// its own group's outcome: success for rows that committed.
    #[test]
    fn a_late_waiter_of_a_committed_group_is_told_it_committed() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path().join(INDEX), true, false).unwrap();
        let taken = Uuid::new_v4();
        index.commit(vec![record(taken)]).unwrap();
        // A caller joins a group and is slow to wake.
        let late = Uuid::new_v4();
        let mine = index.enqueue(vec![record(late)]);
        // Another caller leads that group (it commits both), then many
        // groups fail (a record id already taken).
        index.commit(vec![record(Uuid::new_v4())]).unwrap();
        for _ in 0..100 {
            index.commit(vec![record(taken)]).unwrap_err();
        }
        assert!(index.record(late, 1 << 20).unwrap().is_some());
        index.wait(mine).unwrap();
        // And a late waiter of a failed group is told it failed; its
        // outcome is then forgotten.
        let failed = index.enqueue(vec![record(taken)]);
        index.commit(vec![record(Uuid::new_v4())]).unwrap_err();
        for _ in 0..100 {
            index.commit(vec![record(Uuid::new_v4())]).unwrap();
        }
        index.wait(failed).unwrap_err();
        assert!(index.group.settled());
    }

    #[test]
    fn concurrent_commits_all_land_once() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path().join(INDEX), true, false).unwrap();
        let ids: Vec<Vec<Uuid>> = (0..8)
            .map(|_| (0..25).map(|_| Uuid::new_v4()).collect())
            .collect();
        std::thread::scope(|s| {
            for mine in &ids {
                let index = &index;
                s.spawn(move || {
                    for id in mine {
                        index.commit(vec![record(*id)]).unwrap();
                        // Visible to a reader as soon as the commit returns.
                        assert!(index.record(*id, 1 << 20).unwrap().is_some());
                    }
                });
            }
        });
        let mut want: Vec<String> = ids
            .iter()
            .flatten()
            .map(|i| i.hyphenated().to_string())
            .collect();
        want.sort();
        assert_eq!(index.record_ids().unwrap(), want);
        assert!(index.group.settled());
    }
}
