//! Overhead of starting a sandboxed `true` against a plain
//! `std::process::Command` running `true`, measured in the same run.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

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
    let config = SandboxConfig {
        launcher: Some(PathBuf::from(env!("CARGO_BIN_EXE_mex-sandbox-exec"))),
        ..SandboxConfig::default()
    };
    let req = request(dir.path().to_path_buf());
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
    group.bench_function("sandboxed", |b| {
        b.iter(|| {
            let o = mex_sandbox::run(&config, &req).unwrap();
            assert!(o.success(), "{o:?}");
        })
    });
    group.finish();

    // The ratio, measured here in the same run (criterion prints each mean).
    let n = 200;
    let t0 = Instant::now();
    for _ in 0..n {
        Command::new("/usr/bin/true").output().unwrap();
    }
    let plain = t0.elapsed() / n;
    let t1 = Instant::now();
    for _ in 0..n {
        mex_sandbox::run(&config, &req).unwrap();
    }
    let sandboxed = t1.elapsed() / n;
    #[allow(clippy::print_stdout)]
    {
        println!(
            "spawn_true: plain {plain:?}, sandboxed {sandboxed:?}, ratio {:.2}",
            sandboxed.as_secs_f64() / plain.as_secs_f64()
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
