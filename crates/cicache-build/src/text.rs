//! What `cicache build` prints for a person, and its HTML report: renderings of the typed
//! outcome ([`BuildResult`]), kept apart from the outcome itself.

use std::time::Duration;

use cicache_docker::report::BuildRun;

use crate::outcome::{BuildDoc, BuildResult};
use crate::phase::{PhaseStatus, human_duration};

impl BuildResult {
    /// The build's result for a person (stdout without `--json`).
    pub fn text(&self) -> String {
        match self {
            BuildResult::Built(doc) => doc.text(),
            BuildResult::DryRun(d) => {
                let mut t = format!("would run: {}", d.build_command.join(" "));
                for c in d.push_commands.iter().chain(&d.cache_push_commands) {
                    t.push_str(&format!("\nthen: {}", c.join(" ")));
                }
                t
            }
            BuildResult::BaseFailed(d) => d.base.summary.clone(),
        }
    }
}

impl BuildDoc {
    /// A finished build: the base's line, the report, the phases and the total time.
    pub fn text(&self) -> String {
        let mut t = String::new();
        if let Some(u) = &self.unchanged {
            t.push_str(&format!(
                "unchanged: {} was built from the same inputs; tagged it, nothing built\n",
                u.from
            ));
        }
        if let Some(base) = &self.base {
            t.push_str(&base.summary);
            t.push('\n');
        }
        if let Some(r) = &self.report {
            t.push_str(&r.render_text());
            if !t.ends_with('\n') {
                t.push('\n');
            }
        }
        t.push_str("phases:");
        for p in &self.phases {
            t.push_str(&format!(
                "\n  {:<13} {:<8} {:>7}",
                p.name,
                p.status.as_str(),
                human_duration(Duration::from_secs_f64(p.seconds))
            ));
            if p.status != PhaseStatus::Ok
                && let Some(m) = &p.message
            {
                t.push_str(&format!("  {}", m.lines().next().unwrap_or_default()));
            }
        }
        t.push_str(&format!(
            "\ntotal {}",
            human_duration(Duration::from_secs_f64(self.seconds))
        ));
        t
    }

    /// The build's report as one HTML page with cicache's phases on the timeline, and a
    /// warning when the phases had to be left out. `None`: the build has no report
    /// (`--no-report`, or the image was tagged without building).
    pub fn report_html(&self) -> Option<(String, Option<String>)> {
        let mut report = self.report.clone()?;
        let warning = match serde_json::to_string(self)
            .map_err(|e| e.to_string())
            .and_then(|json| BuildRun::from_json(&json).map_err(|e| e.to_string()))
        {
            Ok(run) => {
                report.add_build_run(&run);
                None
            }
            Err(e) => Some(format!("the phases are left out: {e}")),
        };
        let title = format!("cicache build {}", self.image);
        Some((report.render_html(&title), warning))
    }
}
