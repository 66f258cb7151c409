//! The list of generated files the workspace publishes, shared by
//! `cargo xtask schemas` (which writes them) and the drift test in `tests/`
//! (which fails when the committed files differ), and the list of engine
//! implementations `cargo xtask conformance` certifies. Owns no runtime code.

use std::sync::Arc;

/// Every published JSON Schema as `(file stem under schemas/, rendered text)`.
pub fn published_schemas() -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = mex_envelope::schema::all()
        .into_iter()
        .map(|n| (n.name.to_owned(), mex_envelope::schema::render(&n.schema)))
        .collect();
    all.push((
        "mechanical-engines".into(),
        mex_registry::render_schema(&mex_registry::schema()),
    ));
    all.push((
        "capability-policy".into(),
        mex_envelope::schema::render(&mex_gates::policy::schema()),
    ));
    for (name, schema) in mex_recorder::schemas() {
        all.push((name.to_owned(), mex_envelope::schema::render(&schema)));
    }
    all.push((
        "conformance-report".into(),
        mex_envelope::schema::render(&mex_conformance::report_schema()),
    ));
    all.push((
        "conformance-certificate".into(),
        mex_envelope::schema::render(&mex_conformance::certificate_schema()),
    ));
    all
}

/// Every engine implementation the conformance task runs, in registry order
/// of their engine ids. Add a new engine crate's implementation here.
pub fn conformance_subjects() -> Vec<Arc<dyn mex_runtime::Engine>> {
    let mut subjects: Vec<Arc<dyn mex_runtime::Engine>> = Vec::new();
    if let Ok(physics) = mex_engine_physics::PhysicsEngine::new() {
        subjects.push(Arc::new(physics));
    }
    subjects
}
