//! JSON Schema (draft 2020-12) generation for the wire types.
//!
//! The committed files under `schemas/` are generated from here; a test fails
//! when they drift, and `cargo xtask schemas` rewrites them.

use schemars::Schema;

use crate::{ArtifactManifest, EngineResult, PlannedOperation};

/// A named, generated schema.
pub struct NamedSchema {
    /// File stem under `schemas/`, e.g. `planned-operation`.
    pub name: &'static str,
    /// The schema.
    pub schema: Schema,
}

/// Every schema this crate publishes, in a stable order.
pub fn all() -> Vec<NamedSchema> {
    vec![
        NamedSchema {
            name: "planned-operation",
            schema: schemars::schema_for!(PlannedOperation),
        },
        NamedSchema {
            name: "engine-result",
            schema: schemars::schema_for!(EngineResult),
        },
        NamedSchema {
            name: "artifact-manifest",
            schema: schemars::schema_for!(ArtifactManifest),
        },
        NamedSchema {
            name: "engine-request",
            schema: schemars::schema_for!(crate::protocol::EngineRequest),
        },
        NamedSchema {
            name: "engine-completion",
            schema: schemars::schema_for!(crate::protocol::EngineCompletion),
        },
    ]
}

/// Render a schema the way it is committed: pretty JSON with a trailing newline.
pub fn render(schema: &Schema) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}
