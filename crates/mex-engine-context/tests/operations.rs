//! The three operations on well-formed bundles: results, ordering, limits,
//! determinism and the typed refusals of bad params.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::{Jail, input, run_request, search};
use mex_engine_context::{
    CTX_IO_ERROR, CTX_QUERY_ERROR, CTX_SCOPE_DENIED, MAX_SNIPPET_BYTES, MAX_TOTAL_SNIPPET_BYTES,
};
use serde_json::json;

fn paths_lines(v: &serde_json::Value, key: &str) -> Vec<(String, u64)> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["path"].as_str().unwrap().to_owned(),
                m["line"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn sample() -> Jail {
    let j = Jail::new();
    j.file("b.txt", "one needle\ntwo\nthree needle needle\n");
    j.file("a/x.rs", "fn main() {}\n// needle here\n");
    j.file(".env", "needle=1\n");
    j.file(".gitignore", "b.txt\n.env\n");
    j.file("a/B.md", "needle\n");
    j
}

#[test]
fn literal_search_is_sorted_by_path_then_line_and_ignores_no_rule_files() {
    let j = sample();
    let v = j.json("context.search", search("needle", "literal", &[]));
    assert_eq!(
        paths_lines(&v, "matches"),
        vec![
            (".env".into(), 1),
            ("a/B.md".into(), 1),
            ("a/x.rs".into(), 2),
            ("b.txt".into(), 1),
            ("b.txt".into(), 3),
        ]
    );
    assert_eq!(v["truncated"], json!(false));
    assert_eq!(v["files_searched"], json!(5));
    let first = &v["matches"][2];
    assert_eq!(first["column"], json!(4));
    assert_eq!(first["text"], json!("// needle here"));
}

#[test]
fn literal_mode_does_not_interpret_regex_syntax() {
    let j = Jail::new();
    j.file("f.txt", "a.c\nabc\n");
    let lit = j.json("context.search", search("a.c", "literal", &[]));
    assert_eq!(paths_lines(&lit, "matches"), vec![("f.txt".into(), 1)]);
    let re = j.json("context.search", search("a.c", "regex", &[]));
    assert_eq!(re["matches"].as_array().unwrap().len(), 2);
}

#[test]
fn regex_search_reports_the_column_of_the_first_match() {
    let j = Jail::new();
    j.file("f.txt", "xx foo123 foo9\n");
    let v = j.json("context.search", search(r"foo\d+", "regex", &[]));
    assert_eq!(v["matches"][0]["column"], json!(4));
}

#[test]
fn k_bounds_the_matches_and_truncated_says_more_existed() {
    let j = sample();
    let mut p = search("needle", "literal", &[]);
    p["k"] = json!(2);
    let v = j.json("context.search", p.clone());
    assert_eq!(v["matches"].as_array().unwrap().len(), 2);
    assert_eq!(v["truncated"], json!(true));
    p["k"] = json!(5);
    let v = j.json("context.search", p);
    assert_eq!(v["matches"].as_array().unwrap().len(), 5);
    assert_eq!(
        v["truncated"],
        json!(false),
        "exactly k matches is not truncated"
    );
}

#[test]
fn k_above_the_ceiling_is_a_query_error() {
    let j = sample();
    let mut p = search("needle", "literal", &[]);
    p["k"] = json!(10_001);
    assert_eq!(j.fail("context.search", p).code, CTX_QUERY_ERROR);
}

#[test]
fn a_long_line_is_cut_to_the_snippet_budget_at_a_char_boundary() {
    let j = Jail::new();
    let line = format!("needle {}", "é".repeat(2000));
    j.file("f.txt", format!("{line}\n"));
    let v = j.json("context.search", search("needle", "literal", &[]));
    let text = v["matches"][0]["text"].as_str().unwrap();
    assert!(text.len() <= MAX_SNIPPET_BYTES && text.len() >= MAX_SNIPPET_BYTES - 1);
    assert!(text.starts_with("needle "));
    assert_eq!(v["matches"][0]["text_truncated"], json!(true));
}

#[test]
fn the_total_snippet_budget_stops_the_search() {
    let j = Jail::new();
    let line = format!("needle{}\n", "x".repeat(500));
    j.file("f.txt", line.repeat(3000));
    let mut p = search("needle", "literal", &[]);
    p["k"] = json!(10_000);
    let v = j.json("context.search", p);
    let total: usize = v["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().len())
        .sum();
    assert!(total <= MAX_TOTAL_SNIPPET_BYTES);
    assert!(v["matches"].as_array().unwrap().len() < 3000);
    assert_eq!(v["truncated"], json!(true));
}

#[test]
fn scopes_restrict_the_search_and_overlapping_scopes_do_not_duplicate() {
    let j = sample();
    let v = j.json(
        "context.search",
        search("needle", "literal", &["a", "a/x.rs", "./a/"]),
    );
    assert_eq!(
        paths_lines(&v, "matches"),
        vec![("a/B.md".into(), 1), ("a/x.rs".into(), 2)]
    );
    assert_eq!(v["scopes"], json!(["a", "a/x.rs", "a"]));
}

#[test]
fn a_missing_scope_is_an_io_error_and_an_escaping_one_is_denied() {
    let j = sample();
    let f = j.fail("context.search", search("needle", "literal", &["nope"]));
    assert_eq!(f.code, CTX_IO_ERROR);
    assert!(f.message.contains("/params/scopes/0"), "{}", f.message);
    for bad in ["../x", "/etc", "a/../../x", "a\\b", "a\u{202e}b"] {
        let f = j.fail("context.search", search("needle", "literal", &["a", bad]));
        assert_eq!(f.code, CTX_SCOPE_DENIED, "{bad}: {f:?}");
        assert!(f.message.contains("/params/scopes/1"), "{}", f.message);
    }
}

#[test]
fn semantic_mode_and_bad_patterns_are_query_errors() {
    let j = sample();
    let f = j.fail("context.search", search("needle", "semantic", &[]));
    assert_eq!(f.code, CTX_QUERY_ERROR);
    assert!(f.message.contains("semantic"));
    let f = j.fail("context.search", search("(unclosed", "regex", &[]));
    assert_eq!(f.code, CTX_QUERY_ERROR);
    assert!(f.message.contains("/params/query"));
    let f = j.fail("context.search", search(r"a\nb", "regex", &[]));
    assert_eq!(f.code, CTX_QUERY_ERROR, "multi-line patterns are refused");
}

#[test]
fn identical_inputs_give_identical_bytes_whatever_the_creation_order() {
    let names: Vec<String> = (0..200)
        .map(|i| format!("d{}/f{i:03}.txt", i % 7))
        .collect();
    let make = |rev: bool| {
        let j = Jail::new();
        let mut order = names.clone();
        if rev {
            order.reverse();
        }
        for n in &order {
            j.file(n, format!("TODO {n}\nneedle {n}\n"));
        }
        j
    };
    let (a, b) = (make(false), make(true));
    let p = search("needle", "literal", &[]);
    assert_eq!(
        a.run("context.search", p.clone()).unwrap(),
        b.run("context.search", p).unwrap()
    );
    let t = json!({"scopes": [], "output": "json"});
    assert_eq!(
        a.run("context.find_todos", t.clone()).unwrap(),
        b.run("context.find_todos", t).unwrap()
    );
}

#[test]
fn open_ref_returns_the_range_and_clamps_the_end() {
    let j = Jail::new();
    j.file("src/lib.rs", "l1\nl2\nl3\nl4");
    let ask = |s: u64, e: u64| json!({"file": "src/lib.rs", "range": {"start_line": s, "end_line": e}, "output": "text"});
    assert_eq!(j.run("context.open_ref", ask(2, 3)).unwrap(), b"l2\nl3\n");
    assert_eq!(j.run("context.open_ref", ask(3, 99)).unwrap(), b"l3\nl4");
    assert_eq!(j.run("context.open_ref", ask(4, 4)).unwrap(), b"l4");
    let f = j.fail("context.open_ref", ask(5, 6));
    assert_eq!(f.code, CTX_QUERY_ERROR);
    assert!(f.message.contains("has 4 lines"), "{}", f.message);
    let f = j.fail("context.open_ref", ask(3, 2));
    assert_eq!(f.code, CTX_QUERY_ERROR);
    assert!(f.message.contains("/params/range"));
}

#[test]
fn open_ref_finds_a_name_given_in_nfd_and_refuses_directories() {
    let j = Jail::new();
    j.file("caf\u{e9}.txt", "x\n");
    let v = json!({"file": "cafe\u{301}.txt", "range": {"start_line": 1, "end_line": 1}, "output": "text"});
    assert_eq!(j.run("context.open_ref", v).unwrap(), b"x\n");
    j.file("dir/f", "x");
    let v = json!({"file": "dir", "range": {"start_line": 1, "end_line": 1}, "output": "text"});
    assert_eq!(j.fail("context.open_ref", v).code, CTX_IO_ERROR);
}

#[test]
fn find_todos_lists_whole_word_markers_sorted() {
    let j = Jail::new();
    j.file("z.py", "# TODO: later\nTODOS are not markers\n");
    j.file("a.c", "/* FIXME x */\nint XXXL;\n// HACK\nXXX y\n");
    let v = j.json(
        "context.find_todos",
        json!({"scopes": [], "output": "json"}),
    );
    let got: Vec<(String, u64, String)> = v["todos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["path"].as_str().unwrap().to_owned(),
                t["line"].as_u64().unwrap(),
                t["marker"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("a.c".into(), 1, "FIXME".into()),
            ("a.c".into(), 3, "HACK".into()),
            ("a.c".into(), 4, "XXX".into()),
            ("z.py".into(), 1, "TODO".into()),
        ]
    );
    assert_eq!(v["todos"][3]["text"], json!("# TODO: later"));
}

#[test]
fn the_bundle_must_be_one_directory_input() {
    let j = sample();
    let p = search("needle", "literal", &[]);
    let none = j.request_with_inputs("context.search", p.clone(), vec![]);
    assert_eq!(run_request(none, &j.out()).unwrap_err().code, CTX_IO_ERROR);
    let two = j.request_with_inputs(
        "context.search",
        p.clone(),
        vec![input(&j.bundle(), "bundle"), input(&j.bundle(), "bundle")],
    );
    assert_eq!(run_request(two, &j.out()).unwrap_err().code, CTX_IO_ERROR);
    let index_only = j.request_with_inputs(
        "context.search",
        p,
        vec![input(&j.bundle().join("b.txt"), "bundle")],
    );
    let f = run_request(index_only, &j.out()).unwrap_err();
    assert_eq!(f.code, CTX_IO_ERROR);
    assert!(f.message.contains("directory tree"), "{}", f.message);
}

#[test]
fn an_unknown_operation_is_refused() {
    let j = sample();
    assert_eq!(j.fail("context.nope", json!({})).code, CTX_QUERY_ERROR);
}
