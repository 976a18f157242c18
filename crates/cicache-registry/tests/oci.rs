//! The distribution API client against the Debian distribution registry
//! (CICACHE_TEST_REGISTRY, started by test/lib/registry.sh): indexes, push times from the
//! registry's own records, deletes.

use std::time::{Duration, SystemTime};

use cicache_registry::gc::Deletion;
use cicache_registry::oci::{MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST};
use cicache_registry::{ConnectOptions, OciClient, OciOptions, Platform, Registry, Target};
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

/// Pushes an image as Docker 26 + buildx does (`docker buildx build --push`, provenance on
/// by default): an OCI index holding the image manifest of `platform` and an attestation
/// manifest (platform `unknown/unknown`, in-toto layer, annotated with the image's digest),
/// the attestation listed first when `attestation_first`. The image config has `labels` and
/// was created `age` ago; the attestation has no time at all. Returns the index digest,
/// the image manifest digest and the bytes of the image and of the attestation.
fn push_buildx_index(
    client: &OciClient,
    tag: &str,
    platform: &Platform,
    labels: serde_json::Value,
    age: Duration,
    attestation_first: bool,
) -> (String, String, u64, u64) {
    let created = humantime::format_rfc3339_nanos(SystemTime::now() - age).to_string();
    let mut config = json!({
        "architecture": platform.architecture, "os": platform.os, "created": created,
        "config": {"Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": []},
        "seed": tag,
    });
    if let Some(v) = &platform.variant {
        config["variant"] = json!(v);
    }
    let config = config.to_string();
    let layer = format!("layer of {tag}").repeat(300);
    let cd = client.push_blob(config.as_bytes()).unwrap();
    let ld = client.push_blob(layer.as_bytes()).unwrap();
    let image = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.len()}]
    })
    .to_string();
    let image_digest = client
        .put_manifest(
            &sha256(image.as_bytes()),
            MEDIA_OCI_MANIFEST,
            image.as_bytes(),
        )
        .unwrap();
    // BuildKit's attestation manifest: an image config of platform unknown/unknown and an
    // in-toto statement as its layer.
    let att_config = json!({"architecture": "unknown", "os": "unknown", "config": {},
        "rootfs": {"type": "layers", "diff_ids": []}})
    .to_string();
    let statement = json!({"_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2", "subject": [{"name": tag}]})
    .to_string();
    let acd = client.push_blob(att_config.as_bytes()).unwrap();
    let asd = client.push_blob(statement.as_bytes()).unwrap();
    let attestation = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": acd, "size": att_config.len()},
        "layers": [{"mediaType": "application/vnd.in-toto+json", "digest": asd, "size": statement.len(),
            "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}}]
    })
    .to_string();
    let att_digest = client
        .put_manifest(
            &sha256(attestation.as_bytes()),
            MEDIA_OCI_MANIFEST,
            attestation.as_bytes(),
        )
        .unwrap();
    let mut image_entry = json!({"mediaType": MEDIA_OCI_MANIFEST, "digest": image_digest,
        "size": image.len(), "platform": {"architecture": platform.architecture, "os": platform.os}});
    if let Some(v) = &platform.variant {
        image_entry["platform"]["variant"] = json!(v);
    }
    let att_entry = json!({"mediaType": MEDIA_OCI_MANIFEST, "digest": att_digest,
        "size": attestation.len(),
        "annotations": {"vnd.docker.reference.digest": image_digest,
            "vnd.docker.reference.type": "attestation-manifest"},
        "platform": {"architecture": "unknown", "os": "unknown"}});
    let entries = if attestation_first {
        json!([att_entry, image_entry])
    } else {
        json!([image_entry, att_entry])
    };
    let index =
        json!({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": entries}).to_string();
    let index_digest = client
        .put_manifest(tag, MEDIA_OCI_INDEX, index.as_bytes())
        .unwrap();
    (
        index_digest,
        image_digest,
        (config.len() + layer.len()) as u64,
        (att_config.len() + statement.len()) as u64,
    )
}

fn sha256(bytes: &[u8]) -> String {
    cicache_registry::oci::sha256_digest(bytes)
}

/// Issue 19: the cache tag, the bases and a scope's cache pushed as Docker 26 + buildx
/// pushes them (an index with an attestation manifest) read as images: the platform's
/// image and its labels, sizes that count everything stored, push times from the image
/// (never from the attestation, wherever it is listed), and `gc --keep-bases` keeps the base
/// an image's label names.
#[test]
fn buildx_indexes_with_attestations_read_as_images() {
    use cicache_registry::gc::{GcPolicy, KeepReason, plan};
    let Some(reg) = registry() else {
        return;
    };
    let repo = unique("buildx");
    let target = Target::parse(&format!("{reg}/{repo}")).unwrap();
    let client = OciClient::new(&target, None, &OciOptions::default());
    let host = Platform::host();
    let day = Duration::from_secs(86_400);
    let used_base = format!("{reg}/{repo}:base-aaa");
    let (cache_index, cache_image, image_bytes, att_bytes) = push_buildx_index(
        &client,
        "cache",
        &host,
        json!({"io.cicache.base": used_base, "io.cicache.inputs": "abc"}),
        Duration::from_secs(60),
        false,
    );
    let (aaa, _, _, _) = push_buildx_index(&client, "base-aaa", &host, json!({}), 10 * day, true);
    let (bbb, _, _, _) = push_buildx_index(&client, "base-bbb", &host, json!({}), 9 * day, true);
    let (ccc, _, _, _) = push_buildx_index(&client, "base-ccc", &host, json!({}), 8 * day, false);
    let (feature, _, _, _) =
        push_buildx_index(&client, "cache-feature", &host, json!({}), 5 * day, true);

    // The new function: through the index to the platform's image and its config.
    let image = client
        .image_config("cache", &host)
        .unwrap()
        .expect("the cache tag is an image for this platform");
    assert_eq!(image.tagged.digest, cache_index);
    assert!(image.tagged.is_index());
    assert_eq!(image.manifest.digest, cache_image);
    assert_eq!(
        image.config.label("io.cicache.base"),
        Some(used_base.as_str())
    );
    assert_eq!(image.config.label("io.cicache.inputs"), Some("abc"));
    assert_eq!(image.config.platform.os, host.os);
    assert_eq!(image.config.platform.architecture, host.architecture);
    assert_eq!(image.size(), image_bytes);
    assert!(image.config.created.is_some());
    // An attestation listed first is skipped too.
    let base = client.image_config("base-aaa", &host).unwrap().unwrap();
    assert_eq!(base.tagged.digest, aaa);
    assert!(!base.config.platform.is_unknown());
    // No image for another platform; no such tag.
    let elsewhere = Platform::new("plan9", "mips", None);
    assert!(client.image_config("cache", &elsewhere).unwrap().is_none());
    assert!(client.image_config("nope", &host).unwrap().is_none());
    // Re-tagging what the reference names keeps the index whole (same digest).
    let copy = client
        .put_manifest("copy", &image.tagged.media_type, &image.tagged.raw)
        .unwrap();
    assert_eq!(copy, cache_index);

    // status and gc read the listing: sizes count image and attestation, push times come
    // from the image config.
    let reg_client = Registry::connect(&target, &ConnectOptions::default()).unwrap();
    let images = reg_client.images().unwrap();
    let record = |d: &str| images.iter().find(|i| i.digest == d).unwrap().clone();
    let cache = record(&cache_index);
    assert_eq!(cache.size, Some(image_bytes + att_bytes));
    assert_eq!(cache.children.len(), 2);
    assert_eq!(
        cache.artifact_type.as_deref(),
        Some("application/vnd.oci.image.config.v1+json")
    );
    let now = SystemTime::now();
    for (digest, days) in [(&aaa, 10), (&bbb, 9), (&ccc, 8), (&feature, 5)] {
        let age = record(digest)
            .age(now)
            .expect("a push time from the image")
            .as_secs();
        assert!(
            age / 86_400 == days,
            "{digest}: {age} s, expected {days} days"
        );
    }

    let bases = client.base_tags_in_use(&images).unwrap();
    assert_eq!(bases.iter().collect::<Vec<_>>(), vec!["base-aaa"]);

    let policy = GcPolicy {
        now,
        max_age: day,
        keep: Default::default(),
        untagged: false,
        delete_by_tag: false,
        keep_bases: Some(1),
        bases_in_use: bases,
    };
    let p = plan(&images, &policy);
    let mut deleted: Vec<&str> = p.deleted_tags().collect();
    deleted.sort();
    assert_eq!(deleted, vec!["base-bbb", "cache-feature"], "{p:?}");
    let reason = |tag: &str| {
        p.keep
            .iter()
            .find(|k| k.tag.as_deref() == Some(tag))
            .map(|k| k.reason)
    };
    assert_eq!(reason("base-aaa"), Some(KeepReason::BaseInUse));
    assert_eq!(reason("base-ccc"), Some(KeepReason::NewestBase));
    assert_eq!(reason("cache"), Some(KeepReason::DefaultCache));
    assert!(reg_client.delete(&p.delete).unwrap().is_empty());
    assert_eq!(
        client.tags().unwrap(),
        vec!["base-aaa", "base-ccc", "cache", "copy"]
    );
    // The children of a deleted index stay until the registry's own garbage collection;
    // those of the kept ones are still readable.
    assert!(client.manifest(&cache_image).unwrap().is_some());
}
