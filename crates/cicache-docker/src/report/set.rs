//! The reports of several logs as one document: what `cicache report a.log b.log` prints.

use serde::Serialize;

use super::BuildReport;

/// One log's report, named by the file it was read from.
#[derive(Debug, Serialize)]
pub struct FileReport<'a> {
    /// The path as given (`-` for standard input).
    pub file: &'a str,
    #[serde(flatten)]
    pub report: &'a BuildReport,
}

/// The reports of every log given (the JSON document of docs/JSON.md, section `report`).
#[derive(Debug, Serialize)]
pub struct ReportSet<'a> {
    /// Every log was read, holds a build or pip output, and no build in them failed.
    pub ok: bool,
    pub reports: Vec<FileReport<'a>>,
}

impl<'a> ReportSet<'a> {
    /// `reports`: each log's path as given and its report.
    pub fn new(reports: &'a [(String, BuildReport)]) -> Self {
        ReportSet {
            ok: reports.iter().all(|(_, r)| r.ok),
            reports: reports
                .iter()
                .map(|(file, report)| FileReport { file, report })
                .collect(),
        }
    }

    /// Each report as text; with several logs, each under `== FILE`.
    pub fn text(&self) -> String {
        self.join(|f| format!("== {}\n", f.file), BuildReport::render_text)
    }

    /// Each report as Markdown; with several logs, each under `### FILE`.
    pub fn markdown(&self) -> String {
        self.join(
            |f| format!("### {}\n\n", f.file),
            BuildReport::render_markdown,
        )
    }

    /// One self-contained page with every report.
    pub fn html(&self) -> String {
        let pages: Vec<(&str, &BuildReport)> =
            self.reports.iter().map(|f| (f.file, f.report)).collect();
        super::html::document(&pages).trim_end().to_string()
    }

    fn join(
        &self,
        heading: impl Fn(&FileReport) -> String,
        render: impl Fn(&BuildReport) -> String,
    ) -> String {
        let several = self.reports.len() > 1;
        let parts: Vec<String> = self
            .reports
            .iter()
            .map(|f| match several {
                true => format!("{}{}", heading(f), render(f.report)),
                false => render(f.report),
            })
            .collect();
        parts.join("\n\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_logs_get_headings_and_one_does_not() {
        let log = "#1 [1/2] FROM docker.io/library/python:3.12\n#1 DONE 0.1s\n\n\
                   #2 [2/2] RUN pip install -r requirements.txt\n#2 CACHED\n";
        let one = vec![("a.log".to_string(), super::super::parse_log(log))];
        let set = ReportSet::new(&one);
        assert!(!set.text().contains("== a.log"));
        assert_eq!(set.ok, one[0].1.ok);
        let two = vec![one[0].clone(), ("b.log".to_string(), one[0].1.clone())];
        let set = ReportSet::new(&two);
        assert!(set.text().starts_with("== a.log\n"), "{}", set.text());
        assert!(
            set.markdown().contains("\n\n### b.log\n\n"),
            "{}",
            set.markdown()
        );
        let json = serde_json::to_value(&set).unwrap();
        assert_eq!(json["reports"][1]["file"], "b.log");
    }
}
