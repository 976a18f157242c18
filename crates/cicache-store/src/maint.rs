//! `list`, `verify` and `prune`.
//!
//! # Prune and concurrent saves (invariant 5)
//!
//! Evicting a ref never hurts a save. Deleting unreferenced blobs does: a save may have found a
//! blob present (and skipped its upload) just before a sweep deletes it. So the sweep and the
//! saves exclude each other through markers in the store, each written *before* looking for
//! the other's: a save writes `leases/<id>.json`, then waits while any fresh
//! `locks/sweep-*` exists; a sweep writes `locks/sweep-<id>.json`, then gives up (and says
//! so) when any fresh lease exists. With a store that lists what was written before
//! (directories; S3 since 2020), at least one of two racing parties sees the other, so a
//! blob a save relies on is never swept while that save runs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read};
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::PutMode;
use crate::entry::{Corrupt, EntryReader, FileSink, Suspect};
use crate::error::{Result, StoreError};
use crate::format::{self, Manifest, ManifestEntry, Ref};
use crate::heal::{HealMode, Healed};
use crate::key::decode_segment;
use crate::progress::NoProgress;
use crate::save::HashReader;
use crate::store::{SWEEP_TTL, Store, now_rfc3339, random_id};

/// One entry of the store, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct EntryInfo {
    pub scope: String,
    pub key: String,
    pub created: Option<String>,
    /// RFC 3339, the last restore or save of this entry.
    pub last_used: Option<String>,
    pub total_size: u64,
    pub stored_size: u64,
    pub entries: u64,
    pub manifest: Option<String>,
    /// Why the entry cannot be restored, when its ref is damaged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
    #[serde(skip)]
    pub ref_modified: SystemTime,
    /// The ref's object name (a long key's is hashed; see `format::name_segment`).
    #[serde(skip)]
    pub ref_object: String,
    #[serde(skip)]
    pub used_at: SystemTime,
}

#[derive(Debug, Clone, Serialize)]
pub struct Damaged {
    pub scope: String,
    pub key: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct VerifyOutcome {
    /// Nothing checked is damaged (what the exit code says); the count is `entries_ok`.
    pub ok: bool,
    pub checked: u64,
    /// Entries checked and found whole.
    pub entries_ok: u64,
    pub bytes_checked: u64,
    pub damaged: Vec<Damaged>,
    /// `--repair` ran: damaged entries were removed.
    #[serde(default)]
    pub repair: bool,
    /// Damaged objects removed from the store (always: the next save writes them again).
    #[serde(default)]
    pub objects_removed: Vec<String>,
    /// Damaged entries removed (`scope/key`, with `--repair`): the next save of each key
    /// writes it again.
    #[serde(default)]
    pub entries_removed: Vec<String>,
    /// What to do next, when something is left damaged; a command that works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

/// What `verify` checks and may change. `Default`: every entry, no repair.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions<'a> {
    /// Only this scope (with `key`: only this entry).
    pub scope: Option<&'a str>,
    pub key: Option<&'a str>,
    /// Also remove every damaged or hostile entry's ref (`cicache verify --repair`), so that
    /// the next save of its key writes it again. Damaged objects are removed either way.
    pub repair: bool,
    /// Change nothing (`prune --damaged --dry-run`).
    pub dry_run: bool,
}

#[derive(Debug, Clone, Default)]
pub struct PrunePolicy {
    pub max_age: Option<Duration>,
    pub max_unused: Option<Duration>,
    pub max_size: Option<u64>,
    pub keep_last: Option<usize>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    pub scope: String,
    pub key: String,
    pub reason: String,
    pub stored_size: u64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct PruneOutcome {
    pub dry_run: bool,
    pub entries_before: u64,
    pub entries_removed: Vec<Removed>,
    pub entries_kept: u64,
    pub manifests_removed: u64,
    pub blobs_removed: u64,
    /// Bytes of manifests and blobs deleted (or that would be, with --dry-run).
    pub bytes_freed: u64,
    /// Store size (manifests and blobs) after the prune.
    pub store_size: u64,
    /// `done`, `dry-run`, or why the sweep of unreferenced objects was skipped.
    pub sweep: String,
    pub temp_files_removed: u64,
    pub warnings: Vec<String>,
    /// `prune --damaged`: damaged objects removed (the next save writes them again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged_objects_removed: Vec<String>,
}

/// The family of a key for `--keep-last`: the key without its hash-like parts
/// (`pip-3f2a9c1e0b-linux` → `pip-linux`).
pub fn key_family(key: &str) -> String {
    key.split('-')
        .filter(|part| !(part.len() >= 8 && part.bytes().all(|b| b.is_ascii_hexdigit())))
        .collect::<Vec<_>>()
        .join("-")
}

/// Parses a size (`20GB` = 20·10^9, `512MiB`, `1000` bytes); see [`cicache_units`].
pub use cicache_units::parse_size;

impl Store {
    /// Every entry (of one scope, or of all), newest first.
    pub fn list(&self, scope: Option<&str>) -> Result<Vec<EntryInfo>> {
        let prefix = match scope {
            Some(s) => format::refs_prefix(s, ""),
            None => format!("{}/refs/", format::FORMAT_DIR),
        };
        let used_prefix = format!("{}/used/", format::FORMAT_DIR);
        let used: HashMap<String, SystemTime> = self
            .backend
            .list(&used_prefix)?
            .into_iter()
            .filter_map(|o| Some((o.name.strip_prefix(&used_prefix)?.to_string(), o.modified)))
            .collect();
        let objects = self.backend.list(&prefix)?;
        let mut out: Vec<EntryInfo> = objects
            .par_iter()
            .filter_map(|o| self.entry_info(o, &used))
            .filter(|e| scope.is_none_or(|s| s == e.scope))
            .collect();
        out.sort_by(|a, b| b.ref_modified.cmp(&a.ref_modified).then(a.key.cmp(&b.key)));
        Ok(out)
    }

    /// One listed ref. A ref that cannot be read is listed as damaged (under its name when it
    /// is a long key's hashed one); `None`: not a ref, or gone meanwhile.
    fn entry_info(
        &self,
        o: &crate::backend::ObjectInfo,
        used: &HashMap<String, SystemTime>,
    ) -> Option<EntryInfo> {
        let refs_root = format!("{}/refs/", format::FORMAT_DIR);
        let rel = o.name.strip_prefix(&refs_root)?;
        let (s, k) = rel.split_once('/')?;
        if k.contains('/') {
            return None;
        }
        let hashed = format::is_hashed_segment(s) || format::is_hashed_segment(k);
        let read = if hashed {
            self.read_ref_named(&o.name, None)
        } else {
            let (scope, key) = (decode_segment(s)?, decode_segment(k)?);
            self.read_ref_named(&o.name, Some((&scope, &key)))
        };
        let used_at = used.get(rel).copied().unwrap_or(o.modified);
        let mut info = EntryInfo {
            scope: decode_segment(s).unwrap_or_else(|| s.to_string()),
            key: decode_segment(k).unwrap_or_else(|| k.to_string()),
            created: None,
            last_used: Some(humantime::format_rfc3339_seconds(used_at).to_string()),
            total_size: 0,
            stored_size: 0,
            entries: 0,
            manifest: None,
            damaged: None,
            ref_modified: o.modified,
            ref_object: o.name.clone(),
            used_at,
        };
        match read {
            Ok(Some(r)) => {
                info.scope = r.scope;
                info.key = r.key;
                info.created = Some(r.created);
                info.total_size = r.total_size;
                info.stored_size = r.stored_size;
                info.entries = r.entries;
                info.manifest = Some(r.manifest);
            }
            Ok(None) => return None,
            Err(e) => info.damaged = Some(e.to_string()),
        }
        Some(info)
    }

    /// Reads an entry's manifest.json, checking the manifest object's hash.
    pub fn read_manifest(&self, r: &Ref) -> Result<Manifest> {
        let corrupt = |reason: String| StoreError::Corrupt {
            scope: r.scope.clone(),
            key: r.key.clone(),
            reason,
        };
        let name = format::manifest_name(&r.manifest);
        let reader = self
            .backend
            .get(&name)?
            .ok_or_else(|| corrupt(format!("its manifest {name} is missing")))?;
        let mut hr = HashReader {
            inner: reader.take(r.manifest_size.saturating_add(1)),
            hasher: blake3::Hasher::new(),
            n: 0,
            progress: &NoProgress,
        };
        let manifest = {
            let dec = zstd::Decoder::new(&mut hr).map_err(|e| corrupt(format!("manifest: {e}")))?;
            crate::entry::parse_manifest_tar(dec, &corrupt)?
        };
        io::copy(&mut hr, &mut io::sink()).map_err(|e| corrupt(format!("manifest: {e}")))?;
        if hr.n != r.manifest_size || hr.hasher.finalize().to_hex().as_str() != r.manifest {
            return Err(corrupt(format!(
                "its manifest {name} does not match its hash (truncated or altered)"
            )));
        }
        Ok(manifest)
    }

    /// Checks one entry byte for byte with the checks restore makes (one validator for
    /// both, `entry.rs`): the ref, the manifest, every file of every blob and pack. Returns
    /// the bytes checked.
    pub fn verify_entry(&self, scope: &str, key: &str) -> Result<u64> {
        self.verify_one(scope, key, HealMode::NONE).0
    }

    /// [`Store::verify_entry`], then healing as `mode` allows.
    fn verify_one(&self, scope: &str, key: &str, mode: HealMode) -> (Result<u64>, Healed) {
        let r = match self.read_ref(scope, key) {
            Ok(Some(r)) => r,
            Ok(None) => {
                let e = StoreError::NotFound {
                    scope: scope.to_string(),
                    key: key.to_string(),
                };
                return (Err(e), Healed::default());
            }
            Err(e) if e.is_corrupt() => {
                let h = self.heal(scope, key, None, &[], true, mode);
                return (Err(e), h);
            }
            Err(e) => return (Err(e), Healed::default()),
        };
        let mut suspects = Vec::new();
        let res = self.check_entry(&r, &mut suspects);
        let healed = match &res {
            Err(e) if e.is_corrupt() => self.heal(scope, key, Some(&r), &suspects, false, mode),
            _ => Healed::default(),
        };
        (res, healed)
    }

    fn check_entry(&self, r: &Ref, suspects: &mut Vec<Suspect>) -> Result<u64> {
        let tmp = self
            .backend
            .staging_dir()
            .unwrap_or_else(std::env::temp_dir);
        let (manifest, mfile, _) = self.fetch_manifest(r, &tmp).inspect_err(|e| {
            if e.is_corrupt() {
                suspects.push(Suspect::Manifest(r.manifest.clone()));
            }
        })?;
        let totals = crate::entry::validate(&manifest, &r.scope, &r.key)?;
        let reader = EntryReader::new(self, r, &manifest);
        let file = mfile
            .reopen()
            .map_err(|e| StoreError::io(mfile.path(), e))?;
        let res = reader
            .read_small(file, &CheckSink)
            .and_then(|_| reader.read_objects(&CheckSink, &NoProgress));
        suspects.extend(reader.suspects());
        res.map(|_| totals.bytes)
    }

    /// Verifies one entry or every entry; damaged ones are named, not fatal. Damaged objects
    /// are removed (see `heal.rs`); entries stay (see [`Store::verify_with`] to repair).
    pub fn verify(&self, scope: Option<&str>, key: Option<&str>) -> Result<VerifyOutcome> {
        self.verify_with(&VerifyOptions {
            scope,
            key,
            ..Default::default()
        })
    }

    /// `verify` with options: `repair` also removes the damaged entries (`verify --repair`),
    /// so the next save of each key writes it again.
    pub fn verify_with(&self, opts: &VerifyOptions) -> Result<VerifyOutcome> {
        let targets: Vec<(String, String)> = match (opts.scope, opts.key) {
            (Some(s), Some(k)) => vec![(s.to_string(), k.to_string())],
            _ => self
                .list(opts.scope)?
                .into_iter()
                .map(|e| (e.scope, e.key))
                .collect(),
        };
        let mode = match (opts.dry_run, opts.repair) {
            (true, _) => HealMode::NONE,
            (false, true) => HealMode::RESTORE,
            (false, false) => HealMode::VERIFY,
        };
        let mut out = VerifyOutcome {
            repair: opts.repair,
            ..Default::default()
        };
        for (s, k) in targets {
            out.checked += 1;
            let (res, mut healed) = self.verify_one(&s, &k, mode);
            let reason = match res {
                Ok(n) => {
                    out.entries_ok += 1;
                    out.bytes_checked += n;
                    continue;
                }
                Err(e) if e.is_corrupt() || matches!(e, StoreError::NotFound { .. }) => {
                    e.to_string()
                }
                Err(e) => return Err(e),
            };
            // --repair removes every entry that cannot be restored, damage proven or not
            // (hostile, an unknown format).
            if mode.remove_ref && !healed.ref_removed {
                match self.delete_ref(&s, &k) {
                    Ok(()) => healed.ref_removed = true,
                    Err(e) => healed.problems.push(e.to_string()),
                }
            }
            out.objects_removed.extend(healed.objects_removed.clone());
            if healed.ref_removed {
                out.entries_removed.push(format!("{s}/{k}"));
            }
            out.damaged.push(Damaged {
                scope: s,
                key: k,
                reason,
            });
        }
        out.advice = verify_advice(&out);
        out.ok = out.damaged.is_empty();
        Ok(out)
    }

    /// `prune --damaged`: verifies every entry (reading every byte), removes the damaged
    /// ones and their damaged objects, then prunes by `policy`. With `policy.dry_run`,
    /// nothing is removed.
    pub fn prune_damaged(&self, policy: &PrunePolicy) -> Result<PruneOutcome> {
        let v = self.verify_with(&VerifyOptions {
            repair: true,
            dry_run: policy.dry_run,
            ..Default::default()
        })?;
        let mut out = self.prune(policy)?;
        let gone: Vec<Removed> = v
            .damaged
            .into_iter()
            .filter(|d| {
                !out.entries_removed
                    .iter()
                    .any(|r| r.scope == d.scope && r.key == d.key)
            })
            .map(|d| Removed {
                scope: d.scope,
                key: d.key,
                reason: format!("damaged: {}", d.reason),
                stored_size: 0,
            })
            .collect();
        out.entries_before += if policy.dry_run { 0 } else { gone.len() as u64 };
        out.entries_removed.extend(gone);
        out.damaged_objects_removed = v.objects_removed;
        Ok(out)
    }

    /// Evicts entries by the policy, then sweeps unreferenced manifests and blobs.
    pub fn prune(&self, policy: &PrunePolicy) -> Result<PruneOutcome> {
        let mut out = PruneOutcome {
            dry_run: policy.dry_run,
            ..Default::default()
        };
        let entries = self.list(None)?;
        out.entries_before = entries.len() as u64;
        let objects: HashMap<String, u64> = self.stored_objects()?.into_iter().collect();
        let refs = self.referenced(entries);
        let evict = plan_evictions(policy, &refs, &objects, SystemTime::now());
        for (i, reason) in &evict {
            let e = &refs[*i].0;
            out.entries_removed.push(Removed {
                scope: e.scope.clone(),
                key: e.key.clone(),
                reason: reason.clone(),
                stored_size: e.stored_size,
            });
            if !policy.dry_run {
                self.backend.delete(&e.ref_object)?;
                self.backend.delete(&format::used_name(&e.scope, &e.key))?;
            }
        }
        out.entries_kept = out.entries_before.saturating_sub(evict.len() as u64);

        // The sweep.
        let total = objects.values().fold(0u64, |a, b| a.saturating_add(*b));
        if policy.dry_run {
            let evicted: HashSet<usize> = evict.iter().map(|(i, _)| *i).collect();
            let live: HashSet<&str> = refs
                .iter()
                .enumerate()
                .filter(|(i, _)| !evicted.contains(i))
                .flat_map(|(_, (_, n))| n.iter().flatten().map(String::as_str))
                .collect();
            for (name, size) in &objects {
                if !live.contains(name.as_str()) {
                    count_removed(&mut out, name, *size);
                }
            }
            out.store_size = total.saturating_sub(out.bytes_freed);
            out.sweep = "dry-run".into();
            return Ok(out);
        }
        match self.backend.clean_temp(Duration::from_secs(24 * 3600)) {
            Ok(n) => out.temp_files_removed = n,
            // Leftovers of killed writers are clutter, not a reason to stop the prune.
            Err(e) => out
                .warnings
                .push(format!("temp files were not cleaned: {e}")),
        }
        self.sweep(&objects, &mut out)?;
        Ok(out)
    }

    /// Bytes of every manifest and blob in the store, each counted once however many entries
    /// share it (`cicache list`'s total).
    pub fn stored_size(&self) -> Result<u64> {
        Ok(self
            .stored_objects()?
            .iter()
            .fold(0u64, |a, (_, n)| a.saturating_add(*n)))
    }

    /// Every manifest and blob in the store, with its size.
    fn stored_objects(&self) -> Result<Vec<(String, u64)>> {
        let mut v = Vec::new();
        for kind in ["manifests", "blobs"] {
            let listed = self
                .backend
                .list(&format!("{}/{kind}/", format::FORMAT_DIR))?;
            v.extend(listed.into_iter().map(|o| (o.name, o.size)));
        }
        Ok(v)
    }

    /// What each entry references (its manifest and blobs); `None` for an entry whose ref or
    /// manifest cannot be read (damaged: evicted).
    fn referenced(&self, entries: Vec<EntryInfo>) -> Vec<(EntryInfo, Option<Vec<String>>)> {
        entries
            .into_par_iter()
            .map(|e| {
                let names = e.manifest.as_ref().and_then(|_| {
                    let r = self.read_ref(&e.scope, &e.key).ok()??;
                    let m = self.read_manifest(&r).ok()?;
                    let mut v: Vec<String> = m.blobs().into_iter().map(format::blob_name).collect();
                    v.push(format::manifest_name(&r.manifest));
                    Some(v)
                });
                (e, names)
            })
            .collect()
    }

    /// Sweeps under the lock. While saves hold leases it lets go of the lock (so they finish
    /// instead of waiting for it) and tries again, for up to `CICACHE_SWEEP_RETRY_SECS`
    /// (default 30).
    fn sweep(&self, objects: &HashMap<String, u64>, out: &mut PruneOutcome) -> Result<()> {
        let retry_for = Duration::from_secs(
            std::env::var("CICACHE_SWEEP_RETRY_SECS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(30),
        );
        let started = std::time::Instant::now();
        loop {
            let lock = format::sweep_lock_name(&random_id());
            let body = format!(
                "{{\"host\":{:?},\"pid\":{},\"started\":{:?}}}",
                crate::store::hostname(),
                std::process::id(),
                now_rfc3339()
            );
            self.backend
                .put_marker(&lock, body.as_bytes(), PutMode::CreateNew)?;
            let result = self.sweep_locked(objects, out);
            let _ = self.backend.delete(&lock);
            let skipped = out.sweep.starts_with("skipped");
            if result.is_err() || !skipped || started.elapsed() >= retry_for {
                return result;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn sweep_locked(&self, objects: &HashMap<String, u64>, out: &mut PruneOutcome) -> Result<()> {
        let now = SystemTime::now();
        let active = self.active_leases()?;
        // Another sweep that started first wins; ours stops.
        let other_sweeps = self
            .backend
            .list(&format!("{}/locks/sweep-", format::FORMAT_DIR))?
            .into_iter()
            .filter(|o| now.duration_since(o.modified).unwrap_or_default() < SWEEP_TTL)
            .count();
        let total = objects.values().fold(0u64, |a, b| a.saturating_add(*b));
        if active > 0 {
            out.sweep = format!("skipped: {active} save(s) in progress; run prune again later");
            out.store_size = total;
            return Ok(());
        }
        if other_sweeps > 1 {
            out.sweep = "skipped: another prune is sweeping".into();
            out.store_size = total;
            return Ok(());
        }
        let live = self.live_objects(out)?;
        let mut size = 0u64;
        for (name, sz) in self.stored_objects()? {
            if live.contains(&name) {
                size = size.saturating_add(sz);
            } else {
                self.backend.delete(&name)?;
                count_removed(out, &name, sz);
            }
        }
        out.store_size = size;
        out.sweep = "done".into();
        Ok(())
    }

    /// Rereads the refs now that saves are excluded: every object live now is referenced
    /// here. Refs that cannot be read, or whose manifest cannot, are removed.
    fn live_objects(&self, out: &mut PruneOutcome) -> Result<HashSet<String>> {
        let mut live: HashSet<String> = HashSet::new();
        for e in self.list(None)? {
            if let Some(why) = &e.damaged {
                out.warnings.push(format!("{why}; removed it"));
                self.backend.delete(&e.ref_object)?;
                continue;
            }
            let r = match self.read_ref(&e.scope, &e.key) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(err) if err.is_corrupt() => {
                    out.warnings.push(format!("{err}; removed it"));
                    self.backend.delete(&e.ref_object)?;
                    continue;
                }
                Err(err) => return Err(err),
            };
            match self.read_manifest(&r) {
                Ok(m) => {
                    live.insert(format::manifest_name(&r.manifest));
                    live.extend(m.blobs().into_iter().map(format::blob_name));
                }
                Err(err) if err.is_corrupt() => {
                    out.warnings.push(format!("{err}; removed it"));
                    self.backend.delete(&e.ref_object)?;
                }
                Err(err) => return Err(err),
            }
        }
        Ok(live)
    }
}

/// Entries referenced by [`Store::prune`]: each with the objects it needs (`None`: damaged).
type Referenced = [(EntryInfo, Option<Vec<String>>)];

/// Which entries a prune evicts, and why (a pure decision): damaged ones; by age and last
/// use, except the newest `keep_last` of each key family; then least recently used first
/// until the store fits `max_size`.
fn plan_evictions(
    policy: &PrunePolicy,
    refs: &Referenced,
    objects: &HashMap<String, u64>,
    now: SystemTime,
) -> Vec<(usize, String)> {
    let mut protected: HashSet<usize> = HashSet::new();
    if let Some(n) = policy.keep_last {
        let mut by_family: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
        for (i, (e, _)) in refs.iter().enumerate() {
            by_family
                .entry((e.scope.clone(), key_family(&e.key)))
                .or_default()
                .push(i);
        }
        for idx in by_family.values() {
            // `refs` is newest first.
            protected.extend(idx.iter().take(n));
        }
    }
    let mut evict: Vec<(usize, String)> = Vec::new();
    for (i, (e, names)) in refs.iter().enumerate() {
        if names.is_none() {
            let why = e
                .damaged
                .as_deref()
                .unwrap_or("its manifest cannot be read");
            evict.push((i, format!("damaged: {why}")));
        } else if !protected.contains(&i)
            && let Some(reason) = too_old(policy, e, now)
        {
            evict.push((i, reason));
        }
    }
    if let Some(max) = policy.max_size {
        evict_to_size(max, refs, objects, &protected, &mut evict);
    }
    evict
}

/// Why an entry is too old for the policy, if it is.
fn too_old(policy: &PrunePolicy, e: &EntryInfo, now: SystemTime) -> Option<String> {
    let age = now.duration_since(e.ref_modified).unwrap_or_default();
    let unused = now.duration_since(e.used_at).unwrap_or_default();
    if let Some(max) = policy.max_age
        && age > max
    {
        return Some(format!(
            "created {} ago (max age {})",
            human(age),
            human(max)
        ));
    }
    if let Some(max) = policy.max_unused
        && unused > max
    {
        return Some(format!(
            "unused for {} (max unused {})",
            human(unused),
            human(max)
        ));
    }
    None
}

/// Evicts least recently used entries (protected ones last) until what the rest reference
/// fits in `max` bytes.
fn evict_to_size(
    max: u64,
    refs: &Referenced,
    objects: &HashMap<String, u64>,
    protected: &HashSet<usize>,
    evict: &mut Vec<(usize, String)>,
) {
    let evicted: HashSet<usize> = evict.iter().map(|(i, _)| *i).collect();
    let mut refcount: HashMap<&str, u32> = HashMap::new();
    for (i, (_, names)) in refs.iter().enumerate() {
        if evicted.contains(&i) {
            continue;
        }
        for n in names.iter().flatten() {
            *refcount.entry(n.as_str()).or_default() += 1;
        }
    }
    let mut size: u64 = refcount
        .keys()
        .map(|n| objects.get(*n).copied().unwrap_or(0))
        .fold(0, u64::saturating_add);
    let mut order: Vec<usize> = (0..refs.len()).filter(|i| !evicted.contains(i)).collect();
    order.sort_by_key(|i| (protected.contains(i), refs[*i].0.used_at));
    for i in order {
        if size <= max {
            break;
        }
        for n in refs[i].1.iter().flatten() {
            if let Some(c) = refcount.get_mut(n.as_str()) {
                *c -= 1;
                if *c == 0 {
                    size = size.saturating_sub(objects.get(n).copied().unwrap_or(0));
                }
            }
        }
        evict.push((i, format!("store above max size {max}")));
    }
}

/// The next step after a verify, as a command that works.
fn verify_advice(out: &VerifyOutcome) -> Option<String> {
    if out.damaged.is_empty() {
        return None;
    }
    let left = out.damaged.len().saturating_sub(out.entries_removed.len());
    Some(if left == 0 {
        format!(
            "removed {} damaged entr{}; the next save of each key writes it again",
            out.entries_removed.len(),
            if out.entries_removed.len() == 1 {
                "y"
            } else {
                "ies"
            }
        )
    } else {
        "run `cicache verify --repair` (or `cicache prune --damaged`) to remove the damaged entries, so that the next save of each key writes it again; or replace one with `cicache save --update --key KEY`".to_string()
    })
}

/// verify's [`FileSink`]: every file is read and checked, nothing written.
struct CheckSink;

impl FileSink for CheckSink {
    fn file(&self, src: &mut dyn Read, e: &ManifestEntry, corrupt: &Corrupt<'_>) -> Result<u64> {
        crate::entry::copy_checked(src, io::sink(), e, std::path::Path::new("-"), corrupt)
            .map(|(n, _)| n)
    }

    fn same_as(&self, _first: &ManifestEntry, _other: &ManifestEntry) -> Result<()> {
        Ok(())
    }
}

fn count_removed(out: &mut PruneOutcome, name: &str, size: u64) {
    if name.contains("/manifests/") {
        out.manifests_removed += 1;
    } else {
        out.blobs_removed += 1;
    }
    out.bytes_freed += size;
}

fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_drop_hash_parts() {
        assert_eq!(key_family("pip-3f2a9c1e0b-linux"), "pip-linux");
        assert_eq!(key_family("pip-main"), "pip-main");
        assert_eq!(key_family("deadbeefcafe"), "");
    }
}
