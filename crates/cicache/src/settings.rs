//! Settings every command shares, resolved once from the flags, the `CICACHE_*` variables
//! and cicache.yml (in that order), and the one store factory every command uses.

use std::time::Duration;

use anyhow::{Context as _, Result};
use cicache_build::{CacheSettings, CacheStore};
use cicache_store::Store;
use cicache_store::backend::{Access, OpenOptions, StoreSpec, open_spec};

use std::path::PathBuf;

use cicache_docker::build::{Compression, CompressionKind};

use crate::cli::docker::{CompressionArg, CompressionArgs};
use crate::cli::{GlobalArgs, ProgressMode};
use crate::config::Config;
use crate::output::Output;

/// A usage or configuration error (a missing or malformed flag, a bad cicache.yml value, a
/// store spec that names no store): exit code 2, as the README promises.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A [`UsageError`] as an `anyhow::Error`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// `--timeout`, else `timeout:` of cicache.yml (checked when the config was read).
pub fn timeout(ctx: &Context) -> Result<Option<Duration>> {
    Ok(ctx.timeout)
}

/// The configured store with another time limit (`doctor`'s, which must answer quickly).
pub fn open_store_within(ctx: &Context, timeout: Duration, access: Access) -> Result<Store> {
    open_parsed(&ctx.store, Some(timeout), access)
}

/// A directory store that does not exist (`BackendError::Missing`), under any context.
pub fn is_missing_store(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<cicache_store::BackendError>(),
            Some(cicache_store::BackendError::Missing { .. })
        )
    })
}

/// Every command opens its store here.
fn open_parsed(spec: &StoreSpec, timeout: Option<Duration>, access: Access) -> Result<Store> {
    let opts = OpenOptions { timeout };
    let backend = match spec {
        // An OCI registry (crates/cicache-registry/src/store.rs, docs/OCI.md).
        StoreSpec::Oci(rest) => cicache_registry::store::open(rest, None, &opts),
        _ => open_spec(spec, &opts, access),
    }
    .context("cannot open the store")?;
    Ok(Store::new(backend))
}

/// Opens the store named by --store / CICACHE_STORE / cicache.yml, else the default one;
/// [`Access::Read`] for the commands that only read it (they never create a store).
pub fn open_store(ctx: &Context, access: Access) -> Result<Store> {
    open_parsed(&ctx.store, ctx.timeout, access)
}

/// The store of a build or a restore, opened on first use ([`Access::Read`]: `cicache
/// restore`, which must not create a store).
pub fn cache_store_for(ctx: &Context, access: Access) -> CacheStore {
    let spec = ctx.store.clone();
    let timeout = ctx.timeout;
    CacheStore::new(move || open_parsed(&spec, timeout, access).map_err(|e| format!("{e:#}")))
}

/// The store of a build (which saves too), opened on first use.
pub fn cache_store(ctx: &Context) -> CacheStore {
    cache_store_for(ctx, Access::Write)
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
    /// The store: --store / CICACHE_STORE, else `store:` of cicache.yml, else the default;
    /// checked here, before any command uses it.
    pub store: StoreSpec,
    /// --timeout / CICACHE_TIMEOUT, else `timeout:` of cicache.yml.
    pub timeout: Option<Duration>,
}

impl Context {
    /// Reads the config file and resolves what every command shares. Every error here is a
    /// usage or configuration error (exit 2).
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
        let store = match (&global.store, &config.store) {
            (Some(s), _) => StoreSpec::parse(s)
                .map_err(|e| anyhow::anyhow!("{e} (from --store or CICACHE_STORE)"))?,
            (None, Some(s)) => StoreSpec::parse(s)
                .map_err(|e| anyhow::anyhow!("{e} (from store: in cicache.yml)"))?,
            (None, None) => StoreSpec::Default,
        };
        let timeout = match (&global.timeout, &config.timeout) {
            (Some(t), _) => Some((*t).into()),
            (None, Some(t)) => Some(crate::config::duration(t, "timeout")?),
            (None, None) => None,
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
            store,
            timeout,
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

/// The `build:` section of cicache.yml: defaults for flags not given.
///
/// ```yaml
/// build:
///   image: registry.example.com/team/app
///   tags: [latest]
///   dockerfile: Dockerfile
///   cache_dir: .pip-cache
///   build_args: [BASE_IMAGE=python:3.12-slim]
///   registry_cache: true
///   push: false
///   helper_image: busybox:1.36
///   base_dockerfile: Dockerfile.base
///   base_inputs: [requirements*.txt]
///   compression: zstd
///   compression_level: 3
/// ```
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuildConfig {
    pub image: Option<String>,
    pub tags: Vec<String>,
    pub dockerfile: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub build_args: Vec<String>,
    pub registry_cache: Option<bool>,
    pub push: Option<bool>,
    pub helper_image: Option<String>,
    pub base_dockerfile: Option<PathBuf>,
    pub base_inputs: Vec<String>,
    pub compression: Option<CompressionArg>,
    pub compression_level: Option<u32>,
}

/// The `build:` section of cicache.yml, checked.
pub fn build_config(ctx: &Context) -> Result<BuildConfig> {
    match &ctx.config.build {
        None => Ok(BuildConfig::default()),
        Some(v) => serde_yaml::from_value(v.clone()).map_err(|e| {
            usage(format!(
                "the build: section of cicache.yml is not valid ({e}; keys: image, tags, \
                 dockerfile, cache_dir, build_args, registry_cache, push, helper_image, \
                 base_dockerfile, base_inputs, compression, compression_level; see docs/BUILD.md)"
            ))
        }),
    }
}

/// `--compression` and `--compression-level`: flag (or its `CICACHE_*` variable), else
/// cicache.yml; checked. The second value says where the choice came from.
pub fn compression(
    args: &CompressionArgs,
    cfg: &BuildConfig,
) -> Result<Option<(Compression, &'static str)>> {
    let level = args.compression_level;
    let source = if args.compression.is_some() {
        "--compression / CICACHE_COMPRESSION"
    } else {
        "build.compression of cicache.yml"
    };
    let Some(kind) = args.compression.or(cfg.compression) else {
        return match level.or(cfg.compression_level) {
            Some(_) => Err(usage(
                "--compression-level needs --compression gzip|zstd|estargz (or build.compression in cicache.yml)",
            )),
            None => Ok(None),
        };
    };
    let kind = match kind {
        CompressionArg::Gzip => CompressionKind::Gzip,
        CompressionArg::Zstd => CompressionKind::Zstd,
        CompressionArg::Estargz => CompressionKind::Estargz,
    };
    Compression::new(kind, level.or(cfg.compression_level))
        .map(|c| Some((c, source)))
        .map_err(usage)
}
