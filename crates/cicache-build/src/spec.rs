//! What the user asked for: the build's request, resolved once by the binary (flags >
//! `CICACHE_*` variables > cicache.yml > defaults) and never read from the environment again.

use std::path::PathBuf;
use std::time::Duration;

use cicache_docker::engine::{BuildMode, Docker, Flavour};

/// The store key of the cache dir when none is given.
pub const DEFAULT_KEY: &str = r#"pip-{{ os }}-{{ arch }}-{{ hashFiles "**/requirements*.txt" }}"#;
/// The restore-key prefix when none is given.
pub const DEFAULT_RESTORE_KEY: &str = "pip-{{ os }}-{{ arch }}-";

/// One `cicache build` (or the nested build of a base image).
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// Repository without tag (`registry:5000/team/app`).
    pub image: String,
    /// Tags to build; `latest` when empty.
    pub tags: Vec<String>,
    /// The Dockerfile; `CONTEXT/Dockerfile` when `None`.
    pub dockerfile: Option<PathBuf>,
    /// `KEY=VALUE` build arguments (a later one of the same name wins).
    pub build_args: Vec<String>,
    pub target: Option<String>,
    pub context: PathBuf,
    /// The workspace copy of the cache mounts (restored, injected, extracted, saved).
    pub cache_dir: PathBuf,
    pub keys: KeyTemplates,
    /// Use and export the registry layer cache; `None`: when the image names a registry host.
    pub registry_cache: Option<bool>,
    pub push: bool,
    /// Which phases may run.
    pub switches: Switches,
    /// Build even when the inputs are those of the cache tag.
    pub rebuild: bool,
    /// Say what would run; run nothing.
    pub dry_run: bool,
    /// Where the docker build's output is also written (what `cicache report` reads).
    pub log: Option<PathBuf>,
    /// Build on a base image first (`--base-dockerfile`).
    pub base: Option<BaseOptions>,
    pub docker: DockerSpec,
    /// Arguments after `--`, passed to the docker build unchanged.
    pub extra: Vec<String>,
}

impl BuildSpec {
    /// The Dockerfile the build reads.
    pub fn dockerfile_path(&self) -> PathBuf {
        self.dockerfile
            .clone()
            .unwrap_or_else(|| self.context.join("Dockerfile"))
    }
}

/// The store key templates of the cache dir, rendered once per build (`hashFiles` walks the
/// tree).
#[derive(Debug, Clone)]
pub struct KeyTemplates {
    pub key: String,
    /// Prefixes tried when the key misses; each may be a template.
    pub restore_keys: Vec<String>,
}

impl Default for KeyTemplates {
    fn default() -> Self {
        KeyTemplates {
            key: DEFAULT_KEY.to_string(),
            restore_keys: vec![DEFAULT_RESTORE_KEY.to_string()],
        }
    }
}

/// The phases a build may run (all by default); `false` skips one.
#[derive(Debug, Clone, Copy)]
pub struct Switches {
    pub restore: bool,
    pub inject: bool,
    pub prefetch: bool,
    pub extract: bool,
    pub save: bool,
    pub report: bool,
    /// Extract and save after a failed build too (the wheels it downloaded are kept).
    pub save_on_failure: bool,
}

impl Default for Switches {
    fn default() -> Self {
        Switches {
            restore: true,
            inject: true,
            prefetch: true,
            extract: true,
            save: true,
            report: true,
            save_on_failure: true,
        }
    }
}

/// `--base-dockerfile` and its options.
#[derive(Debug, Clone)]
pub struct BaseOptions {
    /// The base Dockerfile (relative to the current directory; its context is the build's).
    pub dockerfile: PathBuf,
    /// Globs (relative to the context) of the files the base is made from; empty: the base
    /// Dockerfile's COPY/ADD sources.
    pub inputs: Vec<String>,
    pub build_args: Vec<String>,
    pub platform: Option<String>,
    /// The build argument that receives the base's reference.
    pub arg: String,
}

/// Which docker build to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlavourChoice {
    /// buildx when the plugin answers, else classic.
    #[default]
    Auto,
    Buildx,
    Classic,
}

impl FlavourChoice {
    /// How to build on this engine: the flavour, the cache exporter the builder supports,
    /// the builder, and why. A forced flavour without a builder asks the engine nothing.
    pub fn mode(self, docker: &Docker, builder: Option<&str>) -> BuildMode {
        let forced = match self {
            FlavourChoice::Auto => None,
            FlavourChoice::Buildx => Some(Flavour::Buildx),
            FlavourChoice::Classic => Some(Flavour::Classic),
        };
        match (forced, builder) {
            (Some(f), None) => BuildMode {
                reason: f.describe().to_string(),
                ..BuildMode::of_flavour(f)
            },
            _ => docker.capabilities(builder).decide(forced),
        }
    }
}

/// The docker client and the cache dance.
#[derive(Debug, Clone)]
pub struct DockerSpec {
    pub program: PathBuf,
    pub flavour: FlavourChoice,
    /// The image the cache-dance helper builds start FROM.
    pub helper_image: String,
    /// Only the cache mounts with these ids (empty: all of the Dockerfile's).
    pub mount_ids: Vec<String>,
    /// The buildx builder (`--builder NAME`); `None`: the current one.
    pub builder: Option<String>,
    /// Layer compression of the pushed image and the exported cache (buildx only).
    pub compression: Option<cicache_docker::build::Compression>,
}

/// What every cache phase needs to know beside the build: scopes, strictness, limits.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// The scope saves write to.
    pub scope: String,
    /// Scopes restores read after their own (the own scope not among them).
    pub fallback_scopes: Vec<String>,
    /// Cache problems fail the build instead of being warnings.
    pub strict: bool,
    /// Globs left out of a save.
    pub excludes: Vec<String>,
    /// Bound on each registry request.
    pub registry_timeout: Duration,
}
