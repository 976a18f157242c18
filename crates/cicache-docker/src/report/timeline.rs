//! The report's timeline: one bar per step on a time axis, and cicache's phases as a second
//! lane. How good the axis is depends on the log:
//!
//! - BuildKit rawjson has each vertex's start and end: bars sit where the steps ran
//!   (stages in parallel overlap);
//! - plain progress has each step's duration and their order: bars are laid one after the
//!   other (an upper bound when stages ran in parallel);
//! - the classic builder prints no times: one equal slot per step, in order.

use serde::Serialize;

use super::run::{PhaseSpan, PhaseStatus};
use super::{BuildReport, HelperKind, Step, StepKind, StepStatus};

/// What the time axis means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeAxis {
    /// Real start and end times (rawjson).
    Clock,
    /// Step durations laid end to end (plain progress).
    StepTimes,
    /// No times: one slot per step (the classic builder).
    Order,
}

/// How a bar is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BarStatus {
    Cached,
    Ran,
    Failed,
    /// Canceled or never finished.
    Stopped,
    /// A `FROM` (base image) or BuildKit's own work; a skipped phase.
    Other,
}

/// One bar.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bar {
    /// Index into [`BuildReport::step_list`] (step bars), `None` for phases.
    pub step: Option<usize>,
    /// Short text beside the bar.
    pub label: String,
    pub kind: Option<StepKind>,
    pub status: BarStatus,
    /// On the axis: seconds (or slots for [`TimeAxis::Order`]).
    pub start: f64,
    pub length: f64,
    /// The step's or phase's own time, when known.
    pub seconds: Option<f64>,
}

/// The timeline of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    pub axis: TimeAxis,
    /// The axis' end (seconds, or slots).
    pub end: f64,
    /// cicache's phases (empty when the log is not a `cicache build` one).
    pub phases: Vec<Bar>,
    /// The user's build: one bar per step (BuildKit's own work included, cicache's helper
    /// builds not: they are the inject and extract phases).
    pub steps: Vec<Bar>,
}

pub(super) fn bar_status(s: &Step) -> BarStatus {
    match (s.kind, s.status) {
        (StepKind::Step, StepStatus::Cached) => BarStatus::Cached,
        (_, StepStatus::Error) => BarStatus::Failed,
        (StepKind::Step, StepStatus::Done) => BarStatus::Ran,
        (StepKind::Step, _) => BarStatus::Stopped,
        (_, _) => BarStatus::Other,
    }
}

pub(super) fn build(r: &BuildReport) -> Timeline {
    let steps: Vec<(usize, &Step)> = r
        .step_list
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.helper)
        .collect();
    let axis = if steps.iter().any(|(_, s)| s.start.is_some()) {
        TimeAxis::Clock
    } else if steps.iter().any(|(_, s)| s.seconds.is_some()) {
        TimeAxis::StepTimes
    } else {
        TimeAxis::Order
    };
    // The steps start where the build phase does, when there is one.
    let offset = if axis == TimeAxis::Order {
        0.0
    } else {
        r.phases
            .iter()
            .find(|p| p.name == "build")
            .map(|p| p.start)
            .unwrap_or(0.0)
    };
    let mut cursor = offset;
    let mut bars = Vec::with_capacity(steps.len());
    for (i, s) in steps {
        let (start, length) = match axis {
            // A vertex that never started sits where the one before it ended.
            TimeAxis::Clock => (
                s.start.map(|t| offset + t).unwrap_or(cursor),
                s.seconds.unwrap_or(0.0),
            ),
            TimeAxis::StepTimes => (cursor, s.seconds.unwrap_or(0.0)),
            TimeAxis::Order => (cursor, 1.0),
        };
        cursor = start + length;
        bars.push(Bar {
            step: Some(i),
            label: s.instruction.clone().unwrap_or_else(|| s.name.clone()),
            kind: Some(s.kind),
            status: bar_status(s),
            start,
            length,
            seconds: s.seconds,
        });
    }
    let phases: Vec<Bar> = if axis == TimeAxis::Order {
        Vec::new()
    } else {
        r.phases.iter().map(phase_bar).collect()
    };
    let end = bars
        .iter()
        .chain(&phases)
        .map(|b| b.start + b.length)
        .fold(0.0f64, f64::max);
    Timeline {
        axis,
        end,
        phases,
        steps: bars,
    }
}

fn phase_bar(p: &PhaseSpan) -> Bar {
    Bar {
        step: None,
        label: p.name.clone(),
        kind: None,
        status: match p.status {
            PhaseStatus::Ok => BarStatus::Ran,
            PhaseStatus::Warning => BarStatus::Stopped,
            PhaseStatus::Failed => BarStatus::Failed,
            PhaseStatus::Skipped => BarStatus::Other,
        },
        start: p.start,
        length: p.seconds,
        seconds: Some(p.seconds),
    }
}

/// Phases read from a `cicache build --log` file alone: the helper builds and the user's
/// build between them, one after the other, each as long as its steps' times add up to.
pub(super) fn phases_from_log(r: &BuildReport) -> Vec<PhaseSpan> {
    if r.helper_builds.is_empty() {
        return Vec::new();
    }
    let mut spans = Vec::new();
    let mut cursor = 0.0;
    for build in 0..r.builds {
        let (name, seconds) = match r.helper_builds.iter().find(|h| h.build == build) {
            Some(h) => (
                match h.kind {
                    HelperKind::Inject => "inject",
                    HelperKind::Extract => "extract",
                },
                h.seconds.unwrap_or(0.0),
            ),
            None => (
                "build",
                r.step_list
                    .iter()
                    .filter(|s| s.build == build)
                    .filter_map(|s| s.seconds)
                    .sum(),
            ),
        };
        let failed = r.step_list.iter().any(|s| {
            s.build == build && s.status == StepStatus::Error && s.kind != StepKind::Internal
        });
        spans.push(PhaseSpan {
            name: name.to_string(),
            status: if failed {
                PhaseStatus::Failed
            } else {
                PhaseStatus::Ok
            },
            start: cursor,
            seconds,
            message: None,
        });
        cursor += seconds;
    }
    spans
}
