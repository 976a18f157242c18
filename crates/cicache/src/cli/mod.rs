//! The command line: global options shared by every command, and the command list.
//!
//! Every option has a `CICACHE_*` variable (listed in `docs/CONFIG.md`) and most have a
//! `cicache.yml` key; precedence is flag > variable > config file > built-in default.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub mod docker;
pub mod registry;
pub mod store;

#[derive(Debug, Parser)]
#[command(
    name = "cicache",
    version,
    about = "Fast, safe CI caches for Docker builds of Python apps",
    long_about = "Fast, safe CI caches for Docker builds of Python apps.\n\n\
        cicache saves and restores cache directories (the pip cache) to a content-addressed \
        store, moves them in and out of BuildKit cache mounts, runs the whole cached \
        `docker build`, manages the registry `cache` tags and reports where the time went.\n\n\
        Exit codes: 0 success (a cache miss is a success), 1 failure, 2 bad usage or \
        configuration, 3 cache miss with --fail-on-miss; `build` passes on docker's own code \
        when a Dockerfile step fails.",
    after_help = "Documentation: README.md and docs/ (CLI.md, CONFIG.md, FORMAT.md, JSON.md)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ProgressMode {
    /// Bars on a terminal, plain lines every few seconds otherwise.
    #[default]
    Auto,
    /// Bars even when stderr is not a terminal.
    Always,
    /// No progress output; the summary line is still printed.
    Never,
}

/// Options every command takes, before or after the command name.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Where caches are stored: DIR, dir:DIR, s3://BUCKET/PREFIX, oci://REGISTRY/REPOSITORY.
    /// [default: /var/cache/cicache when writable, else ~/.cache/cicache]
    #[arg(long, global = true, env = "CICACHE_STORE", value_name = "STORE")]
    pub store: Option<String>,

    /// Scope of saves and first scope of restores (a branch, `pr-7`).
    /// [default: pr-$CHANGE_ID, else $BRANCH_NAME, else `default`]
    #[arg(long, global = true, env = "CICACHE_SCOPE", value_name = "SCOPE")]
    pub scope: Option<String>,

    /// Scopes that restores read after their own, in order (usually the default branch).
    #[arg(
        long = "fallback-scope",
        global = true,
        env = "CICACHE_FALLBACK_SCOPES",
        value_delimiter = ',',
        value_name = "SCOPE"
    )]
    pub fallback_scopes: Vec<String>,

    /// Print the result as one JSON document on stdout (docs/JSON.md; JSON Schemas in docs/schema/).
    #[arg(long, global = true, env = "CICACHE_JSON", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0, default_missing_value = "true")]
    pub json: bool,

    /// Progress display on stderr.
    #[arg(
        long,
        global = true,
        env = "CICACHE_PROGRESS",
        value_enum,
        value_name = "WHEN"
    )]
    pub progress: Option<ProgressMode>,

    /// Only print errors and the result.
    #[arg(short, long, global = true, env = "CICACHE_QUIET", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0, default_missing_value = "true")]
    pub quiet: bool,

    /// More detail (repeat for debug output).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Configuration file. [default: ./cicache.yml when present]
    #[arg(long, global = true, env = "CICACHE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Treat cache problems (a damaged entry, a store that is down) as failures instead of
    /// warnings.
    #[arg(long, global = true, env = "CICACHE_STRICT", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0, default_missing_value = "true")]
    pub strict: bool,

    /// Bound on each remote store operation, e.g. 30s, 2m.
    #[arg(long, global = true, env = "CICACHE_TIMEOUT", value_name = "DURATION")]
    pub timeout: Option<humantime::Duration>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render a key template: `cicache key 'pip-{{ hashFiles "requirements*.txt" }}-{{ os }}'`.
    Key(store::KeyArgs),
    /// Restore a cache directory from the store (exact key, then restore-key prefixes).
    Restore(store::RestoreArgs),
    /// Save a cache directory to the store under a key.
    Save(store::SaveArgs),
    /// List the entries of the store.
    List(store::ListArgs),
    /// Evict entries by age, last use, total size and keep-last-N, then sweep unused blobs;
    /// only in a store named by --store, CICACHE_STORE or cicache.yml, and only with a limit.
    Prune(store::PruneArgs),
    /// Check entries byte for byte; names every damaged entry.
    Verify(store::VerifyArgs),
    /// Write an entry as a plain .tar.zst.
    Export(store::ExportArgs),
    /// Store a plain .tar.zst (or .tar) as an entry.
    Import(store::ImportArgs),
    /// Move a cache directory into or out of the Dockerfile's BuildKit cache mounts.
    Mount(docker::MountArgs),
    /// The whole cached build: restore, inject, build with the registry cache, push, extract, save, report.
    Build(Box<docker::BuildArgs>),
    /// Find or build the base image REPO:base-<hash> keyed by its inputs; prints its reference.
    Base(Box<docker::BaseArgs>),
    /// Docker housekeeping: `docker prune` of the builder cache.
    Docker(docker::DockerArgs),
    /// Summarize build logs: steps cached, wheels from cache vs downloaded, where the time went.
    Report(crate::cmd::report::ReportArgs),
    /// Check docker, BuildKit, the Dockerfile, the store and the registry; says how to fix each problem.
    Doctor(crate::cmd::report::DoctorArgs),
    /// Registry cache tags: login, ensure, status, clear, gc, lifecycle.
    Registry(registry::RegistryArgs),
}
