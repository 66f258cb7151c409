//! Each operation's behaviour on small, known datasets.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs, reason = "tests")]

mod common;

use common::Jail;
use serde_json::json;

const PEOPLE: &[u8] = b"id,name,age\n1,Ada,36\n2,Bob,\n3,ada ,41\n1,Ada,36\n";

#[test]
fn validate_reports_every_violation_with_row_line_and_column() {
    let mut j = Jail::new();
    let data = j.input(PEOPLE, "text/csv");
    let exp = j.input(
        br#"{"columns":[
            {"name":"id","type":"integer","unique":true},
            {"name":"age","type":"integer","nullable":false,"min":0,"max":40},
            {"name":"name","pattern":"^[A-Z][a-z]+$"},
            {"name":"email"}]}"#,
        "application/json",
    );
    let r = j.run_json(
        "wrangler.validate_dataset",
        json!({"dataset_ref": data, "expectations_ref": exp, "output": "json"}),
    );
    assert_eq!(r["valid"], false);
    assert_eq!(r["rows_checked"], 4);
    let v: Vec<(serde_json::Value, serde_json::Value, String)> = r["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["row"].clone(),
                v["column"].clone(),
                v["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        v.contains(&(json!(null), json!("email"), "required".into())),
        "{v:?}"
    );
    assert!(
        v.contains(&(json!(2), json!("age"), "nullable".into())),
        "{v:?}"
    );
    assert!(v.contains(&(json!(3), json!("age"), "max".into())), "{v:?}");
    assert!(
        v.contains(&(json!(3), json!("name"), "pattern".into())),
        "{v:?}"
    );
    assert!(
        v.contains(&(json!(4), json!("id"), "unique".into())),
        "{v:?}"
    );
    assert_eq!(r["violation_count"], 5);
    assert_eq!(r["truncated"], false);
    // The line is the source line (the header is line 1).
    let age = r["violations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["rule"] == "max")
        .unwrap();
    assert_eq!(age["line"], 4);
}

#[test]
fn validate_with_json_schema_and_truncation() {
    let mut j = Jail::new();
    let data = j.input(
        b"{\"a\":1}\n{\"a\":\"x\"}\n{\"a\":\"y\"}\n{}\n",
        "application/x-ndjson",
    );
    let exp = j.input(
        br#"{"json_schema":{"type":"object","required":["a"],"properties":{"a":{"type":"integer"}}}}"#,
        "application/json",
    );
    let r = j.run_json(
        "wrangler.validate_dataset",
        json!({"dataset_ref": data, "expectations_ref": exp, "output": "json", "max_violations": 2}),
    );
    assert_eq!(r["violation_count"], 3);
    assert_eq!(r["truncated"], true);
    let kept = r["violations"].as_array().unwrap();
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0]["row"], 2);
    assert_eq!(kept[0]["column"], "a");
    assert_eq!(kept[0]["line"], 2);
}

#[test]
fn validate_fail_mode_is_a_typed_failure() {
    let mut j = Jail::new();
    let data = j.input(PEOPLE, "text/csv");
    let exp = j.input(
        br#"{"columns":[{"name":"age","nullable":false}]}"#,
        "application/json",
    );
    let f = j.fail(
        "wrangler.validate_dataset",
        json!({"dataset_ref": data, "expectations_ref": exp, "output": "json", "on_violation": "fail"}),
    );
    assert_eq!(f.code, "WR_EXPECTATION_FAILED");
    assert!(f.message.contains("row 2"), "{}", f.message);
}

#[test]
fn validate_html_escapes_values() {
    let mut j = Jail::new();
    let data = j.input(b"x\n<script>\n", "text/csv");
    let exp = j.input(
        br#"{"columns":[{"name":"x","type":"integer"}]}"#,
        "application/json",
    );
    let outs = j
        .run(
            "wrangler.validate_dataset",
            json!({"dataset_ref": data, "expectations_ref": exp, "output": "html"}),
        )
        .unwrap();
    let html = String::from_utf8(outs[0].2.clone()).unwrap();
    assert_eq!(outs[0].1, "text/html");
    assert!(html.contains("&lt;script&gt;"));
    assert!(!html.contains("<script>"));
}

#[test]
fn bad_expectations_say_where() {
    let mut j = Jail::new();
    let data = j.input(PEOPLE, "text/csv");
    let exp = j.input(
        br#"{"columns":[{"name":"age","typo":1}]}"#,
        "application/json",
    );
    let f = j.fail(
        "wrangler.validate_dataset",
        json!({"dataset_ref": data, "expectations_ref": exp, "output": "json"}),
    );
    assert_eq!(f.code, "WR_DATA_PARSE_ERROR");
    assert!(f.message.contains("/columns/0"), "{}", f.message);
}

#[test]
fn convert_csv_jsonl_csv_round_trips() {
    let mut j = Jail::new();
    let csv_in: &[u8] = b"a,b\n1,\"x, y\"\n2,\"say \"\"hi\"\"\"\n";
    let id = j.input(csv_in, "text/csv");
    let outs = j
        .run(
            "wrangler.convert_table",
            json!({"input_ref": id, "target": "jsonl", "output": "dataset"}),
        )
        .unwrap();
    assert_eq!(outs[0].0, "table.jsonl");
    let jsonl = outs[0].2.clone();
    assert_eq!(
        String::from_utf8(jsonl.clone()).unwrap(),
        "{\"a\":\"1\",\"b\":\"x, y\"}\n{\"a\":\"2\",\"b\":\"say \\\"hi\\\"\"}\n"
    );
    let mut j2 = Jail::new();
    let id2 = j2.input(&jsonl, "application/x-ndjson");
    let back = j2
        .run(
            "wrangler.convert_table",
            json!({"input_ref": id2, "target": "csv", "output": "dataset"}),
        )
        .unwrap();
    assert_eq!(back[0].2, csv_in);
}

#[test]
fn convert_typed_json_with_delimiters_and_encodings() {
    // Latin-1 input with ';' delimiter, inferred types, to a JSON array.
    let mut j = Jail::new();
    let id = j.input(b"name;n;ok\ncaf\xe9;1.5;true\n", "text/csv");
    let r = j.run_json(
        "wrangler.convert_table",
        json!({"input_ref": id, "target": "json", "output": "dataset", "delimiter": ";", "encoding": "latin-1", "infer_types": true}),
    );
    assert_eq!(r, json!([{"name": "café", "n": 1.5, "ok": true}]));

    // UTF-16LE with a BOM, detected automatically; tab-separated output, quoting always.
    let text = "k,v\nä,1\n";
    let mut bytes = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    let mut j = Jail::new();
    let id = j.input(&bytes, "text/csv");
    let outs = j
        .run(
            "wrangler.convert_table",
            json!({"input_ref": id, "target": "csv", "output": "dataset", "target_delimiter": "\t", "quote_style": "always"}),
        )
        .unwrap();
    assert_eq!(
        String::from_utf8(outs[0].2.clone()).unwrap(),
        "\"k\"\t\"v\"\n\"ä\"\t\"1\"\n"
    );
}

#[test]
fn convert_json_to_csv_takes_the_union_of_columns() {
    let mut j = Jail::new();
    let id = j.input(
        br#"[{"b":1,"a":"x"},{"c":{"n":[1]},"a":null}]"#,
        "application/json",
    );
    let outs = j
        .run(
            "wrangler.convert_table",
            json!({"input_ref": id, "target": "csv", "output": "dataset"}),
        )
        .unwrap();
    assert_eq!(
        String::from_utf8(outs[0].2.clone()).unwrap(),
        "a,b,c\nx,1,\n,,\"{\"\"n\"\":[1]}\"\n"
    );
}

#[test]
fn find_exact_and_key_duplicates() {
    let mut j = Jail::new();
    let id = j.input(PEOPLE, "text/csv");
    let r = j.run_json(
        "wrangler.find_duplicates",
        json!({"bundle_ref": id, "strategy": "hash", "output": "json"}),
    );
    assert_eq!(r["duplicate_groups"], 1);
    assert_eq!(r["groups"][0]["rows"], json!([1, 4]));
    assert_eq!(r["duplicate_rows"], 1);

    let r = j.run_json(
        "wrangler.find_duplicates",
        json!({"bundle_ref": id, "strategy": "fuzzy", "output": "json", "key_columns": ["name"]}),
    );
    // "Ada", "ada " and "Ada" are one name after normalizing.
    assert_eq!(r["groups"][0]["rows"], json!([1, 3, 4]));
    assert_eq!(r["groups"][0]["key"], json!({"name": "ada"}));

    let r = j.run_json(
        "wrangler.find_duplicates",
        json!({"bundle_ref": id, "strategy": "hash", "output": "json", "key_columns": ["name"]}),
    );
    assert_eq!(r["groups"][0]["rows"], json!([1, 4]));

    let outs = j
        .run(
            "wrangler.find_duplicates",
            json!({"bundle_ref": id, "strategy": "hash", "output": "csv"}),
        )
        .unwrap();
    assert_eq!(
        String::from_utf8(outs[0].2.clone()).unwrap(),
        "group,row,first_row,count\n1,1,1,2\n1,4,1,2\n"
    );
}

#[test]
fn find_duplicates_unknown_key_is_typed() {
    let mut j = Jail::new();
    let id = j.input(PEOPLE, "text/csv");
    let f = j.fail(
        "wrangler.find_duplicates",
        json!({"bundle_ref": id, "strategy": "hash", "output": "json", "key_columns": ["nope"]}),
    );
    assert_eq!(f.code, "WR_DEDUP_ERROR");
    assert!(f.message.contains("nope"));
}

#[test]
fn profile_types_nulls_ranges_distinct_histogram() {
    let mut j = Jail::new();
    let id = j.input(PEOPLE, "text/csv");
    let r = j.run_json(
        "wrangler.profile_dataset",
        json!({"dataset_ref": id, "output": "json", "metrics": ["count", "nulls", "distinct", "min", "max", "mean", "stddev", "histogram"]}),
    );
    assert_eq!(r["rows"], 4);
    let cols = r["columns"].as_array().unwrap();
    let age = &cols[2];
    assert_eq!(age["name"], "age");
    assert_eq!(age["type"], "integer");
    assert_eq!(age["count"], 3);
    assert_eq!(age["nulls"], 1);
    assert_eq!(age["distinct"], 2);
    assert_eq!(age["distinct_exact"], true);
    assert_eq!(age["min"], 36);
    assert_eq!(age["max"], 41);
    let mean = age["mean"].as_f64().unwrap();
    assert!((mean - 113.0 / 3.0).abs() < 1e-9);
    assert_eq!(
        age["histogram"]["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .sum::<u64>(),
        3
    );
    let name = &cols[1];
    assert_eq!(name["type"], "string");
    assert_eq!(name["min"], "Ada");
    assert_eq!(name["max"], "ada ");
    assert_eq!(name["mean"], serde_json::Value::Null);
}

#[test]
fn profile_distinct_is_a_bound_past_the_limit() {
    let mut csv = String::from("v\n");
    for i in 0..(mex_engine_wrangler::MAX_DISTINCT_PER_COLUMN + 5) {
        csv.push_str(&format!("{i}\n"));
    }
    let mut j = Jail::new();
    let id = j.input(csv.as_bytes(), "text/csv");
    let r = j.run_json(
        "wrangler.profile_dataset",
        json!({"dataset_ref": id, "output": "json", "metrics": ["distinct"]}),
    );
    let c = &r["columns"][0];
    assert_eq!(c["distinct_exact"], false);
    assert_eq!(
        c["distinct"],
        mex_engine_wrangler::MAX_DISTINCT_PER_COLUMN + 1
    );
    assert_eq!(
        c["distinct_bound"],
        mex_engine_wrangler::MAX_DISTINCT_PER_COLUMN
    );
}

#[test]
fn outputs_are_byte_identical_across_runs() {
    let mut j = Jail::new();
    let id = j.input(PEOPLE, "text/csv");
    let params = json!({"dataset_ref": id, "output": "json", "metrics": ["count", "distinct", "mean", "stddev", "histogram"]});
    let a = j.run("wrangler.profile_dataset", params.clone()).unwrap();
    let b = j.run("wrangler.profile_dataset", params).unwrap();
    assert_eq!(a, b);
}

#[test]
fn format_must_be_known() {
    let mut j = Jail::new();
    let id = j.input(PEOPLE, "application/octet-stream");
    let f = j.fail(
        "wrangler.profile_dataset",
        json!({"dataset_ref": id, "output": "json", "metrics": ["count"]}),
    );
    assert_eq!(f.code, "WR_DATA_PARSE_ERROR");
    assert!(f.message.contains("params.format"));
    let r = j.run_json(
        "wrangler.profile_dataset",
        json!({"dataset_ref": id, "output": "json", "metrics": ["count"], "format": "csv"}),
    );
    assert_eq!(r["rows"], 4);
}
