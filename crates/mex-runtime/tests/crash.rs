//! Crash test of the whole runtime: a child process runs operations from 8
//! threads at once (their records share group-commit transactions) and
//! prints each result as it is returned; the parent kills it with SIGKILL
//! while operations are in flight, several times. Afterwards every operation
//! whose result was returned is on record as completed with its artifacts,
//! every artifact verifies, the chain verifies, and no half-written artifact
//! is visible (the store's verify walk finds nothing wrong).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use mex_artifacts::ArtifactStore;
use mex_envelope::{ArtifactHandle, ResultStatus};
use mex_recorder::{ClaimState, EventKind, EventQuery, FlightRecorder, SqliteRecorder};
use serde_json::json;
use uuid::Uuid;

const CHILD_ENV: &str = "MEX_RUNTIME_CRASH_CHILD_DIR";
const THREADS: usize = 8;
const ROUNDS: usize = 4;

fn runtime_at(dir: &std::path::Path) -> mex_runtime::MexRuntime {
    let recorder: Arc<dyn FlightRecorder> = Arc::new(SqliteRecorder::open(dir).unwrap());
    let store = Arc::new(ArtifactStore::at(dir.join("artifacts")).unwrap());
    let home = common::Home {
        dir: tempfile::tempdir().unwrap(),
        recorder,
        store,
    };
    common::builder(&home)
        .workspace_root(dir.join("runs"))
        .build()
        .unwrap()
}

/// Run operations from [`THREADS`] threads, `per_thread` each (or forever),
/// printing `DONE <op id> <handle json>` for each succeeded result when
/// `print`. Returns how many succeeded.
fn run_from_threads(
    rt: &Arc<mex_runtime::MexRuntime>,
    per_thread: Option<u64>,
    print: bool,
) -> u64 {
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let rt = Arc::clone(rt);
            std::thread::spawn(move || {
                let mut done = 0;
                for i in 0..per_thread.unwrap_or(u64::MAX) {
                    // Odd threads' engines use their shadow workspace (made
                    // on first use), so a kill also leaves live workspaces.
                    let params = if t % 2 == 1 {
                        json!({ "text": format!("echo: {t}-{i}-{}", Uuid::new_v4()), "behaviour": "scratch" })
                    } else {
                        json!({ "text": format!("{t}-{i}-{}", Uuid::new_v4()) })
                    };
                    let result = rt.execute(common::op("calc.echo", params));
                    assert_eq!(result.status, ResultStatus::Succeeded, "{result:?}");
                    done += 1;
                    if print {
                        let handle = serde_json::to_string(&result.outputs[0]).unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "DONE {} {handle}", result.op_id).unwrap();
                        out.flush().unwrap();
                    }
                }
                done
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).sum()
}

/// In the child (env var set): run forever. Run by the harness itself: the
/// same workload, a few operations per thread, all on record.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        let dir = tempfile::tempdir().unwrap();
        let rt = Arc::new(runtime_at(dir.path()));
        assert_eq!(run_from_threads(&rt, Some(3), false), (THREADS * 3) as u64);
        assert!(rt.recorder().verify().unwrap().is_ok());
        return;
    };
    let rt = Arc::new(runtime_at(std::path::Path::new(&dir)));
    run_from_threads(&rt, None, true);
}

fn random_delay_ms(lo: u64, hi: u64) -> u64 {
    let r = u64::from_le_bytes(Uuid::new_v4().as_bytes()[..8].try_into().unwrap());
    lo + r % (hi - lo)
}

#[test]
fn every_returned_result_survives_sigkill_with_8_operations_in_flight() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut returned: Vec<(Uuid, ArtifactHandle)> = Vec::new();
    for _ in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Some(rest) = line.strip_prefix("DONE ") else {
                    continue;
                };
                let (id, handle) = rest.split_once(' ').unwrap();
                let parsed = (
                    id.parse::<Uuid>().unwrap(),
                    serde_json::from_str::<ArtifactHandle>(handle).unwrap(),
                );
                if tx.send(parsed).is_err() {
                    break;
                }
            }
        });
        // Once a batch of results came back, all 8 threads are busy with
        // the next operations: kill at a random moment among them.
        let mut got = Vec::new();
        while got.len() < THREADS {
            match rx.recv() {
                Ok(r) => got.push(r),
                Err(_) => panic!("the child ended before returning {THREADS} results"),
            }
        }
        std::thread::sleep(Duration::from_millis(random_delay_ms(1, 200)));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        got.extend(rx.try_iter());
        returned.extend(got);
    }
    // Reopen as the next process would.
    let recorder = SqliteRecorder::open(dir.path()).unwrap();
    let store = ArtifactStore::at(dir.path().join("artifacts")).unwrap();
    assert!(recorder.verify().unwrap().is_ok());
    for (op_id, handle) in &returned {
        assert_eq!(
            recorder.claim_state(*op_id).unwrap(),
            Some(ClaimState::Completed),
            "{op_id}"
        );
        let events = recorder.events(&EventQuery::op(*op_id)).unwrap();
        let completed = events
            .iter()
            .find(|e| e.kind == EventKind::OpCompleted)
            .unwrap_or_else(|| panic!("{op_id} returned but has no op_completed"));
        assert_eq!(completed.status, Some(ResultStatus::Succeeded));
        assert!(events.iter().any(
            |e| e.kind == EventKind::ArtifactWritten && e.artifact == Some(handle.content_hash)
        ));
        let bytes = store.read(handle).unwrap();
        assert!(bytes.starts_with(b"echo: "));
    }
    let report = store.verify().unwrap();
    assert!(
        report.is_ok(),
        "half-written or damaged artifacts: {report:?}"
    );
    // The killed processes' shadow workspaces are gone once the next
    // runtime is built (it reclaims the dead ones).
    drop(runtime_at(dir.path()));
    let left: Vec<_> = std::fs::read_dir(dir.path().join("runs"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| mex_runtime::reclaim::is_workspace_name(n))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "workspaces of killed runs left: {left:?}");
}
