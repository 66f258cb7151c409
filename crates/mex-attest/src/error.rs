//! The one error type of this crate.

use std::path::PathBuf;

/// What went wrong; every message says what, where and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// A file could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The home already has a signing key.
    #[error("{} already exists; this home already has a signing key (`mex keys show` prints it). Refusing to overwrite it: move it away first if you really mean to replace it", path.display())]
    KeyExists {
        /// The key file.
        path: PathBuf,
    },
    /// The home has no signing key.
    #[error("this home has no signing key ({} is absent); create one with `mex keys init`", path.display())]
    NoKey {
        /// Where the key was looked for.
        path: PathBuf,
    },
    /// The key file is readable by others.
    #[error("{} is readable or writable by other users (mode {mode:o}); the private key must be mode 0600: run `chmod 600 {}`", path.display(), path.display())]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// A key (private or public) does not parse.
    #[error("{what}: {detail}")]
    BadKey {
        /// Which key, where.
        what: String,
        /// Why.
        detail: String,
    },
    /// The operating system's random source failed.
    #[error("the operating system's random number generator failed ({0}); no key was written")]
    Random(String),
    /// A checkpoint, note or proof does not parse.
    #[error("{what} is malformed: {detail}")]
    Malformed {
        /// What was parsed, and from where.
        what: String,
        /// Why it was refused.
        detail: String,
    },
    /// A signature does not verify.
    #[error("{what}: {detail}")]
    BadSignature {
        /// What was checked.
        what: String,
        /// Why it failed and what to do.
        detail: String,
    },
    /// A request outside what the log holds (e.g. a seq beyond the end).
    #[error("{0}")]
    OutOfRange(String),
    /// Nothing to attest.
    #[error("{0}")]
    Unattestable(String),
    /// Serialising JSON failed (a bug).
    #[error("cannot serialise {what} as JSON: {detail}")]
    Json {
        /// What.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// The Flight Recorder could not be read.
    #[error("reading the Flight Recorder: {0}")]
    Recorder(#[from] mex_recorder::RecorderError),
}

impl AttestError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Malformed {
            what: what.into(),
            detail: detail.into(),
        }
    }
}
