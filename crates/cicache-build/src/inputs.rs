//! What the image is made from, hashed into labels: `io.cicache.inputs` (everything),
//! `io.cicache.mount-inputs` (the steps up to the last cache-mount RUN) and
//! `io.cicache.mount-steps` (the steps up to each cache-mount RUN of the image's stages).
//! The check compares them with the cache tags' labels.

use std::collections::HashMap;
use std::path::PathBuf;

use cicache_docker::dockerfile::{CacheMount, Dockerfile};
use cicache_docker::engine::Docker;
use cicache_docker::skip;

use crate::registry::{RegistryAccess, build_platform};
use crate::spec::BuildSpec;

/// The hashes of one build and the labels that carry them.
#[derive(Debug, Clone)]
pub(crate) struct Hashed {
    /// Labels to put on the image (the given ones first).
    pub labels: Vec<String>,
    /// The hash of everything, or why there is none.
    pub inputs: Result<String, String>,
    pub mount_inputs: Option<String>,
    /// (last line, hash) of the steps up to each cache-mount RUN of the image's stages.
    pub mount_steps: Vec<(usize, String)>,
    /// The command of each of those RUNs (after its flags), in the same order.
    pub mount_commands: Vec<String>,
    /// The platform the hashes cover, when they were computed.
    pub platform: Option<String>,
}

/// Why a build's inputs are not hashed, if they are not. Whatever the cache exporter: the
/// labels go on the image, which is the cache tag with inline cache and an image tag the
/// next build reads with the registry exporter (check.rs, `label_refs`).
pub(crate) fn not_hashed(
    dry_run: bool,
    registry_cache: bool,
    own_cache: bool,
) -> Option<&'static str> {
    if dry_run {
        Some("--dry-run")
    } else if !registry_cache {
        Some("registry cache off")
    } else if own_cache {
        Some("a base image: its tag is its hash")
    } else {
        None
    }
}

/// Hashes the build's inputs (`daemon_platform`: the daemon's, when the build mode read it;
/// else `docker version` runs once, for the platform).
#[allow(clippy::too_many_arguments)]
pub(crate) fn hash(
    spec: &BuildSpec,
    dockerfile: &std::path::Path,
    df: Option<&Dockerfile>,
    mounts: &[CacheMount],
    labels: Vec<String>,
    docker: &Docker,
    daemon_platform: Option<&str>,
    registry: &RegistryAccess,
) -> Hashed {
    let mut labels = labels;
    let platform = build_platform(docker, daemon_platform);
    let skip_spec = skip::SkipSpec {
        context: spec.context.clone(),
        dockerfile: dockerfile.to_path_buf(),
        build_args: spec.build_args.clone(),
        target: spec.target.clone(),
        platform: platform.clone(),
        labels: labels.clone(),
        extra: spec.extra.clone(),
        cache_dir: spec.cache_dir.clone(),
    };
    let mut resolved: HashMap<String, Option<String>> = HashMap::new();
    let mut resolve = |r: &str| {
        resolved
            .entry(r.to_string())
            .or_insert_with(|| registry.resolve_image(docker, r, &platform))
            .clone()
    };
    // The cache-mount steps alone: the Dockerfile up to the last RUN that uses one of the
    // selected cache mounts (`mounts` holds each cache once, at its first RUN).
    let last_mount_end = df.and_then(|df| {
        df.instructions
            .iter()
            .filter(|i| {
                i.mounts.iter().any(|m| {
                    m.cache
                        .as_ref()
                        .is_some_and(|c| mounts.iter().any(|s| s.id == c.id))
                })
            })
            .map(|i| i.end_line)
            .max()
    });
    // The steps up to each RUN with a cache mount whose layer is the image's (the last one is
    // usually the same as above: hashed once).
    let ids: Vec<&str> = mounts.iter().map(|m| m.id.as_str()).collect();
    let image_runs = df
        .map(|df| skip::image_mount_runs(df, &ids, spec.target.as_deref()))
        .unwrap_or_default();
    let mut mount_steps: Vec<(usize, String)> = Vec::new();
    for end in &image_runs {
        match skip::compute_mount_steps(&skip_spec, *end, &mut resolve) {
            Ok(skip::Plan::Hashed(h)) => mount_steps.push((*end, h.hash)),
            _ => {
                mount_steps.clear();
                break;
            }
        }
    }
    let mount_commands = mount_steps
        .iter()
        .map(|(end, _)| {
            df.and_then(|df| df.instructions.iter().find(|i| i.end_line == *end))
                .map(|i| i.args.clone())
                .unwrap_or_default()
        })
        .collect();
    let mut mount_inputs = None;
    if let Some(end) = last_mount_end {
        let h = match mount_steps.iter().find(|(e, _)| *e == end) {
            Some((_, h)) => Some(h.clone()),
            None => match skip::compute_mount_steps(&skip_spec, end, &mut resolve) {
                Ok(skip::Plan::Hashed(h)) => Some(h.hash),
                _ => None,
            },
        };
        if let Some(h) = h {
            labels.push(format!("{}={h}", skip::LABEL_MOUNT_STEPS));
            mount_inputs = Some(h);
        }
    }
    if mount_inputs.is_none() {
        // Never inherit the FROM image's label.
        labels.push(format!("{}=", skip::LABEL_MOUNT_STEPS));
    }
    let list: Vec<&str> = mount_steps.iter().map(|(_, h)| h.as_str()).collect();
    labels.push(format!(
        "{}={}",
        skip::LABEL_MOUNT_STEP_LIST,
        list.join(" ")
    ));
    let inputs = match skip::compute(&skip_spec, &mut resolve) {
        Ok(skip::Plan::Hashed(h)) => {
            labels.push(format!("{}={}", skip::LABEL, h.hash));
            Ok(h.hash)
        }
        Ok(skip::Plan::Never(why)) => {
            labels.push(format!("{}=", skip::LABEL));
            Err(why)
        }
        Err(e) => {
            labels.push(format!("{}=", skip::LABEL));
            Err(format!("hashing the inputs: {e}"))
        }
    };
    Hashed {
        labels,
        inputs,
        mount_inputs,
        mount_steps,
        mount_commands,
        platform: Some(platform),
    }
}

/// The `.dockerignore` of a Dockerfile given by name (`Dockerfile.app.dockerignore`).
pub(crate) fn dockerfile_ignore(dockerfile: &std::path::Path) -> PathBuf {
    let mut name = dockerfile.file_name().unwrap_or_default().to_owned();
    name.push(".dockerignore");
    dockerfile.with_file_name(name)
}
