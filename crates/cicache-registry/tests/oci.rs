//! The distribution API client against the Debian distribution registry
//! (CICACHE_TEST_REGISTRY, started by test/lib/registry.sh): indexes, push times from the
//! registry's own records, deletes.

use std::time::{Duration, SystemTime};

use cicache_registry::gc::Deletion;
use cicache_registry::oci::{MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST};
use cicache_registry::{ConnectOptions, OciClient, OciOptions, Registry, Target};
use serde_json::json;

fn registry() -> Option<String> {
    match std::env::var("CICACHE_TEST_REGISTRY") {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var("CICACHE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("CICACHE_TEST_REGISTRY is not set; test/run.sh starts the registry");
            }
            eprintln!(
                "skipped: CICACHE_TEST_REGISTRY is not set (test/run.sh starts the registry)"
            );
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("cicache-lib/{prefix}-{}-{nanos}", std::process::id())
}

/// An image without a created annotation or config time; with `buildkit_age`, its layer
/// carries BuildKit's `buildkit/createdat`, as in a cache manifest BuildKit exports.
fn push_plain(
    client: &OciClient,
    reference: &str,
    seed: &str,
    buildkit_age: Option<Duration>,
) -> (String, u64) {
    let config = json!({"architecture": "amd64", "os": "linux", "seed": seed}).to_string();
    let layer = seed.as_bytes().repeat(200);
    let cd = client.push_blob(config.as_bytes()).unwrap();
    let ld = client.push_blob(&layer).unwrap();
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}]
    });
    if let Some(age) = buildkit_age {
        let t = humantime::format_rfc3339_nanos(SystemTime::now() - age).to_string();
        manifest["layers"][0]["annotations"] = json!({"buildkit/createdat": t});
    }
    let manifest = manifest.to_string();
    let digest = client
        .put_manifest(reference, MEDIA_OCI_MANIFEST, manifest.as_bytes())
        .unwrap();
    (digest, (config.len() + layer.len()) as u64)
}

#[test]
fn indexes_push_times_and_deletes() {
    let Some(reg) = registry() else {
        return;
    };
    let target = Target::parse(&format!("{reg}/{}", unique("index"))).unwrap();
    let client = OciClient::new(&target, None, &OciOptions::default());
    client.ping().expect("the registry answers");
    let three_days = Duration::from_secs(3 * 86_400);
    let (amd, amd_size) = push_plain(&client, "amd64", "amd64", Some(three_days));
    let (arm, arm_size) = push_plain(&client, "arm64", "arm64", None);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_INDEX,
        "manifests": [
            {"mediaType": MEDIA_OCI_MANIFEST, "digest": amd, "size": 1, "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": MEDIA_OCI_MANIFEST, "digest": arm, "size": 1, "platform": {"architecture": "arm64", "os": "linux"}}
        ]
    })
    .to_string();
    let index_digest = client
        .put_manifest("cache-multi", MEDIA_OCI_INDEX, index.as_bytes())
        .expect("put the index");

    let images = client.images().expect("list");
    let multi = images
        .iter()
        .find(|i| i.digest == index_digest)
        .expect("the index is listed");
    assert_eq!(multi.tags, vec!["cache-multi"]);
    assert_eq!(multi.children, vec![amd.clone(), arm.clone()]);
    assert_eq!(multi.size, Some(amd_size + arm_size));
    // The index takes its time from its image with BuildKit's layer annotation.
    let age = |t: SystemTime| {
        SystemTime::now()
            .duration_since(t)
            .unwrap_or(Duration::ZERO)
    };
    let pushed = multi.pushed.expect("a push time from the layer annotation");
    assert!(age(pushed) >= three_days && age(pushed) < three_days + Duration::from_secs(600));
    let amd_rec = images.iter().find(|i| i.digest == amd).unwrap();
    assert_eq!(amd_rec.tags, vec!["amd64"]);
    assert_eq!(amd_rec.size, Some(amd_size));
    assert_eq!(amd_rec.pushed, multi.pushed);
    // Nothing tells when arm64 was pushed: unknown, so gc keeps it.
    let arm_rec = images.iter().find(|i| i.digest == arm).unwrap();
    assert_eq!(arm_rec.pushed, None);
    assert_eq!(
        client.head_manifest("cache-multi").unwrap(),
        Some(index_digest.clone())
    );
    assert_eq!(client.head_manifest("nope").unwrap(), None);

    // Through the facade: a tag-only deletion is refused (this API deletes manifests), a
    // manifest deletion works, and deleting it again finds nothing.
    let reg_client = Registry::connect(&target, &ConnectOptions::default()).unwrap();
    assert!(!reg_client.deletes_by_tag());
    let failures = reg_client
        .delete(&[Deletion {
            digest: amd.clone(),
            tags: vec!["amd64".into()],
            manifest: false,
            age_seconds: None,
            size: None,
        }])
        .unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].code, "Unsupported");
    let failures = reg_client
        .delete(&[Deletion {
            digest: index_digest.clone(),
            tags: vec!["cache-multi".into()],
            manifest: true,
            age_seconds: None,
            size: None,
        }])
        .unwrap();
    assert!(failures.is_empty());
    assert_eq!(client.tags().unwrap(), vec!["amd64", "arm64"]);
    assert!(
        !client.delete_manifest(&index_digest).unwrap(),
        "already gone"
    );
}

#[test]
fn a_missing_repository_and_a_dead_registry_are_clear_errors() {
    let Some(reg) = registry() else {
        return;
    };
    let target = Target::parse(&format!("{reg}/{}", unique("none"))).unwrap();
    let client = OciClient::new(&target, None, &OciOptions::default());
    let err = client.tags().unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");
    assert!(err.contains("first push"), "{err}");

    // Nothing listens on port 1.
    let dead = Target::parse("127.0.0.1:1/app").unwrap();
    let err = OciClient::new(
        &dead,
        None,
        &OciOptions {
            plain_http: None,
            timeout: Some(Duration::from_secs(5)),
        },
    )
    .ping()
    .unwrap_err()
    .to_string();
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(err.contains("reachable"), "{err}");
}
