//! The JSON Schemas published by the crates the runtime is built on
//! (mex-envelope, mex-registry, mex-gates' policy, mex-recorder), in one
//! list. It is not every published schema: the conformance report and
//! certificate (mex-conformance) and the CLI's own reports are added by
//! `mex_cli::published_schemas`, the complete list that `mex schema`,
//! `cargo xtask schemas` and the drift test read.

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
