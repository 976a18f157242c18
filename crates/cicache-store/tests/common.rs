//! Shared helpers of the store tests.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::io::Write;

use cicache_store::backend::dir::DirBackend;
use cicache_store::format::{self, EntryType, Manifest, ManifestEntry, Ref};
use cicache_store::{NoProgress, RestoreOutcome, RestoreRequest, SaveOutcome, SaveRequest, Store};

pub struct Env {
    pub tmp: tempfile::TempDir,
    pub store: Store,
    pub store_dir: PathBuf,
}

pub fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    // Keep the state files of the tests apart from the user's.
    // SAFETY: tests set the same value; the variable is only read by cicache.
    unsafe {
        std::env::set_var(
            "CICACHE_STATE_DIR",
            std::env::temp_dir().join("cicache-test-state"),
        )
    };
    let store_dir = tmp.path().join("store");
    let store = Store::new(Arc::new(DirBackend::open(&store_dir).unwrap()));
    Env {
        tmp,
        store,
        store_dir,
    }
}

impl Env {
    pub fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    pub fn save(&self, scope: &str, key: &str, dir: &Path) -> SaveOutcome {
        self.store
            .save(
                &SaveRequest {
                    scope,
                    key,
                    path: dir,
                    update: false,
                    if_changed: false,
                    excludes: &[],
                },
                &NoProgress,
            )
            .unwrap()
    }

    pub fn restore(
        &self,
        scope: &str,
        fallbacks: &[String],
        key: &str,
        restore_keys: &[String],
        dir: &Path,
    ) -> RestoreOutcome {
        self.store
            .restore(
                &RestoreRequest {
                    scope,
                    fallback_scopes: fallbacks,
                    key,
                    restore_keys,
                    path: dir,
                    lookup_only: false,
                },
                &NoProgress,
            )
            .unwrap()
    }
}

/// Deterministic pseudo-random bytes (incompressible).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A small tree shaped like a pip cache: large incompressible bodies, small headers,
/// a compressible large file, a symlink, an empty dir, odd modes.
pub fn make_tree(dir: &Path) {
    fs::create_dir_all(dir.join("http-v2/a/b/c/d/e")).unwrap();
    fs::create_dir_all(dir.join("empty/inner")).unwrap();
    for i in 0..5u64 {
        let name = format!("http-v2/a/b/c/d/e/{i:056x}");
        fs::write(dir.join(&name), format!("header {i}")).unwrap();
        fs::write(
            dir.join(format!("{name}.body")),
            noise(300_000 + i as usize * 1000, i),
        )
        .unwrap();
    }
    fs::write(
        dir.join("big-text.txt"),
        "compressible line\n".repeat(40_000),
    )
    .unwrap();
    fs::write(dir.join("selfcheck.json"), "{}").unwrap();
    fs::write(dir.join("run.sh"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(dir.join("run.sh"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("selfcheck.json", dir.join("link")).unwrap();
    std::os::unix::fs::symlink("../../outside", dir.join("dangling")).unwrap();
    // The same large content twice: stored once.
    fs::write(dir.join("dup.body"), noise(300_000, 0)).unwrap();
    filetime::set_file_mtime(
        dir.join("selfcheck.json"),
        filetime::FileTime::from_unix_time(1_600_000_000, 123_456_789),
    )
    .unwrap();
}

/// Everything about a tree that a restore must keep: paths, types, modes, sizes, contents,
/// file mtimes, symlink targets.
pub fn describe(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
        let m = e.path().symlink_metadata().unwrap();
        let mode = m.permissions().mode() & 0o7777;
        if m.file_type().is_symlink() {
            out.push(format!(
                "L {rel} -> {}",
                fs::read_link(e.path()).unwrap().display()
            ));
        } else if m.is_dir() {
            out.push(format!("D {rel} {mode:o}"));
        } else {
            let mt = filetime::FileTime::from_last_modification_time(&m);
            out.push(format!(
                "F {rel} {mode:o} {} {} {}",
                m.len(),
                blake3::hash(&fs::read(e.path()).unwrap()).to_hex(),
                mt.unix_seconds() * 1_000_000_000 + mt.nanoseconds() as i64
            ));
        }
    }
    out
}

/// Every file under the store of a kind (`blobs`, `manifests`, `refs`).
pub fn objects(store_dir: &Path, kind: &str) -> Vec<PathBuf> {
    let root = store_dir.join("cicache-v1").join(kind);
    if !root.exists() {
        return vec![];
    }
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().to_path_buf())
        .collect()
}

/// [`describe`] with mtimes cut to whole seconds (what plain tar keeps).
pub fn describe_secs(dir: &Path) -> Vec<String> {
    describe(dir)
        .into_iter()
        .map(|l| match l.rsplit_once(' ') {
            Some((head, ns)) if l.starts_with("F ") => {
                format!("{head} {}", ns.parse::<i64>().unwrap() / 1_000_000_000)
            }
            _ => l,
        })
        .collect()
}

// ---- crafted entries: valid hashes, so that only validation stops them ----

pub struct Member {
    pub name: Vec<u8>,
    pub kind: tar::EntryType,
    pub data: Vec<u8>,
}

pub fn file_entry(path: &str, data: &[u8]) -> ManifestEntry {
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

pub fn dir_entry(path: &str) -> ManifestEntry {
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

pub fn member(name: &str, data: &[u8]) -> Member {
    Member {
        name: name.as_bytes().to_vec(),
        kind: tar::EntryType::Regular,
        data: data.to_vec(),
    }
}

/// Writes an entry `main/key` with this manifest.json (raw JSON), these tar members and blobs.
pub fn craft(
    e: &Env,
    key: &str,
    manifest_json: &[u8],
    members: &[Member],
    blobs: &[(&str, Vec<u8>)],
) {
    craft_first(e, key, format::MANIFEST_PATH, manifest_json, members, blobs)
}

/// [`craft`] with the first tar member (where manifest.json belongs) named `first`; returns
/// the ref written.
pub fn craft_first(
    e: &Env,
    key: &str,
    first: &str,
    manifest_json: &[u8],
    members: &[Member],
    blobs: &[(&str, Vec<u8>)],
) {
    let mut tar_bytes = Vec::new();
    {
        let mut b = tar::Builder::new(&mut tar_bytes);
        let mut all = vec![Member {
            name: first.as_bytes().to_vec(),
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
    write_ref(e, &r);
}

/// Writes a ref as is (no checks), where the store looks for it.
pub fn write_ref(e: &Env, r: &Ref) {
    let rp = e.store_dir.join(format::ref_name(&r.scope, &r.key));
    fs::create_dir_all(rp.parent().unwrap()).unwrap();
    let mut f = fs::File::create(rp).unwrap();
    f.write_all(&serde_json::to_vec(r).unwrap()).unwrap();
}

/// The ref of `main/key` as stored.
pub fn read_ref(e: &Env, key: &str) -> Ref {
    serde_json::from_slice(&fs::read(e.store_dir.join(format::ref_name("main", key))).unwrap())
        .unwrap()
}

/// Flips one byte in the middle of a file.
pub fn flip(path: &Path) {
    let mut data = fs::read(path).unwrap();
    let i = data.len() / 2;
    data[i] ^= 0x55;
    fs::write(path, data).unwrap();
}

/// A directory with `files` (name, content), made fresh.
pub fn dir_with(e: &Env, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let d = e.path(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    for (f, data) in files {
        let p = d.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }
    d
}

/// The path of the blob holding content `data`.
pub fn blob_of(e: &Env, data: &[u8]) -> PathBuf {
    let h = blake3::hash(data).to_hex().to_string();
    e.store_dir.join(format::blob_name(&h))
}

pub fn manifest(entries: Vec<ManifestEntry>) -> Vec<u8> {
    serde_json::to_vec(&Manifest { format: 1, entries }).unwrap()
}

pub fn packed(path: &str, data: &[u8], pack: &str) -> ManifestEntry {
    let mut fe = file_entry(path, data);
    fe.pack = Some(pack.into());
    fe
}

pub fn manifest2(entries: Vec<ManifestEntry>) -> Vec<u8> {
    serde_json::to_vec(&Manifest { format: 2, entries }).unwrap()
}
