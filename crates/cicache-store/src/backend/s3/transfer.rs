//! Moving bytes: single and multipart uploads, and reads by parallel ranged GETs.
//!
//! A read starts with a GET of the first range (which tells a miss, the object's size and its
//! ETag). That response is streamed to the caller while the following ranges are fetched in
//! parallel, at most [`READ_AHEAD`](super::READ_AHEAD) per reader, each pinned to the ETag
//! with `If-Match` so an object replaced mid-read fails instead of mixing two versions.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinHandle;

use super::{Counters, Ctx, READ_AHEAD, Runtime, block_on, part_plan, status_of};
use crate::error::BackendError;

/// File read buffer for upload bodies.
const UPLOAD_BUFFER: usize = 256 * 1024;

/// The first response of a read.
pub(crate) struct First {
    body: ByteStream,
    /// Bytes the first response carries.
    len: u64,
    /// Size of the whole object.
    total: u64,
    etag: Option<String>,
}

/// GET of the first range; `None` on a miss.
pub(crate) async fn open_first(ctx: Ctx, name: String) -> Result<Option<First>, BackendError> {
    let key = ctx.key(&name);
    let chunk = ctx.part_size;
    Counters::add(&ctx.counters.gets, 1);
    let resp = ctx
        .client
        .get_object()
        .bucket(&ctx.bucket)
        .key(&key)
        .range(format!("bytes=0-{}", chunk - 1))
        .send()
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) if e.code() == Some("NoSuchKey") => return Ok(None),
        // A range of an empty object is "not satisfiable": read it whole.
        Err(e) if status_of(&e) == Some(416) => {
            match ctx
                .client
                .get_object()
                .bucket(&ctx.bucket)
                .key(&key)
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) if e.code() == Some("NoSuchKey") => return Ok(None),
                Err(e) => return Err(ctx.sdk_err("read", &name, &e)),
            }
        }
        Err(e) => return Err(ctx.sdk_err("read", &name, &e)),
    };
    let len = resp.content_length().unwrap_or(0).max(0) as u64;
    // "bytes 0-8388607/123456789"; absent when the server sent the whole object.
    let total = match resp.content_range() {
        Some(r) => r
            .rsplit_once('/')
            .and_then(|(_, t)| t.parse::<u64>().ok())
            .ok_or_else(|| {
                ctx.remote(
                    "read",
                    &name,
                    format!("the store sent a malformed Content-Range {r:?}"),
                )
            })?,
        None => len,
    };
    let etag = resp.e_tag().map(str::to_string);
    Ok(Some(First {
        body: resp.body,
        len,
        total,
        etag,
    }))
}

/// A range fetch in flight: its bytes, or why it failed.
type RangeTask = JoinHandle<Result<Vec<u8>, BackendError>>;

/// A reader over an object: the first response streamed, the rest by ranges fetched ahead.
pub(crate) struct S3Reader {
    ctx: Ctx,
    // Keeps the runtime alive while the reader is.
    _rt: Arc<Runtime>,
    handle: tokio::runtime::Handle,
    name: String,
    etag: Option<String>,
    first: Option<ByteStream>,
    first_left: u64,
    buf: Vec<u8>,
    pos: usize,
    /// Start of the next range to request.
    next: u64,
    total: u64,
    /// Ranges in flight or fetched, in order; all but the first hold a read-ahead permit.
    pending: VecDeque<(RangeTask, Option<OwnedSemaphorePermit>)>,
    /// The permit of the range in `buf`, released when the next piece replaces it.
    buf_permit: Option<OwnedSemaphorePermit>,
    failed: bool,
}

impl S3Reader {
    pub(crate) fn new(
        ctx: Ctx,
        rt: Arc<Runtime>,
        handle: tokio::runtime::Handle,
        name: String,
        first: First,
    ) -> Self {
        let mut r = S3Reader {
            ctx,
            _rt: rt,
            handle,
            name,
            etag: first.etag,
            first: Some(first.body),
            first_left: first.len,
            buf: Vec::new(),
            pos: 0,
            next: first.len,
            total: first.total,
            pending: VecDeque::new(),
            buf_permit: None,
            failed: false,
        };
        r.fill_window();
        r
    }

    /// Starts range fetches until [`READ_AHEAD`] are pending or the object is covered. The
    /// next range is always fetched; the ones after it only while the backend-wide read-ahead
    /// budget has room (never waited for, so readers cannot block each other), which bounds
    /// buffered memory over all readers.
    fn fill_window(&mut self) {
        while self.pending.len() < READ_AHEAD && self.next < self.total {
            let permit = if self.pending.is_empty() {
                None
            } else {
                match self.ctx.read_ahead.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) => break,
                }
            };
            let start = self.next;
            let end = (start + self.ctx.part_size).min(self.total);
            self.next = end;
            let fut = fetch_range(
                self.ctx.clone(),
                self.name.clone(),
                self.etag.clone(),
                start,
                end,
            );
            self.pending.push_back((self.handle.spawn(fut), permit));
        }
    }

    fn fail(&mut self, e: BackendError) -> io::Error {
        self.failed = true;
        for (h, _) in self.pending.drain(..) {
            h.abort();
        }
        let kind = match e {
            BackendError::Timeout { .. } => io::ErrorKind::TimedOut,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }

    /// The next piece of the object, or `None` at its end.
    fn next_piece(&mut self) -> Result<Option<Vec<u8>>, BackendError> {
        if let Some(body) = self.first.as_mut() {
            let idle = self.ctx.timeout;
            let next = block_on(&self.handle, async {
                tokio::time::timeout(idle, body.next()).await
            });
            match next {
                Err(_) => return Err(self.ctx.timeout_err("read", &self.name)),
                Ok(Some(Err(e))) => {
                    return Err(self.ctx.remote(
                        "read",
                        &self.name,
                        format!("the connection failed mid-object: {e}"),
                    ));
                }
                Ok(Some(Ok(bytes))) => {
                    let n = bytes.len() as u64;
                    if n > self.first_left {
                        return Err(self.ctx.remote(
                            "read",
                            &self.name,
                            "the store sent more bytes than it announced",
                        ));
                    }
                    self.first_left -= n;
                    Counters::add(&self.ctx.counters.bytes_down, n);
                    return Ok(Some(Vec::from(bytes)));
                }
                Ok(None) => {
                    if self.first_left != 0 {
                        return Err(self.ctx.remote(
                            "read",
                            &self.name,
                            format!("the object ended {} bytes early", self.first_left),
                        ));
                    }
                    self.first = None;
                }
            }
        }
        let Some((h, permit)) = self.pending.pop_front() else {
            return Ok(None);
        };
        self.fill_window();
        self.buf_permit = permit;
        match block_on(&self.handle, h) {
            Ok(r) => r.map(Some),
            Err(e) => Err(self
                .ctx
                .remote("read", &self.name, format!("range task failed: {e}"))),
        }
    }
}

impl Read for S3Reader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other(format!(
                "store {}: read {}: an earlier read failed",
                self.ctx.location, self.name
            )));
        }
        loop {
            if self.pos < self.buf.len() {
                let n = out.len().min(self.buf.len() - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if out.is_empty() {
                return Ok(0);
            }
            match self.next_piece() {
                Ok(Some(piece)) => {
                    self.buf = piece;
                    self.pos = 0;
                }
                Ok(None) => return Ok(0),
                Err(e) => return Err(self.fail(e)),
            }
        }
    }
}

impl Drop for S3Reader {
    fn drop(&mut self) {
        for (h, _) in self.pending.drain(..) {
            h.abort();
        }
    }
}

/// GET of bytes `start..end`, whole and within the timeout; a broken body is retried.
async fn fetch_range(
    ctx: Ctx,
    name: String,
    etag: Option<String>,
    start: u64,
    end: u64,
) -> Result<Vec<u8>, BackendError> {
    let _permit = ctx
        .transfers
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ctx.remote("read", &name, "the S3 backend is shutting down"))?;
    let deadline = tokio::time::Instant::now() + ctx.timeout;
    let want = end - start;
    let mut attempt = 0;
    loop {
        attempt += 1;
        Counters::add(&ctx.counters.ranges, 1);
        let req = ctx
            .client
            .get_object()
            .bucket(&ctx.bucket)
            .key(ctx.key(&name))
            .range(format!("bytes={}-{}", start, end - 1))
            .set_if_match(etag.clone());
        let got = tokio::time::timeout_at(deadline, async {
            let resp = req.send().await.map_err(|e| {
                if status_of(&e) == Some(412) {
                    ctx.remote("read", &name, "the object changed while it was read")
                } else {
                    ctx.sdk_err("read", &name, &e)
                }
            })?;
            match resp.body.collect().await {
                Ok(b) => Ok(Ok(Vec::from(b.into_bytes()))),
                Err(e) => Ok(Err(e.to_string())),
            }
        })
        .await;
        match got {
            Err(_) => return Err(ctx.timeout_err("read", &name)),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Ok(bytes))) if bytes.len() as u64 == want => {
                Counters::add(&ctx.counters.bytes_down, want);
                return Ok(bytes);
            }
            Ok(Ok(Ok(bytes))) => {
                if attempt >= 3 {
                    return Err(ctx.remote(
                        "read",
                        &name,
                        format!(
                            "range {start}-{end}: the store sent {} of {want} bytes",
                            bytes.len()
                        ),
                    ));
                }
            }
            Ok(Ok(Err(e))) => {
                if attempt >= 3 {
                    return Err(ctx.remote(
                        "read",
                        &name,
                        format!("the connection failed mid-object: {e}"),
                    ));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
    }
}

fn file_body_err(ctx: &Ctx, name: &str, file: &Path, e: impl std::fmt::Display) -> BackendError {
    ctx.remote(
        "read local file for",
        name,
        format!("{}: {e}", file.display()),
    )
}

/// One PUT with `If-None-Match: *`: an existing object (412) is success.
pub(crate) async fn put_small_file(ctx: &Ctx, name: &str, file: &Path) -> Result<(), BackendError> {
    let mut conflicts = 0;
    loop {
        let body = ByteStream::read_from()
            .path(file)
            .buffer_size(UPLOAD_BUFFER)
            .build()
            .await
            .map_err(|e| file_body_err(ctx, name, file, e))?;
        Counters::add(&ctx.counters.puts, 1);
        match ctx
            .client
            .put_object()
            .bucket(&ctx.bucket)
            .key(ctx.key(name))
            .if_none_match("*")
            .body(body)
            .send()
            .await
        {
            Ok(_) => {
                let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
                Counters::add(&ctx.counters.bytes_up, size);
                return Ok(());
            }
            Err(e) if status_of(&e) == Some(412) => return Ok(()),
            Err(e) if status_of(&e) == Some(409) && conflicts < 5 => {
                conflicts += 1;
                tokio::time::sleep(Duration::from_millis(50 * conflicts)).await;
            }
            Err(e) => return Err(ctx.sdk_err("write", name, &e)),
        }
    }
}

/// A multipart upload: parts in parallel (bounded by the shared semaphore), each read from
/// the file at its offset, so memory stays bounded whatever the size. Any failure aborts the
/// upload so no parts are left behind (a killed process leaves them to the bucket's
/// `AbortIncompleteMultipartUpload` lifecycle rule, see docs/S3.md).
pub(crate) async fn put_multipart(
    ctx: Ctx,
    name: String,
    file: PathBuf,
    size: u64,
) -> Result<(), BackendError> {
    let key = ctx.key(&name);
    let created = tokio::time::timeout(
        ctx.timeout,
        ctx.client
            .create_multipart_upload()
            .bucket(&ctx.bucket)
            .key(&key)
            .send(),
    )
    .await
    .map_err(|_| ctx.timeout_err("start upload of", &name))?
    .map_err(|e| ctx.sdk_err("start upload of", &name, &e))?;
    let Some(upload_id) = created.upload_id().map(str::to_string) else {
        return Err(ctx.remote("start upload of", &name, "the store sent no upload id"));
    };
    // Ok(false): the object appeared meanwhile, the upload is dropped.
    let result = upload_parts(&ctx, &name, &key, &upload_id, &file, size).await;
    match result {
        Ok(true) => Ok(()),
        result => {
            let abort = ctx
                .client
                .abort_multipart_upload()
                .bucket(&ctx.bucket)
                .key(&key)
                .upload_id(&upload_id)
                .send();
            if let Ok(Err(ae)) = tokio::time::timeout(ctx.timeout, abort).await {
                tracing::warn!(
                    "store {}: could not abort the upload of {name}: {}",
                    ctx.location,
                    ctx.sdk_err("abort upload of", &name, &ae)
                );
            }
            result.map(|_| ())
        }
    }
}

async fn upload_parts(
    ctx: &Ctx,
    name: &str,
    key: &str,
    upload_id: &str,
    file: &Path,
    size: u64,
) -> Result<bool, BackendError> {
    let (part_size, count) = part_plan(size, ctx.part_size);
    let mut set: tokio::task::JoinSet<Result<CompletedPart, BackendError>> =
        tokio::task::JoinSet::new();
    let mut parts = Vec::with_capacity(count as usize);
    let collect = |r: Result<Result<CompletedPart, BackendError>, tokio::task::JoinError>,
                   parts: &mut Vec<CompletedPart>| match r {
        Ok(Ok(p)) => {
            parts.push(p);
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(e) => Err(ctx.remote("write", name, format!("part task failed: {e}"))),
    };
    for i in 0..count {
        let permit = ctx
            .transfers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ctx.remote("write", name, "the S3 backend is shutting down"))?;
        while let Some(r) = set.try_join_next() {
            collect(r, &mut parts)?;
        }
        let offset = i * part_size;
        let len = part_size.min(size - offset);
        let number = (i + 1) as i32;
        let (ctx, name, key, upload_id, file) = (
            ctx.clone(),
            name.to_string(),
            key.to_string(),
            upload_id.to_string(),
            file.to_path_buf(),
        );
        set.spawn(async move {
            let _permit = permit;
            let body = ByteStream::read_from()
                .path(&file)
                .offset(offset)
                .length(Length::Exact(len))
                .buffer_size(UPLOAD_BUFFER)
                .build()
                .await
                .map_err(|e| file_body_err(&ctx, &name, &file, e))?;
            Counters::add(&ctx.counters.parts, 1);
            let out = ctx
                .client
                .upload_part()
                .bucket(&ctx.bucket)
                .key(&key)
                .upload_id(&upload_id)
                .part_number(number)
                .content_length(len as i64)
                .body(body)
                .send()
                .await
                .map_err(|e| ctx.sdk_err("write part of", &name, &e))?;
            Counters::add(&ctx.counters.bytes_up, len);
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build())
        });
    }
    while let Some(r) = set.join_next().await {
        collect(r, &mut parts)?;
    }
    parts.sort_by_key(|p| p.part_number());
    // The store assembles the parts before it answers (AWS: "can take several minutes"), so
    // this one request gets the timeout once more for every GiB.
    let bound = ctx.timeout * (1 + (size / (1 << 30)).min(100) as u32);
    let done = tokio::time::timeout(
        bound,
        ctx.client
            .complete_multipart_upload()
            .bucket(&ctx.bucket)
            .key(key)
            .upload_id(upload_id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .customize()
            .config_override(
                aws_sdk_s3::config::Builder::new().timeout_config(
                    TimeoutConfig::builder()
                        .read_timeout(bound)
                        .operation_attempt_timeout(bound)
                        .operation_timeout(bound)
                        .build(),
                ),
            )
            .send(),
    )
    .await
    .map_err(|_| ctx.timeout_err("complete upload of", name))?;
    match done {
        Ok(_) => {
            Counters::add(&ctx.counters.multipart_uploads, 1);
            Ok(true)
        }
        // Another writer stored the same content first: ours is not needed.
        Err(e) if status_of(&e) == Some(412) => Ok(false),
        Err(e) => Err(ctx.sdk_err("complete upload of", name, &e)),
    }
}
