//! `mex bench`: an operator's benchmark in the manner of `pgbench`.
//!
//! Runs trivial D3 operations (a builtin echo engine, declared in a registry
//! of the benchmark's own) through the real runtime, with the durable
//! recorder and the artifact store, in a temporary home made on the
//! filesystem of `--dir` (default: the home's), removed afterwards. It
//! reports operations per second, latency p50 and p99, the p50 of a D3
//! cache hit, and the filesystem's fsync latency measured in the same run
//! (200 bytes written and fsynced, before and after the operations) and the
//! cost of making one new small file durable (create, write, fsync the file
//! and its directory), so every figure reads against the disk's floor. `--preload-events M` appends M
//! events to the recorder first, to see how the figures hold as the log
//! grows. Cache-hit re-execution is off during the run (it would add engine
//! runs the figures do not count).

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mex_artifacts::ArtifactStore;
use mex_envelope::{ArtifactKind, EngineId, PlannedOperation, ResultStatus};
use mex_gates::CapabilityPolicy;
use mex_recorder::{EventDraft, EventKind, FlightRecorder, SqliteRecorder};
use mex_registry::Registry;
use mex_runtime::{Completion, Engine, EngineFailure, ExecutionContext, MexRuntime};
use serde_json::json;

use crate::cli::BenchArgs;
use crate::home::Home;
use crate::out::outln;
use crate::{CliError, exit};

/// Cache hits timed for the cache-hit p50.
const CACHE_HITS: usize = 200;
/// fsyncs (and new files) timed before and after the operations.
const FSYNCS: usize = 100;
/// Events per preload transaction.
const PRELOAD_BATCH: usize = 4096;

const REGISTRY: &str = r#"{
 "registry_version": "1.0",
 "engines": [{
  "engine_id": "engine.bench", "interface_version": "1.0.0", "domain": "benchmark",
  "description": "echoes its text: the trivial D3 engine of mex bench",
  "determinism_ceiling": "D3",
  "default_capabilities": ["fs.write:artifacts"],
  "default_budget": {"cpu_time_ms": 10000, "wall_time_ms": 10000, "memory_bytes": 268435456, "output_bytes": 1048576},
  "max_budget": {"cpu_time_ms": 60000, "wall_time_ms": 60000, "memory_bytes": 1073741824, "output_bytes": 67108864},
  "implementations": [{"id": "bench", "version": "1.0.0", "kind": "in_process"}],
  "failure_codes": [{"code": "BENCH_FAILED", "description": "the echo could not be written"}],
  "operations": [{
   "name": "bench.echo", "description": "echo the text",
   "params_schema": {"inline": {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
     "additionalProperties": false, "properties": {"text": {"type": "string"}}, "required": ["text"]}},
   "outputs": [{"type": "artifact.dataset"}],
   "required_capabilities": ["fs.write:artifacts"],
   "determinism": "D3"
  }]
 }]
}"#;

const POLICY: &str = r#"{"policy_version":"mex-policy-1","default_profile":"bench","profiles":{"bench":{"grants":["fs.write:artifacts"]}}}"#;

/// The trivial engine: one small report.
struct Echo(EngineId);

impl Engine for Echo {
    fn engine_id(&self) -> EngineId {
        self.0.clone()
    }
    fn implementation_id(&self) -> &str {
        "bench"
    }
    fn implementation_version(&self) -> semver::Version {
        semver::Version::new(1, 0, 0)
    }
    fn execute<'run>(
        &self,
        ctx: &ExecutionContext<'run>,
    ) -> Result<Completion<'run>, EngineFailure> {
        let text = ctx
            .params()
            .get("text")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        ctx.write_output(
            ArtifactKind::Report,
            None,
            format!("echo: {text}").as_bytes(),
        )
        .map_err(|e| EngineFailure::new("BENCH_FAILED", e.to_string()))?;
        Ok(ctx.complete())
    }
}

fn op(text: &str) -> Result<PlannedOperation, CliError> {
    PlannedOperation::from_json_value(json!({
        "schema_version": "poe-1.0", "op_id": uuid::Uuid::new_v4().to_string(),
        "engine_id": "engine.bench", "engine_version_req": "^1", "operation": "bench.echo",
        "inputs": [], "params": {"text": text}, "capabilities_requested": ["fs.write:artifacts"],
        "budget": {"wall_time_ms": 10000}, "determinism": "D3"
    }))
    .map_err(|e| CliError::internal(format!("the benchmark's operation is invalid: {e}")))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The `q` quantile (0..=1) of sorted `xs` (nearest rank).
fn quantile(xs: &[u64], q: f64) -> u64 {
    if xs.is_empty() {
        return 0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a slice of at most millions"
    )]
    let rank = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
    xs[rank - 1]
}

/// fsync latencies of a 200-byte write on `dir`'s filesystem.
fn fsync_samples(dir: &Path, n: usize) -> Result<Vec<u64>, CliError> {
    let path = dir.join("fsync-probe");
    let fail = |e: std::io::Error| {
        CliError::internal(format!(
            "cannot measure fsync in {}: {e}; check that the directory is writable",
            dir.display()
        ))
    };
    let mut file = std::fs::File::create(&path).map_err(fail)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        file.write_all(&[b'x'; 200]).map_err(fail)?;
        let t = Instant::now();
        file.sync_all().map_err(fail)?;
        out.push(micros(t.elapsed()));
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(out)
}

/// Latencies of making a new 200-byte file durable in a fresh directory on
/// `dir`'s filesystem: create, write, fsync the file, fsync the directory.
fn new_file_samples(dir: &Path, n: usize) -> Result<Vec<u64>, CliError> {
    let probe = tempfile::Builder::new()
        .prefix("new-file-probe-")
        .tempdir_in(dir)
        .map_err(|e| {
            CliError::internal(format!(
                "cannot measure file creation in {}: {e}; check that the directory is writable",
                dir.display()
            ))
        })?;
    let fail = |e: std::io::Error| {
        CliError::internal(format!(
            "cannot measure file creation in {}: {e}",
            probe.path().display()
        ))
    };
    let parent = std::fs::File::open(probe.path()).map_err(fail)?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let mut file =
            std::fs::File::create_new(probe.path().join(format!("f{i}"))).map_err(fail)?;
        file.write_all(&[b'x'; 200]).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        parent.sync_all().map_err(fail)?;
        out.push(micros(t.elapsed()));
    }
    Ok(out)
}

fn runtime(home: &Path, recorder: Arc<dyn FlightRecorder>) -> Result<MexRuntime, CliError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        CliError::internal(format!("mex bench cannot {what}: {e}"))
    };
    let registry_path = home.join("bench-registry.json");
    std::fs::write(&registry_path, REGISTRY).map_err(|e| fail("write its registry", &e))?;
    let registry = Registry::load(&registry_path).map_err(|e| fail("load its registry", &e))?;
    let policy =
        CapabilityPolicy::from_json_str(POLICY).map_err(|e| fail("load its policy", &e))?;
    let store = ArtifactStore::at(home.join("artifacts")).map_err(|e| fail("open a store", &e))?;
    let engine: EngineId = "engine.bench"
        .parse()
        .map_err(|e| fail("name its engine", &e))?;
    MexRuntime::builder()
        .registry(Arc::new(registry))
        .policy(policy)
        .store(Arc::new(store))
        .recorder(recorder)
        .engine(Arc::new(Echo(engine.clone())))
        // Inside the temporary home, so nothing of the run outlives it.
        .workspace_root(home.join("runs"))
        .trust_uncertified(engine)
        .cache_reexecute_fraction(0.0)
        .build()
        .map_err(|e| fail("build a runtime", &e))
}

fn preload(recorder: &dyn FlightRecorder, events: u64) -> Result<(), CliError> {
    let mut left = events;
    while left > 0 {
        let n = usize::try_from(left.min(PRELOAD_BATCH as u64)).unwrap_or(PRELOAD_BATCH);
        let batch: Vec<EventDraft> = (0..n)
            .map(|_| {
                EventDraft::new(EventKind::OpReceived)
                    .with_op_id(uuid::Uuid::new_v4())
                    .with_payload(json!({"bench": "preload"}))
            })
            .collect();
        recorder
            .append_batch(batch)
            .map_err(|e| CliError::internal(format!("mex bench cannot preload events: {e}")))?;
        left -= n as u64;
    }
    Ok(())
}

/// Run `mex bench`.
pub fn run(home: &Home, args: &BenchArgs) -> Result<u8, CliError> {
    if args.ops == 0 || args.concurrency == 0 {
        return Err(CliError::usage(
            "mex bench needs --ops and --concurrency of at least 1",
        ));
    }
    let base = args.dir.clone().unwrap_or_else(|| home.root.clone());
    std::fs::create_dir_all(&base).map_err(|e| {
        CliError::usage(format!(
            "cannot create {}: {e}; pass --dir with a writable directory",
            base.display()
        ))
    })?;
    let temp = tempfile::Builder::new()
        .prefix("mex-bench-")
        .tempdir_in(&base)
        .map_err(|e| {
            CliError::usage(format!(
                "cannot make a temporary home in {}: {e}; pass --dir with a writable directory",
                base.display()
            ))
        })?;
    let dir = temp.path();
    let mut fsyncs = fsync_samples(dir, FSYNCS)?;
    let mut new_files = new_file_samples(dir, FSYNCS)?;
    let open = || {
        SqliteRecorder::open(dir)
            .map_err(|e| CliError::internal(format!("mex bench cannot open a recorder: {e}")))
    };
    if args.preload_events > 0 {
        // Closed once loaded: the last connection copies the WAL into the
        // database and fsyncs it, so the measured operations start from a
        // home at rest, as one with that history would be, not behind the
        // checkpoint and writeback of hundreds of MB just written.
        preload(&open()?, args.preload_events)?;
    }
    let recorder: Arc<dyn FlightRecorder> = Arc::new(open()?);
    let rt = runtime(dir, recorder)?;

    let per_thread = args.ops.div_ceil(args.concurrency);
    let started = Instant::now();
    let results: Vec<Result<Vec<u64>, CliError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..args.concurrency)
            .map(|t| {
                let rt = &rt;
                s.spawn(move || -> Result<Vec<u64>, CliError> {
                    let mut lat = Vec::new();
                    let first = t * per_thread;
                    let last = (first + per_thread).min(args.ops);
                    for i in first..last {
                        let op = op(&format!("op {i}"))?;
                        let t0 = Instant::now();
                        let result = rt.execute(op);
                        lat.push(micros(t0.elapsed()));
                        if result.status != ResultStatus::Succeeded {
                            return Err(CliError::internal(format!(
                                "a benchmark operation ended {:?}: {:?}",
                                result.status, result.errors
                            )));
                        }
                    }
                    Ok(lat)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(CliError::internal("a benchmark thread panicked")))
            })
            .collect()
    });
    let elapsed = started.elapsed();
    let mut latencies = Vec::new();
    for r in results {
        latencies.extend(r?);
    }
    latencies.sort_unstable();

    // Cache hits: one miss fills the entry, then every run hits it.
    let _ = rt.execute(op("hot")?);
    let mut hits = Vec::with_capacity(CACHE_HITS);
    for _ in 0..CACHE_HITS {
        let t0 = Instant::now();
        let result = rt.execute(op("hot")?);
        hits.push(micros(t0.elapsed()));
        if !result.served_from_cache {
            return Err(CliError::internal(
                "a benchmark cache lookup missed; the action cache is not working",
            ));
        }
    }
    hits.sort_unstable();
    fsyncs.extend(fsync_samples(dir, FSYNCS)?);
    fsyncs.sort_unstable();
    new_files.extend(new_file_samples(dir, FSYNCS)?);
    new_files.sort_unstable();

    #[allow(clippy::cast_precision_loss, reason = "a rate shown with one decimal")]
    let ops_per_s = latencies.len() as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    let report = mex_cli::report::BenchReport {
        ops: args.ops as u64,
        concurrency: args.concurrency as u64,
        preloaded_events: args.preload_events,
        dir: base.display().to_string(),
        ops_per_s: (ops_per_s * 10.0).round() / 10.0,
        latency_p50_us: quantile(&latencies, 0.5),
        latency_p99_us: quantile(&latencies, 0.99),
        cache_hit_p50_us: quantile(&hits, 0.5),
        fsync_p50_us: quantile(&fsyncs, 0.5),
        new_file_p50_us: quantile(&new_files, 0.5),
    };
    drop(rt);
    drop(temp);
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::internal(format!("cannot print the report: {e}")))?;
        outln!("{text}");
    } else {
        outln!(
            "mex bench: {} trivial D3 ops, concurrency {}, {} events preloaded, on {}",
            report.ops,
            report.concurrency,
            report.preloaded_events,
            report.dir
        );
        outln!("throughput      {:>10.1} ops/s", report.ops_per_s);
        outln!("latency p50     {:>10} us", report.latency_p50_us);
        outln!("latency p99     {:>10} us", report.latency_p99_us);
        outln!("cache hit p50   {:>10} us", report.cache_hit_p50_us);
        outln!(
            "fsync p50       {:>10} us (200 bytes, same filesystem)",
            report.fsync_p50_us
        );
        outln!(
            "new file p50    {:>10} us (create, write 200 bytes, fsync file and directory)",
            report.new_file_p50_us
        );
    }
    Ok(exit::OK)
}
