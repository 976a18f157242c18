//! The S3 backend: `s3://BUCKET/PREFIX`, for AWS S3 and S3-compatible stores (MinIO, Ceph
//! RGW, R2, moto).
//!
//! Objects live at `PREFIX/<name>` in the bucket. Credentials and region come from the AWS
//! default chain (environment, profile, web identity, instance role); the endpoint from
//! `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`, or the profile), or `?endpoint=` in the store
//! URL. See `docs/S3.md`.
//!
//! How each rule of the backend contract is met:
//! - a miss is `NoSuchKey` (GET) or 404 (HEAD);
//! - content-named objects are written once: a HEAD first (so an existing blob is not even
//!   uploaded), then a PUT (or a multipart upload) with `If-None-Match: *`, where a 412 means
//!   another writer got there first;
//! - `PutMode::CreateNew` is a PUT with `If-None-Match: *` (S3 makes it atomic; a 409
//!   "conditional request conflict" from a concurrent writer is retried); `Overwrite` a plain
//!   PUT, which S3 makes atomic;
//! - `list` reports S3's `LastModified`, the store's own clock.
//!
//! The `Backend` trait is synchronous and the store calls it from several threads at once;
//! the backend owns a multi-thread tokio runtime and blocks the calling thread on it.
//!
//! Bounds: every request (a part, a range, a small object) must finish within the timeout,
//! retries included; a body that sends nothing for the timeout fails; parts and ranges in
//! flight are bounded by a semaphore shared by all threads (`CICACHE_S3_CONCURRENCY`), and a
//! reader buffers its next range plus at most [`READ_AHEAD`] - 1 more from a budget of
//! `CICACHE_S3_CONCURRENCY` ranges shared by all readers.

mod transfer;

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, ProvideCredentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

use super::{Backend, ObjectInfo, ObjectReader, OpenOptions, PutMode};
use crate::error::BackendError;

/// Timeout when `--timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default part size of multipart uploads and of ranged GETs (as the AWS CLI).
pub const DEFAULT_PART_SIZE: u64 = 8 * MIB;
/// Default number of parts and ranges in flight, over all threads.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Ranges a reader fetches ahead of the one it returns.
pub const READ_AHEAD: usize = 4;

/// S3's smallest part (except the last).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest part and largest single PUT.
pub const MAX_PART_SIZE: u64 = 5 * GIB;
/// S3's most parts in one upload.
pub const MAX_PARTS: u64 = 10_000;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// Environment variables of this backend (documented in docs/S3.md).
pub mod env {
    /// `true`/`false`: path-style addressing (`http://host/bucket/key`).
    pub const PATH_STYLE: &str = "CICACHE_S3_PATH_STYLE";
    /// Part size of multipart uploads and ranged GETs: bytes, or with K/M/G (binary) suffix.
    pub const PART_SIZE: &str = "CICACHE_S3_PART_SIZE";
    /// Parts and ranges in flight over all threads.
    pub const CONCURRENCY: &str = "CICACHE_S3_CONCURRENCY";
}

/// What the store URL and the environment say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    /// Empty, or ends with `/`.
    pub prefix: String,
    /// `None`: on exactly when an endpoint URL is configured.
    pub path_style: Option<bool>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub part_size: u64,
    pub concurrency: usize,
}

impl S3Settings {
    /// Parses `BUCKET[/PREFIX][?path-style=BOOL&region=R&endpoint=URL]` (the part after
    /// `s3://`), then the `CICACHE_S3_*` variables (the URL wins over the environment).
    pub fn parse(rest: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let (bucket, prefix) = match path.split_once('/') {
            Some((b, p)) => (b, p.trim_matches('/')),
            None => (path, ""),
        };
        check_bucket(bucket)?;
        if prefix
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
            && !prefix.is_empty()
        {
            return Err(format!(
                "prefix {prefix:?} has an empty, `.` or `..` component; use s3://BUCKET/a/b"
            ));
        }
        let mut s = S3Settings {
            bucket: bucket.to_string(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            path_style: None,
            region: None,
            endpoint: None,
            part_size: DEFAULT_PART_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
        };
        if let Some(v) = env(env::PATH_STYLE) {
            s.path_style = Some(parse_bool(&v).map_err(|e| format!("{}: {e}", env::PATH_STYLE))?);
        }
        if let Some(v) = env(env::PART_SIZE) {
            s.part_size = parse_size(&v).map_err(|e| format!("{}: {e}", env::PART_SIZE))?;
        }
        if let Some(v) = env(env::CONCURRENCY) {
            s.concurrency = parse_count(&v).map_err(|e| format!("{}: {e}", env::CONCURRENCY))?;
        }
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            if pair.is_empty() {
                continue;
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
            match k {
                "path-style" | "path_style" => {
                    s.path_style = Some(parse_bool(v).map_err(|e| format!("{k}: {e}"))?)
                }
                "region" => s.region = Some(v.to_string()),
                "endpoint" => s.endpoint = Some(v.to_string()),
                "part-size" | "part_size" => {
                    s.part_size = parse_size(v).map_err(|e| format!("{k}: {e}"))?
                }
                "concurrency" => s.concurrency = parse_count(v).map_err(|e| format!("{k}: {e}"))?,
                _ => {
                    return Err(format!(
                        "unknown option {k:?}; known: path-style, region, endpoint, part-size, concurrency"
                    ));
                }
            }
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&s.part_size) {
            return Err(format!(
                "part size {} is outside S3's limits (5 MiB to 5 GiB)",
                s.part_size
            ));
        }
        Ok(s)
    }

    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix.trim_end_matches('/'))
    }
}

fn check_bucket(b: &str) -> Result<(), String> {
    let ok_chars = b
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if b.len() < 3 || b.len() > 63 || !ok_chars {
        return Err(format!(
            "bucket name {b:?} is not valid: 3 to 63 characters, lowercase letters, digits, `-` and `.`; use s3://BUCKET/PREFIX"
        ));
    }
    Ok(())
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{v:?} is not true or false")),
    }
}

fn parse_count(v: &str) -> Result<usize, String> {
    match v.trim().parse::<usize>() {
        Ok(n) if (1..=256).contains(&n) => Ok(n),
        _ => Err(format!("{v:?} is not a number from 1 to 256")),
    }
}

/// `8388608`, `8MB`, `8MiB`, `1GiB`: one meaning of a size everywhere, see [`cicache_units`].
pub fn parse_size(v: &str) -> Result<u64, String> {
    cicache_units::parse_size(v).map_err(|e| e.to_string())
}

/// Part size and count of a multipart upload of `size` bytes: the configured part size,
/// grown (in whole MiB) when the object would need more than S3's 10,000 parts.
pub fn part_plan(size: u64, part_size: u64) -> (u64, u64) {
    let mut ps = part_size.clamp(MIN_PART_SIZE, MAX_PART_SIZE);
    if size.div_ceil(ps) > MAX_PARTS {
        ps = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    }
    (ps, size.div_ceil(ps).max(1))
}

/// Owns the runtime; dropping it must not block or panic in any context.
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Requests made, for `--json` reports and for tests that check what moved.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    gets: AtomicU64,
    ranges: AtomicU64,
    puts: AtomicU64,
    parts: AtomicU64,
    multipart_uploads: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

/// A snapshot of [`S3Backend::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct S3Stats {
    /// GETs that open an object (one per `get`).
    pub gets: u64,
    /// Further ranged GETs of big objects.
    pub ranges: u64,
    /// Single PUTs (objects and refs).
    pub puts: u64,
    /// Parts of multipart uploads.
    pub parts: u64,
    /// Multipart uploads completed.
    pub multipart_uploads: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> S3Stats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        S3Stats {
            gets: g(&self.gets),
            ranges: g(&self.ranges),
            puts: g(&self.puts),
            parts: g(&self.parts),
            multipart_uploads: g(&self.multipart_uploads),
            bytes_up: g(&self.bytes_up),
            bytes_down: g(&self.bytes_down),
        }
    }
}

/// What every request needs; cheap to clone into spawned tasks (it does not hold the runtime).
#[derive(Clone)]
pub(crate) struct Ctx {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    location: String,
    /// The endpoint requests go to, for messages (`AWS_ENDPOINT_URL`, or AWS's for the region).
    endpoint: String,
    timeout: Duration,
    part_size: u64,
    transfers: Arc<tokio::sync::Semaphore>,
    /// Ranges read ahead over all readers (each up to a part size in memory).
    read_ahead: Arc<tokio::sync::Semaphore>,
    counters: Arc<Counters>,
}

impl Ctx {
    fn key(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    fn timeout_err(&self, op: &'static str, object: &str) -> BackendError {
        BackendError::Timeout {
            location: self.location.clone(),
            op,
            object: object.to_string(),
            seconds: self.timeout.as_secs().max(1),
        }
    }

    /// A failure of an operation. Every message is scrubbed ([`crate::redact::scrub`]), and
    /// what the server said is also cut short ([`crate::redact::server_text`], in
    /// `sdk_err`): a server or proxy that echoes the request in its error page must not put
    /// credentials into a build log.
    fn remote(&self, op: &'static str, object: &str, message: impl Into<String>) -> BackendError {
        BackendError::Remote {
            location: self.location.clone(),
            op,
            object: object.to_string(),
            message: crate::redact::scrub(&message.into()),
        }
    }

    /// Maps an SDK error to a [`BackendError`] that says what to do.
    fn sdk_err<E>(
        &self,
        op: &'static str,
        object: &str,
        e: &SdkError<E, HttpResponse>,
    ) -> BackendError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match e {
            SdkError::TimeoutError(_) => return self.timeout_err(op, object),
            SdkError::DispatchFailure(d) if d.is_timeout() => return self.timeout_err(op, object),
            SdkError::DispatchFailure(d) if d.is_io() => {
                return self.remote(
                    op,
                    object,
                    format!(
                        "cannot reach the S3 endpoint {} ({}); check AWS_ENDPOINT_URL (or ?endpoint= in the store URL) and that the server is up (docs/S3.md)",
                        self.endpoint,
                        crate::redact::server_text(&last_cause(e))
                    ),
                );
            }
            _ => {}
        }
        let status = e.raw_response().map(|r| r.status().as_u16());
        let code = e.code().unwrap_or("");
        let hint = match (status, code) {
            (_, "NoSuchBucket") => format!(
                "bucket {:?} does not exist; create it or fix the store URL",
                self.bucket_name()
            ),
            (Some(403), _) | (_, "AccessDenied") => {
                "access denied; check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, the instance role) and the bucket policy (docs/S3.md lists the permissions each command needs)".to_string()
            }
            (Some(301), _) | (_, "PermanentRedirect") | (_, "AuthorizationHeaderMalformed") => {
                "the bucket is in another region; set AWS_REGION or add ?region=REGION to the store URL".to_string()
            }
            _ => String::new(),
        };
        let mut msg = match status {
            Some(s) => format!("HTTP {s}"),
            None => String::new(),
        };
        if !code.is_empty() {
            msg.push_str(&format!(" {}", crate::redact::cut(code, 64)));
        }
        if let Some(m) = e.message() {
            msg.push_str(&format!(": {}", crate::redact::server_text(m)));
        }
        if msg.is_empty() {
            msg = crate::redact::server_text(&error_chain(e));
        }
        if !hint.is_empty() {
            msg.push_str(&format!("; {hint}"));
        }
        self.remote(op, object, msg.trim().to_string())
    }

    fn bucket_name(&self) -> &str {
        &self.bucket
    }
}

type HttpResponse = aws_sdk_s3::config::http::HttpResponse;

/// The messages of an error and its sources, without the SDK's debug dumps.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        cur = c.source();
    }
    out
}

/// The innermost cause (`Connection refused (os error 111)`): the outer ones of a dispatch
/// failure are the SDK's wrappers ("dispatch failure", "io error", "client error").
fn last_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The one line that says why no credentials were found and what to do.
fn credentials_message(endpoint: &str, cause: Option<String>) -> String {
    let tried = "tried the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), the profile (AWS_PROFILE, ~/.aws/credentials), web identity, the container and the instance role";
    let cause = cause
        .filter(|c| !c.is_empty())
        .map(|c| format!(" ({})", crate::redact::server_text(&c)))
        .unwrap_or_default();
    format!(
        "no AWS credentials for the S3 endpoint {endpoint}{cause}; {tried}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or give the agent an instance role (docs/S3.md)"
    )
}

fn status_of<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// `s3://BUCKET/PREFIX`.
pub struct S3Backend {
    ctx: Ctx,
    rt: Arc<Runtime>,
    settings: S3Settings,
}

impl fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Backend")
            .field("location", &self.ctx.location)
            .field("settings", &self.settings)
            .field("timeout", &self.ctx.timeout)
            .finish()
    }
}

impl S3Backend {
    /// Opens `s3://{rest}`. Makes no request: a store that is down shows on first use.
    pub fn open(rest: &str, opts: &OpenOptions) -> Result<Self, BackendError> {
        let settings = S3Settings::parse(rest, |k| std::env::var(k).ok()).map_err(|message| {
            BackendError::Unusable {
                location: format!("s3://{rest}"),
                message,
            }
        })?;
        Self::with_settings(settings, opts)
    }

    pub fn with_settings(settings: S3Settings, opts: &OpenOptions) -> Result<Self, BackendError> {
        let location = settings.location();
        let unusable = |message: String| BackendError::Unusable {
            location: location.clone(),
            message,
        };
        let timeout = opts.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .thread_name("cicache-s3")
            .enable_all()
            .build()
            .map_err(|e| unusable(format!("cannot start the S3 runtime: {e}")))?;
        let rt = Arc::new(Runtime(Some(rt)));
        let handle = rt.0.as_ref().map(|r| r.handle().clone());
        let Some(handle) = handle else {
            return Err(unusable("the S3 runtime is gone".into()));
        };
        let sdk = block_on(&handle, async {
            aws_config::defaults(BehaviorVersion::latest()).load().await
        });

        let endpoint = settings.endpoint.clone().or_else(|| {
            std::env::var("AWS_ENDPOINT_URL_S3")
                .ok()
                .filter(|s| !s.is_empty())
        });
        let has_endpoint = endpoint.is_some() || sdk.endpoint_url().is_some();
        let region = settings
            .region
            .clone()
            .map(Region::new)
            .or_else(|| sdk.region().cloned())
            .or_else(|| has_endpoint.then(|| Region::new("us-east-1")));
        let Some(region) = region else {
            return Err(unusable(
                "no AWS region for the S3 endpoint of AWS: set AWS_REGION (or a profile's region) or add ?region=REGION to the store URL (docs/S3.md)".into(),
            ));
        };
        let endpoint_text = endpoint
            .clone()
            .or_else(|| sdk.endpoint_url().map(str::to_string))
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));

        // Credentials are looked up now, once, so that a first run without any says so in one
        // line (the SDK's own account of its chain is a debug log, shown with -v) instead of
        // failing every request of the command the same way.
        let lookup_bound = timeout.min(Duration::from_secs(30));
        let found = match sdk.credentials_provider() {
            None => Err(None),
            Some(provider) => block_on(&handle, async move {
                match tokio::time::timeout(lookup_bound, provider.provide_credentials()).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(match &e {
                        CredentialsError::CredentialsNotLoaded(_) => None,
                        // The instance role's metadata service is absent or refuses off EC2:
                        // the normal end of the chain, already named in the message.
                        other if error_chain(other).contains("IMDS") => None,
                        other => Some(error_chain(other)),
                    }),
                    Err(_) => Err(Some(format!(
                        "the lookup timed out after {}s",
                        lookup_bound.as_secs()
                    ))),
                }
            }),
        };
        if let Err(cause) = found {
            return Err(unusable(credentials_message(&endpoint_text, cause)));
        }

        let mut b = aws_sdk_s3::config::Builder::from(&sdk)
            .behavior_version(BehaviorVersion::latest())
            .region(region)
            .force_path_style(settings.path_style.unwrap_or(has_endpoint))
            // Integrity is end to end (every byte is checked against its blake3 on restore);
            // the SDK's default request checksums break older S3-compatible stores.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(5)
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(5)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(timeout.min(Duration::from_secs(10)))
                    .read_timeout(timeout)
                    .operation_attempt_timeout(timeout)
                    .operation_timeout(timeout)
                    .build(),
            );
        if let Some(e) = endpoint {
            b = b.endpoint_url(e);
        }
        let client = aws_sdk_s3::Client::from_conf(b.build());
        let ctx = Ctx {
            client,
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.clone(),
            location,
            endpoint: endpoint_text,
            timeout,
            part_size: settings.part_size,
            transfers: Arc::new(tokio::sync::Semaphore::new(settings.concurrency)),
            read_ahead: Arc::new(tokio::sync::Semaphore::new(settings.concurrency)),
            counters: Arc::default(),
        };
        Ok(S3Backend { ctx, rt, settings })
    }

    pub fn settings(&self) -> &S3Settings {
        &self.settings
    }

    /// Requests and bytes so far.
    pub fn stats(&self) -> S3Stats {
        self.ctx.counters.snapshot()
    }

    fn handle(&self) -> tokio::runtime::Handle {
        match &self.rt.0 {
            Some(rt) => rt.handle().clone(),
            None => unreachable!("the runtime lives as long as the backend"),
        }
    }

    /// Runs a request on the runtime, bounded by the timeout (a safety net over the SDK's own
    /// timeouts, which do not cover every await).
    fn run<T: Send>(
        &self,
        op: &'static str,
        object: &str,
        fut: impl Future<Output = Result<T, BackendError>> + Send,
    ) -> Result<T, BackendError> {
        let bound = self.ctx.timeout + Duration::from_secs(1);
        block_on(&self.handle(), async move {
            match tokio::time::timeout(bound, fut).await {
                Ok(r) => r,
                Err(_) => Err(self.ctx.timeout_err(op, object)),
            }
        })
    }
}

/// Blocks on `fut` from synchronous code; from inside an async runtime (where blocking on
/// another would panic) it blocks a scoped helper thread instead.
pub(crate) fn block_on<F>(handle: &tokio::runtime::Handle, fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| match s.spawn(|| handle.block_on(fut)).join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    } else {
        handle.block_on(fut)
    }
}

fn to_system_time(t: Option<&aws_sdk_s3::primitives::DateTime>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

impl Backend for S3Backend {
    fn location(&self) -> String {
        self.ctx.location.clone()
    }

    fn get(&self, name: &str) -> Result<Option<ObjectReader>, BackendError> {
        let first = self.run(
            "read",
            name,
            transfer::open_first(self.ctx.clone(), name.to_string()),
        )?;
        Ok(first.map(|f| {
            Box::new(transfer::S3Reader::new(
                self.ctx.clone(),
                self.rt.clone(),
                self.handle(),
                name.to_string(),
                f,
            )) as ObjectReader
        }))
    }

    fn head(&self, name: &str) -> Result<Option<ObjectInfo>, BackendError> {
        let ctx = &self.ctx;
        self.run("stat", name, async move {
            match ctx
                .client
                .head_object()
                .bucket(&ctx.bucket)
                .key(ctx.key(name))
                .send()
                .await
            {
                Ok(o) => Ok(Some(ObjectInfo {
                    name: name.to_string(),
                    size: o.content_length().unwrap_or(0).max(0) as u64,
                    modified: to_system_time(o.last_modified()),
                })),
                Err(e) if status_of(&e) == Some(404) => Ok(None),
                Err(e) => Err(ctx.sdk_err("stat", name, &e)),
            }
        })
    }

    fn put_file(&self, name: &str, file: &Path) -> Result<(), BackendError> {
        let size = std::fs::metadata(file)
            .map_err(|source| BackendError::Io {
                location: self.ctx.location.clone(),
                op: "read local file for",
                object: name.to_string(),
                source,
            })?
            .len();
        if self.head(name)?.is_some() {
            return Ok(());
        }
        let ctx = self.ctx.clone();
        let (name_s, file) = (name.to_string(), file.to_path_buf());
        if size <= ctx.part_size {
            let op = async move { transfer::put_small_file(&ctx, &name_s, &file).await };
            return self.run("write", name, op);
        }
        // A multipart upload is many requests, each bounded by the timeout; no overall bound.
        block_on(
            &self.handle(),
            transfer::put_multipart(ctx, name_s, file, size),
        )
    }

    fn put_bytes(&self, name: &str, data: &[u8], mode: PutMode) -> Result<bool, BackendError> {
        let ctx = &self.ctx;
        let data = data.to_vec();
        self.run("write", name, async move {
            // S3 answers 409 when conditional writes of one key race; the loser retries and
            // then sees 412.
            let mut conflicts = 0;
            loop {
                let mut req = ctx
                    .client
                    .put_object()
                    .bucket(&ctx.bucket)
                    .key(ctx.key(name))
                    .body(ByteStream::from(data.clone()));
                if mode == PutMode::CreateNew {
                    req = req.if_none_match("*");
                }
                Counters::add(&ctx.counters.puts, 1);
                match req.send().await {
                    Ok(_) => {
                        Counters::add(&ctx.counters.bytes_up, data.len() as u64);
                        return Ok(true);
                    }
                    Err(e) if mode == PutMode::CreateNew && status_of(&e) == Some(412) => {
                        return Ok(false);
                    }
                    Err(e) if status_of(&e) == Some(409) && conflicts < 5 => {
                        conflicts += 1;
                        tokio::time::sleep(Duration::from_millis(50 * conflicts)).await;
                    }
                    Err(e) => return Err(ctx.sdk_err("write", name, &e)),
                }
            }
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        let ctx = &self.ctx;
        // Each page is one request bounded by the timeout; a listing may take many.
        let handle = self.handle();
        block_on(&handle, async move {
            let mut out = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = tokio::time::timeout(
                    ctx.timeout + Duration::from_secs(1),
                    ctx.client
                        .list_objects_v2()
                        .bucket(&ctx.bucket)
                        .prefix(ctx.key(prefix))
                        .set_continuation_token(token.take())
                        .send(),
                )
                .await
                .map_err(|_| ctx.timeout_err("list", prefix))?
                .map_err(|e| ctx.sdk_err("list", prefix, &e))?;
                for o in page.contents() {
                    let Some(name) = o.key().and_then(|k| k.strip_prefix(ctx.prefix.as_str()))
                    else {
                        continue;
                    };
                    out.push(ObjectInfo {
                        name: name.to_string(),
                        size: o.size().unwrap_or(0).max(0) as u64,
                        modified: to_system_time(o.last_modified()),
                    });
                }
                match page.next_continuation_token() {
                    Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                    _ => break,
                }
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
    }

    /// S3's temp files are the parts of multipart uploads whose writer was killed before it
    /// completed or aborted them: aborts those started more than `older_than` ago.
    fn clean_temp(&self, older_than: Duration) -> Result<u64, BackendError> {
        let ctx = &self.ctx;
        let handle = self.handle();
        let what = format!("{}*", ctx.prefix);
        block_on(&handle, async move {
            let cutoff = SystemTime::now()
                .checked_sub(older_than)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let bound = ctx.timeout + Duration::from_secs(1);
            let mut aborted = 0;
            let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
            loop {
                let page = tokio::time::timeout(
                    bound,
                    ctx.client
                        .list_multipart_uploads()
                        .bucket(&ctx.bucket)
                        .prefix(&ctx.prefix)
                        .set_key_marker(key_marker.take())
                        .set_upload_id_marker(id_marker.take())
                        .send(),
                )
                .await
                .map_err(|_| ctx.timeout_err("list uploads of", &what))?
                .map_err(|e| ctx.sdk_err("list uploads of", &what, &e))?;
                for u in page.uploads() {
                    let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                        continue;
                    };
                    if to_system_time(u.initiated()) > cutoff {
                        continue;
                    }
                    let name = key.strip_prefix(ctx.prefix.as_str()).unwrap_or(key);
                    tokio::time::timeout(
                        bound,
                        ctx.client
                            .abort_multipart_upload()
                            .bucket(&ctx.bucket)
                            .key(key)
                            .upload_id(id)
                            .send(),
                    )
                    .await
                    .map_err(|_| ctx.timeout_err("abort upload of", name))?
                    .map_err(|e| ctx.sdk_err("abort upload of", name, &e))?;
                    aborted += 1;
                }
                if page.is_truncated() != Some(true) {
                    break;
                }
                key_marker = page.next_key_marker().map(str::to_string);
                id_marker = page.next_upload_id_marker().map(str::to_string);
                if key_marker.is_none() && id_marker.is_none() {
                    break;
                }
            }
            Ok(aborted)
        })
    }

    fn delete(&self, name: &str) -> Result<(), BackendError> {
        let ctx = &self.ctx;
        self.run("delete", name, async move {
            match ctx
                .client
                .delete_object()
                .bucket(&ctx.bucket)
                .key(ctx.key(name))
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if status_of(&e) == Some(404) && e.code() == Some("NoSuchKey") => Ok(()),
                Err(e) => Err(ctx.sdk_err("delete", name, &e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn parses_bucket_prefix_and_options() {
        let s = S3Settings::parse("my-bucket/ci/cache/", env_none).unwrap();
        assert_eq!(s.bucket, "my-bucket");
        assert_eq!(s.prefix, "ci/cache/");
        assert_eq!(s.path_style, None);
        assert_eq!(s.location(), "s3://my-bucket/ci/cache");

        let s = S3Settings::parse("bkt", env_none).unwrap();
        assert_eq!(s.prefix, "");

        let s = S3Settings::parse(
            "bkt/p?path-style=false&region=eu-west-1&endpoint=http://127.0.0.1:9000&part-size=16MiB",
            env_none,
        )
        .unwrap();
        assert_eq!(s.path_style, Some(false));
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s.part_size, 16 * MIB);
    }

    #[test]
    fn environment_is_read_and_the_url_wins() {
        let env = |k: &str| match k {
            env::PATH_STYLE => Some("true".to_string()),
            env::PART_SIZE => Some("5MiB".to_string()),
            env::CONCURRENCY => Some("3".to_string()),
            _ => None,
        };
        let s = S3Settings::parse("bkt/p", env).unwrap();
        assert_eq!(
            (s.path_style, s.part_size, s.concurrency),
            (Some(true), 5 * MIB, 3)
        );
        let s = S3Settings::parse("bkt/p?path-style=0", env).unwrap();
        assert_eq!(s.path_style, Some(false));
    }

    #[test]
    fn rejects_bad_urls_with_a_reason() {
        for (url, want) in [
            ("ab/p", "bucket name"),
            ("Bucket/p", "bucket name"),
            ("bkt/a//b", "component"),
            ("bkt/a/../b", "component"),
            ("bkt/p?colour=red", "unknown option"),
            ("bkt/p?path-style=maybe", "not true or false"),
            ("bkt/p?part-size=1M", "outside S3's limits"),
            ("bkt/p?part-size=lots", "not a size"),
        ] {
            let e = S3Settings::parse(url, env_none).unwrap_err();
            assert!(e.contains(want), "{url}: {e}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("123").unwrap(), 123);
        assert_eq!(parse_size("8MiB").unwrap(), 8 * MIB);
        assert_eq!(parse_size("1GiB").unwrap(), GIB);
        // One meaning everywhere: a unit without `i` is SI (issue 18).
        assert_eq!(parse_size("8MB").unwrap(), 8_000_000);
        assert_eq!(parse_size("512k").unwrap(), 512_000);
        assert!(parse_size("8 parsecs").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn part_plan_fits_s3_limits_up_to_5_tib() {
        // Small objects are one part; the configured size is used while it fits.
        assert_eq!(part_plan(0, 8 * MIB), (8 * MIB, 1));
        assert_eq!(part_plan(20 * MIB, 8 * MIB), (8 * MIB, 3));
        // Below S3's minimum part size is raised to it.
        assert_eq!(part_plan(20 * MIB, MIB), (5 * MIB, 4));
        for size in [
            5 * GIB + 1,
            6 * GIB,
            80 * GIB,
            100 * GIB + 7,
            1024 * GIB,
            5 * 1024 * GIB,
        ] {
            for configured in [5 * MIB, 8 * MIB, 64 * MIB] {
                let (ps, n) = part_plan(size, configured);
                assert!(n <= MAX_PARTS, "{size}: {n} parts");
                assert!(
                    (MIN_PART_SIZE..=MAX_PART_SIZE).contains(&ps),
                    "{size}: {ps}"
                );
                assert!(ps * n >= size && ps * (n - 1) < size, "{size}: {ps} x {n}");
                assert!(ps >= configured);
            }
        }
    }
}
