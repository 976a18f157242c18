//! `restore`: an entry into a directory.
//!
//! Everything is written into a staging directory beside the target (same filesystem), every
//! byte checked against the manifest's hashes, and only then swapped into place with one
//! `renameat2(RENAME_EXCHANGE)`. A damaged or hostile entry is a miss with a warning (and the
//! next restore key is tried); the target is never half written.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::PutMode;
use crate::error::{Result, StoreError};
use crate::format::{self, EntryType, Manifest, ManifestEntry, Ref};
use crate::progress::Progress;
use crate::save::HashWriter;
use crate::state;
use crate::store::{Store, now_rfc3339};

/// Largest size a single file may declare (1 TiB): anything above is refused outright.
const MAX_FILE_SIZE: u64 = 1 << 40;

#[derive(Debug, Clone)]
pub struct RestoreRequest<'a> {
    pub scope: &'a str,
    pub fallback_scopes: &'a [String],
    pub key: &'a str,
    pub restore_keys: &'a [String],
    pub path: &'a Path,
    /// Find the entry, restore nothing.
    pub lookup_only: bool,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct RestoreOutcome {
    /// An entry was found (and, unless lookup-only, restored).
    pub hit: bool,
    /// The entry found has exactly the requested key, in the first scope.
    pub exact: bool,
    pub key: String,
    pub matched_key: Option<String>,
    pub matched_scope: Option<String>,
    pub path: PathBuf,
    pub lookup_only: bool,
    /// The directory already matched the entry; nothing was written.
    pub up_to_date: bool,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub total_size: u64,
    /// Bytes read from the store.
    pub bytes_downloaded: u64,
    pub manifest: Option<String>,
    pub created: Option<String>,
    pub seconds: f64,
    /// Entries skipped as damaged or refused, and other cache problems.
    pub warnings: Vec<String>,
}

impl Store {
    /// Restores the first entry that matches, in lookup order: the key in the own scope, each
    /// restore-key prefix there (newest first), then the same in each fallback scope.
    pub fn restore(&self, req: &RestoreRequest, progress: &dyn Progress) -> Result<RestoreOutcome> {
        crate::key::validate_key(req.key)?;
        crate::key::validate_scope(req.scope)?;
        let start = Instant::now();
        let mut out = RestoreOutcome {
            key: req.key.to_string(),
            path: req.path.to_path_buf(),
            lookup_only: req.lookup_only,
            ..Default::default()
        };
        let mut scopes: Vec<&str> = vec![req.scope];
        for s in req.fallback_scopes {
            crate::key::validate_scope(s)?;
            if !scopes.contains(&s.as_str()) {
                scopes.push(s);
            }
        }
        let mut tried: HashSet<(String, String)> = HashSet::new();
        for (i, scope) in scopes.iter().enumerate() {
            let mut candidates = vec![req.key.to_string()];
            let mut listed = false;
            let mut idx = 0;
            while idx < candidates.len() || !listed {
                if idx >= candidates.len() {
                    listed = true;
                    for prefix in req.restore_keys {
                        for (k, _) in self.list_refs(scope, prefix)? {
                            candidates.push(k);
                        }
                    }
                    continue;
                }
                let key = candidates[idx].clone();
                idx += 1;
                if !tried.insert((scope.to_string(), key.clone())) {
                    continue;
                }
                match self.try_restore(scope, &key, req, progress, &mut out) {
                    Ok(true) => {
                        out.hit = true;
                        out.exact = i == 0 && key == req.key;
                        out.matched_key = Some(key.clone());
                        out.matched_scope = Some(scope.to_string());
                        if !req.lookup_only {
                            let _ = self.backend.put_marker(
                                &format::used_name(scope, &key),
                                now_rfc3339().as_bytes(),
                                PutMode::Overwrite,
                            );
                        }
                        out.seconds = start.elapsed().as_secs_f64();
                        return Ok(out);
                    }
                    Ok(false) => {}
                    Err(e) if e.is_corrupt() => {
                        out.warnings
                            .push(format!("{e}; skipped it and tried the next key"));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        out.seconds = start.elapsed().as_secs_f64();
        Ok(out)
    }

    /// `Ok(false)`: no such entry. `Ok(true)`: restored (or found, lookup-only).
    fn try_restore(
        &self,
        scope: &str,
        key: &str,
        req: &RestoreRequest,
        progress: &dyn Progress,
        out: &mut RestoreOutcome,
    ) -> Result<bool> {
        let Some(r) = self.read_ref(scope, key)? else {
            return Ok(false);
        };
        out.manifest = Some(r.manifest.clone());
        out.created = Some(r.created.clone());
        out.total_size = r.total_size;
        if req.lookup_only {
            return Ok(true);
        }
        // Already there? (the state recorded by the last restore or save, checked by stat)
        if let Some(st) = state::load(req.path)
            && st.manifest == r.manifest
            && dir_matches_state(req.path, &st)
        {
            out.up_to_date = true;
            count(&st, out);
            return Ok(true);
        }
        let target_parent = parent_of(req.path);
        fs::create_dir_all(&target_parent).map_err(|e| StoreError::io(&target_parent, e))?;
        let (manifest, mfile) = self.fetch_manifest(&r, &target_parent, out)?;
        validate(&manifest, scope, key)?;
        check_space(&target_parent, &manifest)?;
        let (staged, mut stamps) =
            self.write_staging(&r, &manifest, mfile, &target_parent, progress, out)?;
        swap_into_place(staged, req.path)?;
        // Record what is on disk now, for the next save and restore.
        let mut st = state::new_state(req.path);
        st.manifest = r.manifest.clone();
        st.manifest_size = r.manifest_size;
        st.stored_size = r.stored_size;
        st.origin = "restore".into();
        st.scope = scope.to_string();
        st.key = key.to_string();
        // Files as stat'ed on their open handle when written (the swap does not change
        // them); directories and symlinks by what restore compares of them: type, mode,
        // target. No second walk of the tree.
        let mut complete = true;
        for e in &manifest.entries {
            let stamp = match e.kind {
                EntryType::File => match stamps.remove(e.path.as_str()) {
                    Some(mut s) => {
                        s.blake3 = e.blake3.clone();
                        s
                    }
                    None => {
                        complete = false;
                        break;
                    }
                },
                EntryType::Dir | EntryType::Symlink => state::FileStamp {
                    kind: e.kind,
                    ino: 0,
                    size: 0,
                    mtime_ns: e.mtime_ns,
                    ctime_ns: 0,
                    mode: if e.kind == EntryType::Dir {
                        restored_mode(e)
                    } else {
                        0o777
                    },
                    blake3: None,
                    target: e.target.clone(),
                },
            };
            st.entries.insert(e.path.clone(), stamp);
        }
        if complete {
            state::store(st);
        }
        for e in &manifest.entries {
            match e.kind {
                EntryType::File => out.files += 1,
                EntryType::Dir => out.dirs += 1,
                EntryType::Symlink => out.symlinks += 1,
            }
        }
        Ok(true)
    }

    /// Downloads the manifest object into a temp file, checks its hash and size, and reads
    /// `.cicache/manifest.json` from it.
    fn fetch_manifest(
        &self,
        r: &Ref,
        tmp_dir: &Path,
        out: &mut RestoreOutcome,
    ) -> Result<(Manifest, tempfile::NamedTempFile)> {
        let corrupt = |reason: String| StoreError::Corrupt {
            scope: r.scope.clone(),
            key: r.key.clone(),
            reason,
        };
        let name = format::manifest_name(&r.manifest);
        let Some(reader) = self.backend.get(&name)? else {
            return Err(corrupt(format!("its manifest {name} is missing")));
        };
        let tmp = tempfile::Builder::new()
            .prefix(".cicache-manifest-")
            .tempfile_in(tmp_dir)
            .map_err(|e| StoreError::io(tmp_dir, e))?;
        let mut hw = HashWriter {
            inner: BufWriter::new(tmp.as_file()),
            hasher: blake3::Hasher::new(),
            n: 0,
        };
        io::copy(&mut reader.take(r.manifest_size + 1), &mut hw)
            .map_err(|e| corrupt(format!("reading its manifest failed ({e})")))?;
        hw.flush().map_err(|e| StoreError::io(tmp.path(), e))?;
        let (n, digest) = (hw.n, hw.hasher.finalize());
        drop(hw);
        out.bytes_downloaded += n;
        if n != r.manifest_size || digest.to_hex().as_str() != r.manifest {
            return Err(corrupt(format!(
                "its manifest {name} does not match its hash (truncated or altered)"
            )));
        }
        let file = tmp.reopen().map_err(|e| StoreError::io(tmp.path(), e))?;
        let dec = zstd::Decoder::new(file).map_err(|e| corrupt(format!("manifest: {e}")))?;
        let mut archive = tar::Archive::new(dec);
        let mut entries = archive
            .entries()
            .map_err(|e| corrupt(format!("manifest tar: {e}")))?;
        let first = entries
            .next()
            .ok_or_else(|| corrupt("the manifest tarball is empty".into()))?
            .map_err(|e| corrupt(format!("manifest tar: {e}")))?;
        let path = first
            .path()
            .map_err(|e| corrupt(format!("manifest tar: {e}")))?
            .to_string_lossy()
            .to_string();
        if path != format::MANIFEST_PATH || first.size() > format::MAX_MANIFEST_JSON {
            return Err(corrupt(format!(
                "the manifest tarball does not start with {}",
                format::MANIFEST_PATH
            )));
        }
        let mut json = Vec::new();
        first
            .take(format::MAX_MANIFEST_JSON)
            .read_to_end(&mut json)
            .map_err(|e| corrupt(format!("manifest: {e}")))?;
        let manifest: Manifest = serde_json::from_slice(&json)
            .map_err(|e| corrupt(format!("manifest.json is not valid ({e})")))?;
        Ok((manifest, tmp))
    }

    /// Writes the whole entry into a new staging directory beside the target.
    fn write_staging(
        &self,
        r: &Ref,
        manifest: &Manifest,
        mfile: tempfile::NamedTempFile,
        parent: &Path,
        progress: &dyn Progress,
        out: &mut RestoreOutcome,
    ) -> Result<(tempfile::TempDir, HashMap<String, state::FileStamp>)> {
        let stamps: Mutex<HashMap<String, state::FileStamp>> = Default::default();
        let record = |path: &str, stamp: state::FileStamp| {
            if let Ok(mut m) = stamps.lock() {
                m.insert(path.to_string(), stamp);
            }
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            scope: r.scope.clone(),
            key: r.key.clone(),
            reason,
        };
        let staging = tempfile::Builder::new()
            .prefix(".cicache-staging-")
            .tempdir_in(parent)
            .map_err(|e| StoreError::io(parent, e))?;
        let root = staging.path().to_path_buf();
        let io_err = |p: &Path, e: io::Error| StoreError::io(p, e);

        for e in manifest.entries.iter().filter(|e| e.kind == EntryType::Dir) {
            let p = root.join(&e.path);
            fs::create_dir(&p).map_err(|err| io_err(&p, err))?;
        }
        progress.start(
            "writing",
            Some(manifest.entries.iter().map(|e| e.size).sum()),
        );

        // Small files, from the manifest tarball (after manifest.json).
        let mut small: BTreeMap<&str, &ManifestEntry> = manifest
            .entries
            .iter()
            .filter(|e| e.kind == EntryType::File && !e.blob && e.pack.is_none())
            .map(|e| (e.path.as_str(), e))
            .collect();
        let file = mfile
            .reopen()
            .map_err(|e| StoreError::io(mfile.path(), e))?;
        let dec = zstd::Decoder::new(file).map_err(|e| corrupt(format!("manifest: {e}")))?;
        let mut archive = tar::Archive::new(dec);
        let mut entries = archive
            .entries()
            .map_err(|e| corrupt(format!("manifest tar: {e}")))?;
        let _ = entries.next(); // manifest.json, read already
        for ent in entries {
            let ent = ent.map_err(|e| corrupt(format!("manifest tar: {e}")))?;
            let path = ent
                .path()
                .map_err(|e| corrupt(format!("manifest tar: {e}")))?
                .to_str()
                .map(str::to_string)
                .ok_or_else(|| corrupt("a tar member name is not UTF-8".into()))?;
            if ent.header().entry_type() != tar::EntryType::Regular {
                return Err(StoreError::Hostile {
                    scope: r.scope.clone(),
                    key: r.key.clone(),
                    reason: format!("tar member {path:?} is not a regular file"),
                });
            }
            let Some(me) = small.remove(path.as_str()) else {
                return Err(StoreError::Hostile {
                    scope: r.scope.clone(),
                    key: r.key.clone(),
                    reason: format!(
                        "tar member {path:?} is not a small file of the manifest (or appears twice)"
                    ),
                });
            };
            if ent.size() != me.size {
                return Err(corrupt(format!(
                    "{path}: {} bytes stored, the manifest says {}",
                    ent.size(),
                    me.size
                )));
            }
            let (n, stamp) = write_checked(ent, &root, me, &corrupt)?;
            record(&me.path, stamp);
            progress.inc(n);
        }
        if let Some(missing) = small.keys().next() {
            return Err(corrupt(format!(
                "{missing} is missing from the manifest tarball"
            )));
        }

        // Large files (each distinct blob fetched once) and packs of small files, in parallel,
        // largest first.
        let mut by_blob: BTreeMap<&str, Vec<&ManifestEntry>> = BTreeMap::new();
        for e in manifest
            .entries
            .iter()
            .filter(|e| e.kind == EntryType::File && e.blob)
        {
            if let Some(h) = e.blake3.as_deref() {
                by_blob.entry(h).or_default().push(e);
            }
        }
        let mut jobs: Vec<(bool, &str, Vec<&ManifestEntry>, u64)> = by_blob
            .into_iter()
            .map(|(h, users)| {
                let size = users[0].size;
                (false, h, users, size)
            })
            .chain(manifest.packs().into_iter().map(|(h, files)| {
                let size = files.iter().map(|e| e.size).sum();
                (true, h, files, size)
            }))
            .collect();
        jobs.sort_by_key(|j| std::cmp::Reverse(j.3));
        let downloaded: Vec<u64> =
            jobs.par_iter()
                .map(|(is_pack, hash, users, _)| -> Result<u64> {
                    let name = format::blob_name(hash);
                    let first = users[0];
                    let what = if *is_pack { "pack" } else { "blob" };
                    let reader = self.backend.get(&name)?.ok_or_else(|| {
                        corrupt(format!("{what} {name} ({}) is missing", first.path))
                    })?;
                    let mut counted = CountingReader {
                        inner: reader,
                        n: 0,
                    };
                    let mut dec = zstd::Decoder::new(&mut counted)
                        .map_err(|e| corrupt(format!("{what} {name}: {e}")))?;
                    if *is_pack {
                        for e in users {
                            let (n, stamp) =
                                write_checked((&mut dec).take(e.size), &root, e, &corrupt)?;
                            record(&e.path, stamp);
                            progress.inc(n);
                        }
                        let mut extra = [0u8; 1];
                        if !matches!(dec.read(&mut extra), Ok(0)) {
                            return Err(corrupt(format!(
                                "pack {name} holds more than the files the manifest lists"
                            )));
                        }
                    } else {
                        let (n, stamp) = write_checked(dec, &root, first, &corrupt)?;
                        record(&first.path, stamp);
                        progress.inc(n);
                        for other in &users[1..] {
                            let dst = root.join(&other.path);
                            fs::copy(root.join(&first.path), &dst).map_err(|e| io_err(&dst, e))?;
                            set_meta(&dst, other)?;
                            let meta = fs::symlink_metadata(&dst).map_err(|e| io_err(&dst, e))?;
                            record(
                                &other.path,
                                state::FileStamp::from_meta(EntryType::File, &meta),
                            );
                            progress.inc(other.size);
                        }
                    }
                    Ok(counted.n)
                })
                .collect::<Result<_>>()?;
        out.bytes_downloaded += downloaded.iter().sum::<u64>();
        progress.finish();

        // Symlinks, then metadata: files and links first, directories deepest first.
        for e in manifest
            .entries
            .iter()
            .filter(|e| e.kind == EntryType::Symlink)
        {
            let p = root.join(&e.path);
            std::os::unix::fs::symlink(e.target.as_deref().unwrap_or_default(), &p)
                .map_err(|err| io_err(&p, err))?;
            let t = mtime(e);
            let _ = filetime::set_symlink_file_times(&p, t, t);
        }
        // Files got their mode and mtime from write_checked (on the open file).
        for e in manifest
            .entries
            .iter()
            .rev()
            .filter(|e| e.kind == EntryType::Dir)
        {
            set_meta(&root.join(&e.path), e)?;
        }
        Ok((staging, stamps.into_inner().unwrap_or_default()))
    }
}

struct CountingReader<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

fn mtime(e: &ManifestEntry) -> filetime::FileTime {
    filetime::FileTime::from_unix_time(
        e.mtime_ns.div_euclid(1_000_000_000),
        e.mtime_ns.rem_euclid(1_000_000_000) as u32,
    )
}

/// The permission bits restore gives an entry: setuid, setgid and sticky bits are dropped
/// (a cache never needs them).
fn restored_mode(e: &ManifestEntry) -> u32 {
    e.mode & 0o777
}

fn set_meta(p: &Path, e: &ManifestEntry) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(restored_mode(e)))
        .map_err(|err| StoreError::io(p, err))?;
    let t = mtime(e);
    filetime::set_file_times(p, t, t).map_err(|err| StoreError::io(p, err))
}

/// Writes one file from `src`, never through an existing path, checking size and hash.
fn write_checked(
    src: impl Read,
    root: &Path,
    e: &ManifestEntry,
    corrupt: &dyn Fn(String) -> StoreError,
) -> Result<(u64, state::FileStamp)> {
    let p = root.join(&e.path);
    let f = crate::backend::dir::create_new(&p).map_err(|err| StoreError::io(&p, err))?;
    let mut hw = HashWriter {
        inner: BufWriter::with_capacity(BUF_MAX.min(e.size as usize + 1), f),
        hasher: blake3::Hasher::new(),
        n: 0,
    };
    let copied = crate::save::copy_sized(&mut src.take(e.size + 1), &mut hw, e.size);
    match copied {
        Ok(_) => {}
        Err(err) if is_no_space(&err) => return Err(StoreError::io(&p, err)),
        Err(err)
            if err.kind() == io::ErrorKind::Other
                || err.kind() == io::ErrorKind::InvalidData
                || err.kind() == io::ErrorKind::UnexpectedEof =>
        {
            return Err(corrupt(format!(
                "{}: the stored data is damaged ({err})",
                e.path
            )));
        }
        Err(err) => return Err(StoreError::io(&p, err)),
    }
    hw.flush().map_err(|err| StoreError::io(&p, err))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let f = hw.inner.get_ref();
        let t = mtime(e);
        f.set_permissions(fs::Permissions::from_mode(restored_mode(e)))
            .and_then(|_| filetime::set_file_handle_times(f, Some(t), Some(t)))
            .map_err(|err| StoreError::io(&p, err))?;
    }
    if hw.n != e.size {
        return Err(corrupt(format!(
            "{}: {} bytes stored, the manifest says {}",
            e.path, hw.n, e.size
        )));
    }
    if e.blake3.as_deref() != Some(hw.hasher.finalize().to_hex().as_str()) {
        return Err(corrupt(format!(
            "{}: content does not match its hash",
            e.path
        )));
    }
    let meta = hw
        .inner
        .get_ref()
        .metadata()
        .map_err(|err| StoreError::io(&p, err))?;
    Ok((hw.n, state::FileStamp::from_meta(EntryType::File, &meta)))
}

/// Largest copy buffer (small files get one of their own size).
const BUF_MAX: usize = 256 * 1024;

fn is_no_space(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC) || e.kind() == io::ErrorKind::StorageFull
}

/// Checks everything restore will rely on before it writes a byte (invariant 4).
pub fn validate(m: &Manifest, scope: &str, key: &str) -> Result<()> {
    let hostile = |reason: String| StoreError::Hostile {
        scope: scope.to_string(),
        key: key.to_string(),
        reason,
    };
    if m.format != 1 && m.format != format::MANIFEST_FORMAT {
        return Err(StoreError::Corrupt {
            scope: scope.to_string(),
            key: key.to_string(),
            reason: format!("unknown manifest format {}", m.format),
        });
    }
    let mut seen: HashMap<&str, EntryType> = HashMap::new();
    for e in &m.entries {
        let p = e.path.as_str();
        if p.is_empty() || p.starts_with('/') {
            return Err(hostile(format!("path {p:?} is absolute or empty")));
        }
        if p.contains('\0') || p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            return Err(hostile(format!(
                "path {p:?} has an empty, `.` or `..` component"
            )));
        }
        if let Some((parent, _)) = p.rsplit_once('/')
            && seen.get(parent) != Some(&EntryType::Dir)
        {
            return Err(hostile(format!(
                "path {p:?} is inside {parent:?}, which is not a directory of the entry (a symlink or missing)"
            )));
        }
        if seen.insert(p, e.kind).is_some() {
            return Err(hostile(format!("path {p:?} appears twice")));
        }
        match e.kind {
            EntryType::File => {
                if e.size > MAX_FILE_SIZE {
                    return Err(hostile(format!(
                        "{p:?} declares a size of {} bytes, more than any cache file",
                        e.size
                    )));
                }
                if !e.blake3.as_deref().is_some_and(format::is_hash) {
                    return Err(hostile(format!("{p:?} has no valid content hash")));
                }
                if let Some(pack) = e.pack.as_deref()
                    && (e.blob || m.format < 2 || !format::is_hash(pack))
                {
                    return Err(hostile(format!("{p:?} names an invalid pack {pack:?}")));
                }
            }
            EntryType::Symlink => {
                if e.target
                    .as_deref()
                    .is_none_or(|t| t.is_empty() || t.contains('\0'))
                {
                    return Err(hostile(format!("symlink {p:?} has no valid target")));
                }
            }
            EntryType::Dir => {}
        }
    }
    Ok(())
}

fn check_space(dir: &Path, m: &Manifest) -> Result<()> {
    let needed: u64 = m
        .entries
        .iter()
        .map(|e| e.size.div_ceil(4096) * 4096 + 512)
        .fold(0u64, |a, b| a.saturating_add(b));
    let Some(available) = available_space(dir) else {
        return Ok(());
    };
    if needed > available {
        return Err(StoreError::NoSpace {
            path: dir.to_path_buf(),
            needed,
            available,
        });
    }
    Ok(())
}

fn available_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and s a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    (rc == 0).then(|| s.f_bavail as u64 * s.f_frsize as u64)
}

fn parent_of(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    abs.parent().map(Path::to_path_buf).unwrap_or(abs)
}

/// Puts the staging dir where the target is: one atomic exchange when the target exists.
fn swap_into_place(staged: tempfile::TempDir, target: &Path) -> Result<()> {
    let staged_path = staged.path().to_path_buf();
    match fs::symlink_metadata(target) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::rename(&staged_path, target).map_err(|e| StoreError::io(target, e))?;
            let _ = staged.keep();
            Ok(())
        }
        Err(e) => Err(StoreError::io(target, e)),
        Ok(m) if !m.is_dir() => Err(StoreError::NotADirectory {
            path: target.to_path_buf(),
        }),
        Ok(_) => {
            if exchange(&staged_path, target).is_ok() {
                // The old contents are now in the staging dir, which drops and is removed.
                drop(staged);
                return Ok(());
            }
            // No RENAME_EXCHANGE on this filesystem: two renames, a short window without
            // the directory but never a mixed one.
            let old = tempfile::Builder::new()
                .prefix(".cicache-old-")
                .tempdir_in(parent_of(target))
                .map_err(|e| StoreError::io(target, e))?;
            let old_path = old.path().join("d");
            fs::rename(target, &old_path).map_err(|e| StoreError::io(target, e))?;
            if let Err(e) = fs::rename(&staged_path, target) {
                let _ = fs::rename(&old_path, target);
                return Err(StoreError::io(target, e));
            }
            let _ = staged.keep();
            Ok(())
        }
    }
}

fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let ca = std::ffi::CString::new(a.as_os_str().as_bytes())?;
    let cb = std::ffi::CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated paths.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The directory still is what the state recorded: same paths, and every file, link and dir
/// unchanged by stat (inode, size, mtime, ctime).
fn dir_matches_state(dir: &Path, st: &state::DirState) -> bool {
    let Ok(scan) = crate::scan::scan(dir, &globset::GlobSet::empty()) else {
        return false;
    };
    scan.entries.len() == st.entries.len()
        && scan.entries.iter().all(|s| {
            st.entries.get(&s.rel).is_some_and(|p| {
                p.kind == s.stamp.kind
                    && p.mode == s.stamp.mode
                    && p.target == s.stamp.target
                    && (p.kind != EntryType::File || p.same_file(&s.stamp))
            })
        })
}

fn count(st: &state::DirState, out: &mut RestoreOutcome) {
    for e in st.entries.values() {
        match e.kind {
            EntryType::File => out.files += 1,
            EntryType::Dir => out.dirs += 1,
            EntryType::Symlink => out.symlinks += 1,
        }
    }
}
