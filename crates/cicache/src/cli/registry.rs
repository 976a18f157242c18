//! The registry commands' flags: login, ensure, status, clear, gc, lifecycle.

use clap::{Args, Subcommand};

/// Flag variables take 1/0, true/false, yes/no, on/off.
fn boolish() -> clap::builder::BoolishValueParser {
    clap::builder::BoolishValueParser::new()
}

#[derive(Debug, Args)]
#[command(
    long_about = "Registry cache tags: `IMAGE:cache` holds the default branch's BuildKit layer \
        cache, `IMAGE:cache-<scope>` every other branch's. ECR registries \
        (<account>.dkr.ecr.<region>.amazonaws.com/NAME) are managed through the ECR API with \
        the AWS default credential chain; any other registry through the OCI distribution API \
        with credentials from --username/--password-stdin or the Docker config.",
    after_help = "Examples:\n  \
        cicache registry login --image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/app\n  \
        cicache registry status --image registry.example.com/team/app\n  \
        cicache registry gc --image registry.example.com/team/app --max-age 14d --dry-run\n\n\
        See docs/REGISTRY.md; --json output in docs/JSON.md (section `registry`)."
)]
pub struct RegistryArgs {
    #[command(subcommand)]
    pub command: RegistryCommand,
}

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Log docker in to the registry (ECR: GetAuthorizationToken; others: --username and
    /// --password-stdin). The secret goes to `docker login --password-stdin`, never into
    /// arguments or output.
    Login(LoginArgs),
    /// Make sure the repository can hold the cache tags: create it on ECR when missing (with
    /// mutable tags), detect immutable tags, optionally apply the lifecycle policy.
    Ensure(EnsureArgs),
    /// List the cache tags: scope, size, pushed, last pulled (ECR).
    Status(StatusArgs),
    /// Delete cache tags (all of them, or those named with --tag): "clear the cache".
    Clear(ClearArgs),
    /// Delete `cache-<scope>` tags older than --max-age (and, with --untagged, old untagged
    /// manifests). Never deletes `cache`, a --keep tag, a younger tag or a non-cache tag.
    Gc(GcArgs),
    /// Print (or with --apply, set) the ECR lifecycle policy that expires old cache tags.
    Lifecycle(LifecycleArgs),
}

/// Which repository, and how to reach it.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// The image repository, without a tag: REGISTRY/NAME, e.g.
    /// 123456789012.dkr.ecr.eu-west-1.amazonaws.com/app or registry.example.com/team/app.
    /// [config: registry.image]
    #[arg(long, env = "CICACHE_IMAGE", value_name = "REPO")]
    pub image: Option<String>,

    /// AWS region of an ECR registry. [default: the region in the registry name]
    /// [config: registry.region]
    #[arg(long, env = "CICACHE_REGISTRY_REGION", value_name = "REGION")]
    pub region: Option<String>,

    /// Username for a (non-ECR) registry; the password is read from stdin with --password-stdin.
    #[arg(long, env = "CICACHE_REGISTRY_USERNAME", value_name = "USER")]
    pub username: Option<String>,

    /// Read the registry password (or token) from stdin. Passwords are never taken as
    /// arguments.
    #[arg(long, env = "CICACHE_REGISTRY_PASSWORD_STDIN", value_parser = boolish(), requires = "username")]
    pub password_stdin: bool,

    /// Talk plain HTTP to the registry. [default: only for 127.0.0.1, ::1 and localhost,
    /// like docker]
    #[arg(long, env = "CICACHE_REGISTRY_PLAIN_HTTP", value_parser = boolish())]
    pub plain_http: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cicache registry login --image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/app\n  \
    echo \"$REGISTRY_TOKEN\" | cicache registry login --image registry.example.com/team/app --username ci --password-stdin")]
pub struct LoginArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// The docker client to log in. [config: registry.docker]
    #[arg(long, env = "CICACHE_DOCKER", value_name = "PROGRAM")]
    pub docker: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cicache registry ensure --image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/app --lifecycle\n  \
    cicache registry ensure --image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/app --cache-repo")]
pub struct EnsureArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Also apply the lifecycle policy (ECR), see `cicache registry lifecycle`.
    #[arg(long, env = "CICACHE_REGISTRY_LIFECYCLE", value_parser = boolish())]
    pub lifecycle: bool,

    /// Keep the cache tags in a repository of their own, `<repo>-buildcache` (mutable tags),
    /// created when missing. For repositories with immutable tags.
    #[arg(long, env = "CICACHE_REGISTRY_CACHE_REPO", value_parser = boolish())]
    pub cache_repo: bool,

    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cicache registry status --image registry.example.com/team/app\n  \
    cicache --json registry status --image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/app")]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cicache registry clear --image registry.example.com/team/app --dry-run\n  \
    cicache registry clear --image registry.example.com/team/app --tag cache-pr-7")]
pub struct ClearArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// A cache tag to delete (repeat, or comma-separated). [default: every `cache` and
    /// `cache-<scope>` tag]
    #[arg(
        long = "tag",
        env = "CICACHE_REGISTRY_TAGS",
        value_delimiter = ',',
        value_name = "TAG"
    )]
    pub tags: Vec<String>,

    /// Print what would be deleted, delete nothing.
    #[arg(long, env = "CICACHE_REGISTRY_DRY_RUN", value_parser = boolish())]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cicache registry gc --image registry.example.com/team/app --max-age 14d --keep cache-release --dry-run\n  \
    cicache registry gc --image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/app --untagged --keep-bases 3")]
pub struct GcArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Delete `cache-<scope>` tags pushed longer ago than this (e.g. 14d, 36h).
    /// [default: 14d] [config: registry.max_age]
    #[arg(long, env = "CICACHE_REGISTRY_MAX_AGE", value_name = "DURATION")]
    pub max_age: Option<humantime::Duration>,

    /// A tag never to delete (repeat, or comma-separated); `cache` is always kept.
    /// [config: registry.keep]
    #[arg(
        long,
        env = "CICACHE_REGISTRY_KEEP",
        value_delimiter = ',',
        value_name = "TAG"
    )]
    pub keep: Vec<String>,

    /// Also delete untagged manifests older than --max-age (ECR; the distribution API cannot
    /// list them).
    #[arg(long, env = "CICACHE_REGISTRY_UNTAGGED", value_parser = boolish())]
    pub untagged: bool,

    /// Manage `base-<hash>` tags too (`cicache base`): keep the N newest and every base an
    /// image in the repository still names in its `io.cicache.base` label; delete the others
    /// once older than --max-age. Without it no base tag is deleted.
    /// [config: registry.keep_bases]
    #[arg(long, env = "CICACHE_REGISTRY_KEEP_BASES", value_name = "N")]
    pub keep_bases: Option<usize>,

    /// Print the plan, delete nothing. The plan is exactly what `gc` without it deletes.
    #[arg(long, env = "CICACHE_REGISTRY_DRY_RUN", value_parser = boolish())]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// Lifecycle policy: expire untagged images this many days after their push.
    /// [default: 7] [config: registry.untagged_days]
    #[arg(long, env = "CICACHE_REGISTRY_UNTAGGED_DAYS", value_name = "DAYS")]
    pub untagged_days: Option<u32>,

    /// Lifecycle policy: expire `cache-<scope>` tags this many days after their push.
    /// [default: 14] [config: registry.scope_days]
    #[arg(long, env = "CICACHE_REGISTRY_SCOPE_DAYS", value_name = "DAYS")]
    pub scope_days: Option<u32>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cicache registry lifecycle --image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/app\n  \
    cicache registry lifecycle --image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/app --scope-days 7 --apply")]
pub struct LifecycleArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Set the policy on the ECR repository (and read it back), instead of only printing it.
    #[arg(long, env = "CICACHE_REGISTRY_APPLY", value_parser = boolish())]
    pub apply: bool,
}
