//! Cost of one small put (200 bytes of new content: an inline payload row
//! and a record row, committed durably in one transaction), the store's
//! per-operation floor, from one thread and from 8 threads at once (which
//! share commits). Temp files play no part in a small put any more, so
//! there is one mode.
//!
//! `cargo bench -p mex-artifacts --bench put_small`
//!
//! The store lives in the system temp directory (a real disk filesystem
//! here, so the fsyncs count); set `MEX_BENCH_DIR` to measure another one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmarks fail loudly on a broken setup instead of handling it"
)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use mex_artifacts::{ArtifactStore, PutOptions};

const THREADS: u64 = 8;

fn bench_dir() -> PathBuf {
    std::env::var("MEX_BENCH_DIR").map_or_else(|_| std::env::temp_dir(), PathBuf::from)
}

/// 200 bytes no earlier put stored.
fn content(n: u64) -> Vec<u8> {
    let mut out = format!("{n:020}").into_bytes();
    out.resize(200, b'.');
    out
}

fn put_small(c: &mut Criterion) {
    let work = tempfile::tempdir_in(bench_dir()).unwrap();
    let counter = AtomicU64::new(0);
    let mut group = c.benchmark_group("put_small_200B");
    group
        .sample_size(20)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    let store = ArtifactStore::at(work.path().join("store")).unwrap();
    let options = PutOptions::default();
    group.throughput(Throughput::Elements(1));
    group.bench_function("1_thread", |b| {
        b.iter(|| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            store.put_bytes(&content(n), &options).unwrap()
        })
    });
    group.throughput(Throughput::Elements(THREADS));
    group.bench_function(format!("{THREADS}_threads"), |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..THREADS {
                    s.spawn(|| {
                        for _ in 0..iters {
                            let n = counter.fetch_add(1, Ordering::Relaxed);
                            store.put_bytes(&content(n), &options).unwrap();
                        }
                    });
                }
            });
            t.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, put_small);
criterion_main!(benches);
