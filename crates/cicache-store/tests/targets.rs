//! Issue 21: long keys (item 3), a target that holds the store (item 2), leftovers of killed
//! restores and saves, a symlinked path (item 7), an empty cache dir (item 11) and
//! `--if-changed` after a restore-key hit (item 12).

mod common;

use std::fs;
use std::time::{Duration, SystemTime};

use cicache_store::format::{self, Lease};
use cicache_store::{NoProgress, PrunePolicy, RestoreRequest, SaveRequest, SaveStatus};
use common::*;

// ---- item 3: long keys ----

#[test]
fn long_keys_are_saved_restored_listed_and_pruned() {
    let e = env();
    let src = dir_with(&e, "src", &[("a", b"1"), ("b/c", b"2")]);
    let h = "0123456789abcdef0123";
    let keys = [
        "k".repeat(512),
        format!("{}{h}-{h}-{h}-{h}", "a/".repeat(90)),
        format!("pip-{}", "ü%".repeat(100)),
    ];
    let scope = "ü".repeat(127); // 254 bytes, 762 encoded
    for key in &keys {
        let s = e
            .store
            .save(
                &SaveRequest {
                    scope: &scope,
                    key,
                    path: &src,
                    update: false,
                    if_changed: false,
                    excludes: &[],
                },
                &NoProgress,
            )
            .unwrap_or_else(|err| panic!("save of a {}-byte key: {err}", key.len()));
        assert_eq!(s.status, SaveStatus::Saved);
        let name = format::ref_name(&scope, key);
        assert!(
            name.split('/').all(|seg| seg.len() <= 255),
            "{name} has a segment longer than a file name may be"
        );
        // The full key is inside the ref.
        let r = e.store.read_ref(&scope, key).unwrap().expect("ref");
        assert_eq!(&r.key, key);
        let dst = e.path("dst");
        let out = e.restore(&scope, &[], key, &[], &dst);
        assert!(out.exact, "{out:?}");
        assert_eq!(describe(&dst), describe(&src));
    }
    // Listing gives the full keys; a restore-key prefix longer than the kept part of a
    // hashed name still finds its entry, and only it.
    let mut listed: Vec<String> = e
        .store
        .list(Some(&scope))
        .unwrap()
        .into_iter()
        .map(|i| {
            assert!(i.damaged.is_none(), "{i:?}");
            i.key
        })
        .collect();
    listed.sort();
    let mut want = keys.to_vec();
    want.sort();
    assert_eq!(listed, want);
    let prefix = format!("{}{h}-{h}-", "a/".repeat(90));
    let out = e.restore(&scope, &[], "other", &[prefix], &e.path("dst2"));
    assert_eq!(
        out.matched_key.as_deref(),
        Some(keys[1].as_str()),
        "{out:?}"
    );
    let found = e.store.list_refs(&scope, &"k".repeat(300)).unwrap();
    assert_eq!(found.len(), 1);
    // Verify and prune see them as healthy entries.
    let v = e.store.verify(None, None).unwrap();
    assert_eq!((v.entries_ok, v.damaged.len(), v.ok), (3, 0, true), "{v:?}");
    let p = e.store.prune(&PrunePolicy::default()).unwrap();
    assert!(p.entries_removed.is_empty(), "{p:?}");
    assert_eq!(p.sweep, "done");
    assert_eq!(e.store.verify(None, None).unwrap().entries_ok, 3);
}

#[test]
fn keys_that_fit_keep_their_plain_names() {
    // Entries saved before hashed names existed are found where they were written.
    let k = "pip-".to_string() + &"x".repeat(250);
    assert_eq!(
        format::ref_name("main", &k),
        format!("cicache-v1/refs/main/{k}")
    );
    let long = "y".repeat(300);
    let names = format::ref_names("main", &long);
    assert_eq!(names.len(), 2);
    assert_eq!(names[1], format!("cicache-v1/refs/main/{long}"));
    assert!(format::is_hashed_segment(
        names[0].rsplit('/').next().unwrap()
    ));
}

// ---- item 2: a target that holds the store ----

#[test]
fn a_restore_into_a_directory_holding_the_store_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let home_cache = tmp.path().join("home/.cache");
    let store_dir = home_cache.join("cicache");
    let store = cicache_store::Store::new(std::sync::Arc::new(
        cicache_store::backend::dir::DirBackend::open(&store_dir).unwrap(),
    ));
    unsafe {
        std::env::set_var(
            "CICACHE_STATE_DIR",
            std::env::temp_dir().join("cicache-test-state"),
        )
    };
    fs::create_dir_all(home_cache.join("pip")).unwrap();
    fs::write(home_cache.join("pip/wheel"), "w").unwrap();
    let save = |key: &str| {
        store
            .save(
                &SaveRequest {
                    scope: "main",
                    key,
                    path: &home_cache,
                    update: false,
                    if_changed: false,
                    excludes: &["cicache".into()],
                },
                &NoProgress,
            )
            .unwrap()
    };
    save("snapshot");
    fs::write(home_cache.join("pip/later"), "l").unwrap();
    save("later");
    for target in [
        home_cache.clone(),
        tmp.path().join("home"),
        store_dir.join("x"),
    ] {
        let err = store
            .restore(
                &RestoreRequest {
                    scope: "main",
                    fallback_scopes: &[],
                    key: "snapshot",
                    restore_keys: &[],
                    path: &target,
                    lookup_only: false,
                },
                &NoProgress,
            )
            .expect_err("a restore over the store must be refused");
        assert!(err.to_string().contains("roll it back"), "{err}");
    }
    // Nothing was rolled back: the entry saved after the snapshot is still there.
    assert!(store.read_ref("main", "later").unwrap().is_some());
    assert!(home_cache.join("pip/later").exists());
}

// ---- item 7: leftovers and symlinks ----

#[test]
fn a_restore_clears_leftovers_of_killed_restores() {
    let e = env();
    let src = dir_with(&e, "src", &[("a", b"1")]);
    e.save("main", "k", &src);
    let parent = e.path("ws");
    fs::create_dir_all(&parent).unwrap();
    // A killed restore of this host: a process that cannot exist.
    let host = cicache_store::cleanup::host_tag();
    let dead = parent.join(format!(".cicache-staging-{host}-99999999-abc"));
    fs::create_dir_all(dead.join("deep/er")).unwrap();
    fs::write(dead.join("deep/er/f"), "x").unwrap();
    let dead_manifest = parent.join(format!(".cicache-manifest-{host}-99999999-abc"));
    fs::write(&dead_manifest, "x").unwrap();
    // A live one (this process) and another host's fresh one are left alone.
    let live = parent.join(format!(
        ".cicache-staging-{host}-{}-abc",
        std::process::id()
    ));
    fs::create_dir_all(&live).unwrap();
    let other = parent.join(".cicache-staging-0000beef-1-abc");
    fs::create_dir_all(&other).unwrap();
    let out = e.restore("main", &[], "k", &[], &parent.join("cache"));
    assert!(out.hit);
    assert!(!dead.exists() && !dead_manifest.exists(), "{out:?}");
    assert_eq!(out.leftovers_removed.len(), 2, "{out:?}");
    assert!(live.exists());
    assert!(other.exists() || host == "0000beef");
}

/// Run as a child by `a_restore_killed_by_sigterm_leaves_nothing`: installs the handlers and
/// restores slowly until killed.
#[test]
fn child_restore_until_killed() {
    let Ok(dir) = std::env::var("CICACHE_TEST_KILL_CHILD") else {
        return;
    };
    cicache_store::cleanup::install_signal_handlers().unwrap();
    let root = std::path::PathBuf::from(dir);
    let store = cicache_store::Store::new(std::sync::Arc::new(
        cicache_store::backend::dir::DirBackend::open(root.join("store")).unwrap(),
    ));
    struct Slow;
    impl cicache_store::Progress for Slow {
        fn inc(&self, _: u64) {
            std::thread::sleep(Duration::from_secs(30));
        }
    }
    let _ = store.restore(
        &RestoreRequest {
            scope: "main",
            fallback_scopes: &[],
            key: "k",
            restore_keys: &[],
            path: &root.join("ws/cache"),
            lookup_only: false,
        },
        &Slow,
    );
}

#[test]
fn a_restore_killed_by_sigterm_leaves_nothing() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let e = env();
        let src = dir_with(&e, "src", &[("a", b"1"), ("big", &noise(300_000, 1))]);
        e.save("main", "k", &src);
        let ws = e.path("ws");
        fs::create_dir_all(&ws).unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_restore_until_killed", "--nocapture"])
            .env("CICACHE_TEST_KILL_CHILD", e.tmp.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let leftovers = || -> Vec<String> {
            fs::read_dir(&ws)
                .unwrap()
                .map(|d| d.unwrap().file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with(".cicache-"))
                .collect()
        };
        // Killed once a file is being written into the staging dir.
        let writing = || {
            leftovers().iter().any(|n| {
                n.starts_with(".cicache-staging-")
                    && fs::read_dir(ws.join(n)).is_ok_and(|mut d| d.next().is_some())
            })
        };
        let start = std::time::Instant::now();
        while !writing() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no staging dir appeared"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        unsafe { libc::kill(child.id() as i32, sig) };
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(sig), "{status:?}");
        assert_eq!(leftovers(), Vec::<String>::new(), "signal {sig}");
        assert!(!ws.join("cache").exists());
    }
}

#[test]
fn a_killed_saves_lease_does_not_block_the_sweep() {
    let e = env();
    let src = dir_with(&e, "src", &[("a", b"1")]);
    e.save("main", "k", &src);
    let write_lease = |name: &str, lease: &Lease, age: Duration| {
        let p = e.store_dir.join(format::lease_name(name));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, serde_json::to_vec(lease).unwrap()).unwrap();
        let t = filetime::FileTime::from_system_time(SystemTime::now() - age);
        filetime::set_file_mtime(&p, t).unwrap();
    };
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let lease = |host: &str, pid: u32, heartbeat: Option<u64>| Lease {
        scope: "main".into(),
        key: "k".into(),
        host: host.into(),
        pid,
        started: "2026-01-01T00:00:00Z".into(),
        pid_start: None,
        heartbeat_secs: heartbeat,
    };
    // This host, a process that is gone: abandoned at once.
    write_lease("dead", &lease(&host, 99_999_999, Some(60)), Duration::ZERO);
    // Another host, not renewed for ten heartbeats: abandoned.
    write_lease(
        "silent",
        &lease("elsewhere", 1, Some(60)),
        Duration::from_secs(700),
    );
    let p = e.store.prune(&PrunePolicy::default()).unwrap();
    assert_eq!(p.sweep, "done", "{p:?}");
    assert!(
        e.store
            .backend()
            .list("cicache-v1/leases/")
            .unwrap()
            .is_empty()
    );
    // A renewed lease of another host still protects its save.
    write_lease(
        "busy",
        &lease("elsewhere", 1, Some(60)),
        Duration::from_secs(30),
    );
    unsafe { std::env::set_var("CICACHE_SWEEP_RETRY_SECS", "0") };
    let p = e.store.prune(&PrunePolicy::default()).unwrap();
    assert!(p.sweep.starts_with("skipped"), "{p:?}");
}

#[test]
fn a_path_that_is_a_symlink_to_a_directory_is_followed() {
    let e = env();
    let real = dir_with(&e, "real", &[("a", b"1")]);
    let link = e.path("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let s = e.save("main", "k", &link);
    assert_eq!((s.status, s.files), (SaveStatus::Saved, 1), "{s:?}");
    let other = dir_with(&e, "other", &[("old", b"0")]);
    let link2 = e.path("link2");
    std::os::unix::fs::symlink(&other, &link2).unwrap();
    let r = e.restore("main", &[], "k", &[], &link2);
    assert!(r.hit, "{r:?}");
    assert!(
        fs::symlink_metadata(&link2)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(describe(&other), describe(&real));
}

// ---- item 11: an empty cache dir ----

#[test]
fn an_empty_directory_is_a_warning_and_no_entry() {
    let e = env();
    let empty = e.path("empty");
    fs::create_dir_all(empty.join("http-v2/a")).unwrap();
    let s = e.save("main", "pip-1", &empty);
    assert_eq!(s.status, SaveStatus::Empty, "{s:?}");
    assert!(
        s.warnings.iter().any(|w| w.contains("holds no files")),
        "{s:?}"
    );
    assert!(e.store.read_ref("main", "pip-1").unwrap().is_none());
    let r = e.restore("main", &[], "pip-1", &[], &e.path("dst"));
    assert!(!r.hit);
}

// ---- item 12: --if-changed after a restore-key hit ----

#[test]
fn if_changed_saves_under_the_new_key_after_a_restore_key_hit() {
    let e = env();
    let src = dir_with(&e, "src", &[("a", b"1")]);
    e.save("main", "pip-old", &src);
    let ws = e.path("ws");
    let r = e.restore("main", &[], "pip-new", &["pip-".into()], &ws);
    assert_eq!(r.matched_key.as_deref(), Some("pip-old"));
    let save = |key: &str| {
        e.store
            .save(
                &SaveRequest {
                    scope: "main",
                    key,
                    path: &ws,
                    update: false,
                    if_changed: true,
                    excludes: &[],
                },
                &NoProgress,
            )
            .unwrap()
    };
    // Unchanged since the restore, but the entry under pip-new does not exist: saved (a
    // ref only: the manifest is reused).
    let s = save("pip-new");
    assert_eq!(s.status, SaveStatus::Saved, "{s:?}");
    assert!(s.manifest_reused, "{s:?}");
    let r = e.restore("main", &[], "pip-new", &["pip-".into()], &e.path("ws2"));
    assert!(r.exact, "{r:?}");
    // After an exact hit, unchanged: nothing to save.
    let r = e.restore("main", &[], "pip-new", &[], &ws);
    assert!(r.exact);
    assert_eq!(save("pip-new").status, SaveStatus::Exists);
}
