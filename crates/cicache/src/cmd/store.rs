//! Store commands: key, restore, save, list, prune, verify, export, import.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};

use cicache_store::key::{ProcessEnv, render};
use cicache_store::maint::VerifyOptions;
use cicache_store::maint::parse_size;
use cicache_store::{PrunePolicy, SaveStatus};

use crate::cli::store::{
    ExportArgs, ImportArgs, KeyArgs, ListArgs, PruneArgs, RestoreArgs, SaveArgs, VerifyArgs,
};
use crate::output::{exit, human_bytes};

use cicache_store::backend::Access;

use crate::settings::{Context, open_store, usage};

/// Renders a key that may be a template (globs relative to the working directory).
fn render_key(template: &str) -> Result<String> {
    Ok(cicache_build::cache_dir::render_key(template)?)
}

/// Renders a restore-key prefix that may be a template (`pip-{{ os }}-`).
fn render_prefix(prefix: &str) -> Result<String> {
    Ok(cicache_build::cache_dir::render_prefix(prefix)?)
}

fn required<T>(v: Option<T>, what: &str, config_key: &str) -> Result<T> {
    v.ok_or_else(|| {
        usage(format!(
            "{what} is required: pass it, or set {config_key} in cicache.yml"
        ))
    })
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

/// Restores with the context's store and scopes (the same call as `cicache build`'s restore
/// phase): a cache problem is a warning in the result unless --strict. `restore_keys` are
/// rendered already.
fn do_restore(
    ctx: &Context,
    key: &str,
    restore_keys: &[String],
    path: &Path,
    lookup_only: bool,
) -> Result<(cicache_build::RestoreDoc, bool)> {
    let key = render_key(key)?;
    let settings = crate::settings::cache_settings(ctx)?;
    // Restore only reads: a missing directory store is a miss with a warning, never created.
    let store = crate::settings::cache_store_for(ctx, Access::Read);
    let doc = cicache_build::cache_dir::restore(
        &store,
        &settings,
        &key,
        restore_keys,
        path,
        lookup_only,
        &ctx.out,
    )?;
    let hit = doc.outcome.hit;
    Ok((doc, hit))
}

pub fn restore(a: RestoreArgs, ctx: &Context) -> Result<u8> {
    let (key, path) = key_and_path(a.key, a.path, ctx)?;
    let restore_keys = or_config(a.restore_keys, &ctx.config.cache.restore_keys)
        .iter()
        .map(|k| render_prefix(k))
        .collect::<Result<Vec<_>>>()?;
    let (v, hit) = do_restore(ctx, &key, &restore_keys, &path, a.lookup_only)?;
    ctx.out.result(&v, || {
        if hit {
            v.outcome.hit_line(&restore_keys, &ctx.scope())
        } else if v.store_unavailable {
            // Not a plain miss: the cache was never asked (the warning above says why).
            "miss (store unavailable)".to_string()
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

/// Saves with the context's store and scope (the same call as `cicache build`'s save phase):
/// a cache problem is a warning in the result (`status: "failed"`) unless --strict.
fn do_save(
    ctx: &Context,
    key: &str,
    path: &Path,
    mode: cicache_build::SaveMode,
    excludes: &[String],
) -> Result<cicache_build::SaveDoc> {
    let key = render_key(key)?;
    let mut settings = crate::settings::cache_settings(ctx)?;
    settings.excludes = excludes.to_vec();
    let store = crate::settings::cache_store(ctx);
    Ok(cicache_build::cache_dir::save(
        &store, &settings, &key, path, mode, &ctx.out,
    )?)
}

pub fn save(a: SaveArgs, ctx: &Context) -> Result<u8> {
    let (key, path) = key_and_path(a.key, a.path, ctx)?;
    let excludes = or_config(a.exclude, &ctx.config.cache.exclude);
    let mode = cicache_build::SaveMode {
        update: a.update,
        if_changed: a.if_changed,
    };
    let v = do_save(ctx, &key, &path, mode, &excludes)?;
    ctx.out.result(&v, || v.status().to_string());
    Ok(exit::OK)
}

pub fn list(a: ListArgs, ctx: &Context) -> Result<u8> {
    let store = open_store(ctx, Access::Read)?;
    let entries_found = store
        .list(a.in_scope.as_deref())
        .with_context(|| format!("listing {}", store.location()))?;
    // What the store holds, each object once however many entries share it (a listing of
    // every manifest and blob): only for the text, whose last line says it.
    let stored = if ctx.out.json || entries_found.is_empty() {
        None
    } else {
        match store.stored_size() {
            Ok(n) => Some(n),
            Err(e) => {
                ctx.out.warn(format!(
                    "the store's size is unknown: cannot list its objects: {e}"
                ));
                None
            }
        }
    };
    ctx.out.result(
        &serde_json::json!({ "store": store.location(), "entries": entries_found }),
        || {
            cicache_store::text::list_table(
                &entries_found,
                &store.location(),
                a.in_scope.as_deref(),
                stored,
            )
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
        Some(s) => Some(parse_size(s).map_err(|e| usage(format!("--max-size {s:?}: {e}")))?),
        None => None,
    };
    let policy = PrunePolicy {
        max_age: duration_opt(a.max_age, &c.max_age, "max_age")?,
        max_unused: duration_opt(a.max_unused, &c.max_unused, "max_unused")?,
        max_size,
        keep_last: a.keep_last.or(c.keep_last),
        dry_run: a.dry_run,
    };
    // A prune removes other people's caches: it acts only on a store the user named, and
    // only with a limit (a bare `cicache prune` once swept the shared /var/cache/cicache).
    if !ctx.store.is_named() {
        return Err(usage(
            "prune acts only on a store you name: pass --store, set CICACHE_STORE, or set store: in cicache.yml",
        ));
    }
    let limits = policy.limits(a.damaged);
    if limits.is_empty() {
        return Err(usage(
            "prune needs a limit: --max-age, --max-unused, --max-size, --keep-last or --damaged (or prune: in cicache.yml)",
        ));
    }
    let store = match open_store(ctx, Access::Read) {
        Ok(store) => store,
        // A scheduled cleanup on an agent that never saved: nothing to prune. A warning
        // (the store is named, so a typo shows), the store is not created; --strict fails.
        Err(e) if !ctx.strict() && crate::settings::is_missing_store(&e) => {
            let msg = format!("{e:#}; nothing to prune");
            ctx.out.warn(&msg);
            let out = cicache_store::PruneOutcome {
                dry_run: policy.dry_run,
                sweep: "skipped: the store does not exist".to_string(),
                warnings: vec![msg],
                ..Default::default()
            };
            let store = ctx.store.to_string();
            ctx.out.result(
                &PruneDoc {
                    store,
                    outcome: &out,
                },
                || format!("{} does not exist; nothing pruned", ctx.store),
            );
            return Ok(exit::OK);
        }
        Err(e) => return Err(e),
    };
    let first = format!(
        "{}pruning {} ({})",
        if policy.dry_run { "dry run: " } else { "" },
        store.location(),
        limits.join(", ")
    );
    let out = if a.damaged {
        store.prune_damaged(&policy)
    } else {
        store.prune(&policy)
    }
    .with_context(|| format!("pruning {}", store.location()))?;
    for w in &out.warnings {
        ctx.out.warn(w);
    }
    if store.location().starts_with("oci://") && !out.dry_run {
        ctx.out.info(cicache_registry::store::PRUNE_NOTE);
    }
    ctx.out.result(
        &PruneDoc {
            store: store.location(),
            outcome: &out,
        },
        || format!("{first}\n{}", out.text()),
    );
    Ok(exit::OK)
}

/// `prune --json`: the store it acted on, and the outcome.
#[derive(serde::Serialize)]
struct PruneDoc<'a> {
    store: String,
    #[serde(flatten)]
    outcome: &'a cicache_store::PruneOutcome,
}

pub fn verify(a: VerifyArgs, ctx: &Context) -> Result<u8> {
    let store = open_store(ctx, Access::Read)?;
    let scope = ctx.scope();
    let key = a.key.as_deref().map(render_key).transpose()?;
    let opts = VerifyOptions {
        scope: key.as_ref().map(|_| scope.as_str()),
        key: key.as_deref(),
        repair: a.repair,
        dry_run: false,
    };
    let out = store
        .verify_with(&opts)
        .with_context(|| format!("verifying {}", store.location()))?;
    ctx.out.result(&out, || {
        let mut t = String::new();
        for d in &out.damaged {
            t.push_str(&format!("DAMAGED {}/{}: {}\n", d.scope, d.key, d.reason));
        }
        t.push_str(&format!(
            "{} of {} entries ok ({} checked){}",
            out.entries_ok,
            out.checked,
            human_bytes(out.bytes_checked),
            if out.damaged.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} damaged: {}",
                    out.damaged.len(),
                    out.advice.clone().unwrap_or_else(|| {
                        "`cicache verify --repair` removes them; the next save writes them again"
                            .to_string()
                    })
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
    let store = open_store(ctx, Access::Read)?;
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
    let store = open_store(ctx, Access::Write)?;
    let key = render_key(&a.key)?;
    let scope = ctx.scope();
    let out = store
        .import(&scope, &key, &a.file, a.update)
        .with_context(|| format!("importing {} as {key}", a.file.display()))?;
    for s in &out.skipped {
        ctx.out.warn(format!("not imported: {s}"));
    }
    ctx.out.result(&out, || {
        let file = a.file.display();
        match out.save.status {
            SaveStatus::Saved => format!(
                "imported {file} as {key} (scope {scope}): {} files, {}",
                out.save.files,
                human_bytes(out.save.total_size)
            ),
            SaveStatus::Exists => format!(
                "{key} (scope {scope}) already exists; {file} was not imported (--update replaces it)"
            ),
            SaveStatus::Concurrent => format!(
                "another agent saved {key} (scope {scope}) at the same time; theirs was kept"
            ),
            SaveStatus::Empty => format!("{file} holds no files; nothing was imported"),
            SaveStatus::Unchanged => format!("{key} (scope {scope}) is unchanged; nothing was imported"),
            SaveStatus::Failed => format!("{file} was not imported: the save failed"),
        }
    });
    Ok(exit::OK)
}
