//! The one table of codes (`mex_gates::CODES`) is complete: every `G-*.*`
//! code literal in the crate's source is listed, and every listed code is used.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::collections::BTreeSet;

fn source_codes() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut stack = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().unwrap() != "codes.rs" {
                let text = std::fs::read_to_string(&path).unwrap();
                for piece in text.split('"').skip(1).step_by(2) {
                    let is_code = piece.starts_with("G-")
                        && piece.contains('.')
                        && piece.chars().all(|c| {
                            c.is_ascii_uppercase() || c.is_ascii_digit() || "-_.".contains(c)
                        })
                        && piece.rsplit('.').next().is_some_and(|last| last.len() > 3);
                    if is_code && !["G-SAFETY.SANDBOX"].contains(&piece) {
                        found.insert(piece.to_owned());
                    }
                }
            }
        }
    }
    found
}

#[test]
fn every_code_in_the_source_is_in_the_table_and_back() {
    let table: BTreeSet<String> = mex_gates::CODES
        .iter()
        .map(|(c, _)| (*c).to_owned())
        .collect();
    let used = source_codes();
    let missing: Vec<_> = used.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "codes used but not documented in CODES: {missing:?}"
    );
    let unused: Vec<_> = table.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "codes documented in CODES but never emitted: {unused:?}"
    );
}
