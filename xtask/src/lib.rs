//! Developer-task helpers shared by `cargo xtask` and the drift test in
//! `tests/`. The lists themselves live with the product (`mex_cli`), so the
//! CLI, xtask and the tests cannot disagree. Owns no runtime code.

/// Every published JSON Schema as `(file stem under schemas/, rendered text)`.
pub fn published_schemas() -> Vec<(String, String)> {
    mex_cli::published_schemas()
}

/// Every engine implementation the conformance task runs, and the
/// engine-specific gates a host installs with them.
pub fn conformance_subjects() -> mex_cli::EnginesAndGates {
    mex_cli::shipped_engines_with_gates(&mex_gates::CapabilityPolicy::default_non_sensitive())
}
