//! Base images keyed by their inputs (`cicache build --base-dockerfile`, `cicache base`,
//! `registry gc --keep-bases`) against real docker engines (tests/engine: Debian docker.io
//! 20.10; docker 26 + buildx on the graph-driver and on the containerd image store: the
//! base reuse and gc run on each, `on_each_engine!`), a distribution registry of this test's
//! own (so that it can be stopped: "the registry is down") and the local package index
//! (test/lib/pypi.sh).
//!
//! Needs CICACHE_TEST_DOCKERD=1, CICACHE_TEST_IMAGES, CICACHE_TEST_REGISTRY (which says the
//! Debian `docker-registry` is installed) and CICACHE_TEST_PYPI_URL, and for the 26 engines
//! CICACHE_TEST_DOCKER26; without them the test prints "skipped: ..." unless
//! CICACHE_TEST_REQUIRE_SERVICES=1.
//!
//! The hash's stability across checkouts is a unit test in crates/cicache-docker/src/base.rs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod engine;
use engine::{BUSYBOX, Engine, PYTHON, free_port, service, work_dir};

/// A fresh agent.
struct Daemon(engine::Daemon);

impl std::ops::Deref for Daemon {
    type Target = engine::Daemon;
    fn deref(&self) -> &engine::Daemon {
        &self.0
    }
}

impl Daemon {
    fn start(engine: Engine) -> Daemon {
        Daemon(engine::Daemon::start(engine))
    }

    fn has_image(&self, r: &str) -> bool {
        self.docker(&["image", "inspect", r]).status.success()
    }

    fn label(&self, image: &str, label: &str) -> String {
        let o = self.docker(&[
            "image",
            "inspect",
            "--format",
            &format!("{{{{index .Config.Labels \"{label}\"}}}}"),
            image,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn cicache(&self, ws: &Path, state: &Path) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("cicache"));
        self.env(&mut c);
        c.current_dir(ws)
            .env("CICACHE_HELPER_IMAGE", BUSYBOX)
            .env("CICACHE_STORE", ws.join("../store"))
            .env("CICACHE_STATE_DIR", state)
            .env("CICACHE_PROGRESS", "never")
            .env_remove("CICACHE_SCOPE")
            .env_remove("CICACHE_FALLBACK_SCOPES")
            .env_remove("CICACHE_BUILDER")
            .env_remove("CICACHE_DOCKER_FLAVOUR")
            .env_remove("BRANCH_NAME")
            .env_remove("CHANGE_ID")
            .stdin(Stdio::null());
        c
    }
}

/// A distribution registry of this test alone (the Debian `docker-registry`, as
/// test/lib/registry.sh runs it), so that the test can take it down.
struct OwnRegistry {
    child: Option<Child>,
    addr: String,
    dir: PathBuf,
}

impl OwnRegistry {
    fn start() -> OwnRegistry {
        // One per test: tests (and the engines' runs of one) run in parallel.
        let port = free_port();
        let dir = work_dir().join(format!("base-registry-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let addr = format!("127.0.0.1:{port}");
        std::fs::write(
            dir.join("config.yml"),
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n  secret: cicache-base-test\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        let t = Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "registry did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        OwnRegistry {
            child: Some(child),
            addr,
            dir,
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRegistry {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
    fn ok(&self) -> Value {
        assert_eq!(
            self.code, 0,
            "cicache failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self.json()
    }
}

fn run(mut c: Command) -> Run {
    let o = c.output().expect("running cicache");
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python-app")
}

/// `cicache --json build` of the example's app on its base; the index URL goes after `--`
/// (part of the base's hash since issue 21 item 13: the same in every build here).
fn build_on_base(d: &Daemon, ws: &Path, state: &Path, registry: &str, pypi: &str) -> Run {
    let mut c = d.cicache(ws, state);
    c.args([
        "--json",
        "build",
        "--image",
        &format!("{registry}/app"),
        "-f",
        "Dockerfile.app",
        "--base-dockerfile",
        "Dockerfile.base",
        "--base-build-arg",
        &format!("PYTHON_IMAGE={PYTHON}"),
        "--log",
        "build.log",
        ".",
        "--",
        "--network",
        "host",
        "--build-arg",
        &format!("PIP_INDEX_URL={pypi}"),
        "--build-arg",
        "PIP_TRUSTED_HOST=127.0.0.1",
    ]);
    run(c)
}

fn downloads(log: &str) -> usize {
    log.lines().filter(|l| l.contains("Downloading ")).count()
}

fn app_output(d: &Daemon, image: &str) -> String {
    let o = d.docker(&["run", "--rm", "--network", "none", image]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// On each engine: the images it pushes (an OCI index with an attestation on docker 26's
/// containerd store) are what the base reuse, the "why rebuilt" comparison with the
/// registry's newest base and `gc --keep-bases` read. Two agents per engine.
fn base_built_once_reused_rebuilt_on_change_and_registry_down(engine: Engine) {
    let Some(images) = engine.services() else {
        return;
    };
    let started = Instant::now();
    let Some(_) = service(
        "CICACHE_TEST_REGISTRY",
        "the Debian docker-registry (this test runs its own)",
    ) else {
        return;
    };
    let Some(pypi) = service("CICACHE_TEST_PYPI_URL", "the local package index") else {
        return;
    };
    let mut registry = OwnRegistry::start();
    let reg = registry.addr.clone();
    let repo = format!("{reg}/app");
    let t = tempfile::tempdir().unwrap();
    let ws = t.path().join("ws");
    let state = t.path().join("state");
    std::fs::create_dir_all(&ws).unwrap();
    for f in [
        "Dockerfile.base",
        "Dockerfile.app",
        "requirements.txt",
        "app.py",
    ] {
        std::fs::copy(example_dir().join(f), ws.join(f)).unwrap();
    }
    let d1 = Daemon::start(engine);
    d1.load(&images, "python.tar");
    d1.load(&images, "busybox.tar");

    // 1. First run: the base is built (pip downloads the four wheels) and pushed; the app
    // is built on it and labelled with it.
    let j = build_on_base(&d1, &ws, &state, &reg, &pypi).ok();
    let base1 = j["base"].clone();
    assert_eq!(base1["status"], "built", "{base1}");
    let ref1 = base1["ref"].as_str().unwrap().to_string();
    assert!(ref1.starts_with(&format!("{repo}:base-")), "{ref1}");
    assert_eq!(base1["files"], serde_json::json!(["requirements.txt"]));
    assert_eq!(
        base1["build"]["report"]["wheels"]["downloaded"], 4,
        "{base1}"
    );
    let push = base1["build"]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "push")
        .unwrap();
    assert_eq!(push["status"], "ok", "{push}");
    assert_eq!(
        d1.label(&format!("{repo}:latest"), "io.cicache.base"),
        ref1,
        "the app image names its base"
    );
    assert!(app_output(&d1, &format!("{repo}:latest")).contains("six 1.16.0"));
    assert!(
        d1.label(&ref1, "io.cicache.base.inputs")
            .contains("file:requirements.txt")
    );

    // 2. A fresh agent (new daemon without the Python image, same workspace): the base is
    // reused from the registry, nothing of it is built, and the app build runs no pip.
    let d2 = Daemon::start(engine);
    {
        d2.load(&images, "busybox.tar");
        assert!(!d2.has_image(PYTHON));
        let j = build_on_base(&d2, &ws, &state, &reg, &pypi).ok();
        assert_eq!(j["base"]["status"], "reused", "{}", j["base"]);
        assert_eq!(j["base"]["ref"], ref1.as_str());
        assert!(
            j["base"]["build"].is_null(),
            "nothing of the base was built"
        );
        let log = std::fs::read_to_string(ws.join("build.log")).unwrap();
        assert_eq!(downloads(&log), 0, "{log}");
        assert!(!log.contains("pip install"), "{log}");
        assert_eq!(d2.label(&format!("{repo}:latest"), "io.cicache.base"), ref1);
        assert!(app_output(&d2, &format!("{repo}:latest")).contains("idna 3.7"));
        assert!(
            j["phases"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["name"] != "restore" || p["status"] != "skipped"),
            "the app build restores for itself when the base was reused"
        );
    }

    // 3. A changed requirement, on an agent that keeps no record (a fresh state dir): a new
    // tag, one rebuild, which names the change against the newest base in the registry; pip
    // takes the old wheels from the cache and downloads the new one only.
    let state = t.path().join("state-2");
    let mut reqs = std::fs::read_to_string(ws.join("requirements.txt")).unwrap();
    reqs.push_str("tomli==2.0.1\n");
    std::fs::write(ws.join("requirements.txt"), &reqs).unwrap();
    let j = build_on_base(&d1, &ws, &state, &reg, &pypi).ok();
    let base3 = &j["base"];
    assert_eq!(base3["status"], "built", "{base3}");
    let ref3 = base3["ref"].as_str().unwrap().to_string();
    assert_ne!(ref3, ref1);
    assert_eq!(
        base3["changes"],
        serde_json::json!([{"input": "file:requirements.txt", "change": "changed"}])
    );
    assert!(
        base3["reason"]
            .as_str()
            .unwrap()
            .contains("file:requirements.txt changed"),
        "{base3}"
    );
    assert_eq!(base3["previous"], ref1.as_str());
    // The rebuild reads its layer cache from the previous base (inline cache).
    assert_eq!(base3["build"]["cache_from"], serde_json::json!([ref1]));
    assert!(base3["build"]["cache_to"].is_null());
    assert_eq!(
        base3["build"]["report"]["wheels"]["downloaded"], 1,
        "{base3}"
    );
    assert_eq!(d1.label(&format!("{repo}:latest"), "io.cicache.base"), ref3);
    // The same inputs again: nothing to build (asked without building anything). The
    // arguments after `--` are inputs too: the same ones as the build's.
    let mut c = d1.cicache(&ws, &state);
    c.args([
        "--json",
        "base",
        "--image",
        &repo,
        "-f",
        "Dockerfile.base",
        "--build-arg",
        &format!("PYTHON_IMAGE={PYTHON}"),
        "--dry-run",
        ".",
        "--",
        "--network",
        "host",
        "--build-arg",
        &format!("PIP_INDEX_URL={pypi}"),
        "--build-arg",
        "PIP_TRUSTED_HOST=127.0.0.1",
    ]);
    let j = run(c).ok();
    assert_eq!(j["status"], "reused", "{j}");
    assert_eq!(j["ref"], ref3.as_str());

    // 4. gc --keep-bases 1: the newest base stays, and so does any base an app image still
    // names; the older one goes (past --max-age 0s).
    let gc = |keep: &str, dry: bool| {
        let mut c = d1.cicache(&ws, &state);
        c.args([
            "--json",
            "registry",
            "gc",
            "--image",
            &repo,
            "--keep-bases",
            keep,
            "--max-age",
            "0s",
        ]);
        if dry {
            c.arg("--dry-run");
        }
        run(c).ok()
    };
    let tag1 = ref1.rsplit_once(':').unwrap().1.to_string();
    let tag3 = ref3.rsplit_once(':').unwrap().1.to_string();
    let reason = |plan: &Value, tag: &str| {
        plan["kept"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["tag"] == tag)
            .map(|k| k["reason"].as_str().unwrap().to_string())
    };
    let deleted = |plan: &Value| -> Vec<String> {
        plan["delete"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|d| d["tags"].as_array().unwrap().clone())
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    };
    let plan = gc("1", true);
    assert_eq!(deleted(&plan), vec![tag1.clone()], "{plan}");
    assert_eq!(
        reason(&plan, &tag3).as_deref(),
        Some("newest_base"),
        "{plan}"
    );
    // An app image built on the first base (labelled as cicache labels them) keeps it.
    std::fs::write(ws.join("Dockerfile.old"), format!("FROM {ref1}\n")).unwrap();
    let old_app = format!("{repo}:v1");
    let o = d1.build(&[
        "--label",
        &format!("io.cicache.base={ref1}"),
        "-t",
        &old_app,
        "-f",
        ws.join("Dockerfile.old").to_str().unwrap(),
        ws.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = d1.docker(&["push", &old_app]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plan = gc("1", true);
    assert!(deleted(&plan).is_empty(), "{plan}");
    assert_eq!(
        reason(&plan, &tag1).as_deref(),
        Some("base_in_use"),
        "{plan}"
    );

    // 5. The registry is down. Another requirement change: the base cannot be checked; this
    // agent's last known base (in its daemon) is taken with a warning naming what it lacks.
    registry.stop();
    reqs.push_str("# pinned for the test\n");
    std::fs::write(ws.join("requirements.txt"), &reqs).unwrap();
    let r = build_on_base(&d1, &ws, &state, &reg, &pypi);
    let j = r.ok();
    assert_eq!(j["base"]["status"], "fallback", "{}", j["base"]);
    assert_eq!(j["base"]["ref"], ref3.as_str());
    assert!(r.stderr.contains("could not be asked"), "{}", r.stderr);
    assert!(
        r.stderr.contains("file:requirements.txt changed"),
        "{}",
        r.stderr
    );
    assert!(!j["base"]["registry_error"].is_null());
    assert_eq!(d1.label(&format!("{repo}:latest"), "io.cicache.base"), ref3);

    // An agent without that base (the second one has only the first base): a failure that
    // says what to do.
    let r = build_on_base(&d2, &ws, &state, &reg, &pypi);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("cannot check"), "{}", r.stderr);
    assert!(r.stderr.contains("Fix:"), "{}", r.stderr);
    assert!(r.stderr.contains("cicache registry status"), "{}", r.stderr);
    eprintln!(
        "base_built_once_reused_rebuilt_on_change_and_registry_down on {}: {:.1}s",
        engine.name(),
        started.elapsed().as_secs_f64()
    );
}
on_each_engine!(base_built_once_reused_rebuilt_on_change_and_registry_down);

/// `cicache base` on its own, for a repository without a registry host (the local daemon is
/// asked instead), with --input globs: the reference alone on stdout; built once, then
/// reused; an input outside the globs changes nothing, one inside makes a new base.
/// A workspace under `dir` with a busybox base Dockerfile that copies `deps/` (holding
/// `a.txt`), and a state dir beside it.
fn busybox_base_workspace(dir: &Path) -> (PathBuf, PathBuf) {
    let ws = dir.join("ws");
    std::fs::create_dir_all(ws.join("deps")).unwrap();
    std::fs::write(
        ws.join("Dockerfile.base"),
        format!("FROM {BUSYBOX}\nCOPY deps/ /deps/\nRUN cat /deps/*.txt > /all\n"),
    )
    .unwrap();
    std::fs::write(ws.join("deps/a.txt"), "a\n").unwrap();
    (ws, dir.join("state"))
}

#[test]
fn base_command_local_repository_and_input_globs() {
    let Some(_) = service("CICACHE_TEST_DOCKERD", "dockerd may be started by tests") else {
        return;
    };
    let Some(images) = service("CICACHE_TEST_IMAGES", "docker-save tarballs").map(PathBuf::from)
    else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let (ws, state) = busybox_base_workspace(t.path());
    std::fs::write(ws.join("deps/notes.md"), "notes\n").unwrap();
    let d = Daemon::start(Engine::Docker20);
    d.load(&images, "busybox.tar");
    let base = |extra: &[&str]| {
        let mut c = d.cicache(&ws, &state);
        c.args([
            "base",
            "--image",
            "local/app",
            "--input",
            "deps/*.txt",
            "--no-restore",
            "--no-save",
            ".",
            "--",
            "--network",
            "none",
        ]);
        c.args(extra);
        run(c)
    };
    let r = base(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ref1 = r.stdout.trim().to_string();
    assert!(ref1.starts_with("local/app:base-"), "{}", r.stdout);
    assert_eq!(
        r.stdout.lines().count(),
        1,
        "the reference alone: {}",
        r.stdout
    );
    assert!(r.stderr.contains("base: built"), "{}", r.stderr);
    assert!(d.has_image(&ref1));

    // notes.md is no input: the same base, reused.
    std::fs::write(ws.join("deps/notes.md"), "other notes\n").unwrap();
    let r = base(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), ref1);
    assert!(r.stderr.contains("base: reused"), "{}", r.stderr);

    // A new .txt is: a new base, and the change is named.
    std::fs::write(ws.join("deps/b.txt"), "b\n").unwrap();
    let mut c = d.cicache(&ws, &state);
    c.args([
        "--json",
        "base",
        "--image",
        "local/app",
        "--input",
        "deps/*.txt",
        "--no-restore",
        "--no-save",
        ".",
        "--",
        "--network",
        "none",
    ]);
    let j = run(c).ok();
    assert_eq!(j["status"], "built", "{j}");
    assert_ne!(j["ref"], ref1.as_str());
    assert_eq!(
        j["changes"],
        serde_json::json!([{"input": "file:deps/b.txt", "change": "added"}])
    );
    assert_eq!(j["files"], serde_json::json!(["deps/a.txt", "deps/b.txt"]));
    let o = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        j["ref"].as_str().unwrap(),
        "cat",
        "/all",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "a\nb\n");
}

/// Issue 21 item 13: a base records the scope that built it (`io.cicache.base.scope`); a
/// build reuses only the bases of its own scope and of its fallback scopes, and builds an
/// untrusted one again (a pull request's base is not the default branch's). Arguments after
/// `--` are part of the hash.
fn bases_are_reused_only_from_trusted_scopes(engine: Engine) {
    let Some(images) = engine.services() else {
        return;
    };
    let Some(_) = service("CICACHE_TEST_REGISTRY", "the Debian docker-registry") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let (ws, state) = busybox_base_workspace(t.path());
    let reg = OwnRegistry::start();
    let d = Daemon::start(engine);
    d.load(&images, "busybox.tar");
    let image = format!("{}/app", reg.addr);
    let base = |scopes: &[&str], extra: &[&str]| {
        let mut c = d.cicache(&ws, &state);
        c.arg("--json").args(scopes).args([
            "base",
            "--image",
            &image,
            "--input",
            "deps/*.txt",
            "--no-restore",
            "--no-save",
        ]);
        c.args(extra).args([".", "--", "--network", "none"]);
        run(c).ok()
    };
    let pr = base(&["--scope", "pr-7", "--fallback-scope", "main"], &[]);
    assert_eq!(pr["status"], "built", "{pr}");
    let reference = pr["ref"].as_str().unwrap().to_string();
    assert_eq!(d.label(&reference, "io.cicache.base.scope"), "pr-7");

    // The default branch does not take the pull request's base.
    let main = base(&["--scope", "main"], &["--dry-run"]);
    assert_eq!(main["status"], "would_build", "{main}");
    assert_eq!(main["ref"], reference.as_str());
    let why = main["reason"].as_str().unwrap();
    assert!(why.contains("built by scope `pr-7`"), "{why}");
    // A scope that trusts pr-7 does.
    let other = base(
        &["--scope", "pr-9", "--fallback-scope", "pr-7"],
        &["--dry-run"],
    );
    assert_eq!(other["status"], "reused", "{other}");

    // The default branch builds it again, under the same tag, as its own.
    let main = base(&["--scope", "main"], &[]);
    assert_eq!(main["status"], "built", "{main}");
    assert_eq!(main["ref"], reference.as_str());
    assert_eq!(d.label(&reference, "io.cicache.base.scope"), "main");
    // ... which the pull request (falling back to main) now reuses.
    let pr = base(
        &["--scope", "pr-7", "--fallback-scope", "main"],
        &["--dry-run"],
    );
    assert_eq!(pr["status"], "reused", "{pr}");

    // Arguments after `--` are hashed: another network, another base.
    let mut c = d.cicache(&ws, &state);
    c.args(["--json", "--scope", "main", "base", "--image", &image])
        .args([
            "--input",
            "deps/*.txt",
            "--dry-run",
            ".",
            "--",
            "--network",
            "host",
        ]);
    let host = run(c).ok();
    assert_ne!(host["ref"], reference.as_str(), "{host}");
    assert_eq!(host["status"], "would_build", "{host}");
}
on_each_engine!(bases_are_reused_only_from_trusted_scopes);
