//! Developer-task helpers shared by `cargo xtask` and the drift test in
//! `tests/`. The lists themselves live with the product (`mex_cli`), so the
//! CLI, xtask and the tests cannot disagree. Owns no runtime code.

use std::sync::Arc;

/// Every published JSON Schema as `(file stem under schemas/, rendered text)`.
pub fn published_schemas() -> Vec<(String, String)> {
    mex_cli::published_schemas()
}

/// Every engine implementation the conformance task runs.
pub fn conformance_subjects() -> Vec<Arc<dyn mex_runtime::Engine>> {
    mex_cli::shipped_engines()
}
