//! The one HTTP client of the OCI distribution API, under both the tag commands
//! ([`crate::oci::OciClient`]) and the `oci://` store ([`crate::store`], through
//! [`crate::store_http`]). Each of them turns a [`Failure`] into its own error type, naming
//! what it was doing; everything else lives here once.
//!
//! - **Authentication** answers the registry's `WWW-Authenticate` challenge: HTTP Basic with
//!   the credentials, or a bearer token fetched from the challenge's realm (with the
//!   credentials when there are some, anonymously otherwise). The scopes of every challenge
//!   are collected, so that one token serves them all.
//! - **Retries**: requests that can be repeated (GET, HEAD, DELETE, manifest PUT) are sent
//!   again on a 5xx answer, up to 3 times: distribution's filesystem storage rewrites links
//!   in place, and a request racing another agent's write at that moment is a 500. A manifest
//!   PUT refused with `BLOB_UNKNOWN` or `DIGEST_INVALID` is tried again for the same reason.
//! - **Timeouts**: either each whole request is bounded (manifests and configs), or
//!   connecting, waiting for the answer and every single read or write of a body are (cache
//!   blobs of hundreds of megabytes may take longer in total as long as they move).
//! - **Secrets**: credentials and tokens go only into `Authorization` headers. A server body or
//!   URL that goes into an error passes through [`redact`] first (a server or proxy that
//!   echoes the request headers would otherwise put them in the build log) and is cut to
//!   [`MAX_DETAIL`] characters.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use ureq::http;

use crate::credentials::{Credentials, Secret};
use crate::reference::Target;

/// Uploads up to this size go in one PUT; larger ones in PATCH chunks of this size (ECR
/// wants chunks of at least 5 MiB but the last).
pub const CHUNK: u64 = 16 << 20;
/// Largest manifest, config or token answer read into memory.
pub(crate) const MAX_DOCUMENT: u64 = 16 << 20;
/// Largest part of an error body read.
const MAX_ERROR_BODY: u64 = 64 << 10;
/// Longest server text (an error body, after redaction) that goes into an error.
pub const MAX_DETAIL: usize = 300;
/// What stands where a secret was.
pub const REDACTED: &str = "<redacted>";

/// Counters of what a client did, for `-v` and for tests.
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

/// How a [`Client`] talks to its registry.
#[derive(Debug, Clone)]
pub(crate) struct ClientOptions {
    /// `http://` instead of `https://`.
    pub plain_http: bool,
    pub timeout: Duration,
    /// `true`: `timeout` bounds each whole request. `false`: it bounds connecting, waiting
    /// for the answer, and each read or write of a body.
    pub whole_request: bool,
    /// Ask every bearer token for pull and push on the repository (the store does both).
    pub push_scope: bool,
    /// What a user without credentials should do, as a phrase (`pass --username and
    /// --password-stdin`); the hint adds `docker login`.
    pub login_advice: &'static str,
}

/// Why a request or an operation failed, before a front end names its object.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No answer: refused, unreachable, a TLS error, a timeout.
    Network {
        operation: &'static str,
        url: String,
        detail: String,
        timed_out: bool,
    },
    /// An answer the operation does not expect.
    Status {
        operation: &'static str,
        url: String,
        status: u16,
        detail: String,
        codes: Vec<String>,
    },
    /// 403.
    Forbidden {
        operation: &'static str,
        detail: String,
    },
    /// 401 with nothing more to try; `hint` says what to do.
    Unauthorized { detail: String, hint: String },
    /// The repository does not exist (its tag list or a manifest answered `NAME_UNKNOWN`).
    RepositoryUnknown,
    /// The registry refuses manifest deletes (405).
    DeleteDisabled { detail: String },
    /// An answer that cannot be used (`what`: which one).
    Bad { what: String, detail: String },
    /// A local file to upload could not be read.
    Io(std::io::Error),
}

/// `detail` with its status: `HTTP 500: ...`, or `HTTP 500` alone.
pub(crate) fn with_status(status: u16, detail: &str) -> String {
    let plain = format!("HTTP {status}");
    if detail == plain {
        plain
    } else {
        format!("{plain}: {detail}")
    }
}

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

    /// Reads a small body (a manifest, a config, a token answer).
    pub fn read_small(&mut self) -> std::io::Result<Vec<u8>> {
        self.body
            .with_config()
            .limit(MAX_DOCUMENT)
            .read_to_vec()
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// A manifest as the registry sent it.
pub(crate) struct Fetched {
    pub digest: String,
    /// The `Content-Type` without parameters.
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// What a blob HEAD says.
pub(crate) struct BlobHead {
    pub size: u64,
    pub last_modified: Option<SystemTime>,
}

/// A distribution API client for one repository.
pub(crate) struct Client {
    agent: ureq::Agent,
    base: String,
    pub registry: String,
    pub repository: String,
    creds: Option<Credentials>,
    auth: Mutex<Auth>,
    opts: ClientOptions,
    /// Registry clock minus ours, in seconds, from the last `Date` header.
    clock_offset: AtomicI64,
    pub counters: Counters,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("repository", &self.repository)
            .field("timeout", &self.opts.timeout)
            .finish_non_exhaustive()
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

/// Percent-encodes a query value (everything but `A-Za-z0-9-_.~`).
pub(crate) fn encode_query(s: &str) -> String {
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

/// Parses an HTTP date (`Wed, 25 Nov 2026 08:11:20 GMT`, the IMF-fixdate every registry
/// sends).
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

// ------------------------------------------------------------------------------ redaction

/// Names whose value is a secret wherever they stand (`NAME=value`, `NAME: value`,
/// `"NAME":"value"`), also as the last part of a longer name (`access_token`,
/// `X-Amz-Security-Token`, `X-Amz-Signature`).
const SECRET_KEYS: [&str; 10] = [
    "token",
    "password",
    "passwd",
    "secret",
    "signature",
    "credential",
    "apikey",
    "api_key",
    "auth",
    "session",
];
/// Names whose whole value (up to the end of the line or quote) is a secret: it may hold a
/// scheme and a space (`Authorization: Basic dXNlcjpwYXNz`).
const SECRET_LINE_KEYS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];
/// Authorization schemes; the word after one is a credential. (Not `Digest`: registries
/// write "digest invalid".)
const SCHEMES: [&str; 3] = ["basic", "bearer", "aws4-hmac-sha256"];
/// Parameters of a `WWW-Authenticate` challenge, which follow a scheme but are not secret.
const CHALLENGE_PARAMS: [&str; 6] = ["realm", "service", "scope", "error", "charset", "nonce"];

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn is_token68(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~+/=".contains(&c)
}

/// Whether an identifier is, or ends in, one of `keys` (`X-Amz-Security-Token` ends in
/// `token`).
fn names_secret(ident: &str, keys: &[&str]) -> bool {
    let lower = ident.to_ascii_lowercase();
    keys.iter().any(|k| {
        lower == *k
            || lower
                .strip_suffix(k)
                .is_some_and(|head| head.ends_with('-') || head.ends_with('_'))
    })
}

/// Removes credentials and tokens from a server text or URL that goes into an error:
/// `known` secrets wherever they appear, the value of anything named like a secret
/// ([`SECRET_KEYS`]: `token=`, `password`, `X-Amz-Security-Token`, `X-Amz-Signature`, ...;
/// [`SECRET_LINE_KEYS`]: `Authorization: ...` up to the end of its line), the word after an
/// authorization scheme (`Basic ...`, `Bearer ...`) and the user info of a URL
/// (`https://user:pass@host`). Redacts too much rather than too little.
pub fn redact(text: &str, known: &[&str]) -> String {
    let mut text = text.to_string();
    for k in known.iter().filter(|k| k.len() >= 4) {
        text = text.replace(k, REDACTED);
    }
    let mut out = String::with_capacity(text.len());
    let (mut i, mut copied) = (0, 0);
    while i < text.len() {
        let (secret, next) = secret_at(&text, i);
        match secret.filter(|(s, e)| e > s && &text[*s..*e] != REDACTED) {
            Some((start, end)) => {
                out.push_str(&text[copied..start]);
                out.push_str(REDACTED);
                copied = end;
                i = end;
            }
            None => i = next,
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// The byte range of a secret that the text at `i` introduces, if any, and where to look
/// next. Every range starts and ends next to an ASCII byte (a char boundary).
fn secret_at(text: &str, i: usize) -> (Option<(usize, usize)>, usize) {
    let bytes = text.as_bytes();
    let run = |from: usize, take: &dyn Fn(u8) -> bool| {
        from + bytes[from..].iter().take_while(|c| take(**c)).count()
    };
    // `scheme://user:pass@host`
    if bytes[i..].starts_with(b"://") {
        let from = i + 3;
        let end = run(from, &|c| !b"/?#\"' \t\r\n<>".contains(&c));
        let at = bytes[from..end].iter().rposition(|c| *c == b'@');
        return (at.map(|at| (from, from + at)), from);
    }
    if (i > 0 && is_ident(bytes[i - 1])) || !is_ident(bytes[i]) {
        return (None, i + 1);
    }
    let word_end = run(i, &is_ident);
    let word = &text[i..word_end];
    // `Basic <credential>`, `Bearer <token>`; not a challenge's `Basic realm="..."`.
    if SCHEMES.iter().any(|s| word.eq_ignore_ascii_case(s)) {
        let v = run(word_end, &|c| c == b' ' || c == b'\t');
        let end = run(v, &is_token68);
        let param = text[v..end]
            .split('=')
            .next()
            .is_some_and(|p| CHALLENGE_PARAMS.iter().any(|c| p.eq_ignore_ascii_case(c)));
        return ((v > word_end && !param).then_some((v, end)), word_end);
    }
    let line = names_secret(word, &SECRET_LINE_KEYS);
    if !line && !names_secret(word, &SECRET_KEYS) {
        return (None, word_end);
    }
    // A closing quote, spaces, `=` or `:`, then spaces, quotes or `[` before the value.
    let mut j = word_end;
    if j < bytes.len() && (bytes[j] == b'"' || bytes[j] == b'\'') {
        j += 1;
    }
    j = run(j, &|c| c == b' ' || c == b'\t');
    if j >= bytes.len() || (bytes[j] != b'=' && bytes[j] != b':') {
        return (None, word_end);
    }
    let v = run(j + 1, &|c| b" \t\"'[".contains(&c));
    let stop: &[u8] = if line {
        b"\"'\r\n<>}]"
    } else {
        b"\"'\r\n<>&;}], \t"
    };
    let end = run(v, &|c| !stop.contains(&c));
    (Some((v, end)), word_end)
}

/// `text` cut to [`MAX_DETAIL`] characters, with `...` where it was cut.
pub(crate) fn cut(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= MAX_DETAIL {
        return text.to_string();
    }
    let mut s: String = text.chars().take(MAX_DETAIL).collect();
    s.push_str("...");
    s
}

// ------------------------------------------------------------------------------ the client

impl Client {
    pub fn new(target: &Target, creds: Option<Credentials>, opts: ClientOptions) -> Client {
        let scheme = if opts.plain_http { "http" } else { "https" };
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("cicache/", env!("CARGO_PKG_VERSION")))
            .max_idle_connections_per_host(16);
        let t = opts.timeout;
        config = if opts.whole_request {
            config.timeout_global(Some(t))
        } else {
            config
                .timeout_connect(Some(t.min(Duration::from_secs(10))))
                .timeout_resolve(Some(t.min(Duration::from_secs(10))))
                .timeout_recv_response(Some(t))
                .timeout_per_read(Some(t))
                .timeout_per_write(Some(t))
        };
        if target.is_loopback() {
            config = config.proxy(None);
        }
        Client {
            agent: config.build().new_agent(),
            base: format!("{scheme}://{}", target.api_host()),
            registry: target.registry.clone(),
            repository: target.repository.clone(),
            creds,
            auth: Mutex::new(Auth::None),
            opts,
            clock_offset: AtomicI64::new(0),
            counters: Counters::default(),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.opts.timeout
    }

    /// Who the client authenticates as and where that came from; never the password.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.creds
            .as_ref()
            .map(|c| (c.username.as_str(), c.source.as_str()))
    }

    /// The registry's clock now (ours corrected by the last `Date` the registry sent).
    pub fn registry_now(&self) -> SystemTime {
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

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    /// [`redact`] with this client's own secrets (password, Basic value, bearer token).
    pub fn redact(&self, text: &str) -> String {
        let mut known: Vec<String> = Vec::new();
        if let Some(c) = &self.creds {
            known.push(c.password.expose().to_string());
            if let Some(v) = c.basic_header().strip_prefix("Basic ") {
                known.push(v.to_string());
            }
        }
        if let Ok(Auth::Bearer { token, .. }) = self.auth.lock().as_deref() {
            known.push(token.expose().to_string());
        }
        let refs: Vec<&str> = known.iter().map(String::as_str).collect();
        redact(text, &refs)
    }

    /// The registry's error codes and messages (`NAME_UNKNOWN: repository name not known`),
    /// else the body's text, redacted and cut; `HTTP <status>` when the body says nothing.
    /// Also the codes.
    fn detail_of(&self, answer: &mut Answer) -> (String, Vec<String>) {
        let mut body = Vec::new();
        let _ = answer
            .body
            .as_reader()
            .take(MAX_ERROR_BODY)
            .read_to_end(&mut body);
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        let errors = parsed
            .as_ref()
            .and_then(|v| v.get("errors"))
            .and_then(Value::as_array);
        if let Some(errors) = errors.filter(|e| !e.is_empty()) {
            let code = |e: &Value| {
                e.get("code")
                    .and_then(Value::as_str)
                    .unwrap_or("ERROR")
                    .to_string()
            };
            let text: Vec<String> = errors
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        code(e),
                        e.get("message").and_then(Value::as_str).unwrap_or("")
                    )
                })
                .collect();
            let codes = errors.iter().map(code).collect();
            return (cut(&self.redact(&text.join("; "))), codes);
        }
        let text = String::from_utf8_lossy(&body);
        let text = cut(&self.redact(text.trim()));
        if text.is_empty() {
            (format!("HTTP {}", answer.status), Vec::new())
        } else {
            (text, Vec::new())
        }
    }

    /// The answer as an unexpected-status failure.
    pub fn unexpected(&self, operation: &'static str, url: &str, mut answer: Answer) -> Failure {
        let (detail, codes) = self.detail_of(&mut answer);
        Failure::Status {
            operation,
            url: self.redact(&self.url(url)),
            status: answer.status,
            detail,
            codes,
        }
    }

    fn network(&self, operation: &'static str, url: &str, e: ureq::Error) -> Failure {
        let timed_out = matches!(e, ureq::Error::Timeout(_))
            || matches!(&e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut);
        Failure::Network {
            operation,
            url: self.redact(url),
            detail: cut(&self.redact(&e.to_string())),
            timed_out,
        }
    }

    fn hint(&self) -> String {
        match &self.creds {
            None => format!(
                "no credentials for {0}: {1}, or run `docker login {0}` (cicache reads the Docker config at $DOCKER_CONFIG/config.json or ~/.docker/config.json)",
                self.registry, self.opts.login_advice
            ),
            Some(c) => format!(
                "check the username {:?} and the password from {}",
                c.username, c.source
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

    /// Answers a challenge; `Ok(false)` when there is nothing more to try.
    fn authenticate(&self, challenge: &str) -> Result<bool, Failure> {
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
                    return Err(Failure::Bad {
                        what: format!("the challenge of {}", self.registry),
                        detail: "a Bearer challenge without a realm".into(),
                    });
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
                if self.opts.push_scope {
                    scopes.insert(format!("repository:{}:pull,push", self.repository));
                }
                if matches!(previous, Auth::Bearer { .. }) && scopes.len() == before {
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
                const OP: &str = "fetching a registry token";
                let basic = self.creds.as_ref().map(Credentials::basic_header);
                let mut reply = self
                    .send_once(&http::Method::GET, &url, &[], None, basic.as_deref())
                    .map_err(|e| self.network(OP, realm, e))?;
                match reply.status {
                    200 => {}
                    401 | 403 => return Ok(false),
                    _ => return Err(self.unexpected(OP, realm, reply)),
                }
                let what = || format!("the token from {}", self.redact(realm));
                let body = reply.read_small().map_err(|e| Failure::Bad {
                    what: what(),
                    detail: e.to_string(),
                })?;
                let v: Value = serde_json::from_slice(&body).map_err(|e| Failure::Bad {
                    what: what(),
                    detail: e.to_string(),
                })?;
                let token = v
                    .get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| Failure::Bad {
                        what: what(),
                        detail: "no `token` in the answer".into(),
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

    /// Sends a request, answering authentication challenges and repeating what can be
    /// repeated after a 5xx. 401 after that and 403 are failures; every other status is
    /// the caller's to judge.
    pub fn send(
        &self,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        operation: &'static str,
    ) -> Result<Answer, Failure> {
        let url = self.url(path);
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
                .map_err(|e| self.network(operation, &url, e))?;
            if reply.status >= 500 && repeatable && server_errors < 3 {
                server_errors += 1;
                std::thread::sleep(Duration::from_millis(100 * server_errors));
                continue;
            }
            auth_rounds += 1;
            if reply.status == 403 {
                let (detail, _) = self.detail_of(&mut reply);
                return Err(Failure::Forbidden { operation, detail });
            }
            if reply.status != 401 {
                return Ok(reply);
            }
            let challenge = reply.header("www-authenticate").unwrap_or("").to_string();
            if !self.authenticate(&challenge)? {
                let (detail, _) = self.detail_of(&mut reply);
                return Err(Failure::Unauthorized {
                    detail,
                    hint: self.hint(),
                });
            }
        }
        Err(Failure::Unauthorized {
            detail: "the registry kept asking for credentials".into(),
            hint: self.hint(),
        })
    }

    // --- the distribution API ---

    /// `GET /v2/`: the registry answers the API and accepts the credentials.
    pub fn ping(&self) -> Result<(), Failure> {
        const OP: &str = "checking the registry";
        let reply = self.send(http::Method::GET, "/v2/", &[], None, OP)?;
        match reply.status {
            200 => Ok(()),
            _ => Err(self.unexpected(OP, "/v2/", reply)),
        }
    }

    /// Every tag of the repository, sorted; [`Failure::RepositoryUnknown`] when there is
    /// no such repository.
    pub fn tags(&self) -> Result<Vec<String>, Failure> {
        const OP: &str = "listing tags";
        let mut path = self.repo_path("tags/list?n=1000");
        let mut tags = Vec::new();
        for _ in 0..100_000 {
            let mut reply = self.send(http::Method::GET, &path, &[], None, OP)?;
            match reply.status {
                200 => {}
                404 => return Err(Failure::RepositoryUnknown),
                _ => return Err(self.unexpected(OP, &path, reply)),
            }
            // Link: </v2/name/tags/list?last=x&n=1000>; rel="next"
            let next = reply.header("link").and_then(|l| {
                let start = l.find('<')? + 1;
                let end = l.find('>')?;
                (l.contains("rel=\"next\"") && end > start).then(|| l[start..end].to_string())
            });
            let bad = |detail: String| Failure::Bad {
                what: format!("the tag list of {}/{}", self.registry, self.repository),
                detail,
            };
            let body = reply.read_small().map_err(|e| bad(e.to_string()))?;
            let v: Value = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
            if let Some(list) = v.get("tags").and_then(Value::as_array) {
                tags.extend(list.iter().filter_map(Value::as_str).map(str::to_string));
            }
            match next {
                Some(n) => path = n,
                None => break,
            }
        }
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    /// A manifest by tag or digest; `None` when there is none, [`Failure::RepositoryUnknown`]
    /// when the repository does not exist.
    pub fn get_manifest(&self, reference: &str, accept: &str) -> Result<Option<Fetched>, Failure> {
        const OP: &str = "reading a manifest";
        let path = self.repo_path(&format!("manifests/{reference}"));
        let mut reply = self.send(http::Method::GET, &path, &[("Accept", accept)], None, OP)?;
        match reply.status {
            200 => {}
            404 => {
                let (_, codes) = self.detail_of(&mut reply);
                if codes.iter().any(|c| c == "NAME_UNKNOWN") {
                    return Err(Failure::RepositoryUnknown);
                }
                return Ok(None);
            }
            _ => return Err(self.unexpected(OP, &path, reply)),
        }
        let digest = reply.header("docker-content-digest").map(str::to_string);
        let content_type = reply
            .header("content-type")
            .map(|c| c.split(';').next().unwrap_or(c).trim().to_string());
        let bytes = reply.read_small().map_err(|e| Failure::Bad {
            what: format!(
                "the manifest {}/{}:{reference}",
                self.registry, self.repository
            ),
            detail: e.to_string(),
        })?;
        Ok(Some(Fetched {
            digest: digest.unwrap_or_else(|| sha256_digest(&bytes)),
            content_type,
            bytes,
        }))
    }

    /// The digest a tag points at (`HEAD`): `Some("")` when the registry does not say it,
    /// `None` when there is no such tag.
    pub fn head_manifest(&self, reference: &str, accept: &str) -> Result<Option<String>, Failure> {
        const OP: &str = "checking a manifest";
        let path = self.repo_path(&format!("manifests/{reference}"));
        let reply = self.send(http::Method::HEAD, &path, &[("Accept", accept)], None, OP)?;
        match reply.status {
            200 => Ok(Some(
                reply
                    .header("docker-content-digest")
                    .unwrap_or_default()
                    .to_string(),
            )),
            404 => Ok(None),
            _ => Err(self.unexpected(OP, &path, reply)),
        }
    }

    /// Puts a manifest under a tag or its digest; returns its digest.
    pub fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, Failure> {
        const OP: &str = "putting a manifest";
        self.counters.manifest_puts.fetch_add(1, Ordering::Relaxed);
        let path = self.repo_path(&format!("manifests/{reference}"));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let reply = self.send(
                http::Method::PUT,
                &path,
                &[("Content-Type", media_type)],
                Some(bytes),
                OP,
            )?;
            if reply.status == 201 || reply.status == 200 {
                return Ok(reply
                    .header("docker-content-digest")
                    .map(str::to_string)
                    .unwrap_or_else(|| sha256_digest(bytes)));
            }
            let failure = self.unexpected(OP, &path, reply);
            // distribution checks the layers through per-repository links that another
            // agent uploading the same blob rewrites in place: for a moment the blob is
            // unknown (`MANIFEST_BLOB_UNKNOWN`) or its digest invalid. Tried again before
            // believing it.
            let racy = matches!(&failure, Failure::Status { codes, .. }
                if codes.iter().any(|c| c.contains("BLOB_UNKNOWN") || c.contains("DIGEST_INVALID")));
            if racy && attempt < 4 {
                std::thread::sleep(Duration::from_millis(150 * attempt));
                continue;
            }
            return Err(failure);
        }
    }

    /// Deletes a manifest by digest; `Ok(false)` when it was already gone.
    pub fn delete_manifest(&self, digest: &str) -> Result<bool, Failure> {
        const OP: &str = "deleting a manifest";
        let path = self.repo_path(&format!("manifests/{digest}"));
        let mut reply = self.send(http::Method::DELETE, &path, &[], None, OP)?;
        match reply.status {
            200 | 202 | 204 => Ok(true),
            404 => Ok(false),
            405 => Err(Failure::DeleteDisabled {
                detail: self.detail_of(&mut reply).0,
            }),
            _ => Err(self.unexpected(OP, &path, reply)),
        }
    }

    /// A blob's size and `Last-Modified`; `None` when the registry does not have it.
    pub fn head_blob(&self, digest: &str) -> Result<Option<BlobHead>, Failure> {
        const OP: &str = "checking a blob";
        let path = self.repo_path(&format!("blobs/{digest}"));
        let reply = self.send(http::Method::HEAD, &path, &[], None, OP)?;
        match reply.status {
            200 => Ok(Some(BlobHead {
                size: reply
                    .header("content-length")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                last_modified: reply.header("last-modified").and_then(httpdate_parse),
            })),
            404 => Ok(None),
            _ => Err(self.unexpected(OP, &path, reply)),
        }
    }

    /// A blob's body, unread; `None` when the registry does not have it.
    pub fn get_blob(&self, digest: &str) -> Result<Option<ureq::Body>, Failure> {
        const OP: &str = "reading a blob";
        let path = self.repo_path(&format!("blobs/{digest}"));
        let reply = self.send(http::Method::GET, &path, &[], None, OP)?;
        match reply.status {
            200 => Ok(Some(reply.body)),
            404 => Ok(None),
            _ => Err(self.unexpected(OP, &path, reply)),
        }
    }

    /// A small blob (a config) read whole; `None` when the registry does not have it.
    pub fn get_small_blob(&self, digest: &str) -> Result<Option<Vec<u8>>, Failure> {
        let Some(mut body) = self.get_blob(digest)? else {
            return Ok(None);
        };
        body.with_config()
            .limit(MAX_DOCUMENT)
            .read_to_vec()
            .map(Some)
            .map_err(|e| Failure::Bad {
                what: format!("the blob {digest} of {}/{}", self.registry, self.repository),
                detail: e.to_string(),
            })
    }

    /// Uploads a blob from memory unless the registry has it; returns its digest.
    pub fn push_bytes(&self, bytes: &[u8]) -> Result<String, Failure> {
        let digest = sha256_digest(bytes);
        if self.head_blob(&digest)?.is_some() {
            self.counters.blobs_present.fetch_add(1, Ordering::Relaxed);
            return Ok(digest);
        }
        let location = self.start_upload()?;
        self.finish_upload(&location, &digest, bytes)?;
        Ok(digest)
    }

    fn upload_location(&self, reply: &Answer, operation: &str) -> Result<String, Failure> {
        reply
            .header("location")
            .map(str::to_string)
            .ok_or_else(|| Failure::Bad {
                what: format!("{operation} to {}/{}", self.registry, self.repository),
                detail: "no Location header".into(),
            })
    }

    fn start_upload(&self) -> Result<String, Failure> {
        const OP: &str = "starting a blob upload";
        self.counters.blob_uploads.fetch_add(1, Ordering::Relaxed);
        let start = self.repo_path("blobs/uploads/");
        let reply = self.send(
            http::Method::POST,
            &start,
            &[("Content-Length", "0")],
            Some(&[]),
            OP,
        )?;
        if reply.status != 202 {
            return Err(self.unexpected(OP, &start, reply));
        }
        self.upload_location(&reply, OP)
    }

    fn finish_upload(&self, location: &str, digest: &str, last: &[u8]) -> Result<(), Failure> {
        const OP: &str = "uploading a blob";
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={}", encode_query(digest));
        let reply = self.send(
            http::Method::PUT,
            &put,
            &[("Content-Type", "application/octet-stream")],
            Some(last),
            OP,
        )?;
        if reply.status != 201 && reply.status != 204 {
            return Err(self.unexpected(OP, &put, reply));
        }
        self.counters
            .bytes_uploaded
            .fetch_add(last.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Uploads a file as the blob `digest` (already known absent): one PUT when small,
    /// PATCH chunks of [`CHUNK`] bytes when large.
    pub fn push_file(&self, path: &Path, digest: &str, size: u64) -> Result<(), Failure> {
        const OP: &str = "uploading a chunk";
        let mut f = File::open(path).map_err(Failure::Io)?;
        let mut location = self.start_upload()?;
        if size <= CHUNK {
            let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            f.read_to_end(&mut buf).map_err(Failure::Io)?;
            return self.finish_upload(&location, digest, &buf);
        }
        let mut offset = 0u64;
        let mut buf = vec![0u8; CHUNK as usize];
        loop {
            let mut n = 0;
            while n < buf.len() {
                let k = f.read(&mut buf[n..]).map_err(Failure::Io)?;
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
            let reply = self.send(
                http::Method::PATCH,
                &location,
                &[
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Range", &range),
                    ("Content-Length", &len),
                ],
                Some(&buf[..n]),
                OP,
            )?;
            if reply.status != 202 {
                return Err(self.unexpected(OP, &location, reply));
            }
            location = self.upload_location(&reply, OP)?;
            self.counters.upload_chunks.fetch_add(1, Ordering::Relaxed);
            offset += n as u64;
            self.counters
                .bytes_uploaded
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        self.finish_upload(&location, digest, &[])
    }
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
        assert_eq!(
            encode_query("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }

    /// Each case: a text a server could send back, and the secrets that must not survive.
    #[test]
    fn redaction_removes_credentials_and_tokens() {
        let cases: &[(&str, &[&str])] = &[
            (
                "Authorization: Basic dXNlcjpodW50ZXIy\r\nHost: x",
                &["dXNlcjpodW50ZXIy"],
            ),
            (
                "authorization: Bearer eyJhbGciOi.J9.sig-x_y",
                &["eyJhbGciOi"],
            ),
            (
                r#"{"headers":{"Authorization":["Bearer abc.def.ghi"]}}"#,
                &["abc.def.ghi"],
            ),
            ("GET /v2/?token=s3cr3tvalue&n=1 HTTP/1.1", &["s3cr3tvalue"]),
            (
                "X-Amz-Security-Token: FwoGZXIvYXdzEJr//////////",
                &["FwoGZXIvYXdzEJr"],
            ),
            (
                "https://bucket.s3/x?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=0123abcd&X-Amz-Date=1",
                &["0123abcd", "AKIA%2F1"],
            ),
            (r#"{"password": "hunter22", "user": "bob"}"#, &["hunter22"]),
            (
                r#"{"access_token":"at-123456","token":"t-654321"}"#,
                &["at-123456", "t-654321"],
            ),
            (
                "proxy said: https://bob:hunter22@proxy.local/ failed",
                &["hunter22", "bob:"],
            ),
            (
                "Cookie: session=abcdef123; other=zzz",
                &["abcdef123", "zzz"],
            ),
            (
                "token was Bearer    QWxhZGRpbjpvcGVu",
                &["QWxhZGRpbjpvcGVu"],
            ),
        ];
        for (text, secrets) in cases {
            let r = redact(text, &[]);
            for s in *secrets {
                assert!(!r.contains(s), "{s:?} survived in {r:?} (from {text:?})");
            }
            assert!(r.contains(REDACTED), "{r:?}");
        }
        // Known secrets go wherever they appear, in any shape.
        let r = redact("echo: user=bob pw is hunter2 ok", &["hunter2"]);
        assert_eq!(r, format!("echo: user=bob pw is {REDACTED} ok"));
        // What is not a secret stays readable.
        for plain in [
            "NAME_UNKNOWN: repository name not known to registry",
            r#"Basic realm="cicache-test""#,
            r#"Bearer realm="https://auth.example/token",service="reg""#,
            "no token in the answer",
            "blob upload unknown: sha256:abcdef",
        ] {
            assert_eq!(redact(plain, &[]), plain);
        }
    }

    #[test]
    fn details_are_cut() {
        let long = "x".repeat(1000);
        let c = cut(&long);
        assert_eq!(c.chars().count(), MAX_DETAIL + 3);
        assert_eq!(cut(" short "), "short");
        assert_eq!(with_status(500, "HTTP 500"), "HTTP 500");
        assert_eq!(with_status(500, "boom"), "HTTP 500: boom");
    }
}
