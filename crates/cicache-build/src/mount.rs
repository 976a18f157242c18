//! `cicache mount inject|extract`: the cache dance on its own, for pipelines that run
//! `docker build` themselves: a directory into the Dockerfile's cache mounts, or back out.

use std::path::PathBuf;

use serde::Serialize;

use cicache_docker::dance::{self, DanceOptions, DanceResult, MountResult};
use cicache_docker::dockerfile;
use cicache_docker::engine::{Docker, Flavour};

use crate::error::{BuildError, Result};
use crate::mounts::{describe_dance, select_mounts};
use crate::phase::human_duration;
use crate::spec::DockerSpec;

/// Which way the files go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountAction {
    /// The directory into the cache mounts.
    Inject,
    /// The cache mounts into the directory.
    Extract,
}

impl MountAction {
    fn as_str(self) -> &'static str {
        match self {
            MountAction::Inject => "inject",
            MountAction::Extract => "extract",
        }
    }
}

/// What `cicache mount` is asked to do.
#[derive(Debug, Clone)]
pub struct MountRequest {
    pub action: MountAction,
    pub dockerfile: PathBuf,
    /// The directory injected from or extracted to.
    pub dir: PathBuf,
    pub docker: DockerSpec,
}

/// `cicache mount`'s result (docs/JSON.md, section `mount`).
#[derive(Debug, Serialize)]
pub struct MountDoc {
    pub ok: bool,
    pub action: &'static str,
    pub dir: PathBuf,
    pub dockerfile: PathBuf,
    pub flavour: Flavour,
    pub ran: bool,
    pub seconds: f64,
    pub mounts: Vec<MountResult>,
    pub method: Option<&'static str>,
    pub fallback: Option<String>,
    pub merged: bool,
    /// A line per mount, for a person.
    #[serde(skip)]
    pub lines: Vec<String>,
    /// The Dockerfile has no cache mount: nothing was done.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl MountDoc {
    pub fn text(&self) -> String {
        let mut t = self.lines.join("\n");
        t.push_str(&format!(
            "\n{} in {}",
            self.action,
            human_duration(std::time::Duration::from_secs_f64(self.seconds))
        ));
        t
    }
}

/// Runs the dance for the Dockerfile's cache mounts (those of `docker.mount_ids`, else
/// all). `echo` gets the helper build's output lines.
pub fn mount(req: &MountRequest, echo: Option<&(dyn Fn(&str) + Sync)>) -> Result<MountDoc> {
    let df =
        dockerfile::parse_file(&req.dockerfile).map_err(|e| BuildError::Usage(e.to_string()))?;
    let mounts = select_mounts(&df, &req.docker.mount_ids, &req.dockerfile)?;
    let mut warnings = Vec::new();
    if mounts.is_empty() {
        warnings.push(format!(
            "{} has no RUN --mount=type=cache: nothing to {}",
            req.dockerfile.display(),
            req.action.as_str()
        ));
    }
    let docker = Docker::new(&req.docker.program);
    let mode = req
        .docker
        .flavour
        .mode(&docker, req.docker.builder.as_deref());
    let opts = DanceOptions {
        flavour: mode.flavour,
        helper_image: req.docker.helper_image.clone(),
        extra_args: mode.builder_args(),
        log: None,
    };
    let dir = &req.dir;
    let result = match (mounts.is_empty(), req.action) {
        (true, _) => DanceResult {
            mounts: vec![],
            seconds: 0.0,
            ran: false,
            method: None,
            fallback: None,
            merged: false,
        },
        (false, MountAction::Inject) => {
            dance::inject(&docker, &mounts, dir, &opts, echo).map_err(|source| {
                BuildError::Docker {
                    what: format!("injecting {} into the cache mounts", dir.display()),
                    source,
                }
            })?
        }
        (false, MountAction::Extract) => dance::extract(&docker, &mounts, dir, &opts, false, echo)
            .map_err(|source| BuildError::Docker {
                what: format!("extracting the cache mounts into {}", dir.display()),
                source,
            })?,
    };
    let verb = match req.action {
        MountAction::Inject => "injected",
        MountAction::Extract => "extracted",
    };
    Ok(MountDoc {
        ok: true,
        action: req.action.as_str(),
        dir: dir.clone(),
        dockerfile: req.dockerfile.clone(),
        flavour: mode.flavour,
        ran: result.ran,
        seconds: result.seconds,
        lines: describe_dance(&result, verb),
        mounts: result.mounts,
        method: result.method,
        fallback: result.fallback,
        merged: result.merged,
        warnings,
    })
}
