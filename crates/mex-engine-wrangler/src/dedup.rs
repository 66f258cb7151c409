//! `wrangler.find_duplicates`: exact duplicate rows, or rows equal on key
//! columns; `fuzzy` compares text after normalizing it.

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::output::{Bounded, json_bytes, write_fail};
use crate::table::{InputOptions, Table, is_null, media_type_of};
use crate::{Fail, MAX_DEDUP_ROWS, Request, WR_DEDUP_ERROR, output_cap, param_count};

/// Row numbers listed per group at most (the count is always exact).
const MAX_ROWS_PER_GROUP: usize = 100;

struct Group {
    first_row: u64,
    count: u64,
    rows: Vec<u64>,
    key: Vec<Value>,
}

/// Text normalized for `fuzzy`: trimmed, lowercased, inner whitespace
/// runs collapsed to one space.
fn normalize(s: &str) -> String {
    s.split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

fn compared(cell: Option<&Value>, fuzzy: bool) -> Option<Value> {
    if fuzzy {
        if is_null(cell) {
            return None;
        }
        return match cell {
            Some(Value::String(s)) => Some(Value::String(normalize(s))),
            other => other.cloned(),
        };
    }
    cell.cloned()
}

pub(crate) fn run(req: &mut Request) -> Result<(), Fail> {
    let opts = InputOptions::from_params(req.params(), media_type_of(req, "bundle_ref"))?;
    let fuzzy = req.param_str("strategy")? == "fuzzy";
    let csv_out = req.param_str("output")? == "csv";
    let max_groups = param_count(req, "max_groups", 1000, 100_000)?;
    let key_names: Option<Vec<String>> = req
        .params()
        .get("key_columns")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        });
    let path = req.input_path("bundle_ref")?;
    let cap = output_cap(req);

    let mut table = Table::open(&path, &opts)?;
    let mut seen: HashMap<[u8; 16], (u64, Option<u32>)> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut rows = 0u64;
    if let Some(names) = &key_names
        && opts.format == crate::table::Format::Csv
        && names.iter().any(|n| !table.columns().contains(n))
    {
        return Err(missing_keys(names, table.columns()));
    }
    while let Some(row) = table.next_row()? {
        rows += 1;
        if rows > MAX_DEDUP_ROWS {
            return Err(Fail::new(
                WR_DEDUP_ERROR,
                format!(
                    "row {}: more than {MAX_DEDUP_ROWS} rows, the most find_duplicates tracks; split the dataset or deduplicate by key in engine.dba",
                    row.number
                ),
            ));
        }
        let mut hasher = Sha256::new();
        let mut key_values = Vec::new();
        match &key_names {
            Some(names) => {
                for name in names {
                    let i = table.columns().iter().position(|c| c == name);
                    let v = compared(
                        i.and_then(|i| row.cells.get(i)).and_then(Option::as_ref),
                        fuzzy,
                    );
                    feed(&mut hasher, 0, v.as_ref());
                    key_values.push(v.unwrap_or(Value::Null));
                }
            }
            None => {
                for (i, cell) in row.cells.iter().enumerate() {
                    let v = compared(cell.as_ref(), fuzzy);
                    if v.is_some() {
                        feed(&mut hasher, i as u64 + 1, v.as_ref());
                    }
                }
            }
        }
        let digest = hasher.finalize();
        let mut short = [0u8; 16];
        short.copy_from_slice(&digest[..16]);
        match seen.get_mut(&short) {
            None => {
                seen.insert(short, (row.number, None));
            }
            Some((first, slot)) => match slot {
                Some(g) => {
                    let group = &mut groups[*g as usize];
                    group.count += 1;
                    if group.rows.len() < MAX_ROWS_PER_GROUP {
                        group.rows.push(row.number);
                    }
                }
                None => {
                    *slot = Some(u32::try_from(groups.len()).unwrap_or(u32::MAX));
                    groups.push(Group {
                        first_row: *first,
                        count: 2,
                        rows: vec![*first, row.number],
                        key: key_values,
                    });
                }
            },
        }
    }
    if let Some(names) = &key_names {
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !table.columns().contains(n))
            .collect();
        if !missing.is_empty() {
            return Err(missing_keys(names, table.columns()));
        }
    }
    groups.sort_by_key(|g| g.first_row);
    let total_groups = groups.len() as u64;
    let duplicate_rows: u64 = groups.iter().map(|g| g.count - 1).sum();
    let truncated = total_groups > max_groups;
    groups.truncate(usize::try_from(max_groups).unwrap_or(usize::MAX));

    if csv_out {
        let mut out = Bounded::new(&cap);
        {
            let mut w = csv::Writer::from_writer(&mut out);
            let err = |e: csv::Error| match e.into_kind() {
                csv::ErrorKind::Io(io) => write_fail(&io, &cap),
                other => Fail::new("PROC_OUTPUT_ERROR", format!("cannot write CSV: {other:?}")),
            };
            w.write_record(["group", "row", "first_row", "count"])
                .map_err(err)?;
            for (gi, g) in groups.iter().enumerate() {
                for r in &g.rows {
                    w.write_record([
                        (gi + 1).to_string(),
                        r.to_string(),
                        g.first_row.to_string(),
                        g.count.to_string(),
                    ])
                    .map_err(err)?;
                }
            }
            w.flush().map_err(|e| write_fail(&e, &cap))?;
        }
        return req.write_output("duplicates.csv", "artifact.dataset", "text/csv", &out.buf);
    }
    let groups_json: Vec<Value> = groups
        .iter()
        .map(|g| {
            let mut o = Map::new();
            o.insert("first_row".into(), json!(g.first_row));
            o.insert("count".into(), json!(g.count));
            o.insert("rows".into(), json!(g.rows));
            o.insert(
                "rows_truncated".into(),
                json!(g.count > g.rows.len() as u64),
            );
            if let Some(names) = &key_names {
                let key: Map<String, Value> =
                    names.iter().cloned().zip(g.key.iter().cloned()).collect();
                o.insert("key".into(), Value::Object(key));
            }
            Value::Object(o)
        })
        .collect();
    let doc = json!({
        "engine": crate::ENGINE_ID,
        "operation": "wrangler.find_duplicates",
        "strategy": if fuzzy { "fuzzy" } else { "hash" },
        "key_columns": key_names,
        "rows_scanned": rows,
        "duplicate_groups": total_groups,
        "duplicate_rows": duplicate_rows,
        "groups": groups_json,
        "truncated": truncated,
    });
    let bytes = json_bytes(&doc, &cap)?;
    req.write_output(
        "duplicates.json",
        "artifact.dataset",
        "application/json",
        &bytes,
    )
}

/// Length-prefixed, tagged encoding of one compared cell.
fn feed(h: &mut Sha256, index: u64, v: Option<&Value>) {
    h.update(index.to_le_bytes());
    let text = match v {
        None => {
            h.update([0u8]);
            return;
        }
        Some(Value::String(s)) => {
            h.update([1u8]);
            s.clone()
        }
        Some(other) => {
            h.update([2u8]);
            other.to_string()
        }
    };
    h.update((text.len() as u64).to_le_bytes());
    h.update(text.as_bytes());
}

fn missing_keys(names: &[String], columns: &[String]) -> Fail {
    let missing: Vec<&String> = names.iter().filter(|n| !columns.contains(n)).collect();
    Fail::new(
        WR_DEDUP_ERROR,
        format!(
            "/params/key_columns: {missing:?} name no column of the dataset (its columns: {:?}); use the dataset's column names",
            columns.iter().take(50).collect::<Vec<_>>()
        ),
    )
}
