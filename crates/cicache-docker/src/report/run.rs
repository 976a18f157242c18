//! What `cicache build` did around the docker build: its phases (check, restore, inject,
//! prefetch, build, push, cache-export, extract, save) with their times, and the facts the
//! report's "why it missed" uses. A build log (`--log`) holds docker's output only; this comes
//! from the `cicache build --json` document (docs/JSON.md, section `build`), read by
//! [`BuildRun::from_json`], or is filled in directly by the caller.

use serde::Serialize;
use serde_json::Value;

/// How a phase ended (`phases[].status` of the build document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseStatus {
    Ok,
    Skipped,
    Warning,
    Failed,
}

/// One phase of `cicache build`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phase {
    /// `check`, `restore`, `inject`, `prefetch`, `build`, `push`, `cache-export`, `extract`,
    /// `save` (others are kept as they come).
    pub name: String,
    pub status: PhaseStatus,
    /// Seconds from the command's start; `None` when the document does not say (the report
    /// then lays the phases out in the order `cicache build` runs them).
    pub start: Option<f64>,
    pub seconds: f64,
    pub message: Option<String>,
    /// check: the inputs that differ from the cache tag's (`file:requirements.txt`,
    /// `arg:PIP_INDEX_URL`, `dockerfile`, `from:IMAGE`...), when the build knows them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed_inputs: Vec<String>,
    /// restore: what the store gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreFacts>,
    /// inject: files copied into the cache mounts, summed over the mounts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub injected_files: Option<u64>,
}

/// The restore phase's result, as far as the report needs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoreFacts {
    pub hit: bool,
    /// The entry has exactly the key, in the branch's own scope.
    pub exact: bool,
    pub key: Option<String>,
    pub matched_key: Option<String>,
    pub matched_scope: Option<String>,
}

/// `cicache build`'s run, as the report uses it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BuildRun {
    pub phases: Vec<Phase>,
    /// The registry caches the build read, in order (`--cache-from`).
    pub cache_from: Vec<String>,
    /// The whole command's time.
    pub seconds: Option<f64>,
}

/// The build document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BuildRunError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "not a `cicache build --json` document: no `phases` list (give the JSON that \
         `cicache --json build ...` printed on stdout)"
    )]
    NoPhases,
}

impl BuildRun {
    /// Reads the document `cicache --json build ...` prints. Fields it does not know are
    /// ignored; a phase without a known status counts as `ok`.
    pub fn from_json(text: &str) -> Result<BuildRun, BuildRunError> {
        let doc: Value = serde_json::from_str(text)?;
        let phases = doc
            .get("phases")
            .and_then(Value::as_array)
            .ok_or(BuildRunError::NoPhases)?;
        let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let phases = phases
            .iter()
            .filter_map(|p| {
                let name = str_of(p, "name")?;
                let status = match p.get("status").and_then(Value::as_str) {
                    Some("skipped") => PhaseStatus::Skipped,
                    Some("warning") => PhaseStatus::Warning,
                    Some("failed") => PhaseStatus::Failed,
                    _ => PhaseStatus::Ok,
                };
                let detail = p.get("detail").unwrap_or(&Value::Null);
                let changed_inputs = strings(detail, "changed_inputs");
                let restore = (name == "restore" && detail.get("hit").is_some()).then(|| {
                    let hit = detail.get("hit").and_then(Value::as_bool).unwrap_or(false);
                    RestoreFacts {
                        hit,
                        exact: detail.get("exact").and_then(Value::as_bool).unwrap_or(hit),
                        key: str_of(detail, "key"),
                        matched_key: str_of(detail, "matched_key"),
                        matched_scope: str_of(detail, "matched_scope"),
                    }
                });
                let injected_files = (name == "inject")
                    .then(|| detail.get("mounts").and_then(Value::as_array))
                    .flatten()
                    .map(|ms| {
                        ms.iter()
                            .filter_map(|m| m.get("files").and_then(Value::as_u64))
                            .sum()
                    });
                Some(Phase {
                    name,
                    status,
                    start: p
                        .get("start")
                        .and_then(Value::as_f64)
                        .filter(|s| s.is_finite() && *s >= 0.0),
                    seconds: p
                        .get("seconds")
                        .and_then(Value::as_f64)
                        .filter(|s| s.is_finite() && *s >= 0.0)
                        .unwrap_or(0.0),
                    message: str_of(p, "message"),
                    changed_inputs,
                    restore,
                    injected_files,
                })
            })
            .collect();
        Ok(BuildRun {
            phases,
            cache_from: strings(&doc, "cache_from"),
            seconds: doc.get("seconds").and_then(Value::as_f64),
        })
    }

    /// The phase with this name.
    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }
}

/// The strings of the list `v[key]`; empty when it is not there.
fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A phase placed on the report's time axis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseSpan {
    pub name: String,
    pub status: PhaseStatus,
    /// Seconds from the start of the command.
    pub start: f64,
    pub seconds: f64,
    pub message: Option<String>,
}

/// Places the phases on one axis. With `start` given, as given; else in the order
/// `cicache build` runs them: one after the other, except that the prefetch runs beside
/// restore and inject (the build waits for both), and extract and save beside push and
/// cache-export.
pub(super) fn layout(phases: &[Phase]) -> Vec<PhaseSpan> {
    let mut spans: Vec<PhaseSpan> = Vec::new();
    let mut cursor = 0.0f64;
    // Where the side branch (extract, then save, beside push) ends so far.
    let mut side_end: Option<f64> = None;
    let start_of = |spans: &[PhaseSpan], name: &str| {
        spans
            .iter()
            .find(|s| s.name == name && s.status != PhaseStatus::Skipped)
            .map(|s| s.start)
    };
    for p in phases {
        let start = match (p.start, p.name.as_str()) {
            (Some(s), _) => s,
            (None, "prefetch") => start_of(&spans, "restore")
                .or_else(|| start_of(&spans, "inject"))
                .unwrap_or(cursor),
            (None, "extract") => match start_of(&spans, "push") {
                Some(s) => s,
                None => cursor,
            },
            (None, "save") => side_end.unwrap_or(cursor),
            (None, _) => cursor,
        };
        let end = start + p.seconds;
        match p.name.as_str() {
            "extract" if p.start.is_none() && start_of(&spans, "push").is_some() => {
                side_end = Some(end);
            }
            "save" if side_end.is_some() => side_end = Some(end),
            _ => cursor = cursor.max(end),
        }
        if p.start.is_some() {
            cursor = cursor.max(end);
        }
        spans.push(PhaseSpan {
            name: p.name.clone(),
            status: p.status,
            start,
            seconds: p.seconds,
            message: p.message.clone(),
        });
    }
    spans
}
