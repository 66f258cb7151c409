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

/// The store's `index.db`, opened directly (as a tamperer would).
pub fn index_db(root: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(root.join("index.db")).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .unwrap();
    conn
}

/// The manifest bytes of record `id`, if its row exists.
pub fn record_row(root: &std::path::Path, id: uuid::Uuid) -> Option<Vec<u8>> {
    use rusqlite::OptionalExtension;
    index_db(root)
        .query_row(
            "SELECT manifest FROM records WHERE id = ?1",
            [id.hyphenated().to_string()],
            |r| r.get(0),
        )
        .optional()
        .unwrap()
}

/// Overwrite the manifest bytes of record `id` (which must exist).
pub fn set_record_row(root: &std::path::Path, id: uuid::Uuid, bytes: &[u8]) {
    let n = index_db(root)
        .execute(
            "UPDATE records SET manifest = ?2 WHERE id = ?1",
            rusqlite::params![id.hyphenated().to_string(), bytes],
        )
        .unwrap();
    assert_eq!(n, 1, "no record row {id}");
}

/// The bytes of the inline payload `hex`, if its row exists.
pub fn inline_row(root: &std::path::Path, hex: &str) -> Option<Vec<u8>> {
    use rusqlite::OptionalExtension;
    index_db(root)
        .query_row(
            "SELECT bytes FROM inline_blobs WHERE hash = ?1",
            [hex],
            |r| r.get(0),
        )
        .optional()
        .unwrap()
}

/// Overwrite the bytes of inline payload `hex` (size column untouched).
pub fn set_inline_row(root: &std::path::Path, hex: &str, bytes: &[u8]) {
    let n = index_db(root)
        .execute(
            "UPDATE inline_blobs SET bytes = ?2 WHERE hash = ?1",
            rusqlite::params![hex, bytes],
        )
        .unwrap();
    assert_eq!(n, 1, "no inline row {hex}");
}

/// Delete the inline payload `hex`.
pub fn delete_inline_row(root: &std::path::Path, hex: &str) {
    let n = index_db(root)
        .execute("DELETE FROM inline_blobs WHERE hash = ?1", [hex])
        .unwrap();
    assert_eq!(n, 1, "no inline row {hex}");
}

/// Inline payload rows.
pub fn inline_count(root: &std::path::Path) -> usize {
    index_db(root)
        .query_row("SELECT count(*) FROM inline_blobs", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap() as usize
}

/// Payload files under `blobs/sha256/`.
pub fn blob_file_count(root: &std::path::Path) -> usize {
    std::fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .map(|s| std::fs::read_dir(s.unwrap().path()).unwrap().count())
        .sum()
}
