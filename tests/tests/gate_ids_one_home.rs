//! One home for the global gate ids: `crates/mex-registry/src/gates.rs`
//! declares them (`GATE_SCHEMA` … `GATE_DET`, and `GLOBAL_GATES` in run
//! order); every other source file names them through those constants. A
//! global gate id written as a string literal (`"G-INTEGRITY"`) in any other
//! library or binary source fails this test. Test code (`tests/`, `benches/`,
//! and a file's `#[cfg(test)]` tail) may spell them: it checks the values.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::{Path, PathBuf};

const HOME: &str = "crates/mex-registry/src/gates.rs";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The ids declared in the home, read from its `pub const GATE_*` lines.
fn declared_ids(home: &str) -> Vec<String> {
    home.lines()
        .filter_map(|l| l.trim().strip_prefix("pub const GATE_"))
        .filter_map(|l| l.split('"').nth(1))
        .map(str::to_owned)
        .collect()
}

/// The global gate ids `source` spells as a whole string literal, before its
/// `#[cfg(test)]` tail.
fn literals_in(source: &str, ids: &[String]) -> Vec<String> {
    let before_tests = source.split("#[cfg(test)]").next().unwrap_or_default();
    // Doc comments (and their examples, which assert what a caller sees) may
    // name a gate; code may not.
    let code: String = before_tests
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    ids.iter()
        .filter(|id| code.contains(&format!("\"{id}\"")))
        .cloned()
        .collect()
}

/// Every library and binary source file: `src/` of each member, the fuzz
/// targets and the example engines.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | "tests" | "benches" | ".git") {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_home_declares_the_six_global_gates() {
    let home = std::fs::read_to_string(root().join(HOME)).unwrap();
    let ids = declared_ids(&home);
    assert_eq!(
        ids,
        [
            "G-SCHEMA",
            "G-CAP",
            "G-INTEGRITY",
            "G-BUDGET",
            "G-PROVENANCE",
            "G-DET"
        ],
        "{HOME} must declare the six global gate ids as `pub const GATE_*`"
    );
}

#[test]
fn global_gate_ids_are_spelled_only_in_their_home() {
    let root = root();
    let ids = declared_ids(&std::fs::read_to_string(root.join(HOME)).unwrap());
    assert!(!ids.is_empty(), "no gate ids found in {HOME}");
    let mut files = Vec::new();
    for dir in ["crates", "xtask", "tests/src", "fuzz", "examples"] {
        sources(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut copies = Vec::new();
    for file in files {
        if file == root.join(HOME) {
            continue;
        }
        let source = std::fs::read_to_string(&file).unwrap();
        for id in literals_in(&source, &ids) {
            copies.push(format!(
                "{}: \"{id}\"",
                file.strip_prefix(&root).unwrap().display()
            ));
        }
    }
    assert!(
        copies.is_empty(),
        "global gate ids spelled outside {HOME}; use the mex_registry::GATE_* constants (or mex_gates' re-exports) instead:\n{}",
        copies.join("\n")
    );
}

#[test]
fn the_scan_finds_a_copy_and_ignores_codes_and_test_tails() {
    let ids = vec!["G-CAP".to_owned(), "G-DET".to_owned()];
    assert_eq!(
        literals_in("let g = GateId::from_static(\"G-CAP\");", &ids),
        ["G-CAP"]
    );
    assert!(literals_in("code(\"G-CAP.DUPLICATE\")", &ids).is_empty());
    assert!(literals_in("fn f() {}\n#[cfg(test)]\nmod t { \"G-DET\" }", &ids).is_empty());
    assert_eq!(
        declared_ids("pub const GATE_CAP: &str = \"G-CAP\";\nconst X: &str = \"G-DET\";"),
        ["G-CAP"]
    );
}
