//! The command line: global options shared by every command, and the command list.
//!
//! Every option has a `CICACHE_*` variable (listed in `docs/CONFIG.md`) and most have a
//! `cicache.yml` key; precedence is flag > variable > config file > built-in default.
//! `docs/CLI.md` is every command's help, generated from these types (`cli::tests`).

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

pub mod docker;
pub mod registry;
pub mod report;
pub mod store;

/// `0.1.0 (commit 3f2a9c1e0b7d, built 2026-12-06)`: the version, the commit and the build
/// date (build.rs), so that a helper can be matched with the library that pins it.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CICACHE_GIT_COMMIT"),
    ", built ",
    env!("CICACHE_BUILD_DATE"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "cicache",
    version = VERSION,
    about = "Fast, safe CI caches for Docker builds of Python apps",
    long_about = "Fast, safe CI caches for Docker builds of Python apps.\n\n\
        cicache saves and restores cache directories (the pip cache) to a content-addressed \
        store, moves them in and out of BuildKit cache mounts, runs the whole cached \
        `docker build`, manages the registry `cache` tags and reports where the time went.\n\n\
        Exit codes: 0 success (a cache miss is a success), 1 failure, 2 bad usage or \
        configuration, 3 cache miss with --fail-on-miss; `build` passes on docker's own code \
        when a Dockerfile step fails.",
    after_help = "Examples:\n  \
        cicache restore --key 'pip-{{ hashFiles \"requirements*.txt\" }}' --restore-key pip- --path .pip-cache\n  \
        cicache save --key 'pip-{{ hashFiles \"requirements*.txt\" }}' --path .pip-cache --if-changed\n  \
        cicache build --image registry.example.com/team/app --push .\n  \
        cicache restore --help\n\n\
        Every command's help: docs/CLI.md, `cicache man`; variables and cicache.yml: \
        docs/CONFIG.md; --json documents: docs/JSON.md (in the cicache repository)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The global options a command does not use, hidden from its help (still accepted, so that
/// a variable set for the whole pipeline never breaks it).
const UNUSED_GLOBALS: &[(&str, &[&str])] = &[
    ("key", NO_STORE),
    ("list", &["scope", "fallback_scopes", "progress"]),
    ("prune", &["scope", "fallback_scopes", "progress"]),
    ("verify", &["fallback_scopes", "progress"]),
    ("export", &["progress"]),
    ("import", &["fallback_scopes", "progress"]),
    ("mount", NO_STORE),
    ("docker", NO_STORE),
    ("report", NO_STORE),
    ("doctor", &["scope", "fallback_scopes", "progress"]),
    (
        "registry",
        &["store", "scope", "fallback_scopes", "progress", "strict"],
    ),
    ("completions", ALL_GLOBALS),
    ("man", ALL_GLOBALS),
];

/// The globals of a command that never opens the store.
const NO_STORE: &[&str] = &[
    "store",
    "scope",
    "fallback_scopes",
    "progress",
    "strict",
    "timeout",
];

const ALL_GLOBALS: &[&str] = &[
    "store",
    "scope",
    "fallback_scopes",
    "json",
    "progress",
    "quiet",
    "verbose",
    "config",
    "strict",
    "timeout",
];

/// The command line as clap sees it, with each command's unused global options hidden.
/// Parsing, `--help`, the man pages, the completions and docs/CLI.md all come from it.
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    // `mut_subcommand` moves a command to the end: keep the order of `Command` in the help.
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    for (i, name) in names.iter().enumerate() {
        cmd = cmd.mut_subcommand(name, |c| c.display_order(i));
    }
    let globals: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect();
    for (name, ids) in UNUSED_GLOBALS {
        cmd = cmd.mut_subcommand(name, |mut c| {
            // A command that has the global option already keeps its own copy (clap copies
            // globals only into commands without one): this one, hidden, and it still goes
            // on to the commands under it.
            for a in globals
                .iter()
                .filter(|a| ids.contains(&a.get_id().as_str()))
            {
                c = c.arg(a.clone().hide(true));
            }
            c
        });
    }
    cmd
}

/// Parses the process's arguments; on a usage error, clap's error (exit code 2).
pub fn try_parse() -> Result<Cli, clap::Error> {
    let mut cmd = command();
    let matches = cmd.try_get_matches_from_mut(std::env::args_os())?;
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
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
#[command(next_help_heading = "Global options")]
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

    /// Only print errors and the result: no progress bars or lines at all.
    #[arg(short, long, global = true, env = "CICACHE_QUIET", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0, default_missing_value = "true")]
    pub quiet: bool,

    /// More detail (repeat for debug output); CICACHE_LOG sets the filter itself.
    #[arg(short, long, global = true, env = "CICACHE_VERBOSE", action = clap::ArgAction::Count)]
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
    Report(report::ReportArgs),
    /// Check docker, BuildKit, the Dockerfile, the store and the registry; says how to fix each problem.
    Doctor(report::DoctorArgs),
    /// Registry cache tags: login, ensure, status, clear, gc, lifecycle.
    Registry(registry::RegistryArgs),
    /// Print the shell completion script: `cicache completions bash > /etc/bash_completion.d/cicache`.
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write one page per command into a directory.
    Man(ManArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cicache completions bash > /etc/bash_completion.d/cicache\n  \
    cicache completions zsh > \"${fpath[1]}/_cicache\"\n  \
    cicache completions fish > ~/.config/fish/completions/cicache.fish")]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cicache man | man -l -\n  \
    cicache man --dir /usr/local/share/man/man1 && mandb")]
pub struct ManArgs {
    /// Write cicache.1 and a cicache-COMMAND.1 page for every command into DIR (created when
    /// missing), instead of printing cicache.1.
    #[arg(long, env = "CICACHE_MAN_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[cfg(test)]
mod tests;
