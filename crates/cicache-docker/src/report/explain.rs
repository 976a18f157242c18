//! Why a build missed its caches: the first step of the user's build that ran instead of
//! coming from the layer cache, and what is known about why.
//!
//! From the log alone: that step, the registry cache imports (`importing cache manifest from
//! REF` and whether BuildKit found the tag) and the wheels pip downloaded. From the
//! `cicache build --json` document ([`BuildRun`]) also: the unchanged-inputs check (which
//! inputs changed, when the build says), the restore (a miss, an older entry) and the inject
//! (a cache mount that got 0 files).

use serde::Serialize;

use super::run::{BuildRun, PhaseStatus};
use super::{BuildReport, LogFormat, StepKind, StepStatus, WheelSource, human_bytes, shorten};

/// What [`MissReason`] says, for programs (`miss.reasons[].kind` in the JSON report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissKind {
    /// No registry cache tag exists at all (a first build).
    NoCacheTag,
    /// The branch's own cache tag does not exist; the build read the default branch's.
    FellBackToDefaultTag,
    /// The build read no registry cache (`--cache-from`): only the daemon's own layers.
    NoRegistryCache,
    /// An input of the build changed (a file, a build argument, the Dockerfile, a base image).
    InputsChanged,
    /// The cache tag has the image, but not this step: something it depends on changed.
    StepChanged,
    /// The unchanged-inputs check did not run (`--rebuild`, nothing to hash...).
    CheckSkipped,
    /// The store had no entry for the cache key: the cache dir started empty.
    RestoreMiss,
    /// The store had only an older entry (a restore key, or the default branch's scope).
    RestoreOlder,
    /// The cache mounts got nothing: the inject copied 0 files.
    CacheMountEmpty,
    /// pip downloaded wheels its cache did not have.
    WheelsDownloaded,
}

/// One known reason, as a sentence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MissReason {
    pub kind: MissKind,
    pub message: String,
}

/// "Why it missed", for the text, Markdown, HTML and JSON reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MissExplanation {
    /// The first step of the user's build that ran instead of coming from the layer cache, as
    /// docker printed it; `None` when every step came from it (and only wheels missed).
    pub first_missed: Option<String>,
    /// Its Dockerfile instruction (`COPY requirements.txt .`).
    pub instruction: Option<String>,
    /// What is known about why, most telling first; empty when nothing is known.
    pub reasons: Vec<MissReason>,
}

/// A registry cache the build read (`--cache-from`), as BuildKit's log shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheImport {
    /// `127.0.0.1:5000/app:cache`.
    pub reference: String,
    /// BuildKit found it (the vertex finished without an error).
    pub found: bool,
    /// BuildKit's message when it did not (`...: not found`).
    pub error: Option<String>,
}

const IMPORT_PREFIX: &str = "importing cache manifest from ";

/// The cache imports of the user's builds, in log order.
pub(super) fn cache_imports(r: &BuildReport) -> Vec<CacheImport> {
    let mut out: Vec<CacheImport> = Vec::new();
    for s in r.step_list.iter().filter(|s| !s.helper) {
        let Some(reference) = s.name.strip_prefix(IMPORT_PREFIX) else {
            continue;
        };
        let reference = reference.trim().to_string();
        if out.iter().any(|c| c.reference == reference) {
            continue;
        }
        out.push(CacheImport {
            reference,
            found: matches!(s.status, StepStatus::Done | StepStatus::Cached),
            error: s.error.clone(),
        });
    }
    out
}

/// What the log alone says; `None` when nothing missed.
pub(super) fn from_log(r: &BuildReport) -> Option<MissExplanation> {
    let first = r.step_list.iter().find(|s| {
        s.kind == StepKind::Step
            && !s.helper
            && !matches!(s.status, StepStatus::Cached | StepStatus::Canceled)
    });
    let downloaded: Vec<_> = r
        .wheel_list
        .iter()
        .filter(|w| w.source == WheelSource::Download)
        .collect();
    if first.is_none() && downloaded.is_empty() {
        return None;
    }
    let mut reasons = Vec::new();
    if first.is_some() {
        let found: Vec<&CacheImport> = r.cache_imports.iter().filter(|c| c.found).collect();
        let missing: Vec<&CacheImport> = r.cache_imports.iter().filter(|c| !c.found).collect();
        match (found.first(), missing.is_empty()) {
            (Some(used), false) => reasons.push(MissReason {
                kind: MissKind::FellBackToDefaultTag,
                message: format!(
                    "no cache tag for this branch ({}): fell back to {}",
                    names(&missing),
                    used.reference
                ),
            }),
            (None, false) => reasons.push(MissReason {
                kind: MissKind::NoCacheTag,
                message: format!(
                    "no cache tag in the registry ({}): nothing to take layers from (a first build, \
                     or the tag was deleted)",
                    names(&missing)
                ),
            }),
            (Some(used), true) => reasons.push(MissReason {
                kind: MissKind::StepChanged,
                message: format!(
                    "{} has no layer for this step: the step, a file it copies, a build \
                     argument or an earlier step changed",
                    used.reference
                ),
            }),
            (None, true)
                if matches!(
                    r.format,
                    LogFormat::BuildkitPlain | LogFormat::BuildkitRawjson
                ) =>
            {
                reasons.push(MissReason {
                    kind: MissKind::NoRegistryCache,
                    message: "the build read no registry cache (no --cache-from): only this \
                              daemon's own layers could be used"
                        .to_string(),
                });
            }
            (None, true) => {}
        }
    }
    if !downloaded.is_empty() {
        let bytes: u64 = downloaded.iter().filter_map(|w| w.bytes).sum();
        let mut files: Vec<String> = downloaded.iter().take(3).map(|w| w.file.clone()).collect();
        if downloaded.len() > 3 {
            files.push(format!("{} more", downloaded.len() - 3));
        }
        reasons.push(MissReason {
            kind: MissKind::WheelsDownloaded,
            message: format!(
                "pip downloaded {} {} ({}) its cache did not have: {}",
                downloaded.len(),
                if downloaded.len() == 1 {
                    "file"
                } else {
                    "files"
                },
                human_bytes(bytes),
                files.join(", ")
            ),
        });
    }
    Some(MissExplanation {
        first_missed: first.map(|s| s.name.clone()),
        instruction: first.and_then(|s| s.instruction.clone()),
        reasons,
    })
}

fn names(list: &[&CacheImport]) -> String {
    list.iter()
        .map(|c| c.reference.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Adds what `cicache build` knew: the check, the restore and the inject. Reasons from the
/// build go first: they say what changed, the log only that something did.
pub(super) fn with_run(r: &BuildReport, run: &BuildRun) -> Option<MissExplanation> {
    let mut m = r.miss.clone()?;
    let mut known = Vec::new();
    let instruction = m.instruction.clone().unwrap_or_default();
    if let Some(check) = run.phase("check") {
        if check.status == PhaseStatus::Skipped {
            known.push(MissReason {
                kind: MissKind::CheckSkipped,
                message: format!(
                    "the unchanged-inputs check did not run: {}",
                    check.message.as_deref().unwrap_or("skipped")
                ),
            });
        }
        for input in &check.changed_inputs {
            known.push(MissReason {
                kind: MissKind::InputsChanged,
                message: changed_input(input, &instruction),
            });
        }
    }
    if let Some(restore) = run.phase("restore")
        && let Some(rs) = &restore.restore
    {
        if !rs.hit {
            known.push(MissReason {
                kind: MissKind::RestoreMiss,
                message: format!(
                    "no cache entry for {} in the store: the pip cache started empty",
                    rs.key.as_deref().unwrap_or("the key")
                ),
            });
        } else if !rs.exact {
            known.push(MissReason {
                kind: MissKind::RestoreOlder,
                message: format!(
                    "restored an older cache entry ({}{}): files added since were downloaded",
                    rs.matched_key.as_deref().unwrap_or("a restore key"),
                    rs.matched_scope
                        .as_deref()
                        .map(|s| format!(", scope {s}"))
                        .unwrap_or_default()
                ),
            });
        }
    }
    if let Some(inject) = run.phase("inject")
        && inject.status != PhaseStatus::Skipped
        && let Some(files) = inject.injected_files
        && files == 0
    {
        known.push(MissReason {
            kind: MissKind::CacheMountEmpty,
            message: "cache mount was empty: injected 0 files".to_string(),
        });
    }
    // The log can only say that the step's inputs differ; the build says which.
    if known.iter().any(|k| k.kind == MissKind::InputsChanged) {
        m.reasons.retain(|k| k.kind != MissKind::StepChanged);
    }
    known.append(&mut m.reasons);
    m.reasons = known;
    Some(m)
}

/// `file:requirements.txt` -> "`COPY requirements.txt .` changed: requirements.txt" when the
/// first missed step copies it; `arg:PIP_INDEX_URL` -> "build argument PIP_INDEX_URL changed".
fn changed_input(input: &str, instruction: &str) -> String {
    let (kind, name) = input.split_once(':').unwrap_or((input, ""));
    match kind {
        "file" => {
            let base = name.rsplit('/').next().unwrap_or(name);
            let word = instruction.split_whitespace().next().unwrap_or("");
            let copies = (word.eq_ignore_ascii_case("COPY") || word.eq_ignore_ascii_case("ADD"))
                && instruction.split_whitespace().any(|w| {
                    w == name || w == base || w.trim_start_matches("./") == name || w == "."
                });
            if copies {
                format!("`{}` changed: {name}", shorten(instruction, 80))
            } else {
                format!("a file the build copies changed: {name}")
            }
        }
        "arg" => format!("build argument {name} changed"),
        "dockerfile" => "the Dockerfile changed".to_string(),
        "from" => format!("the base image {name} changed"),
        "platform" => "the platform changed".to_string(),
        "target" => "--target changed".to_string(),
        "label" => format!("label {name} changed"),
        "dockerignore" => format!("{name} changed"),
        "extra" => "the docker arguments after -- changed".to_string(),
        _ => format!("{input} changed"),
    }
}
