//! Ingest and verified-read throughput of a 1 GiB file, against raw `sha2`
//! hashing of the same bytes in memory (the ceiling), in the same run.
//!
//! `cargo bench -p mex-artifacts --bench ingest`
//!
//! The store lives on tmpfs (`/dev/shm` when present) so that the figure
//! measures the store's own work (read, hash, write, fsync, rename), not the
//! disk; set `MEX_BENCH_DIR` to measure another filesystem. Set
//! `MEX_BENCH_MIB` to change the size (default 1024).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmarks fail loudly on a broken setup instead of handling it"
)]

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use mex_artifacts::{ArtifactStore, PutOptions, StoreConfig};
use sha2::{Digest, Sha256};

fn bench_dir() -> PathBuf {
    if let Ok(d) = std::env::var("MEX_BENCH_DIR") {
        return PathBuf::from(d);
    }
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

fn pattern(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for chunk in out.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    out
}

fn ingest(c: &mut Criterion) {
    let mib: usize = std::env::var("MEX_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let len = mib << 20;
    let work = tempfile::tempdir_in(bench_dir()).unwrap();
    let bytes = pattern(len);
    let src = work.path().join("source.bin");
    std::fs::File::create(&src)
        .unwrap()
        .write_all(&bytes)
        .unwrap();

    let mut group = c.benchmark_group(format!("ingest_{mib}MiB"));
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Bytes(len as u64));

    group.bench_function("sha2_in_memory", |b| b.iter(|| Sha256::digest(&bytes)));
    drop(bytes);

    let mut n = 0u64;
    group.bench_function("put_path_new_content", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let root = work.path().join(format!("store{n}"));
                let store = ArtifactStore::at(&root).unwrap();
                let t = Instant::now();
                store.put_path(&src, &PutOptions::default()).unwrap();
                total += t.elapsed();
                drop(store);
                std::fs::remove_dir_all(&root).unwrap();
            }
            total
        });
    });

    let root = work.path().join("store-read");
    let store = ArtifactStore::with_config(
        &root,
        StoreConfig {
            verify_cache: false,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    let h = store.put_path(&src, &PutOptions::default()).unwrap();
    group.bench_function("put_path_dedup_second_put", |b| {
        b.iter(|| store.put_path(&src, &PutOptions::default()).unwrap())
    });
    group.bench_function("verified_read_streaming", |b| {
        b.iter(|| {
            std::io::copy(&mut store.open_streaming(&h).unwrap(), &mut std::io::sink()).unwrap()
        })
    });
    group.bench_function("verified_open_then_read", |b| {
        b.iter(|| std::io::copy(&mut store.open(&h).unwrap(), &mut std::io::sink()).unwrap())
    });
    let cached = ArtifactStore::with_config(
        &root,
        StoreConfig {
            verify_cache: true,
            racy_window: Duration::ZERO,
        },
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    cached.open(&h).unwrap();
    group.bench_function("verified_open_cached_then_read", |b| {
        b.iter(|| std::io::copy(&mut cached.open(&h).unwrap(), &mut std::io::sink()).unwrap())
    });
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
