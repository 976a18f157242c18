//! `save`: a directory into an entry.
//!
//! Order of writes (invariant 2): lease, blobs, manifest, ref, then the lease is dropped. The
//! ref is the only thing that makes an entry visible and it is written last, atomically.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::PutMode;
use crate::error::{Result, StoreError};
use crate::format::{self, EntryType, Manifest, ManifestEntry, Ref};
use crate::progress::Progress;
use crate::rawzstd;
use crate::scan::{self, Scanned};
use crate::state::{self, DirState};
use crate::store::{Store, now_rfc3339};

#[derive(Debug, Clone)]
pub struct SaveRequest<'a> {
    pub scope: &'a str,
    pub key: &'a str,
    pub path: &'a Path,
    /// Replace an existing entry with this key.
    pub update: bool,
    /// Skip when the directory matches what was restored into it.
    pub if_changed: bool,
    pub excludes: &'a [String],
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SaveStatus {
    /// A new entry was published.
    Saved,
    /// The key already had an entry; nothing was written (use --update to replace it).
    Exists,
    /// The directory matches what was restored (`--if-changed`); nothing was written.
    Unchanged,
    /// Another agent published the same key while we saved; theirs was kept.
    Concurrent,
    /// The directory holds no files: nothing was written (an empty entry would "hit" on
    /// every later build and never fill). A warning says so.
    Empty,
    /// A cache problem kept the save from being made (the store is down, the directory is
    /// missing); `warnings` says which. Set by callers that turn such an error into a
    /// warning ([`SaveOutcome::failed`]); [`Store::save`] itself returns the error.
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct SaveOutcome {
    pub status: SaveStatus,
    pub scope: String,
    pub key: String,
    pub path: PathBuf,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Sum of file sizes.
    pub total_size: u64,
    /// Files read and hashed (the rest were known from the last restore or save).
    pub hashed_files: u64,
    pub hashed_bytes: u64,
    /// Distinct large files (blobs) the entry uses, and how many were new to the store.
    pub blobs: u64,
    pub blobs_uploaded: u64,
    /// Packs of small files the entry uses, and how many were new to the store.
    pub packs: u64,
    pub packs_uploaded: u64,
    /// Bytes written to the store (new blobs, new manifest, ref).
    pub bytes_uploaded: u64,
    pub manifest: String,
    /// The manifest of the last restore/save was reused (nothing changed).
    pub manifest_reused: bool,
    /// Size of the entry in the store (manifest and blobs).
    pub stored_size: u64,
    pub seconds: f64,
    pub warnings: Vec<String>,
}

/// Reads through, hashing, counting and reporting progress.
pub(crate) struct HashReader<'a, R> {
    pub inner: R,
    pub hasher: blake3::Hasher,
    pub n: u64,
    pub progress: &'a dyn Progress,
}

impl<R: Read> Read for HashReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.hasher.update(&buf[..k]);
        self.n += k as u64;
        self.progress.inc(k as u64);
        Ok(k)
    }
}

/// Writes through, hashing and counting.
pub(crate) struct HashWriter<W> {
    pub inner: W,
    pub hasher: blake3::Hasher,
    pub n: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.hasher.update(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn hash_file(path: &Path, progress: &dyn Progress) -> io::Result<(String, u64)> {
    let f = File::open(path)?;
    let mut r = HashReader {
        inner: f,
        hasher: blake3::Hasher::new(),
        n: 0,
        progress,
    };
    copy_large(&mut r, &mut io::sink())?;
    Ok((r.hasher.finalize().to_hex().to_string(), r.n))
}

fn changed(path: &Path) -> StoreError {
    StoreError::Other(format!(
        "{} changed while it was being saved; nothing was published, run the save again",
        path.display()
    ))
}

/// The manifest entry of a scanned path.
fn manifest_entry(s: &Scanned, hash: Option<&String>) -> ManifestEntry {
    let st = &s.stamp;
    ManifestEntry {
        path: s.rel.clone(),
        kind: st.kind,
        mode: st.mode,
        mtime_ns: st.mtime_ns,
        size: st.size,
        blake3: hash.cloned(),
        blob: st.kind == EntryType::File && st.size >= format::LARGE_FILE,
        pack: None,
        target: st.target.clone(),
    }
}

/// A file that goes into a pack: where it is now, its size and hash.
type PackFile = (PathBuf, u64, String);

/// Puts every small file into a pack (runs of files in manifest order, cut by path: see
/// [`format::pack_cut_after`]), sets its `pack`, and returns the packs by name.
fn assign_packs(
    mentries: &mut [ManifestEntry],
    scanned: &[Scanned],
) -> BTreeMap<String, Vec<PackFile>> {
    let mut packs = BTreeMap::new();
    let mut run: Vec<usize> = Vec::new();
    let mut run_bytes = 0u64;
    let close = |run: &mut Vec<usize>,
                 mentries: &mut [ManifestEntry],
                 packs: &mut BTreeMap<String, Vec<PackFile>>| {
        if run.is_empty() {
            return;
        }
        let hash = format::pack_hash(run.iter().map(|&i| {
            (
                mentries[i].blake3.as_deref().unwrap_or_default(),
                mentries[i].size,
            )
        }));
        let files = run
            .iter()
            .map(|&i| {
                mentries[i].pack = Some(hash.clone());
                (
                    scanned[i].abs.clone(),
                    mentries[i].size,
                    mentries[i].blake3.clone().unwrap_or_default(),
                )
            })
            .collect();
        packs.insert(hash, files);
        run.clear();
    };
    for i in 0..mentries.len() {
        let e = &mentries[i];
        if e.kind != EntryType::File || e.blob {
            continue;
        }
        run.push(i);
        run_bytes += e.size;
        if format::pack_cut_after(&e.path) || run_bytes >= format::PACK_MAX {
            close(&mut run, mentries, &mut packs);
            run_bytes = 0;
        }
    }
    close(&mut run, mentries, &mut packs);
    packs
}

/// Threads for writing blobs and packs: more than the cores, so that one waiting for its
/// fsync (or for the network) does not leave a core idle.
fn upload_threads() -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    (cores * 2).max(4)
}

/// A temp file being written that asks the kernel to start writing its pages to disk every
/// few MiB (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which does not wait). The fsync before
/// the object is published then waits only for the tail, and the disk works while the CPU
/// hashes and compresses the next pieces.
pub(crate) struct WritebackFile<'a> {
    file: &'a File,
    written: u64,
    kicked: u64,
}

const WRITEBACK_STEP: u64 = 8 * 1024 * 1024;

impl<'a> WritebackFile<'a> {
    pub(crate) fn new(file: &'a File) -> Self {
        WritebackFile {
            file,
            written: 0,
            kicked: 0,
        }
    }

    fn kick(&mut self) {
        use std::os::fd::AsRawFd;
        if self.written > self.kicked {
            // SAFETY: a valid open fd and a range inside what was written; the call only
            // starts writeback, and its failure only loses that hint.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    self.kicked as libc::off64_t,
                    (self.written - self.kicked) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.kicked = self.written;
        }
    }
}

impl Write for WritebackFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let k = (&*self.file).write(buf)?;
        self.written += k as u64;
        if self.written - self.kicked >= WRITEBACK_STEP {
            self.kick();
        }
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.kick();
        Ok(())
    }
}

/// What a save may have to write.
enum Upload {
    Blob {
        hash: String,
        src: PathBuf,
        size: u64,
    },
    Pack {
        hash: String,
        files: Vec<PackFile>,
        size: u64,
    },
}

impl Upload {
    fn name(&self) -> String {
        match self {
            Upload::Blob { hash, .. } | Upload::Pack { hash, .. } => format::blob_name(hash),
        }
    }
    fn size(&self) -> u64 {
        match self {
            Upload::Blob { size, .. } | Upload::Pack { size, .. } => *size,
        }
    }
}

/// True when the scanned tree is the recorded one: same paths, types, modes, targets, and for
/// files the same size, mtime and hash. Directory mtimes are not compared.
fn tree_matches(prev: &DirState, scanned: &[Scanned], hashes: &[Option<String>]) -> bool {
    if prev.entries.len() != scanned.len() || prev.manifest.is_empty() {
        return false;
    }
    scanned.iter().zip(hashes).all(|(s, h)| {
        let Some(p) = prev.entries.get(&s.rel) else {
            return false;
        };
        p.kind == s.stamp.kind
            && p.mode == s.stamp.mode
            && p.target == s.stamp.target
            && (p.kind != EntryType::File
                || (p.size == s.stamp.size && p.mtime_ns == s.stamp.mtime_ns && p.blake3 == *h))
    })
}

pub(crate) struct BuiltManifest {
    pub file: tempfile::TempPath,
    pub hash: String,
    pub size: u64,
}

/// Writes the manifest tarball into `staging`: only manifest.json (format 2 keeps the small
/// files in packs).
pub(crate) fn build_manifest(entries: Vec<ManifestEntry>, staging: &Path) -> Result<BuiltManifest> {
    let manifest = Manifest {
        format: format::MANIFEST_FORMAT,
        entries,
    };
    let json = serde_json::to_vec(&manifest)
        .map_err(|e| StoreError::Other(format!("encoding the manifest: {e}")))?;
    let tmp = tempfile::Builder::new()
        .prefix(".manifest-")
        .tempfile_in(staging)
        .map_err(|e| StoreError::io(staging, e))?;
    let io_err = |e: io::Error| StoreError::io(tmp.path(), e);
    let hw = HashWriter {
        inner: BufWriter::with_capacity(256 * 1024, tmp.as_file()),
        hasher: blake3::Hasher::new(),
        n: 0,
    };
    let enc = zstd::Encoder::new(hw, rawzstd::LEVEL).map_err(io_err)?;
    let mut tar = tar::Builder::new(enc);
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, format::MANIFEST_PATH, &json[..])
        .map_err(io_err)?;
    let enc = tar.into_inner().map_err(io_err)?;
    let mut hw = enc.finish().map_err(io_err)?;
    hw.flush().map_err(io_err)?;
    let hash = hw.hasher.finalize().to_hex().to_string();
    let size = hw.n;
    drop(hw);
    Ok(BuiltManifest {
        file: tmp.into_temp_path(),
        hash,
        size,
    })
}

/// A scanned and hashed tree, ready to be stored.
struct HashedTree {
    entries: Vec<Scanned>,
    /// Content hash of each file (None for directories and symlinks).
    hashes: Vec<Option<String>>,
    /// What the last restore or save recorded for this directory.
    prev: Option<DirState>,
    /// Large files already compressed while they were hashed, by hash.
    prepared: BTreeMap<String, CompressedBlob>,
    /// Where temp files go (the store's tmp dir for a directory store).
    staging: PathBuf,
}

impl HashedTree {
    /// The tree is the one recorded (same paths, types, modes, file sizes, mtimes, hashes),
    /// with the same excludes.
    fn unchanged(&self, excludes: &[String]) -> bool {
        self.prev
            .as_ref()
            .is_some_and(|p| p.excludes == excludes && tree_matches(p, &self.entries, &self.hashes))
    }
}

/// What a save writes: blobs and packs not yet in the store.
struct Planned {
    uploads: Vec<Upload>,
    mentries: Vec<ManifestEntry>,
}

impl Store {
    /// Saves a directory as `scope/key`.
    ///
    /// Steps: the key's entry already there (nothing to do, unless `update`); scan and hash
    /// the tree; an empty tree saves nothing; `--if-changed` skips a tree that is the entry
    /// under this key; then the lease, the blobs and packs the store lacks, the manifest, and
    /// the ref, published last.
    pub fn save(&self, req: &SaveRequest, progress: &dyn Progress) -> Result<SaveOutcome> {
        crate::key::validate_key(req.key)?;
        crate::key::validate_scope(req.scope)?;
        let start = Instant::now();
        let mut out = new_outcome(req);
        let mut update = req.update;
        if !update {
            match self.read_ref(req.scope, req.key) {
                Ok(Some(r)) => {
                    out.status = SaveStatus::Exists;
                    out.manifest = r.manifest;
                    out.stored_size = r.stored_size;
                    out.total_size = r.total_size;
                    out.seconds = start.elapsed().as_secs_f64();
                    return Ok(out);
                }
                Ok(None) => {}
                Err(e) if e.is_corrupt() => {
                    out.warnings
                        .push(format!("{e}; replacing it with this save"));
                    update = true;
                }
                Err(e) => return Err(e),
            }
        }
        let path = resolve_dir(req.path)?;
        let tree = self.hash_tree(&path, req.excludes, progress, &mut out)?;
        if out.files == 0 && out.symlinks == 0 {
            out.status = SaveStatus::Empty;
            out.warnings.push(format!(
                "{} holds no files; nothing was saved (an empty cache would hit on every later build); check that the tool wrote its cache there",
                req.path.display()
            ));
            out.seconds = start.elapsed().as_secs_f64();
            return Ok(out);
        }
        let unchanged = tree.unchanged(req.excludes);
        if req.if_changed
            && unchanged
            && let Some(p) = &tree.prev
            && p.scope == req.scope
            && p.key == req.key
        {
            // The tree is the entry under this very key (restored or saved): nothing new.
            // After a restore-key hit the key differs, and the tree is saved under the new
            // key (a ref only, when the manifest is reused).
            out.status = SaveStatus::Unchanged;
            out.manifest = p.manifest.clone();
            out.seconds = start.elapsed().as_secs_f64();
            return Ok(out);
        }
        let lease = self.take_lease(req.scope, req.key)?;
        let planned = self.plan(&tree, &mut out)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(upload_threads())
            .build()
            .map_err(|e| StoreError::Other(format!("starting upload threads: {e}")))?;
        let publisher = Publisher {
            store: self,
            batch: self.backend.batches_puts(),
            pending: Default::default(),
        };
        let staging = tree.staging.clone();
        let mut stored = self.upload(
            planned.uploads,
            tree.prepared,
            &staging,
            &pool,
            &publisher,
            progress,
            &mut out,
        )?;
        let (manifest_hash, manifest_size) = self.store_manifest(
            tree.prev.as_ref().filter(|_| unchanged),
            planned.mentries,
            &staging,
            &publisher,
            &mut out,
        )?;
        stored = stored.saturating_add(manifest_size);
        publisher.flush(&pool)?;
        lease.check(req.scope, req.key)?;
        crash_point("before-ref");
        let r = Ref {
            format: 1,
            scope: req.scope.to_string(),
            key: req.key.to_string(),
            manifest: manifest_hash.clone(),
            manifest_size,
            entries: tree.entries.len() as u64,
            total_size: out.total_size,
            stored_size: stored,
            created: now_rfc3339(),
            tool: self.tool.clone(),
            host: self.host.clone(),
        };
        self.publish_ref(&r, update, &mut out)?;
        drop(lease);
        out.manifest = manifest_hash;
        out.stored_size = stored;
        // The recorded state already describes this tree (the manifest was reused and no
        // file needed hashing, so every stamp matched): nothing to record, and a tree of
        // thousands of files is not written out again.
        if out.status == SaveStatus::Saved && !(out.manifest_reused && out.hashed_files == 0) {
            record_saved(&path, req, &r, tree.entries, tree.hashes);
        }
        out.seconds = start.elapsed().as_secs_f64();
        Ok(out)
    }

    /// Scans the tree and hashes what the last restore/save did not already hash; counts
    /// files, dirs, symlinks and bytes into `out`.
    fn hash_tree(
        &self,
        path: &Path,
        excludes: &[String],
        progress: &dyn Progress,
        out: &mut SaveOutcome,
    ) -> Result<HashedTree> {
        let globs = scan::build_excludes(excludes)?;
        let scanned = scan::scan(path, &globs)?;
        out.warnings
            .extend(scanned.skipped.iter().map(|s| format!("not saved: {s}")));
        let entries = scanned.entries;
        let prev = state::load(path);
        let known: Vec<Option<String>> = entries
            .iter()
            .map(|s| {
                let p = prev.as_ref()?.entries.get(&s.rel)?;
                (s.stamp.kind == EntryType::File && p.same_file(&s.stamp))
                    .then(|| p.blake3.clone())
                    .flatten()
            })
            .collect();
        let to_hash: u64 = entries
            .iter()
            .zip(&known)
            .filter(|(s, k)| s.stamp.kind == EntryType::File && k.is_none())
            .map(|(s, _)| s.stamp.size)
            .sum();
        // A large file nobody hashed yet is, on this agent's own tree (a state exists) or for
        // an empty store, almost surely new to the store: it is compressed into its blob while
        // it is hashed, so it is read once. Otherwise (a tree that came another way, a store
        // with entries) it is only hashed, and compressed later if the store lacks it.
        let staging = self
            .backend
            .staging_dir()
            .unwrap_or_else(std::env::temp_dir);
        let fuse = prev.is_some()
            || self
                .backend
                .list(&format!("{}/refs/", format::FORMAT_DIR))?
                .is_empty();
        let prepared: std::sync::Mutex<BTreeMap<String, CompressedBlob>> = Default::default();
        progress.start("hashing", Some(to_hash));
        let hashed_files = AtomicU64::new(0);
        let hashes: Vec<Option<String>> = entries
            .par_iter()
            .zip(known.into_par_iter())
            .map(|(s, k)| -> Result<Option<String>> {
                if s.stamp.kind != EntryType::File || k.is_some() {
                    return Ok(k);
                }
                let h = if fuse && s.stamp.size >= format::LARGE_FILE {
                    let b = compress_blob(&s.abs, &staging, progress)?;
                    if b.size != s.stamp.size {
                        return Err(changed(&s.abs));
                    }
                    let h = b.hash.clone();
                    if let Ok(mut p) = prepared.lock() {
                        p.insert(h.clone(), b);
                    }
                    h
                } else {
                    let (h, n) =
                        hash_file(&s.abs, progress).map_err(|e| StoreError::io(&s.abs, e))?;
                    if n != s.stamp.size {
                        return Err(changed(&s.abs));
                    }
                    h
                };
                hashed_files.fetch_add(1, Ordering::Relaxed);
                Ok(Some(h))
            })
            .collect::<Result<_>>()?;
        progress.finish();
        out.hashed_files = hashed_files.into_inner();
        out.hashed_bytes = to_hash;
        for s in &entries {
            match s.stamp.kind {
                EntryType::File => {
                    out.files += 1;
                    out.total_size += s.stamp.size;
                }
                EntryType::Dir => out.dirs += 1,
                EntryType::Symlink => out.symlinks += 1,
            }
        }
        Ok(HashedTree {
            entries,
            hashes,
            prev,
            prepared: prepared.into_inner().unwrap_or_default(),
            staging,
        })
    }

    /// The manifest entries, and the blobs (each distinct large file once) and packs (the
    /// small files, in runs) the entry needs.
    fn plan(&self, tree: &HashedTree, out: &mut SaveOutcome) -> Result<Planned> {
        let mut mentries: Vec<ManifestEntry> = tree
            .entries
            .iter()
            .zip(&tree.hashes)
            .map(|(s, h)| manifest_entry(s, h.as_ref()))
            .collect();
        let packs = assign_packs(&mut mentries, &tree.entries);
        let mut blobs: BTreeMap<String, (PathBuf, u64)> = BTreeMap::new();
        for (s, h) in tree.entries.iter().zip(&tree.hashes) {
            if let Some(h) = h
                && s.stamp.size >= format::LARGE_FILE
            {
                blobs
                    .entry(h.clone())
                    .or_insert_with(|| (s.abs.clone(), s.stamp.size));
            }
        }
        out.blobs = blobs.len() as u64;
        out.packs = packs.len() as u64;
        let uploads = blobs
            .into_iter()
            .map(|(hash, (src, size))| Upload::Blob { hash, src, size })
            .chain(packs.into_iter().map(|(hash, files)| Upload::Pack {
                size: files.iter().map(|f| f.1).sum(),
                hash,
                files,
            }))
            .collect();
        Ok(Planned { uploads, mentries })
    }

    /// Writes the blobs and packs the store lacks (largest first, so the long ones start
    /// early and the small ones fill the gaps). Returns the stored size of all of them.
    #[allow(clippy::too_many_arguments)]
    fn upload(
        &self,
        mut uploads: Vec<Upload>,
        mut prepared: BTreeMap<String, CompressedBlob>,
        staging: &Path,
        pool: &rayon::ThreadPool,
        publisher: &Publisher,
        progress: &dyn Progress,
        out: &mut SaveOutcome,
    ) -> Result<u64> {
        let heads: Vec<Option<u64>> = pool.install(|| {
            uploads
                .par_iter()
                .map(|u| Ok(self.backend.head(&u.name())?.map(|i| i.size)))
                .collect::<Result<_>>()
        })?;
        let mut stored = 0u64;
        let mut missing = Vec::new();
        for (u, head) in uploads.drain(..).zip(heads) {
            match head {
                Some(n) => stored = stored.saturating_add(n),
                None => {
                    let ready = match &u {
                        Upload::Blob { hash, .. } => prepared.remove(hash),
                        Upload::Pack { .. } => None,
                    };
                    missing.push((u, ready));
                }
            }
        }
        drop(prepared); // blobs the store has already: their temp files go
        missing.sort_by_key(|u| std::cmp::Reverse(u.0.size()));
        progress.start(
            self.transfer_phase(true),
            Some(missing.iter().map(|u| u.0.size()).sum()),
        );
        let uploaded: Vec<(bool, u64)> = pool.install(|| {
            missing
                .into_par_iter()
                .map(|(u, ready)| match (u, ready) {
                    (Upload::Blob { hash, .. }, Some(b)) => {
                        publisher.publish(format::blob_name(&hash), b.file)?;
                        progress.inc(b.size);
                        Ok((false, b.stored))
                    }
                    (Upload::Blob { hash, src, size }, None) => {
                        let b = compress_blob(&src, staging, progress)?;
                        if b.size != size || b.hash != hash {
                            return Err(changed(&src));
                        }
                        publisher.publish(format::blob_name(&hash), b.file)?;
                        Ok((false, b.stored))
                    }
                    (Upload::Pack { hash, files, .. }, _) => {
                        let (file, stored) = write_pack(&files, staging, progress)?;
                        publisher.publish(format::blob_name(&hash), file)?;
                        Ok((true, stored))
                    }
                })
                .collect::<Result<_>>()
        })?;
        progress.finish();
        out.blobs_uploaded = uploaded.iter().filter(|u| !u.0).count() as u64;
        out.packs_uploaded = uploaded.iter().filter(|u| u.0).count() as u64;
        let new_bytes = uploaded.iter().map(|u| u.1).sum::<u64>();
        out.bytes_uploaded += new_bytes;
        Ok(stored.saturating_add(new_bytes))
    }

    /// The manifest: the recorded one reused when the tree is unchanged (and the store still
    /// has it), else built and written. Returns its hash and size.
    fn store_manifest(
        &self,
        reuse: Option<&DirState>,
        mentries: Vec<ManifestEntry>,
        staging: &Path,
        publisher: &Publisher,
        out: &mut SaveOutcome,
    ) -> Result<(String, u64)> {
        if let Some(p) = reuse
            && let Some(info) = self.backend.head(&format::manifest_name(&p.manifest))?
        {
            out.manifest_reused = true;
            return Ok((p.manifest.clone(), info.size));
        }
        let built = build_manifest(mentries, staging)?;
        let name = format::manifest_name(&built.hash);
        if self.backend.head(&name)?.is_none() {
            publisher.publish(name, built.file)?;
            out.bytes_uploaded += built.size;
        }
        Ok((built.hash, built.size))
    }

    /// Publishes the ref (create-new, or replacing with `update`) and marks the entry used.
    fn publish_ref(&self, r: &Ref, update: bool, out: &mut SaveOutcome) -> Result<()> {
        let data = serde_json::to_vec_pretty(r).map_err(|e| StoreError::Other(e.to_string()))?;
        let mode = if update {
            PutMode::Overwrite
        } else {
            PutMode::CreateNew
        };
        let name = format::ref_name(&r.scope, &r.key);
        if self.backend.put_bytes(&name, &data, mode)? {
            out.bytes_uploaded += data.len() as u64;
            let _ = self.backend.put_marker(
                &format::used_name(&r.scope, &r.key),
                now_rfc3339().as_bytes(),
                PutMode::Overwrite,
            );
        } else {
            out.status = SaveStatus::Concurrent;
        }
        Ok(())
    }
}

/// Publishes a save's objects: each as soon as it is written, or, for a backend that makes
/// objects durable together, all at the end (one journal commit for all).
struct Publisher<'a> {
    store: &'a Store,
    batch: bool,
    pending: std::sync::Mutex<Vec<(String, tempfile::TempPath)>>,
}

impl Publisher<'_> {
    fn publish(&self, name: String, file: tempfile::TempPath) -> Result<()> {
        if self.batch {
            if let Ok(mut p) = self.pending.lock() {
                p.push((name, file));
            }
            Ok(())
        } else {
            crash_point("blob");
            Ok(self.store.backend.put_file(&name, &file)?)
        }
    }

    /// Publishes what was batched.
    fn flush(self, pool: &rayon::ThreadPool) -> Result<()> {
        let pending = self.pending.into_inner().unwrap_or_default();
        if pending.is_empty() {
            return Ok(());
        }
        let items: Vec<(String, &Path)> = pending
            .iter()
            .map(|(n, f)| (n.clone(), f.as_ref()))
            .collect();
        pool.install(|| self.store.backend.put_files(&items))?;
        crash_point("blob");
        Ok(())
    }
}

impl SaveStatus {
    /// The word of `save --json`'s `status` (and of the text result).
    pub fn as_str(self) -> &'static str {
        match self {
            SaveStatus::Saved => "saved",
            SaveStatus::Exists => "exists",
            SaveStatus::Unchanged => "unchanged",
            SaveStatus::Concurrent => "concurrent",
            SaveStatus::Empty => "empty",
            SaveStatus::Failed => "failed",
        }
    }
}

impl SaveOutcome {
    /// A save that could not be made: every field of a save document, nothing counted, the
    /// reason in `warnings`.
    pub fn failed(scope: &str, key: &str, path: &Path, warning: String) -> SaveOutcome {
        let mut o = new_outcome(&SaveRequest {
            scope,
            key,
            path,
            update: false,
            if_changed: false,
            excludes: &[],
        });
        o.status = SaveStatus::Failed;
        o.warnings.push(warning);
        o
    }
}

fn new_outcome(req: &SaveRequest) -> SaveOutcome {
    SaveOutcome {
        status: SaveStatus::Saved,
        scope: req.scope.to_string(),
        key: req.key.to_string(),
        path: req.path.to_path_buf(),
        files: 0,
        dirs: 0,
        symlinks: 0,
        total_size: 0,
        hashed_files: 0,
        hashed_bytes: 0,
        blobs: 0,
        blobs_uploaded: 0,
        packs: 0,
        packs_uploaded: 0,
        bytes_uploaded: 0,
        manifest: String::new(),
        manifest_reused: false,
        stored_size: 0,
        seconds: 0.0,
        warnings: Vec::new(),
    }
}

/// The directory to save: `path`, or the directory a symlink at `path` points to (the same
/// treatment restore gives it).
fn resolve_dir(path: &Path) -> Result<PathBuf> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => match std::fs::metadata(path) {
            Ok(t) if t.is_dir() => std::fs::canonicalize(path).map_err(|e| StoreError::io(path, e)),
            _ => Err(StoreError::NotADirectory {
                path: path.to_path_buf(),
            }),
        },
        _ => Ok(path.to_path_buf()),
    }
}

/// Records the saved tree as the directory's state (for the next save and restore).
fn record_saved(
    path: &Path,
    req: &SaveRequest,
    r: &Ref,
    entries: Vec<Scanned>,
    hashes: Vec<Option<String>>,
) {
    let mut st = state::new_state(path);
    st.manifest = r.manifest.clone();
    st.manifest_size = r.manifest_size;
    st.stored_size = r.stored_size;
    st.excludes = req.excludes.to_vec();
    st.origin = "save".into();
    st.scope = req.scope.to_string();
    st.key = req.key.to_string();
    for (s, h) in entries.into_iter().zip(hashes) {
        let mut stamp = s.stamp;
        stamp.blake3 = h;
        st.entries.insert(s.rel, stamp);
    }
    state::store(st);
}

/// Writes a pack into a temp file: its files back to back, zstd, each checked against the
/// hash the manifest gives it. Returns the file and its size.
fn write_pack(
    files: &[PackFile],
    staging: &Path,
    progress: &dyn Progress,
) -> Result<(tempfile::TempPath, u64)> {
    let tmp = tempfile::Builder::new()
        .prefix(".pack-")
        .tempfile_in(staging)
        .map_err(|e| StoreError::io(staging, e))?;
    let tmp_err = |e: io::Error| StoreError::io(tmp.path(), e);
    let w = BufWriter::with_capacity(256 * 1024, WritebackFile::new(tmp.as_file()));
    let mut enc = zstd::Encoder::new(w, rawzstd::LEVEL).map_err(tmp_err)?;
    let mut buf = Vec::new();
    for (src, size, blake3) in files {
        buf.clear();
        File::open(src)
            .and_then(|f| f.take(size + 1).read_to_end(&mut buf))
            .map_err(|e| StoreError::io(src, e))?;
        if buf.len() as u64 != *size || blake3::hash(&buf).to_hex().as_str() != blake3 {
            return Err(changed(src));
        }
        enc.write_all(&buf).map_err(tmp_err)?;
        progress.inc(*size);
    }
    let mut w = enc.finish().map_err(tmp_err)?;
    w.flush().map_err(tmp_err)?;
    drop(w);
    let stored = tmp.as_file().metadata().map_err(tmp_err)?.len();
    Ok((tmp.into_temp_path(), stored))
}

/// A large file compressed into a temp file, with the hash and size of what was read.
pub(crate) struct CompressedBlob {
    pub file: tempfile::TempPath,
    pub hash: String,
    pub size: u64,
    pub stored: u64,
}

/// Reads a large file once, hashing it and writing its blob (zstd, or raw blocks when the
/// first 128 KiB do not compress) into a temp file in `staging`.
pub(crate) fn compress_blob(
    src: &Path,
    staging: &Path,
    progress: &dyn Progress,
) -> Result<CompressedBlob> {
    {
        let tmp = tempfile::Builder::new()
            .prefix(".blob-")
            .tempfile_in(staging)
            .map_err(|e| StoreError::io(staging, e))?;
        let io_err = |e: io::Error| StoreError::io(src, e);
        let mut f = File::open(src).map_err(io_err)?;
        let size = f.metadata().map_err(io_err)?.len();
        let mut sample = vec![0u8; 128 * 1024];
        let mut n = 0;
        while n < sample.len() {
            let k = f.read(&mut sample[n..]).map_err(io_err)?;
            if k == 0 {
                break;
            }
            n += k;
        }
        sample.truncate(n);
        let compress = rawzstd::compressible(&sample);
        let mut reader = HashReader {
            inner: io::Cursor::new(sample).chain(f),
            hasher: blake3::Hasher::new(),
            n: 0,
            progress,
        };
        let mut w = BufWriter::with_capacity(256 * 1024, WritebackFile::new(tmp.as_file()));
        if compress {
            let mut enc = zstd::Encoder::new(&mut w, rawzstd::LEVEL).map_err(io_err)?;
            if size > 8 * 1024 * 1024 {
                let _ = enc.multithread(2);
            }
            copy_large(&mut reader, &mut enc).map_err(io_err)?;
            enc.finish().map_err(io_err)?;
        } else {
            rawzstd::write_raw_frame(&mut reader, &mut w, |_| {}).map_err(io_err)?;
        }
        w.flush().map_err(io_err)?;
        drop(w);
        let stored = tmp
            .as_file()
            .metadata()
            .map_err(|e| StoreError::io(tmp.path(), e))?
            .len();
        Ok(CompressedBlob {
            hash: reader.hasher.finalize().to_hex().to_string(),
            size: reader.n,
            stored,
            file: tmp.into_temp_path(),
        })
    }
}

/// Test hook: `CICACHE_CRASH_AT=<point>` aborts the process there, as a kill -9 would.
pub(crate) fn crash_point(point: &str) {
    if let Ok(p) = std::env::var("CICACHE_CRASH_AT")
        && p == point
    {
        std::process::abort();
    }
}

/// `io::copy` with a 256 KiB buffer: blake3 and zstd are much faster on large pieces than on
/// io::copy's 8 KiB ones.
pub(crate) fn copy_large(r: &mut impl Read, w: &mut impl Write) -> io::Result<u64> {
    copy_sized(r, w, u64::MAX)
}

/// [`copy_large`] of a stream of about `size` bytes: the buffer is no larger than needed, so
/// thousands of small files do not each zero a 256 KiB buffer.
pub(crate) fn copy_sized(r: &mut impl Read, w: &mut impl Write, size: u64) -> io::Result<u64> {
    let len = size.saturating_add(1).clamp(8 * 1024, 256 * 1024) as usize;
    let mut buf = vec![0u8; len];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..k])?;
        n += k as u64;
    }
}
