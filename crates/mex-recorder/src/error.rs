//! The one error type of this crate.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why the recorder refused or failed. Every variant names what went wrong,
/// where (the database file, a sequence number) and what to do about it.
///
/// Errors are `Clone` (they carry text, not source objects) because one
/// failed group commit is reported to every writer in the batch.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RecorderError {
    /// The database file could not be opened or created (missing or
    /// read-only directory, permissions, disk full).
    #[error(
        "cannot open the flight recorder at {path}: {detail}; check that the directory exists and is writable by this user (the recorder creates the database and its -wal and -shm files there)"
    )]
    Open {
        /// The database file.
        path: PathBuf,
        /// What the operating system or SQLite said.
        detail: String,
    },
    /// The file exists but is not a flight recorder database, or SQLite
    /// reports corruption.
    #[error(
        "the flight recorder at {path} is corrupt or not a recorder database: {detail}; move the file aside (keep it for the audit) and start a new recorder, or restore it from a backup"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The database was written by a newer mex with a schema this build does
    /// not know.
    #[error(
        "the flight recorder at {path} has schema version {found}, newer than the {supported} this build understands; upgrade mex, or open a copy of the file with the newer version"
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// Version found in the file.
        found: i64,
        /// Newest version this build supports.
        supported: i64,
    },
    /// A schema migration failed; the file was left at its previous version.
    #[error(
        "migrating the flight recorder at {path} from schema version {from} to {to} failed: {detail}; the file is unchanged (the migration is one transaction), check free disk space and permissions and retry"
    )]
    Migration {
        /// The database file.
        path: PathBuf,
        /// Version before.
        from: i64,
        /// Version being migrated to.
        to: i64,
        /// What SQLite said.
        detail: String,
    },
    /// A read or write on an open database failed.
    #[error("flight recorder at {path}: {context} failed: {detail}; {hint}")]
    Storage {
        /// The database file.
        path: PathBuf,
        /// What the recorder was doing.
        context: &'static str,
        /// What SQLite said.
        detail: String,
        /// What to do.
        hint: &'static str,
    },
    /// A stored event could not be read back as an event (the file was edited
    /// by hand or is damaged). `verify` reports the same as a chain break.
    #[error(
        "flight recorder at {path}: stored event seq {seq} is unreadable: {detail}; run verify to find the first damaged event"
    )]
    CorruptEvent {
        /// The database file (or `<memory>`).
        path: PathBuf,
        /// Sequence number of the unreadable row.
        seq: u64,
        /// What was wrong.
        detail: String,
    },
    /// The draft handed to `append` is not a valid event.
    #[error("invalid {kind} event: {detail}")]
    InvalidEvent {
        /// The event kind.
        kind: &'static str,
        /// What was missing or wrong and what to set.
        detail: String,
    },
    /// The recorder's writer has stopped (it was closed, or its thread died).
    #[error(
        "the flight recorder at {path} is closed (its writer stopped): nothing was recorded; open the recorder again"
    )]
    Closed {
        /// The database file.
        path: PathBuf,
    },
    /// No problem has this fingerprint.
    #[error("no problem with fingerprint {fingerprint}; list problems to see the fingerprints")]
    UnknownProblem {
        /// The fingerprint asked for.
        fingerprint: String,
    },
    /// Writing an export failed.
    #[error(
        "writing the event export failed: {detail}; check the destination is writable and has space"
    )]
    Export {
        /// What the writer said.
        detail: String,
    },
    /// A value could not be put in canonical form (RFC 8785) for hashing.
    #[error("cannot canonicalize an event for hashing: {detail}")]
    Canonicalization {
        /// Why.
        detail: String,
    },
}

impl RecorderError {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Open { .. } => "RECORDER.OPEN",
            Self::Corrupt { .. } => "RECORDER.CORRUPT",
            Self::SchemaTooNew { .. } => "RECORDER.SCHEMA_TOO_NEW",
            Self::Migration { .. } => "RECORDER.MIGRATION",
            Self::Storage { .. } => "RECORDER.STORAGE",
            Self::CorruptEvent { .. } => "RECORDER.CORRUPT_EVENT",
            Self::InvalidEvent { .. } => "RECORDER.INVALID_EVENT",
            Self::Closed { .. } => "RECORDER.CLOSED",
            Self::UnknownProblem { .. } => "RECORDER.UNKNOWN_PROBLEM",
            Self::Export { .. } => "RECORDER.EXPORT",
            Self::Canonicalization { .. } => "RECORDER.CANONICALIZATION",
        }
    }

    pub(crate) fn canonicalization(e: impl std::fmt::Display) -> Self {
        Self::Canonicalization {
            detail: e.to_string(),
        }
    }

    /// Classify a SQLite error met while using an open database.
    pub(crate) fn storage(path: &Path, context: &'static str, e: &rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        let detail = e.to_string();
        match e.sqlite_error_code() {
            Some(C::DatabaseCorrupt | C::NotADatabase) => Self::Corrupt {
                path: path.to_owned(),
                detail,
            },
            Some(C::DiskFull) => Self::Storage {
                path: path.to_owned(),
                context,
                detail,
                hint: "the disk is full: free space and retry; nothing in the failed batch was recorded",
            },
            Some(C::ReadOnly | C::PermissionDenied | C::CannotOpen) => Self::Storage {
                path: path.to_owned(),
                context,
                detail,
                hint: "the database or its directory is not writable by this user: fix the permissions and retry",
            },
            Some(C::DatabaseBusy | C::DatabaseLocked) => Self::Storage {
                path: path.to_owned(),
                context,
                detail,
                hint: "another process held the database lock for too long: retry, or find the process holding recorder.sqlite3",
            },
            _ => Self::Storage {
                path: path.to_owned(),
                context,
                detail,
                hint: "retry; if it persists, run verify and check the disk",
            },
        }
    }
}
