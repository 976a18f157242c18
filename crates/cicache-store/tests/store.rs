//! The store's behaviour on the directory backend: round trips, dedup, scopes, damage.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use cicache_store::{NoProgress, SaveRequest, SaveStatus};
use common::*;

#[test]
fn round_trip_keeps_files_modes_mtimes_symlinks_and_empty_dirs() {
    let e = env();
    let src = e.path("src");
    make_tree(&src);
    let out = e.save("main", "pip-1", &src);
    assert_eq!(out.status, SaveStatus::Saved);
    // 6 large files, one of them a duplicate of another: 6 distinct blobs; the small files
    // in packs beside them.
    assert_eq!(out.blobs, 6);
    assert!(out.packs >= 1, "{out:?}");
    assert_eq!(objects(&e.store_dir, "blobs").len() as u64, 6 + out.packs);
    let dst = e.path("dst");
    let r = e.restore("main", &[], "pip-1", &[], &dst);
    assert!(r.hit && r.exact, "{r:?}");
    assert_eq!(describe(&src), describe(&dst));
}

#[test]
fn incompressible_blobs_are_stored_raw_and_text_compressed() {
    let e = env();
    let src = e.path("src");
    make_tree(&src);
    e.save("main", "k", &src);
    let text = fs::read(src.join("big-text.txt")).unwrap();
    let body =
        fs::read(src.join("http-v2/a/b/c/d/e/".to_string() + &format!("{:056x}.body", 1))).unwrap();
    let blob = |data: &[u8]| {
        let h = blake3::hash(data).to_hex().to_string();
        e.store_dir
            .join(format!("cicache-v1/blobs/{}/{h}.zst", &h[..2]))
    };
    let text_stored = fs::metadata(blob(&text)).unwrap().len();
    let body_stored = fs::metadata(blob(&body)).unwrap().len();
    assert!(
        text_stored < text.len() as u64 / 10,
        "text blob {text_stored} bytes"
    );
    // A raw frame: at most the frame and block headers on top of the data.
    assert!(body_stored >= body.len() as u64 && body_stored < body.len() as u64 + 64);
    assert_eq!(
        zstd::decode_all(&fs::read(blob(&body)).unwrap()[..]).unwrap(),
        body
    );
}

#[test]
fn saving_an_existing_key_is_a_no_op_unless_update() {
    let e = env();
    let src = e.path("src");
    make_tree(&src);
    e.save("main", "k", &src);
    fs::write(src.join("new.txt"), "x").unwrap();
    assert_eq!(e.save("main", "k", &src).status, SaveStatus::Exists);
    let up = e
        .store
        .save(
            &SaveRequest {
                scope: "main",
                key: "k",
                path: &src,
                update: true,
                if_changed: false,
                excludes: &[],
            },
            &NoProgress,
        )
        .unwrap();
    assert_eq!(up.status, SaveStatus::Saved);
    let dst = e.path("dst");
    e.restore("main", &[], "k", &[], &dst);
    assert!(dst.join("new.txt").exists());
}

#[test]
fn resave_after_restore_hashes_nothing_and_new_key_writes_only_a_ref() {
    let e = env();
    let src = e.path("src");
    make_tree(&src);
    e.save("main", "k1", &src);
    let dir = e.path("work");
    e.restore("main", &[], "k1", &[], &dir);
    let blobs_before = objects(&e.store_dir, "blobs").len();
    let out = e.save("main", "k2", &dir);
    assert_eq!(out.status, SaveStatus::Saved);
    assert_eq!(out.hashed_files, 0, "{out:?}");
    assert!(out.manifest_reused, "{out:?}");
    assert_eq!(out.blobs_uploaded, 0);
    assert!(out.bytes_uploaded < 2000, "{out:?}");
    assert_eq!(objects(&e.store_dir, "blobs").len(), blobs_before);

    // One new wheel: one file hashed, one blob written.
    fs::write(dir.join("new.whl"), noise(400_000, 99)).unwrap();
    let out = e.save("main", "k3", &dir);
    assert_eq!(out.hashed_files, 1, "{out:?}");
    assert_eq!(out.blobs_uploaded, 1, "{out:?}");
    assert!(out.bytes_uploaded < 400_000 + 20_000, "{out:?}");
}

#[test]
fn one_new_small_file_rewrites_one_pack_not_all_small_files() {
    let e = env();
    let src = e.path("src");
    // 2,000 small files of 2 KiB: about 60 packs.
    for i in 0..2000u64 {
        let d = src.join(format!("http-v2/{:x}/{:x}", i % 16, (i / 16) % 16));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(format!("{i:056x}")), noise(2048, i)).unwrap();
    }
    let first = e.save("main", "k1", &src);
    assert!(first.packs > 20, "{first:?}");
    assert_eq!(first.packs_uploaded, first.packs);
    fs::write(src.join("http-v2/7/3/new-entry"), noise(3000, 5000)).unwrap();
    let out = e.save("main", "k2", &src);
    assert_eq!(out.hashed_files, 1, "{out:?}");
    // The run the new file joins changes (or splits in two when its path is a cut point).
    assert!(
        (1..=2).contains(&out.packs_uploaded),
        "{} of {} packs rewritten",
        out.packs_uploaded,
        out.packs
    );
    assert!(out.bytes_uploaded < 300_000, "{out:?}");
    let dst = e.path("dst");
    assert!(e.restore("main", &[], "k2", &[], &dst).hit);
    assert_eq!(describe(&src), describe(&dst));
}

#[test]
fn if_changed_skips_an_unchanged_restored_dir() {
    let e = env();
    let src = e.path("src");
    make_tree(&src);
    e.save("main", "k1", &src);
    let dir = e.path("work");
    e.restore("main", &[], "k1", &[], &dir);
    let req = |key, update| SaveRequest {
        scope: "main",
        key,
        path: &dir,
        update,
        if_changed: true,
        excludes: &[],
    };
    // `--update --if-changed` of the key restored: nothing changed, nothing written.
    assert_eq!(
        e.store.save(&req("k1", true), &NoProgress).unwrap().status,
        SaveStatus::Unchanged
    );
    fs::write(dir.join("selfcheck.json"), "{\"changed\": true}").unwrap();
    assert_eq!(
        e.store.save(&req("k1", true), &NoProgress).unwrap().status,
        SaveStatus::Saved
    );
}

#[test]
fn restore_onto_a_matching_dir_writes_nothing() {
    let e = env();
    let src = e.path("src");
    make_tree(&src);
    e.save("main", "k", &src);
    let dir = e.path("work");
    e.restore("main", &[], "k", &[], &dir);
    let ino = fs::metadata(dir.join("dup.body")).unwrap();
    let r = e.restore("main", &[], "k", &[], &dir);
    assert!(r.hit && r.up_to_date, "{r:?}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(dir.join("dup.body")).unwrap().ino(), ino.ino());
    // A change by hand makes it restore for real.
    fs::write(dir.join("selfcheck.json"), "tampered").unwrap();
    let r = e.restore("main", &[], "k", &[], &dir);
    assert!(r.hit && !r.up_to_date);
    assert_eq!(describe(&src), describe(&dir));
}

#[test]
fn restore_replaces_the_target_and_removes_stray_files() {
    let e = env();
    let src = e.path("src");
    make_tree(&src);
    e.save("main", "k", &src);
    let dst = e.path("dst");
    fs::create_dir_all(dst.join("old")).unwrap();
    fs::write(dst.join("old/stale.txt"), "stale").unwrap();
    e.restore("main", &[], "k", &[], &dst);
    assert_eq!(describe(&src), describe(&dst));
    // No staging or old dirs left beside it.
    let leftovers: Vec<_> = fs::read_dir(e.tmp.path())
        .unwrap()
        .filter_map(|d| d.ok())
        .map(|d| d.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".cicache"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn restore_keys_pick_the_newest_prefix_match() {
    let e = env();
    let a = e.path("a");
    let b = e.path("b");
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    fs::write(a.join("f"), "old").unwrap();
    fs::write(b.join("f"), "new").unwrap();
    e.save("main", "pip-aaaa", &a);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    e.save("main", "pip-bbbb", &b);
    let dst = e.path("dst");
    let r = e.restore("main", &[], "pip-cccc", &["pip-".into()], &dst);
    assert!(r.hit && !r.exact);
    assert_eq!(r.matched_key.as_deref(), Some("pip-bbbb"));
    assert_eq!(fs::read_to_string(dst.join("f")).unwrap(), "new");
    let miss = e.restore("main", &[], "pip-cccc", &["npm-".into()], &e.path("other"));
    assert!(!miss.hit);
    assert!(
        !e.path("other").exists(),
        "a miss must not create the target"
    );
}

#[test]
fn scopes_isolate_branches() {
    let e = env();
    let pr = e.path("pr");
    let main = e.path("main");
    fs::create_dir_all(&pr).unwrap();
    fs::create_dir_all(&main).unwrap();
    fs::write(pr.join("f"), "from pr-7").unwrap();
    fs::write(main.join("f"), "from main").unwrap();
    e.save("pr-7", "pip-x", &pr);
    // main never sees pr-7's entry.
    assert!(
        !e.restore("main", &[], "pip-x", &["pip-".into()], &e.path("d1"))
            .hit
    );
    e.save("main", "pip-y", &main);
    // pr-7 restores main's through the fallback scope, and its own first.
    let r = e.restore("pr-8", &["main".into()], "pip-y", &[], &e.path("d2"));
    assert!(r.hit && !r.exact && r.matched_scope.as_deref() == Some("main"));
    let r = e.restore(
        "pr-7",
        &["main".into()],
        "pip-z",
        &["pip-".into()],
        &e.path("d3"),
    );
    assert_eq!(r.matched_scope.as_deref(), Some("pr-7"));
    assert_eq!(fs::read_to_string(e.path("d3/f")).unwrap(), "from pr-7");
    // A save in pr-7 writes only under pr-7.
    let refs = objects(&e.store_dir, "refs");
    assert!(
        refs.iter()
            .all(|p| p.to_string_lossy().contains("/refs/pr-7/")
                || p.to_string_lossy().contains("/refs/main/"))
    );
    assert_eq!(
        refs.iter()
            .filter(|p| p.to_string_lossy().contains("/refs/main/"))
            .count(),
        1
    );
}

#[test]
fn excludes_leave_paths_out() {
    let e = env();
    let src = e.path("src");
    make_tree(&src);
    let out = e
        .store
        .save(
            &SaveRequest {
                scope: "main",
                key: "k",
                path: &src,
                update: false,
                if_changed: false,
                excludes: &["http-v2/**".into(), "*.sh".into()],
            },
            &NoProgress,
        )
        .unwrap();
    assert_eq!(out.status, SaveStatus::Saved);
    let dst = e.path("dst");
    e.restore("main", &[], "k", &[], &dst);
    assert!(!dst.join("http-v2/a").exists());
    assert!(!dst.join("run.sh").exists());
    assert!(dst.join("selfcheck.json").exists());
}

#[test]
fn setuid_bits_are_dropped() {
    let e = env();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("tool"), "x").unwrap();
    fs::set_permissions(src.join("tool"), fs::Permissions::from_mode(0o6755)).unwrap();
    e.save("main", "k", &src);
    let dst = e.path("dst");
    e.restore("main", &[], "k", &[], &dst);
    assert_eq!(
        fs::metadata(dst.join("tool")).unwrap().permissions().mode() & 0o7777,
        0o755
    );
}

#[test]
fn export_and_import_round_trip() {
    let e = env();
    let src = e.path("src");
    make_tree(&src);
    e.save("main", "k", &src);
    let archive = e.path("k.tar.zst");
    let out = e.store.export("main", &[], "k", &archive).unwrap();
    assert!(out.archive_size > 0);
    // A plain tar+zstd: readable by the tar crate.
    let entries = tar::Archive::new(zstd::Decoder::new(fs::File::open(&archive).unwrap()).unwrap())
        .entries()
        .unwrap()
        .count();
    assert!(entries > 10);
    let imp = e.store.import("main", "k2", &archive, false).unwrap();
    assert_eq!(imp.save.status, SaveStatus::Saved);
    let dst = e.path("dst");
    e.restore("main", &[], "k2", &[], &dst);
    // Plain tar keeps whole seconds.
    assert_eq!(describe_secs(&src), describe_secs(&dst));
}

#[test]
fn import_refuses_paths_outside_and_devices() {
    let e = env();
    let archive = e.path("evil.tar");
    {
        let mut b = tar::Builder::new(fs::File::create(&archive).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // tar::Builder refuses `..` itself: write the name bytes by hand.
        h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"../escape.txt");
        h.set_cksum();
        b.append(&h, &b"evil"[..]).unwrap();
        let mut d = tar::Header::new_gnu();
        d.set_entry_type(tar::EntryType::Char);
        d.set_path("null").unwrap();
        d.set_size(0);
        d.set_cksum();
        b.append(&d, &[][..]).unwrap();
        let mut ok = tar::Header::new_gnu();
        ok.set_path("fine.txt").unwrap();
        ok.set_size(2);
        ok.set_mode(0o644);
        ok.set_cksum();
        b.append(&ok, &b"ok"[..]).unwrap();
        b.finish().unwrap();
    }
    let imp = e.store.import("main", "k", &archive, false).unwrap();
    assert_eq!(imp.skipped.len(), 2, "{:?}", imp.skipped);
    assert!(!e.tmp.path().join("escape.txt").exists());
    assert!(!std::env::temp_dir().join("escape.txt").exists());
    let dst = e.path("dst");
    e.restore("main", &[], "k", &[], &dst);
    assert_eq!(fs::read_to_string(dst.join("fine.txt")).unwrap(), "ok");
    assert!(!dst.join("null").exists());
}
