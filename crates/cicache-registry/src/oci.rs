//! Any registry through the OCI distribution API: tags list, manifests by tag and digest,
//! manifest DELETE, and blob/manifest upload (for tests and `oci://` stores).
//!
//! Authentication follows the registry's `WWW-Authenticate` challenge: HTTP Basic with the
//! credentials, or a bearer token fetched from the challenge's realm (with the credentials
//! when there are some, anonymously otherwise). Credentials and tokens go only into
//! `Authorization` headers, never into URLs, errors or logs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use ureq::http;

use crate::credentials::Credentials;
use crate::error::{Error, Result};
use crate::model::{ImageRecord, parse_time};
use crate::reference::Target;

pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const IMAGE_CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";
/// Manifests and configs are small; refuse anything bigger rather than read it into memory.
const MAX_DOCUMENT: u64 = 16 << 20;

#[derive(Debug, Clone, Default)]
enum AuthState {
    #[default]
    None,
    Basic,
    Bearer {
        token: crate::credentials::Secret,
        scopes: BTreeSet<String>,
    },
}

/// A distribution API client for one repository.
pub struct OciClient {
    agent: ureq::Agent,
    target: Target,
    base: String,
    creds: Option<Credentials>,
    auth: Mutex<AuthState>,
}

/// Options for [`OciClient::new`].
#[derive(Debug, Clone, Default)]
pub struct OciOptions {
    /// Use `http://` instead of `https://` (default: only for loopback registries).
    pub plain_http: Option<bool>,
    /// Bound on each request.
    pub timeout: Option<Duration>,
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The registry's error codes and messages (`NAME_UNKNOWN: repository name not known`).
    fn detail(&self) -> String {
        let parsed: Option<Value> = serde_json::from_slice(&self.body).ok();
        if let Some(errors) = parsed
            .as_ref()
            .and_then(|v| v.get("errors"))
            .and_then(Value::as_array)
        {
            let parts: Vec<String> = errors
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.get("code").and_then(Value::as_str).unwrap_or("ERROR"),
                        e.get("message").and_then(Value::as_str).unwrap_or("")
                    )
                })
                .collect();
            if !parts.is_empty() {
                return parts.join("; ");
            }
        }
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        if text.is_empty() {
            format!("HTTP {}", self.status)
        } else {
            text.chars().take(300).collect()
        }
    }

    fn has_code(&self, code: &str) -> bool {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v.get("errors").cloned())
            .and_then(|e| e.as_array().cloned())
            .is_some_and(|a| {
                a.iter()
                    .any(|e| e.get("code").and_then(Value::as_str) == Some(code))
            })
    }
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
            .sum();
        config + layers
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

/// `sha256:<hex>` of bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in hash {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Parses `Bearer realm="...",service="...",scope="a,b"` into the scheme and its parameters.
pub(crate) fn parse_challenge(header: &str) -> (String, BTreeMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    _ => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    (scheme.to_ascii_lowercase(), params)
}

fn encode_query(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl OciClient {
    pub fn new(target: &Target, creds: Option<Credentials>, opts: &OciOptions) -> OciClient {
        let plain = opts.plain_http.unwrap_or_else(|| target.is_loopback());
        let scheme = if plain { "http" } else { "https" };
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("cicache/", env!("CARGO_PKG_VERSION")))
            .timeout_global(Some(opts.timeout.unwrap_or(Duration::from_secs(120))));
        if target.is_loopback() {
            config = config.proxy(None);
        }
        OciClient {
            agent: config.build().new_agent(),
            target: target.clone(),
            base: format!("{scheme}://{}", target.api_host()),
            creds,
            auth: Mutex::new(AuthState::None),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    fn send_once(
        &self,
        method: &http::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        auth: Option<&str>,
        operation: &str,
    ) -> Result<Reply> {
        let mut b = http::Request::builder().method(method.clone()).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if let Some(a) = auth {
            b = b.header("Authorization", a);
        }
        let network = |e: String| Error::Network {
            operation: operation.to_string(),
            url: url.to_string(),
            detail: e,
        };
        let response = match body {
            Some(bytes) => {
                let req = b.body(bytes.to_vec()).map_err(|e| network(e.to_string()))?;
                self.agent.run(req)
            }
            None => {
                let req = b.body(()).map_err(|e| network(e.to_string()))?;
                self.agent.run(req)
            }
        };
        let mut response = response.map_err(|e| network(e.to_string()))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = if *method == http::Method::HEAD {
            Vec::new()
        } else {
            response
                .body_mut()
                .with_config()
                .limit(MAX_DOCUMENT)
                .read_to_vec()
                .map_err(|e| network(format!("reading the answer: {e}")))?
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    fn auth_header(&self) -> Option<String> {
        let state = self.auth.lock().ok()?.clone();
        match state {
            AuthState::None => None,
            AuthState::Basic => self.creds.as_ref().map(Credentials::basic_header),
            AuthState::Bearer { token, .. } => Some(format!("Bearer {}", token.expose())),
        }
    }

    fn no_credentials_hint(&self) -> String {
        match &self.creds {
            None => format!(
                "no credentials for {0}: pass --username and --password-stdin, or run `docker login {0}` (cicache reads the Docker config at $DOCKER_CONFIG/config.json or ~/.docker/config.json)",
                self.target.registry
            ),
            Some(c) => format!(
                "check the username {:?} and the password from {}",
                c.username, c.source
            ),
        }
    }

    /// Answers the registry's challenge; `Ok(false)` when there is nothing more to try.
    fn authenticate(&self, challenge: &str, operation: &str) -> Result<bool> {
        let (scheme, params) = parse_challenge(challenge);
        let previous = self.auth.lock().map(|s| s.clone()).unwrap_or_default();
        match scheme.as_str() {
            "basic" => {
                if self.creds.is_none() || matches!(previous, AuthState::Basic) {
                    return Ok(false);
                }
                if let Ok(mut s) = self.auth.lock() {
                    *s = AuthState::Basic;
                }
                Ok(true)
            }
            "bearer" => {
                let Some(realm) = params.get("realm") else {
                    return Err(Error::BadResponse {
                        what: format!("{operation} on {}", self.target.registry),
                        detail: "a Bearer challenge without a realm".into(),
                    });
                };
                let mut scopes = match &previous {
                    AuthState::Bearer { scopes, .. } => scopes.clone(),
                    _ => BTreeSet::new(),
                };
                let before = scopes.len();
                if let Some(scope) = params.get("scope") {
                    for s in scope.split(' ').filter(|s| !s.is_empty()) {
                        scopes.insert(s.to_string());
                    }
                }
                if matches!(previous, AuthState::Bearer { .. }) && scopes.len() == before {
                    // The token we have was refused, and a new one would be the same.
                    return Ok(false);
                }
                let mut url = realm.clone();
                let mut sep = if url.contains('?') { '&' } else { '?' };
                if let Some(service) = params.get("service") {
                    url.push_str(&format!("{sep}service={}", encode_query(service)));
                    sep = '&';
                }
                for s in &scopes {
                    url.push_str(&format!("{sep}scope={}", encode_query(s)));
                    sep = '&';
                }
                let basic = self.creds.as_ref().map(Credentials::basic_header);
                let reply = self.send_once(
                    &http::Method::GET,
                    &url,
                    &[],
                    None,
                    basic.as_deref(),
                    "fetching a registry token",
                )?;
                if reply.status == 401 || reply.status == 403 {
                    return Ok(false);
                }
                if reply.status != 200 {
                    return Err(Error::Http {
                        operation: "fetching a registry token".into(),
                        url: realm.clone(),
                        status: reply.status,
                        detail: reply.detail(),
                    });
                }
                let v: Value =
                    serde_json::from_slice(&reply.body).map_err(|e| Error::BadResponse {
                        what: format!("the token from {realm}"),
                        detail: e.to_string(),
                    })?;
                let token = v
                    .get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| Error::BadResponse {
                        what: format!("the token from {realm}"),
                        detail: "no `token` in the answer".into(),
                    })?;
                if let Ok(mut s) = self.auth.lock() {
                    *s = AuthState::Bearer {
                        token: crate::credentials::Secret::new(token),
                        scopes,
                    };
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Sends a request, answering authentication challenges; 401 after that is an error.
    fn send(
        &self,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        operation: &str,
    ) -> Result<Reply> {
        let url = self.url(path);
        for _ in 0..3 {
            let auth = self.auth_header();
            let reply = self.send_once(&method, &url, headers, body, auth.as_deref(), operation)?;
            if reply.status != 401 {
                if reply.status == 403 {
                    return Err(Error::Forbidden {
                        registry: self.target.registry.clone(),
                        what: format!("{operation} ({})", self.target.repository),
                        detail: reply.detail(),
                    });
                }
                return Ok(reply);
            }
            let challenge = reply.header("www-authenticate").unwrap_or("").to_string();
            if !self.authenticate(&challenge, operation)? {
                return Err(Error::Unauthorized {
                    registry: self.target.registry.clone(),
                    detail: reply.detail(),
                    hint: self.no_credentials_hint(),
                });
            }
        }
        Err(Error::Unauthorized {
            registry: self.target.registry.clone(),
            detail: "the registry kept asking for credentials".into(),
            hint: self.no_credentials_hint(),
        })
    }

    fn repo_path(&self, rest: &str) -> String {
        format!("/v2/{}/{rest}", self.target.repository)
    }

    fn unexpected(&self, operation: &str, path: &str, reply: &Reply) -> Error {
        Error::Http {
            operation: operation.to_string(),
            url: self.url(path),
            status: reply.status,
            detail: reply.detail(),
        }
    }

    fn not_found(&self) -> Error {
        Error::RepositoryNotFound {
            registry: self.target.registry.clone(),
            repository: self.target.repository.clone(),
            hint: "a registry creates a repository with its first push: run a build that pushes the image or its cache".into(),
        }
    }

    /// Checks that the registry answers the API and accepts the credentials (`GET /v2/`).
    pub fn ping(&self) -> Result<()> {
        let reply = self.send(
            http::Method::GET,
            "/v2/",
            &[],
            None,
            "checking the registry",
        )?;
        match reply.status {
            200 => Ok(()),
            _ => Err(self.unexpected("checking the registry", "/v2/", &reply)),
        }
    }

    /// All tags of the repository, sorted. A repository that does not exist is an error.
    pub fn tags(&self) -> Result<Vec<String>> {
        let mut path = self.repo_path("tags/list?n=1000");
        let mut tags = Vec::new();
        for _ in 0..10_000 {
            let reply = self.send(http::Method::GET, &path, &[], None, "listing tags")?;
            match reply.status {
                200 => {}
                404 => return Err(self.not_found()),
                _ => return Err(self.unexpected("listing tags", &path, &reply)),
            }
            let v: Value = serde_json::from_slice(&reply.body).map_err(|e| Error::BadResponse {
                what: format!("the tag list of {}", self.target.image()),
                detail: e.to_string(),
            })?;
            if let Some(list) = v.get("tags").and_then(Value::as_array) {
                tags.extend(list.iter().filter_map(Value::as_str).map(str::to_string));
            }
            // Link: </v2/name/tags/list?last=x&n=1000>; rel="next"
            let next = reply.header("link").and_then(|l| {
                let start = l.find('<')? + 1;
                let end = l.find('>')?;
                (l.contains("rel=\"next\"") && end > start).then(|| l[start..end].to_string())
            });
            match next {
                Some(n) => path = n,
                None => break,
            }
        }
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    /// A manifest by tag or digest; `None` when there is none.
    pub fn manifest(&self, reference: &str) -> Result<Option<Manifest>> {
        let path = self.repo_path(&format!("manifests/{reference}"));
        let reply = self.send(
            http::Method::GET,
            &path,
            &[("Accept", ACCEPT_MANIFESTS)],
            None,
            "reading a manifest",
        )?;
        match reply.status {
            200 => {}
            404 if reply.has_code("NAME_UNKNOWN") => return Err(self.not_found()),
            404 => return Ok(None),
            _ => return Err(self.unexpected("reading a manifest", &path, &reply)),
        }
        let digest = reply
            .header("docker-content-digest")
            .map(str::to_string)
            .unwrap_or_else(|| sha256_digest(&reply.body));
        let body: Value = serde_json::from_slice(&reply.body).map_err(|e| Error::BadResponse {
            what: format!("the manifest {}:{reference}", self.target.image()),
            detail: e.to_string(),
        })?;
        let media_type = body
            .get("mediaType")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                reply
                    .header("content-type")
                    .map(|c| c.split(';').next().unwrap_or(c).trim().to_string())
            })
            .unwrap_or_default();
        Ok(Some(Manifest {
            digest,
            media_type,
            body,
            raw: reply.body,
        }))
    }

    /// The digest a tag points at (`HEAD`), `None` when the tag does not exist.
    pub fn head_manifest(&self, reference: &str) -> Result<Option<String>> {
        let path = self.repo_path(&format!("manifests/{reference}"));
        let reply = self.send(
            http::Method::HEAD,
            &path,
            &[("Accept", ACCEPT_MANIFESTS)],
            None,
            "checking a manifest",
        )?;
        match reply.status {
            200 => Ok(reply.header("docker-content-digest").map(str::to_string)),
            404 => Ok(None),
            _ => Err(self.unexpected("checking a manifest", &path, &reply)),
        }
    }

    /// When a blob was stored, from its `Last-Modified` (the registry's own record of the push).
    fn blob_time(&self, digest: &str) -> Result<Option<SystemTime>> {
        let path = self.repo_path(&format!("blobs/{digest}"));
        let reply = self.send(http::Method::HEAD, &path, &[], None, "checking a blob")?;
        if reply.status != 200 {
            return Ok(None);
        }
        Ok(reply.header("last-modified").and_then(httpdate_parse))
    }

    /// A small JSON blob (an image config) by digest; `None` when missing or not JSON.
    pub fn blob_json(&self, digest: &str) -> Result<Option<Value>> {
        let path = self.repo_path(&format!("blobs/{digest}"));
        let reply = self.send(http::Method::GET, &path, &[], None, "reading a blob")?;
        if reply.status != 200 {
            return Ok(None);
        }
        Ok(serde_json::from_slice(&reply.body).ok())
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

    /// Every tagged manifest of the repository. The distribution API cannot list untagged
    /// manifests, so none are returned.
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
                let mut size = 0;
                let mut pushed = m.created_annotation();
                let mut artifact = m.artifact_type();
                for child in m.children() {
                    if let Some(cm) = self.manifest(&child)? {
                        size += cm.image_size();
                        if pushed.is_none() {
                            pushed = self.pushed_time(&cm)?;
                        }
                        if artifact.is_none() {
                            artifact = cm.artifact_type();
                        }
                    }
                }
                (size, pushed, artifact)
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
        let path = self.repo_path(&format!("manifests/{digest}"));
        let reply = self.send(
            http::Method::DELETE,
            &path,
            &[],
            None,
            "deleting a manifest",
        )?;
        match reply.status {
            200 | 202 | 204 => Ok(true),
            404 => Ok(false),
            405 => Err(Error::DeleteDisabled {
                registry: self.target.registry.clone(),
                detail: reply.detail(),
            }),
            _ => Err(self.unexpected("deleting a manifest", &path, &reply)),
        }
    }

    /// Uploads a blob (monolithic) unless the registry has it; returns its digest.
    pub fn push_blob(&self, bytes: &[u8]) -> Result<String> {
        let digest = sha256_digest(bytes);
        let head = self.repo_path(&format!("blobs/{digest}"));
        let reply = self.send(http::Method::HEAD, &head, &[], None, "checking a blob")?;
        if reply.status == 200 {
            return Ok(digest);
        }
        let start = self.repo_path("blobs/uploads/");
        let reply = self.send(
            http::Method::POST,
            &start,
            &[("Content-Length", "0")],
            Some(&[]),
            "starting a blob upload",
        )?;
        if reply.status != 202 {
            return Err(self.unexpected("starting a blob upload", &start, &reply));
        }
        let location = reply
            .header("location")
            .ok_or_else(|| Error::BadResponse {
                what: format!("starting a blob upload to {}", self.target.image()),
                detail: "no Location header".into(),
            })?
            .to_string();
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={}", encode_query(&digest));
        let reply = self.send(
            http::Method::PUT,
            &put,
            &[("Content-Type", "application/octet-stream")],
            Some(bytes),
            "uploading a blob",
        )?;
        if reply.status != 201 && reply.status != 204 {
            return Err(self.unexpected("uploading a blob", &put, &reply));
        }
        Ok(digest)
    }

    /// Puts a manifest under a tag or its digest; returns its digest.
    pub fn put_manifest(&self, reference: &str, media_type: &str, bytes: &[u8]) -> Result<String> {
        let path = self.repo_path(&format!("manifests/{reference}"));
        let reply = self.send(
            http::Method::PUT,
            &path,
            &[("Content-Type", media_type)],
            Some(bytes),
            "putting a manifest",
        )?;
        if reply.status != 201 && reply.status != 200 {
            return Err(self.unexpected("putting a manifest", &path, &reply));
        }
        Ok(reply
            .header("docker-content-digest")
            .map(str::to_string)
            .unwrap_or_else(|| sha256_digest(bytes)))
    }
}

/// Parses an HTTP date (`Wed, 25 Nov 2026 08:11:20 GMT`).
fn httpdate_parse(s: &str) -> Option<SystemTime> {
    // RFC 7231 IMF-fixdate only, which every registry sends.
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let month = match parts[2] {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let text = format!("{}-{month:02}-{:0>2}T{}Z", parts[3], parts[1], parts[4]);
    humantime::parse_rfc3339(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "registry.example");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(s, "basic");
        assert_eq!(p["realm"], "Registry Realm");
        let (s, p) = parse_challenge("");
        assert_eq!(s, "");
        assert!(p.is_empty());
    }

    #[test]
    fn digests_and_dates() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let t = httpdate_parse("Wed, 25 Nov 2026 08:11:20 GMT").unwrap();
        assert_eq!(
            humantime::format_rfc3339_seconds(t).to_string(),
            "2026-11-25T08:11:20Z"
        );
        assert!(httpdate_parse("yesterday").is_none());
    }

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
