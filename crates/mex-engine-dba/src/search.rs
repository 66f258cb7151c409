//! `dba.build_search_index`: an FTS5 index over text columns of a dataset.
//!
//! The index spec (`index_spec_ref`, JSON):
//! `{"table": "<table of the dataset>", "columns": ["title", "body"],
//! "tokenizer": "unicode61" | "porter" | "trigram"}` (tokenizer optional,
//! default `unicode61`). The artifact is a SQLite database with one FTS5
//! table `search_index` (the spec's columns, plus `source_rowid`
//! UNINDEXED), filled in rowid order: query it with `dba.query_sql`
//! (`... WHERE search_index MATCH 'word' ORDER BY rank`).

use mex_engine_sdk::{Fail, Request};
use serde_json::Value as J;

use crate::{fail, ident};

pub(crate) fn build_search_index(req: &mut Request) -> Result<(), Fail> {
    let corpus = crate::input(req, "corpus_ref")?;
    let spec_path = crate::input(req, "index_spec_ref")?;
    let spec: J = std::fs::read(&spec_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            fail(
                "DBA_LOAD_ERROR",
                "params.index_spec_ref: not JSON; give {\"table\": ..., \"columns\": [...]}",
            )
        })?;
    let bad = |m: &str| fail("DBA_LOAD_ERROR", format!("params.index_spec_ref: {m}"));
    let table = spec
        .get("table")
        .and_then(J::as_str)
        .ok_or_else(|| bad("\"table\" (a string) is required"))?
        .to_owned();
    let columns: Vec<String> = spec
        .get("columns")
        .and_then(J::as_array)
        .ok_or_else(|| bad("\"columns\" (an array of column names) is required"))?
        .iter()
        .map(|c| c.as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or_else(|| bad("\"columns\" must hold strings"))?;
    if columns.is_empty() || columns.len() > 32 {
        return Err(bad("\"columns\" needs 1 to 32 names"));
    }
    let tokenizer = match spec.get("tokenizer").and_then(J::as_str) {
        None | Some("unicode61") => "unicode61",
        Some("porter") => "porter unicode61",
        Some("trigram") => "trigram",
        Some(other) => {
            return Err(bad(&format!(
                "tokenizer {other:?} is not one of unicode61, porter, trigram"
            )));
        }
    };
    if let Some(obj) = spec.as_object()
        && let Some(k) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "table" | "columns" | "tokenizer"))
    {
        return Err(bad(&format!(
            "unknown key {k:?} (allowed: table, columns, tokenizer)"
        )));
    }
    let src = crate::open_dataset(&corpus, "corpus_ref")?;
    let sql_err = |e: rusqlite::Error| {
        fail(
            "DBA_LOAD_ERROR",
            format!(
                "reading {table}.[{}] from the corpus: {e}",
                columns.join(", ")
            ),
        )
    };
    let select = format!(
        "SELECT rowid, {} FROM {} ORDER BY rowid",
        columns
            .iter()
            .map(|c| ident(c))
            .collect::<Vec<_>>()
            .join(", "),
        ident(&table)
    );
    let (dst, scratch) = crate::scratch_database(req, ".dba-index.sqlite")?;
    let io = |e: rusqlite::Error| fail("DBA_IO_ERROR", format!("building the index: {e}"));
    dst.execute_batch(&format!(
        "CREATE VIRTUAL TABLE search_index USING fts5({}, source_rowid UNINDEXED, tokenize = '{tokenizer}'); BEGIN;",
        columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
    ))
    .map_err(io)?;
    let mut n = 0u64;
    {
        let mut stmt = src.prepare(&select).map_err(sql_err)?;
        let mut rows = stmt.query([]).map_err(sql_err)?;
        let marks = vec!["?"; columns.len() + 1].join(", ");
        let mut ins = dst
            .prepare(&format!("INSERT INTO search_index VALUES ({marks})"))
            .map_err(io)?;
        while let Some(row) = rows.next().map_err(sql_err)? {
            let mut values: Vec<rusqlite::types::Value> = Vec::with_capacity(columns.len() + 1);
            for i in 1..=columns.len() {
                values.push(row.get::<_, rusqlite::types::Value>(i).map_err(sql_err)?);
            }
            values.push(row.get::<_, rusqlite::types::Value>(0).map_err(sql_err)?);
            ins.execute(rusqlite::params_from_iter(values))
                .map_err(io)?;
            n += 1;
        }
    }
    dst.execute_batch("COMMIT; INSERT INTO search_index(search_index) VALUES('optimize');")
        .map_err(io)?;
    req.environment("dba.indexed_rows", &n.to_string());
    crate::emit_database(req, dst, &scratch, "index.sqlite", "artifact.bundle")
}
