//! The engines compiled into `mex` that run as separate, sandboxed
//! processes (registry kind `host_process`): the one table from engine id to
//! handler. Each handler parses untrusted data, so it never runs inside the
//! mex process: mex-engine-process starts this very binary as
//! `mex-engine-exec <engine id>` in the process-engine jail (same budgets,
//! confinement and `mex-engine-1` protocol as any process engine, checked by
//! `G-SAFETY.PROCESS`), and [`main`] answers that one request.
//!
//! Adding an engine: one line in [`HOST_ENGINES`], one dependency in
//! Cargo.toml, and `"kind": "host_process"` in its registry declaration.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use mex_engine_process::{HOST_ENGINE_NAME, HostProgram};
use mex_engine_sdk::{Fail, Request};

/// A host engine's entry point.
pub type Handler = fn(&mut Request) -> Result<(), Fail>;

/// Engine id -> handler, for every `host_process` engine this binary hosts.
pub const HOST_ENGINES: &[(&str, Handler)] = &[
    (mex_engine_dba::ENGINE_ID, mex_engine_dba::handle),
    (mex_engine_wrangler::ENGINE_ID, mex_engine_wrangler::handle),
    (mex_engine_context::ENGINE_ID, mex_engine_context::handle),
    (
        mex_engine_sovereign::ENGINE_ID,
        mex_engine_sovereign::handle,
    ),
];

/// The handler of `engine_id`, if this binary hosts it.
pub fn handler(engine_id: &str) -> Option<Handler> {
    HOST_ENGINES
        .iter()
        .find(|(id, _)| *id == engine_id)
        .map(|(_, h)| *h)
}

/// Act as the engine host (the binary was started as `mex-engine-exec`):
/// the one argument names the engine; the request is on stdin, the
/// completion goes to stdout (`mex_engine_sdk::run`). An unknown engine id
/// is answered with a failed completion, so mex reports it as such.
pub fn main() -> ExitCode {
    let engine = std::env::args().nth(1).unwrap_or_default();
    match handler(&engine) {
        Some(h) => mex_engine_sdk::run(h),
        None => {
            let hosted: Vec<&str> = HOST_ENGINES.iter().map(|(id, _)| *id).collect();
            mex_engine_sdk::run(move |_| {
                Err(Fail::new(
                    "PROC_BAD_REQUEST",
                    format!(
                        "{HOST_ENGINE_NAME}: {engine:?} is not an engine this binary hosts ({}); the registry's host_process declaration and the binary disagree: use the mex that ships it",
                        hosted.join(", ")
                    ),
                ))
            })
        }
    }
}

/// The host program for `host_process` implementations: a link named
/// `mex-engine-exec-<digest of the path>` to this very `mex` binary, in the
/// same every-uid-traversable directory as the launcher link (see
/// `crate::launcher`), so the sandboxed child can exec the binary in place
/// (never copied per run). None when this process is not the `mex` binary
/// (e.g. a test harness), then host engines are not installed.
pub fn host_program() -> Option<Arc<HostProgram>> {
    let exe = std::env::current_exe().ok()?;
    if exe.file_stem().is_none_or(|stem| stem != "mex") {
        return None;
    }
    let link = crate::link_to_exe(&exe, HOST_ENGINE_NAME)?;
    let hosted: Vec<&str> = HOST_ENGINES.iter().map(|(id, _)| *id).collect();
    Some(Arc::new(HostProgram::new(link, exe, &hosted)))
}

/// Whether `argv0` names the engine host.
pub fn is_engine_host(argv0: &Path) -> bool {
    argv0
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(HOST_ENGINE_NAME))
}
