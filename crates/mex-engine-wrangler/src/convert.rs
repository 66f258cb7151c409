//! `wrangler.convert_table`: CSV ↔ JSON Lines ↔ JSON.

use std::io::Write;

use serde_json::Value;

use crate::output::{Bounded, write_fail};
use crate::table::{Format, InputOptions, Table, cell_text, media_type_of};
use crate::{Fail, Request, WR_DATA_PARSE_ERROR, output_cap};

/// Infer a JSON value from CSV text: integers, finite decimals, booleans,
/// and the empty cell as null; anything else stays a string.
pub(crate) fn infer_value(s: &str) -> Value {
    if s.is_empty() {
        return Value::Null;
    }
    match s {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    if let Some(n) = parse_int(s) {
        return Value::from(n);
    }
    if let Some(f) = parse_decimal(s)
        && let Some(n) = serde_json::Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(s.to_owned())
}

/// An integer written as `-?[0-9]+` that fits i64.
pub(crate) fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A finite decimal number (digits, sign, point, exponent only: no `inf`,
/// `NaN` or hex).
pub(crate) fn parse_decimal(s: &str) -> Option<f64> {
    if s.is_empty()
        || !s.bytes().any(|b| b.is_ascii_digit())
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

pub(crate) fn run(req: &mut Request) -> Result<(), Fail> {
    let opts = InputOptions::from_params(req.params(), media_type_of(req, "input_ref"))?;
    let target_name = req.param_str("target")?;
    let target = Format::parse(target_name).ok_or_else(|| {
        Fail::new(
            WR_DATA_PARSE_ERROR,
            format!("/params/target: {target_name:?} is not csv, jsonl or json"),
        )
    })?;
    let params = req.params();
    let target_delimiter = match params.get("target_delimiter").and_then(Value::as_str) {
        None => b',',
        Some("\t" | "\\t") => b'\t',
        Some(s) if s.len() == 1 && s.is_ascii() => s.as_bytes()[0],
        Some(s) => {
            return Err(Fail::new(
                WR_DATA_PARSE_ERROR,
                format!("/params/target_delimiter: {s:?} is not one ASCII character"),
            ));
        }
    };
    let quote_all = params.get("quote_style").and_then(Value::as_str) == Some("always");
    let infer = params
        .get("infer_types")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        && opts.format == Format::Csv;
    let path = req.input_path("input_ref")?;
    let cap = output_cap(req);

    // CSV output needs every column up front: a JSON source is read twice.
    let mut columns_first: Option<Vec<String>> = None;
    if target == Format::Csv && opts.format != Format::Csv {
        let mut t = Table::open(&path, &opts)?;
        while t.next_row()?.is_some() {}
        columns_first = Some(t.columns().to_vec());
    }

    let mut table = Table::open(&path, &opts)?;
    let mut out = Bounded::new(&cap);
    let (file, media) = match target {
        Format::Csv => {
            let columns = match columns_first {
                Some(c) => c,
                None => table.columns().to_vec(),
            };
            let mut w = csv::WriterBuilder::new()
                .delimiter(target_delimiter)
                .quote_style(if quote_all {
                    csv::QuoteStyle::Always
                } else {
                    csv::QuoteStyle::Necessary
                })
                .from_writer(&mut out);
            let csv_err = |e: csv::Error| match e.into_kind() {
                csv::ErrorKind::Io(io) => write_fail(&io, &cap),
                other => Fail::new("PROC_OUTPUT_ERROR", format!("cannot write CSV: {other:?}")),
            };
            w.write_record(&columns).map_err(csv_err)?;
            let mut fields: Vec<String> = Vec::with_capacity(columns.len());
            while let Some(row) = table.next_row()? {
                fields.clear();
                for i in 0..columns.len() {
                    fields.push(cell_text(row.cells.get(i).and_then(Option::as_ref)));
                }
                w.write_record(&fields).map_err(csv_err)?;
            }
            w.flush().map_err(|e| write_fail(&e, &cap))?;
            drop(w);
            ("table.csv", "text/csv")
        }
        Format::Jsonl | Format::Json => {
            let json = target == Format::Json;
            let io = |e: std::io::Error| write_fail(&e, &cap);
            if json {
                out.write_all(b"[").map_err(io)?;
            }
            let mut first = true;
            while let Some(row) = table.next_row()? {
                if json && !first {
                    out.write_all(b",").map_err(io)?;
                }
                first = false;
                write_object(&mut out, table.columns(), &row.cells, infer).map_err(io)?;
                if !json {
                    out.write_all(b"\n").map_err(io)?;
                }
            }
            if json {
                out.write_all(b"]").map_err(io)?;
                ("table.json", "application/json")
            } else {
                ("table.jsonl", "application/x-ndjson")
            }
        }
    };
    req.write_output(file, "artifact.dataset", media, &out.buf)
}

/// One row as a JSON object, keys in column order.
fn write_object(
    out: &mut Bounded,
    columns: &[String],
    cells: &[Option<Value>],
    infer: bool,
) -> std::io::Result<()> {
    out.write_all(b"{")?;
    let mut first = true;
    for (name, cell) in columns.iter().zip(cells) {
        let Some(value) = cell else { continue };
        if !first {
            out.write_all(b",")?;
        }
        first = false;
        serde_json::to_writer(&mut *out, name)?;
        out.write_all(b":")?;
        match (infer, value) {
            (true, Value::String(s)) => serde_json::to_writer(&mut *out, &infer_value(s))?,
            _ => serde_json::to_writer(&mut *out, value)?,
        }
    }
    out.write_all(b"}")
}
