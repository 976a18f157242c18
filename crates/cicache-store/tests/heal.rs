//! Issue 21: a cache that heals and never hurts. Damaged objects are removed so the next save
//! writes them again (item 1), hostile sizes are refused without a panic (item 4), every
//! refusal of an entry falls back to the next key (item 5), and verify refuses what restore
//! refuses (item 6).

mod common;

use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cicache_store::backend::dir::DirBackend;
use cicache_store::backend::{Backend, ObjectInfo, ObjectReader, PutMode};
use cicache_store::format::{self, Ref};
use cicache_store::{BackendError, PrunePolicy, SaveStatus, Store, VerifyOptions};
use common::*;

/// An old good entry `pip-old` and `pip-new` with a large file (a blob) `big.whl`.
fn store_with_blob() -> (Env, Vec<u8>) {
    let e = env();
    let old = dir_with(&e, "old", &[("marker", b"old")]);
    e.save("main", "pip-old", &old);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let big = noise(400_000, 21);
    let new = dir_with(&e, "new", &[("marker", b"new"), ("big.whl", &big)]);
    e.save("main", "pip-new", &new);
    (e, big)
}

#[test]
fn a_damaged_blob_is_not_reused_by_a_save_under_a_new_key() {
    let (e, big) = store_with_blob();
    flip(&blob_of(&e, &big));
    // The restore finds the damage and quarantines the blob...
    let dst = e.path("dst");
    let r = e.restore("main", &[], "pip-new", &[], &dst);
    assert!(!r.hit);
    let blob = format::blob_name(&blake3::hash(&big).to_hex());
    assert_eq!(r.objects_removed, vec![blob.clone()], "{r:?}");
    assert_eq!(r.entries_removed, vec!["main/pip-new".to_string()]);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("the next save writes it again")),
        "{:?}",
        r.warnings
    );
    // ...so a save under another key (same content) writes it again instead of reusing it.
    let s = e.save("main", "pip-newer", &e.path("new"));
    assert_eq!(s.blobs_uploaded, 1, "{s:?}");
    let r = e.restore("main", &[], "pip-newer", &[], &e.path("dst2"));
    assert!(r.hit && r.warnings.is_empty(), "{r:?}");
    assert_eq!(fs::read(e.path("dst2/big.whl")).unwrap(), big);
}

#[test]
fn save_update_after_damage_writes_the_object_again() {
    let (e, big) = store_with_blob();
    flip(&blob_of(&e, &big));
    let v = e.store.verify(Some("main"), Some("pip-new")).unwrap();
    assert_eq!(v.damaged.len(), 1, "{v:?}");
    assert_eq!(v.objects_removed.len(), 1, "verify quarantines: {v:?}");
    assert!(
        v.entries_removed.is_empty(),
        "without --repair the entry stays"
    );
    let s = e
        .store
        .save(
            &cicache_store::SaveRequest {
                scope: "main",
                key: "pip-new",
                path: &e.path("new"),
                update: true,
                if_changed: false,
                excludes: &[],
            },
            &cicache_store::NoProgress,
        )
        .unwrap();
    assert_eq!(s.status, SaveStatus::Saved);
    assert_eq!(s.blobs_uploaded, 1, "{s:?}");
    let r = e.restore("main", &[], "pip-new", &[], &e.path("dst"));
    assert!(r.hit && r.warnings.is_empty(), "{r:?}");
}

#[test]
fn verify_repair_removes_damaged_entries_and_names_a_command_that_works() {
    let (e, big) = store_with_blob();
    flip(&blob_of(&e, &big));
    let v = e.store.verify(None, None).unwrap();
    assert_eq!(v.damaged.len(), 1);
    let advice = v.advice.clone().unwrap_or_default();
    assert!(advice.contains("cicache verify --repair"), "{advice}");
    // Following the advice works: the entry goes, the next save writes it again.
    let v = e
        .store
        .verify_with(&VerifyOptions {
            repair: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(v.entries_removed, vec!["main/pip-new".to_string()], "{v:?}");
    assert!(e.store.read_ref("main", "pip-new").unwrap().is_none());
    assert!(e.store.read_ref("main", "pip-old").unwrap().is_some());
    let s = e.save("main", "pip-new", &e.path("new"));
    assert_eq!(s.status, SaveStatus::Saved);
    assert!(e.store.verify(None, None).unwrap().damaged.is_empty());
}

#[test]
fn prune_damaged_removes_what_plain_prune_keeps() {
    let (e, big) = store_with_blob();
    flip(&blob_of(&e, &big));
    let p = e.store.prune(&PrunePolicy::default()).unwrap();
    assert!(
        p.entries_removed.is_empty(),
        "a plain prune does not read blobs"
    );
    let dry = e
        .store
        .prune_damaged(&PrunePolicy {
            dry_run: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(dry.entries_removed.len(), 1, "{dry:?}");
    assert!(blob_of(&e, &big).exists(), "a dry run removes nothing");
    let p = e.store.prune_damaged(&PrunePolicy::default()).unwrap();
    assert_eq!(p.entries_removed.len(), 1, "{p:?}");
    assert_eq!(p.entries_removed[0].key, "pip-new");
    assert!(p.entries_removed[0].reason.starts_with("damaged"));
    assert_eq!(p.sweep, "done");
    let left: Vec<String> = e
        .store
        .list(None)
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(left, vec!["pip-old".to_string()]);
    assert!(!blob_of(&e, &big).exists());
}

/// A backend whose first read of a blob fails midway, as a dropped connection does: a fault
/// the directory store cannot show on demand, so this wrapper is a fake, named as one.
#[derive(Debug)]
struct FlakyNetworkFake {
    inner: DirBackend,
    failed: AtomicBool,
}

struct FailingReader {
    inner: ObjectReader,
    left: usize,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "connection reset",
            ));
        }
        let n = buf.len().min(self.left);
        let k = self.inner.read(&mut buf[..n])?;
        self.left -= k;
        Ok(k)
    }
}

impl Backend for FlakyNetworkFake {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn get(&self, name: &str) -> Result<Option<ObjectReader>, BackendError> {
        let r = self.inner.get(name)?;
        if name.contains("/blobs/") && !self.failed.swap(true, Ordering::SeqCst) {
            return Ok(r.map(|inner| Box::new(FailingReader { inner, left: 1000 }) as _));
        }
        Ok(r)
    }
    fn head(&self, name: &str) -> Result<Option<ObjectInfo>, BackendError> {
        self.inner.head(name)
    }
    fn put_file(&self, name: &str, file: &Path) -> Result<(), BackendError> {
        self.inner.put_file(name, file)
    }
    fn put_bytes(&self, name: &str, data: &[u8], mode: PutMode) -> Result<bool, BackendError> {
        self.inner.put_bytes(name, data, mode)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        self.inner.list(prefix)
    }
    fn delete(&self, name: &str) -> Result<(), BackendError> {
        self.inner.delete(name)
    }
}

#[test]
fn a_failed_read_is_not_damage_and_removes_nothing() {
    let (e, big) = store_with_blob();
    let flaky = Store::new(Arc::new(FlakyNetworkFake {
        inner: DirBackend::open(&e.store_dir).unwrap(),
        failed: AtomicBool::new(false),
    }));
    let req_path = e.path("dst");
    let req = cicache_store::RestoreRequest {
        scope: "main",
        fallback_scopes: &[],
        key: "pip-new",
        restore_keys: &[],
        path: &req_path,
        lookup_only: false,
    };
    let r = flaky.restore(&req, &cicache_store::NoProgress).unwrap();
    assert!(!r.hit, "{r:?}");
    assert!(
        r.objects_removed.is_empty() && r.entries_removed.is_empty(),
        "{r:?}"
    );
    assert!(blob_of(&e, &big).exists(), "a good blob was removed");
    let r = flaky.restore(&req, &cicache_store::NoProgress).unwrap();
    assert!(r.hit, "{r:?}");
}

// ---- item 4: hostile sizes ----

#[test]
fn a_ref_with_huge_sizes_is_damaged_not_a_panic_and_prune_goes_on() {
    let (e, _) = store_with_blob();
    let mut r = read_ref(&e, "pip-new");
    r.key = "pip-huge".into();
    r.manifest_size = u64::MAX;
    r.total_size = u64::MAX;
    r.stored_size = u64::MAX;
    write_ref(&e, &r);
    let out = e.restore("main", &[], "pip-huge", &["pip-old".into()], &e.path("dst"));
    assert_eq!(out.matched_key.as_deref(), Some("pip-old"), "{out:?}");
    assert!(out.warnings.iter().any(|w| w.contains("pip-huge")));
    write_ref(&e, &r);
    let v = e.store.verify(None, None).unwrap();
    assert_eq!(v.damaged.len(), 1, "{v:?}");
    assert_eq!(v.entries_ok, 2);
    let listed = e.store.list(None).unwrap();
    assert_eq!(listed.len(), 3);
    let p = e.store.prune(&PrunePolicy::default()).unwrap();
    assert_eq!(p.entries_removed.len(), 1, "{p:?}");
    assert_eq!(p.entries_removed[0].key, "pip-huge");
    assert_eq!(p.sweep, "done");
    assert_eq!(e.store.verify(None, None).unwrap().entries_ok, 2);
}

#[test]
fn a_directory_with_a_huge_size_is_refused_by_restore_and_verify() {
    let e = env();
    let mut d = dir_entry("d");
    d.size = u64::MAX;
    craft(
        &e,
        "evil",
        &manifest(vec![d, file_entry("d/a", b"x")]),
        &[member("d/a", b"x")],
        &[],
    );
    let out = e.restore("main", &[], "evil", &[], &e.path("dst"));
    assert!(!out.hit);
    assert!(
        out.warnings.iter().any(|w| w.contains("declares a size")),
        "{out:?}"
    );
    let v = e.store.verify(None, None).unwrap();
    assert_eq!(v.damaged.len(), 1, "{v:?}");
    let p = e.store.prune(&PrunePolicy::default()).unwrap();
    assert_eq!(p.sweep, "done");
}

#[test]
fn file_sizes_that_add_up_past_u64_are_refused() {
    let e = env();
    let mut a = file_entry("a", b"x");
    a.size = 1 << 40;
    a.blob = true;
    let mut entries = vec![a];
    for i in 0..20 {
        let mut f = entries[0].clone();
        f.path = format!("f{i}");
        entries.push(f);
    }
    craft(&e, "evil", &manifest(entries), &[], &[]);
    let out = e.restore("main", &[], "evil", &[], &e.path("dst"));
    assert!(!out.hit);
    assert!(
        out.warnings
            .iter()
            .any(|w| w.contains("add up to more than")),
        "{out:?}"
    );
}

// ---- item 5: every refusal falls back to the next key ----

/// A good `pip-old`, then the crafted `pip-evil` (newer).
fn with_good_old(e: &Env) {
    let old = dir_with(e, "old", &[("marker", b"old")]);
    e.save("main", "pip-old", &old);
    std::thread::sleep(std::time::Duration::from_millis(1100));
}

fn assert_falls_back(e: &Env, expect: &str) {
    let dst = e.path("dst");
    let r = e.restore("main", &[], "pip-evil", &["pip-".into()], &dst);
    assert_eq!(r.matched_key.as_deref(), Some("pip-old"), "{r:?}");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains(expect) && w.contains("tried the next key")),
        "{expect}: {:?}",
        r.warnings
    );
    assert_eq!(fs::read_to_string(dst.join("marker")).unwrap(), "old");
}

#[test]
fn an_entry_too_large_for_the_disk_falls_back_to_the_next_key() {
    let e = env();
    with_good_old(&e);
    let mut fe = file_entry("huge.whl", b"x");
    fe.size = 500 << 30; // 500 GiB
    fe.blob = true;
    craft(&e, "pip-evil", &manifest(vec![fe]), &[], &[]);
    assert_falls_back(&e, "no space left");
}

#[test]
fn a_name_too_long_for_the_filesystem_falls_back_to_the_next_key() {
    let e = env();
    with_good_old(&e);
    let name = "n".repeat(300);
    let h = blake3::hash(b"abc").to_hex().to_string();
    let pack = format::pack_hash([(h.as_str(), 3)]);
    craft(
        &e,
        "pip-evil",
        &manifest2(vec![packed(&name, b"abc", &pack)]),
        &[],
        &[(&pack, b"abc".to_vec())],
    );
    assert_falls_back(&e, "File name too long");
    // Refused for where it goes, not for what it is: nothing is removed from the store.
    assert!(e.store.read_ref("main", "pip-evil").unwrap().is_some());
    assert!(e.store_dir.join(format::blob_name(&pack)).exists());
}

// ---- item 6: verify refuses what restore refuses ----

fn assert_both_refuse(e: &Env, expect: &str) {
    let r = e.restore("main", &[], "evil", &[], &e.path("dst"));
    assert!(!r.hit, "{expect}: {r:?}");
    assert!(
        r.warnings.iter().any(|w| w.contains(expect)),
        "restore: {expect}: {:?}",
        r.warnings
    );
    let v = e.store.verify(None, None).unwrap();
    assert_eq!(
        v.damaged.len(),
        1,
        "verify passed what restore refuses ({expect})"
    );
    assert!(v.damaged[0].reason.contains(expect), "{v:?}");
}

#[test]
fn verify_refuses_hard_link_and_device_members() {
    for kind in [
        tar::EntryType::Link,
        tar::EntryType::Block,
        tar::EntryType::Char,
    ] {
        let e = env();
        let m = Member {
            name: b"a".to_vec(),
            kind,
            data: vec![],
        };
        craft(&e, "evil", &manifest(vec![file_entry("a", b"")]), &[m], &[]);
        assert_both_refuse(&e, "not a regular file");
    }
}

#[test]
fn verify_refuses_a_duplicate_member() {
    let e = env();
    craft(
        &e,
        "evil",
        &manifest(vec![file_entry("a", b"x")]),
        &[member("a", b"x"), member("a", b"x")],
        &[],
    );
    assert_both_refuse(&e, "appears twice");
}

#[test]
fn verify_refuses_a_wrong_first_member() {
    let e = env();
    craft_first(
        &e,
        "evil",
        "not-the-manifest.json",
        &manifest(vec![file_entry("a", b"x")]),
        &[member("a", b"x")],
        &[],
    );
    assert_both_refuse(&e, "does not start with");
}

#[test]
fn hostile_entries_stay_until_repair_removes_them() {
    let e = env();
    craft(
        &e,
        "evil",
        &manifest(vec![file_entry("a", b"x")]),
        &[member("a", b"x"), member("a", b"x")],
        &[],
    );
    let r: Ref = read_ref(&e, "evil");
    let v = e.store.verify(None, None).unwrap();
    assert_eq!(v.damaged.len(), 1);
    assert!(
        e.store_dir
            .join(format::manifest_name(&r.manifest))
            .exists(),
        "a hostile but intact object is not removed"
    );
    let v = e
        .store
        .verify_with(&VerifyOptions {
            repair: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(v.entries_removed, vec!["main/evil".to_string()]);
    assert!(e.store.list(None).unwrap().is_empty());
}
