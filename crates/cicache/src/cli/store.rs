//! The store commands' flags: key, restore, save, list, prune, verify, export, import.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The template, e.g. 'pip-{{ hashFiles "requirements*.txt" }}-{{ os }}'.
    /// [default: cache.key of cicache.yml]
    pub template: Option<String>,
    /// Directory that hashFiles globs are relative to.
    #[arg(long, env = "CICACHE_KEY_BASE", default_value = ".")]
    pub base: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Key (or key template) to restore.
    #[arg(long, env = "CICACHE_KEY")]
    pub key: Option<String>,
    /// Key prefix tried when the key misses, newest entry first; repeatable, in order.
    #[arg(
        long = "restore-key",
        env = "CICACHE_RESTORE_KEYS",
        value_delimiter = ',',
        value_name = "PREFIX"
    )]
    pub restore_keys: Vec<String>,
    /// The cache directory to restore into (replaced atomically).
    #[arg(long, env = "CICACHE_PATH")]
    pub path: Option<PathBuf>,
    /// Exit with code 3 when no entry matches.
    #[arg(long, env = "CICACHE_FAIL_ON_MISS", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0, default_missing_value = "true")]
    pub fail_on_miss: bool,
    /// Only look the key up; restore nothing.
    #[arg(long, env = "CICACHE_LOOKUP_ONLY", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0, default_missing_value = "true")]
    pub lookup_only: bool,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Key (or key template) to save under.
    #[arg(long, env = "CICACHE_KEY")]
    pub key: Option<String>,
    /// The cache directory to save.
    #[arg(long, env = "CICACHE_PATH")]
    pub path: Option<PathBuf>,
    /// Replace an existing entry with the same key (default: an existing key is a no-op).
    #[arg(long, env = "CICACHE_UPDATE", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0, default_missing_value = "true")]
    pub update: bool,
    /// Skip the save when the directory matches what was restored into it.
    #[arg(long, env = "CICACHE_IF_CHANGED", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0, default_missing_value = "true")]
    pub if_changed: bool,
    /// Leave out paths matching this glob (relative to --path); repeatable.
    #[arg(
        long,
        env = "CICACHE_EXCLUDE",
        value_delimiter = ',',
        value_name = "GLOB"
    )]
    pub exclude: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this scope (default: every scope).
    #[arg(long = "in-scope", value_name = "SCOPE")]
    pub in_scope: Option<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Evict entries created longer ago than this (e.g. 14d).
    #[arg(long, env = "CICACHE_PRUNE_MAX_AGE", value_name = "DURATION")]
    pub max_age: Option<humantime::Duration>,
    /// Evict entries not restored or saved for this long (e.g. 7d).
    #[arg(long, env = "CICACHE_PRUNE_MAX_UNUSED", value_name = "DURATION")]
    pub max_unused: Option<humantime::Duration>,
    /// Evict least recently used entries until the store is below this size (e.g. 20GB).
    #[arg(long, env = "CICACHE_PRUNE_MAX_SIZE", value_name = "SIZE")]
    pub max_size: Option<String>,
    /// Always keep the newest N entries of each key family (scope plus key without its hash parts).
    #[arg(long, env = "CICACHE_PRUNE_KEEP_LAST", value_name = "N")]
    pub keep_last: Option<usize>,
    /// First verify every entry (reading every byte) and remove the damaged ones and their
    /// damaged objects.
    #[arg(long, env = "CICACHE_PRUNE_DAMAGED", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0, default_missing_value = "true")]
    pub damaged: bool,
    /// Print what would be removed; remove nothing.
    #[arg(long, env = "CICACHE_DRY_RUN", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0, default_missing_value = "true")]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only this key (in --scope); default: every entry of every scope.
    #[arg(long)]
    pub key: Option<String>,
    /// Also remove every damaged entry, so the next save of its key writes it again
    /// (damaged objects are removed either way).
    #[arg(long, env = "CICACHE_VERIFY_REPAIR", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0, default_missing_value = "true")]
    pub repair: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The entry to export (in --scope, then the fallback scopes).
    #[arg(long)]
    pub key: String,
    /// The .tar.zst file to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The key to store the archive under (in --scope).
    #[arg(long)]
    pub key: String,
    /// A .tar.zst, .tar.gz or .tar archive.
    pub file: PathBuf,
    /// Replace an existing entry with the same key.
    #[arg(long)]
    pub update: bool,
}
