//! `restore`: an entry into a directory.
//!
//! Everything is written into a staging directory beside the target (same filesystem), every
//! byte checked against the manifest's hashes, and only then swapped into place with one
//! `renameat2(RENAME_EXCHANGE)`. An entry that is refused, for damage, for being hostile or
//! because it cannot be written here (too large, a name too long), is a miss with a warning
//! and the next restore key is tried; the target is never half written. Damage a restore
//! proves is healed (`heal.rs`). Only a store that fails ends the restore with an error.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::backend::PutMode;
use crate::entry::{Corrupt, EntryReader, FileSink, Suspect};
use crate::error::{Result, StoreError};
use crate::format::{self, EntryType, Manifest, ManifestEntry, Ref};
use crate::heal::HealMode;
use crate::progress::Progress;
use crate::state;
use crate::store::{Store, now_rfc3339};

pub use crate::entry::{MAX_FILE_SIZE, validate};

#[derive(Debug, Clone)]
pub struct RestoreRequest<'a> {
    pub scope: &'a str,
    pub fallback_scopes: &'a [String],
    pub key: &'a str,
    pub restore_keys: &'a [String],
    /// The target directory. A symlink to a directory is followed: the directory it points
    /// to is replaced, the link stays.
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
    /// Files, directories and symlinks restored; `None` with `lookup_only` (only the
    /// manifest knows them, and a lookup reads the ref alone: see `entries`).
    pub files: Option<u64>,
    pub dirs: Option<u64>,
    pub symlinks: Option<u64>,
    /// Files, directories and symlinks in the entry, as its ref says (0 on a miss).
    pub entries: u64,
    pub total_size: u64,
    /// Bytes read from the store.
    pub bytes_downloaded: u64,
    pub manifest: Option<String>,
    pub created: Option<String>,
    pub seconds: f64,
    /// Entries skipped as damaged or refused, and other cache problems.
    pub warnings: Vec<String>,
    /// Damaged objects this restore removed from the store (see `heal.rs`): the next save
    /// writes them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects_removed: Vec<String>,
    /// Damaged entries (`scope/key`) this restore removed: the next save of the key writes it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries_removed: Vec<String>,
    /// Leftovers of killed restores (staging dirs, temp files) removed beside the target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leftovers_removed: Vec<PathBuf>,
}

impl RestoreOutcome {
    /// A restore that found nothing (yet): counts 0, or null with `lookup_only`.
    pub fn empty(key: &str, path: &Path, lookup_only: bool) -> RestoreOutcome {
        let zero = (!lookup_only).then_some(0);
        RestoreOutcome {
            key: key.to_string(),
            path: path.to_path_buf(),
            lookup_only,
            files: zero,
            dirs: zero,
            symlinks: zero,
            ..Default::default()
        }
    }
}

/// The keys to try in one scope: the key, then the refs matching each restore-key prefix
/// (newest first), listed only when the key did not restore.
struct Candidates {
    keys: Vec<String>,
    next: usize,
    listed: bool,
}

impl Candidates {
    fn next(&mut self, store: &Store, scope: &str, prefixes: &[String]) -> Result<Option<String>> {
        if self.next == self.keys.len() && !self.listed {
            self.listed = true;
            for prefix in prefixes {
                self.keys
                    .extend(store.list_refs(scope, prefix)?.into_iter().map(|(k, _)| k));
            }
        }
        let k = self.keys.get(self.next).cloned();
        self.next += 1;
        Ok(k)
    }
}

/// A restore's target, resolved.
struct Target {
    /// Absolute; a symlink to a directory resolved to the directory.
    path: PathBuf,
    /// Its parent, where the staging dir goes.
    parent: PathBuf,
}

impl Store {
    /// Restores the first entry that matches, in lookup order: the key in the own scope, each
    /// restore-key prefix there (newest first), then the same in each fallback scope.
    pub fn restore(&self, req: &RestoreRequest, progress: &dyn Progress) -> Result<RestoreOutcome> {
        crate::key::validate_key(req.key)?;
        crate::key::validate_scope(req.scope)?;
        let start = Instant::now();
        let mut out = RestoreOutcome::empty(req.key, req.path, req.lookup_only);
        let mut scopes: Vec<&str> = vec![req.scope];
        for s in req.fallback_scopes {
            crate::key::validate_scope(s)?;
            if !scopes.contains(&s.as_str()) {
                scopes.push(s);
            }
        }
        let target = if req.lookup_only {
            None
        } else {
            let t = self.prepare_target(req.path)?;
            out.leftovers_removed = crate::cleanup::clear_stale(&t.parent);
            Some(t)
        };
        let mut tried: HashSet<(String, String)> = HashSet::new();
        for (i, scope) in scopes.iter().enumerate() {
            let mut candidates = Candidates {
                keys: vec![req.key.to_string()],
                next: 0,
                listed: false,
            };
            while let Some(key) = candidates.next(self, scope, req.restore_keys)? {
                if !tried.insert((scope.to_string(), key.clone())) {
                    continue;
                }
                match self.try_restore(scope, &key, target.as_ref(), progress, &mut out) {
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
                    Err(e) if crate::heal::is_refusal(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        out.seconds = start.elapsed().as_secs_f64();
        Ok(out)
    }

    /// Resolves the target (following a symlink to a directory), refuses one that holds the
    /// store or the state dir (restoring there would roll them back to the saved snapshot),
    /// and makes sure its parent exists.
    fn prepare_target(&self, path: &Path) -> Result<Target> {
        let abs = std::path::absolute(path).map_err(|e| StoreError::io(path, e))?;
        let resolved = match fs::symlink_metadata(&abs) {
            Ok(m) if m.file_type().is_symlink() => match fs::metadata(&abs) {
                Ok(t) if t.is_dir() => {
                    fs::canonicalize(&abs).map_err(|e| StoreError::io(&abs, e))?
                }
                _ => return Err(StoreError::NotADirectory { path: abs }),
            },
            Ok(m) if !m.is_dir() => return Err(StoreError::NotADirectory { path: abs }),
            _ => abs,
        };
        let parent =
            resolved
                .parent()
                .map(Path::to_path_buf)
                .ok_or_else(|| StoreError::NotADirectory {
                    path: resolved.clone(),
                })?;
        fs::create_dir_all(&parent).map_err(|e| StoreError::io(&parent, e))?;
        let real = canonical(&resolved);
        let mut guarded = vec![("the state dir", canonical(&state::state_dir()))];
        if let Some(root) = self.backend.local_root() {
            guarded.push(("the store", canonical(&root)));
        }
        for (what, p) in guarded {
            if p.starts_with(&real) || real.starts_with(&p) {
                return Err(StoreError::TargetHoldsStore {
                    path: resolved,
                    what,
                    other: p,
                });
            }
        }
        Ok(Target {
            path: resolved,
            parent,
        })
    }

    /// Tries one entry. `Ok(false)`: no such entry. `Ok(true)`: restored (or found,
    /// lookup-only). A refused entry is an error, with its warning (and what healing did)
    /// already in `out.warnings`.
    fn try_restore(
        &self,
        scope: &str,
        key: &str,
        target: Option<&Target>,
        progress: &dyn Progress,
        out: &mut RestoreOutcome,
    ) -> Result<bool> {
        let r = match self.read_ref(scope, key) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(false),
            Err(e) if e.is_corrupt() => {
                let healed = self.heal(scope, key, None, &[], true, HealMode::RESTORE);
                return Err(self.refused(e, scope, key, healed, out));
            }
            Err(e) => return Err(e),
        };
        let Some(target) = target else {
            out.manifest = Some(r.manifest.clone());
            out.created = Some(r.created.clone());
            out.total_size = r.total_size;
            out.entries = r.entries;
            return Ok(true);
        };
        let mut suspects = Vec::new();
        match self.restore_entry(&r, target, progress, out, &mut suspects) {
            Ok(()) => {
                out.manifest = Some(r.manifest.clone());
                out.created = Some(r.created.clone());
                out.total_size = r.total_size;
                out.entries = r.entries;
                Ok(true)
            }
            Err(e) if crate::heal::is_refusal(&e) => {
                let healed = if e.is_corrupt() {
                    self.heal(scope, key, Some(&r), &suspects, false, HealMode::RESTORE)
                } else {
                    Default::default()
                };
                Err(self.refused(e, scope, key, healed, out))
            }
            Err(e) => Err(e),
        }
    }

    /// Records a refused entry's warning and what healing did; returns the error.
    fn refused(
        &self,
        e: StoreError,
        scope: &str,
        key: &str,
        healed: crate::heal::Healed,
        out: &mut RestoreOutcome,
    ) -> StoreError {
        let mut w = format!("{e}; skipped it and tried the next key");
        let h = healed.describe(scope, key);
        if !h.is_empty() {
            w.push_str(&format!("; {h}"));
        } else if e.is_corrupt() {
            w.push_str(
                "; `cicache verify --repair` removes damaged entries so that the next save writes them again",
            );
        }
        out.warnings.push(w);
        out.objects_removed.extend(healed.objects_removed);
        if healed.ref_removed {
            out.entries_removed.push(format!("{scope}/{key}"));
        }
        e
    }

    /// Restores entry `r` into the target: nothing when the target already matches, else the
    /// manifest, the checks, the staging dir, the swap and the state record.
    fn restore_entry(
        &self,
        r: &Ref,
        target: &Target,
        progress: &dyn Progress,
        out: &mut RestoreOutcome,
        suspects: &mut Vec<Suspect>,
    ) -> Result<()> {
        // Already there? (the state recorded by the last restore or save, checked by stat)
        if let Some(st) = state::load(&target.path)
            && st.manifest == r.manifest
            && dir_matches_state(&target.path, &st)
        {
            out.up_to_date = true;
            count(&st, out);
            return Ok(());
        }
        let (manifest, mfile, n) = self.fetch_manifest(r, &target.parent).inspect_err(|e| {
            if e.is_corrupt() {
                suspects.push(Suspect::Manifest(r.manifest.clone()));
            }
        })?;
        let _mfile_reg = crate::cleanup::register(mfile.path());
        out.bytes_downloaded += n;
        let totals = validate(&manifest, &r.scope, &r.key)?;
        check_space(&target.parent, &manifest)?;
        let reader = EntryReader::new(self, r, &manifest);
        let staged = self.write_staging(&reader, mfile, &target.parent, progress, out);
        suspects.extend(reader.suspects());
        let (staged, stamps) = staged?;
        let _staged_reg = crate::cleanup::register(staged.path());
        swap_into_place(staged, &target.path)?;
        record_restored(&target.path, r, &manifest, stamps);
        out.files = Some(totals.files);
        out.dirs = Some(totals.dirs);
        out.symlinks = Some(totals.symlinks);
        Ok(())
    }

    /// Writes the whole entry into a new staging directory beside the target.
    fn write_staging(
        &self,
        reader: &EntryReader,
        mfile: tempfile::NamedTempFile,
        parent: &Path,
        progress: &dyn Progress,
        out: &mut RestoreOutcome,
    ) -> Result<(tempfile::TempDir, HashMap<String, state::FileStamp>)> {
        let manifest = reader.manifest;
        let staging = tempfile::Builder::new()
            .prefix(&crate::cleanup::temp_prefix(crate::cleanup::STAGING_PREFIX))
            .tempdir_in(parent)
            .map_err(|e| StoreError::io(parent, e))?;
        let _reg = crate::cleanup::register(staging.path());
        let sink = StagingSink {
            root: staging.path().to_path_buf(),
            stamps: Default::default(),
        };
        for e in manifest.entries.iter().filter(|e| e.kind == EntryType::Dir) {
            let p = sink.root.join(&e.path);
            fs::create_dir(&p).map_err(|err| StoreError::io(&p, err))?;
        }
        // Sizes were bounded by `validate`: the sum cannot overflow.
        progress.start(
            self.transfer_phase(false),
            Some(manifest.entries.iter().map(|e| e.size).sum()),
        );
        let file = mfile
            .reopen()
            .map_err(|e| StoreError::io(mfile.path(), e))?;
        reader.read_small(file, &sink)?;
        out.bytes_downloaded += reader.read_objects(&sink, progress)?;
        progress.finish();
        finish_tree(&sink.root, manifest)?;
        Ok((staging, sink.stamps.into_inner().unwrap_or_default()))
    }
}

/// Restore's [`FileSink`]: files written into the staging dir (never through an existing
/// path), with their stamps recorded for the state file.
struct StagingSink {
    root: PathBuf,
    stamps: Mutex<HashMap<String, state::FileStamp>>,
}

impl StagingSink {
    fn record(&self, path: &str, stamp: state::FileStamp) {
        if let Ok(mut m) = self.stamps.lock() {
            m.insert(path.to_string(), stamp);
        }
    }
}

impl FileSink for StagingSink {
    fn file(&self, src: &mut dyn Read, e: &ManifestEntry, corrupt: &Corrupt<'_>) -> Result<u64> {
        let p = self.root.join(&e.path);
        let f = crate::backend::dir::create_new(&p).map_err(|err| StoreError::io(&p, err))?;
        let w = BufWriter::with_capacity(BUF_MAX.min(e.size as usize + 1), f);
        let (n, w) = crate::entry::copy_checked(src, w, e, &p, corrupt)?;
        let f = w
            .into_inner()
            .map_err(|err| StoreError::io(&p, err.into_error()))?;
        {
            use std::os::unix::fs::PermissionsExt;
            let t = mtime(e);
            f.set_permissions(fs::Permissions::from_mode(restored_mode(e)))
                .and_then(|_| filetime::set_file_handle_times(&f, Some(t), Some(t)))
                .map_err(|err| StoreError::io(&p, err))?;
        }
        let meta = f.metadata().map_err(|err| StoreError::io(&p, err))?;
        self.record(&e.path, state::FileStamp::from_meta(EntryType::File, &meta));
        Ok(n)
    }

    fn same_as(&self, first: &ManifestEntry, other: &ManifestEntry) -> Result<()> {
        let dst = self.root.join(&other.path);
        fs::copy(self.root.join(&first.path), &dst).map_err(|e| StoreError::io(&dst, e))?;
        set_meta(&dst, other)?;
        let meta = fs::symlink_metadata(&dst).map_err(|e| StoreError::io(&dst, e))?;
        self.record(
            &other.path,
            state::FileStamp::from_meta(EntryType::File, &meta),
        );
        Ok(())
    }
}

/// Symlinks, then metadata: directories deepest first (files got their mode and mtime when
/// they were written, on the open file).
fn finish_tree(root: &Path, manifest: &Manifest) -> Result<()> {
    for e in manifest
        .entries
        .iter()
        .filter(|e| e.kind == EntryType::Symlink)
    {
        let p = root.join(&e.path);
        std::os::unix::fs::symlink(e.target.as_deref().unwrap_or_default(), &p)
            .map_err(|err| StoreError::io(&p, err))?;
        let t = mtime(e);
        let _ = filetime::set_symlink_file_times(&p, t, t);
    }
    for e in manifest
        .entries
        .iter()
        .rev()
        .filter(|e| e.kind == EntryType::Dir)
    {
        set_meta(&root.join(&e.path), e)?;
    }
    Ok(())
}

/// Records what is on disk now, for the next save and restore: files as stat'ed on their
/// open handle when written (the swap does not change them); directories and symlinks by
/// what restore compares of them (type, mode, target). No second walk of the tree.
fn record_restored(
    path: &Path,
    r: &Ref,
    manifest: &Manifest,
    mut stamps: HashMap<String, state::FileStamp>,
) {
    let mut st = state::new_state(path);
    st.manifest = r.manifest.clone();
    st.manifest_size = r.manifest_size;
    st.stored_size = r.stored_size;
    st.origin = "restore".into();
    st.scope = r.scope.clone();
    st.key = r.key.clone();
    for e in &manifest.entries {
        let stamp = match e.kind {
            EntryType::File => match stamps.remove(e.path.as_str()) {
                Some(mut s) => {
                    s.blake3 = e.blake3.clone();
                    s
                }
                None => return,
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
    state::store(st);
}

/// The real path of `p`, or of its deepest existing ancestor joined with the rest.
fn canonical(p: &Path) -> PathBuf {
    if let Ok(c) = fs::canonicalize(p) {
        return c;
    }
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) => canonical(parent).join(name),
        _ => p.to_path_buf(),
    }
}

/// Largest copy buffer (small files get one of their own size).
const BUF_MAX: usize = 256 * 1024;

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
                .prefix(&crate::cleanup::temp_prefix(crate::cleanup::OLD_PREFIX))
                .tempdir_in(parent_of(target))
                .map_err(|e| StoreError::io(target, e))?;
            let _reg = crate::cleanup::register(old.path());
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

/// Swaps two paths atomically: `renameat2(RENAME_EXCHANGE)`, called as a raw system call
/// (Linux 3.15+) because musl, which the static helper links, has no `renameat2` wrapper.
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let ca = std::ffi::CString::new(a.as_os_str().as_bytes())?;
    let cb = std::ffi::CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated paths that outlive the call; the arguments are
    // those of renameat2(2).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
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
    let (mut files, mut dirs, mut symlinks) = (0, 0, 0);
    for e in st.entries.values() {
        match e.kind {
            EntryType::File => files += 1,
            EntryType::Dir => dirs += 1,
            EntryType::Symlink => symlinks += 1,
        }
    }
    out.files = Some(files);
    out.dirs = Some(dirs);
    out.symlinks = Some(symlinks);
}
