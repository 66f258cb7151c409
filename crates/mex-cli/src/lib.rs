//! The parts of the `mex` product other tools share: which engines ship
//! (and therefore get certified), and every JSON Schema the product
//! publishes. The `mex` binary (src/main.rs), `cargo xtask conformance` and
//! `cargo xtask schemas` all read these lists, so there is one of each.

use std::sync::Arc;

use mex_runtime::Engine;

/// The engine implementations this product ships. Each still needs a
/// certificate to run. Add a new engine crate's implementation here.
pub fn shipped_engines() -> Vec<Arc<dyn Engine>> {
    let mut engines: Vec<Arc<dyn Engine>> = Vec::new();
    match mex_engine_physics::PhysicsEngine::new() {
        Ok(physics) => engines.push(Arc::new(physics)),
        Err(e) => tracing::warn!("engine.physics unavailable: {e}"),
    }
    engines
}

/// Every published JSON Schema as `(file stem under schemas/, rendered text)`.
pub fn published_schemas() -> Vec<(String, String)> {
    let render = mex_envelope::schema::render;
    let mut all = mex_runtime::schemas::published_schemas();
    all.push((
        "conformance-report".into(),
        render(&mex_conformance::report_schema()),
    ));
    all.push((
        "conformance-certificate".into(),
        render(&mex_conformance::certificate_schema()),
    ));
    all
}
