//! The backend contract as a test suite: [`check_backend`] runs every rule of the contract in
//! `backend/mod.rs` against a live backend. Each backend's tests call it (the directory
//! backend below, S3 against moto in `tests/s3.rs`); other crates get it with the
//! `test-support` feature.
//!
//! It works under a fresh prefix `contract/<unique>/`, so it can share a store with other
//! tests, and deletes what it wrote when it passes. It panics with a message naming the rule
//! that failed.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use super::{Backend, PutMode};

/// Runs the whole contract against `b`.
pub fn check_backend(b: &dyn Backend) {
    let root = unique_prefix();
    let loc = b.location();
    assert!(!loc.is_empty(), "location() must name the store");

    missing_objects_are_misses(b, &root);
    create_new_creates_once(b, &root);
    overwrite_replaces(b, &root);
    put_file_is_write_once(b, &root);
    put_files_publishes_each_once(b, &root);
    markers_behave_like_small_objects(b, &root);
    objects_of_many_sizes_round_trip(b, &root);
    list_matches_by_prefix_with_sizes_and_store_time(b, &root);
    delete_is_idempotent(b, &root);
    concurrent_create_new_has_one_winner(b, &root);
    concurrent_put_file_of_one_object(b, &root);
    readers_never_see_a_half_overwritten_object(b, &root);

    for o in b.list(&root).expect("list for cleanup") {
        b.delete(&o.name).expect("delete for cleanup");
    }
    assert!(
        b.list(&root).expect("list after cleanup").is_empty(),
        "objects remain after deleting every listed object"
    );
}

fn unique_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("contract/{}-{nanos}/", std::process::id())
}

/// Reads an object whole; `None` on a miss.
pub fn read_all(b: &dyn Backend, name: &str) -> Option<Vec<u8>> {
    let mut r = b.get(name).unwrap_or_else(|e| panic!("get {name}: {e}"))?;
    let mut out = Vec::new();
    // Small reads on purpose: a reader must work with any buffer size.
    let mut buf = [0u8; 1000];
    loop {
        let n = r
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {name}: {e}"));
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    Some(out)
}

/// Deterministic bytes that differ with `seed` and position (so shifted or mixed data shows).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn temp_file_with(data: &[u8]) -> tempfile::TempPath {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(&mut f, data).expect("write temp file");
    f.into_temp_path()
}

fn missing_objects_are_misses(b: &dyn Backend, root: &str) {
    let name = format!("{root}missing/object");
    assert!(
        b.get(&name).expect("get of a missing object").is_none(),
        "get of a missing object must be Ok(None)"
    );
    assert!(
        b.head(&name).expect("head of a missing object").is_none(),
        "head of a missing object must be Ok(None)"
    );
    assert!(
        b.list(&format!("{root}missing/")).expect("list").is_empty(),
        "list of an empty prefix must be empty"
    );
}

fn create_new_creates_once(b: &dyn Backend, root: &str) {
    let name = format!("{root}refs/main/key-1");
    assert!(
        b.put_bytes(&name, b"first", PutMode::CreateNew)
            .expect("create"),
        "CreateNew of an absent object must return true"
    );
    assert_eq!(read_all(b, &name).as_deref(), Some(&b"first"[..]));
    assert!(
        !b.put_bytes(&name, b"second", PutMode::CreateNew)
            .expect("second create"),
        "CreateNew of an existing object must return false"
    );
    assert_eq!(
        read_all(b, &name).as_deref(),
        Some(&b"first"[..]),
        "a losing CreateNew must not change the object"
    );
    let info = b
        .head(&name)
        .expect("head")
        .expect("head of a stored object");
    assert_eq!(info.size, 5);
    assert_eq!(info.name, name);
}

fn overwrite_replaces(b: &dyn Backend, root: &str) {
    let name = format!("{root}refs/main/key-2");
    assert!(
        b.put_bytes(&name, b"v1", PutMode::Overwrite)
            .expect("overwrite of an absent object"),
        "Overwrite creates an absent object"
    );
    assert!(
        b.put_bytes(&name, b"version two", PutMode::Overwrite)
            .expect("overwrite")
    );
    assert_eq!(read_all(b, &name).as_deref(), Some(&b"version two"[..]));
    assert_eq!(b.head(&name).expect("head").map(|i| i.size), Some(11));
}

fn put_file_is_write_once(b: &dyn Backend, root: &str) {
    let name = format!("{root}blobs/ab/abcdef.zst");
    let data = pattern(70_000, 1);
    let f = temp_file_with(&data);
    b.put_file(&name, &f).expect("put_file");
    assert_eq!(
        read_all(b, &name).as_deref(),
        Some(&data[..]),
        "put_file round trip"
    );
    // Content-named: a second put of the name writes nothing (here different bytes, to see
    // that nothing was written) and succeeds.
    let other = temp_file_with(b"not the same bytes");
    b.put_file(&name, &other)
        .expect("put_file of an existing object must succeed");
    assert_eq!(
        read_all(b, &name).as_deref(),
        Some(&data[..]),
        "put_file of an existing object must be a no-op"
    );
}

fn put_files_publishes_each_once(b: &dyn Backend, root: &str) {
    let existing = format!("{root}blobs/ab/abcdef.zst"); // written by put_file_is_write_once
    let before = read_all(b, &existing).expect("the object put_file wrote");
    let files: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| {
            (
                format!("{root}blobs/c{i}/c{i}batch.zst"),
                pattern(1000 + i * 5000, i as u64),
            )
        })
        .collect();
    let temps: Vec<tempfile::TempPath> = files.iter().map(|(_, d)| temp_file_with(d)).collect();
    let other = temp_file_with(b"not the same bytes");
    let mut items: Vec<(String, &Path)> = files
        .iter()
        .zip(&temps)
        .map(|((n, _), t)| (n.clone(), t.as_ref()))
        .collect();
    items.push((existing.clone(), other.as_ref()));
    b.put_files(&items).expect("put_files");
    for (name, data) in &files {
        assert_eq!(
            read_all(b, name).as_deref(),
            Some(&data[..]),
            "put_files round trip of {name}"
        );
    }
    assert_eq!(
        read_all(b, &existing),
        Some(before),
        "put_files of an existing object must be a no-op"
    );
}

fn markers_behave_like_small_objects(b: &dyn Backend, root: &str) {
    let name = format!("{root}leases/marker.json");
    assert!(
        b.put_marker(&name, b"one", PutMode::CreateNew)
            .expect("put_marker")
    );
    assert!(
        !b.put_marker(&name, b"two", PutMode::CreateNew)
            .expect("put_marker again"),
        "a create-new marker that exists must not be replaced"
    );
    assert_eq!(read_all(b, &name).as_deref(), Some(&b"one"[..]));
    assert!(
        b.put_marker(&name, b"three", PutMode::Overwrite)
            .expect("overwrite marker")
    );
    assert_eq!(read_all(b, &name).as_deref(), Some(&b"three"[..]));
    b.delete(&name).expect("delete marker");
    assert_eq!(read_all(b, &name), None);
}

fn objects_of_many_sizes_round_trip(b: &dyn Backend, root: &str) {
    for (i, len) in [0usize, 1, 4095, 65_536, 1_000_001, 3 * 1024 * 1024 + 17]
        .into_iter()
        .enumerate()
    {
        let data = pattern(len, 100 + i as u64);
        let file_name = format!("{root}sizes/file-{len}");
        let f = temp_file_with(&data);
        b.put_file(&file_name, &f).expect("put_file");
        let got = read_all(b, &file_name).expect("stored file");
        assert!(got == data, "put_file/get of {len} bytes changed the data");
        assert_eq!(
            b.head(&file_name).expect("head").map(|i| i.size),
            Some(len as u64)
        );

        let bytes_name = format!("{root}sizes/bytes-{len}");
        assert!(
            b.put_bytes(&bytes_name, &data, PutMode::CreateNew)
                .expect("put_bytes")
        );
        let got = read_all(b, &bytes_name).expect("stored bytes");
        assert!(got == data, "put_bytes/get of {len} bytes changed the data");
    }
}

fn list_matches_by_prefix_with_sizes_and_store_time(b: &dyn Backend, root: &str) {
    let base = format!("{root}list/");
    let names = ["a/one", "a/two", "ab", "b/three"];
    for (i, n) in names.iter().enumerate() {
        let data = pattern(10 + i, i as u64);
        b.put_bytes(&format!("{base}{n}"), &data, PutMode::Overwrite)
            .expect("put for list");
    }
    let all = b.list(&base).expect("list");
    let got: Vec<(&str, u64)> = all
        .iter()
        .map(|o| (o.name.strip_prefix(&base).unwrap_or("?"), o.size))
        .collect();
    let mut want: Vec<(&str, u64)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, 10 + i as u64))
        .collect();
    want.sort();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(
        got_sorted, want,
        "list must return every object under the prefix, named from the store root, with its size"
    );
    // A prefix is a string prefix, not a directory.
    let mut a: Vec<String> = b
        .list(&format!("{base}a"))
        .expect("list")
        .into_iter()
        .map(|o| o.name)
        .collect();
    a.sort();
    assert_eq!(
        a,
        vec![
            format!("{base}a/one"),
            format!("{base}a/two"),
            format!("{base}ab")
        ]
    );
    let a_dir = b.list(&format!("{base}a/")).expect("list");
    assert_eq!(a_dir.len(), 2, "list of {base}a/: {a_dir:?}");
    // The store's clock: a just-written object is recent. (Same host in tests; an hour of
    // slack covers a remote store whose clock differs a little.)
    let now = SystemTime::now();
    let slack = Duration::from_secs(3600);
    for o in &all {
        assert!(
            o.modified > now - slack && o.modified < now + slack,
            "modified time of {} is not the time it was written: {:?}",
            o.name,
            o.modified
        );
    }
    let head = b
        .head(&format!("{base}ab"))
        .expect("head")
        .expect("head of a listed object");
    let listed = all
        .iter()
        .find(|o| o.name == format!("{base}ab"))
        .expect("listed");
    assert_eq!(head.size, listed.size);
}

fn delete_is_idempotent(b: &dyn Backend, root: &str) {
    let name = format!("{root}delete/me");
    b.put_bytes(&name, b"x", PutMode::CreateNew).expect("put");
    b.delete(&name).expect("delete");
    assert!(
        b.get(&name).expect("get").is_none(),
        "deleted object is gone"
    );
    assert!(
        b.head(&name).expect("head").is_none(),
        "deleted object is gone"
    );
    b.delete(&name)
        .expect("deleting a missing object is not an error");
    // A deleted ref can be created again.
    assert!(
        b.put_bytes(&name, b"y", PutMode::CreateNew)
            .expect("create after delete")
    );
}

fn concurrent_create_new_has_one_winner(b: &dyn Backend, root: &str) {
    const THREADS: usize = 8;
    for round in 0..5 {
        let name = format!("{root}race/ref-{round}");
        let barrier = Arc::new(Barrier::new(THREADS));
        let results: Vec<(usize, bool)> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..THREADS)
                .map(|t| {
                    let barrier = barrier.clone();
                    let name = name.clone();
                    s.spawn(move || {
                        let data = format!("writer {t} of round {round}");
                        barrier.wait();
                        let won = b
                            .put_bytes(&name, data.as_bytes(), PutMode::CreateNew)
                            .unwrap_or_else(|e| panic!("racing CreateNew: {e}"));
                        (t, won)
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("writer thread"))
                .collect()
        });
        let winners: Vec<usize> = results.iter().filter(|r| r.1).map(|r| r.0).collect();
        assert_eq!(
            winners.len(),
            1,
            "exactly one of {THREADS} racing CreateNew must win (round {round}): {results:?}"
        );
        let want = format!("writer {} of round {round}", winners[0]);
        assert_eq!(
            read_all(b, &name).as_deref(),
            Some(want.as_bytes()),
            "the stored object must be the winner's"
        );
    }
}

fn concurrent_put_file_of_one_object(b: &dyn Backend, root: &str) {
    let name = format!("{root}blobs/cd/cdef.zst");
    let data = pattern(300_000, 7);
    std::thread::scope(|s| {
        for _ in 0..4 {
            let data = &data;
            let name = &name;
            s.spawn(move || {
                let f = temp_file_with(data);
                b.put_file(name, &f)
                    .unwrap_or_else(|e| panic!("concurrent put_file: {e}"));
            });
        }
    });
    assert!(
        read_all(b, &name).as_deref() == Some(&data[..]),
        "concurrent put_file of one content-named object must leave it whole"
    );
}

fn readers_never_see_a_half_overwritten_object(b: &dyn Backend, root: &str) {
    let name = format!("{root}refs/main/flapping");
    let len = 200_000;
    let versions = [pattern(len, 11), pattern(len, 12)];
    b.put_bytes(&name, &versions[0], PutMode::Overwrite)
        .expect("put");
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for i in 0..10 {
                b.put_bytes(&name, &versions[i % 2], PutMode::Overwrite)
                    .unwrap_or_else(|e| panic!("overwrite: {e}"));
            }
        });
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..10 {
                    let got = read_all(b, &name).expect("the object exists throughout");
                    assert!(
                        got == versions[0] || got == versions[1],
                        "a reader saw a mix of two versions ({} bytes)",
                        got.len()
                    );
                }
            });
        }
        writer.join().expect("writer");
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn dir_backend_meets_the_contract() {
        let dir = tempfile::tempdir().expect("temp dir");
        let b = super::super::dir::DirBackend::open(dir.path()).expect("open");
        super::check_backend(&b);
    }

    #[test]
    fn pattern_depends_on_seed_and_position() {
        let a = super::pattern(64, 1);
        assert_ne!(a, super::pattern(64, 2));
        assert_ne!(a[..32], a[32..]);
    }
}
