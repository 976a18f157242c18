//! The `oci://REGISTRY/REPOSITORY` store backend: cicache entries kept in an OCI registry.
//!
//! See `docs/OCI.md`. In short, every object name of the store format maps to one of two
//! kinds of registry objects:
//!
//! - **Content objects** (`put_file`: `manifests/<blake3>.tar.zst`, `blobs/<aa>/<blake3>.zst`)
//!   are registry blobs, named by the sha256 of their bytes. A blob is uploaded only after a
//!   HEAD says the registry lacks it. The name → digest map comes from the entries (each
//!   entry's layers are annotated with their object names) and from this process's uploads.
//! - **Small objects** (`put_bytes`: refs, last-use markers, leases, sweep locks) are tagged
//!   manifests. The tag is `cicache.` + the name in a reversible tag alphabet (long names:
//!   a readable prefix + a hash, the full name in an annotation), so listing a prefix is a
//!   tag list plus one manifest GET per matching tag. Data up to [`INLINE_MAX`] bytes rides
//!   in an annotation, larger data in the config blob. A ref's manifest is the entry: its
//!   artifactType is [`STORE_ENTRY_ARTIFACT_TYPE`] and its layers are the cicache manifest
//!   object and every blob that manifest uses, which keeps them referenced for the
//!   registry's garbage collection.
//!
//! Registries have no conditional create. `PutMode::CreateNew` is a HEAD of the tag, the PUT,
//! and a read back of the tag: within a process a lock makes it exact; two processes racing
//! on the same name can both be told they created it, and the tag then holds the last
//! writer's complete object (for refs: one valid entry, both saves succeed).
//!
//! Deleting a small object deletes its manifest by digest (every write has a unique digest:
//! its annotations carry the write time and a random nonce, so no other tag shares it).
//! Deleting a content object only forgets it: blobs are garbage-collected by the registry
//! once no manifest references them (ECR lifecycle rules, `registry garbage-collect`).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use cicache_store::backend::{Backend, ObjectInfo, ObjectReader, OpenOptions, PutMode};
use cicache_store::error::BackendError;
use cicache_store::format::{self, Manifest as CacheManifest, Ref};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::credentials::{self, Credentials, Secret};
use crate::reference::Target;
use crate::store_http::{Counters, Http, sha256_file};
use crate::tags::STORE_ENTRY_ARTIFACT_TYPE;

/// artifactType of the store's other small objects (last-use markers, leases, locks).
pub use crate::tags::STORE_OBJECT_ARTIFACT_TYPE;
/// Media type of an entry's first layer: the cicache manifest tarball.
pub const MEDIA_CICACHE_MANIFEST: &str = "application/vnd.cicache.manifest.v1.tar+zstd";
/// Media type of an entry's other layers: the blobs.
pub const MEDIA_CICACHE_BLOB: &str = "application/vnd.cicache.blob.v1+zstd";
/// Media type of any other content object and of a small object's data in a config blob.
pub const MEDIA_CICACHE_DATA: &str = "application/vnd.cicache.data.v1";
pub const MEDIA_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The OCI empty descriptor's content and digest.
const EMPTY_JSON: &[u8] = b"{}";
const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// What `cicache prune` says about an `oci://` store after removing entries.
pub const PRUNE_NOTE: &str = "oci:// store: prune deleted entry manifests (by digest); the \
     blobs counted as freed are no longer referenced and the registry's own garbage \
     collection frees them (ECR: by itself, plus a lifecycle rule for untagged manifests; \
     distribution: `registry garbage-collect --delete-untagged`); see docs/OCI.md";

/// Every tag the store writes starts with this.
pub const TAG_PREFIX: &str = "cicache.";
/// Small objects up to this size are kept in an annotation (one request to write or read).
pub const INLINE_MAX: usize = 4096;
/// Longest tag the distribution spec allows.
const TAG_MAX: usize = 128;
const HASH_MARK: &str = "_h";
const HASH_HEX: usize = 32;

pub const ANN_NAME: &str = "vnd.cicache.name";
pub const ANN_SIZE: &str = "vnd.cicache.size";
pub const ANN_DATA: &str = "vnd.cicache.data";
pub const ANN_NONCE: &str = "vnd.cicache.nonce";
pub const ANN_CREATED: &str = "org.opencontainers.image.created";
pub const ANN_SCOPE: &str = "vnd.cicache.scope";
pub const ANN_KEY: &str = "vnd.cicache.key";
/// On an entry's layer: bytes of salt before the object in the blob.
pub const ANN_SKIP: &str = "vnd.cicache.skip";
/// Salt bytes put before an object whose own bytes the registry cannot be trusted with.
const SALT_LEN: u64 = 32;

/// Default timeout of each request when `--timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a new ref's writer waits before its second read-back (see `put_bytes`).
pub const CREATE_SETTLE: Duration = Duration::from_millis(300);
/// Manifests fetched at once when listing.
const LIST_PARALLEL: usize = 8;

/// Encodes an object name as a tag: `cicache.` + the name with `/` as `.`, `A-Za-z0-9-` as
/// themselves and every other byte as `_xx`; when that is longer than 128 characters, a
/// prefix of it, `_h` and 32 hex digits of the name's sha256.
pub fn tag_for(name: &str) -> String {
    let mut enc = String::with_capacity(name.len() + 8);
    let mut cuts = Vec::new();
    for b in name.bytes() {
        cuts.push(enc.len());
        match b {
            b'/' => enc.push('.'),
            b if b.is_ascii_alphanumeric() || b == b'-' => enc.push(b as char),
            b => enc.push_str(&format!("_{b:02x}")),
        }
    }
    if TAG_PREFIX.len() + enc.len() <= TAG_MAX {
        return format!("{TAG_PREFIX}{enc}");
    }
    let room = TAG_MAX - TAG_PREFIX.len() - HASH_MARK.len() - HASH_HEX;
    let cut = cuts
        .iter()
        .copied()
        .take_while(|c| *c <= room)
        .last()
        .unwrap_or(0);
    let hash = Sha256::digest(name.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("{TAG_PREFIX}{}{HASH_MARK}{}", &enc[..cut], &hex[..HASH_HEX])
}

/// What a tag says about its object's name: the name (`complete`) or, for a hashed tag, a
/// prefix of it. `None`: not a store tag.
pub fn name_of_tag(tag: &str) -> Option<(String, bool)> {
    let enc = tag.strip_prefix(TAG_PREFIX)?;
    let bytes = enc.as_bytes();
    let mut out = Vec::with_capacity(enc.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'.' => out.push(b'/'),
            b'_' => {
                let rest = &enc[i + 1..];
                if let Some(h) = rest.strip_prefix('h')
                    && h.len() == HASH_HEX
                    && h.bytes().all(|c| c.is_ascii_hexdigit())
                {
                    return Some((String::from_utf8(out).ok()?, false));
                }
                let hex = rest.get(..2)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b if b.is_ascii_alphanumeric() || b == b'-' => out.push(b),
            _ => return None,
        }
        i += 1;
    }
    Some((String::from_utf8(out).ok()?, true))
}

/// A content object: where it is and what it weighs.
#[derive(Debug, Clone)]
struct Content {
    digest: String,
    /// The object's bytes (the blob holds `skip` more).
    size: u64,
    /// Bytes of salt before the object in its blob (see `put_file`); usually 0.
    skip: u64,
    modified: SystemTime,
}

/// A small object's manifest, parsed.
#[derive(Debug, Clone)]
struct Small {
    digest: String,
    name: String,
    size: u64,
    modified: SystemTime,
    inline: Option<Vec<u8>>,
    config_digest: Option<String>,
    /// Layers with their object names (entries only).
    layers: Vec<(String, Content)>,
}

#[derive(Debug, Default)]
struct State {
    /// Content objects this process uploaded or found.
    uploads: HashMap<String, Content>,
    /// Content objects of every entry, when loaded.
    index: Option<HashMap<String, Content>>,
    /// Blob names of cicache manifests this process saw.
    manifest_blobs: HashMap<String, Vec<String>>,
}

/// An OCI registry as a store.
#[derive(Debug)]
pub struct OciBackend {
    http: Http,
    state: Mutex<State>,
    /// Serializes loading the index.
    index_lock: Mutex<()>,
    /// Serializes writers of small objects within the process.
    put_lock: Mutex<()>,
    empty_pushed: std::sync::OnceLock<()>,
}

/// Credentials for `oci://` stores from `CICACHE_OCI_USERNAME` and `CICACHE_OCI_PASSWORD`.
pub fn env_credentials() -> Option<Credentials> {
    let user = std::env::var("CICACHE_OCI_USERNAME").ok()?;
    let password = std::env::var("CICACHE_OCI_PASSWORD").unwrap_or_default();
    Some(Credentials {
        username: user,
        password: Secret::new(password),
        source: "CICACHE_OCI_PASSWORD".into(),
    })
}

impl OciBackend {
    /// Opens `REGISTRY/REPOSITORY` (the part after `oci://`). Credentials: `creds`, else
    /// `CICACHE_OCI_USERNAME`/`CICACHE_OCI_PASSWORD`, else (ECR) GetAuthorizationToken through
    /// the AWS config chain, else the Docker config.
    pub fn open(
        spec: &str,
        creds: Option<Credentials>,
        opts: &OpenOptions,
    ) -> Result<OciBackend, BackendError> {
        let location = format!("oci://{spec}");
        let unusable = |message: String| BackendError::Unusable {
            location: location.clone(),
            message,
        };
        let target = Target::parse(spec.trim_end_matches('/')).map_err(|e| {
            let why = match e {
                crate::Error::InvalidImage { reason, .. } => reason,
                other => other.to_string(),
            };
            unusable(format!(
                "{why}; use oci://REGISTRY/REPOSITORY, e.g. oci://registry.example.com/ci/cache"
            ))
        })?;
        if spec.contains('@') || target.repository.contains(':') {
            return Err(unusable(
                "name a repository, not a tag or digest: oci://REGISTRY/REPOSITORY".into(),
            ));
        }
        let timeout = opts.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let creds = match creds.or_else(env_credentials) {
            Some(c) => Some(c),
            None if target.is_ecr() => {
                let client = crate::ecr::EcrClient::connect(&target, None, Some(timeout))
                    .map_err(|e| unusable(e.to_string()))?;
                let (_, c) = client
                    .docker_credentials()
                    .map_err(|e| unusable(format!("ECR GetAuthorizationToken: {e}")))?;
                Some(c)
            }
            None => credentials::from_docker_config(&target.registry)
                .map_err(|e| unusable(e.to_string()))?,
        };
        let http = Http::new(&target, creds, timeout);
        Ok(OciBackend {
            http,
            state: Mutex::new(State::default()),
            index_lock: Mutex::new(()),
            put_lock: Mutex::new(()),
            empty_pushed: std::sync::OnceLock::new(),
        })
    }

    /// Who the backend authenticates as and where that came from (`("AWS", "ECR
    /// GetAuthorizationToken")`), `None` when anonymous. Never the password.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.http.credentials()
    }

    /// What this backend did so far (requests, blob uploads, bytes).
    pub fn counters(&self) -> &Counters {
        self.http.counters()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn known_content(&self, name: &str) -> Option<Content> {
        let st = self.state();
        st.uploads
            .get(name)
            .or_else(|| st.index.as_ref().and_then(|i| i.get(name)))
            .cloned()
    }

    /// A content object by name, loading the index of every entry when needed.
    fn content(&self, name: &str) -> Result<Option<Content>, BackendError> {
        if let Some(c) = self.known_content(name) {
            return Ok(Some(c));
        }
        if !looks_like_content(name) {
            return Ok(None);
        }
        self.load_index(false)?;
        Ok(self.known_content(name))
    }

    /// Reads every entry's layers into the index (once, or again with `fresh`).
    fn load_index(&self, fresh: bool) -> Result<(), BackendError> {
        let _g = self.index_lock.lock().unwrap_or_else(|p| p.into_inner());
        if !fresh && self.state().index.is_some() {
            return Ok(());
        }
        let refs_prefix = format!("{}/refs/", format::FORMAT_DIR);
        let smalls = self.list_small(&refs_prefix)?;
        let mut index: HashMap<String, Content> = HashMap::new();
        for s in smalls {
            for (name, c) in s.layers {
                index
                    .entry(name)
                    .and_modify(|old| {
                        if c.modified < old.modified {
                            old.modified = c.modified;
                        }
                    })
                    .or_insert(c);
            }
        }
        self.state().index = Some(index);
        Ok(())
    }

    fn parse_small(
        &self,
        digest: String,
        bytes: &[u8],
        object: &str,
    ) -> Result<Small, BackendError> {
        let bad = |why: &str| {
            self.http.remote(
                "read",
                object,
                format!("not a cicache store manifest: {why}"),
            )
        };
        let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(&e.to_string()))?;
        let ann = v.get("annotations").ok_or_else(|| bad("no annotations"))?;
        let get = |k: &str| ann.get(k).and_then(Value::as_str);
        let name = get(ANN_NAME).ok_or_else(|| bad("no name"))?.to_string();
        let size: u64 = get(ANN_SIZE)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no size"))?;
        let modified = get(ANN_CREATED)
            .and_then(|s| humantime::parse_rfc3339_weak(s).ok())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let inline = match get(ANN_DATA) {
            Some(d) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(d)
                    .map_err(|e| bad(&format!("data: {e}")))?,
            ),
            None => None,
        };
        let config_digest = v
            .get("config")
            .filter(|c| c.get("mediaType").and_then(Value::as_str) == Some(MEDIA_CICACHE_DATA))
            .and_then(|c| c.get("digest"))
            .and_then(Value::as_str)
            .map(str::to_string);
        if inline.is_none() && config_digest.is_none() {
            return Err(bad("no data"));
        }
        let mut layers = Vec::new();
        for l in v
            .get("layers")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let lname = l
                .get("annotations")
                .and_then(|a| a.get(ANN_NAME))
                .and_then(Value::as_str);
            let (Some(lname), Some(d), Some(sz)) = (
                lname,
                l.get("digest").and_then(Value::as_str),
                l.get("size").and_then(Value::as_u64),
            ) else {
                continue;
            };
            let skip = l
                .get("annotations")
                .and_then(|a| a.get(ANN_SKIP))
                .and_then(Value::as_str)
                .map(|s| s.parse::<u64>().ok().filter(|k| *k <= sz));
            // A salt the layer cannot hold: not an object this store can read.
            let Some(skip) = skip.unwrap_or(Some(0)) else {
                continue;
            };
            layers.push((
                lname.to_string(),
                Content {
                    digest: d.to_string(),
                    size: sz - skip,
                    skip,
                    modified,
                },
            ));
        }
        Ok(Small {
            digest,
            name,
            size,
            modified,
            inline,
            config_digest,
            layers,
        })
    }

    /// The small object `name`, `None` when absent.
    fn get_small(&self, name: &str) -> Result<Option<Small>, BackendError> {
        let tag = tag_for(name);
        let mut attempt = 0;
        let (digest, bytes) = loop {
            attempt += 1;
            match self.http.get_manifest(&tag, name)? {
                Some(found) => break found,
                // A tag moved by an overwrite between the registry's lookup of the tag and
                // of its manifest (whose old version the writer deletes) reads as missing
                // for a moment: a tag that still exists is read again.
                None if attempt < 4 && self.http.head_manifest(&tag, name)?.is_some() => {
                    std::thread::sleep(Duration::from_millis(50 * attempt));
                }
                None => return Ok(None),
            }
        };
        let s = self.parse_small(digest, &bytes, name)?;
        if s.name != name {
            // A hashed tag whose prefix and hash collide with another name: not this object.
            return Ok(None);
        }
        self.remember_layers(&s);
        Ok(Some(s))
    }

    fn remember_layers(&self, s: &Small) {
        if s.layers.is_empty() {
            return;
        }
        let mut st = self.state();
        let mut blobs = Vec::new();
        let mut manifest = None;
        for (n, c) in &s.layers {
            if n.contains("/manifests/") {
                manifest = Some(n.clone());
            } else {
                blobs.push(n.clone());
            }
            st.uploads.entry(n.clone()).or_insert_with(|| c.clone());
        }
        if let Some(m) = manifest {
            st.manifest_blobs.entry(m).or_insert(blobs);
        }
    }

    /// Small objects whose name starts with `prefix`, manifests fetched in parallel.
    fn list_small(&self, prefix: &str) -> Result<Vec<Small>, BackendError> {
        let tags = self.http.tags(prefix)?;
        let candidates: Vec<String> = tags
            .into_iter()
            .filter(|t| match name_of_tag(t) {
                Some((n, true)) => n.starts_with(prefix),
                Some((n, false)) => n.starts_with(prefix) || prefix.starts_with(&n),
                None => false,
            })
            .collect();
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Small>> = Mutex::new(Vec::new());
        let error: Mutex<Option<BackendError>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..LIST_PARALLEL.min(candidates.len()) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(tag) = candidates.get(i) else { break };
                        let got = self.http.get_manifest(tag, prefix).and_then(|m| {
                            m.map(|(d, b)| self.parse_small(d, &b, tag)).transpose()
                        });
                        match got {
                            // A tag deleted since the list is simply gone; a foreign
                            // manifest under our prefix is not ours.
                            Ok(None) => {}
                            Ok(Some(small)) if small.name.starts_with(prefix) => {
                                results
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push(small);
                            }
                            Ok(Some(_)) => {}
                            Err(e) => {
                                let mut slot = error.lock().unwrap_or_else(|p| p.into_inner());
                                if slot.is_none() && !matches!(e, BackendError::Remote { ref message, .. } if message.starts_with("not a cicache")) {
                                    *slot = Some(e);
                                }
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        Ok(results.into_inner().unwrap_or_else(|p| p.into_inner()))
    }

    fn ensure_empty_blob(&self, object: &str) -> Result<(), BackendError> {
        if self.empty_pushed.get().is_some() {
            return Ok(());
        }
        self.http.push_bytes(EMPTY_JSON, object)?;
        let _ = self.empty_pushed.set(());
        Ok(())
    }

    /// The blob names a cicache manifest object lists.
    fn blobs_of_manifest(&self, name: &str) -> Result<Vec<String>, BackendError> {
        if let Some(b) = self.state().manifest_blobs.get(name) {
            return Ok(b.clone());
        }
        let reader = self.get(name)?.ok_or_else(|| {
            self.http.remote(
                "publish",
                name,
                "the entry's manifest object is not in the registry".into(),
            )
        })?;
        let m = parse_cache_manifest(reader).map_err(|e| {
            self.http.remote(
                "publish",
                name,
                format!("cannot read the cicache manifest: {e}"),
            )
        })?;
        let blobs: Vec<String> = m.blobs().into_iter().map(format::blob_name).collect();
        self.state()
            .manifest_blobs
            .insert(name.to_string(), blobs.clone());
        Ok(blobs)
    }

    /// The manifest JSON of a small object.
    /// Uploads [`SALT_LEN`] random bytes and then `file` as one blob (through a temp file
    /// beside it); its digest.
    fn push_salted(&self, file: &Path, name: &str) -> Result<String, BackendError> {
        let salt = format!("{}{}", nonce(), nonce());
        let salt = &salt.as_bytes()[..SALT_LEN as usize];
        let file_name = file.file_name().unwrap_or_default().to_string_lossy();
        let tmp = file.with_file_name(format!(".{file_name}.salted-{}", nonce()));
        let written = (|| {
            let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            std::io::Write::write_all(&mut out, salt)?;
            std::io::copy(&mut std::fs::File::open(file)?, &mut out)?;
            std::io::Write::flush(&mut out)?;
            sha256_file(&tmp)
        })();
        let pushed = match written {
            Ok((digest, size)) => self
                .http
                .push_file(&tmp, &digest, size, name)
                .map(|()| digest),
            Err(source) => Err(BackendError::Io {
                location: self.location(),
                op: "write a salted copy of",
                object: name.to_string(),
                source,
            }),
        };
        let _ = std::fs::remove_file(&tmp);
        pushed
    }

    fn small_manifest(&self, name: &str, data: &[u8]) -> Result<Vec<u8>, BackendError> {
        self.ensure_empty_blob(name)?;
        let written = self.http.store_now();
        let mut ann = serde_json::Map::new();
        ann.insert(ANN_NAME.into(), json!(name));
        ann.insert(ANN_SIZE.into(), json!(data.len().to_string()));
        ann.insert(
            ANN_CREATED.into(),
            json!(humantime::format_rfc3339_nanos(written).to_string()),
        );
        ann.insert(ANN_NONCE.into(), json!(nonce()));
        let config = if data.len() <= INLINE_MAX {
            ann.insert(
                ANN_DATA.into(),
                json!(base64::engine::general_purpose::STANDARD.encode(data)),
            );
            json!({"mediaType": MEDIA_EMPTY, "digest": EMPTY_DIGEST, "size": 2})
        } else {
            let digest = self.http.push_bytes(data, name)?;
            json!({"mediaType": MEDIA_CICACHE_DATA, "digest": digest, "size": data.len()})
        };
        let mut artifact = STORE_OBJECT_ARTIFACT_TYPE;
        let mut layers = Vec::new();
        let entry = name
            .strip_prefix(&format!("{}/refs/", format::FORMAT_DIR))
            .and_then(|_| serde_json::from_slice::<Ref>(data).ok());
        if let Some(r) = entry {
            artifact = STORE_ENTRY_ARTIFACT_TYPE;
            ann.insert(ANN_SCOPE.into(), json!(r.scope));
            ann.insert(ANN_KEY.into(), json!(r.key));
            ann.insert("vnd.cicache.entry.created".into(), json!(r.created));
            ann.insert(
                "vnd.cicache.total-size".into(),
                json!(r.total_size.to_string()),
            );
            ann.insert(
                "vnd.cicache.stored-size".into(),
                json!(r.stored_size.to_string()),
            );
            ann.insert("vnd.cicache.entries".into(), json!(r.entries.to_string()));
            let mname = format::manifest_name(&r.manifest);
            let mut names = vec![mname.clone()];
            names.extend(self.blobs_of_manifest(&mname)?);
            for (i, n) in names.iter().enumerate() {
                let c = self.content(n)?.ok_or_else(|| {
                    self.http.remote(
                        "publish",
                        name,
                        format!("{n} is not in the registry; save again"),
                    )
                })?;
                let mut annotations = json!({ANN_NAME: n});
                if c.skip > 0 {
                    annotations[ANN_SKIP] = json!(c.skip.to_string());
                }
                layers.push(json!({
                    "mediaType": if i == 0 { MEDIA_CICACHE_MANIFEST } else { MEDIA_CICACHE_BLOB },
                    "digest": c.digest,
                    "size": c.size.saturating_add(c.skip),
                    "annotations": annotations,
                }));
            }
        } else {
            layers.push(json!({"mediaType": MEDIA_EMPTY, "digest": EMPTY_DIGEST, "size": 2}));
        }
        let m = json!({
            "schemaVersion": 2,
            "mediaType": crate::store_http::MEDIA_OCI_MANIFEST,
            "artifactType": artifact,
            "config": config,
            "layers": layers,
            "annotations": ann,
        });
        serde_json::to_vec(&m).map_err(|e| self.http.remote("publish", name, e.to_string()))
    }
}

/// Names of the store format that are content objects.
fn looks_like_content(name: &str) -> bool {
    let dir = format::FORMAT_DIR;
    name.starts_with(&format!("{dir}/blobs/")) || name.starts_with(&format!("{dir}/manifests/"))
}

fn nonce() -> String {
    let mut h = Sha256::new();
    h.update(std::process::id().to_le_bytes());
    h.update(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .to_le_bytes(),
    );
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let tid = format!("{:?}", std::thread::current().id());
    h.update(tid.as_bytes());
    h.finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads `.cicache/manifest.json` from a manifest tarball.
fn parse_cache_manifest(r: impl Read) -> Result<CacheManifest, String> {
    let dec = zstd::Decoder::new(r).map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(dec);
    let mut entries = archive.entries().map_err(|e| e.to_string())?;
    let first = entries
        .next()
        .ok_or("the tarball is empty")?
        .map_err(|e| e.to_string())?;
    let mut json = Vec::new();
    first
        .take(format::MAX_MANIFEST_JSON)
        .read_to_end(&mut json)
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&json).map_err(|e| e.to_string())
}

impl Backend for OciBackend {
    fn location(&self) -> String {
        self.http.location.clone()
    }

    fn get(&self, name: &str) -> Result<Option<ObjectReader>, BackendError> {
        if let Some(c) = self.content(name)? {
            let Some(mut r) = self.http.get_blob(&c.digest, name)? else {
                return Ok(None);
            };
            if c.skip > 0 {
                let skipped = std::io::copy(&mut (&mut r).take(c.skip), &mut std::io::sink())
                    .map_err(|e| self.http.remote("read", name, e.to_string()))?;
                if skipped != c.skip {
                    return Err(self.http.remote(
                        "read",
                        name,
                        format!("the blob ends within its {}-byte salt", c.skip),
                    ));
                }
            }
            return Ok(Some(r));
        }
        let Some(s) = self.get_small(name)? else {
            return Ok(None);
        };
        if let Some(d) = s.inline {
            return Ok(Some(Box::new(std::io::Cursor::new(d))));
        }
        match s.config_digest {
            Some(d) => self.http.get_blob(&d, name),
            None => Ok(None),
        }
    }

    fn head(&self, name: &str) -> Result<Option<ObjectInfo>, BackendError> {
        if let Some(c) = self.content(name)? {
            return Ok(Some(ObjectInfo {
                name: name.to_string(),
                size: c.size,
                modified: c.modified,
            }));
        }
        Ok(self.get_small(name)?.map(|s| ObjectInfo {
            name: name.to_string(),
            size: s.size,
            modified: s.modified,
        }))
    }

    fn put_file(&self, name: &str, file: &Path) -> Result<(), BackendError> {
        // Referenced by a live entry (or uploaded by this process): reused.
        if self.content(name)?.is_some() {
            return Ok(());
        }
        let io = |e: std::io::Error| BackendError::Io {
            location: self.location(),
            op: "read local file for",
            object: name.to_string(),
            source: e,
        };
        if name.contains("/manifests/") {
            // Remember its blobs for the entry that will point at it.
            if let Ok(m) = std::fs::File::open(file)
                .map_err(|e| e.to_string())
                .and_then(parse_cache_manifest)
            {
                let blobs = m.blobs().into_iter().map(format::blob_name).collect();
                self.state().manifest_blobs.insert(name.to_string(), blobs);
            }
        }
        let (digest, size) = sha256_file(file).map_err(io)?;
        let (digest, skip) = if self.http.head_blob(&digest, name)?.is_some() {
            // The registry has these bytes, but no entry uses them: left by a pruned entry,
            // or by one a restore found damaged and removed. A registry keeps the file it
            // has for a digest (an upload of the same bytes does not replace it), so a
            // damaged blob would be reused forever: upload the object behind a salt, under
            // a digest of its own.
            self.http.blob_present();
            (self.push_salted(file, name)?, SALT_LEN)
        } else {
            self.http.push_file(file, &digest, size, name)?;
            (digest, 0)
        };
        self.state().uploads.insert(
            name.to_string(),
            Content {
                digest,
                size,
                skip,
                modified: self.http.store_now(),
            },
        );
        Ok(())
    }

    fn put_bytes(&self, name: &str, data: &[u8], mode: PutMode) -> Result<bool, BackendError> {
        let _g = self.put_lock.lock().unwrap_or_else(|p| p.into_inner());
        let tag = tag_for(name);
        // Built first, so that the check below and the PUT are as close as they can be.
        let manifest = self.small_manifest(name, data)?;
        let digest = crate::store_http::sha256_digest(&manifest);
        let old = self.http.head_manifest(&tag, name)?;
        // (A hashed tag could in theory hold another name: the name is checked.)
        if mode == PutMode::CreateNew && old.is_some() && self.get_small(name)?.is_some() {
            return Ok(false);
        }
        self.http.put_manifest(&tag, &manifest, name)?;
        match mode {
            PutMode::CreateNew => {
                // Read back: another process may have written the tag at the same time. For
                // refs (the only names agents race on), read back once more after a pause:
                // a writer that checked before our PUT landed has put its own by then, and
                // only the last writer keeps its manifest.
                let settle = name.contains("/refs/").then_some(CREATE_SETTLE);
                let checks = [Some(Duration::ZERO), settle];
                for pause in checks.into_iter().flatten() {
                    std::thread::sleep(pause);
                    let now = self.http.head_manifest(&tag, name)?;
                    if now.as_deref() != Some(digest.as_str()) {
                        let _ = self.http.delete_manifest(&digest, name);
                        return Ok(false);
                    }
                }
            }
            PutMode::Overwrite => {
                if let Some(old) = old.filter(|o| *o != digest && !o.is_empty()) {
                    // Unique to this name (nonce): deleting it removes no other tag.
                    let _ = self.http.delete_manifest(&old, name);
                }
            }
        }
        Ok(true)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        let mut out: HashMap<String, ObjectInfo> = HashMap::new();
        let content_prefixes = [
            format!("{}/blobs/", format::FORMAT_DIR),
            format!("{}/manifests/", format::FORMAT_DIR),
        ];
        if content_prefixes
            .iter()
            .any(|c| c.starts_with(prefix) || prefix.starts_with(c.as_str()))
        {
            self.load_index(true)?;
        }
        {
            let st = self.state();
            let all = st
                .uploads
                .iter()
                .chain(st.index.iter().flat_map(|i| i.iter()));
            for (n, c) in all {
                if n.starts_with(prefix) {
                    out.entry(n.clone()).or_insert_with(|| ObjectInfo {
                        name: n.clone(),
                        size: c.size,
                        modified: c.modified,
                    });
                }
            }
        }
        let tagged = prefix.is_empty()
            || !content_prefixes
                .iter()
                .any(|c| prefix.starts_with(c.as_str()));
        if tagged {
            for s in self.list_small(prefix)? {
                self.remember_layers(&s);
                out.insert(
                    s.name.clone(),
                    ObjectInfo {
                        name: s.name,
                        size: s.size,
                        modified: s.modified,
                    },
                );
            }
        }
        let mut v: Vec<ObjectInfo> = out.into_values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    fn delete(&self, name: &str) -> Result<(), BackendError> {
        {
            let mut st = self.state();
            let a = st.uploads.remove(name).is_some();
            let b = st.index.as_mut().is_some_and(|i| i.remove(name).is_some());
            if a || b {
                // A content object: the registry collects the blob once nothing references it.
                return Ok(());
            }
        }
        let _g = self.put_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = self.get_small(name)? {
            self.http.delete_manifest(&s.digest, name)?;
        }
        Ok(())
    }
}

impl Drop for OciBackend {
    /// With `-v`: what the store cost in requests and uploads.
    fn drop(&mut self) {
        let c = self.http.counters();
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        if n(&c.requests) > 0 {
            tracing::info!(
                "{}: {} requests, {} blob uploads ({} bytes), {} blobs already in the registry, {} manifests put",
                self.http.location,
                n(&c.requests),
                n(&c.blob_uploads),
                n(&c.bytes_uploaded),
                n(&c.blobs_present),
                n(&c.manifest_puts)
            );
        }
    }
}

/// Opens an `oci://` store as a shared backend.
pub fn open(
    spec: &str,
    creds: Option<Credentials>,
    opts: &OpenOptions,
) -> Result<Arc<dyn Backend>, BackendError> {
    Ok(Arc::new(OciBackend::open(spec, creds, opts)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_tag(t: &str) -> bool {
        t.len() <= 128
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            && t.as_bytes()[0].is_ascii_alphanumeric()
    }

    #[test]
    fn tags_round_trip_to_names() {
        for name in [
            "cicache-v1/refs/main/pip-3f2a-linux",
            "cicache-v1/refs/feature%2Flogin/pip_1.2+x@y",
            "cicache-v1/leases/abc.json",
            "contract/1-2/sizes/file-0",
            "",
        ] {
            let t = tag_for(name);
            assert!(valid_tag(&t), "{t}");
            assert_eq!(name_of_tag(&t), Some((name.to_string(), true)), "{t}");
        }
        assert_eq!(
            tag_for("cicache-v1/refs/main/pip-abc"),
            "cicache.cicache-v1.refs.main.pip-abc"
        );
    }

    #[test]
    fn long_names_are_hashed_with_a_readable_prefix() {
        let long = format!("cicache-v1/refs/main/{}", "k%2F".repeat(60));
        let t = tag_for(&long);
        assert!(valid_tag(&t), "{t}");
        let (known, complete) = name_of_tag(&t).expect("ours");
        assert!(!complete);
        assert!(long.starts_with(&known), "{known}");
        assert!(known.starts_with("cicache-v1/refs/main/"));
        let other = format!("{long}x");
        assert_ne!(tag_for(&other), t);
    }

    #[test]
    fn prefixes_encode_to_prefixes() {
        let name = "cicache-v1/refs/main/pip-abc";
        for i in 0..name.len() {
            let p = &name[..i];
            let tp = tag_for(p);
            assert!(tag_for(name).starts_with(&tp));
        }
    }

    #[test]
    fn foreign_tags_are_not_ours() {
        assert_eq!(name_of_tag("cache"), None);
        assert_eq!(name_of_tag("cache-main"), None);
        assert_eq!(name_of_tag("cicache.a_zz"), None);
        assert_eq!(name_of_tag("latest"), None);
    }
}
