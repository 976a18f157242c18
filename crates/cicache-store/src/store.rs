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

    /// The progress phase of moving objects into the store (save) or out of it (restore):
    /// `writing`/`reading` for a local directory, `uploading`/`downloading` for a remote store.
    pub(crate) fn transfer_phase(&self, into_store: bool) -> &'static str {
        match (self.backend.is_local(), into_store) {
            (true, true) => "writing",
            (true, false) => "reading",
            (false, true) => "uploading",
            (false, false) => "downloading",
        }
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
        for name in format::ref_names(scope, key) {
            if let Some(r) = self.read_ref_named(&name, Some((scope, key)))? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// Reads the ref stored as `name` (as listed). `expect`: the scope and key it must hold;
    /// `None` for a name whose key is only inside (a hashed name), checked against the name.
    pub(crate) fn read_ref_named(
        &self,
        name: &str,
        expect: Option<(&str, &str)>,
    ) -> Result<Option<Ref>> {
        let Some(buf) = self.read_small(name, format::MAX_REF_SIZE)? else {
            return Ok(None);
        };
        let corrupt = |reason: String| {
            let (scope, key) = expect.unwrap_or(("?", name));
            StoreError::Corrupt {
                scope: scope.to_string(),
                key: key.to_string(),
                reason,
            }
        };
        if buf.len() as u64 > format::MAX_REF_SIZE {
            return Err(corrupt(
                "the ref is larger than any ref cicache writes".into(),
            ));
        }
        let r: Ref = serde_json::from_slice(&buf)
            .map_err(|e| corrupt(format!("the ref is not valid JSON ({e})")))?;
        let names_match = match expect {
            Some((scope, key)) => r.key == key && r.scope == scope,
            None => format::ref_names(&r.scope, &r.key)
                .iter()
                .any(|n| n == name),
        };
        if r.format != 1 || !format::is_hash(&r.manifest) || !names_match {
            return Err(corrupt("the ref does not match its name or format".into()));
        }
        if r.manifest_size > format::MAX_MANIFEST_OBJECT
            || r.total_size > crate::entry::MAX_ENTRY_SIZE
            || r.stored_size > format::MAX_STORED_SIZE
        {
            return Err(corrupt(format!(
                "the ref declares impossible sizes (manifest {}, total {}, stored {} bytes)",
                r.manifest_size, r.total_size, r.stored_size
            )));
        }
        Ok(Some(r))
    }

    /// Refs of `scope` whose key starts with `prefix`, newest first.
    pub fn list_refs(&self, scope: &str, prefix: &str) -> Result<Vec<(String, ObjectInfo)>> {
        let p = format::refs_prefix(scope, prefix);
        let dir = format::refs_prefix(scope, "");
        let mut out: Vec<(String, ObjectInfo)> = Vec::new();
        for o in self.backend.list(&p)? {
            let Some(rest) = o.name.strip_prefix(&dir) else {
                continue;
            };
            if rest.contains('/') {
                continue;
            }
            let key = if format::is_hashed_segment(rest) {
                // A long key: only its ref knows it. A damaged one is left to the restore
                // of a key that names it, and to verify and prune.
                match self.read_ref_named(&o.name, None) {
                    Ok(Some(r)) if r.scope == scope => r.key,
                    _ => continue,
                }
            } else {
                let Some(k) = crate::key::decode_segment(rest) else {
                    continue;
                };
                k
            };
            if key.starts_with(prefix) {
                out.push((key, o));
            }
        }
        out.sort_by(|a, b| b.1.modified.cmp(&a.1.modified).then(a.0.cmp(&b.0)));
        // A key stored under both its hashed and its older plain name: the newest counts.
        let mut seen = std::collections::HashSet::new();
        out.retain(|(k, _)| seen.insert(k.clone()));
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
