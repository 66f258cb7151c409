//! `cargo xtask <task>`: developer tasks that write files or run long checks.
//!
//! * `schemas [--check]`: regenerate the committed JSON Schemas under
//!   `schemas/`, or with `--check` fail when they drift from the code.
//! * `deny`: run `cargo deny check` against `deny.toml` (installs cargo-deny
//!   from the registry on first use).
//! * `conformance [--engine ID] [--home DIR]`: `mex conformance` built from
//!   this checkout (one front end, the CLI's): runs the suite against every
//!   engine the binary can run, or one; on a pass writes the certificate to
//!   `<home>/certificates` and records a `conformance_run` event in
//!   `<home>`'s Flight Recorder. `<home>` is `--home`, else `$MEX_HOME`,
//!   else `target/mex-home`. Exits non-zero when any case fails.
//!
//! * `test [nextest args]`: the README's test command. Prepares
//!   `target/py-venv` on first use (`python3 -m venv`, then the pinned
//!   packages of `xtask/py-requirements.txt`: the official Python MCP SDK,
//!   which the `mex serve` end-to-end tests drive, and securesystemslib and
//!   in-toto-attestation, which verify attestations independently), exports
//!   its interpreter as `MEX_TEST_PYTHON`, and runs
//!   `cargo nextest run --workspace --locked --no-fail-fast`.
//! * `fuzz [--seconds N | --smoke] [--target NAME] [--keep]`: run the
//!   cargo-fuzz targets under `fuzz/` (see `fuzz.rs`).
//! * `manifest`: every manifest check in one command: the schema drift check
//!   (as `schemas --check`), the registry with its overlays and every file it
//!   references (as `mex registry check`), then the tests that hold the
//!   members' Cargo manifests, the docs and the one-home rules to the
//!   workspace's rules (`tests/tests/{hygiene,docs,one_home,gate_ids_one_home,schemas}.rs`).
//!   The same checks run as tests under the test command.
//!
//! The drift and hygiene checks also run under plain `cargo test` (see the
//! `tests` package); xtask adds the write modes.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a developer task reports on the terminal"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

mod fuzz;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("schemas") => schemas(args.iter().any(|a| a == "--check")),
        Some("deny") => deny(),
        Some("conformance") => conformance(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("fuzz") => fuzz::run(&workspace_root(), &args[1..]),
        Some("manifest") => manifest(),
        _ => {
            eprintln!(
                "usage: cargo xtask <schemas [--check] | deny | conformance [--engine ID] [--home DIR] | test [nextest args] | fuzz [--seconds N | --smoke] [--target NAME] [--keep] | manifest>"
            );
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

/// The Python packages the end-to-end tests use, pinned, one per line: the
/// MCP SDK (a real MCP client) and the in-toto/DSSE verifiers.
const PY_REQUIREMENTS: &str = "xtask/py-requirements.txt";

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// `target/py-venv` with the pinned packages of [`PY_REQUIREMENTS`], created
/// or brought up to date on first use. A stamp file holds the requirements
/// it was built from, so an edited list reinstalls.
fn python_venv() -> Result<PathBuf> {
    let venv = workspace_root().join("target").join("py-venv");
    let python = venv.join("bin").join("python");
    let requirements = workspace_root().join(PY_REQUIREMENTS);
    let wanted = std::fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let stamp = venv.join("mex-requirements.txt");
    if python.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&wanted) {
        return Ok(python);
    }
    if !python.is_file() {
        eprintln!("xtask: creating {} (python3 -m venv)", venv.display());
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            .context("python3 with the venv module is needed for the end-to-end tests")?;
    }
    eprintln!(
        "xtask: installing {PY_REQUIREMENTS} into {}",
        venv.display()
    );
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements))?;
    std::fs::write(&stamp, wanted).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(python)
}

fn test(extra: &[String]) -> Result<()> {
    let python = python_venv()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo)
        .current_dir(workspace_root())
        .env("MEX_TEST_PYTHON", &python)
        .args([
            "nextest",
            "run",
            "--workspace",
            "--locked",
            "--no-fail-fast",
        ])
        .args(extra))
}

/// Every manifest check in one command (see the crate docs).
fn manifest() -> Result<()> {
    println!("== schemas (drift)");
    schemas(true)?;
    println!("== registry (with overlays and referenced files)");
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(&cargo)
        .current_dir(&root)
        .args(["run", "--quiet", "-p", "mex-cli", "--bin", "mex", "--"])
        .args(["registry", "check"]))?;
    println!("== member manifests, docs and one-home rules (tests)");
    run(Command::new(&cargo).current_dir(&root).args([
        "test",
        "--quiet",
        "-p",
        "mex-workspace-tests",
        "--test",
        "hygiene",
        "--test",
        "docs",
        "--test",
        "one_home",
        "--test",
        "gate_ids_one_home",
        "--test",
        "schemas",
    ]))
}

fn schemas(check: bool) -> Result<()> {
    let dir = workspace_root().join("schemas");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut drifted = Vec::new();
    let all = mex_cli::published_schemas();
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
        // Advisories need a database fetched from outside the package
        // registries (see deny.toml); everything else is checked.
        .args([
            "deny",
            "--all-features",
            "check",
            "licenses",
            "bans",
            "sources",
        ])
        .current_dir(workspace_root())
        .status()?;
    if !status.success() {
        bail!("cargo deny check failed; see deny.toml for the policy");
    }
    Ok(())
}

fn flag(args: &[String], name: &str) -> Result<Option<String>> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => match args.get(i + 1) {
            Some(v) if !v.starts_with("--") => Ok(Some(v.clone())),
            _ => bail!("{name} needs a value"),
        },
    }
}

/// `cargo xtask conformance`: the CLI's `mex conformance`, built and run
/// from this checkout, so there is one conformance front end. Only the
/// default home differs: `target/mex-home` when neither `--home` nor
/// `$MEX_HOME` is given.
fn conformance(args: &[String]) -> Result<()> {
    let known = ["--engine", "--home"];
    for (i, a) in args.iter().enumerate() {
        let is_value = i > 0 && known.contains(&args[i - 1].as_str());
        if !is_value && !known.contains(&a.as_str()) {
            bail!(
                "unknown argument {a}; usage: cargo xtask conformance [--engine ID] [--home DIR]"
            );
        }
    }
    let root = workspace_root();
    let home = match flag(args, "--home")? {
        Some(h) => Some(PathBuf::from(h)),
        None if std::env::var_os("MEX_HOME").is_some() => None,
        None => Some(root.join("target/mex-home")),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root).args([
        "run", "--quiet", "--locked", "-p", "mex-cli", "--bin", "mex", "--",
    ]);
    if let Some(home) = home {
        cmd.arg("--home").arg(home);
    }
    cmd.arg("conformance");
    if let Some(id) = flag(args, "--engine")? {
        cmd.args(["--engine", &id]);
    }
    run(&mut cmd).context("conformance failed (the table above says which cases and why)")
}
