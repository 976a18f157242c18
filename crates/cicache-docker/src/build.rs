//! The command lines of `cicache build`: the image build with the registry layer cache, the
//! pushes, and which cache tags a scope reads and writes.
//!
//! Cache tags: `IMAGE:cache` serves the default branch and `IMAGE:cache-<scope>` every
//! other scope. A build reads its own tag, then `IMAGE:cache`; it writes its own.
//!
//! Flavours ([`Flavour`]) and exporters ([`Exporter`], chosen by
//! [`crate::engine::Capabilities::decide`] from what the builder can do):
//! - buildx, registry exporter: one `docker buildx build` that reads
//!   `--cache-from type=registry,ref=...` and writes
//!   `--cache-to type=registry,ref=...,mode=max,image-manifest=true,oci-mediatypes=true,ignore-error=true`
//!   (the form ECR accepts), and pushes with `--push` (else `--load`);
//! - buildx, inline exporter (buildx's docker driver on a graph-driver image store refuses a
//!   registry cache export): `--cache-to type=inline`, then `docker tag` + `docker push` of
//!   the cache tag;
//! - classic: `DOCKER_BUILDKIT=1 docker build --cache-from REF... --build-arg BUILDKIT_INLINE_CACHE=1`,
//!   then `docker push` of each tag, and `docker tag` + `docker push` of the cache tag (the
//!   inline cache travels in the image config, so the cache tag is the image itself).
//!
//! `--builder NAME` goes into the buildx command lines only.

use std::path::PathBuf;

use serde::Serialize;

use crate::engine::{Exporter, Flavour};

/// Everything the build command line is made from.
#[derive(Debug, Clone, Serialize)]
pub struct BuildPlan {
    pub flavour: Flavour,
    /// Repository without tag (`registry:5000/team/app`).
    pub image: String,
    /// Tags to build (at least one; `latest` when none was asked for).
    pub tags: Vec<String>,
    pub dockerfile: PathBuf,
    pub context: PathBuf,
    /// `KEY=VALUE` build arguments.
    pub build_args: Vec<String>,
    pub target: Option<String>,
    /// Use and export the registry layer cache.
    pub registry_cache: bool,
    /// Cache refs read, in order (full refs `IMAGE:tag`).
    pub cache_from: Vec<String>,
    /// Cache ref written. `None` with `registry_cache`: the image carries its own (inline)
    /// cache, as a base image `base-<hash>` does, whose refs are read back by `cache_from`.
    pub cache_to: Option<String>,
    /// `KEY=VALUE` image labels (`io.cicache.base=...`).
    pub labels: Vec<String>,
    /// Push the image tags.
    pub push: bool,
    /// Arguments after `--`, passed to the build unchanged.
    pub extra: Vec<String>,
    /// How buildx compresses the layers it pushes and the registry cache it exports
    /// (`None`: BuildKit's default, gzip).
    pub compression: Option<Compression>,
}

/// A layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionKind {
    Gzip,
    Zstd,
    Estargz,
}

/// `--compression` and `--compression-level` of `cicache build`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Compression {
    pub kind: CompressionKind,
    pub level: Option<u32>,
}

impl Compression {
    /// Checks the level against what the algorithm takes (gzip and estargz 0-9, zstd 0-22).
    pub fn new(kind: CompressionKind, level: Option<u32>) -> Result<Compression, String> {
        let max = match kind {
            CompressionKind::Gzip | CompressionKind::Estargz => 9,
            CompressionKind::Zstd => 22,
        };
        match level {
            Some(l) if l > max => Err(format!(
                "--compression-level {l}: {} takes 0 to {max}",
                kind.as_str()
            )),
            _ => Ok(Compression { kind, level }),
        }
    }

    /// The exporter options: `compression=zstd,compression-level=3,force-compression=true`
    /// (forced: layers already in another compression are recompressed, or a cache hit
    /// would push the old gzip layers again).
    pub fn options(&self) -> String {
        let level = self
            .level
            .map(|l| format!(",compression-level={l}"))
            .unwrap_or_default();
        format!(
            "compression={}{level},force-compression=true",
            self.kind.as_str()
        )
    }
}

impl CompressionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CompressionKind::Gzip => "gzip",
            CompressionKind::Zstd => "zstd",
            CompressionKind::Estargz => "estargz",
        }
    }
}

/// The tag suffix of a scope: `cache` for the default branch, `cache-<scope>` (made a valid
/// tag: `[A-Za-z0-9_.-]`, at most 128 characters) otherwise.
pub fn cache_tag(scope: Option<&str>) -> String {
    match scope {
        None => "cache".to_string(),
        Some(s) => {
            let slug: String = s
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            let mut t = format!("cache-{slug}");
            t.truncate(128);
            t
        }
    }
}

/// Cache refs a build reads (its own, then the default branch's) and the one it writes.
/// `own_scope` is `None` on the default branch.
pub fn cache_refs(image: &str, own_scope: Option<&str>) -> (Vec<String>, String) {
    let own = format!("{image}:{}", cache_tag(own_scope));
    let default = format!("{image}:{}", cache_tag(None));
    let mut from = vec![own.clone()];
    if own != default {
        from.push(default);
    }
    (from, own)
}

impl BuildPlan {
    /// `IMAGE:TAG` of every tag.
    pub fn image_refs(&self) -> Vec<String> {
        self.tags
            .iter()
            .map(|t| format!("{}:{t}", self.image))
            .collect()
    }

    /// The exporter the flavour has meant so far: registry for buildx, inline for classic.
    pub fn default_exporter(&self) -> Exporter {
        match self.flavour {
            Flavour::Buildx => Exporter::Registry,
            Flavour::Classic => Exporter::Inline,
        }
    }

    /// The docker arguments of the image build (after the program name), with the flavour's
    /// default exporter and the current builder.
    pub fn build_args(&self) -> Vec<String> {
        self.build_args_with(self.default_exporter(), None)
    }

    /// The docker arguments of the image build with the `exporter` of the build mode, and
    /// `--builder NAME` (buildx only). A classic build always exports inline cache.
    pub fn build_args_with(&self, exporter: Exporter, builder: Option<&str>) -> Vec<String> {
        let mut a: Vec<String> = match self.flavour {
            Flavour::Buildx => vec!["buildx".into(), "build".into()],
            Flavour::Classic => vec!["build".into()],
        };
        if let (Flavour::Buildx, Some(b)) = (self.flavour, builder) {
            a.push("--builder".into());
            a.push(b.to_string());
        }
        a.push("--progress=plain".into());
        a.push("-f".into());
        a.push(self.dockerfile.display().to_string());
        for r in self.image_refs() {
            a.push("-t".into());
            a.push(r);
        }
        for b in &self.build_args {
            a.push("--build-arg".into());
            a.push(b.clone());
        }
        for l in &self.labels {
            a.push("--label".into());
            a.push(l.clone());
        }
        if let Some(t) = &self.target {
            a.push("--target".into());
            a.push(t.clone());
        }
        if self.registry_cache {
            match self.flavour {
                Flavour::Buildx => {
                    for r in &self.cache_from {
                        a.push("--cache-from".into());
                        a.push(format!("type=registry,ref={r}"));
                    }
                    match (&self.cache_to, exporter) {
                        (Some(to), Exporter::Registry) => {
                            a.push("--cache-to".into());
                            let compression = self
                                .compression
                                .map(|c| format!(",{}", c.options()))
                                .unwrap_or_default();
                            a.push(format!(
                                "type=registry,ref={to},mode=max,image-manifest=true,oci-mediatypes=true,ignore-error=true{compression}"
                            ));
                        }
                        // The image carries the cache (a base image; or the cache tag is pushed
                        // after the build).
                        (None, _) | (_, Exporter::Inline) => {
                            a.push("--cache-to".into());
                            a.push("type=inline".into());
                        }
                    }
                }
                Flavour::Classic => {
                    for r in &self.cache_from {
                        a.push("--cache-from".into());
                        a.push(r.clone());
                    }
                    a.push("--build-arg".into());
                    a.push("BUILDKIT_INLINE_CACHE=1".into());
                }
            }
        }
        if self.flavour == Flavour::Buildx {
            let user_output = self.extra.iter().any(|e| {
                e == "--load"
                    || e == "--push"
                    || e.starts_with("--output")
                    || e == "-o"
                    || e.starts_with("-o=")
            });
            match (self.push, self.compression) {
                (true, Some(c)) => {
                    a.push("--output".into());
                    a.push(format!("type=image,push=true,{}", c.options()));
                }
                (true, None) => a.push("--push".into()),
                _ => {}
            }
            if !self.push && !user_output {
                a.push("--load".into());
            }
        }
        a.extend(self.extra.iter().cloned());
        a.push(self.context.display().to_string());
        a
    }

    /// The docker arguments of the prefetch (inline-cache builds): a build of the Dockerfile's
    /// first lines, given on stdin, whose steps all come from the cache tags, so that all it
    /// does is pull their layers into the daemon while the cache dir is restored and
    /// injected; the image build then finds them there. The build's arguments and the
    /// arguments after `--`; no tags, labels, target or inline cache.
    pub fn prefetch_args(&self, iidfile: &std::path::Path) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "build".into(),
            "--progress=plain".into(),
            "-f".into(),
            "-".into(),
            "--iidfile".into(),
            iidfile.display().to_string(),
        ];
        for b in &self.build_args {
            a.push("--build-arg".into());
            a.push(b.clone());
        }
        for r in &self.cache_from {
            a.push("--cache-from".into());
            a.push(r.clone());
        }
        a.extend(self.extra.iter().cloned());
        a.push(self.context.display().to_string());
        a
    }

    /// The docker commands that follow the build (each one argument list): classic pushes
    /// of the tags, then the cache tag. Buildx pushes inside the build, so it has none.
    pub fn push_commands(&self) -> Vec<Vec<String>> {
        if self.flavour == Flavour::Buildx {
            return Vec::new();
        }
        let mut out = Vec::new();
        if self.push {
            for r in self.image_refs() {
                out.push(vec!["push".into(), r]);
            }
        }
        out
    }

    /// Classic flavour: tag the built image as the cache tag and push it.
    pub fn cache_push_commands(&self) -> Vec<Vec<String>> {
        self.cache_push_commands_with(self.default_exporter())
    }

    /// Inline cache (either flavour): tag the built image as the cache tag and push it. The
    /// registry exporter pushes the cache itself.
    pub fn cache_push_commands_with(&self, exporter: Exporter) -> Vec<Vec<String>> {
        let exporter = match self.flavour {
            Flavour::Classic => Exporter::Inline,
            Flavour::Buildx => exporter,
        };
        match (exporter, self.registry_cache, &self.cache_to) {
            (Exporter::Inline, true, Some(to)) => {
                let first = self.image_refs().into_iter().next().unwrap_or_default();
                vec![
                    vec!["tag".into(), first, to.clone()],
                    vec!["push".into(), to.clone()],
                ]
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(flavour: Flavour, push: bool) -> BuildPlan {
        let (from, to) = cache_refs("127.0.0.1:5000/app", Some("pr-7"));
        BuildPlan {
            flavour,
            image: "127.0.0.1:5000/app".into(),
            tags: vec!["1.0".into(), "latest".into()],
            dockerfile: "examples/python-app/Dockerfile".into(),
            context: "examples/python-app".into(),
            build_args: vec!["BASE_IMAGE=python:3.12-slim".into()],
            target: Some("final".into()),
            registry_cache: true,
            cache_from: from,
            cache_to: Some(to),
            labels: vec![],
            push,
            extra: vec!["--secret".into(), "id=npmrc,src=.npmrc".into()],
            compression: None,
        }
    }

    #[test]
    fn zstd_compresses_the_pushed_image_and_the_exported_cache() {
        let mut p = plan(Flavour::Buildx, true);
        p.compression = Some(Compression::new(CompressionKind::Zstd, Some(3)).unwrap());
        let a = p.build_args().join(" ");
        let opts = "compression=zstd,compression-level=3,force-compression=true";
        assert!(
            a.contains(&format!("ignore-error=true,{opts} ")),
            "cache export: {a}"
        );
        assert!(
            a.contains(&format!("--output type=image,push=true,{opts} ")),
            "image: {a}"
        );
        assert!(!a.contains("--push"), "{a}");
        // Without --push the image is loaded into the daemon, uncompressed as ever.
        let mut p = plan(Flavour::Buildx, false);
        p.compression = Some(Compression::new(CompressionKind::Zstd, None).unwrap());
        let a = p.build_args().join(" ");
        assert!(a.contains("--load") && !a.contains("type=image"), "{a}");
        assert!(Compression::new(CompressionKind::Gzip, Some(10)).is_err());
        assert!(Compression::new(CompressionKind::Zstd, Some(22)).is_ok());
    }

    #[test]
    fn cache_tags() {
        assert_eq!(cache_tag(None), "cache");
        assert_eq!(cache_tag(Some("feature/x y")), "cache-feature-x-y");
        let (from, to) = cache_refs("r/app", None);
        assert_eq!(from, vec!["r/app:cache"]);
        assert_eq!(to, "r/app:cache");
        let (from, to) = cache_refs("r/app", Some("pr-7"));
        assert_eq!(from, vec!["r/app:cache-pr-7", "r/app:cache"]);
        assert_eq!(to, "r/app:cache-pr-7");
    }

    #[test]
    fn buildx_command_line_exact() {
        let p = plan(Flavour::Buildx, true);
        assert_eq!(
            p.build_args().join(" "),
            "buildx build --progress=plain -f examples/python-app/Dockerfile \
             -t 127.0.0.1:5000/app:1.0 -t 127.0.0.1:5000/app:latest \
             --build-arg BASE_IMAGE=python:3.12-slim --target final \
             --cache-from type=registry,ref=127.0.0.1:5000/app:cache-pr-7 \
             --cache-from type=registry,ref=127.0.0.1:5000/app:cache \
             --cache-to type=registry,ref=127.0.0.1:5000/app:cache-pr-7,mode=max,image-manifest=true,oci-mediatypes=true,ignore-error=true \
             --push --secret id=npmrc,src=.npmrc examples/python-app"
        );
        assert!(p.push_commands().is_empty());
        assert!(p.cache_push_commands().is_empty());
        let p = plan(Flavour::Buildx, false);
        assert!(p.build_args().contains(&"--load".to_string()));
        let mut p = plan(Flavour::Buildx, false);
        p.extra = vec!["--output".into(), "type=tar,dest=x.tar".into()];
        assert!(!p.build_args().contains(&"--load".to_string()));
    }

    #[test]
    fn classic_command_lines_exact() {
        let p = plan(Flavour::Classic, true);
        assert_eq!(
            p.build_args().join(" "),
            "build --progress=plain -f examples/python-app/Dockerfile \
             -t 127.0.0.1:5000/app:1.0 -t 127.0.0.1:5000/app:latest \
             --build-arg BASE_IMAGE=python:3.12-slim --target final \
             --cache-from 127.0.0.1:5000/app:cache-pr-7 --cache-from 127.0.0.1:5000/app:cache \
             --build-arg BUILDKIT_INLINE_CACHE=1 \
             --secret id=npmrc,src=.npmrc examples/python-app"
        );
        assert_eq!(
            p.push_commands(),
            vec![
                vec!["push".to_string(), "127.0.0.1:5000/app:1.0".into()],
                vec!["push".to_string(), "127.0.0.1:5000/app:latest".into()],
            ]
        );
        assert_eq!(
            p.cache_push_commands(),
            vec![
                vec![
                    "tag".to_string(),
                    "127.0.0.1:5000/app:1.0".into(),
                    "127.0.0.1:5000/app:cache-pr-7".into()
                ],
                vec!["push".to_string(), "127.0.0.1:5000/app:cache-pr-7".into()],
            ]
        );
    }

    #[test]
    fn prefetch_command_line_exact() {
        let p = plan(Flavour::Classic, true);
        assert_eq!(
            p.prefetch_args(std::path::Path::new("/tmp/iid")).join(" "),
            "build --progress=plain -f - --iidfile /tmp/iid \
             --build-arg BASE_IMAGE=python:3.12-slim \
             --cache-from 127.0.0.1:5000/app:cache-pr-7 --cache-from 127.0.0.1:5000/app:cache \
             --secret id=npmrc,src=.npmrc examples/python-app"
        );
    }

    #[test]
    fn labels_and_inline_cache_of_a_base() {
        for flavour in [Flavour::Classic, Flavour::Buildx] {
            let mut p = plan(flavour, true);
            p.labels = vec!["io.cicache.base=r/app:base-1".into()];
            p.cache_from = vec!["127.0.0.1:5000/app:base-0".into()];
            p.cache_to = None;
            let a = p.build_args().join(" ");
            assert!(a.contains("--label io.cicache.base=r/app:base-1"), "{a}");
            match flavour {
                Flavour::Classic => {
                    assert!(a.contains("--cache-from 127.0.0.1:5000/app:base-0 --build-arg BUILDKIT_INLINE_CACHE=1"), "{a}");
                }
                Flavour::Buildx => {
                    assert!(a.contains("--cache-from type=registry,ref=127.0.0.1:5000/app:base-0 --cache-to type=inline"), "{a}");
                }
            }
            assert!(
                p.cache_push_commands().is_empty(),
                "the image is its own cache"
            );
        }
    }

    #[test]
    fn no_registry_cache_means_no_cache_flags() {
        let mut p = plan(Flavour::Classic, false);
        p.registry_cache = false;
        let a = p.build_args().join(" ");
        assert!(!a.contains("cache"), "{a}");
        assert!(p.cache_push_commands().is_empty());
        assert!(p.push_commands().is_empty());
    }
}
