//! The connection rules shared by mex's SQLite stores: the Flight Recorder
//! (`mex-recorder`), the artifact store's index (`mex-artifacts`) and the
//! action cache (`mex-runtime`).
//!
//! This crate owns only rules every one of those files needs the same way;
//! each store keeps its own schema, durability settings and error types.

use std::time::{Duration, Instant};

use rusqlite::Connection;

/// Switch `conn` to WAL mode, waiting at most `wait` for another
/// connection's lock; returns the journal mode SQLite reports (the caller
/// checks it is `wal`).
///
/// Switching a file that is still in rollback mode (a new, empty one) needs
/// its write lock, and SQLite refuses at once, without waiting in the busy
/// handler, when another connection holds that lock: the switch first takes
/// a read lock, and a connection holding a read lock never waits for a
/// write lock (two could wait for each other). That is what happens when
/// two processes open the same new file at the same instant: the one that
/// loses would fail with "database is locked" while the other was merely
/// creating it. So the switch is retried, with a pause growing from 1 ms to
/// 50 ms, until `wait` has passed; the last error is returned then.
pub fn switch_to_wal(conn: &Connection, wait: Duration) -> rusqlite::Result<String> {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)) {
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            answer => return answer,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    /// The loser of two connections creating one file waits for the other's
    /// write lock instead of failing, and fails (busy) once `wait` is over.
    #[test]
    fn the_switch_waits_for_a_connection_holding_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let holder = Connection::open(&path).unwrap();
        holder
            .execute_batch("BEGIN IMMEDIATE; CREATE TABLE t (x);")
            .unwrap();
        let other = Connection::open(&path).unwrap();
        // Without the retry, the first attempt's answer: busy at once.
        let refused = other
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .unwrap_err();
        assert_eq!(
            refused.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy)
        );
        let gave_up = switch_to_wal(&other, Duration::ZERO).unwrap_err();
        assert_eq!(
            gave_up.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy)
        );
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            holder.execute_batch("COMMIT;").unwrap();
        });
        let mode = switch_to_wal(&other, Duration::from_secs(60)).unwrap();
        releaser.join().unwrap();
        assert_eq!(mode, "wal");
    }
}
