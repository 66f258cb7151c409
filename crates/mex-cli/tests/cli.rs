//! The built `mex` binary, run as a user would: every subcommand, and its
//! error paths.
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

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn first_use_creates_the_home_with_a_non_sensitive_default_policy() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("h");
    let op = workspace().join("examples/ops/invalid/unknown-capability-kind.json");
    let out = mex(&home, &["validate", op.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let policy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("policy.json")).unwrap()).unwrap();
    let grants = policy["profiles"]["default"]["grants"].as_array().unwrap();
    assert!(grants.iter().all(|g| {
        let g = g.as_str().unwrap();
        !g.starts_with("net.") && !g.starts_with("device.") && !g.starts_with("secrets.")
    }));
    assert!(policy["consents"].as_array().unwrap().is_empty());
}

#[test]
fn validate_prints_every_denial_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let op = workspace().join("examples/ops/valid/physics-evaluate-formula.json");
    let out = mex(dir.path(), &["validate", op.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    // Its input artifacts are not in this empty store.
    assert!(text.contains("G-INTEGRITY.ARTIFACT_MISSING"), "{text}");
    assert!(
        text.contains("G-SCHEMA") && text.contains("passed"),
        "{text}"
    );
    assert!(text.contains("nothing was executed"));
}

#[test]
fn run_malformed_json_is_denied_with_a_pointer_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"schema_version\": \"poe-1.0\", \"op_id\": 5}").unwrap();
    let out = mex(dir.path(), &["run", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stdout(&out).contains("G-SCHEMA.ENVELOPE_INVALID"),
        "{}",
        stdout(&out)
    );
    let events = mex(dir.path(), &["recorder", "events", "--kind", "gate_denied"]);
    assert!(
        stdout(&events).contains("gate_denied"),
        "{}",
        stdout(&events)
    );
}

#[test]
fn run_json_prints_the_exact_engine_result() {
    let dir = tempfile::tempdir().unwrap();
    let op = workspace().join("examples/ops/invalid/unknown-capability-kind.json");
    let out = mex(dir.path(), &["run", "--json", op.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let result: mex_envelope::EngineResult = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result.denials[0].code.as_str(), "G-CAP.UNKNOWN_KIND");
}

#[test]
fn missing_file_and_unknown_engine_are_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = mex(dir.path(), &["run", "/nonexistent/op.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read /nonexistent/op.json"),
        "{}",
        stderr(&out)
    );
    let mut op: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("examples/ops/valid/physics-convert-units.json"))
            .unwrap(),
    )
    .unwrap();
    op["engine_id"] = "engine.teleporter".into();
    op["operation"] = "teleporter.beam".into();
    let file = dir.path().join("unknown.json");
    std::fs::write(&file, op.to_string()).unwrap();
    let out = mex(dir.path(), &["run", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stdout(&out).contains("G-SCHEMA.UNKNOWN_ENGINE"),
        "{}",
        stdout(&out)
    );
    let usage = mex(dir.path(), &["frobnicate"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn artifacts_put_get_verify_and_tamper() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, "hello mex\n").unwrap();
    let out = mex(
        dir.path(),
        &[
            "artifacts",
            "put",
            "--json",
            "--media-type",
            "text/plain",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let handle: mex_envelope::ArtifactHandle = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(handle.size_bytes, 10);
    let got = mex(
        dir.path(),
        &["artifacts", "get", &handle.artifact_id.to_string()],
    );
    assert_eq!(got.stdout, b"hello mex\n");
    assert!(mex(dir.path(), &["artifacts", "verify"]).status.success());
    // Tamper with the payload behind the store's back (a small payload is a
    // row of the store's index).
    tamper_inline(dir.path(), &handle.content_hash.to_string(), b"HELLO MEX\n");
    let verify = mex(dir.path(), &["artifacts", "verify"]);
    assert_eq!(verify.status.code(), Some(4), "{}", stdout(&verify));
    let got = mex(
        dir.path(),
        &["artifacts", "get", &handle.artifact_id.to_string()],
    );
    assert_eq!(got.status.code(), Some(4));
    assert!(got.stdout.is_empty(), "tampered bytes were served");
    assert!(mex(dir.path(), &["artifacts", "gc"]).status.success());
}

#[test]
fn recorder_verify_export_and_a_corrupt_recorder() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "not json").unwrap();
    mex(dir.path(), &["run", bad.to_str().unwrap()]);
    let verify = mex(dir.path(), &["recorder", "verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    let export = mex(dir.path(), &["recorder", "export", "--jsonl"]);
    let lines: Vec<serde_json::Value> = stdout(&export)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    let problems = mex(dir.path(), &["problems"]);
    assert!(
        stdout(&problems).contains("G-SCHEMA.ENVELOPE_INVALID"),
        "{}",
        stdout(&problems)
    );
    // Corrupt the database file: a clear error, not a silently empty log.
    let db = dir.path().join("recorder.sqlite3");
    let _ = std::fs::remove_file(dir.path().join("recorder.sqlite3-wal"));
    let _ = std::fs::remove_file(dir.path().join("recorder.sqlite3-shm"));
    std::fs::write(&db, vec![0x42u8; 8192]).unwrap();
    let out = mex(dir.path(), &["recorder", "events"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("recorder"), "{}", stderr(&out));
}

#[test]
fn registry_check_engines_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let ok = mex(dir.path(), &["registry", "check"]);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("22 engines"));
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"registry_version\": \"9\"}").unwrap();
    let bad = mex(dir.path(), &["registry", "check", broken.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2));
    let engines = mex(dir.path(), &["engines"]);
    let text = stdout(&engines);
    assert_eq!(text.lines().count(), 22, "{text}");
    assert!(
        text.contains("engine.spatial") && text.contains("declared only"),
        "{text}"
    );
    let schema = mex(dir.path(), &["schema", "planned-operation"]);
    let value: serde_json::Value = serde_json::from_slice(&schema.stdout).unwrap();
    assert_eq!(
        value["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(mex(dir.path(), &["schema", "nope"]).status.code(), Some(2));
}

#[test]
fn demo_certifies_runs_every_row_as_expected_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mex"))
        .args([
            "--home",
            dir.path().join("h").to_str().unwrap(),
            "--registry",
            workspace()
                .join("mechanical_engines.json")
                .to_str()
                .unwrap(),
            "demo",
        ])
        .current_dir(workspace())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("certified: "), "{text}");
    for gate in [
        "G-SCHEMA.",
        "G-CAP.",
        "G-INTEGRITY.",
        "G-BUDGET.",
        "G-PROVENANCE.",
        "G-DET.",
        "G-SAFETY.SANDBOX.",
        "SBOX_FS_ESCAPE_DETECTED",
        "WR_DATA_PARSE_ERROR",
        "CTX_SCOPE_DENIED",
    ] {
        assert!(text.contains(gate), "no denial by {gate} in\n{text}");
    }
    assert!(text.contains("wrangler: profile people.csv"), "{text}");
    assert!(
        text.contains("budget_exceeded") && text.contains("(cache)"),
        "{text}"
    );
    assert!(!text.contains("NO: expected"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("context: search a bundle") && l.contains("succeeded")),
        "{text}"
    );
    let home = dir.path().join("h");
    let engines = mex(&home, &["engines"]);
    assert!(
        stdout(&engines).contains("engine.physics")
            && stdout(&engines).contains("callable: implemented, shipped and certified")
    );
    assert!(mex(&home, &["recorder", "verify"]).status.success());
    // Everything the demo stored is accounted for by the recorder: a fresh
    // user's first `artifacts verify` finds nothing to report.
    let verify = mex(&home, &["artifacts", "verify"]);
    assert!(
        verify.status.success(),
        "{}{}",
        stdout(&verify),
        stderr(&verify)
    );
    // A second demo reuses the certificate.
    let again = Command::new(env!("CARGO_BIN_EXE_mex"))
        .args([
            "--home",
            home.to_str().unwrap(),
            "--registry",
            workspace()
                .join("mechanical_engines.json")
                .to_str()
                .unwrap(),
            "demo",
        ])
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(stdout(&again).contains("already certified"));
}

#[test]
fn an_uncertified_engine_is_refused_by_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let expr = dir.path().join("e.txt");
    std::fs::write(&expr, "F / A\n").unwrap();
    let put = mex(
        dir.path(),
        &[
            "artifacts",
            "put",
            "--json",
            "--media-type",
            "text/plain",
            expr.to_str().unwrap(),
        ],
    );
    let handle: serde_json::Value = serde_json::from_slice(&put.stdout).unwrap();
    let op = serde_json::json!({
        "schema_version": "poe-1.0", "op_id": uuid::Uuid::new_v4().to_string(), "engine_id": "engine.physics",
        "engine_version_req": "^0.1", "operation": "physics.check_units", "inputs": [handle],
        "params": {"expr_ref": handle["artifact_id"]}, "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts"],
        "budget": {"wall_time_ms": 5000}, "determinism": "D3"
    });
    let file = dir.path().join("op.json");
    std::fs::write(&file, op.to_string()).unwrap();
    let out = mex(dir.path(), &["run", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("RUNTIME.ENGINE_NOT_CERTIFIED"),
        "{}",
        stdout(&out)
    );
    // After conformance it runs.
    assert!(
        mex(dir.path(), &["conformance", "--engine", "engine.physics"])
            .status
            .success()
    );
    let mut op2 = op.clone();
    op2["op_id"] = uuid::Uuid::new_v4().to_string().into();
    std::fs::write(&file, op2.to_string()).unwrap();
    let ok = mex(dir.path(), &["run", file.to_str().unwrap()]);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));

    // `--check` runs a D3 operation twice (never from the cache) and agrees.
    let mut op3 = op.clone();
    op3["op_id"] = uuid::Uuid::new_v4().to_string().into();
    std::fs::write(&file, op3.to_string()).unwrap();
    let checked = mex(
        dir.path(),
        &["run", "--check", "--json", file.to_str().unwrap()],
    );
    assert_eq!(checked.status.code(), Some(0), "{}", stdout(&checked));
    let result: serde_json::Value = serde_json::from_slice(&checked.stdout).unwrap();
    assert_eq!(result["status"], "succeeded");
    assert_eq!(result["served_from_cache"], false);

    // Below D3 it is refused, and says why.
    let mut op4 = op.clone();
    op4["op_id"] = uuid::Uuid::new_v4().to_string().into();
    op4["determinism"] = "D2".into();
    std::fs::write(&file, op4.to_string()).unwrap();
    let refused = mex(dir.path(), &["run", "--check", file.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("needs a D3 operation"),
        "{}",
        stderr(&refused)
    );
}

/// Replace what differs between runs (the home path, timestamps, uuids)
/// so outputs can be snapshotted.
fn redact(text: &str, home: &Path) -> String {
    let mut out = text.replace(home.to_str().unwrap(), "[HOME]");
    // RFC 3339 timestamps: 20YY-MM-DDT...Z
    while let Some(start) = out.find("T").and_then(|_| find_timestamp(&out)) {
        let end = out[start..].find('Z').map_or(out.len(), |e| start + e + 1);
        out.replace_range(start..end, "[TIME]");
    }
    // Durations: "(12 ms)"
    while let Some(end) = out.find(" ms)") {
        let start = out[..end].rfind('(').unwrap_or(end);
        out.replace_range(start..end + 4, "(N ms]");
    }
    let out = out.replace("(N ms]", "(N ms)");
    // UUIDs: 8-4-4-4-12 hex
    let bytes: Vec<char> = out.chars().collect();
    let mut result = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let candidate: String = bytes[i..(i + 36).min(bytes.len())].iter().collect();
        if candidate.len() == 36
            && uuid::Uuid::parse_str(&candidate).is_ok()
            && candidate.chars().nth(8) == Some('-')
        {
            result.push_str("[UUID]");
            i += 36;
        } else {
            result.push(bytes[i]);
            i += 1;
        }
    }
    result
}

fn find_timestamp(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (0..b.len().saturating_sub(20)).find(|&i| {
        b[i..i + 4].iter().all(u8::is_ascii_digit)
            && b[i + 4] == b'-'
            && b[i + 7] == b'-'
            && b[i + 10] == b'T'
            && b[i + 13] == b':'
    })
}

#[test]
fn snapshots_of_validate_run_engines_and_problems() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let op = workspace().join("examples/ops/valid/physics-evaluate-formula.json");
    let validate = mex(home, &["validate", op.to_str().unwrap()]);
    insta::assert_snapshot!("validate_missing_inputs", redact(&stdout(&validate), home));
    let bad = workspace().join("examples/ops/invalid/lookalike-capability.json");
    let run = mex(home, &["run", bad.to_str().unwrap()]);
    insta::assert_snapshot!("run_denied_summary", redact(&stdout(&run), home));
    let engines = mex(home, &["engines"]);
    insta::assert_snapshot!("engines_fresh_home", redact(&stdout(&engines), home));
    let problems = mex(home, &["problems"]);
    insta::assert_snapshot!(
        "problems_after_one_denial",
        redact(&stdout(&problems), home)
    );
    let usage = mex(home, &["run"]);
    insta::assert_snapshot!("usage_error", redact(&stderr(&usage), home));
}

/// Every command that only reads, on a home that does not exist: nothing is
/// created; the ones that need nothing from a home work, the others say so
/// plainly and exit 2.
#[test]
fn read_only_commands_never_create_a_home() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("never");
    for args in [
        &["engines"][..],
        &["engines", "--json"],
        &["registry", "check"],
        &["registry", "check", "--json"],
        &["schema", "engine-result"],
    ] {
        let out = mex(&home, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(!home.exists(), "`mex {args:?}` created the home");
    }
    let id = uuid::Uuid::new_v4().to_string();
    for args in [
        &["recorder", "verify"][..],
        &["recorder", "verify", "--json"],
        &["recorder", "events"],
        &["recorder", "export", "--jsonl"],
        &["problems"],
        &["problems", "--json"],
        &["artifacts", "verify"],
        &["artifacts", "get", &id],
    ] {
        let out = mex(&home, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains("there is no mex home at") && err.contains("--home"),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!home.exists(), "`mex {args:?}` created the home");
    }
    // A home that exists but has no recorder yet: said so, nothing created.
    std::fs::create_dir(&home).unwrap();
    let out = mex(&home, &["recorder", "verify"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("has no Flight Recorder yet"),
        "{}",
        stderr(&out)
    );
    let out = mex(&home, &["artifacts", "verify"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("has no artifact store yet"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_dir(&home).unwrap().count(),
        0,
        "something was created"
    );
}

/// `mex schema NAME`, parsed and compiled as a 2020-12 validator.
fn validator(home: &Path, name: &str) -> jsonschema::Validator {
    let out = mex(home, &["schema", name]);
    assert!(out.status.success(), "schema {name}: {}", stderr(&out));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The same text is committed under schemas/.
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join(format!("schemas/{name}.schema.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(schema, committed, "schemas/{name}.schema.json is stale");
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

/// Validate `text` (one JSON document, or JSON Lines when `lines`) against
/// the published schema `name`; returns the documents.
fn check_json(home: &Path, name: &str, out: &Output, lines: bool) -> Vec<serde_json::Value> {
    let v = validator(home, name);
    let text = stdout(out);
    let docs: Vec<serde_json::Value> = if lines {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    } else {
        vec![serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"))]
    };
    assert!(!docs.is_empty(), "{name}: no output");
    for doc in &docs {
        let errors: Vec<String> = v
            .iter_errors(doc)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:?}\n{doc:#}");
    }
    docs
}

#[test]
fn every_json_output_validates_against_its_published_schema() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("h");
    // conformance --json: JSON only on stdout.
    let conf = mex(
        &home,
        &["conformance", "--engine", "engine.physics", "--json"],
    );
    assert!(conf.status.success(), "{}", stderr(&conf));
    let run = &check_json(&home, "conformance-run", &conf, false)[0];
    assert_eq!(run["ok"], true);
    assert_eq!(run["engines"][0]["certified"], true);
    // artifacts put --json: one handle per line.
    let a = dir.path().join("a.txt");
    let b = dir.path().join("b.json");
    std::fs::write(&a, "F / A\n").unwrap();
    std::fs::write(
        &b,
        r#"{"F": {"value": 10, "unit": "N"}, "A": {"value": 2, "unit": "m^2"}}"#,
    )
    .unwrap();
    let put = mex(&home, &["artifacts", "put", "--json", a.to_str().unwrap()]);
    let handles = check_json(&home, "artifact-handle", &put, true);
    let put_b = mex(
        &home,
        &[
            "artifacts",
            "put",
            "--json",
            "--media-type",
            "application/json",
            b.to_str().unwrap(),
        ],
    );
    check_json(&home, "artifact-handle", &put_b, true);
    // validate --json and run --json, denied and succeeded.
    let denied_op = workspace().join("examples/ops/invalid/unknown-capability-kind.json");
    let validate = mex(&home, &["validate", "--json", denied_op.to_str().unwrap()]);
    assert_eq!(validate.status.code(), Some(3));
    let listing = &check_json(&home, "validate-listing", &validate, false)[0];
    assert!(
        listing
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["verdict"] == "denied")
    );
    let denied = mex(&home, &["run", "--json", denied_op.to_str().unwrap()]);
    check_json(&home, "engine-result", &denied, false);
    let op = serde_json::json!({
        "schema_version": "poe-1.0", "op_id": uuid::Uuid::new_v4().to_string(),
        "engine_id": "engine.physics", "engine_version_req": "^0.1",
        "operation": "physics.check_units", "inputs": [handles[0]],
        "params": {"expr_ref": handles[0]["artifact_id"]},
        "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts"],
        "budget": {"wall_time_ms": 5000}, "determinism": "D3"
    });
    let file = dir.path().join("op.json");
    std::fs::write(&file, op.to_string()).unwrap();
    let ok = mex(&home, &["run", "--json", file.to_str().unwrap()]);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    check_json(&home, "engine-result", &ok, false);
    // The recorder: events (JSON Lines), export, verify; problems.
    let events = mex(&home, &["recorder", "events", "--json"]);
    let events = check_json(&home, "recorder-event", &events, true);
    assert!(events.len() > 3);
    let export = mex(&home, &["recorder", "export", "--jsonl"]);
    check_json(&home, "recorder-event", &export, true);
    let verify = mex(&home, &["recorder", "verify", "--json"]);
    assert!(verify.status.success());
    check_json(&home, "recorder-verify-report", &verify, false);
    let problems = mex(&home, &["problems", "--json"]);
    let problems = &check_json(&home, "problems-listing", &problems, false)[0];
    assert!(!problems.as_array().unwrap().is_empty());
    // engines, registry check (sound and broken).
    let engines = mex(&home, &["engines", "--json"]);
    let engines = &check_json(&home, "engines-listing", &engines, false)[0];
    assert!(
        engines
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["engine_id"] == "engine.physics" && e["availability"] == "callable")
    );
    let check = mex(&home, &["registry", "check", "--json"]);
    assert!(check.status.success());
    check_json(&home, "registry-check-report", &check, false);
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"registry_version\": \"9\"}").unwrap();
    let bad = mex(
        &home,
        &["registry", "check", "--json", broken.to_str().unwrap()],
    );
    assert_eq!(bad.status.code(), Some(2));
    let bad = &check_json(&home, "registry-check-report", &bad, false)[0];
    assert_eq!(bad["ok"], false);
    assert!(bad["problems"][0]["line"].as_u64().unwrap() >= 1, "{bad:#}");
    // artifacts verify (sound, then tampered) and gc.
    let sound = mex(&home, &["artifacts", "verify", "--json"]);
    assert!(sound.status.success(), "{}", stdout(&sound));
    check_json(&home, "artifacts-verify-report", &sound, false);
    tamper_inline(
        &home,
        handles[0]["content_hash"].as_str().unwrap(),
        b"F * A\n",
    );
    let tampered = mex(&home, &["artifacts", "verify", "--json"]);
    assert_eq!(tampered.status.code(), Some(4));
    let report = &check_json(&home, "artifacts-verify-report", &tampered, false)[0];
    assert_eq!(report["problems"][0]["kind"], "hash_mismatch", "{report:#}");
    assert_eq!(
        report["problems"][0]["artifact_id"],
        handles[0]["artifact_id"]
    );
    let gc = mex(&home, &["artifacts", "gc", "--json"]);
    assert!(gc.status.success(), "{}", stderr(&gc));
    check_json(&home, "artifacts-gc-report", &gc, false);
    let gc = mex(&home, &["gc", "--json"]);
    assert!(gc.status.success(), "{}", stderr(&gc));
    check_json(&home, "gc-report", &gc, false);
}

/// Replace the bytes of the small (inline) payload `hash` in the store's
/// index behind its back, as someone with write access to it could.
fn tamper_inline(home: &Path, hash: &str, bytes: &[u8]) {
    let conn = rusqlite::Connection::open(home.join("artifacts/index.db")).unwrap();
    let n = conn
        .execute(
            "UPDATE inline_blobs SET bytes = ?2 WHERE hash = ?1",
            rusqlite::params![hash, bytes],
        )
        .unwrap();
    assert_eq!(n, 1, "no inline payload {hash}");
}

fn blob_path(home: &Path, hash: &str) -> PathBuf {
    home.join("artifacts/blobs/sha256")
        .join(&hash[..2])
        .join(&hash[2..])
}

fn overwrite(path: &Path, bytes: &[u8]) {
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    #[allow(
        clippy::permissions_set_readonly_false,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]
    perms.set_readonly(false);
    std::fs::set_permissions(path, perms).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Damage found by `verify` is told in plain words: what, where, what to do;
/// never Rust debug text.
#[test]
fn verify_reports_are_plain_words() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let file = home.join("x.txt");
    std::fs::write(&file, "hello mex\n").unwrap();
    let put = mex(
        home,
        &["artifacts", "put", "--json", file.to_str().unwrap()],
    );
    let handle: serde_json::Value = serde_json::from_slice(&put.stdout).unwrap();
    let id = handle["artifact_id"].as_str().unwrap();
    tamper_inline(
        home,
        handle["content_hash"].as_str().unwrap(),
        b"HELLO MEX\n",
    );
    // A payload too large to be inline is a file: tampered by path.
    let large_file = home.join("large.bin");
    std::fs::write(
        &large_file,
        vec![b'a'; mex_artifacts::INLINE_MAX as usize + 1],
    )
    .unwrap();
    let put = mex(
        home,
        &["artifacts", "put", "--json", large_file.to_str().unwrap()],
    );
    let large: serde_json::Value = serde_json::from_slice(&put.stdout).unwrap();
    let large_hash = large["content_hash"].as_str().unwrap();
    overwrite(
        &blob_path(home, large_hash),
        &vec![b'b'; mex_artifacts::INLINE_MAX as usize + 1],
    );
    let out = mex(home, &["artifacts", "verify"]);
    assert_eq!(out.status.code(), Some(4));
    let text = stdout(&out);
    for needle in [
        "PROBLEM  payload has the wrong hash: artifact ",
        id,
        large["artifact_id"].as_str().unwrap(),
        "index.db[inline_blobs:",
        "blobs/sha256/",
        "what to do: ",
        "2 problem(s)",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from\n{text}");
    }
    for debug in ["Some(", "Problem {", "ProblemKind", "HashMismatch"] {
        assert!(!text.contains(debug), "debug text {debug:?} in\n{text}");
    }

    // The recorder: edit one event's message behind its back.
    let bad = home.join("bad.json");
    std::fs::write(&bad, "not json").unwrap();
    mex(home, &["run", bad.to_str().unwrap()]);
    let sound = mex(home, &["recorder", "verify"]);
    assert!(
        stdout(&sound).contains("chain verified"),
        "{}",
        stdout(&sound)
    );
    edit_first_event(home);
    let out = mex(home, &["recorder", "verify"]);
    assert_eq!(out.status.code(), Some(4), "{}", stdout(&out));
    let text = stdout(&out);
    for needle in [
        "CHAIN BROKEN at seq 1 (artifact_written event of operation ",
        "the event's content does not match its hash",
        "likely cause: the event was edited",
        "what to do:",
        "recorder.sqlite3",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from\n{text}");
    }
    for debug in ["Some(", "ChainBreak", "HashMismatch", "kind:"] {
        assert!(!text.contains(debug), "debug text {debug:?} in\n{text}");
    }
    let json = mex(home, &["recorder", "verify", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["first_break"]["seq"], 1);
    assert_eq!(report["first_break"]["kind"], "hash_mismatch");
}

/// Edit the first event's payload behind the recorder's back, as someone
/// with write access to the database file could.
fn edit_first_event(home: &Path) {
    let conn = rusqlite::Connection::open(home.join("recorder.sqlite3")).unwrap();
    let n = conn
        .execute(
            "UPDATE events SET payload = '{\"edited\":true}' WHERE seq = 1",
            [],
        )
        .unwrap();
    assert_eq!(n, 1);
}

/// `mex bench --json` prints one report that the published schema accepts
/// (checked by a validator other than the code that wrote the schema), with
/// the run it was asked for and every figure measured.
#[test]
fn bench_json_matches_its_published_schema() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("h");
    let out = mex(
        &home,
        &[
            "bench",
            "--ops",
            "12",
            "--concurrency",
            "3",
            "--json",
            "--dir",
            dir.path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("schemas/bench-report.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let problems: Vec<String> = validator
        .iter_errors(&report)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(problems.is_empty(), "{problems:?}\n{report:#}");
    assert_eq!(
        (report["ops"].as_u64(), report["concurrency"].as_u64()),
        (Some(12), Some(3))
    );
    assert!(report["ops_per_s"].as_f64().unwrap() > 0.0);
    assert!(report["latency_p50_us"].as_u64() <= report["latency_p99_us"].as_u64());
    // Nothing of the temporary home is left behind, here or (its shadow
    // workspace root) in the system temporary directory.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "h")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mex"))
        .args([
            "--home",
            home.to_str().unwrap(),
            "bench",
            "--ops",
            "2",
            "--json",
        ])
        .args(["--dir", dir.path().to_str().unwrap()])
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
