//! `dba.query_sql`: one read-only statement over a dataset artifact.
//!
//! Fences, in order: the dataset is opened `SQLITE_OPEN_READ_ONLY` in
//! defensive mode with an untrusted schema and a page check; limits
//! (`sqlite3_limit`: value length, SQL length, columns, expression depth,
//! compound selects, VDBE ops, attached databases 0, ...); an authorizer
//! that allows only `SELECT`, reads, functions (not `load_extension`) and
//! recursive CTEs (and the read-only `PRAGMA data_version` FTS5 issues), so writes, DDL, `ATTACH`, `PRAGMA` and transactions fail
//! to prepare; exactly one statement, and SQLite must agree it is read-only;
//! a progress handler that interrupts past the time allowance (80% of the
//! budget) or 10^9 VM steps; at most `max_rows` rows (default 10,000) and
//! the output budget in bytes. Extension loading is never enabled.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use mex_engine_sdk::{Fail, Request};
use rusqlite::Connection;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use serde_json::Value as J;

use crate::canon::{self, Value};
use crate::fail;

/// Default and largest `max_rows`.
pub const DEFAULT_MAX_ROWS: u64 = 10_000;
/// The most bytes a result may have (its canonical CSV size).
pub const MAX_RESULT_BYTES: u64 = 64 << 20;
/// The most VM steps a statement may take.
pub const MAX_STEPS: u64 = 1_000_000_000;
const STEP_GRANULARITY: i32 = 10_000;

fn authorize(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Select | AuthAction::Read { .. } | AuthAction::Recursive => {
            Authorization::Allow
        }
        // FTS5 reads its shadow tables' data version this way; no argument,
        // nothing written.
        AuthAction::Pragma {
            pragma_name,
            pragma_value: None,
        } if pragma_name.eq_ignore_ascii_case("data_version") => Authorization::Allow,
        AuthAction::Function { function_name }
            if !function_name.eq_ignore_ascii_case("load_extension") =>
        {
            Authorization::Allow
        }
        _ => Authorization::Deny,
    }
}

pub(crate) fn query_sql(req: &mut Request) -> Result<(), Fail> {
    let sql_err = |m: String| fail("DBA_SQL_ERROR", m);
    let sql_path = crate::input(req, "sql_ref")?;
    let sql = std::fs::read_to_string(&sql_path)
        .map_err(|e| sql_err(format!("params.sql_ref: not UTF-8 text ({e})")))?;
    let output = req
        .param_str("output")
        .map_err(|f| sql_err(f.message))?
        .to_owned();
    let max_rows = req
        .params()
        .get("max_rows")
        .and_then(J::as_u64)
        .unwrap_or(DEFAULT_MAX_ROWS);
    // The output budget itself is the runtime's to enforce (the sandbox's
    // file-size limit, then RUNTIME.OUTPUT_BUDGET_EXCEEDED); this cap bounds
    // the engine's memory whatever the budget.
    let max_bytes = MAX_RESULT_BYTES;
    let order_by = match req.params().get("order_by_ref").and_then(J::as_str) {
        None => None,
        Some(_) => {
            let p = crate::input(req, "order_by_ref")?;
            let cols: Vec<String> = std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .filter(|c: &Vec<String>| !c.is_empty() && c.len() <= 32)
                .ok_or_else(|| {
                    sql_err("params.order_by_ref: expected a JSON array of 1 to 32 column names, e.g. [\"id\"]".into())
                })?;
            Some(cols)
        }
    };
    let conn = match req.params().get("dataset_ref").and_then(J::as_str) {
        Some(_) => crate::open_dataset(&crate::input(req, "dataset_ref")?, "dataset_ref")?,
        None => {
            let c =
                Connection::open_in_memory().map_err(|e| fail("DBA_IO_ERROR", e.to_string()))?;
            crate::harden(&c).map_err(|e| fail("DBA_IO_ERROR", e.to_string()))?;
            c
        }
    };
    let (columns, rows) = run(
        conn,
        &sql,
        order_by.as_deref(),
        max_rows,
        max_bytes,
        crate::time_allowance(req),
    )?;
    req.environment("dba.rows", &rows.len().to_string());
    match output.as_str() {
        "json" => req.write_output(
            "result.json",
            "artifact.dataset",
            "application/json",
            &canon::to_json(&columns, &rows),
        ),
        _ => req.write_output(
            "result.csv",
            "artifact.dataset",
            "text/csv",
            canon::to_csv(&columns, &rows).as_bytes(),
        ),
    }
    .map_err(|f| fail("DBA_IO_ERROR", f.message))
}

/// Run one read-only statement under every fence; the columns and rows.
pub fn run(
    mut conn: Connection,
    sql: &str,
    order_by: Option<&[String]>,
    max_rows: u64,
    max_bytes: u64,
    allowance: std::time::Duration,
) -> Result<(Vec<String>, Vec<Vec<Value>>), Fail> {
    let sql_err = |m: String| fail("DBA_SQL_ERROR", m);
    let trimmed = sql.trim().trim_end_matches(';').trim_end();
    if trimmed.is_empty() {
        return Err(sql_err(
            "params.sql_ref: the SQL is empty; give one SELECT statement".into(),
        ));
    }
    let text = match order_by {
        Some(cols) => format!(
            "SELECT * FROM ({trimmed}\n) ORDER BY {}",
            cols.iter()
                .map(|c| crate::ident(c))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => trimmed.to_owned(),
    };
    conn.authorizer(Some(authorize))
        .map_err(|e| fail("DBA_IO_ERROR", e.to_string()))?;
    let started = Instant::now();
    let steps = Arc::new(AtomicU64::new(0));
    let stopped = Arc::new(AtomicBool::new(false));
    {
        let (steps, stopped) = (steps.clone(), stopped.clone());
        conn.progress_handler(
            STEP_GRANULARITY,
            Some(move || {
                let n = steps.fetch_add(STEP_GRANULARITY as u64, Ordering::Relaxed);
                let stop = n >= MAX_STEPS || started.elapsed() >= allowance;
                if stop {
                    stopped.store(true, Ordering::Relaxed);
                }
                stop
            }),
        )
        .map_err(|e| fail("DBA_IO_ERROR", e.to_string()))?;
    }
    let interrupted = |e: rusqlite::Error| {
        if stopped.load(Ordering::Relaxed) {
            fail(
                "DBA_LIMIT_EXCEEDED",
                format!(
                    "the query was stopped after {} ms and about {} steps (limits: {} ms, {MAX_STEPS} steps); add a LIMIT or narrow it",
                    started.elapsed().as_millis(),
                    steps.load(Ordering::Relaxed),
                    allowance.as_millis()
                ),
            )
        } else {
            sql_err(format!("the query failed: {e}"))
        }
    };
    let mut stmt = conn.prepare(&text).map_err(|e| {
        sql_err(format!(
            "params.sql_ref: {e}; give one read-only SELECT (writes, ATTACH, PRAGMA and extension loading are refused)"
        ))
    })?;
    if !stmt.readonly() {
        return Err(sql_err(
            "params.sql_ref: the statement is not read-only; only SELECT is allowed".into(),
        ));
    }
    let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    let mut rows = Vec::new();
    let mut bytes: u64 = columns.iter().map(|c| c.len() as u64 + 1).sum();
    let mut q = stmt.query([]).map_err(interrupted)?;
    while let Some(row) = q.next().map_err(interrupted)? {
        if rows.len() as u64 >= max_rows {
            return Err(fail(
                "DBA_LIMIT_EXCEEDED",
                format!(
                    "the query returns more than max_rows = {max_rows} rows; add a LIMIT, aggregate, or raise max_rows"
                ),
            ));
        }
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            let v = Value::from(row.get_ref(i).map_err(interrupted)?);
            bytes += canon::csv_field(&v).len() as u64 + 1;
            values.push(v);
        }
        if bytes > max_bytes {
            return Err(fail(
                "DBA_LIMIT_EXCEEDED",
                format!(
                    "the result is past engine.dba's limit of {max_bytes} bytes; add a LIMIT or select fewer columns"
                ),
            ));
        }
        rows.push(values);
    }
    Ok((columns, rows))
}
