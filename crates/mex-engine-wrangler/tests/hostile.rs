//! Hostile inputs: each ends in a typed failure (or, for a regex built to
//! backtrack, a typed report), with memory bounded by the engine's bounds.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs, reason = "tests")]

mod common;

use std::io::Write;

use common::Jail;
use serde_json::json;

fn profile(j: &Jail, id: &str) -> mex_engine_sdk::Fail {
    j.fail(
        "wrangler.profile_dataset",
        json!({"dataset_ref": id, "output": "json", "metrics": ["count", "distinct"]}),
    )
}

#[test]
fn unbalanced_quote_is_a_parse_error_with_its_line() {
    let mut j = Jail::new();
    // The quote opened on line 3 swallows the rest of the file.
    let id = j.input(b"a,b\n1,2\n3,\"x\n4,5\n", "text/csv");
    let f = profile(&j, &id);
    assert_eq!(f.code, "WR_DATA_PARSE_ERROR");
    assert!(f.message.contains("unbalanced quote"), "{}", f.message);
    assert!(f.message.starts_with("line 3"), "{}", f.message);
    // Every operation refuses it, not only profile.
    let f = j.fail(
        "wrangler.convert_table",
        json!({"input_ref": id, "target": "jsonl", "output": "dataset"}),
    );
    assert_eq!(f.code, "WR_DATA_PARSE_ERROR");
}

#[test]
fn a_100_mb_field_crosses_the_record_bound() {
    let mut j = Jail::new();
    let path = j.path("huge.csv");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        f.write_all(b"a,b\n1,").unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..100 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b"\n").unwrap();
    }
    j.input_path("00000000-0000-4000-8000-000000000100", &path, "text/csv");
    let f = profile(&j, "00000000-0000-4000-8000-000000000100");
    assert_eq!(f.code, "WR_LIMIT_EXCEEDED");
    assert!(f.message.contains("row 1"), "{}", f.message);
    assert!(
        f.message
            .contains(&mex_engine_wrangler::MAX_RECORD_BYTES.to_string())
    );
}

#[test]
fn a_100_mb_json_line_crosses_the_record_bound() {
    let mut j = Jail::new();
    let path = j.path("huge.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        f.write_all(b"{\"a\":\"").unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..100 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b"\"}\n").unwrap();
    }
    j.input_path(
        "00000000-0000-4000-8000-000000000101",
        &path,
        "application/x-ndjson",
    );
    let f = j.fail(
        "wrangler.find_duplicates",
        json!({"bundle_ref": "00000000-0000-4000-8000-000000000101", "strategy": "hash", "output": "json"}),
    );
    assert_eq!(f.code, "WR_LIMIT_EXCEEDED");
}

#[test]
fn a_line_with_a_million_columns_crosses_the_column_bound() {
    let mut j = Jail::new();
    let mut line = "c,".repeat(1_000_000);
    line.pop();
    line.push('\n');
    let id = j.input(line.as_bytes(), "text/csv");
    let f = profile(&j, &id);
    assert_eq!(f.code, "WR_LIMIT_EXCEEDED");
    assert!(f.message.contains("1000000 columns"), "{}", f.message);
    assert!(f.message.starts_with("line 1"), "{}", f.message);

    // Same as a data row under a short header.
    let mut data = b"a\n".to_vec();
    data.extend_from_slice(line.as_bytes());
    let id = j.input(&data, "text/csv");
    let f = profile(&j, &id);
    assert_eq!(f.code, "WR_LIMIT_EXCEEDED");
    assert!(f.message.contains("row 1 (line 2)"), "{}", f.message);
}

#[test]
fn invalid_utf8_names_its_byte_offset() {
    let mut j = Jail::new();
    let id = j.input(b"a\nok\nbad\xff\xfe\n", "text/csv");
    let f = profile(&j, &id);
    assert_eq!(f.code, "WR_DATA_PARSE_ERROR");
    assert!(f.message.contains("offset 8"), "{}", f.message);
    assert!(f.message.contains("params.encoding"), "{}", f.message);
    // Truncated UTF-16 (odd byte count) is malformed too.
    let id = j.input(b"\xff\xfea\x00\n\x00x", "text/csv");
    assert_eq!(profile(&j, &id).code, "WR_DATA_PARSE_ERROR");
}

#[test]
fn json_nesting_bombs_are_parse_errors() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let mut j = Jail::new();
    let id = j.input(deep.as_bytes(), "application/json");
    let f = profile(&j, &id);
    assert_eq!(f.code, "WR_DATA_PARSE_ERROR");
    assert!(f.message.contains("recursion limit"), "{}", f.message);

    let line = format!(
        "{{\"a\":{}1{}}}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let id = j.input(line.as_bytes(), "application/x-ndjson");
    let f = profile(&j, &id);
    assert_eq!(f.code, "WR_DATA_PARSE_ERROR");
    assert!(f.message.starts_with("line 1"), "{}", f.message);

    // In the expectations document too.
    let data = j.input(b"a\n1\n", "text/csv");
    let exp = j.input(
        format!("{{\"json_schema\":{}}}", deep).as_bytes(),
        "application/json",
    );
    let f = j.fail(
        "wrangler.validate_dataset",
        json!({"dataset_ref": data, "expectations_ref": exp, "output": "json"}),
    );
    assert_eq!(f.code, "WR_DATA_PARSE_ERROR");
}

#[test]
fn a_json_document_over_its_bound_is_refused() {
    let mut j = Jail::new();
    let path = j.path("big.json");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        f.write_all(b"[").unwrap();
        let row = b"{\"a\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"},";
        let n = mex_engine_wrangler::MAX_JSON_DOCUMENT_BYTES as usize / row.len() + 10;
        for _ in 0..n {
            f.write_all(row).unwrap();
        }
        f.write_all(b"{}]").unwrap();
    }
    j.input_path(
        "00000000-0000-4000-8000-000000000102",
        &path,
        "application/json",
    );
    let f = profile(&j, "00000000-0000-4000-8000-000000000102");
    assert_eq!(f.code, "WR_LIMIT_EXCEEDED");
    assert!(f.message.contains("JSON Lines"), "{}", f.message);
}

#[test]
fn pathological_regexes_run_in_linear_time_or_are_refused() {
    let mut j = Jail::new();
    // A classic catastrophic-backtracking pattern: on the linear engine it
    // just does not match, and the row is reported.
    let long = format!("v\n{}!\n", "a".repeat(100_000));
    let data = j.input(long.as_bytes(), "text/csv");
    let exp = j.input(
        br#"{"json_schema":{"properties":{"v":{"type":"string","pattern":"^(a+)+$"}}},"columns":[{"name":"v","pattern":"^(a|aa)+$"}]}"#,
        "application/json",
    );
    let r = j.run_json(
        "wrangler.validate_dataset",
        json!({"dataset_ref": data, "expectations_ref": exp, "output": "json"}),
    );
    assert_eq!(r["violation_count"], 2);
    let rules: Vec<&str> = r["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["json_schema", "pattern"]);

    // A pattern whose compiled form explodes: refused before any row.
    let exp = j.input(
        br#"{"columns":[{"name":"v","pattern":"(\\w{1000}){1000}"}]}"#,
        "application/json",
    );
    let f = j.fail(
        "wrangler.validate_dataset",
        json!({"dataset_ref": data, "expectations_ref": exp, "output": "json"}),
    );
    assert_eq!(f.code, "WR_LIMIT_EXCEEDED");
    assert!(f.message.contains("/columns/0/pattern"), "{}", f.message);

    let exp = j.input(
        br#"{"json_schema":{"properties":{"v":{"pattern":"(\\w{1000}){1000}"}}}}"#,
        "application/json",
    );
    let f = j.fail(
        "wrangler.validate_dataset",
        json!({"dataset_ref": data, "expectations_ref": exp, "output": "json"}),
    );
    assert_eq!(f.code, "WR_DATA_PARSE_ERROR");
    assert!(f.message.contains("/json_schema"), "{}", f.message);

    // Look-around needs backtracking: refused, with the reason.
    let exp = j.input(
        br#"{"columns":[{"name":"v","pattern":"(?=a)a"}]}"#,
        "application/json",
    );
    let f = j.fail(
        "wrangler.validate_dataset",
        json!({"dataset_ref": data, "expectations_ref": exp, "output": "json"}),
    );
    assert_eq!(f.code, "WR_DATA_PARSE_ERROR");
    assert!(f.message.contains("look-around"), "{}", f.message);
}

/// A CSV of `rows` good rows, then a quote that is never closed: an
/// operation that reads the whole input fails `WR_DATA_PARSE_ERROR`.
fn big_csv_with_a_bad_tail(rows: usize) -> Vec<u8> {
    let mut csv = b"a,b\n".to_vec();
    for i in 0..rows {
        writeln!(csv, "{i},{}", i * 7).unwrap();
    }
    csv.extend_from_slice(b"9,\"never closed\n");
    csv
}

fn spilled(j: &Jail) -> Option<u64> {
    std::fs::metadata(
        j.path("out")
            .join(mex_engine_wrangler::output::OVER_BUDGET_FILE),
    )
    .ok()
    .map(|m| m.len())
}

#[test]
fn crossing_the_output_budget_stops_the_run_before_the_rest_of_the_input() {
    // The first write past the run's output_bytes budget ends the
    // operation: the malformed tail of the input is never reached (a full
    // pass would fail WR_DATA_PARSE_ERROR instead), and the output
    // directory holds one spill just past the budget, which in the jail
    // trips the file-size limit (RUNTIME.OUTPUT_BUDGET_EXCEEDED).
    for (target, slack) in [("json", 64), ("jsonl", 64), ("csv", 16 << 10)] {
        let mut j = Jail::new();
        j.output_bytes = 1000;
        let id = j.input(&big_csv_with_a_bad_tail(50_000), "text/csv");
        let f = j.fail(
            "wrangler.convert_table",
            json!({"input_ref": id, "target": target, "output": "dataset"}),
        );
        assert_eq!(f.code, "WR_LIMIT_EXCEEDED", "{target}: {}", f.message);
        assert!(f.message.contains("output_bytes budget"), "{}", f.message);
        let size = spilled(&j).unwrap_or_else(|| panic!("{target}: no spill"));
        assert!(size > 1000 && size <= 1000 + slack, "{target}: {size}");
    }
}

#[test]
fn a_one_byte_budget_spills_the_report_of_every_operation() {
    // The conformance case `budget.output_bytes` (budget 1) on each
    // operation: the report crosses the budget at its first write.
    let ops = [
        (
            "wrangler.profile_dataset",
            json!({"output": "json", "metrics": ["count"]}),
        ),
        (
            "wrangler.profile_dataset",
            json!({"output": "html", "metrics": ["count"]}),
        ),
        (
            "wrangler.find_duplicates",
            json!({"strategy": "hash", "output": "json"}),
        ),
        (
            "wrangler.find_duplicates",
            json!({"strategy": "hash", "output": "csv"}),
        ),
        (
            "wrangler.convert_table",
            json!({"target": "jsonl", "output": "dataset"}),
        ),
    ];
    for (op, extra) in ops {
        let mut j = Jail::new();
        j.output_bytes = 1;
        let id = j.input(b"a,b\n1,2\n1,2\n", "text/csv");
        let mut params = extra.clone();
        let key = match op {
            "wrangler.convert_table" => "input_ref",
            "wrangler.find_duplicates" => "bundle_ref",
            _ => "dataset_ref",
        };
        params[key] = json!(id);
        let f = j.fail(op, params);
        assert_eq!(f.code, "WR_LIMIT_EXCEEDED", "{op} {extra}: {}", f.message);
        assert!(spilled(&j).is_some_and(|n| n > 1), "{op} {extra}");
    }
    let mut j = Jail::new();
    j.output_bytes = 1;
    let data = j.input(b"id,age\n1,2\n", "text/csv");
    let exp = j.input(
        br#"{"columns":[{"name":"id","type":"integer"}]}"#,
        "application/json",
    );
    let f = j.fail(
        "wrangler.validate_dataset",
        json!({"dataset_ref": data, "expectations_ref": exp, "output": "json"}),
    );
    assert_eq!(f.code, "WR_LIMIT_EXCEEDED", "{}", f.message);
    assert!(spilled(&j).is_some_and(|n| n > 1));
}

#[test]
fn an_output_within_the_budget_is_written_whole_and_nothing_spills() {
    let mut j = Jail::new();
    let csv = "a,b\n".to_owned() + &"1,2\n".repeat(1000);
    let id = j.input(csv.as_bytes(), "text/csv");
    let params = json!({"input_ref": id, "target": "json", "output": "dataset"});
    let whole = j.run("wrangler.convert_table", params.clone()).unwrap();
    let size = whole[0].2.len() as u64;
    // Exactly the budget is allowed; one byte less is an overrun.
    j.output_bytes = size;
    let outs = j.run("wrangler.convert_table", params.clone()).unwrap();
    assert_eq!(outs[0].2, whole[0].2);
    assert_eq!(spilled(&j), None);
    j.output_bytes = size - 1;
    let f = j.fail("wrangler.convert_table", params);
    assert_eq!(f.code, "WR_LIMIT_EXCEEDED");
    assert_eq!(spilled(&j), Some(size));
}
