//! `export` and `import`: an entry to and from a plain `.tar.zst`, for interop and debugging.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

use serde::Serialize;

use crate::error::{Result, StoreError};
use crate::progress::NoProgress;
use crate::restore::RestoreRequest;
use crate::save::{SaveOutcome, SaveRequest};
use crate::store::Store;

#[derive(Debug, Clone, Serialize)]
pub struct ExportOutcome {
    pub scope: String,
    pub key: String,
    pub file: std::path::PathBuf,
    pub files: u64,
    pub total_size: u64,
    pub archive_size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportOutcome {
    pub save: SaveOutcome,
    /// Archive members left out (devices, fifos, hard links), with why.
    pub skipped: Vec<String>,
}

impl Store {
    /// Writes the entry `key` (own scope, then the fallbacks) as a plain `.tar.zst`.
    pub fn export(
        &self,
        scope: &str,
        fallback_scopes: &[String],
        key: &str,
        file: &Path,
    ) -> Result<ExportOutcome> {
        let parent = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".cicache-export-")
            .tempdir_in(parent)
            .map_err(|e| StoreError::io(parent, e))?;
        let tree = tmp.path().join("tree");
        let req = RestoreRequest {
            scope,
            fallback_scopes,
            key,
            restore_keys: &[],
            path: &tree,
            lookup_only: false,
        };
        let res = self.restore(&req, &NoProgress)?;
        crate::state::forget(&tree);
        if !res.hit {
            let damaged = res.warnings.join("; ");
            return Err(if damaged.is_empty() {
                StoreError::NotFound {
                    scope: scope.to_string(),
                    key: key.to_string(),
                }
            } else {
                StoreError::Other(damaged)
            });
        }
        let out = tempfile::Builder::new()
            .prefix(".cicache-export-")
            .tempfile_in(parent)
            .map_err(|e| StoreError::io(parent, e))?;
        let io_err = |e: io::Error| StoreError::io(file, e);
        {
            let enc = zstd::Encoder::new(BufWriter::new(out.as_file()), crate::rawzstd::LEVEL)
                .map_err(io_err)?;
            let mut tar = tar::Builder::new(enc);
            tar.follow_symlinks(false);
            tar.mode(tar::HeaderMode::Complete);
            tar.append_dir_all(".", &tree).map_err(io_err)?;
            let mut w = tar.into_inner().map_err(io_err)?.finish().map_err(io_err)?;
            w.flush().map_err(io_err)?;
        }
        out.persist(file).map_err(|e| io_err(e.error))?;
        let archive_size = std::fs::metadata(file).map_err(io_err)?.len();
        Ok(ExportOutcome {
            scope: res.matched_scope.unwrap_or_default(),
            key: key.to_string(),
            file: file.to_path_buf(),
            files: res.files.unwrap_or(0),
            total_size: res.total_size,
            archive_size,
        })
    }

    /// Stores a `.tar.zst` or `.tar` archive as the entry `scope/key`. The archive is
    /// untrusted: it is unpacked into a temp dir with `..`, absolute paths and writes through
    /// symlinks refused, and only files, directories and symlinks are kept.
    pub fn import(
        &self,
        scope: &str,
        key: &str,
        archive: &Path,
        update: bool,
    ) -> Result<ImportOutcome> {
        let io_err = |e: io::Error| StoreError::io(archive, e);
        let mut f = File::open(archive).map_err(io_err)?;
        let mut magic = [0u8; 4];
        let n = f.read(&mut magic).map_err(io_err)?;
        f.rewind().map_err(io_err)?;
        let reader: Box<dyn Read> = if n == 4 && magic == [0x28, 0xB5, 0x2F, 0xFD] {
            Box::new(zstd::Decoder::new(BufReader::new(f)).map_err(io_err)?)
        } else {
            Box::new(BufReader::new(f))
        };
        let tmp = tempfile::Builder::new()
            .prefix(".cicache-import-")
            .tempdir()
            .map_err(|e| StoreError::io(std::env::temp_dir(), e))?;
        let tree = tmp.path().join("tree");
        std::fs::create_dir(&tree).map_err(|e| StoreError::io(&tree, e))?;
        let mut ar = tar::Archive::new(reader);
        ar.set_preserve_permissions(false);
        ar.set_unpack_xattrs(false);
        let mut skipped = Vec::new();
        for ent in ar.entries().map_err(io_err)? {
            let mut ent = ent.map_err(io_err)?;
            let kind = ent.header().entry_type();
            let name = ent
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            if !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
                skipped.push(format!("{name}: {kind:?} entries are not imported"));
                continue;
            }
            // unpack_in refuses `..`, absolute paths and parents outside the tree.
            match ent.unpack_in(&tree) {
                Ok(true) => {}
                Ok(false) => skipped.push(format!("{name}: outside the archive root, refused")),
                Err(e) => {
                    return Err(StoreError::Other(format!(
                        "{}: member {name}: {e}",
                        archive.display()
                    )));
                }
            }
        }
        let req = SaveRequest {
            scope,
            key,
            path: &tree,
            update,
            if_changed: false,
            excludes: &[],
        };
        let mut save = self.save(&req, &NoProgress)?;
        crate::state::forget(&tree);
        // The tree was a temp dir, gone when this returns: the document names the archive.
        save.path = archive.to_path_buf();
        Ok(ImportOutcome { save, skipped })
    }
}
