//! Bad files and places: clear errors naming the file, never a panic, never
//! a silently empty log. And schema migrations from the previous version.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

mod common;

use std::path::Path;

use mex_envelope::ResultStatus;
use mex_recorder::{
    DB_FILE_NAME, EventDraft, EventKind, EventQuery, FlightRecorder, MemoryRecorder, ProblemFilter,
    ProblemState, RecorderError, SCHEMA_VERSION, SqliteRecorder,
};
use rusqlite::{Connection, params};
use serde_json::json;
use uuid::Uuid;

fn assert_names_path(err: &RecorderError, path: &Path) {
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()),
        "error should name {}: {text}",
        path.display()
    );
}

#[test]
fn garbage_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE_NAME);
    std::fs::write(&path, vec![0xA5u8; 8192]).unwrap();
    let err = SqliteRecorder::open(dir.path()).unwrap_err();
    assert!(matches!(err, RecorderError::Corrupt { .. }), "{err}");
    assert_names_path(&err, &path);
    assert!(err.to_string().contains("move the file aside"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        vec![0xA5u8; 8192],
        "the evidence is left untouched"
    );
}

#[test]
fn damaged_sqlite_pages_are_an_error_not_an_empty_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let rec = SqliteRecorder::open(dir.path()).unwrap();
        common::append_bulk(&rec, 2000);
    } // closing checkpoints the WAL into the main file
    let path = dir.path().join(DB_FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 16 * 4096);
    // Scribble over the middle pages (b-tree pages of the events table).
    for b in &mut bytes[4096 * 3..4096 * 12] {
        *b = 0xFF;
    }
    std::fs::write(&path, &bytes).unwrap();
    let outcome = SqliteRecorder::open(dir.path()).and_then(|rec| {
        let report = rec.verify()?;
        let events = rec.events(&EventQuery::all())?;
        Ok((report, events.len()))
    });
    match outcome {
        Err(e) => {
            assert!(
                matches!(
                    e,
                    RecorderError::Corrupt { .. } | RecorderError::CorruptEvent { .. }
                ),
                "{e}"
            );
            assert_names_path(&e, &path);
        }
        Ok((report, n)) => panic!("damaged file read as a log of {n} events, report {report:?}"),
    }
}

#[test]
fn unrelated_sqlite_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE_NAME);
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE customers (id INTEGER);")
        .unwrap();
    let err = SqliteRecorder::open(dir.path()).unwrap_err();
    assert!(matches!(err, RecorderError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains("some other SQLite database"),
        "{err}"
    );
}

#[test]
fn right_version_but_missing_tables_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE_NAME);
    let c = Connection::open(&path).unwrap();
    c.execute_batch(&format!(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY); PRAGMA user_version = {SCHEMA_VERSION};"
    ))
    .unwrap();
    drop(c);
    let err = SqliteRecorder::open(dir.path()).unwrap_err();
    assert!(matches!(err, RecorderError::Corrupt { .. }), "{err}");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let rec = SqliteRecorder::open(dir.path()).unwrap();
        common::append_n(&rec, 3);
    }
    let path = dir.path().join(DB_FILE_NAME);
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99;")
        .unwrap();
    let err = SqliteRecorder::open(dir.path()).unwrap_err();
    match &err {
        RecorderError::SchemaTooNew {
            found, supported, ..
        } => {
            assert_eq!(*found, 99);
            assert_eq!(*supported, SCHEMA_VERSION);
        }
        other => panic!("expected SchemaTooNew, got {other}"),
    }
    assert_names_path(&err, &path);
    assert!(err.to_string().contains("upgrade mex"), "{err}");
    assert_eq!(err.code(), "RECORDER.SCHEMA_TOO_NEW");
}

/// A directory this process cannot create files in. As root, permission
/// bits do not stop anything, so a directory on a read-only pseudo
/// filesystem is used as well.
#[test]
fn read_only_directory_is_a_clear_error() {
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    let tmp = tempfile::tempdir().unwrap();
    let locked = tmp.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(locked.join("probe"), b"x").is_err() {
        dirs.push(locked.clone());
    }
    let proc_dir = Path::new("/proc/self");
    if proc_dir.is_dir() {
        dirs.push(proc_dir.to_owned());
    }
    assert!(
        !dirs.is_empty(),
        "no read-only directory available to test with"
    );
    for dir in dirs {
        let err = SqliteRecorder::open(&dir).unwrap_err();
        assert!(matches!(err, RecorderError::Open { .. }), "{err}");
        assert_names_path(&err, &dir.join(DB_FILE_NAME));
        assert!(err.to_string().contains("writable"), "{err}");
    }
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn missing_parent_directory_for_open_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("no/such/dir").join(DB_FILE_NAME);
    let err = SqliteRecorder::open_file(&path).unwrap_err();
    assert!(matches!(err, RecorderError::Open { .. }), "{err}");
    assert_names_path(&err, &path);
}

/// Schema version 1, frozen here as it shipped: no rule, capability or
/// artifact columns, no time index, no ts_ms in the checkpoint, problems
/// without open/resolved state.
const V1_SCHEMA: &str = "
CREATE TABLE events (
    seq INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, kind TEXT NOT NULL, op_id TEXT,
    engine_id TEXT, operation TEXT, gate TEXT, decision TEXT, status TEXT, code TEXT,
    message TEXT, payload TEXT, prev_hash BLOB NOT NULL, hash BLOB NOT NULL
);
CREATE INDEX events_by_op ON events(op_id);
CREATE INDEX events_by_engine ON events(engine_id);
CREATE INDEX events_by_kind ON events(kind);
CREATE TABLE chain_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash BLOB NOT NULL);
CREATE TABLE problems (
    fingerprint TEXT PRIMARY KEY, code TEXT NOT NULL, gate TEXT, engine_id TEXT, operation TEXT,
    severity TEXT NOT NULL, message TEXT NOT NULL, count INTEGER NOT NULL,
    first_seen_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL, last_op_id TEXT, last_seq INTEGER NOT NULL
);
PRAGMA user_version = 1;
";

#[test]
fn opens_and_migrates_a_version_1_database() {
    // Events as a v1 recorder wrote them (the hashing rule is unchanged;
    // the members v2 added are absent, so omitted from the hash).
    let mem = MemoryRecorder::new();
    let op = Uuid::new_v4();
    mem.append_batch(vec![
        EventDraft::new(EventKind::OpReceived)
            .with_op_id(op)
            .with_engine("engine.physics".parse().unwrap())
            .with_operation("physics.convert_units".parse().unwrap())
            .with_payload(json!({"config_hash": "abc"})),
        EventDraft::op_completed(op, ResultStatus::Failed)
            .with_code("PHYS_UNIT_MISMATCH".parse().unwrap()),
    ])
    .unwrap();
    let old = mem.events(&EventQuery::all()).unwrap();
    let old_problem = mem.problems(&ProblemFilter::default()).unwrap().remove(0);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE_NAME);
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(V1_SCHEMA).unwrap();
        for e in &old {
            c.execute(
                "INSERT INTO events (seq, ts_ms, kind, op_id, engine_id, operation, gate, decision, status, code, message, payload, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, NULL, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    e.seq as i64,
                    e.recorded_at.unix_millis(),
                    e.kind.as_str(),
                    e.op_id.map(|u| u.to_string()),
                    e.engine_id.as_ref().map(|x| x.to_string()),
                    e.operation.as_ref().map(|x| x.to_string()),
                    e.status.map(|s| s.as_str()),
                    e.code.as_ref().map(|x| x.to_string()),
                    e.message,
                    (!e.payload.is_null()).then(|| mex_envelope::canonical::to_string(&e.payload).unwrap()),
                    e.prev_hash.as_bytes().as_slice(),
                    e.hash.as_bytes().as_slice(),
                ],
            )
            .unwrap();
        }
        let last = old.last().unwrap();
        c.execute(
            "INSERT INTO chain_head (id, seq, hash) VALUES (1, ?1, ?2)",
            params![last.seq as i64, last.hash.as_bytes().as_slice()],
        )
        .unwrap();
        let p = &old_problem;
        c.execute(
            "INSERT INTO problems VALUES (?1, ?2, NULL, ?3, ?4, 'error', ?5, 1, ?6, ?6, ?7, ?8)",
            params![
                p.fingerprint,
                p.code.to_string(),
                p.engine_id.as_ref().map(|x| x.to_string()),
                p.operation.as_ref().map(|x| x.to_string()),
                p.message,
                p.first_seen.unix_millis(),
                p.last_op_id.map(|u| u.to_string()),
                p.last_seq as i64
            ],
        )
        .unwrap();
    }

    let rec = SqliteRecorder::open(dir.path()).unwrap();
    let version: i64 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(
        rec.events(&EventQuery::all()).unwrap(),
        old,
        "old events read back unchanged"
    );
    assert!(rec.verify().unwrap().is_ok(), "old hashes still verify");
    let problems = rec.problems(&ProblemFilter::default()).unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].state, ProblemState::Open);
    assert_eq!(problems[0].fingerprint, old_problem.fingerprint);

    // New events continue the old chain, and the problem keeps counting.
    let next = rec
        .append(
            EventDraft::op_completed(op, ResultStatus::Failed)
                .with_code("PHYS_UNIT_MISMATCH".parse().unwrap()),
        )
        .unwrap();
    assert_eq!(next.seq, 3);
    assert_eq!(next.prev_hash, old[1].hash);
    assert!(next.recorded_at >= old[1].recorded_at);
    assert_eq!(rec.problems(&ProblemFilter::default()).unwrap()[0].count, 2);
    assert!(rec.verify().unwrap().is_ok());
    // Reopening a migrated file is a no-op.
    drop(rec);
    let rec = SqliteRecorder::open(dir.path()).unwrap();
    assert_eq!(rec.events(&EventQuery::all()).unwrap().len(), 3);
}

#[test]
fn zero_length_file_is_a_new_log() {
    // In WAL mode the main file may legitimately be empty (content still in
    // the -wal); an empty file with no -wal is a log with no events.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DB_FILE_NAME), b"").unwrap();
    let rec = SqliteRecorder::open(dir.path()).unwrap();
    assert!(rec.verify().unwrap().is_ok());
    assert!(rec.head().unwrap().is_none());
}
