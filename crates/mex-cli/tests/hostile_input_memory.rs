//! Refusing hostile input takes bounded memory, in the real `mex run` process.
//!
//! Each case runs the built binary with its data segment limited to 64 MiB
//! (`ulimit -d`, so any attempt to hold the document or a blown-up parse of
//! it fails the allocation and the process aborts instead of answering), and
//! samples the child's peak resident set (`VmHWM` in `/proc/<pid>/status`)
//! while it runs. The assertions are the typed refusal and the memory bound;
//! the figures are printed for the record.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::io::{Read, Write};
use std::process::{Command, Stdio};

/// 64 MiB, in KiB (the unit of `ulimit -d` and of `VmHWM`).
const LIMIT_KIB: u64 = 64 * 1024;

mod common;
use common::workspace;

/// Produces an input document, chunk by chunk, into a writer.
type Producer = Box<dyn FnOnce(&mut dyn Write) -> std::io::Result<()> + Send>;

fn numbers() -> Producer {
    // 25 M small numbers: about 50 MB.
    Box::new(|w| {
        let chunk = "1,".repeat(1 << 16);
        w.write_all(b"[")?;
        for _ in 0..(25_000_000 / (1 << 16)) {
            w.write_all(chunk.as_bytes())?;
        }
        w.write_all(b"1]")
    })
}

fn one_string() -> Producer {
    // One 50 MB string.
    Box::new(|w| {
        let chunk = vec![b'a'; 1 << 20];
        w.write_all(b"{\"op_id\": \"")?;
        for _ in 0..50 {
            w.write_all(&chunk)?;
        }
        w.write_all(b"\"}")
    })
}

fn nested(open: &'static str, close: &'static str, depth: usize) -> Producer {
    Box::new(move |w| {
        let o = open.repeat(1 << 12);
        let c = close.repeat(1 << 12);
        for _ in 0..depth / (1 << 12) {
            w.write_all(o.as_bytes())?;
        }
        w.write_all(b"1")?;
        for _ in 0..depth / (1 << 12) {
            w.write_all(c.as_bytes())?;
        }
        Ok(())
    })
}

struct Refusal {
    code: Option<i32>,
    result: serde_json::Value,
    stderr: String,
    peak_kib: u64,
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Run `mex run --json <stdin or a file>` on the produced document under the
/// 64 MiB data limit, sampling its peak RSS until it exits.
fn refuse(produce: Producer, via_file: bool) -> Refusal {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let input = dir.path().join("input.json");
    let mut produce = Some(produce);
    if via_file {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        (produce.take().unwrap())(&mut f).unwrap();
        f.flush().unwrap();
    }
    let registry = workspace().join("mechanical_engines.json");
    let op_arg = if via_file {
        input.to_str().unwrap().to_owned()
    } else {
        "-".to_owned()
    };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -d {LIMIT_KIB} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_mex"))
        .args(["--home", home.to_str().unwrap()])
        .args(["--registry", registry.to_str().unwrap()])
        .args(["run", "--json", &op_arg])
        .env("NO_COLOR", "1")
        .env_remove("MEX_HOME")
        .stdin(if via_file {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let writer = child.stdin.take().zip(produce).map(|(mut stdin, produce)| {
        std::thread::spawn(move || {
            // mex stops reading after the envelope limit: the broken pipe
            // that follows is expected.
            let _ = produce(&mut stdin);
        })
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let mut peak_kib = 0;
    let status = loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    if let Some(w) = writer {
        w.join().unwrap();
    }
    let stdout = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    let result = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("mex did not answer with an EngineResult ({e}); status {status:?}, stderr: {stderr}, stdout: {stdout}")
    });
    Refusal {
        code: status.code(),
        result,
        stderr,
        peak_kib,
    }
}

fn assert_refused(name: &str, r: &Refusal, says: &str) {
    eprintln!("{name}: peak RSS sampled {} KiB", r.peak_kib);
    assert_eq!(r.code, Some(3), "{name}: {}", r.stderr);
    assert_eq!(r.result["status"], "denied", "{name}: {}", r.result);
    let denial = &r.result["denials"][0];
    assert_eq!(
        denial["code"], "G-SCHEMA.ENVELOPE_INVALID",
        "{name}: {denial}"
    );
    let message = denial["message"].as_str().unwrap();
    assert!(message.contains(says), "{name}: {message}");
    assert!(
        r.peak_kib <= LIMIT_KIB,
        "{name}: peak RSS {} KiB is over {LIMIT_KIB} KiB",
        r.peak_kib
    );
}

#[test]
fn fifty_megabytes_of_small_numbers_on_stdin_are_refused_in_bounded_memory() {
    let r = refuse(numbers(), false);
    assert_refused("25 M numbers on stdin", &r, "envelope limit");
}

#[test]
fn fifty_megabytes_of_small_numbers_in_a_file_are_refused_in_bounded_memory() {
    let r = refuse(numbers(), true);
    assert_refused("25 M numbers in a file", &r, "envelope limit");
}

#[test]
fn one_fifty_megabyte_string_is_refused_in_bounded_memory() {
    let r = refuse(one_string(), false);
    assert_refused("one 50 MB string", &r, "envelope limit");
}

#[test]
fn nesting_a_million_deep_is_refused_in_bounded_memory() {
    for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
        let r = refuse(nested(open, close, 1 << 20), false);
        assert_refused(&format!("{open} nested 2^20 deep"), &r, "envelope limit");
    }
    // Within the envelope limit, the recursion limit refuses it.
    let r = refuse(nested("[", "]", 1 << 18), false);
    assert_refused("[ nested 2^18 deep", &r, "recursion limit");
}

#[test]
fn a_document_of_tiny_objects_within_the_limit_is_refused_in_bounded_memory() {
    // About 1 MiB of text that would take ~100 MB as parsed values.
    let r = refuse(
        Box::new(|w| {
            w.write_all(b"[")?;
            for _ in 0..(1 << 20) / 16 {
                w.write_all(b"{\"a\":{\"a\":0}},")?;
            }
            w.write_all(b"0]")
        }),
        false,
    );
    assert_refused("1 MiB of tiny objects", &r, "too complex");
}
