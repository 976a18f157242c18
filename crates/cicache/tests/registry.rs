//! `cicache registry ...` against the real parts: the moto server for the ECR API
//! (CICACHE_TEST_MOTO_URL), the Debian distribution registry without and with htpasswd auth
//! (CICACHE_TEST_REGISTRY, CICACHE_TEST_AUTH_REGISTRY/USER/PASSWORD) and, with
//! CICACHE_TEST_DOCKERD=1, a dockerd of its own for real pushes and a real `docker login`.
//!
//! Images are seeded through the registries' own APIs (the library's `put_image`,
//! `push_blob` and `put_manifest`), with chosen push times, so that gc sees tags of several
//! ages; the dockerd test pushes with docker itself.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant, SystemTime};

use assert_cmd::Command;
use cicache_registry::oci::{MEDIA_OCI_MANIFEST, sha256_digest};
use cicache_registry::tags::STORE_ENTRY_ARTIFACT_TYPE;
use cicache_registry::{
    Credentials, EcrClient, ExplicitEndpoint, OciClient, OciOptions, Secret, Target,
};
use serde_json::{Value, json};

const ACCOUNT: &str = "123456789012";
const DAY: u64 = 86_400;

/// A service's variable, or `None` after printing why the test is skipped (a panic when
/// CICACHE_TEST_REQUIRE_SERVICES=1, as under test/run.sh).
fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var("CICACHE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{var} is not set; test/run.sh starts the service and sets it");
            }
            eprintln!("skipped: {var} is not set (test/run.sh starts the service)");
            None
        }
    }
}

/// A repository name no other test (or earlier run) uses.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("cicache-test/{prefix}-{}-{nanos}", std::process::id())
}

/// A working directory with an empty Docker config, so nothing of the machine's leaks in.
struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        let tmp = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(tmp.path().join("docker")).expect("docker config dir");
        // Empty AWS config files: nothing of the machine's, and no warning about missing ones.
        std::fs::write(tmp.path().join("no-aws-config"), "").expect("aws config");
        std::fs::write(tmp.path().join("no-aws-credentials"), "").expect("aws credentials");
        Dir { tmp }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn docker_config(&self) -> PathBuf {
        self.tmp.path().join("docker")
    }

    fn cicache(&self) -> Command {
        let mut c = Command::cargo_bin("cicache").expect("the cicache binary");
        c.current_dir(self.path())
            .env("DOCKER_CONFIG", self.docker_config())
            .env("HOME", self.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", self.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.path().join("no-aws-credentials"),
            )
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN");
        for (k, _) in std::env::vars() {
            if k.starts_with("CICACHE_") && !k.starts_with("CICACHE_TEST_") {
                c.env_remove(k);
            }
        }
        c
    }

    /// cicache with the moto server as AWS.
    fn cicache_moto(&self, moto: &str) -> Command {
        let mut c = self.cicache();
        c.env("AWS_ENDPOINT_URL", moto)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_SESSION_TOKEN", "testing")
            .env("AWS_REGION", "us-east-1");
        c
    }

    /// A recording stand-in for `docker` (named as such): it writes its arguments and its
    /// stdin to files and says "Login Succeeded". Used where the real docker cannot run the
    /// step here: an ECR login would contact amazonaws.com.
    fn fake_docker(&self) -> PathBuf {
        let path = self.path().join("fake-docker");
        let script = format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{dir}/docker-args'\ncat > '{dir}/docker-stdin'\necho 'Login Succeeded'\n",
            dir = self.path().display()
        );
        std::fs::write(&path, script).expect("write the docker stand-in");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the docker stand-in");
        path
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

    fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

fn run(mut c: Command, args: &[&str], stdin: Option<&str>) -> Run {
    c.args(args);
    if let Some(s) = stdin {
        c.write_stdin(s.to_string());
    }
    let out = c.output().expect("run cicache");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The deletions of a gc document without their ages (which move on between two runs).
fn plan_of(v: &Value) -> Value {
    let mut d = v["delete"].clone();
    for x in d.as_array_mut().expect("delete") {
        x.as_object_mut().expect("a deletion").remove("age_seconds");
    }
    d
}

fn tags_of(v: &Value, key: &str) -> Vec<String> {
    let mut t: Vec<String> = v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
        .iter()
        .flat_map(|d| d["tags"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect();
    t.sort();
    t
}

// ------------------------------------------------------------------------------------ ECR

fn ecr_image(name: &str) -> String {
    format!("{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/{name}")
}

fn ecr_client(moto: &str, name: &str) -> EcrClient {
    let target = Target::parse(&ecr_image(name)).expect("an ECR name");
    EcrClient::connect_to(
        &target,
        &ExplicitEndpoint {
            endpoint_url: moto.to_string(),
            access_key_id: "testing".into(),
            secret_access_key: Secret::new("testing"),
        },
    )
    .expect("connect to moto")
}

/// A docker image manifest whose layer digest is unique to `seed` (moto names images by
/// their layers).
fn fake_manifest(seed: &str) -> String {
    json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 1000,
            "digest": sha256_digest(format!("config {seed}").as_bytes())
        },
        "layers": [{
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "size": 5000,
            "digest": sha256_digest(format!("layer {seed}").as_bytes())
        }]
    })
    .to_string()
}

fn put(ecr: &EcrClient, name: &str, tag: &str, seed: &str) {
    ecr.put_image(
        name,
        (!tag.is_empty()).then_some(tag),
        &fake_manifest(seed),
        "application/vnd.docker.distribution.manifest.v2+json",
    )
    .expect("PutImage");
}

fn ecr_tags(ecr: &EcrClient, name: &str) -> Vec<String> {
    let mut t: Vec<String> = ecr
        .images(name)
        .expect("DescribeImages")
        .into_iter()
        .flat_map(|i| i.tags)
        .collect();
    t.sort();
    t
}

#[test]
fn ecr_ensure_creates_a_mutable_repository_once() {
    let Some(moto) = service("CICACHE_TEST_MOTO_URL") else {
        return;
    };
    let dir = Dir::new();
    let name = unique("ensure");
    let image = ecr_image(&name);
    let first = run(
        dir.cicache_moto(&moto),
        &["registry", "ensure", "--image", &image, "--json"],
        None,
    )
    .ok()
    .json();
    assert_eq!(first["repository"]["created"], true, "{first}");
    assert_eq!(first["repository"]["tag_mutability"], "MUTABLE");
    assert_eq!(first["cache_image"], image.as_str());
    let again = run(
        dir.cicache_moto(&moto),
        &["registry", "ensure", "--image", &image, "--json"],
        None,
    )
    .ok()
    .json();
    assert_eq!(again["repository"]["created"], false, "{again}");
    // It is really there, with mutable tags.
    let ecr = ecr_client(&moto, &name);
    let info = ecr.repository(&name).expect("describe").expect("exists");
    assert_eq!(info.tag_mutability.as_deref(), Some("MUTABLE"));
}

#[test]
fn ecr_immutable_tags_are_explained_and_cache_repo_fixes_them() {
    let Some(moto) = service("CICACHE_TEST_MOTO_URL") else {
        return;
    };
    let dir = Dir::new();
    let name = unique("immutable");
    let image = ecr_image(&name);
    let ecr = ecr_client(&moto, &name);
    ecr.create_repository_with(&name, true).expect("create");

    let refused = run(
        dir.cicache_moto(&moto),
        &["registry", "ensure", "--image", &image],
        None,
    );
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("immutable tags"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("--cache-repo"),
        "{}",
        refused.stderr
    );

    let status = run(
        dir.cicache_moto(&moto),
        &["registry", "status", "--image", &image, "--json"],
        None,
    )
    .ok();
    assert!(
        status.stderr.contains("immutable tags"),
        "{}",
        status.stderr
    );
    assert_eq!(status.json()["tag_mutability"], "IMMUTABLE");

    let fixed = run(
        dir.cicache_moto(&moto),
        &[
            "registry",
            "ensure",
            "--image",
            &image,
            "--cache-repo",
            "--lifecycle",
            "--json",
        ],
        None,
    )
    .ok()
    .json();
    let cache_name = format!("{name}-buildcache");
    assert_eq!(
        fixed["cache_image"],
        ecr_image(&cache_name).as_str(),
        "{fixed}"
    );
    assert_eq!(fixed["cache_repository"]["created"], true);
    assert_eq!(fixed["cache_repository"]["tag_mutability"], "MUTABLE");
    assert_eq!(fixed["lifecycle_applied"], true);
    let info = ecr
        .repository(&cache_name)
        .expect("describe")
        .expect("exists");
    assert_eq!(info.tag_mutability.as_deref(), Some("MUTABLE"));
    // The policy went to the cache repository, not the immutable one.
    assert!(ecr.lifecycle_policy(&cache_name).expect("get").is_some());
    assert!(ecr.lifecycle_policy(&name).expect("get").is_none());
}

#[test]
fn ecr_status_clear_and_gc_by_age_scope_and_pattern() {
    let Some(moto) = service("CICACHE_TEST_MOTO_URL") else {
        return;
    };
    let dir = Dir::new();
    let name = unique("gc");
    let image = ecr_image(&name);
    let ecr = ecr_client(&moto, &name);
    ecr.create_repository(&name).expect("create");

    // Old: pushed before the pause.
    put(&ecr, &name, "cache-old-a", "old-a");
    put(&ecr, &name, "cache-old-b", "old-b");
    put(&ecr, &name, "cache-kept", "kept");
    put(&ecr, &name, "v1.0", "app");
    put(&ecr, &name, "base-0abc", "base");
    put(&ecr, &name, "cache", "default-old");
    // An untagged image (what a moved tag leaves behind on ECR).
    put(&ecr, &name, "", "untagged");
    std::thread::sleep(Duration::from_secs(10));
    // Young: pushed just now; the two gc runs below must come within --max-age (7s).
    put(&ecr, &name, "cache-moved", "moved");
    put(&ecr, &name, "cache-young", "young");

    let gc_args = [
        "registry",
        "gc",
        "--image",
        &image,
        "--max-age",
        "7s",
        "--keep",
        "cache-kept",
        "--json",
    ];
    let mut dry_args = gc_args.to_vec();
    dry_args.push("--dry-run");
    let dry = run(dir.cicache_moto(&moto), &dry_args, None).ok().json();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        tags_of(&dry, "delete"),
        vec!["cache-old-a", "cache-old-b"],
        "{dry}"
    );
    // Untagged only with --untagged.
    assert!(
        dry["delete"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| !d["tags"].as_array().unwrap().is_empty())
    );
    let reasons: Vec<(String, String)> = dry["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["tag"].as_str().unwrap_or("(untagged)").to_string(),
                k["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for (tag, reason) in [
        ("cache", "default_cache"),
        ("cache-kept", "keep"),
        ("cache-young", "young"),
        ("cache-moved", "young"),
        ("v1.0", "not_cache_tag"),
        ("base-0abc", "not_cache_tag"),
        ("(untagged)", "untagged_not_requested"),
    ] {
        assert!(
            reasons.contains(&(tag.to_string(), reason.to_string())),
            "{tag} {reason} in {reasons:?}"
        );
    }
    // Nothing was deleted by the dry run.
    assert_eq!(ecr_tags(&ecr, &name).len(), 8);

    let done = run(dir.cicache_moto(&moto), &gc_args, None).ok().json();
    assert_eq!(done["dry_run"], false);
    assert_eq!(
        plan_of(&done),
        plan_of(&dry),
        "gc did what --dry-run showed"
    );
    assert_eq!(done["failures"], json!([]));
    assert_eq!(
        ecr_tags(&ecr, &name),
        vec![
            "base-0abc",
            "cache",
            "cache-kept",
            "cache-moved",
            "cache-young",
            "v1.0"
        ]
    );
    // status, after gc (kept out of the timed window above).
    let status = run(
        dir.cicache_moto(&moto),
        &["registry", "status", "--image", &image, "--json"],
        None,
    )
    .ok()
    .json();
    let rows = status["cache_tags"].as_array().expect("cache_tags");
    let listed: Vec<&str> = rows.iter().filter_map(|r| r["tag"].as_str()).collect();
    assert_eq!(
        listed,
        vec!["cache", "cache-kept", "cache-moved", "cache-young"],
        "{status}"
    );
    let young = rows
        .iter()
        .find(|r| r["tag"] == "cache-young")
        .expect("row");
    assert_eq!(young["scope"], "young");
    assert_eq!(rows[0]["scope"], Value::Null);
    assert!(young["pushed"].is_string());
    assert_eq!(young["size"], 1000);
    assert_eq!(status["other_tags"], 1);
    assert_eq!(status["base_tags"], 1);
    assert_eq!(status["untagged"], 1);
    let text = run(
        dir.cicache_moto(&moto),
        &["registry", "status", "--image", &image],
        None,
    )
    .ok()
    .stdout;
    assert!(
        text.contains("cache-young") && text.contains("(default)"),
        "{text}"
    );

    let untagged_before = ecr
        .images(&name)
        .unwrap()
        .iter()
        .filter(|i| i.tags.is_empty())
        .count();
    assert_eq!(untagged_before, 1);

    // --untagged: the old untagged image goes too, and still no tag outside the rules.
    // The young tags are kept by name here: this run may come after they passed --max-age.
    let mut untagged_args = gc_args.to_vec();
    untagged_args.extend(["--untagged", "--keep", "cache-young,cache-moved,cache-kept"]);
    let done = run(dir.cicache_moto(&moto), &untagged_args, None)
        .ok()
        .json();
    let deleted = done["delete"].as_array().unwrap();
    assert_eq!(deleted.len(), 1, "{done}");
    assert_eq!(deleted[0]["tags"], json!([]));
    assert!(
        ecr.images(&name)
            .unwrap()
            .iter()
            .all(|i| !i.tags.is_empty())
    );

    // clear --tag: just that one; clear: every cache tag, nothing else.
    run(
        dir.cicache_moto(&moto),
        &[
            "registry",
            "clear",
            "--image",
            &image,
            "--tag",
            "cache-young",
        ],
        None,
    )
    .ok();
    assert!(!ecr_tags(&ecr, &name).contains(&"cache-young".to_string()));
    let refused = run(
        dir.cicache_moto(&moto),
        &["registry", "clear", "--image", &image, "--tag", "v1.0"],
        None,
    );
    assert_eq!(refused.code, 2, "a usage error (issue 22)");
    assert!(
        refused.stderr.contains("not a cache tag"),
        "{}",
        refused.stderr
    );
    let cleared = run(
        dir.cicache_moto(&moto),
        &["registry", "clear", "--image", &image, "--json"],
        None,
    )
    .ok()
    .json();
    assert_eq!(
        tags_of(&cleared, "deleted"),
        vec!["cache", "cache-kept", "cache-moved"]
    );
    assert_eq!(ecr_tags(&ecr, &name), vec!["base-0abc", "v1.0"]);
}

#[test]
fn ecr_lifecycle_prints_and_applies_the_policy() {
    let Some(moto) = service("CICACHE_TEST_MOTO_URL") else {
        return;
    };
    let dir = Dir::new();
    let name = unique("lifecycle");
    let image = ecr_image(&name);
    let printed = run(
        dir.cicache_moto(&moto),
        &[
            "registry",
            "lifecycle",
            "--image",
            &image,
            "--untagged-days",
            "3",
            "--scope-days",
            "21",
        ],
        None,
    )
    .ok();
    let policy: Value = serde_json::from_str(&printed.stdout).expect("the policy is JSON");
    assert_eq!(policy["rules"][1]["selection"]["countNumber"], 21);
    assert_eq!(policy["rules"][2]["selection"]["countNumber"], 3);

    // --apply on a missing repository: a clear error.
    let missing = run(
        dir.cicache_moto(&moto),
        &["registry", "lifecycle", "--image", &image, "--apply"],
        None,
    );
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );
    assert!(
        missing.stderr.contains("registry ensure"),
        "{}",
        missing.stderr
    );

    let ecr = ecr_client(&moto, &name);
    ecr.create_repository(&name).expect("create");
    let applied = run(
        dir.cicache_moto(&moto),
        &[
            "registry",
            "lifecycle",
            "--image",
            &image,
            "--scope-days",
            "21",
            "--apply",
            "--json",
        ],
        None,
    )
    .ok()
    .json();
    assert_eq!(applied["applied"], true);
    let back = ecr.lifecycle_policy(&name).expect("get").expect("a policy");
    let back: Value = serde_json::from_str(&back).expect("JSON");
    assert_eq!(back, applied["policy"]);
    assert_eq!(back["rules"][1]["selection"]["countNumber"], 21);

    let zero = run(
        dir.cicache_moto(&moto),
        &[
            "registry",
            "lifecycle",
            "--image",
            &image,
            "--scope-days",
            "0",
        ],
        None,
    );
    assert_eq!(zero.code, 2, "a usage error (issue 22)");
    assert!(zero.stderr.contains("--scope-days"), "{}", zero.stderr);
}

#[test]
fn ecr_errors_name_the_repository_and_the_credentials() {
    let Some(moto) = service("CICACHE_TEST_MOTO_URL") else {
        return;
    };
    let dir = Dir::new();
    let image = ecr_image(&unique("missing"));
    let missing = run(
        dir.cicache_moto(&moto),
        &["registry", "status", "--image", &image],
        None,
    );
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );
    assert!(
        missing.stderr.contains("ensure --image"),
        "{}",
        missing.stderr
    );

    // No credentials anywhere (instance metadata is off in these tests).
    let mut none = dir.cicache();
    none.env("AWS_ENDPOINT_URL", &moto);
    let none = run(none, &["registry", "status", "--image", &image], None);
    assert_eq!(none.code, 1);
    assert!(none.stderr.contains("credentials"), "{}", none.stderr);
}

/// Bad credentials need a moto that checks them: a private server with auth switched on.
#[test]
fn ecr_bad_credentials_are_a_clear_error() {
    let Some(bin) = service("CICACHE_TEST_MOTO_BIN") else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let dir = Dir::new();
    let log = std::fs::File::create(dir.path().join("moto.log")).expect("log");
    let child = StdCommand::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", "0")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start a private moto server");
    let _guard = KillOnDrop(child);
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "private moto did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    let image = ecr_image(&unique("badcreds"));
    let bad = run(
        dir.cicache_moto(&url),
        &["registry", "status", "--image", &image],
        None,
    );
    assert_eq!(bad.code, 1, "{}", bad.stderr);
    assert!(bad.stderr.contains("not authorized"), "{}", bad.stderr);
    assert!(bad.stderr.contains("AWS_ACCESS_KEY_ID"), "{}", bad.stderr);
}

/// Standard base64 with padding (what the Docker config's `auth` holds).
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ecr_login_pipes_the_token_to_docker_and_prints_no_secret() {
    let Some(moto) = service("CICACHE_TEST_MOTO_URL") else {
        return;
    };
    let dir = Dir::new();
    let name = unique("login");
    let image = ecr_image(&name);
    let docker = dir.fake_docker();
    let (_, creds) = ecr_client(&moto, &name)
        .docker_credentials()
        .expect("token");
    let password = creds.password.expose().to_string();
    assert!(password.len() >= 8, "a token worth hiding");
    let out = run(
        dir.cicache_moto(&moto),
        &[
            "registry",
            "login",
            "--image",
            &image,
            "--docker",
            docker.to_str().unwrap(),
            "-vv",
            "--json",
        ],
        None,
    )
    .ok();
    let v = out.json();
    assert_eq!(v["username"], "AWS");
    assert_eq!(
        v["registry"],
        format!("{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com")
    );
    let args = std::fs::read_to_string(dir.path().join("docker-args")).expect("docker ran");
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        vec![
            "login",
            "--username",
            "AWS",
            "--password-stdin",
            &format!("{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com")
        ]
    );
    let stdin = std::fs::read_to_string(dir.path().join("docker-stdin")).expect("stdin");
    assert_eq!(stdin, password, "the token went to docker on stdin");
    assert!(!args.contains(&password));
    assert!(!out.stdout.contains(&password), "{}", out.stdout);
    assert!(!out.stderr.contains(&password), "{}", out.stderr);
}

// ------------------------------------------------------------------------------------ OCI

fn oci(registry: &str, name: &str, creds: Option<Credentials>) -> OciClient {
    let target = Target::parse(&format!("{registry}/{name}")).expect("a registry name");
    OciClient::new(&target, creds, &OciOptions::default())
}

/// Pushes a one-layer image (or, with `artifact`, an artifact of that type) under `tag`,
/// marked as created `age_days` ago. Returns its digest.
fn push(
    client: &OciClient,
    tag: &str,
    seed: &str,
    age_days: u64,
    artifact: Option<&str>,
) -> String {
    let created = SystemTime::now() - Duration::from_secs(age_days * DAY);
    let created = humantime::format_rfc3339_seconds(created).to_string();
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Labels": {"seed": seed}}
    })
    .to_string();
    let layer = format!("layer bytes of {seed}").into_bytes();
    let config_digest = client
        .push_blob(config.as_bytes())
        .expect("push the config");
    let layer_digest = client.push_blob(&layer).expect("push the layer");
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len()
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len()
        }],
        "annotations": {"org.opencontainers.image.created": created}
    });
    if let Some(a) = artifact {
        manifest["artifactType"] = json!(a);
    }
    client
        .put_manifest(tag, MEDIA_OCI_MANIFEST, manifest.to_string().as_bytes())
        .expect("put the manifest")
}

#[test]
fn oci_status_gc_and_clear() {
    let Some(registry) = service("CICACHE_TEST_REGISTRY") else {
        return;
    };
    let dir = Dir::new();
    let name = unique("oci-gc");
    let image = format!("{registry}/{name}");
    let client = oci(&registry, &name, None);

    let default = push(&client, "cache", "default", 30, None);
    // `cache-shared` sits on the same manifest as `cache`: deleting it would delete `cache`.
    client
        .put_manifest(
            "cache-shared",
            MEDIA_OCI_MANIFEST,
            &client.manifest(&default).unwrap().unwrap().raw,
        )
        .expect("second tag");
    push(&client, "cache-old", "old", 30, None);
    push(&client, "cache-kept", "kept", 30, None);
    push(&client, "cache-young", "young", 1, None);
    push(&client, "v1", "app", 30, None);
    push(&client, "base-0abc", "base", 30, None);
    // A store entry under a name that looks like a cache tag is still a store entry.
    push(
        &client,
        "cache-entry",
        "entry",
        30,
        Some(STORE_ENTRY_ARTIFACT_TYPE),
    );

    let status = run(
        dir.cicache(),
        &["registry", "status", "--image", &image, "--json"],
        None,
    )
    .ok()
    .json();
    let listed: Vec<&str> = status["cache_tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["tag"].as_str())
        .collect();
    assert_eq!(
        listed,
        vec![
            "cache",
            "cache-kept",
            "cache-old",
            "cache-shared",
            "cache-young"
        ],
        "{status}"
    );
    assert_eq!(status["store_entries"], 1);
    assert_eq!(status["other_tags"], 1);
    assert_eq!(status["base_tags"], 1);
    assert_eq!(status["untagged"], Value::Null);
    let old = status["cache_tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["tag"] == "cache-old")
        .unwrap();
    let age = old["age_seconds"].as_u64().expect("an age");
    assert!((29 * DAY..31 * DAY).contains(&age), "{old}");
    assert!(old["size"].as_u64().unwrap() > 0);

    let gc = [
        "registry",
        "gc",
        "--image",
        &image,
        "--max-age",
        "14d",
        "--keep",
        "cache-kept",
        "--json",
    ];
    let mut dry_args = gc.to_vec();
    dry_args.extend(["--dry-run", "--untagged"]);
    let dry = run(dir.cicache(), &dry_args, None).ok();
    assert!(
        dry.stderr.contains("cannot list untagged"),
        "{}",
        dry.stderr
    );
    let dry = dry.json();
    assert_eq!(tags_of(&dry, "delete"), vec!["cache-old"], "{dry}");
    let kept: Vec<(String, String)> = dry["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["tag"].as_str().unwrap_or("").to_string(),
                k["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for (tag, reason) in [
        ("cache", "default_cache"),
        ("cache-shared", "shares_manifest"),
        ("cache-kept", "keep"),
        ("cache-young", "young"),
        ("v1", "not_cache_tag"),
        ("base-0abc", "not_cache_tag"),
        ("cache-entry", "store_entry"),
    ] {
        assert!(
            kept.contains(&(tag.to_string(), reason.to_string())),
            "{tag} {reason} in {kept:?}"
        );
    }
    let text = run(
        dir.cicache(),
        &[
            "registry",
            "gc",
            "--image",
            &image,
            "--keep",
            "cache-kept",
            "--dry-run",
        ],
        None,
    )
    .ok()
    .stdout;
    assert!(text.contains("would delete cache-old"), "{text}");
    assert_eq!(
        client.tags().unwrap().len(),
        8,
        "the dry runs deleted nothing"
    );

    let done = run(dir.cicache(), &gc, None).ok().json();
    assert_eq!(
        plan_of(&done),
        plan_of(&dry),
        "gc did what --dry-run showed"
    );
    assert_eq!(
        client.tags().unwrap(),
        vec![
            "base-0abc",
            "cache",
            "cache-entry",
            "cache-kept",
            "cache-shared",
            "cache-young",
            "v1"
        ]
    );

    run(
        dir.cicache(),
        &[
            "registry",
            "clear",
            "--image",
            &image,
            "--tag",
            "cache-young",
        ],
        None,
    )
    .ok();
    assert!(!client.tags().unwrap().contains(&"cache-young".to_string()));
    let cleared = run(
        dir.cicache(),
        &["registry", "clear", "--image", &image, "--json"],
        None,
    )
    .ok()
    .json();
    assert_eq!(
        tags_of(&cleared, "deleted"),
        vec!["cache", "cache-kept", "cache-shared"]
    );
    assert_eq!(
        client.tags().unwrap(),
        vec!["base-0abc", "cache-entry", "v1"]
    );
}

#[test]
fn oci_auth_registry_credentials_and_login() {
    let (Some(registry), Some(user), Some(password)) = (
        service("CICACHE_TEST_AUTH_REGISTRY"),
        service("CICACHE_TEST_AUTH_USER"),
        service("CICACHE_TEST_AUTH_PASSWORD"),
    ) else {
        return;
    };
    let dir = Dir::new();
    let name = unique("oci-auth");
    let image = format!("{registry}/{name}");
    let creds = Credentials {
        username: user.clone(),
        password: Secret::new(password.clone()),
        source: "test".into(),
    };
    push(
        &oci(&registry, &name, Some(creds)),
        "cache",
        "auth",
        0,
        None,
    );

    // No credentials: says how to give them.
    let none = run(
        dir.cicache(),
        &["registry", "status", "--image", &image],
        None,
    );
    assert_eq!(none.code, 1);
    assert!(none.stderr.contains("not authorized"), "{}", none.stderr);
    assert!(none.stderr.contains("--password-stdin"), "{}", none.stderr);

    // A wrong password: named as such, and docker is never asked to log in.
    let docker = dir.fake_docker();
    let wrong = run(
        dir.cicache(),
        &[
            "registry",
            "login",
            "--image",
            &image,
            "--username",
            &user,
            "--password-stdin",
            "--docker",
            docker.to_str().unwrap(),
        ],
        Some("not-the-password\n"),
    );
    assert_eq!(wrong.code, 1);
    assert!(
        wrong.stderr.contains("check the username"),
        "{}",
        wrong.stderr
    );
    assert!(!dir.path().join("docker-args").exists());

    // The password on stdin: status works, and login hands it to docker on stdin only.
    let status = run(
        dir.cicache(),
        &[
            "registry",
            "status",
            "--image",
            &image,
            "--username",
            &user,
            "--password-stdin",
            "--json",
        ],
        Some(&format!("{password}\n")),
    )
    .ok()
    .json();
    assert_eq!(status["cache_tags"][0]["tag"], "cache");
    let login = run(
        dir.cicache(),
        &[
            "registry",
            "login",
            "--image",
            &image,
            "--username",
            &user,
            "--password-stdin",
            "--docker",
            docker.to_str().unwrap(),
            "-vv",
        ],
        Some(&password),
    )
    .ok();
    let args = std::fs::read_to_string(dir.path().join("docker-args")).expect("docker ran");
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        vec!["login", "--username", &user, "--password-stdin", &registry]
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("docker-stdin")).unwrap(),
        password
    );
    for text in [&login.stdout, &login.stderr, &status.to_string(), &args] {
        assert!(!text.contains(&password), "the password leaked: {text}");
    }

    // Credentials from the Docker config, as `docker login` leaves them.
    let auth = base64(format!("{user}:{password}").as_bytes());
    std::fs::write(
        dir.docker_config().join("config.json"),
        json!({"auths": {registry.clone(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let from_config = run(
        dir.cicache(),
        &["registry", "status", "--image", &image, "--json"],
        None,
    )
    .ok();
    assert_eq!(from_config.json()["cache_tags"][0]["tag"], "cache");
    assert!(!from_config.stdout.contains(&password));
    assert!(!from_config.stderr.contains(&password));
}

#[test]
fn usage_errors_are_clear() {
    let dir = Dir::new();
    let no_image = run(dir.cicache(), &["registry", "status"], None);
    assert_eq!(no_image.code, 2, "a usage error (issue 22)");
    assert!(no_image.stderr.contains("--image"), "{}", no_image.stderr);
    let tagged = run(
        dir.cicache(),
        &["registry", "status", "--image", "127.0.0.1:1/app:cache"],
        None,
    );
    assert_eq!(tagged.code, 2);
    assert!(
        tagged.stderr.contains("without the tag"),
        "{}",
        tagged.stderr
    );
    let user_only = run(
        dir.cicache(),
        &[
            "registry",
            "status",
            "--image",
            "127.0.0.1:1/app",
            "--username",
            "u",
        ],
        None,
    );
    assert_eq!(user_only.code, 2);
    assert!(
        user_only.stderr.contains("--password-stdin"),
        "{}",
        user_only.stderr
    );
    let empty = run(
        dir.cicache(),
        &[
            "registry",
            "status",
            "--image",
            "127.0.0.1:1/app",
            "--username",
            "u",
            "--password-stdin",
        ],
        Some(""),
    );
    assert!(empty.stderr.contains("stdin was empty"), "{}", empty.stderr);
    let lifecycle_oci = run(
        dir.cicache(),
        &[
            "registry",
            "lifecycle",
            "--image",
            "127.0.0.1:1/app",
            "--apply",
        ],
        None,
    );
    assert_eq!(lifecycle_oci.code, 2, "a usage error (issue 22)");
    assert!(
        lifecycle_oci.stderr.contains("ECR feature"),
        "{}",
        lifecycle_oci.stderr
    );
    // Flag variables take 1/yes as well as true.
    let mut from_env = dir.cicache();
    from_env
        .env("CICACHE_IMAGE", "127.0.0.1:1/app")
        .env("CICACHE_REGISTRY_APPLY", "1");
    let from_env = run(from_env, &["registry", "lifecycle"], None);
    assert_eq!(from_env.code, 2, "a usage error (issue 22)");
    assert!(
        from_env.stderr.contains("ECR feature"),
        "{}",
        from_env.stderr
    );
    // The image from cicache.yml.
    std::fs::write(
        dir.path().join("cicache.yml"),
        "registry:\n  image: 127.0.0.1:1/from-config\n  scope_days: 5\n",
    )
    .unwrap();
    let from_config = run(dir.cicache(), &["registry", "lifecycle", "--json"], None)
        .ok()
        .json();
    assert_eq!(from_config["repository"], "from-config");
    assert_eq!(
        from_config["policy"]["rules"][1]["selection"]["countNumber"],
        5
    );
    std::fs::write(dir.path().join("cicache.yml"), "registry:\n  imag: x\n").unwrap();
    let bad = run(dir.cicache(), &["registry", "lifecycle"], None);
    assert_eq!(bad.code, 2, "a configuration error (issue 22)");
    assert!(bad.stderr.contains("registry:"), "{}", bad.stderr);
}

// -------------------------------------------------------------------------------- dockerd

/// A dockerd of the test's own: its own data root, socket and no bridge (nothing here runs
/// a container: import, tag, push and login only).
struct Dockerd {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Dockerd {
    fn start() -> Option<Dockerd> {
        if std::env::var("CICACHE_TEST_DOCKERD").as_deref() != Ok("1") {
            if std::env::var("CICACHE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("CICACHE_TEST_DOCKERD is not 1; test/run.sh sets it where dockerd can run");
            }
            eprintln!("skipped: CICACHE_TEST_DOCKERD is not 1 (tests may not start dockerd)");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("cicache-dockerd")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let log = std::fs::File::create(dir.path().join("dockerd.log")).expect("log");
        let sock = dir.path().join("d.sock");
        let child = StdCommand::new("dockerd")
            .arg("--bridge")
            .arg("none")
            .arg("--iptables=false")
            .arg("--ip-masq=false")
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("d.pid"))
            .arg("--host")
            .arg(format!("unix://{}", sock.display()))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let d = Dockerd {
            child: Some(child),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let ok = d
                .docker()
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(d.dir.path().join("dockerd.log")).unwrap_or_default();
                panic!("dockerd did not start:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Some(d)
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("d.sock").display())
    }

    fn docker(&self) -> StdCommand {
        let mut c = StdCommand::new("/usr/bin/docker");
        c.env("DOCKER_HOST", self.host());
        c
    }

    fn must(&self, mut c: StdCommand, what: &str) -> String {
        let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            out.status.success(),
            "{what}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A one-megabyte image from the host's static busybox (no image can be pulled here), or
    /// the busybox.tar that test/lib/docker.sh saves in CICACHE_TEST_IMAGES.
    fn busybox(&self, name: &str) {
        if !Path::new("/bin/busybox").exists()
            && let Ok(images) = std::env::var("CICACHE_TEST_IMAGES")
        {
            let mut l = self.docker();
            l.arg("load")
                .arg("-i")
                .arg(Path::new(&images).join("busybox.tar"));
            let out = self.must(l, "docker load busybox.tar");
            let loaded = out
                .lines()
                .find_map(|l| l.strip_prefix("Loaded image: "))
                .unwrap_or_else(|| panic!("docker load named no image: {out}"))
                .trim()
                .to_string();
            let mut t = self.docker();
            t.args(["tag", &loaded, name]);
            self.must(t, "docker tag");
            return;
        }
        let root = self.dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("bin")).expect("rootfs");
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))
            .expect("/bin/busybox (Debian busybox-static)");
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).expect("symlink");
        let tar = self.dir.path().join("rootfs.tar");
        let mut t = StdCommand::new("tar");
        t.arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".");
        self.must(t, "tar the rootfs");
        let mut i = self.docker();
        i.arg("import").arg(&tar).arg(name);
        self.must(i, "docker import");
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM lets dockerd stop its containerd; then make sure it is gone.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn docker_pushed_cache_tags_and_a_real_docker_login() {
    let (Some(registry), Some(auth_registry), Some(user), Some(password)) = (
        service("CICACHE_TEST_REGISTRY"),
        service("CICACHE_TEST_AUTH_REGISTRY"),
        service("CICACHE_TEST_AUTH_USER"),
        service("CICACHE_TEST_AUTH_PASSWORD"),
    ) else {
        return;
    };
    let Some(dockerd) = Dockerd::start() else {
        return;
    };
    let dir = Dir::new();
    dockerd.busybox("cicache-test/busybox:latest");

    // Pushed by docker to the open registry: `cache` and a scope tag on the same image.
    let name = unique("docker");
    let image = format!("{registry}/{name}");
    for tag in ["cache", "cache-feature"] {
        let mut t = dockerd.docker();
        t.args([
            "tag",
            "cicache-test/busybox:latest",
            &format!("{image}:{tag}"),
        ]);
        dockerd.must(t, "docker tag");
        let mut p = dockerd.docker();
        p.args(["push", &format!("{image}:{tag}")]);
        dockerd.must(p, "docker push");
    }
    let status = run(
        dir.cicache(),
        &["registry", "status", "--image", &image, "--json"],
        None,
    )
    .ok()
    .json();
    let rows = status["cache_tags"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{status}");
    assert_eq!(rows[0]["digest"], rows[1]["digest"]);
    assert!(rows[0]["size"].as_u64().unwrap() > 100_000, "{status}");
    // Pushed just now: the registry's own record says so.
    assert!(rows[0]["age_seconds"].as_u64().unwrap() < 3600, "{status}");
    let gc = run(
        dir.cicache(),
        &["registry", "gc", "--image", &image, "--json"],
        None,
    )
    .ok()
    .json();
    assert_eq!(gc["delete"], json!([]), "young tags stay");
    let cleared = run(
        dir.cicache(),
        &["registry", "clear", "--image", &image, "--json"],
        None,
    )
    .ok()
    .json();
    assert_eq!(tags_of(&cleared, "deleted"), vec!["cache", "cache-feature"]);
    let after = run(
        dir.cicache(),
        &["registry", "status", "--image", &image, "--json"],
        None,
    )
    .ok()
    .json();
    assert_eq!(after["cache_tags"], json!([]));

    // A real `docker login` to the htpasswd registry through cicache, then a push with it.
    let auth_image = format!("{auth_registry}/{name}");
    let mut login = dir.cicache();
    login.env("DOCKER_HOST", dockerd.host());
    let out = run(
        login,
        &[
            "registry",
            "login",
            "--image",
            &auth_image,
            "--username",
            &user,
            "--password-stdin",
            "--docker",
            "/usr/bin/docker",
        ],
        Some(&password),
    )
    .ok();
    assert!(!out.stdout.contains(&password) && !out.stderr.contains(&password));
    let mut t = dockerd.docker();
    t.env("DOCKER_CONFIG", dir.docker_config()).args([
        "tag",
        "cicache-test/busybox:latest",
        &format!("{auth_image}:cache"),
    ]);
    dockerd.must(t, "docker tag");
    let mut p = dockerd.docker();
    p.env("DOCKER_CONFIG", dir.docker_config())
        .args(["push", &format!("{auth_image}:cache")]);
    dockerd.must(p, "docker push with the login cicache made");
    // cicache reads the same login from the Docker config.
    let status = run(
        dir.cicache(),
        &["registry", "status", "--image", &auth_image, "--json"],
        None,
    )
    .ok()
    .json();
    assert_eq!(status["cache_tags"][0]["tag"], "cache");
}

#[test]
fn oci_ensure_says_whether_the_repository_exists() {
    let Some(registry) = service("CICACHE_TEST_REGISTRY") else {
        return;
    };
    let dir = Dir::new();
    let name = unique("oci-ensure");
    let image = format!("{registry}/{name}");
    let before = run(
        dir.cicache(),
        &["registry", "ensure", "--image", &image, "--json"],
        None,
    )
    .ok();
    assert!(before.stderr.contains("first push"), "{}", before.stderr);
    let before = before.json();
    assert_eq!(before["kind"], "oci");
    assert_eq!(before["repository"]["exists"], false);
    assert_eq!(before["repository"]["created"], false);
    push(&oci(&registry, &name, None), "cache", "ensure", 0, None);
    let after = run(
        dir.cicache(),
        &[
            "registry",
            "ensure",
            "--image",
            &image,
            "--cache-repo",
            "--json",
        ],
        None,
    )
    .ok()
    .json();
    assert_eq!(after["repository"]["exists"], true);
    assert_eq!(after["cache_repository"]["exists"], false);
    assert_eq!(after["cache_image"], format!("{image}-buildcache"));
    let lifecycle = run(
        dir.cicache(),
        &["registry", "ensure", "--image", &image, "--lifecycle"],
        None,
    );
    assert_eq!(lifecycle.code, 2, "a usage error (issue 22)");
    assert!(
        lifecycle.stderr.contains("ECR feature"),
        "{}",
        lifecycle.stderr
    );
}

/// `gc --keep-bases` on ECR reads image configs from the registry host itself, which
/// `AWS_ENDPOINT_URL` does not redirect: with the ECR API on moto, the bases cannot be read,
/// so gc warns, names why, and deletes no base tag (the cache tags are still collected).
#[test]
fn ecr_gc_keep_bases_without_image_configs_keeps_every_base() {
    let Some(moto) = service("CICACHE_TEST_MOTO_URL") else {
        return;
    };
    let dir = Dir::new();
    let name = unique("bases");
    let image = ecr_image(&name);
    let ecr = ecr_client(&moto, &name);
    ecr.create_repository(&name).expect("create");
    put(&ecr, &name, "base-0001", "base-1");
    put(&ecr, &name, "base-0002", "base-2");
    put(&ecr, &name, "cache-old", "old");
    std::thread::sleep(Duration::from_secs(3));
    let args = [
        "registry",
        "gc",
        "--image",
        &image,
        "--max-age",
        "2s",
        "--keep-bases",
        "0",
        "--dry-run",
        "--json",
    ];
    let r = run(dir.cicache_moto(&moto), &args, None).ok();
    assert!(
        r.stderr.contains("--keep-bases: cannot read which bases")
            && r.stderr
                .contains("AWS_ENDPOINT_URL points the ECR API elsewhere"),
        "{}",
        r.stderr
    );
    let v = r.json();
    assert_eq!(v["keep_bases"], Value::Null, "{v}");
    assert_eq!(tags_of(&v, "delete"), vec!["cache-old"], "{v}");
}
