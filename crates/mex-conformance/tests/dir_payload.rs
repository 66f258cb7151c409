//! A vector whose payload is a directory: the harness stores it as a bundle
//! (the handle the vector's operation names), and an engine reading a tree
//! certifies with it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mex_artifacts::{ArtifactStore, BundleOptions, PutOptions};
use mex_conformance::{Harness, Verdict};
use mex_envelope::{ArtifactKind, Classification, EngineId};
use mex_runtime::{Completion, Engine, EngineFailure, ExecutionContext};
use serde_json::json;

const INPUT: &str = "7d3c1f0e-0000-4000-8000-0000000000b1";

/// engine.tree: lists the entries of its one bundle input (the bundle's
/// verified index, as read through the runtime).
struct Tree;

impl Engine for Tree {
    fn engine_id(&self) -> EngineId {
        "engine.tree".parse().unwrap()
    }
    fn implementation_id(&self) -> &str {
        "tree"
    }
    fn implementation_version(&self) -> semver::Version {
        semver::Version::new(1, 0, 0)
    }
    fn execute<'run>(
        &self,
        ctx: &ExecutionContext<'run>,
    ) -> Result<Completion<'run>, EngineFailure> {
        let fail = |m: String| EngineFailure::new("TREE_FAILED", m);
        let [input] = ctx.inputs() else {
            return Err(fail("expected one input".into()));
        };
        if input.kind != ArtifactKind::Bundle {
            return Err(fail(format!("input is a {:?}, not a bundle", input.kind)));
        }
        let index = ctx.read_input(input).map_err(|e| fail(e.to_string()))?;
        ctx.write_output(
            ArtifactKind::DatasetSlice,
            "application/json".parse().ok(),
            &index,
        )
        .map_err(|e| fail(e.to_string()))?;
        Ok(ctx.complete())
    }
}

/// The bundle the store makes of `dir` (line endings kept).
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

fn registry(root: &Path) -> PathBuf {
    let tree = root.join("tree");
    std::fs::create_dir_all(tree.join("src")).unwrap();
    std::fs::write(tree.join("src/a.rs"), "// TODO: a\r\n").unwrap();
    std::fs::write(tree.join("README"), "hello\n").unwrap();
    let (hash, size) = bundle_of(&tree);
    let op = json!({
        "schema_version": "poe-1.0",
        "op_id": "7d3c1f0e-0000-4000-8000-000000000b01",
        "engine_id": "engine.tree",
        "engine_version_req": "^1",
        "operation": "tree.list",
        "inputs": [{
            "artifact_id": INPUT, "kind": "bundle", "content_hash": hash,
            "size_bytes": size, "classification": "low", "exportable": true
        }],
        "params": {},
        "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts"],
        "budget": {"output_bytes": 1048576},
        "determinism": "D3"
    });
    std::fs::write(root.join("op.json"), op.to_string()).unwrap();
    let doc = json!({
        "registry_version": "1.0",
        "engines": [{
            "engine_id": "engine.tree",
            "interface_version": "1.0.0",
            "domain": "test",
            "description": "a D3 test engine that lists its input bundle",
            "determinism_ceiling": "D3",
            "default_capabilities": ["fs.read:inputs", "fs.write:artifacts"],
            "default_budget": {"cpu_time_ms": 5000, "wall_time_ms": 5000, "memory_bytes": 268435456, "output_bytes": 1048576},
            "max_budget": {"cpu_time_ms": 60000, "wall_time_ms": 60000, "memory_bytes": 1073741824, "output_bytes": 67108864},
            "implementations": [{"id": "tree", "version": "1.0.0", "kind": "in_process"}],
            "failure_codes": [{"code": "TREE_FAILED", "description": "test failure"}],
            "operations": [{
                "name": "tree.list",
                "description": "list a bundle",
                "params_schema": {"inline": {"type": "object", "additionalProperties": false}},
                "outputs": [{"type": "artifact.dataset", "media_types": ["application/json"]}],
                "required_capabilities": ["fs.read:inputs", "fs.write:artifacts"],
                "determinism": "D3",
                "failure_codes": ["TREE_FAILED"]
            }],
            "conformance_vectors": [{
                "id": "golden-list",
                "kind": "golden",
                "description": "a directory payload is listed",
                "operation": "tree.list",
                "operation_file": "op.json",
                "payloads": [{"artifact_id": INPUT, "dir": "tree"}],
                "expect": {"outcome": "succeeded", "stability": "D3"}
            }]
        }]
    });
    let file = root.join("registry.json");
    std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    file
}

#[test]
fn a_directory_payload_is_stored_as_the_bundle_its_handle_names() {
    let root = tempfile::tempdir().unwrap();
    let file = registry(root.path());
    let report = Harness::load(&file).unwrap().run(Arc::new(Tree)).unwrap();
    let case = |id: &str| {
        report
            .cases
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no case {id}:\n{}", report.table()))
    };
    // Prepared (stored with the hash the handle claims): no failed
    // `suite.base_operation` case, and the standard cases derived from it ran.
    assert!(
        report.cases.iter().all(|c| c.id != "suite.base_operation"),
        "{}",
        report.table()
    );
    assert_eq!(
        case("integrity.hash_mismatch").verdict,
        Verdict::Pass,
        "{}",
        report.table()
    );
    // The engine refuses anything but a bundle input.
    assert_eq!(
        case("vector.golden-list").verdict,
        Verdict::Pass,
        "{}",
        report.table()
    );
    assert!(report.passed, "{}", report.table());
}

#[test]
fn a_changed_directory_fails_the_registry_load_not_the_run() {
    let root = tempfile::tempdir().unwrap();
    let file = registry(root.path());
    std::fs::write(root.path().join("tree/README"), "changed\n").unwrap();
    let err = Harness::load(&file).unwrap_err().to_string();
    assert!(
        err.contains("/engines/0/conformance_vectors/0/payloads/0/dir")
            && err.contains("as a bundle index has sha256"),
        "{err}"
    );
}
