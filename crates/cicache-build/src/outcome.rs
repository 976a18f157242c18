//! What a build returns: typed documents that serialize to the JSON of docs/JSON.md (`build`)
//! and that the Jenkins steps read. The binary prints them (text or JSON).

use std::path::PathBuf;

use cicache_docker::engine::Flavour;
use cicache_docker::report::{BuildReport, StepCounts};
use serde::Serialize;

use crate::base::BaseDoc;
use crate::cache_dir::{RestoreDoc, SaveDoc};
use crate::phase::Phase;

/// The result of `cicache build`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum BuildResult {
    /// The build ran (or was replaced by tagging an unchanged image).
    Built(Box<BuildDoc>),
    /// `--dry-run`: what would run.
    DryRun(Box<DryRunDoc>),
    /// The base image could not be had; nothing else ran.
    BaseFailed(Box<BaseFailedDoc>),
}

impl BuildResult {
    /// The command's exit code: 0, docker's own code when a Dockerfile step failed, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            BuildResult::Built(d) => d.code,
            BuildResult::DryRun(_) => 0,
            BuildResult::BaseFailed(d) => d.code,
        }
    }
}

/// A build that ran.
#[derive(Debug, Clone, Serialize)]
pub struct BuildDoc {
    #[serde(skip)]
    pub code: u8,
    pub ok: bool,
    /// docker's exit code (0 unless the build failed).
    pub exit_code: i32,
    pub image: String,
    /// `IMAGE:tag` of every tag.
    pub tags: Vec<String>,
    pub flavour: Flavour,
    pub registry_cache: bool,
    pub cache_from: Vec<String>,
    pub cache_to: Option<String>,
    pub cache_dir: PathBuf,
    pub phases: Vec<Phase>,
    pub warnings: Vec<String>,
    pub restore: Option<RestoreDoc>,
    pub save: Option<SaveDoc>,
    pub report: Option<BuildReport>,
    pub base: Option<Box<BaseDoc>>,
    pub seconds: f64,
    /// Set when the image was tagged instead of built.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unchanged: Option<Unchanged>,
    /// An unchanged build's step counts (all 0), for Jenkinsfiles that read `result.steps`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<StepCounts>,
    /// An unchanged build's verdict line, for the Jenkins build description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
}

/// The cache tag whose image an unchanged build tagged.
#[derive(Debug, Clone, Serialize)]
pub struct Unchanged {
    /// `IMAGE:tag`.
    pub from: String,
    pub digest: String,
    pub inputs: String,
}

/// `--dry-run`.
#[derive(Debug, Clone, Serialize)]
pub struct DryRunDoc {
    pub ok: bool,
    pub dry_run: bool,
    pub flavour: Flavour,
    /// The key template (not rendered).
    pub key: String,
    pub restore_keys: Vec<String>,
    pub cache_dir: PathBuf,
    pub mounts: Vec<DryRunMount>,
    /// The docker build, the program first.
    pub build_command: Vec<String>,
    pub push_commands: Vec<Vec<String>>,
    pub cache_push_commands: Vec<Vec<String>>,
    pub base: Option<Box<BaseDoc>>,
}

/// A cache mount the build would move.
#[derive(Debug, Clone, Serialize)]
pub struct DryRunMount {
    pub id: String,
    pub target: String,
    pub line: usize,
    pub dance_flag: String,
}

/// The base image failed; the app build did not run.
#[derive(Debug, Clone, Serialize)]
pub struct BaseFailedDoc {
    #[serde(skip)]
    pub code: u8,
    pub ok: bool,
    pub exit_code: u8,
    pub image: String,
    pub base: Box<BaseDoc>,
    pub phases: Vec<Phase>,
    pub warnings: Vec<String>,
}
