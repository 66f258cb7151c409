//! A run's shadow workspace, made on first use.
//!
//! Most in-process engines never touch a directory: they read inputs and
//! write outputs through the [`crate::ExecutionContext`], whose small writes
//! stay in memory. Making, locking and removing a directory per run cost
//! more than the rest of a trivial run, so the workspace is made only when
//! something needs it: the engine asks for [`crate::ExecutionContext::workspace`],
//! or an output too large to hold in memory is staged to a file. It is made
//! exactly as before (a live, locked [`LiveDir`] that a crash cannot leak,
//! see [`crate::reclaim`]), with its `staged/` directory, and removed when
//! the run settles.
//!
//! Its name (`<op_id>-<random>`, a workspace name [`crate::reclaim`]
//! recognizes) is chosen up front, so the path an engine is given is the
//! run's own even when the directory cannot be made or is already gone (an
//! engine still running after its run settled): a directory an engine makes
//! there itself is unlocked and workspace-named, so reclaim removes it. If
//! the workspace cannot be made, the reason is kept and the run fails with
//! `RUNTIME.WORKSPACE_UNAVAILABLE`; a run that never needed it cannot fail
//! that way.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use uuid::Uuid;

use crate::reclaim::LiveDir;

/// The subdirectory outputs are staged in.
pub(crate) const STAGED: &str = "staged";

#[derive(Debug)]
enum State {
    NotMade,
    /// Held for its drop, which removes and unlocks the directory.
    Live(#[allow(dead_code, reason = "held for its Drop")] LiveDir),
    Failed(String),
    Removed,
}

/// A run's shadow workspace: made on first [`LazyWorkspace::path`], removed
/// by [`LazyWorkspace::remove`] (or on drop).
#[derive(Debug)]
pub(crate) struct LazyWorkspace {
    root: PathBuf,
    name: String,
    /// `root/name`: the path whether or not the directory exists.
    path: PathBuf,
    state: Mutex<State>,
    /// Set once, under the lock, when the directory is made.
    made: OnceLock<()>,
}

impl LazyWorkspace {
    /// The workspace of `op_id` under `root`; nothing is made yet.
    pub(crate) fn new(root: PathBuf, op_id: Uuid) -> Self {
        let suffix = Uuid::new_v4().simple().to_string();
        let name = format!(
            "{}-{}",
            op_id.hyphenated(),
            suffix.get(..12).unwrap_or(&suffix)
        );
        Self {
            path: root.join(&name),
            root,
            name,
            state: Mutex::new(State::NotMade),
            made: OnceLock::new(),
        }
    }

    /// Where the workspace is (or would be): the path an engine is given.
    pub(crate) fn intended(&self) -> &Path {
        &self.path
    }

    /// The workspace's path, making it (with `staged/`) on the first call.
    /// After [`LazyWorkspace::remove`] a workspace never made is not made.
    pub(crate) fn path(&self) -> Result<&Path, String> {
        if self.made.get().is_some() {
            return Ok(&self.path);
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match &*state {
            State::NotMade => match self.make() {
                Ok(dir) => {
                    *state = State::Live(dir);
                    let _ = self.made.set(());
                    Ok(&self.path)
                }
                Err(why) => {
                    *state = State::Failed(why.clone());
                    Err(why)
                }
            },
            State::Live(_) => Ok(&self.path),
            State::Failed(why) => Err(why.clone()),
            State::Removed => Err("the run is over; its workspace is gone".to_owned()),
        }
    }

    /// Why the workspace could not be made, if a run needed it and it could not.
    pub(crate) fn failure(&self) -> Option<String> {
        match &*self.state.lock().unwrap_or_else(PoisonError::into_inner) {
            State::Failed(why) => Some(why.clone()),
            State::NotMade | State::Live(_) | State::Removed => None,
        }
    }

    /// Remove the workspace (if it was made); it is never made again.
    pub(crate) fn remove(&self) {
        let old = std::mem::replace(
            &mut *self.state.lock().unwrap_or_else(PoisonError::into_inner),
            State::Removed,
        );
        drop(old);
    }

    fn make(&self) -> Result<LiveDir, String> {
        let dir = crate::reclaim::LiveDir::create_exact(&self.root, &self.name).map_err(|e| {
            format!(
                "cannot create a shadow workspace under {}: {e}",
                self.root.display()
            )
        })?;
        std::fs::create_dir(dir.path().join(STAGED))
            .map_err(|e| format!("cannot prepare the shadow workspace: {e}"))?;
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]
    use super::*;

    #[test]
    fn nothing_is_made_until_asked_and_removal_is_final() {
        let root = tempfile::tempdir().unwrap();
        let ws = LazyWorkspace::new(root.path().to_path_buf(), Uuid::new_v4());
        let entries = || {
            std::fs::read_dir(root.path())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_name() != crate::reclaim::ROOT_LOCK)
                .count()
        };
        assert_eq!(entries(), 0, "a workspace was made before anyone asked");
        let path = ws.path().unwrap().to_path_buf();
        assert!(path.join(STAGED).is_dir());
        assert_eq!(ws.path().unwrap(), path, "a second call made another");
        ws.remove();
        assert!(!path.exists(), "remove left the workspace behind");
        let never = LazyWorkspace::new(root.path().to_path_buf(), Uuid::new_v4());
        never.remove();
        assert!(never.path().is_err(), "a removed workspace was made");
        assert_eq!(entries(), 0);
    }

    #[test]
    fn a_workspace_that_cannot_be_made_is_reported() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let ws = LazyWorkspace::new(file, Uuid::new_v4());
        assert!(ws.failure().is_none());
        let why = ws.path().unwrap_err();
        assert!(why.contains("cannot create a shadow workspace"), "{why}");
        assert_eq!(ws.failure(), Some(why));
    }
}
