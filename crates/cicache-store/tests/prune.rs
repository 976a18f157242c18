//! Eviction and the sweep, and the sweep racing saves (invariant 5).

mod common;

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use cicache_store::backend::dir::DirBackend;
use cicache_store::{NoProgress, PrunePolicy, RestoreRequest, SaveRequest, SaveStatus, Store};
use common::*;

fn tree(e: &Env, name: &str, seed: u64, big: usize) -> std::path::PathBuf {
    let d = e.path(name);
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("small"), format!("small {seed}")).unwrap();
    for i in 0..big {
        fs::write(
            d.join(format!("big{i}.whl")),
            noise(300_000, seed * 100 + i as u64),
        )
        .unwrap();
    }
    d
}

#[test]
fn max_size_evicts_least_recently_used_and_sweeps_their_blobs() {
    let e = env();
    let a = tree(&e, "a", 1, 2);
    let b = tree(&e, "b", 2, 2);
    e.save("main", "pip-a", &a);
    std::thread::sleep(Duration::from_millis(1100));
    e.save("main", "pip-b", &b);
    std::thread::sleep(Duration::from_millis(1100));
    // Using pip-a makes pip-b the least recently used.
    e.restore("main", &[], "pip-a", &[], &e.path("r"));
    let dry = e
        .store
        .prune(&PrunePolicy {
            max_size: Some(700_000),
            dry_run: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(dry.entries_removed.len(), 1);
    assert_eq!(dry.entries_removed[0].key, "pip-b");
    // Two blobs and one pack of small files per entry.
    assert_eq!(
        objects(&e.store_dir, "blobs").len(),
        6,
        "dry run removed something"
    );
    let out = e
        .store
        .prune(&PrunePolicy {
            max_size: Some(700_000),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(out.entries_removed.len(), 1);
    assert_eq!(out.entries_removed[0].key, "pip-b");
    assert_eq!(out.sweep, "done");
    assert_eq!(out.blobs_removed, 3);
    assert_eq!(
        out.bytes_freed, dry.bytes_freed,
        "dry run promised what prune does"
    );
    assert_eq!(objects(&e.store_dir, "blobs").len(), 3);
    assert!(out.store_size <= 700_000, "{out:?}");
    // What is left restores completely.
    assert_eq!(e.store.verify(None, None).unwrap().damaged.len(), 0);
}

#[test]
fn shared_blobs_stay_while_any_entry_uses_them() {
    let e = env();
    let a = tree(&e, "a", 1, 2);
    e.save("main", "pip-aaaaaaaa", &a);
    fs::write(a.join("small"), "changed").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    e.save("main", "pip-bbbbbbbb", &a);
    let out = e
        .store
        .prune(&PrunePolicy {
            max_age: Some(Duration::from_millis(500)),
            keep_last: Some(1),
            ..Default::default()
        })
        .unwrap();
    // keep-last 1 of family `pip` keeps pip-b; pip-a goes; the blobs are pip-b's too, only
    // pip-a's pack (its own `small`) goes with it.
    assert_eq!(
        out.entries_removed
            .iter()
            .map(|r| r.key.as_str())
            .collect::<Vec<_>>(),
        vec!["pip-aaaaaaaa"]
    );
    assert_eq!(out.blobs_removed, 1);
    assert_eq!(out.manifests_removed, 1);
    let r = e.restore("main", &[], "pip-bbbbbbbb", &[], &e.path("r"));
    assert!(r.hit);
}

#[test]
fn max_unused_uses_last_restore_not_creation() {
    let e = env();
    let a = tree(&e, "a", 1, 0);
    let b = tree(&e, "b", 2, 0);
    e.save("main", "a", &a);
    e.save("main", "b", &b);
    std::thread::sleep(Duration::from_millis(2100));
    e.restore("main", &[], "a", &[], &e.path("r"));
    let out = e
        .store
        .prune(&PrunePolicy {
            max_unused: Some(Duration::from_secs(1)),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        out.entries_removed
            .iter()
            .map(|r| r.key.as_str())
            .collect::<Vec<_>>(),
        vec!["b"]
    );
}

#[test]
fn a_sweep_is_skipped_while_a_save_holds_a_lease() {
    let e = env();
    let a = tree(&e, "a", 1, 1);
    e.save("main", "a", &a);
    // A lease of a save in progress (written as a save writes it).
    let lease = e.store_dir.join("cicache-v1/leases/test.json");
    fs::create_dir_all(lease.parent().unwrap()).unwrap();
    fs::write(&lease, "{}").unwrap();
    // SAFETY: read by cicache only.
    unsafe { std::env::set_var("CICACHE_SWEEP_RETRY_SECS", "1") };
    let out = e
        .store
        .prune(&PrunePolicy {
            max_age: Some(Duration::ZERO),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(out.entries_removed.len(), 1);
    assert!(out.sweep.starts_with("skipped"), "{}", out.sweep);
    assert_eq!(
        objects(&e.store_dir, "blobs").len(),
        2,
        "swept under a lease"
    );
    fs::remove_file(&lease).unwrap();
    let out = e.store.prune(&PrunePolicy::default()).unwrap();
    assert_eq!(out.sweep, "done");
    assert_eq!(objects(&e.store_dir, "blobs").len(), 0);
}

#[test]
fn a_save_waits_for_a_running_sweep_then_skips() {
    let e = env();
    let a = tree(&e, "a", 1, 1);
    let lock = e.store_dir.join("cicache-v1/locks/sweep-test.json");
    fs::create_dir_all(lock.parent().unwrap()).unwrap();
    fs::write(&lock, "{}").unwrap();
    // SAFETY: read by cicache only; other tests don't sweep-wait.
    unsafe { std::env::set_var("CICACHE_SWEEP_WAIT_SECS", "1") };
    let err = e
        .store
        .save(
            &SaveRequest {
                scope: "main",
                key: "a",
                path: &a,
                update: false,
                if_changed: false,
                excludes: &[],
            },
            &NoProgress,
        )
        .unwrap_err();
    assert!(err.to_string().contains("sweeping"), "{err}");
    assert!(objects(&e.store_dir, "refs").is_empty());
    assert!(
        objects(&e.store_dir, "leases").is_empty(),
        "lease left behind"
    );
}

/// Saves that reuse the same blobs race prunes that evict everything and sweep; every ref
/// left at any time must restore completely (no ref to a missing blob).
#[test]
fn saves_racing_prunes_never_leave_a_ref_to_a_missing_blob() {
    let e = env();
    // SAFETY: read by cicache only.
    unsafe { std::env::set_var("CICACHE_SWEEP_RETRY_SECS", "1") };
    let shared = tree(&e, "shared", 5, 3);
    let store_dir = e.store_dir.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut handles = Vec::new();
    for t in 0..2 {
        let store = Store::new(Arc::new(DirBackend::open(&store_dir).unwrap()));
        let src = e.path(&format!("src{t}"));
        fs::create_dir_all(&src).unwrap();
        for f in fs::read_dir(&shared).unwrap() {
            let f = f.unwrap();
            fs::copy(f.path(), src.join(f.file_name())).unwrap();
        }
        let stop = stop.clone();
        handles.push(std::thread::spawn(move || {
            let mut saved = 0;
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                fs::write(src.join("small"), format!("{t}-{i}")).unwrap();
                let key = format!("k{t}-{i}");
                match store.save(
                    &SaveRequest {
                        scope: "main",
                        key: &key,
                        path: &src,
                        update: false,
                        if_changed: false,
                        excludes: &[],
                    },
                    &NoProgress,
                ) {
                    Ok(o) if o.status == SaveStatus::Saved => saved += 1,
                    Ok(_) => {}
                    Err(e) => assert!(e.to_string().contains("sweeping"), "{e}"),
                }
                // Real saves have gaps between them; give the sweeps their windows.
                std::thread::sleep(Duration::from_millis((i % 4) * 15));
            }
            saved
        }));
    }
    let pruner = Store::new(Arc::new(DirBackend::open(&store_dir).unwrap()));
    let checker = Store::new(Arc::new(DirBackend::open(&store_dir).unwrap()));
    let mut sweeps = 0;
    let mut checked = 0;
    for round in 0..25 {
        let out = pruner
            .prune(&PrunePolicy {
                max_age: Some(Duration::ZERO),
                ..Default::default()
            })
            .unwrap();
        if out.sweep == "done" {
            sweeps += 1;
        }
        // Every ref visible now is complete (a ref evicted meanwhile is fine: not found).
        for entry in checker.list(None).unwrap() {
            match checker.verify_entry(&entry.scope, &entry.key) {
                Ok(_) => checked += 1,
                Err(cicache_store::StoreError::NotFound { .. }) => {}
                Err(err) => {
                    // A ref removed between reading it and its manifest also reads as missing:
                    // recheck that the ref still exists before failing.
                    if checker
                        .read_ref(&entry.scope, &entry.key)
                        .unwrap()
                        .is_some()
                    {
                        panic!("round {round}: {err}");
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let saved: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(
        saved > 5 && sweeps > 0,
        "saved {saved}, sweeps {sweeps}: the race did not happen"
    );
    // After the dust settles, the last entries restore.
    for entry in checker.list(None).unwrap() {
        let dst = e.path(&format!("final-{}", entry.key));
        let r = checker
            .restore(
                &RestoreRequest {
                    scope: "main",
                    fallback_scopes: &[],
                    key: &entry.key,
                    restore_keys: &[],
                    path: &dst,
                    lookup_only: false,
                },
                &NoProgress,
            )
            .unwrap();
        assert!(r.hit && r.warnings.is_empty(), "{r:?}");
    }
    eprintln!("saved {saved}, sweeps {sweeps}, entries checked {checked}");
}
