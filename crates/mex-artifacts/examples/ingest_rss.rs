//! Peak memory (RSS high-water mark) while ingesting a large file.
//!
//! `cargo run --release -p mex-artifacts --example ingest_rss -- [SIZE_MIB] [STORE_PARENT]`
//!
//! Writes a SIZE_MIB file of pseudo-random bytes (default 1024) under
//! STORE_PARENT (default /dev/shm, or the system temp dir), ingests it with
//! `put_path`, then reads it back verified, and prints the kernel's VmHWM
//! (peak resident set) after each step, plus the throughput.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use mex_artifacts::{ArtifactStore, PutOptions};

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let parent = args.next().map(PathBuf::from).unwrap_or_else(|| {
        let shm = PathBuf::from("/dev/shm");
        if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        }
    });
    let dir = tempfile::tempdir_in(&parent).unwrap();
    let src = dir.path().join("source.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).unwrap());
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut block = vec![0u8; 1 << 16];
        for _ in 0..(mib * 16) {
            for chunk in block.chunks_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                chunk.copy_from_slice(&state.to_le_bytes());
            }
            f.write_all(&block).unwrap();
        }
        f.flush().unwrap();
    }
    let baseline = vm_hwm_kib();
    let store = ArtifactStore::at(dir.path().join("store")).unwrap();
    let t = Instant::now();
    let h = store.put_path(&src, &PutOptions::default()).unwrap();
    let put_s = t.elapsed().as_secs_f64();
    let after_put = vm_hwm_kib();
    let t = Instant::now();
    let mut reader = store.open_streaming(&h).unwrap();
    let n = std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
    let read_s = t.elapsed().as_secs_f64();
    let after_read = vm_hwm_kib();
    let mb = (mib << 20) as f64 / 1e6;
    println!("store under {}", parent.display());
    println!("ingest {mib} MiB: {put_s:.3} s = {:.0} MB/s", mb / put_s);
    println!(
        "verified streaming read {n} bytes: {read_s:.3} s = {:.0} MB/s",
        mb / read_s
    );
    println!(
        "VmHWM before ingest {baseline} KiB, after ingest {after_put} KiB, after read {after_read} KiB"
    );
    println!(
        "peak RSS growth during ingest: {:.1} MiB",
        (after_put.saturating_sub(baseline)) as f64 / 1024.0
    );
}
