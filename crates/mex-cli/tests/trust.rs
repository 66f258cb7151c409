//! Keys, signed checkpoints, proofs and attestations through the `mex`
//! binary, checked by independent implementations (Python: securesystemslib,
//! in-toto-attestation, and a short script written from the C2SP and RFC 6962
//! texts), and the tamper cases they must catch.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{mex, workspace};

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// The interpreter of the test venv (`cargo xtask test` sets it up).
fn python() -> PathBuf {
    match std::env::var_os("MEX_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "MEX_TEST_PYTHON is not set: run `cargo xtask test`, which installs xtask/py-requirements.txt into target/py-venv and exports it"
        ),
    }
}

fn py(script: &str, args: &[&Path]) -> Output {
    Command::new(python())
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/py")
                .join(script),
        )
        .args(args)
        .output()
        .unwrap()
}

/// A keyed home with the physics engine certified and one succeeded
/// operation run with `--attest`. Returns (home, op file, op id).
fn keyed_home_with_one_run(dir: &Path) -> (PathBuf, PathBuf, String) {
    let home = dir.join("h");
    ok(mex(&home, &["keys", "init"]));
    ok(mex(&home, &["conformance", "--engine", "engine.physics"]));
    let put = |file: &str, media: &str| {
        let out = ok(mex(
            &home,
            &[
                "artifacts",
                "put",
                "--json",
                "--media-type",
                media,
                workspace().join(file).to_str().unwrap(),
            ],
        ));
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()
    };
    let expr = put("examples/demo/pressure.expr.txt", "text/plain");
    let vars = put("examples/demo/pressure.vars.json", "application/json");
    let op_id = uuid::Uuid::new_v4().to_string();
    let op = serde_json::json!({
        "schema_version": "poe-1.0", "op_id": op_id,
        "engine_id": "engine.physics", "engine_version_req": "^0.1",
        "operation": "physics.evaluate_formula", "inputs": [expr, vars],
        "params": {"expr_ref": expr["artifact_id"], "vars_ref": vars["artifact_id"], "output_unit": "kPa"},
        "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts"],
        "budget": {"wall_time_ms": 5000, "output_bytes": 65536}, "determinism": "D3"
    });
    let op_file = dir.join("op.json");
    std::fs::write(&op_file, op.to_string()).unwrap();
    let run = mex(
        &home,
        &["run", "--json", "--attest", op_file.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    ok(run);
    assert!(stderr.contains("attestation written to"), "{stderr}");
    (home, op_file, op_id)
}

fn public_pem(home: &Path, dir: &Path) -> PathBuf {
    let shown = ok(mex(home, &["keys", "show"]));
    let pem: String = shown
        .lines()
        .take_while(|l| !l.starts_with("verifier key"))
        .map(|l| format!("{l}\n"))
        .collect();
    let path = dir.join("pub.pem");
    std::fs::write(&path, pem).unwrap();
    path
}

#[test]
fn attestation_verifies_with_securesystemslib_and_in_toto_and_a_changed_output_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (home, op_file, op_id) = keyed_home_with_one_run(dir.path());
    let pem = public_pem(&home, dir.path());
    let written = home
        .join("attestations")
        .join(format!("{op_id}.intoto.json"));
    assert!(written.is_file());

    // `mex attest` from the record (with the op document for params).
    let env_path = dir.path().join("att.json");
    ok(mex(
        &home,
        &[
            "attest",
            &op_id,
            "--op",
            op_file.to_str().unwrap(),
            "--out",
            env_path.to_str().unwrap(),
        ],
    ));
    let env: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&env_path).unwrap()).unwrap();
    let payload = base64_decode(env["payload"].as_str().unwrap());
    let statement: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    let subject = &statement["subject"][0];
    let name = subject["name"].as_str().unwrap().to_owned();
    let digest = subject["digest"]["sha256"].as_str().unwrap().to_owned();
    assert_eq!(
        statement["predicate"]["runDetails"]["metadata"]["invocationId"],
        op_id.as_str()
    );
    // The stored output's bytes, as a file the independent verifier hashes
    // (a small output is a row of the store's index, not a file).
    let blob = dir.path().join("output.bin");
    std::fs::write(&blob, stored_payload(&home, &digest)).unwrap();
    let arg = PathBuf::from(format!("{name}={}", blob.display()));

    for envelope in [&env_path, &written] {
        let out = py("verify_attestation.py", &[envelope, &pem, &arg]);
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Another key: the independent verifier refuses the signature.
    let other = tempfile::tempdir().unwrap();
    ok(mex(other.path(), &["keys", "init"]));
    let other_pem = public_pem(other.path(), other.path());
    let out = py("verify_attestation.py", &[&env_path, &other_pem]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("DSSE signature does not verify"));

    // Change the output: the subject no longer matches.
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&blob, bytes).unwrap();
    let out = py("verify_attestation.py", &[&env_path, &pem, &arg]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("SUBJECT MISMATCH"), "{said}");
}

/// The bytes the store holds for `digest`: its inline row in `index.db`,
/// else its blob file.
fn stored_payload(home: &Path, digest: &str) -> Vec<u8> {
    use rusqlite::OptionalExtension;
    let db = rusqlite::Connection::open(home.join("artifacts/index.db")).unwrap();
    let row: Option<Vec<u8>> = db
        .query_row(
            "SELECT bytes FROM inline_blobs WHERE hash = ?1",
            [digest],
            |r| r.get(0),
        )
        .optional()
        .unwrap();
    row.unwrap_or_else(|| {
        std::fs::read(
            home.join("artifacts/blobs/sha256")
                .join(&digest[..2])
                .join(&digest[2..]),
        )
        .unwrap()
    })
}

fn base64_decode(s: &str) -> Vec<u8> {
    // Small standard-alphabet decoder, so the test needs no extra crate.
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= u32::from(val(c)) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[test]
fn checkpoint_signature_key_hash_root_and_inclusion_rederived_in_python() {
    let dir = tempfile::tempdir().unwrap();
    let (home, _, _) = keyed_home_with_one_run(dir.path());
    let pem = public_pem(&home, dir.path());
    let note = dir.path().join("cp.txt");
    std::fs::write(&note, ok(mex(&home, &["recorder", "checkpoint"]))).unwrap();
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, ok(mex(&home, &["recorder", "export", "--jsonl"]))).unwrap();
    let proof = dir.path().join("proof.json");
    std::fs::write(&proof, ok(mex(&home, &["recorder", "prove", "--seq", "3"]))).unwrap();
    let out = py("verify_checkpoint.py", &[&note, &pem, &events, &proof]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The key hash the script derived is the one `mex keys show` prints.
    let shown = ok(mex(&home, &["keys", "show"]));
    let vkey_hash = shown
        .lines()
        .find_map(|l| l.strip_prefix("verifier key: "))
        .unwrap()
        .split('+')
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(said.contains(&format!("keyhash {vkey_hash}")), "{said}");
    // And the root it derived is the proof's root.
    let proof: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("proof.json")).unwrap())
            .unwrap();
    assert!(
        said.contains(proof["root_hash"].as_str().unwrap()),
        "{said}"
    );

    // A one-character change in the note: the script refuses it.
    let text = std::fs::read_to_string(&note).unwrap();
    let lines: Vec<&str> = text.split('\n').collect();
    let bumped = text.replacen(
        &format!("\n{}\n", lines[1]),
        &format!("\n{}\n", lines[1].parse::<u64>().unwrap() - 1),
        1,
    );
    std::fs::write(&note, bumped).unwrap();
    let out = py("verify_checkpoint.py", &[&note, &pem, &events]);
    assert!(!out.status.success());
}

fn sqlite(db: &Path, sql: &str) {
    let out = Command::new(python())
        .args(["-c", "import sqlite3,sys;c=sqlite3.connect(sys.argv[1]);c.executescript(sys.argv[2]);c.commit()"])
        .arg(db)
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_event_edited_after_a_checkpoint_is_named_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (home, _, _) = keyed_home_with_one_run(dir.path());
    let note = dir.path().join("cp.txt");
    std::fs::write(&note, ok(mex(&home, &["recorder", "checkpoint"]))).unwrap();
    let out = mex(
        &home,
        &["recorder", "verify", "--checkpoint", note.to_str().unwrap()],
    );
    assert!(ok(out).contains("consistent"));

    sqlite(
        &home.join("recorder.sqlite3"),
        "UPDATE events SET message = 'nothing to see' WHERE seq = 5;",
    );
    let out = mex(
        &home,
        &["recorder", "verify", "--checkpoint", note.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(4));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("CHAIN BROKEN at seq 5") && said.contains("does not match its hash"),
        "{said}"
    );
}

#[test]
fn a_truncated_and_rebuilt_chain_fails_the_consistency_check() {
    let dir = tempfile::tempdir().unwrap();
    let (home, _, _) = keyed_home_with_one_run(dir.path());
    let note = dir.path().join("cp.txt");
    std::fs::write(&note, ok(mex(&home, &["recorder", "checkpoint"]))).unwrap();
    let size: u64 = std::fs::read_to_string(&note)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();

    // Throw the log away and grow a fresh, self-consistent chain past the
    // checkpoint's size: the chain and its head verify, the checkpoint not.
    for f in [
        "recorder.sqlite3",
        "recorder.sqlite3-wal",
        "recorder.sqlite3-shm",
    ] {
        let _ = std::fs::remove_file(home.join(f));
    }
    // (The first conformance run creates the recorder again.)
    ok(mex(&home, &["conformance", "--engine", "engine.physics"]));
    while ok(mex(&home, &["recorder", "export", "--jsonl"]))
        .lines()
        .count() as u64
        <= size
    {
        ok(mex(&home, &["conformance", "--engine", "engine.physics"]));
    }
    let out = mex(&home, &["recorder", "verify"]);
    assert!(ok(out).contains("chain verified"));
    let out = mex(
        &home,
        &["recorder", "verify", "--checkpoint", note.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(4));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("CHECKPOINT INCONSISTENT"), "{said}");

    // Truncated below the checkpoint: said so.
    for f in [
        "recorder.sqlite3",
        "recorder.sqlite3-wal",
        "recorder.sqlite3-shm",
    ] {
        let _ = std::fs::remove_file(home.join(f));
    }
    ok(mex(&home, &["conformance", "--engine", "engine.physics"]));
    let out = mex(
        &home,
        &["recorder", "verify", "--checkpoint", note.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stdout).contains("truncated"));
}

#[test]
fn a_home_without_a_key_works_and_verify_says_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("h");
    // A read-only command creates no home; the first run creates it.
    ok(mex(&home, &["conformance", "--engine", "engine.physics"]));
    let out = ok(mex(&home, &["recorder", "verify"]));
    assert!(out.contains("UNSIGNED"), "{out}");
    let out = mex(&home, &["recorder", "checkpoint"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mex keys init"));
    // The proof works without a key (no checkpoint inside).
    ok(mex(&home, &["conformance", "--engine", "engine.physics"]));
    let proof = ok(mex(&home, &["recorder", "prove", "--seq", "1"]));
    assert!(!proof.contains("checkpoint"), "{proof}");
    // Once the home has a key, its old unsigned certificate is refused
    // (the flipped-byte case is in mex-conformance's tests/signed.rs).
    ok(mex(&home, &["keys", "init"]));
    let engines = ok(mex(&home, &["engines"]));
    assert!(engines.contains("unsigned"), "{engines}");
}
