//! The handler against requests laid out like the jail: every operation's
//! success, and hostile inputs ending in typed failures.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use mex_engine_sdk::Request;
use mex_engine_sovereign::keys::{HeldKey, KeyKind, generate};
use mex_engine_sovereign::{
    SOV_ENCRYPT_ERROR, SOV_KEY_DENIED, SOV_SYNC_ERROR, SOV_VERIFY_FAILED, handle,
};
use serde_json::{Value, json};

const ED_KEY: &str =
    "MEX-ED25519-SECRET-KEY-9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

/// A request in `dir`: inputs as (param, bytes), secrets as (key_id, text).
fn request(
    dir: &Path,
    op: &str,
    mut params: Value,
    inputs: &[(&str, &[u8])],
    secrets: &[(&str, &str)],
    caps: &[&str],
) -> Request {
    let in_dir = dir.join("in");
    let out_dir = dir.join("out");
    std::fs::create_dir_all(&in_dir).unwrap();
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut docs = Vec::new();
    for (i, (param, bytes)) in inputs.iter().enumerate() {
        let id = format!("00000000-0000-4000-8000-{:012}", i + 1);
        let path = in_dir.join(&id);
        std::fs::write(&path, bytes).unwrap();
        params[*param] = json!(id);
        docs.push(json!({
            "artifact_id": id,
            "path": path.display().to_string(),
            "kind": "file",
            "content_hash": mex_envelope::Sha256Digest::of(bytes).to_string(),
            "size_bytes": bytes.len(),
        }));
    }
    let secrets: serde_json::Map<String, Value> = secrets
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let doc = json!({
        "protocol": "mex-engine-1",
        "op_id": "5c0c4ef0-0000-4000-8000-000000000001",
        "engine_id": "engine.sovereign",
        "implementation_id": "mex-engine-sovereign",
        "implementation_version": "0.1.0",
        "operation": op,
        "params": params,
        "inputs": docs,
        "budget": {"cpu_time_ms": 10000, "wall_time_ms": 60000, "memory_bytes": 536870912, "output_bytes": 67108864},
        "determinism": "D2",
        "output_dir": out_dir.display().to_string(),
        "capabilities": caps,
        "secrets": secrets,
    });
    Request::from_slice(&serde_json::to_vec(&doc).unwrap()).unwrap()
}

fn out(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join("out").join(file)).unwrap()
}

fn run(req: &mut Request) -> Result<(), (String, String)> {
    handle(req).map_err(|f| (f.code, f.message))
}

fn public_key(secret: &str) -> String {
    HeldKey::parse(secret).unwrap().public_text()
}

fn sign(message: &[u8], key: &str, format: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(
        dir.path(),
        "sovereign.sign",
        json!({"key_id": "k1", "sig_format": format}),
        &[("input_ref", message)],
        &[("k1", key)],
        &[],
    );
    run(&mut req).unwrap();
    let c = req.completion();
    assert_eq!(c.outputs.len(), 1);
    assert_eq!(c.outputs[0].kind, "artifact.document");
    out(dir.path(), &c.outputs[0].file)
}

fn verify(message: &[u8], sig: &[u8], pubkey: &[u8]) -> Result<Value, (String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(
        dir.path(),
        "sovereign.verify",
        json!({"output": "json"}),
        &[
            ("input_ref", message),
            ("sig_ref", sig),
            ("pubkey_ref", pubkey),
        ],
        &[],
        &[],
    );
    run(&mut req)?;
    Ok(serde_json::from_slice(&out(dir.path(), "verification.json")).unwrap())
}

#[test]
fn sign_then_verify_minisign_and_raw() {
    let msg = b"the quick brown fox";
    let sig = sign(msg, ED_KEY, "minisign");
    let text = String::from_utf8(sig.clone()).unwrap();
    assert!(text.contains("trusted comment: mex engine.sovereign key_id:k1"));
    let report = verify(msg, &sig, public_key(ED_KEY).as_bytes()).unwrap();
    assert_eq!(report["valid"], json!(true));
    assert_eq!(report["format"], json!("minisign"));
    // Ed25519 is deterministic: the same input signs to the same bytes.
    assert_eq!(sig, sign(msg, ED_KEY, "minisign"));

    let raw = sign(msg, ED_KEY, "custom");
    assert_eq!(raw.len(), 64);
    let report = verify(msg, &raw, public_key(ED_KEY).as_bytes()).unwrap();
    assert_eq!(report["format"], json!("custom"));
}

#[test]
fn verify_refuses_altered_message_wrong_key_and_altered_comment() {
    let msg = b"payload";
    let sig = sign(msg, ED_KEY, "minisign");
    let (code, m) = verify(b"payloaD", &sig, public_key(ED_KEY).as_bytes()).unwrap_err();
    assert_eq!(code, SOV_VERIFY_FAILED, "{m}");

    let other = generate(KeyKind::Ed25519).unwrap();
    let (code, m) = verify(msg, &sig, public_key(&other).as_bytes()).unwrap_err();
    assert_eq!(code, SOV_VERIFY_FAILED);
    assert!(m.contains("made by key"), "{m}");

    let tampered = String::from_utf8(sig)
        .unwrap()
        .replace("key_id:k1", "key_id:k2");
    let (code, m) = verify(msg, tampered.as_bytes(), public_key(ED_KEY).as_bytes()).unwrap_err();
    assert_eq!(code, SOV_VERIFY_FAILED);
    assert!(m.contains("trusted comment"), "{m}");
}

#[test]
fn verify_refuses_signatures_of_the_wrong_length_and_garbage() {
    let pk = public_key(ED_KEY);
    for bad in [
        &[0u8; 63][..],
        &[0u8; 65][..],
        b"",
        b"untrusted comment: x\nAAAA\n",
        b"\xff\xfe\x00garbage",
        &[b'A'; 5000][..],
    ] {
        let (code, m) = verify(b"m", bad, pk.as_bytes()).unwrap_err();
        assert_eq!(code, SOV_VERIFY_FAILED, "{m}");
        assert!(m.contains("params.sig_ref"), "{m}");
    }
    let raw = sign(b"m", ED_KEY, "custom");
    let (code, m) = verify(b"m", &raw, b"not a key").unwrap_err();
    assert_eq!(code, SOV_VERIFY_FAILED);
    assert!(m.contains("params.pubkey_ref"), "{m}");
}

fn encrypt(plain: &[u8], key: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(
        dir.path(),
        "sovereign.encrypt",
        json!({"key_id": "vault", "mode": "age", "output": "blob"}),
        &[("input_ref", plain)],
        &[("vault", key)],
        &[],
    );
    run(&mut req).unwrap();
    out(dir.path(), "encrypted.age")
}

fn decrypt(cipher: &[u8], key: &str) -> Result<Vec<u8>, (String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(
        dir.path(),
        "sovereign.decrypt",
        json!({"key_id": "vault", "output_kind": "file"}),
        &[("encrypted_ref", cipher)],
        &[("vault", key)],
        &[],
    );
    let r = run(&mut req);
    let partial = dir.path().join("out").join("decrypted.bin");
    match r {
        Ok(()) => Ok(std::fs::read(partial).unwrap()),
        Err(e) => {
            assert!(!partial.exists(), "a failed decrypt leaves no plaintext");
            Err(e)
        }
    }
}

#[test]
fn encrypt_then_decrypt_round_trips_and_varies() {
    let key = generate(KeyKind::Age).unwrap();
    let plain = b"sovereign data".repeat(1000);
    let c1 = encrypt(&plain, &key);
    let c2 = encrypt(&plain, &key);
    assert!(c1.starts_with(b"age-encryption.org/v1"));
    assert_ne!(c1, c2, "age uses a fresh file key each time (D2)");
    assert_eq!(decrypt(&c1, &key).unwrap(), plain);
}

#[test]
fn decrypt_refuses_truncated_garbage_and_wrong_key() {
    let key = generate(KeyKind::Age).unwrap();
    let plain = vec![7u8; 200_000];
    let cipher = encrypt(&plain, &key);
    for cut in [10, cipher.len() / 2, cipher.len() - 1] {
        let (code, m) = decrypt(&cipher[..cut], &key).unwrap_err();
        assert_eq!(code, SOV_ENCRYPT_ERROR, "cut {cut}: {m}");
    }
    let (code, _) = decrypt(b"\x00\x01garbage that is not age", &key).unwrap_err();
    assert_eq!(code, SOV_ENCRYPT_ERROR);
    let mut flipped = cipher.clone();
    let last = flipped.len() - 20;
    flipped[last] ^= 1;
    let (code, _) = decrypt(&flipped, &key).unwrap_err();
    assert_eq!(code, SOV_ENCRYPT_ERROR);

    let other = generate(KeyKind::Age).unwrap();
    let (code, m) = decrypt(&cipher, &other).unwrap_err();
    assert_eq!(code, SOV_ENCRYPT_ERROR);
    assert!(m.contains("not encrypted to key \"vault\""), "{m}");
    assert!(
        !m.contains(other.as_str()),
        "the key never reaches a message"
    );
}

#[test]
fn age_header_bomb_is_refused() {
    // A header of a million stanzas: refused by the parser, bounded.
    let mut bomb = b"age-encryption.org/v1\n".to_vec();
    for _ in 0..100_000 {
        bomb.extend_from_slice(b"-> X25519 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
    }
    let key = generate(KeyKind::Age).unwrap();
    let (code, m) = decrypt(&bomb, &key).unwrap_err();
    assert_eq!(code, SOV_ENCRYPT_ERROR);
    assert!(m.contains("header does not end"), "{m}");
    // Armored (PEM-like) input is not an age binary file: typed refusal.
    let (code, _) = decrypt(b"-----BEGIN AGE ENCRYPTED FILE-----\nAAAA\n", &key).unwrap_err();
    assert_eq!(code, SOV_ENCRYPT_ERROR);
}

#[test]
fn huge_input_within_budget_streams() {
    // 8 MiB through encrypt and decrypt (streamed), and through sign.
    let plain = vec![0x5au8; 8 << 20];
    let key = generate(KeyKind::Age).unwrap();
    let cipher = encrypt(&plain, &key);
    assert!(cipher.len() > plain.len());
    assert_eq!(decrypt(&cipher, &key).unwrap().len(), plain.len());
    let sig = sign(&plain, ED_KEY, "custom");
    assert!(verify(&plain, &sig, public_key(ED_KEY).as_bytes()).is_ok());
}

#[test]
fn keys_not_delivered_or_of_the_wrong_kind_are_denied() {
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(
        dir.path(),
        "sovereign.sign",
        json!({"key_id": "k1", "sig_format": "minisign"}),
        &[("input_ref", b"m")],
        &[("other", ED_KEY)],
        &[],
    );
    let (code, m) = run(&mut req).unwrap_err();
    assert_eq!(code, SOV_KEY_DENIED);
    assert!(m.contains("secrets.use:k1"), "{m}");

    let age_key = generate(KeyKind::Age).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(
        dir.path(),
        "sovereign.sign",
        json!({"key_id": "k1", "sig_format": "minisign"}),
        &[("input_ref", b"m")],
        &[("k1", &age_key)],
        &[],
    );
    assert_eq!(run(&mut req).unwrap_err().0, SOV_KEY_DENIED);

    let dir = tempfile::tempdir().unwrap();
    let mut req = request(
        dir.path(),
        "sovereign.encrypt",
        json!({"key_id": "vault", "mode": "age", "output": "blob"}),
        &[("input_ref", b"m")],
        &[("vault", "MEX-ED25519-SECRET-KEY-zz-not-hex")],
        &[],
    );
    let (code, m) = run(&mut req).unwrap_err();
    assert_eq!(code, SOV_KEY_DENIED);
    assert!(
        !m.contains("zz-not-hex"),
        "a malformed key is never echoed: {m}"
    );
}

/// A one-shot HTTP server: answers `status` and returns the body it got.
fn server(status: u16) -> (String, std::thread::JoinHandle<Vec<u8>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/vault/x.age", listener.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        let (head_end, len) = loop {
            let n = s.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..i]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .unwrap()
                    .parse()
                    .unwrap();
                break (i + 4, len);
            }
        };
        while got.len() < head_end + len {
            let n = s.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        write!(s, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n").unwrap();
        got[head_end..].to_vec()
    });
    (url, h)
}

fn push(
    profile: Value,
    caps: &[&str],
    encrypt: Option<bool>,
    key: &str,
) -> (PathBuf, Result<(), (String, String)>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut params = json!({});
    if let Some(e) = encrypt {
        params["encrypt"] = json!(e);
    }
    let profile = serde_json::to_vec(&profile).unwrap();
    let mut req = request(
        dir.path(),
        "sovereign.sync_push",
        params,
        &[
            ("bundle_ref", b"bundle bytes"),
            ("remote_profile_ref", &profile),
        ],
        &[("vault", key)],
        caps,
    );
    let r = run(&mut req);
    (dir.path().join("out").join("push.log"), r, dir)
}

#[test]
fn sync_push_puts_encrypted_and_plain() {
    let key = generate(KeyKind::Age).unwrap();
    let (url, h) = server(201);
    let (log, r, _d) = push(
        json!({"url": url, "key_id": "vault"}),
        &["net.http"],
        None,
        &key,
    );
    r.unwrap();
    let body = h.join().unwrap();
    assert!(body.starts_with(b"age-encryption.org/v1"));
    assert_eq!(decrypt(&body, &key).unwrap(), b"bundle bytes");
    let log = std::fs::read_to_string(log).unwrap();
    assert!(
        log.contains("status: 201") && log.contains("encrypted: true"),
        "{log}"
    );

    let (url, h) = server(200);
    let (_, r, _d) = push(json!({"url": url}), &["net.http"], Some(false), &key);
    r.unwrap();
    assert_eq!(h.join().unwrap(), b"bundle bytes");
}

#[test]
fn sync_push_refusals() {
    let key = generate(KeyKind::Age).unwrap();
    // Without net.http: refused before any connection.
    let (_, r, _d) = push(
        json!({"url": "http://127.0.0.1:9/"}),
        &[],
        Some(false),
        &key,
    );
    let (code, m) = r.unwrap_err();
    assert_eq!(code, SOV_SYNC_ERROR);
    assert!(m.contains("net.http"), "{m}");
    // A remote refusal is a typed failure.
    let (url, h) = server(403);
    let (_, r, _d) = push(json!({"url": url}), &["net.http"], Some(false), &key);
    assert_eq!(r.unwrap_err().0, SOV_SYNC_ERROR);
    h.join().unwrap();
    // Bad profiles.
    for profile in [
        json!({"url": "https://example.invalid/"}),
        json!({"url": "http://user:pw@h/"}),
        json!({"url": "http://h/", "token": "x"}),
        json!([1]),
    ] {
        let (_, r, _d) = push(profile, &["net.http"], Some(false), &key);
        assert_eq!(r.unwrap_err().0, SOV_SYNC_ERROR);
    }
    // Encrypting without a key id in the profile.
    let (_, r, _d) = push(
        json!({"url": "http://127.0.0.1:9/"}),
        &["net.http"],
        None,
        &key,
    );
    assert_eq!(r.unwrap_err().0, SOV_KEY_DENIED);
}

/// The committed golden vector is what sign makes with RFC 8032 test key 1,
/// and it verifies.
#[test]
fn golden_vector_files_are_a_sign_verify_cycle() {
    let root =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../registry/vectors/engine.sovereign");
    let msg = std::fs::read(root.join("golden-verify.message.txt")).unwrap();
    let sig = std::fs::read(root.join("golden-verify.signature.minisig")).unwrap();
    let pk = std::fs::read(root.join("golden-verify.pubkey.pub")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(
        dir.path(),
        "sovereign.sign",
        json!({"key_id": "vector-key", "sig_format": "minisign"}),
        &[("input_ref", &msg)],
        &[("vector-key", ED_KEY)],
        &[],
    );
    run(&mut req).unwrap();
    assert_eq!(out(dir.path(), "signature.minisig"), sig);
    assert_eq!(public_key(ED_KEY).into_bytes(), pk);
    assert_eq!(verify(&msg, &sig, &pk).unwrap()["valid"], json!(true));
}
