//! `cargo xtask <task>`: developer tasks that write files or run long checks.
//!
//! * `schemas [--check]`: regenerate the committed JSON Schemas under
//!   `schemas/`, or with `--check` fail when they drift from the code.
//! * `deny`: run `cargo deny check` against `deny.toml` (installs cargo-deny
//!   from the registry on first use).
//!
//! The drift and hygiene checks also run under plain `cargo test` (see the
//! `tests` package); xtask adds the write modes.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("schemas") => schemas(args.iter().any(|a| a == "--check")),
        Some("deny") => deny(),
        _ => {
            eprintln!("usage: cargo xtask <schemas [--check] | deny>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn schemas(check: bool) -> Result<()> {
    let dir = workspace_root().join("schemas");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut drifted = Vec::new();
    let all = xtask::published_schemas();
    for (name, fresh) in all {
        let path = dir.join(format!("{name}.schema.json"));
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == fresh {
            println!("  ok       {}", path.display());
        } else if check {
            println!("  DRIFTED  {}", path.display());
            drifted.push(path);
        } else {
            std::fs::write(&path, fresh).with_context(|| format!("writing {}", path.display()))?;
            println!("  written  {}", path.display());
        }
    }
    if !drifted.is_empty() {
        bail!(
            "{} schema file(s) drifted from the code; run `cargo xtask schemas` and commit the result",
            drifted.len()
        );
    }
    Ok(())
}

fn deny() -> Result<()> {
    let have = Command::new("cargo")
        .args(["deny", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        println!("installing cargo-deny (one time)...");
        let status = Command::new("cargo")
            .args(["install", "--locked", "cargo-deny"])
            .status()?;
        if !status.success() {
            bail!("cargo install cargo-deny failed");
        }
    }
    let status = Command::new("cargo")
        .args(["deny", "--all-features", "check"])
        .current_dir(workspace_root())
        .status()?;
    if !status.success() {
        bail!("cargo deny check failed; see deny.toml for the policy");
    }
    Ok(())
}
