//! The phases of a build as reported: a name, a status, the time taken, a message, and a
//! typed detail; and [`PhaseLog`], which records them in order and says each as it ends.

use std::time::{Duration, Instant};

use cicache_docker::dance::DanceResult;
use cicache_docker::report::StepCounts;
use serde::Serialize;

use crate::cache_dir::{RestoreDoc, SaveDoc};
use crate::error::BuildError;
use crate::events::Events;

/// How a phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseStatus {
    Ok,
    Skipped,
    /// A cache phase failed or reported problems; the build went on.
    Warning,
    Failed,
}

impl PhaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseStatus::Ok => "ok",
            PhaseStatus::Skipped => "skipped",
            PhaseStatus::Warning => "warning",
            PhaseStatus::Failed => "failed",
        }
    }
}

/// One phase of a build.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// check, restore, inject, prefetch, build, push, cache-export, extract, save, parse.
    pub name: &'static str,
    pub status: PhaseStatus,
    /// When it began, in seconds from the start of the build (absent when skipped): phases
    /// overlap (the prefetch beside restore and inject, extract and save beside the build's
    /// export and the push), so their order and seconds alone do not place them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<f64>,
    pub seconds: f64,
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<PhaseDetail>,
}

/// What a phase found or did, in its own shape (documented in docs/JSON.md, `build`).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum PhaseDetail {
    /// check: the cache-mount steps come from the layer cache of `mount_steps_from`.
    CheckMountSteps {
        inputs: Option<String>,
        mount_inputs: Option<String>,
        mount_steps_from: String,
    },
    /// check: building; how many cache-mount steps the cache tag shares.
    CheckBuild {
        inputs: Option<String>,
        mount_inputs: Option<String>,
        mount_steps_unchanged: Option<usize>,
    },
    /// check: unchanged inputs; the image of `from` is tagged.
    CheckUnchanged {
        inputs: String,
        from: String,
        digest: String,
    },
    Restore(RestoreDoc),
    Save(SaveDoc),
    Dance(DanceResult),
    /// prefetch by a build of the Dockerfile's first lines.
    PrefetchBuild {
        method: &'static str,
        steps: StepCounts,
        command: Vec<String>,
    },
    /// prefetch by a pull of the cache tag.
    PrefetchPull {
        method: &'static str,
        image: Option<String>,
        command: Vec<String>,
    },
    /// build: the failed build's exit code.
    BuildFailed {
        exit_code: i32,
        command: Vec<String>,
    },
    /// build: the command that ran.
    Build {
        command: Vec<String>,
    },
    /// push of an unchanged image: its digest under the tags.
    Tagged {
        digest: String,
        tags: Vec<String>,
    },
}

/// The order of a build's phase list (docs/JSON.md).
const ORDER: [&str; 10] = [
    "parse",
    "check",
    "restore",
    "inject",
    "prefetch",
    "build",
    "push",
    "cache-export",
    "extract",
    "save",
];

/// `1m12s`, `3.4s`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let m = (s / 60.0).floor();
        format!("{}m{:02}s", m as u64, (s - m * 60.0).round() as u64)
    }
}

/// The phases of one build, in the order they ended, and the warnings they gave.
pub(crate) struct PhaseLog<'a> {
    pub events: &'a dyn Events,
    pub strict: bool,
    pub list: Vec<Phase>,
    pub warnings: Vec<String>,
    /// Put before each log line (`base ` for the base image's build).
    pub prefix: &'static str,
    /// The start of the build: each phase's `start` is counted from it.
    origin: Instant,
}

impl<'a> PhaseLog<'a> {
    pub fn new(
        events: &'a dyn Events,
        strict: bool,
        prefix: &'static str,
        origin: Instant,
    ) -> Self {
        PhaseLog {
            events,
            strict,
            list: Vec::new(),
            warnings: Vec::new(),
            prefix,
            origin,
        }
    }

    /// Seconds from the build's start to `started`.
    fn start_of(&self, started: Instant) -> Option<f64> {
        Some(started.saturating_duration_since(self.origin).as_secs_f64())
    }

    pub fn skipped(&mut self, name: &'static str, why: impl Into<String>) {
        let why = why.into();
        self.events
            .info(&format!("{}{name}: skipped ({why})", self.prefix));
        self.list.push(Phase {
            name,
            status: PhaseStatus::Skipped,
            start: None,
            seconds: 0.0,
            message: Some(why),
            detail: None,
        });
    }

    pub fn ok(
        &mut self,
        name: &'static str,
        started: Instant,
        message: impl Into<String>,
        detail: Option<PhaseDetail>,
    ) {
        let message = message.into();
        self.events.info(&format!(
            "{}{name}: {message} ({})",
            self.prefix,
            human_duration(started.elapsed())
        ));
        self.list.push(Phase {
            name,
            status: PhaseStatus::Ok,
            start: self.start_of(started),
            seconds: started.elapsed().as_secs_f64(),
            message: Some(message),
            detail,
        });
    }

    /// A store phase's result: ok, or a warning when the store reported cache problems (they
    /// were said already; with strict the phase returned an error instead).
    pub fn store_result(
        &mut self,
        name: &'static str,
        started: Instant,
        message: String,
        problems: &[String],
        failed: bool,
        detail: PhaseDetail,
    ) {
        if problems.is_empty() && !failed {
            return self.ok(name, started, message, Some(detail));
        }
        let msg = format!("{}{name}: {}", self.prefix, problems.join("; "));
        self.warnings.push(msg.clone());
        self.list.push(Phase {
            name,
            status: PhaseStatus::Warning,
            start: self.start_of(started),
            seconds: started.elapsed().as_secs_f64(),
            message: Some(msg),
            detail: Some(detail),
        });
    }

    /// A cache phase failed: a warning, or when strict an error.
    pub fn cache_failed(
        &mut self,
        name: &'static str,
        started: Instant,
        err: impl std::fmt::Display,
    ) -> Result<(), BuildError> {
        let msg = format!("{}{name} failed: {err}", self.prefix);
        let seconds = started.elapsed().as_secs_f64();
        if self.strict {
            self.list.push(Phase {
                name,
                status: PhaseStatus::Failed,
                start: self.start_of(started),
                seconds,
                message: Some(msg),
                detail: None,
            });
            return Err(BuildError::Strict {
                phase: name.to_string(),
                message: err.to_string(),
            });
        }
        self.events.warn(&format!(
            "{msg} (the build goes on without it; --strict makes this an error)"
        ));
        self.warnings.push(msg.clone());
        self.list.push(Phase {
            name,
            status: PhaseStatus::Warning,
            start: self.start_of(started),
            seconds,
            message: Some(msg),
            detail: None,
        });
        Ok(())
    }

    /// A phase that failed the build (the Dockerfile build, the push): it began at `started`
    /// and took `seconds`.
    pub fn failed(
        &mut self,
        name: &'static str,
        started: Instant,
        seconds: f64,
        message: String,
        detail: Option<PhaseDetail>,
    ) {
        self.list.push(Phase {
            name,
            status: PhaseStatus::Failed,
            start: self.start_of(started),
            seconds,
            message: Some(message),
            detail,
        });
    }

    /// The phases in the order docs/JSON.md lists them (a phase is recorded when it ends, and
    /// some run beside others: the prefetch beside restore and inject, a restore left for
    /// after the build's steps beside the export). The same phase twice keeps its order.
    pub fn in_order(mut self) -> (Vec<Phase>, Vec<String>) {
        let rank = |name: &str| ORDER.iter().position(|n| *n == name).unwrap_or(ORDER.len());
        self.list.sort_by_key(|p| rank(p.name));
        (self.list, self.warnings)
    }

    /// Takes over the phases and warnings of a log that ran beside this one.
    pub fn append(&mut self, other: PhaseLog) {
        self.list.extend(other.list);
        self.warnings.extend(other.warnings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Quiet;
    impl Events for Quiet {
        fn info(&self, _: &str) {}
        fn warn(&self, _: &str) {}
        fn error(&self, _: &str) {}
        fn summary(&self, _: &str) {}
        fn docker_line(&self, _: &str) {}
        fn verbose(&self) -> bool {
            false
        }
        fn progress(&self, _: &str) -> Box<dyn cicache_store::Progress> {
            Box::new(cicache_store::NoProgress)
        }
    }

    #[test]
    fn the_list_is_in_the_documented_order_whenever_a_phase_ended() {
        let start = Instant::now();
        let mut ph = PhaseLog::new(&Quiet, false, "", start);
        ph.ok("check", start, "built", None);
        ph.skipped("inject", "a small step");
        ph.ok("prefetch", start, "pulled", None);
        ph.ok("build", start, "built", None);
        // Beside the build's export: a restore left for after the steps, then extract, save.
        let mut beside = PhaseLog::new(&Quiet, false, "", start);
        beside.ok("restore", start, "restored", None);
        beside.ok("extract", start, "extracted", None);
        beside
            .cache_failed("save", start, "the store is down")
            .unwrap();
        ph.append(beside);
        ph.ok("push", start, "pushed", None);
        ph.skipped("cache-export", "kept");
        ph.skipped("unknown", "last");
        let (list, warnings) = ph.in_order();
        let names: Vec<&str> = list.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "check",
                "restore",
                "inject",
                "prefetch",
                "build",
                "push",
                "cache-export",
                "extract",
                "save",
                "unknown"
            ]
        );
        assert_eq!(warnings, ["save failed: the store is down"]);
    }
}
