//! # engine.wrangler: validate, convert, dedupe and profile datasets
//!
//! A `mex-engine-1` handler library: [`handle`] serves one request. mex hosts
//! it out of process (the `host_process` implementation kind: the `mex`
//! binary started as `mex-engine-exec engine.wrangler` inside the
//! process-engine jail), because it parses untrusted files.
//!
//! Operations (params schemas under `registry/params/engine.wrangler/`,
//! full reference in `docs/engines/wrangler.md`):
//!
//! * `wrangler.validate_dataset`: check every row against a JSON Schema
//!   and/or column rules; every violation with its row, line and column,
//!   at most `max_violations` kept, with a truncation flag.
//! * `wrangler.convert_table`: CSV ↔ JSON Lines ↔ JSON, with delimiters,
//!   quoting and encodings (UTF-8, UTF-16 with BOM, Latin-1).
//! * `wrangler.find_duplicates`: exact duplicate rows, or rows equal on key
//!   columns (`hash`), or equal after normalizing text (`fuzzy`).
//! * `wrangler.profile_dataset`: per column, the inferred type, count,
//!   nulls, distinct (exact up to a bound, then flagged as a lower bound),
//!   min/max, mean, standard deviation and a histogram.
//!
//! Every input is streamed row by row: memory is bounded by
//! [`MAX_RECORD_BYTES`] per record, [`MAX_COLUMNS`] per row, the JSON
//! document bound [`MAX_JSON_DOCUMENT_BYTES`], the per-operation bounds
//! (distinct values, duplicate rows) and the output bound
//! [`MAX_OUTPUT_BYTES`]. Crossing a bound is the typed failure
//! `WR_LIMIT_EXCEEDED`, never a panic or an abort.
//!
//! The run's `output_bytes` budget is checked as output is built: the
//! first write past it stops the operation (no further rows are read) and
//! spills the partial output into the output directory, where the jail's
//! file-size limit and the runtime's output check end the run as
//! `RUNTIME.OUTPUT_BUDGET_EXCEEDED` (the runtime's code, not the engine's),
//! without first working through the rest of the input.
//!
//! Determinism: outputs are byte-identical for identical inputs and
//! params on the same build (no clocks, no random ids, no hash-map order).
//! The ceiling is still D2: violation messages for JSON Schema rules are
//! the validator library's text and may change with its version, and
//! floating-point summaries (mean, standard deviation, histogram edges)
//! are only promised to be numerically equal, not byte-equal, across
//! builds and platforms.

use serde_json::Value;

pub use mex_engine_sdk::{Fail, Request};

mod convert;
mod dedup;
pub mod output;
mod profile;
pub mod table;
mod validate;

/// The engine this handler serves.
pub const ENGINE_ID: &str = "engine.wrangler";

/// Failure: the data (or the expectations document) does not parse.
pub const WR_DATA_PARSE_ERROR: &str = "WR_DATA_PARSE_ERROR";
/// Failure: rows violate the expectations and `on_violation` is `fail`.
pub const WR_EXPECTATION_FAILED: &str = "WR_EXPECTATION_FAILED";
/// Failure: duplicates cannot be found (unknown key column, too many rows).
pub const WR_DEDUP_ERROR: &str = "WR_DEDUP_ERROR";
/// Failure: the input or the output crosses one of the engine's bounds.
pub const WR_LIMIT_EXCEEDED: &str = "WR_LIMIT_EXCEEDED";

/// The largest record (CSV record or JSON line), in bytes after decoding.
pub const MAX_RECORD_BYTES: u64 = 16 << 20;
/// The most columns a table may have.
pub const MAX_COLUMNS: usize = 4096;
/// The largest whole-document JSON dataset, in bytes after decoding.
pub const MAX_JSON_DOCUMENT_BYTES: u64 = 32 << 20;
/// The largest output any operation builds (a smaller `output_bytes`
/// budget bounds it further: see `output_cap`).
pub const MAX_OUTPUT_BYTES: u64 = 256 << 20;
/// The largest expectations document.
pub const MAX_EXPECTATIONS_BYTES: u64 = 1 << 20;
/// The most rows `find_duplicates` tracks.
pub const MAX_DEDUP_ROWS: u64 = 2_000_000;
/// The most distinct values counted exactly per column in `profile_dataset`
/// (fewer when the table is wide: see `docs/engines/wrangler.md`).
pub const MAX_DISTINCT_PER_COLUMN: usize = 10_000;

pub(crate) fn limit_fail(message: impl Into<String>) -> Fail {
    Fail::new(WR_LIMIT_EXCEEDED, message)
}

/// Serve one request: dispatch on the operation.
pub fn handle(req: &mut Request) -> Result<(), Fail> {
    match req.operation() {
        "wrangler.validate_dataset" => validate::run(req),
        "wrangler.convert_table" => convert::run(req),
        "wrangler.find_duplicates" => dedup::run(req),
        "wrangler.profile_dataset" => profile::run(req),
        other => Err(Fail::new(
            "PROC_BAD_REQUEST",
            format!("{ENGINE_ID} has no operation {other:?}; see mechanical_engines.json"),
        )),
    }
}

/// The output bound of this run: [`MAX_OUTPUT_BYTES`], or the run's
/// `output_bytes` budget when smaller. Crossing the budget stops the
/// operation at once and leaves more than the budget in the output
/// directory, so the runtime ends the run as `budget_exceeded` with
/// `RUNTIME.OUTPUT_BUDGET_EXCEEDED` (see [`output::Cap`]); the engine never
/// reports the budget under a code of its own when it runs in the jail.
pub(crate) fn output_cap(req: &Request) -> output::Cap {
    output::Cap::new(
        MAX_OUTPUT_BYTES,
        req.doc.budget.output_bytes,
        std::path::PathBuf::from(&req.doc.output_dir),
    )
}

/// An optional integer param within `[1, max]`, or `default`.
pub(crate) fn param_count(req: &Request, name: &str, default: u64, max: u64) -> Result<u64, Fail> {
    match req.params().get(name) {
        None => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(Fail::new(
                WR_DATA_PARSE_ERROR,
                format!("/params/{name}: must be an integer from 1 to {max}"),
            )),
        },
    }
}

/// Read a small JSON input (the expectations document) with a bound.
pub(crate) fn read_small_json(req: &Request, param: &str, max: u64) -> Result<Value, Fail> {
    use std::io::Read;
    let path = req.input_path(param)?;
    let file = std::fs::File::open(&path).map_err(|e| {
        Fail::new(
            WR_DATA_PARSE_ERROR,
            format!("/params/{param}: cannot open {}: {e}", path.display()),
        )
    })?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Fail::new(WR_DATA_PARSE_ERROR, format!("/params/{param}: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(limit_fail(format!(
            "/params/{param}: the document is larger than {max} bytes; shorten it"
        )));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        Fail::new(
            WR_DATA_PARSE_ERROR,
            format!(
                "/params/{param}: line {} column {}: not JSON: {e}",
                e.line(),
                e.column()
            ),
        )
    })
}
