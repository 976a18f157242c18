//! cicache-registry: the registry `cache` tags of image builds.
//!
//! `IMAGE:cache` holds the default branch's BuildKit layer cache, `IMAGE:cache-<scope>` the
//! other branches'. This crate lists them ([`Registry::images`]), plans their garbage
//! collection as a pure function ([`gc::plan`]), carries the plan out, writes ECR lifecycle
//! policies ([`lifecycle`]) and logs docker in ([`login`]).
//!
//! Two APIs: ECR through aws-sdk-ecr ([`ecr`]) for `<account>.dkr.ecr.<region>.amazonaws.com`,
//! the OCI distribution API ([`oci`]) for every other registry. Images as registries store
//! them now (indexes with attestation manifests) are resolved to a platform's image in
//! [`image`] and [`OciClient::image_config`].
//!
//! One HTTP client ([`client`]: authentication, retries, timeouts, redaction of secrets from
//! errors) serves both the tag commands ([`oci`]) and the `oci://` store ([`store`], through
//! [`store_http`]).

pub mod client;
pub mod credentials;
pub mod ecr;
pub mod error;
pub mod gc;
pub mod image;
pub mod lifecycle;
pub mod login;
pub mod model;
pub mod oci;
pub mod ops;
pub mod reference;
pub mod store;
pub mod store_http;
pub mod tags;

use std::time::Duration;

pub use credentials::{Credentials, Secret};
pub use ecr::{DeleteFailure, EcrClient, ExplicitEndpoint};
pub use error::{Error, Result};
pub use image::{History, Image, ImageConfig, Platform};
pub use model::{ImageRecord, RepositoryInfo};
pub use oci::{OciClient, OciOptions};
pub use reference::{Kind, Target};

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// ECR: the region, when not the one in the registry host.
    pub region: Option<String>,
    /// OCI: credentials given on the command line (else the Docker config is read).
    pub credentials: Option<Credentials>,
    /// OCI: plain HTTP instead of HTTPS (default: only for loopback registries).
    pub plain_http: Option<bool>,
    /// Bound on each request.
    pub timeout: Option<Duration>,
}

/// A connected registry, either API.
pub enum Registry {
    Ecr { client: EcrClient, target: Target },
    Oci(OciClient),
}

impl Registry {
    pub fn connect(target: &Target, opts: &ConnectOptions) -> Result<Registry> {
        if target.is_ecr() {
            let client = EcrClient::connect(target, opts.region.as_deref(), opts.timeout)?;
            return Ok(Registry::Ecr {
                client,
                target: target.clone(),
            });
        }
        let creds = match &opts.credentials {
            Some(c) => Some(c.clone()),
            None => credentials::from_docker_config(&target.registry)?,
        };
        Ok(Registry::Oci(OciClient::new(
            target,
            creds,
            &OciOptions {
                plain_http: opts.plain_http,
                timeout: opts.timeout,
            },
        )))
    }

    pub fn target(&self) -> &Target {
        match self {
            Registry::Ecr { target, .. } => target,
            Registry::Oci(c) => c.target(),
        }
    }

    /// A distribution-API client that reads manifests and image configs: the OCI client
    /// itself, or for ECR one logged in with GetAuthorizationToken.
    pub fn reader(&self, opts: &OciOptions) -> Result<Reader<'_>> {
        match self {
            Registry::Oci(c) => Ok(Reader::Borrowed(c)),
            Registry::Ecr { client, target } => {
                Ok(Reader::Owned(Box::new(ecr_reader(client, target, opts)?)))
            }
        }
    }

    /// [`Self::reader`], owned.
    pub fn into_reader(self, opts: &OciOptions) -> Result<OciClient> {
        match self {
            Registry::Oci(c) => Ok(c),
            Registry::Ecr { client, target } => ecr_reader(&client, &target, opts),
        }
    }

    /// Whether one tag can be removed from a manifest that keeps its other tags.
    pub fn deletes_by_tag(&self) -> bool {
        matches!(self, Registry::Ecr { .. })
    }

    /// Whether untagged manifests can be listed (the distribution API cannot).
    pub fn lists_untagged(&self) -> bool {
        matches!(self, Registry::Ecr { .. })
    }

    /// Every manifest of the repository (OCI: the tagged ones only).
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        match self {
            Registry::Ecr { client, target } => client.images(&target.repository),
            Registry::Oci(c) => c.images(),
        }
    }

    /// Carries out deletions (from [`gc::plan`] or a `clear`); returns the ones refused.
    pub fn delete(&self, deletions: &[gc::Deletion]) -> Result<Vec<DeleteFailure>> {
        match self {
            Registry::Ecr { client, target } => client.delete(&target.repository, deletions),
            Registry::Oci(c) => {
                let mut failures = Vec::new();
                for d in deletions {
                    if !d.manifest {
                        failures.push(DeleteFailure {
                            digest: d.digest.clone(),
                            tag: d.tags.first().cloned(),
                            code: "Unsupported".into(),
                            reason: "the distribution API deletes whole manifests only".into(),
                        });
                        continue;
                    }
                    c.delete_manifest(&d.digest)?;
                }
                Ok(failures)
            }
        }
    }
}

/// A client of [`Registry::reader`]: borrowed from an OCI registry, or logged in to ECR.
pub enum Reader<'a> {
    Borrowed(&'a OciClient),
    Owned(Box<OciClient>),
}

impl std::ops::Deref for Reader<'_> {
    type Target = OciClient;
    fn deref(&self) -> &OciClient {
        match self {
            Reader::Borrowed(c) => c,
            Reader::Owned(c) => c,
        }
    }
}

/// The distribution API of an ECR repository, logged in with GetAuthorizationToken. Image
/// configs come from the registry host itself, which `AWS_ENDPOINT_URL` does not redirect:
/// with the ECR API pointed elsewhere (a test double, a proxy), refused rather than reach the
/// real host.
fn ecr_reader(client: &EcrClient, target: &Target, opts: &OciOptions) -> Result<OciClient> {
    for var in ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR"] {
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            return Err(Error::Unsupported(format!(
                "{var} points the ECR API elsewhere, but image configs are read from the \
                 registry host {} itself, which it does not cover",
                target.registry
            )));
        }
    }
    let (_, creds) = client.docker_credentials()?;
    Ok(OciClient::new(target, Some(creds), opts))
}

/// Why an immutable-tag repository cannot hold cache tags, and what to do.
pub fn immutable_explanation(target: &Target) -> String {
    let image = target.image();
    format!(
        "repository {image} has immutable tags: ECR rejects the second push of `cache` (and of \
         every `cache-<scope>`), so the layer cache can never be updated. Either keep the cache \
         tags in a mutable repository of their own: `cicache registry ensure --image {image} \
         --cache-repo` creates {image}-buildcache, then push the cache tags there; or make the \
         cache tags mutable with an exclusion filter `cache*` \
         (image tag mutability IMMUTABLE_WITH_EXCLUSION)"
    )
}
