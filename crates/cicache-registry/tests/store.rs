//! The `oci://` store backend against the Debian distribution registry started by
//! test/lib/registry.sh (CICACHE_TEST_REGISTRY open, CICACHE_TEST_AUTH_REGISTRY with htpasswd;
//! CICACHE_TEST_REGISTRY_STORAGE is the open registry's filesystem storage).
//!
//! Without those variables each test prints "skipped: ..." and passes, unless
//! CICACHE_TEST_REQUIRE_SERVICES=1 (test/run.sh).

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use cicache_registry::store::{OciBackend, TAG_PREFIX};
use cicache_registry::{Credentials, OciClient, OciOptions, Secret, Target};
use cicache_store::backend::contract::check_backend;
use cicache_store::backend::{Backend, OpenOptions};
use cicache_store::{NoProgress, RestoreRequest, SaveRequest, SaveStatus, Store};

fn var(name: &str, test: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var("CICACHE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{test}: {name} is not set; test/run.sh starts the registry");
            }
            eprintln!("skipped: {test}: {name} is not set (test/lib/registry.sh)");
            None
        }
    }
}

fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("cicache-store/{tag}-{}-{nanos}", std::process::id())
}

fn auth_creds() -> Option<Credentials> {
    Some(Credentials {
        username: std::env::var("CICACHE_TEST_AUTH_USER").ok()?,
        password: Secret::new(std::env::var("CICACHE_TEST_AUTH_PASSWORD").ok()?),
        source: "CICACHE_TEST_AUTH_PASSWORD".into(),
    })
}

fn open(spec: &str, creds: Option<Credentials>) -> Arc<OciBackend> {
    Arc::new(
        OciBackend::open(
            spec,
            creds,
            &OpenOptions {
                timeout: Some(Duration::from_secs(20)),
            },
        )
        .unwrap_or_else(|e| panic!("open oci://{spec}: {e}")),
    )
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    cicache_store::backend::contract::pattern(len, seed)
}

/// Seeds unique to this run and test: the registry keeps blobs across repositories and runs
/// (an upload of a blob it already has keeps the stored file, so a blob corrupted by an
/// earlier run would otherwise be corrupted back).
fn run_seed(test: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (nanos ^ ((std::process::id() as u64) << 32)).wrapping_mul(31) + test * 1_000_003
}

/// A tree shaped like a pip cache: wheels (large, incompressible), small http-cache files,
/// a compressible large file, a symlink, an empty dir.
fn pip_tree(dir: &Path, wheels: usize, seed: u64) {
    fs::create_dir_all(dir.join("wheels/ab/cd")).unwrap();
    fs::create_dir_all(dir.join("http-v2/a/b")).unwrap();
    fs::create_dir_all(dir.join("empty")).unwrap();
    for i in 0..wheels {
        fs::write(
            dir.join(format!("wheels/ab/cd/pkg{i}-1.0-py3-none-any.whl")),
            noise(300_000 + i * 1000, seed + i as u64),
        )
        .unwrap();
    }
    for i in 0..20 {
        fs::write(
            dir.join(format!("http-v2/a/b/{i:02}.body")),
            format!("header {i}\n").repeat(10),
        )
        .unwrap();
    }
    fs::write(dir.join("selfcheck.json"), "x".repeat(400_000)).unwrap();
    std::os::unix::fs::symlink("selfcheck.json", dir.join("link")).unwrap();
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                out.push((rel + "/", Vec::new()));
                stack.push(p);
            } else if ft.is_symlink() {
                out.push((
                    rel,
                    fs::read_link(&p)
                        .unwrap()
                        .display()
                        .to_string()
                        .into_bytes(),
                ));
            } else {
                out.push((rel, fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Blobs linked into a repository in the registry's filesystem storage (each upload to the
/// repository links one; the registry keeps them until its garbage collection).
fn stored_blobs(storage: &Path, repo: &str) -> usize {
    let root = storage
        .join("docker/registry/v2/repositories")
        .join(repo)
        .join("_layers/sha256");
    let Ok(dirs) = fs::read_dir(&root) else {
        return 0;
    };
    dirs.flatten()
        .filter(|d| d.path().join("link").is_file())
        .count()
}

fn blob_data_path(storage: &Path, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

fn save(store: &Store, scope: &str, key: &str, dir: &Path) -> cicache_store::SaveOutcome {
    store
        .save(
            &SaveRequest {
                scope,
                key,
                path: dir,
                update: false,
                if_changed: false,
                excludes: &[],
            },
            &NoProgress,
        )
        .unwrap_or_else(|e| panic!("save {scope}/{key}: {e}"))
}

fn restore(store: &Store, scope: &str, key: &str, dir: &Path) -> cicache_store::RestoreOutcome {
    store
        .restore(
            &RestoreRequest {
                scope,
                key,
                restore_keys: &[],
                fallback_scopes: &[],
                path: dir,
                lookup_only: false,
            },
            &NoProgress,
        )
        .unwrap_or_else(|e| panic!("restore {scope}/{key}: {e}"))
}

#[test]
fn the_backend_meets_the_contract_with_htpasswd_auth() {
    let test = "the_backend_meets_the_contract_with_htpasswd_auth";
    let Some(reg) = var("CICACHE_TEST_AUTH_REGISTRY", test) else {
        return;
    };
    let b = open(&format!("{reg}/{}", unique("contract")), auth_creds());
    check_backend(b.as_ref());
}

#[test]
fn wrong_credentials_are_an_error_that_says_what_to_do() {
    let test = "wrong_credentials_are_an_error_that_says_what_to_do";
    let Some(reg) = var("CICACHE_TEST_AUTH_REGISTRY", test) else {
        return;
    };
    let creds = Credentials {
        username: "cicache".into(),
        password: Secret::new("not-the-password"),
        source: "a test".into(),
    };
    let b = open(&format!("{reg}/{}", unique("badauth")), Some(creds));
    let e = b
        .get("cicache-v1/refs/main/k")
        .err()
        .expect("an error")
        .to_string();
    assert!(e.contains("not authorized"), "{e}");
    assert!(e.contains("check the username"), "{e}");
    assert!(!e.contains("not-the-password"), "{e}");
}

fn open_registry(test: &str) -> Option<(String, PathBuf)> {
    let reg = var("CICACHE_TEST_REGISTRY", test)?;
    let storage = var("CICACHE_TEST_REGISTRY_STORAGE", test)?;
    Some((reg, PathBuf::from(storage)))
}

#[test]
fn a_save_reusing_most_blobs_uploads_only_the_new_ones() {
    let test = "a_save_reusing_most_blobs_uploads_only_the_new_ones";
    let Some((reg, storage)) = open_registry(test) else {
        return;
    };
    let repo = unique("reuse");
    let spec = format!("{reg}/{repo}");
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    pip_tree(&cache, 10, run_seed(1));

    let first = open(&spec, None);
    let store = Store::new(first.clone());
    let before = stored_blobs(&storage, &repo);
    let out = save(&store, "main", "pip-1", &cache);
    assert_eq!(out.status, SaveStatus::Saved);
    let c = first.counters();
    // 10 wheels + selfcheck.json + the manifest tarball (+ the OCI empty blob, once).
    let uploads_1 = c.blob_uploads.load(Ordering::Relaxed);
    assert!(uploads_1 >= 12, "first save uploaded {uploads_1} blobs");
    let puts_1 = c.manifest_puts.load(Ordering::Relaxed);
    assert_eq!(
        stored_blobs(&storage, &repo) - before,
        uploads_1 as usize,
        "the registry stores what the backend says it uploaded"
    );

    // One new wheel, one changed small file; another process (a fresh backend).
    fs::write(
        cache.join("wheels/ab/cd/new-2.0-py3-none-any.whl"),
        noise(500_000, run_seed(4)),
    )
    .unwrap();
    fs::write(cache.join("http-v2/a/b/00.body"), "changed").unwrap();
    let second = open(&spec, None);
    let store2 = Store::new(second.clone());
    let before = stored_blobs(&storage, &repo);
    let out = save(&store2, "main", "pip-2", &cache);
    assert_eq!(out.status, SaveStatus::Saved);
    let c = second.counters();
    let uploads_2 = c.blob_uploads.load(Ordering::Relaxed);
    let puts_2 = c.manifest_puts.load(Ordering::Relaxed);
    let new_in_registry = stored_blobs(&storage, &repo) - before;
    // What the second entry has that the first has not, from the entries as any registry
    // client reads them: the new wheel, the manifest tarball, and whatever holds the changed
    // small file.
    let target = Target::parse(&spec).unwrap();
    let client = OciClient::new(&target, None, &OciOptions::default());
    let layers = |key: &str| -> std::collections::BTreeSet<String> {
        let m = client
            .manifest(&cicache_registry::store::tag_for(&format!(
                "cicache-v1/refs/main/{key}"
            )))
            .unwrap()
            .expect("entry");
        m.body["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    let (l1, l2) = (layers("pip-1"), layers("pip-2"));
    let new_layers = l2.difference(&l1).count() as u64;
    assert!(
        new_layers <= 4 && new_layers * 3 < l2.len() as u64,
        "{new_layers} of {} layers are new",
        l2.len()
    );
    assert_eq!(
        uploads_2, new_layers,
        "only the entry's new objects are uploaded"
    );
    assert_eq!(
        new_in_registry as u64, new_layers,
        "the registry received the entry's new objects only"
    );
    eprintln!(
        "first save: {uploads_1} blob uploads, {puts_1} manifests; second: {uploads_2} blob uploads ({} skipped after HEAD), {puts_2} manifests, {new_in_registry} new blobs in the registry",
        c.blobs_present.load(Ordering::Relaxed)
    );

    // A third process restores the second entry byte for byte.
    let third = Store::new(open(&spec, None));
    let out = restore(&third, "main", "pip-2", &tmp.path().join("restored"));
    assert!(out.hit, "{:?}", out.warnings);
    assert_eq!(listing(&cache), listing(&tmp.path().join("restored")));
}

/// Flips a byte in the middle of the registry's file of one wheel blob of the repository's
/// entry (the entry's manifest read as any registry client would); that blob's layer.
fn corrupt_a_wheel_blob(spec: &str, storage: &Path) -> serde_json::Value {
    let target = Target::parse(spec).unwrap();
    let client = OciClient::new(&target, None, &OciOptions::default());
    let tags = client.tags().unwrap();
    let entry_tag = tags
        .iter()
        .find(|t| t.starts_with("cicache.cicache-v1.refs."))
        .expect("an entry tag");
    let m = client.manifest(entry_tag).unwrap().expect("entry manifest");
    let layer = m.body["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| {
            l["annotations"]["vnd.cicache.name"]
                .as_str()
                .is_some_and(|n| n.contains("/blobs/"))
                && l["size"].as_u64().unwrap_or(0) > 250_000
        })
        .expect("a wheel blob layer")
        .clone();
    let data = blob_data_path(storage, layer["digest"].as_str().unwrap());
    let mut bytes = fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&data, &bytes).unwrap();
    layer
}

#[test]
fn a_corrupted_blob_in_the_registry_is_a_miss_with_a_warning() {
    let test = "a_corrupted_blob_in_the_registry_is_a_miss_with_a_warning";
    let Some((reg, storage)) = open_registry(test) else {
        return;
    };
    let repo = unique("corrupt");
    let spec = format!("{reg}/{repo}");
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    pip_tree(&cache, 3, run_seed(2));
    let store = Store::new(open(&spec, None));
    save(&store, "main", "pip", &cache);

    let layer = corrupt_a_wheel_blob(&spec, &storage);

    let fresh = Store::new(open(&spec, None));
    let target_dir = tmp.path().join("restored");
    fs::create_dir_all(&target_dir).unwrap();
    fs::write(target_dir.join("keep"), "previous").unwrap();
    let out = restore(&fresh, "main", "pip", &target_dir);
    assert!(
        !out.hit,
        "a corrupted entry must be a miss ({} changed): {out:?}",
        layer["annotations"]["vnd.cicache.name"]
    );
    assert!(
        out.warnings.iter().any(|w| w.contains("damaged")),
        "{:?}",
        out.warnings
    );
    assert_eq!(
        fs::read_to_string(target_dir.join("keep")).unwrap(),
        "previous",
        "the target is untouched"
    );
    // The restore that found the damage removed the entry (issue 21: a damaged entry heals
    // on the next save instead of missing until it ages out): nothing is left to verify.
    let v = fresh.verify(None, None).unwrap();
    assert!(v.damaged.is_empty() && v.checked == 0, "{v:?}");
    assert!(
        fresh.read_ref("main", "pip").unwrap().is_none(),
        "the damaged entry's ref was removed"
    );
}

#[test]
fn registry_listings_tell_store_objects_from_image_cache_tags() {
    use cicache_registry::gc::{GcPolicy, plan};
    use cicache_registry::tags::{STORE_ENTRY_ARTIFACT_TYPE, TagClass, classify};
    let test = "registry_listings_tell_store_objects_from_image_cache_tags";
    let Some(reg) = var("CICACHE_TEST_REGISTRY", test) else {
        return;
    };
    let spec = format!("{reg}/{}", unique("classes"));
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    pip_tree(&cache, 1, run_seed(3));
    // Keys that look like cache tags once encoded must not become ones.
    let store = Store::new(open(&spec, None));
    save(&store, "main", "cache", &cache);
    save(&store, "main", "cache-main", &cache);

    let target = Target::parse(&spec).unwrap();
    let client = OciClient::new(&target, None, &OciOptions::default());
    let images = client.images().unwrap();
    let mut entries = 0;
    for i in &images {
        for t in &i.tags {
            assert!(t.starts_with(TAG_PREFIX), "{t}");
            let class = classify(t, i.artifact_type.as_deref());
            assert!(!class.is_cache(), "{t} is taken for a cache tag");
            // Entries and their last-use markers are all store objects, never other tags.
            assert_eq!(class, TagClass::StoreEntry, "{t}");
            if i.artifact_type.as_deref() == Some(STORE_ENTRY_ARTIFACT_TYPE) {
                entries += 1;
            }
        }
    }
    assert_eq!(entries, 2, "{images:?}");
    // gc with the harshest policy deletes none of them.
    let p = plan(
        &images,
        &GcPolicy {
            now: SystemTime::now() + Duration::from_secs(1000 * 86_400),
            max_age: Duration::from_secs(1),
            keep: Default::default(),
            untagged: true,
            delete_by_tag: false,
            keep_bases: Some(0),
            bases_in_use: Default::default(),
        },
    );
    assert_eq!(p.deleted_tags().count(), 0, "{p:?}");
}

#[test]
fn a_stopped_registry_is_an_error_within_the_timeout() {
    let test = "a_stopped_registry_is_an_error_within_the_timeout";
    if var("CICACHE_TEST_REGISTRY", test).is_none() {
        return;
    }
    // A listener that accepts connections and never answers: what a hung registry looks
    // like from here (a fake for a fault; the CLI test stops a real registry with SIGSTOP).
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let _keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    let b = OciBackend::open(
        &format!("{addr}/hung"),
        None,
        &OpenOptions {
            timeout: Some(Duration::from_secs(2)),
        },
    )
    .unwrap();
    let t = Instant::now();
    let e = b.get("cicache-v1/refs/main/k").err().expect("an error");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(e.to_string().contains("timed out"), "{e}");
}

/// ECR as far as moto allows: moto implements GetAuthorizationToken but not the registry API,
/// and no request may leave this machine, so the test stops at the login. It runs itself
/// again in a child process with the endpoint in the environment (the SDK reads it there).
#[test]
fn ecr_registries_log_in_with_get_authorization_token() {
    const TEST: &str = "ecr_registries_log_in_with_get_authorization_token";
    const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ci/cache";
    let opts = OpenOptions {
        timeout: Some(Duration::from_secs(5)),
    };
    match std::env::var("CICACHE_OCI_ECR_CHILD").as_deref() {
        Ok("moto") => {
            let b = OciBackend::open(ECR, None, &opts)
                .unwrap_or_else(|e| panic!("open oci://{ECR} against moto: {e}"));
            assert_eq!(
                b.credentials(),
                Some(("AWS", "ECR GetAuthorizationToken")),
                "the registry login comes from GetAuthorizationToken"
            );
            assert_eq!(b.location(), format!("oci://{ECR}"));
            return;
        }
        Ok("dead") => {
            let e = OciBackend::open(ECR, None, &opts)
                .expect_err("no ECR endpoint: an error")
                .to_string();
            assert!(e.contains("GetAuthorizationToken"), "{e}");
            return;
        }
        _ => {}
    }
    let Some(moto) = var("CICACHE_TEST_MOTO_URL", TEST) else {
        return;
    };
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    for (mode, endpoint) in [("moto", moto.as_str()), ("dead", dead.as_str())] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env("CICACHE_OCI_ECR_CHILD", mode)
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("CICACHE_OCI_USERNAME")
            .env_remove("CICACHE_OCI_PASSWORD")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{mode}: {text}");
        assert!(text.contains("1 passed"), "{mode}: {text}");
    }
}

#[test]
fn long_keys_and_keys_with_slashes_are_tags_within_the_limit() {
    use cicache_registry::store::{name_of_tag, tag_for};
    use cicache_store::PutMode;
    let test = "long_keys_and_keys_with_slashes_are_tags_within_the_limit";
    let Some(reg) = var("CICACHE_TEST_REGISTRY", test) else {
        return;
    };
    let b = open(&format!("{reg}/{}", unique("names")), None);
    let long = format!("cicache-v1/refs/main/pip-{}", "x".repeat(200));
    let long2 = format!("{long}-2");
    let slash = "cicache-v1/refs/feature%2Flogin/pip%2Fa+b@c";
    for (i, n) in [long.as_str(), long2.as_str(), slash]
        .into_iter()
        .enumerate()
    {
        assert!(tag_for(n).len() <= 128);
        let data = format!("object {i}");
        assert!(b.put_bytes(n, data.as_bytes(), PutMode::CreateNew).unwrap());
        assert!(!b.put_bytes(n, b"again", PutMode::CreateNew).unwrap());
        let mut got = String::new();
        std::io::Read::read_to_string(&mut b.get(n).unwrap().unwrap(), &mut got).unwrap();
        assert_eq!(got, data);
    }
    assert_eq!(
        name_of_tag(&tag_for(slash)),
        Some((slash.to_string(), true))
    );
    // Prefix listing finds hashed tags by their readable prefix and full name.
    let names =
        |p: &str| -> Vec<String> { b.list(p).unwrap().into_iter().map(|o| o.name).collect() };
    assert_eq!(
        names("cicache-v1/refs/main/pip-"),
        vec![long.clone(), long2.clone()]
    );
    assert_eq!(names(&long2), vec![long2.clone()]);
    assert_eq!(names(&format!("{long}-")), vec![long2.clone()]);
    assert_eq!(
        names("cicache-v1/refs/feature%2Flogin/pip%2F"),
        vec![slash.to_string()]
    );
    b.delete(&long).unwrap();
    assert!(b.get(&long).unwrap().is_none());
    assert_eq!(names("cicache-v1/refs/main/"), vec![long2]);
}

/// Invariant 5 on a registry: a save that found a blob present, whose entry was then pruned
/// and whose blob the registry collected, fails its publish and leaves no entry; the next
/// save uploads the blob again.
#[test]
fn a_blob_collected_under_a_save_fails_the_publish_not_the_entry() {
    let test = "a_blob_collected_under_a_save_fails_the_publish_not_the_entry";
    let Some((reg, storage)) = open_registry(test) else {
        return;
    };
    let repo = unique("collected");
    let spec = format!("{reg}/{repo}");
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    pip_tree(&cache, 2, run_seed(5));
    save(&Store::new(open(&spec, None)), "main", "a", &cache);

    // Another agent's save has found the blobs present...
    let b2 = open(&spec, None);
    let target = Target::parse(&spec).unwrap();
    let client = OciClient::new(&target, None, &OciOptions::default());
    let entry = client
        .manifest(&cicache_registry::store::tag_for("cicache-v1/refs/main/a"))
        .unwrap()
        .expect("entry a");
    let wheel = entry.body["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["size"].as_u64().unwrap_or(0) > 250_000)
        .expect("a wheel layer")
        .clone();
    let wheel_name = wheel["annotations"]["vnd.cicache.name"].as_str().unwrap();
    assert!(b2.head(wheel_name).unwrap().is_some());
    // ...then a prune removes entry a and the registry's GC unlinks its blob.
    b2.delete("cicache-v1/refs/main/a").unwrap();
    let hex = wheel["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    fs::remove_file(
        storage
            .join("docker/registry/v2/repositories")
            .join(&repo)
            .join("_layers/sha256")
            .join(hex)
            .join("link"),
    )
    .unwrap();

    let e = Store::new(b2.clone())
        .save(
            &SaveRequest {
                scope: "main",
                key: "b",
                path: &cache,
                update: false,
                if_changed: false,
                excludes: &[],
            },
            &NoProgress,
        )
        .expect_err("the publish must fail")
        .to_string();
    assert!(
        e.contains("BLOB_UNKNOWN") && e.contains("save again"),
        "{e}"
    );
    assert!(
        b2.get("cicache-v1/refs/main/b").unwrap().is_none(),
        "no entry points at the missing blob"
    );
    // The next save (a new process) uploads the blob again and publishes.
    let store3 = Store::new(open(&spec, None));
    assert_eq!(save(&store3, "main", "b", &cache).status, SaveStatus::Saved);
    let out = restore(&store3, "main", "b", &tmp.path().join("restored"));
    assert!(out.hit, "{:?}", out.warnings);
    assert_eq!(listing(&cache), listing(&tmp.path().join("restored")));
}

/// Blobs above one upload chunk go up in PATCH chunks; the registry checks the digest of the
/// whole when the upload is closed.
#[test]
fn large_blobs_upload_in_chunks_and_read_back_whole() {
    let test = "large_blobs_upload_in_chunks_and_read_back_whole";
    let Some(reg) = var("CICACHE_TEST_REGISTRY", test) else {
        return;
    };
    let b = open(&format!("{reg}/{}", unique("chunks")), None);
    let size = 2 * cicache_registry::store_http::CHUNK as usize + 12_345;
    let data = noise(size, run_seed(6));
    let file = tempfile::NamedTempFile::new().unwrap();
    fs::write(file.path(), &data).unwrap();
    let name = "cicache-v1/blobs/ab/abcd-large.zst";
    b.put_file(name, file.path()).unwrap();
    let c = b.counters();
    assert_eq!(c.blob_uploads.load(Ordering::Relaxed), 1);
    assert_eq!(c.upload_chunks.load(Ordering::Relaxed), 3);
    assert_eq!(c.bytes_uploaded.load(Ordering::Relaxed), size as u64);
    assert_eq!(b.head(name).unwrap().map(|i| i.size), Some(size as u64));
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut b.get(name).unwrap().unwrap(), &mut got).unwrap();
    assert!(got == data, "the chunked upload changed the data");
}

/// Issue 21 item 1 on `oci://`: after a restore found a damaged blob (and removed the entry),
/// the next save of the same tree under the same key stores an entry that restores whole:
/// the damaged object is not reused.
#[test]
fn a_save_after_damage_stores_an_entry_that_restores() {
    let test = "a_save_after_damage_stores_an_entry_that_restores";
    let Some((reg, storage)) = open_registry(test) else {
        return;
    };
    let repo = unique("heal");
    let spec = format!("{reg}/{repo}");
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    pip_tree(&cache, 3, run_seed(7));
    let store = Store::new(open(&spec, None));
    save(&store, "main", "pip", &cache);

    corrupt_a_wheel_blob(&spec, &storage);

    let fresh = Store::new(open(&spec, None));
    let out = restore(&fresh, "main", "pip", &tmp.path().join("missed"));
    assert!(!out.hit, "the damaged entry is a miss: {out:?}");

    // What the warning advises: save again. The entry must restore whole afterwards.
    let again = Store::new(open(&spec, None));
    let saved = save(&again, "main", "pip", &cache);
    assert_eq!(saved.status, SaveStatus::Saved, "{saved:?}");
    let later = Store::new(open(&spec, None));
    let restored = tmp.path().join("restored");
    let out = restore(&later, "main", "pip", &restored);
    assert!(
        out.hit,
        "the entry saved after the damage restores: {out:?}"
    );
    assert_eq!(listing(&cache), listing(&restored));
}

/// Issue 21 item 3 on `oci://`: a 512-byte key, and one of percent-encoded bytes, save and
/// restore (their tags are hashed within the registry's 128-character limit).
#[test]
fn long_keys_save_and_restore() {
    let test = "long_keys_save_and_restore";
    let Some(reg) = var("CICACHE_TEST_REGISTRY", test) else {
        return;
    };
    let spec = format!("{reg}/{}", unique("longkeys"));
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    pip_tree(&cache, 2, run_seed(8));
    let long = "k".repeat(512);
    let encoded = "a/".repeat(90) + "é-ü-ß";
    for (i, key) in [long.as_str(), encoded.as_str()].into_iter().enumerate() {
        let store = Store::new(open(&spec, None));
        let saved = save(&store, "feature/ünïcode-scope", key, &cache);
        assert_eq!(saved.status, SaveStatus::Saved, "{saved:?}");
        let restored = tmp.path().join(format!("restored-{i}"));
        let out = restore(&store, "feature/ünïcode-scope", key, &restored);
        assert!(out.hit, "{out:?}");
        assert_eq!(listing(&cache), listing(&restored));
    }
}
