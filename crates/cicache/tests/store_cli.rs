//! The store commands through the real binary: output, exit codes, kill -9 at any point,
//! agents saving at once, a full disk.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;

struct T {
    tmp: tempfile::TempDir,
}

impl T {
    fn new() -> T {
        T {
            tmp: tempfile::tempdir().unwrap(),
        }
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
    assert_eq!(v["ok"], 2);
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
