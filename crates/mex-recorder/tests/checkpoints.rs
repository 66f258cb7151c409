//! The checkpointer under attack: SIGKILL while the WAL is being copied,
//! several processes (each with its own checkpointer) on one log, a reader
//! holding an old snapshot, and shutdown leaving no WAL behind.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use mex_recorder::{EventDraft, EventKind, EventQuery, FlightRecorder, SqliteRecorder};
use serde_json::json;
use uuid::Uuid;

/// The WAL size (pages) at which a commit checkpoints itself (the crate's
/// documented backstop).
const INLINE_PAGES: u64 = 8000;
/// Growth (pages) after which the checkpointer thread is woken.
const WAKE_PAGES: u64 = 1000;

const CRASH_CHILD_ENV: &str = "MEX_RECORDER_CKPT_CRASH_DIR";
const MULTI_CHILD_ENV: &str = "MEX_RECORDER_CKPT_MULTI_DIR";
const CLOSE_CHILD_ENV: &str = "MEX_RECORDER_CKPT_CLOSE_DIR";
const THREADS: usize = 4;
const BATCH: u64 = 4;
const PAD: usize = 3000;
/// Batches each thread of each process appends: together well past the
/// inline size.
const MULTI_BATCHES: u64 = 400;

fn draft(op: Uuid, t: usize, i: u64) -> EventDraft {
    EventDraft::new(EventKind::OpReceived)
        .with_op_id(op)
        .with_payload(json!({"thread": t, "i": i, "pad": "p".repeat(PAD)}))
}

/// Append batches from several threads, `batches` per thread (or forever);
/// with `print`, write `ACK <seq> <hash> <wal_pages> <background> <inline>`
/// after each acknowledged event.
fn append_from_threads(rec: &Arc<SqliteRecorder>, batches: Option<u64>, print: bool) -> u64 {
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let rec = Arc::clone(rec);
            std::thread::spawn(move || {
                let op = Uuid::new_v4();
                let mut n = 0;
                for b in 0u64..batches.unwrap_or(u64::MAX) {
                    let drafts = (0..BATCH).map(|k| draft(op, t, b * BATCH + k)).collect();
                    let events = rec.append_batch(drafts).unwrap();
                    n += events.len() as u64;
                    if print {
                        let s = rec.checkpoint_stats();
                        let mut out = std::io::stdout().lock();
                        for e in &events {
                            writeln!(
                                out,
                                "ACK {} {} {} {} {}",
                                e.seq, e.hash, s.wal_pages, s.background, s.inline
                            )
                            .unwrap();
                        }
                        out.flush().unwrap();
                    }
                }
                n
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).sum()
}

/// Every stored event once: seqs 1..=n in order, no (op, i) twice.
fn assert_no_duplicates(rec: &SqliteRecorder, context: &str) -> Vec<mex_recorder::Event> {
    let events = rec.events(&EventQuery::all()).unwrap();
    let mut seen = HashSet::new();
    for (k, e) in events.iter().enumerate() {
        assert_eq!(e.seq, k as u64 + 1, "{context}: seqs not dense");
        let key = (e.op_id, e.payload["i"].as_u64());
        assert!(seen.insert(key), "{context}: event {key:?} stored twice");
    }
    events
}

/// A child process killed (SIGKILL) and reaped when dropped, also when the
/// test fails first.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn random_below(n: u64) -> u64 {
    let r = u64::from_le_bytes(Uuid::new_v4().as_bytes()[..8].try_into().unwrap());
    r % n
}

fn wal_len(db: &Path) -> Option<u64> {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).ok().map(|m| m.len())
}

/// Run by the harness itself (no env var), a child's workload in a few
/// appends: the log must then verify and hold them all, once each.
fn child_workload_in_small() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(SqliteRecorder::open(dir.path()).unwrap());
    let n = append_from_threads(&rec, Some(5), false);
    assert_eq!(n, THREADS as u64 * 5 * BATCH);
    assert!(rec.verify().unwrap().is_ok());
    assert_eq!(assert_no_duplicates(&rec, "small").len() as u64, n);
    let path = rec.path().to_owned();
    drop(Arc::into_inner(rec).unwrap());
    assert!(wal_len(&path).is_none_or(|l| l == 0));
}

/// In the child (env var set): append forever, printing acknowledgements.
#[test]
fn checkpoint_crash_child() {
    let Ok(dir) = std::env::var(CRASH_CHILD_ENV) else {
        child_workload_in_small();
        return;
    };
    let rec = Arc::new(SqliteRecorder::open(&dir).unwrap());
    append_from_threads(&rec, None, true);
}

/// SIGKILL lands while the WAL is past a wake-up size (the checkpointer
/// thread copying) or at the inline size (the commit copying): after each
/// kill the log verifies and holds every acknowledged event, each once.
#[test]
fn acknowledged_events_survive_sigkill_during_checkpoints() {
    if std::env::var(CRASH_CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<(u64, String)> = Vec::new();
    let mut seen_checkpoints = 0;
    let rounds = 6;
    for round in 0..rounds {
        // Kill once the WAL has reached a random size between the first
        // wake-up and the inline size, or has started again (the thread
        // caught up, or a commit checkpointed inline: it may never be seen
        // at the size drawn). The last round waits for the inline one.
        let kill_at = if round + 1 == rounds {
            u64::MAX
        } else {
            WAKE_PAGES + random_below(INLINE_PAGES - WAKE_PAGES)
        };
        let mut child = KillOnDrop(
            Command::new(&exe)
                .args([
                    "checkpoint_crash_child",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CRASH_CHILD_ENV, dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
        let mut reached = None;
        let mut this_round = 0u64;
        let mut largest = 0u64;
        for line in lines.by_ref() {
            let line = line.unwrap();
            // The first acknowledgement shares its line with the harness's
            // `test ... ` prefix.
            let Some(rest) = line.split("ACK ").nth(1) else {
                continue;
            };
            this_round += 1;
            assert!(
                this_round < 100_000,
                "round {round}: the WAL neither reached {kill_at} pages nor started again"
            );
            let f: Vec<&str> = rest.split(' ').collect();
            acked.push((f[0].parse().unwrap(), f[1].to_owned()));
            let wal: u64 = f[2].parse().unwrap();
            let inline: u64 = f[4].parse().unwrap();
            let checkpoints: u64 = f[3].parse::<u64>().unwrap() + inline;
            // Acknowledgements from several threads arrive slightly out of
            // order: a drop by a whole wake-up is a new start.
            let started_again = wal + WAKE_PAGES < largest;
            largest = largest.max(wal);
            if wal >= kill_at || inline > 0 || (started_again && kill_at != u64::MAX) {
                reached = Some((wal, checkpoints));
                break;
            }
        }
        let (wal, checkpoints) =
            reached.unwrap_or_else(|| panic!("round {round}: the child stopped early"));
        seen_checkpoints += checkpoints;
        writeln!(
            std::io::stderr(),
            "round {round}: killed at WAL {wal} pages, {checkpoints} checkpoints run"
        )
        .unwrap();
        // A few more commits land (or not) before the kill.
        std::thread::sleep(Duration::from_millis(random_below(20)));
        drop(child);
        for line in lines {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("ACK ").nth(1) {
                let f: Vec<&str> = rest.split(' ').collect();
                acked.push((f[0].parse().unwrap(), f[1].to_owned()));
            }
        }

        let rec = SqliteRecorder::open(dir.path()).unwrap();
        let report = rec.verify().unwrap();
        assert!(
            report.is_ok(),
            "round {round} (WAL {wal} pages): {report:?}"
        );
        let events = assert_no_duplicates(&rec, &format!("round {round}"));
        for (seq, hash) in &acked {
            let e = events
                .get(usize::try_from(*seq - 1).unwrap())
                .unwrap_or_else(|| {
                    panic!("round {round} (WAL {wal} pages): acknowledged seq {seq} is missing")
                });
            assert_eq!(&e.hash.to_hex(), hash, "round {round}: seq {seq} changed");
        }
    }
    // The kills landed while checkpoints were being run, not before any.
    assert!(seen_checkpoints > 0, "no checkpoint ran before any kill");
}

/// In the child (env var set): append a fixed number of batches.
#[test]
fn multi_child() {
    let Ok(dir) = std::env::var(MULTI_CHILD_ENV) else {
        child_workload_in_small();
        return;
    };
    let rec = Arc::new(SqliteRecorder::open(&dir).unwrap());
    let n = append_from_threads(&rec, Some(MULTI_BATCHES), false);
    let stats = rec.checkpoint_stats();
    assert_eq!(stats.last_error, None, "{stats:?}");
    println!("APPENDED {n}");
}

/// Three processes, each with its own writer and checkpointer, append to
/// one log at once, well past several wake-ups and the inline size: every
/// event is there once, the chain verifies, and the last close leaves no
/// WAL.
#[test]
fn several_processes_with_checkpointers_share_one_log() {
    if std::env::var(MULTI_CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(&exe)
                .args(["multi_child", "--exact", "--nocapture", "--test-threads=1"])
                .env(MULTI_CHILD_ENV, dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut total = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        // A child's panic message is on its stderr: shown with the failure.
        assert!(
            out.status.success(),
            "a child failed: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let n: u64 = text
            .lines()
            .find_map(|l| l.split("APPENDED ").nth(1))
            .unwrap()
            .parse()
            .unwrap();
        total += n;
    }
    assert_eq!(total, 3 * THREADS as u64 * MULTI_BATCHES * BATCH);
    let path = {
        let rec = SqliteRecorder::open(dir.path()).unwrap();
        assert!(rec.verify().unwrap().is_ok());
        let events = assert_no_duplicates(&rec, "three processes");
        assert_eq!(events.len() as u64, total);
        rec.path().to_owned()
    };
    assert!(
        wal_len(&path).is_none_or(|l| l == 0),
        "the last close left a WAL of {:?} bytes",
        wal_len(&path)
    );
}

/// A reader holding an old snapshot keeps the WAL growing past the inline
/// size; once it ends, the WAL starts again at the next commits, and its
/// file is cut back instead of keeping the size the reader forced.
#[test]
fn the_wal_starts_again_and_shrinks_after_a_long_reader() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(SqliteRecorder::open(dir.path()).unwrap());
    let path = rec.path().to_owned();
    let op = Uuid::new_v4();
    let mut i = 0;
    let mut batch = || {
        let drafts = (0..16)
            .map(|_| {
                i += 1;
                draft(op, 0, i)
            })
            .collect();
        rec.append_batch(drafts).unwrap();
        rec.checkpoint_stats()
    };
    batch();
    let reader = rusqlite::Connection::open(&path).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    // Past the inline size: no checkpoint can finish under the reader.
    let mut stats = batch();
    while stats.wal_pages < INLINE_PAGES + 2 * WAKE_PAGES {
        stats = batch();
    }
    let grown = wal_len(&path).unwrap();
    assert!(grown > INLINE_PAGES * 4096, "{grown}");
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    // The next commit copies everything; the one after starts the WAL
    // again (a few more allowed; a WAL that keeps growing fails).
    let mut restarted = false;
    for _ in 0..10 {
        let next = batch();
        if next.wal_pages < stats.wal_pages {
            restarted = true;
            break;
        }
        stats = next;
    }
    assert!(restarted, "the WAL never started again: {stats:?}");
    let after = wal_len(&path).unwrap();
    assert!(
        after <= (INLINE_PAGES + WAKE_PAGES) * 4096,
        "the WAL file kept the {grown} bytes the reader forced: {after} bytes"
    );
    assert_eq!(rec.checkpoint_stats().last_error, None);
}

/// Dropping a recorder with a checkpoint pending or running (the WAL just
/// past a wake-up) joins both threads, leaves no WAL, and the log opens
/// again at once in this process.
#[test]
fn drop_mid_checkpoint_leaves_no_wal_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3u64 {
        let rec = Arc::new(SqliteRecorder::open(dir.path()).unwrap());
        let path = rec.path().to_owned();
        let op = Uuid::new_v4();
        let mut i = 0;
        // Past the first (and second) wake-up, then drop at once.
        while rec.checkpoint_stats().wal_pages < WAKE_PAGES * (round + 1) + 5 {
            let drafts = (0..16)
                .map(|_| {
                    i += 1;
                    draft(op, 0, i)
                })
                .collect();
            rec.append_batch(drafts).unwrap();
        }
        drop(Arc::into_inner(rec).unwrap());
        assert!(
            wal_len(&path).is_none_or(|l| l == 0),
            "round {round}: the close left a WAL of {:?} bytes",
            wal_len(&path)
        );
        let rec = SqliteRecorder::open(dir.path()).unwrap();
        assert!(rec.verify().unwrap().is_ok(), "round {round}");
        assert_no_duplicates(&rec, &format!("round {round}"));
    }
}

/// In the child (env var set): append, print every acknowledgement, then
/// say `CLOSING` and drop the recorder (whose last connection checkpoints
/// the whole WAL and deletes it), then say `CLOSED`.
#[test]
fn close_child() {
    let Ok(dir) = std::env::var(CLOSE_CHILD_ENV) else {
        child_workload_in_small();
        return;
    };
    let rec = Arc::new(SqliteRecorder::open(&dir).unwrap());
    append_from_threads(&rec, Some(60), true);
    println!("CLOSING");
    drop(Arc::into_inner(rec).unwrap());
    println!("CLOSED");
}

/// SIGKILL while a recorder closes (its checkpointer's connection copying
/// the WAL into the main file as the last connection): every acknowledged
/// event is there once and the chain verifies.
#[test]
fn acknowledged_events_survive_sigkill_while_closing() {
    if std::env::var(CLOSE_CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<(u64, String)> = Vec::new();
    let mut killed_closing = 0;
    for round in 0..6 {
        let mut child = KillOnDrop(
            Command::new(&exe)
                .args(["close_child", "--exact", "--nocapture", "--test-threads=1"])
                .env(CLOSE_CHILD_ENV, dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
        let mut closing = false;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.contains("CLOSING") {
                closing = true;
                break;
            }
            if let Some(rest) = line.split("ACK ").nth(1) {
                let f: Vec<&str> = rest.split(' ').collect();
                acked.push((f[0].parse().unwrap(), f[1].to_owned()));
            }
        }
        assert!(closing, "round {round}: the child never closed");
        std::thread::sleep(Duration::from_millis(random_below(5)));
        drop(child);
        let closed = lines.any(|l| l.is_ok_and(|l| l.contains("CLOSED")));
        if !closed {
            killed_closing += 1;
        }
        let rec = SqliteRecorder::open(dir.path()).unwrap();
        let report = rec.verify().unwrap();
        assert!(report.is_ok(), "round {round}: {report:?}");
        let events = assert_no_duplicates(&rec, &format!("round {round}"));
        for (seq, hash) in &acked {
            let e = events
                .get(usize::try_from(*seq - 1).unwrap())
                .unwrap_or_else(|| panic!("round {round}: acknowledged seq {seq} is missing"));
            assert_eq!(&e.hash.to_hex(), hash, "round {round}: seq {seq} changed");
        }
    }
    writeln!(
        std::io::stderr(),
        "kills that landed before the close finished: {killed_closing} of 6"
    )
    .unwrap();
}
