//! # mex-engine-dba: `engine.dba`, the local warehouse (D3)
//!
//! Owns three operations over untrusted data, run by `mex` as a sandboxed
//! `host_process` engine (never inside the mex process):
//!
//! * `dba.load_dataset`: CSV or JSON Lines into a SQLite database artifact
//!   (one table, declared or inferred column types). The bytes are
//!   deterministic: the database is built in a scratch file with a fixed page
//!   size, no journal and no WAL, then written once by `VACUUM INTO`.
//! * `dba.query_sql`: one read-only SQL statement over a dataset artifact
//!   (or none), opened with `SQLITE_OPEN_READ_ONLY`, defensive mode and an
//!   untrusted schema, an authorizer that allows only reads, selects,
//!   functions and recursive CTEs, no extension loading, `sqlite3_limit`s,
//!   and a progress handler bounding steps and time; at most `max_rows` rows
//!   and the run's output budget in bytes; results in the canonical CSV or
//!   JSON form of `docs/engines/dba.md`.
//! * `dba.build_search_index`: an FTS5 index (a SQLite database artifact)
//!   over text columns of a dataset.
//!
//! Does not own: confinement, budgets, recording (mex-engine-process and the
//! runtime). Failure codes: `DBA_LOAD_ERROR`, `DBA_SQL_ERROR`,
//! `DBA_IO_ERROR`, `DBA_LIMIT_EXCEEDED` (see the registry).

mod canon;
mod load;
mod query;
mod search;

use std::path::{Path, PathBuf};

use mex_engine_sdk::{Fail, Request};
use rusqlite::{Connection, OpenFlags};

pub use canon::{Value, to_csv, to_json};
pub use query::run as run_query;

/// The engine this crate implements.
pub const ENGINE_ID: &str = "engine.dba";

/// The media type of dataset and index artifacts.
pub const SQLITE_MEDIA_TYPE: &str = "application/vnd.sqlite3";

/// The largest input file read (64 MiB): past it, `DBA_LIMIT_EXCEEDED`
/// before any parsing, so a huge field or a huge file costs nothing.
pub const MAX_INPUT_BYTES: u64 = 64 << 20;

/// The largest single field of a CSV or JSON Lines input (1 MiB).
pub const MAX_FIELD_BYTES: usize = 1 << 20;

/// The most columns of a table (SQLite's own default is 2000).
pub const MAX_COLUMNS: usize = 256;

/// The page size of every database artifact.
pub const PAGE_SIZE: u32 = 4096;

/// The engine's entry point: dispatch on the operation.
pub fn handle(req: &mut Request) -> Result<(), Fail> {
    match req.operation() {
        "dba.load_dataset" => load::load_dataset(req),
        "dba.query_sql" => query::query_sql(req),
        "dba.build_search_index" => search::build_search_index(req),
        other => Err(Fail::new(
            "DBA_SQL_ERROR",
            format!(
                "{other} is not an operation of engine.dba (load_dataset, query_sql, build_search_index)"
            ),
        )),
    }
}

pub(crate) fn fail(code: &str, message: impl Into<String>) -> Fail {
    Fail::new(code, message)
}

/// The path of the input a `*_ref` param names, refused past
/// [`MAX_INPUT_BYTES`].
pub(crate) fn input(req: &Request, param: &str) -> Result<PathBuf, Fail> {
    let path = req
        .input_path(param)
        .map_err(|f| fail("DBA_IO_ERROR", format!("params.{param}: {}", f.message)))?;
    let size = std::fs::metadata(&path)
        .map_err(|e| fail("DBA_IO_ERROR", format!("params.{param}: {e}")))?
        .len();
    if size > MAX_INPUT_BYTES {
        return Err(fail(
            "DBA_LIMIT_EXCEEDED",
            format!(
                "params.{param}: the input is {size} bytes, past engine.dba's limit of {MAX_INPUT_BYTES}; split it"
            ),
        ));
    }
    Ok(path)
}

/// The media type of the input a `*_ref` param names.
pub(crate) fn media_type(req: &Request, param: &str) -> Option<String> {
    let id = req.params().get(param)?.as_str()?;
    req.doc
        .inputs
        .iter()
        .find(|i| i.artifact_id.to_string() == id)
        .and_then(|i| i.media_type.clone())
}

/// Open a dataset artifact for reading only, hardened against a hostile
/// file: read-only, no mutex games, defensive, untrusted schema, and a
/// quick integrity check of the header and pages.
pub(crate) fn open_dataset(path: &Path, param: &str) -> Result<Connection, Fail> {
    let io = |e: rusqlite::Error| {
        fail(
            "DBA_IO_ERROR",
            format!(
                "params.{param}: not a readable SQLite dataset ({e}); give an artifact made by dba.load_dataset"
            ),
        )
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(io)?;
    harden(&conn).map_err(io)?;
    let ok: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(io)?;
    if ok != "ok" {
        return Err(fail(
            "DBA_IO_ERROR",
            format!(
                "params.{param}: the database is damaged ({}); give an artifact made by dba.load_dataset",
                ok.chars().take(200).collect::<String>()
            ),
        ));
    }
    Ok(conn)
}

/// Settings for every connection: defensive mode, no trusted schema, no
/// triggers or views from the file run with privileges, tight limits.
pub(crate) fn harden(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::config::DbConfig;
    use rusqlite::limits::Limit;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)?;
    for (limit, value) in [
        (Limit::SQLITE_LIMIT_LENGTH, 16 << 20),
        (Limit::SQLITE_LIMIT_SQL_LENGTH, 100_000),
        (Limit::SQLITE_LIMIT_COLUMN, MAX_COLUMNS as i32),
        (Limit::SQLITE_LIMIT_EXPR_DEPTH, 100),
        (Limit::SQLITE_LIMIT_COMPOUND_SELECT, 50),
        (Limit::SQLITE_LIMIT_VDBE_OP, 250_000),
        (Limit::SQLITE_LIMIT_FUNCTION_ARG, 32),
        (Limit::SQLITE_LIMIT_ATTACHED, 0),
        (Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 1000),
        (Limit::SQLITE_LIMIT_VARIABLE_NUMBER, 100),
        (Limit::SQLITE_LIMIT_TRIGGER_DEPTH, 10),
    ] {
        conn.set_limit(limit, value)?;
    }
    Ok(())
}

/// Quote an SQL identifier.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Write a scratch database as a deterministic artifact: `VACUUM INTO` a
/// fresh file (fixed page size, no journal, the bundled SQLite), read its
/// bytes, remove both scratch files, claim the bytes as `file`.
pub(crate) fn emit_database(
    req: &mut Request,
    conn: Connection,
    scratch: &Path,
    file: &str,
    kind: &str,
) -> Result<(), Fail> {
    let io = |e: String| fail("DBA_IO_ERROR", format!("writing the database: {e}"));
    let packed = scratch.with_extension("packed");
    let _ = std::fs::remove_file(&packed);
    // VACUUM INTO attaches its target internally; this connection runs the
    // engine's own statements only.
    conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 1)
        .map_err(|e| io(e.to_string()))?;
    conn.execute(
        "VACUUM INTO ?1",
        [packed.to_str().ok_or_else(|| io("path".into()))?],
    )
    .map_err(|e| io(e.to_string()))?;
    drop(conn);
    let bytes = std::fs::read(&packed).map_err(|e| io(e.to_string()))?;
    let _ = std::fs::remove_file(&packed);
    let _ = std::fs::remove_file(scratch);
    req.write_output(file, kind, SQLITE_MEDIA_TYPE, &bytes)
        .map_err(|f| fail("DBA_IO_ERROR", f.message))
}

/// A fresh scratch database in the output directory, set up for
/// deterministic bytes.
pub(crate) fn scratch_database(req: &Request, name: &str) -> Result<(Connection, PathBuf), Fail> {
    let path = PathBuf::from(&req.doc.output_dir).join(name);
    let _ = std::fs::remove_file(&path);
    let io = |e: rusqlite::Error| fail("DBA_IO_ERROR", format!("scratch database: {e}"));
    let conn = Connection::open(&path).map_err(io)?;
    conn.execute_batch(&format!(
        "PRAGMA page_size = {PAGE_SIZE}; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA encoding = 'UTF-8'; PRAGMA auto_vacuum = NONE;"
    ))
    .map_err(io)?;
    harden(&conn).map_err(io)?;
    Ok((conn, path))
}

/// The time the engine gives a statement: 80% of the smaller of the wall
/// and CPU budgets (the sandbox kills at 100%), at most 60 s.
pub(crate) fn time_allowance(req: &Request) -> std::time::Duration {
    let b = &req.doc.budget;
    let ms = [b.wall_time_ms, b.cpu_time_ms]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(10_000)
        .min(60_000);
    std::time::Duration::from_millis(ms.saturating_mul(8) / 10)
}
