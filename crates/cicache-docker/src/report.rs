//! Build-log reports: what a Docker build took from its caches and where the time went.
//!
//! [`parse_log`] reads one log in any of the formats docker prints and returns a
//! [`BuildReport`]:
//!
//! - BuildKit plain progress (`--progress=plain`): `#8 [stage-0 4/6] RUN ...`, `#8 CACHED`,
//!   `#8 DONE 1.2s`, `#8 ERROR: ...`, `#8 0.728 output line`;
//! - BuildKit rawjson progress (`--progress=rawjson`): one `SolveStatus` JSON document per line
//!   (`{"vertexes":[...],"statuses":[...],"logs":[...]}`, log data base64);
//! - the classic builder (`DOCKER_BUILDKIT=0`): `Step 2/7 : RUN ...`, ` ---> Using cache`,
//!   ` ---> Running in ...`;
//! - pip's own lines (`Using cached x.whl (12 kB)`, `Downloading x.whl (12.3 MB)`), alone or
//!   inside any of the above (`#8 3.21 Downloading ...`).
//!
//! The format is detected per log. Parsing never fails and never panics: lines it does not
//! know are skipped, so a Jenkins console log with other output around the build works too.
//!
//! `cicache build` calls [`parse_log`] on the build's own output and prints
//! [`BuildReport::verdict`]; `cicache report` renders [`BuildReport::render_text`],
//! [`BuildReport::render_markdown`] or the JSON form (this type's `Serialize`, documented in
//! `docs/JSON.md`, section `report`).

mod buildkit;
mod classic;
mod explain;
pub mod html;
mod pip;
mod rawjson;
mod render;
mod run;
mod set;
mod timeline;
mod util;

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

pub use explain::{CacheImport, MissExplanation, MissKind, MissReason};
pub use run::{BuildRun, BuildRunError, Phase, PhaseSpan, PhaseStatus, RestoreFacts};
pub use set::{FileReport, ReportSet};
pub use timeline::{Bar, BarStatus, TimeAxis, Timeline};
pub use util::{human_bytes, human_seconds};

/// How many output lines of each step are kept, to show the lines that led to a failure.
const TAIL_LINES: usize = 20;
/// How many steps the "slowest" list holds.
const SLOWEST: usize = 5;

/// The log formats [`parse_log`] understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// BuildKit `--progress=plain`.
    BuildkitPlain,
    /// BuildKit `--progress=rawjson` (buildx 0.11+, buildctl).
    BuildkitRawjson,
    /// The classic builder, `DOCKER_BUILDKIT=0`.
    Classic,
    /// pip's output alone, no docker build around it.
    Pip,
    /// Nothing recognisable.
    Unknown,
}

impl LogFormat {
    pub fn describe(self) -> &'static str {
        match self {
            LogFormat::BuildkitPlain => "BuildKit plain progress",
            LogFormat::BuildkitRawjson => "BuildKit rawjson progress",
            LogFormat::Classic => "classic builder",
            LogFormat::Pip => "pip output",
            LogFormat::Unknown => "unknown (no docker build or pip lines found)",
        }
    }
}

/// What a step is: only Dockerfile instructions other than `FROM` count as steps in the
/// cached/total figures (a `FROM` of a local image is never `CACHED` in BuildKit's output, so
/// counting it would make a fully cached build look partly uncached).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// A Dockerfile instruction (`[stage 2/6] RUN ...`, `Step 2/6 : RUN ...`).
    Step,
    /// A `FROM` instruction: resolving the base image.
    From,
    /// BuildKit's own work: loading the Dockerfile and context, exporting, cache import.
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Taken from the layer cache.
    Cached,
    /// Ran and finished.
    Done,
    /// Ran and failed.
    Error,
    /// Stopped because another step failed.
    Canceled,
    /// Started, no end seen (the log was cut, or the classic builder failed elsewhere).
    Incomplete,
}

/// One step of a build.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Which build of the log the step belongs to (0 for the first; a log may hold several).
    pub build: usize,
    /// The step's id in the log: `#8` (plain), the vertex digest (rawjson), `Step 3/6` (classic).
    pub id: String,
    /// The step as docker printed it: `[stage-0 4/6] RUN echo hi`.
    pub name: String,
    pub kind: StepKind,
    /// The stage name (`builder`, `stage-0`) when the log shows one.
    pub stage: Option<String>,
    /// `4/6`: the instruction's position in its stage (BuildKit) or the Dockerfile (classic).
    pub position: Option<String>,
    /// The Dockerfile instruction, `RUN echo hi`.
    pub instruction: Option<String>,
    pub status: StepStatus,
    /// How long the step took; `None` when the log does not say (the classic builder).
    pub seconds: Option<f64>,
    /// When it started, in seconds from the first step's start; only rawjson progress says.
    pub start: Option<f64>,
    /// The error docker printed for the step.
    pub error: Option<String>,
    /// A step of one of cicache's own helper builds (the cache dance's inject and extract,
    /// which `cicache build --log` files hold around the user's build); see
    /// [`BuildReport::helper_builds`].
    pub helper: bool,
}

/// What one of cicache's helper builds in a log did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HelperKind {
    /// Copied the cache dir into the cache mounts.
    Inject,
    /// Copied the cache mounts out.
    Extract,
}

/// One of cicache's own helper builds found in a log (not counted in the figures).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HelperBuild {
    /// The build's number in the log (as [`Step::build`]).
    pub build: usize,
    pub kind: HelperKind,
    /// The sum of its step times, when the log gives them.
    pub seconds: Option<f64>,
}

/// Where pip got a distribution file from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WheelSource {
    /// pip's cache (`Using cached ...`).
    Cache,
    /// The index (`Downloading ...`).
    Download,
}

/// One distribution file pip used (a wheel, or an sdist).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Wheel {
    pub file: String,
    pub source: WheelSource,
    /// Size as pip printed it (rounded by pip: `18.3 MB`); `None` when pip did not say.
    pub bytes: Option<u64>,
    /// The step whose output it appeared in.
    pub step: Option<String>,
}

/// Step figures; only [`StepKind::Step`] steps count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StepCounts {
    pub total: usize,
    pub cached: usize,
    /// Ran (done, failed, canceled or incomplete).
    pub run: usize,
    pub failed: usize,
}

/// Wheel figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WheelCounts {
    pub from_cache: usize,
    pub downloaded: usize,
    /// Bytes pip did not download because its cache had them.
    pub bytes_from_cache: u64,
    pub bytes_downloaded: u64,
}

/// Why a build failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// The failing step as docker printed it; `None` when the build failed outside a step
    /// (a Dockerfile syntax error).
    pub step: Option<String>,
    /// docker's error message.
    pub error: String,
    /// The command's exit code, when the message gives one.
    pub exit_code: Option<i64>,
    /// The last output lines of the failing step (at most 20).
    pub lines: Vec<String>,
}

/// A step in the "slowest" list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlowStep {
    pub name: String,
    pub seconds: f64,
    pub status: StepStatus,
}

/// Where `build_seconds` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSource {
    /// First start to last end of the vertex timestamps (rawjson).
    Timestamps,
    /// The sum of the step times (plain progress prints no wall clock); an upper bound when
    /// stages ran in parallel.
    StepSum,
    /// Measured by the caller around the build (`cicache build`).
    WallClock,
}

/// The report of one build log. Serializes to the `report` schema of `docs/JSON.md`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildReport {
    pub format: LogFormat,
    /// How many builds the log holds.
    pub builds: usize,
    /// The line a person reads first; see [`BuildReport::verdict`].
    pub verdict: String,
    /// False when a build in the log failed, or the log holds nothing recognisable.
    pub ok: bool,
    pub steps: StepCounts,
    /// The step figures of each build when the log holds several (`cicache build --log`
    /// files, CI logs with more than one `docker build`); empty for one build.
    pub per_build: Vec<StepCounts>,
    pub wheels: WheelCounts,
    pub build_seconds: Option<f64>,
    pub time_source: Option<TimeSource>,
    /// The slowest steps that ran (not cached), slowest first, at most 5.
    pub slowest: Vec<SlowStep>,
    pub failure: Option<Failure>,
    /// cicache's own helper builds in the log (a `cicache build --log` file): the cache
    /// dance's inject and extract. Their steps are in `step_list` (`helper: true`) but not in
    /// `steps`, `slowest` or the build time: the figures are the user's build only.
    pub helper_builds: Vec<HelperBuild>,
    /// The registry caches the user's build read (`importing cache manifest from REF`).
    pub cache_imports: Vec<CacheImport>,
    /// Why it missed: the first step that ran instead of coming from the cache, and what is
    /// known about why; `None` when nothing missed (every step cached, no wheel downloaded).
    pub miss: Option<MissExplanation>,
    /// cicache's phases on the report's time axis: from the build document
    /// ([`BuildReport::add_build_run`]), else from the helper builds of a `cicache build
    /// --log` file; empty for other logs.
    pub phases: Vec<PhaseSpan>,
    /// Every step, in build order.
    pub step_list: Vec<Step>,
    /// Every distribution file pip fetched, in log order.
    pub wheel_list: Vec<Wheel>,
}

/// Reads one build log; see the module documentation for the formats.
pub fn parse_log(text: &str) -> BuildReport {
    let format = detect(text);
    let mut c = Collector::default();
    match format {
        LogFormat::BuildkitPlain => buildkit::parse(text, &mut c),
        LogFormat::BuildkitRawjson => rawjson::parse(text, &mut c),
        LogFormat::Classic => classic::parse(text, &mut c),
        LogFormat::Pip | LogFormat::Unknown => {
            for line in lines(text) {
                c.pip_line(None, &line);
            }
        }
    }
    c.finish(format)
}

/// [`parse_log`] over bytes that may not be UTF-8 (a log with binary noise in it).
pub fn parse_log_bytes(bytes: &[u8]) -> BuildReport {
    parse_log(&String::from_utf8_lossy(bytes))
}

impl BuildReport {
    /// Whether every step of the build came from the cache (none ran) and BuildKit found
    /// the cache manifest `reference`. An inline-cache image built that way carries no usable
    /// inline cache (moby/buildkit#1981: every second build misses; measured on Docker 26's
    /// graph store): pushing it as `reference` would replace a cache tag that has the steps.
    pub fn every_step_cached_from(&self, reference: &str) -> bool {
        self.steps.total > 0 && self.steps.run == 0 && self.imported(reference)
    }

    /// Whether BuildKit found the cache manifest `reference` (`--cache-from`).
    fn imported(&self, reference: &str) -> bool {
        self.cache_imports
            .iter()
            .any(|c| c.found && c.reference == reference)
    }

    /// Whether every `RUN` with a cache mount came from the layer cache
    /// ([`Self::cache_mount_steps_cached`]) and BuildKit found the cache manifest
    /// `reference`. On Docker 26's graph store (BuildKit 0.13, inline cache) an image built
    /// that way, with only `COPY` steps run after them, carries no inline cache for the steps
    /// it took from the cache (measured: the next fresh agent runs them all again).
    pub fn cache_mount_steps_cached_from(&self, reference: &str) -> bool {
        self.cache_mount_steps_cached() == Some(true) && self.imported(reference)
    }

    /// Whether every `RUN` with a cache mount that the log shows came from the layer cache
    /// (so the cache mounts hold nothing new): `Some(true)` when the log shows at least one
    /// such step and none of them ran, `Some(false)` when one ran, `None` when the log shows
    /// none (nothing to go by).
    pub fn cache_mount_steps_cached(&self) -> Option<bool> {
        let mut seen = false;
        for s in &self.step_list {
            let text = s.instruction.as_deref().unwrap_or(&s.name);
            if s.kind != StepKind::Step || !text.contains("--mount") || !text.contains("type=cache")
            {
                continue;
            }
            seen = true;
            if s.status != StepStatus::Cached {
                return Some(false);
            }
        }
        seen.then_some(true)
    }

    /// The first line a person reads, e.g.
    /// `cache: 7/9 steps cached, 41/42 wheels from cache (1.9 GB not downloaded), build 1m12s`;
    /// a failed build starts with `build FAILED at <step> (exit code N); `.
    pub fn verdict(&self) -> String {
        let mut parts = Vec::new();
        if self.steps.total > 0 {
            parts.push(format!(
                "{}/{} steps cached",
                self.steps.cached, self.steps.total
            ));
        }
        let w = &self.wheels;
        let fetched = w.from_cache + w.downloaded;
        if fetched > 0 {
            let mut detail = Vec::new();
            if w.bytes_from_cache > 0 {
                detail.push(format!(
                    "{} not downloaded",
                    human_bytes(w.bytes_from_cache)
                ));
            }
            if w.bytes_downloaded > 0 {
                detail.push(format!("{} downloaded", human_bytes(w.bytes_downloaded)));
            }
            let detail = if detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", detail.join(", "))
            };
            parts.push(format!(
                "{}/{fetched} wheels from cache{detail}",
                w.from_cache
            ));
        }
        if let Some(s) = self.build_seconds {
            parts.push(format!("build {}", human_seconds(s)));
        }
        let cache = if parts.is_empty() {
            match self.format {
                LogFormat::Unknown => {
                    "cache: nothing to report (no docker build or pip lines found)".to_string()
                }
                _ => "cache: nothing to report (no build steps or wheels in the log)".to_string(),
            }
        } else {
            format!("cache: {}", parts.join(", "))
        };
        match &self.failure {
            // buildx refused the build before it started (no step, no pip line): its
            // message is the whole story.
            Some(f) if f.step.is_none() && self.steps.total == 0 && fetched == 0 => {
                format!(
                    "build FAILED before any step ran ({})",
                    shorten(&f.error, 120)
                )
            }
            Some(f) => {
                let at = f
                    .step
                    .as_deref()
                    .map(|s| format!(" at {}", shorten(s, 70)))
                    .unwrap_or_default();
                // The message repeats the whole command; the exit code says it shorter.
                let why = match f.exit_code {
                    Some(code) => format!("exit code {code}"),
                    None => shorten(&f.error, 120),
                };
                format!("build FAILED{at} ({why}); {cache}")
            }
            None => cache,
        }
    }

    /// Replaces the build time by one measured around the build (`cicache build` knows the
    /// wall clock, which plain progress does not print).
    pub fn set_wall_time(&mut self, seconds: f64) {
        self.build_seconds = Some(seconds);
        self.time_source = Some(TimeSource::WallClock);
        self.verdict = self.verdict();
    }

    /// Adds what `cicache build` knew around the docker build: its phases (a second lane of
    /// the timeline, with their real times) and the check, restore and inject facts that say
    /// why the build missed. The build phase's time becomes the build time.
    pub fn add_build_run(&mut self, run: &BuildRun) {
        self.phases = run::layout(&run.phases);
        if let Some(b) = run.phase("build")
            && b.seconds > 0.0
        {
            self.set_wall_time(b.seconds);
        }
        self.miss = explain::with_run(self, run);
    }

    /// The timeline: bars for the steps and cicache's phases on one axis.
    pub fn timeline(&self) -> Timeline {
        timeline::build(self)
    }

    /// One self-contained HTML page (inline CSS, no script from anywhere, no network);
    /// `title` names the log. See [`html::document`] for several reports on one page.
    pub fn render_html(&self, title: &str) -> String {
        html::document(&[(title, self)])
    }

    /// The report for a terminal or a CI log.
    pub fn render_text(&self) -> String {
        render::text(self)
    }

    /// The report as Markdown (a CI job summary, a pull-request comment).
    pub fn render_markdown(&self) -> String {
        render::markdown(self)
    }
}

/// Cuts `s` to at most `max` characters, ending in `...` when cut; at a space when there is
/// one in the last third, so that no word is cut in half.
pub(crate) fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(3);
    let mut out: String = s.chars().take(keep).collect();
    let next_is_space = s.chars().nth(keep).is_some_and(char::is_whitespace);
    if !next_is_space
        && let Some(i) = out.rfind(char::is_whitespace)
        && out[..i].chars().count() >= keep - keep / 3
    {
        out.truncate(i);
    }
    let trimmed = out.trim_end_matches(|c: char| c.is_whitespace() || c == ',' || c == ':');
    out.truncate(trimmed.len());
    out.push_str("...");
    out
}

/// The log's lines, cleaned: CI timestamp prefixes, ANSI escapes and `\r` redraws removed.
pub(crate) fn lines(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split('\n')
        .map(|l| util::clean_line(util::strip_timestamp_prefix(l)))
}

/// Which format a log is in: the one most of its recognisable lines belong to.
fn detect(text: &str) -> LogFormat {
    let (mut json, mut plain, mut classic, mut pipl) = (0usize, 0usize, 0usize, 0usize);
    // buildx's own errors, printed before any step (`ERROR: Cache export is not supported for
    // the docker driver.`): a build that failed before it started.
    let mut build_errors = 0usize;
    for line in lines(text) {
        let l = line.trim_start();
        if l.starts_with('{')
            && (l.contains("\"vertexes\"") || l.contains("\"statuses\"") || l.contains("\"logs\""))
        {
            json += 1;
        } else if buildkit::step_number(&line).is_some() {
            plain += 1;
        } else if classic::step_header(&line).is_some() {
            classic += 1;
        } else if pip::parse_line(&line).is_some() || l.starts_with("Collecting ") {
            pipl += 1;
        } else if l.starts_with("ERROR: ") {
            build_errors += 1;
        }
    }
    if json > 0 && json >= plain && json >= classic {
        LogFormat::BuildkitRawjson
    } else if plain > 0 && plain >= classic {
        LogFormat::BuildkitPlain
    } else if classic > 0 {
        LogFormat::Classic
    } else if pipl > 0 {
        LogFormat::Pip
    } else if build_errors > 0 {
        LogFormat::BuildkitPlain
    } else {
        LogFormat::Unknown
    }
}

/// Splits a step name into kind, stage, position and instruction:
/// `[builder 2/4] RUN x` -> (Step, builder, 2/4, RUN x); `[internal] load ...` -> Internal.
pub(crate) fn classify(name: &str) -> (StepKind, Option<String>, Option<String>, Option<String>) {
    let Some(rest) = name.strip_prefix('[') else {
        return (StepKind::Internal, None, None, None);
    };
    let Some((inside, instr)) = rest.split_once(']') else {
        return (StepKind::Internal, None, None, None);
    };
    let mut words: Vec<&str> = inside.split_whitespace().collect();
    let Some(pos) = words.pop().filter(|w| is_position(w)) else {
        return (StepKind::Internal, None, None, None);
    };
    let stage = if words.is_empty() {
        None
    } else {
        Some(words.join(" "))
    };
    let instr = instr.trim().to_string();
    (
        instruction_kind(&instr),
        stage,
        Some(pos.to_string()),
        Some(instr),
    )
}

pub(crate) fn instruction_kind(instr: &str) -> StepKind {
    let word = instr.split_whitespace().next().unwrap_or("");
    if word.eq_ignore_ascii_case("FROM") {
        StepKind::From
    } else {
        StepKind::Step
    }
}

/// `2/6`
pub(crate) fn is_position(w: &str) -> bool {
    match w.split_once('/') {
        Some((a, b)) => {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

/// `exit code: 1` / `returned a non-zero code: 1` -> 1.
pub(crate) fn exit_code(msg: &str) -> Option<i64> {
    for marker in ["exit code: ", "non-zero code: "] {
        if let Some(i) = msg.rfind(marker) {
            let digits: String = msg[i + marker.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '-')
                .collect();
            if let Ok(n) = digits.parse() {
                return Some(n);
            }
        }
    }
    None
}

/// Internal vertices whose errors BuildKit reports but does not fail the build for.
fn is_ignored_internal_error(name: &str) -> bool {
    name.starts_with("importing cache manifest from")
}

/// Accumulates steps, output and pip events while a parser walks a log.
#[derive(Default)]
pub(crate) struct Collector {
    steps: Vec<StepAcc>,
    by_key: HashMap<String, usize>,
    wheels: Vec<Wheel>,
    build_errors: Vec<String>,
    /// The lines that went on with the first build error (what to do about it).
    build_error_lines: Vec<String>,
    builds: usize,
    /// Rawjson: first start and last end over all vertices.
    span: Option<(f64, f64)>,
}

struct StepAcc {
    step: Step,
    /// Sort key: (build, number); number is the `#N` or the order of first appearance.
    order: (usize, u64),
    tail: VecDeque<String>,
}

impl Collector {
    /// The step with this key, created from `name` on first sight.
    pub(crate) fn step(
        &mut self,
        key: &str,
        build: usize,
        order: u64,
        id: &str,
        name: &str,
    ) -> usize {
        if let Some(&i) = self.by_key.get(key) {
            return i;
        }
        self.builds = self.builds.max(build + 1);
        let (kind, stage, position, instruction) = classify(name);
        let i = self.steps.len();
        self.steps.push(StepAcc {
            step: Step {
                build,
                id: id.to_string(),
                name: name.to_string(),
                kind,
                stage,
                position,
                instruction,
                status: StepStatus::Incomplete,
                seconds: None,
                start: None,
                error: None,
                helper: false,
            },
            order: (build, order),
            tail: VecDeque::new(),
        });
        self.by_key.insert(key.to_string(), i);
        i
    }

    pub(crate) fn get(&self, key: &str) -> Option<usize> {
        self.by_key.get(key).copied()
    }

    pub(crate) fn step_mut(&mut self, i: usize) -> Option<&mut Step> {
        self.steps.get_mut(i).map(|s| &mut s.step)
    }

    /// A line the step printed: kept for failure reports and read for pip events.
    pub(crate) fn output(&mut self, i: usize, line: &str) {
        if let Some(acc) = self.steps.get_mut(i)
            && !line.trim().is_empty()
        {
            if acc.tail.len() == TAIL_LINES {
                acc.tail.pop_front();
            }
            acc.tail.push_back(line.trim_end().to_string());
        }
        self.pip_line(Some(i), line);
    }

    pub(crate) fn pip_line(&mut self, step: Option<usize>, line: &str) {
        let Some(ev) = pip::parse_line(line) else {
            return;
        };
        let step = step
            .and_then(|i| self.steps.get(i))
            .map(|s| s.step.name.clone());
        let (file, bytes, source) = match ev {
            pip::PipEvent::Cached { file, bytes } => (file, bytes, WheelSource::Cache),
            pip::PipEvent::Downloaded { file, bytes } => (file, bytes, WheelSource::Download),
        };
        self.wheels.push(Wheel {
            file,
            source,
            bytes,
            step,
        });
    }

    pub(crate) fn build_error(&mut self, msg: &str) {
        let msg = msg.trim();
        if !msg.is_empty() && !self.build_errors.iter().any(|e| e == msg) {
            self.build_errors.push(msg.to_string());
        }
    }

    /// A line that goes on with the last build error; kept for the first error only.
    pub(crate) fn build_error_line(&mut self, line: &str) {
        if self.build_errors.len() == 1 && self.build_error_lines.len() < TAIL_LINES {
            self.build_error_lines.push(line.trim().to_string());
        }
    }

    pub(crate) fn note_build(&mut self, build: usize) {
        self.builds = self.builds.max(build + 1);
    }

    pub(crate) fn span(&mut self, start: f64, end: f64) {
        self.span = Some(match self.span {
            Some((s, e)) => (s.min(start), e.max(end)),
            None => (start, end),
        });
    }

    pub(crate) fn finish(mut self, format: LogFormat) -> BuildReport {
        self.steps.sort_by_key(|s| s.order);
        let helper_builds = self.mark_helpers(format);
        let mut counts = StepCounts::default();
        let mut per_build = vec![StepCounts::default(); self.builds.max(1)];
        for s in self.steps.iter().map(|a| &a.step) {
            if s.kind != StepKind::Step {
                continue;
            }
            if s.build >= per_build.len() {
                per_build.resize(s.build + 1, StepCounts::default());
            }
            if s.helper {
                per_build[s.build].add(s.status);
                continue;
            }
            counts.add(s.status);
            per_build[s.build].add(s.status);
        }
        if per_build.len() < 2 {
            per_build.clear();
        }
        let mut wheels = WheelCounts::default();
        for w in &self.wheels {
            match w.source {
                WheelSource::Cache => {
                    wheels.from_cache += 1;
                    wheels.bytes_from_cache += w.bytes.unwrap_or(0);
                }
                WheelSource::Download => {
                    wheels.downloaded += 1;
                    wheels.bytes_downloaded += w.bytes.unwrap_or(0);
                }
            }
        }
        let (build_seconds, time_source) = match self.span {
            Some((s, e)) if e >= s => (Some(e - s), Some(TimeSource::Timestamps)),
            _ => {
                let timed: Vec<f64> = self
                    .steps
                    .iter()
                    .filter(|a| !a.step.helper)
                    .filter_map(|a| a.step.seconds)
                    .collect();
                if timed.is_empty() {
                    (None, None)
                } else {
                    (Some(timed.iter().sum()), Some(TimeSource::StepSum))
                }
            }
        };
        let mut slowest: Vec<SlowStep> = self
            .steps
            .iter()
            .map(|a| &a.step)
            .filter(|s| s.status != StepStatus::Cached && !s.helper)
            .filter_map(|s| {
                s.seconds.filter(|&t| t > 0.0).map(|t| SlowStep {
                    name: s.name.clone(),
                    seconds: t,
                    status: s.status,
                })
            })
            .collect();
        slowest.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        slowest.truncate(SLOWEST);

        // The failing Dockerfile step is the failure. An internal vertex's error is one only
        // when the build failed with it: BuildKit ignores a cache import that finds no
        // cache (`importing cache manifest from IMAGE:cache ... not found` on a first build).
        let failed = |internal: bool| {
            self.steps.iter().find(|a| {
                a.step.status == StepStatus::Error
                    && !a.step.helper
                    && (a.step.kind == StepKind::Internal) == internal
                    && !(internal && is_ignored_internal_error(&a.step.name))
            })
        };
        let failed_step = failed(false).or_else(|| {
            failed(true)
                .filter(|_| !self.build_errors.is_empty() || format == LogFormat::BuildkitRawjson)
        });
        let failure = match failed_step {
            Some(a) => {
                let error = a
                    .step
                    .error
                    .clone()
                    .or_else(|| self.build_errors.first().cloned())
                    .unwrap_or_else(|| "the step failed".to_string());
                Some(Failure {
                    step: Some(a.step.name.clone()),
                    exit_code: exit_code(&error),
                    error,
                    lines: a.tail.iter().cloned().collect(),
                })
            }
            None => self.build_errors.first().map(|e| Failure {
                step: None,
                error: e.clone(),
                exit_code: exit_code(e),
                lines: self.build_error_lines.clone(),
            }),
        };
        let ok = failure.is_none() && format != LogFormat::Unknown;
        // Rawjson start times, from the first start.
        if let Some((first, _)) = self.span {
            for a in &mut self.steps {
                a.step.start = a.step.start.map(|t| (t - first).max(0.0));
            }
        }
        let mut report = BuildReport {
            format,
            builds: if format == LogFormat::Pip || format == LogFormat::Unknown {
                0
            } else {
                self.builds.max(1)
            },
            verdict: String::new(),
            ok,
            steps: counts,
            per_build,
            wheels,
            build_seconds,
            time_source,
            slowest,
            failure,
            helper_builds,
            cache_imports: Vec::new(),
            miss: None,
            phases: Vec::new(),
            step_list: self.steps.into_iter().map(|a| a.step).collect(),
            wheel_list: self.wheels,
        };
        report.verdict = report.verdict();
        report.cache_imports = explain::cache_imports(&report);
        report.miss = explain::from_log(&report);
        report.phases = timeline::phases_from_log(&report);
        report
    }
}

impl StepCounts {
    fn add(&mut self, status: StepStatus) {
        self.total += 1;
        match status {
            StepStatus::Cached => self.cached += 1,
            StepStatus::Error => {
                self.run += 1;
                self.failed += 1;
            }
            _ => self.run += 1,
        }
    }
}

/// Which of cicache's helper builds a step belongs to, from its text: the cache dance's
/// Dockerfiles (`cicache_docker::dance`) name their first stage `dance`, copy through
/// `/cicache-src` and `/cicache-report` (inject) or into `/cicache-out` (extract), and end in
/// `COPY --from=dance /cicache-report /` or `COPY --from=dance /cicache-out /`.
fn helper_kind(s: &Step) -> Option<HelperKind> {
    let text = s.instruction.as_deref().unwrap_or(&s.name);
    let dance = s.stage.as_deref() == Some("dance") || text.contains("--from=dance ");
    if !dance {
        return None;
    }
    if text.contains("/cicache-report") || text.contains("/cicache-src") {
        Some(HelperKind::Inject)
    } else if text.contains("/cicache-out") {
        Some(HelperKind::Extract)
    } else {
        None
    }
}

impl Collector {
    /// Marks the steps of cicache's helper builds. In plain progress a build is a helper
    /// build when one of its steps is a dance step (its `[internal]` steps go with it); in
    /// rawjson, where one stream is one build, only the dance steps themselves.
    fn mark_helpers(&mut self, format: LogFormat) -> Vec<HelperBuild> {
        let mut found: Vec<(usize, HelperKind)> = Vec::new();
        for a in &self.steps {
            if let Some(kind) = helper_kind(&a.step)
                && !found.iter().any(|(b, _)| *b == a.step.build)
            {
                found.push((a.step.build, kind));
            }
        }
        if found.is_empty() {
            return Vec::new();
        }
        let whole_builds = format == LogFormat::BuildkitPlain;
        for a in &mut self.steps {
            a.step.helper = if whole_builds {
                found.iter().any(|(b, _)| *b == a.step.build)
            } else {
                helper_kind(&a.step).is_some()
            };
        }
        found
            .into_iter()
            .map(|(build, kind)| {
                let times: Vec<f64> = self
                    .steps
                    .iter()
                    .filter(|a| a.step.helper && a.step.build == build)
                    .filter_map(|a| a.step.seconds)
                    .collect();
                HelperBuild {
                    build,
                    kind,
                    seconds: (!times.is_empty()).then(|| times.iter().sum()),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_names() {
        let (k, st, pos, ins) = classify("[builder 2/4] RUN make");
        assert_eq!(k, StepKind::Step);
        assert_eq!(st.as_deref(), Some("builder"));
        assert_eq!(pos.as_deref(), Some("2/4"));
        assert_eq!(ins.as_deref(), Some("RUN make"));
        assert_eq!(
            classify("[1/3] FROM docker.io/library/busybox").0,
            StepKind::From
        );
        assert_eq!(
            classify("[internal] load .dockerignore").0,
            StepKind::Internal
        );
        assert_eq!(classify("exporting to image").0, StepKind::Internal);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(
            exit_code("executor failed running [sh]: exit code: 1"),
            Some(1)
        );
        assert_eq!(
            exit_code("The command 'x' returned a non-zero code: 127"),
            Some(127)
        );
        assert_eq!(exit_code("no code"), None);
    }

    #[test]
    fn cache_mount_steps_cached_from_a_plain_log() {
        let log = |pip: &str| {
            format!(
                "#5 [1/3] FROM docker.io/library/python:3.12\n#5 DONE 0.1s\n\
                 #6 [2/3] COPY requirements.txt .\n#6 CACHED\n\
                 #7 [3/3] RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt\n{pip}\n\
                 #8 exporting to image\n#8 DONE 0.2s\n"
            )
        };
        assert_eq!(
            parse_log(&log("#7 CACHED")).cache_mount_steps_cached(),
            Some(true)
        );
        assert_eq!(
            parse_log(&log("#7 0.512 Collecting torch\n#7 DONE 3.1s")).cache_mount_steps_cached(),
            Some(false)
        );
        let no_mounts = "#6 [2/2] RUN make\n#6 CACHED\n";
        assert_eq!(parse_log(no_mounts).cache_mount_steps_cached(), None);
        assert_eq!(parse_log("").cache_mount_steps_cached(), None);
    }

    #[test]
    fn every_step_cached_from_a_found_cache_tag() {
        let log = |import: &str, pip: &str| {
            format!(
                "#2 importing cache manifest from r:5000/app:cache\n{import}\n\
                 #5 [1/3] FROM docker.io/library/python:3.12\n#5 DONE 0.1s\n\
                 #6 [2/3] COPY requirements.txt .\n#6 CACHED\n\
                 #7 [3/3] RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt\n{pip}\n\
                 #8 exporting to image\n#8 DONE 0.2s\n"
            )
        };
        let all = parse_log(&log("#2 DONE 0.0s", "#7 CACHED"));
        assert!(all.every_step_cached_from("r:5000/app:cache"));
        assert!(!all.every_step_cached_from("r:5000/app:cache-feature"));
        let ran = parse_log(&log(
            "#2 DONE 0.0s",
            "#7 0.5 Collecting torch\n#7 DONE 3.1s",
        ));
        assert!(!ran.every_step_cached_from("r:5000/app:cache"));
        // Cached from the daemon, the cache tag not found: pushing it is how it gets one.
        let missing = parse_log(&log("#2 ERROR: r:5000/app:cache: not found", "#7 CACHED"));
        assert!(!missing.every_step_cached_from("r:5000/app:cache"));
        assert!(!parse_log("").every_step_cached_from("r:5000/app:cache"));
        // The cache-mount step cached, a later COPY run: the steps came from the cache tag.
        let code = format!(
            "{}#9 [4/4] COPY app.py .\n#9 DONE 0.0s\n",
            log("#2 DONE 0.0s", "#7 CACHED")
        );
        let code = parse_log(&code);
        assert!(!code.every_step_cached_from("r:5000/app:cache"));
        assert!(code.cache_mount_steps_cached_from("r:5000/app:cache"));
        assert!(!code.cache_mount_steps_cached_from("r:5000/app:cache-feature"));
        assert!(!ran.cache_mount_steps_cached_from("r:5000/app:cache"));
        assert!(!missing.cache_mount_steps_cached_from("r:5000/app:cache"));
    }
}
