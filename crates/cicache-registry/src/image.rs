//! Images as registries store them now: an image is either one image manifest, or an image
//! index (OCI `application/vnd.oci.image.index.v1+json`, Docker's manifest list) that names
//! an image manifest per platform, and beside them attestation manifests (provenance, SBOM)
//! that Docker 23+ with buildx pushes by default:
//!
//! ```text
//! app:cache ──> index ──┬─> image manifest (linux/amd64) ──> config (labels, created), layers
//!                       └─> attestation manifest (unknown/unknown,
//!                           vnd.docker.reference.type=attestation-manifest) ──> in-toto layers
//! ```
//!
//! This module picks the image of a platform out of that ([`Manifest::entry_for`]; pure) and
//! reads an image config into a type ([`ImageConfig`]). [`crate::oci::OciClient::image_config`]
//! fetches along the way.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use serde_json::Value;

use crate::model::parse_time;
use crate::oci::{
    MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST, Manifest,
};

/// Config media types of images (not of BuildKit cache manifests, nor of artifacts).
pub const IMAGE_CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
/// The annotation that marks an attestation manifest in an index (BuildKit).
pub const ANN_REFERENCE_TYPE: &str = "vnd.docker.reference.type";
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";
/// Indexes inside indexes followed at most this deep.
pub(crate) const MAX_NESTING: usize = 4;

/// An operating system and CPU architecture (and variant), as in an index entry or an image
/// config: `linux/amd64`, `linux/arm64/v8`, `linux/arm/v7`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.filter(|v| !v.is_empty()).map(str::to_string),
        }
    }

    /// `os/architecture[/variant]`; `None` when it is not of that form.
    pub fn parse(s: &str) -> Option<Platform> {
        let mut parts = s.trim().split('/');
        let os = parts.next().filter(|p| !p.is_empty())?;
        let arch = parts.next().filter(|p| !p.is_empty())?;
        let variant = parts.next();
        if parts.next().is_some() {
            return None;
        }
        Some(Platform::new(os, arch, variant))
    }

    /// The platform this program runs on, named as Docker names it: what `docker build`
    /// on this machine builds for unless told otherwise.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform::new(std::env::consts::OS, arch, None)
    }

    /// `unknown/unknown`: what BuildKit writes on attestation manifests.
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" && self.architecture == "unknown"
    }

    /// The variant as a number (`v8` -> 8), the architecture's default when none is given
    /// (amd64: v1, arm64: v8, arm: v7).
    fn variant_level(&self) -> Option<u32> {
        match &self.variant {
            Some(v) => v.strip_prefix('v').and_then(|n| n.parse().ok()),
            None => match self.architecture.as_str() {
                "amd64" => Some(1),
                "arm64" => Some(8),
                "arm" => Some(7),
                _ => None,
            },
        }
    }

    /// How well an image built for `image` runs here (`self`): `None` when it does not;
    /// higher is closer. Same OS and architecture, and a variant this platform runs (an
    /// `arm/v6` image runs on `arm/v7`; `amd64/v3` does not run on plain `amd64`).
    pub fn runs(&self, image: &Platform) -> Option<u32> {
        if !self.os.eq_ignore_ascii_case(&image.os) || self.architecture != image.architecture {
            return None;
        }
        match (self.variant_level(), image.variant_level()) {
            (Some(want), Some(have)) if have <= want => Some(100 - (want - have).min(99)),
            (Some(_), Some(_)) => None,
            _ if self.variant == image.variant => Some(100),
            (_, None) if image.variant.is_none() => Some(50),
            _ => None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = String;

    fn from_str(s: &str) -> Result<Platform, String> {
        Platform::parse(s).ok_or_else(|| {
            format!("{s:?}: a platform is os/architecture[/variant], e.g. linux/amd64")
        })
    }
}

/// The string values of a JSON object (annotations, labels); others are left out.
fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// One entry of an index: what it points at, and for which platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub platform: Option<Platform>,
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    fn parse(v: &Value) -> Option<Descriptor> {
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let platform = v.get("platform").map(|p| {
            Platform::new(
                p.get("os").and_then(Value::as_str).unwrap_or_default(),
                p.get("architecture")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                p.get("variant").and_then(Value::as_str),
            )
        });
        let annotations = string_map(v.get("annotations"));
        Some(Descriptor {
            media_type: s(v, "mediaType").unwrap_or_default(),
            digest: s(v, "digest")?,
            size: v.get("size").and_then(Value::as_u64).unwrap_or(0),
            platform,
            annotations,
        })
    }

    /// An attestation manifest (provenance, SBOM) rather than an image: BuildKit marks
    /// them with `vnd.docker.reference.type=attestation-manifest` and platform
    /// `unknown/unknown`.
    pub fn is_attestation(&self) -> bool {
        self.annotations.get(ANN_REFERENCE_TYPE).map(String::as_str) == Some(ATTESTATION_MANIFEST)
            || self.platform.as_ref().is_some_and(Platform::is_unknown)
    }

    /// Points at a manifest or an index (an entry without a media type is taken as one).
    /// BuildKit's cache index (`--cache-to type=registry` without `image-manifest=true`)
    /// lists layer blobs and its cache config in `manifests`: those are not.
    pub fn is_manifest(&self) -> bool {
        self.media_type.is_empty()
            || [
                MEDIA_OCI_MANIFEST,
                MEDIA_OCI_INDEX,
                MEDIA_DOCKER_MANIFEST,
                MEDIA_DOCKER_LIST,
            ]
            .contains(&self.media_type.as_str())
    }

    /// An image of some platform: a manifest that is not an attestation.
    pub fn is_image(&self) -> bool {
        self.is_manifest() && !self.is_attestation()
    }
}

impl Manifest {
    /// The entries of an index, in its order (none for an image manifest).
    pub fn entries(&self) -> Vec<Descriptor> {
        self.body
            .get("manifests")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Descriptor::parse).collect())
            .unwrap_or_default()
    }

    /// The entry of an index with the image for `platform`: the closest platform the
    /// platform runs ([`Platform::runs`]), attestation manifests and blobs left out; when no
    /// entry names a platform, the first image entry. `None` when there is none.
    pub fn entry_for(&self, platform: &Platform) -> Option<Descriptor> {
        let images: Vec<Descriptor> = self
            .entries()
            .into_iter()
            .filter(Descriptor::is_image)
            .collect();
        let best = images
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                let score = platform.runs(d.platform.as_ref()?)?;
                Some((score, std::cmp::Reverse(i), d))
            })
            .max_by_key(|(score, i, _)| (*score, *i))
            .map(|(_, _, d)| d.clone());
        best.or_else(|| images.into_iter().find(|d| d.platform.is_none()))
    }

    /// The config descriptor when this is an image manifest (its config has an image
    /// config media type): `(digest, size)`.
    pub fn image_config_descriptor(&self) -> Option<(String, u64)> {
        if self.is_index() {
            return None;
        }
        let c = self.body.get("config")?;
        let media = c.get("mediaType").and_then(Value::as_str)?;
        if !IMAGE_CONFIG_TYPES.contains(&media) {
            return None;
        }
        Some((
            c.get("digest")?.as_str()?.to_string(),
            c.get("size").and_then(Value::as_u64).unwrap_or(0),
        ))
    }
}

/// What cicache reads from an image config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageConfig {
    /// The config blob's digest.
    pub digest: String,
    /// The platform the image was built for (`os`, `architecture`, `variant`).
    pub platform: Platform,
    /// `created`, when it reads as a time.
    pub created: Option<SystemTime>,
    /// `config.Labels` (labels whose value is not a string are left out).
    pub labels: BTreeMap<String, String>,
    /// `config.OnBuild`: triggers that run in a build `FROM` this image.
    pub onbuild: Vec<String>,
    /// `history`: one entry per instruction that built the image, base image's first; those
    /// that are not `empty_layer` match the manifest's layers in order.
    pub history: Vec<History>,
}

/// One entry of an image config's `history`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct History {
    /// The instruction, as the builder wrote it (BuildKit: `RUN /bin/sh -c pip install ... #
    /// buildkit`, the `--mount` flags left out).
    pub created_by: String,
    /// Whether the instruction made no layer.
    pub empty_layer: bool,
}

impl ImageConfig {
    /// Reads a config blob; `None` when it is not JSON.
    pub fn parse(digest: &str, bytes: &[u8]) -> Option<ImageConfig> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        let str_of = |k: &str| v.get(k).and_then(Value::as_str);
        let inner = v.get("config");
        let labels = string_map(inner.and_then(|c| c.get("Labels")));
        let onbuild = inner
            .and_then(|c| c.get("OnBuild"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let history = v
            .get("history")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|h| History {
                        created_by: h
                            .get("created_by")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        empty_layer: h
                            .get("empty_layer")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(ImageConfig {
            digest: digest.to_string(),
            platform: Platform::new(
                str_of("os").unwrap_or_default(),
                str_of("architecture").unwrap_or_default(),
                str_of("variant"),
            ),
            created: str_of("created").and_then(parse_time),
            labels,
            onbuild,
            history,
        })
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// An image as a reference names it, resolved to one platform
/// ([`crate::oci::OciClient::image_config`]).
#[derive(Debug, Clone)]
pub struct Image {
    /// The manifest the reference names, as fetched: an index (what Docker 23+ with buildx
    /// pushes: the image beside its attestations, or several platforms) or an image
    /// manifest. This is the one to give another tag (`put_manifest` of its `raw` bytes
    /// under its `media_type`): the index keeps the attestations and other platforms with
    /// the image, and the tag gets the same digest.
    pub tagged: Manifest,
    /// The image manifest of the platform (the same as `tagged` when that is one).
    pub manifest: Manifest,
    /// Its config.
    pub config: ImageConfig,
}

impl Image {
    /// Bytes of the platform's image (config and layers).
    pub fn size(&self) -> u64 {
        self.manifest.image_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn index(entries: Value) -> Manifest {
        let body = json!({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": entries});
        Manifest {
            digest: "sha256:ii".into(),
            media_type: MEDIA_OCI_INDEX.into(),
            raw: body.to_string().into_bytes(),
            body,
        }
    }

    fn entry(digest: &str, platform: Option<(&str, &str, Option<&str>)>) -> Value {
        let mut e = json!({"mediaType": MEDIA_OCI_MANIFEST, "digest": digest, "size": 100});
        if let Some((os, arch, variant)) = platform {
            e["platform"] = json!({"os": os, "architecture": arch});
            if let Some(v) = variant {
                e["platform"]["variant"] = json!(v);
            }
        }
        e
    }

    fn attestation(digest: &str, of: &str) -> Value {
        json!({
            "mediaType": MEDIA_OCI_MANIFEST, "digest": digest, "size": 50,
            "annotations": {ANN_REFERENCE_TYPE: ATTESTATION_MANIFEST, "vnd.docker.reference.digest": of},
            "platform": {"os": "unknown", "architecture": "unknown"}
        })
    }

    fn pick(m: &Manifest, p: &str) -> Option<String> {
        m.entry_for(&Platform::parse(p).unwrap()).map(|d| d.digest)
    }

    #[test]
    fn platforms_parse_and_print() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            Platform::parse("linux/amd64").unwrap().to_string(),
            "linux/amd64"
        );
        for bad in ["", "linux", "linux/", "/amd64", "a/b/c/d"] {
            assert!(Platform::parse(bad).is_none(), "{bad}");
        }
        let host = Platform::host();
        assert!(!host.os.is_empty() && !host.architecture.is_empty());
        assert_ne!(host.architecture, "x86_64");
    }

    #[test]
    fn the_image_is_picked_and_the_attestation_skipped() {
        // What Docker 26 + buildx pushes: the image, then its attestation manifest.
        let m = index(json!([
            entry("sha256:img", Some(("linux", "amd64", None))),
            attestation("sha256:att", "sha256:img"),
        ]));
        assert_eq!(pick(&m, "linux/amd64").as_deref(), Some("sha256:img"));
        assert_eq!(pick(&m, "linux/arm64"), None);
        // An attestation listed first, or one marked only by its annotation, is never picked.
        let mut only_annotated = attestation("sha256:att2", "sha256:img");
        only_annotated["platform"] = json!({"os": "linux", "architecture": "amd64"});
        let m = index(json!([
            attestation("sha256:att", "sha256:img"),
            only_annotated,
            entry("sha256:img", Some(("linux", "amd64", None))),
        ]));
        assert_eq!(pick(&m, "linux/amd64").as_deref(), Some("sha256:img"));
        let e = m.entries();
        assert_eq!(e.iter().filter(|d| d.is_attestation()).count(), 2);
    }

    #[test]
    fn platforms_match_by_os_architecture_and_variant() {
        let m = index(json!([
            entry("sha256:amd", Some(("linux", "amd64", None))),
            entry("sha256:amd3", Some(("linux", "amd64", Some("v3")))),
            entry("sha256:arm64", Some(("linux", "arm64", Some("v8")))),
            entry("sha256:armv6", Some(("linux", "arm", Some("v6")))),
            entry("sha256:armv7", Some(("linux", "arm", Some("v7")))),
            entry("sha256:win", Some(("windows", "amd64", None))),
        ]));
        assert_eq!(pick(&m, "linux/amd64").as_deref(), Some("sha256:amd"));
        assert_eq!(pick(&m, "linux/amd64/v3").as_deref(), Some("sha256:amd3"));
        assert_eq!(pick(&m, "linux/amd64/v2").as_deref(), Some("sha256:amd"));
        // arm64 without a variant is v8.
        assert_eq!(pick(&m, "linux/arm64").as_deref(), Some("sha256:arm64"));
        assert_eq!(pick(&m, "linux/arm/v7").as_deref(), Some("sha256:armv7"));
        assert_eq!(pick(&m, "linux/arm/v6").as_deref(), Some("sha256:armv6"));
        assert_eq!(pick(&m, "linux/arm/v5"), None);
        assert_eq!(pick(&m, "windows/amd64").as_deref(), Some("sha256:win"));
        assert_eq!(pick(&m, "linux/s390x"), None);
    }

    #[test]
    fn entries_without_platform_and_cache_indexes() {
        let m = index(json!([entry("sha256:only", None)]));
        assert_eq!(pick(&m, "linux/amd64").as_deref(), Some("sha256:only"));
        // BuildKit's cache index lists blobs: no image in it.
        let m = index(json!([
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:l1", "size": 9},
            {"mediaType": "application/vnd.buildkit.cacheconfig.v0", "digest": "sha256:cc", "size": 3},
        ]));
        assert_eq!(pick(&m, "linux/amd64"), None);
        assert!(m.entries().iter().all(|d| !d.is_manifest()));
    }

    #[test]
    fn configs_read_into_types() {
        let bytes = json!({
            "architecture": "arm", "os": "linux", "variant": "v7",
            "created": "2026-11-25T08:00:00.123456789Z",
            "config": {"Labels": {"io.cicache.base": "r/app:base-1", "n": 3}, "OnBuild": ["RUN x"]},
            "history": [
                {"created_by": "/bin/sh -c #(nop) ADD file:1 in / "},
                {"created_by": "WORKDIR /app", "empty_layer": true, "comment": "buildkit.dockerfile.v0"},
                {"empty_layer": "yes"},
                "not an object",
            ],
        })
        .to_string();
        let c = ImageConfig::parse("sha256:c", bytes.as_bytes()).unwrap();
        assert_eq!(c.platform.to_string(), "linux/arm/v7");
        assert_eq!(c.label("io.cicache.base"), Some("r/app:base-1"));
        assert_eq!(c.label("n"), None);
        assert_eq!(c.onbuild, vec!["RUN x"]);
        assert!(c.created.is_some());
        assert_eq!(
            c.history,
            vec![
                History {
                    created_by: "/bin/sh -c #(nop) ADD file:1 in / ".into(),
                    empty_layer: false
                },
                History {
                    created_by: "WORKDIR /app".into(),
                    empty_layer: true
                },
                History::default(),
                History::default(),
            ]
        );
        let bare = ImageConfig::parse("sha256:c", br#"{"config": {"Labels": null}}"#).unwrap();
        assert!(bare.labels.is_empty() && bare.created.is_none() && bare.history.is_empty());
        assert!(ImageConfig::parse("sha256:c", b"not json").is_none());
    }
}
