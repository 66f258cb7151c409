//! Every `mex` command and subcommand that README.md, ARCHITECTURE.md,
//! CHANGELOG.md and `docs/*.md` name exists in the built binary: each is
//! asked for its `--help`, which clap refuses for an unknown command. (The
//! other docs checks are in `tests/tests/docs.rs`.)
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::collections::BTreeSet;
use std::process::Command;

mod common;
use common::workspace as root;

fn docs() -> Vec<(String, String)> {
    let mut names = vec![
        "README.md".to_owned(),
        "ARCHITECTURE.md".to_owned(),
        "CHANGELOG.md".to_owned(),
    ];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            names.push(format!("docs/{name}"));
        }
    }
    names
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(root().join(&n)).unwrap();
            (n, text)
        })
        .collect()
}

/// Code in a markdown text: inline spans and fenced blocks, one string per
/// span or block line.
fn code(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            out.push(line.to_owned());
            continue;
        }
        let mut parts = line.split('`');
        parts.next();
        while let (Some(span), Some(_)) = (parts.next(), parts.next()) {
            out.push(span.to_owned());
        }
    }
    out
}

/// Every `mex <word> [<word>|<word> ...]` invocation in a piece of code, as
/// its words (alternatives `a|b` kept together); options, files and
/// placeholders end it.
fn invocations(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let words: Vec<&str> = code.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        let w = w.trim_start_matches(['(', '$', '"']);
        if w != "mex" && !w.ends_with("/mex") {
            continue;
        }
        let command: Vec<String> = words[i + 1..]
            .iter()
            .map(|w| w.trim_end_matches([',', ')', ';', '.', ':']))
            .take_while(|w| {
                !w.is_empty()
                    && w.chars()
                        .all(|c| c.is_ascii_lowercase() || c == '-' || c == '|')
                    && !w.starts_with('-')
            })
            .map(str::to_owned)
            .collect();
        if !command.is_empty() {
            out.push(command);
        }
    }
    out
}

fn help(path: &[&str]) -> Option<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_mex"))
        .args(path)
        .arg("--help")
        .env_remove("MEX_HOME")
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn has_subcommands(help: &str) -> bool {
    help.lines().any(|l| l.trim() == "Commands:")
}

/// The deepest command path `words` names, or what is wrong with it.
fn check(words: &[String]) -> Result<(), String> {
    let mut paths: Vec<Vec<String>> = vec![Vec::new()];
    for word in words {
        let mut next = Vec::new();
        for path in &paths {
            let here: Vec<&str> = path.iter().map(String::as_str).collect();
            let text =
                help(&here).ok_or_else(|| format!("`mex {}` is not a command", here.join(" ")))?;
            if !has_subcommands(&text) {
                // The rest are arguments of a leaf command.
                return Ok(());
            }
            for alternative in word.split('|') {
                let mut longer = path.clone();
                longer.push(alternative.to_owned());
                let names: Vec<&str> = longer.iter().map(String::as_str).collect();
                if help(&names).is_none() {
                    return Err(format!("`mex {}` is not a command", names.join(" ")));
                }
                next.push(longer);
            }
        }
        paths = next;
    }
    Ok(())
}

#[test]
fn every_mex_command_the_docs_name_exists() {
    let mut seen = BTreeSet::new();
    let mut wrong = Vec::new();
    for (doc, text) in docs() {
        for piece in code(&text) {
            for words in invocations(&piece) {
                if seen.insert(words.clone())
                    && let Err(e) = check(&words)
                {
                    wrong.push(format!("{doc}: {e} (from `mex {}`)", words.join(" ")));
                }
            }
        }
    }
    assert!(seen.len() > 20, "the docs name mex commands: {seen:?}");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn an_unknown_command_is_found() {
    assert!(check(&["recorder".into(), "nope".into()]).is_err());
    assert!(check(&["nope".into()]).is_err());
    assert!(check(&["keys".into(), "init|show".into()]).is_ok());
    assert_eq!(
        invocations("mex registry vector new --x; mex run my-op.json"),
        [vec!["registry", "vector", "new"], vec!["run"]]
    );
}
