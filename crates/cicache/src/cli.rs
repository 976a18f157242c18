//! The command line: global options shared by every command, and the command list.
//!
//! Every option has a `CICACHE_*` variable (listed in `docs/CONFIG.md`) and most have a
//! `cicache.yml` key; precedence is flag > variable > config file > built-in default.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cmd;
use crate::config::Config;
use crate::output::Output;

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

    /// Print the result as one JSON document on stdout (schemas in docs/JSON.md).
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
    Key(cmd::store::KeyArgs),
    /// Restore a cache directory from the store (exact key, then restore-key prefixes).
    Restore(cmd::store::RestoreArgs),
    /// Save a cache directory to the store under a key.
    Save(cmd::store::SaveArgs),
    /// List the entries of the store.
    List(cmd::store::ListArgs),
    /// Evict entries by age, last use, total size and keep-last-N, then sweep unused blobs.
    Prune(cmd::store::PruneArgs),
    /// Check entries byte for byte; names every damaged entry.
    Verify(cmd::store::VerifyArgs),
    /// Write an entry as a plain .tar.zst.
    Export(cmd::store::ExportArgs),
    /// Store a plain .tar.zst (or .tar) as an entry.
    Import(cmd::store::ImportArgs),
    /// Move a cache directory into or out of the Dockerfile's BuildKit cache mounts.
    Mount(cmd::docker::MountArgs),
    /// The whole cached build: restore, inject, build with the registry cache, push, extract, save, report.
    Build(Box<cmd::docker::BuildArgs>),
    /// Find or build the base image REPO:base-<hash> keyed by its inputs; prints its reference.
    Base(Box<cmd::docker::BaseArgs>),
    /// Docker housekeeping: `docker prune` of the builder cache.
    Docker(cmd::docker::DockerArgs),
    /// Summarize build logs: steps cached, wheels from cache vs downloaded, where the time went.
    Report(cmd::report::ReportArgs),
    /// Check docker, BuildKit, the Dockerfile, the store and the registry; says how to fix each problem.
    Doctor(cmd::report::DoctorArgs),
    /// Registry cache tags: login, ensure, status, clear, gc, lifecycle.
    Registry(cmd::registry::RegistryArgs),
}

/// What every command gets: resolved global options, the config file and the output.
pub struct Context {
    pub global: GlobalArgs,
    pub config: Config,
    pub out: Output,
}

impl Context {
    pub fn new(global: &GlobalArgs) -> Result<Self> {
        let config = match &global.config {
            Some(path) => Config::load(path)
                .with_context(|| format!("reading the config file {}", path.display()))?,
            None => {
                let default = PathBuf::from("cicache.yml");
                if default.is_file() {
                    Config::load(&default).context("reading ./cicache.yml")?
                } else {
                    Config::default()
                }
            }
        };
        let progress = global
            .progress
            .or(config.progress)
            .unwrap_or(ProgressMode::Auto);
        let out = Output::new(global.json, global.quiet, global.verbose, progress);
        Ok(Context {
            global: global.clone(),
            config,
            out,
        })
    }

    /// `--strict` from the flag, the variable or the config file.
    pub fn strict(&self) -> bool {
        self.global.strict || self.config.strict.unwrap_or(false)
    }

    /// The scope saves write to.
    pub fn scope(&self) -> String {
        if let Some(s) = self.global.scope.clone().or(self.config.scope.clone()) {
            return s;
        }
        default_scope(&cicache_store::key::ProcessEnv)
    }

    /// Scopes restores read after their own.
    pub fn fallback_scopes(&self) -> Vec<String> {
        let own = self.scope();
        let list = if self.global.fallback_scopes.is_empty() {
            self.config.fallback_scopes.clone()
        } else {
            self.global.fallback_scopes.clone()
        };
        list.into_iter()
            .filter(|s| !s.is_empty() && *s != own)
            .collect()
    }
}

/// `pr-<CHANGE_ID>` for a pull request build, else the branch, else `default`.
pub fn default_scope(env: &dyn cicache_store::key::TemplateEnv) -> String {
    if let Some(id) = env.var("CHANGE_ID") {
        return format!("pr-{id}");
    }
    cicache_store::key::current_branch(env).unwrap_or_else(|| "default".to_string())
}
