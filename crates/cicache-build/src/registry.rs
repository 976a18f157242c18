//! What the build asks the registry: which cache tags exist and their labels, whether a base
//! tag exists, what a FROM image is, the newest earlier base; and tagging an unchanged image.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use cicache_docker::base;
use cicache_docker::engine::Docker;
use cicache_registry::oci::Manifest;
use cicache_registry::{ConnectOptions, OciClient, OciOptions, Platform, Registry, Target};

use crate::cache_dir::chain;

/// A registry problem, with the whole chain of causes.
pub(crate) type RegResult<T> = Result<T, String>;

fn err(e: cicache_registry::Error) -> String {
    chain(&e)
}

/// Whether the repository names a registry host (`host.tld/…`, `host:port/…`, `localhost/…`).
pub fn has_registry_host(image: &str) -> bool {
    match image.split_once('/') {
        Some((first, _)) => first.contains('.') || first.contains(':') || first == "localhost",
        None => false,
    }
}

/// A tag whose image labels the check reads (a cache tag with inline cache, an image tag with
/// the registry exporter), as the registry has it.
#[derive(Debug, Clone)]
pub struct CacheTag {
    pub tag: String,
    pub manifest: Manifest,
    /// The image config's labels.
    pub labels: BTreeMap<String, String>,
    /// `os/architecture[/variant]` of the image.
    pub platform: String,
    /// The layer blobs of the platform's image.
    pub layers: Vec<String>,
    /// The image's history with each entry's layer bytes (empty when the history does not
    /// match the layers): what each step of the last build made (check.rs, `Rerun`).
    pub steps: Vec<LayerStep>,
}

/// An instruction of an image's history and the bytes of the layer it made (0: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerStep {
    pub created_by: String,
    pub bytes: u64,
}

/// The history entries with their layers' sizes: the entries that are not `empty_layer` take
/// the layers in order. Empty when their count is not the layers' (nothing to go by).
pub(crate) fn layer_steps(history: &[cicache_registry::History], sizes: &[u64]) -> Vec<LayerStep> {
    if history.iter().filter(|h| !h.empty_layer).count() != sizes.len() {
        return Vec::new();
    }
    let mut sizes = sizes.iter();
    history
        .iter()
        .map(|h| LayerStep {
            created_by: h.created_by.clone(),
            bytes: if h.empty_layer {
                0
            } else {
                sizes.next().copied().unwrap_or(0)
            },
        })
        .collect()
}

/// A registry exporter's cache manifest the build reads, with the layer blobs it lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheManifest {
    pub tag: String,
    pub layers: BTreeSet<String>,
}

/// The layer blobs a manifest lists: an image manifest's (and BuildKit's cache manifest's,
/// `image-manifest=true`) `layers`, or the blobs a BuildKit cache index lists beside its
/// cache config.
fn layer_blobs(m: &Manifest) -> Vec<String> {
    if m.is_index() {
        return m
            .entries()
            .into_iter()
            .filter(|e| !e.is_manifest())
            .map(|e| e.digest)
            .collect();
    }
    m.body
        .get("layers")
        .and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|l| l.get("digest")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// What the check reads from the registry.
#[derive(Debug, Default)]
pub(crate) struct CheckReads {
    /// The tags that carry the labels and exist (see [`RegistryAccess::check_reads`]).
    pub tags: Vec<CacheTag>,
    /// The registry exporter's cache manifests that exist.
    pub caches: Vec<CacheManifest>,
}

/// Registry access with the build's time limit.
#[derive(Debug, Clone, Copy)]
pub struct RegistryAccess {
    pub timeout: Duration,
}

impl RegistryAccess {
    /// A distribution API client for the repository (ECR: with a GetAuthorizationToken login).
    pub(crate) fn client(&self, image: &str) -> RegResult<OciClient> {
        self.client_within(image, None)
    }

    /// [`Self::client`] whose requests wait at most `cap` (and never longer than the timeout).
    fn client_within(&self, image: &str, cap: Option<Duration>) -> RegResult<OciClient> {
        let target = Target::parse(image).map_err(err)?;
        let limit = match cap {
            Some(cap) => self.timeout.min(cap),
            None => self.timeout,
        };
        let timeout = Some(limit);
        let opts = ConnectOptions {
            timeout,
            ..ConnectOptions::default()
        };
        // ECR: its distribution API with a GetAuthorizationToken login (cicache-registry).
        Registry::connect(&target, &opts)
            .and_then(|r| {
                r.into_reader(&OciOptions {
                    plain_http: None,
                    timeout,
                })
            })
            .map_err(err)
    }

    /// Whether the registry has `REPO:tag`. An error means it could not be asked.
    pub(crate) fn has_tag(&self, image: &str, tag: &str) -> RegResult<bool> {
        let target = Target::parse(image).map_err(err)?;
        let opts = ConnectOptions {
            timeout: Some(self.timeout),
            ..ConnectOptions::default()
        };
        match Registry::connect(&target, &opts).map_err(err)? {
            Registry::Oci(c) => Ok(c.head_manifest(tag).map_err(err)?.is_some()),
            Registry::Ecr { client, target } => match client.images(&target.repository) {
                Ok(images) => Ok(images.iter().any(|i| i.tags.iter().any(|t| t == tag))),
                Err(cicache_registry::Error::RepositoryNotFound { .. }) => Ok(false),
                Err(e) => Err(err(e)),
            },
        }
    }

    /// The tags of `refs` (full refs, in the order the check prefers them: the cache tags
    /// with inline cache, the image tags with the registry exporter) that exist and name an
    /// image, each with the manifest to tag (an index as pushed, attestations and all), the
    /// labels, platform and layers of its image for `platform` (an OCI index is read through
    /// to that image). A BuildKit cache manifest names no image: left out.
    ///
    /// And of `cache_manifests` (the registry exporter's cache refs) those that exist, with
    /// the layer blobs they list: whether they hold an image tag's layers (check.rs).
    pub(crate) fn check_reads(
        &self,
        image: &str,
        refs: &[String],
        cache_manifests: &[String],
        platform: &str,
    ) -> RegResult<CheckReads> {
        let client = self.client(image)?;
        let platform = platform_of(platform);
        let tag_of = |r: &'_ str| r.rsplit_once(':').map(|(_, t)| t.to_string());
        let mut out = CheckReads::default();
        for r in refs {
            let tag = tag_of(r).unwrap_or_else(|| r.clone());
            let img = match client.image_config(&tag, &platform) {
                Ok(Some(img)) => img,
                Ok(None) | Err(cicache_registry::Error::RepositoryNotFound { .. }) => continue,
                Err(e) => return Err(err(e)),
            };
            out.tags.push(CacheTag {
                tag,
                platform: img.config.platform.to_string(),
                labels: img.config.labels,
                layers: layer_blobs(&img.manifest),
                steps: layer_steps(&img.config.history, &img.manifest.layer_sizes()),
                manifest: img.tagged,
            });
        }
        for r in cache_manifests {
            let tag = tag_of(r).unwrap_or_else(|| r.clone());
            let m = match client.manifest(&tag) {
                Ok(Some(m)) => m,
                Ok(None) | Err(cicache_registry::Error::RepositoryNotFound { .. }) => continue,
                Err(e) => return Err(err(e)),
            };
            out.caches.push(CacheManifest {
                tag,
                layers: layer_blobs(&m).into_iter().collect(),
            });
        }
        Ok(out)
    }

    /// The newest base in the registry built from the same base Dockerfile (its
    /// `io.cicache.base.name` label), other than `tag`: its tag and per-input hashes. What an
    /// agent without a record of its own compares with. Reads at most 50 base tags.
    pub(crate) fn previous_base(
        &self,
        image: &str,
        name: &str,
        tag: &str,
        platform: &str,
    ) -> RegResult<Option<(String, BTreeMap<String, String>)>> {
        let client = self.client(image)?;
        let platform = platform_of(platform);
        let tags = match client.tags() {
            Ok(t) => t,
            Err(cicache_registry::Error::RepositoryNotFound { .. }) => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        let mut best: Option<(SystemTime, String, BTreeMap<String, String>)> = None;
        for t in tags
            .iter()
            .filter(|t| t.starts_with(base::TAG_PREFIX) && t.as_str() != tag)
            .take(50)
        {
            let Some(img) = client.image_config(t, &platform).map_err(err)? else {
                continue;
            };
            let cfg = img.config;
            if cfg.label(base::LABEL_NAME) != Some(name) {
                continue;
            }
            let Some(inputs) = cfg
                .label(base::LABEL_INPUTS)
                .and_then(|s| serde_json::from_str(s).ok())
            else {
                continue;
            };
            let created = cfg.created.unwrap_or(std::time::UNIX_EPOCH);
            if best.as_ref().is_none_or(|b| created > b.0) {
                best = Some((created, t.clone(), inputs));
            }
        }
        Ok(best.map(|(_, t, i)| (t, i)))
    }

    /// The image a `FROM` reference is, as a digest or image id: the local image's repo digest,
    /// else the local image id (a `docker load`ed image), else the registry's digest of the
    /// tag; `None` when neither the daemon nor the registry can say, or when the image has
    /// `ONBUILD` triggers (they read context files no line of the Dockerfile names).
    pub(crate) fn resolve_image(
        &self,
        docker: &Docker,
        reference: &str,
        platform: &str,
    ) -> Option<String> {
        if let Some((_, digest)) = reference.split_once('@') {
            return Some(digest.to_string());
        }
        let (name, tag) = match reference.rfind(':') {
            Some(i) if !reference[i..].contains('/') => (&reference[..i], &reference[i + 1..]),
            _ => (reference, "latest"),
        };
        if let Some(found) = local_image_digest(docker, reference, name) {
            return found;
        }
        let first = name.split('/').next().unwrap_or_default();
        let qualified = if first.contains('.') || first.contains(':') || first == "localhost" {
            name.to_string()
        } else if name.contains('/') {
            format!("docker.io/{name}")
        } else {
            format!("docker.io/library/{name}")
        };
        // A registry the agent cannot reach (Docker Hub behind a mirror) costs at most 5 s.
        let client = self
            .client_within(&qualified, Some(Duration::from_secs(5)))
            .ok()?;
        let img = client
            .image_config(tag, &platform_of(platform))
            .ok()
            .flatten()?;
        if !img.config.onbuild.is_empty() {
            return None;
        }
        Some(img.tagged.digest)
    }
}

/// The local daemon's answer for [`RegistryAccess::resolve_image`]: `None` when it does not
/// have the image, `Some(None)` when it has one with ONBUILD triggers.
fn local_image_digest(docker: &Docker, reference: &str, name: &str) -> Option<Option<String>> {
    let out = docker
        .output(&[
            "image".into(),
            "inspect".into(),
            "--format".into(),
            "{{json .Config.OnBuild}}|{{json .RepoDigests}}|{{.Id}}".into(),
            reference.into(),
        ])
        .ok()?;
    let parsed = (|| {
        let (onbuild, rest) = out.trim().split_once('|')?;
        let onbuild: Vec<String> = serde_json::from_str(onbuild).unwrap_or_default();
        if !onbuild.is_empty() {
            return None;
        }
        let (digests, id) = rest.split_once('|')?;
        let digests: Vec<String> = serde_json::from_str(digests).unwrap_or_default();
        let own = digests
            .iter()
            .find(|d| d.split_once('@').is_some_and(|(n, _)| n == name))
            .or(digests.first())
            .and_then(|d| d.split_once('@').map(|(_, x)| x.to_string()));
        Some(own.unwrap_or_else(|| id.to_string()))
    })();
    Some(parsed)
}

/// The platform a build is for (`os/arch[/variant]`), else this machine's.
fn platform_of(s: &str) -> Platform {
    Platform::parse(s).unwrap_or_else(Platform::host)
}

/// Whether the local daemon has the image.
pub(crate) fn local_image(docker: &Docker, reference: &str) -> bool {
    docker
        .output(&[
            "image".into(),
            "inspect".into(),
            "--format".into(),
            "{{.Id}}".into(),
            reference.into(),
        ])
        .is_ok()
}

/// The platform docker builds for: `DOCKER_DEFAULT_PLATFORM` when set, else the daemon's
/// (`known`: what the capability calls read, else `docker version` is asked).
pub(crate) fn build_platform(docker: &Docker, known: Option<&str>) -> String {
    std::env::var("DOCKER_DEFAULT_PLATFORM")
        .ok()
        .filter(|p| !p.is_empty())
        .or_else(|| known.map(str::to_string))
        .unwrap_or_else(|| daemon_platform(docker))
}

/// The daemon's platform (`linux/amd64`), else this machine's.
pub(crate) fn daemon_platform(docker: &Docker) -> String {
    docker
        .output(&[
            "version".into(),
            "--format".into(),
            "{{.Server.Os}}/{{.Server.Arch}}".into(),
        ])
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| s.contains('/') && !s.contains(' '))
        .unwrap_or_else(base::host_platform)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_takes_the_layer_sizes_in_order() {
        let h = |c: &str, empty| cicache_registry::History {
            created_by: c.into(),
            empty_layer: empty,
        };
        let history = [h("ADD", false), h("WORKDIR /app", true), h("RUN a", false)];
        let steps = layer_steps(&history, &[30, 16]);
        let bytes: Vec<(&str, u64)> = steps
            .iter()
            .map(|s| (s.created_by.as_str(), s.bytes))
            .collect();
        assert_eq!(bytes, [("ADD", 30), ("WORKDIR /app", 0), ("RUN a", 16)]);
        // A history that does not match the layers says nothing.
        assert!(layer_steps(&history, &[30]).is_empty());
        assert!(layer_steps(&history, &[30, 16, 1]).is_empty());
        assert!(layer_steps(&[], &[]).is_empty());
    }

    #[test]
    fn registry_hosts() {
        assert!(has_registry_host("127.0.0.1:5000/app"));
        assert!(has_registry_host("123.dkr.ecr.eu-west-1.amazonaws.com/app"));
        assert!(has_registry_host("localhost/app"));
        assert!(!has_registry_host("app"));
        assert!(!has_registry_host("team/app"));
    }
}
