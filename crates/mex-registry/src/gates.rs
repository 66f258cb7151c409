//! The gate names this runtime knows. The registry may list only these; an
//! unknown name is a load error, so a typo can never silently disable a gate.
//!
//! This file is the one home of the global gate ids: every other crate names
//! them through these constants (`tests/tests/gate_ids_one_home.rs` fails
//! when a global gate id is spelled as a string literal anywhere else).

/// G-SCHEMA: the envelope and params against their schemas.
pub const GATE_SCHEMA: &str = "G-SCHEMA";
/// G-CAP: capabilities and consent, default deny.
pub const GATE_CAP: &str = "G-CAP";
/// G-INTEGRITY: inputs, references, the inline rule, replayed op ids.
pub const GATE_INTEGRITY: &str = "G-INTEGRITY";
/// G-BUDGET: the budget against registry defaults and maximums.
pub const GATE_BUDGET: &str = "G-BUDGET";
/// G-PROVENANCE: one implementation resolved, evidence policy.
pub const GATE_PROVENANCE: &str = "G-PROVENANCE";
/// G-DET: the determinism ceiling and the seed rule.
pub const GATE_DET: &str = "G-DET";

/// The six global gates, in the order they run; they run for every
/// operation and are never listed in the registry.
pub const GLOBAL_GATES: [&str; 6] = [
    GATE_SCHEMA,
    GATE_CAP,
    GATE_INTEGRITY,
    GATE_BUDGET,
    GATE_PROVENANCE,
    GATE_DET,
];

/// Engine-specific gates an engine may list, with what each checks.
///
/// MEX v1.2 names `G-SAFETY.GEOM`, `G-SAFETY.GCODE`, `G-SAFETY.FOOD`,
/// `G-SAFETY.SANDBOX` and `G-LICENSE`; the other names are this project's
/// choice (`docs/contract.md §8.2`) for gates it
/// describes in words (the "policy/consent gate", "connector policy gate",
/// "secrets policy gate", "remote policy gate") or as a stricter mode of a
/// global gate (`<GLOBAL>.<MODE>`).
pub const ENGINE_GATES: [(&str, &str); 14] = [
    (
        "G-SAFETY.PROCESS",
        "process engines: the pinned file(s) match their SHA-256, the interpreter is on the host's sandbox allowlist, and the sandbox can confine the child (added to every engine with a process implementation)",
    ),
    (
        "G-SAFETY.GEOM",
        "geometry safety: rejects non-manifold or out-of-tolerance models where required",
    ),
    (
        "G-SAFETY.GCODE",
        "G-code safety: machine bounds, feeds and speeds, forbidden commands",
    ),
    (
        "G-SAFETY.FOOD",
        "food safety: forbids unsafe substitutions and unsafe safety assertions",
    ),
    (
        "G-SAFETY.SANDBOX",
        "sandbox policy: exec allowlist, network and filesystem confinement of the child process",
    ),
    (
        "G-LICENSE",
        "asset licensing: fonts, samples, stock assets must carry an allowed license",
    ),
    (
        "G-POLICY.DEVICE",
        "device consent: an explicit consent record per device_id or port",
    ),
    (
        "G-POLICY.CONNECTOR",
        "connector policy: live pulls from mail/task/time connectors need consent",
    ),
    (
        "G-POLICY.SECRETS",
        "secrets and remote profiles: key use and sync targets need a policy approval",
    ),
    (
        "G-POLICY.REMOTE",
        "remote VCS operations need net.http and a policy approval",
    ),
    (
        "G-BUDGET.STRICT",
        "strict budget mode: no soft overrun, kill on the first limit",
    ),
    (
        "G-DET.EVIDENCE",
        "evidence mode: D0/D1 operations must carry an evidence_policy and produce snapshot bundles",
    ),
    (
        "G-SCHEMA.EXPECTATIONS",
        "dataset expectations: G-SCHEMA may delegate to a data-expectations suite",
    ),
    (
        "G-BUDGET.SNIPPETS",
        "snippet budget: bounds the bytes of source snippets returned to the planner",
    ),
];

/// Whether `gate` is one of the six global gates.
pub fn is_global_gate(gate: &str) -> bool {
    GLOBAL_GATES.contains(&gate)
}

/// Whether `gate` is a known engine-specific gate.
pub fn is_engine_gate(gate: &str) -> bool {
    ENGINE_GATES.iter().any(|(g, _)| *g == gate)
}

/// Whether `gate` is known at all (global or engine-specific).
pub fn is_known_gate(gate: &str) -> bool {
    is_global_gate(gate) || is_engine_gate(gate)
}
