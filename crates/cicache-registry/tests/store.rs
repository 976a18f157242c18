//! The `oci://` store backend against the Debian distribution registry started by
//! test/lib/registry.sh (CICACHE_TEST_REGISTRY open, CICACHE_TEST_AUTH_REGISTRY with htpasswd;
//! CICACHE_TEST_REGISTRY_STORAGE is the open registry's filesystem storage).
//!
//! Without those variables each test prints "skipped: ..." and passes, unless
//! CICACHE_TEST_REQUIRE_SERVICES=1 (test/run.sh).

use std::fs;
use std::io::Read;
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

/// Blob files in the registry's filesystem storage.
fn stored_blobs(storage: &Path) -> usize {
    let root = storage.join("docker/registry/v2/blobs/sha256");
    let Ok(dirs) = fs::read_dir(&root) else {
        return 0;
    };
    dirs.flatten()
        .flat_map(|d| fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter(|d| d.path().join("data").is_file())
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
