//! WAL checkpoints off the writer's commit path.
//!
//! SQLite's default runs a checkpoint inside the commit that pushes the WAL
//! past 1000 pages: that caller waits while the checkpoint copies the WAL's
//! pages into the main file (scattered writes into a database that grows
//! with the log) and fsyncs it, and so does every caller grouped with it.
//!
//! Here the writer connection's WAL hook replaces that. Each time the WAL
//! has grown by [`WAKE_PAGES`] it only *wakes* a checkpointer thread, which
//! has a connection of its own and runs a `PASSIVE` checkpoint: it never
//! takes the write lock, so commits go on while it copies. A checkpoint
//! running beside a busy writer never quite catches up (the writer adds
//! frames while it copies), and SQLite starts the WAL again from its
//! beginning only when a commit begins with every frame copied. So when
//! the WAL reaches [`INLINE_PAGES`] the committing writer runs one
//! checkpoint itself: by then the thread has copied all but the last few
//! frames, so it is short, and the next commit starts the WAL again. The
//! WAL file stays at most that size (32 MiB), overwritten, not grown; if a
//! long reader made it grow further, the commit that starts it again cuts
//! the file back to [`WAL_FILE_LIMIT_BYTES`].
//!
//! The same inline checkpoint is the backstop when the checkpointer falls
//! behind or fails (a full disk): it then copies everything, as SQLite
//! would have, just less often. A reader holding an old snapshot (another
//! process's long query) stops every checkpoint from finishing, as in any
//! WAL database. Both kinds are counted in [`CheckpointStats`].
//!
//! Durability is untouched: a commit is durable when its WAL frames are
//! fsynced (before the caller is answered); a checkpoint only moves
//! already-durable pages, and SQLite fsyncs the WAL before and the main
//! file after copying.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::hooks::Wal;
use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, MAIN_DB, OpenFlags};

use crate::RecorderError;

/// Growth of the WAL, in pages, after which a commit wakes the checkpointer
/// (SQLite's own threshold for its inline checkpoints).
pub(crate) const WAKE_PAGES: i32 = 1000;

/// WAL size, in pages, at which the committing writer checkpoints itself,
/// so that the next commit starts the WAL again (8000 pages of 4 KiB).
pub(crate) const INLINE_PAGES: i32 = 8 * WAKE_PAGES;

/// The WAL file's size, in bytes, beyond which SQLite cuts it back when
/// the WAL starts again (`journal_size_limit`): the inline size and a
/// wake-up's growth, in 4 KiB pages. A reader holding an old snapshot can
/// make the WAL grow past the inline size; without a limit the file would
/// keep that size (overwritten, never shortened) until the last connection
/// closes.
pub(crate) const WAL_FILE_LIMIT_BYTES: i64 = (INLINE_PAGES as i64 + WAKE_PAGES as i64) * 4096;

/// How the WAL has been checkpointed since the recorder opened: what
/// [`crate::SqliteRecorder::checkpoint_stats`] reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Checkpoints the checkpointer thread ran, off every commit's path.
    pub background: u64,
    /// Checkpoints a commit ran itself because the WAL had grown past
    /// the backstop (the checkpointer fell behind or failed).
    pub inline: u64,
    /// The WAL's size in pages after the writer's last commit (it starts
    /// again from the beginning after a complete checkpoint).
    pub wal_pages: u64,
    /// The last checkpoint that failed, and why (a checkpoint that cannot
    /// run is retried at the next wake-up; the WAL keeps every commit).
    /// Finding another checkpoint running (this recorder's other kind, or
    /// another process's) is not a failure: that one does the copying.
    pub last_error: Option<String>,
}

/// How checkpoints have run since the recorder opened.
#[derive(Default)]
pub(crate) struct CheckpointCounters {
    /// Checkpoints the checkpointer thread ran.
    pub(crate) background: AtomicU64,
    /// Checkpoints the writer ran inside a commit (the backstop).
    pub(crate) inline: AtomicU64,
    /// The WAL's size after the last commit, as the hook saw it.
    pub(crate) wal_pages: AtomicU64,
    /// The last checkpoint error (either kind), for people: the log says
    /// why the WAL was not copied.
    pub(crate) last_error: Mutex<Option<String>>,
}

impl CheckpointCounters {
    pub(crate) fn stats(&self) -> CheckpointStats {
        CheckpointStats {
            background: self.background.load(Ordering::Relaxed),
            inline: self.inline.load(Ordering::Relaxed),
            wal_pages: self.wal_pages.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    fn failed(&self, why: &str) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(why.to_owned());
    }
}

/// The checkpointer thread and the writer's way to wake it.
pub(crate) struct Checkpointer {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Open a connection to `path` for checkpoints and start the thread.
    pub(crate) fn start(
        path: &Path,
        counters: Arc<CheckpointCounters>,
        busy_timeout: std::time::Duration,
    ) -> Result<Self, RecorderError> {
        let open = |detail: String| RecorderError::Open {
            path: path.to_owned(),
            detail,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open(format!("cannot open the checkpoint connection: {e}")))?;
        conn.busy_timeout(busy_timeout)
            .map_err(|e| open(format!("cannot configure the checkpoint connection: {e}")))?;
        // This connection never writes, so SQLite's automatic checkpoint
        // would never fire on it anyway; it checkpoints when asked, and once
        // more as it closes if it is the last connection (the recorder
        // closes it last for that).
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(|e| open(format!("cannot configure the checkpoint connection: {e}")))?;
        // Reading the journal mode opens the database: a connection that has
        // not read it yet does not know it is in WAL mode, and a checkpoint
        // on it does nothing.
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(|e| open(format!("cannot read the journal mode: {e}")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open(format!(
                "the checkpoint connection found journal mode {mode:?}, not WAL"
            )));
        }
        let (wake, asked) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("mex-recorder-checkpoint".to_owned())
            .spawn(move || run(&conn, &asked, &counters))
            .map_err(|e| open(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Self {
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// The writer's side: what its WAL hook calls after each commit.
    pub(crate) fn waker(&self) -> Option<SyncSender<()>> {
        self.wake.clone()
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the checkpoint it may
        // be running.
        self.wake = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, asked: &Receiver<()>, counters: &CheckpointCounters) {
    while asked.recv().is_ok() {
        match conn.wal_checkpoint_v2(Some(MAIN_DB), CheckpointMode::PASSIVE) {
            Ok((-1, _)) => {
                counters.failed("SQLite ran no checkpoint: the database is not in WAL mode")
            }
            Ok(_) => {
                counters.background.fetch_add(1, Ordering::Relaxed);
            }
            // The commit's own checkpoint (or another process's) is
            // running: it copies what this one would have.
            Err(e) if another_is_running(&e) => {}
            Err(e) => counters.failed(&format!(
                "the checkpointer thread's checkpoint failed: {e}; the WAL keeps every \
                 commit, and the next wake-up (or the commit at {INLINE_PAGES} pages) tries \
                 again (check the disk's free space and health)"
            )),
        }
    }
}

/// Whether a checkpoint failed only because another one holds SQLite's
/// checkpoint lock (a `PASSIVE` checkpoint never waits for it): not a
/// failure to report, the other one is doing the work.
fn another_is_running(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
}

/// Install the writer connection's WAL hook (which replaces SQLite's
/// automatic checkpoints): wake the checkpointer each [`WAKE_PAGES`] of
/// growth, checkpoint inline at [`INLINE_PAGES`] (or at [`WAKE_PAGES`]
/// with no checkpointer), and cut the WAL file back to
/// [`WAL_FILE_LIMIT_BYTES`] when it starts again. The commit has already
/// happened when the hook runs, so nothing here can fail it.
pub(crate) fn install_hook(
    conn: &mut Connection,
    wake: Option<SyncSender<()>>,
    counters: Arc<CheckpointCounters>,
) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_size_limit", WAL_FILE_LIMIT_BYTES)?;
    // The WAL size at which the next wake-up is due.
    let mut next_wake = WAKE_PAGES;
    let mut last = 0;
    conn.wal_hook(Some(move |wal: &mut Wal, pages: i32| {
        counters
            .wal_pages
            .store(u64::try_from(pages).unwrap_or(0), Ordering::Relaxed);
        if pages < last {
            // The WAL started again from its beginning.
            next_wake = WAKE_PAGES;
        }
        last = pages;
        let inline = pages >= INLINE_PAGES || (pages >= WAKE_PAGES && wake.is_none());
        if inline {
            match wal.checkpoint_v2(CheckpointMode::PASSIVE) {
                Ok(_) => {
                    counters.inline.fetch_add(1, Ordering::Relaxed);
                }
                // The checkpointer thread (or another process) is copying:
                // the next commit tries again, by then with little to copy.
                // Still finding it taken at twice the inline size, though,
                // something holds the lock and never finishes: say so.
                Err(e) if another_is_running(&e) && pages < 2 * INLINE_PAGES => {}
                Err(e) if another_is_running(&e) => counters.failed(&format!(
                    "the WAL has grown to {pages} pages: every checkpoint since {INLINE_PAGES} \
                     found SQLite's checkpoint lock taken ({e}); a process holding it (a \
                     blocking `PRAGMA wal_checkpoint` waiting for a reader or writer) must \
                     finish or be stopped"
                )),
                Err(e) => counters.failed(&format!(
                    "the commit's own checkpoint at {pages} WAL pages failed: {e}; the WAL \
                     keeps every commit and the next commit tries again (check the disk's \
                     free space and health)"
                )),
            }
        } else if pages >= next_wake
            && let Some(wake) = &wake
        {
            next_wake = pages.saturating_add(WAKE_PAGES);
            // Full: a wake-up is already pending. Disconnected: only at
            // shutdown, and the inline checkpoint still bounds the WAL.
            let _ = wake.try_send(());
        }
        Ok(())
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    /// A WAL database with the hook installed, and a table to fill.
    pub(super) fn db(
        dir: &Path,
        wake: Option<SyncSender<()>>,
    ) -> (Connection, Arc<CheckpointCounters>) {
        let mut conn = Connection::open(dir.join("t.sqlite3")).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        conn.execute("CREATE TABLE t (x BLOB)", []).unwrap();
        let counters = Arc::new(CheckpointCounters::default());
        install_hook(&mut conn, wake, Arc::clone(&counters)).unwrap();
        (conn, counters)
    }

    /// Commit small transactions until the WAL (as the hook last saw it)
    /// holds at least `pages` pages, so the hook sees every size on the way.
    pub(super) fn fill_to(conn: &Connection, counters: &CheckpointCounters, pages: i32) {
        let row = vec![7u8; 3000];
        let target = u64::try_from(pages).unwrap();
        while counters.stats().wal_pages < target {
            conn.execute("INSERT INTO t (x) VALUES (?1)", [&row])
                .unwrap();
        }
    }

    #[test]
    fn a_commit_past_the_wake_size_only_wakes_the_checkpointer() {
        let dir = tempfile::tempdir().unwrap();
        let (wake, asked) = mpsc::sync_channel(1);
        let (conn, counters) = db(dir.path(), Some(wake));
        fill_to(&conn, &counters, WAKE_PAGES - 10);
        assert!(asked.try_recv().is_err(), "woken below the wake size");
        fill_to(&conn, &counters, WAKE_PAGES + 10);
        assert!(asked.try_recv().is_ok(), "not woken past the wake size");
        fill_to(&conn, &counters, 2 * WAKE_PAGES - 10);
        assert!(
            asked.try_recv().is_err(),
            "woken again before the WAL grew by the wake size"
        );
        fill_to(&conn, &counters, 2 * WAKE_PAGES + 10);
        assert!(
            asked.try_recv().is_ok(),
            "not woken again after the WAL grew by the wake size"
        );
        // Nobody checkpointed: not the commit, and not SQLite's automatic
        // checkpoint, which the hook replaces (the WAL kept growing).
        assert_eq!(counters.stats().inline, 0);
        fill_to(&conn, &counters, 3 * WAKE_PAGES);
    }

    #[test]
    fn past_the_backstop_the_commit_checkpoints_itself() {
        let dir = tempfile::tempdir().unwrap();
        // A checkpointer that never answers.
        let (wake, _asked) = mpsc::sync_channel(1);
        let (conn, counters) = db(dir.path(), Some(wake));
        fill_to(&conn, &counters, INLINE_PAGES - 10);
        assert_eq!(counters.stats().inline, 0);
        fill_to(&conn, &counters, INLINE_PAGES);
        let stats = counters.stats();
        assert_eq!(stats.inline, 1, "{stats:?}");
        assert_eq!(stats.last_error, None);
        // Every frame was copied: the next commit starts the WAL again.
        conn.execute("INSERT INTO t (x) VALUES (x'00')", [])
            .unwrap();
        assert!(counters.stats().wal_pages < 10, "{:?}", counters.stats());
    }

    #[test]
    fn without_a_checkpointer_the_commit_checkpoints_at_the_wake_size() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, counters) = db(dir.path(), None);
        fill_to(&conn, &counters, WAKE_PAGES - 10);
        assert_eq!(counters.stats().inline, 0);
        fill_to(&conn, &counters, WAKE_PAGES);
        assert_eq!(counters.stats().inline, 1);
    }

    #[test]
    fn the_checkpointer_thread_copies_the_wal_when_woken() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, counters) = db(dir.path(), None);
        // Below the hook's sizes: only the thread can checkpoint.
        fill_to(&conn, &counters, 200);
        let checkpointer = Checkpointer::start(
            &dir.path().join("t.sqlite3"),
            Arc::clone(&counters),
            std::time::Duration::from_secs(10),
        )
        .unwrap();
        checkpointer.waker().unwrap().send(()).unwrap();
        // Dropping it waits for the checkpoint it was asked for.
        drop(checkpointer);
        let stats = counters.stats();
        assert_eq!((stats.background, stats.inline), (1, 0), "{stats:?}");
        // Every frame is in the main file: the next commit restarts the WAL.
        conn.execute("INSERT INTO t (x) VALUES (x'00')", [])
            .unwrap();
        assert!(counters.stats().wal_pages < 10, "{:?}", counters.stats());
    }
}

#[cfg(test)]
mod attack {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use std::sync::atomic::AtomicBool;

    use super::tests::{db, fill_to};
    use super::*;

    /// Another checkpoint holding SQLite's checkpoint lock when the WAL
    /// reaches the inline size (the checkpointer thread mid-copy, or another
    /// process's) is not a failure: the commit leaves it to that one and
    /// tries again at its next commit. A lock still taken at twice the
    /// inline size is reported.
    #[test]
    fn a_checkpoint_already_running_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (wake, _asked) = mpsc::sync_channel(1);
        let (conn, counters) = db(dir.path(), Some(wake));
        fill_to(&conn, &counters, INLINE_PAGES - 10);
        // The writer holds the write lock; another connection starts a FULL
        // checkpoint, which takes the checkpoint lock first and then waits
        // (in its busy handler, until told) for the write lock.
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let holding = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        let other = {
            let path = dir.path().join("t.sqlite3");
            let (holding, release) = (Arc::clone(&holding), Arc::clone(&release));
            std::thread::spawn(move || {
                let mut other = Connection::open(path).unwrap();
                let _: i64 = other
                    .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                    .unwrap();
                other
                    .busy_handler(Some(move |_| {
                        holding.store(true, Ordering::SeqCst);
                        while !release.load(Ordering::SeqCst) {
                            std::thread::sleep(std::time::Duration::from_millis(1));
                        }
                        true
                    }))
                    .unwrap();
                other
                    .wal_checkpoint_v2(Some(MAIN_DB), CheckpointMode::FULL)
                    .unwrap()
            })
        };
        while !holding.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let row = vec![7u8; 3000];
        for _ in 0..20 {
            conn.execute("INSERT INTO t (x) VALUES (?1)", [&row])
                .unwrap();
        }
        // The commit that crosses the inline size: its checkpoint finds
        // the lock taken.
        conn.execute_batch("COMMIT").unwrap();
        let stats = counters.stats();
        assert!(
            stats.wal_pages >= u64::try_from(INLINE_PAGES).unwrap(),
            "{stats:?}"
        );
        assert_eq!(counters.stats().last_error, None, "{:?}", counters.stats());
        // Still taken at twice the inline size: that is named.
        let mut pages = counters.stats().wal_pages;
        while pages < 2 * u64::try_from(INLINE_PAGES).unwrap() {
            conn.execute_batch("BEGIN").unwrap();
            for _ in 0..50 {
                conn.execute("INSERT INTO t (x) VALUES (?1)", [&row])
                    .unwrap();
            }
            conn.execute_batch("COMMIT").unwrap();
            pages = counters.stats().wal_pages;
        }
        let stuck = counters.stats().last_error.unwrap_or_default();
        assert!(stuck.contains("checkpoint lock taken"), "{stuck}");
        release.store(true, Ordering::SeqCst);
        let (log, copied) = other.join().unwrap();
        assert_eq!(log, copied, "the other checkpoint did not finish");
        let stats = counters.stats();
        assert_eq!(stats.inline, 0, "{stats:?}");
        // Everything was copied by the other one: the next commit starts
        // the WAL again.
        conn.execute("INSERT INTO t (x) VALUES (x'00')", [])
            .unwrap();
        assert!(counters.stats().wal_pages < 10, "{:?}", counters.stats());
    }

    /// The checkpointer thread gone (its receiving end dropped): the
    /// commit that reaches the inline size still checkpoints, and the WAL
    /// starts again.
    #[test]
    fn a_gone_checkpointer_leaves_the_backstop() {
        let dir = tempfile::tempdir().unwrap();
        let (wake, asked) = mpsc::sync_channel(1);
        drop(asked);
        let (conn, counters) = db(dir.path(), Some(wake));
        fill_to(&conn, &counters, INLINE_PAGES);
        assert_eq!(counters.stats().inline, 1, "{:?}", counters.stats());
        conn.execute("INSERT INTO t (x) VALUES (x'00')", [])
            .unwrap();
        let stats = counters.stats();
        assert!(stats.wal_pages < 10, "{stats:?}");
        assert_eq!(stats.last_error, None, "{stats:?}");
    }

    /// After the WAL starts again, wake-ups start again at the wake size
    /// (not at the size reached before the restart), and no commit
    /// checkpoints inline until the WAL reaches the inline size again.
    #[test]
    fn wake_ups_resume_after_the_wal_starts_again() {
        let dir = tempfile::tempdir().unwrap();
        let (wake, asked) = mpsc::sync_channel(1);
        let (conn, counters) = db(dir.path(), Some(wake));
        fill_to(&conn, &counters, INLINE_PAGES);
        assert_eq!(counters.stats().inline, 1);
        conn.execute("INSERT INTO t (x) VALUES (x'00')", [])
            .unwrap();
        assert!(counters.stats().wal_pages < 10, "{:?}", counters.stats());
        // Drain the wake-up left pending before the restart.
        while asked.try_recv().is_ok() {}
        fill_to(&conn, &counters, WAKE_PAGES - 10);
        assert!(asked.try_recv().is_err(), "woken below the wake size");
        fill_to(&conn, &counters, WAKE_PAGES + 10);
        assert!(asked.try_recv().is_ok(), "not woken after the restart");
        fill_to(&conn, &counters, INLINE_PAGES - 10);
        assert_eq!(counters.stats().inline, 1, "{:?}", counters.stats());
    }
}
