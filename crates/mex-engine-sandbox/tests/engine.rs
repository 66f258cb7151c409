//! engine.sandbox through the full runtime (real registry, durable recorder,
//! artifact store): every escape attempt of issue 8 is blocked, ends with the
//! right status and code, and is on record; the golden vector is stable.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "test code: a failed expectation panics, which is the test failing"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "tests prepare files and listeners on the host, outside the engine, to attack it"
)]

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mex_artifacts::{ArtifactStore, PutOptions};
use mex_engine_sandbox::{SandboxEngine, SandboxEngineConfig};
use mex_envelope::{
    ArtifactHandle, ArtifactKind, BundleIndex, Classification, EngineResult, PlannedOperation,
    ResultStatus,
};
use mex_gates::CapabilityPolicy;
use mex_recorder::{EventQuery, FlightRecorder, SqliteRecorder};
use mex_registry::Registry;
use mex_runtime::MexRuntime;
use mex_sandbox::{Limits, SandboxConfig};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const POLICY: &str = r#"{"policy_version":"mex-policy-1","default_profile":"default",
 "profiles":{"default":{"grants":["fs.read:*","fs.write:artifacts","proc.exec:bash","proc.exec:python3","proc.exec:node","proc.exec:pwsh","net.http"]}},
 "consents":[{"id":"consent-net-test","capability":"net.http","granted_by":"test","granted_at":"2020-01-01T00:00:00Z","expires_at":"2100-01-01T00:00:00Z"}]}"#;

struct Home {
    _dir: tempfile::TempDir,
    _jail: tempfile::TempDir,
    recorder: Arc<dyn FlightRecorder>,
    store: Arc<ArtifactStore>,
    rt: MexRuntime,
}

fn home_with(uid: u32) -> Home {
    home_full(uid, false, false)
}

/// `no_landlock`: the launcher behaves as on a kernel without Landlock;
/// `degraded`: the trusted policy allows degraded sandboxing.
fn home_full(uid: u32, no_landlock: bool, degraded: bool) -> Home {
    let dir = tempfile::tempdir().unwrap();
    let jail = tempfile::Builder::new()
        .prefix("mex-sbx-jail")
        .tempdir()
        .unwrap();
    let recorder: Arc<dyn FlightRecorder> = Arc::new(SqliteRecorder::open(dir.path()).unwrap());
    let store = Arc::new(ArtifactStore::at(dir.path().join("artifacts")).unwrap());
    let registry = Arc::new(Registry::load(repo().join("mechanical_engines.json")).unwrap());
    let policy_text = if degraded {
        POLICY.replacen('{', r#"{"degraded":{"sandbox_without_landlock":true},"#, 1)
    } else {
        POLICY.to_owned()
    };
    let policy = CapabilityPolicy::from_json_str(&policy_text).unwrap();
    let engine = SandboxEngine::new(
        SandboxEngineConfig {
            sandbox: SandboxConfig {
                launcher: Some(PathBuf::from(env!("CARGO_BIN_EXE_mex-engine-sandbox-exec"))),
                run_as: (uid, uid),
                simulate_missing_landlock: no_landlock,
                ..SandboxConfig::default()
            },
            jail_root: jail.path().join("jails"),
            limits: Limits {
                memory_bytes: 256 << 20,
                cpu_time_ms: 1000,
                processes: 32,
                stdout_bytes: 64 << 10,
                stderr_bytes: 64 << 10,
                file_size_bytes: 1 << 20,
                ..Limits::default()
            },
            ..SandboxEngineConfig::default()
        }
        .with_policy(&policy),
    )
    .unwrap();
    let gate = engine.gate();
    assert!(
        no_landlock || gate.enforcement().is_ok_and(|e| e.landlock_abi >= 4),
        "Landlock (ABI >= 4) is missing on this machine: {:?}; these tests FAIL rather than pass without confinement",
        gate.enforcement()
    );
    let rt = MexRuntime::builder()
        .registry(registry)
        .policy(policy)
        .store(store.clone())
        .recorder(recorder.clone())
        .engine(Arc::new(engine))
        .engine_gate(Arc::new(gate))
        .trust_uncertified("engine.sandbox".parse().unwrap())
        .build()
        .unwrap();
    Home {
        _dir: dir,
        _jail: jail,
        recorder,
        store,
        rt,
    }
}

fn home() -> Home {
    home_with(65534)
}

impl Home {
    fn put(&self, bytes: &[u8], media: &str) -> ArtifactHandle {
        let mut o = PutOptions::new(ArtifactKind::File, Classification::Low);
        o.media_type = Some(media.parse().unwrap());
        self.store.put_bytes(bytes, &o).unwrap()
    }

    /// An op; `script` is the script text; `files` the declared outputs.
    fn op(&self, operation: &str, script: &str, files: &[&str], extra: Value) -> PlannedOperation {
        let (media, caps) = match operation {
            "sandbox.run_python" => ("text/x-python", vec!["proc.exec:python3"]),
            "sandbox.run_js" => ("text/javascript", vec!["proc.exec:node"]),
            _ => ("text/plain", vec!["proc.exec:bash"]),
        };
        let script = self.put(script.as_bytes(), media);
        let spec_text = match extra.get("spec") {
            Some(spec) => spec.as_str().unwrap().to_owned(),
            None => json!({"files": files}).to_string(),
        };
        let spec = self.put(spec_text.as_bytes(), "application/json");
        let mut inputs = vec![script.clone(), spec.clone()];
        let mut params = json!({
            "script_ref": script.artifact_id.to_string(),
            "inputs": [],
            "output_spec_ref": spec.artifact_id.to_string(),
        });
        if operation == "sandbox.run_shell" {
            let commands = extra.get("commands").cloned().unwrap_or(json!([]));
            let list = self.put(
                json!({"commands": commands}).to_string().as_bytes(),
                "application/json",
            );
            inputs.push(list.clone());
            params["shell"] = extra.get("shell").cloned().unwrap_or(json!("bash"));
            params["command_allowlist_ref"] = json!(list.artifact_id.to_string());
        }
        let mut capabilities = vec!["fs.read:inputs", "fs.write:artifacts"];
        capabilities.extend(caps);
        if extra.get("net") == Some(&json!(true)) {
            capabilities.push("net.http");
        }
        let wall = extra.get("wall_ms").and_then(Value::as_u64).unwrap_or(5000);
        PlannedOperation::from_json_value(json!({
            "schema_version": "poe-1.0", "op_id": uuid::Uuid::new_v4().to_string(),
            "engine_id": "engine.sandbox", "engine_version_req": "^0.1", "operation": operation,
            "inputs": inputs, "params": params, "capabilities_requested": capabilities,
            "budget": {"wall_time_ms": wall, "output_bytes": 1048576}, "determinism": "D2"
        }))
        .unwrap()
    }

    fn on_record(&self, op_id: uuid::Uuid, code: &str) -> bool {
        self.recorder
            .events(&EventQuery::op(op_id))
            .unwrap()
            .iter()
            .any(|e| e.code.as_ref().is_some_and(|c| c.as_str() == code))
    }

    /// Run and check status, first error code and the record.
    fn expect(&self, op: PlannedOperation, status: ResultStatus, code: &str) -> EngineResult {
        let id = op.op_id;
        let r = self.rt.execute(op);
        assert_eq!(r.status, status, "{r:#?}");
        let codes: Vec<&str> = r
            .errors
            .iter()
            .map(|e| e.code.as_str())
            .chain(r.denials.iter().map(|d| d.code.as_str()))
            .collect();
        assert!(
            codes.contains(&code),
            "expected {code}, got {codes:?}: {r:#?}"
        );
        assert!(self.on_record(id, code), "{code} is not on record for {id}");
        assert!(r.outputs.is_empty());
        r
    }
}

fn shell(h: &Home, script: &str, commands: &[&str]) -> PlannedOperation {
    h.op(
        "sandbox.run_shell",
        script,
        &[],
        json!({"commands": commands}),
    )
}

#[test]
fn golden_pinned_python_gives_the_same_bundle_hash_twice() {
    let h = home();
    let script = std::fs::read(
        repo().join("registry/vectors/engine.sandbox/golden-pinned-python.script.py"),
    )
    .unwrap();
    let spec = std::fs::read_to_string(
        repo().join("registry/vectors/engine.sandbox/golden-pinned-python.output-spec.json"),
    )
    .unwrap();
    let mut hashes = Vec::new();
    for _ in 0..2 {
        let op = h.op(
            "sandbox.run_python",
            std::str::from_utf8(&script).unwrap(),
            &[],
            json!({"spec": spec}),
        );
        let r = h.rt.execute(op);
        assert_eq!(r.status, ResultStatus::Succeeded, "{r:#?}");
        let index_handle = &r.outputs[0];
        assert_eq!(
            index_handle.media_type.as_ref().unwrap().as_str(),
            mex_engine_sandbox::BUNDLE_INDEX_MEDIA_TYPE
        );
        let index: BundleIndex =
            serde_json::from_slice(&h.store.read(index_handle).unwrap()).unwrap();
        assert_eq!(index.content_hash().unwrap(), index_handle.content_hash);
        let paths: Vec<&str> = index.entries.iter().map(|e| e.path.as_str()).collect();
        // The vector's output spec names stdout `result.json`.
        assert_eq!(paths, ["result.json", "stderr.txt"]);
        let stdout = r
            .outputs
            .iter()
            .find(|o| o.content_hash == index.entries[0].content_hash)
            .unwrap();
        assert_eq!(h.store.read(stdout).unwrap(), b"{\"sum\": 45}\n");
        let env = &r.provenance.as_ref().unwrap().environment;
        assert!(
            env.get("sandbox.landlock_abi")
                .is_some_and(|v| v.parse::<u32>().unwrap() >= 4),
            "{env:?}"
        );
        for key in [
            "sandbox.kernel",
            "sandbox.limit.memory_bytes",
            "sandbox.limit.cpu_time_s",
            "sandbox.no_new_privs",
        ] {
            assert!(env.contains_key(key), "{key} missing from {env:?}");
        }
        hashes.push(index_handle.content_hash);
    }
    assert_eq!(hashes[0], hashes[1]);
    // Pinned: the bundle of `{"sum": 45}\n` as result.json plus an empty
    // stderr.txt (computed independently: RFC 8785 index, SHA-256).
    assert_eq!(
        hashes[0].to_hex(),
        "e32ef8918fadfcca93768e04c6a19e48647eefd54aaf1dc988f3147e937e876c"
    );
}

#[test]
fn declared_files_join_the_bundle() {
    let h = home();
    let op = h.op(
        "sandbox.run_shell",
        "mkdir -p out\nprintf 'a,b\\n1,2\\n' > out/table.csv\necho done\n",
        &["out/table.csv"],
        json!({"commands": ["mkdir"]}),
    );
    let r = h.rt.execute(op);
    assert_eq!(r.status, ResultStatus::Succeeded, "{r:#?}");
    let index: BundleIndex = serde_json::from_slice(&h.store.read(&r.outputs[0]).unwrap()).unwrap();
    let paths: Vec<&str> = index.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["out/table.csv", "stderr.txt", "stdout.txt"]);
    assert_eq!(r.outputs.len(), 4);
}

#[test]
fn reject_vector_pwsh_is_denied_by_the_gate() {
    let h = home();
    let text = std::fs::read_to_string(
        repo().join("registry/vectors/engine.sandbox/reject-forbidden-exec.json"),
    )
    .unwrap();
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    // Put the vector's payloads in the store under fresh ids.
    let files = [
        "reject-forbidden-exec.script.ps1",
        "reject-forbidden-exec.allowlist.json",
        "reject-forbidden-exec.output-spec.json",
    ];
    let medias = ["text/plain", "application/json", "application/json"];
    let params = ["script_ref", "command_allowlist_ref", "output_spec_ref"];
    let mut inputs = Vec::new();
    for ((file, media), param) in files.iter().zip(medias).zip(params) {
        let bytes =
            std::fs::read(repo().join("registry/vectors/engine.sandbox").join(file)).unwrap();
        let handle = h.put(&bytes, media);
        doc["params"][param] = json!(handle.artifact_id.to_string());
        inputs.push(serde_json::to_value(&handle).unwrap());
    }
    doc["inputs"] = json!(inputs);
    doc["op_id"] = json!(uuid::Uuid::new_v4().to_string());
    let op = PlannedOperation::from_json_value(doc).unwrap();
    let r = h.expect(op, ResultStatus::Denied, "G-SAFETY.SANDBOX.EXEC_DENIED");
    assert!(
        r.denials
            .iter()
            .any(|d| d.gate.as_str() == "G-SAFETY.SANDBOX")
    );
}

#[test]
fn run_js_runs_if_node_exists_else_is_refused_clearly() {
    let h = home();
    let op = h.op("sandbox.run_js", "console.log(6 * 7)\n", &[], json!({}));
    if mex_sandbox::resolve_executable("node").is_ok() {
        let r = h.rt.execute(op);
        assert_eq!(r.status, ResultStatus::Succeeded, "{r:#?}");
        let index: BundleIndex =
            serde_json::from_slice(&h.store.read(&r.outputs[0]).unwrap()).unwrap();
        let stdout = r
            .outputs
            .iter()
            .find(|o| o.content_hash == index.entries[1].content_hash)
            .unwrap();
        assert_eq!(h.store.read(stdout).unwrap(), b"42\n");
    } else {
        h.expect(
            op,
            ResultStatus::Denied,
            "G-SAFETY.SANDBOX.INTERPRETER_UNAVAILABLE",
        );
    }
}

#[test]
fn escape_read_etc_passwd() {
    let h = home();
    h.expect(
        shell(&h, "cat /etc/passwd\n", &["cat"]),
        ResultStatus::Failed,
        "SBOX_FS_ESCAPE_DETECTED",
    );
    // Swallowing the error does not turn the attempt into a success.
    h.expect(
        shell(&h, "cat /etc/passwd || true\n", &["cat"]),
        ResultStatus::Failed,
        "SBOX_FS_ESCAPE_DETECTED",
    );
}

#[test]
fn escape_read_home() {
    let h = home();
    h.expect(
        h.op(
            "sandbox.run_python",
            "import os\nprint(os.listdir('/root'))\n",
            &[],
            json!({}),
        ),
        ResultStatus::Failed,
        "SBOX_FS_ESCAPE_DETECTED",
    );
}

#[test]
fn escape_write_outside_the_workspace() {
    let h = home();
    let target =
        std::env::temp_dir().join(format!("mex-engine-sbx-outside-{}", std::process::id()));
    h.expect(
        shell(&h, &format!("echo pwned > {}\n", target.display()), &[]),
        ResultStatus::Failed,
        "SBOX_FS_ESCAPE_DETECTED",
    );
    assert!(!target.exists());
}

#[test]
fn escape_through_a_symlink() {
    let h = home();
    // Following the link inside the sandbox is refused by Landlock...
    h.expect(
        shell(&h, "ln -s /etc/passwd link\ncat link\n", &["ln", "cat"]),
        ResultStatus::Failed,
        "SBOX_FS_ESCAPE_DETECTED",
    );
    // ...and a declared output that is a link out is not followed by the engine.
    let op = h.op(
        "sandbox.run_shell",
        "ln -s /etc/passwd out.txt\n",
        &["out.txt"],
        json!({"commands": ["ln"]}),
    );
    let r = h.expect(op, ResultStatus::Failed, "SBOX_FS_ESCAPE_DETECTED");
    assert!(!format!("{r:?}").contains("root:x:0"));
}

#[test]
fn escape_connect_without_net() {
    let h = home();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    let script = format!(
        "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'x')\n"
    );
    h.expect(
        h.op("sandbox.run_python", &script, &[], json!({})),
        ResultStatus::Failed,
        "SBOX_POLICY_DENIED",
    );
    assert!(l.accept().is_err(), "a connection got through");
}

#[test]
fn connect_with_net_granted_and_consented_works() {
    let h = home();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        buf
    });
    let script = format!(
        "import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'hello')\ns.close()\nprint('sent')\n"
    );
    let r =
        h.rt.execute(h.op("sandbox.run_python", &script, &[], json!({"net": true})));
    assert_eq!(r.status, ResultStatus::Succeeded, "{r:#?}");
    assert_eq!(server.join().unwrap(), b"hello");
    let prov = r.provenance.unwrap();
    assert_eq!(
        prov.environment.get("sandbox.network").map(String::as_str),
        Some("true")
    );
}

#[test]
fn escape_exec_off_the_allowlist() {
    let h = home();
    // `id` is on the host ceiling but not in this op's command allowlist.
    h.expect(
        shell(&h, "/usr/bin/id\n", &[]),
        ResultStatus::Failed,
        "SBOX_POLICY_DENIED",
    );
    // A command off the host ceiling cannot even be allowlisted.
    h.expect(
        shell(&h, "echo hi\n", &["curl"]),
        ResultStatus::Failed,
        "SBOX_POLICY_DENIED",
    );
    // A proc.exec for a binary off the interpreter allowlist is a gate denial.
    let mut op = shell(&h, "echo hi\n", &[]);
    op.capabilities_requested
        .push("proc.exec:perl".parse().unwrap());
    let r = h.rt.execute(op);
    assert_eq!(r.status, ResultStatus::Denied);
}

#[test]
fn escape_fork_bomb() {
    // Its own uid: the bomb must not eat the process limit of the other tests.
    let h = home_with(60_124);
    let op = h.op(
        "sandbox.run_shell",
        "b(){ b | b & }\nb\nwait\n",
        &[],
        json!({"wall_ms": 1500}),
    );
    let id = op.op_id;
    let r = h.rt.execute(op);
    let code = r
        .errors
        .first()
        .map(|e| e.code.as_str().to_owned())
        .unwrap_or_default();
    assert!(
        (r.status == ResultStatus::Failed && code == "SBOX_POLICY_DENIED")
            || (r.status == ResultStatus::BudgetExceeded && code == "SBOX_TIMEOUT"),
        "{r:#?}"
    );
    assert!(h.on_record(id, &code));
}

#[test]
fn escape_memory_past_budget() {
    let h = home();
    let r = h.expect(
        h.op(
            "sandbox.run_python",
            "x = bytearray(600 * 1024 * 1024)\n",
            &[],
            json!({}),
        ),
        ResultStatus::BudgetExceeded,
        "SBOX_RUNTIME_ERROR",
    );
    assert!(r.errors[0].message.starts_with("memory budget:"), "{r:#?}");
}

#[test]
fn the_ops_own_memory_budget_is_applied_below_the_hosts_limit() {
    // The host allows 256 MiB; the op asks for 64 MiB and allocates 128 MiB.
    let h = home();
    let mut op = h.op(
        "sandbox.run_python",
        "x = bytearray(128 * 1024 * 1024)\n",
        &[],
        json!({}),
    );
    op.budget.memory_bytes = Some(64 << 20);
    let r = h.expect(op, ResultStatus::BudgetExceeded, "SBOX_RUNTIME_ERROR");
    assert!(r.errors[0].message.starts_with("memory budget:"), "{r:#?}");
    // The same script within the host's limit and no tighter op budget succeeds.
    let op = h.op(
        "sandbox.run_python",
        "x = bytearray(128 * 1024 * 1024)\n",
        &[],
        json!({}),
    );
    assert_eq!(h.rt.execute(op).status, ResultStatus::Succeeded);
}

#[test]
fn escape_cpu_spin_past_budget() {
    let h = home();
    // A wall-time budget far beyond the CPU limit (even on a heavily loaded
    // machine the spinner reaches its CPU limit first).
    let op = h.op(
        "sandbox.run_shell",
        "while :; do :; done\n",
        &[],
        json!({"commands": [], "wall_ms": 300000}),
    );
    let r = h.expect(op, ResultStatus::BudgetExceeded, "SBOX_TIMEOUT");
    // The CPU limit stopped it, not the wall time: the message says which.
    assert!(r.errors[0].message.starts_with("CPU time:"), "{r:#?}");
}

#[test]
fn escape_print_without_end() {
    let h = home();
    let r = h.expect(
        shell(
            &h,
            "while :; do echo xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; done\n",
            &[],
        ),
        ResultStatus::BudgetExceeded,
        "SBOX_RUNTIME_ERROR",
    );
    assert!(r.errors[0].message.starts_with("output budget:"), "{r:#?}");
}

#[test]
fn escape_sleep_past_wall_time() {
    let h = home();
    let r = h.expect(
        h.op(
            "sandbox.run_shell",
            "sleep 30\n",
            &[],
            json!({"commands": ["sleep"], "wall_ms": 500}),
        ),
        ResultStatus::BudgetExceeded,
        "SBOX_TIMEOUT",
    );
    assert!(r.errors[0].message.starts_with("wall time:"), "{r:#?}");
}

#[test]
fn a_failing_script_is_a_runtime_error() {
    let h = home();
    h.expect(
        shell(&h, "echo oops >&2\nexit 3\n", &[]),
        ResultStatus::Failed,
        "SBOX_RUNTIME_ERROR",
    );
}

#[test]
fn without_landlock_engine_sandbox_is_refused_unless_the_policy_allows_degraded() {
    // Fail closed: denied by the gate, the engine never starts.
    let h = home_full(65534, true, false);
    let op = h.op("sandbox.run_python", "print(1)\n", &[], json!({}));
    let r = h.expect(op, ResultStatus::Denied, "G-SAFETY.SANDBOX.UNAVAILABLE");
    assert!(r.provenance.is_none());
    // Degraded by policy: admitted with a degraded finding, run, and said so.
    let h = home_full(65534, true, true);
    let op = h.op("sandbox.run_python", "print(1)\n", &[], json!({}));
    let id = op.op_id;
    let r = h.rt.execute(op);
    assert_eq!(r.status, ResultStatus::Succeeded, "{r:#?}");
    assert!(h.on_record(id, "G-SAFETY.SANDBOX.DEGRADED"));
    let env = &r.provenance.as_ref().unwrap().environment;
    assert_eq!(
        env.get("sandbox.degraded").map(String::as_str),
        Some("true"),
        "{env:?}"
    );
    assert_eq!(
        env.get("sandbox.landlock_abi").map(String::as_str),
        Some("0")
    );
}

#[test]
fn output_paths_follow_the_stores_path_rules() {
    let h = home();
    for files in [
        vec!["caf\u{e9}.txt", "cafe\u{301}.txt"], // NFC and NFD twins
        vec!["report\u{202E}txt.sh"],             // right-to-left override
        vec!["a\u{2067}b.txt"],                   // right-to-left isolate
        vec!["a\u{200F}b.txt"],                   // right-to-left mark
        vec!["a\u{200B}.txt", "a.txt"],           // zero-width space
        vec!["\u{FF41}.txt", "a.txt"],            // fullwidth look-alike
        vec!["A.txt", "a.txt"],                   // case twins
        vec!["stdout.txt"],                       // twin of the stdout entry
    ] {
        let op = h.op("sandbox.run_shell", "echo hi\n", &files, json!({}));
        let r = h.expect(op, ResultStatus::Failed, "SBOX_POLICY_DENIED");
        assert!(
            r.errors[0].message.contains("output spec path"),
            "{files:?}: {r:#?}"
        );
    }
}

#[test]
fn an_nfd_file_name_is_stored_under_its_nfc_name() {
    let h = home();
    let op = h.op(
        "sandbox.run_shell",
        "printf x > $'cafe\\xcc\\x81.txt'\n",
        &["cafe\u{301}.txt"],
        json!({}),
    );
    let r = h.rt.execute(op);
    assert_eq!(r.status, ResultStatus::Succeeded, "{r:#?}");
    let index: BundleIndex = serde_json::from_slice(&h.store.read(&r.outputs[0]).unwrap()).unwrap();
    let paths: Vec<&str> = index.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["caf\u{e9}.txt", "stderr.txt", "stdout.txt"]);
    assert!(mex_artifacts::validate_bundle_index(&index).is_ok());
}

#[test]
fn jails_of_dead_runs_are_reclaimed_when_the_engine_starts() {
    let root = tempfile::Builder::new()
        .prefix("mex-sbx-jail")
        .tempdir()
        .unwrap();
    let jails = root.path().join("jails");
    std::fs::create_dir_all(&jails).unwrap();
    // A live run's jail (locked, as a running engine holds it), a dead
    // run's jail (what a killed process leaves) and a stranger.
    let live = mex_runtime::reclaim::LiveDir::create(&jails, "run-").unwrap();
    std::fs::create_dir_all(jails.join("run-dead/work/sub")).unwrap();
    std::fs::write(jails.join("run-dead/work/sub/f"), b"x").unwrap();
    std::fs::create_dir(jails.join("bin")).unwrap();
    let engine = SandboxEngine::new(SandboxEngineConfig {
        jail_root: jails.clone(),
        ..SandboxEngineConfig::default()
    })
    .unwrap();
    let report = engine.reclaimed_at_open();
    assert_eq!(report.removed, vec![jails.join("run-dead")]);
    assert_eq!(report.live, 1);
    assert!(live.path().exists() && jails.join("bin").exists());
    assert!(!jails.join("run-dead").exists());
}
