//! The store commands through the real binary: output, exit codes, kill -9 at any point,
//! agents saving at once, a full disk.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;

mod aws;
use aws::{create_bucket, moto};

struct T {
    tmp: tempfile::TempDir,
}

impl T {
    fn new() -> T {
        let t = T {
            tmp: tempfile::tempdir().unwrap(),
        };
        // CICACHE_STORE names an existing (empty) store, as on an agent; a missing one is
        // tested on its own (`reading_commands_never_create_a_store`).
        fs::create_dir_all(t.p("store")).unwrap();
        t
    }
    fn p(&self, s: &str) -> PathBuf {
        self.tmp.path().join(s)
    }
    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("cicache").unwrap();
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.p("home"))
            .env("CICACHE_STORE", self.p("store"))
            .env("CICACHE_STATE_DIR", self.p("state"))
            .env("DASH", "-")
            .current_dir(self.tmp.path());
        c
    }
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let o = self.cmd().args(args).output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    }
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let (code, out, err) = self.run(&[&["--json"], args].concat());
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
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

/// A pip-cache-like tree: `big` incompressible bodies of `size` bytes and `small` headers.
fn tree(dir: &Path, big: usize, size: usize, small: usize) {
    for i in 0..small {
        let d = dir.join(format!("http-v2/{}/{}", i % 7, i % 5));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(format!("h{i}")), format!("header {i}")).unwrap();
    }
    fs::create_dir_all(dir.join("wheels")).unwrap();
    for i in 0..big {
        fs::write(
            dir.join(format!("wheels/w{i}.whl")),
            noise(size, i as u64 + 1),
        )
        .unwrap();
    }
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            let data = if e.file_type().is_file() {
                fs::read(e.path()).unwrap()
            } else {
                vec![]
            };
            (rel, data)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn key_renders_templates() {
    let t = T::new();
    fs::write(t.p("requirements.txt"), "torch\n").unwrap();
    let (code, out, err) = t.run(&["key", "pip-{{ hashFiles \"requirements*.txt\" }}-{{ os }}"]);
    assert_eq!(code, 0, "{err}");
    let key = out.trim();
    assert!(
        key.starts_with("pip-") && key.ends_with(&format!("-{}", std::env::consts::OS)),
        "{key}"
    );
    let (code, _, err) = t.run(&["key", "{{ hashFiles \"nothing*.txt\" }}"]);
    assert_eq!(code, 1);
    assert!(err.contains("matched no file"), "{err}");
}

#[test]
fn miss_is_success_unless_fail_on_miss() {
    let t = T::new();
    let (code, out, _) = t.run(&["restore", "--key", "k", "--path", "dir"]);
    assert_eq!((code, out.trim()), (0, "miss"));
    let (code, _, _) = t.run(&["restore", "--key", "k", "--path", "dir", "--fail-on-miss"]);
    assert_eq!(code, 3);
    let v = t.json(&["restore", "--key", "k", "--path", "dir"]);
    assert_eq!(v["status"], "miss");
    assert_eq!(v["hit"], false);
}

#[test]
fn save_restore_round_trip_with_json_and_scopes() {
    let t = T::new();
    tree(&t.p("cache"), 3, 300_000, 20);
    let v = t.json(&[
        "--scope", "main", "save", "--key", "pip-1", "--path", "cache",
    ]);
    assert_eq!(v["status"], "saved");
    assert_eq!(v["files"], 23);
    assert_eq!(v["blobs_uploaded"], 3);
    let v = t.json(&[
        "--scope", "main", "save", "--key", "pip-1", "--path", "cache",
    ]);
    assert_eq!(v["status"], "exists");
    // A PR build restores main's entry through the fallback scope.
    let v = t.json(&[
        "--scope",
        "pr-7",
        "--fallback-scope",
        "main",
        "restore",
        "--key",
        "pip-2",
        "--restore-key",
        "pip{{ env \"DASH\" }}",
        "--path",
        "out",
    ]);
    assert_eq!(v["status"], "hit");
    assert_eq!(v["matched_key"], "pip-1");
    assert_eq!(v["matched_scope"], "main");
    assert_eq!(listing(&t.p("cache")), listing(&t.p("out")));
    // The scope also comes from Jenkins' variables.
    let o = t
        .cmd()
        .env("CHANGE_ID", "9")
        .args(["--json", "save", "--key", "pip-9", "--path", "cache"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["scope"], "pr-9");
    let v = t.json(&["list"]);
    assert_eq!(v["entries"].as_array().unwrap().len(), 2);
    let v = t.json(&["verify"]);
    assert_eq!(
        (v["ok"].as_bool(), v["entries_ok"].as_u64()),
        (Some(true), Some(2))
    );
}

#[test]
fn config_file_supplies_defaults() {
    let t = T::new();
    tree(&t.p(".pip-cache"), 1, 300_000, 3);
    fs::write(t.p("requirements.txt"), "x\n").unwrap();
    fs::write(
        t.p("cicache.yml"),
        "scope: main\ncache:\n  key: 'pip-{{ hashFiles \"requirements.txt\" }}'\n  path: .pip-cache\n",
    )
    .unwrap();
    let v = t.json(&["save"]);
    assert_eq!(v["status"], "saved");
    assert_eq!(v["scope"], "main");
    fs::write(t.p("cicache.yml"), "nonsense_key: 1\n").unwrap();
    let (code, _, err) = t.run(&["list"]);
    assert_eq!(code, 2);
    assert!(err.contains("cicache.yml"), "{err}");
}

#[test]
fn kill_dash_nine_at_any_point_never_leaves_a_partial_entry() {
    let t = T::new();
    tree(&t.p("cache"), 12, 1_000_000, 300);
    let want = listing(&t.p("cache"));
    let mut killed_mid_save = 0;
    for (i, delay_ms) in [0u64, 2, 5, 10, 20, 35, 50, 80, 120, 180, 250, 400]
        .iter()
        .enumerate()
    {
        let key = format!("k{i}");
        let mut child = t
            .cmd()
            .args(["save", "--key", &key, "--path", "cache"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(*delay_ms));
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let status = child.wait().unwrap();
        if status.code().is_none() {
            killed_mid_save += 1;
        }
        // Nothing damaged is visible, whatever was killed when.
        let (code, out, err) = t.run(&["verify"]);
        assert_eq!(code, 0, "after kill at {delay_ms}ms: {out}{err}");
        // The entry is either absent or complete.
        let dst = format!("out{i}");
        let v = t.json(&["restore", "--key", &key, "--path", &dst]);
        if v["hit"] == true {
            assert_eq!(listing(&t.p(&dst)), want, "kill at {delay_ms}ms");
        } else {
            assert!(!t.p(&dst).exists());
        }
    }
    assert!(
        killed_mid_save >= 3,
        "the saves finished before the kills; the test proves nothing"
    );
    // Crash hooks at the two interesting points: after a new blob, just before the ref.
    for (n, point) in ["blob", "before-ref"].iter().enumerate() {
        fs::write(
            t.p(&format!("cache/wheels/new{n}.whl")),
            noise(400_000, 1000 + n as u64),
        )
        .unwrap();
        let o = t
            .cmd()
            .env("CICACHE_CRASH_AT", point)
            .args(["save", "--key", point, "--path", "cache"])
            .output()
            .unwrap();
        assert!(
            o.status.code().is_none(),
            "{point}: the crash hook did not fire"
        );
        let v = t.json(&["restore", "--key", point, "--path", "crashed"]);
        assert_eq!(v["hit"], false, "{point}");
    }
    // The store still works: a save after all that, and it restores exactly.
    let want = listing(&t.p("cache"));
    let v = t.json(&["save", "--key", "after", "--path", "cache"]);
    assert_eq!(v["status"], "saved");
    let v = t.json(&["restore", "--key", "after", "--path", "final"]);
    assert_eq!(v["hit"], true);
    assert_eq!(listing(&t.p("final")), want);
}

#[test]
fn eight_agents_saving_the_same_key_at_once() {
    let t = T::new();
    tree(&t.p("cache"), 6, 500_000, 200);
    let children: Vec<_> = (0..8)
        .map(|_| {
            t.cmd()
                .args(["--json", "save", "--key", "same", "--path", "cache"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut statuses = Vec::new();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        statuses.push(v["status"].as_str().unwrap().to_string());
    }
    assert_eq!(
        statuses.iter().filter(|s| *s == "saved").count(),
        1,
        "{statuses:?}"
    );
    let refs: Vec<_> = walkdir::WalkDir::new(t.p("store/cicache-v1/refs"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .collect();
    assert_eq!(refs.len(), 1);
    let v = t.json(&["restore", "--key", "same", "--path", "out"]);
    assert_eq!(v["hit"], true);
    assert_eq!(listing(&t.p("cache")), listing(&t.p("out")));
    let (code, _, _) = t.run(&["verify"]);
    assert_eq!(code, 0);
}

/// Mounts a tmpfs; `None` when this process may not (not root).
fn tmpfs(dir: &Path, opts: &str) -> Option<()> {
    fs::create_dir_all(dir).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        return Some(());
    }
    if std::env::var("CICACHE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("cannot mount a tmpfs (root needed) for the full-disk test");
    }
    eprintln!("skipped: cannot mount a tmpfs (not root)");
    None
}

struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_during_restore_leaves_the_previous_dir_and_says_why() {
    let t = T::new();
    tree(&t.p("cache"), 4, 1_000_000, 50);
    t.json(&["save", "--key", "big", "--path", "cache"]);
    // Too few bytes: refused before writing.
    let small = t.p("small");
    if tmpfs(&small, "size=2m").is_none() {
        return;
    }
    let _u1 = Unmount(small.clone());
    fs::create_dir_all(small.join("pip")).unwrap();
    fs::write(small.join("pip/previous"), "intact").unwrap();
    let (code, out, err) = t.run(&[
        "restore",
        "--key",
        "big",
        "--path",
        small.join("pip").to_str().unwrap(),
    ]);
    assert_eq!((code, out.trim()), (0, "miss"), "{err}");
    assert!(err.contains("no space"), "{err}");
    assert_eq!(
        listing(&small.join("pip")),
        vec![("previous".to_string(), b"intact".to_vec())]
    );
    assert_eq!(
        fs::read_dir(&small).unwrap().count(),
        1,
        "staging left behind"
    );
    // Enough bytes but too few inodes: the disk fills while writing.
    let inodes = t.p("inodes");
    tmpfs(&inodes, "size=64m,nr_inodes=40").unwrap();
    let _u2 = Unmount(inodes.clone());
    fs::create_dir_all(inodes.join("pip")).unwrap();
    fs::write(inodes.join("pip/previous"), "intact").unwrap();
    let (code, out, err) = t.run(&[
        "restore",
        "--key",
        "big",
        "--path",
        inodes.join("pip").to_str().unwrap(),
    ]);
    assert_eq!((code, out.trim()), (0, "miss"), "{err}");
    assert!(
        err.contains("No space left") || err.contains("no space"),
        "{err}"
    );
    assert_eq!(
        listing(&inodes.join("pip")),
        vec![("previous".to_string(), b"intact".to_vec())]
    );
    assert_eq!(
        fs::read_dir(&inodes).unwrap().count(),
        1,
        "staging left behind"
    );
    // With --strict the same is a failure.
    let (code, _, _) = t.run(&[
        "--strict",
        "restore",
        "--key",
        "big",
        "--path",
        inodes.join("pip").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
}

#[test]
fn a_store_that_cannot_be_opened_is_a_warning_not_a_failed_build() {
    let t = T::new();
    fs::write(t.p("not-a-dir"), "x").unwrap();
    let o = t
        .cmd()
        .env("CICACHE_STORE", t.p("not-a-dir/store"))
        .args(["restore", "--key", "k", "--path", "out"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("warning") && err.contains("not-a-dir"),
        "{err}"
    );
    let o = t
        .cmd()
        .env("CICACHE_STORE", t.p("not-a-dir/store"))
        .args(["--strict", "restore", "--key", "k", "--path", "out"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn saving_a_missing_dir_is_a_warning_unless_strict() {
    let t = T::new();
    let (code, out, err) = t.run(&["save", "--key", "k", "--path", "nowhere"]);
    assert_eq!((code, out.trim()), (0, "failed"), "{err}");
    assert!(
        err.contains("nowhere") && err.contains("nothing was saved"),
        "{err}"
    );
    let (code, _, err) = t.run(&["--strict", "save", "--key", "k", "--path", "nowhere"]);
    assert_eq!(code, 1, "{err}");
}

/// Runs with the given variables (and no CICACHE_STORE unless given).
fn run_env(t: &T, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut c = t.cmd();
    c.env_remove("CICACHE_STORE");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

/// Exactly one JSON document on stdout: the error document of docs/JSON.md.
fn one_error_doc(out: &str, kind: &str, code: i32) -> serde_json::Value {
    let mut docs = serde_json::Deserializer::from_str(out).into_iter::<serde_json::Value>();
    let v = docs
        .next()
        .unwrap_or_else(|| panic!("no JSON document on stdout: {out:?}"))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"));
    assert!(docs.next().is_none(), "more than one document: {out}");
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["kind"], kind, "{v}");
    assert_eq!(v["exit_code"], code, "{v}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    v
}

#[test]
fn a_store_spec_that_names_no_store_is_a_usage_error_and_creates_nothing() {
    let t = T::new();
    for spec in ["s3:/bucket", "s3:bucket", "gs://bucket/x", "oci://registry"] {
        for cmd in [
            &["list"][..],
            &["restore", "--key", "k", "--path", "out"][..],
        ] {
            let (code, out, err) = run_env(&t, &[], &[&["--store", spec][..], cmd].concat());
            assert_eq!(code, 2, "{spec} {cmd:?}: {out}{err}");
            assert!(err.contains(&format!("{spec:?}")), "{spec}: {err}");
            assert!(err.contains("s3://BUCKET/PREFIX"), "{spec}: {err}");
        }
        let (code, out, _) = run_env(&t, &[("CICACHE_STORE", spec)], &["--json", "list"]);
        assert_eq!(code, 2);
        let v = one_error_doc(&out, "usage", 2);
        assert!(v["error"].as_str().unwrap().contains(spec), "{v}");
    }
    // The same spec from cicache.yml.
    fs::write(t.p("cicache.yml"), "store: 's3:/bucket'\n").unwrap();
    let (code, _, err) = run_env(&t, &[], &["list"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cicache.yml"), "{err}");
    fs::remove_file(t.p("cicache.yml")).unwrap();
    // Nothing was made in the working directory.
    let made: Vec<_> = fs::read_dir(t.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        made.iter()
            .all(|n| !n.starts_with("s3") && !n.starts_with("gs")),
        "{made:?}"
    );
}

#[test]
fn reading_commands_never_create_a_store() {
    let t = T::new();
    let store = t.p("nostore");
    let spec = store.to_str().unwrap();
    let env = [("CICACHE_STORE", spec)];
    // restore: a miss, with the reason, and stdout says it was not a real miss.
    let (code, out, err) = run_env(&t, &env, &["restore", "--key", "k", "--path", "out"]);
    assert_eq!((code, out.trim()), (0, "miss (store unavailable)"), "{err}");
    assert!(
        err.contains(&format!("store dir:{spec} does not exist")),
        "{err}"
    );
    let (code, out, _) = run_env(
        &t,
        &env,
        &["--json", "restore", "--key", "k", "--path", "out"],
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["status"].as_str(), v["store_unavailable"].as_bool()),
        (Some("miss"), Some(true))
    );
    // list, verify, prune, export: an error that names the store.
    for args in [
        &["list"][..],
        &["verify"][..],
        &["export", "--key", "k", "-o", "x.tar.zst"][..],
        &["--strict", "prune", "--max-age", "1d"][..],
    ] {
        let (code, _, err) = run_env(&t, &env, args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains("does not exist"), "{args:?}: {err}");
    }
    // prune (a scheduled cleanup on an agent that never saved): nothing to prune, a warning.
    let (code, out, err) = run_env(&t, &env, &["prune", "--max-age", "1d"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("does not exist") && err.contains("nothing to prune"),
        "{err}"
    );
    assert!(out.contains("nothing pruned"), "{out}");
    assert!(!store.exists(), "a reading command created the store");
    // A save creates it; then the reading commands work.
    tree(&t.p("cache"), 1, 300_000, 3);
    let (code, _, err) = run_env(&t, &env, &["save", "--key", "k", "--path", "cache"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run_env(&t, &env, &["restore", "--key", "k", "--path", "out"]);
    assert_eq!((code, out.trim()), (0, "hit k"), "{err}");
}

#[test]
fn prune_needs_a_named_store_and_a_limit_and_says_which_store() {
    let t = T::new();
    tree(&t.p("cache"), 1, 300_000, 3);
    t.json(&["save", "--key", "k", "--path", "cache"]);
    // No store named: refused, even with a limit (the default store is shared).
    let (code, out, err) = run_env(&t, &[], &["prune", "--max-age", "1d"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("--store"), "{err}");
    // A store but no limit.
    let spec = t.p("store").display().to_string();
    let (code, _, err) = run_env(&t, &[("CICACHE_STORE", &spec)], &["prune"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs a limit"), "{err}");
    let (code, out, _) = run_env(&t, &[("CICACHE_STORE", &spec)], &["--json", "prune"]);
    assert_eq!(code, 2);
    one_error_doc(&out, "usage", 2);
    // The store from cicache.yml counts as named; the first line says which store.
    fs::write(t.p("cicache.yml"), format!("store: {spec}\n")).unwrap();
    let (code, out, err) = run_env(&t, &[], &["prune", "--dry-run", "--keep-last", "1"]);
    assert_eq!(code, 0, "{err}");
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.contains(&format!("dir:{spec}")) && first.contains("keep last 1"),
        "{out}"
    );
    // A dry run says what would happen, not that it happened.
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("dry run: would remove 0 of 1 entry")
            && last.contains("the store would then hold"),
        "{out}"
    );
    let v = t.json(&["prune", "--dry-run", "--max-age", "1d"]);
    assert_eq!(v["store"], format!("dir:{spec}"));
}

#[test]
fn empty_variables_are_unset_and_unknown_ones_are_named() {
    let t = T::new();
    tree(&t.p("cache"), 1, 300_000, 3);
    let from_file = t.p("from-file");
    fs::write(
        t.p("cicache.yml"),
        format!("store: {}\n", from_file.display()),
    )
    .unwrap();
    // CICACHE_STORE= (empty) does not hide cicache.yml's store; empty flags' variables
    // (CICACHE_JSON=, CICACHE_SCOPE=) are not errors either.
    let (code, _, err) = run_env(
        &t,
        &[
            ("CICACHE_STORE", ""),
            ("CICACHE_JSON", ""),
            ("CICACHE_SCOPE", ""),
        ],
        &["save", "--key", "k", "--path", "cache"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(from_file.join("cicache-v1").is_dir(), "{err}");
    // A misspelt variable is named, with the closest known one.
    let (code, _, err) = run_env(
        &t,
        &[
            ("CICACHE_STOR", "/elsewhere"),
            ("CICACHE_TEST_ANYTHING", "1"),
        ],
        &["list"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("CICACHE_STOR is not a cicache variable")
            && err.contains("did you mean CICACHE_STORE?"),
        "{err}"
    );
    assert!(!err.contains("CICACHE_TEST_ANYTHING"), "{err}");
}

#[test]
fn usage_and_configuration_errors_exit_2_with_one_json_document() {
    let t = T::new();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("", vec!["restore", "--path", "x"]),
        ("", vec!["save", "--key", "k"]),
        ("", vec!["prune", "--max-size", "20gigs"]),
        ("", vec!["registry"]),
        ("", vec!["restore", "--no-such-flag"]),
        ("", vec![]),
        ("timeout: 30\n", vec!["list"]),
        ("prune: {max_age: 14}\n", vec!["list"]),
        ("prune: {max_size: lots}\n", vec!["list"]),
        ("nonsense_key: 1\n", vec!["list"]),
    ];
    let spec = t.p("store").display().to_string();
    for (config, args) in &cases {
        if config.is_empty() {
            let _ = fs::remove_file(t.p("cicache.yml"));
        } else {
            fs::write(t.p("cicache.yml"), config).unwrap();
        }
        let (code, out, err) = run_env(&t, &[("CICACHE_STORE", &spec)], args);
        assert_eq!(code, 2, "{config}{args:?}: {out}{err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        let (code, out, err) = run_env(
            &t,
            &[("CICACHE_STORE", &spec)],
            &[&["--json"][..], args].concat(),
        );
        assert_eq!(code, 2, "{config}{args:?} --json: {err}");
        one_error_doc(&out, "usage", 2);
        // CICACHE_JSON asks for it too, even when clap refuses the command line.
        let (code, out, _) = run_env(&t, &[("CICACHE_STORE", &spec), ("CICACHE_JSON", "1")], args);
        assert_eq!(code, 2);
        one_error_doc(&out, "usage", 2);
    }
    let (_, _, err) = {
        fs::write(t.p("cicache.yml"), "timeout: 30\n").unwrap();
        run_env(&t, &[("CICACHE_STORE", &spec)], &["list"])
    };
    assert!(err.contains("30s"), "says what to write: {err}");
    let _ = fs::remove_file(t.p("cicache.yml"));
    // A failure (not usage) is exit 1 with kind "failure".
    let (code, out, _) = run_env(
        &t,
        &[("CICACHE_STORE", &spec)],
        &["--json", "export", "--key", "nope", "-o", "x.tar.zst"],
    );
    assert_eq!(code, 1);
    one_error_doc(&out, "failure", 1);
    // --help is still help, exit 0.
    let (code, out, _) = run_env(&t, &[], &["--json", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("Usage"), "{out}");
}

#[test]
fn documents_keep_their_word() {
    let t = T::new();
    tree(&t.p("cache"), 2, 300_000, 5);
    let saved = t.json(&["save", "--key", "k", "--path", "cache"]);
    // A failed save carries every field of a save document.
    let failed = t.json(&["save", "--key", "k2", "--path", "nowhere"]);
    assert_eq!(failed["status"], "failed");
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&failed), keys(&saved));
    // verify: `ok` is a boolean, the count is entries_ok.
    let v = t.json(&["verify"]);
    assert_eq!(v["ok"], true);
    assert_eq!(v["entries_ok"], 1);
    // lookup-only: counts it did not read are null, not 0; `entries` is the ref's.
    let v = t.json(&["restore", "--key", "k", "--path", "out", "--lookup-only"]);
    assert_eq!(v["hit"], true);
    assert!(v["files"].is_null() && v["dirs"].is_null(), "{v}");
    assert!(v["total_size"].as_u64().unwrap() > 0);
    assert_eq!(
        v["entries"].as_u64(),
        Some(
            saved["files"].as_u64().unwrap()
                + saved["dirs"].as_u64().unwrap()
                + saved["symlinks"].as_u64().unwrap()
        )
    );
    let v = t.json(&["restore", "--key", "k", "--path", "out"]);
    assert_eq!(v["files"], saved["files"]);
    // import: `path` is the archive, not a temp dir that is gone.
    t.json(&["export", "--key", "k", "-o", "k.tar.zst"]);
    let v = t.json(&["import", "--key", "k3", "k.tar.zst"]);
    assert_eq!(v["save"]["path"], "k.tar.zst", "{v}");
    // The text result is words, not a Rust enum name (`Saved`).
    let (code, out, err) = t.run(&["import", "--key", "k4", "k.tar.zst"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("imported k.tar.zst as k4 (scope default): 7 files") && !out.contains("Saved"),
        "{out}"
    );
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// cicache with no AWS setting at all from this process (a first run on a fresh agent):
/// no credentials, no region, no profile files; the instance role's metadata service off,
/// as on a machine that is not EC2 (it answers nothing here either way).
fn aws_first_run(t: &T) -> Command {
    fs::write(t.p("empty-aws-file"), "").unwrap();
    let mut c = t.cmd();
    c.env("AWS_CONFIG_FILE", t.p("empty-aws-file"))
        .env("AWS_SHARED_CREDENTIALS_FILE", t.p("empty-aws-file"))
        .env("AWS_EC2_METADATA_DISABLED", "true");
    c
}

fn output(c: &mut Command) -> (i32, String, String) {
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

/// What an AWS problem must look like: one warning line that names the store and
/// docs/S3.md, no SDK log and no colour codes (stderr is a pipe here, as in Jenkins), and
/// stdout that says the miss was not a real one.
fn one_readable_line(out: &str, err: &str, says: &[&str]) {
    assert_eq!(out.trim(), "miss (store unavailable)", "{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    for s in says.iter().chain(&["docs/S3.md", "s3://first-run/ci"]) {
        assert!(warnings[0].contains(s), "missing {s:?}: {err}");
    }
    assert!(!err.contains('\x1b'), "ANSI codes off a terminal: {err:?}");
    assert!(!err.contains("WARN"), "the SDK's own log without -v: {err}");
    assert!(
        err.lines().all(|l| l.len() < 700),
        "a line too long to read: {err}"
    );
}

#[test]
fn aws_first_run_without_credentials_region_or_endpoint_is_one_readable_line() {
    let Some(moto) = moto() else {
        return;
    };
    let t = T::new();
    let restore = [
        "--store",
        "s3://first-run/ci",
        "restore",
        "--key",
        "k",
        "--path",
        "out",
    ];
    // `endpoint`: none (AWS itself), moto, or a closed port; `keys`: moto's test keys.
    let first_run = |endpoint: Option<&str>, keys: bool, region: bool, extra: &[&str]| {
        let mut c = aws_first_run(&t);
        match endpoint {
            Some(e) => aws::aws(&mut c, e, keys),
            None if keys => {
                c.env("AWS_ACCESS_KEY_ID", "testing")
                    .env("AWS_SECRET_ACCESS_KEY", "testing");
            }
            None => {}
        }
        if !region {
            c.env_remove("AWS_REGION");
        }
        output(c.args(extra).args(restore))
    };
    // No credentials (the endpoint is moto's, so no request leaves the machine).
    let (code, out, err) = first_run(Some(&moto), false, true, &[]);
    assert_eq!(code, 0, "{err}");
    one_readable_line(
        &out,
        &err,
        &[
            "no AWS credentials",
            &moto,
            "instance role",
            "AWS_ACCESS_KEY_ID",
            "AWS_PROFILE",
        ],
    );
    // The SDK's own account of its chain only with -v.
    let (_, _, err_v) = first_run(Some(&moto), false, true, &["-vv"]);
    assert!(err_v.len() > err.len(), "-vv shows more: {err_v}");
    assert!(!err_v.contains('\x1b'), "{err_v:?}");
    // No region (AWS itself, no endpoint): said before any request.
    let (code, out, err) = first_run(None, true, false, &[]);
    assert_eq!(code, 0, "{err}");
    one_readable_line(&out, &err, &["no AWS region", "AWS_REGION"]);
    // An endpoint where nothing listens: named, with what to check.
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let (code, out, err) = first_run(Some(&endpoint), true, true, &[]);
    assert_eq!(code, 0, "{err}");
    one_readable_line(
        &out,
        &err,
        &[
            "cannot reach the S3 endpoint",
            &endpoint,
            "AWS_ENDPOINT_URL",
        ],
    );
    // --strict makes it a failure.
    let (code, _, err) = first_run(Some(&endpoint), true, true, &["--strict"]);
    assert_eq!(code, 1, "{err}");
    // With credentials, the same store works: the check costs a working setup nothing.
    let bucket = format!("first-run-{}", std::process::id());
    create_bucket(&moto, &bucket);
    tree(&t.p("cache"), 1, 300_000, 3);
    let store = format!("s3://{bucket}/ci");
    for (args, want) in [
        (["save", "--key", "k", "--path", "cache"], "saved"),
        (["restore", "--key", "k", "--path", "out"], "hit k"),
    ] {
        let mut c = aws_first_run(&t);
        aws::aws(&mut c, &moto, true);
        let (code, out, err) = output(c.arg("--store").arg(&store).args(args));
        assert_eq!((code, out.trim()), (0, want), "{err}");
        assert!(err.lines().all(|l| !l.contains("warning")), "{err}");
    }
}
