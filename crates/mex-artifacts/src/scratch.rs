//! Scratch space for the walks over the whole store (gc and verify).
//!
//! What such a walk must remember about every record and payload (reference
//! counts, which payloads are referenced, each payload file's state) lives
//! in a private SQLite database in the store's `tmp/`, not in memory: SQLite
//! keeps a bounded page cache ([`CACHE_KIB`]) and spills the rest to that
//! file, on the store's own disk, so the memory of gc and verify does not
//! grow with the number of records or payloads. (SQLite's own temporary
//! files, for a sort that does not fit its cache, follow `temp_store =
//! FILE`: they go to the system's temporary directory, not the store's.) The walks themselves read
//! `index.db` in chunks of at most [`CHUNK_ROWS`] rows (and about
//! [`CHUNK_BYTES`] of manifests), each chunk its own short read.
//!
//! The file is named `<purpose>-<uuid>.db`, created under the store lock
//! (exclusive for gc, shared for verify: gc and the open-time cleanup of
//! `tmp/` both need it exclusively, so nobody removes it meanwhile) and
//! removed when the walk ends. One left by a killed process is a leftover
//! like any other in `tmp/`: the next open or gc removes it.

use std::path::PathBuf;

use cap_std::fs::Dir;
use rusqlite::{Connection, OpenFlags};

use crate::error::Result;
use crate::index::db_error;
use crate::store::TMP;

/// Rows of `index.db` read at once by gc and verify.
pub(crate) const CHUNK_ROWS: usize = 1024;

/// Manifest bytes read at once by gc and verify (a chunk ends early when
/// its manifests reach this much; records are at most 1 MiB each).
pub(crate) const CHUNK_BYTES: u64 = 4 << 20;

/// The scratch database's page cache, in KiB.
pub(crate) const CACHE_KIB: u32 = 8 * 1024;

/// Test hook: the most rows of `index.db` a walk held at once.
#[cfg(test)]
pub(crate) static MOST_ROWS_HELD: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// Note that a walk holds `n` rows of `index.db` (the test hook above).
pub(crate) fn holding(_n: usize) {
    #[cfg(test)]
    MOST_ROWS_HELD.fetch_max(_n, std::sync::atomic::Ordering::Relaxed);
}

/// A private scratch database in the store's `tmp/`, removed on drop.
pub(crate) struct Scratch<'a> {
    conn: Connection,
    tmp: &'a Dir,
    name: String,
    path: PathBuf,
}

impl<'a> Scratch<'a> {
    /// Create `<root>/tmp/<purpose>-<uuid>.db` (the caller holds the store
    /// lock) and run `schema` in it. Nothing in it needs to survive a
    /// crash: no journal, no fsync, one transaction for its whole life.
    pub(crate) fn create(
        root_path: &std::path::Path,
        tmp: &'a Dir,
        purpose: &str,
        schema: &str,
    ) -> Result<Self> {
        let name = format!("{purpose}-{}.db", uuid::Uuid::new_v4());
        let path = root_path.join(TMP).join(&name);
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )
        .map_err(|e| db_error("create the scratch database", &path, &e))?;
        let scratch = Self {
            conn,
            tmp,
            name,
            path,
        };
        scratch.exec(
            "set up the scratch database",
            &format!(
                "PRAGMA journal_mode = OFF;
                 PRAGMA synchronous = OFF;
                 PRAGMA locking_mode = EXCLUSIVE;
                 PRAGMA temp_store = FILE;
                 PRAGMA cache_size = -{CACHE_KIB};
                 {schema}
                 BEGIN;"
            ),
        )?;
        Ok(scratch)
    }

    /// Run a batch of statements.
    pub(crate) fn exec(&self, action: &'static str, sql: &str) -> Result<()> {
        self.conn
            .execute_batch(sql)
            .map_err(|e| db_error(action, &self.path, &e))
    }

    /// Run `f` on the scratch connection; its errors name the scratch file.
    pub(crate) fn with<T>(
        &self,
        action: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        f(&self.conn).map_err(|e| db_error(action, &self.path, &e))
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        // Best effort: a file left behind is removed by the next open or gc.
        let _ = self.tmp.remove_file(&self.name);
    }
}

/// A list kept to its first [`crate::REPORT_LIST_MAX`] items, counting all.
#[derive(Debug)]
pub(crate) struct Capped<T> {
    pub(crate) items: Vec<T>,
    pub(crate) total: u64,
}

impl<T> Default for Capped<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            total: 0,
        }
    }
}

impl<T> Capped<T> {
    pub(crate) fn push(&mut self, item: T) {
        self.total += 1;
        if self.items.len() < crate::REPORT_LIST_MAX {
            self.items.push(item);
        }
    }

    /// How many were not kept.
    pub(crate) fn omitted(&self) -> u64 {
        self.total - self.items.len() as u64
    }
}

/// The [`crate::REPORT_LIST_MAX`] smallest items of a stream, sorted, and
/// how many there were.
#[derive(Debug)]
pub(crate) struct Smallest<T: Ord> {
    heap: std::collections::BinaryHeap<T>,
    pub(crate) total: usize,
}

impl<T: Ord> Default for Smallest<T> {
    fn default() -> Self {
        Self {
            heap: std::collections::BinaryHeap::new(),
            total: 0,
        }
    }
}

impl<T: Ord> Smallest<T> {
    pub(crate) fn push(&mut self, item: T) {
        self.total += 1;
        if self.heap.len() < crate::REPORT_LIST_MAX {
            self.heap.push(item);
        } else if self.heap.peek().is_some_and(|top| item < *top) {
            self.heap.pop();
            self.heap.push(item);
        }
    }

    pub(crate) fn into_sorted(self) -> Vec<T> {
        self.heap.into_sorted_vec()
    }
}
