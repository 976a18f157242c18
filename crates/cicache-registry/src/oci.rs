//! Any registry through the OCI distribution API, for the tag commands: tags list, manifests
//! by tag and digest, images resolved to a platform ([`OciClient::image_config`]), manifest
//! DELETE, and blob/manifest upload (for tests).
//!
//! The HTTP side (authentication, retries, timeouts, redaction of secrets from errors) is
//! [`crate::client`], shared with the `oci://` store. Credentials and tokens go only into
//! `Authorization` headers, never into URLs, errors or logs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::client::{Client, ClientOptions, Failure};
use crate::credentials::Credentials;
use crate::error::{Error, Result};
use crate::image::{IMAGE_CONFIG_TYPES, Image, ImageConfig, MAX_NESTING, Platform};
use crate::model::{ImageRecord, parse_time};
use crate::reference::Target;
use crate::tags::{self, TagClass};

pub use crate::client::sha256_digest;

pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// A distribution API client for one repository.
pub struct OciClient {
    http: Client,
    target: Target,
}

/// Options for [`OciClient::new`].
#[derive(Debug, Clone, Default)]
pub struct OciOptions {
    /// Use `http://` instead of `https://` (default: only for loopback registries).
    pub plain_http: Option<bool>,
    /// Bound on each request.
    pub timeout: Option<Duration>,
}

/// A manifest as fetched: digest, media type and parsed body.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: String,
    pub media_type: String,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Manifest {
    pub fn is_index(&self) -> bool {
        self.media_type == MEDIA_OCI_INDEX
            || self.media_type == MEDIA_DOCKER_LIST
            || self.body.get("manifests").is_some()
    }

    /// `artifactType`, else the config media type.
    pub fn artifact_type(&self) -> Option<String> {
        self.body
            .get("artifactType")
            .and_then(Value::as_str)
            .or_else(|| {
                self.body
                    .get("config")
                    .and_then(|c| c.get("mediaType"))
                    .and_then(Value::as_str)
            })
            .map(str::to_string)
    }

    fn descriptors(&self, key: &str) -> Vec<&Value> {
        self.body
            .get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    }

    /// Config and layer bytes.
    pub fn image_size(&self) -> u64 {
        let config = self
            .body
            .get("config")
            .and_then(|c| c.get("size"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let layers: u64 = self
            .descriptors("layers")
            .iter()
            .filter_map(|l| l.get("size").and_then(Value::as_u64))
            .fold(0u64, u64::saturating_add);
        config.saturating_add(layers)
    }

    /// Each layer's size, in the manifest's order (0 where the descriptor gives none).
    pub fn layer_sizes(&self) -> Vec<u64> {
        self.descriptors("layers")
            .iter()
            .map(|l| l.get("size").and_then(Value::as_u64).unwrap_or(0))
            .collect()
    }

    pub fn children(&self) -> Vec<String> {
        self.descriptors("manifests")
            .iter()
            .filter_map(|m| m.get("digest").and_then(Value::as_str))
            .map(str::to_string)
            .collect()
    }

    fn created_annotation(&self) -> Option<SystemTime> {
        self.body
            .get("annotations")
            .and_then(|a| a.get("org.opencontainers.image.created"))
            .and_then(Value::as_str)
            .and_then(parse_time)
    }

    /// The newest `buildkit/createdat` of the layers: BuildKit writes it on the layers of the
    /// cache manifests it exports (`--cache-to type=registry`).
    fn buildkit_created(&self) -> Option<SystemTime> {
        self.descriptors("layers")
            .iter()
            .filter_map(|l| {
                l.get("annotations")
                    .and_then(|a| a.get("buildkit/createdat"))
                    .and_then(Value::as_str)
                    .and_then(parse_time)
            })
            .max()
    }

    fn config_digest(&self) -> Option<(String, String)> {
        let c = self.body.get("config")?;
        Some((
            c.get("digest")?.as_str()?.to_string(),
            c.get("mediaType")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        ))
    }
}

impl OciClient {
    pub fn new(target: &Target, creds: Option<Credentials>, opts: &OciOptions) -> OciClient {
        let http = Client::new(
            target,
            creds,
            ClientOptions {
                plain_http: opts.plain_http.unwrap_or_else(|| target.is_loopback()),
                timeout: opts.timeout.unwrap_or(Duration::from_secs(120)),
                whole_request: true,
                push_scope: false,
                login_advice: "pass --username and --password-stdin",
            },
        );
        OciClient {
            http,
            target: target.clone(),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The library's error for a failure of `operation`.
    fn error(&self, f: Failure) -> Error {
        match f {
            Failure::Network {
                operation,
                url,
                detail,
                ..
            } => Error::Network {
                operation: operation.to_string(),
                url,
                detail,
            },
            Failure::Status {
                operation,
                url,
                status,
                detail,
                ..
            } => Error::Http {
                operation: operation.to_string(),
                url,
                status,
                detail,
            },
            Failure::Forbidden { operation, detail } => Error::Forbidden {
                registry: self.target.registry.clone(),
                what: format!("{operation} ({})", self.target.repository),
                detail,
            },
            Failure::Unauthorized { detail, hint } => Error::Unauthorized {
                registry: self.target.registry.clone(),
                detail,
                hint,
            },
            Failure::RepositoryUnknown => Error::RepositoryNotFound {
                registry: self.target.registry.clone(),
                repository: self.target.repository.clone(),
                hint: "a registry creates a repository with its first push: run a build that pushes the image or its cache".into(),
            },
            Failure::DeleteDisabled { detail } => Error::DeleteDisabled {
                registry: self.target.registry.clone(),
                detail,
            },
            Failure::Bad { what, detail } => Error::BadResponse { what, detail },
            Failure::Io(e) => Error::BadResponse {
                what: format!("a local file for {}", self.target.image()),
                detail: e.to_string(),
            },
        }
    }

    /// Checks that the registry answers the API and accepts the credentials (`GET /v2/`).
    pub fn ping(&self) -> Result<()> {
        self.http.ping().map_err(|f| self.error(f))
    }

    /// All tags of the repository, sorted. A repository that does not exist is an error.
    pub fn tags(&self) -> Result<Vec<String>> {
        self.http.tags().map_err(|f| self.error(f))
    }

    /// A manifest by tag or digest; `None` when there is none.
    pub fn manifest(&self, reference: &str) -> Result<Option<Manifest>> {
        let Some(f) = self
            .http
            .get_manifest(reference, ACCEPT_MANIFESTS)
            .map_err(|f| self.error(f))?
        else {
            return Ok(None);
        };
        let body: Value = serde_json::from_slice(&f.bytes).map_err(|e| Error::BadResponse {
            what: format!("the manifest {}:{reference}", self.target.image()),
            detail: e.to_string(),
        })?;
        let media_type = body
            .get("mediaType")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or(f.content_type)
            .unwrap_or_default();
        Ok(Some(Manifest {
            digest: f.digest,
            media_type,
            body,
            raw: f.bytes,
        }))
    }

    /// The digest a tag points at (`HEAD`), `None` when the tag does not exist.
    pub fn head_manifest(&self, reference: &str) -> Result<Option<String>> {
        Ok(self
            .http
            .head_manifest(reference, ACCEPT_MANIFESTS)
            .map_err(|f| self.error(f))?
            .filter(|d| !d.is_empty()))
    }

    /// When a blob was stored, from its `Last-Modified` (the registry's own record of the push).
    fn blob_time(&self, digest: &str) -> Result<Option<SystemTime>> {
        match self.http.head_blob(digest) {
            Ok(head) => Ok(head.and_then(|h| h.last_modified)),
            Err(Failure::Status { .. }) => Ok(None),
            Err(f) => Err(self.error(f)),
        }
    }

    /// A small blob read whole; `None` when missing (or the registry will not give it).
    fn blob_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        match self.http.get_small_blob(digest) {
            Ok(b) => Ok(b),
            Err(Failure::Status { .. }) => Ok(None),
            Err(f) => Err(self.error(f)),
        }
    }

    /// A small JSON blob (an image config) by digest; `None` when missing or not JSON.
    pub fn blob_json(&self, digest: &str) -> Result<Option<Value>> {
        Ok(self
            .blob_bytes(digest)?
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// The config of an image manifest; `None` when `m` is not an image (an index, a
    /// BuildKit cache manifest, a store entry) or its config is missing or not JSON.
    pub fn config(&self, m: &Manifest) -> Result<Option<ImageConfig>> {
        let Some((digest, _)) = m.image_config_descriptor() else {
            return Ok(None);
        };
        Ok(self
            .blob_bytes(&digest)?
            .and_then(|b| ImageConfig::parse(&digest, &b)))
    }

    /// The image manifest of `platform` that `m` stands for: `m` itself when it is an image
    /// manifest, else the index entry for the platform ([`Manifest::entry_for`]: attestation
    /// manifests are skipped), followed through nested indexes. `None` when there is none.
    pub fn platform_manifest(&self, m: &Manifest, platform: &Platform) -> Result<Option<Manifest>> {
        let mut current = m.clone();
        for _ in 0..MAX_NESTING {
            if !current.is_index() {
                return Ok(current.image_config_descriptor().map(|_| current));
            }
            let Some(entry) = current.entry_for(platform) else {
                return Ok(None);
            };
            match self.manifest(&entry.digest)? {
                Some(next) => current = next,
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The image that `reference` (a tag or digest) names for `platform`, with its config:
    /// through an index (Docker 23+ with buildx pushes one, holding the image and its
    /// attestation manifest) to the platform's image manifest. `None` when the reference
    /// does not exist or names no image for the platform (a BuildKit cache manifest, a store
    /// entry, an index without that platform). To give the image another tag, put
    /// [`Image::tagged`]: see there.
    ///
    /// `platform`: usually [`Platform::host`], what `docker build` here builds for.
    pub fn image_config(&self, reference: &str, platform: &Platform) -> Result<Option<Image>> {
        let Some(tagged) = self.manifest(reference)? else {
            return Ok(None);
        };
        let Some(manifest) = self.platform_manifest(&tagged, platform)? else {
            return Ok(None);
        };
        let Some(config) = self.config(&manifest)? else {
            return Ok(None);
        };
        Ok(Some(Image {
            tagged,
            manifest,
            config,
        }))
    }

    /// Every image `m` stands for, one per platform (attestation manifests and blobs left
    /// out), each with its config; the platform-independent questions (labels that name a
    /// base) ask all of them.
    pub fn images_of(&self, m: &Manifest) -> Result<Vec<(Manifest, ImageConfig)>> {
        let mut out = Vec::new();
        let mut queue = vec![(m.clone(), 0)];
        while let Some((current, depth)) = queue.pop() {
            if !current.is_index() {
                if let Some(c) = self.config(&current)? {
                    out.push((current, c));
                }
                continue;
            }
            if depth >= MAX_NESTING {
                continue;
            }
            for entry in current.entries().into_iter().rev().filter(|e| e.is_image()) {
                if let Some(child) = self.manifest(&entry.digest)? {
                    queue.push((child, depth + 1));
                }
            }
        }
        Ok(out)
    }

    /// The base tags of this repository (`base-<hash>`) that its other images (app images,
    /// cache tags; `images` as [`OciClient::images`] lists them) name in their
    /// [`tags::LABEL_BASE`] label, in the image of any platform: `gc --keep-bases` never
    /// deletes those.
    pub fn base_tags_in_use(&self, images: &[ImageRecord]) -> Result<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        for image in images {
            let names_a_base = image
                .tags
                .iter()
                .any(|t| !matches!(image.class_of(t), TagClass::Base | TagClass::StoreEntry));
            if !names_a_base {
                continue;
            }
            let Some(m) = self.manifest(&image.digest)? else {
                continue;
            };
            for (_, config) in self.images_of(&m)? {
                if let Some((repo, tag)) = config
                    .label(tags::LABEL_BASE)
                    .and_then(|v| v.rsplit_once(':'))
                    && tags::classify_tag(tag) == TagClass::Base
                    && (repo == self.target.image()
                        || repo.ends_with(&format!("/{}", self.target.repository)))
                {
                    out.insert(tag.to_string());
                }
            }
        }
        Ok(out)
    }

    /// Push time of an image (the distribution API has none): the
    /// `org.opencontainers.image.created` annotation, else the newest `buildkit/createdat` of
    /// its layers (BuildKit cache manifests), else the `Last-Modified` the registry gives its
    /// config blob (some registries do; distribution 2.8 does not), else the `created` of its
    /// image config.
    fn pushed_time(&self, m: &Manifest) -> Result<Option<SystemTime>> {
        if let Some(t) = m.created_annotation().or_else(|| m.buildkit_created()) {
            return Ok(Some(t));
        }
        let Some((config, config_type)) = m.config_digest() else {
            return Ok(None);
        };
        if let Some(t) = self.blob_time(&config)? {
            return Ok(Some(t));
        }
        if IMAGE_CONFIG_TYPES.contains(&config_type.as_str())
            && let Some(v) = self.blob_json(&config)?
        {
            return Ok(v
                .get("created")
                .and_then(Value::as_str)
                .and_then(parse_time));
        }
        Ok(None)
    }

    /// Size, push time and artifact type of an index: the bytes of every manifest it lists
    /// (images of each platform and their attestations: all of it is stored) and of the
    /// blobs it lists directly (BuildKit's cache index); the time and type of its images
    /// before those of its attestations.
    fn index_facts(&self, m: &Manifest) -> Result<(u64, Option<SystemTime>, Option<String>)> {
        let mut size = 0u64;
        let mut pushed = m.created_annotation();
        let mut artifact = m.artifact_type();
        let mut entries = m.entries();
        // Images first, attestations after (a stable sort keeps the index's order).
        entries.sort_by_key(|e| e.is_attestation());
        for e in entries {
            if !e.is_manifest() {
                size = size.saturating_add(e.size);
                continue;
            }
            let Some(child) = self.manifest(&e.digest)? else {
                continue;
            };
            size = size.saturating_add(child.image_size());
            if pushed.is_none() {
                pushed = self.pushed_time(&child)?;
            }
            if artifact.is_none() {
                artifact = child.artifact_type();
            }
        }
        Ok((size, pushed, artifact))
    }

    /// Every tagged manifest of the repository. The distribution API cannot list untagged
    /// manifests, so none are returned. An index (Docker 23+ with buildx) counts the bytes
    /// of everything it lists and takes its push time from its images.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let tags = self.tags()?;
        let mut by_digest: BTreeMap<String, (Manifest, Vec<String>)> = BTreeMap::new();
        for tag in tags {
            // A tag deleted between the list and here is simply gone.
            let Some(m) = self.manifest(&tag)? else {
                continue;
            };
            by_digest
                .entry(m.digest.clone())
                .or_insert_with(|| (m, Vec::new()))
                .1
                .push(tag);
        }
        let mut out = Vec::new();
        for (digest, (m, mut tags)) in by_digest {
            tags.sort();
            let (size, pushed, artifact_type) = if m.is_index() {
                self.index_facts(&m)?
            } else {
                (m.image_size(), self.pushed_time(&m)?, m.artifact_type())
            };
            out.push(ImageRecord {
                digest,
                tags,
                size: Some(size),
                pushed,
                last_pulled: None,
                media_type: Some(m.media_type.clone()),
                artifact_type,
                children: m.children(),
            });
        }
        Ok(out)
    }

    /// Deletes a manifest (and with it every tag pointing at it). `Ok(false)` when it was
    /// already gone.
    pub fn delete_manifest(&self, digest: &str) -> Result<bool> {
        self.http.delete_manifest(digest).map_err(|f| self.error(f))
    }

    /// Uploads a blob (monolithic) unless the registry has it; returns its digest.
    pub fn push_blob(&self, bytes: &[u8]) -> Result<String> {
        self.http.push_bytes(bytes).map_err(|f| self.error(f))
    }

    /// Puts a manifest under a tag or its digest; returns its digest.
    pub fn put_manifest(&self, reference: &str, media_type: &str, bytes: &[u8]) -> Result<String> {
        self.http
            .put_manifest(reference, media_type, bytes)
            .map_err(|f| self.error(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_sizes_and_types() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "artifactType": crate::tags::STORE_ENTRY_ARTIFACT_TYPE,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:44", "size": 2},
            "layers": [{"digest": "sha256:aa", "size": 100}, {"digest": "sha256:bb", "size": 30}]
        });
        let m = Manifest {
            digest: "sha256:00".into(),
            media_type: MEDIA_OCI_MANIFEST.into(),
            raw: Vec::new(),
            body,
        };
        assert_eq!(m.image_size(), 132);
        assert_eq!(
            m.artifact_type().as_deref(),
            Some(crate::tags::STORE_ENTRY_ARTIFACT_TYPE)
        );
        assert!(!m.is_index());
    }
}
