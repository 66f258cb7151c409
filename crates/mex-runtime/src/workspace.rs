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
//! If it cannot be made, the reason is kept and the run fails with
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
    Live(LiveDir),
    Failed(String),
    Removed,
}

/// A run's shadow workspace: made on first [`LazyWorkspace::path`], removed
/// by [`LazyWorkspace::remove`] (or on drop).
#[derive(Debug)]
pub(crate) struct LazyWorkspace {
    root: PathBuf,
    op_id: Uuid,
    state: Mutex<State>,
    /// Set once, under the lock, when the directory is made.
    path: OnceLock<PathBuf>,
}

impl LazyWorkspace {
    /// The workspace of `op_id` under `root`; nothing is made yet.
    pub(crate) fn new(root: PathBuf, op_id: Uuid) -> Self {
        Self {
            root,
            op_id,
            state: Mutex::new(State::NotMade),
            path: OnceLock::new(),
        }
    }

    /// The workspace's path, making it (with `staged/`) on the first call.
    /// After [`LazyWorkspace::remove`] a workspace never made is not made.
    pub(crate) fn path(&self) -> Result<&Path, String> {
        if let Some(path) = self.path.get() {
            return Ok(path);
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match &*state {
            State::NotMade => match self.make() {
                Ok(dir) => {
                    let path = self.path.get_or_init(|| dir.path().to_path_buf());
                    *state = State::Live(dir);
                    Ok(path)
                }
                Err(why) => {
                    *state = State::Failed(why.clone());
                    Err(why)
                }
            },
            State::Live(dir) => Ok(self.path.get_or_init(|| dir.path().to_path_buf())),
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
        let dir = crate::reclaim::create_workspace(&self.root, &self.op_id).map_err(|e| {
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
