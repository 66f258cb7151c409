//! `G-SAFETY.SANDBOX`: the engine gate of `engine.sandbox`.
//!
//! It decides on the PlannedOperation alone (no artifact contents; the
//! command allowlist artifact is checked by the engine, `SBOX_POLICY_DENIED`)
//! and on trusted facts fixed when it is built: the interpreter allowlist
//! (the registry implementation's `executables`), which interpreters are
//! installed, and what the kernel enforces (a launcher probe).
//!
//! Every code it emits, with its severity and rule, is in [`GATE_CODES`]:
//! that table is the one list of them.

use mex_envelope::{CapabilityKind, GateDenial, GateId, PlannedOperation};
use mex_gates::Gate;
use mex_gates::codes::{degraded, deny};
use mex_sandbox::{Enforcement, SandboxConfig};
use serde_json::Value;

/// Every code this gate emits, with its rule (`degraded` ones admit the
/// operation; every other one denies it).
pub const GATE_CODES: &[(&str, &str)] = &[
    (
        "G-SAFETY.SANDBOX.UNKNOWN_OPERATION",
        "the operation is not one of `sandbox.run_shell`, `sandbox.run_python`, `sandbox.run_js`",
    ),
    (
        "G-SAFETY.SANDBOX.EXEC_DENIED",
        "the interpreter (`params.shell`, e.g. `pwsh`) or a requested `proc.exec:<x>` is not on the allowlist",
    ),
    (
        "G-SAFETY.SANDBOX.EXEC_NOT_REQUESTED",
        "`sandbox.run_shell` without `proc.exec:<shell>` among the requested capabilities (the shell must be granted like any executable)",
    ),
    (
        "G-SAFETY.SANDBOX.INTERPRETER_UNAVAILABLE",
        "the interpreter is allowlisted but not installed on this host (e.g. `node` for `sandbox.run_js`)",
    ),
    (
        "G-SAFETY.SANDBOX.UNAVAILABLE",
        "Landlock is missing or older than ABI 4 (or the launcher cannot run) and the policy does not allow degraded sandboxing (fail closed)",
    ),
    (
        "G-SAFETY.SANDBOX.DEGRADED",
        "degraded (admitted): no Landlock (ABI >= 4) or no working launcher, admitted because the trusted policy sets `degraded.sandbox_without_landlock`",
    ),
];

/// The interpreters `engine.sandbox` may run (the registry's
/// `executables` of `mex-engine-sandbox` 0.1.0).
pub const DEFAULT_INTERPRETERS: &[&str] = &["bash", "python3", "node"];

/// The interpreter an operation runs, from its name and params.
pub fn interpreter_of(op: &PlannedOperation) -> Option<String> {
    match op.operation.as_str() {
        "sandbox.run_python" => Some("python3".into()),
        "sandbox.run_js" => Some("node".into()),
        "sandbox.run_shell" => op
            .params
            .get("shell")
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

/// The `G-SAFETY.SANDBOX` gate.
pub struct SandboxGate {
    id: GateId,
    interpreters: Vec<String>,
    installed: Vec<String>,
    enforcement: Result<Enforcement, String>,
    allow_degraded: bool,
}

impl SandboxGate {
    /// Build the gate: `interpreters` is the allowlist (use
    /// [`DEFAULT_INTERPRETERS`], the registry's list); the launcher is probed
    /// once here to learn what the kernel enforces. `allow_degraded` is the
    /// trusted policy's `degraded.sandbox_without_landlock`.
    pub fn new(config: &SandboxConfig, interpreters: &[&str], allow_degraded: bool) -> Self {
        let enforcement = mex_sandbox::probe(config, allow_degraded).map_err(|e| e.to_string());
        let installed = interpreters
            .iter()
            .filter(|i| mex_sandbox::resolve_executable(i).is_ok())
            .map(|i| (*i).to_owned())
            .collect();
        Self {
            id: GateId::from_static("G-SAFETY.SANDBOX"),
            interpreters: interpreters.iter().map(|i| (*i).to_owned()).collect(),
            installed,
            enforcement,
            allow_degraded,
        }
    }

    /// What the probe found (for the engine to record).
    pub fn enforcement(&self) -> Result<&Enforcement, &str> {
        self.enforcement.as_ref().map_err(String::as_str)
    }
}

impl Gate for SandboxGate {
    fn id(&self) -> &GateId {
        &self.id
    }

    fn check_all(&self, op: &PlannedOperation) -> Vec<GateDenial> {
        let mut findings = Vec::new();
        let Some(interpreter) = interpreter_of(op) else {
            findings.push(deny(
                "G-SAFETY.SANDBOX.UNKNOWN_OPERATION",
                "sandbox.operations",
                format!(
                    "{} is not an operation engine.sandbox runs (run_shell, run_python, run_js)",
                    op.operation
                ),
                Some("/operation".into()),
            ));
            return findings;
        };
        let allowed = |name: &str| self.interpreters.iter().any(|i| i == name);
        if !allowed(&interpreter) {
            findings.push(deny(
                "G-SAFETY.SANDBOX.EXEC_DENIED",
                "sandbox.exec_allowlist",
                format!(
                    "interpreter {interpreter:?} is not on the sandbox allowlist ({}); use one of those",
                    self.interpreters.join(", ")
                ),
                Some(if op.operation.as_str() == "sandbox.run_shell" {
                    "/params/shell".into()
                } else {
                    "/operation".into()
                }),
            ));
        } else if !self.installed.contains(&interpreter) {
            findings.push(deny(
                "G-SAFETY.SANDBOX.INTERPRETER_UNAVAILABLE",
                "sandbox.interpreter_installed",
                format!(
                    "{} needs {interpreter:?}, which is allowlisted but not installed on this host; {} is declared but refused here",
                    op.operation, op.operation
                ),
                Some("/operation".into()),
            ));
        }
        for (i, cap) in op.capabilities_requested.iter().enumerate() {
            if cap.kind() != CapabilityKind::ProcExec {
                continue;
            }
            for name in cap.scope().unwrap_or_default().split(',') {
                if !allowed(name) {
                    findings.push(deny(
                        "G-SAFETY.SANDBOX.EXEC_DENIED",
                        "sandbox.exec_allowlist",
                        format!(
                            "{cap} asks to execute {name:?}, which is not on the sandbox allowlist ({})",
                            self.interpreters.join(", ")
                        ),
                        Some(format!("/capabilities_requested/{i}")),
                    ));
                }
            }
        }
        if op.operation.as_str() == "sandbox.run_shell" && allowed(&interpreter) {
            let requested = op.capabilities_requested.iter().any(|c| {
                c.kind() == CapabilityKind::ProcExec
                    && c.scope()
                        .unwrap_or_default()
                        .split(',')
                        .any(|s| s == interpreter)
            });
            if !requested {
                findings.push(deny(
                    "G-SAFETY.SANDBOX.EXEC_NOT_REQUESTED",
                    "sandbox.shell_requested",
                    format!("sandbox.run_shell with shell {interpreter:?} must request proc.exec:{interpreter}"),
                    Some("/capabilities_requested".into()),
                ));
            }
        }
        match &self.enforcement {
            Ok(e) if !e.degraded => {}
            Ok(_) => findings.push(degraded(
                "G-SAFETY.SANDBOX.DEGRADED",
                "policy.degraded.sandbox_without_landlock",
                "Landlock is not enforced on this host; the child runs with rlimits, a cleared environment and an unprivileged uid only, because the trusted policy allows degraded sandboxing",
                None,
            )),
            Err(reason) if self.allow_degraded => findings.push(deny(
                "G-SAFETY.SANDBOX.UNAVAILABLE",
                "sandbox.launcher",
                format!("the sandbox launcher cannot run at all: {reason}"),
                None,
            )),
            Err(reason) => findings.push(deny(
                "G-SAFETY.SANDBOX.UNAVAILABLE",
                "sandbox.landlock",
                format!("the sandbox cannot confine the child on this host ({reason}); fail closed. An operator may allow degraded sandboxing in the policy (degraded.sandbox_without_landlock)"),
                None,
            )),
        }
        findings
    }
}
