//! The store format, version 1. See `docs/FORMAT.md` for the prose version.
//!
//! ```text
//! cicache-v1/
//!   refs/<scope>/<key>            JSON Ref, published atomically last (link(2) / If-None-Match)
//!   manifests/<blake3>.tar.zst    tar led by .cicache/manifest.json (format 1: then every small file)
//!   blobs/<aa>/<blake3>.zst       one large file, zstd (raw blocks when incompressible), or a
//!                                 pack of small files (format 2): their contents concatenated
//!   used/<scope>/<key>            last use: a tiny object rewritten on each hit
//!   leases/<id>.json              a save in progress (protects its blobs from a sweep)
//!   locks/sweep-<id>.json         a prune sweeping unreferenced blobs
//!   tmp/                          temp files of the directory backend
//! ```
//!
//! `<scope>` and `<key>` are encoded with [`crate::key::encode_segment`]. Blob names are the
//! blake3 of the file's content; pack names the blake3 of their list of file hashes and sizes
//! ([`pack_hash`]), which fixes every byte of the pack; manifest names the blake3 of the
//! stored `.tar.zst` bytes.
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
/// Largest manifest object (`.tar.zst`) a ref may declare: its manifest.json at most
/// [`MAX_MANIFEST_JSON`], plus format-1 small files; larger is a damaged or hostile ref.
pub const MAX_MANIFEST_OBJECT: u64 = 1 << 40;
/// Largest stored size a ref may declare (16 TiB of objects).
pub const MAX_STORED_SIZE: u64 = 1 << 44;
/// The manifest format save writes: 2 (small files in packs). Restore also reads 1 (small
/// files inside the manifest tarball).
pub const MANIFEST_FORMAT: u32 = 2;
/// A pack is closed after a file whose path hash has these low bits all zero (about one file
/// in 32), or when it reaches [`PACK_MAX`]. Cutting by path, not by offset, keeps every other
/// pack unchanged when a file is added or changed, so a save writes only the packs it touched.
pub const PACK_CUT_MASK: u8 = 31;
/// Largest uncompressed pack before a cut is forced.
pub const PACK_MAX: u64 = 4 * 1024 * 1024;

/// True when a pack ends after the file at `path` (see [`PACK_CUT_MASK`]).
pub fn pack_cut_after(path: &str) -> bool {
    blake3::hash(path.as_bytes()).as_bytes()[0] & PACK_CUT_MASK == 0
}

/// The name of a pack: blake3 over its files' content hashes and sizes, in pack order. The
/// content of a pack is the concatenation of those files, so the name fixes every byte.
pub fn pack_hash<'a>(files: impl IntoIterator<Item = (&'a str, u64)>) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"cicache-pack-v1\n");
    for (hash, size) in files {
        h.update(hash.as_bytes());
        h.update(b" ");
        h.update(size.to_string().as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
}

/// Longest scope or key segment stored as is (a file name's limit, `NAME_MAX`): longer ones
/// are stored under [`name_segment`]'s hashed form, with the full key inside the ref.
pub const MAX_SEGMENT: usize = 255;
/// A hashed segment keeps at most this many bytes of the encoded name, readable and
/// listable by prefix.
pub const HASHED_KEEP: usize = 160;
/// Separates the kept prefix from the hash in a hashed segment. `encode_segment` never writes
/// `%` followed by anything but two hex digits, so no plain name contains it.
pub const HASHED_MARK: &str = "%~";

/// The object-name segment of a scope or key: [`encode_segment`] when that fits in
/// [`MAX_SEGMENT`] bytes; else its first bytes (at most [`HASHED_KEEP`], never cutting a
/// `%XX`), [`HASHED_MARK`] and 32 hex digits of the blake3 of the whole name. The ref holds
/// the full scope and key, so a hashed name is read back by reading its ref.
pub fn name_segment(s: &str) -> String {
    let enc = encode_segment(s);
    if enc.len() <= MAX_SEGMENT {
        return enc;
    }
    let keep = cut_encoded(&enc, HASHED_KEEP);
    format!(
        "{keep}{HASHED_MARK}{}",
        &blake3::hash(s.as_bytes()).to_hex()[..32]
    )
}

/// The longest prefix of an encoded name of at most `max` bytes that does not cut a `%XX`.
fn cut_encoded(enc: &str, max: usize) -> &str {
    if enc.len() <= max {
        return enc;
    }
    let mut end = max;
    // A `%` in the last two kept bytes starts an escape that would be cut.
    if let Some(i) = enc[max.saturating_sub(2)..max].find('%') {
        end = max - 2 + i;
    }
    &enc[..end]
}

/// True for a segment written by [`name_segment`]'s hashed form.
pub fn is_hashed_segment(seg: &str) -> bool {
    seg.contains(HASHED_MARK)
}

pub fn ref_name(scope: &str, key: &str) -> String {
    format!(
        "{FORMAT_DIR}/refs/{}/{}",
        name_segment(scope),
        name_segment(key)
    )
}

/// Every name the ref of `scope/key` may have: [`ref_name`], then, for long names, the plain
/// encoding older versions wrote (readable where the store allowed it, e.g. S3).
pub fn ref_names(scope: &str, key: &str) -> Vec<String> {
    let mut v = vec![ref_name(scope, key)];
    let plain = format!(
        "{FORMAT_DIR}/refs/{}/{}",
        encode_segment(scope),
        encode_segment(key)
    );
    if plain != v[0] {
        v.push(plain);
    }
    v
}

/// The listing prefix for the refs of `scope` whose key starts with `key_prefix`. Cut so that
/// hashed names of long keys match it too: callers filter what is listed by the full key.
pub fn refs_prefix(scope: &str, key_prefix: &str) -> String {
    let enc = encode_segment(key_prefix);
    format!(
        "{FORMAT_DIR}/refs/{}/{}",
        name_segment(scope),
        cut_encoded(&enc, HASHED_KEEP - 2)
    )
}

pub fn used_name(scope: &str, key: &str) -> String {
    format!(
        "{FORMAT_DIR}/used/{}/{}",
        name_segment(scope),
        name_segment(key)
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
    /// Files stored as a blob (size >= LARGE_FILE): true. Otherwise the content is in the pack
    /// named by `pack`, or (format 1) in the manifest tarball under `path`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blob: bool,
    /// Small files (format 2): the pack holding the content. A pack holds its files in
    /// manifest order, back to back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<String>,
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
    /// Distinct blob names (hashes) the entry needs: its large files' blobs and its packs.
    pub fn blobs(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .entries
            .iter()
            .filter_map(|e| {
                if e.blob {
                    e.blake3.as_deref()
                } else {
                    e.pack.as_deref()
                }
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The packs of the entry, each with its files in pack order.
    pub fn packs(&self) -> std::collections::BTreeMap<&str, Vec<&ManifestEntry>> {
        let mut packs: std::collections::BTreeMap<&str, Vec<&ManifestEntry>> = Default::default();
        for e in &self.entries {
            if e.kind == EntryType::File
                && !e.blob
                && let Some(p) = e.pack.as_deref()
            {
                packs.entry(p).or_default().push(e);
            }
        }
        packs
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
    /// The saving process's start time (clock ticks since boot): with `pid`, one process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// The save rewrites its lease this often; one not rewritten for ten heartbeats is
    /// abandoned. Absent (older versions): abandoned after `LEASE_TTL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_secs: Option<u64>,
}
