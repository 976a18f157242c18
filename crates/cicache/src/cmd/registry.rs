//! `cicache registry ...`: the registry cache tags (`IMAGE:cache`, `IMAGE:cache-<scope>`).
//! The work is done by `cicache_registry::ops`; this module resolves the target from flags,
//! environment and cicache.yml, prints the result and picks the exit code.

use std::collections::BTreeSet;
use std::io::Read;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use cicache_registry::lifecycle::{self, LifecycleSpec};
use cicache_registry::ops::{self, Connection, EnsureRequest, GcRequest};
use cicache_registry::{ConnectOptions, Credentials, Secret, Target};
use serde::Deserialize;

use crate::cli::registry::{
    ClearArgs, GcArgs, LifecycleArgs, LoginArgs, PolicyArgs, RegistryArgs, RegistryCommand,
    TargetArgs,
};
use crate::output::exit;
use crate::settings::{Context, usage};

/// A library error as the binary's: a wrong request is a usage error (exit 2).
fn op(e: ops::OpError) -> anyhow::Error {
    match e {
        ops::OpError::Usage(m) => usage(m),
        e => e.into(),
    }
}

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
        Some(v) => serde_yaml::from_value(v.clone()).map_err(|e| {
            usage(format!(
                "the `registry:` section of the config file is not valid ({e}; keys: image, \
                 region, docker, max_age, keep, keep_bases, untagged_days, scope_days; see docs/REGISTRY.md)"
            ))
        }),
    }
}

pub fn registry(args: RegistryArgs, ctx: &Context) -> Result<u8> {
    let config = registry_config(ctx)?;
    let code = match args.command {
        RegistryCommand::Login(a) => login(a, &config, ctx)?,
        RegistryCommand::Ensure(a) => {
            let conn = resolve(&a.target, &config, ctx)?;
            let spec = policy_spec(&a.policy, &config)?;
            let req = EnsureRequest {
                cache_repo: a.cache_repo,
                lifecycle: a.lifecycle.then_some(spec),
            };
            let r = ops::ensure(&conn, req).map_err(op)?;
            r.notes.iter().for_each(|n| ctx.out.info(n));
            ctx.out.result(&r, || r.text());
            exit::OK
        }
        RegistryCommand::Status(a) => {
            let r = ops::status(&resolve(&a.target, &config, ctx)?).map_err(op)?;
            r.warnings.iter().for_each(|w| ctx.out.warn(w));
            ctx.out.result(&r, || r.text());
            exit::OK
        }
        RegistryCommand::Clear(a) => clear(a, &config, ctx)?,
        RegistryCommand::Gc(a) => gc(a, &config, ctx)?,
        RegistryCommand::Lifecycle(a) => lifecycle_cmd(a, &config, ctx)?,
    };
    Ok(code)
}

/// The repository (flag, else `registry.image`) and how to connect to it.
fn resolve(args: &TargetArgs, config: &RegistryConfig, ctx: &Context) -> Result<Connection> {
    let image = args
        .image
        .clone()
        .or_else(|| config.image.clone())
        .ok_or_else(|| {
            usage(
                "no image repository: pass --image REGISTRY/NAME (or set CICACHE_IMAGE, or registry.image in cicache.yml)",
            )
        })?;
    let target = Target::parse(&image).map_err(|e| usage(e.to_string()))?;
    let credentials = match (&args.username, args.password_stdin) {
        (Some(user), true) => Some(Credentials {
            username: user.clone(),
            password: read_password_stdin()?,
            source: "--password-stdin".into(),
        }),
        (None, true) => return Err(usage("--password-stdin needs --username")),
        (Some(_), false) => {
            return Err(usage(
                "--username needs --password-stdin: pipe the password in (passwords are never taken as arguments)",
            ));
        }
        (None, false) => None,
    };
    if credentials.is_some() && target.is_ecr() {
        ctx.out.warn(
            "--username/--password-stdin are ignored for ECR: cicache uses the AWS credential chain",
        );
    }
    Ok(Connection {
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

fn login(a: LoginArgs, config: &RegistryConfig, ctx: &Context) -> Result<u8> {
    let conn = resolve(&a.target, config, ctx)?;
    let docker = a
        .docker
        .clone()
        .or_else(|| config.docker.clone())
        .unwrap_or_else(|| "docker".into());
    let (server, creds) = ops::login_credentials(&conn).map_err(op)?;
    ctx.out.info(format!(
        "logging docker in to {server} as {} (password on stdin)",
        creds.username
    ));
    let r = ops::docker_login(&conn, &docker, &server, &creds).map_err(op)?;
    ctx.out.result(&r, || {
        format!("logged in to {} as {}", r.registry, r.username)
    });
    Ok(exit::OK)
}

/// The lifecycle policy's days: flag, else cicache.yml, else the defaults; checked.
fn policy_spec(p: &PolicyArgs, config: &RegistryConfig) -> Result<LifecycleSpec> {
    let d = LifecycleSpec::default();
    let spec = LifecycleSpec {
        untagged_days: p
            .untagged_days
            .or(config.untagged_days)
            .unwrap_or(d.untagged_days),
        scope_days: p.scope_days.or(config.scope_days).unwrap_or(d.scope_days),
    };
    lifecycle::validate(spec).map_err(usage)?;
    Ok(spec)
}

/// Exit 1 when the registry refused a deletion.
fn deletion_code(failures: &[cicache_registry::DeleteFailure]) -> u8 {
    if failures.is_empty() {
        exit::OK
    } else {
        exit::FAILURE
    }
}

fn clear(a: ClearArgs, config: &RegistryConfig, ctx: &Context) -> Result<u8> {
    let conn = resolve(&a.target, config, ctx)?;
    let r = ops::clear(&conn, &a.tags, a.dry_run).map_err(op)?;
    r.warnings().iter().for_each(|w| ctx.out.warn(w));
    ctx.out.result(&r, || r.text());
    Ok(deletion_code(&r.failures))
}

fn gc(a: GcArgs, config: &RegistryConfig, ctx: &Context) -> Result<u8> {
    let conn = resolve(&a.target, config, ctx)?;
    let max_age: Duration = match (a.max_age, &config.max_age) {
        (Some(d), _) => d.into(),
        (None, Some(s)) => humantime::parse_duration(s).map_err(|e| {
            usage(format!(
                "registry.max_age in the config file: {s:?} is not a duration like 14d ({e})"
            ))
        })?,
        (None, None) => Duration::from_secs(14 * 86_400),
    };
    let keep: BTreeSet<String> = if a.keep.is_empty() {
        config.keep.iter().cloned().collect()
    } else {
        a.keep.iter().cloned().collect()
    };
    let req = GcRequest {
        max_age,
        keep,
        untagged: a.untagged,
        keep_bases: a.keep_bases.or(config.keep_bases),
        dry_run: a.dry_run,
    };
    let r = ops::gc(&conn, req).map_err(op)?;
    r.warnings.iter().for_each(|w| ctx.out.warn(w));
    ctx.out.result(&r, || r.text(ctx.out.verbose > 0));
    Ok(deletion_code(&r.failures))
}

fn lifecycle_cmd(a: LifecycleArgs, config: &RegistryConfig, ctx: &Context) -> Result<u8> {
    let conn = resolve(&a.target, config, ctx)?;
    let spec = policy_spec(&a.policy, config)?;
    let r = ops::lifecycle(&conn, spec, a.apply).map_err(op)?;
    r.warnings.iter().for_each(|w| ctx.out.warn(w));
    r.notes.iter().for_each(|n| ctx.out.info(n));
    ctx.out.result(&r, || r.text());
    Ok(exit::OK)
}
