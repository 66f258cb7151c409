//! `cargo xtask <task>`: developer tasks that write files or run long checks.
//!
//! * `schemas [--check]`: regenerate the committed JSON Schemas under
//!   `schemas/`, or with `--check` fail when they drift from the code.
//! * `deny`: run `cargo deny check` against `deny.toml` (installs cargo-deny
//!   from the registry on first use).
//! * `conformance [--engine ID] [--home DIR] [--certificates DIR]`: run the
//!   conformance suite (mex-conformance) against every implemented engine, or
//!   one, with progress; print the table; write each report to
//!   `<home>/conformance/`; on a pass write the certificate to
//!   `<certificates>` (default `<home>/certificates`); record a
//!   `conformance_run` event in `<home>`'s Flight Recorder. `<home>` is
//!   `--home`, else `$MEX_HOME`, else `target/mex-home`. Exits non-zero when
//!   any case fails.
//!
//! * `test [nextest args]`: the README's test command. Prepares
//!   `target/py-venv` on first use (`python3 -m venv`, then the pinned
//!   packages of `xtask/py-requirements.txt`: the official Python MCP SDK,
//!   which the `mex serve` end-to-end tests drive, and securesystemslib and
//!   in-toto-attestation, which verify attestations independently), exports
//!   its interpreter as `MEX_TEST_PYTHON`, and runs
//!   `cargo nextest run --workspace --locked --no-fail-fast`.
//! * `fuzz [--seconds N] [--target NAME] [--keep]`: run the cargo-fuzz targets
//!   under `fuzz/` (see `fuzz.rs`).
//!
//! The drift and hygiene checks also run under plain `cargo test` (see the
//! `tests` package); xtask adds the write modes.
#![allow(clippy::print_stdout, clippy::print_stderr)]

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
        _ => {
            eprintln!(
                "usage: cargo xtask <schemas [--check] | deny | conformance [--engine ID] [--home DIR] [--certificates DIR] | test [nextest args] | fuzz [--seconds N] [--target NAME] [--keep]>"
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

fn conformance(args: &[String]) -> Result<()> {
    let known = ["--engine", "--home", "--certificates"];
    for (i, a) in args.iter().enumerate() {
        let is_value = i > 0 && known.contains(&args[i - 1].as_str());
        if !is_value && !known.contains(&a.as_str()) {
            bail!(
                "unknown argument {a}; usage: cargo xtask conformance [--engine ID] [--home DIR] [--certificates DIR]"
            );
        }
    }
    let root = workspace_root();
    let home = match flag(args, "--home")? {
        Some(h) => PathBuf::from(h),
        None => std::env::var_os("MEX_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target/mex-home")),
    };
    let certs = flag(args, "--certificates")?
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join("certificates"));
    let registry_file = root.join("mechanical_engines.json");
    // engine.sandbox needs its launcher binary; building it puts it next to
    // this xtask binary, where mex-sandbox looks for it.
    let status = Command::new("cargo")
        .args([
            "build",
            "--quiet",
            "-p",
            "mex-sandbox",
            "--bin",
            "mex-sandbox-exec",
        ])
        .current_dir(&root)
        .status()?;
    if !status.success() {
        bail!("building the sandbox launcher (mex-sandbox-exec) failed");
    }
    let (mut subjects, gates) = xtask::conformance_subjects();
    let harness = mex_conformance::Harness::load(&registry_file)?.with_engine_gates(gates);
    if let Some(id) = flag(args, "--engine")? {
        let available: Vec<String> = subjects.iter().map(|e| e.engine_id().to_string()).collect();
        subjects.retain(|e| e.engine_id().as_str() == id);
        if subjects.is_empty() {
            bail!(
                "no implementation of {id} is registered for conformance (available: {}); add it to xtask::conformance_subjects",
                available.join(", ")
            );
        }
    }
    std::fs::create_dir_all(home.join("conformance"))
        .with_context(|| format!("creating {}", home.join("conformance").display()))?;
    let recorder = mex_recorder::SqliteRecorder::open(&home)
        .with_context(|| format!("opening the Flight Recorder in {}", home.display()))?;
    let mut failed = Vec::new();
    for engine in subjects {
        let id = engine.engine_id();
        println!(
            "conformance: {id} ({} {}) against {}",
            engine.implementation_id(),
            engine.implementation_version(),
            registry_file.display()
        );
        let mut n = 0;
        let started = std::time::Instant::now();
        let outcome = mex_conformance::certify(
            &harness,
            engine.clone(),
            &certs,
            Some(&recorder),
            &mut |case| {
                n += 1;
                let verdict = match case.verdict {
                    mex_conformance::Verdict::Pass => "pass",
                    mex_conformance::Verdict::Fail => "FAIL",
                    mex_conformance::Verdict::NotApplicable => "n/a ",
                };
                println!("  [{n:>2}] {verdict}  {}", case.id);
            },
        )?;
        let report = &outcome.report;
        println!("\n{}", report.table());
        let report_path = home.join("conformance").join(format!(
            "{id}-{}-{}.report.json",
            report.implementation_id, report.implementation_version
        ));
        std::fs::write(&report_path, report_json(report)?)
            .with_context(|| format!("writing {}", report_path.display()))?;
        println!(
            "report:      {} (digest {})",
            report_path.display(),
            report.digest()?
        );
        match &outcome.certificate {
            Some((_, path)) => println!("certificate: {}", path.display()),
            None => {
                println!("certificate: none (the suite failed)");
                failed.push(id.to_string());
            }
        }
        println!("took {:.2?}\n", started.elapsed());
    }
    if !failed.is_empty() {
        bail!("conformance failed for {}", failed.join(", "));
    }
    Ok(())
}

fn report_json(report: &mex_conformance::ConformanceReport) -> Result<String> {
    let mut text = mex_envelope::canonical::to_string(report)
        .map_err(|e| anyhow::anyhow!("serializing the report: {e}"))?;
    text.push('\n');
    Ok(text)
}
