//! `cicache registry ...`: the registry cache tags (`IMAGE:cache`, `IMAGE:cache-<scope>`).
//! (Owned by the registry work, issue 5.) The work is done by `cicache-registry`; this module
//! reads the options, prints the results and picks the exit code.

use std::collections::BTreeSet;
use std::io::Read;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, anyhow, bail};
use cicache_registry::gc::{self, Deletion, GcPolicy, KeepReason};
use cicache_registry::lifecycle::{self, LifecycleSpec};
use cicache_registry::tags::{self, TagClass};
use cicache_registry::{
    ConnectOptions, Credentials, EcrClient, ImageRecord, Kind, OciClient, OciOptions, Registry,
    RepositoryInfo, Secret, Target,
};
use serde::{Deserialize, Serialize};

use crate::cli::registry::{
    ClearArgs, EnsureArgs, GcArgs, LifecycleArgs, LoginArgs, PolicyArgs, RegistryArgs,
    RegistryCommand, StatusArgs, TargetArgs,
};
use crate::settings::Context;

use crate::output::{exit, human_bytes};

/// The `registry:` section of cicache.yml.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RegistryConfig {
    image: Option<String>,
    region: Option<String>,
    docker: Option<String>,
    max_age: Option<String>,
    keep: Vec<String>,
    keep_bases: Option<usize>,
    untagged_days: Option<u32>,
    scope_days: Option<u32>,
}

fn registry_config(ctx: &Context) -> Result<RegistryConfig> {
    match &ctx.config.registry {
        None => Ok(RegistryConfig::default()),
        Some(v) => serde_yaml::from_value(v.clone()).context(
            "the `registry:` section of the config file is not valid \
             (keys: image, region, docker, max_age, keep, keep_bases, untagged_days, scope_days; see docs/REGISTRY.md)",
        ),
    }
}

pub fn registry(args: RegistryArgs, ctx: &Context) -> Result<u8> {
    let config = registry_config(ctx)?;
    match args.command {
        RegistryCommand::Login(a) => login(a, &config, ctx),
        RegistryCommand::Ensure(a) => ensure(a, &config, ctx),
        RegistryCommand::Status(a) => status(a, &config, ctx),
        RegistryCommand::Clear(a) => clear(a, &config, ctx),
        RegistryCommand::Gc(a) => gc_cmd(a, &config, ctx),
        RegistryCommand::Lifecycle(a) => lifecycle_cmd(a, &config, ctx),
    }
}

/// The resolved target and how to connect to it.
struct Resolved {
    target: Target,
    opts: ConnectOptions,
}

fn resolve(args: &TargetArgs, config: &RegistryConfig, ctx: &Context) -> Result<Resolved> {
    let image = args
        .image
        .clone()
        .or_else(|| config.image.clone())
        .ok_or_else(|| {
            anyhow!(
                "no image repository: pass --image REGISTRY/NAME (or set CICACHE_IMAGE, or registry.image in cicache.yml)"
            )
        })?;
    let target = Target::parse(&image)?;
    let credentials = if args.password_stdin {
        let user = args
            .username
            .clone()
            .ok_or_else(|| anyhow!("--password-stdin needs --username"))?;
        Some(Credentials {
            username: user,
            password: read_password_stdin()?,
            source: "--password-stdin".into(),
        })
    } else {
        if args.username.is_some() {
            bail!(
                "--username needs --password-stdin: pipe the password in (passwords are never taken as arguments)"
            );
        }
        None
    };
    if credentials.is_some() && target.is_ecr() {
        ctx.out.warn(
            "--username/--password-stdin are ignored for ECR: cicache uses the AWS credential chain",
        );
    }
    Ok(Resolved {
        opts: ConnectOptions {
            region: args.region.clone().or_else(|| config.region.clone()),
            credentials,
            plain_http: args.plain_http.then_some(true),
            timeout: ctx.global.timeout.map(Into::into),
        },
        target,
    })
}

fn read_password_stdin() -> Result<Secret> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading the password from stdin (--password-stdin)")?;
    let s = s.trim_end_matches(['\n', '\r']).to_string();
    if s.is_empty() {
        bail!(
            "--password-stdin: stdin was empty; pipe the password in, e.g. `printf %s \"$PASS\" | cicache registry login ...`"
        );
    }
    Ok(Secret::new(s))
}

fn connect(r: &Resolved) -> Result<Registry> {
    Registry::connect(&r.target, &r.opts)
        .with_context(|| format!("connecting to {}", r.target.registry))
}

fn kind_name(target: &Target) -> &'static str {
    match target.kind {
        Kind::Ecr { .. } => "ecr",
        Kind::Oci => "oci",
    }
}

fn fmt_time(t: Option<SystemTime>) -> String {
    t.map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|| "-".into())
}

fn fmt_age(secs: Option<u64>) -> String {
    match secs {
        None => "age unknown".into(),
        Some(s) if s >= 2 * 86_400 => format!("{}d", s / 86_400),
        Some(s) if s >= 3600 => format!("{}h", s / 3600),
        Some(s) if s >= 60 => format!("{}m", s / 60),
        Some(s) => format!("{s}s"),
    }
}

fn fmt_size(s: Option<u64>) -> String {
    s.map(human_bytes).unwrap_or_else(|| "-".into())
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

// ---------------------------------------------------------------------------------- login

#[derive(Serialize)]
struct LoginResult {
    registry: String,
    kind: &'static str,
    username: String,
    /// docker's answer (secrets removed).
    message: String,
}

fn login(a: LoginArgs, config: &RegistryConfig, ctx: &Context) -> Result<u8> {
    let r = resolve(&a.target, config, ctx)?;
    let docker = a
        .docker
        .clone()
        .or_else(|| config.docker.clone())
        .unwrap_or_else(|| "docker".into());
    let (server, creds) = if r.target.is_ecr() {
        let ecr = EcrClient::connect(&r.target, r.opts.region.as_deref(), r.opts.timeout)?;
        ecr.docker_credentials()
            .with_context(|| format!("getting a docker login for {}", r.target.registry))?
    } else {
        let creds = r.opts.credentials.clone().ok_or_else(|| {
            anyhow!(
                "logging in to {} needs --username USER --password-stdin (the password piped in)",
                r.target.registry
            )
        })?;
        // Check them first: a clear answer from the registry beats docker's.
        let client = OciClient::new(
            &r.target,
            Some(creds.clone()),
            &OciOptions {
                plain_http: r.opts.plain_http,
                timeout: r.opts.timeout,
            },
        );
        client
            .ping()
            .with_context(|| format!("checking the credentials with {}", r.target.registry))?;
        (r.target.registry.clone(), creds)
    };
    ctx.out.info(format!(
        "logging docker in to {server} as {} (password on stdin)",
        creds.username
    ));
    let message = cicache_registry::login::docker_login(&docker, &server, &creds)
        .with_context(|| format!("docker login to {server}"))?;
    let result = LoginResult {
        registry: server.clone(),
        kind: kind_name(&r.target),
        username: creds.username.clone(),
        message,
    };
    ctx.out.result(&result, || {
        format!("logged in to {server} as {}", result.username)
    });
    Ok(exit::OK)
}

// --------------------------------------------------------------------------------- ensure

#[derive(Serialize)]
struct EnsuredRepo {
    repository: String,
    uri: String,
    /// Whether the repository exists now (OCI registries create it with the first push).
    exists: bool,
    created: bool,
    tag_mutability: Option<String>,
    /// Whether a second push of a cache tag would be rejected.
    tags_immutable: bool,
}

#[derive(Serialize)]
struct EnsureResult {
    registry: String,
    kind: &'static str,
    repository: EnsuredRepo,
    /// The separate cache repository (`--cache-repo`).
    cache_repository: Option<EnsuredRepo>,
    /// The image name to give the build for its cache tags.
    cache_image: String,
    lifecycle_applied: bool,
}

fn ensure_ecr_repo(ecr: &EcrClient, target: &Target, ctx: &Context) -> Result<EnsuredRepo> {
    let name = &target.repository;
    let existing = ecr
        .repository(name)
        .with_context(|| format!("looking up {}", target.image()))?;
    let (info, created): (RepositoryInfo, bool) = match existing {
        Some(info) => (info, false),
        None => {
            let info = ecr
                .create_repository(name)
                .with_context(|| format!("creating {}", target.image()))?;
            ctx.out
                .info(format!("created {} (mutable tags)", target.image()));
            (info, true)
        }
    };
    Ok(EnsuredRepo {
        repository: info.repository.clone(),
        uri: info.uri.clone(),
        exists: true,
        created,
        tag_mutability: info.tag_mutability.clone(),
        tags_immutable: info.tags_immutable(),
    })
}

fn policy_spec(p: &PolicyArgs, config: &RegistryConfig) -> Result<LifecycleSpec> {
    let d = LifecycleSpec::default();
    let spec = LifecycleSpec {
        untagged_days: p
            .untagged_days
            .or(config.untagged_days)
            .unwrap_or(d.untagged_days),
        scope_days: p.scope_days.or(config.scope_days).unwrap_or(d.scope_days),
    };
    lifecycle::validate(spec).map_err(|e| anyhow!(e))?;
    Ok(spec)
}

/// Puts the policy and reads it back.
fn apply_policy(ecr: &EcrClient, target: &Target, spec: LifecycleSpec) -> Result<String> {
    let text = lifecycle::policy(spec).to_string();
    ecr.put_lifecycle_policy(&target.repository, &text)
        .with_context(|| format!("setting the lifecycle policy of {}", target.image()))?;
    let back = ecr
        .lifecycle_policy(&target.repository)
        .with_context(|| format!("reading back the lifecycle policy of {}", target.image()))?
        .ok_or_else(|| {
            anyhow!(
                "{}: the lifecycle policy was set but reads back as missing",
                target.image()
            )
        })?;
    if !lifecycle::same_policy(&back, &text) {
        bail!(
            "{}: the lifecycle policy reads back different from what was set: {back}",
            target.image()
        );
    }
    Ok(text)
}

fn ensure(a: EnsureArgs, config: &RegistryConfig, ctx: &Context) -> Result<u8> {
    let r = resolve(&a.target, config, ctx)?;
    let spec = policy_spec(&a.policy, config)?;
    let cache_target = r
        .target
        .with_repository(&format!("{}-buildcache", r.target.repository));
    let result = if r.target.is_ecr() {
        let ecr = EcrClient::connect(&r.target, r.opts.region.as_deref(), r.opts.timeout)?;
        let repo = ensure_ecr_repo(&ecr, &r.target, ctx)?;
        let immutable = repo.tags_immutable;
        let cache_repo = if a.cache_repo {
            let c = ensure_ecr_repo(&ecr, &cache_target, ctx)?;
            if c.tags_immutable {
                bail!(
                    "the cache repository {} exists with immutable tags too; make its tags mutable \
                     (`aws ecr put-image-tag-mutability --repository-name {} --image-tag-mutability MUTABLE`) \
                     or delete it and run this again",
                    cache_target.image(),
                    cache_target.repository
                );
            }
            Some(c)
        } else {
            if immutable {
                bail!("{}", cicache_registry::immutable_explanation(&r.target));
            }
            None
        };
        let policy_target = if cache_repo.is_some() {
            &cache_target
        } else {
            &r.target
        };
        if a.lifecycle {
            apply_policy(&ecr, policy_target, spec)?;
            ctx.out
                .info(format!("lifecycle policy set on {}", policy_target.image()));
        }
        EnsureResult {
            registry: r.target.registry.clone(),
            kind: "ecr",
            cache_image: policy_target.image(),
            repository: repo,
            cache_repository: cache_repo,
            lifecycle_applied: a.lifecycle,
        }
    } else {
        if a.lifecycle {
            bail!(
                "--lifecycle: lifecycle policies are an ECR feature; for {} run `cicache registry gc` on a schedule instead",
                r.target.registry
            );
        }
        let oci_state = |t: &Target| -> Result<EnsuredRepo> {
            let reg = Registry::connect(t, &r.opts)?;
            let Registry::Oci(client) = reg else {
                unreachable!("a non-ECR target connects through the OCI API")
            };
            client
                .ping()
                .with_context(|| format!("checking {}", t.registry))?;
            let exists = match client.tags() {
                Ok(_) => true,
                Err(cicache_registry::Error::RepositoryNotFound { .. }) => false,
                Err(e) => {
                    return Err(e).with_context(|| format!("listing the tags of {}", t.image()));
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
        };
        let repo = oci_state(&r.target)?;
        if !repo.exists {
            ctx.out.info(format!(
                "{} does not exist yet; the registry creates it with the first push",
                r.target.image()
            ));
        }
        let cache_repo = if a.cache_repo {
            Some(oci_state(&cache_target)?)
        } else {
            None
        };
        EnsureResult {
            registry: r.target.registry.clone(),
            kind: "oci",
            cache_image: if a.cache_repo {
                cache_target.image()
            } else {
                r.target.image()
            },
            repository: repo,
            cache_repository: cache_repo,
            lifecycle_applied: false,
        }
    };
    ctx.out.result(&result, || {
        let mut lines = Vec::new();
        let describe = |e: &EnsuredRepo| {
            let state = if e.created {
                "created"
            } else if e.exists {
                "exists"
            } else {
                "not pushed yet"
            };
            let m = e
                .tag_mutability
                .as_deref()
                .map(|m| format!(", tags {}", m.to_lowercase()))
                .unwrap_or_default();
            format!("{}: {state}{m}", e.uri)
        };
        lines.push(describe(&result.repository));
        if let Some(c) = &result.cache_repository {
            lines.push(describe(c));
        }
        lines.push(format!("cache tags go to {}", result.cache_image));
        if result.lifecycle_applied {
            lines.push("lifecycle policy applied".into());
        }
        lines.join("\n")
    });
    Ok(exit::OK)
}

// --------------------------------------------------------------------------------- status

#[derive(Serialize)]
struct TagRow {
    tag: String,
    /// `null` for `cache` (the default branch).
    scope: Option<String>,
    digest: String,
    size: Option<u64>,
    #[serde(serialize_with = "cicache_registry::model::ser_time")]
    pushed: Option<SystemTime>,
    #[serde(serialize_with = "cicache_registry::model::ser_time")]
    last_pulled: Option<SystemTime>,
    age_seconds: Option<u64>,
}

#[derive(Serialize)]
struct StatusResult {
    registry: String,
    repository: String,
    kind: &'static str,
    tag_mutability: Option<String>,
    cache_tags: Vec<TagRow>,
    /// Bytes of the distinct manifests behind the cache tags.
    cache_bytes: u64,
    other_tags: usize,
    base_tags: usize,
    store_entries: usize,
    /// `null` where the API cannot list untagged manifests (the distribution API).
    untagged: Option<usize>,
}

fn status(a: StatusArgs, config: &RegistryConfig, ctx: &Context) -> Result<u8> {
    let r = resolve(&a.target, config, ctx)?;
    let reg = connect(&r)?;
    let info = match &reg {
        Registry::Ecr { client, target } => Some(
            client
                .repository(&target.repository)
                .with_context(|| format!("looking up {}", target.image()))?
                .ok_or_else(|| {
                    anyhow!(
                        "repository {} does not exist; create it with `cicache registry ensure --image {}`",
                        target.image(),
                        target.image()
                    )
                })?,
        ),
        Registry::Oci(_) => None,
    };
    let mutability = info.as_ref().and_then(|i| i.tag_mutability.clone());
    if info.as_ref().is_some_and(RepositoryInfo::tags_immutable) {
        ctx.out
            .warn(cicache_registry::immutable_explanation(&r.target));
    }
    let images = reg
        .images()
        .with_context(|| format!("listing {}", r.target.image()))?;
    let now = SystemTime::now();
    let mut rows = Vec::new();
    let mut cache_digests = BTreeSet::new();
    let (mut other, mut base, mut entries, mut untagged) = (0, 0, 0, 0);
    for i in &images {
        if i.is_store_entry() {
            // Entries count; their last-use markers and the store's leases and locks are
            // store objects too, but not entries.
            if i.artifact_type.as_deref() == Some(tags::STORE_ENTRY_ARTIFACT_TYPE) {
                entries += 1;
            }
            continue;
        }
        if i.tags.is_empty() {
            untagged += 1;
        }
        for t in &i.tags {
            match i.class_of(t) {
                TagClass::Cache | TagClass::ScopeCache => {
                    if cache_digests.insert(i.digest.clone()) {
                        // counted once below
                    }
                    rows.push(TagRow {
                        tag: t.clone(),
                        scope: tags::scope_of(t).map(str::to_string),
                        digest: i.digest.clone(),
                        size: i.size,
                        pushed: i.pushed,
                        last_pulled: i.last_pulled,
                        age_seconds: i.age(now).map(|d| d.as_secs()),
                    })
                }
                TagClass::Base => base += 1,
                TagClass::StoreEntry => {}
                TagClass::Other => other += 1,
            }
        }
    }
    rows.sort_by(|a, b| (a.scope.is_some(), &a.tag).cmp(&(b.scope.is_some(), &b.tag)));
    let cache_bytes = images
        .iter()
        .filter(|i| cache_digests.contains(&i.digest))
        .filter_map(|i| i.size)
        .sum();
    let result = StatusResult {
        registry: r.target.registry.clone(),
        repository: r.target.repository.clone(),
        kind: kind_name(&r.target),
        tag_mutability: mutability,
        cache_bytes,
        other_tags: other,
        base_tags: base,
        store_entries: entries,
        untagged: reg.lists_untagged().then_some(untagged),
        cache_tags: rows,
    };
    ctx.out.result(&result, || status_text(&result));
    Ok(exit::OK)
}

fn status_text(s: &StatusResult) -> String {
    let mut out = String::new();
    if s.cache_tags.is_empty() {
        out.push_str(&format!("{}/{}: no cache tags\n", s.registry, s.repository));
    } else {
        out.push_str(&format!(
            "{:<32} {:<20} {:>10} {:<21} {:<21} {}\n",
            "TAG", "SCOPE", "SIZE", "PUSHED", "LAST PULLED", "DIGEST"
        ));
        for r in &s.cache_tags {
            out.push_str(&format!(
                "{:<32} {:<20} {:>10} {:<21} {:<21} {}\n",
                r.tag,
                r.scope.as_deref().unwrap_or("(default)"),
                fmt_size(r.size),
                fmt_time(r.pushed),
                fmt_time(r.last_pulled),
                short(&r.digest)
            ));
        }
    }
    let untagged = s
        .untagged
        .map(|n| n.to_string())
        .unwrap_or_else(|| "unknown".into());
    out.push_str(&format!(
        "{} cache tags, {}; other tags {}, base tags {}, store entries {}, untagged {}",
        s.cache_tags.len(),
        human_bytes(s.cache_bytes),
        s.other_tags,
        s.base_tags,
        s.store_entries,
        untagged
    ));
    out
}

// ---------------------------------------------------------------------------------- clear

#[derive(Serialize)]
struct Skipped {
    tag: String,
    digest: Option<String>,
    reason: String,
}

#[derive(Serialize)]
struct DeleteResult {
    registry: String,
    repository: String,
    dry_run: bool,
    /// What was (with --dry-run: would be) deleted.
    deleted: Vec<Deletion>,
    /// Requested but left alone, with the reason.
    skipped: Vec<Skipped>,
    /// Deletions the registry refused.
    failures: Vec<cicache_registry::DeleteFailure>,
}

/// Deletions for `clear`: the chosen tags of each manifest.
fn clear_plan(
    images: &[ImageRecord],
    wanted: &BTreeSet<String>,
    all_cache: bool,
    by_tag: bool,
) -> (Vec<Deletion>, Vec<Skipped>) {
    let mut deletions = Vec::new();
    let mut skipped = Vec::new();
    let now = SystemTime::now();
    for i in images {
        let chosen: Vec<String> = i
            .tags
            .iter()
            .filter(|t| i.class_of(t).is_cache() && (all_cache || wanted.contains(*t)))
            .cloned()
            .collect();
        if chosen.is_empty() {
            continue;
        }
        let all_go = chosen.len() == i.tags.len();
        if !by_tag && !all_go {
            let stays: Vec<&str> = i
                .tags
                .iter()
                .filter(|t| !chosen.contains(t))
                .map(String::as_str)
                .collect();
            for t in chosen {
                skipped.push(Skipped {
                    tag: t,
                    digest: Some(i.digest.clone()),
                    reason: format!(
                        "the registry deletes whole manifests, and this one also carries {}",
                        stays.join(", ")
                    ),
                });
            }
            continue;
        }
        deletions.push(Deletion {
            digest: i.digest.clone(),
            tags: chosen,
            manifest: all_go,
            age_seconds: i.age(now).map(|d| d.as_secs()),
            size: i.size,
        });
    }
    (deletions, skipped)
}

fn clear(a: ClearArgs, config: &RegistryConfig, ctx: &Context) -> Result<u8> {
    let r = resolve(&a.target, config, ctx)?;
    for t in &a.tags {
        if !tags::classify_tag(t).is_cache() {
            bail!(
                "--tag {t:?} is not a cache tag: `clear` deletes only `cache` and `cache-<scope>` tags"
            );
        }
    }
    let reg = connect(&r)?;
    let images = reg
        .images()
        .with_context(|| format!("listing {}", r.target.image()))?;
    let wanted: BTreeSet<String> = a.tags.iter().cloned().collect();
    let (deletions, mut skipped) =
        clear_plan(&images, &wanted, a.tags.is_empty(), reg.deletes_by_tag());
    let present: BTreeSet<&str> = images
        .iter()
        .flat_map(|i| i.tags.iter().map(String::as_str))
        .collect();
    for t in &wanted {
        if !present.contains(t.as_str()) {
            skipped.push(Skipped {
                tag: t.clone(),
                digest: None,
                reason: "no such tag".into(),
            });
        }
    }
    for s in &skipped {
        ctx.out
            .warn(format!("{}: not deleted: {}", s.tag, s.reason));
    }
    let failures = if a.dry_run {
        Vec::new()
    } else {
        reg.delete(&deletions)
            .with_context(|| format!("deleting cache tags of {}", r.target.image()))?
    };
    let result = DeleteResult {
        registry: r.target.registry.clone(),
        repository: r.target.repository.clone(),
        dry_run: a.dry_run,
        deleted: deletions,
        skipped,
        failures,
    };
    report_failures(&result.failures, ctx);
    ctx.out.result(&result, || {
        deletions_text(&result.deleted, a.dry_run, "cache tags")
    });
    Ok(if result.failures.is_empty() {
        exit::OK
    } else {
        exit::FAILURE
    })
}

fn report_failures(failures: &[cicache_registry::DeleteFailure], ctx: &Context) {
    for f in failures {
        ctx.out.warn(format!(
            "the registry refused to delete {} ({}): {} {}",
            f.tag.as_deref().unwrap_or(&f.digest),
            short(&f.digest),
            f.code,
            f.reason
        ));
    }
}

fn deletions_text(deletions: &[Deletion], dry_run: bool, what: &str) -> String {
    let verb = if dry_run { "would delete" } else { "deleted" };
    let mut lines = Vec::new();
    for d in deletions {
        let name = if d.tags.is_empty() {
            "(untagged)".to_string()
        } else {
            d.tags.join(", ")
        };
        lines.push(format!(
            "{verb} {name}  {}  {}  {}{}",
            short(&d.digest),
            fmt_age(d.age_seconds),
            fmt_size(d.size),
            if d.manifest { "" } else { "  (tag only)" }
        ));
    }
    let tags: usize = deletions.iter().map(|d| d.tags.len()).sum();
    let untagged = deletions.iter().filter(|d| d.tags.is_empty()).count();
    lines.push(format!(
        "{verb} {tags} {what}{}",
        if untagged > 0 {
            format!(" and {untagged} untagged manifests")
        } else {
            String::new()
        }
    ));
    lines.join("\n")
}

// ------------------------------------------------------------------------------------- gc

#[derive(Serialize)]
struct GcResult {
    registry: String,
    repository: String,
    dry_run: bool,
    max_age_seconds: u64,
    keep: Vec<String>,
    untagged: bool,
    /// `--keep-bases N`, when base tags are managed.
    keep_bases: Option<usize>,
    /// The base tags images of the repository name (`io.cicache.base`), with --keep-bases.
    bases_in_use: Vec<String>,
    /// What was (with --dry-run: would be) deleted: the plan.
    delete: Vec<Deletion>,
    /// Everything that stays, with the reason.
    kept: Vec<gc::Kept>,
    /// Bytes of the manifests deleted (layers shared with other images may stay).
    bytes: u64,
    failures: Vec<cicache_registry::DeleteFailure>,
}

fn gc_cmd(a: GcArgs, config: &RegistryConfig, ctx: &Context) -> Result<u8> {
    let r = resolve(&a.target, config, ctx)?;
    let max_age: Duration = match (a.max_age, &config.max_age) {
        (Some(d), _) => d.into(),
        (None, Some(s)) => humantime::parse_duration(s).with_context(|| {
            format!("registry.max_age in the config file: {s:?} is not a duration like 14d")
        })?,
        (None, None) => Duration::from_secs(14 * 86_400),
    };
    let keep: BTreeSet<String> = if a.keep.is_empty() {
        config.keep.iter().cloned().collect()
    } else {
        a.keep.iter().cloned().collect()
    };
    let reg = connect(&r)?;
    if a.untagged && !reg.lists_untagged() {
        ctx.out.warn(format!(
            "--untagged: the distribution API of {} cannot list untagged manifests; \
             run the registry's own garbage collection (`registry garbage-collect --delete-untagged`) on its host",
            r.target.registry
        ));
    }
    let images = reg
        .images()
        .with_context(|| format!("listing {}", r.target.image()))?;
    let mut keep_bases = a.keep_bases.or(config.keep_bases);
    let mut in_use = BTreeSet::new();
    if keep_bases.is_some() {
        match bases_in_use(&reg, &r, &images) {
            Ok(found) => in_use = found,
            Err(e) => {
                ctx.out.warn(format!(
                    "--keep-bases: cannot read which bases the images of {} name ({e:#}); \
                     no base tag is deleted this time",
                    r.target.image()
                ));
                keep_bases = None;
            }
        }
    }
    let policy = GcPolicy {
        now: SystemTime::now(),
        max_age,
        keep: keep.clone(),
        untagged: a.untagged,
        delete_by_tag: reg.deletes_by_tag(),
        keep_bases,
        bases_in_use: in_use.clone(),
    };
    let plan = gc::plan(&images, &policy);
    let failures = if a.dry_run {
        Vec::new()
    } else {
        reg.delete(&plan.delete)
            .with_context(|| format!("deleting old cache tags of {}", r.target.image()))?
    };
    report_failures(&failures, ctx);
    let result = GcResult {
        registry: r.target.registry.clone(),
        repository: r.target.repository.clone(),
        dry_run: a.dry_run,
        max_age_seconds: max_age.as_secs(),
        keep: keep.into_iter().collect(),
        untagged: a.untagged,
        keep_bases,
        bases_in_use: in_use.into_iter().collect(),
        bytes: plan.bytes(),
        delete: plan.delete,
        kept: plan.keep,
        failures,
    };
    let verbose = ctx.out.verbose > 0;
    ctx.out.result(&result, || {
        let mut text = deletions_text(&result.delete, result.dry_run, "cache tags");
        let mut counts = std::collections::BTreeMap::<KeepReason, usize>::new();
        for k in &result.kept {
            *counts.entry(k.reason).or_default() += 1;
            if verbose {
                text.push_str(&format!(
                    "\nkept {}  {}  ({})",
                    k.tag.as_deref().unwrap_or("(untagged)"),
                    short(&k.digest),
                    k.reason.describe()
                ));
            }
        }
        if !counts.is_empty() {
            let parts: Vec<String> = counts
                .iter()
                .map(|(r, n)| format!("{n} {}", r.describe()))
                .collect();
            text.push_str(&format!("\nkept: {}", parts.join("; ")));
        }
        text
    });
    Ok(if result.failures.is_empty() {
        exit::OK
    } else {
        exit::FAILURE
    })
}

/// The base tags of this repository that its other images (app images, cache tags) name in
/// their `io.cicache.base` label, read from each image config through the distribution API
/// (ECR too, with a GetAuthorizationToken login).
fn bases_in_use(reg: &Registry, r: &Resolved, images: &[ImageRecord]) -> Result<BTreeSet<String>> {
    let ecr_client;
    let client: &OciClient = match reg {
        Registry::Oci(c) => c,
        Registry::Ecr { client, .. } => {
            ecr_endpoint_guard(&r.target)?;
            let (_, creds) = client
                .docker_credentials()
                .context("an ECR login to read image configs")?;
            ecr_client = OciClient::new(
                &r.target,
                Some(creds),
                &OciOptions {
                    plain_http: r.opts.plain_http,
                    timeout: r.opts.timeout,
                },
            );
            &ecr_client
        }
    };
    // Every platform's image of an index (attestations left out): cicache-registry.
    Ok(client.base_tags_in_use(images)?)
}

/// Image configs of an ECR repository come from the registry host itself, which
/// `AWS_ENDPOINT_URL` does not redirect: refuse rather than reach the real host.
fn ecr_endpoint_guard(target: &Target) -> Result<()> {
    cicache_build::ecr_endpoint_guard(target).map_err(|e| anyhow::anyhow!(e))
}

// ------------------------------------------------------------------------------ lifecycle

#[derive(Serialize)]
struct LifecycleResult {
    registry: String,
    repository: String,
    applied: bool,
    policy: serde_json::Value,
}

fn lifecycle_cmd(a: LifecycleArgs, config: &RegistryConfig, ctx: &Context) -> Result<u8> {
    let r = resolve(&a.target, config, ctx)?;
    let spec = policy_spec(&a.policy, config)?;
    let policy = lifecycle::policy(spec);
    if a.apply {
        if !r.target.is_ecr() {
            bail!(
                "--apply: lifecycle policies are an ECR feature; for {} run `cicache registry gc` on a schedule instead",
                r.target.registry
            );
        }
        let ecr = EcrClient::connect(&r.target, r.opts.region.as_deref(), r.opts.timeout)?;
        apply_policy(&ecr, &r.target, spec)?;
        ctx.out
            .info(format!("lifecycle policy set on {}", r.target.image()));
    } else if !r.target.is_ecr() {
        ctx.out.warn(format!(
            "{} is not ECR: this policy is for ECR repositories; elsewhere run `cicache registry gc` on a schedule",
            r.target.registry
        ));
    }
    let result = LifecycleResult {
        registry: r.target.registry.clone(),
        repository: r.target.repository.clone(),
        applied: a.apply,
        policy,
    };
    ctx.out.result(&result, || {
        serde_json::to_string_pretty(&result.policy).unwrap_or_default()
    });
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(digest: &str, tags: &[&str]) -> ImageRecord {
        ImageRecord {
            digest: digest.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            size: Some(1),
            pushed: None,
            last_pulled: None,
            media_type: None,
            artifact_type: None,
            children: Vec::new(),
        }
    }

    #[test]
    fn clear_takes_cache_tags_only() {
        let images = vec![
            img("sha256:1", &["cache"]),
            img("sha256:2", &["cache-a", "v1"]),
            img("sha256:3", &["latest"]),
            img("sha256:4", &["cache-b"]),
        ];
        let (d, s) = clear_plan(&images, &BTreeSet::new(), true, true);
        let tags: Vec<_> = d.iter().flat_map(|d| d.tags.clone()).collect();
        assert_eq!(tags, vec!["cache", "cache-a", "cache-b"]);
        assert!(s.is_empty());
        assert!(!d[1].manifest, "v1 stays on sha256:2");
        // Whole-manifest registries leave a manifest that carries another tag.
        let (d, s) = clear_plan(&images, &BTreeSet::new(), true, false);
        let tags: Vec<_> = d.iter().flat_map(|d| d.tags.clone()).collect();
        assert_eq!(tags, vec!["cache", "cache-b"]);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].tag, "cache-a");
        // Only the named ones.
        let wanted: BTreeSet<String> = ["cache-b".to_string()].into();
        let (d, _) = clear_plan(&images, &wanted, false, false);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].tags, vec!["cache-b"]);
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(fmt_age(Some(3 * 86_400)), "3d");
        assert_eq!(fmt_age(Some(7200)), "2h");
        assert_eq!(fmt_age(Some(59)), "59s");
        assert_eq!(fmt_age(None), "age unknown");
    }
}
