//! Base images, `REPO:base-<hash>`: found in the registry and reused, built (with the whole
//! cached build) when the registry lacks them, or, when the registry cannot be asked, the
//! one in the local daemon or the last one this agent used.

use std::path::PathBuf;
use std::time::Instant;

use cicache_docker::base::{self, BaseInputs, BaseRecord, Change};
use cicache_docker::engine::Docker;
use serde::Serialize;

use crate::error::BuildError;
use crate::outcome::{BuildDoc, BuildResult};
use crate::registry::{daemon_platform, has_registry_host, local_image};
use crate::run::{Env, Hooks, run_build};
use crate::spec::BuildSpec;

/// One request for a base image, from `cicache base` or `cicache build --base-dockerfile`.
#[derive(Debug, Clone)]
pub struct BaseRequest {
    /// Repository without tag.
    pub image: String,
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    /// Globs of the files the base is made from (empty: its COPY/ADD sources).
    pub inputs: Vec<String>,
    pub build_args: Vec<String>,
    /// The platform hashed; the daemon's when `None`.
    pub platform: Option<String>,
    pub dry_run: bool,
    /// The nested build's options: cache dir, keys, phase switches, docker options, the
    /// arguments after `--`.
    pub build: BuildSpec,
    /// The app build saves the cache dir after the base build (which then skips its save).
    pub save_later: bool,
}

/// What became of the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseStatus {
    /// The registry (or, for a repository without registry, the daemon) has it.
    Reused,
    Built,
    /// `--dry-run`: it would be built.
    WouldBuild,
    /// The registry could not be asked; the daemon has it.
    Local,
    /// The registry could not be asked; the last base this agent used is taken instead.
    Fallback,
    /// Its build failed.
    Failed,
}

/// `cicache base --json`, and `base` in `cicache build --json`.
#[derive(Debug, Clone, Serialize)]
pub struct BaseDoc {
    pub ok: bool,
    pub image: String,
    pub tag: String,
    #[serde(rename = "ref")]
    pub reference: String,
    /// The reference the inputs ask for (`ref` differs on a fallback).
    pub wanted: String,
    pub hash: String,
    pub status: BaseStatus,
    pub reason: String,
    pub changes: Vec<Change>,
    pub previous: Option<String>,
    pub registry_error: Option<String>,
    pub name: String,
    pub dockerfile: PathBuf,
    pub platform: String,
    pub input_source: String,
    pub files: Vec<String>,
    pub inputs: std::collections::BTreeMap<String, String>,
    pub build: Option<Box<BuildDoc>>,
    pub warnings: Vec<String>,
    pub summary: String,
    pub seconds: f64,
}

/// The base image's result.
#[derive(Debug, Clone)]
pub struct BaseOutcome {
    /// 0, or the exit code of its failed build.
    pub code: u8,
    /// `REPO:base-<hash>` the app builds on (the fallback's tag when the registry was down).
    pub reference: String,
    /// Whether it was built now (the cache dir was restored by that build).
    pub built: bool,
    pub doc: BaseDoc,
    pub warnings: Vec<String>,
}

/// What the steps below decide: the status, why, and what goes with it.
struct Found {
    status: BaseStatus,
    reason: String,
    changes: Vec<Change>,
    previous: Option<String>,
    reference: String,
    build: Option<BuildDoc>,
    code: u8,
}

/// Finds, builds or falls back to the base image of a request.
pub fn ensure_base(req: BaseRequest, env: &Env) -> Result<BaseOutcome, BuildError> {
    let started = Instant::now();
    let docker = Docker::new(&req.build.docker.program);
    let (inputs, platform) = hash_inputs(&req, &docker)?;
    let mut warnings = Vec::new();
    for n in &inputs.notes {
        env.events.warn(&format!("base: {n}"));
        warnings.push(format!("base: {n}"));
    }
    let reference = format!("{}:{}", req.image, inputs.tag);
    let state_dir = cicache_store::state::state_dir();
    let record = base::load_record(&state_dir, &req.image, &inputs.name);
    env.events.info(&format!(
        "base: {} from {} ({} input files, {})",
        reference,
        inputs.name,
        inputs.files.len(),
        inputs.source
    ));
    let asked_registry = has_registry_host(&req.image);
    let have = if asked_registry {
        env.registry.has_tag(&req.image, &inputs.tag)
    } else {
        Ok(local_image(&docker, &reference))
    };
    let distrust = match have {
        Ok(true) if asked_registry => distrusted(&req.image, &reference, &platform, env),
        _ => None,
    };
    let (found, registry_error) = match (have, distrust) {
        (Ok(true), None) => (
            present(&req, &inputs, record.as_ref(), asked_registry),
            None,
        ),
        (Ok(true), Some(why)) => {
            let f = rebuild(&req, &inputs, &reference, why, Vec::new(), None, env)?;
            (f, None)
        }
        (Ok(false), _) => (
            absent(&req, &inputs, record.as_ref(), &reference, &platform, env)?,
            None,
        ),
        (Err(e), _) => {
            let f = registry_down(&req, &inputs, record.as_ref(), &reference, &docker, &e, env)?;
            env.events.warn(&format!("base: {}", f.reason));
            warnings.push(format!("base: {}", f.reason));
            (f, Some(e))
        }
    };
    if matches!(
        found.status,
        BaseStatus::Reused | BaseStatus::Built | BaseStatus::Local
    ) {
        let rec = BaseRecord {
            version: base::RECORD_VERSION,
            image: req.image.clone(),
            name: inputs.name.clone(),
            tag: inputs.tag.clone(),
            inputs: inputs.inputs.clone(),
            recorded_at: now_secs(),
        };
        if let Err(e) = base::save_record(&state_dir, &rec) {
            env.events.warn(&format!(
                "base: cannot record the base in {}: {e} (only the registry-down fallback \
                 and the change report need it)",
                state_dir.display()
            ));
        }
    }
    let final_ref = found.reference.clone();
    let summary = match found.status {
        BaseStatus::Reused => format!("base: reused {final_ref} ({})", found.reason),
        BaseStatus::Built => format!("base: built {final_ref} ({})", found.reason),
        BaseStatus::WouldBuild => format!("base: would build {final_ref} ({})", found.reason),
        BaseStatus::Failed => format!("base: the build of {final_ref} failed"),
        BaseStatus::Local => format!("base: local {final_ref} ({})", found.reason),
        BaseStatus::Fallback => format!("base: fallback {final_ref} ({})", found.reason),
    };
    let built = found.build.is_some();
    let doc = BaseDoc {
        ok: found.code == 0,
        image: req.image.clone(),
        tag: final_ref
            .rsplit_once(':')
            .map(|(_, t)| t.to_string())
            .unwrap_or_default(),
        reference: final_ref.clone(),
        wanted: reference,
        hash: inputs.hash,
        status: found.status,
        reason: found.reason,
        changes: found.changes,
        previous: found.previous,
        registry_error,
        name: inputs.name,
        dockerfile: req.dockerfile,
        platform,
        input_source: inputs.source,
        files: inputs.files,
        inputs: inputs.inputs,
        build: found.build.map(Box::new),
        warnings: warnings.clone(),
        summary: summary.clone(),
        seconds: started.elapsed().as_secs_f64(),
    };
    env.events.info(&summary);
    Ok(BaseOutcome {
        code: found.code,
        reference: final_ref,
        built,
        doc,
        warnings,
    })
}

/// Checks the request and hashes the base's inputs; returns them and the platform hashed.
fn hash_inputs(req: &BaseRequest, docker: &Docker) -> Result<(BaseInputs, String), BuildError> {
    let last = req.image.rsplit('/').next().unwrap_or_default();
    if last.contains(':') || req.image.contains('@') || req.image.trim().is_empty() {
        return Err(BuildError::Usage(format!(
            "--image {:?}: give the repository without a tag or digest (REGISTRY/NAME); \
             cicache tags the base itself: REPO:base-<hash>",
            req.image
        )));
    }
    if !req.dockerfile.is_file() {
        return Err(BuildError::Usage(format!(
            "the base Dockerfile {} does not exist (pass --base-dockerfile / -f FILE)",
            req.dockerfile.display()
        )));
    }
    let platform = req
        .platform
        .clone()
        .unwrap_or_else(|| daemon_platform(docker));
    let spec = base::BaseSpec {
        context: req.context.clone(),
        dockerfile: req.dockerfile.clone(),
        inputs: req.inputs.clone(),
        build_args: req.build_args.clone(),
        docker_args: req.build.extra.clone(),
        platform: platform.clone(),
        ignore: base::Ignore::default(),
    };
    let inputs = base::compute(&spec).map_err(|e| {
        BuildError::Base(format!(
            "hashing the inputs of the base image {}: {e}",
            req.dockerfile.display()
        ))
    })?;
    Ok((inputs, platform))
}

/// The registry (or the daemon, for a repository without registry) has the base.
fn present(
    req: &BaseRequest,
    inputs: &BaseInputs,
    record: Option<&BaseRecord>,
    asked_registry: bool,
) -> Found {
    let mut f = Found {
        status: BaseStatus::Reused,
        reason: if asked_registry {
            "in the registry".to_string()
        } else {
            "in the local daemon (REPO names no registry)".to_string()
        },
        changes: Vec::new(),
        previous: None,
        reference: format!("{}:{}", req.image, inputs.tag),
        build: None,
        code: 0,
    };
    if let Some(r) = record
        && r.tag != inputs.tag
    {
        f.changes = base::diff(&r.inputs, &inputs.inputs);
        f.previous = Some(format!("{}:{}", req.image, r.tag));
    }
    f
}

/// Why the registry's `REPO:base-<hash>` is not to be reused by this build: it was built
/// by a scope this build does not trust (its own scope and its fallback scopes are trusted:
/// a pull request's base is not the default branch's), or it does not say by which.
/// `None`: reuse it.
fn distrusted(image: &str, reference: &str, platform: &str, env: &Env) -> Option<String> {
    let own = &env.settings.scope;
    let trusted = || {
        std::iter::once(own.as_str())
            .chain(env.settings.fallback_scopes.iter().map(String::as_str))
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let labels = match env
        .registry
        .check_reads(image, &[reference.to_string()], &[], platform)
    {
        Ok(reads) => reads
            .tags
            .into_iter()
            .next()
            .map(|t| t.labels)
            .unwrap_or_default(),
        Err(e) => {
            return Some(format!(
                "{reference} is in the registry, but its labels could not be read to see \
                 which scope built it ({e}); building it again"
            ));
        }
    };
    match labels.get(base::LABEL_SCOPE) {
        Some(s) if s == own || env.settings.fallback_scopes.contains(s) => None,
        Some(s) => Some(format!(
            "{reference} in the registry was built by scope `{s}`, which this build \
             (trusting {}) does not trust; building it again",
            trusted()
        )),
        None => Some(format!(
            "{reference} in the registry does not say which scope built it (no {} label: \
             built by hand or by an older cicache); building it again (trusting {})",
            base::LABEL_SCOPE,
            trusted()
        )),
    }
}

/// The base is missing: why (what changed since which earlier base), then its build.
fn absent(
    req: &BaseRequest,
    inputs: &BaseInputs,
    record: Option<&BaseRecord>,
    reference: &str,
    platform: &str,
    env: &Env,
) -> Result<Found, BuildError> {
    let mut changes = Vec::new();
    let mut previous = None;
    let reason = match record {
        Some(r) if r.tag == inputs.tag => {
            "used before on this agent, but gone from the registry".to_string()
        }
        Some(r) => {
            changes = base::diff(&r.inputs, &inputs.inputs);
            previous = Some(format!("{}:{}", req.image, r.tag));
            format!(
                "the inputs changed since {}:{}: {}",
                req.image,
                r.tag,
                base::describe_changes(&changes)
            )
        }
        None if !has_registry_host(&req.image) => format!(
            "not in the local daemon, and no earlier base of {} is known on this agent",
            inputs.name
        ),
        None => match env
            .registry
            .previous_base(&req.image, &inputs.name, &inputs.tag, platform)
        {
            Ok(Some((tag, old))) => {
                changes = base::diff(&old, &inputs.inputs);
                previous = Some(format!("{}:{tag}", req.image));
                format!(
                    "the inputs changed since {}:{tag} (the newest base of {} in the \
                     registry): {}",
                    req.image,
                    inputs.name,
                    base::describe_changes(&changes)
                )
            }
            Ok(None) => format!(
                "not in the registry, and it holds no earlier base of {}",
                inputs.name
            ),
            Err(e) => format!(
                "not in the registry (no earlier base of {} known on this agent; looking for \
                 one in the registry failed: {e})",
                inputs.name
            ),
        },
    };
    rebuild(req, inputs, reference, reason, changes, previous, env)
}

/// Builds the base (with `--dry-run`: says it would), for `reason`.
fn rebuild(
    req: &BaseRequest,
    inputs: &BaseInputs,
    reference: &str,
    reason: String,
    changes: Vec<Change>,
    previous: Option<String>,
    env: &Env,
) -> Result<Found, BuildError> {
    let mut f = Found {
        status: if req.dry_run {
            BaseStatus::WouldBuild
        } else {
            BaseStatus::Built
        },
        reason,
        changes,
        previous,
        reference: reference.to_string(),
        build: None,
        code: 0,
    };
    if !req.dry_run {
        let doc = build_base(
            req,
            inputs,
            f.previous.as_deref(),
            reference,
            &f.reason,
            env,
        )?;
        f.code = doc.code;
        if f.code != 0 {
            f.status = BaseStatus::Failed;
        }
        f.build = Some(doc);
    }
    Ok(f)
}

/// Builds the base with the whole cached build: its tag is its hash, its layer cache the
/// previous base's.
fn build_base(
    req: &BaseRequest,
    inputs: &BaseInputs,
    previous: Option<&str>,
    reference: &str,
    reason: &str,
    env: &Env,
) -> Result<BuildDoc, BuildError> {
    let mut b = req.build.clone();
    b.image = req.image.clone();
    b.tags = vec![inputs.tag.clone()];
    b.dockerfile = Some(req.dockerfile.clone());
    b.build_args = req.build_args.clone();
    b.target = None;
    b.context = req.context.clone();
    b.dry_run = false;
    b.base = None;
    let registry = has_registry_host(&req.image);
    b.push = registry;
    if !registry {
        b.registry_cache = Some(false);
    }
    if let Some(p) = &req.platform {
        b.extra.insert(0, p.clone());
        b.extra.insert(0, "--platform".into());
    }
    let inputs_json = serde_json::to_string(&inputs.inputs)
        .map_err(|e| BuildError::Base(format!("encoding the base's inputs: {e}")))?;
    let hooks = Hooks {
        prefix: "base ",
        labels: vec![
            format!("{}={}", base::LABEL_NAME, inputs.name),
            format!("{}={}", base::LABEL_INPUTS, inputs_json),
            format!("{}={}", base::LABEL_SCOPE, env.settings.scope),
        ],
        own_cache: Some(previous.iter().map(|s| s.to_string()).collect()),
        saved_by: req
            .save_later
            .then_some("the app build saves the cache dir"),
        ..Hooks::default()
    };
    env.events
        .info(&format!("base: building {reference}: {reason}"));
    let result = run_build(b, env, &hooks).map_err(|e| match e {
        BuildError::Usage(m) => {
            BuildError::Usage(format!("building the base image {reference}: {m}"))
        }
        e => BuildError::Base(format!("building the base image {reference}: {e}")),
    })?;
    match result {
        BuildResult::Built(doc) => Ok(*doc),
        // Not a dry run, and no base of its own: always built.
        _ => Err(BuildError::Base(format!(
            "building the base image {reference}: the build did not run"
        ))),
    }
}

/// The registry cannot be asked: the base in the daemon, else the last one this agent used,
/// else an error that says what to do. Strict builds fail at once.
fn registry_down(
    req: &BaseRequest,
    inputs: &BaseInputs,
    record: Option<&BaseRecord>,
    reference: &str,
    docker: &Docker,
    err: &str,
    env: &Env,
) -> Result<Found, BuildError> {
    let fix = format!(
        "make the registry reachable and check the credentials (`cicache registry status \
         --image {}`, `docker login`), then run again; or build without the base image this \
         once (drop --base-dockerfile / baseDockerfile and pass --build-arg \
         BASE_IMAGE=<an image with the dependencies>)",
        req.image
    );
    if env.settings.strict {
        return Err(BuildError::Base(format!(
            "cannot check {reference} in the registry ({err}); --strict makes this an error. \
             Fix: {fix}"
        )));
    }
    if local_image(docker, reference) {
        return Ok(Found {
            status: BaseStatus::Local,
            reason: format!(
                "the registry could not be asked ({err}); {reference} is in the local daemon"
            ),
            changes: Vec::new(),
            previous: None,
            reference: reference.to_string(),
            build: None,
            code: 0,
        });
    }
    if let Some(r) = record.filter(|r| local_image(docker, &format!("{}:{}", req.image, r.tag))) {
        let changes = base::diff(&r.inputs, &inputs.inputs);
        let final_ref = format!("{}:{}", req.image, r.tag);
        let reason = format!(
            "the registry could not be asked ({err}); building on the last known base \
             {final_ref}{}",
            if changes.is_empty() {
                String::new()
            } else {
                format!(
                    ", which lacks: {} (run again when the registry is back)",
                    base::describe_changes(&changes)
                )
            }
        );
        return Ok(Found {
            status: BaseStatus::Fallback,
            reason,
            changes,
            previous: Some(final_ref.clone()),
            reference: final_ref,
            build: None,
            code: 0,
        });
    }
    let known = match record {
        Some(r) => format!(
            "the last known base {}:{} is not in the local daemon either",
            req.image, r.tag
        ),
        None => format!("this agent knows no earlier base of {}", inputs.name),
    };
    Err(BuildError::Base(format!(
        "cannot check {reference} in the registry ({err}), and {known}. Fix: {fix}"
    )))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
