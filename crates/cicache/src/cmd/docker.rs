//! Docker commands: `mount inject|extract`, `build`, `base`, `docker prune`.
//!
//! The work is in `cicache_build` (the cached build and base images) and `cicache_docker`
//! (the dance, builder prune); this module turns flags into their requests and prints the
//! results.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::json;

use cicache_build::mount::{MountAction, MountRequest};
use cicache_build::{
    BaseOptions, BaseRequest, BuildDoc, BuildError, BuildResult, BuildSpec, DockerSpec, Env,
    FlavourChoice, KeyTemplates, Switches,
};
use cicache_docker::dance::DEFAULT_HELPER_IMAGE;
use cicache_docker::engine::{Docker, DockerError};
use cicache_docker::prune::{self, PruneOptions};

use crate::cli::docker::{
    BaseArgs, BuildArgs, BuildOptions, CachePhaseArgs, CompressionArgs, DockerArgs, DockerCommand,
    DockerOpts, FlavourArg, MountArgs, MountCommand, PruneArgs,
};
use crate::output::{exit, human_bytes, write_atomic};
use crate::settings;
use crate::settings::{BuildConfig, Context, usage};

impl From<FlavourArg> for FlavourChoice {
    fn from(a: FlavourArg) -> Self {
        match a {
            FlavourArg::Auto => FlavourChoice::Auto,
            FlavourArg::Buildx => FlavourChoice::Buildx,
            FlavourArg::Classic => FlavourChoice::Classic,
        }
    }
}

/// The docker client and dance options: flag, else cicache.yml, else the default.
fn docker_spec(opts: &DockerOpts, cfg: &BuildConfig) -> DockerSpec {
    DockerSpec {
        program: opts.client.docker.clone(),
        flavour: opts.flavour.into(),
        helper_image: opts
            .helper_image
            .clone()
            .or(cfg.helper_image.clone())
            .unwrap_or_else(|| DEFAULT_HELPER_IMAGE.to_string()),
        mount_ids: opts.mount_ids.clone(),
        builder: opts.builder.clone(),
        // Set by `build` and `base` (`mount` pushes nothing).
        compression: None,
    }
}

/// The cache key and restore keys: flag, else `cache:` of cicache.yml, else the defaults.
fn key_templates(key: Option<String>, restore_keys: Vec<String>, ctx: &Context) -> KeyTemplates {
    let defaults = KeyTemplates::default();
    KeyTemplates {
        key: key
            .or_else(|| ctx.config.cache.key.clone())
            .unwrap_or(defaults.key),
        restore_keys: if !restore_keys.is_empty() {
            restore_keys
        } else if !ctx.config.cache.restore_keys.is_empty() {
            ctx.config.cache.restore_keys.clone()
        } else {
            defaults.restore_keys
        },
    }
}

/// The phases `--no-restore`, `--no-inject`, `--no-extract`, `--no-save` leave out.
fn switches(p: &CachePhaseArgs) -> Switches {
    Switches {
        restore: !p.no_restore,
        inject: !p.no_inject,
        extract: !p.no_extract,
        save: !p.no_save,
        ..Switches::default()
    }
}

/// `--registry-cache` / `--no-registry-cache`, else cicache.yml; `None`: decided by the image.
fn registry_cache(on: bool, off: bool, cfg: &BuildConfig) -> Option<bool> {
    if off {
        Some(false)
    } else if on {
        Some(true)
    } else {
        cfg.registry_cache
    }
}

/// `cicache build`'s request: flags, else the `build:` section of cicache.yml.
fn build_spec(a: BuildOptions, ctx: &Context) -> Result<BuildSpec> {
    let cfg = settings::build_config(ctx)?;
    let image = a.image.clone().or(cfg.image.clone()).ok_or_else(|| {
        usage("cicache build needs --image REPO (or CICACHE_IMAGE, or build.image in cicache.yml)")
    })?;
    // Config build args first: a --build-arg of the same name comes later and wins.
    let mut build_args = cfg.build_args.clone();
    build_args.extend(a.build_args.iter().cloned());
    let base = a
        .base_dockerfile
        .clone()
        .or(cfg.base_dockerfile.clone())
        .map(|dockerfile| BaseOptions {
            dockerfile,
            inputs: if a.base_inputs.is_empty() {
                cfg.base_inputs.clone()
            } else {
                a.base_inputs.clone()
            },
            build_args: a.base_build_args.clone(),
            platform: a.base_platform.clone(),
            arg: a.base_arg.clone(),
        });
    Ok(BuildSpec {
        tags: if a.tags.is_empty() {
            cfg.tags.clone()
        } else {
            a.tags.clone()
        },
        dockerfile: a.dockerfile.clone().or(cfg.dockerfile.clone()),
        build_args,
        target: a.target.clone(),
        context: a.context.clone(),
        cache_dir: a
            .cache
            .cache_dir
            .clone()
            .or(cfg.cache_dir.clone())
            .unwrap_or_else(|| PathBuf::from(".pip-cache")),
        keys: key_templates(a.cache.key.clone(), a.cache.restore_keys.clone(), ctx),
        registry_cache: registry_cache(a.registry_cache, a.no_registry_cache, &cfg),
        push: a.push || cfg.push.unwrap_or(false),
        switches: Switches {
            prefetch: !a.no_prefetch,
            report: !a.no_report,
            save_on_failure: !a.no_save_on_failure,
            ..switches(&a.phases)
        },
        rebuild: a.rebuild,
        dry_run: a.dry_run,
        log: a.log.clone(),
        base,
        docker: DockerSpec {
            compression: settings::compression(&a.compression, &cfg)?.map(|(c, _)| c),
            ..docker_spec(&a.docker, &cfg)
        },
        extra: a.extra.clone(),
        image,
    })
}

/// A library error as the binary's: a wrong request is a usage error (exit 2).
fn build_error(e: BuildError) -> anyhow::Error {
    match e {
        BuildError::Usage(m) => usage(m),
        e => e.into(),
    }
}

pub fn build(args: BuildArgs, ctx: &Context) -> Result<u8> {
    let report_html = args.options.report_html.clone();
    let spec = build_spec(*args.options, ctx)?;
    let (cache, store) = (settings::cache_settings(ctx)?, settings::cache_store(ctx));
    let env = Env::new(&cache, &store, &ctx.out);
    let result = cicache_build::build(spec, &env).map_err(build_error)?;
    if let (Some(path), BuildResult::Built(doc)) = (&report_html, &result) {
        write_report_html(doc, path, ctx);
    }
    ctx.out.result(&result, || result.text());
    Ok(result.exit_code())
}

/// `--report-html FILE`: the build's report with its phases on the timeline. A report that
/// cannot be written is a warning: the build's own result stands.
fn write_report_html(doc: &BuildDoc, path: &std::path::Path, ctx: &Context) {
    let Some((page, warning)) = doc.report_html() else {
        ctx.out.warn(format!(
            "--report-html {}: no report of this build (--no-report, or the image was tagged \
             without building)",
            path.display()
        ));
        return;
    };
    if let Some(w) = warning {
        ctx.out.warn(format!("--report-html: {w}"));
    }
    match write_atomic(path, &page) {
        Ok(()) => ctx.out.info(format!("report: {} (HTML)", path.display())),
        Err(e) => ctx.out.warn(format!("--report-html: {e:#}")),
    }
}

pub fn base(args: BaseArgs, ctx: &Context) -> Result<u8> {
    let cfg = settings::build_config(ctx)?;
    let image = args.image.clone().or(cfg.image.clone()).ok_or_else(|| {
        usage("cicache base needs --image REPO (or CICACHE_IMAGE, or build.image in cicache.yml)")
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
    let build = BuildSpec {
        image: image.clone(),
        tags: Vec::new(),
        dockerfile: Some(dockerfile.clone()),
        build_args: args.build_args.clone(),
        target: None,
        context: args.context.clone(),
        cache_dir: args
            .cache
            .cache_dir
            .clone()
            .or(cfg.cache_dir.clone())
            .unwrap_or_else(|| PathBuf::from(".pip-cache")),
        keys: key_templates(args.cache.key.clone(), args.cache.restore_keys.clone(), ctx),
        registry_cache: registry_cache(false, args.no_registry_cache, &cfg),
        push: true,
        switches: switches(&args.phases),
        rebuild: false,
        dry_run: false,
        log: args.log.clone(),
        base: None,
        docker: DockerSpec {
            compression: settings::compression(&CompressionArgs::default(), &cfg)?.map(|(c, _)| c),
            ..docker_spec(&args.docker, &cfg)
        },
        extra: args.extra.clone(),
    };
    if let Some(log) = &args.log {
        if let Some(dir) = log.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot make the directory of --log {}", log.display()))?;
        }
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
    let (cache, store) = (settings::cache_settings(ctx)?, settings::cache_store(ctx));
    let env = Env::new(&cache, &store, &ctx.out);
    let out = cicache_build::ensure_base(req, &env).map_err(build_error)?;
    ctx.out.result(&out.doc, || {
        if out.code == exit::OK {
            out.reference.clone()
        } else {
            out.doc.summary.clone()
        }
    });
    Ok(out.code)
}

pub fn mount(args: MountArgs, ctx: &Context) -> Result<u8> {
    let (action, dockerfile, opts, dir) = match args.command {
        MountCommand::Inject(a) => (MountAction::Inject, a.dockerfile, a.docker, a.from),
        MountCommand::Extract(a) => (MountAction::Extract, a.dockerfile, a.docker, a.to),
    };
    let req = MountRequest {
        action,
        dockerfile,
        dir,
        docker: docker_spec(&opts, &settings::build_config(ctx)?),
    };
    let quiet = ctx.out.quiet;
    let echo = move |line: &str| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    let verbose_echo = (ctx.out.verbose > 0).then_some(&echo as &(dyn Fn(&str) + Sync));
    let doc = cicache_build::mount::mount(&req, verbose_echo).map_err(build_error)?;
    doc.warnings.iter().for_each(|w| ctx.out.warn(w));
    ctx.out.result(&doc, || doc.text());
    Ok(exit::OK)
}

// docker prune

pub fn docker(args: DockerArgs, ctx: &Context) -> Result<u8> {
    match args.command {
        DockerCommand::Prune(a) => docker_prune(a, ctx),
    }
}

fn docker_prune(a: PruneArgs, ctx: &Context) -> Result<u8> {
    let docker = Docker::new(&a.client.docker);
    let opts = PruneOptions {
        keep_storage: a.keep_storage.clone(),
        until: a.until.map(Into::into),
        cache_mounts_only: a.cache_mounts,
        all: !a.dangling_only,
        dry_run: a.dry_run,
    };
    let r = prune::prune(&docker, &opts).map_err(|e| match e {
        DockerError::Invalid(m) => usage(m),
        e => anyhow::Error::from(e).context("pruning the builder cache"),
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
