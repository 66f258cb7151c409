//! Signed certificates: with a home key, certification writes a detached DSSE
//! signature and a certifier holding the public key accepts only what that
//! key signed, byte for byte. Without a key, nothing changes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mex_attest::HomeKey;
use mex_conformance::{CertificateCertifier, Harness, certify, signature_path};
use mex_engine_physics::PhysicsEngine;
use mex_runtime::{Certifier, Engine};

fn registry() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../mechanical_engines.json")
}

/// Certify engine.physics into `certs`, signing with `key`.
fn certify_into(certs: &Path, key: Option<Arc<HomeKey>>) -> (PathBuf, Arc<dyn Engine>) {
    let harness = Harness::load(registry()).unwrap().with_certificate_key(key);
    let engine: Arc<dyn Engine> = Arc::new(PhysicsEngine::new().unwrap());
    let outcome = certify(&harness, engine.clone(), certs, None, &mut |_| {}).unwrap();
    let (_, path) = outcome
        .certificate
        .expect("the physics engine passes the suite");
    (path, engine)
}

fn check(certifier: &CertificateCertifier, engine: &Arc<dyn Engine>) -> Result<(), String> {
    certifier.check(
        &engine.engine_id(),
        engine.implementation_id(),
        &engine.implementation_version(),
        &mex_runtime::code_digest(&**engine).unwrap(),
    )
}

#[test]
fn signed_certificates_are_accepted_only_from_the_home_key_and_unaltered() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certificates");
    let key = Arc::new(HomeKey::from_seed(&[11; 32]));
    let (path, engine) = certify_into(&certs, Some(key.clone()));
    let sig = signature_path(&path);
    assert!(
        sig.is_file(),
        "a signature is written beside the certificate"
    );

    let trusting = |k: &HomeKey| {
        CertificateCertifier::new(registry(), &certs).with_trusted_key(Some(k.public().clone()))
    };
    check(&trusting(&key), &engine).unwrap();

    // Another home's key: refused.
    let other = HomeKey::from_seed(&[12; 32]);
    let err = check(&trusting(&other), &engine).unwrap_err();
    assert!(err.contains("does not verify"), "{err}");

    // One flipped byte in the certificate (still valid JSON: a digit of the
    // issue time): refused, though an unsigned check would accept it.
    let original = std::fs::read(&path).unwrap();
    let mut flipped = original.clone();
    let at = String::from_utf8_lossy(&original)
        .find("\"issued_at\": \"")
        .unwrap()
        + 15;
    flipped[at] = if flipped[at] == b'1' { b'2' } else { b'1' };
    std::fs::write(&path, &flipped).unwrap();
    let err = check(&trusting(&key), &engine).unwrap_err();
    assert!(err.contains("edited after signing"), "{err}");
    check(&CertificateCertifier::new(registry(), &certs), &engine).unwrap();
    std::fs::write(&path, &original).unwrap();
    check(&trusting(&key), &engine).unwrap();

    // Unsigned (signature removed): refused when the home has a key.
    std::fs::remove_file(&sig).unwrap();
    let err = check(&trusting(&key), &engine).unwrap_err();
    assert!(err.contains("unsigned"), "{err}");
}

#[test]
fn a_home_without_a_key_certifies_and_checks_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certificates");
    let (path, engine) = certify_into(&certs, None);
    assert!(!signature_path(&path).exists());
    check(&CertificateCertifier::new(registry(), &certs), &engine).unwrap();
    // A certificate signed by another key is refused; re-certifying without
    // a key removes the stale signature.
    let (path, _) = certify_into(&certs, Some(Arc::new(HomeKey::from_seed(&[13; 32]))));
    assert!(signature_path(&path).exists());
    let err = check(
        &CertificateCertifier::new(registry(), &certs)
            .with_trusted_key(Some(HomeKey::from_seed(&[14; 32]).public().clone())),
        &engine,
    )
    .unwrap_err();
    assert!(err.contains("does not verify"), "{err}");
    certify_into(&certs, None);
    assert!(!signature_path(&path).exists());
}
