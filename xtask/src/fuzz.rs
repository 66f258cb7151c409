//! `cargo xtask fuzz [--seconds N | --smoke] [--target NAME] [--keep]`: build
//! and run the cargo-fuzz targets under `fuzz/` (libFuzzer, sanitizer off so
//! the pinned stable toolchain builds them).
//!
//! `--seconds N` explores for N seconds per target (a random walk: run it to
//! find bugs). `--smoke` is what CI runs: every input of the committed corpus
//! once, then a fixed number of mutations from a fixed seed, so the same code
//! always gives the same verdict (CI never fails on a new random find; the
//! long runs find those, and their crashers join the corpus once fixed).
//!
//! Each target starts from its committed corpus `fuzz/corpus/<target>`; new
//! inputs go to `target/fuzz-corpus/<target>` unless `--keep` is given, in
//! which case libFuzzer adds them to the committed corpus (review and commit).
//! A crash leaves its input under `fuzz/artifacts/<target>/` and fails the task.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Every fuzz target, in the order they run.
pub const TARGETS: &[&str] = &[
    "envelope",
    "schema_differential",
    "registry",
    "policy",
    "certificate",
];

/// Mutations per target in `--smoke` mode (after the corpus).
const SMOKE_RUNS: u64 = 20_000;

/// Parse the arguments and run.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut seconds = 30u64;
    let mut smoke = false;
    let mut only: Option<String> = None;
    let mut keep = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().context("--seconds needs a number")?;
                seconds = v
                    .parse()
                    .with_context(|| format!("--seconds takes a whole number, not {v:?}"))?;
            }
            "--target" => only = Some(it.next().context("--target needs a name")?.clone()),
            "--keep" => keep = true,
            "--smoke" => smoke = true,
            other => bail!(
                "unknown argument {other}; usage: cargo xtask fuzz [--seconds N | --smoke] [--target NAME] [--keep]"
            ),
        }
    }
    let targets: Vec<&str> = match &only {
        Some(t) if TARGETS.contains(&t.as_str()) => vec![t.as_str()],
        Some(t) => bail!(
            "no fuzz target {t:?}; the targets are {}",
            TARGETS.join(", ")
        ),
        None => TARGETS.to_vec(),
    };
    ensure_cargo_fuzz()?;
    let fuzz_dir = root.join("fuzz");
    for target in targets {
        if smoke {
            println!("== fuzz {target}: smoke (corpus, then {SMOKE_RUNS} runs from seed 1)");
        } else {
            println!("== fuzz {target} for {seconds} s");
        }
        let seed = fuzz_dir.join("corpus").join(target);
        let scratch = root.join("target/fuzz-corpus").join(target);
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("creating {}", scratch.display()))?;
        let mut cmd = Command::new("cargo");
        cmd.current_dir(root)
            .args(["fuzz", "run", "--sanitizer", "none", "--debug-assertions"])
            .args(["--fuzz-dir", "fuzz"])
            .arg(target);
        if keep {
            cmd.arg(&seed);
        } else {
            cmd.arg(&scratch).arg(&seed);
        }
        cmd.arg("--");
        if smoke {
            cmd.arg("-seed=1").arg(format!("-runs={SMOKE_RUNS}"));
        } else {
            cmd.arg(format!("-max_total_time={seconds}"));
        }
        cmd.arg(format!(
            "-dict={}",
            fuzz_dir.join("dict/json.dict").display()
        ))
        .arg("-max_len=65536")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1");
        let status = cmd
            .status()
            .with_context(|| format!("running cargo fuzz for {target}"))?;
        if !status.success() {
            bail!(
                "fuzz target {target} failed; the crashing input is under fuzz/artifacts/{target}/ (reproduce with `cargo fuzz run --sanitizer none --fuzz-dir fuzz {target} <file>`)"
            );
        }
    }
    Ok(())
}

fn ensure_cargo_fuzz() -> Result<()> {
    let have = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if have {
        return Ok(());
    }
    println!("installing cargo-fuzz (one time)...");
    let status = Command::new("cargo")
        .args(["install", "--locked", "cargo-fuzz"])
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz failed");
    }
    Ok(())
}
