//! Text and Markdown renderings of a [`BuildReport`].

use std::fmt::Write as _;

use super::{
    BuildReport, Step, StepKind, StepStatus, WheelSource, human_bytes, human_seconds, shorten,
};

fn status_word(s: &Step) -> String {
    match (s.status, s.seconds) {
        (StepStatus::Cached, _) => "CACHED".to_string(),
        (StepStatus::Error, _) => "FAILED".to_string(),
        (StepStatus::Canceled, _) => "canceled".to_string(),
        (StepStatus::Incomplete, _) => "no end".to_string(),
        (StepStatus::Done, Some(t)) => human_seconds(t),
        (StepStatus::Done, None) => "ran".to_string(),
    }
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
        let _ = writeln!(
            o,
            "  steps: {} cached, {} ran{} of {}",
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
                .map(|(i, c)| format!("build {}: {}/{} cached", i + 1, c.cached, c.total))
                .collect();
            let _ = writeln!(o, "    {}", each.join(", "));
        }
        for s in r.step_list.iter().filter(|s| s.kind != StepKind::Internal) {
            let build = if r.builds > 1 {
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
    let steps: Vec<&Step> = r
        .step_list
        .iter()
        .filter(|s| s.kind != StepKind::Internal)
        .collect();
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
