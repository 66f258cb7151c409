//! Overhead of starting a sandboxed `true` against a plain
//! `std::process::Command` running `true`, measured in the same run.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmarks fail loudly on a broken setup instead of handling it"
)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mex_sandbox::{Confinement, Limits, Request, SandboxConfig};

fn request(workdir: PathBuf) -> Request {
    let t = mex_sandbox::resolve_executable("true").unwrap();
    let mut executables = vec![t.clone()];
    executables.extend(mex_sandbox::dynamic_loaders());
    Request {
        program: t,
        args: vec![],
        workdir: workdir.clone(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        limits: Limits::default(),
        confinement: Confinement {
            read_only: mex_sandbox::system_read_only_paths(),
            read_write: vec![workdir],
            executables,
            network: false,
            allow_degraded: false,
        },
        deadline: Instant::now() + Duration::from_secs(3600),
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let config = SandboxConfig {
        launcher: Some(PathBuf::from(env!("CARGO_BIN_EXE_mex-sandbox-exec"))),
        ..SandboxConfig::default()
    };
    let landlock_only = SandboxConfig {
        netns_helper: None,
        ..config.clone()
    };
    let work = dir.path().join("work");
    mex_sandbox::prepare_workdir(&config, &work).unwrap();
    let req = request(work);
    let mut group = c.benchmark_group("spawn_true");
    group.bench_function("plain_command", |b| {
        b.iter(|| {
            let s = Command::new("/usr/bin/true")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .output()
                .unwrap();
            assert!(s.status.success());
        })
    });
    group.bench_function("sandboxed_netns", |b| {
        b.iter(|| {
            let o = mex_sandbox::run(&config, &req).unwrap();
            assert!(o.success(), "{o:?}");
        })
    });
    group.bench_function("sandboxed_landlock_only", |b| {
        b.iter(|| {
            let o = mex_sandbox::run(&landlock_only, &req).unwrap();
            assert!(o.success(), "{o:?}");
        })
    });
    group.finish();

    // The ratio, measured here in the same run (criterion prints each mean),
    // interleaved so that both see the same machine load.
    let n = 200u32;
    let (mut plain, mut netns, mut landlock) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for _ in 0..n {
        let t = Instant::now();
        Command::new("/usr/bin/true").output().unwrap();
        plain += t.elapsed();
        let t = Instant::now();
        mex_sandbox::run(&config, &req).unwrap();
        netns += t.elapsed();
        let t = Instant::now();
        mex_sandbox::run(&landlock_only, &req).unwrap();
        landlock += t.elapsed();
    }
    let (plain, netns, landlock) = (plain / n, netns / n, landlock / n);
    #[allow(
        clippy::print_stdout,
        reason = "benchmarks fail loudly on a broken setup instead of handling it"
    )]
    {
        println!(
            "spawn_true (interleaved, n={n}): plain {plain:?}, sandboxed+netns {netns:?} (ratio {:.1}), sandboxed landlock-only {landlock:?} (ratio {:.1})",
            netns.as_secs_f64() / plain.as_secs_f64(),
            landlock.as_secs_f64() / plain.as_secs_f64()
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
