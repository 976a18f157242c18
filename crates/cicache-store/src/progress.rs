//! Progress reporting hooks. The binary draws bars on a terminal and prints plain milestone
//! lines in a CI log; the library only says what is happening.

/// Receives progress of long operations. All methods have do-nothing defaults.
pub trait Progress: Send + Sync {
    /// A phase starts (`hashing`; `writing`/`reading` a local store, `uploading`/
    /// `downloading` a remote one); `total` in bytes.
    fn start(&self, _phase: &str, _total: Option<u64>) {}
    /// `bytes` more of the current phase are done.
    fn inc(&self, _bytes: u64) {}
    /// The current phase is over.
    fn finish(&self) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
