//! The local snapshot of a cache directory, written by restore and save beside the store's
//! own state (not inside the cache dir), so that the next save on this agent:
//! - does not rehash a file whose inode, size, mtime and ctime are unchanged;
//! - with `--if-changed`, skips when the directory matches what was restored;
//! - reuses the manifest when nothing changed (a save under a new key then writes one ref).
//!
//! Default place: `$CICACHE_STATE_DIR`, else `$XDG_CACHE_HOME/cicache-state`, else
//! `~/.cache/cicache-state`; one JSON file per absolute directory path.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::format::EntryType;

/// Version of the state file; bump when its meaning changes.
const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileStamp {
    pub kind: EntryType,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub mode: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl FileStamp {
    pub fn from_meta(kind: EntryType, meta: &std::fs::Metadata) -> Self {
        FileStamp {
            kind,
            ino: meta.ino(),
            size: if kind == EntryType::File {
                meta.len()
            } else {
                0
            },
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            mode: meta.mode() & 0o7777,
            blake3: None,
            target: None,
        }
    }

    /// Same file as recorded, so the recorded hash still holds.
    pub fn same_file(&self, other: &FileStamp) -> bool {
        self.kind == other.kind
            && self.ino == other.ino
            && self.size == other.size
            && self.mtime_ns == other.mtime_ns
            && self.ctime_ns == other.ctime_ns
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirState {
    pub version: u32,
    pub path: PathBuf,
    /// The manifest the directory matched when recorded.
    pub manifest: String,
    pub manifest_size: u64,
    /// Stored size of the entry (manifest plus blobs).
    pub stored_size: u64,
    /// The exclude globs in force when recorded (a change invalidates manifest reuse).
    pub excludes: Vec<String>,
    /// Where it came from: `restore` or `save`, with scope and key.
    pub origin: String,
    pub scope: String,
    pub key: String,
    pub entries: BTreeMap<String, FileStamp>,
}

/// Where state files go: `$CICACHE_STATE_DIR`, else `$XDG_CACHE_HOME/cicache-state`, else
/// `$HOME/.cache/cicache-state`, else the temp dir. An empty variable counts as unset, and
/// a relative `XDG_CACHE_HOME` is ignored (the XDG spec says so), so the state never lands
/// in the current directory (a CI workspace).
pub fn state_dir() -> PathBuf {
    if let Some(d) = env_path("CICACHE_STATE_DIR") {
        return d;
    }
    user_cache_dir().join("cicache-state")
}

/// The value of a variable as a path; `None` when unset or empty.
pub fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The user's cache directory: `$XDG_CACHE_HOME` (absolute), else `$HOME/.cache` (`HOME`
/// absolute), else the temp dir.
pub fn user_cache_dir() -> PathBuf {
    env_path("XDG_CACHE_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| {
            env_path("HOME")
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".cache"))
        })
        .unwrap_or_else(std::env::temp_dir)
}

fn state_file(dir: &Path) -> PathBuf {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let h = blake3::hash(abs.as_os_str().as_encoded_bytes());
    state_dir().join(format!("{}.json", &h.to_hex()[..32]))
}

/// The recorded state of `dir`, if any and readable. A damaged state file is ignored: it is
/// only an accelerator, never trusted for content (hashes are checked on restore).
pub fn load(dir: &Path) -> Option<DirState> {
    let text = std::fs::read(state_file(dir)).ok()?;
    let st: DirState = serde_json::from_slice(&text).ok()?;
    let abs = std::path::absolute(dir).ok()?;
    (st.version == STATE_VERSION && st.path == abs).then_some(st)
}

/// Records the state of `dir`; failures are ignored (the state is an accelerator).
pub fn store(mut st: DirState) {
    st.version = STATE_VERSION;
    if let Ok(abs) = std::path::absolute(&st.path) {
        st.path = abs;
    }
    let file = state_file(&st.path);
    let Some(parent) = file.parent() else { return };
    if std::fs::create_dir_all(parent).is_err() {
        return;
    }
    let Ok(data) = serde_json::to_vec(&st) else {
        return;
    };
    if let Ok(mut tmp) = tempfile::NamedTempFile::new_in(parent) {
        use std::io::Write;
        if tmp.write_all(&data).is_ok() {
            let _ = tmp.persist(&file);
        }
    }
}

pub fn forget(dir: &Path) {
    let _ = std::fs::remove_file(state_file(dir));
}

pub fn new_state(dir: &Path) -> DirState {
    DirState {
        version: STATE_VERSION,
        path: dir.to_path_buf(),
        manifest: String::new(),
        manifest_size: 0,
        stored_size: 0,
        excludes: Vec::new(),
        origin: String::new(),
        scope: String::new(),
        key: String::new(),
        entries: BTreeMap::new(),
    }
}
