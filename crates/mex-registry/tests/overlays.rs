//! Overlays (`registry.d/*.json`, `--registry-dir`) and implementations of
//! kind `process`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::Path;

use mex_registry::{ImplementationKind, Registry, RegistryError};
use serde_json::{Value, json};

fn shipped() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mechanical_engines.json")
}

fn example_overlay() -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/engines/sous_chef");
    serde_json::from_str(&std::fs::read_to_string(dir.join("sous_chef.json")).unwrap()).unwrap()
}

fn example_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/engines/sous_chef")
}

#[test]
fn an_overlay_replaces_a_declared_only_engine_with_a_process_implementation() {
    let r = Registry::load_with_overlays(shipped(), &[example_dir()]).unwrap();
    let e = r.engine(&"engine.sous_chef".parse().unwrap()).unwrap();
    let imp = &e.implementations[0];
    assert_eq!(imp.kind, ImplementationKind::Process);
    let spec = imp.process.as_ref().unwrap();
    assert_eq!(spec.interpreter.as_deref(), Some("python3"));
    assert_eq!(spec.files.len(), 1);
    assert!(
        e.gates
            .iter()
            .any(|g| g.gate.as_str() == "G-SAFETY.PROCESS")
    );
    // Without the overlay, the shipped declaration is declared only.
    let plain = Registry::load(shipped()).unwrap();
    let e = plain.engine(&"engine.sous_chef".parse().unwrap()).unwrap();
    assert!(e.implementations.is_empty());
}

#[test]
fn an_overlay_cannot_redeclare_an_engine_with_implementations() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = example_overlay();
    // Reuse the example's files, under a physics id that already has an implementation.
    for f in ["engine.py", "mex_engine.py"] {
        std::fs::copy(example_dir().join(f), dir.path().join(f)).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("params")).unwrap();
    std::fs::copy(
        example_dir().join("params/scale_recipe.schema.json"),
        dir.path().join("params/scale_recipe.schema.json"),
    )
    .unwrap();
    doc["engines"][0]["engine_id"] = json!("engine.physics");
    doc["engines"][0]["operations"][0]["name"] = json!("physics.scale_recipe");
    doc["engines"][0]["conformance_vectors"] = json!([]);
    let text = serde_json::to_string_pretty(&doc).unwrap();
    std::fs::write(dir.path().join("physics.json"), &text).unwrap();
    let line = 1 + text
        .lines()
        .position(|l| l.contains("\"engine_id\""))
        .unwrap();
    let err = Registry::load_with_overlays(shipped(), &[dir.path().to_path_buf()]).unwrap_err();
    let RegistryError::Invalid { problems, .. } = err else {
        panic!("{err}")
    };
    let p = problems
        .iter()
        .find(|p| p.kind.code() == "REGISTRY.DUPLICATE_ENGINE")
        .unwrap_or_else(|| panic!("{problems:?}"));
    assert!(p.file.ends_with("physics.json"), "{p:?}");
    assert_eq!(p.pointer, "/engines/0/engine_id");
    assert_eq!(p.line, line, "{p:?}");
}

#[test]
fn an_overlay_problem_names_the_overlay_file_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = example_overlay();
    doc["engines"][0]["implementations"][0]["path"] = json!("../engine.py");
    doc["engines"][0]["conformance_vectors"] = json!([]);
    std::fs::create_dir_all(dir.path().join("params")).unwrap();
    std::fs::copy(
        example_dir().join("params/scale_recipe.schema.json"),
        dir.path().join("params/scale_recipe.schema.json"),
    )
    .unwrap();
    std::fs::copy(
        example_dir().join("mex_engine.py"),
        dir.path().join("mex_engine.py"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("chef.json"),
        serde_json::to_string_pretty(&doc).unwrap(),
    )
    .unwrap();
    let err = Registry::load_with_overlays(shipped(), &[dir.path().to_path_buf()]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("chef.json"), "{text}");
    assert!(
        text.contains("/engines/0/implementations/0/path") && text.contains("REGISTRY.PATH_ESCAPE"),
        "{text}"
    );
}

#[test]
fn process_fields_are_refused_on_builtin_kinds_and_required_on_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = example_overlay();
    doc["engines"][0]["implementations"] = json!([
        {"id": "a", "version": "0.1.0", "kind": "in_process", "path": "engine.py"},
        {"id": "b", "version": "0.2.0", "kind": "process"}
    ]);
    doc["engines"][0]["conformance_vectors"] = json!([]);
    std::fs::create_dir_all(dir.path().join("params")).unwrap();
    std::fs::copy(
        example_dir().join("params/scale_recipe.schema.json"),
        dir.path().join("params/scale_recipe.schema.json"),
    )
    .unwrap();
    std::fs::write(dir.path().join("c.json"), doc.to_string()).unwrap();
    let text = Registry::load_with_overlays(shipped(), &[dir.path().to_path_buf()])
        .unwrap_err()
        .to_string();
    assert!(text.contains("/engines/0/implementations/0/path"), "{text}");
    assert!(text.contains("/engines/0/implementations/1/path"), "{text}");
}

fn wasm_overlay_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/engines/context_wasm")
}

#[test]
fn an_overlay_declares_a_wasm_implementation_by_its_module_and_pin() {
    let r = Registry::load_with_overlays(shipped(), &[wasm_overlay_dir()]).unwrap();
    let e = r.engine(&"engine.context_wasm".parse().unwrap()).unwrap();
    let imp = &e.implementations[0];
    assert_eq!(imp.kind, ImplementationKind::Wasm);
    assert!(!imp.kind.is_builtin());
    assert!(imp.process.is_none());
    let module = imp.wasm.as_ref().unwrap();
    assert_eq!(module.rel, "find_todos.wasm");
    assert_eq!(
        module.sha256,
        mex_envelope::Sha256Digest::of(&std::fs::read(&module.path).unwrap())
    );
}

/// The example overlay with its implementation replaced by `imp`, loaded
/// from a copy of the example's directory.
fn load_wasm_with(imp: Value) -> Result<Registry, RegistryError> {
    let dir = tempfile::tempdir().unwrap();
    let src = wasm_overlay_dir();
    std::fs::create_dir_all(dir.path().join("params")).unwrap();
    std::fs::copy(
        src.join("params/find_todos.schema.json"),
        dir.path().join("params/find_todos.schema.json"),
    )
    .unwrap();
    std::fs::copy(
        src.join("find_todos.wasm"),
        dir.path().join("find_todos.wasm"),
    )
    .unwrap();
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("context.json")).unwrap()).unwrap();
    doc["engines"][0]["conformance_vectors"] = json!([]);
    doc["engines"][0]["implementations"] = json!([imp]);
    let file = dir.path().join("mechanical_engines.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    Registry::load(&file)
}

#[test]
fn a_wasm_implementation_needs_a_pin_and_takes_no_interpreter_or_files() {
    let pointers = |imp: Value| -> Vec<String> {
        load_wasm_with(imp)
            .unwrap_err()
            .problems()
            .iter()
            .map(|p| p.pointer.clone())
            .collect()
    };
    let base = json!({"id": "context-wasm", "version": "0.1.0", "kind": "wasm", "path": "find_todos.wasm"});
    assert!(
        pointers(base.clone())
            .iter()
            .any(|p| p.ends_with("/implementations/0/sha256")),
        "a missing sha256 is reported at its pointer"
    );
    let mut with_interp = base.clone();
    with_interp["sha256"] = json!("0".repeat(64));
    with_interp["interpreter"] = json!("python3");
    assert!(
        pointers(with_interp)
            .iter()
            .any(|p| p.ends_with("/implementations/0/interpreter"))
    );
    let mut no_path = json!({"id": "context-wasm", "version": "0.1.0", "kind": "wasm"});
    no_path["sha256"] = json!("0".repeat(64));
    assert!(
        pointers(no_path)
            .iter()
            .any(|p| p.ends_with("/implementations/0/path"))
    );
}
