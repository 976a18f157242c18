//! The cache dir and the store: restore before the build, save after it. The same two calls
//! serve `cicache restore` and `cicache save`, so a build's `restore` and `save` documents are
//! those commands' documents.
//!
//! A cache problem (a store that is down, a damaged entry) is a warning in the result unless
//! strict; a problem that is the user's to fix (a bad key, a path that is not a directory) is
//! always an error.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use cicache_docker::report::human_bytes;
use cicache_store::key::{ProcessEnv, render};
use cicache_store::{
    RestoreOutcome, RestoreRequest, SaveOutcome, SaveRequest, SaveStatus, Store, StoreError,
};
use serde::Serialize;

use crate::events::Events;
use crate::phase::human_duration;
use crate::spec::CacheSettings;

/// A cache problem that ends the command: strict, or the user's to fix. The message holds the
/// whole chain of causes.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CacheError(pub String);

/// The store, opened on first use and at most once per command (a build's restore and save
/// share it). Opening fails with a message that names the store and the cause.
pub struct CacheStore {
    open: Box<dyn Fn() -> Result<Store, String> + Send + Sync>,
    store: OnceLock<Result<Store, String>>,
}

impl CacheStore {
    pub fn new(open: impl Fn() -> Result<Store, String> + Send + Sync + 'static) -> Self {
        CacheStore {
            open: Box::new(open),
            store: OnceLock::new(),
        }
    }

    /// The store, opened now if it was not yet.
    pub fn get(&self) -> Result<&Store, String> {
        self.store
            .get_or_init(|| (self.open)())
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// `restore --json`: `status` and the store's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreDoc {
    pub status: &'static str,
    /// The store could not be opened or answered with an error: the miss says nothing about
    /// the cache (`warnings` says why).
    pub store_unavailable: bool,
    #[serde(flatten)]
    pub outcome: RestoreOutcome,
}

/// `save --json`: the store's outcome, or a save that could not be made (the same
/// document, `status: "failed"`, every count 0, the reason in `warnings`).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum SaveDoc {
    Done(SaveOutcome),
    Failed(SaveOutcome),
}

impl SaveDoc {
    fn failed(scope: &str, key: &str, path: &Path, msg: String) -> Self {
        SaveDoc::Failed(SaveOutcome::failed(scope, key, path, msg))
    }

    /// `saved`, `exists`, `unchanged`, `concurrent`, `empty` or `failed`.
    pub fn status(&self) -> &'static str {
        match self {
            SaveDoc::Done(o) => o.status.as_str(),
            SaveDoc::Failed(_) => "failed",
        }
    }

    pub fn key(&self) -> &str {
        match self {
            SaveDoc::Done(o) | SaveDoc::Failed(o) => &o.key,
        }
    }

    pub fn warnings(&self) -> &[String] {
        match self {
            SaveDoc::Done(o) | SaveDoc::Failed(o) => &o.warnings,
        }
    }
}

/// Renders a key that may be a template (globs relative to the working directory).
pub fn render_key(template: &str) -> Result<String, CacheError> {
    render(template, Path::new("."), &ProcessEnv).map_err(|e| CacheError(chain(&e)))
}

/// Renders a restore-key prefix that may be a template (`pip-{{ os }}-`).
pub fn render_prefix(prefix: &str) -> Result<String, CacheError> {
    if prefix.contains("{{") {
        render_key(prefix)
    } else {
        Ok(prefix.to_string())
    }
}

/// An error and its causes, `outer: inner: innermost`.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Errors that are the user's to fix (a bad key, a missing directory): always failures.
fn is_usage_error(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::InvalidKey { .. }
            | StoreError::InvalidScope { .. }
            | StoreError::Template { .. }
            | StoreError::NotADirectory { .. }
            | StoreError::TargetHoldsStore { .. }
    )
}

/// A store call's failure: the store could not be opened, or it answered with an error.
enum StoreFailure {
    Open(String),
    Store(StoreError),
}

impl StoreFailure {
    fn message(&self) -> String {
        match self {
            StoreFailure::Open(m) => m.clone(),
            StoreFailure::Store(e) => chain(e),
        }
    }
    fn is_usage(&self) -> bool {
        matches!(self, StoreFailure::Store(e) if is_usage_error(e))
    }
}

/// Restores the cache dir `path` from the first entry that matches `key` (rendered), then
/// each restore-key prefix (rendered), in the own scope and then the fallback scopes.
pub fn restore(
    store: &CacheStore,
    settings: &CacheSettings,
    key: &str,
    restore_keys: &[String],
    path: &Path,
    lookup_only: bool,
    events: &dyn Events,
) -> Result<RestoreDoc, CacheError> {
    let scope = settings.scope.as_str();
    let fallbacks = &settings.fallback_scopes;
    let req = request(settings, key, restore_keys, path, lookup_only);
    let progress = events.progress("restore");
    let result = store.get().map_err(StoreFailure::Open).and_then(|store| {
        events.info(&format!(
            "restoring {key} (scope {scope}) from {}",
            store.location()
        ));
        store
            .restore(&req, progress.as_ref())
            .map_err(StoreFailure::Store)
    });
    let store_unavailable = matches!(
        &result,
        Err(StoreFailure::Open(_)) | Err(StoreFailure::Store(StoreError::Backend(_)))
    );
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            if settings.strict || e.is_usage() {
                return Err(CacheError(format!(
                    "restore of {key} into {} failed: {}",
                    path.display(),
                    e.message()
                )));
            }
            RestoreOutcome {
                warnings: vec![format!(
                    "{}; continuing without the cache ({} left as it was)",
                    e.message(),
                    path.display()
                )],
                ..RestoreOutcome::empty(key, path, lookup_only)
            }
        }
    };
    for w in &outcome.warnings {
        events.warn(w);
    }
    if settings.strict && !outcome.warnings.is_empty() {
        return Err(CacheError(format!(
            "cache problems with --strict: {}",
            outcome.warnings.join("; ")
        )));
    }
    if outcome.hit {
        let rate = outcome.bytes_downloaded as f64 / outcome.seconds.max(0.001) / 1e6;
        events.summary(&format!(
            "{} {} (scope {}){}: {}, {}, {} read from the store, {:.0} MB/s, {}",
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
            match outcome.files {
                Some(n) => format!("{n} files"),
                None => format!("{} entries", outcome.entries),
            },
            human_bytes(outcome.total_size),
            human_bytes(outcome.bytes_downloaded),
            rate,
            human_duration(Duration::from_secs_f64(outcome.seconds)),
        ));
    } else {
        events.summary(&format!(
            "no entry matched {key} in scopes {scope}{}",
            fallbacks
                .iter()
                .map(|f| format!(", {f}"))
                .collect::<String>()
        ));
    }
    Ok(RestoreDoc {
        status: if outcome.hit { "hit" } else { "miss" },
        store_unavailable,
        outcome,
    })
}

/// The bytes of the entry a [`restore`] with these keys would take (`None`: none matched, or
/// the store could not say). Quiet: the restore that follows reports what it finds.
pub fn lookup_bytes(
    store: &CacheStore,
    settings: &CacheSettings,
    key: &str,
    restore_keys: &[String],
    path: &Path,
) -> Option<u64> {
    let req = request(settings, key, restore_keys, path, true);
    let outcome = store
        .get()
        .ok()?
        .restore(&req, &cicache_store::NoProgress)
        .ok()?;
    outcome.hit.then_some(outcome.total_size)
}

/// The store's restore request for the cache dir `path`: the own scope, then the fallbacks.
fn request<'a>(
    settings: &'a CacheSettings,
    key: &'a str,
    restore_keys: &'a [String],
    path: &'a Path,
    lookup_only: bool,
) -> RestoreRequest<'a> {
    RestoreRequest {
        scope: settings.scope.as_str(),
        fallback_scopes: &settings.fallback_scopes,
        key,
        restore_keys,
        path,
        lookup_only,
    }
}

/// How a save treats an existing entry.
#[derive(Debug, Clone, Copy, Default)]
pub struct SaveMode {
    /// Replace an existing entry with this key.
    pub update: bool,
    /// Skip when the directory matches what was restored into it.
    pub if_changed: bool,
}

/// Saves the cache dir `path` under `key` (rendered) in the own scope.
pub fn save(
    store: &CacheStore,
    settings: &CacheSettings,
    key: &str,
    path: &Path,
    mode: SaveMode,
    events: &dyn Events,
) -> Result<SaveDoc, CacheError> {
    let scope = settings.scope.as_str();
    let req = SaveRequest {
        scope,
        key,
        path,
        update: mode.update,
        if_changed: mode.if_changed,
        excludes: &settings.excludes,
    };
    if !path.is_dir() && !settings.strict {
        // Like actions/cache: a build that never made its cache dir has nothing to save.
        let msg = format!(
            "{} does not exist or is not a directory; nothing was saved",
            path.display()
        );
        events.warn(&msg);
        return Ok(SaveDoc::failed(scope, key, path, msg));
    }
    let progress = events.progress("save");
    let result = store.get().map_err(StoreFailure::Open).and_then(|store| {
        events.info(&format!(
            "saving {} as {key} (scope {scope}) to {}",
            path.display(),
            store.location()
        ));
        store
            .save(&req, progress.as_ref())
            .map_err(StoreFailure::Store)
    });
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            if settings.strict || e.is_usage() {
                return Err(CacheError(format!(
                    "save of {} as {key} failed: {}",
                    path.display(),
                    e.message()
                )));
            }
            let msg = format!(
                "{}; the cache was not saved, the build goes on",
                e.message()
            );
            events.warn(&msg);
            return Ok(SaveDoc::failed(scope, key, path, msg));
        }
    };
    for w in &outcome.warnings {
        events.warn(w);
    }
    if settings.strict && !outcome.warnings.is_empty() {
        return Err(CacheError(format!(
            "cache problems with --strict: {}",
            outcome.warnings.join("; ")
        )));
    }
    events.summary(&save_summary(&outcome, scope, path));
    Ok(SaveDoc::Done(outcome))
}

fn save_summary(o: &SaveOutcome, scope: &str, path: &Path) -> String {
    let key = &o.key;
    match o.status {
        SaveStatus::Saved => format!(
            "saved {key} (scope {scope}): {} files, {}, {} written ({} new of {} blobs{}), {:.0} MB/s, {}",
            o.files,
            human_bytes(o.total_size),
            human_bytes(o.bytes_uploaded),
            o.blobs_uploaded,
            o.blobs,
            if o.manifest_reused {
                ", manifest reused"
            } else {
                ""
            },
            o.total_size as f64 / o.seconds.max(0.001) / 1e6,
            human_duration(Duration::from_secs_f64(o.seconds)),
        ),
        SaveStatus::Exists => format!(
            "{key} (scope {scope}) is already saved; nothing written (--update replaces it)"
        ),
        SaveStatus::Unchanged => format!(
            "{} matches what was restored; nothing written (--if-changed)",
            path.display()
        ),
        SaveStatus::Concurrent => {
            format!("another agent saved {key} (scope {scope}) at the same time; theirs was kept")
        }
        SaveStatus::Empty => format!("{} holds no files; nothing was saved", path.display()),
        SaveStatus::Failed => format!("{key} (scope {scope}) was not saved"),
    }
}
