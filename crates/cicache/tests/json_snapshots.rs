//! The `--json` documents of the store commands, `build --dry-run`, `base --dry-run` and a
//! `build` whose docker fails, pinned as insta snapshots (crates/cicache/tests/snapshots/).
//!
//! They pin the documents that docs/JSON.md describes and the Jenkins steps read, so that a
//! change of the code behind them (issue 18 moved the build into crates/cicache-build) is
//! proven to change no output. What varies from run to run (times, durations, the temp dir,
//! the tool version) is normalized before the comparison; everything else is compared as is.
//! None of them needs a docker daemon: the docker client is a program that fails (`false`),
//! or is not run at all.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

struct T {
    tmp: tempfile::TempDir,
}

impl T {
    fn new() -> T {
        let t = T {
            tmp: tempfile::tempdir().unwrap(),
        };
        // A small pip-cache-like tree and a project with a requirements file.
        let cache = t.p("cache");
        fs::create_dir_all(cache.join("http-v2/a/b")).unwrap();
        fs::write(cache.join("http-v2/a/b/h1"), "header one").unwrap();
        fs::create_dir_all(cache.join("wheels")).unwrap();
        fs::write(cache.join("wheels/w.whl"), vec![7u8; 300 * 1024]).unwrap();
        // Fixed mtimes: the entry's manifest (and so its hash and size) covers them.
        let when = filetime::FileTime::from_unix_time(1_700_000_000, 0);
        for e in walkdir::WalkDir::new(&cache) {
            filetime::set_file_mtime(e.unwrap().path(), when).unwrap();
        }
        fs::write(t.p("requirements.txt"), "requests==2.31.0\n").unwrap();
        // The store exists (a fresh agent's first restore of a missing store is a miss with a
        // warning, pinned in store_cli.rs; here the documents of a working store are pinned).
        fs::create_dir_all(t.p("store")).unwrap();
        fs::write(
            t.p("Dockerfile"),
            "FROM python:3.11\nCOPY requirements.txt .\n\
             RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt\n\
             COPY . .\n",
        )
        .unwrap();
        fs::write(
            t.p("Dockerfile.base"),
            "FROM python:3.11\nCOPY requirements.txt .\nRUN pip install -r requirements.txt\n",
        )
        .unwrap();
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
            .env("BRANCH_NAME", "main")
            .current_dir(self.tmp.path());
        c
    }
    /// Runs `cicache --json ARGS`, returns the exit code and the normalized document.
    fn doc(&self, args: &[&str]) -> (i32, Value) {
        let o = self.cmd().arg("--json").args(args).output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!(
                "{args:?}: not JSON ({e}): {out}\nstderr: {}",
                String::from_utf8_lossy(&o.stderr)
            )
        });
        (o.status.code().unwrap_or(-1), normalize(v, self.tmp.path()))
    }
}

/// Keys whose values differ between runs: times and durations.
const VOLATILE: &[&str] = &[
    "seconds",
    "created",
    "last_used",
    "recorded_at",
    "wall_seconds",
    "created_at",
    "build_seconds",
    "start",
];

/// Digit runs of 8 or more (nonces, temp names) become `[N]`; durations like `1.2s` or
/// `1m02s` become `[T]`.
fn scrub(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_ascii_alphanumeric()) {
            let mut j = i;
            while j < chars.len()
                && (chars[j].is_ascii_digit() || chars[j] == '.' || chars[j] == 'm')
            {
                j += 1;
            }
            let run: String = chars[i..j].iter().collect();
            let is_time = j < chars.len()
                && chars[j] == 's'
                && (j + 1 == chars.len() || !chars[j + 1].is_ascii_alphanumeric())
                && (run.contains('.') || run.contains('m'));
            if is_time {
                out.push_str("[T]");
                i = j + 1;
                continue;
            }
        }
        if chars[i].is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            if j - i >= 8 {
                out.push_str("[N]");
            } else {
                out.extend(&chars[i..j]);
            }
            i = j;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    // `[N]-<pid>`: the process id beside a nonce.
    while let Some(at) = out.find("[N]-") {
        let rest = &out[at + 4..];
        let n = rest.chars().take_while(char::is_ascii_digit).count();
        if n == 0 {
            break;
        }
        out = format!("{}[N]{}", &out[..at], &rest[n..]);
    }
    out
}

fn normalize(v: Value, tmp: &Path) -> Value {
    let tmp = tmp.display().to_string();
    let real = fs::canonicalize(&tmp)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| tmp.clone());
    fn walk(v: Value, tmp: &str, real: &str) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| {
                        let v = if VOLATILE.contains(&k.as_str()) && !v.is_null() {
                            Value::String("[volatile]".into())
                        } else {
                            walk(v, tmp, real)
                        };
                        (k, v)
                    })
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.into_iter().map(|v| walk(v, tmp, real)).collect()),
            Value::String(s) => Value::String(scrub(
                &s.replace(real, "[TMP]")
                    .replace(tmp, "[TMP]")
                    .replace(env!("CARGO_PKG_VERSION"), "[VERSION]"),
            )),
            other => other,
        }
    }
    walk(v, &tmp, &real)
}

#[test]
fn store_commands() {
    let t = T::new();
    let key = "pip-{{ hashFiles \"requirements*.txt\" }}";
    let (c, v) = t.doc(&["key", key]);
    assert_eq!(c, 0);
    insta::assert_json_snapshot!("key", v);

    let (c, v) = t.doc(&[
        "restore",
        "--key",
        key,
        "--restore-key",
        "pip-",
        "--path",
        "out",
    ]);
    assert_eq!(c, 0);
    insta::assert_json_snapshot!("restore_miss", v);

    let (c, v) = t.doc(&["save", "--key", key, "--path", "cache"]);
    assert_eq!(c, 0);
    insta::assert_json_snapshot!("save_saved", v);

    let (c, v) = t.doc(&["save", "--key", key, "--path", "cache"]);
    assert_eq!(c, 0);
    insta::assert_json_snapshot!("save_exists", v);

    let (c, v) = t.doc(&["save", "--key", "missing", "--path", "nope"]);
    assert_eq!(c, 0);
    insta::assert_json_snapshot!("save_failed_no_dir", v);

    let (c, v) = t.doc(&["restore", "--key", key, "--path", "out"]);
    assert_eq!(c, 0);
    insta::assert_json_snapshot!("restore_hit", v);

    let (c, v) = t.doc(&[
        "restore",
        "--key",
        "pip-other",
        "--restore-key",
        "pip-",
        "--path",
        "out2",
        "--lookup-only",
    ]);
    assert_eq!(c, 0);
    insta::assert_json_snapshot!("restore_lookup_only_prefix", v);

    let (c, v) = t.doc(&["list"]);
    assert_eq!(c, 0);
    insta::assert_json_snapshot!("list", v);

    let (c, v) = t.doc(&["verify"]);
    assert_eq!(c, 0);
    insta::assert_json_snapshot!("verify", v);

    let (c, v) = t.doc(&["export", "--key", "pip-other", "-o", "x.tar.zst"]);
    insta::assert_json_snapshot!("export_missing", (c, v));

    let (c, v) = t.doc(&["prune", "--dry-run", "--keep-last", "1"]);
    assert_eq!(c, 0);
    insta::assert_json_snapshot!("prune_dry_run", v);
}

#[test]
fn build_dry_run() {
    let t = T::new();
    let (c, v) = t.doc(&[
        "build",
        "--flavour",
        "classic",
        "--docker",
        "false",
        "--image",
        "127.0.0.1:5000/team/app",
        "--tag",
        "v1",
        "--push",
        "--dry-run",
        ".",
        "--",
        "--network",
        "host",
    ]);
    assert_eq!(c, 0);
    insta::assert_json_snapshot!("build_dry_run_classic_registry", v);

    let (c, v) = t.doc(&[
        "build",
        "--flavour",
        "buildx",
        "--docker",
        "false",
        "--image",
        "127.0.0.1:5000/team/app",
        "--push",
        "--dry-run",
        "--cache-dir",
        "cache",
        "--key",
        "k-{{ os }}",
        ".",
    ]);
    assert_eq!(c, 0);
    insta::assert_json_snapshot!("build_dry_run_buildx_registry", v);

    let (c, v) = t.doc(&[
        "--scope",
        "feature-x",
        "--fallback-scope",
        "main",
        "build",
        "--flavour",
        "classic",
        "--docker",
        "false",
        "--image",
        "app",
        "--dry-run",
        ".",
    ]);
    assert_eq!(c, 0);
    insta::assert_json_snapshot!("build_dry_run_local_image", v);
}

#[test]
fn base_dry_run() {
    let t = T::new();
    let (c, v) = t.doc(&[
        "base",
        "--docker",
        "false",
        "--image",
        "team/app",
        "--platform",
        "linux/amd64",
        "--dry-run",
        ".",
    ]);
    assert_eq!(c, 0);
    insta::assert_json_snapshot!("base_dry_run", v);
}

#[test]
fn build_whose_docker_fails() {
    let t = T::new();
    // `false` as the docker client: every docker command fails, so the build phase fails
    // with exit code 1 and the cache phases around it show what they do then.
    let (c, v) = t.doc(&[
        "build",
        "--flavour",
        "classic",
        "--docker",
        "false",
        "--image",
        "team/app",
        "--cache-dir",
        "cache",
        "--report-html",
        "report.html",
        ".",
    ]);
    assert_eq!(c, 1);
    insta::assert_json_snapshot!("build_docker_fails", v);
    // --report-html is written for a failed build too (here with no docker log to show).
    let html = fs::read_to_string(t.p("report.html")).expect("--report-html wrote no file");
    assert!(
        html.contains("<html") && html.contains("cicache build team/app"),
        "{html}"
    );
}

/// `--log` and `--report-html` into directories that do not exist yet (a fresh workspace's
/// `.cicache/`): made, not an error.
#[test]
fn build_makes_the_directories_of_its_log_and_report() {
    let t = T::new();
    let (c, _) = t.doc(&[
        "build",
        "--flavour",
        "classic",
        "--docker",
        "false",
        "--image",
        "team/app",
        "--cache-dir",
        "cache",
        "--log",
        ".cicache/logs/build.log",
        "--report-html",
        ".cicache/html/report.html",
        ".",
    ]);
    assert_eq!(
        c, 1,
        "the build fails (docker is `false`), the files are written"
    );
    assert!(t.p(".cicache/logs/build.log").is_file());
    assert!(t.p(".cicache/html/report.html").is_file());
}
