//! Hostile bundles and queries: each ends in a typed outcome (a result
//! within the limits, or a CTX_* failure), never a panic or an unbounded
//! allocation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use std::os::unix::ffi::OsStrExt;

use common::{Jail, search};
use mex_engine_context::{CTX_IO_ERROR, CTX_QUERY_ERROR, CTX_SCOPE_DENIED};
use serde_json::json;

#[test]
fn nested_stars_run_in_linear_time_and_find_nothing() {
    let j = Jail::new();
    j.file("a.txt", format!("{}\n", "a".repeat(200_000)).repeat(5));
    let v = j.json("context.search", search("(a*)*b", "regex", &[]));
    assert_eq!(v["matches"], json!([]));
    assert_eq!(v["truncated"], json!(false));
}

#[test]
fn a_huge_counted_repetition_is_a_query_error() {
    let j = Jail::new();
    j.file("a.txt", "aaa\n");
    for bomb in ["a{1000}{1000}", "(?:\\w{100}){100}{100}", "[a-z]{65535}"] {
        let f = j.fail("context.search", search(bomb, "regex", &[]));
        assert_eq!(f.code, CTX_QUERY_ERROR, "{bomb}: {f:?}");
        assert!(f.message.contains("/params/query"), "{}", f.message);
    }
}

#[test]
fn deep_nesting_is_a_query_error() {
    let j = Jail::new();
    j.file("a.txt", "aaa\n");
    let bomb = format!("{}a{}", "(".repeat(500), ")".repeat(500));
    assert_eq!(
        j.fail("context.search", search(&bomb, "regex", &[])).code,
        CTX_QUERY_ERROR
    );
}

#[test]
fn a_binary_file_is_counted_and_its_matches_dropped() {
    let j = Jail::new();
    j.file("bin.dat", b"needle\n\x00\x01\x02needle\n");
    j.file("text.txt", "needle\n");
    let v = j.json("context.search", search("needle", "literal", &[]));
    assert_eq!(v["files_binary"], json!(1));
    assert_eq!(v["matches"].as_array().unwrap().len(), 1);
    assert_eq!(v["matches"][0]["path"], json!("text.txt"));
}

#[test]
fn a_100_mb_single_line_is_an_io_error_for_search_and_bounded_for_open_ref() {
    let j = Jail::new();
    let mut line = vec![b'x'; 100 << 20];
    line.extend_from_slice(b"needle");
    j.file("huge.min.js", &line);
    drop(line);
    let f = j.fail("context.search", search("needle", "literal", &[]));
    assert_eq!(f.code, CTX_IO_ERROR);
    assert!(f.message.contains("huge.min.js"), "{}", f.message);
    let f = j.fail(
        "context.find_todos",
        json!({"scopes": [], "output": "json"}),
    );
    assert_eq!(f.code, CTX_IO_ERROR);
    // open_ref reads in chunks: line 1 is over the range limit, line 2 is
    // past the end; neither holds the line in memory.
    let ask = |s: u64| json!({"file": "huge.min.js", "range": {"start_line": s, "end_line": s}, "output": "text"});
    assert_eq!(j.fail("context.open_ref", ask(1)).code, CTX_QUERY_ERROR);
    let f = j.fail("context.open_ref", ask(2));
    assert_eq!(f.code, CTX_QUERY_ERROR);
    assert!(f.message.contains("has 1 lines"), "{}", f.message);
}

#[test]
fn ten_thousand_files_come_back_in_path_order() {
    let j = Jail::new();
    let mut expect = Vec::new();
    for i in 0..10_000 {
        let name = format!("d{:02}/f{i:05}.txt", i % 97);
        j.file(&name, format!("line\nneedle {i}\n"));
        expect.push(name);
    }
    expect.sort();
    let mut p = search("needle", "literal", &[]);
    p["k"] = json!(10_000);
    let v = j.json("context.search", p);
    assert_eq!(v["files_searched"], json!(10_000));
    assert_eq!(v["truncated"], json!(false));
    let got: Vec<&str> = v["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    assert_eq!(got, expect);
}

#[test]
fn path_traversal_in_open_ref_is_denied() {
    let j = Jail::new();
    j.file("a/f.txt", "x\n");
    std::fs::write(j.dir.path().join("secret"), "s\n").unwrap();
    let ask =
        |f: &str| json!({"file": f, "range": {"start_line": 1, "end_line": 1}, "output": "text"});
    for bad in [
        "../secret",
        "a/../../secret",
        "/etc/passwd",
        "a\\..\\..\\secret",
        "C:secret",
        "a/\u{0}x",
    ] {
        let f = j.fail("context.open_ref", ask(bad));
        assert_eq!(f.code, CTX_SCOPE_DENIED, "{bad}: {f:?}");
        assert!(f.message.contains("/params/file"), "{}", f.message);
    }
}

#[test]
fn symlinks_out_of_the_bundle_are_not_followed() {
    let j = Jail::new();
    std::fs::write(j.dir.path().join("secret"), "needle secret\n").unwrap();
    std::os::unix::fs::symlink(j.dir.path().join("secret"), j.bundle().join("link")).unwrap();
    std::os::unix::fs::symlink(j.dir.path(), j.bundle().join("up")).unwrap();
    let ask =
        |f: &str| json!({"file": f, "range": {"start_line": 1, "end_line": 1}, "output": "text"});
    assert_eq!(
        j.fail("context.open_ref", ask("link")).code,
        CTX_SCOPE_DENIED
    );
    assert_eq!(
        j.fail("context.open_ref", ask("up/secret")).code,
        CTX_SCOPE_DENIED
    );
    let f = j.fail("context.search", search("needle", "literal", &[]));
    assert_eq!(f.code, CTX_IO_ERROR);
    assert!(f.message.contains("symlink"), "{}", f.message);
    assert_eq!(
        j.fail("context.search", search("needle", "literal", &["up"]))
            .code,
        CTX_SCOPE_DENIED
    );
}

#[test]
fn a_symlink_loop_in_the_bundle_is_an_io_error() {
    let j = Jail::new();
    j.file("d/f.txt", "needle\n");
    std::os::unix::fs::symlink(j.bundle().join("d"), j.bundle().join("d/loop")).unwrap();
    std::os::unix::fs::symlink("b", j.bundle().join("a")).unwrap();
    std::os::unix::fs::symlink("a", j.bundle().join("b")).unwrap();
    let f = j.fail("context.search", search("needle", "literal", &[]));
    assert_eq!(f.code, CTX_IO_ERROR);
    let f = j.fail(
        "context.find_todos",
        json!({"scopes": ["d"], "output": "json"}),
    );
    assert_eq!(f.code, CTX_IO_ERROR);
}

#[test]
fn a_file_name_that_is_not_utf8_is_an_io_error() {
    let j = Jail::new();
    j.file("ok.txt", "needle\n");
    let name = std::ffi::OsStr::from_bytes(b"bad\xff\xfe.txt");
    std::fs::write(j.bundle().join(name), "needle\n").unwrap();
    let f = j.fail("context.search", search("needle", "literal", &[]));
    assert_eq!(f.code, CTX_IO_ERROR);
    assert!(f.message.contains("not UTF-8"), "{}", f.message);
}

#[test]
fn a_file_name_the_store_rules_refuse_is_an_io_error() {
    let j = Jail::new();
    // NFD on disk: not the canonical (NFC) spelling a bundle holds.
    j.file("cafe\u{301}.txt", "needle\n");
    let f = j.fail("context.search", search("needle", "literal", &[]));
    assert_eq!(f.code, CTX_IO_ERROR);
    assert!(f.message.contains("path rules"), "{}", f.message);
}

#[test]
fn contents_that_are_not_utf8_are_reported_with_replacement_characters() {
    let j = Jail::new();
    j.file("latin1.txt", b"caf\xe9 needle \xff\n");
    let v = j.json("context.search", search("needle", "literal", &[]));
    assert_eq!(
        v["matches"][0]["text"],
        json!("caf\u{fffd} needle \u{fffd}")
    );
    assert_eq!(v["matches"][0]["column"], json!(6));
}
