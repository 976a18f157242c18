//! Every command's `--json` output against its JSON Schema in docs/schema/ (draft 2020-12):
//! success, miss, failure and usage error, run through the real binary against the real
//! parts (a directory store; the S3 store on moto; the distribution registry and ECR on moto
//! for `registry`; a docker 20.10 daemon for `build`, `mount`, `docker prune`, `doctor`).
//!
//! Each run must print exactly one JSON document on stdout, which must validate against
//! `docs/schema/<command>.json`. Without a service, its test prints "skipped: ..." and
//! passes, unless CICACHE_TEST_REQUIRE_SERVICES=1 (test/run.sh).

mod aws;
mod engine;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use engine::{BUSYBOX, Daemon, Engine, service};

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schema")
}

/// The command each schema file describes; the test that reads them all checks the list.
const SCHEMAS: &[&str] = &[
    "base",
    "build",
    "docker-prune",
    "doctor",
    "error",
    "export",
    "import",
    "key",
    "list",
    "mount",
    "prune",
    "registry-clear",
    "registry-ensure",
    "registry-gc",
    "registry-lifecycle",
    "registry-login",
    "registry-status",
    "report",
    "restore",
    "save",
    "verify",
];

struct Schemas {
    validators: BTreeMap<String, jsonschema::Validator>,
}

/// Every schema, compiled once, with every other schema resolvable by its `$id` (a command's
/// schema refers to `error.json`, `build.json` to `restore.json` ...); no network.
fn schemas() -> &'static Schemas {
    static S: OnceLock<Schemas> = OnceLock::new();
    S.get_or_init(|| {
        let mut docs = Vec::new();
        for name in SCHEMAS {
            let path = schema_dir().join(format!("{name}.json"));
            let text =
                fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            assert_eq!(
                v["$schema"], "https://json-schema.org/draft/2020-12/schema",
                "{name}"
            );
            jsonschema::meta::validate(&v)
                .unwrap_or_else(|e| panic!("{name}.json is not a valid schema: {e}"));
            let id = v["$id"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no $id"))
                .to_string();
            assert!(id.ends_with(&format!("/{name}.json")), "{name}: $id {id}");
            docs.push((name.to_string(), id, v));
        }
        let mut builder = jsonschema::Registry::new();
        for (_, id, v) in &docs {
            builder = builder.add(id.as_str(), v.clone()).expect("add a schema");
        }
        let registry: &'static jsonschema::Registry<'static> =
            Box::leak(Box::new(builder.prepare().expect("the schemas' registry")));
        let validators = docs
            .iter()
            .map(|(name, id, _)| {
                let v = jsonschema::options()
                    .with_registry(registry)
                    .build(&serde_json::json!({ "$ref": id }))
                    .unwrap_or_else(|e| panic!("{name}.json: {e}"));
                (name.clone(), v)
            })
            .collect();
        Schemas { validators }
    })
}

/// Panics with every violation when `doc` does not match `docs/schema/<schema>.json`.
fn check(schema: &str, doc: &Value, what: &str) {
    let v = schemas()
        .validators
        .get(schema)
        .unwrap_or_else(|| panic!("no schema {schema}"));
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: the document does not match docs/schema/{schema}.json:\n{}\n{doc:#}",
        errors.join("\n")
    );
}

struct Run {
    code: i32,
    doc: Value,
    stderr: String,
}

/// Runs `c` and reads exactly one JSON document from its stdout.
fn run(mut c: Command, what: &str) -> Run {
    let o = c.stdin(Stdio::null()).output().expect("run cicache");
    let out = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    let mut docs = serde_json::Deserializer::from_str(&out).into_iter::<Value>();
    let doc = match docs.next() {
        Some(Ok(v)) => v,
        other => panic!("{what}: no JSON document on stdout ({other:?}): {out:?}\n{stderr}"),
    };
    assert!(
        docs.next().is_none(),
        "{what}: more than one document: {out}"
    );
    Run {
        code: o.status.code().unwrap_or(-1),
        doc,
        stderr,
    }
}

struct T {
    tmp: tempfile::TempDir,
}

impl T {
    fn new() -> T {
        let t = T {
            tmp: tempfile::tempdir().unwrap(),
        };
        let cache = t.p("cache");
        fs::create_dir_all(cache.join("http-v2/a")).unwrap();
        fs::write(cache.join("http-v2/a/h1"), "header").unwrap();
        fs::create_dir_all(cache.join("wheels")).unwrap();
        fs::write(cache.join("wheels/w.whl"), vec![7u8; 300 * 1024]).unwrap();
        fs::create_dir_all(t.p("store")).unwrap();
        fs::write(t.p("requirements.txt"), "six\n").unwrap();
        fs::write(
            t.p("Dockerfile"),
            format!(
                "FROM {BUSYBOX}\nARG N=1\n\
                 RUN --mount=type=cache,target=/root/.cache/pip echo \"$N\" > /root/.cache/pip/n-$N && cp /root/.cache/pip/n-$N /n\n"
            ),
        )
        .unwrap();
        fs::write(t.p("empty-aws-file"), "").unwrap();
        t
    }
    fn p(&self, s: &str) -> PathBuf {
        self.tmp.path().join(s)
    }
    /// cicache with no variable of this process but PATH, a store of its own, no AWS setup.
    fn cmd(&self) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("cicache"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.p("home"))
            .env("CICACHE_STORE", self.p("store"))
            .env("CICACHE_STATE_DIR", self.p("state"))
            .env("CICACHE_PROGRESS", "never")
            .env("BRANCH_NAME", "main")
            .env("AWS_CONFIG_FILE", self.p("empty-aws-file"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.p("empty-aws-file"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("DOCKER_CONFIG", self.p("docker-config"))
            .current_dir(self.tmp.path());
        c
    }
    /// `cicache --json ARGS`, checked against `schema`; returns the run.
    fn json(&self, schema: &str, args: &[&str]) -> Run {
        let mut c = self.cmd();
        c.arg("--json").args(args);
        self.checked(c, schema, args)
    }
    fn checked(&self, c: Command, schema: &str, args: &[&str]) -> Run {
        let what = format!("{schema}: {args:?}");
        let r = run(c, &what);
        check(schema, &r.doc, &what);
        r
    }
}

fn assert_code(r: &Run, code: i32, what: &str) {
    assert_eq!(r.code, code, "{what}: {}\n{}", r.doc, r.stderr);
}

/// A usage error of `args`: exit 2 and the error document, validated by the command's
/// schema (which admits it) and by error.json.
fn usage(t: &T, schema: &str, args: &[&str]) {
    let r = t.json(schema, args);
    assert_code(&r, 2, &format!("{args:?}"));
    assert_eq!(r.doc["kind"], "usage", "{args:?}: {}", r.doc);
    check("error", &r.doc, &format!("{args:?}"));
}

#[test]
fn every_schema_is_valid_and_listed() {
    let mut on_disk: Vec<String> = fs::read_dir(schema_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, SCHEMAS, "docs/schema/ and SCHEMAS differ");
    assert_eq!(schemas().validators.len(), SCHEMAS.len());
    // The schemas are not vacuous: a document of one command fails another's.
    let err = serde_json::json!({"ok": false, "error": "x", "kind": "usage", "exit_code": 2});
    check("restore", &err, "the error document");
    let v = &schemas().validators["restore"];
    assert!(!v.is_valid(&serde_json::json!({"ok": 3})));
    assert!(!v.is_valid(&serde_json::json!({"status": "miss"})));
}

#[test]
fn store_commands() {
    let t = T::new();
    let key = "pip-{{ hashFiles \"requirements*.txt\" }}";
    // key
    assert_code(&t.json("key", &["key", key]), 0, "key");
    let r = t.json("key", &["key", "{{ hashFiles \"nothing*\" }}"]);
    assert_code(&r, 1, "key of no file");
    usage(&t, "key", &["key", "--no-such-flag"]);
    // restore: miss, then save, hit, lookup-only, store unavailable, usage
    let r = t.json("restore", &["restore", "--key", key, "--path", "out"]);
    assert_eq!((r.code, &r.doc["status"]), (0, &Value::from("miss")));
    let r = t.json("save", &["save", "--key", key, "--path", "cache"]);
    assert_eq!(r.doc["status"], "saved", "{}", r.doc);
    let r = t.json("save", &["save", "--key", key, "--path", "cache"]);
    assert_eq!(r.doc["status"], "exists");
    let r = t.json("save", &["save", "--key", "other", "--path", "nowhere"]);
    assert_eq!(r.doc["status"], "failed");
    let r = t.json(
        "save",
        &["--strict", "save", "--key", "other", "--path", "nowhere"],
    );
    assert_code(&r, 1, "strict save of nothing");
    usage(&t, "save", &["save", "--path", "cache"]);
    let r = t.json("restore", &["restore", "--key", key, "--path", "out"]);
    assert_eq!(r.doc["status"], "hit");
    let r = t.json(
        "restore",
        &[
            "restore",
            "--key",
            "pip-x",
            "--restore-key",
            "pip-",
            "--path",
            "o2",
            "--lookup-only",
        ],
    );
    assert_eq!(r.doc["hit"], true);
    let mut c = t.cmd();
    c.env("CICACHE_STORE", t.p("missing"))
        .args(["--json", "restore", "--key", "k", "--path", "o3"]);
    let r = t.checked(c, "restore", &["restore (missing store)"]);
    assert_eq!(r.doc["store_unavailable"], true);
    let mut c = t.cmd();
    c.env("CICACHE_STORE", t.p("missing")).args([
        "--json", "--strict", "restore", "--key", "k", "--path", "o3",
    ]);
    let r = t.checked(c, "restore", &["--strict restore (missing store)"]);
    assert_code(&r, 1, "strict restore of a missing store");
    usage(&t, "restore", &["restore", "--path", "x"]);
    usage(
        &t,
        "restore",
        &["--store", "s3:/x", "restore", "--key", "k", "--path", "x"],
    );
    // list
    let r = t.json("list", &["list"]);
    assert_eq!(r.doc["entries"].as_array().map(Vec::len), Some(1));
    let mut c = t.cmd();
    c.env("CICACHE_STORE", t.p("missing"))
        .args(["--json", "list"]);
    assert_code(&t.checked(c, "list", &["list (missing store)"]), 1, "list");
    usage(&t, "list", &["list", "--in-scope"]);
    // export / import
    let r = t.json("export", &["export", "--key", key, "-o", "e.tar.zst"]);
    assert_code(&r, 0, "export");
    assert_code(
        &t.json("export", &["export", "--key", "nope", "-o", "n.tar.zst"]),
        1,
        "export of a missing key",
    );
    usage(&t, "export", &["export", "-o", "x.tar.zst"]);
    let r = t.json("import", &["import", "--key", "imported", "e.tar.zst"]);
    assert_eq!(r.doc["save"]["status"], "saved", "{}", r.doc);
    assert_code(
        &t.json("import", &["import", "--key", "k", "missing.tar.zst"]),
        1,
        "import of a missing file",
    );
    usage(&t, "import", &["import", "e.tar.zst"]);
    // verify: whole, then damaged (a blob's bytes changed on disk)
    let r = t.json("verify", &["verify"]);
    assert_eq!((r.code, &r.doc["ok"]), (0, &Value::Bool(true)));
    let blob = walkdir::WalkDir::new(t.p("store/cicache-v1/blobs"))
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| e.file_type().is_file())
        .expect("a blob");
    let mut bytes = fs::read(blob.path()).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(blob.path(), bytes).unwrap();
    let r = t.json("verify", &["verify"]);
    assert_eq!(
        (r.code, &r.doc["ok"]),
        (1, &Value::Bool(false)),
        "{}",
        r.doc
    );
    usage(&t, "verify", &["verify", "--key"]);
    // prune
    let r = t.json("prune", &["prune", "--dry-run", "--keep-last", "1"]);
    assert_code(&r, 0, "prune --dry-run");
    let r = t.json("prune", &["prune", "--max-age", "1s", "--damaged"]);
    assert_code(&r, 0, "prune");
    for (strict, code) in [(false, 0), (true, 1)] {
        let mut c = t.cmd();
        c.env("CICACHE_STORE", t.p("missing"))
            .env("CICACHE_STRICT", if strict { "1" } else { "0" })
            .args(["--json", "prune", "--max-age", "1d"]);
        let r = t.checked(c, "prune", &["prune (missing store)"]);
        assert_code(&r, code, "prune of a missing store");
    }
    usage(&t, "prune", &["prune"]);
    usage(&t, "prune", &["prune", "--max-size", "20gigs"]);
}

#[test]
fn store_commands_on_s3() {
    let Some(moto) = service(
        "CICACHE_TEST_MOTO_URL",
        "the moto server (test/lib/moto.sh)",
    ) else {
        return;
    };
    let t = T::new();
    let bucket = format!("schema-{}", std::process::id());
    aws::create_bucket(&moto, &bucket);
    let store = format!("s3://{bucket}/ci");
    let keys = |c: &mut Command| {
        c.env("CICACHE_STORE", &store);
        aws::aws(c, &moto, true);
    };
    for (schema, args) in [
        ("restore", &["restore", "--key", "k", "--path", "out"][..]),
        ("save", &["save", "--key", "k", "--path", "cache"][..]),
        ("restore", &["restore", "--key", "k", "--path", "out"][..]),
        ("list", &["list"][..]),
        ("verify", &["verify"][..]),
        ("prune", &["prune", "--dry-run", "--max-age", "1d"][..]),
    ] {
        let mut c = t.cmd();
        keys(&mut c);
        c.arg("--json").args(args);
        let r = t.checked(c, schema, args);
        assert_code(&r, 0, &format!("{args:?} on s3"));
    }
    // No credentials: a miss with store_unavailable; list fails with the error document.
    let no_keys = |args: &[&str]| {
        let mut c = t.cmd();
        c.env("CICACHE_STORE", &store);
        aws::aws(&mut c, &moto, false);
        c.arg("--json").args(args);
        c
    };
    let c = no_keys(&["restore", "--key", "k", "--path", "out"]);
    let r = t.checked(c, "restore", &["restore without credentials"]);
    assert_eq!(r.doc["store_unavailable"], true, "{}", r.doc);
    let c = no_keys(&["list"]);
    assert_code(
        &t.checked(c, "list", &["list without credentials"]),
        1,
        "list",
    );
}

#[test]
fn report_build_and_base_without_a_daemon() {
    let t = T::new();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cicache-docker/tests/fixtures");
    let log = |n: &str| fixtures.join(n).display().to_string();
    // report: a warm build, a failed one, pip's own log, and a file that is not there.
    let r = t.json(
        "report",
        &["report", &log("bk-warm.log"), &log("pip-host.log")],
    );
    assert_code(&r, 0, "report");
    let r = t.json("report", &["report", &log("bk-fail.log")]);
    assert_eq!(r.doc["ok"], false);
    let r = t.json("report", &["report", "no-such.log"]);
    assert_ne!(r.code, 0);
    usage(&t, "report", &["report"]);
    // build --dry-run, base --dry-run, a build whose docker fails (`false` as the client).
    let r = t.json(
        "build",
        &[
            "build",
            "--flavour",
            "classic",
            "--docker",
            "false",
            "--image",
            "r/app",
            "--dry-run",
            ".",
        ],
    );
    assert_eq!(r.doc["dry_run"], true);
    let r = t.json(
        "build",
        &[
            "build",
            "--flavour",
            "classic",
            "--docker",
            "false",
            "--image",
            "team/app",
            "--cache-dir",
            "cache",
            ".",
        ],
    );
    assert_eq!(
        (r.code, &r.doc["ok"]),
        (1, &Value::Bool(false)),
        "{}",
        r.doc
    );
    usage(&t, "build", &["build", "--no-such-flag", "."]);
    let r = t.json(
        "base",
        &[
            "base",
            "--docker",
            "false",
            "--image",
            "team/app",
            "--platform",
            "linux/amd64",
            "--dry-run",
            "-f",
            "Dockerfile",
            ".",
        ],
    );
    assert_eq!(r.doc["status"], "would_build", "{}", r.doc);
    usage(&t, "base", &["base", "--no-such-flag"]);
    // mount, docker prune and doctor with a docker that fails.
    let r = t.json(
        "mount",
        &[
            "mount",
            "inject",
            "--docker",
            "false",
            "--flavour",
            "classic",
            "--from",
            "cache",
        ],
    );
    assert_ne!(r.code, 0);
    usage(&t, "mount", &["mount", "inject"]);
    let r = t.json("docker-prune", &["docker", "prune", "--docker", "false"]);
    assert_ne!(r.code, 0);
    usage(&t, "docker-prune", &["docker", "prune", "--until", "soon"]);
    let r = t.json("doctor", &["doctor", "--docker", "false"]);
    assert_eq!(r.doc["ok"], false, "{}", r.doc);
    usage(&t, "doctor", &["doctor", "--no-such-flag"]);
}

#[test]
fn docker_commands_on_a_real_daemon() {
    let Some(images) = Engine::Docker20.services() else {
        return;
    };
    let d = Daemon::start(Engine::Docker20);
    d.load(&images, "busybox.tar");
    let t = T::new();
    let cmd = |args: &[&str]| {
        let mut c = t.cmd();
        d.env(&mut c);
        c.env("CICACHE_HELPER_IMAGE", BUSYBOX)
            .arg("--json")
            .args(args);
        c
    };
    let args = ["mount", "inject", "--from", "cache"];
    let r = t.checked(cmd(&args), "mount", &args);
    assert_code(&r, 0, "mount inject");
    let args = [
        "build",
        "--image",
        "schema/app",
        "--no-registry-cache",
        "--cache-dir",
        "pip",
        ".",
        "--",
        "--network",
        "none",
    ];
    let r = t.checked(cmd(&args), "build", &args);
    assert_code(&r, 0, "build");
    let args = ["mount", "extract", "--to", "extracted"];
    let r = t.checked(cmd(&args), "mount", &args);
    assert_code(&r, 0, "mount extract");
    let args = ["docker", "prune", "--cache-mounts", "--dry-run"];
    let r = t.checked(cmd(&args), "docker-prune", &args);
    assert_code(&r, 0, "docker prune");
    let args = ["doctor", "--image", "schema/app"];
    t.checked(cmd(&args), "doctor", &args);
    // A Dockerfile step that fails: the build document, ok false, docker's exit code.
    fs::write(
        t.p("Dockerfile.bad"),
        format!("FROM {BUSYBOX}\nRUN exit 3\n"),
    )
    .unwrap();
    let args = [
        "build",
        "--image",
        "schema/bad",
        "--no-registry-cache",
        "-f",
        "Dockerfile.bad",
        ".",
        "--",
        "--network",
        "none",
    ];
    let r = t.checked(cmd(&args), "build", &args);
    assert_eq!(r.doc["ok"], false, "{}", r.doc);
}

/// `registry` against the distribution registry (OCI) and ECR on moto. The OCI repository
/// gets its content from an `oci://` store save; the ECR login's `docker login` is `true`
/// (a stand-in program: a real ECR login would contact amazonaws.com).
#[test]
fn registry_commands() {
    let t = T::new();
    // (`registry status` with no --image is exit 1 today: cmd/registry.rs is being moved
    // into a library; its missing-flag errors become usage errors there.)
    usage(
        &t,
        "registry-status",
        &["registry", "status", "--no-such-flag"],
    );
    usage(
        &t,
        "registry-gc",
        &["registry", "gc", "--image", "r/app", "--max-age", "soon"],
    );
    if let Some(registry) = service("CICACHE_TEST_REGISTRY", "the distribution registry") {
        let image = format!("{registry}/schema-{}", std::process::id());
        let mut c = t.cmd();
        c.env("CICACHE_STORE", format!("oci://{image}"))
            .args(["--json", "save", "--key", "k", "--path", "cache"]);
        let r = t.checked(c, "save", &["save to oci://"]);
        assert_eq!(r.doc["status"], "saved", "{}", r.doc);
        registry_runs(&t, &image, &[], |_| {});
        // A registry that does not answer.
        let r = t.json(
            "registry-status",
            &[
                "--timeout",
                "3s",
                "registry",
                "status",
                "--image",
                "127.0.0.1:1/none",
            ],
        );
        assert_code(&r, 1, "status of a closed port");
    }
    if let Some(moto) = aws::moto() {
        let image = format!(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/schema-{}",
            std::process::id()
        );
        let login = ["registry", "login", "--image", &image, "--docker", "true"];
        registry_runs(&t, &image, &[("registry-login", &login[..])], |c| {
            aws::aws(c, &moto, true)
        });
        // ECR without credentials: the error document.
        let mut c = t.cmd();
        aws::aws(&mut c, &moto, false);
        c.args(["--json", "registry", "status", "--image", &image]);
        let r = t.checked(c, "registry-status", &["status without credentials"]);
        assert_code(&r, 1, "ECR status without credentials");
    }
}

/// ensure, status, gc, clear and lifecycle of `image` (and `more`), each a success that
/// matches its schema; `env` points the command at the registry's API.
fn registry_runs(t: &T, image: &str, more: &[(&str, &[&str])], env: impl Fn(&mut Command)) {
    let ecr = image.contains(".dkr.ecr.");
    let lifecycle: &[&str] = if ecr { &["--apply"] } else { &[] };
    let gc: &[&str] = if ecr { &["--untagged"] } else { &[] };
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("registry-ensure", vec!["ensure"]),
        ("registry-status", vec!["status"]),
        ("registry-gc", [&["gc", "--dry-run"][..], gc].concat()),
        ("registry-clear", vec!["clear", "--dry-run"]),
        (
            "registry-lifecycle",
            [&["lifecycle"][..], lifecycle].concat(),
        ),
    ];
    let runs = runs
        .into_iter()
        .map(|(schema, sub)| {
            let args: Vec<&str> = [&["registry"][..], &sub, &["--image", image]].concat();
            (schema, args)
        })
        .chain(more.iter().map(|(s, a)| (*s, a.to_vec())));
    for (schema, args) in runs {
        let mut c = t.cmd();
        env(&mut c);
        c.arg("--json").args(&args);
        let r = t.checked(c, schema, &args);
        assert_code(&r, 0, &format!("{args:?}"));
    }
}
