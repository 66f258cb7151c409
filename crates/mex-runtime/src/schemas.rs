//! Every JSON Schema the mex crates publish, in one list, for tools (the CLI's
//! `mex schema`, `cargo xtask schemas` and the drift test). The runtime is the
//! one crate that sees all of them; it owns the list, not the schemas.

/// `(name, rendered schema)` pairs; the name is the file stem under `schemas/`.
pub fn published_schemas() -> Vec<(String, String)> {
    let render = mex_envelope::schema::render;
    let mut all: Vec<(String, String)> = mex_envelope::schema::all()
        .into_iter()
        .map(|n| (n.name.to_owned(), render(&n.schema)))
        .collect();
    all.push((
        "mechanical-engines".into(),
        mex_registry::render_schema(&mex_registry::schema()),
    ));
    all.push((
        "capability-policy".into(),
        render(&mex_gates::policy::schema()),
    ));
    for (name, schema) in mex_recorder::schemas() {
        all.push((name.to_owned(), render(&schema)));
    }
    all
}
