//! engine.sovereign through the real `mex` binary with host-held keys:
//! sign, encrypt and decrypt with known secrets, then every byte mex wrote
//! (the whole home but the secret store itself, SQLite database and WAL
//! included, stdout and stderr of every command, and the temporary
//! directory its jails live in) is searched for each secret in raw, hex and
//! base64 forms. Also: a key id the policy does not consent to is refused at
//! admission, and sync_push without net.http is refused.
//!
//! The engine runs as shipped: `host_process`, the `mex` binary itself
//! started as the engine host in the process-engine jail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use mex_engine_sovereign::keys::{HeldKey, KeyKind, generate};
use serde_json::{Value, json};

const ED_SEED: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

struct Env {
    home: PathBuf,
    tmp: PathBuf,
    transcript: Vec<u8>,
}

impl Env {
    fn mex(&mut self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        use std::io::Write;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mex"));
        cmd.arg("--home")
            .arg(&self.home)
            .arg("--registry")
            .arg(root().join("mechanical_engines.json"))
            .args(args)
            .env("NO_COLOR", "1")
            .env("TMPDIR", &self.tmp)
            .env_remove("MEX_HOME")
            .env_remove("MEX_REGISTRY_DIR")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut pipe = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            pipe.write_all(bytes).unwrap();
        }
        drop(pipe);
        let o = child.wait_with_output().unwrap();
        self.transcript.extend_from_slice(&o.stdout);
        self.transcript.extend_from_slice(&o.stderr);
        o
    }

    fn ok(&mut self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let o = self.mex(args, stdin);
        assert!(o.status.success(), "mex {args:?}: {}", text(&o));
        o
    }

    fn put(&mut self, name: &str, bytes: &[u8]) -> Value {
        let file = self.tmp.join(name);
        std::fs::write(&file, bytes).unwrap();
        let o = self.ok(
            &[
                "artifacts",
                "put",
                file.to_str().unwrap(),
                "--media-type",
                "application/octet-stream",
                "--json",
            ],
            None,
        );
        std::fs::remove_file(&file).unwrap();
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        serde_json::from_str(out.lines().find(|l| l.starts_with('{')).unwrap()).unwrap()
    }

    fn run(&mut self, op: &Value) -> Value {
        let file = self.tmp.join("op.json");
        std::fs::write(&file, op.to_string()).unwrap();
        let o = self.mex(&["run", file.to_str().unwrap(), "--json"], None);
        std::fs::remove_file(&file).unwrap();
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("not an EngineResult ({e}): {}", text(&o)))
    }

    fn get(&mut self, result: &Value) -> Vec<u8> {
        let id = result["outputs"][0]["artifact_id"]
            .as_str()
            .unwrap()
            .to_owned();
        self.ok(&["artifacts", "get", &id], None).stdout
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn op(operation: &str, inputs: &[&Value], params: Value, caps: &[&str]) -> Value {
    let mut caps: Vec<&str> = caps.to_vec();
    caps.splice(0..0, ["fs.read:inputs", "fs.write:artifacts"]);
    json!({
        "schema_version": "poe-1.0",
        "op_id": uuid::Uuid::new_v4(),
        "engine_id": "engine.sovereign",
        "engine_version_req": "^0.1",
        "operation": operation,
        "inputs": inputs,
        "params": params,
        "capabilities_requested": caps,
        "budget": {"wall_time_ms": 60000},
        "determinism": "D2"
    })
}

/// Every file under `dir`, except those under `skip`.
fn files(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.starts_with(skip) {
            continue;
        }
        let t = e.file_type().unwrap();
        if t.is_dir() {
            files(&p, skip, out);
        } else if t.is_file() {
            out.push(p);
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn held_keys_never_leave_the_secret_store() {
    let scratch = tempfile::tempdir().unwrap();
    let mut env = Env {
        home: scratch.path().join("home"),
        tmp: scratch.path().join("tmp"),
        transcript: Vec::new(),
    };
    std::fs::create_dir_all(&env.tmp).unwrap();
    env.ok(&["conformance", "--engine", "engine.sovereign"], None);
    std::fs::write(
        env.home.join("policy.json"),
        json!({
            "policy_version": "mex-policy-1",
            "default_profile": "default",
            "profiles": {"default": {"description": "keys", "grants": [
                "fs.read:*", "fs.write:artifacts", "secrets.use:*"]}},
            "consents": [
                {"id": "c-sig", "capability": "secrets.use:sig-key", "granted_by": "ops@example",
                 "granted_at": "2026-01-01T00:00:00Z", "expires_at": "2099-01-01T00:00:00Z"},
                {"id": "c-box", "capability": "secrets.use:box-key", "granted_by": "ops@example",
                 "granted_at": "2026-01-01T00:00:00Z", "expires_at": "2099-01-01T00:00:00Z"}
            ]
        })
        .to_string(),
    )
    .unwrap();

    let ed_text = format!("MEX-ED25519-SECRET-KEY-{ED_SEED}");
    let age_text = generate(KeyKind::Age).unwrap().to_string();
    env.ok(&["secrets", "add", "sig-key"], Some(ed_text.as_bytes()));
    env.ok(&["secrets", "add", "box-key"], Some(age_text.as_bytes()));
    let listed = env.ok(&["secrets", "list"], None);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "box-key\tage\nsig-key\ted25519\n"
    );

    // sign, then verify with the public key mex prints.
    let message = b"hello, sovereign world".to_vec();
    let msg = env.put("msg.txt", &message);
    let r = env.run(&op(
        "sovereign.sign",
        &[&msg],
        json!({"input_ref": msg["artifact_id"], "key_id": "sig-key", "sig_format": "minisign"}),
        &["secrets.use:sig-key"],
    ));
    assert_eq!(r["status"], "succeeded", "{r}");
    let sig_bytes = env.get(&r);
    let public = env.ok(&["secrets", "public", "sig-key"], None).stdout;
    assert_eq!(
        String::from_utf8_lossy(&public),
        HeldKey::parse(&ed_text).unwrap().public_text()
    );
    let sig = env.put("sig.minisig", &sig_bytes);
    let pk = env.put("key.pub", &public);
    let r = env.run(&op(
        "sovereign.verify",
        &[&msg, &sig, &pk],
        json!({"input_ref": msg["artifact_id"], "sig_ref": sig["artifact_id"],
               "pubkey_ref": pk["artifact_id"], "output": "json"}),
        &[],
    ));
    assert_eq!(r["status"], "succeeded", "{r}");

    // encrypt and decrypt.
    let r = env.run(&op(
        "sovereign.encrypt",
        &[&msg],
        json!({"input_ref": msg["artifact_id"], "key_id": "box-key", "mode": "age", "output": "blob"}),
        &["secrets.use:box-key"],
    ));
    assert_eq!(r["status"], "succeeded", "{r}");
    let cipher = env.get(&r);
    let enc = env.put("msg.age", &cipher);
    let r = env.run(&op(
        "sovereign.decrypt",
        &[&enc],
        json!({"encrypted_ref": enc["artifact_id"], "key_id": "box-key", "output_kind": "file"}),
        &["secrets.use:box-key"],
    ));
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(env.get(&r), message);

    // A wrong key (an Ed25519 key for age) fails typed, naming only the id.
    let r = env.run(&op(
        "sovereign.decrypt",
        &[&enc],
        json!({"encrypted_ref": enc["artifact_id"], "key_id": "sig-key", "output_kind": "file"}),
        &["secrets.use:sig-key"],
    ));
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["errors"][0]["code"], "SOV_KEY_DENIED", "{r}");

    // A key id without a consent record: refused at admission.
    let r = env.run(&op(
        "sovereign.sign",
        &[&msg],
        json!({"input_ref": msg["artifact_id"], "key_id": "other", "sig_format": "minisign"}),
        &["secrets.use:other"],
    ));
    assert_eq!(r["status"], "denied", "{r}");
    assert!(
        r.to_string().contains("G-CAP.CONSENT_SCOPE_MISMATCH"),
        "{r}"
    );
    // A key requested that params.key_id does not name: G-POLICY.SECRETS.
    let r = env.run(&op(
        "sovereign.sign",
        &[&msg],
        json!({"input_ref": msg["artifact_id"], "key_id": "sig-key", "sig_format": "minisign"}),
        &["secrets.use:sig-key", "secrets.use:box-key"],
    ));
    assert_eq!(r["status"], "denied", "{r}");
    assert!(r.to_string().contains("G-POLICY.SECRETS.UNUSED_KEY"), "{r}");
    // sync_push without net.http: refused at admission (the registry requires it).
    let profile = env.put("profile.json", br#"{"url": "http://127.0.0.1:9/x"}"#);
    let r = env.run(&op(
        "sovereign.sync_push",
        &[&msg, &profile],
        json!({"bundle_ref": msg["artifact_id"], "remote_profile_ref": profile["artifact_id"], "encrypt": false}),
        &[],
    ));
    assert_eq!(r["status"], "denied", "{r}");
    assert!(r.to_string().contains("net.http"), "{r}");

    // Now search everything.
    let seed = hex::decode(ED_SEED).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64u = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut needles: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, raw) in [
        ("ed25519 text", ed_text.as_bytes().to_vec()),
        ("ed25519 seed", seed.clone()),
        ("age text", age_text.as_bytes().to_vec()),
    ] {
        needles.push((format!("{name} raw"), raw.clone()));
        needles.push((format!("{name} hex"), hex::encode(&raw).into_bytes()));
        needles.push((format!("{name} HEX"), hex::encode_upper(&raw).into_bytes()));
        needles.push((format!("{name} base64"), b64.encode(&raw).into_bytes()));
        needles.push((format!("{name} base64url"), b64u.encode(&raw).into_bytes()));
    }
    // The age key's Bech32 payload, lower case as well.
    needles.push((
        "age text lower".into(),
        age_text.to_lowercase().into_bytes(),
    ));
    let mut all = Vec::new();
    files(&env.home, &env.home.join("secrets"), &mut all);
    files(&env.tmp, &env.home.join("secrets"), &mut all);
    assert!(
        all.iter().any(|p| p.ends_with("recorder.sqlite3")),
        "the recorder is among the files searched: {all:?}"
    );
    let mut contents: Vec<(String, Vec<u8>)> = all
        .iter()
        .map(|p| (p.display().to_string(), std::fs::read(p).unwrap()))
        .collect();
    contents.push(("stdout/stderr".into(), env.transcript.clone()));
    for (name, needle) in &needles {
        for (file, bytes) in &contents {
            assert!(!contains(bytes, needle), "{name} found in {file}");
        }
    }
    // The store itself holds the keys (mode 0600 in a 0700 directory).
    use std::os::unix::fs::PermissionsExt;
    let dir_mode = std::fs::metadata(env.home.join("secrets"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let f_mode = std::fs::metadata(env.home.join("secrets/sig-key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(f_mode & 0o777, 0o600);
}
