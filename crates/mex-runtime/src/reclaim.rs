//! Per-run directories that a crash cannot leak: shadow workspaces (here)
//! and sandbox jails (mex-engine-sandbox uses the same [`LiveDir`]).
//!
//! ## Liveness: a lock per live directory
//!
//! A run's directory is *live* while the process that made it holds an
//! exclusive `flock(2)` on the directory itself (an open directory handle,
//! close-on-exec, so no child inherits it). The kernel drops the lock when
//! that process dies, however it dies, so "lock free" means "its run is
//! over". No pid is stored: a pid can be reused, a lock cannot outlive its
//! holder.
//!
//! Creating and checking race: between `mkdir` and `flock` a new directory
//! is unlocked. So every root has a `.lock` file: creators hold it *shared*
//! from before `mkdir` until their directory lock is taken; [`reclaim`]
//! holds it *exclusively* while it looks. A reclaim therefore never sees a
//! directory that is made but not yet locked.
//!
//! [`reclaim`] removes every directory under the root whose name the caller
//! recognizes as its own and whose lock it can take, and reports what it
//! removed. The runtime runs [`reclaim_workspaces`] when it is built (shadow
//! workspaces, named `<op_id>-XXXXXX`, under its workspace root); `mex gc`
//! runs it too. Nothing else in the root is touched, so a workspace root
//! shared with other files (say `/tmp`) loses only dead workspaces.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Name of the lock file in a root of live directories.
pub const ROOT_LOCK: &str = ".lock";

/// A run's directory, live (locked) until dropped; dropping removes it.
#[derive(Debug)]
pub struct LiveDir {
    // Field order = drop order: remove the directory, then unlock.
    dir: tempfile::TempDir,
    _lock: File,
}

impl LiveDir {
    /// Make a fresh directory `<root>/<prefix>XXXXXX` and lock it.
    pub fn create(root: &Path, prefix: &str) -> io::Result<Self> {
        Self::create_with(root, tempfile::Builder::new().prefix(prefix))
    }

    /// Make the directory `<root>/<name>` (which must not exist) and lock it.
    pub fn create_exact(root: &Path, name: &str) -> io::Result<Self> {
        Self::create_with(root, tempfile::Builder::new().prefix(name).rand_bytes(0))
    }

    fn create_with(root: &Path, builder: &mut tempfile::Builder<'_, '_>) -> io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let guard = root_lock(root)?;
        guard.lock_shared()?;
        let dir = builder.tempdir_in(root)?;
        let lock = File::open(dir.path())?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::Error(e) => e,
            std::fs::TryLockError::WouldBlock => {
                io::Error::other("a brand-new run directory is locked by someone else")
            }
        })?;
        drop(guard);
        Ok(Self { dir, _lock: lock })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The root's lock file (flock needs no write access, so an existing one
/// is opened read-only).
fn root_lock(root: &Path) -> io::Result<File> {
    let path = root.join(ROOT_LOCK);
    match File::open(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path),
        other => other,
    }
}

/// What [`reclaim`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Directories of dead runs, removed.
    pub removed: Vec<PathBuf>,
    /// Directories of runs live in some process, left alone.
    pub live: usize,
    /// Directories that could not be examined or removed, with why.
    pub failed: Vec<(PathBuf, String)>,
}

impl Reclaimed {
    /// Add another report to this one.
    pub fn extend(&mut self, other: Self) {
        self.removed.extend(other.removed);
        self.live += other.live;
        self.failed.extend(other.failed);
    }
}

/// Whether `name` is a shadow workspace's: `<op_id>-` (a hyphenated,
/// lowercase UUID) and a suffix.
pub fn is_workspace_name(name: &str) -> bool {
    name.get(..36)
        .is_some_and(|id| uuid::Uuid::try_parse(id).is_ok_and(|u| u.hyphenated().to_string() == id))
        && name.as_bytes().get(36) == Some(&b'-')
}

/// The default root of a home's shadow workspaces: a directory under the
/// system temporary directory named by a digest of the store root, so a
/// workspace path (which an engine sees) does not lead back to the home,
/// and every process on one home shares one root (for reclaim).
pub fn default_workspace_root(store_root: &Path) -> PathBuf {
    let absolute = std::path::absolute(store_root).unwrap_or_else(|_| store_root.to_path_buf());
    let digest = mex_envelope::Sha256Digest::of(absolute.as_os_str().as_encoded_bytes()).to_hex();
    std::env::temp_dir().join(format!("mex-runs-{}", digest.get(..24).unwrap_or(&digest)))
}

/// Create a workspace root (mode 0700) and check it is a real directory
/// owned by the owner of `owner_of` (the store root), not a symlink or a
/// directory someone else planted in a shared temporary directory.
pub fn prepare_root(root: &Path, owner_of: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(root)?;
    let owner = std::fs::metadata(owner_of)?.uid();
    if !meta.is_dir() || meta.uid() != owner {
        return Err(io::Error::other(format!(
            "{} is not a directory owned by uid {owner} (the owner of {}); remove it or choose another workspace root",
            root.display(),
            owner_of.display()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        // A root that others can list would show op ids.
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Make the shadow workspace of operation `op_id` under `root`, live until
/// dropped.
pub fn create_workspace(root: &Path, op_id: &uuid::Uuid) -> io::Result<LiveDir> {
    LiveDir::create(root, &format!("{}-", op_id.hyphenated()))
}

/// Remove the shadow workspaces under `root` whose runs are over (their
/// process died without cleaning up).
pub fn reclaim_workspaces(root: &Path) -> io::Result<Reclaimed> {
    reclaim(root, is_workspace_name)
}

/// Remove every directory under `root` whose name `ours` accepts and whose
/// run is over (nobody holds its lock). A missing root is empty.
pub fn reclaim(root: &Path, ours: impl Fn(&str) -> bool) -> io::Result<Reclaimed> {
    let mut out = Reclaimed::default();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    let guard = root_lock(root)?;
    guard.lock()?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if name == ROOT_LOCK || !name.to_str().is_some_and(&ours) {
            continue;
        }
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let handle = match File::open(&path) {
            Ok(h) => h,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                out.failed.push((path, format!("cannot open it: {e}")));
                continue;
            }
        };
        match handle.try_lock() {
            Ok(()) => match std::fs::remove_dir_all(&path) {
                Ok(()) => out.removed.push(path),
                Err(e) => out.failed.push((path, format!("cannot remove it: {e}"))),
            },
            Err(std::fs::TryLockError::WouldBlock) => out.live += 1,
            Err(std::fs::TryLockError::Error(e)) => {
                out.failed.push((path, format!("cannot lock it: {e}")));
            }
        }
    }
    out.removed.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]
    use super::*;

    #[test]
    fn a_live_directory_is_kept_and_a_dead_one_removed() {
        let root = tempfile::tempdir().unwrap();
        let live = LiveDir::create(root.path(), "run-").unwrap();
        std::fs::write(live.path().join("f"), b"x").unwrap();
        // A directory nobody holds: what a killed process leaves.
        let dead = root.path().join("run-dead");
        std::fs::create_dir_all(dead.join("sub")).unwrap();
        // Not ours: other prefixes are never touched.
        std::fs::create_dir(root.path().join("bin")).unwrap();

        let report = reclaim(root.path(), |n| n.starts_with("run-")).unwrap();
        assert_eq!(report.removed, vec![dead.clone()]);
        assert_eq!(report.live, 1);
        assert!(report.failed.is_empty(), "{report:?}");
        assert!(live.path().join("f").exists());
        assert!(root.path().join("bin").exists());

        let path = live.path().to_path_buf();
        drop(live);
        assert!(!path.exists(), "dropping a live directory removes it");
        assert_eq!(
            reclaim(root.path(), |n| n.starts_with("run-")).unwrap(),
            Reclaimed::default()
        );
        assert_eq!(
            reclaim(&root.path().join("missing"), |_| true).unwrap(),
            Reclaimed::default()
        );
    }

    #[test]
    fn workspace_names() {
        let id = uuid::Uuid::new_v4();
        let ws = create_workspace(tempfile::tempdir().unwrap().path(), &id);
        let ws = ws.unwrap();
        let name = ws.path().file_name().unwrap().to_str().unwrap().to_owned();
        assert!(is_workspace_name(&name), "{name}");
        for not in [
            "bin",
            "run-1",
            &id.to_string(),
            &id.to_string().to_uppercase(),
            &format!("{}x", id),
        ] {
            assert!(!is_workspace_name(not), "{not}");
        }
    }
}
