//! Damaged and hostile entries: a miss with a warning, the next key tried, nothing written
//! outside the target, the previous target intact (invariants 3 and 4).

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use cicache_store::format::{self, EntryType, ManifestEntry, Ref};
use common::*;

fn truncate(path: &Path) {
    let data = fs::read(path).unwrap();
    fs::write(path, &data[..data.len() / 2]).unwrap();
}

/// A store with a good entry `pip-old` (restorable by prefix) and the entry under test
/// `pip-new`, saved later; returns (env, source of pip-new, the blob of pip-new's big file).
fn two_entries() -> (Env, PathBuf, PathBuf) {
    let e = env();
    let old = e.path("old");
    fs::create_dir_all(&old).unwrap();
    fs::write(old.join("marker"), "old").unwrap();
    e.save("main", "pip-old", &old);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let new = e.path("new");
    fs::create_dir_all(&new).unwrap();
    fs::write(new.join("marker"), "new").unwrap();
    let big = noise(500_000, 7);
    fs::write(new.join("big.whl"), &big).unwrap();
    e.save("main", "pip-new", &new);
    let h = blake3::hash(&big).to_hex().to_string();
    let blob = e
        .store_dir
        .join(format!("cicache-v1/blobs/{}/{h}.zst", &h[..2]));
    (e, new, blob)
}

fn ref_path(e: &Env, key: &str) -> PathBuf {
    e.store_dir.join(format::ref_name("main", key))
}

fn manifest_path(e: &Env, key: &str) -> PathBuf {
    let r: Ref = serde_json::from_slice(&fs::read(ref_path(e, key)).unwrap()).unwrap();
    e.store_dir.join(format::manifest_name(&r.manifest))
}

/// Verify names the damaged newest entry (and says how to repair it); a restore skips it
/// with a warning and restores the older one instead; the existing target is replaced only
/// by a complete tree. Then the damage heals (issue 21, item 1): the restore removed the
/// damaged objects and the entry, so the next save of `pip-new` writes them again and the
/// entry restores.
fn assert_damage_is_a_miss(e: &Env, what: &str) {
    let v = e.store.verify(None, None).unwrap();
    assert_eq!(v.damaged.len(), 1, "{what}: {v:?}");
    assert_eq!(v.damaged[0].key, "pip-new", "{what}");
    assert_eq!(v.entries_ok, 1, "{what}");
    assert!(
        v.advice
            .as_deref()
            .is_some_and(|a| a.contains("cicache verify --repair")),
        "{what}: {v:?}"
    );
    let dst = e.path("dst");
    fs::create_dir_all(&dst).unwrap();
    fs::write(dst.join("previous"), "keep me until a good restore").unwrap();
    let r = e.restore("main", &[], "pip-new", &["pip-".into()], &dst);
    assert!(
        r.warnings.iter().any(|w| w.contains("pip-new")),
        "{what}: {r:?}"
    );
    assert_eq!(r.matched_key.as_deref(), Some("pip-old"), "{what}: {r:?}");
    assert_eq!(
        fs::read_to_string(dst.join("marker")).unwrap(),
        "old",
        "{what}"
    );
    assert!(!dst.join("big.whl").exists(), "{what}: partial restore");
    // Without a fallback key: a miss, and the previous dir untouched.
    let dst2 = e.path("dst2");
    fs::create_dir_all(&dst2).unwrap();
    fs::write(dst2.join("previous"), "x").unwrap();
    let r = e.restore("main", &[], "pip-new", &[], &dst2);
    assert!(!r.hit, "{what}");
    assert_eq!(fs::read_dir(&dst2).unwrap().count(), 1, "{what}");
    // Healing: the next save writes the entry again, and it restores.
    let new = e.path("new");
    let s = e.save("main", "pip-new", &new);
    assert_eq!(s.status, cicache_store::SaveStatus::Saved, "{what}: {s:?}");
    let dst3 = e.path("dst3");
    let r = e.restore("main", &[], "pip-new", &[], &dst3);
    assert!(r.hit && r.warnings.is_empty(), "{what}: {r:?}");
    assert_eq!(describe(&dst3), describe(&new), "{what}");
    let v = e.store.verify(None, None).unwrap();
    assert!(v.damaged.is_empty(), "{what}: {v:?}");
}

#[test]
fn flipped_byte_in_a_blob() {
    let (e, _, blob) = two_entries();
    flip(&blob);
    assert_damage_is_a_miss(&e, "flipped blob");
}

#[test]
fn truncated_blob() {
    let (e, _, blob) = two_entries();
    truncate(&blob);
    assert_damage_is_a_miss(&e, "truncated blob");
}

#[test]
fn missing_blob() {
    let (e, _, blob) = two_entries();
    fs::remove_file(&blob).unwrap();
    assert_damage_is_a_miss(&e, "missing blob");
}

/// The pack holding the newest entry's small file `marker` ("new").
fn pack_of_new(e: &Env) -> PathBuf {
    let h = blake3::hash(b"new").to_hex().to_string();
    let pack = format::pack_hash([(h.as_str(), 3)]);
    let p = e.store_dir.join(format::blob_name(&pack));
    assert!(p.exists(), "{} missing", p.display());
    p
}

#[test]
fn flipped_byte_in_a_pack() {
    let (e, _, _) = two_entries();
    flip(&pack_of_new(&e));
    assert_damage_is_a_miss(&e, "flipped pack");
}

#[test]
fn truncated_pack() {
    let (e, _, _) = two_entries();
    truncate(&pack_of_new(&e));
    assert_damage_is_a_miss(&e, "truncated pack");
}

#[test]
fn missing_pack() {
    let (e, _, _) = two_entries();
    fs::remove_file(pack_of_new(&e)).unwrap();
    assert_damage_is_a_miss(&e, "missing pack");
}

#[test]
fn flipped_byte_in_a_manifest() {
    let (e, _, _) = two_entries();
    flip(&manifest_path(&e, "pip-new"));
    assert_damage_is_a_miss(&e, "flipped manifest");
}

#[test]
fn truncated_manifest() {
    let (e, _, _) = two_entries();
    truncate(&manifest_path(&e, "pip-new"));
    assert_damage_is_a_miss(&e, "truncated manifest");
}

#[test]
fn flipped_byte_in_a_ref() {
    let (e, _, _) = two_entries();
    flip(&ref_path(&e, "pip-new"));
    assert_damage_is_a_miss(&e, "flipped ref");
}

#[test]
fn truncated_ref() {
    let (e, _, _) = two_entries();
    truncate(&ref_path(&e, "pip-new"));
    assert_damage_is_a_miss(&e, "truncated ref");
}

// ---- hostile entries, crafted with valid hashes so that only validation stops them ----

/// Restoring the crafted entry is refused with a message containing `expect`; nothing
/// appears outside the target and the previous target is intact.
fn assert_refused(e: &Env, expect: &str) {
    let dst = e.path("box/dst");
    fs::create_dir_all(&dst).unwrap();
    fs::write(dst.join("previous"), "intact").unwrap();
    let r = e.restore("main", &[], "evil", &[], &dst);
    assert!(!r.hit, "{expect}: {r:?}");
    assert!(
        r.warnings.iter().any(|w| w.contains(expect)),
        "expected {expect:?} in {:?}",
        r.warnings
    );
    assert_eq!(fs::read_to_string(dst.join("previous")).unwrap(), "intact");
    assert_eq!(fs::read_dir(&dst).unwrap().count(), 1);
    let outside: Vec<_> = fs::read_dir(e.path("box"))
        .unwrap()
        .map(|d| d.unwrap().file_name())
        .collect();
    assert_eq!(
        outside,
        vec![std::ffi::OsString::from("dst")],
        "{expect}: wrote beside the target"
    );
    assert!(!e.tmp.path().join("escaped").exists());
}

#[test]
fn absolute_paths_are_refused() {
    let e = env();
    craft(
        &e,
        "evil",
        &manifest(vec![file_entry("/tmp/escaped", b"x")]),
        &[member("/tmp/escaped", b"x")],
        &[],
    );
    assert_refused(&e, "absolute");
}

#[test]
fn dot_dot_is_refused() {
    let e = env();
    craft(
        &e,
        "evil",
        &manifest(vec![file_entry("../escaped", b"x")]),
        &[member("../escaped", b"x")],
        &[],
    );
    assert_refused(&e, "`..`");
}

#[test]
fn writing_through_a_symlink_is_refused() {
    let e = env();
    let link = ManifestEntry {
        path: "link".into(),
        kind: EntryType::Symlink,
        mode: 0o777,
        mtime_ns: 0,
        size: 0,
        blake3: None,
        blob: false,
        pack: None,
        target: Some("../..".into()),
    };
    craft(
        &e,
        "evil",
        &manifest(vec![link, file_entry("link/escaped", b"x")]),
        &[member("link/escaped", b"x")],
        &[],
    );
    assert_refused(&e, "not a directory of the entry");
}

#[test]
fn tar_members_that_are_not_regular_files_are_refused() {
    let e = env();
    let m = Member {
        name: b"dev".to_vec(),
        kind: tar::EntryType::Char,
        data: vec![],
    };
    craft(
        &e,
        "evil",
        &manifest(vec![file_entry("dev", b"")]),
        &[m],
        &[],
    );
    assert_refused(&e, "not a regular file");
}

#[test]
fn device_types_in_the_manifest_are_refused() {
    let e = env();
    let json =
        br#"{"format":1,"entries":[{"path":"null","type":"chardev","mode":438,"mtime_ns":0}]}"#;
    craft(&e, "evil", json, &[], &[]);
    assert_refused(&e, "manifest.json is not valid");
}

#[test]
fn tar_members_not_in_the_manifest_are_refused() {
    let e = env();
    craft(
        &e,
        "evil",
        &manifest(vec![file_entry("a", b"x")]),
        &[member("a", b"x"), member("extra", b"y")],
        &[],
    );
    assert_refused(&e, "not a small file of the manifest");
}

#[test]
fn a_pack_longer_than_its_files_is_refused() {
    let e = env();
    let h = blake3::hash(b"abc").to_hex().to_string();
    let pack = format::pack_hash([(h.as_str(), 3)]);
    craft(
        &e,
        "evil",
        &manifest2(vec![packed("a", b"abc", &pack)]),
        &[],
        &[(&pack, b"abcEXTRA".to_vec())],
    );
    assert_refused(&e, "holds more than the files the manifest lists");
}

#[test]
fn a_pack_shorter_than_its_files_is_refused() {
    let e = env();
    let h1 = blake3::hash(b"abc").to_hex().to_string();
    let h2 = blake3::hash(b"defg").to_hex().to_string();
    let pack = format::pack_hash([(h1.as_str(), 3), (h2.as_str(), 4)]);
    craft(
        &e,
        "evil",
        &manifest2(vec![
            packed("a", b"abc", &pack),
            packed("b", b"defg", &pack),
        ]),
        &[],
        &[(&pack, b"abcde".to_vec())],
    );
    assert_refused(&e, "b: 2 bytes stored, the manifest says 4");
}

#[test]
fn packs_in_a_format_1_manifest_are_refused() {
    let e = env();
    let h = blake3::hash(b"abc").to_hex().to_string();
    let pack = format::pack_hash([(h.as_str(), 3)]);
    craft(
        &e,
        "evil",
        &manifest(vec![packed("a", b"abc", &pack)]),
        &[],
        &[(&pack, b"abc".to_vec())],
    );
    assert_refused(&e, "names an invalid pack");
}

#[test]
fn sizes_that_disagree_with_the_manifest_are_refused() {
    let e = env();
    let mut fe = file_entry("a", b"xyz");
    fe.size = 2;
    craft(&e, "evil", &manifest(vec![fe]), &[member("a", b"xyz")], &[]);
    assert_refused(&e, "the manifest says 2");
}

#[test]
fn a_blob_larger_than_declared_is_cut_and_refused() {
    let e = env();
    let data = vec![0u8; 1_000_000]; // decompresses far beyond what is declared
    let hash = blake3::hash(&data).to_hex().to_string();
    let fe = ManifestEntry {
        path: "bomb".into(),
        kind: EntryType::File,
        mode: 0o644,
        mtime_ns: 0,
        size: 300_000,
        blake3: Some(hash.clone()),
        blob: true,
        pack: None,
        target: None,
    };
    craft(&e, "evil", &manifest(vec![fe]), &[], &[(&hash, data)]);
    assert_refused(&e, "the manifest says 300000");
}

#[test]
fn a_huge_declared_size_is_refused_before_writing() {
    let e = env();
    let mut fe = file_entry("huge", b"x");
    fe.size = u64::MAX / 2;
    fe.blob = true;
    craft(&e, "evil", &manifest(vec![fe]), &[], &[]);
    assert_refused(&e, "declares a size");
    let mut fe = file_entry("huge", b"x");
    fe.size = 1 << 39; // 512 GiB: plausible per file, but not on this disk
    fe.blob = true;
    craft(&e, "evil", &manifest(vec![fe]), &[], &[]);
    // A refusal like any other (issue 21, item 5): a miss with a warning, nothing written.
    let dst = e.path("box2");
    let r = e.restore("main", &[], "evil", &[], &dst);
    assert!(!r.hit, "{r:?}");
    assert!(
        r.warnings.iter().any(|w| w.contains("no space left")),
        "{:?}",
        r.warnings
    );
    assert!(!dst.exists());
}

#[test]
fn duplicate_paths_are_refused() {
    let e = env();
    craft(
        &e,
        "evil",
        &manifest(vec![dir_entry("d"), file_entry("d", b"x")]),
        &[member("d", b"x")],
        &[],
    );
    assert_refused(&e, "appears twice");
}
