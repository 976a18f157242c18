//! Damaged and hostile entries: a miss with a warning, the next key tried, nothing written
//! outside the target, the previous target intact (invariants 3 and 4).

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use cicache_store::format::{self, EntryType, Manifest, ManifestEntry, Ref};
use common::*;

/// Flips one byte in the middle of a file.
fn flip(path: &Path) {
    let mut data = fs::read(path).unwrap();
    let i = data.len() / 2;
    data[i] ^= 0x55;
    fs::write(path, data).unwrap();
}

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

/// The damaged newest entry is skipped with a warning, the older one restored instead; the
/// existing target is replaced only by a complete tree; verify names the damaged entry.
fn assert_damage_is_a_miss(e: &Env, what: &str) {
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
    let v = e.store.verify(None, None).unwrap();
    assert_eq!(v.damaged.len(), 1, "{what}: {v:?}");
    assert_eq!(v.damaged[0].key, "pip-new", "{what}");
    assert_eq!(v.ok, 1, "{what}");
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

struct Member {
    name: Vec<u8>,
    kind: tar::EntryType,
    data: Vec<u8>,
}

fn file_entry(path: &str, data: &[u8]) -> ManifestEntry {
    ManifestEntry {
        path: path.into(),
        kind: EntryType::File,
        mode: 0o644,
        mtime_ns: 0,
        size: data.len() as u64,
        blake3: Some(blake3::hash(data).to_hex().to_string()),
        blob: false,
        pack: None,
        target: None,
    }
}

fn dir_entry(path: &str) -> ManifestEntry {
    ManifestEntry {
        path: path.into(),
        kind: EntryType::Dir,
        mode: 0o755,
        mtime_ns: 0,
        size: 0,
        blake3: None,
        blob: false,
        pack: None,
        target: None,
    }
}

fn member(name: &str, data: &[u8]) -> Member {
    Member {
        name: name.as_bytes().to_vec(),
        kind: tar::EntryType::Regular,
        data: data.to_vec(),
    }
}

/// Writes an entry `main/key` with this manifest.json (raw JSON), these tar members and blobs.
fn craft(e: &Env, key: &str, manifest_json: &[u8], members: &[Member], blobs: &[(&str, Vec<u8>)]) {
    let mut tar_bytes = Vec::new();
    {
        let mut b = tar::Builder::new(&mut tar_bytes);
        let mut all = vec![Member {
            name: format::MANIFEST_PATH.as_bytes().to_vec(),
            kind: tar::EntryType::Regular,
            data: manifest_json.to_vec(),
        }];
        all.extend(members.iter().map(|m| Member {
            name: m.name.clone(),
            kind: m.kind,
            data: m.data.clone(),
        }));
        for m in &all {
            let mut h = tar::Header::new_gnu();
            h.set_size(m.data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(m.kind);
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..m.name.len()].copy_from_slice(&m.name);
            h.set_cksum();
            b.append(&h, &m.data[..]).unwrap();
        }
        b.finish().unwrap();
    }
    let zst = zstd::encode_all(&tar_bytes[..], 3).unwrap();
    let mhash = blake3::hash(&zst).to_hex().to_string();
    let mpath = e.store_dir.join(format::manifest_name(&mhash));
    fs::create_dir_all(mpath.parent().unwrap()).unwrap();
    fs::write(&mpath, &zst).unwrap();
    for (hash, data) in blobs {
        let p = e.store_dir.join(format::blob_name(hash));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, zstd::encode_all(&data[..], 3).unwrap()).unwrap();
    }
    let r = Ref {
        format: 1,
        scope: "main".into(),
        key: key.into(),
        manifest: mhash,
        manifest_size: zst.len() as u64,
        entries: 1,
        total_size: 0,
        stored_size: 0,
        created: "2026-01-01T00:00:00Z".into(),
        tool: "test".into(),
        host: "test".into(),
    };
    let rp = e.store_dir.join(format::ref_name("main", key));
    fs::create_dir_all(rp.parent().unwrap()).unwrap();
    let mut f = fs::File::create(rp).unwrap();
    f.write_all(&serde_json::to_vec(&r).unwrap()).unwrap();
}

fn manifest(entries: Vec<ManifestEntry>) -> Vec<u8> {
    serde_json::to_vec(&Manifest { format: 1, entries }).unwrap()
}

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

fn packed(path: &str, data: &[u8], pack: &str) -> ManifestEntry {
    let mut fe = file_entry(path, data);
    fe.pack = Some(pack.into());
    fe
}

fn manifest2(entries: Vec<ManifestEntry>) -> Vec<u8> {
    serde_json::to_vec(&Manifest { format: 2, entries }).unwrap()
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
    let dst = e.path("box2");
    let err = e.store.restore(
        &cicache_store::RestoreRequest {
            scope: "main",
            fallback_scopes: &[],
            key: "evil",
            restore_keys: &[],
            path: &dst,
            lookup_only: false,
        },
        &cicache_store::NoProgress,
    );
    let msg = err.expect_err("no space").to_string();
    assert!(msg.contains("no space left"), "{msg}");
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
