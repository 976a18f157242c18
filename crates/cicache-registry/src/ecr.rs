//! Amazon ECR through aws-sdk-ecr. Credentials come from the AWS default chain (environment,
//! profile, SSO, web identity, container and instance roles); the endpoint honours
//! `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_ECR`. The region is the one in the registry host
//! unless the caller overrides it.
//!
//! The SDK is async; each call runs on a small current-thread tokio runtime owned by the
//! client, so callers stay synchronous.

use std::time::{Duration, SystemTime};

use aws_sdk_ecr::Client;
use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecr::types::{ImageIdentifier, ImageTagMutability};
use base64::Engine;

use crate::credentials::{Credentials, Secret};
use crate::error::{Error, Result, error_chain};
use crate::gc::Deletion;
use crate::model::{ImageRecord, RepositoryInfo};
use crate::reference::{Kind, Target};

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// An endpoint and keys given explicitly, see [`EcrClient::connect_to`].
#[derive(Debug, Clone)]
pub struct ExplicitEndpoint {
    pub endpoint_url: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

/// An ECR registry (one account, one region).
pub struct EcrClient {
    rt: tokio::runtime::Runtime,
    client: Client,
    registry: String,
    account: String,
    region: String,
}

/// One deletion ECR refused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeleteFailure {
    pub digest: String,
    pub tag: Option<String>,
    pub code: String,
    pub reason: String,
}

fn to_system_time(t: Option<&aws_smithy_types::DateTime>) -> Option<SystemTime> {
    t.and_then(|d| SystemTime::try_from(*d).ok())
}

impl EcrClient {
    /// Loads the AWS configuration (default chain) for the registry of `target`.
    pub fn connect(
        target: &Target,
        region_override: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<EcrClient> {
        Self::connect_inner(target, region_override, timeout, None)
    }

    /// Connects to an explicit endpoint with explicit keys instead of the default chain
    /// (tests seed a moto server with it without touching the process environment).
    pub fn connect_to(target: &Target, endpoint: &ExplicitEndpoint) -> Result<EcrClient> {
        Self::connect_inner(target, None, None, Some(endpoint.clone()))
    }

    fn connect_inner(
        target: &Target,
        region_override: Option<&str>,
        timeout: Option<Duration>,
        explicit: Option<ExplicitEndpoint>,
    ) -> Result<EcrClient> {
        let Kind::Ecr { account, region } = &target.kind else {
            return Err(Error::Unsupported(format!(
                "{} is not an ECR registry",
                target.registry
            )));
        };
        let region = region_override
            .filter(|r| !r.is_empty())
            .unwrap_or(region)
            .to_string();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_sdk_ecr::config::Region::new(region.clone()));
        if let Some(e) = &explicit {
            loader = loader.endpoint_url(&e.endpoint_url).credentials_provider(
                aws_sdk_ecr::config::Credentials::new(
                    &e.access_key_id,
                    e.secret_access_key.expose(),
                    None,
                    None,
                    "cicache-explicit",
                ),
            );
        }
        if let Some(t) = timeout {
            loader = loader.timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(t)
                    .build(),
            );
        }
        let config = rt.block_on(loader.load());
        Ok(EcrClient {
            rt,
            client: Client::new(&config),
            registry: target.registry.clone(),
            account: account.clone(),
            region,
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    fn map_err<E>(&self, operation: &str, repository: &str, err: SdkError<E>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let raw_body = match &err {
            SdkError::ServiceError(se) => se
                .raw()
                .body()
                .bytes()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
            _ => String::new(),
        };
        let code = err.code().unwrap_or("").to_string();
        let message = err.message().unwrap_or("").to_string();
        let full = error_chain(&err);
        // Some endpoints (and moto) answer auth failures in the IAM XML format, which the
        // ECR client cannot parse: find the code in the raw answer then.
        const AUTH_CODES: [&str; 8] = [
            "UnrecognizedClientException",
            "InvalidSignatureException",
            "InvalidClientTokenId",
            "ExpiredTokenException",
            "ExpiredToken",
            "SignatureDoesNotMatch",
            "IncompleteSignature",
            "MissingAuthenticationToken",
        ];
        let code = if code.is_empty() {
            AUTH_CODES
                .iter()
                .find(|c| raw_body.contains(&format!("<Code>{c}</Code>")))
                .map(|c| c.to_string())
                .unwrap_or(code)
        } else {
            code
        };
        let detail = if !message.is_empty() {
            format!("{code}: {message}")
        } else if !code.is_empty() {
            code.clone()
        } else {
            full.clone()
        };
        match code.as_str() {
            "RepositoryNotFoundException" => Error::RepositoryNotFound {
                registry: self.registry.clone(),
                repository: repository.to_string(),
                hint: format!(
                    "create it with `cicache registry ensure --image {}/{repository}`",
                    self.registry
                ),
            },
            c if AUTH_CODES.contains(&c) => Error::Unauthorized {
                registry: self.registry.clone(),
                detail,
                hint: "check the AWS credentials cicache found (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE, or the instance role); `aws sts get-caller-identity` shows whose they are".into(),
            },
            "AccessDeniedException" | "AccessDenied" => Error::Forbidden {
                registry: self.registry.clone(),
                what: format!("{operation} on {repository}"),
                detail,
            },
            _ if code.is_empty()
                && (full.contains("credentials") || full.contains("Credentials")) =>
            {
                Error::AwsCredentials {
                    detail: format!(
                        "{full}; give credentials the AWS way (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, SSO, or an instance/task role)"
                    ),
                }
            }
            _ => Error::Ecr {
                operation: operation.to_string(),
                repository: repository.to_string(),
                detail: full,
            },
        }
    }

    /// The repository, or `None` when it does not exist.
    pub fn repository(&self, name: &str) -> Result<Option<RepositoryInfo>> {
        let res = self.rt.block_on(
            self.client
                .describe_repositories()
                .registry_id(&self.account)
                .repository_names(name)
                .send(),
        );
        match res {
            Ok(out) => Ok(out.repositories().first().map(|r| RepositoryInfo {
                repository: r.repository_name().unwrap_or(name).to_string(),
                tag_mutability: r.image_tag_mutability().map(|m| m.as_str().to_string()),
                uri: r
                    .repository_uri()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{}/{name}", self.registry)),
                mutability_exclusions: r
                    .image_tag_mutability_exclusion_filters()
                    .iter()
                    .map(|f| f.filter().to_string())
                    .collect(),
            })),
            Err(e) => match self.map_err("DescribeRepositories", name, e) {
                Error::RepositoryNotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Creates a repository with mutable tags (a cache tag is pushed again and again).
    pub fn create_repository(&self, name: &str) -> Result<RepositoryInfo> {
        self.create_repository_with(name, false)
    }

    /// Creates a repository; `immutable` only for tests and tools that need one.
    pub fn create_repository_with(&self, name: &str, immutable: bool) -> Result<RepositoryInfo> {
        let mutability = if immutable {
            ImageTagMutability::Immutable
        } else {
            ImageTagMutability::Mutable
        };
        let out = self
            .rt
            .block_on(
                self.client
                    .create_repository()
                    .registry_id(&self.account)
                    .repository_name(name)
                    .image_tag_mutability(mutability)
                    .send(),
            )
            .map_err(|e| self.map_err("CreateRepository", name, e))?;
        let r = out.repository();
        Ok(RepositoryInfo {
            repository: name.to_string(),
            tag_mutability: r
                .and_then(|r| r.image_tag_mutability())
                .map(|m| m.as_str().to_string())
                .or_else(|| Some(if immutable { "IMMUTABLE" } else { "MUTABLE" }.into())),
            uri: r
                .and_then(|r| r.repository_uri())
                .map(str::to_string)
                .unwrap_or_else(|| format!("{}/{name}", self.registry)),
            mutability_exclusions: Vec::new(),
        })
    }

    /// Every image of the repository (tagged and untagged), with the children of indexes.
    pub fn images(&self, name: &str) -> Result<Vec<ImageRecord>> {
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .rt
                .block_on(
                    self.client
                        .describe_images()
                        .registry_id(&self.account)
                        .repository_name(name)
                        .set_next_token(next.take())
                        .max_results(1000)
                        .send(),
                )
                .map_err(|e| self.map_err("DescribeImages", name, e))?;
            for d in page.image_details() {
                let Some(digest) = d.image_digest() else {
                    continue;
                };
                let mut tags: Vec<String> = d.image_tags().to_vec();
                tags.sort();
                out.push(ImageRecord {
                    digest: digest.to_string(),
                    tags,
                    size: d.image_size_in_bytes().and_then(|s| u64::try_from(s).ok()),
                    pushed: to_system_time(d.image_pushed_at()),
                    last_pulled: to_system_time(d.last_recorded_pull_time()),
                    media_type: d.image_manifest_media_type().map(str::to_string),
                    artifact_type: d.artifact_media_type().map(str::to_string),
                    children: Vec::new(),
                });
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
            }
        }
        // Indexes: read them to learn which untagged images they still need.
        let indexes: Vec<String> = out
            .iter()
            .filter(|i| {
                i.media_type
                    .as_deref()
                    .is_some_and(|m| INDEX_TYPES.contains(&m))
            })
            .map(|i| i.digest.clone())
            .collect();
        for chunk in indexes.chunks(100) {
            let ids: Vec<ImageIdentifier> = chunk
                .iter()
                .map(|d| ImageIdentifier::builder().image_digest(d).build())
                .collect();
            let got = self
                .rt
                .block_on(
                    self.client
                        .batch_get_image()
                        .registry_id(&self.account)
                        .repository_name(name)
                        .set_image_ids(Some(ids))
                        .set_accepted_media_types(Some(
                            INDEX_TYPES.iter().map(|s| s.to_string()).collect(),
                        ))
                        .send(),
                )
                .map_err(|e| self.map_err("BatchGetImage", name, e))?;
            for image in got.images() {
                let (Some(digest), Some(text)) = (
                    image.image_id().and_then(|i| i.image_digest()),
                    image.image_manifest(),
                ) else {
                    continue;
                };
                let children: Vec<String> = serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|v| v.get("manifests").and_then(|m| m.as_array()).cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|m| m.get("digest").and_then(|d| d.as_str()))
                    .map(str::to_string)
                    .collect();
                if let Some(rec) = out.iter_mut().find(|r| r.digest == digest) {
                    rec.children = children;
                }
            }
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    /// Carries out deletions: a tag is removed from its image (the image goes with its last
    /// tag); an untagged image is deleted by digest. Returns what ECR refused.
    pub fn delete(&self, name: &str, deletions: &[Deletion]) -> Result<Vec<DeleteFailure>> {
        let mut ids = Vec::new();
        for d in deletions {
            if d.tags.is_empty() {
                ids.push(ImageIdentifier::builder().image_digest(&d.digest).build());
            } else {
                for t in &d.tags {
                    ids.push(ImageIdentifier::builder().image_tag(t).build());
                }
            }
        }
        let mut failures = Vec::new();
        for chunk in ids.chunks(100) {
            let out = self
                .rt
                .block_on(
                    self.client
                        .batch_delete_image()
                        .registry_id(&self.account)
                        .repository_name(name)
                        .set_image_ids(Some(chunk.to_vec()))
                        .send(),
                )
                .map_err(|e| self.map_err("BatchDeleteImage", name, e))?;
            for f in out.failures() {
                let id = f.image_id();
                let code = f
                    .failure_code()
                    .map(|c| c.as_str().to_string())
                    .unwrap_or_default();
                // Already gone is what we wanted.
                if code == "ImageNotFound" {
                    continue;
                }
                failures.push(DeleteFailure {
                    digest: id
                        .and_then(|i| i.image_digest())
                        .unwrap_or_default()
                        .to_string(),
                    tag: id.and_then(|i| i.image_tag()).map(str::to_string),
                    code,
                    reason: f.failure_reason().unwrap_or_default().to_string(),
                });
            }
        }
        Ok(failures)
    }

    pub fn put_lifecycle_policy(&self, name: &str, text: &str) -> Result<()> {
        self.rt
            .block_on(
                self.client
                    .put_lifecycle_policy()
                    .registry_id(&self.account)
                    .repository_name(name)
                    .lifecycle_policy_text(text)
                    .send(),
            )
            .map_err(|e| self.map_err("PutLifecyclePolicy", name, e))?;
        Ok(())
    }

    /// The repository's lifecycle policy text, `None` when it has none.
    pub fn lifecycle_policy(&self, name: &str) -> Result<Option<String>> {
        let res = self.rt.block_on(
            self.client
                .get_lifecycle_policy()
                .registry_id(&self.account)
                .repository_name(name)
                .send(),
        );
        match res {
            Ok(out) => Ok(out.lifecycle_policy_text().map(str::to_string)),
            Err(e) if e.code() == Some("LifecyclePolicyNotFoundException") => Ok(None),
            Err(e) => Err(self.map_err("GetLifecyclePolicy", name, e)),
        }
    }

    /// Pushes an image manifest (PutImage), under a tag or untagged; the layers must exist.
    /// Tests use it to fill a repository without docker.
    pub fn put_image(
        &self,
        name: &str,
        tag: Option<&str>,
        manifest: &str,
        media_type: &str,
    ) -> Result<String> {
        let out = self
            .rt
            .block_on(
                self.client
                    .put_image()
                    .registry_id(&self.account)
                    .repository_name(name)
                    .image_manifest(manifest)
                    .image_manifest_media_type(media_type)
                    .set_image_tag(tag.map(str::to_string))
                    .send(),
            )
            .map_err(|e| self.map_err("PutImage", name, e))?;
        Ok(out
            .image()
            .and_then(|i| i.image_id())
            .and_then(|i| i.image_digest())
            .unwrap_or_default()
            .to_string())
    }

    /// A docker login for the registry from GetAuthorizationToken.
    pub fn docker_credentials(&self) -> Result<(String, Credentials)> {
        let out = self
            .rt
            .block_on(self.client.get_authorization_token().send())
            .map_err(|e| self.map_err("GetAuthorizationToken", "(registry)", e))?;
        let data = out
            .authorization_data()
            .first()
            .ok_or_else(|| Error::BadResponse {
                what: "GetAuthorizationToken".into(),
                detail: "no authorization data in the answer".into(),
            })?;
        let token = data.authorization_token().unwrap_or_default();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Error::BadResponse {
                what: "GetAuthorizationToken".into(),
                detail: "the token is not base64 of USER:PASSWORD".into(),
            })?;
        let (user, password) = decoded.split_once(':').ok_or_else(|| Error::BadResponse {
            what: "GetAuthorizationToken".into(),
            detail: "the token is not base64 of USER:PASSWORD".into(),
        })?;
        // Log in to the registry the image names; ECR's proxy endpoint is the same host.
        let server = self.registry.clone();
        Ok((
            server,
            Credentials {
                username: user.to_string(),
                password: Secret::new(password),
                source: "ECR GetAuthorizationToken".into(),
            },
        ))
    }
}
