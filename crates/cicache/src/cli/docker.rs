//! The docker commands' flags: mount, build, base, docker prune.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

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

/// `--compression` and `--compression-level`: `build` applies them, `doctor` checks them.
#[derive(Debug, Clone, Default, Args)]
pub struct CompressionArgs {
    /// Compress the pushed image's layers and the exported registry cache with this
    /// (buildx only: `--output type=image,push=true,compression=...,force-compression=true`
    /// and the same on `--cache-to`). [default: build.compression of cicache.yml, else
    /// BuildKit's gzip]
    #[arg(
        long,
        env = "CICACHE_COMPRESSION",
        value_enum,
        value_name = "ALGORITHM"
    )]
    pub compression: Option<CompressionArg>,
    /// The compression level (gzip and estargz 0-9, zstd 0-22). [default:
    /// build.compression_level of cicache.yml, else BuildKit's]
    #[arg(long, env = "CICACHE_COMPRESSION_LEVEL", value_name = "N")]
    pub compression_level: Option<u32>,
}

/// Layer compression of the pushed image and the exported registry cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionArg {
    /// BuildKit's default; every registry and runtime reads it.
    Gzip,
    /// Several times faster to compress and to unpack; ECR, distribution, Docker 23+,
    /// containerd 1.5+ and Kubernetes nodes read it (Docker 20.10 cannot pull it).
    Zstd,
    /// gzip that containerd's stargz snapshotter can pull lazily.
    Estargz,
}

/// The docker client: every command that runs docker.
#[derive(Debug, Clone, Args)]
pub struct DockerClient {
    /// The docker client to run.
    #[arg(
        long,
        env = "CICACHE_DOCKER",
        default_value = "docker",
        value_name = "PROGRAM"
    )]
    pub docker: PathBuf,
}

/// Options of the docker client and the cache dance, shared by `mount` and `build`.
#[derive(Debug, Clone, Args)]
pub struct DockerOpts {
    #[command(flatten)]
    pub client: DockerClient,
    /// Build flavour.
    #[arg(long, env = "CICACHE_DOCKER_FLAVOUR", value_enum, default_value_t = FlavourArg::Auto)]
    pub flavour: FlavourArg,
    /// Image the cache-dance helper builds start FROM: any image with sh, cp, find, stat,
    /// chown (busybox). Where nothing can be pulled, build one (examples/python-app/make-base-images.sh).
    /// [default: build.helper_image of cicache.yml, else busybox:1.36]
    #[arg(long, env = "CICACHE_HELPER_IMAGE", value_name = "IMAGE")]
    pub helper_image: Option<String>,
    /// The buildx builder to build with (`docker buildx create --driver docker-container
    /// --name NAME` exports the whole registry cache on any image store). [default: the
    /// current builder]
    #[arg(long, env = "CICACHE_BUILDER", value_name = "NAME")]
    pub builder: Option<String>,
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
#[command(
    after_help = "The cache dance: a BuildKit cache mount lives in the daemon, not in the \
    workspace. `inject` fills the Dockerfile's cache mounts from a directory before the build; \
    `extract` copies them back out after it, for `cicache save`. Both run tiny builds with \
    exactly the mount options of the Dockerfile (id, target, uid, gid, mode, sharing).\n\n\
    Examples:\n  \
    cicache mount inject -f Dockerfile --from .pip-cache\n  \
    cicache mount extract -f Dockerfile --to .pip-cache"
)]
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
#[command(after_help = "Examples:\n  \
    cicache restore --key pip-3f2a --path .pip-cache && cicache mount inject --from .pip-cache\n  \
    cicache mount inject -f docker/Dockerfile --from .pip-cache --mount-id pip --helper-image busybox:1.36")]
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
#[command(after_help = "Examples:\n  \
    cicache mount extract --to .pip-cache && cicache save --key pip-3f2a --path .pip-cache --if-changed\n  \
    cicache --json mount extract -f docker/Dockerfile --to .pip-cache --mount-id pip")]
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
        inject (on docker 20.10 with a prefetch beside them when the cache tag has the first cache-mount steps: a pull of it, or a build of the lines up to the first one), build, \
        push, cache export, extract (only what changed, when the cache dir holds files), save, \
        report. See docs/BUILD.md. A failing cache phase is a warning unless --strict; a failing Dockerfile step fails with \
        docker's exit code. Arguments after `--` go to the docker build unchanged, e.g. \
        `cicache build --image r/app . -- --secret id=x,src=x --network host`.\n\n\
        Examples:\n  \
        cicache build --image registry.example.com/team/app --tag \"$GIT_COMMIT\" --push .\n  \
        cicache build --image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/app --push --log build.log --report-html report.html .\n  \
        cicache build --image registry.example.com/team/app -f Dockerfile.app --base-dockerfile Dockerfile.base --push .\n  \
        cicache build --image registry.example.com/team/app --dry-run ."
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
    #[command(flatten)]
    pub cache: CacheDirArgs,
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
    /// Push the image tags. A push the registry answers with a 5xx or 429, or whose
    /// connection drops, goes once more after 2 s (with a warning).
    #[arg(long, env = "CICACHE_PUSH")]
    pub push: bool,
    #[command(flatten)]
    pub compression: CompressionArgs,
    #[command(flatten)]
    pub phases: CachePhaseArgs,
    /// Skip the prefetch: when the cache tag has the first cache-mount steps, `docker pull` of
    /// it (or a build of the lines up to the first one, when only that one is unchanged)
    /// while the cache dir is restored and injected (without it the build pulls their layers
    /// itself, after the inject, and with docker 20.10 the cache tag it pushes loses steps).
    /// Docker 20.10 only: a daemon of 23.0 or newer never prefetches.
    #[arg(long, env = "CICACHE_NO_PREFETCH")]
    pub no_prefetch: bool,
    /// After a failed build, skip the extract and save too (by default the cache mounts are
    /// extracted and saved, so the wheels downloaded before the failing step are kept). A
    /// build that fails in its export or push, after every step ran, has its cache mounts
    /// saved all the same: extract and save start at the export.
    #[arg(long, env = "CICACHE_NO_SAVE_ON_FAILURE")]
    pub no_save_on_failure: bool,
    /// Skip the report at the end.
    #[arg(long, env = "CICACHE_NO_REPORT")]
    pub no_report: bool,
    /// Build even when nothing the image is made from changed. Without it, a `--push` build
    /// whose inputs (the Dockerfile, the files it copies, the build args, the FROM images,
    /// target, labels, the args after `--`; label io.cicache.inputs) equal those of an
    /// image in the registry tags that image instead of building it: the cache tag's with
    /// inline cache, this build's own tag's (e.g. `latest`) with the registry cache exporter.
    /// The check still runs: cache-mount steps that come from the layer cache skip restore
    /// and inject (add `-- --no-cache` to build without the layer cache).
    #[arg(long, env = "CICACHE_REBUILD")]
    pub rebuild: bool,
    /// Print the docker commands the build would run (and the cache mounts it would move);
    /// run nothing.
    #[arg(long, env = "CICACHE_BUILD_DRY_RUN")]
    pub dry_run: bool,
    /// Also write the build's output to FILE (what `cicache report` reads).
    #[arg(long, env = "CICACHE_BUILD_LOG", value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Also write the build's report as one self-contained HTML page to FILE: the verdict,
    /// why it missed, a timeline of the steps and of cicache's phases (docs/REPORT.md). Written
    /// when the build fails too.
    #[arg(long, env = "CICACHE_REPORT_HTML", value_name = "FILE")]
    pub report_html: Option<PathBuf>,
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
        (default: the sources of its COPY/ADD lines) by path and content, the --build-args, \
        the platform and the arguments after `--` (as text); not mtimes, not where the checkout \
        lies. A base is reused only when this build's scope or one of its fallback scopes built \
        it (label io.cicache.base.scope); otherwise it is built again. The base build runs the whole `cicache build` machinery (restore, inject, registry \
        cache from the previous base, push, extract, save). When the registry cannot be \
        asked, the base already in the local daemon (this hash's, else the last one this \
        agent used) is taken with a warning; with neither the command fails and says what to do.\n\n\
        Examples:\n  \
        cicache base --image registry.example.com/team/app -f Dockerfile.base .\n  \
        cicache base --image registry.example.com/team/app -f Dockerfile.base --input 'requirements*.txt' --dry-run .\n  \
        docker build --build-arg BASE_IMAGE=\"$(cicache -q base --image registry.example.com/team/app)\" -f Dockerfile.app ."
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
    #[command(flatten)]
    pub cache: CacheDirArgs,
    /// Do not read the previous base as layer cache.
    #[arg(long, env = "CICACHE_NO_REGISTRY_CACHE")]
    pub no_registry_cache: bool,
    #[command(flatten)]
    pub phases: CachePhaseArgs,
    /// Compute the tag and ask the registry; build nothing.
    #[arg(long, env = "CICACHE_BASE_DRY_RUN")]
    pub dry_run: bool,
    /// Also write the base build's output to FILE.
    #[arg(long, env = "CICACHE_BASE_LOG", value_name = "FILE")]
    pub log: Option<PathBuf>,
    #[command(flatten)]
    pub docker: DockerOpts,
    /// Arguments passed to the docker build unchanged (after `--`); part of the hash.
    #[arg(last = true, value_name = "DOCKER_BUILD_ARGS")]
    pub extra: Vec<String>,
}

/// The cache dir and its store keys: shared by `build` and `base`.
#[derive(Debug, Clone, Args)]
pub struct CacheDirArgs {
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
}

/// The cache phases a build can leave out: shared by `build` and `base`.
#[derive(Debug, Clone, Args)]
pub struct CachePhaseArgs {
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
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cicache docker prune --keep-storage 20GB --until 72h\n  \
    cicache docker prune --cache-mounts --dry-run")]
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
#[command(
    after_help = "Runs `docker builder prune` and reports the builder cache before and \
    after (`docker system df`), cache mounts apart.\n\n\
    Examples:\n  \
    cicache docker prune --keep-storage 20GB\n  \
    cicache docker prune --until 72h --dangling-only\n  \
    cicache --json docker prune --cache-mounts --dry-run"
)]
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
    #[command(flatten)]
    pub client: DockerClient,
}
