//! Helpers shared by the multi-process tests: a cheap pattern reader and a
//! way to run this very test binary as a child process.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::io::{self, BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};

/// Deterministic, cheap pseudo-random bytes: `len` bytes from `seed`.
pub struct PatternReader {
    pub left: u64,
    pub state: u64,
}

impl PatternReader {
    pub fn new(seed: u64, len: u64) -> Self {
        Self {
            left: len,
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }
}

impl Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize / 8 * 8;
        let n = if n == 0 {
            (buf.len() as u64).min(self.left) as usize
        } else {
            n
        };
        for chunk in buf[..n].chunks_mut(8) {
            // xorshift64
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let bytes = self.state.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Run the test named `test` of this test binary as a child, with `env` set,
/// its stdout piped.
pub fn spawn_self(test: &str, env: &[(&str, String)]) -> (Child, BufReader<ChildStdout>) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (child, stdout)
}

/// Read lines until one equals `marker`.
pub fn wait_for(out: &mut BufReader<ChildStdout>, marker: &str) {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "child exited before printing {marker:?}"
        );
        if line.trim_end().ends_with(marker) {
            return;
        }
    }
}
