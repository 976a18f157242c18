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
use crate::error::{Result, StoreError};
use crate::format::{self, EntryType, Manifest, Ref};
use crate::key::decode_segment;
use crate::progress::NoProgress;
use crate::save::HashReader;
use crate::store::{LEASE_TTL, SWEEP_TTL, Store, now_rfc3339, random_id};

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
    pub checked: u64,
    pub ok: u64,
    pub bytes_checked: u64,
    pub damaged: Vec<Damaged>,
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
        let refs_root = format!("{}/refs/", format::FORMAT_DIR);
        let objects = self.backend.list(&prefix)?;
        let mut out: Vec<EntryInfo> = objects
            .par_iter()
            .filter_map(|o| {
                let rel = o.name.strip_prefix(&refs_root)?;
                let (s, k) = rel.split_once('/')?;
                let (scope, key) = (decode_segment(s)?, decode_segment(k)?);
                let used_at = used.get(rel).copied().unwrap_or(o.modified);
                let mut info = EntryInfo {
                    scope: scope.clone(),
                    key: key.clone(),
                    created: None,
                    last_used: Some(humantime::format_rfc3339_seconds(used_at).to_string()),
                    total_size: 0,
                    stored_size: 0,
                    entries: 0,
                    manifest: None,
                    damaged: None,
                    ref_modified: o.modified,
                    used_at,
                };
                match self.read_ref(&scope, &key) {
                    Ok(Some(r)) => {
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
            })
            .collect();
        out.sort_by(|a, b| b.ref_modified.cmp(&a.ref_modified).then(a.key.cmp(&b.key)));
        Ok(out)
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
            inner: reader.take(r.manifest_size + 1),
            hasher: blake3::Hasher::new(),
            n: 0,
            progress: &NoProgress,
        };
        let manifest = {
            let dec = zstd::Decoder::new(&mut hr).map_err(|e| corrupt(format!("manifest: {e}")))?;
            let mut archive = tar::Archive::new(dec);
            let mut entries = archive
                .entries()
                .map_err(|e| corrupt(format!("manifest tar: {e}")))?;
            let first = entries
                .next()
                .ok_or_else(|| corrupt("the manifest tarball is empty".into()))?
                .map_err(|e| corrupt(format!("manifest tar: {e}")))?;
            let mut json = Vec::new();
            first
                .take(format::MAX_MANIFEST_JSON)
                .read_to_end(&mut json)
                .map_err(|e| corrupt(format!("manifest: {e}")))?;
            serde_json::from_slice::<Manifest>(&json)
                .map_err(|e| corrupt(format!("manifest.json is not valid ({e})")))?
        };
        io::copy(&mut hr, &mut io::sink()).map_err(|e| corrupt(format!("manifest: {e}")))?;
        if hr.n != r.manifest_size || hr.hasher.finalize().to_hex().as_str() != r.manifest {
            return Err(corrupt(format!(
                "its manifest {name} does not match its hash (truncated or altered)"
            )));
        }
        Ok(manifest)
    }

    /// Checks one entry byte for byte: the ref, the manifest and its small files, every blob.
    pub fn verify_entry(&self, scope: &str, key: &str) -> Result<u64> {
        let r = self
            .read_ref(scope, key)?
            .ok_or_else(|| StoreError::NotFound {
                scope: scope.to_string(),
                key: key.to_string(),
            })?;
        let corrupt = |reason: String| StoreError::Corrupt {
            scope: scope.to_string(),
            key: key.to_string(),
            reason,
        };
        let manifest = self.read_manifest(&r)?;
        crate::restore::validate(&manifest, scope, key)?;
        // Small files inside the manifest tarball.
        let name = format::manifest_name(&r.manifest);
        let reader = self
            .backend
            .get(&name)?
            .ok_or_else(|| corrupt(format!("its manifest {name} is missing")))?;
        let dec = zstd::Decoder::new(reader).map_err(|e| corrupt(format!("manifest: {e}")))?;
        let mut archive = tar::Archive::new(dec);
        let small: HashMap<&str, (&str, u64)> = manifest
            .entries
            .iter()
            .filter(|e| e.kind == EntryType::File && !e.blob && e.pack.is_none())
            .filter_map(|e| Some((e.path.as_str(), (e.blake3.as_deref()?, e.size))))
            .collect();
        let mut found = HashSet::new();
        let mut bytes = 0u64;
        for (i, ent) in archive
            .entries()
            .map_err(|e| corrupt(format!("manifest tar: {e}")))?
            .enumerate()
        {
            let ent = ent.map_err(|e| corrupt(format!("manifest tar: {e}")))?;
            if i == 0 {
                continue;
            }
            let path = ent
                .path()
                .map_err(|e| corrupt(format!("manifest tar: {e}")))?
                .to_string_lossy()
                .to_string();
            let Some(&(hash, size)) = small.get(path.as_str()) else {
                return Err(corrupt(format!("unexpected tar member {path:?}")));
            };
            check_stream(ent, size, hash).map_err(|e| corrupt(format!("{path}: {e}")))?;
            bytes += size;
            found.insert(path);
        }
        if found.len() != small.len() {
            return Err(corrupt(
                "small files are missing from the manifest tarball".into(),
            ));
        }
        let blobs: BTreeMap<&str, u64> = manifest
            .entries
            .iter()
            .filter(|e| e.blob)
            .filter_map(|e| Some((e.blake3.as_deref()?, e.size)))
            .collect();
        let sizes: Vec<u64> = blobs
            .par_iter()
            .map(|(hash, size)| -> Result<u64> {
                let name = format::blob_name(hash);
                let reader = self
                    .backend
                    .get(&name)?
                    .ok_or_else(|| corrupt(format!("blob {name} is missing")))?;
                let dec =
                    zstd::Decoder::new(reader).map_err(|e| corrupt(format!("blob {name}: {e}")))?;
                check_stream(dec, *size, hash).map_err(|e| corrupt(format!("blob {name}: {e}")))?;
                Ok(*size)
            })
            .collect::<Result<_>>()?;
        let packs = manifest.packs();
        let pack_sizes: Vec<u64> = packs
            .par_iter()
            .map(|(hash, files)| -> Result<u64> {
                let name = format::blob_name(hash);
                let reader = self
                    .backend
                    .get(&name)?
                    .ok_or_else(|| corrupt(format!("pack {name} is missing")))?;
                let mut dec =
                    zstd::Decoder::new(reader).map_err(|e| corrupt(format!("pack {name}: {e}")))?;
                let mut n = 0;
                for f in files {
                    let hash = f.blake3.as_deref().unwrap_or_default();
                    check_stream((&mut dec).take(f.size), f.size, hash)
                        .map_err(|e| corrupt(format!("pack {name}, {}: {e}", f.path)))?;
                    n += f.size;
                }
                let mut extra = [0u8; 1];
                if !matches!(dec.read(&mut extra), Ok(0)) {
                    return Err(corrupt(format!(
                        "pack {name} holds more than the files the manifest lists"
                    )));
                }
                Ok(n)
            })
            .collect::<Result<_>>()?;
        Ok(bytes + sizes.iter().sum::<u64>() + pack_sizes.iter().sum::<u64>())
    }

    /// Verifies one entry or every entry; damaged ones are named, not fatal.
    pub fn verify(&self, scope: Option<&str>, key: Option<&str>) -> Result<VerifyOutcome> {
        let targets: Vec<(String, String)> = match (scope, key) {
            (Some(s), Some(k)) => vec![(s.to_string(), k.to_string())],
            _ => self
                .list(scope)?
                .into_iter()
                .map(|e| (e.scope, e.key))
                .collect(),
        };
        let mut out = VerifyOutcome::default();
        for (s, k) in targets {
            out.checked += 1;
            match self.verify_entry(&s, &k) {
                Ok(n) => {
                    out.ok += 1;
                    out.bytes_checked += n;
                }
                Err(e) if e.is_corrupt() => out.damaged.push(Damaged {
                    scope: s,
                    key: k,
                    reason: e.to_string(),
                }),
                Err(e @ StoreError::NotFound { .. }) => out.damaged.push(Damaged {
                    scope: s,
                    key: k,
                    reason: e.to_string(),
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Evicts entries by the policy, then sweeps unreferenced manifests and blobs.
    pub fn prune(&self, policy: &PrunePolicy) -> Result<PruneOutcome> {
        let mut out = PruneOutcome {
            dry_run: policy.dry_run,
            ..Default::default()
        };
        let now = SystemTime::now();
        let entries = self.list(None)?;
        out.entries_before = entries.len() as u64;
        // Objects and their sizes.
        let objects: HashMap<String, u64> = self
            .backend
            .list(&format!("{}/blobs/", format::FORMAT_DIR))?
            .into_iter()
            .chain(
                self.backend
                    .list(&format!("{}/manifests/", format::FORMAT_DIR))?,
            )
            .map(|o| (o.name, o.size))
            .collect();
        // What each entry references.
        let refs: Vec<(EntryInfo, Option<Vec<String>>)> = entries
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
            .collect();

        // Decide evictions.
        let mut evict: Vec<(usize, String)> = Vec::new();
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
        for (i, (e, names)) in refs.iter().enumerate() {
            if names.is_none() {
                evict.push((
                    i,
                    format!(
                        "damaged: {}",
                        e.damaged
                            .clone()
                            .unwrap_or_else(|| "its manifest cannot be read".into())
                    ),
                ));
                continue;
            }
            if protected.contains(&i) {
                continue;
            }
            let age = now.duration_since(e.ref_modified).unwrap_or_default();
            let unused = now.duration_since(e.used_at).unwrap_or_default();
            if let Some(max) = policy.max_age
                && age > max
            {
                evict.push((
                    i,
                    format!("created {} ago (max age {})", human(age), human(max)),
                ));
            } else if let Some(max) = policy.max_unused
                && unused > max
            {
                evict.push((
                    i,
                    format!("unused for {} (max unused {})", human(unused), human(max)),
                ));
            }
        }
        if let Some(max) = policy.max_size {
            let mut refcount: HashMap<&str, u32> = HashMap::new();
            let evicted: HashSet<usize> = evict.iter().map(|(i, _)| *i).collect();
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
                .sum();
            // Least recently used first; protected entries last.
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
                evict.push((i, format!("store above max size {}", max)));
            }
        }
        for (i, reason) in &evict {
            let e = &refs[*i].0;
            out.entries_removed.push(Removed {
                scope: e.scope.clone(),
                key: e.key.clone(),
                reason: reason.clone(),
                stored_size: e.stored_size,
            });
            if !policy.dry_run {
                self.backend.delete(&format::ref_name(&e.scope, &e.key))?;
                self.backend.delete(&format::used_name(&e.scope, &e.key))?;
            }
        }
        out.entries_kept = out.entries_before - evict.len() as u64;

        // The sweep.
        let evicted: HashSet<usize> = evict.iter().map(|(i, _)| *i).collect();
        if policy.dry_run {
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
            out.store_size = objects.values().sum::<u64>() - out.bytes_freed;
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
        let mut active = 0;
        for lease in self
            .backend
            .list(&format!("{}/leases/", format::FORMAT_DIR))?
        {
            if now.duration_since(lease.modified).unwrap_or_default() < LEASE_TTL {
                active += 1;
            } else {
                self.backend.delete(&lease.name)?;
            }
        }
        // Another sweep that started first wins; ours stops.
        let other_sweeps = self
            .backend
            .list(&format!("{}/locks/sweep-", format::FORMAT_DIR))?
            .into_iter()
            .filter(|o| now.duration_since(o.modified).unwrap_or_default() < SWEEP_TTL)
            .count();
        if active > 0 {
            out.sweep = format!("skipped: {active} save(s) in progress; run prune again later");
            out.store_size = objects.values().sum::<u64>();
            return Ok(());
        }
        if other_sweeps > 1 {
            out.sweep = "skipped: another prune is sweeping".into();
            out.store_size = objects.values().sum::<u64>();
            return Ok(());
        }
        // Reread the refs now that saves are excluded: everything live is referenced here.
        let mut live: HashSet<String> = HashSet::new();
        for e in self.list(None)? {
            let r = match self.read_ref(&e.scope, &e.key) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(err) if err.is_corrupt() => {
                    out.warnings.push(format!("{err}; removed it"));
                    self.backend.delete(&format::ref_name(&e.scope, &e.key))?;
                    continue;
                }
                Err(err) => return Err(err),
            };
            live.insert(format::manifest_name(&r.manifest));
            match self.read_manifest(&r) {
                Ok(m) => live.extend(m.blobs().into_iter().map(format::blob_name)),
                Err(err) if err.is_corrupt() => {
                    out.warnings.push(format!("{err}; removed it"));
                    self.backend.delete(&format::ref_name(&e.scope, &e.key))?;
                    live.remove(&format::manifest_name(&r.manifest));
                }
                Err(err) => return Err(err),
            }
        }
        let current: Vec<(String, u64)> = self
            .backend
            .list(&format!("{}/manifests/", format::FORMAT_DIR))?
            .into_iter()
            .chain(
                self.backend
                    .list(&format!("{}/blobs/", format::FORMAT_DIR))?,
            )
            .map(|o| (o.name, o.size))
            .collect();
        let mut size = 0;
        for (name, sz) in current {
            if live.contains(&name) {
                size += sz;
            } else {
                self.backend.delete(&name)?;
                count_removed(out, &name, sz);
            }
        }
        out.store_size = size;
        out.sweep = "done".into();
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

/// Reads `r` to the end, checking its size (never reading past it) and blake3.
fn check_stream(r: impl Read, size: u64, hash: &str) -> std::result::Result<(), String> {
    let mut hr = HashReader {
        inner: r.take(size + 1),
        hasher: blake3::Hasher::new(),
        n: 0,
        progress: &NoProgress,
    };
    crate::save::copy_large(&mut hr, &mut io::sink()).map_err(|e| format!("unreadable ({e})"))?;
    if hr.n != size {
        return Err(format!("{} bytes, the manifest says {size}", hr.n));
    }
    if hr.hasher.finalize().to_hex().as_str() != hash {
        return Err("content does not match its hash".into());
    }
    Ok(())
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
