//! Storage backends.
//!
//! A backend is a flat namespace of objects named by `/`-separated paths relative to the
//! store's root (`cicache-v1/refs/main/pip-abc`). Every backend keeps the same logical format;
//! see `docs/FORMAT.md`.
//!
//! # Contract
//!
//! - `get` of a missing object is `Ok(None)`, never an error: a miss is not a failure.
//! - `put_file` stores an immutable, content-named object. When the object already exists it
//!   writes nothing and succeeds. When it returns, the object is durable and complete; a
//!   reader never sees a partial object, whatever is killed when.
//! - `put_bytes` with [`PutMode::CreateNew`] creates the object atomically only if absent and
//!   returns `false` when another writer got there first (dir: `link(2)`, S3: `If-None-Match: *`).
//!   With [`PutMode::Overwrite`] it replaces the object atomically.
//! - `list` returns every object whose name starts with `prefix`, with its size and the time
//!   the store last wrote it (the store's own clock, so agents' clocks never matter).
//! - Errors carry the location and the object name.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::BackendError;

pub mod dir;
pub mod spec;

pub use spec::{InvalidSpec, StoreSpec};

#[cfg(any(test, feature = "test-support"))]
pub mod contract;

/// One stored object, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Name relative to the store root.
    pub name: String,
    pub size: u64,
    /// When the store last wrote the object.
    pub modified: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Create only if absent, atomically; `Ok(false)` when it already existed.
    CreateNew,
    /// Replace atomically.
    Overwrite,
}

/// A reader over a stored object.
pub type ObjectReader = Box<dyn Read + Send>;

/// See the module documentation for the contract.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Where the store is, for messages: `dir:/var/cache/cicache`, `s3://bucket/prefix`.
    fn location(&self) -> String;

    /// Opens an object, or `Ok(None)` when it does not exist.
    fn get(&self, name: &str) -> Result<Option<ObjectReader>, BackendError>;

    /// Metadata of an object, or `Ok(None)` when it does not exist.
    fn head(&self, name: &str) -> Result<Option<ObjectInfo>, BackendError>;

    /// Stores an immutable object from a local file. The backend may move the file instead of
    /// copying it (the caller does not use it afterwards). Existing object: a no-op.
    fn put_file(&self, name: &str, file: &Path) -> Result<(), BackendError>;

    /// Stores several immutable objects from local files, each as [`Backend::put_file`]
    /// would. Backends that make a batch durable together (one journal commit instead of
    /// one per object) override it and [`Backend::batches_puts`].
    fn put_files(&self, items: &[(String, &Path)]) -> Result<(), BackendError> {
        for (name, file) in items {
            self.put_file(name, file)?;
        }
        Ok(())
    }

    /// True when [`Backend::put_files`] is cheaper than one `put_file` per object, so a save
    /// should write everything first and publish it in one batch.
    fn batches_puts(&self) -> bool {
        false
    }

    /// True for a store on a local filesystem: progress says "writing"/"reading" instead of
    /// "uploading"/"downloading".
    fn is_local(&self) -> bool {
        false
    }

    /// Stores a small object; see [`PutMode`].
    fn put_bytes(&self, name: &str, data: &[u8], mode: PutMode) -> Result<bool, BackendError>;

    /// Stores a small marker object (a lease, a sweep lock, a last-use time) like
    /// [`Backend::put_bytes`], except that it need not survive a power loss: it matters only
    /// to processes running now. Backends may skip their fsyncs for it.
    fn put_marker(&self, name: &str, data: &[u8], mode: PutMode) -> Result<bool, BackendError> {
        self.put_bytes(name, data, mode)
    }

    /// Every object whose name starts with `prefix`.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError>;

    /// Deletes an object; deleting a missing object is not an error.
    fn delete(&self, name: &str) -> Result<(), BackendError>;

    /// A local directory where temporary files for `put_file` are best written (on the same
    /// filesystem as a directory store, so the put is a rename). `None`: the system temp dir.
    fn staging_dir(&self) -> Option<PathBuf> {
        None
    }

    /// The local directory holding the store, for a directory store: a restore refuses a
    /// target that contains it (the restore would roll the store back). `None`: not local.
    fn local_root(&self) -> Option<PathBuf> {
        None
    }

    /// Removes temp files that killed writers left behind, older than `older_than`; returns
    /// how many. Backends without temp files keep the default.
    fn clean_temp(&self, _older_than: std::time::Duration) -> Result<u64, BackendError> {
        Ok(0)
    }
}

#[cfg(feature = "s3")]
pub mod s3;

/// Options for opening a store.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Bound on each remote operation (connect, idle read, whole request); `None`: the
    /// backend's default.
    pub timeout: Option<std::time::Duration>,
}

/// The embedded default store: `$CICACHE_STORE` is handled by the caller (an empty one means
/// unset); this is `/var/cache/cicache` when writable, else `$XDG_CACHE_HOME/cicache`, else
/// `~/.cache/cicache`.
pub fn default_store_dir() -> PathBuf {
    let system = PathBuf::from("/var/cache/cicache");
    if std::fs::create_dir_all(&system).is_ok() && is_writable(&system) {
        return system;
    }
    // Empty or relative variables count as unset (see `state::user_cache_dir`).
    crate::state::user_cache_dir().join("cicache")
}

/// The directory [`default_store_dir`] would choose, found without creating anything: for
/// the commands that only read a store.
pub fn default_store_dir_no_create() -> PathBuf {
    let system = PathBuf::from("/var/cache/cicache");
    let usable = if system.is_dir() {
        is_writable(&system)
    } else {
        // create_dir_all would make it when /var/cache (or /var) is writable.
        ["/var/cache", "/var"]
            .iter()
            .map(Path::new)
            .find(|p| p.is_dir())
            .is_some_and(is_writable)
    };
    if usable {
        system
    } else {
        crate::state::user_cache_dir().join("cicache")
    }
}

fn is_writable(dir: &Path) -> bool {
    tempfile::tempfile_in(dir).is_ok()
}

/// Whether opening a store may create it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Saves and imports: a directory store is created when missing.
    Write,
    /// Restore, list, verify, prune, export: a missing directory store is an error
    /// ([`BackendError::Missing`]), and nothing is created.
    Read,
}

/// Opens a store from its spec: `DIR`, `dir:DIR`, `s3://BUCKET/PREFIX` (`oci://` stores are
/// opened by cicache-registry, which this crate does not know). A spec that names no store
/// is an error; an empty one is the default store.
pub fn open_backend(
    spec: Option<&str>,
    opts: &OpenOptions,
) -> Result<std::sync::Arc<dyn Backend>, BackendError> {
    let parsed = StoreSpec::parse(spec.unwrap_or("")).map_err(|e| BackendError::Unusable {
        location: e.spec.clone(),
        message: e.to_string(),
    })?;
    open_spec(&parsed, opts, Access::Write)
}

/// Opens a parsed spec (see [`open_backend`]).
pub fn open_spec(
    spec: &StoreSpec,
    opts: &OpenOptions,
    access: Access,
) -> Result<std::sync::Arc<dyn Backend>, BackendError> {
    let _ = opts;
    let dir = |root: PathBuf| -> Result<std::sync::Arc<dyn Backend>, BackendError> {
        Ok(std::sync::Arc::new(match access {
            Access::Write => dir::DirBackend::open(root)?,
            Access::Read => dir::DirBackend::open_existing(root)?,
        }))
    };
    match spec {
        StoreSpec::Default => dir(match access {
            Access::Write => default_store_dir(),
            Access::Read => default_store_dir_no_create(),
        }),
        StoreSpec::Dir(path) => dir(path.clone()),
        #[cfg(feature = "s3")]
        StoreSpec::S3(rest) => Ok(std::sync::Arc::new(s3::S3Backend::open(rest, opts)?)),
        #[cfg(not(feature = "s3"))]
        StoreSpec::S3(_) => Err(BackendError::Unusable {
            location: spec.to_string(),
            message: "this cicache was built without S3 support (cargo feature `s3`)".into(),
        }),
        StoreSpec::Oci(_) => Err(BackendError::Unusable {
            location: spec.to_string(),
            message: "oci:// stores are opened through cicache-registry".into(),
        }),
    }
}
