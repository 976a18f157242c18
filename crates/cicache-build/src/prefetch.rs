//! The prefetch: when the cache tag has the first cache-mount steps, their layers go into the
//! daemon beside restore and inject; the image build then takes them from there.
//!
//! It also keeps the cache tag whole: with docker 20.10 (BuildKit 0.8), a build that takes
//! steps from a registry's inline cache without the image pulled pushes an image whose inline
//! cache keeps only the steps the build loaded (the last cached one before a step that ran),
//! and the next fresh agent that needs an earlier one runs it again. So: `docker pull` of the
//! cache tag (every layer kept); but when the first cache-mount step is the only unchanged
//! one, a build of the Dockerfile up to it (stdin, --cache-from), which pulls only those
//! layers, and faster beside the inject: the image build loads that step, so it is kept, and
//! the steps before it only lose what no build needs.
//!
//! Only Docker 20.10 and older need it ([`not_needed_on`]): on Docker 26 (BuildKit 0.13,
//! graph-driver store, inline cache) the pull does not keep the cache tag whole (an image
//! whose cache-mount steps came from the cache, with only `COPY` run after them, has no
//! inline cache for them, pull or no pull: run.rs `kept_cache_tag` keeps the cache tag
//! instead) and costs more than the build saves (docs/BENCHMARKS.md, 26-graph); with the
//! registry exporter (containerd store) the check plans no prefetch at all.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use cicache_docker::build::BuildPlan;
use cicache_docker::engine::{Docker, DockerError, RunOutput, pull_keeps_inline_cache};
use cicache_docker::skip;

use crate::check::Prefetch;
use crate::error::BuildError;
use crate::inputs::dockerfile_ignore;
use crate::phase::{PhaseDetail, PhaseLog};

/// The prefetch's docker command: a pull of the cache tag, or (`build`) a build of the
/// Dockerfile's first lines, given on stdin, whose image id goes to the file named.
pub(crate) struct Job {
    pub args: Vec<String>,
    pub build: Option<(Vec<u8>, PathBuf)>,
    pub note: String,
}

/// Why a prefetch the check planned does not run on the daemon of this `docker version`
/// (`None`: it runs: Docker 20.10 and older, [`pull_keeps_inline_cache`]).
pub(crate) fn not_needed_on(server_version: Option<&str>) -> Option<String> {
    if pull_keeps_inline_cache(server_version) {
        return None;
    }
    Some(match server_version.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => format!(
            "docker {v}: a workaround for docker 20.10's BuildKit; on this engine a pull \
             does not keep the cache tag's inline cache whole and costs more than it saves"
        ),
        None => "the daemon's version is unknown; the prefetch is a workaround for docker 20.10 only"
            .to_string(),
    })
}

/// The command that brings in the layers of `p`.
pub(crate) fn plan(p: &Prefetch, dockerfile: &Path, plan: &BuildPlan) -> Job {
    let (end, k, n) = (p.end_line, p.unchanged, p.total);
    let from = &p.from;
    let what = if k >= n {
        format!("the layers of lines 1-{end} (every cache-mount step unchanged)")
    } else {
        format!("the layers of lines 1-{end} ({k} of {n} cache-mount steps unchanged)")
    };
    // A Dockerfile on stdin does not read a <Dockerfile>.dockerignore: pull instead.
    let prefix = (k == 1 && n > 1 && !dockerfile_ignore(dockerfile).exists())
        .then(|| std::fs::read(dockerfile).ok())
        .flatten();
    match prefix {
        Some(bytes) => {
            let iid = std::env::temp_dir().join(format!(
                "cicache-prefetch-{}-{}.iid",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
            ));
            Job {
                args: plan.prefetch_args(&iid),
                build: Some((skip::prefix(&bytes, end), iid)),
                note: format!("built {what} from {from}"),
            }
        }
        None => Job {
            args: vec!["pull".to_string(), "-q".to_string(), from.clone()],
            build: None,
            note: format!("pulled {from}: {what}"),
        },
    }
}

/// Beside a prefetch build, inject starts once the prefetch has matched its steps in the
/// layer cache: BuildKit 0.8 merges the identical FROM of two concurrent builds into one, and
/// the merged one does not consult the prefetch's --cache-from (its steps would run).
pub(crate) struct Gate {
    needed: bool,
    matched: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    pub fn new(job: Option<&Job>) -> Self {
        Gate {
            needed: job.is_some_and(|j| j.build.is_some()),
            matched: Mutex::new(false),
            cv: Condvar::new(),
        }
    }

    pub fn open(&self) {
        *self.matched.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_all();
    }

    /// Waits (at most 30 s) for the prefetch build to match its steps.
    pub fn wait(&self) {
        if !self.needed {
            return;
        }
        let guard = self.matched.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .cv
            .wait_timeout_while(guard, Duration::from_secs(30), |m| !*m);
    }
}

/// Runs the job; opens the gate at its first CACHED or pulling line (and at its end).
pub(crate) fn run(
    docker: &Docker,
    job: &Job,
    gate: &Gate,
) -> (Result<RunOutput, DockerError>, Instant) {
    let t = Instant::now();
    // A step found in the cache, or a layer being pulled: the match is made.
    let watch = |line: &str| {
        let status = line.split_once(' ').map(|(_, r)| r).unwrap_or_default();
        if status == "CACHED" || status.starts_with("pulling ") || status.starts_with("ERROR") {
            gate.open();
        }
    };
    let stdin = job.build.as_ref().map(|(text, _)| text.as_slice());
    let r = docker.run_checked(&job.args, stdin, Some(&watch), None);
    gate.open();
    (r, t)
}

/// The prefetch thread's result.
pub(crate) type Finished = std::thread::Result<(Result<RunOutput, DockerError>, Instant)>;

/// Records the prefetch phase; returns what to remove after the build: the prefetch build's
/// image record, or the pulled tag (their layers are the build's now; the cache export puts
/// the new image under the tag).
pub(crate) fn record(
    ph: &mut PhaseLog,
    job: &Job,
    finished: Finished,
) -> Result<Option<String>, BuildError> {
    let removable = match finished {
        Ok((Ok(out), t)) => match &job.build {
            Some((_, iid)) => {
                let r = cicache_docker::report::parse_log(&out.lines.join("\n"));
                let ran = r.steps.run;
                let mut msg = job.note.clone();
                if ran > 0 {
                    msg.push_str(&format!(
                        "; {ran} steps were not in the layer cache and ran"
                    ));
                }
                ph.ok(
                    "prefetch",
                    t,
                    msg,
                    Some(PhaseDetail::PrefetchBuild {
                        method: "build",
                        steps: r.steps,
                        command: job.args.clone(),
                    }),
                );
                std::fs::read_to_string(iid)
                    .ok()
                    .map(|s| s.trim().to_string())
            }
            None => {
                ph.ok(
                    "prefetch",
                    t,
                    job.note.clone(),
                    Some(PhaseDetail::PrefetchPull {
                        method: "pull",
                        image: job.args.last().cloned(),
                        command: job.args.clone(),
                    }),
                );
                job.args.last().cloned()
            }
        },
        Ok((Err(e), t)) => {
            ph.cache_failed("prefetch", t, format!("pulling the unchanged layers: {e}"))?;
            None
        }
        Err(_) => {
            ph.cache_failed("prefetch", Instant::now(), "the prefetch thread panicked")?;
            None
        }
    };
    if let Some((_, iid)) = &job.build {
        let _ = std::fs::remove_file(iid);
    }
    Ok(removable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_docker_20_10_and_older_prefetch() {
        assert_eq!(not_needed_on(Some("20.10.24+dfsg1")), None);
        assert_eq!(not_needed_on(Some("19.03.15\n")), None);
        let why = not_needed_on(Some("26.1.5+dfsg1")).unwrap();
        assert!(why.starts_with("docker 26.1.5+dfsg1: "), "{why}");
        assert!(not_needed_on(Some("23.0.0")).is_some());
        assert!(not_needed_on(Some("29.1.0")).is_some());
        assert!(not_needed_on(Some("")).unwrap().contains("unknown"));
        assert!(not_needed_on(None).unwrap().contains("unknown"));
    }
}
