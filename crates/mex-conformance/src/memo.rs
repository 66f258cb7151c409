//! Remembered certificate checks, valid while the files they read are unchanged.
//!
//! Checking a certificate reads the certificate, its signature, its report,
//! the registry file and its overlays, and hashes a registry entry: a few
//! milliseconds, paid twice per dispatch (cache key and dispatch). A check
//! that passed is remembered with the `stat` stamp (device, inode, size,
//! mtime, ctime) of every file and overlay directory it read; the next check
//! of the same engine, implementation, version and code passes at the cost
//! of those `stat`s if every stamp is unchanged, and is done in full if any
//! differs. A file replaced, edited, removed or added to an overlay
//! directory changes a stamp.
//!
//! File times are coarse (a clock tick of a few milliseconds), so a file
//! rewritten with the same size within the tick it was read in could keep
//! its stamp. A check is therefore remembered only if every file it read
//! was last changed at least [`RACY_WINDOW`] before the check started (the
//! rule git uses for its index); until then every check is done in full.
//! Failed checks are never remembered.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// How long a file must have been unchanged before a check that read it is
/// remembered.
pub(crate) const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Checks remembered at most (one per engine implementation and code).
const MAX_REMEMBERED: usize = 1024;

/// What `stat` says of a path; `None` in [`stamps`] when it is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

fn stamps(paths: &[PathBuf]) -> Vec<Option<Stamp>> {
    paths.iter().map(|p| stamp(p)).collect()
}

/// Whether every present stamp was last changed at least `window` before `at`.
fn settled(stamps: &[Option<Stamp>], at: SystemTime, window: Duration) -> bool {
    let Some(cutoff) = at.checked_sub(window) else {
        return false;
    };
    let cutoff = cutoff
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| {
            (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                i64::from(d.subsec_nanos()),
            )
        })
        .unwrap_or((0, 0));
    stamps
        .iter()
        .flatten()
        .all(|s| s.mtime <= cutoff && s.ctime <= cutoff)
}

/// The key of a remembered check: engine, implementation, version, code kind
/// and code digest.
pub(crate) type Key = (String, String, String, String, String);

#[derive(Debug, Clone)]
struct Remembered {
    paths: Vec<PathBuf>,
    stamps: Vec<Option<Stamp>>,
}

/// Checks that passed, with the stamps of what they read.
#[derive(Debug)]
pub(crate) struct Memo {
    window: Duration,
    passed: Mutex<HashMap<Key, Remembered>>,
}

impl Default for Memo {
    fn default() -> Self {
        Self::with_window(RACY_WINDOW)
    }
}

impl Memo {
    pub(crate) fn with_window(window: Duration) -> Self {
        Self {
            window,
            passed: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a check under `key` passed before and nothing it read changed.
    pub(crate) fn still_passes(&self, key: &Key) -> bool {
        let remembered = self
            .passed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned();
        let Some(r) = remembered else { return false };
        if stamps(&r.paths) == r.stamps {
            return true;
        }
        self.passed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        false
    }

    /// Remember that a check under `key`, started at `started`, passed,
    /// having read `paths`: their stamps are taken now, and the pass is
    /// remembered only if every one of them was last changed at least the
    /// window before `started`. A file changed while the check ran has a
    /// newer time, so a check that may have read it half-old is not
    /// remembered.
    pub(crate) fn remember(&self, key: Key, paths: Vec<PathBuf>, started: SystemTime) {
        let before = stamps(&paths);
        if settled(&before, started, self.window) {
            let mut passed = self.passed.lock().unwrap_or_else(PoisonError::into_inner);
            if passed.len() >= MAX_REMEMBERED {
                passed.clear();
            }
            passed.insert(
                key,
                Remembered {
                    paths,
                    stamps: before,
                },
            );
        }
    }

    /// Run `check` and remember it if it passed (see [`Memo::remember`]).
    #[cfg(test)]
    fn check(
        &self,
        key: Key,
        paths: Vec<PathBuf>,
        check: impl FnOnce() -> Result<(), String>,
    ) -> Result<(), String> {
        let started = SystemTime::now();
        check()?;
        self.remember(key, paths, started);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]
    use super::*;
    use std::cell::Cell;

    fn key() -> Key {
        (
            "engine.a".into(),
            "a".into(),
            "1.0.0".into(),
            "builtin".into(),
            "00".into(),
        )
    }

    #[test]
    fn a_pass_is_remembered_until_a_file_it_read_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cert.json");
        let overlays = dir.path().join("registry.d");
        std::fs::write(&file, b"one").unwrap();
        let memo = Memo::with_window(Duration::ZERO);
        let runs = Cell::new(0);
        let paths = vec![file.clone(), overlays.clone()];
        let check = || {
            runs.set(runs.get() + 1);
            Ok(())
        };
        memo.check(key(), paths.clone(), check).unwrap();
        assert!(memo.still_passes(&key()));
        // Edited (another size, so the stamp differs even within one tick).
        std::fs::write(&file, b"edited").unwrap();
        assert!(!memo.still_passes(&key()), "an edited file kept the pass");
        memo.check(key(), paths.clone(), check).unwrap();
        assert!(memo.still_passes(&key()));
        // An overlay directory that appears changes a stamp too.
        std::fs::create_dir(&overlays).unwrap();
        assert!(
            !memo.still_passes(&key()),
            "a new overlay directory kept the pass"
        );
        assert_eq!(runs.get(), 2);
    }

    #[test]
    fn failures_and_fresh_files_are_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cert.json");
        std::fs::write(&file, b"one").unwrap();
        let memo = Memo::with_window(Duration::ZERO);
        assert!(
            memo.check(key(), vec![file.clone()], || Err("bad".into()))
                .is_err()
        );
        assert!(!memo.still_passes(&key()), "a failed check was remembered");
        // With the default window, a file written just now is too fresh.
        let memo = Memo::default();
        memo.check(key(), vec![file], || Ok(())).unwrap();
        assert!(
            !memo.still_passes(&key()),
            "a check of a fresh file was remembered"
        );
    }
}
