//! The D3 action cache: persistent, shared, bounded.
//!
//! Only successful D3 results are cached. The key is the canonical (RFC 8785)
//! hash of: engine, implementation id and version, the implementation's code
//! identity (the pinned digests of a process implementation's program and
//! files; builtin implementations are identified by id and version), the
//! operation, canonical params, input digests and sizes, the resolved
//! budget, the determinism level and a runtime salt.
//!
//! Entries live in SQLite (`<home>/action-cache.sqlite3`, WAL), so every
//! process on the home and `mex serve` share them. The file is bounded by
//! entries and bytes; the least recently used entries go first. The cache is
//! an optimisation, never a record: it commits without fsync
//! (`synchronous=NORMAL`), and a hit is served only if every cached artifact
//! still verifies in the store (digest and size), so an entry that outlived
//! its artifacts, or that a crash left behind, is dropped, never served.
//! Counters (hits, misses, evictions, re-executions, mismatches) live in the
//! same file, in the transaction that changes them.
//!
//! Marking a served hit (most recently used, one more hit) is the one write
//! a hit would make; under load it is batched: the first hit after a quiet
//! second is marked at once, later ones wait (at most [`SERVED_BATCH`] of
//! them, at most [`SERVED_DELAY`]) and are marked together: by the hit that
//! fills the batch, by a thread that wakes once the delay has passed, inside
//! the next put's transaction, before [`ActionCache::stats`], or when the
//! cache is dropped, whichever comes first. A mark counts only if its entry
//! is still there. A process killed with marks pending loses them (at most
//! a second's worth): a hit count and a recency hint, never an entry or a
//! result (the Flight Recorder records every hit).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::proof::AdmissionProof;
use mex_envelope::{ArtifactHandle, ProvenanceRecord, Sha256Digest, UtcTimestamp, canonical};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The cache file's name inside a mex home.
pub const CACHE_FILE_NAME: &str = "action-cache.sqlite3";

/// Default bound on entries.
pub const DEFAULT_MAX_ENTRIES: u64 = 10_000;

/// Default bound on the bytes of stored entries (their JSON values).
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The schema this build writes (`PRAGMA user_version`). Version 2 keeps
/// the entry count and bytes in `counters` by trigger, so a put no longer
/// counts every entry; a version-1 file is upgraded on open.
const SCHEMA_VERSION: i64 = 2;

/// How long the cache waits for another process's lock on its file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    key BLOB PRIMARY KEY,
    engine_id TEXT NOT NULL,
    operation TEXT NOT NULL,
    value TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    last_used INTEGER NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_lru ON entries(last_used);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO counters (name, value) SELECT 'entry_count', count(*) FROM entries;
INSERT OR IGNORE INTO counters (name, value) SELECT 'entry_bytes', COALESCE(sum(bytes), 0) FROM entries;
CREATE TRIGGER IF NOT EXISTS entries_counted_insert AFTER INSERT ON entries BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'entry_count';
    UPDATE counters SET value = value + NEW.bytes WHERE name = 'entry_bytes';
END;
CREATE TRIGGER IF NOT EXISTS entries_counted_delete AFTER DELETE ON entries BEGIN
    UPDATE counters SET value = value - 1 WHERE name = 'entry_count';
    UPDATE counters SET value = value - OLD.bytes WHERE name = 'entry_bytes';
END;
CREATE TRIGGER IF NOT EXISTS entries_counted_update AFTER UPDATE OF bytes ON entries BEGIN
    UPDATE counters SET value = value - OLD.bytes + NEW.bytes WHERE name = 'entry_bytes';
END;
";

/// Counters the triggers keep; [`ActionCache::clear`] leaves them (at zero).
const KEPT_COUNTERS: &str = "'entry_count', 'entry_bytes'";

/// What a cache hit returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CachedResult {
    pub outputs: Vec<ArtifactHandle>,
    pub evidence: Vec<ArtifactHandle>,
    pub logs: Option<ArtifactHandle>,
    pub provenance: ProvenanceRecord,
}

/// Bounds of an action cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most entries kept.
    pub max_entries: u64,
    /// Most bytes of entries kept.
    pub max_bytes: u64,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// What `mex cache stats` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// The cache file.
    pub path: PathBuf,
    /// Entries held.
    pub entries: u64,
    /// Bytes of entries held (their stored JSON).
    pub bytes: u64,
    /// Bound on entries.
    pub max_entries: u64,
    /// Bound on bytes.
    pub max_bytes: u64,
    /// Hits served.
    pub hits: u64,
    /// Misses whose result was stored (a lookup that finds nothing writes
    /// nothing; the run it leads to counts here when it is cached).
    pub misses: u64,
    /// Entries removed to stay within the bounds.
    pub evictions: u64,
    /// Entries dropped because an artifact no longer verified.
    pub stale: u64,
    /// Hits re-executed off the caller's path to check determinism.
    pub reexecutions: u64,
    /// Re-executions whose outputs differed (entry dropped, Problem recorded).
    pub mismatches: u64,
}

/// An error of the action cache: what failed, on which file, what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "action cache {}: cannot {what}: {message}; remove the file to start an empty cache (it holds no records, only reusable results)",
    .path.display()
)]
pub struct CacheError {
    /// The cache file.
    pub path: PathBuf,
    /// What was being done.
    pub what: &'static str,
    /// SQLite's message.
    pub message: String,
}

/// The persistent action cache (one SQLite file, shared by processes).
#[derive(Debug)]
pub struct ActionCache {
    path: PathBuf,
    limits: CacheLimits,
    conn: Arc<Mutex<Connection>>,
    served: Arc<Mutex<ServedMarks>>,
}

/// Most served hits marked in one write.
pub(crate) const SERVED_BATCH: usize = 64;
/// Longest a served hit waits to be marked while hits keep coming.
pub(crate) const SERVED_DELAY: Duration = Duration::from_secs(1);

/// Served hits not yet marked in the file.
#[derive(Debug)]
struct ServedMarks {
    keys: Vec<Sha256Digest>,
    /// When marks were last written; `None` before the first.
    last_write: Option<Instant>,
    /// [`SERVED_DELAY`] (tests change it).
    delay: Duration,
    /// A thread will write the pending marks once `delay` has passed.
    flusher: bool,
}

impl Default for ServedMarks {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            last_write: None,
            delay: SERVED_DELAY,
            flusher: false,
        }
    }
}

/// What to do after a served hit was added to the pending marks.
enum MarkNext {
    /// Write the batch now.
    Write,
    /// Leave it pending; start a thread that writes it after this long.
    Schedule(Duration),
    /// Leave it pending: a thread will write it.
    Wait,
}

impl ServedMarks {
    /// Add `key`, and say when the pending marks are written.
    fn add(&mut self, key: Sha256Digest) -> MarkNext {
        self.keys.push(key);
        if self.keys.len() >= SERVED_BATCH
            || self.last_write.is_none_or(|at| at.elapsed() >= self.delay)
        {
            MarkNext::Write
        } else if self.flusher {
            MarkNext::Wait
        } else {
            self.flusher = true;
            MarkNext::Schedule(self.delay)
        }
    }

    fn take(&mut self) -> Vec<Sha256Digest> {
        if !self.keys.is_empty() {
            self.last_write = Some(Instant::now());
        }
        std::mem::take(&mut self.keys)
    }
}

/// Mark `keys` served, in order: most recently used, one more hit each.
/// Only entries still there count (one may have been evicted or cleared
/// since it was served).
fn mark_served(tx: &Connection, keys: &[Sha256Digest]) -> rusqlite::Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut stmt = tx.prepare_cached(
        "UPDATE entries SET last_used = (SELECT COALESCE(max(last_used), 0) + 1 FROM entries), hits = hits + 1 WHERE key = ?1",
    )?;
    let mut marked = 0u64;
    for key in keys {
        marked += u64::try_from(stmt.execute([key.as_bytes().as_slice()])?).unwrap_or(0);
    }
    if marked == 0 {
        return Ok(());
    }
    bump(tx, "hits", marked)
}

/// Write every pending served mark, in one transaction. Marks are hints: a
/// failure drops them.
fn write_marks(conn: &Mutex<Connection>, served: &Mutex<ServedMarks>) {
    let keys = served.lock().unwrap_or_else(PoisonError::into_inner).take();
    if keys.is_empty() {
        return;
    }
    let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
    let Ok(tx) = conn.transaction_with_behavior(TransactionBehavior::Immediate) else {
        return;
    };
    if mark_served(&tx, &keys).is_ok() {
        let _ = tx.commit();
    }
}

/// The code identity of an implementation: `<file>=<pinned digest>` for a
/// process implementation's program and files (empty for builtin ones,
/// which the id and version identify).
pub(crate) fn code_identity(
    registry: &mex_registry::Registry,
    proof: &AdmissionProof,
) -> Vec<String> {
    let imp = proof.implementation();
    registry
        .engine(&proof.operation().engine_id)
        .ok()
        .and_then(|e| {
            e.implementations
                .iter()
                .find(|i| i.id == imp.id && i.version == imp.version)
        })
        .and_then(|i| i.process.as_ref())
        .map(|p| {
            std::iter::once(&p.program)
                .chain(&p.files)
                .map(|f| format!("{}={}", f.rel, f.sha256))
                .collect()
        })
        .unwrap_or_default()
}

/// The cache key of an admitted operation, or `None` when it cannot be
/// computed (then the run is simply not cached).
pub(crate) fn key(proof: &AdmissionProof, code: &[String], salt: &str) -> Option<Sha256Digest> {
    let op = proof.operation();
    let imp = proof.implementation();
    let inputs: Vec<_> = op
        .inputs
        .iter()
        .filter_map(|i| i.as_artifact())
        .map(|h| json!({"content_hash": h.content_hash, "size_bytes": h.size_bytes}))
        .collect();
    let material = json!({
        "engine_id": op.engine_id,
        "implementation_id": imp.id,
        "implementation_version": imp.version.to_string(),
        "implementation_code": code,
        "operation": op.operation,
        "params": op.params,
        "inputs": inputs,
        "budget": proof.budget().to_spec(),
        "determinism": op.determinism,
        "salt": salt,
    });
    canonical::digest(&material).ok()
}

fn now_ms() -> i64 {
    UtcTimestamp::now().unix_millis()
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn bump(tx: &Connection, name: &str, by: u64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO counters (name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
    )?
    .execute(params![name, to_i64(by)])?;
    Ok(())
}

/// The number of entries and their bytes, as the triggers keep them.
fn totals(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    let kept = conn
        .prepare_cached(
            "SELECT (SELECT value FROM counters WHERE name = 'entry_count'),
                    (SELECT value FROM counters WHERE name = 'entry_bytes')",
        )?
        .query_row([], |r| {
            Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?))
        })?;
    if let (Some(count), Some(bytes)) = kept {
        return Ok((count, bytes));
    }
    // A row went missing (an older process that opened the file before
    // its upgrade cleared the counters): count once and keep them again.
    conn.execute_batch(
        "INSERT OR REPLACE INTO counters (name, value) SELECT 'entry_count', count(*) FROM entries;
         INSERT OR REPLACE INTO counters (name, value) SELECT 'entry_bytes', COALESCE(sum(bytes), 0) FROM entries;",
    )?;
    conn.query_row(
        "SELECT count(*), COALESCE(sum(bytes), 0) FROM entries",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

impl ActionCache {
    /// Open (or create) the cache file in `home`.
    pub fn open_in(home: impl AsRef<Path>, limits: CacheLimits) -> Result<Self, CacheError> {
        Self::open(home.as_ref().join(CACHE_FILE_NAME), limits)
    }

    /// Open (or create) the cache file at `path`.
    pub fn open(path: impl Into<PathBuf>, limits: CacheLimits) -> Result<Self, CacheError> {
        let path = path.into();
        let fail = |what: &'static str| {
            let path = path.clone();
            move |e: rusqlite::Error| CacheError {
                path,
                what,
                message: e.to_string(),
            }
        };
        let conn = Connection::open(&path).map_err(fail("open"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(fail("set the busy timeout"))?;
        // Plans that ignore bound values, as the recorder's writer has
        // (its `pin_plans` says why): cached statements are not compiled
        // again when their parameters are rebound.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
            .map_err(fail("pin query plans"))?;
        // Waits for another process creating the same new cache.
        mex_sqlite::switch_to_wal(&conn, BUSY_TIMEOUT).map_err(fail("switch to WAL"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(fail("set synchronous"))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(fail("read the schema version"))?;
        if version > SCHEMA_VERSION {
            return Err(CacheError {
                path,
                what: "read the schema version",
                message: format!(
                    "schema version {version} is newer than this build's {SCHEMA_VERSION}"
                ),
            });
        }
        // One transaction: the counters are initialized from the entries and
        // the triggers that keep them are created with nothing in between,
        // even with another process opening the same file.
        conn.execute_batch(&format!("BEGIN IMMEDIATE;{SCHEMA}COMMIT;"))
            .map_err(fail("create the schema"))?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(fail("write the schema version"))?;
        Ok(Self {
            path,
            limits,
            conn: Arc::new(Mutex::new(conn)),
            served: Arc::new(Mutex::new(ServedMarks::default())),
        })
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, what: &'static str) -> impl Fn(rusqlite::Error) -> CacheError + '_ {
        move |e| CacheError {
            path: self.path.clone(),
            what,
            message: e.to_string(),
        }
    }

    /// The entry under `key`, or `None` on a miss. Reading writes nothing:
    /// a hit that is served is marked by [`ActionCache::served`] (an
    /// unreadable entry is dropped).
    pub(crate) fn get(&self, key: &Sha256Digest) -> Result<Option<CachedResult>, CacheError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let found: Option<String> = conn
            .prepare_cached("SELECT value FROM entries WHERE key = ?1")
            .and_then(|mut s| {
                s.query_row([key.as_bytes().as_slice()], |r| r.get(0))
                    .optional()
            })
            .map_err(self.err("look up an entry"))?;
        let Some(found) = found else {
            return Ok(None);
        };
        let Ok(value) = serde_json::from_str::<CachedResult>(&found) else {
            conn.execute(
                "DELETE FROM entries WHERE key = ?1",
                [key.as_bytes().as_slice()],
            )
            .map_err(self.err("drop an unreadable entry"))?;
            return Ok(None);
        };
        Ok(Some(value))
    }

    /// A hit under `key` was served: mark the entry most recently used and
    /// count the hit, now or with the next batch (see the module docs).
    pub(crate) fn served(&self, key: &Sha256Digest) {
        let next = self
            .served
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(*key);
        match next {
            MarkNext::Write => self.write_served(),
            MarkNext::Schedule(delay) => self.schedule_marks(delay),
            MarkNext::Wait => {}
        }
    }

    /// Write the pending marks once `delay` has passed, on a thread of
    /// their own, unless the cache is gone by then (its drop wrote them).
    fn schedule_marks(&self, delay: Duration) {
        let (conn, served) = (Arc::downgrade(&self.conn), Arc::downgrade(&self.served));
        let spawned = std::thread::Builder::new()
            .name("mex-cache-marks".into())
            .spawn(move || {
                std::thread::sleep(delay);
                if let (Some(conn), Some(served)) = (conn.upgrade(), served.upgrade()) {
                    served
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .flusher = false;
                    write_marks(&conn, &served);
                }
            });
        if spawned.is_err() {
            self.served
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .flusher = false;
            self.write_served();
        }
    }

    /// The served hits not yet marked, taken for writing.
    fn take_served(&self) -> Vec<Sha256Digest> {
        self.served
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Mark every pending served hit, in one transaction.
    fn write_served(&self) {
        write_marks(&self.conn, &self.served);
    }

    /// Remember `value` under `key`, then evict least recently used entries
    /// beyond the bounds, in one transaction.
    pub(crate) fn put(
        &self,
        key: &Sha256Digest,
        engine: &str,
        operation: &str,
        value: &CachedResult,
    ) -> Result<(), CacheError> {
        let text = serde_json::to_string(value).map_err(|e| CacheError {
            path: self.path.clone(),
            what: "serialize an entry",
            message: e.to_string(),
        })?;
        let bytes = u64::try_from(text.len()).unwrap_or(u64::MAX);
        if bytes > self.limits.max_bytes || self.limits.max_entries == 0 {
            return Ok(());
        }
        // Pending hit marks go first, in this transaction: eviction then
        // sees every hit this process served.
        let served = self.take_served();
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err("store an entry"))?;
        let write = || -> rusqlite::Result<()> {
            mark_served(&tx, &served)?;
            let now = now_ms();
            tx.prepare_cached(
                "INSERT INTO entries (key, engine_id, operation, value, bytes, created_ms, last_used)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, (SELECT COALESCE(max(last_used), 0) + 1 FROM entries))
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value, bytes = excluded.bytes, last_used = excluded.last_used",
            )?
            .execute(params![key.as_bytes().as_slice(), engine, operation, text, to_i64(bytes), now])?;
            let (count, total) = totals(&tx)?;
            let (mut count, mut total) = (to_u64(count), to_u64(total));
            let mut evicted = 0u64;
            while count > self.limits.max_entries || total > self.limits.max_bytes {
                let oldest: Option<(Vec<u8>, i64)> = tx
                    .prepare_cached(
                        "SELECT key, bytes FROM entries WHERE key != ?1 ORDER BY last_used LIMIT 1",
                    )?
                    .query_row([key.as_bytes().as_slice()], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let Some((old, size)) = oldest else { break };
                tx.prepare_cached("DELETE FROM entries WHERE key = ?1")?
                    .execute([old.as_slice()])?;
                count = count.saturating_sub(1);
                total = total.saturating_sub(to_u64(size));
                evicted += 1;
            }
            bump(&tx, "misses", 1)?;
            if evicted > 0 {
                bump(&tx, "evictions", evicted)?;
            }
            Ok(())
        };
        write().map_err(self.err("store an entry"))?;
        tx.commit().map_err(self.err("store an entry"))
    }

    /// Drop the entry under `key`, counting why (`stale` or `mismatches`).
    pub(crate) fn forget(&self, key: &Sha256Digest, why: &'static str) {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = conn.execute(
            "DELETE FROM entries WHERE key = ?1",
            [key.as_bytes().as_slice()],
        );
        let _ = bump(&conn, why, 1);
    }

    /// Count a re-execution started.
    pub(crate) fn reexecuted(&self) {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = bump(&conn, "reexecutions", 1);
    }

    /// Entries, bytes, bounds and counters.
    pub fn stats(&self) -> Result<CacheStats, CacheError> {
        self.write_served();
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let read = || -> rusqlite::Result<CacheStats> {
            let (entries, bytes) = totals(&conn)?;
            let counter = |name: &str| -> rusqlite::Result<u64> {
                let v: Option<i64> = conn
                    .query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| {
                        r.get(0)
                    })
                    .optional()?;
                Ok(to_u64(v.unwrap_or(0)))
            };
            Ok(CacheStats {
                path: self.path.clone(),
                entries: to_u64(entries),
                bytes: to_u64(bytes),
                max_entries: self.limits.max_entries,
                max_bytes: self.limits.max_bytes,
                hits: counter("hits")?,
                misses: counter("misses")?,
                evictions: counter("evictions")?,
                stale: counter("stale")?,
                reexecutions: counter("reexecutions")?,
                mismatches: counter("mismatches")?,
            })
        };
        read().map_err(self.err("read the statistics"))
    }

    /// Remove every entry and reset the counters; returns how many entries
    /// were removed.
    pub fn clear(&self) -> Result<u64, CacheError> {
        // Marks for entries about to go, counted by counters about to reset.
        drop(self.take_served());
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err("clear"))?;
        let removed = tx
            .execute("DELETE FROM entries", [])
            .and_then(|n| {
                tx.execute(
                    &format!("DELETE FROM counters WHERE name NOT IN ({KEPT_COUNTERS})"),
                    [],
                )
                .map(|_| n)
            })
            .map_err(self.err("clear"))?;
        tx.commit().map_err(self.err("clear"))?;
        Ok(u64::try_from(removed).unwrap_or(u64::MAX))
    }
}

impl Drop for ActionCache {
    fn drop(&mut self) {
        self.write_served();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn value(n: u8) -> CachedResult {
        CachedResult {
            outputs: Vec::new(),
            evidence: Vec::new(),
            logs: None,
            provenance: serde_json::from_value(json!({
                "engine_id": "engine.calc", "engine_version": "1.0.0",
                "implementation_id": "calc", "implementation_version": format!("1.0.{n}"),
                "operation": "calc.echo", "determinism": "D3",
                "config_hash": "0".repeat(64),
                "inputs": [], "outputs": [], "capabilities_granted": [], "environment": {}
            }))
            .unwrap(),
        }
    }

    fn key(n: u8) -> Sha256Digest {
        Sha256Digest::of(&[n])
    }

    #[test]
    fn entries_persist_across_opens_and_lru_goes_first() {
        let dir = tempfile::tempdir().unwrap();
        let limits = CacheLimits {
            max_entries: 2,
            max_bytes: u64::MAX,
        };
        let cache = ActionCache::open_in(dir.path(), limits).unwrap();
        cache.put(&key(1), "e", "o", &value(1)).unwrap();
        cache.put(&key(2), "e", "o", &value(2)).unwrap();
        // Serving 1 makes 2 the least recently used.
        assert!(cache.get(&key(1)).unwrap().is_some());
        cache.served(&key(1));
        cache.put(&key(3), "e", "o", &value(3)).unwrap();
        drop(cache);
        let again = ActionCache::open_in(dir.path(), limits).unwrap();
        assert!(again.get(&key(2)).unwrap().is_none(), "LRU entry evicted");
        assert!(again.get(&key(1)).unwrap().is_some());
        assert!(again.get(&key(3)).unwrap().is_some());
        let stats = again.stats().unwrap();
        assert_eq!((stats.entries, stats.evictions, stats.misses), (2, 1, 3));
        assert_eq!(stats.hits, 1, "only the served hit counts");
        assert_eq!(again.clear().unwrap(), 2);
        assert_eq!(again.stats().unwrap().entries, 0);
    }

    /// A cache whose served marks wait (an hour, so no test depends on
    /// how fast it runs) once a first mark has been written.
    fn batching(dir: &Path, limits: CacheLimits) -> ActionCache {
        let cache = ActionCache::open_in(dir, limits).unwrap();
        let mut marks = cache.served.lock().unwrap();
        marks.delay = Duration::from_secs(3600);
        marks.last_write = Some(Instant::now());
        drop(marks);
        cache
    }

    fn hits_seen_by_another_handle(dir: &Path) -> u64 {
        ActionCache::open_in(dir, CacheLimits::default())
            .unwrap()
            .stats()
            .unwrap()
            .hits
    }

    #[test]
    fn the_first_hit_after_a_quiet_spell_is_marked_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ActionCache::open_in(dir.path(), CacheLimits::default()).unwrap();
        cache.put(&key(1), "e", "o", &value(1)).unwrap();
        cache.served(&key(1));
        assert_eq!(hits_seen_by_another_handle(dir.path()), 1);
    }

    #[test]
    fn hits_under_load_are_marked_in_batches_and_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let cache = batching(dir.path(), CacheLimits::default());
        cache.put(&key(1), "e", "o", &value(1)).unwrap();
        for _ in 0..SERVED_BATCH - 1 {
            cache.served(&key(1));
        }
        assert_eq!(hits_seen_by_another_handle(dir.path()), 0, "still pending");
        cache.served(&key(1));
        let batch = u64::try_from(SERVED_BATCH).unwrap();
        assert_eq!(
            hits_seen_by_another_handle(dir.path()),
            batch,
            "a full batch is written"
        );
        cache.served(&key(1));
        assert_eq!(hits_seen_by_another_handle(dir.path()), batch);
        drop(cache);
        assert_eq!(
            hits_seen_by_another_handle(dir.path()),
            batch + 1,
            "written on drop"
        );
    }

    #[test]
    fn pending_hits_are_written_once_the_delay_has_passed_without_more_calls() {
        let dir = tempfile::tempdir().unwrap();
        let cache = batching(dir.path(), CacheLimits::default());
        cache.served.lock().unwrap().delay = Duration::from_millis(20);
        cache.put(&key(1), "e", "o", &value(1)).unwrap();
        cache.served(&key(1));
        assert!(
            cache.served.lock().unwrap().flusher,
            "a writer is scheduled"
        );
        // Nothing else touches the cache: the scheduled thread must write it.
        let mut seen = 0;
        for _ in 0..3000 {
            seen = hits_seen_by_another_handle(dir.path());
            if seen == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(seen, 1, "the pending mark was never written");
        drop(cache);
        assert_eq!(hits_seen_by_another_handle(dir.path()), 1, "written once");
    }

    #[test]
    fn a_mark_for_an_entry_that_is_gone_counts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ActionCache::open_in(dir.path(), CacheLimits::default()).unwrap();
        cache.served(&key(9));
        drop(cache);
        assert_eq!(hits_seen_by_another_handle(dir.path()), 0);
    }

    #[test]
    fn pending_hits_count_for_eviction_and_stats() {
        let dir = tempfile::tempdir().unwrap();
        let limits = CacheLimits {
            max_entries: 2,
            max_bytes: u64::MAX,
        };
        let cache = batching(dir.path(), limits);
        cache.put(&key(1), "e", "o", &value(1)).unwrap();
        cache.put(&key(2), "e", "o", &value(2)).unwrap();
        // Pending: 1 is the most recently used only once the mark is written.
        cache.served(&key(1));
        cache.put(&key(3), "e", "o", &value(3)).unwrap();
        assert!(
            cache.get(&key(1)).unwrap().is_some(),
            "the put wrote the pending mark first"
        );
        assert!(cache.get(&key(2)).unwrap().is_none());
        cache.served(&key(3));
        assert_eq!(cache.stats().unwrap().hits, 2, "stats writes pending marks");
        cache.served(&key(3));
        assert_eq!(cache.clear().unwrap(), 2);
        drop(cache);
        assert_eq!(
            hits_seen_by_another_handle(dir.path()),
            0,
            "clear dropped the pending mark"
        );
    }

    #[test]
    fn byte_bound_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let one = serde_json::to_string(&value(1)).unwrap().len() as u64;
        let cache = ActionCache::open_in(
            dir.path(),
            CacheLimits {
                max_entries: 100,
                max_bytes: one * 2 + 1,
            },
        )
        .unwrap();
        for n in 0..5 {
            cache.put(&key(n), "e", "o", &value(n)).unwrap();
        }
        let stats = cache.stats().unwrap();
        assert!(stats.bytes <= stats.max_bytes);
        assert_eq!(stats.entries, 2);
    }

    /// What the counters say against what a full scan says.
    fn counted_vs_scanned(cache: &ActionCache) -> ((u64, u64), (u64, u64)) {
        let stats = cache.stats().unwrap();
        let conn = cache.conn.lock().unwrap();
        let (n, b): (i64, i64) = conn
            .query_row(
                "SELECT count(*), COALESCE(sum(bytes), 0) FROM entries",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        ((stats.entries, stats.bytes), (to_u64(n), to_u64(b)))
    }

    #[test]
    fn kept_totals_match_a_scan_through_puts_replacements_evictions_forgets_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        let limits = CacheLimits {
            max_entries: 3,
            max_bytes: u64::MAX,
        };
        let cache = ActionCache::open_in(dir.path(), limits).unwrap();
        for n in 0..6 {
            cache.put(&key(n), "e", "o", &value(n)).unwrap();
        }
        // A replacement with a different size under an existing key.
        let mut bigger = value(5);
        bigger
            .provenance
            .environment
            .insert("pad".into(), "x".repeat(100));
        cache.put(&key(5), "e", "o", &bigger).unwrap();
        cache.forget(&key(4), "stale");
        let (counted, scanned) = counted_vs_scanned(&cache);
        assert_eq!(counted, scanned);
        assert_eq!(counted.0, 2);
        cache.clear().unwrap();
        cache.put(&key(9), "e", "o", &value(9)).unwrap();
        let (counted, scanned) = counted_vs_scanned(&cache);
        assert_eq!(counted, scanned, "the totals drifted after clear");
        assert_eq!(counted.0, 1);
    }

    #[test]
    fn missing_kept_totals_are_counted_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ActionCache::open_in(dir.path(), CacheLimits::default()).unwrap();
        cache.put(&key(1), "e", "o", &value(1)).unwrap();
        cache.put(&key(2), "e", "o", &value(2)).unwrap();
        // What an older process's clear (before the upgrade) would do.
        cache
            .conn
            .lock()
            .unwrap()
            .execute("DELETE FROM counters", [])
            .unwrap();
        let (counted, scanned) = counted_vs_scanned(&cache);
        assert_eq!(counted, scanned);
        assert_eq!(counted.0, 2);
        cache.put(&key(3), "e", "o", &value(3)).unwrap();
        let (counted, scanned) = counted_vs_scanned(&cache);
        assert_eq!(counted, scanned, "the totals were not kept again");
    }

    #[test]
    fn a_version_1_file_is_upgraded_with_its_totals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CACHE_FILE_NAME);
        {
            // A version-1 file: entries, no kept totals, no triggers.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE entries (key BLOB PRIMARY KEY, engine_id TEXT NOT NULL, operation TEXT NOT NULL,
                   value TEXT NOT NULL, bytes INTEGER NOT NULL, created_ms INTEGER NOT NULL,
                   last_used INTEGER NOT NULL, hits INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
                 CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
                 INSERT INTO entries VALUES (x'01', 'e', 'o', 'not json', 7, 0, 1, 0);
                 INSERT INTO entries VALUES (x'02', 'e', 'o', 'not json', 5, 0, 2, 0);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let cache = ActionCache::open(&path, CacheLimits::default()).unwrap();
        let (counted, scanned) = counted_vs_scanned(&cache);
        assert_eq!(counted, (2, 12));
        assert_eq!(counted, scanned);
        cache.put(&key(3), "e", "o", &value(3)).unwrap();
        let (counted, scanned) = counted_vs_scanned(&cache);
        assert_eq!(counted, scanned);
    }
}
