//! Errors of the store.
//!
//! Rules for this file, as in rustic_core: every variant names what failed (the path, the key,
//! the object) and the message says what the user can do about it. An error is never downgraded
//! here; whether a cache problem is a warning or a failure is the caller's decision (`--strict`).

use std::path::PathBuf;

/// Errors from a storage backend (a directory, S3, a registry).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    #[error("store {location}: {op} {object}: {source}")]
    Io {
        location: String,
        op: &'static str,
        object: String,
        #[source]
        source: std::io::Error,
    },
    #[error("store {location}: {op} {object}: {message}")]
    Remote {
        location: String,
        op: &'static str,
        object: String,
        message: String,
    },
    #[error("store {location}: {op} {object} timed out after {seconds}s; is the store reachable?")]
    Timeout {
        location: String,
        op: &'static str,
        object: String,
        seconds: u64,
    },
    #[error("store {location} is not usable: {message}")]
    Unusable { location: String, message: String },
    /// A command that only reads a store was given one that does not exist; nothing was
    /// created.
    #[error(
        "store {location} does not exist; check --store / CICACHE_STORE (a save creates a directory store)"
    )]
    Missing { location: String },
}

impl BackendError {
    /// The store is full or the disk under it is: retrying will not help.
    pub fn is_no_space(&self) -> bool {
        matches!(self, BackendError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
    }
}

/// Errors of store operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(transparent)]
    Backend(#[from] BackendError),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },

    #[error("invalid scope {scope:?}: {reason}")]
    InvalidScope { scope: String, reason: String },

    #[error("key template {template:?}: {reason}")]
    Template { template: String, reason: String },

    /// The entry is damaged: a hash mismatch, a truncated object, a missing blob.
    #[error("entry {scope}/{key} is damaged: {reason}")]
    Corrupt {
        scope: String,
        key: String,
        reason: String,
    },

    /// The entry was refused because restoring it would be unsafe.
    #[error("entry {scope}/{key} was refused: {reason}")]
    Hostile {
        scope: String,
        key: String,
        reason: String,
    },

    #[error(
        "no space left on {path}: {needed} bytes needed, {available} available; the previous contents are unchanged"
    )]
    NoSpace {
        path: PathBuf,
        needed: u64,
        available: u64,
    },

    /// A restore into `path` would replace the store or the state dir (`other`) with the
    /// snapshot saved in the entry, losing everything saved since.
    #[error(
        "{path} holds {what} ({other}), or is inside it: a restore there would roll it back; restore into the cache directory itself (e.g. ~/.cache/pip), or move the store with CICACHE_STORE / CICACHE_STATE_DIR"
    )]
    TargetHoldsStore {
        path: PathBuf,
        what: &'static str,
        other: PathBuf,
    },

    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },

    #[error("no entry {scope}/{key} in the store")]
    NotFound { scope: String, key: String },

    #[error("a prune of {location} is sweeping blobs; the save was skipped, try again later")]
    SweepInProgress { location: String },

    #[error("{0}")]
    Other(String),
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    /// True for damage to a stored entry: the restore treats it as a miss and tries the next key.
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            StoreError::Corrupt { .. } | StoreError::Hostile { .. }
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
