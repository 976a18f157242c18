//! The store commands' flags: key, restore, save, list, prune, verify, export, import.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
#[command(
    after_help = "Functions: hashFiles \"GLOB\" ... (20 hex digits over the matched files' \
    paths and contents; an error when nothing matches), env \"NAME\", os, arch, branch.\n\n\
    Examples:\n  \
    cicache key 'pip-{{ hashFiles \"requirements*.txt\" }}-{{ os }}-{{ arch }}'\n  \
    cicache key --base app 'pip-{{ hashFiles \"**/requirements*.txt\" \"constraints.txt\" }}'\n  \
    cicache --json key 'uv-{{ env \"PYTHON_VERSION\" }}-{{ branch }}'"
)]
pub struct KeyArgs {
    /// The template, e.g. 'pip-{{ hashFiles "requirements*.txt" }}-{{ os }}'.
    /// [default: cache.key of cicache.yml]
    pub template: Option<String>,
    /// Directory that hashFiles globs are relative to.
    #[arg(long, env = "CICACHE_KEY_BASE", default_value = ".")]
    pub base: PathBuf,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Prints `hit KEY` (with `partial: restore key PREFIX` or the scope when it \
    is not the key itself in the own scope) or `miss`; a miss exits 0 unless --fail-on-miss. \
    A store that is down or a damaged entry is a warning and a miss, unless --strict.\n\n\
    Examples:\n  \
    cicache restore --key 'pip-{{ hashFiles \"requirements*.txt\" }}' --restore-key pip- --path .pip-cache\n  \
    cicache --store s3://ci-cache/team-a --fallback-scope main restore --key pip-3f2a --path .pip-cache\n  \
    cicache restore --key pip-3f2a --path .pip-cache --lookup-only --fail-on-miss"
)]
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
#[command(
    after_help = "Prints saved, exists, unchanged, concurrent, empty or failed. Only files \
    the store lacks are written; the entry appears atomically, once everything it names is \
    stored.\n\n\
    Examples:\n  \
    cicache save --key 'pip-{{ hashFiles \"requirements*.txt\" }}' --path .pip-cache --if-changed\n  \
    cicache save --key pip-3f2a --path .pip-cache --exclude 'selfcheck/**' --update\n  \
    cicache --store s3://ci-cache/team-a --scope main save --key pip-3f2a --path .pip-cache"
)]
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
#[command(
    after_help = "One row per entry, newest first: scope, key, size of its files, bytes \
    stored for it, created, last used; then a total line with the files' size and what the \
    store holds (each blob counted once, however many entries share it).\n\n\
    Examples:\n  \
    cicache list\n  \
    cicache list --in-scope main\n  \
    cicache --store s3://ci-cache/team-a --json list"
)]
pub struct ListArgs {
    /// Only this scope (default: every scope).
    #[arg(long = "in-scope", env = "CICACHE_LIST_SCOPE", value_name = "SCOPE")]
    pub in_scope: Option<String>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Entries go by age, last use and total size (least recently used first), \
    never the newest --keep-last of a key family; then the manifests and blobs no entry names \
    are swept (never while a save is running).\n\n\
    Examples:\n  \
    cicache prune --max-age 14d --max-unused 7d --max-size 20GB --keep-last 3 --dry-run\n  \
    cicache --store s3://ci-cache/team-a prune --max-unused 7d\n  \
    cicache prune --damaged --max-size 50GB"
)]
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
#[command(
    after_help = "Reads every byte of every entry (or of one) and checks it against its \
    hash; exits 1 when an entry is damaged, naming it.\n\n\
    Examples:\n  \
    cicache verify\n  \
    cicache --scope main verify --key 'pip-{{ hashFiles \"requirements*.txt\" }}'\n  \
    cicache verify --repair"
)]
pub struct VerifyArgs {
    /// Only this key (in --scope); default: every entry of every scope.
    #[arg(long, env = "CICACHE_KEY")]
    pub key: Option<String>,
    /// Also remove every damaged entry, so the next save of its key writes it again
    /// (damaged objects are removed either way).
    #[arg(long, env = "CICACHE_VERIFY_REPAIR", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0, default_missing_value = "true")]
    pub repair: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "The archive holds the entry's files as a plain tar, zstd-compressed: \
    `tar --zstd -xf FILE` unpacks it anywhere.\n\n\
    Examples:\n  \
    cicache export --key pip-3f2a -o pip-cache.tar.zst\n  \
    cicache --scope main export --key 'pip-{{ hashFiles \"requirements*.txt\" }}' -o /tmp/pip.tar.zst"
)]
pub struct ExportArgs {
    /// The entry to export (in --scope, then the fallback scopes).
    #[arg(long, env = "CICACHE_KEY")]
    pub key: String,
    /// The .tar.zst file to write.
    #[arg(short, long, env = "CICACHE_EXPORT_OUTPUT", value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Members a cache cannot hold (devices, fifos, hard links) are left out \
    with a warning; an existing key is kept unless --update.\n\n\
    Examples:\n  \
    tar --zstd -cf pip-cache.tar.zst -C .pip-cache .\n  \
    cicache import --key pip-3f2a pip-cache.tar.zst\n  \
    cicache --scope main import --key pip-3f2a --update pip-cache.tar.gz"
)]
pub struct ImportArgs {
    /// The key to store the archive under (in --scope).
    #[arg(long, env = "CICACHE_KEY")]
    pub key: String,
    /// A .tar.zst, .tar.gz or .tar archive.
    pub file: PathBuf,
    /// Replace an existing entry with the same key.
    #[arg(long, env = "CICACHE_UPDATE", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0, default_missing_value = "true")]
    pub update: bool,
}
