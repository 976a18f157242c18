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
    pub max_age: Option<String>,
    pub max_unused: Option<String>,
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

impl Config {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_yaml::from_str(&text).with_context(|| {
            format!(
                "{} is not a valid cicache.yml (see docs/CONFIG.md for the keys)",
                path.display()
            )
        })
    }
}
