//! End to end through the real runtime, store and durable recorder, with small
//! test engines: every outcome the runtime promises.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

mod common;

use std::sync::Arc;

use mex_envelope::{EngineResult, ResultStatus};
use mex_recorder::{EventKind, EventQuery};
use serde_json::json;

fn codes(r: &EngineResult) -> Vec<String> {
    r.errors.iter().map(|e| e.code.to_string()).collect()
}

fn kinds(home: &common::Home, op_id: uuid::Uuid) -> Vec<EventKind> {
    home.recorder
        .events(&EventQuery::op(op_id))
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect()
}

#[test]
fn success_is_stored_with_manifest_provenance_and_a_full_record() {
    let home = common::home();
    let rt = common::runtime(&home);
    let op = common::op("calc.echo", json!({"text": "hi"}));
    let result = rt.execute(op.clone());
    assert_eq!(result.status, ResultStatus::Succeeded, "{result:?}");
    assert_eq!(result.outputs.len(), 1);
    let bytes = home.store.read(&result.outputs[0]).unwrap();
    assert_eq!(bytes, b"echo: hi");
    let manifest = home.store.manifest(result.outputs[0].artifact_id).unwrap();
    let producer = manifest.producer.expect("engine outputs carry a producer");
    assert_eq!(producer.op_id, op.op_id);
    assert_eq!(producer.config_hash, op.config_hash().unwrap());
    let prov = result.provenance.as_ref().unwrap();
    assert_eq!(prov.outputs, result.outputs);
    assert_eq!(prov.implementation_id, "calc");
    assert!(!prov.environment.is_empty());
    let kinds = kinds(&home, op.op_id);
    for k in [
        EventKind::OpReceived,
        EventKind::GatePassed,
        EventKind::CapabilityAllowed,
        EventKind::EngineStarted,
        EventKind::ArtifactWritten,
        EventKind::EngineFinished,
        EventKind::OpCompleted,
    ] {
        assert!(kinds.contains(&k), "missing {k:?} in {kinds:?}");
    }
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EventKind::GatePassed)
            .count(),
        6,
        "{kinds:?}"
    );
    assert!(home.recorder.verify().unwrap().is_ok());
}

#[test]
fn engine_error_is_failed_with_its_code() {
    let home = common::home();
    let rt = common::runtime(&home);
    let result = rt.execute(common::op(
        "calc.echo",
        json!({"text": "x", "behaviour": "fail"}),
    ));
    assert_eq!(result.status, ResultStatus::Failed);
    assert_eq!(codes(&result), ["CALC_FAILED"]);
    assert!(result.outputs.is_empty());
}

#[test]
fn panic_is_contained_and_becomes_a_problem() {
    let home = common::home();
    let rt = common::runtime(&home);
    let result = rt.execute(common::op(
        "calc.echo",
        json!({"text": "x", "behaviour": "panic"}),
    ));
    assert_eq!(result.status, ResultStatus::Failed);
    assert_eq!(codes(&result), ["RUNTIME.ENGINE_PANICKED"]);
    assert!(result.errors[0].message.contains("asked to panic"));
    let problems = home.recorder.problems(&Default::default()).unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.code.as_str() == "RUNTIME.ENGINE_PANICKED"),
        "{problems:?}"
    );
    // The runtime is still usable afterwards.
    assert_eq!(
        rt.execute(common::op("calc.echo", json!({"text": "after"})))
            .status,
        ResultStatus::Succeeded
    );
}

#[test]
fn timeout_ends_as_budget_exceeded_and_discards_partial_outputs() {
    let home = common::home();
    let rt = common::runtime(&home);
    let before = home.store.list().unwrap().len();
    let mut op = common::op(
        "calc.echo",
        json!({"text": "x", "behaviour": "sleep", "sleep_ms": 5000}),
    );
    op.budget.wall_time_ms = Some(150);
    // Had the watchdog not answered, the engine would have completed its
    // sleep and the run would have succeeded: the typed outcome says which.
    let result = rt.execute(op.clone());
    assert_eq!(result.status, ResultStatus::BudgetExceeded);
    assert_eq!(codes(&result), ["RUNTIME.WALL_TIME_EXCEEDED"]);
    assert!(result.outputs.is_empty());
    assert_eq!(
        home.store.list().unwrap().len(),
        before,
        "partial outputs reached the store"
    );
    assert!(kinds(&home, op.op_id).contains(&EventKind::BudgetExceeded));
}

#[test]
fn an_engine_that_ignores_cancellation_still_times_out() {
    let home = common::home();
    let rt = common::runtime(&home);
    let mut op = common::op(
        "calc.echo",
        json!({"text": "x", "behaviour": "spin", "sleep_ms": 3000}),
    );
    op.budget.wall_time_ms = Some(100);
    let result = rt.execute(op);
    // The spin ignores cancellation and would complete (succeeded) at
    // 3000 ms; the watchdog's answer is the typed wall-time outcome.
    assert_eq!(result.status, ResultStatus::BudgetExceeded);
    assert_eq!(codes(&result), ["RUNTIME.WALL_TIME_EXCEEDED"]);
}

#[test]
fn output_overflow_ends_as_budget_exceeded() {
    let home = common::home();
    let rt = common::runtime(&home);
    let before = home.store.list().unwrap().len();
    let mut op = common::op("calc.echo", json!({"text": "x", "behaviour": "overflow"}));
    op.budget.output_bytes = Some(200_000);
    let result = rt.execute(op);
    assert_eq!(result.status, ResultStatus::BudgetExceeded);
    assert_eq!(codes(&result), ["RUNTIME.OUTPUT_BUDGET_EXCEEDED"]);
    assert_eq!(home.store.list().unwrap().len(), before);
}

#[test]
fn an_engine_cannot_read_another_runs_outputs() {
    let home = common::home();
    let rt = common::runtime(&home);
    let first = rt.execute(common::op(
        "calc.echo",
        json!({"text": "secret of run one"}),
    ));
    assert_eq!(first.status, ResultStatus::Succeeded);
    let stolen = serde_json::to_string(&first.outputs[0]).unwrap();
    let result = rt.execute(common::op(
        "calc.echo",
        json!({"text": "x", "behaviour": "read_foreign", "foreign_handle": stolen}),
    ));
    assert_eq!(result.status, ResultStatus::Failed);
    assert!(
        result.errors[0]
            .message
            .contains("not an input of this run"),
        "{result:?}"
    );
}

#[test]
fn d1_engine_that_omits_evidence_is_rejected() {
    let home = common::home();
    let rt = common::runtime(&home);
    let ok = rt.execute(common::op("live.fetch", json!({"text": "fine"})));
    assert_eq!(ok.status, ResultStatus::Succeeded, "{ok:?}");
    assert_eq!(ok.evidence.len(), 1);
    let bad = rt.execute(common::op("live.fetch", json!({"text": "no-evidence"})));
    assert_eq!(bad.status, ResultStatus::Failed);
    assert_eq!(codes(&bad), ["G-RESULT.EVIDENCE_MISSING"]);
    assert!(bad.outputs.is_empty());
    assert!(kinds(&home, bad.op_id).contains(&EventKind::ResultRejected));
}

#[test]
fn d3_cache_hits_and_misses_when_the_budget_changes() {
    let home = common::home();
    let rt = common::runtime(&home);
    let first = rt.execute(common::op("calc.echo", json!({"text": "cache me"})));
    assert!(!first.served_from_cache);
    assert_eq!(rt.runs_dispatched(), 1);
    let second = rt.execute(common::op("calc.echo", json!({"text": "cache me"})));
    assert_eq!(second.status, ResultStatus::Succeeded);
    assert!(second.served_from_cache);
    assert_eq!(second.outputs, first.outputs);
    assert_eq!(rt.runs_dispatched(), 1);
    let mut changed = common::op("calc.echo", json!({"text": "cache me"}));
    changed.budget.wall_time_ms = Some(1999);
    let third = rt.execute(changed);
    assert!(!third.served_from_cache);
    assert_eq!(rt.runs_dispatched(), 2);
    // Failures are never cached.
    rt.execute(common::op(
        "calc.echo",
        json!({"text": "f", "behaviour": "fail"}),
    ));
    rt.execute(common::op(
        "calc.echo",
        json!({"text": "f", "behaviour": "fail"}),
    ));
    assert_eq!(rt.runs_dispatched(), 4);
}

#[test]
fn cache_can_be_turned_off_and_is_skipped_for_tampered_outputs() {
    let home = common::home();
    let rt = common::builder(&home).result_cache(false).build().unwrap();
    rt.execute(common::op("calc.echo", json!({"text": "a"})));
    let again = rt.execute(common::op("calc.echo", json!({"text": "a"})));
    assert!(!again.served_from_cache);
    assert_eq!(rt.runs_dispatched(), 2);
}

#[test]
fn uncertified_engine_is_refused() {
    let home = common::home();
    let rt = common::runtime(&home);
    let result = rt.execute(common::op("other.echo", json!({"text": "x"})));
    assert_eq!(result.status, ResultStatus::Denied);
    assert_eq!(codes(&result), ["RUNTIME.ENGINE_NOT_CERTIFIED"]);
    assert_eq!(rt.runs_dispatched(), 0);
}

#[test]
fn denied_operations_are_recorded_with_every_denial() {
    let home = common::home();
    let rt = common::runtime(&home);
    let mut op = common::op("calc.echo", json!({"text": "x", "smuggled": true}));
    op.capabilities_requested.push("net.http".parse().unwrap());
    let result = rt.execute(op.clone());
    assert_eq!(result.status, ResultStatus::Denied);
    let gates: Vec<&str> = result.denials.iter().map(|d| d.gate.as_str()).collect();
    assert!(
        gates.contains(&"G-SCHEMA") && gates.contains(&"G-CAP"),
        "{gates:?}"
    );
    let kinds = kinds(&home, op.op_id);
    assert!(
        kinds.contains(&EventKind::GateDenied)
            && kinds.contains(&EventKind::CapabilityDenied)
            && kinds.contains(&EventKind::OpCompleted)
    );
    assert!(!kinds.contains(&EventKind::EngineStarted));
}

#[test]
fn raw_json_that_is_not_an_operation_is_denied_and_recorded() {
    let home = common::home();
    let rt = common::runtime(&home);
    let result = rt.execute_json(
        b"{\"schema_version\": \"poe-1.0\", \"op_id\": \"11111111-1111-4111-8111-111111111111\"",
    );
    assert_eq!(result.status, ResultStatus::Denied);
    assert_eq!(result.denials[0].code.as_str(), "G-SCHEMA.ENVELOPE_INVALID");
    let all = home.recorder.events(&EventQuery::all()).unwrap();
    assert!(all.iter().any(|e| e.kind == EventKind::GateDenied));
    assert!(all.iter().any(|e| e.kind == EventKind::OpCompleted));
}

#[test]
fn each_refusal_without_a_readable_op_id_has_a_record_of_its_own() {
    let home = common::home();
    let rt = common::runtime(&home);
    let first = rt.execute_json(b"not json");
    let second = rt.execute_json(b"[1, 2");
    assert_eq!(first.status, ResultStatus::Denied);
    assert_ne!(first.op_id, second.op_id);
    assert!(!first.op_id.is_nil() && !second.op_id.is_nil());
    for r in [&first, &second] {
        let mine = home.recorder.events(&EventQuery::op(r.op_id)).unwrap();
        let kinds: Vec<_> = mine.iter().map(|e| e.kind).collect();
        assert!(kinds.contains(&EventKind::GateDenied), "{kinds:?}");
        assert!(kinds.contains(&EventKind::OpCompleted), "{kinds:?}");
    }
}

#[test]
fn a_replayed_op_id_is_refused() {
    let home = common::home();
    let rt = common::runtime(&home);
    let op = common::op("calc.echo", json!({"text": "once"}));
    assert_eq!(rt.execute(op.clone()).status, ResultStatus::Succeeded);
    let again = rt.execute(op.clone());
    assert_eq!(again.status, ResultStatus::Denied);
    assert_eq!(again.denials[0].code.as_str(), "G-INTEGRITY.REPLAYED_OP_ID");
    // And after a restart, from the record.
    let rt2 = common::runtime(&home);
    assert_eq!(rt2.execute(op).status, ResultStatus::Denied);
}

#[test]
fn logs_become_one_artifact() {
    let home = common::home();
    let rt = common::runtime(&home);
    let result = rt.execute(common::op(
        "calc.echo",
        json!({"text": "x", "behaviour": "log"}),
    ));
    assert_eq!(result.status, ResultStatus::Succeeded, "{result:?}");
    let log = result.logs_ref.expect("a log artifact");
    assert_eq!(home.store.read(&log).unwrap(), b"line one\nline two\n");
}

#[test]
fn concurrent_execution_8_threads_by_200_operations() {
    let home = common::home();
    let rt = Arc::new(common::builder(&home).result_cache(false).build().unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let rt = rt.clone();
            std::thread::spawn(move || {
                (0..200)
                    .map(|i| {
                        let text = format!("t{t}-i{i}");
                        let result = rt.execute(common::op("calc.echo", json!({ "text": text })));
                        (text, result)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        all.extend(t.join().unwrap());
    }
    assert_eq!(all.len(), 1600);
    for (text, result) in &all {
        assert_eq!(result.status, ResultStatus::Succeeded, "{result:?}");
        assert_eq!(
            home.store.read(&result.outputs[0]).unwrap(),
            format!("echo: {text}").as_bytes()
        );
    }
    let completed = home
        .recorder
        .events(&EventQuery {
            kind: Some(EventKind::OpCompleted),
            ..EventQuery::default()
        })
        .unwrap();
    assert_eq!(completed.len(), 1600, "every run recorded exactly once");
    let ids: std::collections::BTreeSet<_> = completed.iter().filter_map(|e| e.op_id).collect();
    assert_eq!(ids.len(), 1600);
    assert!(home.recorder.verify().unwrap().is_ok());
}

#[test]
fn an_overrun_the_engine_observed_is_budget_exceeded() {
    let home = common::home();
    let rt = common::runtime(&home);
    let before = home.store.list().unwrap().len();
    let result = rt.execute(common::op(
        "calc.echo",
        json!({"text": "x", "behaviour": "over_budget"}),
    ));
    assert_eq!(result.status, ResultStatus::BudgetExceeded);
    assert_eq!(codes(&result), ["CALC_FAILED"]);
    assert_eq!(home.store.list().unwrap().len(), before);
}

#[test]
fn engines_add_environment_identifiers_but_cannot_overwrite_the_runtimes() {
    let home = common::home();
    let rt = common::runtime(&home);
    let result = rt.execute(common::op(
        "calc.echo",
        json!({"text": "x", "behaviour": "env"}),
    ));
    let env = &result.provenance.as_ref().unwrap().environment;
    assert_eq!(env["kernel"], "6.1-test");
    assert!(env["runtime"].starts_with("mex-runtime "), "{env:?}");
    assert_eq!(env["execution"], "in_process", "{env:?}");

    // Trying to overwrite one of the runtime's keys fails the run.
    let forged = rt.execute(common::op(
        "calc.echo",
        json!({"text": "x", "behaviour": "env_forged"}),
    ));
    assert_eq!(forged.status, ResultStatus::Failed, "{forged:?}");
    assert!(
        forged
            .errors
            .iter()
            .any(|e| e.code.as_str() == "RUNTIME.RESERVED_ENVIRONMENT_KEY"),
        "{:?}",
        forged.errors
    );
    assert!(forged.outputs.is_empty());
}

#[test]
fn the_runtime_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<mex_runtime::MexRuntime>();
}

/// Two runtimes on one home (two recorders, as two processes would have),
/// three threads each, one op id: exactly one run; every other request is
/// denied as a replay and its denial recorded, without a claim.
#[test]
fn one_op_id_raced_by_two_runtimes_on_one_home_runs_once() {
    let home = common::home();
    let second: Arc<dyn mex_recorder::FlightRecorder> =
        Arc::new(mex_recorder::SqliteRecorder::open(home.dir.path()).unwrap());
    let runtimes = [
        Arc::new(common::builder(&home).build().unwrap()),
        Arc::new(common::builder(&home).recorder(second).build().unwrap()),
    ];
    // The run takes a while, so every request is admitted before the winner
    // completes (a lookup of completed runs alone would let several run).
    let op = common::op(
        "calc.echo",
        json!({"text": "once", "behaviour": "sleep", "sleep_ms": 300}),
    );
    let barrier = Arc::new(std::sync::Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let rt = runtimes[i % 2].clone();
            let (op, barrier) = (op.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                rt.execute(op)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ran: Vec<_> = results
        .iter()
        .filter(|r| r.status != ResultStatus::Denied)
        .collect();
    assert_eq!(ran.len(), 1, "{results:?}");
    assert_eq!(ran[0].status, ResultStatus::Succeeded);
    for r in results.iter().filter(|r| r.status == ResultStatus::Denied) {
        assert_eq!(r.denials.len(), 1);
        assert_eq!(r.denials[0].code.as_str(), "G-INTEGRITY.REPLAYED_OP_ID");
    }
    let count = |kind: EventKind| {
        home.recorder
            .events(&EventQuery {
                op_id: Some(op.op_id),
                kind: Some(kind),
                ..EventQuery::default()
            })
            .unwrap()
    };
    assert_eq!(count(EventKind::EngineStarted).len(), 1);
    let completed = count(EventKind::OpCompleted);
    assert_eq!(completed.len(), 6, "every request is on record");
    assert_eq!(
        completed
            .iter()
            .filter(|e| e.status == Some(ResultStatus::Denied))
            .count(),
        5
    );
    assert_eq!(
        home.recorder.claim_state(op.op_id).unwrap(),
        Some(mex_recorder::ClaimState::Completed)
    );
    assert!(home.recorder.verify().unwrap().is_ok());
}

#[test]
fn a_denied_operation_does_not_use_its_op_id_and_validation_reports_replays() {
    let home = common::home();
    let rt = common::runtime(&home);
    let mut op = common::op("calc.echo", json!({"text": "x"}));
    op.capabilities_requested.push("net.http".parse().unwrap());
    assert_eq!(rt.execute(op.clone()).status, ResultStatus::Denied);
    assert_eq!(home.recorder.claim_state(op.op_id).unwrap(), None);
    // Fixed and resent under the same id, it runs.
    op.capabilities_requested.pop();
    assert_eq!(rt.execute(op.clone()).status, ResultStatus::Succeeded);
    let bytes = serde_json::to_vec(&op).unwrap();
    let replay = rt
        .validate_json(&bytes)
        .into_iter()
        .flat_map(|o| o.findings)
        .any(|f| f.code.as_str() == "G-INTEGRITY.REPLAYED_OP_ID");
    assert!(replay, "validation reports the op id as used");
}

#[test]
fn another_spelling_of_a_used_op_id_never_runs() {
    let home = common::home();
    let rt = common::runtime(&home);
    let op = common::op("calc.echo", json!({"text": "once"}));
    assert_eq!(rt.execute(op.clone()).status, ResultStatus::Succeeded);
    let mut doc = serde_json::to_value(&op).unwrap();
    doc["op_id"] = json!(op.op_id.to_string().to_uppercase());
    let again = rt.execute_json(&serde_json::to_vec(&doc).unwrap());
    assert_eq!(again.status, ResultStatus::Denied, "{again:?}");
    let started = home
        .recorder
        .events(&EventQuery {
            op_id: Some(op.op_id),
            kind: Some(EventKind::EngineStarted),
            ..EventQuery::default()
        })
        .unwrap();
    assert_eq!(started.len(), 1, "the op ran once");
}

#[test]
fn a_caller_cancellation_stops_the_run_and_is_recorded() {
    let home = common::home();
    let rt = std::sync::Arc::new(common::runtime(&home));
    let mut op = common::op(
        "calc.echo",
        json!({"text": "x", "behaviour": "sleep", "sleep_ms": 20000}),
    );
    op.budget.wall_time_ms = Some(60000);
    let id = op.op_id;
    let token = mex_runtime::CancelToken::new();
    let worker = {
        let (rt, token) = (rt.clone(), token.clone());
        std::thread::spawn(move || rt.execute_with_cancel(op, &token))
    };
    // Cancel once the engine is running (on record), not before.
    while !kinds(&home, id).contains(&EventKind::EngineStarted) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    token.cancel();
    let result = worker.join().unwrap();
    assert_eq!(result.status, ResultStatus::Failed);
    assert_eq!(codes(&result), ["RUNTIME.CANCELLED"]);
    assert!(result.outputs.is_empty());
    assert!(kinds(&home, id).contains(&EventKind::OpCompleted));
}

#[test]
fn a_cancellation_before_dispatch_runs_nothing() {
    let home = common::home();
    let rt = common::runtime(&home);
    let op = common::op("calc.echo", json!({"text": "x"}));
    let id = op.op_id;
    let token = mex_runtime::CancelToken::new();
    token.cancel();
    let result = rt.execute_with_cancel(op, &token);
    assert_eq!(codes(&result), ["RUNTIME.CANCELLED"]);
    assert_eq!(rt.runs_dispatched(), 0);
    assert!(!kinds(&home, id).contains(&EventKind::EngineStarted));
    assert!(kinds(&home, id).contains(&EventKind::OpCompleted));
}

/// Directories under the runtime's workspace root, apart from its lock file.
fn workspaces(rt: &mex_runtime::MexRuntime) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(rt.workspace_root()) {
        Ok(entries) => entries
            .map(|e| e.unwrap())
            .filter(|e| e.file_name() != mex_runtime::reclaim::ROOT_LOCK)
            .map(|e| e.path())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_run_gets_a_workspace_when_it_asks_and_none_outlives_a_run() {
    let home = common::home();
    let runs = home.dir.path().join("runs");
    let rt = common::builder(&home)
        .workspace_root(&runs)
        .build()
        .unwrap();
    // (That a run which never asks makes no workspace at all is shown by
    // `a_workspace_that_cannot_be_made_fails_only_the_runs_that_need_it`.)
    let result = rt.execute(common::op("calc.echo", json!({"text": "small"})));
    assert_eq!(result.status, ResultStatus::Succeeded, "{result:?}");
    assert_eq!(workspaces(&rt), Vec::<std::path::PathBuf>::new());
    // An engine that asks for its workspace gets a real, writable directory,
    // removed when the run settles.
    let result = rt.execute(common::op(
        "calc.echo",
        json!({"text": "scratch bytes", "behaviour": "scratch"}),
    ));
    assert_eq!(result.status, ResultStatus::Succeeded, "{result:?}");
    assert_eq!(
        home.store.read(&result.outputs[0]).unwrap(),
        b"scratch bytes"
    );
    assert_eq!(workspaces(&rt), Vec::<std::path::PathBuf>::new());
}

#[test]
fn a_large_output_is_staged_as_a_file_and_a_rewritten_one_is_refused() {
    let home = common::home();
    let rt = common::runtime(&home);
    let result = rt.execute(common::op(
        "calc.echo",
        json!({"text": "x", "behaviour": "big"}),
    ));
    assert_eq!(result.status, ResultStatus::Succeeded, "{result:?}");
    assert_eq!(result.outputs[0].size_bytes, 300 * 1024);
    assert_eq!(
        home.store.read(&result.outputs[0]).unwrap(),
        vec![b'b'; 300 * 1024]
    );

    let result = tampered_run_is_refused(&home, &rt, "big_tamper");
    assert!(result.outputs.is_empty());
}

/// Run a behaviour whose engine rewrites a staged file: the run fails
/// `G-RESULT.OUTPUT_UNVERIFIED` and nothing reaches the store.
fn tampered_run_is_refused(
    home: &common::Home,
    rt: &mex_runtime::MexRuntime,
    behaviour: &str,
) -> EngineResult {
    let before = home.store.list().unwrap().len();
    let result = rt.execute(common::op(
        "calc.echo",
        json!({"text": "x", "behaviour": behaviour}),
    ));
    assert_eq!(result.status, ResultStatus::Failed, "{result:?}");
    assert!(
        codes(&result).contains(&"G-RESULT.OUTPUT_UNVERIFIED".to_owned()),
        "{:?}",
        codes(&result)
    );
    assert_eq!(
        home.store.list().unwrap().len(),
        before,
        "a rewritten staged file was stored"
    );
    result
}

#[test]
fn a_log_part_rewritten_after_staging_is_refused() {
    let home = common::home();
    let rt = common::runtime(&home);
    let result = tampered_run_is_refused(&home, &rt, "big_log_tamper");
    assert!(result.logs_ref.is_none());
}

#[test]
fn a_workspace_that_cannot_be_made_fails_only_the_runs_that_need_it() {
    let home = common::home();
    let runs = home.dir.path().join("runs");
    let rt = common::builder(&home)
        .workspace_root(&runs)
        .build()
        .unwrap();
    // The root is replaced by a file after the runtime checked it.
    std::fs::remove_dir_all(&runs).unwrap();
    std::fs::write(&runs, b"not a directory").unwrap();
    let result = rt.execute(common::op("calc.echo", json!({"text": "small"})));
    assert_eq!(result.status, ResultStatus::Succeeded, "{result:?}");
    let result = rt.execute(common::op(
        "calc.echo",
        json!({"text": "x", "behaviour": "scratch"}),
    ));
    assert_eq!(result.status, ResultStatus::Failed, "{result:?}");
    assert!(
        codes(&result).contains(&"RUNTIME.WORKSPACE_UNAVAILABLE".to_owned()),
        "{:?}",
        codes(&result)
    );
    let result = rt.execute(common::op(
        "calc.echo",
        json!({"text": "x", "behaviour": "big"}),
    ));
    assert_eq!(result.status, ResultStatus::Failed, "{result:?}");
}
