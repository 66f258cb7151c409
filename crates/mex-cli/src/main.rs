//! `mex`: the command line of the MEX runtime, for operators, auditors and
//! engine authors. It owns argument parsing, the mex home on disk (created on
//! first use by a command that writes, with a default policy that grants only
//! non-sensitive capabilities; read-only commands never create it), human
//! output and `--json` output (schemas in `mex_cli::report`), and exit codes.
//! It does not own any rule: admission, execution, storage and recording are
//! the library crates'.
//!
//! Exit codes: 0 succeeded, 1 internal error, 2 usage or input error,
//! 3 denied, 4 failed, 5 budget exceeded.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "printing is the CLI's job; it goes through out.rs, which survives a closed pipe"
)]
#![allow(
    rustdoc::invalid_html_tags,
    reason = "doc comments here are clap help text, where <home> and <op_id> are placeholders for the user, not HTML"
)]

mod bench;
mod cache;
mod cli;
mod commands;
mod demo;
mod gc;
mod home;
mod out;
mod render;
mod secrets;
mod serve;
mod trust;
mod vector;

use std::process::ExitCode;

use clap::Parser;

/// Exit codes, documented in `--help` and the README.
pub(crate) mod exit {
    pub const OK: u8 = 0;
    pub const INTERNAL: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const DENIED: u8 = 3;
    pub const FAILED: u8 = 4;
    pub const BUDGET: u8 = 5;
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub(crate) struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: exit::USAGE,
            message: message.into(),
        }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            code: exit::INTERNAL,
            message: message.into(),
        }
    }
}

fn main() -> ExitCode {
    // Started under the launcher's name (see `mex_cli::LAUNCHER_NAME`): be the
    // sandbox launcher, nothing else.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if std::path::Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(mex_cli::LAUNCHER_NAME))
    {
        return mex_sandbox::launcher::main_from_env();
    }
    // Started as `mex-engine-exec <engine id>` by mex-engine-process (inside
    // the process-engine jail): host that one compiled-in engine, nothing
    // else.
    if mex_cli::host_engines::is_engine_host(std::path::Path::new(&argv0)) {
        return mex_cli::host_engines::main();
    }
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let level = match args.verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        2 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false)
        .init();
    match commands::run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("mex: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
