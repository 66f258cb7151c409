//! Group fsync of directories for concurrent puts.
//!
//! A put of a large payload makes its name durable by fsyncing the
//! directory that holds it (the blob's shard directory; records and small
//! payloads are rows of `index.db`, which has a group commit of its own).
//! Concurrent puts in one process ask for the same few directories, so instead of one fsync per put, a put adds
//! its directory to a pending set and waits; one of the waiters (the
//! *leader*) takes the whole set, fsyncs each directory once, and wakes
//! everyone whose directory was in it. A put returns only after an fsync
//! that *started after its rename* has succeeded for its directory, so the
//! durability each put promises is unchanged; only the number of fsyncs
//! drops (to one per directory per group).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, PoisonError};

use cap_std::fs::Dir;

use crate::error::{ArtifactError, Result};
use crate::store::fsync_dir;

#[derive(Debug, Default)]
struct State {
    /// Directories (relative to the store root) waiting for the next group.
    pending: BTreeSet<PathBuf>,
    /// The number of the group that will take `pending`.
    next: u64,
    /// The last group whose fsyncs finished.
    completed: u64,
    /// A leader is fsyncing.
    leader: bool,
    /// Callers whose directories are in `pending` (waiters of `next`).
    joined: usize,
    /// Failed groups whose outcome not every waiter has taken yet: (waiters
    /// left, directory, why). At most one per waiting caller.
    failures: HashMap<u64, (usize, PathBuf, String)>,
}

/// The group fsync of one store.
#[derive(Debug)]
pub(crate) struct DirSync {
    state: Mutex<State>,
    done: Condvar,
}

impl Default for DirSync {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                next: 1,
                ..State::default()
            }),
            done: Condvar::new(),
        }
    }
}

impl DirSync {
    /// Make `rel` (a directory below `root`, whose absolute path is
    /// `root_path/rel`) durable: returns after an fsync of it that started
    /// after this call did.
    pub(crate) fn sync(&self, root: &Dir, root_path: &Path, rel: &Path) -> Result<()> {
        let mine = self.enqueue(rel);
        self.wait(root, root_path, mine)
    }

    /// Add `rel` to the pending group; returns its number, which the caller
    /// must then [`DirSync::wait`] for (it counts as one of its waiters).
    fn enqueue(&self, rel: &Path) -> u64 {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.pending.insert(rel.to_path_buf());
        st.joined += 1;
        st.next
    }

    /// Wait until group `mine` is done (leading it when no group is being
    /// synced) and return its outcome. A failed group's outcome is kept
    /// until each of its waiters has taken it, so a waiter that wakes late
    /// is never told that a group that succeeded failed.
    fn wait(&self, root: &Dir, root_path: &Path, mine: u64) -> Result<()> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if st.completed >= mine {
                let Some(failure) = st.failures.get_mut(&mine) else {
                    return Ok(());
                };
                failure.0 = failure.0.saturating_sub(1);
                let err = ArtifactError::Io {
                    action: "fsync directory",
                    path: failure.1.clone(),
                    source: std::io::Error::other(failure.2.clone()),
                };
                if failure.0 == 0 {
                    st.failures.remove(&mine);
                }
                return Err(err);
            }
            if st.leader {
                st = self.done.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            st.leader = true;
            let group = st.next;
            st.next += 1;
            let waiters = std::mem::take(&mut st.joined);
            let dirs = std::mem::take(&mut st.pending);
            drop(st);
            let mut failed = None;
            for dir in &dirs {
                let result = if dir.as_os_str().is_empty() {
                    fsync_dir(root, root_path)
                } else {
                    root.open_dir(dir)
                        .map_err(|e| {
                            crate::error::store_io("open directory", root_path.join(dir), 0, e)
                        })
                        .and_then(|d| fsync_dir(&d, &root_path.join(dir)))
                };
                if let Err(e) = result {
                    failed = Some((root_path.join(dir), e.to_string()));
                    break;
                }
            }
            st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            st.completed = group;
            st.leader = false;
            if let Some((path, why)) = failed {
                st.failures.insert(group, (waiters, path, why));
            }
            self.done.notify_all();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use cap_std::ambient_authority;

    #[test]
    fn a_failed_group_fails_its_waiters_and_later_groups_succeed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("here")).unwrap();
        let root = Dir::open_ambient_dir(dir.path(), ambient_authority()).unwrap();
        let sync = DirSync::default();
        let missing = sync.sync(&root, dir.path(), Path::new("gone"));
        assert!(
            matches!(&missing, Err(ArtifactError::Io { path, .. }) if path.ends_with("gone")),
            "{missing:?}"
        );
        sync.sync(&root, dir.path(), Path::new("here")).unwrap();
        sync.sync(&root, dir.path(), Path::new("")).unwrap();
    }

    /// A waiter that wakes only after many later groups failed is still
    /// told its own group succeeded (and one of a failed group, failed).
    #[test]
    fn a_late_waiter_gets_its_own_groups_outcome() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("here")).unwrap();
        let root = Dir::open_ambient_dir(dir.path(), ambient_authority()).unwrap();
        let sync = DirSync::default();
        let late = sync.enqueue(Path::new("here"));
        sync.sync(&root, dir.path(), Path::new("")).unwrap();
        for _ in 0..100 {
            sync.sync(&root, dir.path(), Path::new("gone")).unwrap_err();
        }
        sync.wait(&root, dir.path(), late).unwrap();
        let failed = sync.enqueue(Path::new("gone"));
        sync.sync(&root, dir.path(), Path::new("here")).unwrap_err();
        for _ in 0..100 {
            sync.sync(&root, dir.path(), Path::new("here")).unwrap();
        }
        sync.wait(&root, dir.path(), failed).unwrap_err();
        assert!(sync.state.lock().unwrap().failures.is_empty());
    }

    #[test]
    fn concurrent_waiters_all_return_after_their_group() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["a", "b"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let root = Dir::open_ambient_dir(dir.path(), ambient_authority()).unwrap();
        let sync = DirSync::default();
        std::thread::scope(|s| {
            for t in 0..8 {
                let (sync, root) = (&sync, &root);
                let path = dir.path();
                s.spawn(move || {
                    for _ in 0..20 {
                        let rel = if t % 2 == 0 { "a" } else { "b" };
                        sync.sync(root, path, Path::new(rel)).unwrap();
                    }
                });
            }
        });
        let st = sync.state.lock().unwrap();
        assert!(st.pending.is_empty() && !st.leader);
        assert_eq!(st.completed + 1, st.next);
    }
}
