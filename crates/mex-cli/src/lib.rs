//! The parts of the `mex` product other tools share: which engines ship
//! (and therefore get certified), and every JSON Schema the product
//! publishes. The `mex` binary (src/main.rs) and `cargo xtask schemas` read
//! these lists, so there is one of each; `cargo xtask conformance` runs
//! `mex conformance` itself. The
//! types `mex ... --json` prints are in [`report`]. Everything else here is
//! public only for the `mex` binary, xtask and the tests (hidden from the
//! docs; ARCHITECTURE.md, "API boundary").

pub mod report;

#[doc(hidden)]
pub mod process_engines;

#[doc(hidden)]
pub mod secrets_gate;

#[doc(hidden)]
pub mod host_engines;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mex_gates::{CapabilityPolicy, Gate};
use mex_runtime::Engine;

/// The name under which the `mex` binary acts as the sandbox launcher.
#[doc(hidden)]
pub const LAUNCHER_NAME: &str = "mex-sandbox-exec";

/// Engines and the engine-specific gates they need.
#[doc(hidden)]
pub type EnginesAndGates = (Vec<Arc<dyn Engine>>, Vec<Arc<dyn Gate>>);

/// The engine implementations this product ships, and the engine-specific
/// gates they need. Each engine still needs a certificate to run. Add a new
/// engine crate's implementation here.
#[doc(hidden)]
pub fn shipped_engines_with_gates(policy: &CapabilityPolicy) -> EnginesAndGates {
    let mut engines: Vec<Arc<dyn Engine>> = Vec::new();
    let mut gates: Vec<Arc<dyn Gate>> = Vec::new();
    match mex_engine_physics::PhysicsEngine::new() {
        Ok(physics) => engines.push(Arc::new(physics)),
        Err(e) => tracing::warn!("engine.physics unavailable: {e}"),
    }
    let mut config = mex_engine_sandbox::SandboxEngineConfig::default().with_policy(policy);
    config.sandbox.launcher = launcher();
    match mex_engine_sandbox::SandboxEngine::new(config) {
        Ok(sandbox) => {
            gates.push(Arc::new(sandbox.gate()));
            engines.push(Arc::new(sandbox));
        }
        Err(e) => tracing::warn!("engine.sandbox unavailable: {e}"),
    }
    gates.push(Arc::new(secrets_gate::SecretsGate::new()));
    (engines, gates)
}

/// The shipped engines under the default policy (for conformance runs).
#[doc(hidden)]
pub fn shipped_engines() -> Vec<Arc<dyn Engine>> {
    shipped_engines_with_gates(&CapabilityPolicy::default_non_sensitive()).0
}

/// The sandbox launcher: a built `mex-sandbox-exec` next to this binary when
/// there is one; otherwise a link named `mex-sandbox-exec` to this very binary
/// (which then acts as the launcher, see `main.rs`), kept in a directory every
/// uid can traverse so that the unprivileged child can start it.
pub(crate) fn launcher() -> Option<PathBuf> {
    if let Ok(found) = mex_sandbox::find_launcher() {
        return Some(found);
    }
    let exe = std::env::current_exe().ok()?;
    // Only the `mex` binary itself can stand in for the launcher.
    if exe.file_stem().is_none_or(|stem| stem != "mex") {
        return None;
    }
    link_to_exe(&exe, LAUNCHER_NAME)
}

/// A link `<name>-<digest of exe's path>` to `exe` in a directory every uid
/// can traverse (the binary acts on the name it was started under).
pub(crate) fn link_to_exe(exe: &Path, name: &str) -> Option<PathBuf> {
    let dir = std::env::temp_dir().join("mex-sandbox").join("bin");
    std::fs::create_dir_all(&dir).ok()?;
    let link = dir.join(format!("{name}-{}", short_digest(exe)));
    if std::fs::read_link(&link).ok().as_deref() != Some(exe) {
        let staging = dir.join(format!(".{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&staging);
        std::os::unix::fs::symlink(exe, &staging).ok()?;
        std::fs::rename(&staging, &link).ok()?;
    }
    Some(link)
}

fn short_digest(path: &Path) -> String {
    mex_envelope::Sha256Digest::of(path.as_os_str().as_encoded_bytes()).to_hex()[..12].to_owned()
}

/// Every published JSON Schema as `(file stem under schemas/, rendered text)`:
/// the one list of them. `mex schema`, `cargo xtask schemas` and the drift
/// test read it; the CLI is the one crate that sees every publisher.
#[doc(hidden)]
pub fn published_schemas() -> Vec<(String, String)> {
    let render = mex_envelope::schema::render;
    let mut all: Vec<(String, String)> = mex_envelope::schema::all()
        .into_iter()
        .map(|n| (n.name.to_owned(), render(&n.schema)))
        .collect();
    all.push((
        "mechanical-engines".into(),
        mex_registry::internal::render_schema(&mex_registry::schema()),
    ));
    all.push((
        "capability-policy".into(),
        render(&mex_gates::policy::schema()),
    ));
    for (name, schema) in mex_recorder::schemas() {
        all.push((name.to_owned(), render(&schema)));
    }
    all.push((
        "conformance-report".into(),
        render(&mex_conformance::report_schema()),
    ));
    all.push((
        "conformance-certificate".into(),
        render(&mex_conformance::certificate_schema()),
    ));
    for (name, schema) in report::schemas() {
        all.push((name.to_owned(), render(&schema)));
    }
    all
}
