//! The directory backend: the embedded default store.
//!
//! Objects are files under the root. Every write goes to `cicache-v1/tmp/` first, is
//! fsynced, then published with `link(2)` (create-if-absent: content-named objects and
//! refs) or `rename(2)` (replace), and the parent directory is fsynced. A process killed at
//! any point leaves at worst a stray temp file, which `prune` removes after a day.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{Backend, ObjectInfo, ObjectReader, PutMode};
use crate::error::BackendError;

/// Directory for temp files, relative to the root.
pub const TMP_DIR: &str = "cicache-v1/tmp";

#[derive(Debug, Clone)]
pub struct DirBackend {
    root: PathBuf,
}

impl DirBackend {
    /// Opens (and creates) a directory store.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BackendError> {
        // Absolute, so temp files (whose paths tempfile makes absolute) are recognized as
        // ours in put_file and published by a rename instead of a second copy.
        let root = root.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        let b = DirBackend { root };
        fs::create_dir_all(b.root.join(TMP_DIR)).map_err(|e| BackendError::Unusable {
            location: b.location(),
            message: format!(
                "cannot create {}: {e}; pass a writable --store DIR or set CICACHE_STORE",
                b.root.join(TMP_DIR).display()
            ),
        })?;
        Ok(b)
    }

    /// Opens an existing directory store and creates nothing: a missing root is
    /// [`BackendError::Missing`] (the reading commands must not leave an empty store behind).
    pub fn open_existing(root: impl Into<PathBuf>) -> Result<Self, BackendError> {
        let root = root.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        let b = DirBackend { root };
        match fs::metadata(&b.root) {
            Ok(m) if m.is_dir() => Ok(b),
            Ok(_) => Err(BackendError::Unusable {
                location: b.location(),
                message: format!("{} is not a directory", b.root.display()),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(BackendError::Missing {
                location: b.location(),
            }),
            Err(e) => Err(BackendError::Unusable {
                location: b.location(),
                message: format!("cannot read {}: {e}", b.root.display()),
            }),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn err(&self, op: &'static str, object: &str, source: io::Error) -> BackendError {
        BackendError::Io {
            location: self.location(),
            op,
            object: object.to_string(),
            source,
        }
    }

    fn temp_file(&self) -> io::Result<tempfile::NamedTempFile> {
        let tmp = self.root.join(TMP_DIR);
        let make = || tempfile::Builder::new().prefix(".w-").tempfile_in(&tmp);
        match make() {
            // Opened with `open_existing` (a reading command that writes a marker): the tmp
            // dir is made on first write, inside a store that exists.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&tmp)?;
                make()
            }
            r => r,
        }
    }

    /// A small object through a temp file: `link(2)` (create-new) or `rename(2)`; fsynced
    /// (file and directory) when `durable`.
    fn write_small(
        &self,
        name: &str,
        data: &[u8],
        mode: PutMode,
        durable: bool,
    ) -> Result<bool, BackendError> {
        let dest = self.path(name);
        self.ensure_parent(&dest)
            .map_err(|e| self.err("create directory for", name, e))?;
        let mut tmp = self.temp_file().map_err(|e| self.err("write", name, e))?;
        tmp.write_all(data)
            .and_then(|_| {
                if durable {
                    tmp.as_file().sync_all()
                } else {
                    Ok(())
                }
            })
            .map_err(|e| self.err("write", name, e))?;
        let created = match mode {
            PutMode::CreateNew => match fs::hard_link(tmp.path(), &dest) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(self.err("publish", name, e)),
            },
            PutMode::Overwrite => {
                tmp.persist(&dest)
                    .map_err(|e| self.err("publish", name, e.error))?;
                true
            }
        };
        if durable && let Some(p) = dest.parent() {
            sync_dir(p).map_err(|e| self.err("sync directory of", name, e))?;
        }
        Ok(created)
    }

    fn ensure_parent(&self, dest: &Path) -> io::Result<()> {
        match dest.parent() {
            Some(p) => fs::create_dir_all(p),
            None => Ok(()),
        }
    }
}

/// The object does not exist: not found, or a name this filesystem cannot hold (an older
/// version's plain name of a long key, looked up in case it was written elsewhere).
fn absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENAMETOOLONG)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Backend for DirBackend {
    fn location(&self) -> String {
        format!("dir:{}", self.root.display())
    }

    fn get(&self, name: &str) -> Result<Option<ObjectReader>, BackendError> {
        match File::open(self.path(name)) {
            Ok(f) => Ok(Some(Box::new(BufReader::with_capacity(256 * 1024, f)))),
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(self.err("read", name, e)),
        }
    }

    fn head(&self, name: &str) -> Result<Option<ObjectInfo>, BackendError> {
        match fs::metadata(self.path(name)) {
            Ok(m) => Ok(Some(ObjectInfo {
                name: name.to_string(),
                size: m.len(),
                modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            })),
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(self.err("stat", name, e)),
        }
    }

    fn put_file(&self, name: &str, file: &Path) -> Result<(), BackendError> {
        let dest = self.path(name);
        if dest.exists() {
            let _ = fs::remove_file(file);
            return Ok(());
        }
        self.ensure_parent(&dest)
            .map_err(|e| self.err("create directory for", name, e))?;
        // The source must be on our filesystem for link(2): anything not in our tmp dir is
        // copied there first.
        let tmp_root = self.root.join(TMP_DIR);
        let (src, _guard) = if file.parent() == Some(tmp_root.as_path()) {
            (file.to_path_buf(), None)
        } else {
            let tmp = self.temp_file().map_err(|e| self.err("write", name, e))?;
            fs::copy(file, tmp.path()).map_err(|e| self.err("write", name, e))?;
            (tmp.path().to_path_buf(), Some(tmp))
        };
        File::open(&src)
            .and_then(|f| f.sync_all())
            .map_err(|e| self.err("sync", name, e))?;
        match fs::hard_link(&src, &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(self.err("publish", name, e)),
        }
        let _ = fs::remove_file(&src);
        if let Some(p) = dest.parent() {
            sync_dir(p).map_err(|e| self.err("sync directory of", name, e))?;
        }
        Ok(())
    }

    /// Every file fsynced (in parallel: mostly written back already), then every link, then
    /// each parent directory fsynced once: the first of those commits the journal for all.
    fn put_files(&self, items: &[(String, &Path)]) -> Result<(), BackendError> {
        use rayon::prelude::*;
        let tmp_root = self.root.join(TMP_DIR);
        let mut todo: Vec<(&str, PathBuf, PathBuf, Option<tempfile::NamedTempFile>)> = Vec::new();
        for (name, file) in items {
            let dest = self.path(name);
            if dest.exists() {
                let _ = fs::remove_file(file);
                continue;
            }
            self.ensure_parent(&dest)
                .map_err(|e| self.err("create directory for", name, e))?;
            if file.parent() == Some(tmp_root.as_path()) {
                todo.push((name, file.to_path_buf(), dest, None));
            } else {
                let tmp = self.temp_file().map_err(|e| self.err("write", name, e))?;
                fs::copy(file, tmp.path()).map_err(|e| self.err("write", name, e))?;
                todo.push((name, tmp.path().to_path_buf(), dest, Some(tmp)));
            }
        }
        todo.par_iter()
            .map(|(name, src, _, _)| {
                File::open(src)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| self.err("sync", name, e))
            })
            .collect::<Result<Vec<()>, _>>()?;
        let mut dirs = std::collections::BTreeMap::new();
        for (name, src, dest, _) in &todo {
            match fs::hard_link(src, dest) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(self.err("publish", name, e)),
            }
            let _ = fs::remove_file(src);
            if let Some(p) = dest.parent() {
                dirs.insert(p.to_path_buf(), *name);
            }
        }
        dirs.par_iter()
            .map(|(dir, name)| sync_dir(dir).map_err(|e| self.err("sync directory of", name, e)))
            .collect::<Result<Vec<()>, _>>()?;
        Ok(())
    }

    fn is_local(&self) -> bool {
        true
    }

    fn batches_puts(&self) -> bool {
        true
    }

    fn put_bytes(&self, name: &str, data: &[u8], mode: PutMode) -> Result<bool, BackendError> {
        self.write_small(name, data, mode, true)
    }

    fn put_marker(&self, name: &str, data: &[u8], mode: PutMode) -> Result<bool, BackendError> {
        self.write_small(name, data, mode, false)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let base = self.root.join(dir_part);
        let mut out = Vec::new();
        if !base.is_dir() {
            return Ok(out);
        }
        for entry in walkdir::WalkDir::new(&base).follow_links(false) {
            let entry = match entry {
                Ok(e) => e,
                // Objects deleted while we walk (a concurrent prune) are simply not listed.
                Err(e) if e.io_error().map(|e| e.kind()) == Some(io::ErrorKind::NotFound) => {
                    continue;
                }
                Err(e) => {
                    return Err(self.err("list", prefix, io::Error::other(e.to_string())));
                }
            };
            if !entry.file_type().is_file() {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(&self.root) else {
                continue;
            };
            let Some(name) = rel.to_str() else { continue };
            if !name.starts_with(prefix) || name.starts_with(TMP_DIR) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            out.push(ObjectInfo {
                name: name.to_string(),
                size: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<(), BackendError> {
        match fs::remove_file(self.path(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("delete", name, e)),
        }
    }

    fn staging_dir(&self) -> Option<PathBuf> {
        Some(self.root.join(TMP_DIR))
    }

    fn local_root(&self) -> Option<PathBuf> {
        Some(self.root.clone())
    }

    fn clean_temp(&self, older_than: std::time::Duration) -> Result<u64, BackendError> {
        Ok(clean_tmp(&self.root, older_than) as u64)
    }
}

/// Removes temp files older than `age` left by killed writers; returns how many.
pub fn clean_tmp(root: &Path, age: std::time::Duration) -> usize {
    let mut n = 0;
    let Ok(rd) = fs::read_dir(root.join(TMP_DIR)) else {
        return 0;
    };
    for e in rd.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|el| el > age);
        if old && fs::remove_file(e.path()).is_ok() {
            n += 1;
        }
    }
    n
}

/// Opens a file for writing that must not exist yet.
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}
