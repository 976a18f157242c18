//! Walking a cache directory into the entries of a manifest.

use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};
use crate::format::EntryType;
use crate::state::FileStamp;

#[derive(Debug, Clone)]
pub struct Scanned {
    /// Relative, `/`-separated.
    pub rel: String,
    pub abs: PathBuf,
    pub stamp: FileStamp,
}

/// What a scan found, sorted by path (parents before children).
#[derive(Debug, Default)]
pub struct Scan {
    pub entries: Vec<Scanned>,
    /// Things left out, with why (sockets, devices, non-UTF-8 names).
    pub skipped: Vec<String>,
}

pub fn build_excludes(globs: &[String]) -> Result<globset::GlobSet> {
    let mut b = globset::GlobSetBuilder::new();
    for g in globs {
        let glob = globset::GlobBuilder::new(g.trim_start_matches("./"))
            .literal_separator(false)
            .build()
            .map_err(|e| StoreError::Other(format!("bad --exclude glob {g:?}: {e}")))?;
        b.add(glob);
    }
    b.build()
        .map_err(|e| StoreError::Other(format!("bad --exclude globs: {e}")))
}

pub fn scan(root: &Path, excludes: &globset::GlobSet) -> Result<Scan> {
    let meta = std::fs::symlink_metadata(root).map_err(|e| StoreError::io(root, e))?;
    if !meta.is_dir() {
        return Err(StoreError::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    let mut out = Scan::default();
    let mut walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walk.next() {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            StoreError::io(
                path,
                e.into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("walk failed")),
            )
        })?;
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        let Some(rel) = rel.to_str().map(str::to_string) else {
            out.skipped
                .push(format!("{}: name is not UTF-8", entry.path().display()));
            if entry.file_type().is_dir() {
                walk.skip_current_dir();
            }
            continue;
        };
        if excludes.is_match(&rel) {
            if entry.file_type().is_dir() {
                walk.skip_current_dir();
            }
            continue;
        }
        let ft = entry.file_type();
        let kind = if ft.is_dir() {
            EntryType::Dir
        } else if ft.is_file() {
            EntryType::File
        } else if ft.is_symlink() {
            EntryType::Symlink
        } else {
            out.skipped
                .push(format!("{rel}: not a file, directory or symlink"));
            continue;
        };
        let meta = entry
            .path()
            .symlink_metadata()
            .map_err(|e| StoreError::io(entry.path(), e))?;
        let mut stamp = FileStamp::from_meta(kind, &meta);
        if kind == EntryType::Symlink {
            let t =
                std::fs::read_link(entry.path()).map_err(|e| StoreError::io(entry.path(), e))?;
            match t.to_str() {
                Some(t) => stamp.target = Some(t.to_string()),
                None => {
                    out.skipped
                        .push(format!("{rel}: symlink target is not UTF-8"));
                    continue;
                }
            }
        }
        out.entries.push(Scanned {
            rel,
            abs: entry.path().to_path_buf(),
            stamp,
        });
    }
    // walkdir's per-directory name order is not the global byte order of the paths
    // ("a/b" vs "a-b"): sort, keeping parents first (a parent is a prefix, so it sorts first).
    out.entries.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}
