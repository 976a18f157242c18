//! Reading a stored entry: the one validator that restore and verify share.
//!
//! Restore writes what it reads into a staging dir, verify only hashes it, but both go through
//! the same steps here, so an entry verify passes is one restore accepts (and the other way
//! round): [`validate`] the manifest before anything is read, [`parse_manifest_tar`] its
//! tarball, then [`EntryReader`] hands every file's bytes to a [`FileSink`], checking tar
//! member types, duplicates, sizes and hashes on the way.
//!
//! Every size read from an entry is untrusted: sums use checked arithmetic and reads stop at
//! the declared size plus one byte.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Mutex;

use rayon::prelude::*;

use crate::error::{Result, StoreError};
use crate::format::{self, EntryType, Manifest, ManifestEntry, Ref};
use crate::progress::Progress;
use crate::save::HashWriter;
use crate::store::Store;

/// Largest size a single file may declare (1 TiB): anything above is refused outright.
pub const MAX_FILE_SIZE: u64 = 1 << 40;
/// Largest sum of file sizes an entry may declare (16 TiB).
pub const MAX_ENTRY_SIZE: u64 = 1 << 44;

/// What a valid manifest adds up to (computed with checked arithmetic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Sum of the file sizes.
    pub bytes: u64,
}

/// Checks everything restore and verify rely on before a byte is read (invariant 4): paths,
/// types, hashes, packs, sizes. Returns the entry's totals.
pub fn validate(m: &Manifest, scope: &str, key: &str) -> Result<Totals> {
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
    let mut t = Totals::default();
    for e in &m.entries {
        let p = e.path.as_str();
        check_path(p, &seen).map_err(hostile)?;
        if seen.insert(p, e.kind).is_some() {
            return Err(hostile(format!("path {p:?} appears twice")));
        }
        match e.kind {
            EntryType::File => {
                check_file(e, m.format).map_err(hostile)?;
                t.files += 1;
                t.bytes = t
                    .bytes
                    .checked_add(e.size)
                    .filter(|b| *b <= MAX_ENTRY_SIZE)
                    .ok_or_else(|| {
                        hostile(format!(
                            "its files add up to more than {MAX_ENTRY_SIZE} bytes, more than any cache"
                        ))
                    })?;
            }
            EntryType::Symlink => {
                if e.target
                    .as_deref()
                    .is_none_or(|t| t.is_empty() || t.contains('\0'))
                {
                    return Err(hostile(format!("symlink {p:?} has no valid target")));
                }
                t.symlinks += 1;
            }
            EntryType::Dir => t.dirs += 1,
        }
        if e.kind != EntryType::File && (e.size != 0 || e.blob || e.pack.is_some()) {
            return Err(hostile(format!(
                "{p:?} is not a file but declares a size or content"
            )));
        }
    }
    Ok(t)
}

/// A path of the entry: relative, no empty, `.` or `..` components, inside a directory of the
/// entry (never under a symlink).
fn check_path(p: &str, seen: &HashMap<&str, EntryType>) -> std::result::Result<(), String> {
    if p.is_empty() || p.starts_with('/') {
        return Err(format!("path {p:?} is absolute or empty"));
    }
    if p.contains('\0') || p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(format!("path {p:?} has an empty, `.` or `..` component"));
    }
    if let Some((parent, _)) = p.rsplit_once('/')
        && seen.get(parent) != Some(&EntryType::Dir)
    {
        return Err(format!(
            "path {p:?} is inside {parent:?}, which is not a directory of the entry (a symlink or missing)"
        ));
    }
    Ok(())
}

fn check_file(e: &ManifestEntry, manifest_format: u32) -> std::result::Result<(), String> {
    let p = &e.path;
    if e.size > MAX_FILE_SIZE {
        return Err(format!(
            "{p:?} declares a size of {} bytes, more than any cache file",
            e.size
        ));
    }
    if !e.blake3.as_deref().is_some_and(format::is_hash) {
        return Err(format!("{p:?} has no valid content hash"));
    }
    if let Some(pack) = e.pack.as_deref()
        && (e.blob || manifest_format < 2 || !format::is_hash(pack))
    {
        return Err(format!("{p:?} names an invalid pack {pack:?}"));
    }
    Ok(())
}

/// Reads `.cicache/manifest.json`, the first member of a manifest tarball: it must be a
/// regular file of that name and at most [`format::MAX_MANIFEST_JSON`] bytes.
pub(crate) fn parse_manifest_tar<R: Read>(
    dec: R,
    corrupt: &dyn Fn(String) -> StoreError,
) -> Result<Manifest> {
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
    if path != format::MANIFEST_PATH
        || first.header().entry_type() != tar::EntryType::Regular
        || first.size() > format::MAX_MANIFEST_JSON
    {
        return Err(corrupt(format!(
            "the manifest tarball does not start with {} (a regular file of at most {} bytes)",
            format::MANIFEST_PATH,
            format::MAX_MANIFEST_JSON
        )));
    }
    let mut json = Vec::new();
    first
        .take(format::MAX_MANIFEST_JSON)
        .read_to_end(&mut json)
        .map_err(|e| corrupt(format!("manifest: {e}")))?;
    serde_json::from_slice(&json).map_err(|e| corrupt(format!("manifest.json is not valid ({e})")))
}

/// Where the files of an entry go: restore writes them into its staging dir, verify only
/// checks them.
pub(crate) trait FileSink: Sync {
    /// Takes the content of file `e` from `src` (which offers at most `e.size + 1` bytes),
    /// checking size and hash with [`copy_checked`]; returns the bytes taken.
    fn file(&self, src: &mut dyn Read, e: &ManifestEntry, corrupt: &Corrupt<'_>) -> Result<u64>;
    /// `other` has the content of `first` (one blob, two paths); `first` was taken already.
    fn same_as(&self, first: &ManifestEntry, other: &ManifestEntry) -> Result<()>;
}

/// Makes a [`StoreError::Corrupt`] of the entry being read.
pub(crate) type Corrupt<'a> = dyn Fn(String) -> StoreError + Sync + 'a;

/// Copies file `e` from `src` into `w`, reading at most its size plus one byte, and checks
/// the size and hash. Read failures and wrong data are `Corrupt`; write failures are `Io` on
/// `dst` (a full disk is not damage to the entry).
pub(crate) fn copy_checked<W: Write>(
    src: &mut dyn Read,
    w: W,
    e: &ManifestEntry,
    dst: &Path,
    corrupt: &Corrupt<'_>,
) -> Result<(u64, W)> {
    let mut hw = HashWriter {
        inner: w,
        hasher: blake3::Hasher::new(),
        n: 0,
    };
    let mut tracked = Tracked {
        inner: src.take(e.size.saturating_add(1)),
        failed: false,
    };
    match crate::save::copy_sized(&mut tracked, &mut hw, e.size) {
        Ok(_) => {}
        Err(err) if tracked.failed => {
            return Err(corrupt(format!(
                "{}: the stored data is unreadable ({err})",
                e.path
            )));
        }
        Err(err) => return Err(StoreError::io(dst, err)),
    }
    hw.flush().map_err(|err| StoreError::io(dst, err))?;
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
    Ok((hw.n, hw.inner))
}

/// A reader that remembers whether the *source* failed (as opposed to the writer it is
/// copied to).
pub(crate) struct Tracked<R> {
    pub inner: R,
    pub failed: bool,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|_| self.failed = true)
    }
}

/// Counts what passes through (bytes read from the store).
pub(crate) struct CountingReader<R> {
    pub inner: R,
    pub n: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

/// An object an entry read found wrong: checked again on its own before it is quarantined
/// (see `heal.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Suspect {
    /// `manifests/<hash>.tar.zst`.
    Manifest(String),
    /// `blobs/../<hash>.zst` holding one large file.
    Blob(String),
    /// `blobs/../<hash>.zst` holding a pack: the hashes and sizes of its files, in order.
    Pack(String, Vec<(String, u64)>),
}

/// Reads every file of a validated entry into a [`FileSink`], noting the objects found wrong.
pub(crate) struct EntryReader<'a> {
    pub store: &'a Store,
    pub r: &'a Ref,
    pub manifest: &'a Manifest,
    suspects: Mutex<Vec<Suspect>>,
}

impl<'a> EntryReader<'a> {
    pub fn new(store: &'a Store, r: &'a Ref, manifest: &'a Manifest) -> Self {
        EntryReader {
            store,
            r,
            manifest,
            suspects: Mutex::new(Vec::new()),
        }
    }

    pub fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Corrupt {
            scope: self.r.scope.clone(),
            key: self.r.key.clone(),
            reason,
        }
    }

    fn suspect(&self, s: Suspect) {
        if let Ok(mut v) = self.suspects.lock()
            && !v.contains(&s)
        {
            v.push(s);
        }
    }

    /// Notes `s` as wrong when `res` is damage (not a full disk, not a store that failed).
    fn blame<T>(&self, s: impl FnOnce() -> Suspect, res: Result<T>) -> Result<T> {
        if let Err(e) = &res
            && matches!(e, StoreError::Corrupt { .. })
        {
            self.suspect(s());
        }
        res
    }

    /// The objects found wrong so far.
    pub fn suspects(&self) -> Vec<Suspect> {
        self.suspects.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Format 1: the small files stored in the manifest tarball after manifest.json. Each
    /// member must be a regular file the manifest lists as such, once, of the listed size.
    pub fn read_small(&self, mfile: impl Read, sink: &dyn FileSink) -> Result<()> {
        let res = self.read_small_inner(mfile, sink);
        self.blame(|| Suspect::Manifest(self.r.manifest.clone()), res)
    }

    fn read_small_inner(&self, mfile: impl Read, sink: &dyn FileSink) -> Result<()> {
        let corrupt = |reason: String| self.corrupt(reason);
        let hostile = |reason: String| StoreError::Hostile {
            scope: self.r.scope.clone(),
            key: self.r.key.clone(),
            reason,
        };
        let mut small: BTreeMap<&str, &ManifestEntry> = self
            .manifest
            .entries
            .iter()
            .filter(|e| e.kind == EntryType::File && !e.blob && e.pack.is_none())
            .map(|e| (e.path.as_str(), e))
            .collect();
        let dec = zstd::Decoder::new(mfile).map_err(|e| corrupt(format!("manifest: {e}")))?;
        let mut archive = tar::Archive::new(dec);
        let mut entries = archive
            .entries()
            .map_err(|e| corrupt(format!("manifest tar: {e}")))?;
        let _ = entries.next(); // manifest.json, read and checked by parse_manifest_tar
        for ent in entries {
            let mut ent = ent.map_err(|e| corrupt(format!("manifest tar: {e}")))?;
            let path = ent
                .path()
                .map_err(|e| corrupt(format!("manifest tar: {e}")))?
                .to_str()
                .map(str::to_string)
                .ok_or_else(|| corrupt("a tar member name is not UTF-8".into()))?;
            if ent.header().entry_type() != tar::EntryType::Regular {
                return Err(hostile(format!(
                    "tar member {path:?} is not a regular file"
                )));
            }
            let Some(me) = small.remove(path.as_str()) else {
                return Err(hostile(format!(
                    "tar member {path:?} is not a small file of the manifest (or appears twice)"
                )));
            };
            if ent.size() != me.size {
                return Err(corrupt(format!(
                    "{path}: {} bytes stored, the manifest says {}",
                    ent.size(),
                    me.size
                )));
            }
            sink.file(&mut ent, me, &corrupt)?;
        }
        if let Some(missing) = small.keys().next() {
            return Err(corrupt(format!(
                "{missing} is missing from the manifest tarball"
            )));
        }
        Ok(())
    }

    /// Large files (each distinct blob fetched once) and packs of small files, in parallel,
    /// largest first. Returns the bytes read from the store.
    pub fn read_objects(&self, sink: &dyn FileSink, progress: &dyn Progress) -> Result<u64> {
        let mut by_blob: BTreeMap<&str, Vec<&ManifestEntry>> = BTreeMap::new();
        for e in self
            .manifest
            .entries
            .iter()
            .filter(|e| e.kind == EntryType::File && e.blob)
        {
            if let Some(h) = e.blake3.as_deref() {
                by_blob.entry(h).or_default().push(e);
            }
        }
        // Sizes were bounded by `validate`: these sums cannot overflow.
        let mut jobs: Vec<(bool, &str, Vec<&ManifestEntry>, u64)> = by_blob
            .into_iter()
            .map(|(h, users)| {
                let size = users[0].size;
                (false, h, users, size)
            })
            .chain(self.manifest.packs().into_iter().map(|(h, files)| {
                let size = files.iter().map(|e| e.size).sum();
                (true, h, files, size)
            }))
            .collect();
        jobs.sort_by_key(|j| std::cmp::Reverse(j.3));
        let downloaded: Vec<u64> = jobs
            .par_iter()
            .map(|(is_pack, hash, users, _)| {
                if *is_pack {
                    let res = self.read_pack(hash, users, sink, progress);
                    self.blame(|| pack_suspect(hash, users), res)
                } else {
                    let res = self.read_blob(hash, users, sink, progress);
                    self.blame(|| Suspect::Blob(hash.to_string()), res)
                }
            })
            .collect::<Result<_>>()?;
        Ok(downloaded.iter().sum())
    }

    fn open(
        &self,
        what: &str,
        hash: &str,
        first: &ManifestEntry,
    ) -> Result<crate::backend::ObjectReader> {
        let name = format::blob_name(hash);
        self.store
            .backend
            .get(&name)?
            .ok_or_else(|| self.corrupt(format!("{what} {name} ({}) is missing", first.path)))
    }

    fn read_blob(
        &self,
        hash: &str,
        users: &[&ManifestEntry],
        sink: &dyn FileSink,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let name = format::blob_name(hash);
        let corrupt = |reason: String| self.corrupt(format!("blob {name}: {reason}"));
        let mut counted = CountingReader {
            inner: self.open("blob", hash, users[0])?,
            n: 0,
        };
        let mut dec = zstd::Decoder::new(&mut counted).map_err(|e| corrupt(e.to_string()))?;
        let n = sink.file(&mut dec, users[0], &corrupt)?;
        progress.inc(n);
        for other in &users[1..] {
            sink.same_as(users[0], other)?;
            progress.inc(other.size);
        }
        Ok(counted.n)
    }

    fn read_pack(
        &self,
        hash: &str,
        files: &[&ManifestEntry],
        sink: &dyn FileSink,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let name = format::blob_name(hash);
        let corrupt = |reason: String| self.corrupt(format!("pack {name}: {reason}"));
        let mut counted = CountingReader {
            inner: self.open("pack", hash, files[0])?,
            n: 0,
        };
        let mut dec = zstd::Decoder::new(&mut counted).map_err(|e| corrupt(e.to_string()))?;
        for e in files {
            let n = sink.file(&mut (&mut dec).take(e.size), e, &corrupt)?;
            progress.inc(n);
        }
        let mut extra = [0u8; 1];
        if !matches!(dec.read(&mut extra), Ok(0)) {
            return Err(corrupt(
                "it holds more than the files the manifest lists".into(),
            ));
        }
        Ok(counted.n)
    }
}

fn pack_suspect(hash: &str, files: &[&ManifestEntry]) -> Suspect {
    Suspect::Pack(
        hash.to_string(),
        files
            .iter()
            .map(|e| (e.blake3.clone().unwrap_or_default(), e.size))
            .collect(),
    )
}

impl Store {
    /// Downloads an entry's manifest object into a temp file in `tmp_dir` (named
    /// `.cicache-manifest-*`), checks its size and hash, and reads its manifest.json.
    pub(crate) fn fetch_manifest(
        &self,
        r: &Ref,
        tmp_dir: &Path,
    ) -> Result<(Manifest, tempfile::NamedTempFile, u64)> {
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
            .prefix(&crate::cleanup::temp_prefix(
                crate::cleanup::MANIFEST_PREFIX,
            ))
            .tempfile_in(tmp_dir)
            .map_err(|e| StoreError::io(tmp_dir, e))?;
        let mut hw = HashWriter {
            inner: BufWriter::new(tmp.as_file()),
            hasher: blake3::Hasher::new(),
            n: 0,
        };
        let mut tracked = Tracked {
            inner: reader.take(r.manifest_size.saturating_add(1)),
            failed: false,
        };
        match io::copy(&mut tracked, &mut hw) {
            Ok(_) => {}
            Err(e) if tracked.failed => {
                return Err(corrupt(format!("reading its manifest failed ({e})")));
            }
            Err(e) => return Err(StoreError::io(tmp.path(), e)),
        }
        hw.flush().map_err(|e| StoreError::io(tmp.path(), e))?;
        let (n, digest) = (hw.n, hw.hasher.finalize());
        drop(hw);
        if n != r.manifest_size || digest.to_hex().as_str() != r.manifest {
            return Err(corrupt(format!(
                "its manifest {name} does not match its hash (truncated or altered)"
            )));
        }
        let file = tmp.reopen().map_err(|e| StoreError::io(tmp.path(), e))?;
        let dec = zstd::Decoder::new(file).map_err(|e| corrupt(format!("manifest: {e}")))?;
        let manifest = parse_manifest_tar(dec, &corrupt)?;
        Ok((manifest, tmp, n))
    }
}
