//! The certifier remembers a passed check only while nothing it read has
//! changed: not the certificate, its report or signature, the registry file,
//! its overlays, nor a file the registry entry references; and what passed
//! under one trust setting proves nothing under another.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mex_attest::HomeKey;
use mex_conformance::{CertificateCertifier, Harness, certify};
use mex_engine_physics::PhysicsEngine;
use mex_runtime::{Certifier, Engine};

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The repository's registry, copied where the test may edit it.
fn registry_copy(dir: &Path) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::copy(
        root.join("mechanical_engines.json"),
        dir.join("mechanical_engines.json"),
    )
    .unwrap();
    copy_tree(&root.join("registry"), &dir.join("registry"));
    dir.join("mechanical_engines.json")
}

fn check(certifier: &CertificateCertifier, engine: &Arc<dyn Engine>) -> Result<(), String> {
    certifier.check(
        &engine.engine_id(),
        engine.implementation_id(),
        &engine.implementation_version(),
        &mex_runtime::code_digest(&**engine).unwrap(),
    )
}

fn certified(registry: &Path, certs: &Path) -> Arc<dyn Engine> {
    let harness = Harness::load(registry).unwrap();
    let engine: Arc<dyn Engine> = Arc::new(PhysicsEngine::new().unwrap());
    let outcome = certify(&harness, engine.clone(), certs, None, &mut |_| {}).unwrap();
    assert!(
        outcome.certificate.is_some(),
        "engine.physics passes the suite"
    );
    engine
}

#[test]
fn a_remembered_pass_ends_when_a_referenced_registry_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry_copy(dir.path());
    let certs = dir.path().join("certificates");
    let engine = certified(&registry, &certs);
    let certifier = CertificateCertifier::new(&registry, &certs).with_memo_window(Duration::ZERO);
    check(&certifier, &engine).unwrap();
    check(&certifier, &engine).unwrap();
    // A params schema the entry references (hashed into the entry digest).
    let schemas = dir.path().join("registry/params/engine.physics");
    let schema = std::fs::read_dir(&schemas)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap();
    let mut text = std::fs::read(&schema).unwrap();
    text.push(b'\n');
    std::fs::write(&schema, text).unwrap();
    let err = check(&certifier, &engine).unwrap_err();
    assert!(err.contains("changed since certification"), "{err}");
}

#[test]
fn a_pass_without_a_trusted_key_is_not_remembered_for_a_certifier_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry_copy(dir.path());
    let certs = dir.path().join("certificates");
    let engine = certified(&registry, &certs);
    let lenient = CertificateCertifier::new(&registry, &certs).with_memo_window(Duration::ZERO);
    let strict = lenient
        .clone()
        .with_trusted_key(Some(HomeKey::from_seed(&[21; 32]).public().clone()));
    check(&lenient, &engine).unwrap();
    check(&lenient, &engine).unwrap();
    let err = check(&strict, &engine).unwrap_err();
    assert!(err.contains("unsigned"), "{err}");
}
