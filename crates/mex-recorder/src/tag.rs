//! Writer tags: telling events the runtime wrote from events appended by
//! another writer.
//!
//! The hash chain is unkeyed (see [`crate::verify`]): anyone who can open
//! the database, even through this crate's public API, can append events
//! that chain correctly. So a home has a **writer key**, 32 random bytes in
//! `<home>/recorder.key` (mode 0600, outside the database), and a recorder
//! opened with [`crate::SqliteRecorder::open_keyed`] stores next to every
//! event it writes an HMAC-SHA256 tag of the event's hash under that key
//! (table `event_tags`, same transaction). `verify` on a keyed recorder
//! reports the first event, from the key's creation on, whose tag is
//! missing or wrong as [`crate::BreakKind::ForeignWriter`].
//!
//! Why a keyed tag rather than opening the file exclusively: several `mex`
//! processes share one home at the same time (claims, group commit), so
//! exclusivity across processes would break legitimate use; a key held by
//! every legitimate writer does not. A recorder opened with
//! [`crate::SqliteRecorder::open`] is unkeyed: what it appends on a keyed
//! home is reported.
//!
//! What this cannot catch: a writer that can read the key file (the same
//! user with ambient file access, e.g. trusted in-process engine code that
//! finds the home) can tag forged events. A sandboxed process engine cannot
//! reach the home, so it can neither read the key nor open the database.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use mex_envelope::Sha256Digest;

use crate::RecorderError;

/// The key file's name inside the mex home.
pub const KEY_FILE_NAME: &str = "recorder.key";

const HEADER: &str = "mex-recorder-key-1";
const BLOCK: usize = 64;

/// A home's writer key and the first seq it covers.
#[derive(Clone)]
pub(crate) struct WriterKey {
    key: [u8; 32],
    /// Events from this seq on must carry a valid tag.
    pub since_seq: u64,
}

impl std::fmt::Debug for WriterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterKey")
            .field("since_seq", &self.since_seq)
            .finish_non_exhaustive()
    }
}

impl WriterKey {
    /// HMAC-SHA256 of an event hash under this key.
    pub(crate) fn tag(&self, hash: &Sha256Digest) -> [u8; 32] {
        let mut ipad = [0x36u8; BLOCK];
        let mut opad = [0x5cu8; BLOCK];
        for (i, b) in self.key.iter().enumerate() {
            ipad[i] ^= b;
            opad[i] ^= b;
        }
        let mut inner = ipad.to_vec();
        inner.extend_from_slice(hash.as_bytes());
        let inner = Sha256Digest::of(&inner);
        let mut outer = opad.to_vec();
        outer.extend_from_slice(inner.as_bytes());
        *Sha256Digest::of(&outer).as_bytes()
    }

    /// Load `<home>/recorder.key`, or create it (0600) covering events from
    /// `next_seq` on.
    pub(crate) fn load_or_create(home: &Path, next_seq: u64) -> Result<Self, RecorderError> {
        let path = home.join(KEY_FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text).ok_or_else(|| key_error(&path, "it is not a mex recorder key (expected the header line, 64 hex digits, and a seq); restore it from a backup: without it the home's events cannot be told from forged ones")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path, next_seq),
            Err(e) => Err(key_error(&path, &format!("cannot read it: {e}"))),
        }
    }
}

fn parse(text: &str) -> Option<WriterKey> {
    let mut lines = text.lines();
    if lines.next()? != HEADER {
        return None;
    }
    let hex = lines.next()?;
    let since_seq = lines.next()?.trim().parse().ok()?;
    if hex.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(WriterKey { key, since_seq })
}

fn create(path: &Path, since_seq: u64) -> Result<WriterKey, RecorderError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)
        .map_err(|e| key_error(path, &format!("no randomness for a new key: {e}")))?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| key_error(path, &format!("cannot read it: {e}")))?;
            return parse(&text)
                .ok_or_else(|| key_error(path, "it was being written by another process; retry"));
        }
        Err(e) => return Err(key_error(path, &format!("cannot create it: {e}"))),
    };
    file.write_all(format!("{HEADER}\n{hex}\n{since_seq}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| key_error(path, &format!("cannot write it: {e}")))?;
    Ok(WriterKey { key, since_seq })
}

fn key_error(path: &Path, detail: &str) -> RecorderError {
    RecorderError::Open {
        path: PathBuf::from(path),
        detail: format!("writer key {}: {detail}", path.display()),
    }
}
