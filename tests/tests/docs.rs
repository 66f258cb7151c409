//! The docs stand alone and stay true, checked under plain `cargo test`:
//! every `docs/...` path and every `docs/contract.md §N` citation in any text
//! file of the repository resolves; no file points outside the repository;
//! every file path and `cargo xtask` task that README.md and ARCHITECTURE.md
//! name exists (and every task is named); the crates of ARCHITECTURE.md's
//! code map are exactly the workspace's members; `schemas/` holds exactly
//! the published schemas. The `mex` commands the docs name are checked
//! against the binary in `crates/mex-cli/tests/docs.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap()
}

/// Directories that are not the repository's own text: build output, VCS
/// data, homes and virtual environments made by running things, and fuzz
/// corpora (inputs, not prose).
const SKIP_DIRS: [&str; 8] = [
    "target",
    ".git",
    ".mex",
    "__pycache__",
    "node_modules",
    "corpus",
    "artifacts",
    "py-venv",
];

/// Every UTF-8 file of the repository, as (path relative to the root, text).
fn text_files() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type().unwrap();
            if name == ".git" {
                // The repository's history (a directory, or a file in a worktree).
                continue;
            }
            if kind.is_dir() {
                if !SKIP_DIRS.contains(&name.as_str()) {
                    walk(&path, out);
                }
            } else if kind.is_file() {
                out.push(path);
            }
        }
    }
    let root = root();
    let mut paths = Vec::new();
    walk(&root, &mut paths);
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if bytes.len() > 4 << 20 {
            continue;
        }
        if let Ok(text) = String::from_utf8(bytes) {
            let rel = path.strip_prefix(&root).unwrap();
            out.push((rel.to_string_lossy().replace('\\', "/"), text));
        }
    }
    assert!(
        out.iter().any(|(p, _)| p == "README.md"),
        "the walk must see the repository"
    );
    out
}

/// This file, whose needles would otherwise find themselves.
const THIS_FILE: &str = "tests/tests/docs.rs";

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// The section numbers docs/contract.md defines: `## §N` headings and
/// `**§N.M` subsections.
fn contract_sections() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in read("docs/contract.md").lines() {
        let rest = line
            .strip_prefix("## §")
            .or_else(|| line.strip_prefix("**§"));
        if let Some(rest) = rest {
            let number: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            out.insert(number.trim_end_matches('.').to_owned());
        }
    }
    assert!(out.contains("3.2") && out.contains("10"), "{out:?}");
    out
}

/// Every `§` citation, as (the number, the text just before it). `§N`, the
/// placeholder in "cite it as `docs/contract.md §N`", is no citation.
fn section_citations(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices('§') {
        let after = &text[i + '§'.len_utf8()..];
        if after.starts_with('N') {
            continue;
        }
        let number: String = after
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let number = number.trim_end_matches('.').to_owned();
        let start = text[..i].char_indices().rev().nth(24).map_or(0, |(j, _)| j);
        out.push((number, text[start..i].to_owned()));
    }
    out
}

/// `RFC 6962 §2.1` and the like cite a published standard, not this repository.
fn cites_an_rfc(before: &str) -> bool {
    let trimmed = before.trim_end();
    let digits = trimmed.trim_end_matches(|c: char| c.is_ascii_digit());
    digits.len() < trimmed.len() && digits.trim_end().ends_with("RFC")
}

#[test]
fn every_section_citation_resolves_in_docs_contract() {
    let sections = contract_sections();
    let mut wrong = Vec::new();
    for (path, text) in text_files() {
        if path == THIS_FILE {
            continue;
        }
        let names_contract = path == "docs/contract.md" || text.contains("docs/contract.md");
        for (number, before) in section_citations(&text) {
            if cites_an_rfc(&before) {
                continue;
            }
            let qualified = before.trim_end().ends_with("docs/contract.md")
                || before.trim_end().ends_with("docs/contract.md`,");
            if number.is_empty() {
                wrong.push(format!(
                    "{path}: a `§` without a section number after {before:?}"
                ));
            } else if !sections.contains(&number) {
                wrong.push(format!(
                    "{path}: §{number} is not a section of docs/contract.md (no `## §{number}` or `**§{number}` there)"
                ));
            } else if before.trim_end().ends_with("contract") {
                wrong.push(format!(
                    "{path}: cite `contract §{number}` as `docs/contract.md §{number}`, so a reader can find it"
                ));
            } else if !qualified && !names_contract {
                wrong.push(format!(
                    "{path}: §{number} without the file: write `docs/contract.md §{number}`"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "section citations that do not resolve:\n{}",
        wrong.join("\n")
    );
}

/// Every `docs/...` path named in `text` (not part of a longer path or URL).
fn docs_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("docs/") {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| is_path_char(c) || c == ':') {
            continue;
        }
        let path: String = text[i..].chars().take_while(|c| is_path_char(*c)).collect();
        out.push(path.trim_end_matches('.').to_owned());
    }
    out
}

#[test]
fn every_docs_path_exists() {
    let mut wrong = Vec::new();
    for (path, text) in text_files() {
        if path == THIS_FILE {
            continue;
        }
        for cited in docs_paths(&text) {
            if !root().join(&cited).exists() {
                wrong.push(format!("{path}: names `{cited}`, which does not exist"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "docs paths that do not resolve:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_file_points_outside_the_repository() {
    // Split so that this file does not match itself.
    let needles = [
        concat!("../", "shared"),
        concat!("shared/", "mex-"),
        concat!("design", "-brief"),
        concat!("engines-v1.2", ".md"),
        concat!("/work", "/main"),
        concat!("the work", " order"),
        concat!("work-", "order"),
    ];
    let mut wrong = Vec::new();
    for (path, text) in text_files() {
        if path == THIS_FILE {
            continue;
        }
        let lower = text.to_lowercase();
        for needle in needles {
            if lower.contains(needle) {
                wrong.push(format!("{path}: `{needle}` points outside the repository"));
            }
        }
        // "the issue" as a source of rules; "the issuer" is a word of its own.
        for (i, _) in lower.match_indices(concat!("the ", "issue")) {
            let next = lower[i + 9..].chars().next();
            if !next.is_some_and(|c| c.is_ascii_alphabetic()) {
                wrong.push(format!(
                    "{path}: cites \"the issue\": state the rule here or in docs/contract.md"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Inline code spans outside fenced blocks, as (line number, text).
fn inline_code(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (n, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut parts = line.split('`');
        parts.next();
        while let (Some(code), Some(_)) = (parts.next(), parts.next()) {
            out.push((n + 1, code.to_owned()));
        }
    }
    out
}

/// A code span that names a file or directory of this repository: no
/// spaces or placeholders, and either a `/` or a known file extension.
fn looks_like_repo_path(code: &str) -> bool {
    const EXTENSIONS: [&str; 9] = [
        ".md", ".rs", ".json", ".toml", ".py", ".txt", ".yml", ".sh", ".lock",
    ];
    !code.is_empty()
        && code.chars().all(is_path_char)
        && !code.starts_with(['.', '/', '-'])
        && !code.contains("..")
        && (code.contains('/') || EXTENSIONS.iter().any(|e| code.ends_with(e)))
        && !code.chars().next().is_some_and(|c| c.is_ascii_digit())
}

/// Names in the docs that look like paths but are not files of the
/// repository: things made at run time (build output, the test venv, a
/// home's key, a sidecar manifest's name, directories inside the store and
/// a run's jail, the walkthrough's own files), each crate's `benches/`, a
/// Go package, and MCP method names.
const NOT_REPO_PATHS: [&str; 15] = [
    "target/release/mex",
    "target/py-venv",
    "artifact.json",
    "keys/signing.pem",
    "my-op.json",
    "result.json",
    "tmp/",
    "in/",
    "out/",
    "work/",
    "engine/",
    "benches/",
    "sumdb/note",
    "tools/call",
    "resources/read",
];

/// Where a relative name in a section about `dir` may live.
fn candidates(dir: Option<&str>, name: &str) -> Vec<PathBuf> {
    let root = root();
    let mut out = vec![root.join(name)];
    if let Some(dir) = dir {
        let dir = root.join(dir);
        for sub in ["", "src", "tests", "benches", "src/bin"] {
            out.push(dir.join(sub).join(name));
        }
    }
    out
}

fn check_named_files(doc: &str) -> Vec<String> {
    let text = read(doc);
    let mut wrong = Vec::new();
    // The directory each line's section is about: a heading naming one
    // scopes the relative names below it (`src/gc.rs` under `crates/mex-cli`).
    let mut section: Option<String> = None;
    let mut sections = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            section = inline_code(line)
                .into_iter()
                .map(|(_, c)| c)
                .find(|c| c.contains('/'))
                .map(|c| c.trim_end_matches('/').to_owned());
        }
        sections.push(section.clone());
    }
    for (line, code) in inline_code(&text) {
        if !looks_like_repo_path(&code) || NOT_REPO_PATHS.contains(&code.as_str()) {
            continue;
        }
        let name = code.trim_end_matches('/');
        let dir = sections[line - 1].as_deref();
        if !candidates(dir, name).iter().any(|p| p.exists()) {
            wrong.push(format!(
                "{doc}:{line}: names `{code}`, which does not exist"
            ));
        }
    }
    wrong
}

#[test]
fn every_file_readme_and_architecture_name_exists() {
    let mut wrong = check_named_files("README.md");
    wrong.extend(check_named_files("ARCHITECTURE.md"));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The workspace members, as directories relative to the root.
fn workspace_members() -> BTreeSet<String> {
    let manifest: toml::Table = read("Cargo.toml").parse().unwrap();
    let mut out = BTreeSet::new();
    for member in manifest["workspace"]["members"].as_array().unwrap() {
        let member = member.as_str().unwrap();
        if let Some(parent) = member.strip_suffix("/*") {
            for entry in std::fs::read_dir(root().join(parent)).unwrap() {
                let path = entry.unwrap().path();
                if path.join("Cargo.toml").exists() {
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    out.insert(format!("{parent}/{name}"));
                }
            }
        } else {
            out.insert(member.to_owned());
        }
    }
    out
}

#[test]
fn architecture_code_map_names_exactly_the_workspace_members() {
    let text = read("ARCHITECTURE.md");
    let map = text
        .split("\n## Code map\n")
        .nth(1)
        .expect("ARCHITECTURE.md has a `## Code map` section");
    let map = map.split("\n## ").next().unwrap();
    let mut named = BTreeSet::new();
    let mut wrong = Vec::new();
    for line in map.lines().filter(|l| l.starts_with("### ")) {
        for (_, code) in inline_code(line) {
            let path = code.trim_end_matches('/').to_owned();
            if !root().join(&path).exists() {
                wrong.push(format!("the code map names `{code}`, which does not exist"));
            }
            named.insert(path);
        }
    }
    // Member directories that the code map covers through a parent heading.
    let covered = |member: &str| {
        named.contains(member)
            || map
                .lines()
                .any(|l| !l.starts_with('#') && l.contains(&format!("`{member}`")))
                && named.iter().any(|n| member.starts_with(&format!("{n}/")))
    };
    for member in workspace_members() {
        if !covered(&member) {
            wrong.push(format!(
                "workspace member `{member}` has no `### `{member}`` entry in the code map"
            ));
        }
    }
    let members = workspace_members();
    for path in &named {
        if path.starts_with("crates/") && !members.contains(path) {
            wrong.push(format!(
                "the code map names `{path}`, which is not a workspace member"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The tasks `cargo xtask` dispatches (`Some("task") =>` arms of its main).
fn xtask_tasks() -> BTreeSet<String> {
    let main = read("xtask/src/main.rs");
    let mut out = BTreeSet::new();
    for (i, _) in main.match_indices("Some(\"") {
        let rest = &main[i + 6..];
        let Some(end) = rest.find('"') else { continue };
        if rest[end..].starts_with("\") =>") {
            out.insert(rest[..end].to_owned());
        }
    }
    assert!(out.contains("schemas") && out.contains("test"), "{out:?}");
    out
}

/// Every `cargo xtask <word>` in `text`.
fn xtask_mentions(text: &str) -> Vec<String> {
    text.match_indices("cargo xtask ")
        .map(|(i, m)| {
            text[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect()
        })
        .collect()
}

#[test]
fn every_xtask_task_named_exists_and_every_task_is_documented() {
    let tasks = xtask_tasks();
    let mut wrong = Vec::new();
    for (path, text) in text_files() {
        if path == THIS_FILE {
            continue;
        }
        for task in xtask_mentions(&text) {
            if !task.is_empty() && !tasks.contains(&task) {
                wrong.push(format!(
                    "{path}: names `cargo xtask {task}`, which is not a task"
                ));
            }
        }
    }
    let main = read("xtask/src/main.rs");
    for doc in ["README.md", "ARCHITECTURE.md"] {
        let named: BTreeSet<String> = xtask_mentions(&read(doc)).into_iter().collect();
        for task in &tasks {
            if !named.contains(task) {
                wrong.push(format!("{doc} does not name `cargo xtask {task}`"));
            }
        }
    }
    for task in &tasks {
        if !main.contains(&format!("//! * `{task}")) {
            wrong.push(format!(
                "xtask/src/main.rs: its crate docs do not list `{task}` (`//! * `{task} ...``)"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn committed_schemas_are_exactly_the_published_list() {
    let published: BTreeSet<String> = mex_cli::published_schemas()
        .into_iter()
        .map(|(name, _)| format!("{name}.schema.json"))
        .collect();
    let committed: BTreeSet<String> = std::fs::read_dir(root().join("schemas"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        committed, published,
        "schemas/ and mex_cli::published_schemas disagree: add the missing schema to the list, or remove the stale file"
    );
}

// The checks above must be able to fail: each helper finds what it guards.
#[test]
fn the_scanners_find_what_they_guard() {
    let cites = section_citations("see contract §3 and RFC 6962 §2.1");
    assert_eq!(cites.len(), 2);
    assert!(cites[0].1.trim_end().ends_with("contract"));
    assert!(!cites_an_rfc(&cites[0].1));
    assert!(cites_an_rfc(&cites[1].1));
    assert!(!contract_sections().contains("99"));
    assert_eq!(
        docs_paths("read `docs/nope.md`. Not crates/x/docs/y, nor https://h/docs/z"),
        ["docs/nope.md"]
    );
    assert_eq!(xtask_mentions("run `cargo xtask nope --x`"), ["nope"]);
    assert!(looks_like_repo_path("crates/mex-cli/src/nope.rs"));
    assert!(!looks_like_repo_path("<home>/runs"));
    assert_eq!(inline_code("a `b` c `d/e`")[1].1, "d/e");
}
