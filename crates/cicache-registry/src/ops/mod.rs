//! The `cicache registry` commands as typed operations: each takes a [`Connection`] and a
//! request, does the work, and returns a result that serializes to the command's `--json`
//! document (docs/JSON.md) and renders as text. Nothing here prints: what a person should
//! read besides the result is in the result's `notes` and `warnings`.
//!
//! - [`login`]: credentials checked with the registry, then `docker login`.
//! - [`ensure`]: the repository (and a separate cache repository) exists with mutable tags;
//!   an ECR lifecycle policy.
//! - [`status`]: the cache tags with size, push and pull times; counts of the other tags.
//! - [`delete`]: `clear` (chosen cache tags) and `gc` (the [`crate::gc`] plan carried out).

pub mod delete;
pub mod ensure;
pub mod status;

use std::time::SystemTime;

use crate::{
    ConnectOptions, Credentials, EcrClient, Error, OciClient, OciOptions, Registry, Target,
};

pub use delete::{DeleteResult, GcRequest, GcResult, Skipped, clear, gc};
pub use ensure::{
    EnsureRequest, EnsureResult, EnsuredRepo, LifecycleResult, apply_policy, ensure, lifecycle,
};
pub use status::{StatusResult, TagRow, status};

/// What an operation could not do, and why.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// A registry call failed while doing something named.
    #[error("{doing}")]
    Registry {
        doing: String,
        #[source]
        source: Error,
    },
    /// Connecting or parsing failed.
    #[error(transparent)]
    Plain(#[from] Error),
    /// The request cannot be carried out as asked (the message says what to do instead).
    #[error("{0}")]
    Refused(String),
    /// The request itself is wrong: a flag that does not apply (the message says which).
    #[error("{0}")]
    Usage(String),
}

pub type OpResult<T> = std::result::Result<T, OpError>;

/// Adds what was being done to a registry error.
pub(crate) trait Doing<T> {
    fn doing(self, what: impl FnOnce() -> String) -> OpResult<T>;
}

impl<T> Doing<T> for crate::Result<T> {
    fn doing(self, what: impl FnOnce() -> String) -> OpResult<T> {
        self.map_err(|source| OpError::Registry {
            doing: what(),
            source,
        })
    }
}

/// A repository and how to reach it: what every operation starts from.
#[derive(Debug, Clone)]
pub struct Connection {
    pub target: Target,
    pub opts: ConnectOptions,
}

impl Connection {
    pub fn connect(&self) -> OpResult<Registry> {
        self.connect_to(&self.target)
            .doing(|| format!("connecting to {}", self.target.registry))
    }

    fn connect_to(&self, target: &Target) -> crate::Result<Registry> {
        Registry::connect(target, &self.opts)
    }

    pub fn ecr(&self) -> OpResult<EcrClient> {
        Ok(EcrClient::connect(
            &self.target,
            self.opts.region.as_deref(),
            self.opts.timeout,
        )?)
    }

    pub(crate) fn oci_options(&self) -> OciOptions {
        OciOptions {
            plain_http: self.opts.plain_http,
            timeout: self.opts.timeout,
        }
    }

    /// `ecr` or `oci`: which API serves the repository.
    pub fn kind_name(&self) -> &'static str {
        if self.target.is_ecr() { "ecr" } else { "oci" }
    }
}

/// The server and credentials `docker login` needs: ECR's from GetAuthorizationToken; any
/// other registry's as given, checked with the registry first (a clear answer from the
/// registry beats docker's).
pub fn login_credentials(conn: &Connection) -> OpResult<(String, Credentials)> {
    if conn.target.is_ecr() {
        return conn
            .ecr()?
            .docker_credentials()
            .doing(|| format!("getting a docker login for {}", conn.target.registry));
    }
    let creds = conn.opts.credentials.clone().ok_or_else(|| {
        OpError::Refused(format!(
            "logging in to {} needs --username USER --password-stdin (the password piped in)",
            conn.target.registry
        ))
    })?;
    OciClient::new(&conn.target, Some(creds.clone()), &conn.oci_options())
        .ping()
        .doing(|| format!("checking the credentials with {}", conn.target.registry))?;
    Ok((conn.target.registry.clone(), creds))
}

/// `cicache registry login`'s result.
#[derive(Debug, serde::Serialize)]
pub struct LoginResult {
    pub registry: String,
    pub kind: &'static str,
    pub username: String,
    /// docker's answer (secrets removed).
    pub message: String,
}

/// Logs `docker` in to `server`, the password on its stdin.
pub fn docker_login(
    conn: &Connection,
    docker: &str,
    server: &str,
    creds: &Credentials,
) -> OpResult<LoginResult> {
    let message = crate::login::docker_login(docker, server, creds)
        .doing(|| format!("docker login to {server}"))?;
    Ok(LoginResult {
        registry: server.to_string(),
        kind: conn.kind_name(),
        username: creds.username.clone(),
        message,
    })
}

pub(crate) fn fmt_time(t: Option<SystemTime>) -> String {
    t.map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|| "-".into())
}

pub(crate) fn fmt_age(secs: Option<u64>) -> String {
    match secs {
        None => "age unknown".into(),
        Some(s) if s >= 2 * 86_400 => format!("{}d", s / 86_400),
        Some(s) if s >= 3600 => format!("{}h", s / 3600),
        Some(s) if s >= 60 => format!("{}m", s / 60),
        Some(s) => format!("{s}s"),
    }
}

pub(crate) fn fmt_size(s: Option<u64>) -> String {
    s.map(cicache_units::format_bytes)
        .unwrap_or_else(|| "-".into())
}

/// The first 12 hex digits of a digest.
pub(crate) fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_well() {
        assert_eq!(fmt_age(Some(3 * 86_400)), "3d");
        assert_eq!(fmt_age(Some(7200)), "2h");
        assert_eq!(fmt_age(Some(59)), "59s");
        assert_eq!(fmt_age(None), "age unknown");
    }

    #[test]
    fn digests_shorten_to_twelve() {
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
    }
}
