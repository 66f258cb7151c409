//! The durable recorder on SQLite (bundled), WAL mode, `synchronous=FULL`
//! (`NORMAL` for groups of admitting claims only; see the crate docs,
//! "Durability").
//!
//! ## Storage layout (schema version 4)
//!
//! * `events`: one row per event, `seq INTEGER PRIMARY KEY` (the rowid, so
//!   the log is stored in seq order), every [`Event`] member as a column
//!   (`payload` is its RFC 8785 text, hashes are 32-byte blobs, time is Unix
//!   milliseconds in `ts_ms`). Indexes on `op_id`, `engine_id`, `kind` and
//!   `ts_ms`; SQLite appends the rowid to each index, so each lookup returns
//!   rows already in seq order. The `kind` index leaves out the two kinds
//!   every operation writes many of, `gate_passed` and `capability_allowed`
//!   (schema 4): a commit writes one index page per kind it holds, and those
//!   two are 7 of a cache hit's 9 events. A query by either kind reads the
//!   log in seq order instead; every other kind is looked up in the index
//!   (the query repeats the index's condition, [`KIND_INDEX_WHERE`], so
//!   SQLite can use it).
//! * `chain_head`: one row, the checkpoint (last seq, hash, time), updated in
//!   the same transaction as the events it covers.
//! * `problems`: one row per fingerprint.
//! * `op_claims`: one row per admitted op id (`op_id TEXT PRIMARY KEY`,
//!   `WITHOUT ROWID`): `state` (`admitted`, `completed`, `interrupted`), the
//!   `owner` recorder that claimed it, its `pid`, and the claim and end
//!   times. A partial index holds only the `admitted` rows, so finding runs
//!   in flight never reads finished ones. See [`crate::claim`].
//! * `PRAGMA user_version`: the schema version. Version 0 is an empty file;
//!   each step in [`MIGRATIONS`] moves one version up, in one transaction.
//!   A file with a newer version is refused, not guessed at.
//!
//! ## Owners: telling a live run from a dead one
//!
//! Every open recorder is an *owner* with a fresh id. On open it creates
//! `<database file>-owners/<owner>.lock` (written as `<owner>.tmp`, locked
//! with an exclusive `flock`, then renamed, so a `.lock` name is never seen
//! unlocked while its owner lives) and holds the lock until it is dropped;
//! the kernel releases it when the process dies, however it dies. Claims
//! record their owner. [`FlightRecorder::reconcile_interrupted`] (run on
//! every open) first reads the `admitted` claims, then tries each owner's
//! lock without blocking: held means a live process is running it (left
//! alone); free or missing means its process is gone, and the claim becomes
//! `interrupted` with its `op_completed` in one transaction (guarded by
//! `state = 'admitted'`, so two reconcilers never record it twice). Process
//! ids are stored for people only: a pid can be reused, a released lock
//! cannot lie. Needs a local filesystem with working `flock` (as WAL does).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mex_envelope::{Sha256Digest, UtcTimestamp};
use mex_group::Group;
use rusqlite::config::DbConfig;
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Row, Transaction, TransactionBehavior, params,
};
use uuid::Uuid;

use crate::checkpoint::{self, CheckpointCounters, CheckpointStats, Checkpointer};
use crate::claim::{Claim, ClaimOutcome, ClaimState, interrupted_draft};
use crate::event::{Event, EventDraft, EventKind, GENESIS_HASH, PreparedDraft, parse_status};
use crate::memory::resolution_draft;
use crate::problem::{self, Problem, ProblemFilter, ProblemState};
use crate::query::EventQuery;
use crate::redact::Redactor;
use crate::tag::WriterKey;
use crate::verify::{
    BreakKind, ChainBreak, ChainHead, ChainVerifier, HashCheck, VerifyReport, check_rows,
};
use crate::{FlightRecorder, RecorderError, write_jsonl_line};

/// The database file name inside the mex home directory.
pub const DB_FILE_NAME: &str = "recorder.sqlite3";

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 4;

/// The condition of the partial `events_by_kind` index (schema 4), spelled
/// once: a query by kind repeats it verbatim so SQLite can use the index.
macro_rules! kind_index_where {
    () => {
        "kind NOT IN ('gate_passed', 'capability_allowed')"
    };
}

/// See [`kind_index_where`].
const KIND_INDEX_WHERE: &str = kind_index_where!();

/// `MIGRATIONS[v]` moves a database from version `v` to `v + 1`.
const MIGRATIONS: [&str; 4] = [
    // 0 -> 1: the first schema.
    "CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        ts_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        op_id TEXT,
        engine_id TEXT,
        operation TEXT,
        gate TEXT,
        decision TEXT,
        status TEXT,
        code TEXT,
        message TEXT,
        payload TEXT,
        prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL
    );
    CREATE INDEX events_by_op ON events(op_id);
    CREATE INDEX events_by_engine ON events(engine_id);
    CREATE INDEX events_by_kind ON events(kind);
    CREATE TABLE chain_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash BLOB NOT NULL
    );
    CREATE TABLE problems (
        fingerprint TEXT PRIMARY KEY,
        code TEXT NOT NULL,
        gate TEXT,
        engine_id TEXT,
        operation TEXT,
        severity TEXT NOT NULL,
        message TEXT NOT NULL,
        count INTEGER NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        last_op_id TEXT,
        last_seq INTEGER NOT NULL
    );",
    // 1 -> 2: gate outcomes name their rule; capability and artifact columns;
    // time-range index; the checkpoint keeps the last time (so time never
    // runs backwards across processes); problems can be resolved. Old events
    // hash the same: the new members are optional and omitted when absent.
    "ALTER TABLE events ADD COLUMN rule TEXT;
    ALTER TABLE events ADD COLUMN capability TEXT;
    ALTER TABLE events ADD COLUMN artifact BLOB;
    CREATE INDEX events_by_time ON events(ts_ms);
    ALTER TABLE chain_head ADD COLUMN ts_ms INTEGER NOT NULL DEFAULT 0;
    UPDATE chain_head SET ts_ms = COALESCE((SELECT ts_ms FROM events WHERE events.seq = chain_head.seq), 0);
    ALTER TABLE problems ADD COLUMN state TEXT NOT NULL DEFAULT 'open';
    ALTER TABLE problems ADD COLUMN resolved_at_ms INTEGER;
    ALTER TABLE problems ADD COLUMN resolution TEXT;
    CREATE INDEX problems_by_last_seen ON problems(last_seen_ms);",
    // 2 -> 3: durable op-id claims. Ops completed (not denied) under the old
    // schema are claimed `completed`, so they stay refused; ops that started
    // an engine and never completed are claimed `admitted` by no owner, so
    // the first reconciliation records them as interrupted.
    "CREATE TABLE op_claims (
        op_id TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ('admitted', 'completed', 'interrupted')),
        owner TEXT NOT NULL,
        pid INTEGER NOT NULL,
        claimed_ms INTEGER NOT NULL,
        ended_ms INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX op_claims_admitted ON op_claims(owner) WHERE state = 'admitted';
    INSERT INTO op_claims (op_id, state, owner, pid, claimed_ms, ended_ms)
        SELECT op_id, 'completed', '', 0, MIN(ts_ms), MAX(ts_ms) FROM events
        WHERE kind = 'op_completed' AND op_id IS NOT NULL AND status IS NOT 'denied'
        GROUP BY op_id;
    INSERT OR IGNORE INTO op_claims (op_id, state, owner, pid, claimed_ms, ended_ms)
        SELECT op_id, 'admitted', '', 0, MIN(ts_ms), NULL FROM events
        WHERE kind = 'engine_started' AND op_id IS NOT NULL
          AND op_id NOT IN (SELECT op_id FROM events WHERE kind = 'op_completed' AND op_id IS NOT NULL)
        GROUP BY op_id;",
    // 3 -> 4: the kind index leaves out the two kinds every operation
    // writes many of (see the module docs).
    concat!(
        "DROP INDEX events_by_kind;
    CREATE INDEX events_by_kind ON events(kind) WHERE ",
        kind_index_where!(),
        ";"
    ),
];

/// The kinds [`KIND_INDEX_WHERE`] leaves out of the kind index.
const UNINDEXED_KINDS: [EventKind; 2] = [EventKind::GatePassed, EventKind::CapabilityAllowed];

const EVENT_COLUMNS: &str = "seq, ts_ms, kind, op_id, engine_id, operation, gate, rule, capability, decision, status, code, artifact, message, payload, prev_hash, hash";

const CLAIM_COLUMNS: &str = "op_id, state, owner, pid, claimed_ms, ended_ms";

const PROBLEM_COLUMNS: &str = "fingerprint, code, gate, engine_id, operation, severity, message, count, first_seen_ms, last_seen_ms, last_op_id, last_seq, state, resolved_at_ms, resolution";

/// Most drafts committed in one transaction when a committing caller takes
/// several callers' requests (a single larger request still commits whole):
/// a crowd of bulk appends does not become one huge transaction holding
/// SQLite's write lock, and so every other process, for all of them.
const MAX_GROUP_DRAFTS: usize = 8192;

/// Longest a committing caller waits for the callers of the last group to
/// queue again before committing (see the crate docs, "Group commit").
const MAX_GATHER_WAIT: Duration = Duration::from_millis(2);

/// Events read per chunk when verifying (their hashes are checked in
/// parallel).
const VERIFY_CHUNK: usize = 16_384;

/// The writer connection's page cache, in KiB (negative: SQLite's unit for
/// a size in KiB; this is SQLite's default). Bounded memory, held once per
/// open recorder. Bigger is not better here: every commit ends by scanning
/// the whole page-cache hash table (`pcache1TruncateUnsafe`, from
/// `pager_end_transaction`), so its cost grows with the pages cached. With
/// 32 MiB, a profile of `cargo bench -p mex-runtime --bench runtime --
/// execute_d3_cache_hit` spent 8.1% of all CPU in that scan; with 2 MiB
/// 0.85%, while rereading evicted index pages from the OS's cache went from
/// 4.5% to 6.3%. The bulk path (`mex bench --preload-events 300000` on
/// tmpfs) took 3.2 s of CPU with 2 MiB and 3.0 s with 32 MiB.
const WRITER_CACHE_KIB: i64 = -2_000;

/// How long a connection waits for another process's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle read connections kept for reuse.
const MAX_IDLE_READERS: usize = 4;

type Reply<T> = SyncSender<Result<T, RecorderError>>;

enum Request {
    Append {
        drafts: Vec<PreparedDraft>,
        claim: Option<Claim>,
        reply: Reply<ClaimOutcome>,
    },
    Interrupt {
        /// `(op_id, owner)` of claims whose owner is gone.
        claims: Vec<(String, String)>,
        reply: Reply<Vec<Uuid>>,
    },
    Resolve {
        fingerprint: String,
        note: String,
        reply: Reply<Problem>,
    },
}

impl Request {
    /// Whether committing this request must fsync before it is answered.
    /// Only an admitting claim may wait for a later fsync (see the crate
    /// docs, "Durability"): it is in the WAL, so it survives a crash of the
    /// process at once, and power loss once the next fsynced commit lands.
    fn needs_fsync(&self) -> bool {
        !matches!(
            self,
            Self::Append {
                claim: Some(Claim::Admit(_)),
                ..
            }
        )
    }

    /// How much of a group's [`MAX_GROUP_DRAFTS`] this request takes.
    fn size(&self) -> usize {
        match self {
            Self::Append { drafts, .. } => drafts.len().max(1),
            Self::Resolve { .. } => 1,
            Self::Interrupt { claims, .. } => claims.len().max(1),
        }
    }
}

/// Cut the requests a committing caller took into transactions of at most
/// [`MAX_GROUP_DRAFTS`] drafts each, in queue order, never splitting a
/// request.
fn transactions(batch: Vec<Request>) -> Vec<Vec<Request>> {
    let mut groups = Vec::new();
    let mut group = Vec::new();
    let mut size = 0;
    for request in batch {
        let n = request.size();
        if !group.is_empty() && size + n > MAX_GROUP_DRAFTS {
            groups.push(std::mem::take(&mut group));
            size = 0;
        }
        size += n;
        group.push(request);
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

/// The durable [`FlightRecorder`]: SQLite in WAL mode with
/// `synchronous=FULL`, one write connection shared by group commit (the
/// first waiting caller commits for everyone), a small pool of read
/// connections. See the crate docs for the durability rule.
///
/// # Example
///
/// Open a recorder in a mex home, append events, verify the hash chain, and
/// see an edit made behind its back found at the edited event:
///
/// ```rust
/// use mex_recorder::{BreakKind, EventDraft, EventKind, EventQuery, FlightRecorder, SqliteRecorder};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let home = tempfile::tempdir()?;
/// let recorder = SqliteRecorder::open(home.path())?;
///
/// let op_id = uuid::Uuid::new_v4();
/// let first = recorder.append(
///     EventDraft::new(EventKind::OpReceived)
///         .with_op_id(op_id)
///         .with_payload(serde_json::json!({"note": "first"})),
/// )?;
/// let second = recorder.append(EventDraft::gate_passed(op_id, "G-CAP".parse()?, "cap.granted"))?;
/// assert_eq!((first.seq, second.seq), (1, 2));
/// // Each event is chained to the one before it.
/// assert_eq!(second.prev_hash, first.hash);
/// assert_eq!(recorder.events(&EventQuery::op(op_id))?.len(), 2);
///
/// let report = recorder.verify()?;
/// assert!(report.is_ok());
/// assert_eq!(report.events_checked, 2);
///
/// // Rewrite the first event's payload with raw SQL: `verify` names it.
/// rusqlite::Connection::open(recorder.path())?
///     .execute("UPDATE events SET payload = '{\"note\":\"edited\"}' WHERE seq = 1", [])?;
/// let broken = recorder.verify()?.first_break.ok_or("the edit went unnoticed")?;
/// assert_eq!((broken.seq, broken.kind), (1, BreakKind::HashMismatch));
/// # Ok(())
/// # }
/// ```
pub struct SqliteRecorder {
    path: PathBuf,
    redactor: Redactor,
    owner: Owner,
    // `None` once closing: the writer connection closes before the
    // checkpointer's (below).
    committer: Option<Committer>,
    readers: Mutex<Vec<Connection>>,
    key: Option<WriterKey>,
    counters: Arc<CommitCounters>,
    checkpoints: Arc<CheckpointCounters>,
    // Dropped after the writer (fields drop in order): its connection
    // closes last and checkpoints what the WAL still holds.
    checkpointer: Option<Checkpointer>,
}

/// The write connection and its group-commit queue: the first caller that
/// finds no commit running takes every queued request and commits them in
/// one transaction for everyone (see the crate docs, "Group commit").
struct Committer {
    conn: Mutex<WriteConn>,
    group: Group<Vec<Request>, RecorderError>,
    /// This recorder's owner id, as claims store it.
    owner: String,
}

struct WriteConn {
    conn: Connection,
    mode: SyncMode,
}

impl std::fmt::Debug for SqliteRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteRecorder")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteRecorder {
    /// Open (creating if needed) `<mex_home>/recorder.sqlite3`, creating the
    /// home directory if it does not exist.
    pub fn open(mex_home: impl AsRef<Path>) -> Result<Self, RecorderError> {
        let home = mex_home.as_ref();
        let path = home.join(DB_FILE_NAME);
        fs::create_dir_all(home).map_err(|e| RecorderError::Open {
            path: path.clone(),
            detail: format!("cannot create the directory {}: {e}", home.display()),
        })?;
        Self::open_file_with(path, Redactor::new())
    }

    /// Open `<mex_home>/recorder.sqlite3` as the runtime's writer: with the
    /// home's writer key (`<mex_home>/recorder.key`, created 0600 if
    /// missing), every event this recorder writes is tagged, and `verify`
    /// reports events that lack a valid tag ([`crate::BreakKind::ForeignWriter`];
    /// see [`crate::tag`]).
    pub fn open_keyed(mex_home: impl AsRef<Path>) -> Result<Self, RecorderError> {
        Self::open_keyed_with(mex_home, Redactor::new())
    }

    /// [`SqliteRecorder::open_keyed`] with a redaction policy (e.g. one
    /// holding every secret the home keeps).
    pub fn open_keyed_with(
        mex_home: impl AsRef<Path>,
        redactor: Redactor,
    ) -> Result<Self, RecorderError> {
        let home = mex_home.as_ref();
        let path = home.join(DB_FILE_NAME);
        fs::create_dir_all(home).map_err(|e| RecorderError::Open {
            path: path.clone(),
            detail: format!("cannot create the directory {}: {e}", home.display()),
        })?;
        Self::open_inner(path, redactor, Some(home))
    }

    /// Open (creating if needed) the database at exactly `path`.
    pub fn open_file(path: impl Into<PathBuf>) -> Result<Self, RecorderError> {
        Self::open_file_with(path, Redactor::new())
    }

    /// Open the database at `path` with a redaction policy (e.g. one holding
    /// the secret values the runtime resolved).
    pub fn open_file_with(
        path: impl Into<PathBuf>,
        redactor: Redactor,
    ) -> Result<Self, RecorderError> {
        Self::open_inner(path.into(), redactor, None)
    }

    fn open_inner(
        path: PathBuf,
        redactor: Redactor,
        key_home: Option<&Path>,
    ) -> Result<Self, RecorderError> {
        check_header(&path)?;
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_error(&path, &e))?;
        configure_writer(&conn, &path)?;
        migrate(&mut conn, &path)?;
        check_schema(&conn, &path)?;
        let key = match key_home {
            Some(home) => Some(open_key(&conn, &path, home)?),
            None => None,
        };
        let owner = Owner::acquire(&path)?;
        let checkpoints = Arc::new(CheckpointCounters::default());
        let checkpointer = Checkpointer::start(&path, Arc::clone(&checkpoints), BUSY_TIMEOUT)?;
        checkpoint::install_hook(&mut conn, checkpointer.waker(), Arc::clone(&checkpoints))
            .map_err(|e| open_error(&path, &e))?;

        let committer = Committer {
            // configure_writer left the connection at FULL.
            conn: Mutex::new(WriteConn {
                conn,
                mode: SyncMode { full: true },
            }),
            group: Group::gathering(MAX_GATHER_WAIT),
            owner: owner.id.to_string(),
        };
        let recorder = Self {
            path,
            redactor,
            owner,
            committer: Some(committer),
            readers: Mutex::new(Vec::new()),
            key,
            counters: Arc::new(CommitCounters::default()),
            checkpoints,
            checkpointer: Some(checkpointer),
        };
        // Runs whose process died since the last open are recorded as
        // interrupted before anything else reads or writes the log.
        recorder.reconcile_interrupted()?;
        Ok(recorder)
    }

    /// This recorder's owner id: the `owner` of every claim it makes.
    pub fn owner_id(&self) -> Uuid {
        self.owner.id
    }

    /// How many write transactions this recorder has committed fsynced and
    /// how many deferred their fsync (admitting claims only; see the crate
    /// docs, "Durability").
    pub fn commit_stats(&self) -> CommitStats {
        CommitStats {
            fsynced: self.counters.fsynced.load(Ordering::Relaxed),
            deferred: self.counters.deferred.load(Ordering::Relaxed),
        }
    }

    /// How the WAL has been checkpointed since this recorder opened (see
    /// the crate docs, "Checkpoints").
    pub fn checkpoint_stats(&self) -> CheckpointStats {
        self.checkpoints.stats()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn closed(&self) -> RecorderError {
        RecorderError::Closed {
            path: self.path.clone(),
        }
    }

    /// Queue a request and wait until the group holding it has committed
    /// (committing it when no other caller is), then take its answer.
    fn send<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, RecorderError> {
        let c = self.committer.as_ref().ok_or_else(|| self.closed())?;
        let (reply, answer) = mpsc::sync_channel(1);
        let mine = c.group.enqueue(|pending| pending.push(make(reply)));
        let w = Writer {
            path: &self.path,
            redactor: &self.redactor,
            owner: &c.owner,
            key: self.key.as_ref(),
            counters: &self.counters,
        };
        let ran = c.group.wait(
            mine,
            |batch| {
                let mut guard = c.conn.lock().unwrap_or_else(PoisonError::into_inner);
                let WriteConn { conn, mode } = &mut *guard;
                for group in transactions(batch) {
                    commit_batch(conn, &w, mode, group);
                }
                Ok(())
            },
            || RecorderError::Storage {
                path: self.path.clone(),
                context: "committing a group of appends",
                detail: "the commit panicked".to_owned(),
                hint: "nothing in the failed group was recorded; retry, and report the panic",
            },
        );
        // Every request of a group that ran is answered (a panic while
        // committing fails the group without answers).
        match answer.try_recv() {
            Ok(answered) => answered,
            Err(_) => Err(ran.err().unwrap_or_else(|| self.closed())),
        }
    }

    /// Run `f` on a pooled read connection.
    fn with_reader<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, RecorderError>,
    ) -> Result<T, RecorderError> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => open_reader(&self.path)?,
        };
        let out = f(&mut conn);
        let mut idle = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_READERS && conn.is_autocommit() {
            idle.push(conn);
        }
        out
    }

    fn query_events(
        &self,
        query: &EventQuery,
        mut each: impl FnMut(Event) -> Result<(), RecorderError>,
    ) -> Result<u64, RecorderError> {
        let path = &self.path;
        self.with_reader(|conn| {
            let (sql, args) = events_sql(query);
            let ctx = "querying events";
            let mut stmt = conn
                .prepare_cached(&sql)
                .map_err(|e| RecorderError::storage(path, ctx, &e))?;
            let mut rows = stmt
                .query(rusqlite::params_from_iter(args))
                .map_err(|e| RecorderError::storage(path, ctx, &e))?;
            let mut n = 0;
            while let Some(row) = rows
                .next()
                .map_err(|e| RecorderError::storage(path, ctx, &e))?
            {
                let seq = row
                    .get::<_, i64>(0)
                    .map_err(|e| RecorderError::storage(path, ctx, &e))?;
                let event = row_to_event(row).map_err(|detail| RecorderError::CorruptEvent {
                    path: path.clone(),
                    seq: seq as u64,
                    detail,
                })?;
                each(event)?;
                n += 1;
            }
            Ok(n)
        })
    }

    fn verify_with(&self, anchor: Option<ChainHead>) -> Result<VerifyReport, RecorderError> {
        let path = &self.path;
        self.with_reader(|conn| {
            let ctx = "verifying the chain";
            let err = |e: rusqlite::Error| RecorderError::storage(path, ctx, &e);
            // One read transaction: the checkpoint and the events are one
            // consistent snapshot even while writers append.
            let tx = conn.transaction().map_err(err)?;
            let checkpoint = read_head(&tx).map_err(err)?.map(|h| ChainHead {
                seq: h.seq,
                hash: h.hash,
            });
            let mut verifier = ChainVerifier::new(anchor);
            {
                let mut stmt = tx
                    .prepare(&format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY seq"))
                    .map_err(err)?;
                let mut rows = stmt.query([]).map_err(err)?;
                // Rows are copied out here, in chunks (this thread owns the
                // statement); each chunk is decoded and hashed on every core
                // while the next chunk is read, then fed in order.
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                std::thread::scope(|s| -> Result<(), RecorderError> {
                    let mut pending: Option<std::thread::ScopedJoinHandle<'_, _>> = None;
                    loop {
                        let mut chunk: Vec<(u64, Result<RawEvent, String>)> =
                            Vec::with_capacity(VERIFY_CHUNK);
                        while chunk.len() < VERIFY_CHUNK
                            && let Some(row) = rows.next().map_err(err)?
                        {
                            let seq = row.get::<_, i64>(0).map_err(err)?;
                            chunk.push((
                                u64::try_from(seq).unwrap_or(0),
                                RawEvent::read(row).map_err(|e| e.to_string()),
                            ));
                        }
                        if let Some(handle) = pending.take() {
                            let checked: Vec<_> = handle.join().unwrap_or_else(|_| {
                                vec![(0, Err("a hashing thread panicked".to_owned()))]
                            });
                            if !checked
                                .into_iter()
                                .all(|(seq, e)| verifier.push_checked(seq, e))
                            {
                                return Ok(());
                            }
                        }
                        if chunk.is_empty() {
                            return Ok(());
                        }
                        pending = Some(s.spawn(move || {
                            check_rows(chunk, threads, |(seq, raw)| {
                                let checked =
                                    raw.and_then(RawEvent::into_parts).map(|(e, text)| {
                                        let check = HashCheck::of_stored(&e, text.as_deref());
                                        // The chain walk needs only seq, time
                                        // and hashes: the rest is freed here,
                                        // in parallel, not on the reading
                                        // thread.
                                        (e.chain_links(), check)
                                    });
                                (seq, checked)
                            })
                        }));
                    }
                })?;
            }
            let mut report = verifier.finish(checkpoint);
            if report.first_break.is_none()
                && let Some(key) = &self.key
            {
                report.first_break = foreign_event(&tx, key).map_err(err)?;
            }
            tx.finish().map_err(err)?;
            Ok(report)
        })
    }
}

impl Drop for SqliteRecorder {
    fn drop(&mut self) {
        // Readers close first, then the writer, so the checkpointer's
        // connection is the last one and checkpoints the WAL into the main
        // file as it closes.
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        // No caller is left (drop has the recorder to itself), so nothing
        // is queued: the write connection closes here.
        self.committer = None;
        self.checkpointer = None;
        self.owner.release();
    }
}

impl FlightRecorder for SqliteRecorder {
    fn append_batch(&self, drafts: Vec<EventDraft>) -> Result<Vec<Event>, RecorderError> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let prepared = drafts
            .into_iter()
            .map(|d| d.prepare(&self.redactor))
            .collect::<Result<Vec<_>, _>>()?;
        match self.send(|reply| Request::Append {
            drafts: prepared,
            claim: None,
            reply,
        })? {
            ClaimOutcome::Recorded(events) => Ok(events),
            ClaimOutcome::AlreadyClaimed(_) => Err(RecorderError::InvalidEvent {
                kind: "batch",
                detail: "the writer answered a plain append as a claim".to_owned(),
            }),
        }
    }

    fn append_claiming(
        &self,
        claim: Claim,
        drafts: Vec<EventDraft>,
    ) -> Result<ClaimOutcome, RecorderError> {
        let prepared = drafts
            .into_iter()
            .map(|d| d.prepare(&self.redactor))
            .collect::<Result<Vec<_>, _>>()?;
        self.send(|reply| Request::Append {
            drafts: prepared,
            claim: Some(claim),
            reply,
        })
    }

    fn claim_state(&self, op_id: Uuid) -> Result<Option<ClaimState>, RecorderError> {
        let path = &self.path;
        self.with_reader(|conn| {
            let ctx = "looking up an op-id claim";
            let mut stmt = conn
                .prepare_cached("SELECT state FROM op_claims WHERE op_id = ?1")
                .map_err(|e| RecorderError::storage(path, ctx, &e))?;
            let state: Option<String> = stmt
                .query_row([op_id.to_string()], |r| r.get(0))
                .optional()
                .map_err(|e| RecorderError::storage(path, ctx, &e))?;
            state
                .map(|s| ClaimState::parse(&s))
                .transpose()
                .map_err(|detail| RecorderError::Corrupt {
                    path: path.clone(),
                    detail: format!("the claim of op {op_id} is unreadable: {detail}"),
                })
        })
    }

    fn reconcile_interrupted(&self) -> Result<Vec<Uuid>, RecorderError> {
        let path = &self.path;
        // 1. The admitted claims, read *before* looking at any lock: a claim
        //    is only ever made by an owner already holding its lock, so an
        //    owner found dead below cannot have claimed anything since.
        let admitted: Vec<(String, String)> = self.with_reader(|conn| {
            let ctx = "listing runs in flight";
            let err = |e: rusqlite::Error| RecorderError::storage(path, ctx, &e);
            let mut stmt = conn
                .prepare_cached("SELECT op_id, owner FROM op_claims WHERE state = 'admitted'")
                .map_err(err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)
        })?;
        // 2. Which owners are gone. Their lock files stay locked by us
        //    until the claims are marked, then are removed.
        let mut gone: Vec<(String, Option<(PathBuf, fs::File)>)> = Vec::new();
        let mut alive: Vec<String> = vec![self.owner.id.to_string()];
        for (_, owner) in &admitted {
            if alive.contains(owner) || gone.iter().any(|(o, _)| o == owner) {
                continue;
            }
            match self.owner.liveness(owner) {
                Liveness::Alive => alive.push(owner.clone()),
                Liveness::Gone(lock) => gone.push((owner.clone(), lock)),
            }
        }
        let claims: Vec<(String, String)> = admitted
            .into_iter()
            .filter(|(_, owner)| gone.iter().any(|(o, _)| o == owner))
            .collect();
        let marked = if claims.is_empty() {
            Vec::new()
        } else {
            self.send(|reply| Request::Interrupt { claims, reply })?
        };
        for (_, lock) in gone {
            if let Some((lock_path, file)) = lock {
                let _ = fs::remove_file(&lock_path);
                drop(file);
            }
        }
        // 3. Lock files of owners that died without claims in flight.
        self.owner.sweep();
        Ok(marked)
    }

    fn events(&self, query: &EventQuery) -> Result<Vec<Event>, RecorderError> {
        let mut out = Vec::new();
        self.query_events(query, |e| {
            out.push(e);
            Ok(())
        })?;
        Ok(out)
    }

    fn export_jsonl(&self, query: &EventQuery, out: &mut dyn Write) -> Result<u64, RecorderError> {
        let n = self.query_events(query, |e| write_jsonl_line(out, &e))?;
        out.flush().map_err(|e| RecorderError::Export {
            detail: e.to_string(),
        })?;
        Ok(n)
    }

    fn problems(&self, filter: &ProblemFilter) -> Result<Vec<Problem>, RecorderError> {
        let path = &self.path;
        self.with_reader(|conn| {
            let ctx = "listing problems";
            let err = |e: rusqlite::Error| RecorderError::storage(path, ctx, &e);
            let mut sql = format!("SELECT {PROBLEM_COLUMNS} FROM problems WHERE 1=1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(s) = filter.state {
                sql.push_str(" AND state = ?");
                args.push(rusqlite::types::Value::Text(s.as_str().to_owned()));
            }
            if let Some(e) = &filter.engine_id {
                sql.push_str(" AND engine_id = ?");
                args.push(rusqlite::types::Value::Text(e.to_string()));
            }
            sql.push_str(" ORDER BY last_seen_ms DESC, last_seq DESC");
            if let Some(l) = filter.limit {
                sql.push_str(" LIMIT ?");
                args.push(rusqlite::types::Value::Integer(to_i64(l)));
            }
            let mut stmt = conn.prepare_cached(&sql).map_err(err)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(args)).map_err(err)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(err)? {
                out.push(
                    row_to_problem(row).map_err(|detail| RecorderError::Corrupt {
                        path: path.clone(),
                        detail: format!("a problems row is unreadable: {detail}"),
                    })?,
                );
            }
            Ok(out)
        })
    }

    fn resolve_problem(&self, fingerprint: &str, note: &str) -> Result<Problem, RecorderError> {
        self.send(|reply| Request::Resolve {
            fingerprint: fingerprint.to_owned(),
            note: note.to_owned(),
            reply,
        })
    }

    fn head(&self) -> Result<Option<ChainHead>, RecorderError> {
        let path = &self.path;
        self.with_reader(|conn| {
            let head = read_head(conn)
                .map_err(|e| RecorderError::storage(path, "reading the chain head", &e))?;
            Ok(head.map(|h| ChainHead {
                seq: h.seq,
                hash: h.hash,
            }))
        })
    }

    fn verify(&self) -> Result<VerifyReport, RecorderError> {
        self.verify_with(None)
    }

    fn verify_anchored(&self, anchor: ChainHead) -> Result<VerifyReport, RecorderError> {
        self.verify_with(Some(anchor))
    }
}

// ---------------------------------------------------------------------------
// Opening, configuration, migrations.

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// The statement and arguments of an event query.
fn events_sql(query: &EventQuery) -> (String, Vec<rusqlite::types::Value>) {
    let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE 1=1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    use rusqlite::types::Value as V;
    if let Some(id) = query.op_id {
        sql.push_str(" AND op_id = ?");
        args.push(V::Text(id.to_string()));
    }
    if let Some(e) = &query.engine_id {
        sql.push_str(" AND engine_id = ?");
        args.push(V::Text(e.to_string()));
    }
    if let Some(k) = query.kind {
        sql.push_str(" AND kind = ?");
        if !UNINDEXED_KINDS.contains(&k) {
            sql.push_str(" AND ");
            sql.push_str(KIND_INDEX_WHERE);
        }
        args.push(V::Text(k.as_str().to_owned()));
    }
    if let Some(t) = query.since {
        sql.push_str(" AND ts_ms >= ?");
        args.push(V::Integer(t.unix_millis()));
    }
    if let Some(t) = query.until {
        sql.push_str(" AND ts_ms < ?");
        args.push(V::Integer(t.unix_millis()));
    }
    if let Some(s) = query.after_seq {
        sql.push_str(" AND seq > ?");
        args.push(V::Integer(to_i64(s)));
    }
    sql.push_str(" ORDER BY seq");
    if let Some(l) = query.limit {
        sql.push_str(" LIMIT ?");
        args.push(V::Integer(to_i64(l)));
    }
    (sql, args)
}

/// A non-empty file that is not SQLite is refused before SQLite touches it.
/// (An empty main file is normal: in WAL mode the content may still be in
/// `-wal` waiting for a checkpoint, and SQLite recovers it.)
fn check_header(path: &Path) -> Result<(), RecorderError> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(RecorderError::Open {
                path: path.to_owned(),
                detail: e.to_string(),
            });
        }
    };
    let mut header = Vec::with_capacity(16);
    file.take(16)
        .read_to_end(&mut header)
        .map_err(|e| RecorderError::Open {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    if header.is_empty() || header.as_slice() == SQLITE_MAGIC {
        Ok(())
    } else {
        Err(RecorderError::Corrupt {
            path: path.to_owned(),
            detail: "the file does not start with the SQLite header".to_owned(),
        })
    }
}

fn open_error(path: &Path, e: &rusqlite::Error) -> RecorderError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
            RecorderError::Corrupt {
                path: path.to_owned(),
                detail: e.to_string(),
            }
        }
        _ => RecorderError::Open {
            path: path.to_owned(),
            detail: e.to_string(),
        },
    }
}

fn configure_writer(conn: &Connection, path: &Path) -> Result<(), RecorderError> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| open_error(path, &e))?;
    pin_plans(conn, path)?;
    let mode = switch_to_wal(conn, path)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(RecorderError::Open {
            path: path.to_owned(),
            detail: format!(
                "SQLite refused WAL mode (journal mode is {mode:?}); put the recorder on a local filesystem"
            ),
        });
    }
    // FULL: every commit fsyncs the WAL before `append` returns; the writer
    // switches to NORMAL only for groups of admitting claims (see the crate
    // docs, "Durability").
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| open_error(path, &e))?;
    // The writer's page cache: see WRITER_CACHE_KIB for why it is small.
    conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)
        .map_err(|e| open_error(path, &e))?;
    Ok(())
}

/// Switch the connection to WAL mode (waiting, like every other wait for
/// another connection's lock, at most [`BUSY_TIMEOUT`]: see
/// [`mex_sqlite::switch_to_wal`]); returns the journal mode SQLite reports.
fn switch_to_wal(conn: &Connection, path: &Path) -> Result<String, RecorderError> {
    mex_sqlite::switch_to_wal(conn, BUSY_TIMEOUT).map_err(|e| {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) {
            RecorderError::Open {
                path: path.to_owned(),
                detail: format!(
                    "another connection held the log's write lock for {} s while this \
                     one switched it to WAL mode ({e}); retry once that process is done \
                     (`fuser` on the file names it)",
                    BUSY_TIMEOUT.as_secs()
                ),
            }
        } else {
            open_error(path, &e)
        }
    })
}

fn open_reader(path: &Path) -> Result<Connection, RecorderError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| open_error(path, &e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| open_error(path, &e))?;
    pin_plans(&conn, path)?;
    Ok(conn)
}

/// Plan statements without looking at the values bound to them (SQLite's
/// query planner stability guarantee, QPSG). Without it, a profile of
/// `mex bench` showed the cached op-context lookup compiled again
/// (`sqlite3Reprepare`) on nearly every append, about 7% of the writer's
/// time; with it, not once. The recorder's plans do not depend on bound
/// values: its lookups are by key, and the one that needed pinning says
/// `INDEXED BY`.
fn pin_plans(conn: &Connection, path: &Path) -> Result<(), RecorderError> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map(drop)
        .map_err(|e| open_error(path, &e))
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), RecorderError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| open_error(path, &e))?;
    let found: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| open_error(path, &e))?;
    if found > SCHEMA_VERSION {
        return Err(RecorderError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < 0 {
        return Err(RecorderError::Corrupt {
            path: path.to_owned(),
            detail: format!("negative schema version {found}"),
        });
    }
    if found == 0 {
        let tables: i64 = tx
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| open_error(path, &e))?;
        if tables > 0 {
            return Err(RecorderError::Corrupt {
                path: path.to_owned(),
                detail: format!(
                    "the database has {tables} tables but no recorder schema version: it is some other SQLite database"
                ),
            });
        }
    }
    if found == SCHEMA_VERSION {
        return tx.commit().map_err(|e| open_error(path, &e));
    }
    for version in found..SCHEMA_VERSION {
        let idx = usize::try_from(version).unwrap_or(usize::MAX);
        let sql = MIGRATIONS.get(idx).copied().unwrap_or("");
        tx.execute_batch(sql)
            .map_err(|e| RecorderError::Migration {
                path: path.to_owned(),
                from: found,
                to: version + 1,
                detail: e.to_string(),
            })?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .and_then(|()| tx.commit())
        .map_err(|e| RecorderError::Migration {
            path: path.to_owned(),
            from: found,
            to: SCHEMA_VERSION,
            detail: e.to_string(),
        })
}

/// Every statement the recorder runs must compile against the file: a file
/// with the right version but missing tables or columns is corrupt, not an
/// empty log.
fn check_schema(conn: &Connection, path: &Path) -> Result<(), RecorderError> {
    for sql in [
        format!("SELECT {EVENT_COLUMNS} FROM events LIMIT 0"),
        format!("SELECT {PROBLEM_COLUMNS} FROM problems LIMIT 0"),
        format!("SELECT {CLAIM_COLUMNS} FROM op_claims LIMIT 0"),
        "SELECT seq, hash, ts_ms FROM chain_head LIMIT 0".to_owned(),
    ] {
        conn.prepare(&sql).map_err(|e| RecorderError::Corrupt {
            path: path.to_owned(),
            detail: format!("schema version {SCHEMA_VERSION} but the tables do not match: {e}"),
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The writer.

struct Head {
    seq: u64,
    hash: Sha256Digest,
    ts_ms: i64,
}

fn read_head(conn: &Connection) -> rusqlite::Result<Option<Head>> {
    conn.prepare_cached("SELECT seq, hash, ts_ms FROM chain_head WHERE id = 1")?
        .query_row([], |r| {
            let hash: Vec<u8> = r.get(1)?;
            let hash = <[u8; 32]>::try_from(hash.as_slice())
                .map(Sha256Digest::from_bytes)
                .unwrap_or(GENESIS_HASH);
            Ok(Head {
                seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                hash,
                ts_ms: r.get(2)?,
            })
        })
        .optional()
}

/// How the writer has committed since the recorder opened: what
/// [`SqliteRecorder::commit_stats`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Transactions committed with `synchronous=FULL`: fsynced before any
    /// caller in them was answered.
    pub fsynced: u64,
    /// Transactions committed with `synchronous=NORMAL`: in the WAL (safe
    /// against a crash of the process), made durable against power loss by
    /// the next fsynced commit. Only groups holding nothing but admitting
    /// claims commit this way.
    pub deferred: u64,
}

#[derive(Default)]
struct CommitCounters {
    fsynced: AtomicU64,
    deferred: AtomicU64,
}

/// The writer connection's `synchronous` setting, as SQLite reports it back.
struct SyncMode {
    full: bool,
}

impl SyncMode {
    /// Switch between FULL and NORMAL (between transactions); returns
    /// whether the connection now runs FULL, read back from SQLite.
    fn set(&mut self, conn: &Connection, full: bool) -> rusqlite::Result<bool> {
        if self.full != full {
            // Until SQLite confirms the level, assume it does not fsync: if
            // the pragma or the read-back fails, the next group that needs
            // an fsync sets FULL again instead of trusting a stale flag.
            // Cached statements: misses switch twice per operation.
            self.full = false;
            conn.prepare_cached(if full {
                "PRAGMA synchronous = FULL"
            } else {
                "PRAGMA synchronous = NORMAL"
            })?
            .execute([])?;
            let level: i64 = conn
                .prepare_cached("PRAGMA synchronous")?
                .query_row([], |r| r.get(0))?;
            // 2 = FULL, 3 = EXTRA: both fsync every commit.
            self.full = level >= 2;
        }
        Ok(self.full)
    }
}

struct Writer<'a> {
    path: &'a Path,
    redactor: &'a Redactor,
    owner: &'a str,
    key: Option<&'a WriterKey>,
    counters: &'a CommitCounters,
}

enum Outcome {
    Appended(ClaimOutcome),
    Problem(Box<Result<Problem, RecorderError>>),
    Interrupted(Vec<Uuid>),
}

/// Commit a group of requests in one transaction, then answer each. Nothing
/// is answered before the commit (and its fsync) returns.
fn commit_batch(conn: &mut Connection, w: &Writer<'_>, mode: &mut SyncMode, batch: Vec<Request>) {
    let path = w.path;
    let result = write_batch(conn, w, mode, &batch);
    let mismatch = || RecorderError::Closed {
        path: path.to_owned(),
    };
    match result {
        Ok(outcomes) => {
            for (request, outcome) in batch.into_iter().zip(outcomes) {
                match (request, outcome) {
                    (Request::Append { reply, .. }, Outcome::Appended(o)) => {
                        let _ = reply.send(Ok(o));
                    }
                    (Request::Resolve { reply, .. }, Outcome::Problem(p)) => {
                        let _ = reply.send(*p);
                    }
                    (Request::Interrupt { reply, .. }, Outcome::Interrupted(ids)) => {
                        let _ = reply.send(Ok(ids));
                    }
                    (Request::Append { reply, .. }, _) => {
                        let _ = reply.send(Err(mismatch()));
                    }
                    (Request::Resolve { reply, .. }, _) => {
                        let _ = reply.send(Err(mismatch()));
                    }
                    (Request::Interrupt { reply, .. }, _) => {
                        let _ = reply.send(Err(mismatch()));
                    }
                }
            }
        }
        Err(e) => {
            for request in batch {
                match request {
                    Request::Append { reply, .. } => {
                        let _ = reply.send(Err(e.clone()));
                    }
                    Request::Resolve { reply, .. } => {
                        let _ = reply.send(Err(e.clone()));
                    }
                    Request::Interrupt { reply, .. } => {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

/// Apply a claim inside the write transaction. `Some(state)` when the op id
/// was already claimed (the request's events must then not be written).
fn apply_claim(
    tx: &Transaction<'_>,
    claim: Claim,
    owner: &str,
    ts_ms: i64,
) -> rusqlite::Result<Option<ClaimState>> {
    let op = claim.op_id().to_string();
    let (state, ended) = match claim {
        Claim::Admit(_) => (ClaimState::Admitted, None),
        Claim::AdmitCompleted(_) => (ClaimState::Completed, Some(ts_ms)),
        Claim::Complete(_) => {
            tx.prepare_cached(
                "UPDATE op_claims SET state = 'completed', ended_ms = ?2 WHERE op_id = ?1 AND state = 'admitted'",
            )?
            .execute(params![op, ts_ms])?;
            return Ok(None);
        }
    };
    let inserted = tx
        .prepare_cached(&format!(
            "INSERT INTO op_claims ({CLAIM_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(op_id) DO NOTHING"
        ))?
        .execute(params![
            op,
            state.as_str(),
            owner,
            i64::from(std::process::id()),
            ts_ms,
            ended
        ])?;
    if inserted == 1 {
        return Ok(None);
    }
    let found: String = tx
        .prepare_cached("SELECT state FROM op_claims WHERE op_id = ?1")?
        .query_row([&op], |r| r.get(0))?;
    // An unreadable state still means "claimed": fail closed.
    Ok(Some(
        ClaimState::parse(&found).unwrap_or(ClaimState::Completed),
    ))
}

fn write_batch(
    conn: &mut Connection,
    w: &Writer<'_>,
    mode: &mut SyncMode,
    batch: &[Request],
) -> Result<Vec<Outcome>, RecorderError> {
    let (path, redactor, owner, key) = (w.path, w.redactor, w.owner, w.key);
    let ctx = "recording events";
    let err = |e: rusqlite::Error| RecorderError::storage(path, ctx, &e);
    // One request needing fsync makes the whole group fsynced.
    let fsync = batch.iter().any(Request::needs_fsync);
    let full = mode.set(conn, fsync).map_err(err)?;
    if fsync && !full {
        return Err(RecorderError::storage(
            path,
            ctx,
            &rusqlite::Error::InvalidParameterName(
                "SQLite did not switch the writer back to synchronous=FULL; nothing was written: reopen the recorder".to_owned(),
            ),
        ));
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    // The head is read inside the write transaction, so several processes
    // sharing one file still get one chain.
    let head = read_head(&tx).map_err(err)?;
    let (mut seq, mut prev, last_ms) =
        head.map_or((0, GENESIS_HASH, i64::MIN), |h| (h.seq, h.hash, h.ts_ms));
    let now = UtcTimestamp::now();
    let ts = if now.unix_millis() >= last_ms {
        now
    } else {
        UtcTimestamp::from_unix_millis(last_ms).unwrap_or(now)
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut seal_insert =
        |tx: &Transaction<'_>, draft: &PreparedDraft| -> Result<Event, RecorderError> {
            seq += 1;
            let event = match draft.needs_context() {
                Some(op) => {
                    let mut draft = draft.clone();
                    if let Some((engine, operation)) = op_context(tx, op).map_err(err)? {
                        draft.fill_context(engine, operation);
                    }
                    draft.seal(seq, ts, prev)?
                }
                None => draft.seal(seq, ts, prev)?,
            };
            insert_event(tx, &event, draft.payload_text()).map_err(err)?;
            if let Some(key) = key {
                tx.prepare_cached("INSERT OR REPLACE INTO event_tags (seq, tag) VALUES (?1, ?2)")
                    .and_then(|mut stmt| {
                        stmt.execute(params![to_i64(event.seq), key.tag(&event.hash).as_slice()])
                    })
                    .map_err(err)?;
            }
            // An unreadable problems row is replaced rather than allowed to block
            // the event: the audit event matters more than a derived count.
            if let Some(p) = problem::observe(&event, |fp| load_problem(tx, fp).ok().flatten()) {
                save_problem(tx, &p).map_err(err)?;
            }
            prev = event.hash;
            Ok(event)
        };
    for request in batch {
        match request {
            Request::Append { drafts, claim, .. } => {
                if let Some(claim) = claim
                    && let Some(found) =
                        apply_claim(&tx, *claim, owner, ts.unix_millis()).map_err(err)?
                {
                    outcomes.push(Outcome::Appended(ClaimOutcome::AlreadyClaimed(found)));
                    continue;
                }
                let mut events = Vec::with_capacity(drafts.len());
                for d in drafts {
                    events.push(seal_insert(&tx, d)?);
                }
                outcomes.push(Outcome::Appended(ClaimOutcome::Recorded(events)));
            }
            Request::Interrupt { claims, .. } => {
                let mut marked = Vec::new();
                for (op, claim_owner) in claims {
                    let changed = tx
                        .prepare_cached(
                            "UPDATE op_claims SET state = 'interrupted', ended_ms = ?3 WHERE op_id = ?1 AND owner = ?2 AND state = 'admitted'",
                        )
                        .and_then(|mut s| s.execute(params![op, claim_owner, ts.unix_millis()]))
                        .map_err(err)?;
                    let Ok(id) = Uuid::parse_str(op) else {
                        continue;
                    };
                    if changed == 1 {
                        let draft = interrupted_draft(id).prepare(redactor)?;
                        seal_insert(&tx, &draft)?;
                        marked.push(id);
                    }
                }
                outcomes.push(Outcome::Interrupted(marked));
            }
            Request::Resolve {
                fingerprint, note, ..
            } => {
                let Some(mut problem) = load_problem(&tx, fingerprint).map_err(err)? else {
                    outcomes.push(Outcome::Problem(Box::new(Err(
                        RecorderError::UnknownProblem {
                            fingerprint: fingerprint.clone(),
                        },
                    ))));
                    continue;
                };
                let draft = resolution_draft(&problem, note).prepare(redactor)?;
                let event = seal_insert(&tx, &draft)?;
                problem.state = ProblemState::Resolved;
                problem.resolved_at = Some(event.recorded_at);
                problem.resolution = event
                    .payload
                    .get("note")
                    .and_then(|n| n.as_str())
                    .map(str::to_owned);
                save_problem(&tx, &problem).map_err(err)?;
                outcomes.push(Outcome::Problem(Box::new(Ok(problem))));
            }
        }
    }
    tx.prepare_cached(
        "INSERT INTO chain_head (id, seq, hash, ts_ms) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, ts_ms = excluded.ts_ms",
    )
    .and_then(|mut stmt| stmt.execute(params![to_i64(seq), prev.as_bytes().as_slice(), ts.unix_millis()]))
    .map_err(err)?;
    tx.commit().map_err(err)?;
    let counter = if full {
        &w.counters.fsynced
    } else {
        &w.counters.deferred
    };
    counter.fetch_add(1, Ordering::Relaxed);
    Ok(outcomes)
}

type OpContext = (
    Option<mex_envelope::EngineId>,
    Option<mex_envelope::OperationName>,
);

/// Engine and operation of an op, from its `op_received` event (found through
/// the op_id index; earlier events of the same transaction are visible).
///
/// `INDEXED BY` pins the plan: left to itself, SQLite answered `ORDER BY seq
/// LIMIT 1` by walking the whole table in `seq` order, so every append that
/// needed an op's context cost a scan of the log (a trivial run took 81 ms
/// with 10^5 events on record against 2.8 ms on an empty home).
const OP_CONTEXT_SQL: &str = "SELECT engine_id, operation FROM events INDEXED BY events_by_op WHERE op_id = ?1 AND kind = 'op_received' ORDER BY seq LIMIT 1";

fn op_context(tx: &Transaction<'_>, op: Uuid) -> rusqlite::Result<Option<OpContext>> {
    let mut stmt = tx.prepare_cached(OP_CONTEXT_SQL)?;
    let found: Option<(Option<String>, Option<String>)> = stmt
        .query_row([op.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(found.map(|(e, o)| {
        (
            e.and_then(|e| e.parse().ok()),
            o.and_then(|o| o.parse().ok()),
        )
    }))
}

/// The home's writer key, and the table its tags go in.
fn open_key(conn: &Connection, path: &Path, home: &Path) -> Result<WriterKey, RecorderError> {
    let err = |e: rusqlite::Error| RecorderError::storage(path, "preparing writer tags", &e);
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS event_tags (seq INTEGER PRIMARY KEY, tag BLOB NOT NULL)",
    )
    .map_err(err)?;
    let head: i64 = conn
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
        .map_err(err)?;
    WriterKey::load_or_create(home, u64::try_from(head).unwrap_or(0).saturating_add(1))
}

/// The first event from the key's creation on without a valid writer tag.
fn foreign_event(tx: &Transaction<'_>, key: &WriterKey) -> rusqlite::Result<Option<ChainBreak>> {
    let tags_exist: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'event_tags')",
        [],
        |r| r.get(0),
    )?;
    let sql = if tags_exist {
        "SELECT e.seq, e.hash, t.tag FROM events e LEFT JOIN event_tags t ON t.seq = e.seq WHERE e.seq >= ?1 ORDER BY e.seq"
    } else {
        "SELECT seq, hash, NULL FROM events WHERE seq >= ?1 ORDER BY seq"
    };
    let mut stmt = tx.prepare(sql)?;
    let mut rows = stmt.query([to_i64(key.since_seq)])?;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let hash: Vec<u8> = row.get(1)?;
        let tag: Option<Vec<u8>> = row.get(2)?;
        let valid = <[u8; 32]>::try_from(hash.as_slice()).is_ok_and(|h| {
            tag.as_deref() == Some(key.tag(&Sha256Digest::from_bytes(h)).as_slice())
        });
        if !valid {
            return Ok(Some(ChainBreak {
                seq: u64::try_from(seq).unwrap_or(0),
                kind: BreakKind::ForeignWriter,
                detail: format!(
                    "event {seq} {} no valid writer tag: it was appended by a writer that does not hold this home's key (not a mex runtime on this home); treat it and everything after it as untrusted",
                    if tag.is_some() { "carries" } else { "has" }
                ),
            }));
        }
    }
    Ok(None)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Insert a sealed event; `payload` is the canonical text of its payload
/// (what was hashed).
fn insert_event(tx: &Transaction<'_>, e: &Event, payload: Option<&str>) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO events (seq, ts_ms, kind, op_id, engine_id, operation, gate, rule, capability, decision, status, code, artifact, message, payload, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?;
    stmt.execute(params![
        to_i64(e.seq),
        e.recorded_at.unix_millis(),
        e.kind.as_str(),
        e.op_id.map(|u| u.to_string()),
        e.engine_id.as_ref().map(|x| x.as_str()),
        e.operation.as_ref().map(|x| x.as_str()),
        e.gate.as_ref().map(|x| x.as_str()),
        e.rule,
        e.capability,
        e.decision.map(|d| d.as_str()),
        e.status.map(|s| s.as_str()),
        e.code.as_ref().map(|x| x.as_str()),
        e.artifact.as_ref().map(|d| d.as_bytes().as_slice()),
        e.message,
        payload,
        e.prev_hash.as_bytes().as_slice(),
        e.hash.as_bytes().as_slice(),
    ])?;
    Ok(())
}

fn parse_opt<T: std::str::FromStr>(text: Option<String>, what: &str) -> Result<Option<T>, String>
where
    T::Err: std::fmt::Display,
{
    text.map(|t| t.parse::<T>().map_err(|e| format!("{what}: {e}")))
        .transpose()
}

/// Decode a row of [`EVENT_COLUMNS`]. Errors are text: verify reports them
/// as an unreadable event, queries as [`RecorderError::CorruptEvent`].
fn row_to_event(row: &Row<'_>) -> Result<Event, String> {
    RawEvent::read(row).map_err(|e| e.to_string())?.into_event()
}

/// A row of [`EVENT_COLUMNS`] copied out of SQLite, not yet decoded (so
/// decoding can run off the thread that owns the statement).
struct RawEvent {
    seq: i64,
    ts_ms: i64,
    kind: String,
    op_id: Option<Result<Uuid, String>>,
    engine_id: Option<String>,
    operation: Option<String>,
    gate: Option<String>,
    rule: Option<String>,
    capability: Option<String>,
    decision: Option<String>,
    status: Option<String>,
    code: Option<String>,
    artifact: Option<Result<Sha256Digest, String>>,
    message: Option<String>,
    payload: Option<String>,
    prev_hash: Result<Sha256Digest, String>,
    hash: Result<Sha256Digest, String>,
}

impl RawEvent {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        // Fixed-size members are decoded straight from SQLite's buffers
        // (no copy); a bad one is kept as its error, reported by
        // `into_parts` as an unreadable event.
        let digest =
            |i: usize, what: &str| -> rusqlite::Result<Option<Result<Sha256Digest, String>>> {
                let value = row.get_ref(i)?;
                if value == rusqlite::types::ValueRef::Null {
                    return Ok(None);
                }
                Ok(Some(
                    value
                        .as_blob()
                        .map_err(|e| format!("{what}: {e}"))
                        .and_then(|b| {
                            <[u8; 32]>::try_from(b)
                                .map(Sha256Digest::from_bytes)
                                .map_err(|_| format!("{what} is {} bytes, not 32", b.len()))
                        }),
                ))
            };
        let required = |d: Option<Result<Sha256Digest, String>>, what: &str| {
            d.unwrap_or_else(|| Err(format!("{what} is missing")))
        };
        let op_id = match row.get_ref(3)? {
            rusqlite::types::ValueRef::Null => None,
            value => Some(
                value
                    .as_str()
                    .map_err(|e| e.to_string())
                    .and_then(|t| Uuid::parse_str(t).map_err(|e| e.to_string()))
                    .map_err(|e| format!("op_id: {e}")),
            ),
        };
        Ok(Self {
            seq: row.get(0)?,
            ts_ms: row.get(1)?,
            kind: row.get(2)?,
            op_id,
            engine_id: row.get(4)?,
            operation: row.get(5)?,
            gate: row.get(6)?,
            rule: row.get(7)?,
            capability: row.get(8)?,
            decision: row.get(9)?,
            status: row.get(10)?,
            code: row.get(11)?,
            artifact: digest(12, "artifact")?,
            message: row.get(13)?,
            payload: row.get(14)?,
            prev_hash: required(digest(15, "prev_hash")?, "prev_hash"),
            hash: required(digest(16, "hash")?, "hash"),
        })
    }

    fn into_event(self) -> Result<Event, String> {
        self.into_parts().map(|(event, _)| event)
    }

    /// The event and its payload text as stored.
    fn into_parts(self) -> Result<(Event, Option<String>), String> {
        let (seq, ts_ms) = (self.seq, self.ts_ms);
        let payload = match &self.payload {
            Some(text) => {
                serde_json::from_str(text).map_err(|e| format!("payload is not JSON: {e}"))?
            }
            None => serde_json::Value::Null,
        };
        let event = Event {
            seq: u64::try_from(seq).map_err(|_| format!("negative seq {seq}"))?,
            recorded_at: UtcTimestamp::from_unix_millis(ts_ms)
                .ok_or_else(|| format!("time {ts_ms} out of range"))?,
            kind: self.kind.parse()?,
            op_id: self.op_id.transpose()?,
            engine_id: parse_opt(self.engine_id, "engine_id")?,
            operation: parse_opt(self.operation, "operation")?,
            gate: parse_opt(self.gate, "gate")?,
            rule: self.rule,
            capability: self.capability,
            decision: parse_opt(self.decision, "decision")?,
            status: self.status.map(|s| parse_status(&s)).transpose()?,
            code: parse_opt(self.code, "code")?,
            artifact: self.artifact.transpose()?,
            message: self.message,
            payload,
            prev_hash: self.prev_hash?,
            hash: self.hash?,
        };
        Ok((event, self.payload))
    }
}

fn load_problem(conn: &Connection, fingerprint: &str) -> rusqlite::Result<Option<Problem>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PROBLEM_COLUMNS} FROM problems WHERE fingerprint = ?1"
    ))?;
    let mut rows = stmt.query([fingerprint])?;
    match rows.next()? {
        Some(row) => row_to_problem(row).map(Some).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        }),
        None => Ok(None),
    }
}

fn save_problem(tx: &Transaction<'_>, p: &Problem) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO problems ({PROBLEM_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
    ))?;
    stmt.execute(params![
        p.fingerprint,
        p.code.as_str(),
        p.gate.as_ref().map(|x| x.as_str()),
        p.engine_id.as_ref().map(|x| x.as_str()),
        p.operation.as_ref().map(|x| x.as_str()),
        p.severity.as_str(),
        p.message,
        to_i64(p.count),
        p.first_seen.unix_millis(),
        p.last_seen.unix_millis(),
        p.last_op_id.map(|u| u.to_string()),
        to_i64(p.last_seq),
        p.state.as_str(),
        p.resolved_at.map(|t| t.unix_millis()),
        p.resolution,
    ])?;
    Ok(())
}

fn row_to_problem(row: &Row<'_>) -> Result<Problem, String> {
    let g = |e: rusqlite::Error| e.to_string();
    let ts = |ms: i64| {
        UtcTimestamp::from_unix_millis(ms).ok_or_else(|| format!("time {ms} out of range"))
    };
    let code: String = row.get(1).map_err(g)?;
    let severity: String = row.get(5).map_err(g)?;
    let state: String = row.get(12).map_err(g)?;
    Ok(Problem {
        fingerprint: row.get(0).map_err(g)?,
        code: code.parse().map_err(|e| format!("code: {e}"))?,
        gate: parse_opt(row.get(2).map_err(g)?, "gate")?,
        engine_id: parse_opt(row.get(3).map_err(g)?, "engine_id")?,
        operation: parse_opt(row.get(4).map_err(g)?, "operation")?,
        severity: severity.parse()?,
        message: row.get(6).map_err(g)?,
        count: u64::try_from(row.get::<_, i64>(7).map_err(g)?).unwrap_or(0),
        first_seen: ts(row.get(8).map_err(g)?)?,
        last_seen: ts(row.get(9).map_err(g)?)?,
        last_op_id: parse_opt::<Uuid>(row.get(10).map_err(g)?, "last_op_id")?,
        last_seq: u64::try_from(row.get::<_, i64>(11).map_err(g)?).unwrap_or(0),
        state: state.parse()?,
        resolved_at: row
            .get::<_, Option<i64>>(13)
            .map_err(g)?
            .map(ts)
            .transpose()?,
        resolution: row.get(14).map_err(g)?,
    })
}

// ---------------------------------------------------------------------------
// Owners (see the module docs).

/// This recorder's owner id and the lock that proves it is alive.
struct Owner {
    id: Uuid,
    dir: PathBuf,
    lock: Option<fs::File>,
}

enum Liveness {
    Alive,
    /// Gone; the lock file (now locked by the caller) when there is one.
    Gone(Option<(PathBuf, fs::File)>),
}

/// Lock files left by a crash between creation and rename are removed once
/// this old (their owner never claimed anything).
const STALE_TMP: Duration = Duration::from_secs(3600);

impl Owner {
    fn dir_for(db: &Path) -> PathBuf {
        let mut name = db
            .file_name()
            .map(std::ffi::OsStr::to_os_string)
            .unwrap_or_default();
        name.push("-owners");
        db.with_file_name(name)
    }

    fn acquire(db: &Path) -> Result<Self, RecorderError> {
        let dir = Self::dir_for(db);
        let id = Uuid::new_v4();
        let fail = |what: &str, e: std::io::Error| RecorderError::Open {
            path: db.to_owned(),
            detail: format!(
                "cannot {what} the owner lock in {}: {e}; the recorder needs it to tell its running operations from crashed ones",
                dir.display()
            ),
        };
        fs::create_dir_all(&dir).map_err(|e| fail("create the directory of", e))?;
        let tmp = dir.join(format!("{id}.tmp"));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| fail("create", e))?;
        file.lock().map_err(|e| fail("lock", e))?;
        let _ = writeln!(
            file,
            "pid {} opened {}",
            std::process::id(),
            UtcTimestamp::now()
        );
        fs::rename(&tmp, dir.join(format!("{id}.lock"))).map_err(|e| fail("publish", e))?;
        Ok(Self {
            id,
            dir,
            lock: Some(file),
        })
    }

    /// Whether `owner` (as stored in a claim) still holds its lock.
    fn liveness(&self, owner: &str) -> Liveness {
        // A stored owner that is not an id (old rows, a hand edit) has no
        // lock file and so no live process.
        let Ok(id) = Uuid::parse_str(owner) else {
            return Liveness::Gone(None);
        };
        let path = self.dir.join(format!("{id}.lock"));
        match fs::File::open(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Liveness::Gone(None),
            // Unsure (permissions, I/O): never call a run dead on a guess.
            Err(_) => Liveness::Alive,
            Ok(file) => match file.try_lock() {
                Ok(()) => Liveness::Gone(Some((path, file))),
                Err(_) => Liveness::Alive,
            },
        }
    }

    /// Remove lock files whose owner is gone. Called after reconciliation, so
    /// a gone owner has no admitted claims left (and should one appear from
    /// a claim made just before its death, a missing lock file means gone).
    fn sweep(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&self.id.to_string()) {
                continue;
            }
            if name.ends_with(".lock") {
                if let Ok(file) = fs::File::open(&path)
                    && file.try_lock().is_ok()
                {
                    let _ = fs::remove_file(&path);
                }
            } else if name.ends_with(".tmp") {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_TMP);
                if old {
                    let _ = fs::remove_file(&path);
                }
            }
        }
    }

    /// Remove this owner's lock file, then release the lock.
    fn release(&mut self) {
        if let Some(file) = self.lock.take() {
            let _ = fs::remove_file(self.dir.join(format!("{}.lock", self.id)));
            drop(file);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]

    use std::time::Instant;

    /// The recorder's checkpointer thread copies the WAL while commits go
    /// on; no commit checkpoints until the WAL reaches the inline size, and
    /// the one that does lets the next commit start the WAL again.
    #[test]
    fn the_recorder_checkpoints_off_the_commit_path() {
        use super::*;
        use crate::event::EventKind;
        let dir = tempfile::tempdir().unwrap();
        let rec = SqliteRecorder::open(dir.path()).unwrap();
        let inline_at = u64::try_from(checkpoint::INLINE_PAGES).unwrap();
        let append = || {
            let op = Uuid::new_v4();
            rec.append(EventDraft::new(EventKind::OpReceived).with_op_id(op))
                .unwrap();
            rec.checkpoint_stats()
        };
        let mut stats = append();
        // Up to the inline size: nothing on the commit path.
        while stats.wal_pages < inline_at - 50 {
            stats = append();
        }
        assert_eq!(stats.inline, 0, "{stats:?}");
        // The thread was woken (at least) seven times; wait for it (bounded,
        // so a checkpointer that never runs fails instead of hanging).
        let until = Instant::now() + Duration::from_secs(30);
        while rec.checkpoint_stats().background == 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            rec.checkpoint_stats().background >= 1,
            "{:?}",
            rec.checkpoint_stats()
        );
        // At the inline size a commit checkpoints once; the WAL starts again.
        let before = stats.wal_pages;
        while stats.wal_pages >= before {
            stats = append();
            assert!(
                stats.wal_pages < 2 * inline_at,
                "the WAL never started again: {stats:?}"
            );
        }
        assert_eq!(stats.inline, 1, "{stats:?}");
        assert_eq!(stats.last_error, None, "{stats:?}");
    }

    /// A group holding an admitting claim and anything else is fsynced
    /// whole; a group of admitting claims only is not; the connection's
    /// `synchronous` level follows.
    #[test]
    fn a_group_is_fsynced_when_any_request_in_it_needs_it() {
        use super::*;
        use crate::event::EventKind;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE_NAME);
        let mut conn = Connection::open(&path).unwrap();
        configure_writer(&conn, &path).unwrap();
        migrate(&mut conn, &path).unwrap();
        let redactor = Redactor::new();
        let counters = CommitCounters::default();
        let w = Writer {
            path: &path,
            redactor: &redactor,
            owner: "test-owner",
            key: None,
            counters: &counters,
        };
        let mut mode = SyncMode { full: true };
        let append = |claim: Option<Claim>| {
            let op = claim.map_or_else(Uuid::new_v4, Claim::op_id);
            let draft = EventDraft::new(EventKind::OpReceived)
                .with_op_id(op)
                .prepare(&redactor)
                .unwrap();
            let (reply, answer) = mpsc::sync_channel(1);
            (
                Request::Append {
                    drafts: vec![draft],
                    claim,
                    reply,
                },
                answer,
            )
        };
        let level = |conn: &Connection| -> i64 {
            conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap()
        };
        let counts = || {
            (
                counters.fsynced.load(Ordering::Relaxed),
                counters.deferred.load(Ordering::Relaxed),
            )
        };

        let (a, a_answer) = append(Some(Claim::Admit(Uuid::new_v4())));
        let (b, b_answer) = append(Some(Claim::Admit(Uuid::new_v4())));
        commit_batch(&mut conn, &w, &mut mode, vec![a, b]);
        assert!(a_answer.recv().unwrap().is_ok() && b_answer.recv().unwrap().is_ok());
        assert_eq!((counts(), level(&conn)), ((0, 1), 1), "admits only");

        let (a, a_answer) = append(Some(Claim::Admit(Uuid::new_v4())));
        let (c, c_answer) = append(None);
        commit_batch(&mut conn, &w, &mut mode, vec![a, c]);
        assert!(a_answer.recv().unwrap().is_ok() && c_answer.recv().unwrap().is_ok());
        assert_eq!(
            (counts(), level(&conn)),
            ((1, 1), 2),
            "an admit and a plain append"
        );

        let (d, d_answer) = append(Some(Claim::Complete(Uuid::new_v4())));
        commit_batch(&mut conn, &w, &mut mode, vec![d]);
        assert!(d_answer.recv().unwrap().is_ok());
        assert_eq!((counts(), level(&conn)), ((2, 1), 2), "a completion");
    }

    /// The committing caller takes every queued request but commits at most
    /// MAX_GROUP_DRAFTS drafts per transaction, each request whole: two
    /// callers' bulk appends queued behind a third make two transactions,
    /// not one holding the write lock for all of them.
    #[test]
    fn a_group_commits_at_most_max_group_drafts_per_transaction() {
        use super::*;
        use crate::event::EventKind;
        let dir = tempfile::tempdir().unwrap();
        let rec = SqliteRecorder::open(dir.path()).unwrap();
        let c = rec.committer.as_ref().unwrap();
        let before = rec.commit_stats().fsynced;
        let bulk = || -> Vec<PreparedDraft> {
            (0..MAX_GROUP_DRAFTS / 2 + 1)
                .map(|_| {
                    EventDraft::new(EventKind::OpReceived)
                        .with_op_id(Uuid::new_v4())
                        .prepare(&rec.redactor)
                        .unwrap()
                })
                .collect()
        };
        // Two callers have queued their bulk appends and are about to wait.
        let queued: Vec<_> = (0..2)
            .map(|_| {
                let (reply, answer) = mpsc::sync_channel(1);
                let mine = c.group.enqueue(|pending| {
                    pending.push(Request::Append {
                        drafts: bulk(),
                        claim: None,
                        reply,
                    })
                });
                (mine, answer)
            })
            .collect();
        // A third caller finds no commit running: it commits all three.
        rec.append(EventDraft::new(EventKind::OpReceived).with_op_id(Uuid::new_v4()))
            .unwrap();
        for (mine, answer) in queued {
            let unrun = |_| Err(rec.closed());
            c.group.wait(mine, unrun, || rec.closed()).unwrap();
            match answer.try_recv().unwrap().unwrap() {
                ClaimOutcome::Recorded(events) => {
                    assert_eq!(events.len(), MAX_GROUP_DRAFTS / 2 + 1)
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(c.group.settled());
        assert_eq!(rec.commit_stats().fsynced - before, 2);
        let report = rec.verify().unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(
            report.events_checked,
            u64::try_from(MAX_GROUP_DRAFTS).unwrap() + 3
        );
    }

    /// The context lookup every append may make goes through the op_id
    /// index, never a walk of the whole log (the plan SQLite chose once).
    #[test]
    fn the_op_context_lookup_uses_the_op_id_index() {
        let dir = tempfile::tempdir().unwrap();
        let _rec = super::SqliteRecorder::open(dir.path()).unwrap();
        let conn = rusqlite::Connection::open(dir.path().join(super::DB_FILE_NAME)).unwrap();
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", super::OP_CONTEXT_SQL))
            .unwrap();
        let plan: Vec<String> = stmt
            .query_map(["x"], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            plan.iter()
                .any(|step| step.contains("USING INDEX events_by_op")),
            "{plan:?}"
        );
    }

    /// The plan SQLite picks for an event query by `kind`.
    fn kind_query_plan(conn: &rusqlite::Connection, kind: super::EventKind) -> String {
        let (sql, args) = super::events_sql(&super::EventQuery::kind(kind));
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let plan: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        plan.join(" / ")
    }

    /// Queries by every kind but the two left out of the partial index use
    /// it; the two left out read the log in order (and still find their
    /// events, which `recorder.rs`'s query tests check).
    #[test]
    fn a_query_by_kind_uses_the_partial_kind_index_unless_its_kind_is_left_out() {
        use super::{EventKind, KIND_INDEX_WHERE, UNINDEXED_KINDS};
        let dir = tempfile::tempdir().unwrap();
        let _rec = super::SqliteRecorder::open(dir.path()).unwrap();
        let conn = rusqlite::Connection::open(dir.path().join(super::DB_FILE_NAME)).unwrap();
        let index_sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'events_by_kind'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(index_sql.ends_with(KIND_INDEX_WHERE), "{index_sql}");
        for kind in EventKind::ALL {
            let plan = kind_query_plan(&conn, kind);
            let left_out = UNINDEXED_KINDS.contains(&kind);
            assert_eq!(
                KIND_INDEX_WHERE.contains(&format!("'{}'", kind.as_str())),
                left_out,
                "{kind:?}: the index condition and UNINDEXED_KINDS disagree"
            );
            assert_eq!(
                plan.contains("events_by_kind"),
                !left_out,
                "{kind:?}: {plan}"
            );
        }
    }
}
