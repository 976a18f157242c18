//! Store commands: key, restore, save, list, prune, verify, export, import.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Args;
use serde::Serialize;

use cicache_store::backend::{OpenOptions, open_backend};
use cicache_store::key::{ProcessEnv, render};
use cicache_store::maint::parse_size;
use cicache_store::{PrunePolicy, RestoreRequest, SaveRequest, SaveStatus, Store, StoreError};

use crate::cli::Context;
use crate::output::{exit, human_bytes, human_duration};

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
    /// Print what would be removed; remove nothing.
    #[arg(long, env = "CICACHE_DRY_RUN", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0, default_missing_value = "true")]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only this key (in --scope); default: every entry of every scope.
    #[arg(long)]
    pub key: Option<String>,
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

/// Opens the store named by --store / CICACHE_STORE / cicache.yml, else the default one.
pub fn open_store(ctx: &Context) -> Result<Store> {
    let spec = ctx.global.store.clone().or(ctx.config.store.clone());
    let timeout: Option<Duration> = match (&ctx.global.timeout, &ctx.config.timeout) {
        (Some(t), _) => Some((*t).into()),
        (None, Some(t)) => Some(
            humantime::parse_duration(t)
                .with_context(|| format!("timeout {t:?} in cicache.yml is not a duration"))?,
        ),
        (None, None) => None,
    };
    let opts = OpenOptions { timeout };
    let backend = match spec.as_deref().and_then(|s| s.strip_prefix("oci://")) {
        // An OCI registry (crates/cicache-registry/src/store.rs, docs/OCI.md).
        Some(rest) => cicache_registry::store::open(rest, None, &opts),
        None => open_backend(spec.as_deref(), &opts),
    }
    .context("cannot open the store")?;
    Ok(Store::new(backend))
}

/// Renders a key that may be a template (globs relative to the working directory).
pub fn render_key(template: &str) -> Result<String> {
    Ok(render(template, Path::new("."), &ProcessEnv)?)
}

/// Renders a restore-key prefix that may be a template (`pip-{{ os }}-`).
fn render_prefix(prefix: &str) -> Result<String> {
    if prefix.contains("{{") {
        render_key(prefix)
    } else {
        Ok(prefix.to_string())
    }
}

/// Errors that are the user's to fix (a bad key, a missing directory): always failures.
/// Everything else about a cache is a warning unless --strict.
fn is_usage_error(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::InvalidKey { .. }
            | StoreError::InvalidScope { .. }
            | StoreError::Template { .. }
            | StoreError::NotADirectory { .. }
    )
}

fn required<T>(v: Option<T>, what: &str, config_key: &str) -> Result<T> {
    v.ok_or_else(|| anyhow!("{what} is required: pass it, or set {config_key} in cicache.yml"))
}

/// `--key` and `--path`, else `cache.key` and `cache.path` of cicache.yml.
fn key_and_path(
    key: Option<String>,
    path: Option<PathBuf>,
    ctx: &Context,
) -> Result<(String, PathBuf)> {
    let key = required(key.or(ctx.config.cache.key.clone()), "--key", "cache.key")?;
    let path = required(
        path.or(ctx.config.cache.path.clone()),
        "--path",
        "cache.path",
    )?;
    Ok((key, path))
}

/// A repeatable flag's values, else the config file's list.
fn or_config(flag: Vec<String>, config: &[String]) -> Vec<String> {
    if flag.is_empty() {
        config.to_vec()
    } else {
        flag
    }
}

pub fn key(a: KeyArgs, ctx: &Context) -> Result<u8> {
    let template = required(
        a.template.or(ctx.config.cache.key.clone()),
        "a key template",
        "cache.key",
    )?;
    let key = render(&template, &a.base, &ProcessEnv)?;
    ctx.out.result(
        &serde_json::json!({ "template": template, "key": key }),
        || key.clone(),
    );
    Ok(exit::OK)
}

#[derive(Serialize)]
struct RestoreJson {
    status: &'static str,
    #[serde(flatten)]
    outcome: cicache_store::RestoreOutcome,
}

/// Restores a cache dir with the context's store and scopes; a cache problem is a warning in
/// the result unless --strict. Returns the JSON object `restore --json` prints.
pub fn restore_cache(
    ctx: &Context,
    key: &str,
    restore_keys: &[String],
    path: &Path,
) -> Result<serde_json::Value> {
    let (v, _) = do_restore(ctx, key, restore_keys, path, false)?;
    Ok(v)
}

fn do_restore(
    ctx: &Context,
    key: &str,
    restore_keys: &[String],
    path: &Path,
    lookup_only: bool,
) -> Result<(serde_json::Value, bool)> {
    let key = render_key(key)?;
    let restore_keys = restore_keys
        .iter()
        .map(|k| render_prefix(k))
        .collect::<Result<Vec<_>>>()?;
    let restore_keys = restore_keys.as_slice();
    let scope = ctx.scope();
    let fallbacks = ctx.fallback_scopes();
    let req = RestoreRequest {
        scope: &scope,
        fallback_scopes: &fallbacks,
        key: &key,
        restore_keys,
        path,
        lookup_only,
    };
    let progress = ctx.out.progress("restore");
    let result = open_store(ctx).and_then(|store| {
        ctx.out.info(format!(
            "restoring {key} (scope {scope}) from {}",
            store.location()
        ));
        store.restore(&req, &progress).map_err(anyhow::Error::from)
    });
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            if ctx.strict() || e.downcast_ref::<StoreError>().is_some_and(is_usage_error) {
                return Err(e.context(format!("restore of {key} into {} failed", path.display())));
            }
            // Printed with the outcome's other warnings below.
            let msg = format!(
                "{e:#}; continuing without the cache ({} left as it was)",
                path.display()
            );
            cicache_store::RestoreOutcome {
                key: key.clone(),
                path: path.to_path_buf(),
                lookup_only,
                warnings: vec![msg],
                ..Default::default()
            }
        }
    };
    for w in &outcome.warnings {
        ctx.out.warn(w);
    }
    if ctx.strict() && !outcome.warnings.is_empty() {
        bail!(
            "cache problems with --strict: {}",
            outcome.warnings.join("; ")
        );
    }
    if !ctx.out.json {
        if outcome.hit {
            let rate = outcome.bytes_downloaded as f64 / outcome.seconds.max(0.001) / 1e6;
            ctx.out.info(format!(
                "{} {} (scope {}){}: {} files, {}, {} read from the store, {:.0} MB/s, {}",
                if outcome.lookup_only {
                    "found"
                } else {
                    "restored"
                },
                outcome.matched_key.as_deref().unwrap_or(""),
                outcome.matched_scope.as_deref().unwrap_or(""),
                if outcome.up_to_date {
                    " (already up to date)"
                } else {
                    ""
                },
                outcome.files,
                human_bytes(outcome.total_size),
                human_bytes(outcome.bytes_downloaded),
                rate,
                human_duration(Duration::from_secs_f64(outcome.seconds)),
            ));
        } else {
            ctx.out.info(format!(
                "no entry matched {key} in scopes {scope}{}",
                fallbacks
                    .iter()
                    .map(|f| format!(", {f}"))
                    .collect::<String>()
            ));
        }
    }
    let hit = outcome.hit;
    let json = RestoreJson {
        status: if hit { "hit" } else { "miss" },
        outcome,
    };
    Ok((serde_json::to_value(&json)?, hit))
}

pub fn restore(a: RestoreArgs, ctx: &Context) -> Result<u8> {
    let (key, path) = key_and_path(a.key, a.path, ctx)?;
    let restore_keys = or_config(a.restore_keys, &ctx.config.cache.restore_keys);
    let (v, hit) = do_restore(ctx, &key, &restore_keys, &path, a.lookup_only)?;
    ctx.out.result(&v, || {
        if hit {
            format!("hit {}", v["matched_key"].as_str().unwrap_or_default())
        } else {
            "miss".to_string()
        }
    });
    Ok(if !hit && a.fail_on_miss {
        exit::MISS
    } else {
        exit::OK
    })
}

#[derive(Serialize)]
struct SaveJson {
    #[serde(flatten)]
    outcome: cicache_store::SaveOutcome,
}

/// Saves a cache dir with the context's store and scope; a cache problem is a warning in the
/// result (`status: "failed"`) unless --strict. Returns the JSON object `save --json` prints.
pub fn save_cache(
    ctx: &Context,
    key: &str,
    path: &Path,
    if_changed: bool,
) -> Result<serde_json::Value> {
    let excludes = ctx.config.cache.exclude.clone();
    do_save(ctx, key, path, false, if_changed, &excludes)
}

fn do_save(
    ctx: &Context,
    key: &str,
    path: &Path,
    update: bool,
    if_changed: bool,
    excludes: &[String],
) -> Result<serde_json::Value> {
    let key = render_key(key)?;
    let scope = ctx.scope();
    let req = SaveRequest {
        scope: &scope,
        key: &key,
        path,
        update,
        if_changed,
        excludes,
    };
    if !path.is_dir() && !ctx.strict() {
        // Like actions/cache: a build that never made its cache dir has nothing to save.
        let msg = format!(
            "{} does not exist or is not a directory; nothing was saved",
            path.display()
        );
        ctx.out.warn(&msg);
        return Ok(serde_json::json!({
            "status": "failed", "scope": scope, "key": key, "path": path, "warnings": [msg],
        }));
    }
    let progress = ctx.out.progress("save");
    let result = open_store(ctx).and_then(|store| {
        ctx.out.info(format!(
            "saving {} as {key} (scope {scope}) to {}",
            path.display(),
            store.location()
        ));
        store.save(&req, &progress).map_err(anyhow::Error::from)
    });
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            if ctx.strict() || e.downcast_ref::<StoreError>().is_some_and(is_usage_error) {
                return Err(e.context(format!("save of {} as {key} failed", path.display())));
            }
            let msg = format!("{e:#}; the cache was not saved, the build goes on");
            ctx.out.warn(&msg);
            return Ok(serde_json::json!({
                "status": "failed", "scope": scope, "key": key, "path": path, "warnings": [msg],
            }));
        }
    };
    for w in &outcome.warnings {
        ctx.out.warn(w);
    }
    if ctx.strict() && !outcome.warnings.is_empty() {
        bail!(
            "cache problems with --strict: {}",
            outcome.warnings.join("; ")
        );
    }
    if !ctx.out.json {
        let secs = Duration::from_secs_f64(outcome.seconds);
        let line = match outcome.status {
            SaveStatus::Saved => format!(
                "saved {key} (scope {scope}): {} files, {}, {} written ({} new of {} blobs{}), {:.0} MB/s, {}",
                outcome.files,
                human_bytes(outcome.total_size),
                human_bytes(outcome.bytes_uploaded),
                outcome.blobs_uploaded,
                outcome.blobs,
                if outcome.manifest_reused {
                    ", manifest reused"
                } else {
                    ""
                },
                outcome.total_size as f64 / outcome.seconds.max(0.001) / 1e6,
                human_duration(secs),
            ),
            SaveStatus::Exists => format!(
                "{key} (scope {scope}) is already saved; nothing written (--update replaces it)"
            ),
            SaveStatus::Unchanged => format!(
                "{} matches what was restored; nothing written (--if-changed)",
                path.display()
            ),
            SaveStatus::Concurrent => format!(
                "another agent saved {key} (scope {scope}) at the same time; theirs was kept"
            ),
        };
        ctx.out.info(line);
    }
    Ok(serde_json::to_value(SaveJson { outcome })?)
}

pub fn save(a: SaveArgs, ctx: &Context) -> Result<u8> {
    let (key, path) = key_and_path(a.key, a.path, ctx)?;
    let excludes = or_config(a.exclude, &ctx.config.cache.exclude);
    let v = do_save(ctx, &key, &path, a.update, a.if_changed, &excludes)?;
    ctx.out
        .result(&v, || v["status"].as_str().unwrap_or_default().to_string());
    Ok(exit::OK)
}

pub fn list(a: ListArgs, ctx: &Context) -> Result<u8> {
    let store = open_store(ctx)?;
    let entries = store
        .list(a.in_scope.as_deref())
        .with_context(|| format!("listing {}", store.location()))?;
    ctx.out.result(
        &serde_json::json!({ "store": store.location(), "entries": entries }),
        || {
            let mut t = format!(
                "{:<20} {:<40} {:>10} {:>10} {:<20} {:<20}\n",
                "SCOPE", "KEY", "SIZE", "STORED", "CREATED", "LAST USED"
            );
            for e in &entries {
                t.push_str(&format!(
                    "{:<20} {:<40} {:>10} {:>10} {:<20} {:<20}{}\n",
                    e.scope,
                    e.key,
                    human_bytes(e.total_size),
                    human_bytes(e.stored_size),
                    e.created.as_deref().unwrap_or("-"),
                    e.last_used.as_deref().unwrap_or("-"),
                    e.damaged
                        .as_ref()
                        .map(|d| format!("  DAMAGED: {d}"))
                        .unwrap_or_default(),
                ));
            }
            t.push_str(&format!(
                "{} entries in {}",
                entries.len(),
                store.location()
            ));
            t
        },
    );
    Ok(exit::OK)
}

fn duration_opt(
    flag: Option<humantime::Duration>,
    config: &Option<String>,
    name: &str,
) -> Result<Option<Duration>> {
    match (flag, config) {
        (Some(d), _) => Ok(Some(d.into())),
        (None, Some(s)) => Ok(Some(humantime::parse_duration(s).with_context(|| {
            format!("prune.{name} {s:?} in cicache.yml is not a duration (e.g. 14d)")
        })?)),
        (None, None) => Ok(None),
    }
}

pub fn prune(a: PruneArgs, ctx: &Context) -> Result<u8> {
    let c = &ctx.config.prune;
    let max_size = match a.max_size.as_ref().or(c.max_size.as_ref()) {
        Some(s) => Some(parse_size(s).map_err(|e| anyhow!("--max-size: {e}"))?),
        None => None,
    };
    let policy = PrunePolicy {
        max_age: duration_opt(a.max_age, &c.max_age, "max_age")?,
        max_unused: duration_opt(a.max_unused, &c.max_unused, "max_unused")?,
        max_size,
        keep_last: a.keep_last.or(c.keep_last),
        dry_run: a.dry_run,
    };
    let store = open_store(ctx)?;
    let out = store
        .prune(&policy)
        .with_context(|| format!("pruning {}", store.location()))?;
    for w in &out.warnings {
        ctx.out.warn(w);
    }
    if store.location().starts_with("oci://") && !out.dry_run {
        ctx.out.info(cicache_registry::store::PRUNE_NOTE);
    }
    ctx.out.result(&out, || {
        let mut t = String::new();
        for r in &out.entries_removed {
            t.push_str(&format!(
                "{} {}/{} ({}): {}\n",
                if out.dry_run { "would remove" } else { "removed" },
                r.scope,
                r.key,
                human_bytes(r.stored_size),
                r.reason
            ));
        }
        t.push_str(&format!(
            "{}{} of {} entries removed, {} manifests and {} blobs ({}) {}; store now {}; sweep: {}",
            if out.dry_run { "dry run: " } else { "" },
            out.entries_removed.len(),
            out.entries_before,
            out.manifests_removed,
            out.blobs_removed,
            human_bytes(out.bytes_freed),
            if out.dry_run { "would be freed" } else { "freed" },
            human_bytes(out.store_size),
            out.sweep
        ));
        t
    });
    Ok(exit::OK)
}

pub fn verify(a: VerifyArgs, ctx: &Context) -> Result<u8> {
    let store = open_store(ctx)?;
    let scope = ctx.scope();
    let out = match &a.key {
        Some(k) => store.verify(Some(&scope), Some(&render_key(k)?)),
        None => store.verify(None, None),
    }
    .with_context(|| format!("verifying {}", store.location()))?;
    ctx.out.result(&out, || {
        let mut t = String::new();
        for d in &out.damaged {
            t.push_str(&format!("DAMAGED {}/{}: {}\n", d.scope, d.key, d.reason));
        }
        t.push_str(&format!(
            "{} of {} entries ok ({} checked){}",
            out.ok,
            out.checked,
            human_bytes(out.bytes_checked),
            if out.damaged.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} damaged: save them again or run `cicache prune` to remove them",
                    out.damaged.len()
                )
            }
        ));
        t
    });
    Ok(if out.damaged.is_empty() {
        exit::OK
    } else {
        exit::FAILURE
    })
}

pub fn export(a: ExportArgs, ctx: &Context) -> Result<u8> {
    let store = open_store(ctx)?;
    let key = render_key(&a.key)?;
    let out = store
        .export(&ctx.scope(), &ctx.fallback_scopes(), &key, &a.output)
        .with_context(|| format!("exporting {key} to {}", a.output.display()))?;
    ctx.out.result(&out, || {
        format!(
            "exported {key} (scope {}) to {}: {} files, {} ({} compressed)",
            out.scope,
            out.file.display(),
            out.files,
            human_bytes(out.total_size),
            human_bytes(out.archive_size)
        )
    });
    Ok(exit::OK)
}

pub fn import(a: ImportArgs, ctx: &Context) -> Result<u8> {
    let store = open_store(ctx)?;
    let key = render_key(&a.key)?;
    let scope = ctx.scope();
    let out = store
        .import(&scope, &key, &a.file, a.update)
        .with_context(|| format!("importing {} as {key}", a.file.display()))?;
    for s in &out.skipped {
        ctx.out.warn(format!("not imported: {s}"));
    }
    ctx.out.result(&out, || {
        format!(
            "imported {} as {key} (scope {scope}): {:?}, {} files, {}",
            a.file.display(),
            out.save.status,
            out.save.files,
            human_bytes(out.save.total_size)
        )
    });
    Ok(exit::OK)
}
