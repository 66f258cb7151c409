//! The data-driven admission corpus: every file under
//! `tests/fixtures/admission/` is one operation (a template from
//! `templates.json` plus edits, or raw bytes) with the exact set of
//! `GATE CODE` denials and degradations it must produce. An empty `expect`
//! means the operation must be admitted with a proof.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

mod common;

use std::path::Path;

use mex_envelope::{Classification, DenialSeverity, GateDenial};
use serde_json::{Value, json};

fn substitute(value: &mut Value, env: &common::Env) {
    match value {
        Value::String(s) => {
            if let Some(name) = s.strip_prefix("$handle:") {
                *value = serde_json::to_value(&env.handles[name]).unwrap();
            } else if let Some(name) = s.strip_prefix("$size_plus_one:") {
                *value = json!(env.handles[name].size_bytes + 1);
            } else if *s == "$op_id" {
                *value = json!(uuid::Uuid::new_v4().to_string());
            } else if s.contains("$id:") {
                let mut out = s.clone();
                for (name, handle) in &env.handles {
                    out = out.replace(&format!("$id:{name}"), &handle.artifact_id.to_string());
                }
                *s = out;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| substitute(v, env)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute(v, env)),
        _ => {}
    }
}

fn set_pointer(doc: &mut Value, pointer: &str, new: Value) {
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    let target = doc
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no parent for {pointer}"));
    match target {
        Value::Object(map) => {
            map.insert(last.to_owned(), new);
        }
        Value::Array(items) => {
            let i: usize = last.parse().unwrap();
            if i == items.len() {
                items.push(new);
            } else {
                items[i] = new;
            }
        }
        _ => panic!("{pointer}: parent is not a container"),
    }
}

fn remove_pointer(doc: &mut Value, pointer: &str) {
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    match doc.pointer_mut(parent).unwrap() {
        Value::Object(map) => {
            map.remove(last)
                .unwrap_or_else(|| panic!("nothing at {pointer}"));
        }
        Value::Array(items) => {
            items.remove(last.parse::<usize>().unwrap());
        }
        _ => panic!("{pointer}: parent is not a container"),
    }
}

/// Damage the stored payload of input `name` behind the store's back:
/// wherever it is, a small payload's row in the store's `index.db` or a
/// payload file.
fn tamper(env: &common::Env, name: &str, how: &str) {
    let original = &env.bytes[name];
    let mut bytes = original.clone();
    match how {
        "flip" => bytes[10] ^= 0x01,
        "truncate" => {
            bytes.pop();
        }
        "replace" => bytes.iter_mut().for_each(|b| *b = b'z'),
        other => panic!("unknown tamper {other}"),
    }
    let mut hit = 0;
    let mut stack = vec![env.dir.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "index.db") {
                hit += rusqlite::Connection::open(&path)
                    .unwrap()
                    .execute(
                        "UPDATE inline_blobs SET bytes = ?2 WHERE bytes = ?1",
                        rusqlite::params![original, bytes],
                    )
                    .unwrap();
            } else if std::fs::read(&path).unwrap() == *original {
                let mut perms = std::fs::metadata(&path).unwrap().permissions();
                #[allow(
                    clippy::permissions_set_readonly_false,
                    reason = "test code: a failed expectation panics, which is the test failing"
                )]
                perms.set_readonly(false);
                std::fs::set_permissions(&path, perms).unwrap();
                std::fs::write(&path, &bytes).unwrap();
                hit += 1;
            }
        }
    }
    assert_eq!(hit, 1, "expected exactly one stored payload for {name}");
}

fn labels(findings: &[GateDenial], severity: DenialSeverity) -> Vec<String> {
    let mut out: Vec<String> = findings
        .iter()
        .filter(|f| f.severity == severity)
        .map(|f| format!("{} {}", f.gate, f.code))
        .collect();
    out.sort();
    out
}

fn strings(v: Option<&Value>) -> Vec<String> {
    let mut out: Vec<String> = v
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn run_case(path: &Path, templates: &Value) -> Result<(), String> {
    let case: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let classification = if case.get("handle_classification").is_some() {
        Classification::Medium
    } else {
        Classification::Low
    };
    let env = common::env(classification);
    let mut policy = common::policy();
    match case.get("policy").and_then(Value::as_str) {
        Some("degraded") => policy.degraded.unenforceable_budgets = true,
        Some("no-consents") => policy.consents.clear(),
        Some(other) => panic!("unknown policy variant {other}"),
        None => {}
    }
    let engine_gate = match case.get("engine_gate").and_then(Value::as_str) {
        Some("deny-all") => Some(true),
        Some("admit-all") => Some(false),
        _ => None,
    };
    let pipeline = common::pipeline(
        &env,
        policy,
        case.get("profile").and_then(Value::as_str),
        engine_gate,
    );
    if let Some(t) = case.get("tamper") {
        tamper(
            &env,
            t["artifact"].as_str().unwrap(),
            t["how"].as_str().unwrap(),
        );
    }
    let bytes = if let Some(raw) = case.get("raw").and_then(Value::as_str) {
        raw.as_bytes().to_vec()
    } else {
        let mut doc = templates[case["template"].as_str().unwrap()].clone();
        substitute(&mut doc, &env);
        if let Some(set) = case.get("set").and_then(Value::as_object) {
            for (pointer, value) in set {
                let mut value = value.clone();
                substitute(&mut value, &env);
                set_pointer(&mut doc, pointer, value);
            }
        }
        for pointer in strings(case.get("remove")) {
            remove_pointer(&mut doc, &pointer);
        }
        if let Some(fill) = case.get("fill") {
            let pointer = fill["pointer"].as_str().unwrap();
            let target = fill["canonical_params_len"].as_u64().unwrap() as usize;
            set_pointer(&mut doc, pointer, json!(""));
            let base = mex_envelope::canonical::to_vec(&doc["params"])
                .unwrap()
                .len();
            set_pointer(&mut doc, pointer, json!("x".repeat(target - base)));
            assert_eq!(
                mex_envelope::canonical::to_vec(&doc["params"])
                    .unwrap()
                    .len(),
                target
            );
        }
        serde_json::to_vec(&doc).unwrap()
    };
    let replay = case.get("replay").and_then(Value::as_bool) == Some(true);
    let mut admission = pipeline.admit_json(&bytes);
    if replay {
        match &admission.result {
            Err(d) => {
                return Err(format!(
                    "first admission of a replay case was denied: {d:?}"
                ));
            }
            // The claim a runtime makes when it records the admission.
            Ok(proof) => {
                let id = proof.operation().op_id;
                assert!(
                    env.claims
                        .claim(id, mex_gates::internal::Claimed::Completed)
                );
            }
        }
        admission = pipeline.admit_json(&bytes);
    }
    let findings: Vec<GateDenial> = admission
        .outcomes
        .iter()
        .flat_map(|o| o.findings.clone())
        .collect();
    let denied = labels(&findings, DenialSeverity::Deny);
    let degraded = labels(&findings, DenialSeverity::Degraded);
    let expect = strings(case.get("expect"));
    let expect_degraded = strings(case.get("degraded"));
    if denied != expect || degraded != expect_degraded {
        let detail: Vec<String> = findings
            .iter()
            .map(|f| format!("{} {} at {:?}: {}", f.gate, f.code, f.pointer, f.message))
            .collect();
        return Err(format!(
            "denied {denied:?} (expected {expect:?}), degraded {degraded:?} (expected {expect_degraded:?})\n    {}",
            detail.join("\n    ")
        ));
    }
    match (&admission.result, expect.is_empty()) {
        (Ok(proof), true) => {
            let consent_ok = proof
                .capabilities_granted()
                .iter()
                .all(|c| !c.is_sensitive())
                || !proof.consent_refs().is_empty();
            if !consent_ok {
                return Err("admitted a sensitive capability without naming its consent".into());
            }
            Ok(())
        }
        (Err(_), false) => Ok(()),
        (Ok(_), false) => Err("admitted, but denials were expected".into()),
        (Err(d), true) => Err(format!("denied: {d:?}")),
    }
}

#[test]
fn admission_corpus() {
    let dir = common::fixtures().join("admission");
    let templates: Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join("templates.json")).unwrap(),
    )
    .unwrap();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 60,
        "the corpus needs at least 60 operations, found {}",
        cases.len()
    );
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|p| {
            run_case(p, &templates)
                .err()
                .map(|e| format!("{}: {e}", p.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
