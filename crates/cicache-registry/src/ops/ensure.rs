//! `cicache registry ensure` and `lifecycle`: the repository exists with tags a cache can
//! overwrite, and ECR expires what the cache leaves behind.

use serde::Serialize;

use super::{Connection, Doing, OpError, OpResult};
use crate::lifecycle::{self, LifecycleSpec};
use crate::{EcrClient, Registry, RepositoryInfo, Target};

/// What `ensure` found or made of one repository.
#[derive(Debug, Serialize)]
pub struct EnsuredRepo {
    pub repository: String,
    pub uri: String,
    /// Whether the repository exists now (OCI registries create it with the first push).
    pub exists: bool,
    pub created: bool,
    pub tag_mutability: Option<String>,
    /// Whether a second push of a cache tag would be rejected.
    pub tags_immutable: bool,
}

impl EnsuredRepo {
    /// `URI: created, tags mutable`.
    fn line(&self) -> String {
        let state = if self.created {
            "created"
        } else if self.exists {
            "exists"
        } else {
            "not pushed yet"
        };
        let m = self
            .tag_mutability
            .as_deref()
            .map(|m| format!(", tags {}", m.to_lowercase()))
            .unwrap_or_default();
        format!("{}: {state}{m}", self.uri)
    }
}

/// What `ensure` is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct EnsureRequest {
    /// Also a separate `<repo>-buildcache` repository for the cache tags.
    pub cache_repo: bool,
    /// Set this lifecycle policy (ECR only).
    pub lifecycle: Option<LifecycleSpec>,
}

#[derive(Debug, Serialize)]
pub struct EnsureResult {
    pub registry: String,
    pub kind: &'static str,
    pub repository: EnsuredRepo,
    /// The separate cache repository (`--cache-repo`).
    pub cache_repository: Option<EnsuredRepo>,
    /// The image name to give the build for its cache tags.
    pub cache_image: String,
    pub lifecycle_applied: bool,
    /// What was done or found, for the log.
    #[serde(skip)]
    pub notes: Vec<String>,
}

impl EnsureResult {
    pub fn text(&self) -> String {
        let mut lines = vec![self.repository.line()];
        if let Some(c) = &self.cache_repository {
            lines.push(c.line());
        }
        lines.push(format!("cache tags go to {}", self.cache_image));
        if self.lifecycle_applied {
            lines.push("lifecycle policy applied".into());
        }
        lines.join("\n")
    }
}

/// The repository (and with `cache_repo` its `-buildcache` sibling) exists with mutable
/// tags: created on ECR when missing; on other registries looked up (they create it with
/// the first push).
pub fn ensure(conn: &Connection, req: EnsureRequest) -> OpResult<EnsureResult> {
    let target = &conn.target;
    let cache_target = target.with_repository(&format!("{}-buildcache", target.repository));
    if !target.is_ecr() {
        if req.lifecycle.is_some() {
            return Err(not_ecr("--lifecycle", target));
        }
        return ensure_oci(conn, &cache_target, req.cache_repo);
    }
    let mut notes = Vec::new();
    let ecr = conn.ecr()?;
    let repo = ensure_ecr_repo(&ecr, target, &mut notes)?;
    let cache_repo = if req.cache_repo {
        let c = ensure_ecr_repo(&ecr, &cache_target, &mut notes)?;
        if c.tags_immutable {
            return Err(OpError::Refused(format!(
                "the cache repository {} exists with immutable tags too; make its tags mutable \
                 (`aws ecr put-image-tag-mutability --repository-name {} --image-tag-mutability MUTABLE`) \
                 or delete it and run this again",
                cache_target.image(),
                cache_target.repository
            )));
        }
        Some(c)
    } else {
        if repo.tags_immutable {
            return Err(OpError::Refused(crate::immutable_explanation(target)));
        }
        None
    };
    let policy_target = if cache_repo.is_some() {
        &cache_target
    } else {
        target
    };
    if let Some(spec) = req.lifecycle {
        apply_policy(&ecr, policy_target, spec)?;
        notes.push(format!("lifecycle policy set on {}", policy_target.image()));
    }
    Ok(EnsureResult {
        registry: target.registry.clone(),
        kind: "ecr",
        cache_image: policy_target.image(),
        repository: repo,
        cache_repository: cache_repo,
        lifecycle_applied: req.lifecycle.is_some(),
        notes,
    })
}

fn ensure_ecr_repo(
    ecr: &EcrClient,
    target: &Target,
    notes: &mut Vec<String>,
) -> OpResult<EnsuredRepo> {
    let name = &target.repository;
    let existing = ecr
        .repository(name)
        .doing(|| format!("looking up {}", target.image()))?;
    let (info, created): (RepositoryInfo, bool) = match existing {
        Some(info) => (info, false),
        None => {
            let info = ecr
                .create_repository(name)
                .doing(|| format!("creating {}", target.image()))?;
            notes.push(format!("created {} (mutable tags)", target.image()));
            (info, true)
        }
    };
    Ok(EnsuredRepo {
        tags_immutable: info.tags_immutable(),
        repository: info.repository,
        uri: info.uri,
        exists: true,
        created,
        tag_mutability: info.tag_mutability,
    })
}

fn ensure_oci(
    conn: &Connection,
    cache_target: &Target,
    cache_repo: bool,
) -> OpResult<EnsureResult> {
    let target = &conn.target;
    let mut notes = Vec::new();
    let repo = oci_state(conn, target)?;
    if !repo.exists {
        notes.push(format!(
            "{} does not exist yet; the registry creates it with the first push",
            target.image()
        ));
    }
    let cache_repository = if cache_repo {
        Some(oci_state(conn, cache_target)?)
    } else {
        None
    };
    Ok(EnsureResult {
        registry: target.registry.clone(),
        kind: "oci",
        cache_image: if cache_repo {
            cache_target.image()
        } else {
            target.image()
        },
        repository: repo,
        cache_repository,
        lifecycle_applied: false,
        notes,
    })
}

/// Whether an OCI repository exists: its tag list answers.
fn oci_state(conn: &Connection, t: &Target) -> OpResult<EnsuredRepo> {
    let Registry::Oci(client) = conn.connect_to(t)? else {
        return Err(OpError::Refused(format!(
            "{} is an ECR registry, not one of the distribution API",
            t.registry
        )));
    };
    client.ping().doing(|| format!("checking {}", t.registry))?;
    let exists = match client.tags() {
        Ok(_) => true,
        Err(crate::Error::RepositoryNotFound { .. }) => false,
        Err(source) => {
            return Err(OpError::Registry {
                doing: format!("listing the tags of {}", t.image()),
                source,
            });
        }
    };
    Ok(EnsuredRepo {
        repository: t.repository.clone(),
        uri: t.image(),
        exists,
        created: false,
        tag_mutability: None,
        tags_immutable: false,
    })
}

fn not_ecr(flag: &str, target: &Target) -> OpError {
    OpError::Usage(format!(
        "{flag}: lifecycle policies are an ECR feature; for {} run `cicache registry gc` on a schedule instead",
        target.registry
    ))
}

/// Puts the policy and reads it back: a policy that reads back different is an error.
pub fn apply_policy(ecr: &EcrClient, target: &Target, spec: LifecycleSpec) -> OpResult<String> {
    let text = lifecycle::policy(spec).to_string();
    ecr.put_lifecycle_policy(&target.repository, &text)
        .doing(|| format!("setting the lifecycle policy of {}", target.image()))?;
    let back = ecr
        .lifecycle_policy(&target.repository)
        .doing(|| format!("reading back the lifecycle policy of {}", target.image()))?
        .ok_or_else(|| {
            OpError::Refused(format!(
                "{}: the lifecycle policy was set but reads back as missing",
                target.image()
            ))
        })?;
    if !lifecycle::same_policy(&back, &text) {
        return Err(OpError::Refused(format!(
            "{}: the lifecycle policy reads back different from what was set: {back}",
            target.image()
        )));
    }
    Ok(text)
}

/// `cicache registry lifecycle`'s result: the policy, and whether it was set.
#[derive(Debug, Serialize)]
pub struct LifecycleResult {
    pub registry: String,
    pub repository: String,
    pub applied: bool,
    pub policy: serde_json::Value,
    #[serde(skip)]
    pub notes: Vec<String>,
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl LifecycleResult {
    pub fn text(&self) -> String {
        serde_json::to_string_pretty(&self.policy).unwrap_or_default()
    }
}

/// The lifecycle policy for `spec`; with `apply`, set on the (ECR) repository.
pub fn lifecycle(conn: &Connection, spec: LifecycleSpec, apply: bool) -> OpResult<LifecycleResult> {
    let target = &conn.target;
    let (mut notes, mut warnings) = (Vec::new(), Vec::new());
    if apply {
        if !target.is_ecr() {
            return Err(not_ecr("--apply", target));
        }
        apply_policy(&conn.ecr()?, target, spec)?;
        notes.push(format!("lifecycle policy set on {}", target.image()));
    } else if !target.is_ecr() {
        warnings.push(format!(
            "{} is not ECR: this policy is for ECR repositories; elsewhere run `cicache registry gc` on a schedule",
            target.registry
        ));
    }
    Ok(LifecycleResult {
        registry: target.registry.clone(),
        repository: target.repository.clone(),
        applied: apply,
        policy: lifecycle::policy(spec),
        notes,
        warnings,
    })
}
