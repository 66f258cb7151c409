//! Directory payloads of conformance vectors: a `dir` payload is read under
//! the referenced-file bounds and its handle must be the bundle the artifact
//! store makes of it; every bad directory is a problem at its pointer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::{Path, PathBuf};

use mex_artifacts::{ArtifactStore, BundleOptions, PutOptions};
use mex_envelope::{ArtifactKind, Classification};
use mex_registry::{PayloadKind, Registry, RegistryError};
use serde_json::{Value, json};

const INPUT: &str = "00000000-0000-4000-8000-0000000000a1";
const AT: &str = "/engines/0/conformance_vectors/0/payloads/0";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The hash and size the store gives `dir` as a bundle (line endings kept).
fn bundle_of(dir: &Path) -> (String, u64) {
    let store_dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::at(store_dir.path()).unwrap();
    let h = store
        .put_dir(
            dir,
            &BundleOptions {
                put: PutOptions::new(ArtifactKind::Bundle, Classification::Low),
                normalize_line_endings: false,
            },
        )
        .unwrap();
    (h.content_hash.to_string(), h.size_bytes)
}

/// A registry in `root` whose one vector runs `demo.run` on one input of
/// `kind` with `hash`/`size`, backed by `payload`.
fn write_registry(root: &Path, kind: &str, hash: &str, size: u64, payload: Value) -> PathBuf {
    let mut doc: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("valid-minimal.json")).unwrap(),
    )
    .unwrap();
    let op = json!({
        "schema_version": "poe-1.0",
        "op_id": "00000000-0000-4000-8000-000000000001",
        "engine_id": "engine.demo",
        "engine_version_req": "^1",
        "operation": "demo.run",
        "inputs": [{
            "artifact_id": INPUT, "kind": kind, "content_hash": hash,
            "size_bytes": size, "classification": "low", "exportable": true
        }],
        "params": {"input_ref": INPUT},
        "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts"],
        "budget": {},
        "determinism": "D2"
    });
    std::fs::write(root.join("op.json"), op.to_string()).unwrap();
    let mut payload = payload;
    payload["artifact_id"] = json!(INPUT);
    doc["engines"][0]["conformance_vectors"][0]["operation_file"] = json!("op.json");
    doc["engines"][0]["conformance_vectors"][0]["payloads"] = json!([payload]);
    let file = root.join("registry.json");
    std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    file
}

fn tree(root: &Path) -> PathBuf {
    let dir = root.join("tree");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/a.rs"), "fn a() {} // TODO\r\n").unwrap();
    std::fs::write(dir.join("README"), "hello\n").unwrap();
    dir
}

/// The problems of a load that must fail.
fn problems(file: &Path) -> Vec<mex_registry::Problem> {
    match Registry::load(file) {
        Ok(_) => panic!("{}: loaded, but its payload is bad", file.display()),
        Err(RegistryError::Invalid { problems, .. }) => problems,
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn assert_problem(file: &Path, pointer: &str, needle: &str) {
    let ps = problems(file);
    assert!(
        ps.iter()
            .any(|p| p.pointer == pointer && p.message.contains(needle)),
        "expected a problem at {pointer} saying {needle:?}, got:\n{ps:#?}"
    );
}

#[test]
fn a_directory_payload_loads_as_the_bundle_the_store_makes_of_it() {
    let root = tempfile::tempdir().unwrap();
    let dir = tree(root.path());
    let (hash, size) = bundle_of(&dir);
    let file = write_registry(root.path(), "bundle", &hash, size, json!({"dir": "tree"}));
    let reg = Registry::load(&file).unwrap();
    let engine = reg.engine(&"engine.demo".parse().unwrap()).unwrap();
    let payload = &engine.vectors[0].payloads[0];
    assert_eq!(payload.kind, PayloadKind::Dir);
    assert_eq!(payload.path, dir.canonicalize().unwrap());
}

#[test]
fn a_directory_whose_bundle_differs_from_the_handle_is_a_problem() {
    let root = tempfile::tempdir().unwrap();
    let dir = tree(root.path());
    let (hash, size) = bundle_of(&dir);
    // One more file: another index.
    std::fs::write(dir.join("extra"), "x").unwrap();
    let file = write_registry(root.path(), "bundle", &hash, size, json!({"dir": "tree"}));
    assert_problem(&file, &format!("{AT}/dir"), "as a bundle index has sha256");
}

#[test]
fn a_symlink_in_a_directory_payload_is_a_problem() {
    let root = tempfile::tempdir().unwrap();
    let dir = tree(root.path());
    let (hash, size) = bundle_of(&dir);
    std::os::unix::fs::symlink("/etc/passwd", dir.join("src/link")).unwrap();
    let file = write_registry(root.path(), "bundle", &hash, size, json!({"dir": "tree"}));
    assert_problem(
        &file,
        &format!("{AT}/dir"),
        "\"tree/src/link\" is a symbolic link",
    );
}

#[test]
fn a_directory_payload_over_the_file_count_is_a_problem() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("tree");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..=mex_registry::MAX_PAYLOAD_DIR_FILES {
        std::fs::write(dir.join(format!("f{i:05}")), "").unwrap();
    }
    let file = write_registry(
        root.path(),
        "bundle",
        &"0".repeat(64),
        1,
        json!({"dir": "tree"}),
    );
    assert_problem(&file, &format!("{AT}/dir"), "more than 1024 files");
}

#[test]
fn a_directory_payload_over_the_byte_bound_is_a_problem() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("tree");
    std::fs::create_dir(&dir).unwrap();
    let half = vec![b'a'; (mex_registry::MAX_REFERENCED_FILE_BYTES / 2) as usize + 1];
    std::fs::write(dir.join("a"), &half).unwrap();
    std::fs::write(dir.join("b"), &half).unwrap();
    let file = write_registry(
        root.path(),
        "bundle",
        &"0".repeat(64),
        1,
        json!({"dir": "tree"}),
    );
    assert_problem(&file, &format!("{AT}/dir"), "bytes in all (at \"tree/b\")");
}

#[test]
fn a_name_not_in_canonical_form_is_a_problem() {
    let root = tempfile::tempdir().unwrap();
    let dir = tree(root.path());
    // "é" spelled decomposed (NFD): the store would rename it.
    std::fs::write(dir.join("e\u{301}.txt"), "x").unwrap();
    let file = write_registry(
        root.path(),
        "bundle",
        &"0".repeat(64),
        1,
        json!({"dir": "tree"}),
    );
    assert_problem(&file, &format!("{AT}/dir"), "is not a valid bundle entry");
}

#[test]
fn a_dir_payload_that_is_a_file_or_escapes_is_a_problem() {
    let root = tempfile::tempdir().unwrap();
    tree(root.path());
    let file = write_registry(
        root.path(),
        "bundle",
        &"0".repeat(64),
        1,
        json!({"dir": "tree/README"}),
    );
    assert_problem(&file, &format!("{AT}/dir"), "is not a directory");
    let file = write_registry(
        root.path(),
        "bundle",
        &"0".repeat(64),
        1,
        json!({"dir": "../"}),
    );
    assert_problem(&file, &format!("{AT}/dir"), "must stay inside it");
}

#[test]
fn a_payload_names_exactly_one_of_file_and_dir() {
    let root = tempfile::tempdir().unwrap();
    tree(root.path());
    let file = write_registry(
        root.path(),
        "bundle",
        &"0".repeat(64),
        1,
        json!({"dir": "tree", "file": "tree/README"}),
    );
    assert_problem(&file, AT, "not both");
    let file = write_registry(root.path(), "bundle", &"0".repeat(64), 1, json!({}));
    assert_problem(&file, AT, "add \"file\"");
}

#[test]
fn the_handle_kind_must_match_the_payload_kind() {
    let root = tempfile::tempdir().unwrap();
    let dir = tree(root.path());
    let (hash, size) = bundle_of(&dir);
    let file = write_registry(root.path(), "file", &hash, size, json!({"dir": "tree"}));
    assert_problem(&file, &format!("{AT}/dir"), "is stored as a bundle");
    let bytes = std::fs::read(dir.join("README")).unwrap();
    let file = write_registry(
        root.path(),
        "bundle",
        &mex_envelope::Sha256Digest::of(&bytes).to_string(),
        bytes.len() as u64,
        json!({"file": "tree/README"}),
    );
    assert_problem(&file, &format!("{AT}/file"), "must be a \"dir\"");
}
