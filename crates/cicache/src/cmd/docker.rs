//! Docker commands: `mount inject|extract`, `build`, `docker prune`. (Owned by the BuildKit work, issue 4.)
//!
//! The work is in `cicache_docker`; this module turns flags into plans, runs the phases of
//! `build` in order with their timings, and decides which failures are warnings (cache
//! phases, unless `--strict`) and which fail the command (the Dockerfile build, the image push).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use serde_json::{Value, json};

use cicache_docker::base;
use cicache_docker::build::{BuildPlan, cache_refs};
use cicache_docker::dance::{self, DEFAULT_HELPER_IMAGE, DanceOptions, DanceResult};
use cicache_docker::dockerfile::{self, CacheMount, Dockerfile};
use cicache_docker::engine::{Docker, DockerError, Flavour};
use cicache_docker::prune::{self, PruneOptions};
use cicache_docker::skip;

use crate::cli::Context;
use crate::output::{exit, human_bytes, human_duration};

/// Which docker build to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum FlavourArg {
    /// buildx when the plugin answers `docker buildx version`, else classic.
    #[default]
    Auto,
    /// `docker buildx build` with the registry cache exporter.
    Buildx,
    /// `DOCKER_BUILDKIT=1 docker build` with inline cache and a pushed cache tag.
    Classic,
}

/// Options of the docker client and the cache dance, shared by `mount` and `build`.
#[derive(Debug, Clone, Args)]
pub struct DockerOpts {
    /// The docker client to run.
    #[arg(
        long,
        env = "CICACHE_DOCKER",
        default_value = "docker",
        value_name = "PROGRAM"
    )]
    pub docker: PathBuf,
    /// Build flavour.
    #[arg(long, env = "CICACHE_DOCKER_FLAVOUR", value_enum, default_value_t = FlavourArg::Auto)]
    pub flavour: FlavourArg,
    /// Image the cache-dance helper builds start FROM: any image with sh, cp, find, stat,
    /// chown (busybox). Where nothing can be pulled, build one (examples/python-app/make-base-images.sh).
    /// [default: build.helper_image of cicache.yml, else busybox:1.36]
    #[arg(long, env = "CICACHE_HELPER_IMAGE", value_name = "IMAGE")]
    pub helper_image: Option<String>,
    /// Only the cache mounts with this id (default: every `RUN --mount=type=cache` of the
    /// Dockerfile); repeatable.
    #[arg(
        long = "mount-id",
        env = "CICACHE_MOUNT_IDS",
        value_delimiter = ',',
        value_name = "ID"
    )]
    pub mount_ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct MountArgs {
    #[command(subcommand)]
    pub command: MountCommand,
}

#[derive(Debug, Subcommand)]
pub enum MountCommand {
    /// Copy DIR into the Dockerfile's cache mounts (merged with what they hold).
    ///
    /// With one cache mount DIR is its content; with several, DIR/<name> per mount (the id
    /// with `/` and other unsafe characters as `_`, e.g. root_.cache_pip).
    Inject(InjectArgs),
    /// Copy the Dockerfile's cache mounts into DIR, replacing it once the copy is complete.
    ///
    /// DIR is left alone when every mount is empty (a daemon that never ran the build).
    /// When DIR already holds files, only the files that differ from them (size, mtime, path)
    /// leave the builder; the result is the same (JSON `method`: `changed` or `full`).
    Extract(ExtractArgs),
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// The Dockerfile whose `RUN --mount=type=cache` mounts are filled.
    #[arg(
        short = 'f',
        long,
        env = "CICACHE_DOCKERFILE",
        default_value = "Dockerfile",
        value_name = "FILE"
    )]
    pub dockerfile: PathBuf,
    /// The directory to copy in.
    #[arg(long = "from", env = "CICACHE_CACHE_DIR", value_name = "DIR")]
    pub from: PathBuf,
    #[command(flatten)]
    pub docker: DockerOpts,
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// The Dockerfile whose `RUN --mount=type=cache` mounts are copied out.
    #[arg(
        short = 'f',
        long,
        env = "CICACHE_DOCKERFILE",
        default_value = "Dockerfile",
        value_name = "FILE"
    )]
    pub dockerfile: PathBuf,
    /// The directory to write (replaced as a whole).
    #[arg(long = "to", env = "CICACHE_CACHE_DIR", value_name = "DIR")]
    pub to: PathBuf,
    #[command(flatten)]
    pub docker: DockerOpts,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Phases, in order: check (unchanged inputs: tag instead of building), restore, \
        inject (with a prefetch beside them when the cache tag has the first cache-mount steps: a pull of it, or a build of the lines up to the first one), build, \
        push, cache export, extract (only what changed, when the cache dir holds files), save, \
        report. See docs/BUILD.md. A failing cache phase is a warning unless --strict; a failing Dockerfile step fails with \
        docker's exit code. Arguments after `--` go to the docker build unchanged, e.g. \
        `cicache build --image r/app . -- --secret id=x,src=x --network host`."
)]
pub struct BuildArgs {
    // Boxed: the options are many, and the Command enum holds one of each command's args.
    #[command(flatten)]
    pub options: Box<BuildOptions>,
}

/// The options of `cicache build`.
#[derive(Debug, Clone, Args)]
pub struct BuildOptions {
    /// Image repository to build (`registry:5000/team/app`), without tag.
    /// [default: build.image of cicache.yml; one of them is required]
    #[arg(long, env = "CICACHE_IMAGE", value_name = "REPO")]
    pub image: Option<String>,
    /// Tag to build (and push with --push); repeatable. [default: latest]
    #[arg(
        long = "tag",
        env = "CICACHE_TAGS",
        value_delimiter = ',',
        value_name = "TAG"
    )]
    pub tags: Vec<String>,
    /// The Dockerfile. [default: CONTEXT/Dockerfile]
    #[arg(
        short = 'f',
        long = "file",
        env = "CICACHE_DOCKERFILE",
        value_name = "FILE"
    )]
    pub dockerfile: Option<PathBuf>,
    /// A build argument KEY=VALUE; repeatable.
    #[arg(
        long = "build-arg",
        env = "CICACHE_BUILD_ARGS",
        value_name = "KEY=VALUE"
    )]
    pub build_args: Vec<String>,
    /// Build this stage.
    #[arg(long, env = "CICACHE_TARGET", value_name = "STAGE")]
    pub target: Option<String>,
    /// The build context.
    #[arg(default_value = ".", value_name = "CONTEXT")]
    pub context: PathBuf,
    /// The workspace copy of the cache mounts (restored, injected, extracted, saved).
    /// [default: build.cache_dir of cicache.yml, else .pip-cache]
    #[arg(long = "cache-dir", env = "CICACHE_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Store key (template) of the cache dir.
    /// [default: cache.key of cicache.yml, else pip-{{ os }}-{{ arch }}-{{ hashFiles "**/requirements*.txt" }}]
    #[arg(long, env = "CICACHE_KEY", value_name = "TEMPLATE")]
    pub key: Option<String>,
    /// Key prefix tried when the key misses; repeatable. [default: cache.restore_keys of
    /// cicache.yml, else pip-{{ os }}-{{ arch }}-]
    #[arg(
        long = "restore-key",
        env = "CICACHE_RESTORE_KEYS",
        value_delimiter = ',',
        value_name = "PREFIX"
    )]
    pub restore_keys: Vec<String>,
    /// Use and export the registry layer cache (IMAGE:cache-<scope>, IMAGE:cache).
    /// [default: on when REPO names a registry host]
    #[arg(
        long,
        env = "CICACHE_REGISTRY_CACHE",
        overrides_with = "no_registry_cache"
    )]
    pub registry_cache: bool,
    /// Do not use or export the registry layer cache.
    #[arg(long, env = "CICACHE_NO_REGISTRY_CACHE")]
    pub no_registry_cache: bool,
    /// Push the image tags.
    #[arg(long, env = "CICACHE_PUSH")]
    pub push: bool,
    /// Skip restoring the cache dir from the store.
    #[arg(long, env = "CICACHE_NO_RESTORE")]
    pub no_restore: bool,
    /// Skip injecting the cache dir into the cache mounts.
    #[arg(long, env = "CICACHE_NO_INJECT")]
    pub no_inject: bool,
    /// Skip the prefetch: when the cache tag has the first cache-mount steps, `docker pull` of
    /// it (or a build of the lines up to the first one, when only that one is unchanged)
    /// while the cache dir is restored and injected (without it the build pulls their layers
    /// itself, after the inject, and with docker 20.10 the cache tag it pushes loses steps).
    #[arg(long, env = "CICACHE_NO_PREFETCH")]
    pub no_prefetch: bool,
    /// Skip extracting the cache mounts into the cache dir.
    #[arg(long, env = "CICACHE_NO_EXTRACT")]
    pub no_extract: bool,
    /// Skip saving the cache dir to the store.
    #[arg(long, env = "CICACHE_NO_SAVE")]
    pub no_save: bool,
    /// Skip the report at the end.
    #[arg(long, env = "CICACHE_NO_REPORT")]
    pub no_report: bool,
    /// Build even when nothing the image is made from changed. Without it, a `--push` build
    /// whose inputs (the Dockerfile, the files it copies, the build args, the FROM images,
    /// target, labels, the args after `--`; label io.cicache.inputs) equal those of the
    /// registry's cache tag tags that image instead of building it (classic flavour).
    #[arg(long, env = "CICACHE_REBUILD")]
    pub rebuild: bool,
    /// Print the docker commands the build would run (and the cache mounts it would move);
    /// run nothing.
    #[arg(long, env = "CICACHE_BUILD_DRY_RUN")]
    pub dry_run: bool,
    /// Also write the build's output to FILE (what `cicache report` reads).
    #[arg(long, env = "CICACHE_BUILD_LOG", value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Build on a base image made from this Dockerfile (relative to the current directory;
    /// its context is CONTEXT): `cicache base` runs first (reusing REPO:base-<hash> when the
    /// registry has it) and the build gets --build-arg BASE_IMAGE=REPO:base-<hash>.
    /// [default: build.base_dockerfile of cicache.yml]
    #[arg(long, env = "CICACHE_BASE_DOCKERFILE", value_name = "FILE")]
    pub base_dockerfile: Option<PathBuf>,
    /// A glob (relative to CONTEXT) of the files the base image is made from; repeatable.
    /// [default: build.base_inputs of cicache.yml, else the base Dockerfile's COPY/ADD sources]
    #[arg(
        long = "base-input",
        env = "CICACHE_BASE_INPUTS",
        value_delimiter = ',',
        value_name = "GLOB"
    )]
    pub base_inputs: Vec<String>,
    /// A build argument KEY=VALUE of the base image (part of its hash); repeatable.
    #[arg(
        long = "base-build-arg",
        env = "CICACHE_BASE_BUILD_ARGS",
        value_name = "KEY=VALUE"
    )]
    pub base_build_args: Vec<String>,
    /// The base image's platform (part of its hash), e.g. linux/amd64. [default: the docker
    /// daemon's]
    #[arg(long, env = "CICACHE_BASE_PLATFORM", value_name = "OS/ARCH")]
    pub base_platform: Option<String>,
    /// The build argument that receives the base image's reference.
    #[arg(
        long,
        env = "CICACHE_BASE_ARG",
        default_value = "BASE_IMAGE",
        value_name = "NAME"
    )]
    pub base_arg: String,
    #[command(flatten)]
    pub docker: DockerOpts,
    /// Arguments passed to the docker build unchanged (after `--`).
    #[arg(last = true, value_name = "DOCKER_BUILD_ARGS")]
    pub extra: Vec<String>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "The tag's hash covers the base Dockerfile's bytes, the files named by --input \
        (default: the sources of its COPY/ADD lines) by path and content, the --build-args and \
        the platform; not mtimes, not where the checkout lies, not the arguments after `--`. \
        The base build runs the whole `cicache build` machinery (restore, inject, registry \
        cache from the previous base, push, extract, save). When the registry cannot be \
        asked, the base already in the local daemon (this hash's, else the last one this \
        agent used) is taken with a warning; with neither the command fails and says what to do."
)]
pub struct BaseArgs {
    /// Image repository of the base (`registry:5000/team/app`), without tag: the base is
    /// REPO:base-<hash>. [default: build.image of cicache.yml]
    #[arg(long, env = "CICACHE_IMAGE", value_name = "REPO")]
    pub image: Option<String>,
    /// The base Dockerfile. [default: build.base_dockerfile of cicache.yml, else
    /// CONTEXT/Dockerfile.base]
    #[arg(
        short = 'f',
        long = "file",
        env = "CICACHE_BASE_DOCKERFILE",
        value_name = "FILE"
    )]
    pub dockerfile: Option<PathBuf>,
    /// A glob (relative to CONTEXT) of the files the base is made from; repeatable.
    /// [default: build.base_inputs of cicache.yml, else the base Dockerfile's COPY/ADD sources]
    #[arg(
        long = "input",
        env = "CICACHE_BASE_INPUTS",
        value_delimiter = ',',
        value_name = "GLOB"
    )]
    pub inputs: Vec<String>,
    /// A build argument KEY=VALUE (part of the hash); repeatable.
    #[arg(
        long = "build-arg",
        env = "CICACHE_BASE_BUILD_ARGS",
        value_name = "KEY=VALUE"
    )]
    pub build_args: Vec<String>,
    /// The platform (part of the hash), e.g. linux/amd64. [default: the docker daemon's]
    #[arg(long, env = "CICACHE_BASE_PLATFORM", value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// The build context.
    #[arg(default_value = ".", value_name = "CONTEXT")]
    pub context: PathBuf,
    /// The workspace copy of the cache mounts. [default: build.cache_dir of cicache.yml,
    /// else .pip-cache]
    #[arg(long = "cache-dir", env = "CICACHE_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Store key (template) of the cache dir. [default: as for `cicache build`]
    #[arg(long, env = "CICACHE_KEY", value_name = "TEMPLATE")]
    pub key: Option<String>,
    /// Key prefix tried when the key misses; repeatable. [default: as for `cicache build`]
    #[arg(
        long = "restore-key",
        env = "CICACHE_RESTORE_KEYS",
        value_delimiter = ',',
        value_name = "PREFIX"
    )]
    pub restore_keys: Vec<String>,
    /// Do not read the previous base as layer cache.
    #[arg(long, env = "CICACHE_NO_REGISTRY_CACHE")]
    pub no_registry_cache: bool,
    /// Skip restoring the cache dir from the store.
    #[arg(long, env = "CICACHE_NO_RESTORE")]
    pub no_restore: bool,
    /// Skip injecting the cache dir into the cache mounts.
    #[arg(long, env = "CICACHE_NO_INJECT")]
    pub no_inject: bool,
    /// Skip extracting the cache mounts into the cache dir.
    #[arg(long, env = "CICACHE_NO_EXTRACT")]
    pub no_extract: bool,
    /// Skip saving the cache dir to the store.
    #[arg(long, env = "CICACHE_NO_SAVE")]
    pub no_save: bool,
    /// Compute the tag and ask the registry; build nothing.
    #[arg(long, env = "CICACHE_BASE_DRY_RUN")]
    pub dry_run: bool,
    /// Also write the base build's output to FILE.
    #[arg(long, env = "CICACHE_BASE_LOG", value_name = "FILE")]
    pub log: Option<PathBuf>,
    #[command(flatten)]
    pub docker: DockerOpts,
    /// Arguments passed to the docker build unchanged (after `--`); not part of the hash.
    #[arg(last = true, value_name = "DOCKER_BUILD_ARGS")]
    pub extra: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DockerArgs {
    #[command(subcommand)]
    pub command: DockerCommand,
}

#[derive(Debug, Subcommand)]
pub enum DockerCommand {
    /// Prune the BuildKit builder cache (`docker builder prune`) and report what was freed.
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Keep this much build cache, e.g. 20GB.
    #[arg(long, env = "CICACHE_DOCKER_KEEP_STORAGE", value_name = "SIZE")]
    pub keep_storage: Option<String>,
    /// Only records unused for this long, e.g. 72h.
    #[arg(long, env = "CICACHE_DOCKER_PRUNE_UNTIL", value_name = "DURATION")]
    pub until: Option<humantime::Duration>,
    /// Only cache mounts (`RUN --mount=type=cache` contents).
    #[arg(long, env = "CICACHE_DOCKER_PRUNE_CACHE_MOUNTS")]
    pub cache_mounts: bool,
    /// Only dangling records (docker's default); without it every unused record may go.
    #[arg(long, env = "CICACHE_DOCKER_PRUNE_DANGLING_ONLY")]
    pub dangling_only: bool,
    /// Say what would be freed; remove nothing.
    #[arg(long, env = "CICACHE_DRY_RUN")]
    pub dry_run: bool,
    /// The docker client to run.
    #[arg(
        long,
        env = "CICACHE_DOCKER",
        default_value = "docker",
        value_name = "PROGRAM"
    )]
    pub docker: PathBuf,
}

// ---------------------------------------------------------------------------------------

fn flavour(docker: &Docker, arg: FlavourArg) -> Flavour {
    match arg {
        FlavourArg::Buildx => Flavour::Buildx,
        FlavourArg::Classic => Flavour::Classic,
        FlavourArg::Auto => docker.detect_flavour(),
    }
}

/// The cache mounts the dance works on: the Dockerfile's (one per cache), filtered by
/// `--mount-id`.
fn select_mounts<'a>(
    df: &'a Dockerfile,
    ids: &[String],
    path: &Path,
) -> Result<Vec<&'a CacheMount>> {
    let all = df.unique_cache_mounts();
    if ids.is_empty() {
        return Ok(all);
    }
    let mut out = Vec::new();
    for id in ids {
        let found: Vec<&CacheMount> = all.iter().copied().filter(|m| &m.id == id).collect();
        if found.is_empty() {
            let known: Vec<&str> = all.iter().map(|m| m.id.as_str()).collect();
            bail!(
                "--mount-id {id}: {} has no cache mount with that id (it has: {})",
                path.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            );
        }
        out.extend(found);
    }
    Ok(out)
}

fn echo_fn(ctx: &Context) -> impl Fn(&str) + Sync + use<> {
    let quiet = ctx.out.quiet;
    move |line: &str| {
        if !quiet {
            eprintln!("{line}");
        }
    }
}

fn describe_dance(r: &DanceResult, verb: &str) -> Vec<String> {
    let mut lines: Vec<String> = r
        .mounts
        .iter()
        .map(|m| match &m.skipped {
            Some(why) => format!("{verb} {}: skipped, {why}", m.id),
            None => {
                let target = if m.target == m.id {
                    String::new()
                } else {
                    format!(" ({})", m.target)
                };
                let mut s = format!(
                    "{verb} {}{target}: {} files, {}",
                    m.id,
                    m.files,
                    human_bytes(m.bytes)
                );
                if let Some(f) = m.mount_files {
                    s.push_str(&format!("; the mount now holds {f} files"));
                }
                if r.method == Some("changed") {
                    s.push_str(&format!(
                        " ({} new or changed, {} copied out of the builder{})",
                        m.copied_files.unwrap_or(0),
                        human_bytes(m.copied_bytes.unwrap_or(0)),
                        match m.removed_files {
                            Some(n) if n > 0 => format!(", {n} removed"),
                            _ => String::new(),
                        }
                    ));
                }
                s
            }
        })
        .collect();
    if r.merged {
        lines.push(
            "merged: the cache mounts were not filled by an inject, so the files of the cache \
             dir they lack were kept"
                .to_string(),
        );
    }
    if let Some(why) = &r.fallback {
        lines.push(format!(
            "the changed-only extract failed, so everything was copied out: {why}"
        ));
    }
    lines
}

pub fn mount(args: MountArgs, ctx: &Context) -> Result<u8> {
    let (dockerfile_path, opts, dir, inject) = match &args.command {
        MountCommand::Inject(a) => (&a.dockerfile, &a.docker, &a.from, true),
        MountCommand::Extract(a) => (&a.dockerfile, &a.docker, &a.to, false),
    };
    let df = dockerfile::parse_file(dockerfile_path).map_err(|e| anyhow!(e))?;
    let mounts = select_mounts(&df, &opts.mount_ids, dockerfile_path)?;
    if mounts.is_empty() {
        ctx.out.warn(format!(
            "{} has no RUN --mount=type=cache: nothing to {}",
            dockerfile_path.display(),
            if inject { "inject" } else { "extract" }
        ));
    }
    let docker = Docker::new(&opts.docker);
    let fl = flavour(&docker, opts.flavour);
    let dopts = DanceOptions {
        flavour: fl,
        helper_image: opts
            .helper_image
            .clone()
            .or(build_config(ctx)?.helper_image)
            .unwrap_or_else(|| DEFAULT_HELPER_IMAGE.to_string()),
        extra_args: Vec::new(),
        log: None,
    };
    let echo = echo_fn(ctx);
    let verbose_echo = if ctx.out.verbose > 0 {
        Some(&echo as &(dyn Fn(&str) + Sync))
    } else {
        None
    };
    let result = if mounts.is_empty() {
        DanceResult {
            mounts: vec![],
            seconds: 0.0,
            ran: false,
            method: None,
            fallback: None,
            merged: false,
        }
    } else if inject {
        dance::inject(&docker, &mounts, dir, &dopts, verbose_echo)
            .with_context(|| format!("injecting {} into the cache mounts", dir.display()))?
    } else {
        dance::extract(&docker, &mounts, dir, &dopts, false, verbose_echo)
            .with_context(|| format!("extracting the cache mounts into {}", dir.display()))?
    };
    let verb = if inject { "injected" } else { "extracted" };
    let lines = describe_dance(&result, verb);
    let doc = json!({
        "ok": true,
        "action": if inject { "inject" } else { "extract" },
        "dir": dir,
        "dockerfile": dockerfile_path,
        "flavour": fl,
        "ran": result.ran,
        "seconds": result.seconds,
        "mounts": result.mounts,
        "method": result.method,
        "fallback": result.fallback,
        "merged": result.merged,
    });
    ctx.out.result(&doc, || {
        let mut t = lines.join("\n");
        t.push_str(&format!(
            "\n{} in {}",
            if inject { "inject" } else { "extract" },
            human_duration(std::time::Duration::from_secs_f64(result.seconds))
        ));
        t
    });
    Ok(exit::OK)
}

// ---------------------------------------------------------------------------------------
// build

/// One phase of `build` as reported.
#[derive(Debug, Clone, Serialize)]
struct Phase {
    name: &'static str,
    /// ok, skipped, warning, failed
    status: &'static str,
    seconds: f64,
    message: Option<String>,
    #[serde(skip_serializing_if = "Value::is_null")]
    detail: Value,
}

struct Phases<'a> {
    ctx: &'a Context,
    list: Vec<Phase>,
    warnings: Vec<String>,
    /// Put before each log line (`base ` for the base image's build).
    prefix: &'static str,
}

impl Phases<'_> {
    fn skipped(&mut self, name: &'static str, why: impl Into<String>) {
        let why = why.into();
        self.ctx
            .out
            .info(format!("{}{name}: skipped ({why})", self.prefix));
        self.list.push(Phase {
            name,
            status: "skipped",
            seconds: 0.0,
            message: Some(why),
            detail: Value::Null,
        });
    }
    fn ok(
        &mut self,
        name: &'static str,
        started: Instant,
        message: impl Into<String>,
        detail: Value,
    ) {
        let secs = started.elapsed().as_secs_f64();
        let message = message.into();
        self.ctx.out.info(format!(
            "{}{name}: {message} ({})",
            self.prefix,
            human_duration(started.elapsed())
        ));
        self.list.push(Phase {
            name,
            status: "ok",
            seconds: secs,
            message: Some(message),
            detail,
        });
    }
    /// A store phase's result: ok, or a warning when the store reported cache problems
    /// (it has printed them already; with --strict it returned an error instead).
    fn store_result(&mut self, name: &'static str, started: Instant, message: String, v: Value) {
        let problems: Vec<String> = v["warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if problems.is_empty() && v["status"] != "failed" {
            return self.ok(name, started, message, v);
        }
        let msg = format!("{}{name}: {}", self.prefix, problems.join("; "));
        self.warnings.push(msg.clone());
        self.list.push(Phase {
            name,
            status: "warning",
            seconds: started.elapsed().as_secs_f64(),
            message: Some(msg),
            detail: v,
        });
    }

    /// A cache phase failed: a warning, or with --strict an error.
    fn cache_failed(
        &mut self,
        name: &'static str,
        started: Instant,
        err: anyhow::Error,
    ) -> Result<()> {
        let msg = format!("{}{name} failed: {err:#}", self.prefix);
        let secs = started.elapsed().as_secs_f64();
        if self.ctx.strict() {
            self.list.push(Phase {
                name,
                status: "failed",
                seconds: secs,
                message: Some(msg.clone()),
                detail: Value::Null,
            });
            return Err(err.context(format!(
                "{name} failed (--strict makes cache phases fail the build)"
            )));
        }
        self.ctx.out.warn(format!(
            "{msg} (the build goes on without it; --strict makes this an error)"
        ));
        self.warnings.push(msg.clone());
        self.list.push(Phase {
            name,
            status: "warning",
            seconds: secs,
            message: Some(msg),
            detail: Value::Null,
        });
        Ok(())
    }
}

/// Whether the repository names a registry host (`host.tld/…`, `host:port/…`, `localhost/…`).
fn has_registry_host(image: &str) -> bool {
    match image.split_once('/') {
        Some((first, _)) => first.contains('.') || first.contains(':') || first == "localhost",
        None => false,
    }
}

/// The `build:` section of cicache.yml: defaults for flags not given.
///
/// ```yaml
/// build:
///   image: registry.example.com/team/app
///   tags: [latest]
///   dockerfile: Dockerfile
///   cache_dir: .pip-cache
///   build_args: [BASE_IMAGE=python:3.12-slim]
///   registry_cache: true
///   push: false
///   helper_image: busybox:1.36
///   base_dockerfile: Dockerfile.base
///   base_inputs: [requirements*.txt]
/// ```
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct BuildConfig {
    image: Option<String>,
    tags: Vec<String>,
    dockerfile: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    build_args: Vec<String>,
    registry_cache: Option<bool>,
    push: Option<bool>,
    helper_image: Option<String>,
    base_dockerfile: Option<PathBuf>,
    base_inputs: Vec<String>,
}

fn build_config(ctx: &Context) -> Result<BuildConfig> {
    match &ctx.config.build {
        None => Ok(BuildConfig::default()),
        Some(v) => serde_yaml::from_value(v.clone()).context(
            "the build: section of cicache.yml is not valid (keys: image, tags, dockerfile, \
             cache_dir, build_args, registry_cache, push, helper_image, base_dockerfile, \
             base_inputs; see docs/BUILD.md)",
        ),
    }
}

const DEFAULT_KEY: &str = r#"pip-{{ os }}-{{ arch }}-{{ hashFiles "**/requirements*.txt" }}"#;
const DEFAULT_RESTORE_KEY: &str = "pip-{{ os }}-{{ arch }}-";

/// The store phases call the store commands' library functions (crates/cicache/src/cmd/store.rs).
fn store_restore(ctx: &Context, key: &str, restore_keys: &[String], path: &Path) -> Result<Value> {
    // Restore keys may be templates too (the default is `pip-{{ os }}-{{ arch }}-`).
    let rendered = restore_keys
        .iter()
        .map(|k| {
            super::store::render_key(k).with_context(|| format!("rendering the restore key {k:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    super::store::restore_cache(ctx, key, &rendered, path)
}

fn store_save(ctx: &Context, key: &str, path: &Path) -> Result<Value> {
    super::store::save_cache(ctx, key, path, true)
}

/// Fills the options not given from the `build:` section of cicache.yml.
fn apply_build_config(args: &mut BuildOptions, cfg: &BuildConfig) -> Result<()> {
    let image = args.image.clone().or(cfg.image.clone()).ok_or_else(|| {
        anyhow!(
            "cicache build needs --image REPO (or CICACHE_IMAGE, or build.image in cicache.yml)"
        )
    })?;
    args.image = Some(image);
    let cache_dir = args
        .cache_dir
        .clone()
        .or(cfg.cache_dir.clone())
        .unwrap_or_else(|| PathBuf::from(".pip-cache"));
    args.cache_dir = Some(cache_dir);
    if args.dockerfile.is_none() {
        args.dockerfile = cfg.dockerfile.clone();
    }
    if args.tags.is_empty() {
        args.tags = cfg.tags.clone();
    }
    // Config build args first: a --build-arg of the same name comes later and wins.
    let mut build_args = cfg.build_args.clone();
    build_args.append(&mut args.build_args);
    args.build_args = build_args;
    args.push = args.push || cfg.push.unwrap_or(false);
    if args.base_dockerfile.is_none() {
        args.base_dockerfile = cfg.base_dockerfile.clone();
    }
    if args.base_inputs.is_empty() {
        args.base_inputs = cfg.base_inputs.clone();
    }
    Ok(())
}

pub fn build(args: BuildArgs, ctx: &Context) -> Result<u8> {
    let mut args = *args.options;
    let cfg = build_config(ctx)?;
    apply_build_config(&mut args, &cfg)?;
    let mut hooks = BuildHooks::default();
    if args.base_dockerfile.is_some() {
        let base = ensure_base_for_build(&mut args, ctx, &mut hooks)?;
        if base.code != exit::OK {
            ctx.out.result(
                &json!({
                    "ok": false,
                    "exit_code": base.code,
                    "image": args.image,
                    "base": base.doc,
                    "phases": [],
                    "warnings": base.warnings,
                }),
                || base.text.clone(),
            );
            return Ok(base.code);
        }
    }
    let outcome = run_build(args, ctx, &hooks)?;
    ctx.out.result(&outcome.doc, || outcome.text.clone());
    Ok(outcome.code)
}

/// What a build nested in another command (the base image's) does differently.
#[derive(Debug, Default)]
struct BuildHooks {
    /// Put before each phase's log line.
    prefix: &'static str,
    /// `KEY=VALUE` labels for the image.
    labels: Vec<String>,
    /// The cache refs to read instead of the scope cache tags; the image carries its own
    /// inline cache (a base image: its predecessor).
    own_cache: Option<Vec<String>>,
    /// The restore phase is done already (by the base build): why.
    restored_by: Option<&'static str>,
    /// The save phase comes later (in the app build): why.
    saved_by: Option<&'static str>,
    /// The base image's result, for the report.
    base: Value,
    /// Warnings of the base step, for the report.
    warnings: Vec<String>,
}

/// A build's result: its exit code, its JSON document and its text.
struct BuildOutcome {
    code: u8,
    doc: Value,
    text: String,
}

fn run_build(mut args: BuildOptions, ctx: &Context, hooks: &BuildHooks) -> Result<BuildOutcome> {
    let cfg = build_config(ctx)?;
    let image = args
        .image
        .clone()
        .ok_or_else(|| anyhow!("cicache build needs --image REPO"))?;
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(".pip-cache"));
    args.cache_dir = Some(cache_dir.clone());
    let total = Instant::now();
    if let Some(log) = &args.log {
        // One log per build: the helper builds and the build append to it.
        std::fs::File::create(log)
            .with_context(|| format!("cannot write the build log {}", log.display()))?;
    }
    let mut ph = Phases {
        ctx,
        list: Vec::new(),
        warnings: hooks.warnings.clone(),
        prefix: hooks.prefix,
    };
    let docker = Docker::new(&args.docker.docker);
    let fl = flavour(&docker, args.docker.flavour);
    ctx.out.info(format!("docker: {}", fl.describe()));

    let dockerfile_path = args
        .dockerfile
        .clone()
        .unwrap_or_else(|| args.context.join("Dockerfile"));
    if !dockerfile_path.is_file() {
        bail!(
            "the Dockerfile {} does not exist (pass -f FILE)",
            dockerfile_path.display()
        );
    }
    let tags = if args.tags.is_empty() {
        vec!["latest".to_string()]
    } else {
        args.tags.clone()
    };
    let registry_cache = if args.no_registry_cache {
        false
    } else if args.registry_cache {
        true
    } else if let Some(on) = cfg.registry_cache {
        on
    } else {
        let on = has_registry_host(&image);
        if !on {
            ctx.out.info(format!(
                "registry cache: off ({} names no registry host; pass --registry-cache to force it)",
                image
            ));
        }
        on
    };
    // The default branch writes IMAGE:cache; other scopes IMAGE:cache-<scope> (see build.rs).
    let scope = ctx.scope();
    let own_scope = if ctx.fallback_scopes().is_empty() {
        None
    } else {
        Some(scope.as_str())
    };
    let (cache_from, cache_to) = match &hooks.own_cache {
        Some(refs) => (refs.clone(), None),
        None => {
            let (from, to) = cache_refs(&image, own_scope);
            (from, Some(to))
        }
    };

    // The Dockerfile's cache mounts (a parse failure only costs the dance).
    let parsed = dockerfile::parse_file(&dockerfile_path);
    let df = match parsed {
        Ok(df) => Some(df),
        Err(e) => {
            let t = Instant::now();
            ph.cache_failed(
                "parse",
                t,
                anyhow!(e).context("reading the Dockerfile's cache mounts"),
            )?;
            None
        }
    };
    let mounts: Vec<CacheMount> = match &df {
        Some(df) => select_mounts(df, &args.docker.mount_ids, &dockerfile_path)?
            .into_iter()
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    let mount_refs: Vec<&CacheMount> = mounts.iter().collect();
    let dopts = DanceOptions {
        flavour: fl,
        helper_image: args
            .docker
            .helper_image
            .clone()
            .or(cfg.helper_image.clone())
            .unwrap_or_else(|| DEFAULT_HELPER_IMAGE.to_string()),
        extra_args: Vec::new(),
        // --log holds the user's build only, so `cicache report LOG` (and the Jenkins step's
        // Markdown report made from it) counts no helper steps; the dance shows with -v.
        log: None,
    };
    let echo = echo_fn(ctx);
    let dance_echo = if ctx.out.verbose > 0 {
        Some(&echo as &(dyn Fn(&str) + Sync))
    } else {
        None
    };

    let key = args
        .key
        .clone()
        .or_else(|| ctx.config.cache.key.clone())
        .unwrap_or_else(|| DEFAULT_KEY.to_string());
    let restore_keys = if !args.restore_keys.is_empty() {
        args.restore_keys.clone()
    } else if !ctx.config.cache.restore_keys.is_empty() {
        ctx.config.cache.restore_keys.clone()
    } else {
        vec![DEFAULT_RESTORE_KEY.to_string()]
    };

    // What the image is made from, hashed (label io.cicache.inputs): an unchanged --push
    // build tags the image the cache tag already is instead of building it.
    let mut labels = hooks.labels.clone();
    let mut mount_inputs: Option<String> = None;
    // (last line, hash) of the steps up to each RUN with a cache mount in the image.
    let mut mount_steps: Vec<(usize, String)> = Vec::new();
    // The platform the hashes cover (`docker version` runs once, only when hashing).
    let mut platform: Option<String> = None;
    let check_started = Instant::now();
    let inputs: Result<String, String> = if args.dry_run {
        Err("--dry-run".into())
    } else if !registry_cache {
        Err("registry cache off".into())
    } else if fl != Flavour::Classic {
        Err("buildx: the cache tag is a cache manifest, not the image".into())
    } else if hooks.own_cache.is_some() {
        Err("a base image: its tag is its hash".into())
    } else {
        let spec = skip::SkipSpec {
            context: args.context.clone(),
            dockerfile: dockerfile_path.clone(),
            build_args: args.build_args.clone(),
            target: args.target.clone(),
            platform: platform
                .get_or_insert_with(|| build_platform(&docker))
                .clone(),
            labels: labels.clone(),
            extra: args.extra.clone(),
            cache_dir: cache_dir.clone(),
        };
        let mut resolved: std::collections::HashMap<String, Option<String>> = Default::default();
        let mut resolve = |r: &str| {
            resolved
                .entry(r.to_string())
                .or_insert_with(|| resolve_image(&docker, r, ctx))
                .clone()
        };
        // The cache-mount steps alone: the Dockerfile up to the last RUN that uses one of the
        // selected cache mounts (`mounts` holds each cache once, at its first RUN).
        let last_mount_end = df.as_ref().and_then(|df| {
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
        // The steps up to each RUN with a cache mount whose layer is the image's (the last
        // one is usually the same as above: hashed once).
        let ids: Vec<&str> = mounts.iter().map(|m| m.id.as_str()).collect();
        let image_runs = df
            .as_ref()
            .map(|df| skip::image_mount_runs(df, &ids, args.target.as_deref()))
            .unwrap_or_default();
        for end in &image_runs {
            match skip::compute_mount_steps(&spec, *end, &mut resolve) {
                Ok(skip::Plan::Hashed(h)) => mount_steps.push((*end, h.hash)),
                _ => {
                    mount_steps.clear();
                    break;
                }
            }
        }
        if let Some(end) = last_mount_end {
            let h = match mount_steps.iter().find(|(e, _)| *e == end) {
                Some((_, h)) => Some(h.clone()),
                None => match skip::compute_mount_steps(&spec, end, &mut resolve) {
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
        match skip::compute(&spec, &mut resolve) {
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
        }
    };

    let plan = BuildPlan {
        flavour: fl,
        image: image.clone(),
        tags,
        dockerfile: dockerfile_path.clone(),
        context: args.context.clone(),
        build_args: args.build_args.clone(),
        target: args.target.clone(),
        registry_cache,
        cache_from,
        cache_to,
        labels,
        push: args.push,
        extra: args.extra.clone(),
    };
    if args.dry_run {
        let program = docker.program.display().to_string();
        let with_program = |a: Vec<String>| {
            let mut v = vec![program.clone()];
            v.extend(a);
            v
        };
        let doc = json!({
            "ok": true,
            "dry_run": true,
            "flavour": fl,
            "key": key,
            "restore_keys": restore_keys,
            "cache_dir": cache_dir,
            "mounts": mounts.iter().map(|m| json!({
                "id": m.id, "target": m.target, "line": m.line, "dance_flag": m.dance_flag(),
            })).collect::<Vec<_>>(),
            "build_command": with_program(plan.build_args()),
            "push_commands": plan.push_commands().into_iter().map(&with_program).collect::<Vec<_>>(),
            "cache_push_commands": plan.cache_push_commands().into_iter().map(&with_program).collect::<Vec<_>>(),
            "base": hooks.base,
        });
        let text = {
            let mut t = format!(
                "would run: {}",
                doc["build_command"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" "))
                    .unwrap_or_default()
            );
            for c in plan
                .push_commands()
                .into_iter()
                .chain(plan.cache_push_commands())
            {
                t.push_str(&format!("\nthen: {program} {}", c.join(" ")));
            }
            t
        };
        return Ok(BuildOutcome {
            code: exit::OK,
            doc,
            text,
        });
    }

    // 0. check: unchanged inputs (tag instead of building), or unchanged cache-mount steps
    // (docker takes them from the layer cache: restore and inject cannot help).
    let mut mounts_from_layer_cache: Option<String> = None;
    // The first lines of the Dockerfile whose steps the cache tag has, when some (not all)
    // of the cache-mount steps are unchanged: (last line, steps unchanged, cache tag).
    let mut prefetch: Option<(usize, usize, String)> = None;
    match &inputs {
        Err(why) if mount_inputs.is_none() => ph.skipped("check", why.clone()),
        _ if args.rebuild => ph.skipped("check", "--rebuild"),
        _ => match cache_tag_labels(&plan, ctx) {
            Ok(found) => {
                // The label, and the image's own platform as a backstop.
                let platform = platform.get_or_insert_with(|| build_platform(&docker));
                let has = |label: &str, value: &str| {
                    found.iter().find(|(_, _, l, p)| {
                        l[label].as_str() == Some(value) && platform.starts_with(p.as_str())
                    })
                };
                let whole = inputs
                    .as_ref()
                    .ok()
                    .and_then(|h| has(skip::LABEL, h).map(|f| (h, f)));
                let steps = mount_inputs
                    .as_deref()
                    .and_then(|h| has(skip::LABEL_MOUNT_STEPS, h));
                match (whole, steps) {
                    (Some((hash, (tag, m, _, _))), _) if args.push => {
                        return Ok(tag_unchanged(
                            &docker,
                            &args,
                            &plan,
                            ph,
                            (tag.clone(), m.clone()),
                            hash,
                            check_started,
                            total,
                            ctx,
                            hooks,
                        ));
                    }
                    (_, Some((tag, _, _, _))) => {
                        let from = format!("{}:{tag}", plan.image);
                        ph.ok(
                            "check",
                            check_started,
                            format!(
                                "the steps up to the last cache mount are unchanged since {from}: \
                                 docker takes them from the layer cache"
                            ),
                            json!({ "inputs": inputs.as_ref().ok(), "mount_inputs": mount_inputs, "mount_steps_from": from }),
                        );
                        // Up to the last cache-mount RUN of the image's own stages: a later
                        // one in another stage is not in the inline cache, and the prefetch
                        // would run it (the build itself does not need that stage).
                        prefetch = mount_steps
                            .last()
                            .map(|(end, _)| (*end, mount_steps.len(), from.clone()));
                        mounts_from_layer_cache = Some(from);
                    }
                    _ => {
                        let mine: Vec<String> =
                            mount_steps.iter().map(|(_, h)| h.clone()).collect();
                        prefetch = found
                            .iter()
                            .filter(|(_, _, _, p)| platform.starts_with(p.as_str()))
                            .map(|(tag, _, l, _)| {
                                let theirs: Vec<String> = l[skip::LABEL_MOUNT_STEP_LIST]
                                    .as_str()
                                    .unwrap_or_default()
                                    .split_whitespace()
                                    .map(str::to_string)
                                    .collect();
                                (skip::common_prefix(&mine, &theirs), tag)
                            })
                            .filter(|(k, _)| *k > 0)
                            .max_by_key(|(k, _)| *k)
                            .map(|(k, tag)| {
                                (mount_steps[k - 1].0, k, format!("{}:{tag}", plan.image))
                            });
                        ph.ok(
                            "check",
                            check_started,
                            match &inputs {
                                Ok(_) if !args.push => "inputs changed or not pushed before; \
                                no --push: building into the local daemon"
                                    .to_string(),
                                Ok(h) => format!(
                                    "no cache tag was built from these inputs ({}): building",
                                    &h[..16]
                                ),
                                Err(why) => format!("building: {why}"),
                            },
                            json!({
                                "inputs": inputs.as_ref().ok(),
                                "mount_inputs": mount_inputs,
                                "mount_steps_unchanged": prefetch.as_ref().map(|p| p.1),
                            }),
                        );
                    }
                }
            }
            Err(e) => ph.cache_failed(
                "check",
                check_started,
                e.context("reading the cache tag's labels"),
            )?,
        },
    }

    // 0b. prefetch: when the cache tag has the first cache-mount steps, their layers go into
    // the daemon beside restore and inject (when those run); the image build then takes them
    // from there. It also keeps the cache tag whole: with docker 20.10 (BuildKit 0.8), a build
    // that takes steps from a registry's inline cache without the image pulled pushes an image
    // whose inline cache keeps only the steps the build loaded (the last cached one before a
    // step that ran), and the next fresh agent that needs an earlier one runs it again. So:
    // `docker pull` of the cache tag (every layer kept); but when the first cache-mount step
    // is the only unchanged one, a build of the Dockerfile up to it (stdin, --cache-from),
    // which pulls only those layers, and faster beside the inject: the image build loads that
    // step, so it is kept, and the steps before it only lose what no build needs.
    let mut prefetch_job: Option<Prefetch> = None;
    if let Some((end, k, from)) = &prefetch {
        let n = mount_steps.len();
        if args.no_prefetch {
            ph.skipped("prefetch", "--no-prefetch");
        } else {
            let what = if *k >= n {
                format!("the layers of lines 1-{end} (every cache-mount step unchanged)")
            } else {
                format!("the layers of lines 1-{end} ({k} of {n} cache-mount steps unchanged)")
            };
            let df_ignore = {
                let mut name = dockerfile_path.file_name().unwrap_or_default().to_owned();
                name.push(".dockerignore");
                dockerfile_path.with_file_name(name)
            };
            // A Dockerfile on stdin does not read a <Dockerfile>.dockerignore: pull instead.
            let prefix = (*k == 1 && n > 1 && !df_ignore.exists())
                .then(|| std::fs::read(&dockerfile_path).ok())
                .flatten();
            prefetch_job = Some(match prefix {
                Some(bytes) => {
                    let iid = std::env::temp_dir().join(format!(
                        "cicache-prefetch-{}-{}.iid",
                        std::process::id(),
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_nanos())
                            .unwrap_or(0)
                    ));
                    Prefetch {
                        args: plan.prefetch_args(&iid),
                        build: Some((skip::prefix(&bytes, *end), iid)),
                        note: format!("built {what} from {from}"),
                    }
                }
                None => Prefetch {
                    args: vec!["pull".to_string(), "-q".to_string(), from.clone()],
                    build: None,
                    note: format!("pulled {from}: {what}"),
                },
            });
        }
    }

    // Beside a prefetch build, inject starts once the prefetch has matched its steps in the
    // layer cache: BuildKit 0.8 merges the identical FROM of two concurrent builds into one,
    // and the merged one does not consult the prefetch's --cache-from (its steps would run).
    let matched = (std::sync::Mutex::new(false), std::sync::Condvar::new());
    let set_matched = || {
        *matched.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        matched.1.notify_all();
    };
    let wait_matched = || {
        if prefetch_job.as_ref().is_none_or(|p| p.build.is_none()) {
            return;
        }
        let guard = matched.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = matched
            .1
            .wait_timeout_while(guard, std::time::Duration::from_secs(30), |m| !*m);
    };
    let mut injected = false;
    let mut restore_inject = |ph: &mut Phases| -> Result<Value> {
        // 1. restore
        let mut restored: Value = Value::Null;
        if let Some(why) = hooks.restored_by {
            ph.skipped("restore", why);
        } else if let Some(from) = &mounts_from_layer_cache {
            ph.skipped(
                "restore",
                format!("the cache-mount steps come from the layer cache of {from}"),
            );
        } else if args.no_restore {
            ph.skipped("restore", "--no-restore");
        } else {
            let t = Instant::now();
            match store_restore(ctx, &key, &restore_keys, &cache_dir) {
                Ok(v) => {
                    let hit = v["status"] == "hit";
                    let msg = if hit {
                        format!(
                            "restored {} from {} (scope {})",
                            cache_dir.display(),
                            v["matched_key"].as_str().unwrap_or_default(),
                            v["matched_scope"].as_str().unwrap_or_default()
                        )
                    } else {
                        "cache miss: starting with the cache dir as it is".to_string()
                    };
                    restored = v.clone();
                    ph.store_result("restore", t, msg, v);
                }
                Err(e) => ph.cache_failed("restore", t, e)?,
            }
        }

        // 2. inject
        if args.no_inject {
            ph.skipped("inject", "--no-inject");
        } else if let Some(from) = &mounts_from_layer_cache {
            ph.skipped(
                "inject",
                format!("the cache-mount steps come from the layer cache of {from}"),
            );
        } else if mounts.is_empty() {
            ph.skipped("inject", "the Dockerfile has no RUN --mount=type=cache");
        } else if !cache_dir.is_dir() {
            ph.skipped("inject", format!("{} does not exist", cache_dir.display()));
        } else {
            let t = Instant::now();
            wait_matched();
            match dance::inject(&docker, &mount_refs, &cache_dir, &dopts, dance_echo) {
                Ok(r) => {
                    injected = true;
                    let msg = describe_dance(&r, "injected").join("; ");
                    ph.ok(
                        "inject",
                        t,
                        msg,
                        serde_json::to_value(&r).unwrap_or(Value::Null),
                    );
                }
                Err(e) => ph.cache_failed("inject", t, anyhow!(e))?,
            }
        }
        Ok(restored)
    };
    let (restored, prefetched) = std::thread::scope(|s| {
        let job = prefetch_job.as_ref().map(|p| {
            let docker = &docker;
            let set_matched = &set_matched;
            s.spawn(move || {
                let t = Instant::now();
                // A step found in the cache, or a layer being pulled: the match is made.
                let watch = |line: &str| {
                    let status = line.split_once(' ').map(|(_, r)| r).unwrap_or_default();
                    if status == "CACHED"
                        || status.starts_with("pulling ")
                        || status.starts_with("ERROR")
                    {
                        set_matched();
                    }
                };
                let stdin = p.build.as_ref().map(|(text, _)| text.as_slice());
                let r = docker.run_checked(&p.args, stdin, Some(&watch), None);
                set_matched();
                (r, t)
            })
        });
        let restored = restore_inject(&mut ph);
        let prefetched = job.map(|h| h.join());
        (restored, prefetched)
    });
    let restored = restored?;
    // What to remove after the build: the prefetch build's image record, or the pulled tag
    // (their layers are the build's now; the cache export puts the new image under the tag).
    let prefetched_ref = match (prefetched, &prefetch_job) {
        (Some(Ok((Ok(out), t))), Some(p)) => match &p.build {
            Some((_, iid)) => {
                let r = cicache_docker::report::parse_log(&out.lines.join("\n"));
                let ran = r.steps.run;
                let mut msg = p.note.clone();
                if ran > 0 {
                    msg.push_str(&format!(
                        "; {ran} steps were not in the layer cache and ran"
                    ));
                }
                ph.ok(
                    "prefetch",
                    t,
                    msg,
                    json!({ "method": "build", "steps": r.steps, "command": p.args }),
                );
                std::fs::read_to_string(iid)
                    .ok()
                    .map(|s| s.trim().to_string())
            }
            None => {
                ph.ok(
                    "prefetch",
                    t,
                    p.note.clone(),
                    json!({ "method": "pull", "image": p.args.last(), "command": p.args }),
                );
                p.args.last().cloned()
            }
        },
        (Some(Ok((Err(e), t))), _) => {
            ph.cache_failed(
                "prefetch",
                t,
                anyhow!(e).context("pulling the unchanged layers"),
            )?;
            None
        }
        (Some(Err(_)), _) => {
            ph.cache_failed(
                "prefetch",
                Instant::now(),
                anyhow!("the prefetch thread panicked"),
            )?;
            None
        }
        _ => None,
    };
    if let Some((_, iid)) = prefetch_job.as_ref().and_then(|p| p.build.as_ref()) {
        let _ = std::fs::remove_file(iid);
    }

    // 3. build
    let build_cmd = plan.build_args();
    ctx.out.info(format!(
        "build: {} {}",
        docker.program.display(),
        build_cmd.join(" ")
    ));
    let t = Instant::now();
    let out = docker
        .run_streamed(&build_cmd, None, Some(&echo), args.log.as_deref())
        .context("running the docker build")?;
    let build_secs = t.elapsed().as_secs_f64();
    if let Some(r) = &prefetched_ref {
        let _ = docker.output(&["rmi".to_string(), r.clone()]);
    }
    let log_text = out.lines.join("\n");
    let parsed = cicache_docker::report::parse_log(&log_text);
    // Every RUN with a cache mount came from the layer cache: the mounts hold nothing new.
    let mounts_untouched = parsed.cache_mount_steps_cached() == Some(true);
    let mut report = if args.no_report { None } else { Some(parsed) };
    if let Some(r) = report.as_mut() {
        r.set_wall_time(build_secs);
    }
    if out.code != 0 {
        let errs = out.error_lines(12);
        ph.list.push(Phase {
            name: "build",
            status: "failed",
            seconds: build_secs,
            message: Some(errs.join("\n")),
            detail: json!({ "exit_code": out.code, "command": build_cmd }),
        });
        ctx.out
            .warn("the docker build failed; skipping push, extract and save");
        let code = u8::try_from(out.code)
            .ok()
            .filter(|c| *c != 0)
            .unwrap_or(exit::FAILURE);
        eprintln!(
            "cicache: error: docker build failed with exit code {}:\n  {}",
            out.code,
            errs.join("\n  ")
        );
        let mut o = finish(
            &args,
            &plan,
            &ph,
            restored,
            Value::Null,
            report,
            total,
            false,
            out.code,
            hooks,
        );
        o.code = code;
        return Ok(o);
    }
    ph.ok(
        "build",
        t,
        format!("built {}", plan.image_refs().join(", ")),
        json!({ "command": build_cmd }),
    );

    // 4-5 and 6-7 at once: the push (and the cache tag's) is network and gzip, the extract
    // and save are the daemon's and the store's disk; the cache work hides behind the push.
    let push_and_export = |ph: &mut Phases| -> Result<()> {
        // 4. push (the image itself: a failure fails the command)
        if !args.push {
            ph.skipped("push", "no --push");
        } else {
            let t = Instant::now();
            let cmds = plan.push_commands();
            if cmds.is_empty() {
                ph.ok(
                    "push",
                    t,
                    "pushed by docker buildx build --push",
                    Value::Null,
                );
            } else {
                for c in &cmds {
                    docker
                        .run_checked(c, None, Some(&echo), args.log.as_deref())
                        .with_context(|| {
                            format!("pushing {}", c.last().cloned().unwrap_or_default())
                        })?;
                }
                ph.ok(
                    "push",
                    t,
                    format!("pushed {}", plan.image_refs().join(", ")),
                    Value::Null,
                );
            }
        }

        // 5. registry cache export (classic: tag + push the cache tag)
        if !registry_cache {
            ph.skipped("cache-export", "registry cache off");
        } else if fl == Flavour::Buildx {
            ph.skipped("cache-export", "done by the build's --cache-to");
        } else {
            let t = Instant::now();
            let mut res: Result<()> = Ok(());
            for c in plan.cache_push_commands() {
                if let Err(e) = docker.run_checked(&c, None, Some(&echo), args.log.as_deref()) {
                    res = Err(anyhow!(e));
                    break;
                }
            }
            match res {
                Ok(()) => ph.ok(
                    "cache-export",
                    t,
                    format!(
                        "pushed the cache tag {}",
                        plan.cache_to.clone().unwrap_or_default()
                    ),
                    Value::Null,
                ),
                Err(e) => ph.cache_failed("cache-export", t, e)?,
            }
        }
        Ok(())
    };
    let cache_out = |ph: &mut Phases| -> Result<Value> {
        // 6. extract
        if args.no_extract {
            ph.skipped("extract", "--no-extract");
        } else if mounts.is_empty() {
            ph.skipped("extract", "the Dockerfile has no RUN --mount=type=cache");
        } else if mounts_untouched {
            ph.skipped(
                "extract",
                "every RUN with a cache mount came from the layer cache: the mounts hold nothing new",
            );
        } else {
            let t = Instant::now();
            // Without a successful inject the mounts hold only what this build wrote: keep
            // the restored files they lack instead of mirroring the mounts.
            let merge = !injected;
            match dance::extract(&docker, &mount_refs, &cache_dir, &dopts, merge, dance_echo) {
                Ok(r) => {
                    let msg = describe_dance(&r, "extracted").join("; ");
                    ph.ok(
                        "extract",
                        t,
                        msg,
                        serde_json::to_value(&r).unwrap_or(Value::Null),
                    );
                }
                Err(e) => ph.cache_failed("extract", t, anyhow!(e))?,
            }
        }

        // 7. save
        let mut saved = Value::Null;
        if let Some(why) = hooks.saved_by {
            ph.skipped("save", why);
        } else if args.no_save {
            ph.skipped("save", "--no-save");
        } else if !cache_dir.is_dir() {
            ph.skipped("save", format!("{} does not exist", cache_dir.display()));
        } else {
            let t = Instant::now();
            match store_save(ctx, &key, &cache_dir) {
                Ok(v) => {
                    let msg = match v["status"].as_str().unwrap_or_default() {
                        "saved" => format!(
                            "saved {} as {}",
                            cache_dir.display(),
                            v["key"].as_str().unwrap_or_default()
                        ),
                        "unchanged" => "unchanged since the restore: nothing saved".to_string(),
                        "exists" => format!(
                            "{} is already saved: nothing written",
                            v["key"].as_str().unwrap_or_default()
                        ),
                        "concurrent" => "another agent saved the same key: theirs kept".to_string(),
                        other => format!("save {other}"),
                    };
                    saved = v.clone();
                    ph.store_result("save", t, msg, v);
                }
                Err(e) => ph.cache_failed("save", t, e)?,
            }
        }
        Ok(saved)
    };
    let mut out_ph = Phases {
        ctx,
        list: Vec::new(),
        warnings: Vec::new(),
        prefix: hooks.prefix,
    };
    let (pushed, cached_out) = std::thread::scope(|s| {
        let worker = s.spawn(|| cache_out(&mut out_ph));
        let pushed = push_and_export(&mut ph);
        let cached_out = worker
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the extract and save thread panicked")));
        (pushed, cached_out)
    });
    pushed?;
    ph.list.append(&mut out_ph.list);
    ph.warnings.append(&mut out_ph.warnings);
    let saved = cached_out?;
    Ok(finish(
        &args, &plan, &ph, restored, saved, report, total, true, 0, hooks,
    ))
}

#[allow(clippy::too_many_arguments)]
fn finish(
    args: &BuildOptions,
    plan: &BuildPlan,
    ph: &Phases,
    restored: Value,
    saved: Value,
    report: Option<cicache_docker::report::BuildReport>,
    total: Instant,
    ok: bool,
    exit_code: i32,
    hooks: &BuildHooks,
) -> BuildOutcome {
    let doc = json!({
        "ok": ok,
        "exit_code": exit_code,
        "image": plan.image,
        "tags": plan.image_refs(),
        "flavour": plan.flavour,
        "registry_cache": plan.registry_cache,
        "cache_from": if plan.registry_cache { json!(plan.cache_from) } else { json!([]) },
        "cache_to": if plan.registry_cache { json!(plan.cache_to) } else { Value::Null },
        "cache_dir": args.cache_dir,
        "phases": ph.list,
        "warnings": ph.warnings,
        "restore": restored,
        "save": saved,
        "report": report.clone(),
        "base": hooks.base,
        "seconds": total.elapsed().as_secs_f64(),
    });
    let text = {
        let mut t = String::new();
        if let Some(line) = hooks.base.get("summary").and_then(Value::as_str) {
            t.push_str(line);
            t.push('\n');
        }
        if let Some(r) = &report {
            t.push_str(&r.render_text());
            if !t.ends_with('\n') {
                t.push('\n');
            }
        }
        t.push_str("phases:");
        for p in &ph.list {
            t.push_str(&format!(
                "\n  {:<13} {:<8} {:>7}",
                p.name,
                p.status,
                human_duration(std::time::Duration::from_secs_f64(p.seconds))
            ));
            if p.status != "ok"
                && let Some(m) = &p.message
            {
                t.push_str(&format!("  {}", m.lines().next().unwrap_or_default()));
            }
        }
        t.push_str(&format!("\ntotal {}", human_duration(total.elapsed())));
        t
    };
    BuildOutcome {
        code: if ok { exit::OK } else { exit::FAILURE },
        doc,
        text,
    }
}

// ---------------------------------------------------------------------------------------
// base images: REPO:base-<hash> (crates/cicache-docker/src/base.rs)

/// One request for a base image, from `cicache base` or `cicache build --base-dockerfile`.
struct BaseRequest {
    image: String,
    context: PathBuf,
    dockerfile: PathBuf,
    inputs: Vec<String>,
    build_args: Vec<String>,
    platform: Option<String>,
    dry_run: bool,
    /// The nested build's options: cache dir, keys, phase switches, docker options, the
    /// arguments after `--`.
    build: BuildOptions,
    /// The app build saves the cache dir after the base build (which then skips its save).
    save_later: bool,
}

/// The base image's result.
struct BaseOutcome {
    code: u8,
    /// `REPO:base-<hash>` the app builds on (the fallback's tag when the registry was down).
    reference: String,
    /// Whether it was built now (the cache dir was restored by that build).
    built: bool,
    doc: Value,
    text: String,
    warnings: Vec<String>,
}

/// Whether the registry has `REPO:tag`. An error means it could not be asked.
fn registry_has_tag(image: &str, tag: &str, ctx: &Context) -> Result<bool> {
    use cicache_registry::{ConnectOptions, Registry, Target};
    let target = Target::parse(image)?;
    let opts = ConnectOptions {
        timeout: Some(
            ctx.global
                .timeout
                .map(Into::into)
                .unwrap_or(std::time::Duration::from_secs(30)),
        ),
        ..ConnectOptions::default()
    };
    let reg = Registry::connect(&target, &opts)?;
    match &reg {
        Registry::Oci(c) => Ok(c.head_manifest(tag)?.is_some()),
        Registry::Ecr { client, target } => match client.images(&target.repository) {
            Ok(images) => Ok(images.iter().any(|i| i.tags.iter().any(|t| t == tag))),
            Err(cicache_registry::Error::RepositoryNotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        },
    }
}

/// A distribution API client for the repository (ECR: with a GetAuthorizationToken login).
fn oci_client(image: &str, ctx: &Context) -> Result<cicache_registry::OciClient> {
    oci_client_within(image, ctx, None)
}

/// [`oci_client`] whose requests wait at most `cap` (and never longer than `--timeout`).
fn oci_client_within(
    image: &str,
    ctx: &Context,
    cap: Option<std::time::Duration>,
) -> Result<cicache_registry::OciClient> {
    use cicache_registry::{ConnectOptions, OciClient, OciOptions, Registry, Target};
    let target = Target::parse(image)?;
    let mut limit = ctx
        .global
        .timeout
        .map(Into::into)
        .unwrap_or(std::time::Duration::from_secs(30));
    if let Some(cap) = cap {
        limit = limit.min(cap);
    }
    let timeout = Some(limit);
    match Registry::connect(
        &target,
        &ConnectOptions {
            timeout,
            ..ConnectOptions::default()
        },
    )? {
        Registry::Oci(c) => Ok(c),
        Registry::Ecr { client, .. } => {
            super::registry::ecr_endpoint_guard(&target)?;
            let (_, creds) = client.docker_credentials()?;
            Ok(OciClient::new(
                &target,
                Some(creds),
                &OciOptions {
                    plain_http: None,
                    timeout,
                },
            ))
        }
    }
}

/// A manifest by tag or digest and, when it is one image (not an index) whose config blob
/// reads as JSON, that config; `None` when the reference does not exist.
fn manifest_and_config(
    client: &cicache_registry::OciClient,
    reference: &str,
) -> cicache_registry::Result<Option<(cicache_registry::oci::Manifest, Option<Value>)>> {
    let Some(m) = client.manifest(reference)? else {
        return Ok(None);
    };
    let config = match m.body["config"]["digest"].as_str() {
        Some(digest) if !m.is_index() => client.blob_json(digest)?,
        _ => None,
    };
    Ok(Some((m, config)))
}

/// The newest base in the registry built from the same base Dockerfile (its
/// `io.cicache.base.name` label), other than `tag`: its tag and per-input hashes. What an
/// agent without a record of its own compares with. Reads at most 50 base tags.
fn previous_base_in_registry(
    image: &str,
    name: &str,
    tag: &str,
    ctx: &Context,
) -> Result<Option<(String, std::collections::BTreeMap<String, String>)>> {
    let client = oci_client(image, ctx)?;
    let tags = match client.tags() {
        Ok(t) => t,
        Err(cicache_registry::Error::RepositoryNotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    type Found = (
        std::time::SystemTime,
        String,
        std::collections::BTreeMap<String, String>,
    );
    let mut best: Option<Found> = None;
    for t in tags
        .iter()
        .filter(|t| t.starts_with(base::TAG_PREFIX) && t.as_str() != tag)
        .take(50)
    {
        let Some((_, Some(cfg))) = manifest_and_config(&client, t)? else {
            continue;
        };
        let labels = &cfg["config"]["Labels"];
        if labels[base::LABEL_NAME].as_str() != Some(name) {
            continue;
        }
        let Some(inputs) = labels[base::LABEL_INPUTS]
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok())
        else {
            continue;
        };
        let created = cfg["created"]
            .as_str()
            .and_then(cicache_registry::model::parse_time)
            .unwrap_or(std::time::UNIX_EPOCH);
        if best.as_ref().is_none_or(|b| created > b.0) {
            best = Some((created, t.clone(), inputs));
        }
    }
    Ok(best.map(|(_, t, i)| (t, i)))
}

/// The image a `FROM` reference is, as a digest or image id: the local image's repo digest,
/// else the local image id (a `docker load`ed image), else the registry's digest of the tag;
/// `None` when neither the daemon nor the registry can say, or when the image has `ONBUILD`
/// triggers (they read context files no line of the Dockerfile names).
fn resolve_image(docker: &Docker, reference: &str, ctx: &Context) -> Option<String> {
    if let Some((_, digest)) = reference.split_once('@') {
        return Some(digest.to_string());
    }
    let (name, tag) = match reference.rfind(':') {
        Some(i) if !reference[i..].contains('/') => (&reference[..i], &reference[i + 1..]),
        _ => (reference, "latest"),
    };
    let local = docker
        .output(&[
            "image".into(),
            "inspect".into(),
            "--format".into(),
            "{{json .Config.OnBuild}}|{{json .RepoDigests}}|{{.Id}}".into(),
            reference.into(),
        ])
        .ok()
        .map(|out| {
            let (onbuild, rest) = out.trim().split_once('|')?;
            let onbuild: Vec<String> = serde_json::from_str(onbuild).unwrap_or_default();
            if !onbuild.is_empty() {
                return None;
            }
            let (digests, id) = rest.split_once('|')?;
            let digests: Vec<String> = serde_json::from_str(digests).unwrap_or_default();
            let own = digests
                .iter()
                .find(|d| d.split_once('@').is_some_and(|(n, _)| n == name))
                .or(digests.first())
                .and_then(|d| d.split_once('@').map(|(_, x)| x.to_string()));
            Some(own.unwrap_or_else(|| id.to_string()))
        });
    if let Some(found) = local {
        return found;
    }
    let first = name.split('/').next().unwrap_or_default();
    let qualified = if first.contains('.') || first.contains(':') || first == "localhost" {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    // A registry the agent cannot reach (Docker Hub behind a mirror) costs at most 5 s.
    let client =
        oci_client_within(&qualified, ctx, Some(std::time::Duration::from_secs(5))).ok()?;
    let (m, config) = manifest_and_config(&client, tag).ok().flatten()?;
    if !m.is_index() && m.body["config"]["digest"].is_string() {
        let cfg = config?;
        if cfg["config"]["OnBuild"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            return None;
        }
    }
    Some(m.digest)
}

/// The prefetch's docker command: a pull of the cache tag, or (`build`) a build of the
/// Dockerfile's first lines, given on stdin, whose image id goes to the file named.
struct Prefetch {
    args: Vec<String>,
    build: Option<(Vec<u8>, PathBuf)>,
    note: String,
}

/// The cache tags the build reads (own scope first) that exist, each with its manifest, its
/// image config's labels and its platform (`os/architecture[/variant]`).
#[allow(clippy::type_complexity)]
fn cache_tag_labels(
    plan: &BuildPlan,
    ctx: &Context,
) -> Result<Vec<(String, cicache_registry::oci::Manifest, Value, String)>> {
    let client = oci_client(&plan.image, ctx)?;
    let mut out = Vec::new();
    for r in &plan.cache_from {
        let tag = r.rsplit_once(':').map(|(_, t)| t).unwrap_or(r);
        let (m, cfg) = match manifest_and_config(&client, tag) {
            Ok(Some((m, Some(cfg)))) => (m, cfg),
            Ok(_) | Err(cicache_registry::Error::RepositoryNotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let labels = cfg["config"]["Labels"].clone();
        let mut platform = format!(
            "{}/{}",
            cfg["os"].as_str().unwrap_or_default(),
            cfg["architecture"].as_str().unwrap_or_default()
        );
        if let Some(v) = cfg["variant"].as_str() {
            platform.push('/');
            platform.push_str(v);
        }
        out.push((tag.to_string(), m, labels, platform));
    }
    Ok(out)
}

/// The build's inputs are those of the cache tag `found`: put its manifest under the image
/// tags (and the own cache tag) instead of building; no layer moves. A registry that refuses
/// the tag fails the command as a failed push does.
#[allow(clippy::too_many_arguments)]
fn tag_unchanged(
    docker: &Docker,
    args: &BuildOptions,
    plan: &BuildPlan,
    mut ph: Phases,
    found: (String, cicache_registry::oci::Manifest),
    hash: &str,
    check_started: Instant,
    total: Instant,
    ctx: &Context,
    hooks: &BuildHooks,
) -> BuildOutcome {
    let (from_tag, manifest) = found;
    let from_ref = format!("{}:{from_tag}", plan.image);
    ph.ok(
        "check",
        check_started,
        format!(
            "{from_ref} was built from the same inputs ({}): tagging it instead of building",
            &hash[..16]
        ),
        json!({ "inputs": hash, "from": from_ref, "digest": manifest.digest }),
    );
    let why = format!("unchanged inputs: {from_ref} is the image");
    ph.skipped("restore", why.clone());
    ph.skipped("inject", why.clone());
    ph.skipped("build", why.clone());
    let t = Instant::now();
    let mut tags: Vec<String> = plan.tags.clone();
    if let Some(own) = plan.cache_to.as_ref().and_then(|r| r.rsplit_once(':'))
        && own.1 != from_tag
        && !tags.iter().any(|t| t == own.1)
    {
        tags.push(own.1.to_string());
    }
    let pushed = oci_client(&plan.image, ctx).and_then(|c| {
        for t in &tags {
            c.put_manifest(t, &manifest.media_type, &manifest.raw)
                .with_context(|| format!("tagging {from_ref} as {}:{t}", plan.image))?;
        }
        Ok(())
    });
    let (ok, code) = match pushed {
        Ok(()) => {
            ph.ok(
                "push",
                t,
                format!(
                    "tagged {} as {} (no layer moved)",
                    manifest.digest,
                    plan.image_refs().join(", ")
                ),
                json!({ "digest": manifest.digest, "tags": tags }),
            );
            // A tag this agent holds from an older build would now name another image than
            // the registry's: pull it (only the manifest and config move when the agent
            // has the layers). An agent without the tag gets it when it is run or pulled.
            for r in plan.image_refs() {
                if local_image(docker, &r) {
                    let pulled = docker.run_checked(
                        &["pull".to_string(), "--quiet".to_string(), r.clone()],
                        None,
                        None,
                        None,
                    );
                    match pulled {
                        Ok(_) => ph.ctx.out.info(format!(
                            "pulled {r}: this agent's older image of that tag is replaced"
                        )),
                        Err(e) => {
                            let msg = format!(
                                "{r} on this agent is an older image than the registry's and \
                                 could not be pulled: {e}"
                            );
                            ph.ctx.out.warn(msg.clone());
                            ph.warnings.push(msg);
                        }
                    }
                }
            }
            (true, 0)
        }
        Err(e) => {
            eprintln!("cicache: error: {e:#}");
            ph.list.push(Phase {
                name: "push",
                status: "failed",
                seconds: t.elapsed().as_secs_f64(),
                message: Some(format!("{e:#}")),
                detail: Value::Null,
            });
            (false, 1)
        }
    };
    ph.skipped("cache-export", why.clone());
    ph.skipped("extract", why.clone());
    ph.skipped("save", why);
    if let Some(log) = &args.log {
        let line = format!(
            "cicache: {} unchanged since {from_ref} (inputs {hash}): tagged {} without building\n",
            plan.image, manifest.digest
        );
        if let Err(e) = std::fs::write(log, line) {
            ctx.out
                .warn(format!("cannot write the build log {}: {e}", log.display()));
        }
    }
    let mut o = finish(
        args,
        plan,
        &ph,
        Value::Null,
        Value::Null,
        None,
        total,
        ok,
        code,
        hooks,
    );
    o.doc["unchanged"] = json!({ "from": from_ref, "digest": manifest.digest, "inputs": hash });
    // What Jenkinsfiles read (result.steps, result.verdict; there is no build log to report
    // on): no step ran, none was needed.
    o.doc["steps"] = json!({ "total": 0, "cached": 0, "run": 0, "failed": 0 });
    // What the Jenkins step puts in the build description.
    o.doc["verdict"] = json!(format!(
        "cache: unchanged inputs, {from_ref} tagged without building ({})",
        human_duration(total.elapsed())
    ));
    o.text = format!(
        "unchanged: {from_ref} was built from the same inputs; tagged it, nothing built\n{}",
        o.text
    );
    o
}

/// Whether the local daemon has the image.
fn local_image(docker: &Docker, reference: &str) -> bool {
    docker
        .output(&[
            "image".into(),
            "inspect".into(),
            "--format".into(),
            "{{.Id}}".into(),
            reference.into(),
        ])
        .is_ok()
}

/// The platform docker builds for: `DOCKER_DEFAULT_PLATFORM` when set, else the daemon's.
fn build_platform(docker: &Docker) -> String {
    std::env::var("DOCKER_DEFAULT_PLATFORM")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| daemon_platform(docker))
}

/// The daemon's platform (`linux/amd64`), else this machine's.
fn daemon_platform(docker: &Docker) -> String {
    docker
        .output(&[
            "version".into(),
            "--format".into(),
            "{{.Server.Os}}/{{.Server.Arch}}".into(),
        ])
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| s.contains('/') && !s.contains(' '))
        .unwrap_or_else(base::host_platform)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Finds, builds or falls back to the base image of a request.
fn ensure_base(req: BaseRequest, ctx: &Context) -> Result<BaseOutcome> {
    let started = Instant::now();
    let docker = Docker::new(&req.build.docker.docker);
    let last = req.image.rsplit('/').next().unwrap_or_default();
    if last.contains(':') || req.image.contains('@') || req.image.trim().is_empty() {
        bail!(
            "--image {:?}: give the repository without a tag or digest (REGISTRY/NAME); \
             cicache tags the base itself: REPO:base-<hash>",
            req.image
        );
    }
    if !req.dockerfile.is_file() {
        bail!(
            "the base Dockerfile {} does not exist (pass --base-dockerfile / -f FILE)",
            req.dockerfile.display()
        );
    }
    let platform = req
        .platform
        .clone()
        .unwrap_or_else(|| daemon_platform(&docker));
    let spec = base::BaseSpec {
        context: req.context.clone(),
        dockerfile: req.dockerfile.clone(),
        inputs: req.inputs.clone(),
        build_args: req.build_args.clone(),
        platform: platform.clone(),
        ignore: base::Ignore::default(),
    };
    let inputs = base::compute(&spec)
        .map_err(|e| anyhow!(e))
        .with_context(|| {
            format!(
                "hashing the inputs of the base image {}",
                req.dockerfile.display()
            )
        })?;
    let mut warnings = Vec::new();
    for n in &inputs.notes {
        ctx.out.warn(format!("base: {n}"));
        warnings.push(format!("base: {n}"));
    }
    let reference = format!("{}:{}", req.image, inputs.tag);
    let state_dir = cicache_store::state::state_dir();
    let record = base::load_record(&state_dir, &req.image, &inputs.name);
    let changes_since = |r: &base::BaseRecord| base::diff(&r.inputs, &inputs.inputs);
    ctx.out.info(format!(
        "base: {} from {} ({} input files, {})",
        reference,
        inputs.name,
        inputs.files.len(),
        inputs.source
    ));

    let in_registry = if has_registry_host(&req.image) {
        Some(registry_has_tag(&req.image, &inputs.tag, ctx))
    } else {
        None
    };
    let mut status: &str;
    let reason: String;
    let mut changes: Vec<base::Change> = Vec::new();
    let mut previous: Option<String> = None;
    let mut registry_error: Option<String> = None;
    let mut final_ref = reference.clone();
    let mut build_doc = Value::Null;
    let mut code = exit::OK;
    let mut built = false;

    let asked_registry = in_registry.is_some();
    let have = match in_registry {
        Some(Ok(found)) => Some(found),
        None => Some(local_image(&docker, &reference)),
        Some(Err(e)) => {
            registry_error = Some(format!("{e:#}"));
            None
        }
    };
    match have {
        Some(true) => {
            status = "reused";
            reason = if asked_registry {
                "in the registry".to_string()
            } else {
                "in the local daemon (REPO names no registry)".to_string()
            };
            if let Some(r) = &record
                && r.tag != inputs.tag
            {
                changes = changes_since(r);
                previous = Some(format!("{}:{}", req.image, r.tag));
            }
        }
        Some(false) => {
            status = if req.dry_run { "would_build" } else { "built" };
            reason = match &record {
                Some(r) if r.tag == inputs.tag => {
                    "used before on this agent, but gone from the registry".to_string()
                }
                Some(r) => {
                    changes = changes_since(r);
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
                None => match previous_base_in_registry(&req.image, &inputs.name, &inputs.tag, ctx)
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
                        "not in the registry (no earlier base of {} known on this agent; \
                         looking for one in the registry failed: {e:#})",
                        inputs.name
                    ),
                },
            };
            if !req.dry_run {
                let mut b = req.build.clone();
                b.image = Some(req.image.clone());
                b.tags = vec![inputs.tag.clone()];
                b.dockerfile = Some(req.dockerfile.clone());
                b.build_args = req.build_args.clone();
                b.target = None;
                b.context = req.context.clone();
                b.dry_run = false;
                b.base_dockerfile = None;
                let registry = has_registry_host(&req.image);
                b.push = registry;
                if !registry {
                    b.no_registry_cache = true;
                    b.registry_cache = false;
                }
                if let Some(p) = &req.platform {
                    b.extra.insert(0, p.clone());
                    b.extra.insert(0, "--platform".into());
                }
                let inputs_json = serde_json::to_string(&inputs.inputs)?;
                let hooks = BuildHooks {
                    prefix: "base ",
                    labels: vec![
                        format!("{}={}", base::LABEL_NAME, inputs.name),
                        format!("{}={}", base::LABEL_INPUTS, inputs_json),
                    ],
                    own_cache: Some(previous.iter().cloned().collect()),
                    saved_by: req
                        .save_later
                        .then_some("the app build saves the cache dir"),
                    ..BuildHooks::default()
                };
                ctx.out
                    .info(format!("base: building {reference}: {reason}"));
                let o = run_build(b, ctx, &hooks)
                    .with_context(|| format!("building the base image {reference}"))?;
                build_doc = o.doc;
                code = o.code;
                built = true;
                if code != exit::OK {
                    status = "failed";
                }
            }
        }
        None => {
            // The registry cannot be asked.
            let err = registry_error.clone().unwrap_or_default();
            let fix = format!(
                "make the registry reachable and check the credentials (`cicache registry status \
                 --image {}`, `docker login`), then run again; or build without the base image \
                 this once (drop --base-dockerfile / baseDockerfile and pass --build-arg \
                 BASE_IMAGE=<an image with the dependencies>)",
                req.image
            );
            if ctx.strict() {
                bail!(
                    "cannot check {reference} in the registry ({err}); --strict makes this an \
                     error. Fix: {fix}"
                );
            }
            if local_image(&docker, &reference) {
                status = "local";
                reason = format!(
                    "the registry could not be asked ({err}); {reference} is in the local daemon"
                );
            } else if let Some(r) = record
                .as_ref()
                .filter(|r| local_image(&docker, &format!("{}:{}", req.image, r.tag)))
            {
                status = "fallback";
                changes = changes_since(r);
                final_ref = format!("{}:{}", req.image, r.tag);
                previous = Some(final_ref.clone());
                reason = format!(
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
            } else {
                let known = match &record {
                    Some(r) => format!(
                        "the last known base {}:{} is not in the local daemon either",
                        req.image, r.tag
                    ),
                    None => format!("this agent knows no earlier base of {}", inputs.name),
                };
                bail!("cannot check {reference} in the registry ({err}), and {known}. Fix: {fix}");
            }
            ctx.out.warn(format!("base: {reason}"));
            warnings.push(format!("base: {reason}"));
        }
    }

    if matches!(status, "reused" | "built" | "local") {
        let rec = base::BaseRecord {
            version: base::RECORD_VERSION,
            image: req.image.clone(),
            name: inputs.name.clone(),
            tag: inputs.tag.clone(),
            inputs: inputs.inputs.clone(),
            recorded_at: now_secs(),
        };
        if let Err(e) = base::save_record(&state_dir, &rec) {
            ctx.out.warn(format!(
                "base: cannot record the base in {}: {e} (only the registry-down fallback \
                 and the change report need it)",
                state_dir.display()
            ));
        }
    }
    let summary = match status {
        "reused" => format!("base: reused {final_ref} ({reason})"),
        "built" => format!("base: built {final_ref} ({reason})"),
        "would_build" => format!("base: would build {final_ref} ({reason})"),
        "failed" => format!("base: the build of {final_ref} failed"),
        _ => format!("base: {status} {final_ref} ({reason})"),
    };
    let doc = json!({
        "ok": code == exit::OK,
        "image": req.image,
        "tag": final_ref.rsplit_once(':').map(|(_, t)| t).unwrap_or_default(),
        "ref": final_ref,
        "wanted": reference,
        "hash": inputs.hash,
        "status": status,
        "reason": reason,
        "changes": changes,
        "previous": previous,
        "registry_error": registry_error,
        "name": inputs.name,
        "dockerfile": req.dockerfile,
        "platform": platform,
        "input_source": inputs.source,
        "files": inputs.files,
        "inputs": inputs.inputs,
        "build": build_doc,
        "warnings": warnings,
        "summary": summary,
        "seconds": started.elapsed().as_secs_f64(),
    });
    let text = if code == exit::OK {
        final_ref.clone()
    } else {
        build_doc_text(&doc)
    };
    ctx.out.info(summary);
    Ok(BaseOutcome {
        code,
        reference: final_ref,
        built,
        doc,
        text,
        warnings,
    })
}

fn build_doc_text(doc: &Value) -> String {
    doc["summary"].as_str().unwrap_or_default().to_string()
}

/// `cicache build --base-dockerfile`: the base first, then its reference as the build
/// argument and the label `io.cicache.base` of the app image.
fn ensure_base_for_build(
    args: &mut BuildOptions,
    ctx: &Context,
    hooks: &mut BuildHooks,
) -> Result<BaseOutcome> {
    let image = args.image.clone().unwrap_or_default();
    let dockerfile = args.base_dockerfile.clone().unwrap_or_default();
    let req = BaseRequest {
        image,
        context: args.context.clone(),
        dockerfile,
        inputs: args.base_inputs.clone(),
        build_args: args.base_build_args.clone(),
        platform: args.base_platform.clone(),
        dry_run: args.dry_run,
        build: BuildOptions {
            log: None,
            ..args.clone()
        },
        save_later: !args.no_save,
    };
    let out = ensure_base(req, ctx)?;
    if out.code != exit::OK {
        return Ok(out);
    }
    args.build_args
        .push(format!("{}={}", args.base_arg, out.reference));
    hooks
        .labels
        .push(format!("{}={}", base::LABEL_BASE, out.reference));
    if out.built && !args.no_restore {
        hooks.restored_by = Some("done by the base build");
    }
    hooks.base = out.doc.clone();
    hooks.warnings = out.warnings.clone();
    Ok(out)
}

pub fn base(args: BaseArgs, ctx: &Context) -> Result<u8> {
    let cfg = build_config(ctx)?;
    let image = args.image.clone().or(cfg.image.clone()).ok_or_else(|| {
        anyhow!("cicache base needs --image REPO (or CICACHE_IMAGE, or build.image in cicache.yml)")
    })?;
    let dockerfile = args
        .dockerfile
        .clone()
        .or(cfg.base_dockerfile.clone())
        .unwrap_or_else(|| args.context.join("Dockerfile.base"));
    let inputs = if args.inputs.is_empty() {
        cfg.base_inputs.clone()
    } else {
        args.inputs.clone()
    };
    let build = BuildOptions {
        image: Some(image.clone()),
        tags: Vec::new(),
        dockerfile: Some(dockerfile.clone()),
        build_args: args.build_args.clone(),
        target: None,
        context: args.context.clone(),
        cache_dir: args.cache_dir.clone().or(cfg.cache_dir.clone()),
        key: args.key.clone(),
        restore_keys: args.restore_keys.clone(),
        registry_cache: false,
        no_registry_cache: args.no_registry_cache,
        push: true,
        no_restore: args.no_restore,
        no_inject: args.no_inject,
        no_prefetch: false,
        no_extract: args.no_extract,
        no_save: args.no_save,
        no_report: false,
        rebuild: false,
        dry_run: false,
        log: args.log.clone(),
        base_dockerfile: None,
        base_inputs: Vec::new(),
        base_build_args: Vec::new(),
        base_platform: None,
        base_arg: "BASE_IMAGE".into(),
        docker: args.docker.clone(),
        extra: args.extra.clone(),
    };
    if let Some(log) = &args.log {
        std::fs::File::create(log)
            .with_context(|| format!("cannot write the base build log {}", log.display()))?;
    }
    let req = BaseRequest {
        image,
        context: args.context.clone(),
        dockerfile,
        inputs,
        build_args: args.build_args.clone(),
        platform: args.platform.clone(),
        dry_run: args.dry_run,
        build,
        save_later: false,
    };
    let out = ensure_base(req, ctx)?;
    ctx.out.result(&out.doc, || out.text.clone());
    Ok(out.code)
}

// ---------------------------------------------------------------------------------------
// docker prune

pub fn docker(args: DockerArgs, ctx: &Context) -> Result<u8> {
    match args.command {
        DockerCommand::Prune(a) => docker_prune(a, ctx),
    }
}

fn docker_prune(a: PruneArgs, ctx: &Context) -> Result<u8> {
    let docker = Docker::new(&a.docker);
    let opts = PruneOptions {
        keep_storage: a.keep_storage.clone(),
        until: a.until.map(Into::into),
        cache_mounts_only: a.cache_mounts,
        all: !a.dangling_only,
        dry_run: a.dry_run,
    };
    let r = prune::prune(&docker, &opts).map_err(|e| match e {
        DockerError::Invalid(m) => anyhow!(m),
        e => anyhow!(e).context("pruning the builder cache"),
    })?;
    ctx.out.result(&json!({ "ok": true, "prune": r }), || {
        format!(
            "{}{} freed ({} records); build cache {} -> {}; cache mounts before: {} ({})",
            if r.dry_run {
                "dry run: would free "
            } else {
                ""
            },
            human_bytes(r.reclaimed_bytes),
            r.records,
            human_bytes(r.before_bytes),
            human_bytes(r.after_bytes),
            r.cache_mounts_before,
            human_bytes(r.cache_mounts_before_bytes),
        )
    });
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_ids_select_and_unknown_ids_are_named() {
        let df = dockerfile::parse(
            "FROM x\nRUN --mount=type=cache,target=/root/.cache/pip \
             --mount=type=cache,id=npm,target=/root/.npm true\n",
        )
        .unwrap();
        let p = Path::new("Dockerfile");
        assert_eq!(select_mounts(&df, &[], p).unwrap().len(), 2);
        let one = select_mounts(&df, &["npm".to_string()], p).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].target, "/root/.npm");
        let e = select_mounts(&df, &["nope".to_string()], p).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("nope") && msg.contains("/root/.cache/pip, npm"),
            "{msg}"
        );
    }

    #[test]
    fn registry_hosts() {
        assert!(has_registry_host("127.0.0.1:5000/app"));
        assert!(has_registry_host("123.dkr.ecr.eu-west-1.amazonaws.com/app"));
        assert!(has_registry_host("localhost/app"));
        assert!(!has_registry_host("app"));
        assert!(!has_registry_host("team/app"));
    }
}
