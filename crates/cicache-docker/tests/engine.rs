//! The build mode decided from recorded `docker version`, `docker info` and
//! `docker buildx inspect` outputs of real engines (tests/fixtures/engines; its README says
//! how each was recorded). The same detection runs against the live engines in
//! crates/cicache/tests/docker.rs (`engine_basics`).

use cicache_docker::build::{BuildPlan, cache_refs};
use cicache_docker::engine::{
    BuildMode, BuilderDriver, Capabilities, Exporter, Flavour, ImageStore, major_version,
    parse_buildx_inspect,
};

fn fixture(name: &str) -> String {
    let p = format!(
        "{}/tests/fixtures/engines/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// Docker 26.1.5 with the docker 28 client and buildx 0.13.1, on either store.
fn docker26(store: &str) -> Capabilities {
    Capabilities::from_outputs(
        &fixture(&format!("version-26-{store}.json")),
        &fixture(&format!("info-26-{store}.json")),
        Ok(&fixture(&format!("buildx-inspect-26-{store}.txt"))),
        None,
    )
}

#[test]
fn docker26_containerd_store_exports_a_registry_cache() {
    let c = docker26("containerd");
    assert_eq!(c.client_version.as_deref(), Some("28.2.2"));
    assert_eq!(c.server_version.as_deref(), Some("26.1.5+dfsg1"));
    // The daemon's, not the client's: the build hashes the platform it builds for.
    assert_eq!(c.server_platform.as_deref(), Some("linux/amd64"));
    assert!(
        matches!(c.image_store, ImageStore::Containerd { .. }),
        "{c:?}"
    );
    let b = c.builder.as_ref().unwrap();
    assert_eq!(b.name, "default");
    assert_eq!(b.driver, BuilderDriver::Docker);
    assert!(c.buildx);
    assert!(c.build_needs_buildx());
    assert_eq!(c.registry_export(), Ok(()));
    let m = c.decide(None);
    assert_eq!(
        (m.flavour, m.exporter),
        (Flavour::Buildx, Exporter::Registry)
    );
    assert!(m.reason.contains("containerd image store"), "{}", m.reason);
    assert_eq!(m.daemon_platform.as_deref(), Some("linux/amd64"));
    assert!(m.reason.contains("docker driver"), "{}", m.reason);
}

#[test]
fn docker26_graph_store_falls_back_to_inline_cache_and_says_why() {
    let c = docker26("graph");
    assert_eq!(
        c.image_store,
        ImageStore::Graph {
            driver: "overlay2".into()
        }
    );
    let r = c.registry_export().unwrap_err();
    assert!(r.why.contains("graph-driver image store (overlay2)"), "{r}");
    assert!(r.fix.contains("containerd-snapshotter"), "{r}");
    assert!(r.fix.contains("--driver docker-container"), "{r}");
    assert!(!r.builder_unusable);
    // Automatic: the classic command (on this client `docker build` is buildx's docker
    // driver), inline cache and a pushed cache tag.
    let m = c.decide(None);
    assert_eq!(
        (m.flavour, m.exporter),
        (Flavour::Classic, Exporter::Inline)
    );
    assert!(
        m.reason
            .starts_with("inline cache and a pushed cache tag: "),
        "{}",
        m.reason
    );
    // --flavour buildx keeps buildx, with the exporter that works.
    let m = c.decide(Some(Flavour::Buildx));
    assert_eq!((m.flavour, m.exporter), (Flavour::Buildx, Exporter::Inline));
}

#[test]
fn docker20_without_buildx_is_classic_inline() {
    let c = Capabilities::from_outputs(
        &fixture("version-20.json"),
        &fixture("info-20.json"),
        Err(&fixture("buildx-version-20.txt")),
        None,
    );
    assert_eq!(c.client_version.as_deref(), Some("20.10.24+dfsg1"));
    assert_eq!(c.server_version.as_deref(), Some("20.10.24+dfsg1"));
    assert!(!c.buildx);
    assert!(!c.build_needs_buildx());
    assert!(c.buildx_error.is_none());
    let r = c.registry_export().unwrap_err();
    assert!(r.why.contains("no buildx plugin"), "{r}");
    let m = c.decide(None);
    assert_eq!(
        (m.flavour, m.exporter),
        (Flavour::Classic, Exporter::Inline)
    );
    assert!(m.reason.contains("no buildx plugin"), "{}", m.reason);
}

#[test]
fn forced_classic_does_not_claim_a_missing_plugin() {
    let c = docker26("containerd");
    let m = c.decide(Some(Flavour::Classic));
    assert_eq!(
        (m.flavour, m.exporter),
        (Flavour::Classic, Exporter::Inline)
    );
    assert!(m.reason.starts_with("--flavour classic"), "{}", m.reason);
    assert!(!m.reason.contains("no buildx"), "{}", m.reason);
    assert!(!Flavour::Classic.describe().contains("no buildx"));
}

#[test]
fn docker20_daemon_with_the_28_client_and_buildx() {
    let c = Capabilities::from_outputs(
        "",
        &fixture("info-20-client28-nobuildx.json"),
        Ok(&fixture("buildx-inspect-20-client28.txt")),
        None,
    );
    // The client version comes from `docker info` when `docker version` gave nothing.
    assert_eq!(c.client_version.as_deref(), Some("28.2.2"));
    let b = c.builder.as_ref().unwrap();
    assert_eq!(b.buildkit.as_deref(), Some("v0.8+unknown"));
    assert!(c.registry_export().is_err());
    assert_eq!(c.decide(None).exporter, Exporter::Inline);
}

#[test]
fn a_docker_container_builder_exports_on_any_store() {
    // The documented shape of `docker buildx inspect` of a docker-container builder
    // (docs.docker.com, buildx inspect): no such builder can start here (its
    // moby/buildkit image cannot be pulled).
    let inspect = "Name:          cicache\nDriver:        docker-container\n\
                   Last Activity: 2026-11-30 12:42:47 +0000 UTC\n\nNodes:\n\
                   Name:             cicache0\nEndpoint:         unix:///var/run/docker.sock\n\
                   Status:           running\nBuildKit version: v0.13.2\nPlatforms:        linux/amd64\n";
    let c = Capabilities::from_outputs(
        &fixture("version-26-graph.json"),
        &fixture("info-26-graph.json"),
        Ok(inspect),
        Some("cicache"),
    );
    let b = c.builder.as_ref().unwrap();
    assert_eq!(b.driver, BuilderDriver::DockerContainer);
    assert_eq!(b.buildkit.as_deref(), Some("v0.13.2"));
    let m = c.decide(None);
    assert_eq!(
        (m.flavour, m.exporter),
        (Flavour::Buildx, Exporter::Registry)
    );
    assert_eq!(m.builder.as_deref(), Some("cicache"));
    assert_eq!(m.builder_args(), vec!["--builder", "cicache"]);
    assert!(m.reason.contains("docker-container driver"), "{}", m.reason);
}

#[test]
fn an_unknown_builder_is_reported_not_taken_for_a_missing_plugin() {
    let c = Capabilities::from_outputs(
        &fixture("version-26-graph.json"),
        &fixture("info-26-graph.json"),
        Err("ERROR: no builder \"nosuch\" found\n"),
        Some("nosuch"),
    );
    assert!(c.buildx, "the plugin is listed in docker info");
    let r = c.registry_export().unwrap_err();
    assert!(r.why.contains("\"nosuch\""), "{r}");
    assert!(r.why.contains("no builder"), "{r}");
    assert!(r.builder_unusable);
}

#[test]
fn parsing_odd_outputs() {
    assert_eq!(major_version("26.1.5+dfsg1"), Some(26));
    assert_eq!(major_version("v0.13.1"), Some(0));
    assert_eq!(major_version("20.10.24+dfsg1"), Some(20));
    assert_eq!(major_version(""), None);
    assert_eq!(parse_buildx_inspect(""), None);
    // buildx before 0.12 printed `Buildkit:`.
    let b =
        parse_buildx_inspect("Name: x\nDriver: remote\n\nNodes:\nName: x0\nBuildkit: v0.11.6\n")
            .unwrap();
    assert_eq!(b.driver, BuilderDriver::Remote);
    assert_eq!(b.buildkit.as_deref(), Some("v0.11.6"));
    // Nothing answered: unknown store, no builder, inline cache.
    let c = Capabilities::from_outputs("", "", Err("Cannot connect to the Docker daemon"), None);
    assert_eq!(c.image_store, ImageStore::Unknown);
    assert_eq!(c.server_platform, None);
    assert_eq!(c.decide(None).exporter, Exporter::Inline);
    // A client whose daemon is down prints its own platform only: not the daemon's.
    let client_only = r#"{"Client":{"Version":"28.2.2","Os":"linux","Arch":"arm64"}}"#;
    let c = Capabilities::from_outputs(client_only, "", Err("Cannot connect"), None);
    assert_eq!(c.server_platform, None);
}

fn plan(flavour: Flavour) -> BuildPlan {
    let (from, to) = cache_refs("127.0.0.1:5000/app", None);
    BuildPlan {
        flavour,
        image: "127.0.0.1:5000/app".into(),
        tags: vec!["1.0".into()],
        dockerfile: "Dockerfile".into(),
        context: ".".into(),
        build_args: vec![],
        target: None,
        registry_cache: true,
        cache_from: from,
        cache_to: Some(to),
        labels: vec![],
        push: true,
        extra: vec![],
        compression: None,
    }
}

#[test]
fn command_lines_per_mode() {
    // buildx, registry exporter, a builder of its own.
    let m = docker26("containerd").decide(None);
    let p = plan(m.flavour);
    assert_eq!(
        p.build_args_with(m.exporter, Some("cicache")).join(" "),
        "buildx build --builder cicache --progress=plain -f Dockerfile -t 127.0.0.1:5000/app:1.0 \
         --cache-from type=registry,ref=127.0.0.1:5000/app:cache \
         --cache-to type=registry,ref=127.0.0.1:5000/app:cache,mode=max,image-manifest=true,oci-mediatypes=true,ignore-error=true \
         --push ."
    );
    assert!(p.cache_push_commands_with(m.exporter).is_empty());
    // buildx forced on the graph store: inline cache, the cache tag pushed after.
    let m = docker26("graph").decide(Some(Flavour::Buildx));
    let p = plan(m.flavour);
    assert_eq!(
        p.build_args_with(m.exporter, None).join(" "),
        "buildx build --progress=plain -f Dockerfile -t 127.0.0.1:5000/app:1.0 \
         --cache-from type=registry,ref=127.0.0.1:5000/app:cache --cache-to type=inline --push ."
    );
    assert_eq!(
        p.cache_push_commands_with(m.exporter),
        vec![
            vec!["tag", "127.0.0.1:5000/app:1.0", "127.0.0.1:5000/app:cache"],
            vec!["push", "127.0.0.1:5000/app:cache"],
        ]
    );
    // Classic never takes --builder (a 20.10 `docker build` has no such flag) and always
    // pushes the cache tag.
    let p = plan(Flavour::Classic);
    let a = p
        .build_args_with(Exporter::Registry, Some("cicache"))
        .join(" ");
    assert!(!a.contains("--builder"), "{a}");
    assert!(a.contains("BUILDKIT_INLINE_CACHE=1"), "{a}");
    assert_eq!(p.cache_push_commands_with(Exporter::Registry).len(), 2);
    assert_eq!(
        BuildMode::of_flavour(Flavour::Classic).builder_args(),
        Vec::<String>::new()
    );
}
