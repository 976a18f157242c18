//! The registry as the `oci://` store sees it: the calls of the one distribution API client
//! ([`crate::client`]) with the store's errors ([`BackendError`], naming the store and the
//! object) and the store's choices: OCI image manifests only, tokens for pull and push, a
//! missing repository read as an empty store, and timeouts that bound each step rather than
//! each whole request (a cache blob may take long as long as it moves).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use cicache_store::backend::ObjectReader;
use cicache_store::error::BackendError;

use crate::client::{Client, ClientOptions, Failure, with_status};
use crate::credentials::Credentials;
use crate::reference::Target;

pub use crate::client::{CHUNK, Counters, sha256_digest, sha256_file};
pub use crate::oci::MEDIA_OCI_MANIFEST;

pub(crate) struct Http {
    client: Client,
    pub(crate) location: String,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("location", &self.location)
            .field("client", &self.client)
            .finish()
    }
}

impl Http {
    pub fn new(target: &Target, creds: Option<Credentials>, timeout: Duration) -> Http {
        let client = Client::new(
            target,
            creds,
            ClientOptions {
                plain_http: target.is_loopback(),
                timeout,
                whole_request: false,
                push_scope: true,
                login_advice: "set CICACHE_OCI_USERNAME and CICACHE_OCI_PASSWORD",
            },
        );
        Http {
            location: format!("oci://{}/{}", target.registry, target.repository),
            client,
        }
    }

    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.client.credentials()
    }

    pub fn counters(&self) -> &Counters {
        &self.client.counters
    }

    /// The registry's clock now (ours corrected by the last `Date` the registry sent).
    pub fn store_now(&self) -> SystemTime {
        self.client.registry_now()
    }

    pub fn remote(&self, op: &'static str, object: &str, message: String) -> BackendError {
        BackendError::Remote {
            location: self.location.clone(),
            op,
            object: object.to_string(),
            message,
        }
    }

    /// The store's error for a failure of `op` on `object`.
    fn error(&self, op: &'static str, object: &str, f: Failure) -> BackendError {
        match f {
            Failure::Network {
                timed_out: true, ..
            } => BackendError::Timeout {
                location: self.location.clone(),
                op,
                object: object.to_string(),
                seconds: self.client.timeout().as_secs().max(1),
            },
            Failure::Network {
                operation, detail, ..
            } => self.remote(
                op,
                object,
                format!("{operation}: {detail} (is the registry running and reachable?)"),
            ),
            Failure::Status {
                operation,
                status,
                detail,
                codes,
                ..
            } => {
                let hint = if codes.iter().any(|c| c.contains("BLOB_UNKNOWN")) {
                    "; a blob it needs is gone from the registry (garbage-collected?): save again"
                } else {
                    ""
                };
                let text = with_status(status, &detail);
                self.remote(op, object, format!("{operation}: {text}{hint}"))
            }
            Failure::Forbidden { detail, .. } => self.remote(
                op,
                object,
                format!(
                    "access denied ({}); check the permissions of these credentials",
                    with_status(403, &detail)
                ),
            ),
            Failure::Unauthorized { detail, hint } => BackendError::Unusable {
                location: self.location.clone(),
                message: format!("not authorized ({detail}); {hint}"),
            },
            Failure::RepositoryUnknown => self.remote(op, object, "no such repository".into()),
            Failure::DeleteDisabled { detail } => self.remote(
                op,
                object,
                format!(
                    "the registry does not allow deleting manifests ({detail}); on a distribution registry set `storage: delete: enabled: true`"
                ),
            ),
            Failure::Bad { what, detail } => self.remote(op, object, format!("{what}: {detail}")),
            Failure::Io(source) => BackendError::Io {
                location: self.location.clone(),
                op: "read local file for",
                object: object.to_string(),
                source,
            },
        }
    }

    // --- manifests ---

    /// A manifest by tag or digest: `(digest, bytes)`, `None` when absent (also when the
    /// repository does not exist yet: an empty store).
    pub fn get_manifest(
        &self,
        reference: &str,
        object: &str,
    ) -> Result<Option<(String, Vec<u8>)>, BackendError> {
        match self.client.get_manifest(reference, MEDIA_OCI_MANIFEST) {
            Ok(m) => Ok(m.map(|m| (m.digest, m.bytes))),
            Err(Failure::RepositoryUnknown) => Ok(None),
            Err(f) => Err(self.error("read", object, f)),
        }
    }

    /// The digest a tag points at, `None` when absent.
    pub fn head_manifest(&self, tag: &str, object: &str) -> Result<Option<String>, BackendError> {
        self.client
            .head_manifest(tag, MEDIA_OCI_MANIFEST)
            .map_err(|f| self.error("stat", object, f))
    }

    pub fn put_manifest(&self, tag: &str, bytes: &[u8], object: &str) -> Result<(), BackendError> {
        self.client
            .put_manifest(tag, MEDIA_OCI_MANIFEST, bytes)
            .map(|_| ())
            .map_err(|f| self.error("publish", object, f))
    }

    /// Deletes a manifest by digest; a missing one is fine.
    pub fn delete_manifest(&self, digest: &str, object: &str) -> Result<(), BackendError> {
        self.client
            .delete_manifest(digest)
            .map(|_| ())
            .map_err(|f| self.error("delete", object, f))
    }

    /// Every tag of the repository (none when the repository does not exist yet).
    pub fn tags(&self, object: &str) -> Result<Vec<String>, BackendError> {
        match self.client.tags() {
            Ok(t) => Ok(t),
            Err(Failure::RepositoryUnknown) => Ok(Vec::new()),
            Err(f) => Err(self.error("list", object, f)),
        }
    }

    // --- blobs ---

    pub fn head_blob(&self, digest: &str, object: &str) -> Result<Option<u64>, BackendError> {
        self.client
            .head_blob(digest)
            .map(|h| h.map(|h| h.size))
            .map_err(|f| self.error("stat", object, f))
    }

    /// A blob as a stream; `None` when the registry does not have it.
    pub fn get_blob(
        &self,
        digest: &str,
        object: &str,
    ) -> Result<Option<ObjectReader>, BackendError> {
        let body = self
            .client
            .get_blob(digest)
            .map_err(|f| self.error("read", object, f))?;
        Ok(body.map(|b| Box::new(b.into_reader()) as ObjectReader))
    }

    /// Uploads a blob from memory unless the registry has it.
    pub fn push_bytes(&self, bytes: &[u8], object: &str) -> Result<String, BackendError> {
        self.client
            .push_bytes(bytes)
            .map_err(|f| self.error("write", object, f))
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
        self.client
            .push_file(path, digest, size)
            .map_err(|f| self.error("write", object, f))
    }

    /// Counts a blob the registry already had.
    pub fn blob_present(&self) {
        self.client
            .counters
            .blobs_present
            .fetch_add(1, Ordering::Relaxed);
    }
}
