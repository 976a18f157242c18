//! `cicache report` on the recorded real build logs of cicache-docker (tests/fixtures) and
//! `cicache doctor`, against a real dockerd when CICACHE_TEST_DOCKERD=1 (each such test
//! starts its own daemon; without the variable it prints "skipped: ..." unless
//! CICACHE_TEST_REQUIRE_SERVICES=1).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::prelude::*;
use serde_json::Value;

const DOCKER: &str = "/usr/bin/docker";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cicache-docker/tests/fixtures")
        .join(name)
}

fn cicache() -> Command {
    let mut c = Command::cargo_bin("cicache").unwrap();
    c.env_remove("CICACHE_JSON")
        .env_remove("CICACHE_REPORT_FORMAT")
        .env_remove("CICACHE_DOCKERFILE")
        .env_remove("CICACHE_IMAGE")
        .env_remove("CICACHE_STORE")
        .env_remove("CICACHE_CONFIG")
        .env_remove("CICACHE_CACHE_DIR")
        .env_remove("DOCKER_BUILDKIT")
        .env("CICACHE_PROGRESS", "never")
        .stdin(Stdio::null());
    c
}

fn run(c: &mut Command) -> (i32, String, String) {
    let o = c.output().expect("running cicache");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn report_prints_the_verdict_first() {
    let (code, out, err) = run(cicache().arg("report").arg(fixture("pip-bk-warm.log")));
    assert_eq!(code, 0, "{err}");
    let first = out.lines().next().unwrap();
    assert_eq!(
        first,
        "cache: 2/4 steps cached, 7/8 wheels from cache (19.0 MB not downloaded, 63.0 kB downloaded), build 15.0s"
    );
    assert!(out.contains("downloaded  attrs-24.2.0-py3-none-any.whl (63.0 kB)"));
    assert!(out.contains("slowest:"));
}

#[test]
fn report_json_for_several_logs() {
    let (code, out, err) = run(cicache()
        .args(["report", "--format", "json"])
        .arg(fixture("bk-warm.log"))
        .arg(fixture("classic-fail.log"))
        .arg(fixture("rawjson-pip.log")));
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["ok"], false, "one build failed");
    let reports = doc["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 3);
    assert!(
        reports[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("bk-warm.log")
    );
    assert_eq!(reports[0]["format"], "buildkit_plain");
    assert_eq!(reports[0]["steps"]["cached"], 5);
    assert_eq!(reports[1]["format"], "classic");
    assert_eq!(reports[1]["failure"]["exit_code"], 1);
    assert_eq!(reports[2]["format"], "buildkit_rawjson");
    assert_eq!(reports[2]["wheels"]["from_cache"], 8);
    assert_eq!(reports[2]["time_source"], "timestamps");

    // --json is the same.
    let (_, out2, _) = run(cicache()
        .args(["--json", "report"])
        .arg(fixture("bk-warm.log"))
        .arg(fixture("classic-fail.log"))
        .arg(fixture("rawjson-pip.log")));
    assert_eq!(out, out2);
}

#[test]
fn report_markdown_and_stdin() {
    let log = std::fs::read(fixture("bk-fail.log")).unwrap();
    let mut c = cicache();
    c.args(["report", "--format", "markdown", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&log).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(md.starts_with("**build FAILED at [3/4] RUN echo"), "{md}");
    assert!(md.contains("error: module 'app' not found"));
    assert!(md.contains("| `[2/4] RUN echo \"step one ok\"` | 0.6s |"));

    // The variable chooses the format too.
    let (_, out, _) = run(cicache()
        .env("CICACHE_REPORT_FORMAT", "markdown")
        .arg("report")
        .arg(fixture("bk-warm.log")));
    assert!(out.starts_with("**cache: 5/5 steps cached"), "{out}");
}

#[test]
fn report_errors_name_the_log() {
    let (code, _, err) = run(cicache().args(["report", "/nonexistent/build.log"]));
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/build.log"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("notes.txt");
    std::fs::write(&junk, "hello\nthis is not a build log\n").unwrap();
    let (code, out, err) = run(cicache().arg("report").arg(&junk));
    assert_eq!(code, 1);
    assert!(
        err.contains("notes.txt: no docker build or pip output found"),
        "{err}"
    );
    assert!(out.starts_with("cache: nothing to report"), "{out}");

    let (code, _, err) = run(cicache().arg("report"));
    assert_eq!(code, 2, "a missing LOG is bad usage: {err}");
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn check<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {doc:#}"))
}

#[test]
fn doctor_without_a_daemon_fails_and_says_how_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let df = write(
        dir.path(),
        "Dockerfile",
        "# syntax=docker/dockerfile:1\nFROM python:3.12\nENV PIP_NO_CACHE_DIR=1\n\
         RUN pip install -r requirements.txt\n\
         RUN --mount=type=cache,target=/root/.cache/pip pip install flask\n",
    );
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (code, out, err) = run(cicache()
        .env(
            "DOCKER_HOST",
            format!("unix://{}/no.sock", dir.path().display()),
        )
        .env("CICACHE_DOCKER", DOCKER)
        .args(["--json", "doctor", "--dockerfile"])
        .arg(&df)
        .arg("--store")
        .arg(&store)
        .args(["--image", &format!("127.0.0.1:{closed}/app")]));
    assert_eq!(code, 1, "{out}\n{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["ok"], false);
    let docker = check(&doc, "docker");
    assert_eq!(docker["status"], "fail");
    assert!(docker["message"].as_str().unwrap().contains("no.sock"));
    assert!(docker["fix"].as_str().unwrap().contains("DOCKER_HOST"));
    assert_eq!(check(&doc, "buildkit")["status"], "skip");
    assert_eq!(check(&doc, "dockerfile")["status"], "ok");
    assert_eq!(check(&doc, "dockerfile.syntax")["status"], "warn");
    let nomount = check(&doc, "dockerfile.pip-no-cache-mount");
    assert_eq!(nomount["status"], "fail");
    assert!(nomount["message"].as_str().unwrap().starts_with("line 4:"));
    assert_eq!(
        nomount["fix"],
        "RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt"
    );
    let nocache = check(&doc, "dockerfile.pip-no-cache");
    assert!(
        nocache["message"]
            .as_str()
            .unwrap()
            .contains("PIP_NO_CACHE_DIR=1")
    );
    assert_eq!(check(&doc, "store")["status"], "ok");
    let reg = check(&doc, "registry");
    assert_eq!(reg["status"], "fail");
    assert!(
        reg["message"]
            .as_str()
            .unwrap()
            .contains(&closed.to_string())
    );
    assert!(doc["failures"].as_u64().unwrap() >= 4);

    // Text: the checklist with a fix under each failing line.
    let (code, out, _) = run(cicache()
        .env(
            "DOCKER_HOST",
            format!("unix://{}/no.sock", dir.path().display()),
        )
        .env("CICACHE_DOCKER", DOCKER)
        .args(["doctor", "--dockerfile"])
        .arg(&df)
        .arg("--store")
        .arg(&store));
    assert_eq!(code, 1);
    assert!(
        out.contains("FAIL  docker: cannot reach the docker daemon"),
        "{out}"
    );
    assert!(out.contains(
        "      fix: RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt"
    ));
    assert!(out.contains("skip  registry: no --image given"));
    assert!(out.lines().last().unwrap().starts_with("doctor: "));

    // A Dockerfile that is not there is a failing line naming it.
    let (code, out, _) = run(cicache()
        .env(
            "DOCKER_HOST",
            format!("unix://{}/no.sock", dir.path().display()),
        )
        .env("CICACHE_DOCKER", DOCKER)
        .args([
            "--json",
            "doctor",
            "--dockerfile",
            "/nonexistent/Dockerfile",
            "--store",
        ])
        .arg(&store));
    assert_eq!(code, 1);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert!(
        check(&doc, "dockerfile")["message"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/Dockerfile")
    );
}

/// A workspace whose `COPY . /app` takes the cache dir (`.pip-cache`, which a restore fills)
/// into the image: doctor says so, names the line and the ignore file, and stops once
/// `.dockerignore` excludes it, the cache dir lies elsewhere, or the COPY names files only.
#[test]
fn doctor_says_when_the_dockerfile_copies_the_cache_dir() {
    let ws = tempfile::tempdir().unwrap();
    write(
        ws.path(),
        "Dockerfile",
        "FROM python:3.12\nWORKDIR /app\nCOPY requirements.txt .\n\
         RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt\n\
         COPY . /app\n",
    );
    // doctor run from `cwd` (no daemon: the Dockerfile lines do not need one).
    let doctor_in = |cwd: &Path, extra: &[&str], env: Option<(&str, &str)>| {
        let mut c = cicache();
        c.current_dir(cwd)
            .env("DOCKER_HOST", format!("unix://{}/no.sock", cwd.display()))
            .env("CICACHE_DOCKER", DOCKER)
            .args(["--json", "doctor", "--store"])
            .arg(cwd.join("store"))
            .args(extra);
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let (_, out, err) = run(&mut c);
        let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
        doc
    };
    let doctor = |extra: &[&str], env| doctor_in(ws.path(), extra, env);
    let copies = |doc: &Value| {
        doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "dockerfile.copies-cache-dir")
            .cloned()
    };
    // The default cache dir does not exist yet: a restore would make it.
    let doc = doctor(&[], None);
    let c = copies(&doc).unwrap_or_else(|| panic!("no finding in {doc:#}"));
    assert_eq!(c["status"], "warn");
    let msg = c["message"].as_str().unwrap();
    assert!(
        msg.starts_with("line 5: `COPY . /app` takes the cache dir .pip-cache"),
        "{msg}"
    );
    let fix = c["fix"].as_str().unwrap();
    assert!(fix.contains("`.pip-cache`"), "{fix}");
    assert!(fix.contains(".dockerignore"), "{fix}");
    // Listed with the other Dockerfile lines, before the store.
    let names: Vec<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let at = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(
        at("dockerfile") < at("dockerfile.copies-cache-dir"),
        "{names:?}"
    );
    assert!(at("dockerfile.copies-cache-dir") < at("store"), "{names:?}");

    // Another cache dir, from the flag or the environment, inside the context or not.
    let doc = doctor(&["--cache-dir", "ci/pip"], None);
    assert!(
        copies(&doc).unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("cache dir ci/pip")
    );
    assert!(copies(&doctor(&[], Some(("CICACHE_CACHE_DIR", "/var/tmp/pip")))).is_none());
    // The context elsewhere: the Dockerfile is CONTEXT/Dockerfile, the cache dir outside it.
    let outer = tempfile::tempdir().unwrap();
    let context = ws.path().display().to_string();
    let doc = doctor_in(outer.path(), &["--context", &context], None);
    assert_eq!(check(&doc, "dockerfile")["status"], "ok");
    assert!(copies(&doc).is_none(), "{doc:#}");

    // Excluded: no finding.
    write(ws.path(), ".dockerignore", ".git\n.pip-cache\n");
    assert!(copies(&doctor(&[], None)).is_none());
    // Copying named files only: no finding either.
    std::fs::remove_file(ws.path().join(".dockerignore")).unwrap();
    write(
        ws.path(),
        "Dockerfile",
        "FROM python:3.12\nCOPY requirements.txt app.py /app/\n",
    );
    assert!(copies(&doctor(&[], None)).is_none());
}

/// A dockerd of our own (no bridge: the doctor's probe build needs no network), listening on
/// a unix socket and on tcp://127.0.0.1 like a Docker-in-Docker agent.
struct Daemon {
    child: Child,
    dir: PathBuf,
    unix: String,
    tcp: String,
}

impl Daemon {
    fn start() -> Daemon {
        let base = std::env::var("CICACHE_TEST_WORK")
            .map(PathBuf::from)
            .unwrap_or_else(|_| std::env::temp_dir());
        let dir = base.join(format!("dockerd-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let unix = format!("unix://{}/sock", dir.display());
        let tcp = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new("dockerd")
            .args(["--bridge", "none", "--iptables=false", "--ip-masq=false"])
            .arg("--data-root")
            .arg(dir.join("root"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .args(["--host", &unix, "--host", &tcp])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting dockerd");
        // test/lib/docker.sh stops daemons left behind by a killed run through this file.
        std::fs::write(dir.join("dockerd.pid"), child.id().to_string()).unwrap();
        let d = Daemon {
            child,
            dir,
            unix,
            tcp,
        };
        let t = Instant::now();
        while !Command::new(DOCKER)
            .args(["version", "--format", "{{.Server.Version}}"])
            .env("DOCKER_HOST", &d.unix)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            if t.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(d.dir.join("log")).unwrap_or_default();
                panic!("dockerd did not come up in 60s:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        d
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for sub in ["root", "exec"] {
            let _ = Command::new("umount")
                .arg("-R")
                .arg(self.dir.join(sub))
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn dockerd_available() -> bool {
    match std::env::var("CICACHE_TEST_DOCKERD") {
        Ok(v) if v == "1" => true,
        _ => {
            if std::env::var("CICACHE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!(
                    "CICACHE_TEST_DOCKERD is not set (dockerd may be started by tests); test/run.sh sets it"
                );
            }
            eprintln!("skipped: CICACHE_TEST_DOCKERD is not set (dockerd may be started by tests)");
            false
        }
    }
}

#[test]
fn doctor_against_a_real_daemon() {
    if !dockerd_available() {
        return;
    }
    let daemon = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "Dockerfile",
        "FROM python:3.11\nCOPY requirements.txt .\n\
         RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt\n",
    );
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let mut c = cicache();
    c.env("DOCKER_HOST", &daemon.unix)
        .env("CICACHE_DOCKER", DOCKER)
        .args(["--json", "doctor", "--dockerfile"])
        .arg(&good)
        .arg("--store")
        .arg(&store);
    let registry = std::env::var("CICACHE_TEST_REGISTRY").ok();
    if let Some(r) = &registry {
        c.args(["--image", &format!("{r}/doctor-app")]);
    }
    let (code, out, err) = run(&mut c);
    assert_eq!(code, 0, "{out}\n{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["failures"], 0);
    let docker = check(&doc, "docker");
    assert_eq!(docker["status"], "ok");
    assert!(docker["message"].as_str().unwrap().contains(&daemon.unix));
    assert_eq!(check(&doc, "buildkit")["status"], "ok");
    // Debian's 20.10 client has no buildx plugin: the classic flavour, fine for one stage.
    let buildx = check(&doc, "buildx");
    assert_eq!(buildx["status"], "ok");
    assert!(buildx["message"].as_str().unwrap().contains("inline cache"));
    assert_eq!(check(&doc, "store")["status"], "ok");
    if registry.is_some() {
        assert_eq!(check(&doc, "registry")["status"], "ok", "{doc:#}");
    } else {
        eprintln!("registry line not checked: CICACHE_TEST_REGISTRY is not set");
    }

    // Over TCP, as a Docker-in-Docker agent is reached; DOCKER_BUILDKIT=0 and a multi-stage
    // Dockerfile without buildx are warnings: exit 0.
    let multi = write(
        dir.path(),
        "Dockerfile.multi",
        "FROM python:3.11 AS build\nRUN --mount=type=cache,target=/root/.cache/pip pip wheel -w /w x\n\
         FROM python:3.11\nCOPY --from=build /w /w\n",
    );
    let (code, out, err) = run(cicache()
        .env("DOCKER_HOST", &daemon.tcp)
        .env("DOCKER_BUILDKIT", "0")
        .env("CICACHE_DOCKER", DOCKER)
        .args(["--json", "doctor", "--dockerfile"])
        .arg(&multi)
        .arg("--store")
        .arg(&store));
    assert_eq!(code, 0, "{out}\n{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert!(
        check(&doc, "docker")["message"]
            .as_str()
            .unwrap()
            .contains(&daemon.tcp)
    );
    assert_eq!(check(&doc, "buildkit")["status"], "warn");
    let buildx = check(&doc, "buildx");
    assert_eq!(buildx["status"], "warn");
    assert!(
        buildx["message"]
            .as_str()
            .unwrap()
            .contains("1 earlier stage")
    );
    assert!(doc["warnings"].as_u64().unwrap() >= 2);

    // A docker 23+ client without the buildx plugin (the machine's /usr/local/bin/docker)
    // refuses BuildKit builds: both lines fail and say to install buildx.
    let newer = Path::new("/usr/local/bin/docker");
    let has_buildx = Command::new(newer)
        .args(["buildx", "version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if newer.exists() && !has_buildx {
        let (code, out, err) = run(cicache()
            .env("DOCKER_HOST", &daemon.unix)
            .env("CICACHE_DOCKER", newer)
            .args(["--json", "doctor", "--dockerfile"])
            .arg(&good)
            .arg("--store")
            .arg(&store));
        assert_eq!(code, 1, "{out}\n{err}");
        let doc: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(check(&doc, "docker")["status"], "ok");
        assert_eq!(check(&doc, "buildkit")["status"], "fail");
        assert!(
            check(&doc, "buildx")["fix"]
                .as_str()
                .unwrap()
                .contains("install the buildx plugin")
        );
    } else {
        eprintln!(
            "not checked: no docker 23+ client without buildx at {}",
            newer.display()
        );
    }

    // The daemon gone: the same command fails on the docker line.
    drop(daemon);
    let (code, out, _) = run(cicache()
        .env(
            "DOCKER_HOST",
            format!("unix://{}/gone.sock", dir.path().display()),
        )
        .env("CICACHE_DOCKER", DOCKER)
        .args(["--json", "doctor", "--dockerfile"])
        .arg(&good)
        .arg("--store")
        .arg(&store));
    assert_eq!(code, 1);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(check(&doc, "docker")["status"], "fail");
}

fn service(var: &str, why: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var("CICACHE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{var} is not set ({why}); test/run.sh starts it");
            }
            eprintln!("skipped: {var} is not set ({why})");
            None
        }
    }
}

/// The registry line against the real distribution registries of test/lib/registry.sh: an
/// open one answers 200, an htpasswd one 401; both are reachable.
#[test]
fn doctor_registry_lines() {
    let (Some(open), Some(auth)) = (
        service("CICACHE_TEST_REGISTRY", "a distribution registry"),
        service(
            "CICACHE_TEST_AUTH_REGISTRY",
            "a registry with htpasswd auth",
        ),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (registry, says) in [
        (open, "answers GET /v2/ (200)"),
        (auth, "asks for credentials"),
    ] {
        let (_, out, err) = run(cicache()
            .current_dir(dir.path())
            // No docker config: the check must not depend on stored credentials.
            .env("DOCKER_CONFIG", dir.path())
            .env(
                "DOCKER_HOST",
                format!("unix://{}/no.sock", dir.path().display()),
            )
            .env("CICACHE_DOCKER", DOCKER)
            .args(["--json", "doctor", "--store"])
            .arg(dir.path())
            .args(["--image", &format!("{registry}/doctor")]));
        let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
        let reg = check(&doc, "registry");
        assert_eq!(reg["status"], "ok", "{reg:#}");
        assert!(reg["message"].as_str().unwrap().contains(says), "{reg:#}");
    }
}

/// doctor on a fresh agent: a directory store that does not exist yet is fine (the first
/// save makes it), and doctor does not make it.
#[test]
fn doctor_on_a_fresh_agent_names_the_store_to_come_and_creates_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (_, out, err) = run(cicache()
        .args(["--json", "doctor", "--docker", "false", "--store"])
        .arg(&store));
    let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    let s = check(&doc, "store");
    assert_eq!(s["status"], "ok", "{s}");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("does not exist yet"),
        "{s}"
    );
    assert!(!store.exists(), "doctor made the store");
}
