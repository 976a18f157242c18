//! Settings every command shares, resolved once from the flags, the `CICACHE_*` variables
//! and cicache.yml (in that order), and the one store factory every command uses.

use std::time::Duration;

use anyhow::{Context as _, Result};
use cicache_build::{CacheSettings, CacheStore};
use cicache_store::Store;
use cicache_store::backend::{OpenOptions, open_backend};

use std::path::PathBuf;

use crate::cli::{GlobalArgs, ProgressMode};
use crate::config::Config;
use crate::output::Output;

/// `--timeout`, else `timeout:` of cicache.yml.
pub fn timeout(ctx: &Context) -> Result<Option<Duration>> {
    match (&ctx.global.timeout, &ctx.config.timeout) {
        (Some(t), _) => Ok(Some((*t).into())),
        (None, Some(t)) => humantime::parse_duration(t)
            .map(Some)
            .with_context(|| format!("timeout {t:?} in cicache.yml is not a duration")),
        (None, None) => Ok(None),
    }
}

/// The store spec named by --store / CICACHE_STORE / cicache.yml (`None`: the default one).
pub fn store_spec(ctx: &Context) -> Option<String> {
    ctx.global.store.clone().or(ctx.config.store.clone())
}

/// Opens a store: DIR, dir:DIR, s3://BUCKET/PREFIX, or oci://REGISTRY/REPOSITORY; `None` is
/// the default directory store. Every command opens its store here.
pub fn open_store_spec(spec: Option<&str>, timeout: Option<Duration>) -> Result<Store> {
    let opts = OpenOptions { timeout };
    let backend = match spec.and_then(|s| s.strip_prefix("oci://")) {
        // An OCI registry (crates/cicache-registry/src/store.rs, docs/OCI.md).
        Some(rest) => cicache_registry::store::open(rest, None, &opts),
        None => open_backend(spec, &opts),
    }
    .context("cannot open the store")?;
    Ok(Store::new(backend))
}

/// Opens the store named by --store / CICACHE_STORE / cicache.yml, else the default one.
pub fn open_store(ctx: &Context) -> Result<Store> {
    open_store_spec(store_spec(ctx).as_deref(), timeout(ctx)?)
}

/// The store of a build, opened on first use.
pub fn cache_store(ctx: &Context) -> CacheStore {
    let spec = store_spec(ctx);
    let timeout = timeout(ctx);
    CacheStore::new(move || {
        let timeout = timeout.as_ref().map_err(|e| format!("{e:#}"))?;
        open_store_spec(spec.as_deref(), *timeout).map_err(|e| format!("{e:#}"))
    })
}

/// Scopes, strictness, excludes and the registry's time limit, for the cache phases.
pub fn cache_settings(ctx: &Context) -> Result<CacheSettings> {
    Ok(CacheSettings {
        scope: ctx.scope(),
        fallback_scopes: ctx.fallback_scopes(),
        strict: ctx.strict(),
        excludes: ctx.config.cache.exclude.clone(),
        registry_timeout: timeout(ctx)?.unwrap_or(Duration::from_secs(30)),
    })
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
