//! `G-SAFETY.PROCESS`: the engine gate of every process implementation.
//!
//! The registry loader adds it (required) to every engine that has a
//! process implementation, so it cannot be forgotten in a declaration. It
//! decides on the operation (which implementation its `engine_version_req`
//! resolves to) and on trusted facts: the registry's pins, the host's
//! interpreter allowlist, and what the kernel enforces (a launcher probe
//! made once, when the gate is built).
//!
//! Every code it emits, with its severity and rule, is in [`GATE_CODES`]:
//! that table is the one list of them.

use std::collections::BTreeMap;

use mex_envelope::{EngineId, GateDenial, GateId, PlannedOperation, Sha256Digest};
use mex_gates::Gate;
use mex_gates::codes::{degraded, deny};
use mex_registry::{ImplementationKind, ProcessSpec, Registry};
use mex_sandbox::Enforcement;

use crate::{MAX_PINNED_FILE_BYTES, ProcessEngineConfig};

/// Every code this gate emits, with its rule (`degraded` ones admit the
/// operation; every other one denies it).
pub const GATE_CODES: &[(&str, &str)] = &[
    (
        "G-SAFETY.PROCESS.DIGEST_MISMATCH",
        "a pinned file is missing or does not hash to its pin (checked on every admission)",
    ),
    (
        "G-SAFETY.PROCESS.INTERPRETER_DENIED",
        "the implementation's interpreter is not on the host's allowlist",
    ),
    (
        "G-SAFETY.PROCESS.INTERPRETER_UNAVAILABLE",
        "allowlisted, but not installed on this host",
    ),
    (
        "G-SAFETY.PROCESS.UNAVAILABLE",
        "the sandbox cannot confine a child here and degraded sandboxing is not allowed (fail closed)",
    ),
    (
        "G-SAFETY.PROCESS.DEGRADED",
        "degraded (admitted): running without Landlock because the trusted policy allows it",
    ),
];

/// How a protocol implementation runs: pinned files, or the host executable.
#[derive(Debug, Clone)]
enum Confined {
    Pinned(ProcessSpec),
    Host,
}

/// The `G-SAFETY.PROCESS` gate.
pub struct ProcessGate {
    id: GateId,
    /// Per engine, its implementations highest version first, with how
    /// each runs (None: not through the protocol, not this gate's).
    implementations: BTreeMap<EngineId, Vec<(semver::Version, Option<Confined>)>>,
    interpreters: Vec<String>,
    enforcement: Result<Enforcement, String>,
    allow_degraded: bool,
}

impl ProcessGate {
    /// Build the gate from the registry and the adapter's trusted config;
    /// probes the launcher once.
    pub fn new(registry: &Registry, config: &ProcessEngineConfig) -> Self {
        let implementations = registry
            .engines()
            .filter(|e| {
                e.implementations
                    .iter()
                    .any(|i| i.kind.is_protocol_process())
            })
            .map(|e| {
                (
                    e.id.clone(),
                    e.implementations
                        .iter()
                        .map(|i| {
                            let how = match (&i.process, i.kind) {
                                (Some(spec), _) => Some(Confined::Pinned(spec.clone())),
                                (None, ImplementationKind::HostProcess) => Some(Confined::Host),
                                (None, _) => None,
                            };
                            (i.version.clone(), how)
                        })
                        .collect(),
                )
            })
            .collect();
        Self {
            id: GateId::from_static("G-SAFETY.PROCESS"),
            implementations,
            interpreters: config.interpreters.clone(),
            enforcement: mex_sandbox::probe(&config.sandbox, config.allow_degraded)
                .map_err(|e| e.to_string()),
            allow_degraded: config.allow_degraded,
        }
    }
}

/// Whether the file at `path` hashes to `pin` (bounded read).
fn matches_pin(path: &std::path::Path, pin: &Sha256Digest) -> Result<(), String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot be read ({e})"))?;
    let mut bytes = Vec::new();
    f.take(MAX_PINNED_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read ({e})"))?;
    let got = Sha256Digest::of(&bytes);
    if got == *pin && bytes.len() as u64 <= MAX_PINNED_FILE_BYTES {
        Ok(())
    } else {
        Err(format!("hashes to {got}, but the registry pins {pin}"))
    }
}

impl Gate for ProcessGate {
    fn id(&self) -> &GateId {
        &self.id
    }

    fn check_all(&self, op: &PlannedOperation) -> Vec<GateDenial> {
        let mut findings = Vec::new();
        let Some(imps) = self.implementations.get(&op.engine_id) else {
            return findings;
        };
        // The implementation admission resolves to (highest match).
        let Some(how) = imps
            .iter()
            .find(|(v, _)| op.engine_version_req.matches(v))
            .and_then(|(_, s)| s.as_ref())
        else {
            return findings;
        };
        // A host_process implementation is the host executable itself: no
        // pins, no interpreter; confinement is checked as for any process.
        let no_files: &[mex_registry::PinnedFile] = &[];
        let (files, interpreter): (Vec<&mex_registry::PinnedFile>, Option<&String>) = match how {
            Confined::Pinned(spec) => (spec.all_files().collect(), spec.interpreter.as_ref()),
            Confined::Host => (no_files.iter().collect(), None),
        };
        for f in files {
            if let Err(why) = matches_pin(&f.path, &f.sha256) {
                findings.push(deny(
                    "G-SAFETY.PROCESS.DIGEST_MISMATCH",
                    "registry.implementation.sha256",
                    format!(
                        "the engine file {} {why}; it will not run. If the change is yours, re-pin it (`mex registry pin {}`) and re-certify",
                        f.path.display(),
                        f.path.display()
                    ),
                    None,
                ));
            }
        }
        if let Some(name) = interpreter {
            if !self.interpreters.iter().any(|i| i == name) {
                findings.push(deny(
                    "G-SAFETY.PROCESS.INTERPRETER_DENIED",
                    "sandbox.exec_allowlist",
                    format!(
                        "{} runs with interpreter {name:?}, which is not on this host's sandbox allowlist ({}); use one of those",
                        op.engine_id,
                        self.interpreters.join(", ")
                    ),
                    None,
                ));
            } else if mex_sandbox::resolve_executable(name).is_err() {
                findings.push(deny(
                    "G-SAFETY.PROCESS.INTERPRETER_UNAVAILABLE",
                    "sandbox.interpreter_installed",
                    format!(
                        "{} needs {name:?}, which is allowlisted but not installed on this host",
                        op.engine_id
                    ),
                    None,
                ));
            }
        }
        match &self.enforcement {
            Ok(e) if !e.degraded => {}
            Ok(_) => findings.push(degraded(
                "G-SAFETY.PROCESS.DEGRADED",
                "policy.degraded.sandbox_without_landlock",
                "Landlock is not enforced on this host; the engine runs with rlimits, a cleared environment and an unprivileged uid only, because the trusted policy allows degraded sandboxing",
                None,
            )),
            Err(reason) => findings.push(deny(
                "G-SAFETY.PROCESS.UNAVAILABLE",
                if self.allow_degraded {
                    "sandbox.launcher"
                } else {
                    "sandbox.landlock"
                },
                format!(
                    "the sandbox cannot confine a process engine on this host ({reason}); fail closed"
                ),
                None,
            )),
        }
        findings
    }
}
