//! Host engines (registry kind `host_process`): engines compiled into `mex`
//! that run as the `mex` binary itself, started as `mex-engine-exec <engine
//! id>` inside the process-engine jail. Through the real binary, from a
//! fresh home.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

mod common;
use common::{mex, report as text};

/// Started under the host name with an engine id it does not host, the
/// binary answers one protocol request with a failed completion (and does
/// not act as the CLI).
#[test]
fn the_binary_started_as_mex_engine_exec_speaks_the_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("mex-engine-exec-test");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_mex"), &link).unwrap();
    let request = json!({
        "protocol": "mex-engine-1",
        "op_id": "7d3c1f0e-0000-4000-8000-000000000999",
        "engine_id": "engine.nope",
        "implementation_id": "nope",
        "implementation_version": "0.1.0",
        "operation": "nope.op",
        "params": {},
        "inputs": [],
        "budget": {},
        "determinism": "D3",
        "output_dir": dir.path().display().to_string()
    });
    let mut child = Command::new(&link)
        .arg("engine.nope")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let completion: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(completion["status"], "failed", "{completion}");
    assert_eq!(completion["error"]["code"], "PROC_BAD_REQUEST");
    assert!(
        completion["error"]["message"]
            .as_str()
            .unwrap()
            .contains("engine.dba"),
        "the message lists what is hosted: {completion}"
    );
}

/// `mex engines` lists engine.dba as a runnable (here: uncertified)
/// implementation, and `mex conformance` runs it under the sandbox: the
/// invalid-SQL vector comes back with the engine's own code, which only the
/// handler inside the jailed child can produce.
#[test]
fn a_host_engine_is_listed_and_runs_in_the_jail() {
    let home = tempfile::tempdir().unwrap();
    let o = mex(home.path(), &["engines"]);
    let listing = String::from_utf8_lossy(&o.stdout);
    let line = listing
        .lines()
        .find(|l| l.starts_with("engine.dba"))
        .unwrap_or_else(|| panic!("{}", text(&o)));
    assert!(
        !line.contains("declared only") && !line.contains("not installed"),
        "{line}"
    );
    let o = mex(
        home.path(),
        &["conformance", "--engine", "engine.dba", "--json"],
    );
    let report: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&o)));
    let cases = report["engines"][0]["report"]["cases"].as_array().unwrap();
    let reject = cases
        .iter()
        .find(|c| c["id"] == "vector.reject-invalid-sql")
        .unwrap();
    assert_eq!(reject["verdict"], "pass", "{reject}");
    assert!(
        reject["observed"]
            .as_str()
            .unwrap()
            .contains("DBA_SQL_ERROR"),
        "{reject}"
    );
}

fn put(home: &Path, file: &Path, media: &str) -> Value {
    let o = mex(
        home,
        &[
            "artifacts",
            "put",
            file.to_str().unwrap(),
            "--media-type",
            media,
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap();
    serde_json::from_str(line).unwrap()
}

fn run_op(home: &Path, op: &Value) -> Value {
    let file = home.join(format!("op-{}.json", op["op_id"].as_str().unwrap()));
    std::fs::write(&file, op.to_string()).unwrap();
    let o = mex(home, &["run", file.to_str().unwrap(), "--json"]);
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not an EngineResult ({e}): {}", text(&o)))
}

fn query_op(sql: &Value, budget: Value) -> Value {
    json!({
        "schema_version": "poe-1.0",
        "op_id": uuid::Uuid::new_v4(),
        "engine_id": "engine.dba",
        "engine_version_req": "^0.1",
        "operation": "dba.query_sql",
        "inputs": [sql],
        "params": {"sql_ref": sql["artifact_id"], "output": "csv"},
        "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts"],
        "budget": budget,
        "determinism": "D3"
    })
}

/// Certified from a fresh home, then through `mex run`: a query succeeds in
/// the jail, and a query that never ends ends in a typed failure within its budget.
#[test]
fn dba_query_sql_runs_under_the_sandbox_through_mex_run() {
    let home = tempfile::tempdir().unwrap();
    let o = mex(home.path(), &["conformance", "--engine", "engine.dba"]);
    assert!(o.status.success(), "{}", text(&o));

    let ok = home.path().join("ok.sql");
    std::fs::write(&ok, "SELECT 2 AS x UNION ALL SELECT 1 ORDER BY x").unwrap();
    let ok = put(home.path(), &ok, "application/sql");
    let result = run_op(home.path(), &query_op(&ok, json!({"wall_time_ms": 10000})));
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(result["outputs"].as_array().unwrap().len(), 1, "{result}");

    let forever = home.path().join("forever.sql");
    std::fs::write(
        &forever,
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) SELECT count(*) FROM c",
    )
    .unwrap();
    let forever = put(home.path(), &forever, "application/sql");
    let result = run_op(
        home.path(),
        &query_op(&forever, json!({"wall_time_ms": 3000, "cpu_time_ms": 2000})),
    );
    let code = result["errors"][0]["code"].as_str().unwrap_or_default();
    assert!(
        matches!(
            code,
            "DBA_LIMIT_EXCEEDED" | "PROC_CPU_TIME_EXCEEDED" | "PROC_WALL_TIME_EXCEEDED"
        ),
        "{result}"
    );
}

fn context_op(bundle: &Value, operation: &str, params: Value) -> Value {
    json!({
        "schema_version": "poe-1.0",
        "op_id": uuid::Uuid::new_v4(),
        "engine_id": "engine.context",
        "engine_version_req": "^0.1",
        "operation": operation,
        "inputs": [bundle],
        "params": params,
        "capabilities_requested": ["fs.read:workspace"],
        "budget": {"wall_time_ms": 10000, "output_bytes": 1048576},
        "determinism": "D3"
    })
}

/// engine.context from a fresh home: certified by its own vectors (a
/// directory payload stored as a bundle), then `mex run` searches a bundle
/// put into the home's store in the jail, and a scope outside the bundle is
/// the engine's typed refusal.
#[test]
fn context_search_runs_over_a_bundle_through_mex_run() {
    let home = tempfile::tempdir().unwrap();
    let o = mex(home.path(), &["conformance", "--engine", "engine.context"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("certified: "),
        "{}",
        text(&o)
    );

    let tree = home.path().join("tree");
    std::fs::create_dir_all(tree.join("src")).unwrap();
    std::fs::write(tree.join("src/b.rs"), "fn b() {}\n// the needle\n").unwrap();
    std::fs::write(tree.join("src/a.rs"), "needle at the start\n").unwrap();
    std::fs::write(tree.join("notes.txt"), "no match here\n").unwrap();
    let store = mex_artifacts::ArtifactStore::at(home.path().join("artifacts")).unwrap();
    let bundle = store
        .put_dir(&tree, &mex_artifacts::BundleOptions::default())
        .unwrap();
    let bundle = serde_json::to_value(&bundle).unwrap();

    let params = json!({"query": "needle", "scopes": ["src"], "mode": "literal", "output": "json"});
    let result = run_op(home.path(), &context_op(&bundle, "context.search", params));
    assert_eq!(result["status"], "succeeded", "{result}");
    let output: mex_envelope::ArtifactHandle =
        serde_json::from_value(result["outputs"][0].clone()).unwrap();
    let found: Value = serde_json::from_slice(&store.read(&output).unwrap()).unwrap();
    let hits: Vec<(String, u64)> = found["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["path"].as_str().unwrap().to_owned(),
                m["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        hits,
        [("src/a.rs".to_owned(), 1), ("src/b.rs".to_owned(), 2)],
        "{found}"
    );

    let params = json!({"query": "root", "scopes": ["/etc"], "mode": "literal", "output": "json"});
    let result = run_op(home.path(), &context_op(&bundle, "context.search", params));
    assert_eq!(result["status"], "failed", "{result}");
    assert_eq!(result["errors"][0]["code"], "CTX_SCOPE_DENIED", "{result}");
}
