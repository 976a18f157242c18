//! Text and Markdown renderings of a [`BuildReport`].

use std::fmt::Write as _;

use super::{
    BuildReport, HelperKind, Step, StepKind, StepStatus, WheelSource, human_bytes, human_seconds,
    shorten,
};

/// The word in a step row: `CACHED`, `FAILED`, the time it ran; `base` for a `FROM` (which
/// the figures do not count).
pub(super) fn status_word(s: &Step) -> String {
    if s.kind == StepKind::From && matches!(s.status, StepStatus::Done | StepStatus::Cached) {
        return "base".to_string();
    }
    match (s.status, s.seconds) {
        (StepStatus::Cached, _) => "CACHED".to_string(),
        (StepStatus::Error, _) => "FAILED".to_string(),
        (StepStatus::Canceled, _) => "canceled".to_string(),
        (StepStatus::Incomplete, _) => "no end".to_string(),
        (StepStatus::Done, Some(t)) => human_seconds(t),
        (StepStatus::Done, None) => "ran".to_string(),
    }
}

pub(super) fn helper_word(k: HelperKind) -> &'static str {
    match k {
        HelperKind::Inject => "cicache inject",
        HelperKind::Extract => "cicache extract",
    }
}

/// `build 2`, or `build 1 (cicache inject)` for a helper build.
fn build_label(r: &BuildReport, build: usize) -> String {
    match r.helper_builds.iter().find(|h| h.build == build) {
        Some(h) => format!("build {} ({})", build + 1, helper_word(h.kind)),
        None => format!("build {}", build + 1),
    }
}

/// The steps a person reads: the user's Dockerfile instructions (BuildKit's own work and
/// cicache's helper builds left out).
pub(super) fn listed_steps(r: &BuildReport) -> impl Iterator<Item = &Step> {
    r.step_list
        .iter()
        .filter(|s| s.kind != StepKind::Internal && !s.helper)
}

pub(super) fn text(r: &BuildReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", r.verdict);
    let builds = if r.builds > 1 {
        format!(", {} builds", r.builds)
    } else {
        String::new()
    };
    let _ = writeln!(o, "  log: {}{builds}", r.format.describe());
    if let Some(s) = r.build_seconds {
        let how = match r.time_source {
            Some(super::TimeSource::StepSum) => " (sum of step times)",
            Some(super::TimeSource::Timestamps) => " (first start to last end)",
            Some(super::TimeSource::WallClock) => " (wall clock)",
            None => "",
        };
        let _ = writeln!(o, "  time: {}{how}", human_seconds(s));
    }
    if r.steps.total > 0 {
        let from = if listed_steps(r).any(|s| s.kind == StepKind::From) {
            " (FROM lines are base images, not counted)"
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "  steps: {} cached, {} ran{} of {}{from}",
            r.steps.cached,
            r.steps.run,
            if r.steps.failed > 0 {
                format!(" ({} failed)", r.steps.failed)
            } else {
                String::new()
            },
            r.steps.total
        );
        if r.per_build.len() > 1 {
            let each: Vec<String> = r
                .per_build
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{}: {}/{} cached", build_label(r, i), c.cached, c.total))
                .collect();
            let _ = writeln!(o, "    {}", each.join(", "));
        }
        let user_builds = r.builds.saturating_sub(r.helper_builds.len());
        for s in listed_steps(r) {
            let build = if user_builds > 1 {
                format!("build {}: ", s.build + 1)
            } else {
                String::new()
            };
            let _ = writeln!(
                o,
                "    {:>8}  {build}{}",
                status_word(s),
                shorten(&s.name, 100)
            );
        }
    }
    if let Some(m) = &r.miss {
        let _ = writeln!(o, "  why it missed:");
        if let Some(step) = &m.first_missed {
            let _ = writeln!(o, "    first step that ran: {}", shorten(step, 100));
        }
        for reason in &m.reasons {
            let _ = writeln!(o, "    - {}", reason.message);
        }
    }
    if !r.helper_builds.is_empty() {
        let each: Vec<String> = r
            .helper_builds
            .iter()
            .map(|h| match h.seconds {
                Some(t) => format!("{} {}", helper_word(h.kind), human_seconds(t)),
                None => helper_word(h.kind).to_string(),
            })
            .collect();
        let _ = writeln!(
            o,
            "  cicache's own builds (not counted): {}",
            each.join(", ")
        );
    }
    if !r.slowest.is_empty() {
        let _ = writeln!(o, "  slowest:");
        for s in &r.slowest {
            let _ = writeln!(
                o,
                "    {:>8}  {}",
                human_seconds(s.seconds),
                shorten(&s.name, 100)
            );
        }
    }
    let w = &r.wheels;
    if w.from_cache + w.downloaded > 0 {
        let _ = writeln!(
            o,
            "  wheels: {} from cache ({}), {} downloaded ({})",
            w.from_cache,
            human_bytes(w.bytes_from_cache),
            w.downloaded,
            human_bytes(w.bytes_downloaded)
        );
        for wh in r
            .wheel_list
            .iter()
            .filter(|w| w.source == WheelSource::Download)
        {
            let size = wh
                .bytes
                .map(human_bytes)
                .unwrap_or_else(|| "size unknown".into());
            let _ = writeln!(o, "    downloaded  {} ({size})", wh.file);
        }
    }
    if let Some(f) = &r.failure {
        let _ = writeln!(o, "  failure:");
        if let Some(step) = &f.step {
            let _ = writeln!(o, "    step: {step}");
        }
        let _ = writeln!(o, "    error: {}", f.error);
        for l in &f.lines {
            let _ = writeln!(o, "    | {l}");
        }
    }
    o.trim_end().to_string()
}

/// Escapes `|` and backticks so a step name stays in its table cell.
fn cell(s: &str) -> String {
    shorten(s, 100).replace('|', "\\|").replace('`', "'")
}

pub(super) fn markdown(r: &BuildReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "**{}**\n", r.verdict.replace('*', "\\*"));
    if let Some(f) = &r.failure {
        let _ = writeln!(
            o,
            "Failed step: `{}`\n",
            f.step
                .as_deref()
                .map(cell)
                .unwrap_or_else(|| "(none)".into())
        );
        let _ = writeln!(o, "```text\n{}", f.error);
        for l in &f.lines {
            let _ = writeln!(o, "{}", l.replace("```", "'''"));
        }
        let _ = writeln!(o, "```\n");
    }
    if let Some(m) = &r.miss {
        let _ = writeln!(o, "Why it missed:\n");
        if let Some(step) = &m.first_missed {
            let _ = writeln!(o, "- first step that ran: `{}`", cell(step));
        }
        for reason in &m.reasons {
            let _ = writeln!(o, "- {}", reason.message.replace('|', "\\|"));
        }
        let _ = writeln!(o);
    }
    let steps: Vec<&Step> = listed_steps(r).collect();
    if !steps.is_empty() {
        let _ = writeln!(o, "| step | result |\n|---|---|");
        for s in steps {
            let _ = writeln!(o, "| `{}` | {} |", cell(&s.name), status_word(s));
        }
        let _ = writeln!(o);
    }
    if !r.slowest.is_empty() {
        let _ = writeln!(o, "Slowest steps:\n");
        for s in &r.slowest {
            let _ = writeln!(o, "- {} `{}`", human_seconds(s.seconds), cell(&s.name));
        }
        let _ = writeln!(o);
    }
    let w = &r.wheels;
    if w.from_cache + w.downloaded > 0 {
        let _ = writeln!(
            o,
            "Wheels: {} from cache ({}), {} downloaded ({})\n",
            w.from_cache,
            human_bytes(w.bytes_from_cache),
            w.downloaded,
            human_bytes(w.bytes_downloaded)
        );
        let down: Vec<_> = r
            .wheel_list
            .iter()
            .filter(|w| w.source == WheelSource::Download)
            .collect();
        if !down.is_empty() {
            let _ = writeln!(o, "<details><summary>downloaded</summary>\n");
            for wh in down {
                let size = wh
                    .bytes
                    .map(human_bytes)
                    .unwrap_or_else(|| "size unknown".into());
                let _ = writeln!(o, "- `{}` ({size})", cell(&wh.file));
            }
            let _ = writeln!(o, "\n</details>\n");
        }
    }
    let _ = writeln!(o, "<sub>log: {}</sub>", r.format.describe());
    o.trim_end().to_string()
}
