//! The persistent D3 action cache: shared across runtimes on one home,
//! bounded, and checked by sampled re-execution.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on a broken setup"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mex_envelope::{ArtifactKind, EngineId, ResultStatus};
use mex_recorder::ProblemFilter;
use mex_runtime::{CacheLimits, Completion, Engine, EngineFailure, ExecutionContext, MexRuntime};
use serde_json::json;

/// engine.calc, but every run writes something new: declared D3, is not.
struct Flaky(AtomicU64);

impl Engine for Flaky {
    fn engine_id(&self) -> EngineId {
        "engine.calc".parse().unwrap()
    }
    fn implementation_id(&self) -> &str {
        "calc"
    }
    fn implementation_version(&self) -> semver::Version {
        semver::Version::new(1, 0, 0)
    }
    fn execute<'run>(
        &self,
        ctx: &ExecutionContext<'run>,
    ) -> Result<Completion<'run>, EngineFailure> {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        ctx.write_output(ArtifactKind::Report, None, format!("run {n}").as_bytes())
            .map_err(|e| EngineFailure::new("CALC_FAILED", e.to_string()))?;
        Ok(ctx.complete())
    }
}

fn flaky_runtime(home: &common::Home, fraction: f64) -> MexRuntime {
    MexRuntime::builder()
        .registry(common::registry())
        .policy(common::policy())
        .store(home.store.clone())
        .recorder(home.recorder.clone())
        .engine(Arc::new(Flaky(AtomicU64::new(0))))
        .trust_uncertified("engine.calc".parse().unwrap())
        .cache_reexecute_fraction(fraction)
        .build()
        .unwrap()
}

#[test]
fn a_second_runtime_on_the_home_hits_what_the_first_cached() {
    let home = common::home();
    let first = common::runtime(&home);
    let miss = first.execute(common::op("calc.echo", json!({"text": "shared"})));
    assert!(!miss.served_from_cache);
    drop(first);
    // A new runtime (as a new `mex run` process would build) on the same home.
    let second = common::runtime(&home);
    let hit = second.execute(common::op("calc.echo", json!({"text": "shared"})));
    assert_eq!(hit.status, ResultStatus::Succeeded);
    assert!(hit.served_from_cache, "{hit:?}");
    assert_eq!(hit.outputs, miss.outputs);
    assert_eq!(second.runs_dispatched(), 0);
    assert!(home.dir.path().join(mex_runtime::CACHE_FILE_NAME).is_file());
    let stats = second.action_cache().unwrap().stats().unwrap();
    assert_eq!((stats.entries, stats.hits), (1, 1));
}

#[test]
fn the_cache_stays_within_its_entry_bound() {
    let home = common::home();
    let rt = common::builder(&home)
        .cache_limits(CacheLimits {
            max_entries: 2,
            max_bytes: u64::MAX,
        })
        .build()
        .unwrap();
    for text in ["a", "b", "c"] {
        rt.execute(common::op("calc.echo", json!({ "text": text })));
    }
    let stats = rt.action_cache().unwrap().stats().unwrap();
    assert_eq!((stats.entries, stats.evictions), (2, 1));
    // "a" was least recently used: it is gone, "c" is served.
    assert!(
        !rt.execute(common::op("calc.echo", json!({"text": "a"})))
            .served_from_cache
    );
    assert!(
        rt.execute(common::op("calc.echo", json!({"text": "c"})))
            .served_from_cache
    );
}

#[test]
fn reexecuting_a_nondeterministic_engine_drops_the_entry_and_records_a_problem() {
    let home = common::home();
    let rt = flaky_runtime(&home, 1.0);
    let first = rt.execute(common::op("calc.echo", json!({"text": "x"})));
    assert_eq!(first.status, ResultStatus::Succeeded);
    let hit = rt.execute(common::op("calc.echo", json!({"text": "x"})));
    assert!(hit.served_from_cache);
    rt.wait_for_reexecutions();
    let problems = home.recorder.problems(&ProblemFilter::default()).unwrap();
    let found = problems
        .iter()
        .find(|p| p.code.as_str() == "RUNTIME.CACHE_NONDETERMINISTIC")
        .unwrap_or_else(|| panic!("no nondeterminism problem in {problems:?}"));
    assert_eq!(found.engine_id.as_ref().unwrap().as_str(), "engine.calc");
    let stats = rt.action_cache().unwrap().stats().unwrap();
    assert_eq!(
        (stats.reexecutions, stats.mismatches, stats.entries),
        (1, 1, 0)
    );
    // The entry is gone: the next request runs the engine.
    let after = rt.execute(common::op("calc.echo", json!({"text": "x"})));
    assert!(!after.served_from_cache);
    assert!(home.recorder.verify().unwrap().is_ok());
}

#[test]
fn reexecuting_a_deterministic_engine_keeps_the_entry() {
    let home = common::home();
    let rt = common::builder(&home)
        .cache_reexecute_fraction(1.0)
        .build()
        .unwrap();
    rt.execute(common::op("calc.echo", json!({"text": "same"})));
    assert!(
        rt.execute(common::op("calc.echo", json!({"text": "same"})))
            .served_from_cache
    );
    rt.wait_for_reexecutions();
    let stats = rt.action_cache().unwrap().stats().unwrap();
    assert_eq!(
        (stats.reexecutions, stats.mismatches, stats.entries),
        (1, 0, 1)
    );
    let problems = home.recorder.problems(&ProblemFilter::default()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn a_fraction_of_zero_never_reexecutes() {
    let home = common::home();
    let rt = flaky_runtime(&home, 0.0);
    rt.execute(common::op("calc.echo", json!({"text": "y"})));
    for _ in 0..5 {
        assert!(
            rt.execute(common::op("calc.echo", json!({"text": "y"})))
                .served_from_cache
        );
    }
    rt.wait_for_reexecutions();
    let stats = rt.action_cache().unwrap().stats().unwrap();
    assert_eq!(
        (stats.reexecutions, stats.mismatches, stats.hits),
        (0, 0, 5)
    );
}

/// Two processes opening one new cache file at once: the one that finds the
/// other creating it waits for its lock instead of failing with "database is
/// locked" (SQLite does not wait by itself when switching to WAL mode).
#[test]
fn opening_a_new_cache_waits_for_another_connection_creating_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(mex_runtime::CACHE_FILE_NAME);
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let opener = std::thread::spawn(move || {
        mex_runtime::ActionCache::open(path, CacheLimits::default()).map(drop)
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    holder.execute_batch("COMMIT").unwrap();
    opener.join().unwrap().unwrap();
}
