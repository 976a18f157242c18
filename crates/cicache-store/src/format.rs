//! The store format, version 1. See `docs/FORMAT.md` for the prose version.
//!
//! ```text
//! cicache-v1/
//!   refs/<scope>/<key>            JSON Ref, published atomically last (link(2) / If-None-Match)
//!   manifests/<blake3>.tar.zst    tar led by .cicache/manifest.json, then every small file
//!   blobs/<aa>/<blake3>.zst       one large file, zstd (raw blocks when incompressible)
//!   used/<scope>/<key>            last use: a tiny object rewritten on each hit
//!   leases/<id>.json              a save in progress (protects its blobs from a sweep)
//!   locks/sweep-<id>.json         a prune sweeping unreferenced blobs
//!   tmp/                          temp files of the directory backend
//! ```
//!
//! `<scope>` and `<key>` are encoded with [`crate::key::encode_segment`]. Blob names are the
//! blake3 of the file's content; manifest names the blake3 of the stored `.tar.zst` bytes.
//! Bump [`FORMAT_DIR`] (and `docs/FORMAT.md`) on any incompatible change.

use serde::{Deserialize, Serialize};

use crate::key::encode_segment;

/// The top directory; its name carries the format version.
pub const FORMAT_DIR: &str = "cicache-v1";
/// Files at least this large are stored as blobs of their own, deduplicated across entries.
pub const LARGE_FILE: u64 = 256 * 1024;
/// Path of the manifest inside the manifest tarball.
pub const MANIFEST_PATH: &str = ".cicache/manifest.json";
/// Largest ref accepted when reading (refs are a few hundred bytes).
pub const MAX_REF_SIZE: u64 = 64 * 1024;
/// Largest manifest.json accepted when reading.
pub const MAX_MANIFEST_JSON: u64 = 512 * 1024 * 1024;

pub fn ref_name(scope: &str, key: &str) -> String {
    format!(
        "{FORMAT_DIR}/refs/{}/{}",
        encode_segment(scope),
        encode_segment(key)
    )
}

pub fn refs_prefix(scope: &str, key_prefix: &str) -> String {
    format!(
        "{FORMAT_DIR}/refs/{}/{}",
        encode_segment(scope),
        encode_segment(key_prefix)
    )
}

pub fn used_name(scope: &str, key: &str) -> String {
    format!(
        "{FORMAT_DIR}/used/{}/{}",
        encode_segment(scope),
        encode_segment(key)
    )
}

pub fn manifest_name(hash: &str) -> String {
    format!("{FORMAT_DIR}/manifests/{hash}.tar.zst")
}

pub fn blob_name(hash: &str) -> String {
    format!(
        "{FORMAT_DIR}/blobs/{}/{hash}.zst",
        &hash[..2.min(hash.len())]
    )
}

pub fn lease_name(id: &str) -> String {
    format!("{FORMAT_DIR}/leases/{id}.json")
}

pub fn sweep_lock_name(id: &str) -> String {
    format!("{FORMAT_DIR}/locks/sweep-{id}.json")
}

/// True for a 64-digit lowercase hex string (a blake3 hash as we write it).
pub fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The pointer from `<scope>/<key>` to an entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ref {
    /// Always 1 for this format.
    pub format: u32,
    pub scope: String,
    pub key: String,
    /// blake3 of the manifest object (`manifests/<manifest>.tar.zst`).
    pub manifest: String,
    /// Size in bytes of the manifest object.
    pub manifest_size: u64,
    /// Entries (files, directories, symlinks) in the tree.
    pub entries: u64,
    /// Sum of the sizes of the regular files.
    pub total_size: u64,
    /// Bytes the entry occupies in the store (manifest plus its blobs, compressed).
    pub stored_size: u64,
    /// RFC 3339, when the entry was saved.
    pub created: String,
    /// `cicache <version>`.
    pub tool: String,
    /// The agent that saved it.
    pub host: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    File,
    Dir,
    Symlink,
}

/// One path of the tree.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Relative, `/`-separated, no `.` or `..` components.
    pub path: String,
    #[serde(rename = "type")]
    pub kind: EntryType,
    /// Permission bits (setuid/setgid are dropped on restore).
    pub mode: u32,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Files: size in bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// Files: blake3 of the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// Files stored as a blob (size >= LARGE_FILE): true. Otherwise the content is in the
    /// manifest tarball under `path`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blob: bool,
    /// Symlinks: the target, as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `.cicache/manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: u32,
    /// Sorted by path; parents before children.
    pub entries: Vec<ManifestEntry>,
}

impl Manifest {
    /// Distinct blob hashes the entry needs.
    pub fn blobs(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .entries
            .iter()
            .filter(|e| e.blob)
            .filter_map(|e| e.blake3.as_deref())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// A save in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    pub scope: String,
    pub key: String,
    pub host: String,
    pub pid: u32,
    pub started: String,
}
