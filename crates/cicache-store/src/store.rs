//! The store: an entry format over a backend.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::backend::{Backend, ObjectInfo};
use crate::error::{BackendError, Result, StoreError};
use crate::format::{self, Ref};

/// A save's lease older than this (by the store's clock) is considered abandoned.
pub const LEASE_TTL: Duration = Duration::from_secs(6 * 3600);
/// A sweep lock older than this is considered abandoned.
pub const SWEEP_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) tool: String,
    pub(crate) host: String,
}

impl Store {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Store {
            backend,
            tool: format!("cicache {}", env!("CARGO_PKG_VERSION")),
            host: hostname(),
        }
    }

    /// Overrides the tool string written into refs (`cicache 0.1.0`).
    pub fn with_tool(mut self, tool: impl Into<String>) -> Self {
        self.tool = tool.into();
        self
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn location(&self) -> String {
        self.backend.location()
    }

    /// Reads a whole small object with a size bound.
    pub(crate) fn read_small(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>, BackendError> {
        let Some(r) = self.backend.get(name)? else {
            return Ok(None);
        };
        let mut buf = Vec::new();
        r.take(max + 1)
            .read_to_end(&mut buf)
            .map_err(|e| BackendError::Io {
                location: self.location(),
                op: "read",
                object: name.to_string(),
                source: e,
            })?;
        Ok(Some(buf))
    }

    /// Reads and checks a ref. `Ok(None)`: no such ref. A damaged ref is `Corrupt`.
    pub fn read_ref(&self, scope: &str, key: &str) -> Result<Option<Ref>> {
        let name = format::ref_name(scope, key);
        let Some(buf) = self.read_small(&name, format::MAX_REF_SIZE)? else {
            return Ok(None);
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            scope: scope.to_string(),
            key: key.to_string(),
            reason,
        };
        if buf.len() as u64 > format::MAX_REF_SIZE {
            return Err(corrupt(
                "the ref is larger than any ref cicache writes".into(),
            ));
        }
        let r: Ref = serde_json::from_slice(&buf)
            .map_err(|e| corrupt(format!("the ref is not valid JSON ({e})")))?;
        if r.format != 1 || !format::is_hash(&r.manifest) || r.key != key || r.scope != scope {
            return Err(corrupt("the ref does not match its name or format".into()));
        }
        Ok(Some(r))
    }

    /// Refs of `scope` whose key starts with `prefix`, newest first.
    pub fn list_refs(&self, scope: &str, prefix: &str) -> Result<Vec<(String, ObjectInfo)>> {
        let p = format::refs_prefix(scope, prefix);
        let dir = format::refs_prefix(scope, "");
        let mut out: Vec<(String, ObjectInfo)> = self
            .backend
            .list(&p)?
            .into_iter()
            .filter_map(|o| {
                let rest = o.name.strip_prefix(&dir)?;
                if rest.contains('/') {
                    return None;
                }
                let key = crate::key::decode_segment(rest)?;
                Some((key, o))
            })
            .collect();
        out.sort_by(|a, b| b.1.modified.cmp(&a.1.modified).then(a.0.cmp(&b.0)));
        Ok(out)
    }
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// A random id for leases and temp names.
pub(crate) fn random_id() -> String {
    let mut h = blake3::Hasher::new();
    h.update(&std::process::id().to_le_bytes());
    h.update(
        &SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_le_bytes(),
    );
    h.update(hostname().as_bytes());
    let mut buf = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut buf);
    }
    h.update(&buf);
    h.finalize().to_hex()[..24].to_string()
}
