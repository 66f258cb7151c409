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

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cap_std::fs::Dir;

use crate::error::{ArtifactError, Result};
use crate::store::fsync_dir;
use mex_group::Group;

/// The group fsync of one store: directories (relative to the store root)
/// pending for the next group; a failure is (directory, why).
#[derive(Debug, Default)]
pub(crate) struct DirSync {
    group: Group<BTreeSet<PathBuf>, (PathBuf, String)>,
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
        self.group.enqueue(|pending| {
            pending.insert(rel.to_path_buf());
        })
    }

    /// Wait until group `mine` is done (leading it when no group is being
    /// synced; see [`mex_group::Group`]) and return its outcome.
    fn wait(&self, root: &Dir, root_path: &Path, mine: u64) -> Result<()> {
        let fsync_all = |dirs: BTreeSet<PathBuf>| {
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
                result.map_err(|e| (root_path.join(dir), e.to_string()))?;
            }
            Ok(())
        };
        let panicked = || {
            (
                root_path.to_path_buf(),
                "the directory fsyncs stopped on an internal error (a panic); retry, and report this as a bug"
                    .to_owned(),
            )
        };
        self.group
            .wait(mine, fsync_all, panicked)
            .map_err(|(path, why)| ArtifactError::Io {
                action: "fsync directory",
                path,
                source: std::io::Error::other(why),
            })
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
        assert!(sync.group.settled());
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
        assert!(sync.group.settled());
    }
}
