//! The cicache store: keys and templates, the content-addressed entry format, save, restore,
//! prune and verify, over pluggable backends (a directory, S3).
//!
//! See `docs/FORMAT.md` and the invariants in DESIGN.md ("The store").

pub mod backend;
pub mod cleanup;
pub mod entry;
pub mod error;
pub mod format;
pub mod heal;
pub mod key;
pub mod lease;
pub mod progress;

pub use backend::{Backend, ObjectInfo, PutMode};
pub use error::{BackendError, Result, StoreError};
pub use progress::{NoProgress, Progress};
pub mod rawzstd;
pub mod redact;
pub mod restore;
pub mod save;
pub mod scan;
pub mod state;
pub mod store;
pub mod text;

pub use restore::{RestoreOutcome, RestoreRequest};
pub use save::{SaveOutcome, SaveRequest, SaveStatus};
pub use store::Store;
pub mod maint;
pub use maint::{EntryInfo, PruneOutcome, PrunePolicy, VerifyOptions, VerifyOutcome};
pub mod archive;
