//! Workspace hygiene, checked under plain `cargo test`:
//! every member inherits the workspace lints, every crate root starts with a
//! `//!` doc, every dependency comes from `[workspace.dependencies]`, and the
//! mex crates depend on each other only in the documented direction.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn members() -> Vec<PathBuf> {
    let mut out = vec![root().join("xtask"), root().join("tests")];
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let path = entry.unwrap().path();
        if path.join("Cargo.toml").exists() {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn manifest(dir: &Path) -> toml::Table {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap()
}

fn name_of(m: &toml::Table) -> String {
    m["package"]["name"].as_str().unwrap().to_owned()
}

const DEP_TABLES: [&str; 3] = ["dependencies", "dev-dependencies", "build-dependencies"];

/// Which mex crates each mex crate may depend on (normal dependencies).
/// `mex-engine-*` crates may use only the engine-author API.
fn allowed_mex_deps(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "mex-envelope" | "mex-group" | "mex-sqlite" => &[],
        "mex-artifacts" | "mex-recorder" => &["mex-envelope", "mex-group", "mex-sqlite"],
        "mex-registry" => &["mex-envelope", "mex-artifacts"],
        "mex-gates" => &["mex-envelope", "mex-registry", "mex-artifacts"],
        "mex-sandbox" => &["mex-envelope"],
        "mex-attest" => &["mex-envelope", "mex-recorder"],
        "mex-runtime" => &[
            "mex-envelope",
            "mex-registry",
            "mex-artifacts",
            "mex-recorder",
            "mex-gates",
            "mex-sandbox",
            "mex-sqlite",
        ],
        "mex-conformance" => &[
            "mex-envelope",
            "mex-registry",
            "mex-runtime",
            "mex-gates",
            "mex-artifacts",
            "mex-recorder",
            "mex-attest",
        ],
        // The process-engine adapter is built from registry declarations.
        "mex-engine-process" => &[
            "mex-envelope",
            "mex-registry",
            "mex-runtime",
            "mex-sandbox",
            "mex-gates",
        ],
        // The wasm-engine adapter is built from registry declarations and
        // shares the process adapter's completion and output checks.
        "mex-engine-wasm" => &[
            "mex-envelope",
            "mex-registry",
            "mex-runtime",
            "mex-engine-process",
        ],
        // The SDK speaks the wire protocol only.
        "mex-engine-sdk" => &["mex-envelope"],
        // Handler libraries hosted out of process (`host_process`) speak the
        // protocol through the SDK; mex-envelope for its one-home rules
        // (JSON pointers), mex-artifacts for the store's path rules.
        "mex-engine-wrangler" => &["mex-engine-sdk", "mex-envelope"],
        "mex-engine-context" => &["mex-engine-sdk", "mex-envelope", "mex-artifacts"],
        "mex-engine-dba" => &["mex-engine-sdk"],
        // A host_process handler library: the SDK only (it runs out of process).
        "mex-engine-sovereign" => &["mex-engine-sdk"],
        // Engines use the engine-author API; an engine-specific gate implements
        // mex-gates' public `Gate` trait.
        n if n.starts_with("mex-engine-") => {
            &["mex-envelope", "mex-runtime", "mex-sandbox", "mex-gates"]
        }
        "mex-mcp" => &[
            "mex-envelope",
            "mex-gates",
            "mex-registry",
            "mex-artifacts",
            "mex-recorder",
            "mex-runtime",
        ],
        "mex-cli" => return None,
        _ => return None,
    })
}

#[test]
fn every_member_inherits_workspace_lints() {
    for dir in members() {
        let m = manifest(&dir);
        let inherits = m
            .get("lints")
            .and_then(|l| l.get("workspace"))
            .and_then(|w| w.as_bool())
            == Some(true);
        assert!(
            inherits,
            "{}: add `[lints] workspace = true`",
            dir.join("Cargo.toml").display()
        );
    }
}

#[test]
fn every_crate_root_starts_with_a_module_doc() {
    for dir in members() {
        for root_file in ["src/lib.rs", "src/main.rs"] {
            let path = dir.join(root_file);
            if let Ok(text) = std::fs::read_to_string(&path) {
                assert!(
                    text.trim_start().starts_with("//!"),
                    "{}: start the crate with a `//!` doc saying what it owns and what it does not",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn every_dependency_comes_from_the_workspace() {
    for dir in members() {
        let m = manifest(&dir);
        let mut tables: Vec<(&str, &toml::Table)> = Vec::new();
        for t in DEP_TABLES {
            if let Some(table) = m.get(t).and_then(|v| v.as_table()) {
                tables.push((t, table));
            }
        }
        if let Some(targets) = m.get("target").and_then(|v| v.as_table()) {
            for cfg in targets.values() {
                for t in DEP_TABLES {
                    if let Some(table) = cfg.get(t).and_then(|v| v.as_table()) {
                        tables.push((t, table));
                    }
                }
            }
        }
        for (t, table) in tables {
            for (dep, spec) in table {
                let from_ws = spec.get("workspace").and_then(|w| w.as_bool()) == Some(true);
                assert!(
                    from_ws,
                    "{}: [{t}] {dep} must be `{dep}.workspace = true` (declare it once in the root [workspace.dependencies])",
                    dir.join("Cargo.toml").display()
                );
            }
        }
    }
}

#[test]
fn mex_crates_depend_only_in_the_documented_direction() {
    for dir in members() {
        let m = manifest(&dir);
        let name = name_of(&m);
        let Some(allowed) = allowed_mex_deps(&name) else {
            continue;
        };
        let deps = m
            .get("dependencies")
            .and_then(|v| v.as_table())
            .cloned()
            .unwrap_or_default();
        for dep in deps.keys().filter(|d| d.starts_with("mex-")) {
            assert!(
                allowed.contains(&dep.as_str()),
                "{name} depends on {dep}, which ARCHITECTURE.md does not allow (allowed: {allowed:?})"
            );
        }
    }
}

#[test]
fn envelope_depends_on_no_other_mex_crate() {
    let m = manifest(&root().join("crates/mex-envelope"));
    for t in DEP_TABLES {
        if let Some(table) = m.get(t).and_then(|v| v.as_table()) {
            assert!(
                !table.keys().any(|d| d.starts_with("mex-")),
                "mex-envelope must not depend on another mex crate ([{t}])"
            );
        }
    }
}

#[test]
fn only_mex_mcp_has_an_async_runtime() {
    for dir in members() {
        let m = manifest(&dir);
        let name = name_of(&m);
        let deps = m
            .get("dependencies")
            .and_then(|v| v.as_table())
            .cloned()
            .unwrap_or_default();
        for dep in ["tokio", "hyper", "hyper-util", "rmcp"] {
            assert!(
                name == "mex-mcp" || !deps.contains_key(dep),
                "{name} depends on {dep}; only mex-mcp may have an async runtime (see ARCHITECTURE.md)"
            );
        }
    }
}

/// The in-process engine crates name ambient authority as disallowed, so an
/// engine that reaches for `std::fs`, `std::net`, `std::process` or the
/// environment has to say why (see ARCHITECTURE.md, Conventions).
#[test]
fn in_process_engines_disallow_ambient_authority() {
    for krate in ["mex-engine-physics", "mex-engine-sandbox"] {
        let path = root().join("crates").join(krate).join("clippy.toml");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let table: toml::Table = text.parse().unwrap();
        let listed: Vec<String> = table["disallowed-methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                assert!(
                    m.get("reason").is_some(),
                    "{krate}: every disallowed method has a reason: {m}"
                );
                m["path"].as_str().unwrap().to_owned()
            })
            .collect();
        for needed in [
            "std::fs::read",
            "std::fs::write",
            "std::fs::File::open",
            "std::process::Command::new",
            "std::net::TcpStream::connect",
            "std::env::var",
        ] {
            assert!(
                listed.iter().any(|l| l == needed),
                "{krate}/clippy.toml does not disallow {needed}"
            );
        }
        // The workspace's test allowances are repeated (clippy reads only the
        // nearest clippy.toml).
        assert_eq!(
            table.get("allow-unwrap-in-tests"),
            Some(&toml::Value::Boolean(true))
        );
    }
}

/// The API boundary (ARCHITECTURE.md): what is public only for sibling
/// crates lives in a hidden `internal` module (or is `#[doc(hidden)]`), and
/// is not re-exported at a crate root, where outside code would take it for
/// the stable API.
#[test]
fn sibling_only_items_are_not_reexported_at_a_crate_root() {
    let sibling_only: &[(&str, &[&str])] = &[
        (
            "mex-gates",
            &[
                "Pipeline",
                "Admitted",
                "GlobalGate",
                "RegistryCatalog",
                "InputVerifier",
                "OpClaims",
                "MemoryClaims",
                "replayed_op_id",
            ],
        ),
        ("mex-recorder", &["Claim,", "ClaimOutcome"]),
        ("mex-registry", &["is_known_gate", "is_engine_gate"]),
        (
            "mex-artifacts",
            &["PathRef", "look_alike_key", "validate_reference"],
        ),
    ];
    for (krate, names) in sibling_only {
        let lib = root().join("crates").join(krate).join("src/lib.rs");
        let text = std::fs::read_to_string(&lib).unwrap();
        // The root's re-exports: every `pub use` before `pub mod internal`.
        let (root_part, internal) = text
            .split_once("pub mod internal")
            .unwrap_or_else(|| panic!("{krate} has no `internal` module"));
        assert!(
            root_part.trim_end().ends_with("#[doc(hidden)]"),
            "{krate}: `pub mod internal` must be #[doc(hidden)]"
        );
        let reexports: String = root_part
            .split("pub use ")
            .skip(1)
            .map(|s| s.split(';').next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" ");
        for name in *names {
            let bare = name.trim_end_matches(',');
            let word = |s: &str| {
                s.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .any(|w| w == bare)
            };
            assert!(
                !word(&reexports),
                "{krate} re-exports the sibling-only `{bare}` at its root; put it in `internal` (ARCHITECTURE.md, API boundary)"
            );
            assert!(
                word(internal),
                "{krate}: `{bare}` is missing from `internal`"
            );
        }
    }
}
