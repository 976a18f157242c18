//! The HTTP side of the `oci://` store: the distribution API calls the store needs, with
//! streaming blob reads and chunked uploads (the [`crate::oci`] client reads whole bodies,
//! which suits manifests but not cache blobs of hundreds of megabytes).
//!
//! Authentication answers the registry's `WWW-Authenticate` challenge as the OCI client does:
//! HTTP Basic with the credentials, or a bearer token from the challenge's realm. Credentials
//! go only into `Authorization` headers, never into URLs, errors or logs.
//!
//! Timeouts: connecting, waiting for an answer, and every single read or write of a body are
//! bounded by the store timeout; a large blob may take longer in total as long as it moves.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use cicache_store::backend::ObjectReader;
use cicache_store::error::BackendError;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use ureq::http;

use crate::credentials::{Credentials, Secret};
use crate::oci::parse_challenge;

/// Uploads up to this size go in one PUT; larger ones in PATCH chunks of this size (ECR
/// wants chunks of at least 5 MiB but the last).
pub const CHUNK: u64 = 16 << 20;
/// Largest manifest or error document read into memory.
const MAX_DOCUMENT: u64 = 16 << 20;

pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[derive(Debug, Clone, Default)]
enum Auth {
    #[default]
    None,
    Basic,
    Bearer {
        token: Secret,
        scopes: BTreeSet<String>,
    },
}

/// Counters of what a backend did, for `-v` and for tests.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    /// Blob uploads started (POST .../blobs/uploads/).
    pub blob_uploads: AtomicU64,
    pub bytes_uploaded: AtomicU64,
    /// Blob uploads skipped because the registry had the blob (HEAD 200).
    pub blobs_present: AtomicU64,
    /// Manifests put (entries and other small objects).
    pub manifest_puts: AtomicU64,
    /// PATCH requests of chunked uploads.
    pub upload_chunks: AtomicU64,
}

pub(crate) struct Http {
    agent: ureq::Agent,
    base: String,
    pub(crate) registry: String,
    pub(crate) repository: String,
    pub(crate) location: String,
    creds: Option<Credentials>,
    auth: Mutex<Auth>,
    /// Registry clock minus ours, in seconds, from the last `Date` header.
    clock_offset: AtomicI64,
    pub(crate) timeout: Duration,
    pub(crate) counters: Counters,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("base", &self.base)
            .field("repository", &self.repository)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// An answer whose body has not been read yet.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: ureq::Body,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Reads a small body (a manifest, an error document).
    pub fn read_small(&mut self) -> std::io::Result<Vec<u8>> {
        self.body
            .with_config()
            .limit(MAX_DOCUMENT)
            .read_to_vec()
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// The registry's error codes and messages, for error messages.
    pub fn detail(&mut self) -> String {
        let status = self.status;
        let body = self.read_small().unwrap_or_default();
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
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
                return format!("HTTP {status}: {}", parts.join("; "));
            }
        }
        let text = String::from_utf8_lossy(&body);
        let text = text.trim();
        if text.is_empty() {
            format!("HTTP {status}")
        } else {
            format!(
                "HTTP {status}: {}",
                text.chars().take(300).collect::<String>()
            )
        }
    }
}

/// `sha256:<hex>` of bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    hex_digest(Sha256::digest(bytes).as_slice())
}

fn hex_digest(hash: &[u8]) -> String {
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in hash {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// `sha256:<hex>` and size of a file.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex_digest(h.finalize().as_slice()), n))
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

/// Parses an HTTP date (`Wed, 25 Nov 2026 08:11:20 GMT`, IMF-fixdate).
pub(crate) fn httpdate_parse(s: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months.iter().position(|m| *m == parts[2])? + 1;
    let text = format!("{}-{month:02}-{:0>2}T{}Z", parts[3], parts[1], parts[4]);
    humantime::parse_rfc3339(&text).ok()
}

impl Http {
    pub fn new(
        registry: &str,
        api_host: &str,
        repository: &str,
        plain_http: bool,
        creds: Option<Credentials>,
        timeout: Duration,
    ) -> Http {
        let scheme = if plain_http { "http" } else { "https" };
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("cicache/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
            .timeout_resolve(Some(timeout.min(Duration::from_secs(10))))
            .timeout_recv_response(Some(timeout))
            .timeout_per_read(Some(timeout))
            .timeout_per_write(Some(timeout))
            .max_idle_connections_per_host(16);
        if plain_http {
            config = config.proxy(None);
        }
        Http {
            agent: config.build().new_agent(),
            base: format!("{scheme}://{api_host}"),
            registry: registry.to_string(),
            repository: repository.to_string(),
            location: format!("oci://{registry}/{repository}"),
            creds,
            auth: Mutex::new(Auth::None),
            clock_offset: AtomicI64::new(0),
            timeout,
            counters: Counters::default(),
        }
    }

    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.creds
            .as_ref()
            .map(|c| (c.username.as_str(), c.source.as_str()))
    }

    /// The registry's clock now (ours corrected by the last `Date` the registry sent).
    pub fn store_now(&self) -> SystemTime {
        let off = self.clock_offset.load(Ordering::Relaxed);
        let now = SystemTime::now();
        if off >= 0 {
            now + Duration::from_secs(off as u64)
        } else {
            now - Duration::from_secs(off.unsigned_abs())
        }
    }

    pub fn repo_path(&self, rest: &str) -> String {
        format!("/v2/{}/{rest}", self.repository)
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    pub fn remote(&self, op: &'static str, object: &str, message: String) -> BackendError {
        BackendError::Remote {
            location: self.location.clone(),
            op,
            object: object.to_string(),
            message,
        }
    }

    fn network(&self, op: &'static str, object: &str, e: ureq::Error) -> BackendError {
        match e {
            ureq::Error::Timeout(_) => BackendError::Timeout {
                location: self.location.clone(),
                op,
                object: object.to_string(),
                seconds: self.timeout.as_secs().max(1),
            },
            ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::TimedOut => {
                BackendError::Timeout {
                    location: self.location.clone(),
                    op,
                    object: object.to_string(),
                    seconds: self.timeout.as_secs().max(1),
                }
            }
            e => self.remote(
                op,
                object,
                format!("{e} (is the registry running and reachable?)"),
            ),
        }
    }

    fn send_once(
        &self,
        method: &http::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        auth: Option<&str>,
    ) -> Result<Answer, ureq::Error> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let mut b = http::Request::builder().method(method.clone()).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if let Some(a) = auth {
            b = b.header("Authorization", a);
        }
        let response = match body {
            Some(bytes) => self.agent.run(b.body(bytes.to_vec())?)?,
            None => self.agent.run(b.body(())?)?,
        };
        let (parts, body) = response.into_parts();
        if let Some(date) = parts
            .headers
            .get("date")
            .and_then(|v| v.to_str().ok())
            .and_then(httpdate_parse)
        {
            let off = match date.duration_since(SystemTime::now()) {
                Ok(d) => d.as_secs() as i64,
                Err(e) => -(e.duration().as_secs() as i64),
            };
            self.clock_offset.store(off, Ordering::Relaxed);
        }
        Ok(Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    fn auth_header(&self) -> Option<String> {
        let state = self.auth.lock().ok()?.clone();
        match state {
            Auth::None => None,
            Auth::Basic => self.creds.as_ref().map(Credentials::basic_header),
            Auth::Bearer { token, .. } => Some(format!("Bearer {}", token.expose())),
        }
    }

    fn no_credentials_hint(&self) -> String {
        match &self.creds {
            None => format!(
                "no credentials for {0}: set CICACHE_OCI_USERNAME and CICACHE_OCI_PASSWORD, or run `docker login {0}` (cicache reads the Docker config at $DOCKER_CONFIG/config.json or ~/.docker/config.json)",
                self.registry
            ),
            Some(c) => format!(
                "check the username {:?} and the password from {}",
                c.username, c.source
            ),
        }
    }

    /// Answers a challenge; `Ok(false)` when there is nothing more to try.
    fn authenticate(
        &self,
        challenge: &str,
        op: &'static str,
        object: &str,
    ) -> Result<bool, BackendError> {
        let (scheme, params) = parse_challenge(challenge);
        let previous = self.auth.lock().map(|s| s.clone()).unwrap_or_default();
        match scheme.as_str() {
            "basic" => {
                if self.creds.is_none() || matches!(previous, Auth::Basic) {
                    return Ok(false);
                }
                if let Ok(mut s) = self.auth.lock() {
                    *s = Auth::Basic;
                }
                Ok(true)
            }
            "bearer" => {
                let Some(realm) = params.get("realm") else {
                    return Err(self.remote(
                        op,
                        object,
                        "a Bearer challenge without a realm".into(),
                    ));
                };
                let mut scopes = match &previous {
                    Auth::Bearer { scopes, .. } => scopes.clone(),
                    _ => BTreeSet::new(),
                };
                let before = scopes.len();
                if let Some(scope) = params.get("scope") {
                    for s in scope.split(' ').filter(|s| !s.is_empty()) {
                        scopes.insert(s.to_string());
                    }
                }
                // The store pulls and pushes: ask for both at once.
                scopes.insert(format!("repository:{}:pull,push", self.repository));
                if matches!(previous, Auth::Bearer { .. }) && scopes.len() == before {
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
                let mut reply = self
                    .send_once(&http::Method::GET, &url, &[], None, basic.as_deref())
                    .map_err(|e| self.network("fetching a registry token for", object, e))?;
                if reply.status == 401 || reply.status == 403 {
                    return Ok(false);
                }
                if reply.status != 200 {
                    let detail = reply.detail();
                    return Err(self.remote(
                        op,
                        object,
                        format!("fetching a token from {realm}: {detail}"),
                    ));
                }
                let body = reply.read_small().unwrap_or_default();
                let v: Value = serde_json::from_slice(&body)
                    .map_err(|e| self.remote(op, object, format!("the token from {realm}: {e}")))?;
                let token = v
                    .get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        self.remote(op, object, format!("no token in the answer of {realm}"))
                    })?;
                if let Ok(mut s) = self.auth.lock() {
                    *s = Auth::Bearer {
                        token: Secret::new(token),
                        scopes,
                    };
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Sends a request, answering authentication challenges. 401 after that and 403 are
    /// errors naming the object; every other status is the caller's to judge.
    pub fn send(
        &self,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        op: &'static str,
        object: &str,
    ) -> Result<Answer, BackendError> {
        let url = self.url(path);
        // distribution's filesystem storage rewrites links (tags, blobs of a repository) in
        // place: a read or write racing another agent's at that moment is a 500. Requests
        // that can be repeated are, like any registry's transient errors.
        let repeatable = matches!(
            method,
            http::Method::GET | http::Method::HEAD | http::Method::DELETE
        ) || (method == http::Method::PUT && url.contains("/manifests/"));
        let mut server_errors = 0;
        let mut auth_rounds = 0;
        while auth_rounds < 3 {
            let auth = self.auth_header();
            let mut reply = self
                .send_once(&method, &url, headers, body, auth.as_deref())
                .map_err(|e| self.network(op, object, e))?;
            if reply.status >= 500 && repeatable && server_errors < 3 {
                server_errors += 1;
                std::thread::sleep(Duration::from_millis(100 * server_errors));
                continue;
            }
            auth_rounds += 1;
            if reply.status == 403 {
                let detail = reply.detail();
                return Err(self.remote(
                    op,
                    object,
                    format!("access denied ({detail}); check the permissions of these credentials"),
                ));
            }
            if reply.status != 401 {
                return Ok(reply);
            }
            let challenge = reply.header("www-authenticate").unwrap_or("").to_string();
            if !self.authenticate(&challenge, op, object)? {
                let detail = reply.detail();
                return Err(BackendError::Unusable {
                    location: self.location.clone(),
                    message: format!("not authorized ({detail}); {}", self.no_credentials_hint()),
                });
            }
        }
        Err(BackendError::Unusable {
            location: self.location.clone(),
            message: format!(
                "the registry kept asking for credentials; {}",
                self.no_credentials_hint()
            ),
        })
    }

    // --- manifests ---

    /// A manifest by tag or digest: `(digest, bytes)`, `None` when absent (also when the
    /// repository does not exist yet: an empty store).
    pub fn get_manifest(
        &self,
        reference: &str,
        object: &str,
    ) -> Result<Option<(String, Vec<u8>)>, BackendError> {
        let path = self.repo_path(&format!("manifests/{reference}"));
        let mut reply = self.send(
            http::Method::GET,
            &path,
            &[("Accept", MEDIA_OCI_MANIFEST)],
            None,
            "read",
            object,
        )?;
        match reply.status {
            200 => {}
            404 => return Ok(None),
            _ => {
                let d = reply.detail();
                return Err(self.remote("read", object, d));
            }
        }
        let digest = reply.header("docker-content-digest").map(str::to_string);
        let body = reply
            .read_small()
            .map_err(|e| self.remote("read", object, e.to_string()))?;
        let digest = digest.unwrap_or_else(|| sha256_digest(&body));
        Ok(Some((digest, body)))
    }

    /// The digest a tag points at, `None` when absent.
    pub fn head_manifest(&self, tag: &str, object: &str) -> Result<Option<String>, BackendError> {
        let path = self.repo_path(&format!("manifests/{tag}"));
        let mut reply = self.send(
            http::Method::HEAD,
            &path,
            &[("Accept", MEDIA_OCI_MANIFEST)],
            None,
            "stat",
            object,
        )?;
        match reply.status {
            200 => Ok(Some(
                reply
                    .header("docker-content-digest")
                    .map(str::to_string)
                    .unwrap_or_default(),
            )),
            404 => Ok(None),
            _ => {
                let d = reply.detail();
                Err(self.remote("stat", object, d))
            }
        }
    }

    pub fn put_manifest(&self, tag: &str, bytes: &[u8], object: &str) -> Result<(), BackendError> {
        self.counters.manifest_puts.fetch_add(1, Ordering::Relaxed);
        let path = self.repo_path(&format!("manifests/{tag}"));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut reply = self.send(
                http::Method::PUT,
                &path,
                &[("Content-Type", MEDIA_OCI_MANIFEST)],
                Some(bytes),
                "publish",
                object,
            )?;
            if reply.status == 201 || reply.status == 200 {
                return Ok(());
            }
            let d = reply.detail();
            // distribution checks the layers through per-repository links that another
            // agent uploading the same blob rewrites in place: for a moment the blob is
            // "unknown" or its digest "invalid". Tried again before believing it.
            if (d.contains("BLOB_UNKNOWN") || d.contains("DIGEST_INVALID")) && attempt < 4 {
                std::thread::sleep(Duration::from_millis(150 * attempt));
                continue;
            }
            let hint = if d.contains("BLOB_UNKNOWN") {
                "; a blob it needs is gone from the registry (garbage-collected?): save again"
            } else {
                ""
            };
            return Err(self.remote("publish", object, format!("{d}{hint}")));
        }
    }

    /// Deletes a manifest by digest; a missing one is fine.
    pub fn delete_manifest(&self, digest: &str, object: &str) -> Result<(), BackendError> {
        let path = self.repo_path(&format!("manifests/{digest}"));
        let mut reply = self.send(http::Method::DELETE, &path, &[], None, "delete", object)?;
        match reply.status {
            200 | 202 | 204 | 404 => Ok(()),
            405 => {
                let d = reply.detail();
                Err(self.remote(
                    "delete",
                    object,
                    format!(
                        "the registry does not allow deleting manifests ({d}); on a distribution registry set `storage: delete: enabled: true`"
                    ),
                ))
            }
            _ => {
                let d = reply.detail();
                Err(self.remote("delete", object, d))
            }
        }
    }

    /// Every tag of the repository (none when the repository does not exist yet).
    pub fn tags(&self, object: &str) -> Result<Vec<String>, BackendError> {
        let mut path = self.repo_path("tags/list?n=1000");
        let mut tags = Vec::new();
        for _ in 0..100_000 {
            let mut reply = self.send(http::Method::GET, &path, &[], None, "list", object)?;
            match reply.status {
                200 => {}
                404 => return Ok(Vec::new()),
                _ => {
                    let d = reply.detail();
                    return Err(self.remote("list", object, d));
                }
            }
            let link = reply.header("link").map(str::to_string);
            let body = reply
                .read_small()
                .map_err(|e| self.remote("list", object, e.to_string()))?;
            let v: Value = serde_json::from_slice(&body)
                .map_err(|e| self.remote("list", object, format!("the tag list: {e}")))?;
            if let Some(list) = v.get("tags").and_then(Value::as_array) {
                tags.extend(list.iter().filter_map(Value::as_str).map(str::to_string));
            }
            let next = link.and_then(|l| {
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

    // --- blobs ---

    pub fn head_blob(&self, digest: &str, object: &str) -> Result<Option<u64>, BackendError> {
        let path = self.repo_path(&format!("blobs/{digest}"));
        let mut reply = self.send(http::Method::HEAD, &path, &[], None, "stat", object)?;
        match reply.status {
            200 => Ok(Some(
                reply
                    .header("content-length")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
            )),
            404 => Ok(None),
            _ => {
                let d = reply.detail();
                Err(self.remote("stat", object, d))
            }
        }
    }

    /// A blob as a stream; `None` when the registry does not have it.
    pub fn get_blob(
        &self,
        digest: &str,
        object: &str,
    ) -> Result<Option<ObjectReader>, BackendError> {
        let path = self.repo_path(&format!("blobs/{digest}"));
        let mut reply = self.send(http::Method::GET, &path, &[], None, "read", object)?;
        match reply.status {
            200 => Ok(Some(Box::new(reply.body.into_reader()))),
            404 => Ok(None),
            _ => {
                let d = reply.detail();
                Err(self.remote("read", object, d))
            }
        }
    }

    fn upload_location(&self, reply: &Answer, object: &str) -> Result<String, BackendError> {
        reply
            .header("location")
            .map(str::to_string)
            .ok_or_else(|| self.remote("write", object, "no Location in the upload answer".into()))
    }

    /// Uploads a blob from memory unless the registry has it.
    pub fn push_bytes(&self, bytes: &[u8], object: &str) -> Result<String, BackendError> {
        let digest = sha256_digest(bytes);
        if self.head_blob(&digest, object)?.is_some() {
            self.counters.blobs_present.fetch_add(1, Ordering::Relaxed);
            return Ok(digest);
        }
        let location = self.start_upload(object)?;
        self.finish_upload(&location, &digest, bytes, object)?;
        Ok(digest)
    }

    fn start_upload(&self, object: &str) -> Result<String, BackendError> {
        self.counters.blob_uploads.fetch_add(1, Ordering::Relaxed);
        let start = self.repo_path("blobs/uploads/");
        let mut reply = self.send(
            http::Method::POST,
            &start,
            &[("Content-Length", "0")],
            Some(&[]),
            "write",
            object,
        )?;
        if reply.status != 202 {
            let d = reply.detail();
            return Err(self.remote("write", object, format!("starting an upload: {d}")));
        }
        self.upload_location(&reply, object)
    }

    fn finish_upload(
        &self,
        location: &str,
        digest: &str,
        last: &[u8],
        object: &str,
    ) -> Result<(), BackendError> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={}", encode_query(digest));
        let mut reply = self.send(
            http::Method::PUT,
            &put,
            &[("Content-Type", "application/octet-stream")],
            Some(last),
            "write",
            object,
        )?;
        if reply.status != 201 && reply.status != 204 {
            let d = reply.detail();
            return Err(self.remote("write", object, format!("finishing an upload: {d}")));
        }
        self.counters
            .bytes_uploaded
            .fetch_add(last.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Uploads a file as the blob `digest` (already known absent): one PUT when small,
    /// PATCH chunks of [`CHUNK`] bytes when large.
    pub fn push_file(
        &self,
        path: &Path,
        digest: &str,
        size: u64,
        object: &str,
    ) -> Result<(), BackendError> {
        let io = |e: std::io::Error| BackendError::Io {
            location: self.location.clone(),
            op: "read local file for",
            object: object.to_string(),
            source: e,
        };
        let mut f = File::open(path).map_err(io)?;
        let mut location = self.start_upload(object)?;
        if size <= CHUNK {
            let mut buf = Vec::with_capacity(size as usize);
            f.read_to_end(&mut buf).map_err(io)?;
            return self.finish_upload(&location, digest, &buf, object);
        }
        let mut offset = 0u64;
        let mut buf = vec![0u8; CHUNK as usize];
        loop {
            let mut n = 0;
            while n < buf.len() {
                let k = f.read(&mut buf[n..]).map_err(io)?;
                if k == 0 {
                    break;
                }
                n += k;
            }
            if n == 0 {
                break;
            }
            let range = format!("{}-{}", offset, offset + n as u64 - 1);
            let len = n.to_string();
            let mut reply = self.send(
                http::Method::PATCH,
                &location,
                &[
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Range", &range),
                    ("Content-Length", &len),
                ],
                Some(&buf[..n]),
                "write",
                object,
            )?;
            if reply.status != 202 {
                let d = reply.detail();
                return Err(self.remote("write", object, format!("uploading a chunk: {d}")));
            }
            location = self.upload_location(&reply, object)?;
            self.counters.upload_chunks.fetch_add(1, Ordering::Relaxed);
            offset += n as u64;
            self.counters
                .bytes_uploaded
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        self.finish_upload(&location, digest, &[], object)
    }
}
