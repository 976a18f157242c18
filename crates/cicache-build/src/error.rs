//! Errors that stop a build (cache problems are warnings in the outcome, not errors, unless
//! the build is strict).

use std::path::PathBuf;

pub type Result<T, E = BuildError> = std::result::Result<T, E>;

/// Why a build stopped. Each variant says what failed and, where it can, what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The request itself is wrong (a missing Dockerfile, a bad --mount-id, an image with a tag).
    #[error("{0}")]
    Usage(String),
    /// A cache phase failed and the build is strict.
    #[error("{phase} failed (--strict makes cache phases fail the build): {message}")]
    Strict { phase: String, message: String },
    /// The docker client could not be run.
    #[error("{what}: {source}")]
    Docker {
        what: String,
        #[source]
        source: cicache_docker::engine::DockerError,
    },
    /// The image push (or the tagging that replaces it) failed.
    #[error("{0}")]
    Push(String),
    /// The base image could not be had.
    #[error("{0}")]
    Base(String),
    /// A file the build writes could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
