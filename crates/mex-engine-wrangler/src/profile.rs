//! `wrangler.profile_dataset`: per-column type, count, nulls, distinct,
//! min/max, mean, standard deviation and histogram.

use std::collections::HashSet;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::convert::{parse_decimal, parse_int};
use crate::output::{html_page, json_bytes};
use crate::table::{InputOptions, Table, cell_text, is_null, media_type_of};
use crate::{Fail, MAX_DISTINCT_PER_COLUMN, Request, output_cap};

/// String min/max compare (and report) at most this many bytes of a value.
pub const MAX_STRING_EXTREME_BYTES: usize = 1024;
/// The total distinct-value budget shared by all columns.
const DISTINCT_TOTAL: usize = 2_000_000;
/// Histogram bins.
const BINS: usize = 10;

#[derive(Default)]
struct Col {
    count: u64,
    nulls: u64,
    ints: u64,
    decimals: u64,
    bools: u64,
    strings: u64,
    nested: u64,
    distinct: HashSet<[u8; 16]>,
    distinct_overflow: bool,
    int_min: Option<i64>,
    int_max: Option<i64>,
    n: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
    str_min: Option<String>,
    str_max: Option<String>,
    hist: Vec<u64>,
}

enum Kind {
    Int(i64),
    Decimal(f64),
    Bool,
    Str,
    Nested,
}

fn classify(v: &Value, csv_text: bool) -> Kind {
    match v {
        Value::String(s) if csv_text => {
            if let Some(i) = parse_int(s) {
                Kind::Int(i)
            } else if let Some(f) = parse_decimal(s) {
                Kind::Decimal(f)
            } else if s == "true" || s == "false" {
                Kind::Bool
            } else {
                Kind::Str
            }
        }
        Value::String(_) => Kind::Str,
        Value::Bool(_) => Kind::Bool,
        Value::Number(n) => match n.as_i64() {
            Some(i) => Kind::Int(i),
            None => Kind::Decimal(n.as_f64().unwrap_or(0.0)),
        },
        _ => Kind::Nested,
    }
}

fn prefix(s: &str) -> &str {
    if s.len() <= MAX_STRING_EXTREME_BYTES {
        return s;
    }
    let mut end = MAX_STRING_EXTREME_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Col {
    fn add(&mut self, cell: Option<&Value>, csv_text: bool, bound: usize) {
        if is_null(cell) {
            self.nulls += 1;
            return;
        }
        let Some(v) = cell else { return };
        self.count += 1;
        let text = cell_text(Some(v));
        if !self.distinct_overflow {
            let d = Sha256::digest(text.as_bytes());
            let mut short = [0u8; 16];
            short.copy_from_slice(&d[..16]);
            if !self.distinct.contains(&short) {
                if self.distinct.len() >= bound {
                    self.distinct_overflow = true;
                } else {
                    self.distinct.insert(short);
                }
            }
        }
        let p = prefix(&text);
        if self.str_min.as_deref().is_none_or(|m| p < m) {
            self.str_min = Some(p.to_owned());
        }
        if self.str_max.as_deref().is_none_or(|m| p > m) {
            self.str_max = Some(p.to_owned());
        }
        let number = match classify(v, csv_text) {
            Kind::Int(i) => {
                self.ints += 1;
                self.int_min = Some(self.int_min.map_or(i, |m| m.min(i)));
                self.int_max = Some(self.int_max.map_or(i, |m| m.max(i)));
                Some(i as f64)
            }
            Kind::Decimal(f) => {
                self.decimals += 1;
                Some(f)
            }
            Kind::Bool => {
                self.bools += 1;
                None
            }
            Kind::Str => {
                self.strings += 1;
                None
            }
            Kind::Nested => {
                self.nested += 1;
                None
            }
        };
        if let Some(x) = number {
            // Welford's running mean and variance.
            if self.n == 0 {
                self.min = x;
                self.max = x;
            } else {
                self.min = self.min.min(x);
                self.max = self.max.max(x);
            }
            self.n += 1;
            let d = x - self.mean;
            self.mean += d / self.n as f64;
            self.m2 += d * (x - self.mean);
        }
    }

    fn type_name(&self) -> &'static str {
        let numeric = self.ints + self.decimals;
        if self.count == 0 {
            "null"
        } else if self.ints == self.count {
            "integer"
        } else if numeric == self.count {
            "number"
        } else if self.bools == self.count {
            "boolean"
        } else if self.strings == self.count || (self.nested == 0 && self.strings > 0) {
            "string"
        } else if self.nested == self.count {
            "nested"
        } else {
            "mixed"
        }
    }

    fn numeric(&self) -> bool {
        matches!(self.type_name(), "integer" | "number")
    }

    fn bin(&self, x: f64) -> usize {
        if self.max <= self.min {
            return 0;
        }
        let i = ((x - self.min) / (self.max - self.min) * BINS as f64) as usize;
        i.min(BINS - 1)
    }
}

pub(crate) fn run(req: &mut Request) -> Result<(), Fail> {
    let opts = InputOptions::from_params(req.params(), media_type_of(req, "dataset_ref"))?;
    let metrics: Vec<String> = req
        .params()
        .get("metrics")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let want = |m: &str| metrics.iter().any(|x| x == m);
    let html = req.param_str("output")? == "html";
    let csv_text = opts.format == crate::table::Format::Csv;
    let path = req.input_path("dataset_ref")?;
    let cap = output_cap(req);

    let mut table = Table::open(&path, &opts)?;
    let mut cols: Vec<Col> = Vec::new();
    let mut rows = 0u64;
    // The distinct bound per column: fixed once the CSV header is known;
    // JSON sources use the bound for the column count at first sight.
    let bound_for = |ncols: usize| MAX_DISTINCT_PER_COLUMN.min(DISTINCT_TOTAL / ncols.max(1));
    let mut bounds: Vec<usize> = Vec::new();
    while let Some(row) = table.next_row()? {
        rows += 1;
        while cols.len() < table.columns().len() {
            cols.push(Col::default());
            bounds.push(bound_for(table.columns().len()));
            // Rows before this column existed lacked it: they count as nulls.
            if let Some(c) = cols.last_mut() {
                c.nulls = rows - 1;
            }
        }
        for (i, col) in cols.iter_mut().enumerate() {
            col.add(
                row.cells.get(i).and_then(Option::as_ref),
                csv_text,
                bounds[i],
            );
        }
    }
    let columns = table.columns().to_vec();
    drop(table);

    if want("histogram") && cols.iter().any(Col::numeric) {
        for c in &mut cols {
            c.hist = vec![0; BINS];
        }
        let mut table = Table::open(&path, &opts)?;
        while let Some(row) = table.next_row()? {
            for (i, col) in cols.iter_mut().enumerate() {
                if !col.numeric() {
                    continue;
                }
                let Some(v) = row.cells.get(i).and_then(Option::as_ref) else {
                    continue;
                };
                if is_null(Some(v)) {
                    continue;
                }
                let x = match classify(v, csv_text) {
                    Kind::Int(i) => i as f64,
                    Kind::Decimal(f) => f,
                    _ => continue,
                };
                let b = col.bin(x);
                col.hist[b] += 1;
            }
        }
    }

    let mut out_cols = Vec::with_capacity(cols.len());
    for (name, (c, bound)) in columns.iter().zip(cols.iter().zip(&bounds)) {
        let mut o = Map::new();
        o.insert("name".into(), json!(name));
        o.insert("type".into(), json!(c.type_name()));
        let numeric = c.numeric();
        if want("count") {
            o.insert("count".into(), json!(c.count));
        }
        if want("nulls") {
            o.insert("nulls".into(), json!(c.nulls));
        }
        if want("distinct") {
            o.insert(
                "distinct".into(),
                json!(c.distinct.len() + usize::from(c.distinct_overflow)),
            );
            o.insert("distinct_exact".into(), json!(!c.distinct_overflow));
            o.insert("distinct_bound".into(), json!(bound));
        }
        let (min, max) = if c.count == 0 {
            (Value::Null, Value::Null)
        } else if c.type_name() == "integer" {
            (json!(c.int_min), json!(c.int_max))
        } else if numeric {
            (json!(c.min), json!(c.max))
        } else {
            (json!(c.str_min), json!(c.str_max))
        };
        if want("min") {
            o.insert("min".into(), min);
        }
        if want("max") {
            o.insert("max".into(), max);
        }
        if want("mean") {
            o.insert(
                "mean".into(),
                if numeric { json!(c.mean) } else { Value::Null },
            );
        }
        if want("stddev") {
            let sd = (numeric && c.n > 1).then(|| (c.m2 / (c.n - 1) as f64).sqrt());
            o.insert("stddev".into(), json!(sd));
        }
        if want("histogram") {
            let h = if numeric {
                let width = (c.max - c.min) / BINS as f64;
                json!({"min": c.min, "max": c.max, "bins": BINS, "bin_width": width, "counts": c.hist})
            } else {
                Value::Null
            };
            o.insert("histogram".into(), h);
        }
        out_cols.push(Value::Object(o));
    }
    let doc = json!({
        "engine": crate::ENGINE_ID,
        "operation": "wrangler.profile_dataset",
        "rows": rows,
        "metrics": metrics,
        "columns": out_cols,
    });
    if html {
        let mut header = vec!["name".to_owned(), "type".to_owned()];
        header.extend(metrics.iter().cloned());
        let rows_html: Vec<Vec<String>> = out_cols
            .iter()
            .map(|c| {
                header
                    .iter()
                    .map(|h| match c.get(h) {
                        Some(Value::String(s)) => s.clone(),
                        Some(v) => v.to_string(),
                        None => String::new(),
                    })
                    .collect()
            })
            .collect();
        let bytes = html_page(
            "Dataset profile",
            &[("rows".to_owned(), rows.to_string())],
            &header,
            &rows_html,
            &cap,
        )?;
        return req.write_output("profile.html", "artifact.document", "text/html", &bytes);
    }
    let bytes = json_bytes(&doc, &cap)?;
    req.write_output(
        "profile.json",
        "artifact.document",
        "application/json",
        &bytes,
    )
}
