//! One home for each rule: tidy tests that fail when a second copy of a
//! small rule appears in the product's source (`crates/*/src`, `xtask/src`;
//! unit-test modules and `tests/` directories are not product code and are
//! skipped). Each test names the home, checks the home still holds the rule
//! (so it cannot pass vacuously), and lists every other file that has a copy.
//!
//! | rule | home |
//! |---|---|
//! | JSON-pointer escaping, serde path to pointer | `crates/mex-envelope/src/pointer.rs` |
//! | denial codes and their meanings | one `(code, meaning)` table per gate family: `CODES` in mex-gates, `GATE_CODES` in each engine crate |
//! | relative-path validation | `crates/mex-artifacts/src/path.rs` (`RelPath`) |
//! | the published-schema list | `crates/mex-cli/src/lib.rs` (`published_schemas`) |
//! | the conformance front end | `crates/mex-cli/src/commands.rs` (`mex conformance`; `cargo xtask conformance` runs it) |
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every product source file as `(path relative to the workspace, text)`,
/// without its `#[cfg(test)] mod tests` tail.
fn product_sources() -> Vec<(String, String)> {
    let root = root();
    let mut dirs = vec![root.join("xtask/src")];
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        dirs.push(entry.unwrap().path().join("src"));
    }
    let mut files = Vec::new();
    for dir in dirs {
        rust_files(&dir, &mut files);
    }
    files.sort();
    assert!(files.len() > 20, "found only {} source files", files.len());
    files
        .into_iter()
        .map(|path| {
            let mut text = std::fs::read_to_string(&path).unwrap();
            if let Some(at) = text.find("#[cfg(test)]\nmod tests") {
                text.truncate(at);
            }
            let rel = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, text)
        })
        .collect()
}

/// The files whose text contains `needle`.
fn files_containing(sources: &[(String, String)], needle: &str) -> Vec<String> {
    sources
        .iter()
        .filter(|(_, text)| text.contains(needle))
        .map(|(path, _)| path.clone())
        .collect()
}

/// Each needle occurs in the home file and in no other product file.
fn only_in(home: &str, needles: &[&str], what: &str) {
    let sources = product_sources();
    for needle in needles {
        let found = files_containing(&sources, needle);
        assert!(
            found.iter().any(|f| f == home),
            "{home} no longer contains {needle:?}; if {what} moved, update this test to name its new home"
        );
        let copies: Vec<_> = found.iter().filter(|f| *f != home).collect();
        assert!(
            copies.is_empty(),
            "{what} has one home, {home}, but {needle:?} also appears in {copies:?}; call the home instead of writing a copy"
        );
    }
}

#[test]
fn json_pointer_escaping_has_one_home() {
    only_in(
        "crates/mex-envelope/src/pointer.rs",
        &["\"~0\"", "\"~1\""],
        "JSON-pointer escaping (RFC 6901)",
    );
}

#[test]
fn serde_path_to_pointer_has_one_home() {
    only_in(
        "crates/mex-envelope/src/pointer.rs",
        &["Segment::Map", "Segment::Seq"],
        "the serde path to JSON pointer conversion",
    );
}

#[test]
fn relative_path_validation_has_one_home() {
    only_in(
        "crates/mex-artifacts/src/path.rs",
        &["== \"..\"", "fn looks_like_drive"],
        "relative-path validation",
    );
    // No hand-written check by other means either.
    let sources = product_sources();
    for needle in ["!= \"..\"", "Component::ParentDir", "Component::CurDir"] {
        let found = files_containing(&sources, needle);
        assert!(
            found.is_empty(),
            "{needle:?} in {found:?}: check relative paths with mex_artifacts::RelPath (mex-runtime re-exports it for engines), the one set of rules"
        );
    }
}

/// `(table, code)` for every `(&str, &str)` table whose keys are gate codes.
fn code_tables(sources: &[(String, String)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, text) in sources {
        let mut rest = text.as_str();
        while let Some(at) = rest.find(": &[(&str, &str)] = &[") {
            let name = rest[..at]
                .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap_or_default()
                .to_owned();
            let body_start = at + ": &[(&str, &str)] = &[".len();
            let body_end = rest[body_start..]
                .find("\n];")
                .map_or(rest.len(), |e| body_start + e);
            let body = &rest[body_start..body_end];
            for entry in body.split("(").skip(1) {
                let key = entry.trim_start().trim_start_matches('"');
                let key = key.split('"').next().unwrap_or_default();
                if key.starts_with("G-") {
                    out.push((format!("{path}::{name}"), key.to_owned()));
                }
            }
            rest = &rest[body_end..];
        }
    }
    out
}

#[test]
fn each_denial_code_is_in_one_table() {
    let sources = product_sources();
    let tables = code_tables(&sources);
    let mut by_code: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (table, code) in &tables {
        by_code.entry(code).or_default().insert(table);
    }
    for home in [
        "crates/mex-gates/src/codes.rs::CODES",
        "crates/mex-engine-sandbox/src/gate.rs::GATE_CODES",
        "crates/mex-engine-process/src/gate.rs::GATE_CODES",
    ] {
        assert!(
            tables.iter().any(|(t, _)| t == home),
            "no code table {home}; update this test if it moved"
        );
    }
    let twice: Vec<_> = by_code.iter().filter(|(_, t)| t.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "codes listed in more than one table: {twice:?}; each code has one table, its gate's"
    );
    // A table's codes belong to one gate family: the core gates' table
    // holds no engine gate's code, and an engine table only its own.
    let mut families: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (table, code) in &tables {
        let family = if code.starts_with("G-SAFETY.") {
            code.splitn(3, '.').take(2).collect::<Vec<_>>().join(".")
        } else {
            "core".to_owned()
        };
        families.entry(table).or_default().insert(family);
    }
    for (table, family) in &families {
        assert_eq!(family.len(), 1, "{table} mixes gate families: {family:?}");
    }
    // No second, hand-written table of the same codes in the docs.
    for (path, text) in &sources {
        for (n, line) in text.lines().enumerate() {
            let doc = line.trim_start();
            let is_doc = doc.starts_with("//!") || doc.starts_with("///");
            let row = doc.trim_start_matches('/').trim_start_matches('!').trim();
            // A family (`G-RESULT.*`) may be named; a code row is a copy.
            let names_a_code = row
                .strip_prefix("| `G-")
                .and_then(|r| r.split('`').next())
                .is_some_and(|code| !code.ends_with('*'));
            assert!(
                !(is_doc && names_a_code),
                "{path}:{}: a doc table of gate codes; the codes and their meanings are written once, in the gate's code table (link to it instead)",
                n + 1
            );
        }
    }
}

#[test]
fn the_published_schema_list_has_one_home() {
    // A file that gathers schemas from two or more publishers is a list of
    // published schemas; there is exactly one.
    let publishers = [
        "mex_envelope::schema::all()",
        "mex_registry::schema()",
        "policy::schema()",
        "mex_recorder::schemas()",
        "report_schema()",
        "certificate_schema()",
        "report::schemas()",
    ];
    let sources = product_sources();
    let lists: Vec<_> = sources
        .iter()
        .filter(|(_, text)| {
            publishers
                .iter()
                .filter(|p| text.contains(*p) && !text.contains(&format!("fn {p}")))
                .count()
                >= 2
        })
        .map(|(path, _)| path.as_str())
        .collect();
    assert_eq!(
        lists,
        ["crates/mex-cli/src/lib.rs"],
        "the published schemas are listed once, in mex_cli::published_schemas; other tools call it"
    );
    for needle in ["fn published_schemas", "fn all_schemas"] {
        let found = files_containing(&sources, needle);
        assert!(
            found.len() <= 1,
            "{needle} is defined in {found:?}; call mex_cli::published_schemas instead"
        );
    }
    let names: Vec<String> = mex_cli::published_schemas()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "a schema name twice: {names:?}");
}

#[test]
fn the_conformance_front_end_has_one_home() {
    // Running the suite, printing progress and writing certificates is the
    // CLI's `mex conformance`; xtask runs that command.
    let home = "crates/mex-cli/src/commands.rs";
    let sources = product_sources();
    for needle in ["mex_conformance::certify(", "mex_conformance::Harness::"] {
        let found: Vec<_> = files_containing(&sources, needle)
            .into_iter()
            .filter(|f| !f.starts_with("crates/mex-conformance/"))
            .collect();
        assert_eq!(
            found,
            [home],
            "{needle} outside mex-conformance belongs in {home} only; run `mex conformance` instead"
        );
    }
    let xtask = std::fs::read_to_string(root().join("xtask/src/main.rs")).unwrap();
    assert!(
        xtask.contains("\"conformance\""),
        "cargo xtask conformance must run the CLI's `mex conformance`"
    );
}
