//! Errors of the registry library.
//!
//! Rules: every error names the registry, repository or tag it is about and, where the user
//! can do something, says what. Secrets (passwords, tokens, `Authorization` headers) never
//! appear in an error.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("--image {image:?}: {reason}")]
    InvalidImage { image: String, reason: String },

    #[error("repository {repository} does not exist in {registry}; {hint}")]
    RepositoryNotFound {
        registry: String,
        repository: String,
        hint: String,
    },

    #[error("{registry}: not authorized ({detail}); {hint}")]
    Unauthorized {
        registry: String,
        detail: String,
        hint: String,
    },

    #[error(
        "{registry}: access denied to {what} ({detail}); check the permissions of these credentials"
    )]
    Forbidden {
        registry: String,
        what: String,
        detail: String,
    },

    #[error(
        "{registry}: the registry does not allow deleting manifests ({detail}); \
         on a distribution registry set `storage: delete: enabled: true`"
    )]
    DeleteDisabled { registry: String, detail: String },

    #[error("{operation} on {url}: HTTP {status}: {detail}")]
    Http {
        operation: String,
        url: String,
        status: u16,
        detail: String,
    },

    #[error("{operation} on {url}: {detail} (is the registry running and reachable?)")]
    Network {
        operation: String,
        url: String,
        detail: String,
    },

    #[error("ECR {operation} on {repository}: {detail}")]
    Ecr {
        operation: String,
        repository: String,
        detail: String,
    },

    #[error("AWS credentials: {detail}")]
    AwsCredentials { detail: String },

    #[error("{what}: {detail}")]
    BadResponse { what: String, detail: String },

    #[error("docker config {path}: {detail}")]
    DockerConfig { path: PathBuf, detail: String },

    #[error("{command}: {detail}")]
    Docker { command: String, detail: String },

    #[error("{0}")]
    Unsupported(String),

    #[error("cannot start the async runtime for the AWS SDK: {0}")]
    Runtime(#[source] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its sources, by their `Display` only (the SDK's `Debug` dumps raw responses).
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}
