//! `dba.load_dataset`: CSV or JSON Lines into a one-table SQLite dataset.
//!
//! Column types are declared (`columns`: the header must name the same
//! columns in the same order, every value must convert) or inferred: a
//! column whose non-empty values all parse as `i64` is INTEGER, else as a
//! finite `f64` REAL, else TEXT. An empty CSV field and a JSON `null` are
//! NULL. JSON Lines: one object per line; the columns are the keys in order
//! of first appearance; booleans are INTEGER 0/1, arrays and objects TEXT
//! (compact JSON). With `base_ref` (a dataset artifact) the table is added
//! to a copy of it: `replace` drops a table of that name first, `append`
//! adds rows to it (same columns) or creates it.

use std::path::Path;

use mex_engine_sdk::{Fail, Request};
use rusqlite::types::Value as Sql;
use serde_json::Value as J;

use crate::{MAX_COLUMNS, MAX_FIELD_BYTES, fail, ident};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Integer,
    Real,
    Text,
}

impl Type {
    fn sql(self) -> &'static str {
        match self {
            Self::Integer => "INTEGER",
            Self::Real => "REAL",
            Self::Text => "TEXT",
        }
    }
}

/// What inference has seen of one column.
#[derive(Debug, Clone, Copy)]
struct Seen {
    int: bool,
    real: bool,
}

impl Seen {
    fn ty(self) -> Type {
        if self.int {
            Type::Integer
        } else if self.real {
            Type::Real
        } else {
            Type::Text
        }
    }
}

/// One raw cell: CSV text (None = empty) or a JSON value.
enum Cell<'a> {
    Csv(Option<&'a str>),
    Json(Option<&'a J>),
}

fn load_err(msg: impl Into<String>) -> Fail {
    fail("DBA_LOAD_ERROR", msg)
}

pub(crate) fn load_dataset(req: &mut Request) -> Result<(), Fail> {
    let table = req
        .param_str("table")
        .map_err(|f| load_err(f.message))?
        .to_owned();
    let mode = req
        .param_str("mode")
        .map_err(|f| load_err(f.message))?
        .to_owned();
    let path = crate::input(req, "dataset_ref")?;
    let format = match req.params().get("format").and_then(J::as_str) {
        Some(f) => f.to_owned(),
        None => match crate::media_type(req, "dataset_ref").as_deref() {
            Some("text/csv") => "csv".to_owned(),
            _ => "jsonl".to_owned(),
        },
    };
    let declared = declared_columns(req)?;
    let (columns, rows) = match format.as_str() {
        "csv" => read_csv(&path)?,
        _ => read_jsonl(&path)?,
    };
    let types = match &declared {
        Some(d) => {
            let names: Vec<&str> = d.iter().map(|(n, _)| n.as_str()).collect();
            if names != columns.iter().map(String::as_str).collect::<Vec<_>>() {
                return Err(load_err(format!(
                    "the input's columns are [{}] but params.columns declares [{}]; make them the same, in the same order",
                    columns.join(", "),
                    names.join(", ")
                )));
            }
            d.iter().map(|(_, t)| *t).collect()
        }
        None => infer(&columns, &rows),
    };

    let (conn, scratch) = match req.params().get("base_ref").and_then(J::as_str) {
        Some(_) => {
            let base = crate::input(req, "base_ref")?;
            // Checked read-only first, then copied and opened for writing.
            drop(crate::open_dataset(&base, "base_ref")?);
            let (conn, scratch) = crate::scratch_database(req, ".dba-load.sqlite")?;
            drop(conn);
            std::fs::copy(&base, &scratch)
                .map_err(|e| fail("DBA_IO_ERROR", format!("params.base_ref: {e}")))?;
            let conn = rusqlite::Connection::open(&scratch)
                .map_err(|e| fail("DBA_IO_ERROR", format!("params.base_ref: {e}")))?;
            crate::harden(&conn).map_err(|e| fail("DBA_IO_ERROR", e.to_string()))?;
            conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")
                .map_err(|e| fail("DBA_IO_ERROR", e.to_string()))?;
            (conn, scratch)
        }
        None => crate::scratch_database(req, ".dba-load.sqlite")?,
    };
    let io = |e: rusqlite::Error| fail("DBA_IO_ERROR", format!("building the dataset: {e}"));
    let t = ident(&table);
    let existing: Option<Vec<String>> = {
        let mut stmt = conn
            .prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
            .map_err(io)?;
        let names: Vec<String> = stmt
            .query_map([&table], |r| r.get(0))
            .map_err(io)?
            .collect::<Result<_, _>>()
            .map_err(io)?;
        (!names.is_empty()).then_some(names)
    };
    match (mode.as_str(), existing) {
        ("append", Some(names)) => {
            if names != columns {
                return Err(load_err(format!(
                    "append: table {table} has columns [{}], the input has [{}]; load into another table or use mode replace",
                    names.join(", "),
                    columns.join(", ")
                )));
            }
        }
        (_, existing) => {
            if existing.is_some() {
                conn.execute_batch(&format!("DROP TABLE {t}")).map_err(io)?;
            }
            let cols: Vec<String> = columns
                .iter()
                .zip(&types)
                .map(|(c, ty)| format!("{} {}", ident(c), ty.sql()))
                .collect();
            conn.execute_batch(&format!("CREATE TABLE {t} ({})", cols.join(", ")))
                .map_err(io)?;
        }
    }
    conn.execute_batch("BEGIN").map_err(io)?;
    {
        let marks = vec!["?"; columns.len()].join(", ");
        let mut stmt = conn
            .prepare(&format!("INSERT INTO {t} VALUES ({marks})"))
            .map_err(io)?;
        for (r, row) in rows.iter().enumerate() {
            let mut values = Vec::with_capacity(columns.len());
            for (c, ty) in types.iter().enumerate() {
                let cell = match row {
                    Row::Csv(fields) => {
                        Cell::Csv(fields.get(c).map(String::as_str).filter(|s| !s.is_empty()))
                    }
                    Row::Json(obj) => Cell::Json(obj.get(&columns[c]).filter(|v| !v.is_null())),
                };
                values.push(convert(cell, *ty).map_err(|why| {
                    load_err(format!("row {} column {:?}: {why}", r + 1, columns[c]))
                })?);
            }
            stmt.execute(rusqlite::params_from_iter(values))
                .map_err(io)?;
        }
    }
    conn.execute_batch("COMMIT").map_err(io)?;
    req.environment("dba.rows", &rows.len().to_string());
    crate::emit_database(req, conn, &scratch, "dataset.sqlite", "artifact.dataset")
}

fn declared_columns(req: &Request) -> Result<Option<Vec<(String, Type)>>, Fail> {
    let Some(cols) = req.params().get("columns").and_then(J::as_array) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for (i, c) in cols.iter().enumerate() {
        let name = c.get("name").and_then(J::as_str).unwrap_or_default();
        let ty = match c.get("type").and_then(J::as_str) {
            Some("integer") => Type::Integer,
            Some("real") => Type::Real,
            _ => Type::Text,
        };
        if name.is_empty() {
            return Err(load_err(format!("params.columns[{i}].name is empty")));
        }
        out.push((name.to_owned(), ty));
    }
    Ok(Some(out))
}

enum Row {
    Csv(Vec<String>),
    Json(serde_json::Map<String, J>),
}

fn check_columns(columns: &[String]) -> Result<(), Fail> {
    if columns.is_empty() {
        return Err(load_err("the input has no columns"));
    }
    if columns.len() > MAX_COLUMNS {
        return Err(fail(
            "DBA_LIMIT_EXCEEDED",
            format!(
                "the input has {} columns; at most {MAX_COLUMNS}",
                columns.len()
            ),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for c in columns {
        if c.is_empty() || c.len() > 128 || c.contains('\0') {
            return Err(load_err(format!(
                "column name {:?} must be 1 to 128 bytes without NUL",
                c.chars().take(40).collect::<String>()
            )));
        }
        if !seen.insert(c.to_lowercase()) {
            return Err(load_err(format!(
                "column {c:?} appears twice (names compare without case in SQLite)"
            )));
        }
    }
    Ok(())
}

fn field_limit(len: usize, row: usize, col: &str) -> Result<(), Fail> {
    if len > MAX_FIELD_BYTES {
        return Err(fail(
            "DBA_LIMIT_EXCEEDED",
            format!(
                "row {row} column {col:?}: a field of {len} bytes, past the limit of {MAX_FIELD_BYTES}"
            ),
        ));
    }
    Ok(())
}

fn read_csv(path: &Path) -> Result<(Vec<String>, Vec<Row>), Fail> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_path(path)
        .map_err(|e| fail("DBA_IO_ERROR", format!("params.dataset_ref: {e}")))?;
    let csv_err = |e: csv::Error| {
        let at = e
            .position()
            .map(|p| format!("line {}: ", p.line()))
            .unwrap_or_default();
        load_err(format!(
            "params.dataset_ref: not valid CSV: {at}{e}; fix the file (every record needs as many fields as the header, UTF-8)"
        ))
    };
    let columns: Vec<String> = rdr
        .headers()
        .map_err(csv_err)?
        .iter()
        .map(str::to_owned)
        .collect();
    check_columns(&columns)?;
    let mut rows = Vec::new();
    for (r, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(csv_err)?;
        let mut fields = Vec::with_capacity(rec.len());
        for (c, f) in rec.iter().enumerate() {
            field_limit(f.len(), r + 1, columns.get(c).map_or("", String::as_str))?;
            fields.push(f.to_owned());
        }
        rows.push(Row::Csv(fields));
    }
    Ok((columns, rows))
}

fn read_jsonl(path: &Path) -> Result<(Vec<String>, Vec<Row>), Fail> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| load_err(format!("params.dataset_ref: not UTF-8 JSON Lines ({e})")))?;
    let mut columns: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        field_limit(line.len(), n + 1, "")?;
        let obj = match serde_json::from_str::<J>(line) {
            Ok(J::Object(o)) => o,
            Ok(_) => {
                return Err(load_err(format!(
                    "line {}: not a JSON object; JSON Lines needs one object per line",
                    n + 1
                )));
            }
            Err(e) => return Err(load_err(format!("line {}: not JSON ({e})", n + 1))),
        };
        for k in obj.keys() {
            if !columns.contains(k) {
                columns.push(k.clone());
                if columns.len() > MAX_COLUMNS {
                    return Err(fail(
                        "DBA_LIMIT_EXCEEDED",
                        format!("line {}: more than {MAX_COLUMNS} distinct keys", n + 1),
                    ));
                }
            }
        }
        rows.push(Row::Json(obj));
    }
    check_columns(&columns)?;
    Ok((columns, rows))
}

fn infer(columns: &[String], rows: &[Row]) -> Vec<Type> {
    let mut seen = vec![
        Seen {
            int: true,
            real: true
        };
        columns.len()
    ];
    for row in rows {
        for (c, s) in seen.iter_mut().enumerate() {
            match row {
                Row::Csv(f) => {
                    if let Some(v) = f.get(c).filter(|v| !v.is_empty()) {
                        s.int &= v.parse::<i64>().is_ok();
                        s.real &= v.parse::<f64>().is_ok_and(f64::is_finite);
                    }
                }
                Row::Json(o) => match o.get(&columns[c]) {
                    None | Some(J::Null) => {}
                    Some(J::Bool(_)) => s.real &= true,
                    Some(J::Number(n)) => {
                        s.int &= n.is_i64();
                    }
                    Some(_) => {
                        s.int = false;
                        s.real = false;
                    }
                },
            }
        }
    }
    seen.into_iter().map(Seen::ty).collect()
}

fn convert(cell: Cell<'_>, ty: Type) -> Result<Sql, String> {
    Ok(match (cell, ty) {
        (Cell::Csv(None) | Cell::Json(None), _) => Sql::Null,
        (Cell::Csv(Some(v)), Type::Integer) => Sql::Integer(
            v.parse()
                .map_err(|_| format!("{:?} is not an integer", short(v)))?,
        ),
        (Cell::Csv(Some(v)), Type::Real) => Sql::Real(
            v.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| format!("{:?} is not a finite number", short(v)))?,
        ),
        (Cell::Csv(Some(v)), Type::Text) => Sql::Text(v.to_owned()),
        (Cell::Json(Some(J::Bool(b))), Type::Integer | Type::Real) => Sql::Integer(i64::from(*b)),
        (Cell::Json(Some(J::Number(n))), Type::Integer) => {
            Sql::Integer(n.as_i64().ok_or_else(|| format!("{n} is not an integer"))?)
        }
        (Cell::Json(Some(J::Number(n))), Type::Real) => {
            Sql::Real(n.as_f64().ok_or_else(|| format!("{n} is not a number"))?)
        }
        (Cell::Json(Some(J::String(s))), Type::Text) => Sql::Text(s.clone()),
        (Cell::Json(Some(v)), Type::Text) => Sql::Text(v.to_string()),
        (Cell::Json(Some(v)), _) => {
            return Err(format!("{} is not a number", short(&v.to_string())));
        }
    })
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}
