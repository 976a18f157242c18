//! `cicache.yml`: defaults for options not given as flags or `CICACHE_*` variables.
//!
//! ```yaml
//! store: s3://ci-cache/team-a        # --store
//! scope: main                        # --scope
//! fallback_scopes: [main]            # --fallback-scope
//! strict: false                      # --strict
//! progress: auto                     # --progress
//! timeout: 30s                       # --timeout
//! cache:                             # defaults of save / restore
//!   key: 'pip-{{ hashFiles "requirements*.txt" }}-{{ os }}'
//!   restore_keys: [pip-]
//!   path: .pip-cache
//!   exclude: ['**/*.lock']
//! prune: { max_age: 14d, max_unused: 7d, max_size: 20GB, keep_last: 3 }
//! ```
//! Sections of other commands (`build`, `registry`) are documented in docs/CONFIG.md.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::Deserialize;

use crate::cli::ProgressMode;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub store: Option<String>,
    pub scope: Option<String>,
    pub fallback_scopes: Vec<String>,
    pub strict: Option<bool>,
    pub progress: Option<ProgressMode>,
    #[serde(deserialize_with = "scalar")]
    pub timeout: Option<String>,
    pub cache: CacheConfig,
    pub prune: PruneConfig,
    /// `cicache build` defaults (owned by cmd::docker).
    pub build: Option<serde_yaml::Value>,
    /// `cicache registry` defaults (owned by cmd::registry).
    pub registry: Option<serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    pub key: Option<String>,
    pub restore_keys: Vec<String>,
    pub path: Option<PathBuf>,
    pub exclude: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PruneConfig {
    #[serde(deserialize_with = "scalar")]
    pub max_age: Option<String>,
    #[serde(deserialize_with = "scalar")]
    pub max_unused: Option<String>,
    #[serde(deserialize_with = "scalar")]
    pub max_size: Option<String>,
    pub keep_last: Option<usize>,
}

impl<'de> Deserialize<'de> for ProgressMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        <ProgressMode as clap::ValueEnum>::from_str(&s, true).map_err(|_| {
            serde::de::Error::custom(format!(
                "progress: expected auto, always or never, got {s:?}"
            ))
        })
    }
}

/// A string, or a bare number kept as written (`timeout: 30`), so that the check below can
/// say what is missing (a unit) instead of a type error.
fn scalar<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<serde_yaml::Value>::deserialize(d)?;
    match v {
        None | Some(serde_yaml::Value::Null) => Ok(None),
        Some(serde_yaml::Value::String(s)) => Ok(Some(s)),
        Some(serde_yaml::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a string such as 30s or 20GB, got {other:?}"
        ))),
    }
}

/// A duration of cicache.yml (`30s`, `14d`); `name` is its key, for the message.
pub fn duration(s: &str, name: &str) -> Result<std::time::Duration> {
    humantime::parse_duration(s).map_err(|e| {
        let hint = if s.trim().chars().all(|c| c.is_ascii_digit()) {
            format!("; a number needs a unit: {s}s, {s}m, {s}h or {s}d")
        } else {
            String::new()
        };
        anyhow::anyhow!(
            "{name}: {s:?} in cicache.yml is not a duration ({e}){hint}; e.g. 30s, 2m, 14d"
        )
    })
}

impl Config {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let config: Config = serde_yaml::from_str(&text).with_context(|| {
            format!(
                "{} is not a valid cicache.yml (see docs/CONFIG.md for the keys)",
                path.display()
            )
        })?;
        config
            .check()
            .with_context(|| format!("{} (see docs/CONFIG.md)", path.display()))?;
        Ok(config)
    }

    /// Every value with a syntax is checked when the file is read, whichever command runs:
    /// a bad value is a configuration error (exit 2), not a failure halfway through.
    fn check(&self) -> Result<()> {
        if let Some(t) = &self.timeout {
            duration(t, "timeout")?;
        }
        let p = &self.prune;
        if let Some(s) = &p.max_age {
            duration(s, "prune.max_age")?;
        }
        if let Some(s) = &p.max_unused {
            duration(s, "prune.max_unused")?;
        }
        if let Some(s) = &p.max_size {
            cicache_store::maint::parse_size(s).map_err(|e| {
                anyhow::anyhow!(
                    "prune.max_size: {s:?} in cicache.yml is not a size ({e}); e.g. 20GB"
                )
            })?;
        }
        Ok(())
    }
}
