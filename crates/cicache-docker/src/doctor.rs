//! `cicache doctor`: a checklist of what makes a cached Docker build work, with a fix for
//! every line that does not pass.
//!
//! This module holds the checks of docker, BuildKit, buildx and the Dockerfile; the binary
//! adds the store and the registry (it owns those clients) and prints the list.
//!
//! Nothing here contacts Docker Hub or any other outside address: a `# syntax=` line is
//! reported from the Dockerfile alone.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use serde::Serialize;

use crate::build::{Compression, CompressionKind};
use crate::dockerfile::{self, Dockerfile, Instruction};
use crate::engine::{Capabilities, Docker, Exporter, Flavour, pull_keeps_inline_cache};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Works, but slower or more fragile than it could be.
    Warn,
    /// Caching (or the build) cannot work until it is fixed.
    Fail,
    /// Not checked (nothing to check, or an earlier check failed).
    Skip,
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable name: `docker`, `buildkit`, `buildx`, `compression`, `dockerfile`,
    /// `dockerfile.<finding>`, `store`, `registry`.
    pub name: String,
    pub status: Status,
    pub message: String,
    /// What to do, for a line that is not `ok`.
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(name: &str, message: impl Into<String>) -> Check {
        Check {
            name: name.to_string(),
            status: Status::Ok,
            message: message.into(),
            fix: None,
        }
    }
    pub fn warn(name: &str, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name: name.to_string(),
            status: Status::Warn,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
    pub fn fail(name: &str, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name: name.to_string(),
            status: Status::Fail,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
    pub fn skip(name: &str, message: impl Into<String>) -> Check {
        Check {
            name: name.to_string(),
            status: Status::Skip,
            message: message.into(),
            fix: None,
        }
    }
}

/// The whole checklist. Serializes to the `doctor` schema of `docs/JSON.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DoctorReport {
    /// No check failed (warnings allowed).
    pub ok: bool,
    pub failures: usize,
    pub warnings: usize,
    pub checks: Vec<Check>,
}

impl DoctorReport {
    pub fn new(checks: Vec<Check>) -> DoctorReport {
        let failures = checks.iter().filter(|c| c.status == Status::Fail).count();
        let warnings = checks.iter().filter(|c| c.status == Status::Warn).count();
        DoctorReport {
            ok: failures == 0,
            failures,
            warnings,
            checks,
        }
    }

    /// `1` when a check failed, `0` when there are only warnings.
    pub fn exit_code(&self) -> u8 {
        if self.ok { 0 } else { 1 }
    }

    pub fn render_text(&self) -> String {
        let mut o = String::new();
        for c in &self.checks {
            let word = match c.status {
                Status::Ok => "ok",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            o.push_str(&format!("{word:>4}  {}: {}\n", c.name, c.message));
            if let Some(fix) = &c.fix {
                for (i, line) in fix.lines().enumerate() {
                    let lead = if i == 0 { "fix: " } else { "     " };
                    o.push_str(&format!("      {lead}{line}\n"));
                }
            }
        }
        let summary = match (self.failures, self.warnings) {
            (0, 0) => "doctor: all checks passed".to_string(),
            (0, w) => format!("doctor: no failures, {w} warning(s)"),
            (f, w) => format!("doctor: {f} failed, {w} warning(s)"),
        };
        o.push_str(&summary);
        o
    }
}

/// Docker reachable, BuildKit working, and the builder: its driver, the daemon's image store
/// and the cache exporter a build will use. `env` reads the environment (`DOCKER_HOST`,
/// `DOCKER_BUILDKIT`, `CICACHE_BUILDER`, `CICACHE_DOCKER_FLAVOUR`); `stages` is the Dockerfile's stage count when known
/// (inline cache keeps only the final stage, which matters for multi-stage builds);
/// `compression` the layer compression a build would ask for, with where it came from.
pub fn docker_checks(
    docker: &Docker,
    env: &dyn Fn(&str) -> Option<String>,
    stages: Option<usize>,
    compression: Option<(Compression, &str)>,
) -> Vec<Check> {
    let mut out = Vec::new();
    let host = env("DOCKER_HOST").filter(|h| !h.is_empty());
    let where_ = match &host {
        Some(h) => format!("DOCKER_HOST={h}"),
        None => "the default socket (DOCKER_HOST unset)".to_string(),
    };
    match docker.server_version() {
        Ok(v) => out.push(Check::ok(
            "docker",
            format!("daemon {v} reachable through {where_}"),
        )),
        Err(e) => {
            out.push(Check::fail(
                "docker",
                format!("cannot reach the docker daemon through {where_}: {e}"),
                "start dockerd, or point DOCKER_HOST at it (unix:///path/docker.sock, or \
                 tcp://HOST:2375 for a Docker-in-Docker agent); `docker version` must show a Server",
            ));
            out.push(Check::skip("buildkit", "docker is not reachable"));
            out.push(Check::skip("buildx", "docker is not reachable"));
            out.push(Check::skip("compression", "docker is not reachable"));
            return out;
        }
    }
    let (buildkit, client_needs_buildx) = buildkit_check(docker, env("DOCKER_BUILDKIT").as_deref());
    out.push(buildkit);
    // The build mode `cicache build` will use, from the same inputs: CICACHE_BUILDER and a
    // forced CICACHE_DOCKER_FLAVOUR.
    let builder = env("CICACHE_BUILDER").filter(|b| !b.trim().is_empty());
    let forced = match env("CICACHE_DOCKER_FLAVOUR").as_deref().map(str::trim) {
        Some("buildx") => Some(Flavour::Buildx),
        Some("classic") => Some(Flavour::Classic),
        _ => None,
    };
    let caps = docker.capabilities(builder.as_deref());
    if client_needs_buildx && !caps.buildx {
        out.push(Check::fail(
            "buildx",
            "buildx not present, and this docker client (23.0 or newer) builds with BuildKit \
             only through buildx: neither flavour of cicache build can run",
            NEEDS_BUILDX_FIX,
        ));
    } else {
        out.push(buildx_check(&caps, forced, stages));
    }
    out.push(compression_check(caps.decide(forced).exporter, compression));
    out
}

/// The layer compression `cicache build` would use on this builder: buildx's registry
/// exporter applies it to the image and the cache; inline cache (the classic builder) cannot,
/// and keeps gzip.
pub fn compression_check(exporter: Exporter, chosen: Option<(Compression, &str)>) -> Check {
    let Some((c, source)) = chosen else {
        return Check::ok(
            "compression",
            match exporter {
                Exporter::Registry => {
                    "gzip (BuildKit's default); --compression zstd (CICACHE_COMPRESSION) \
                     compresses and unpacks several times faster here, for registries and nodes \
                     that read zstd (Docker 23+, containerd 1.5+; docs/BENCHMARKS.md)"
                }
                Exporter::Inline => "gzip (BuildKit's default; the classic builder's only choice)",
            },
        );
    };
    let level = c.level.map(|l| format!(" level {l}")).unwrap_or_default();
    let name = c.kind.as_str();
    match (exporter, c.kind) {
        // The classic builder compresses gzip at the daemon's level: only a level is lost.
        (Exporter::Registry, CompressionKind::Gzip) => {
            Check::ok("compression", format!("gzip{level} ({source})"))
        }
        (Exporter::Inline, CompressionKind::Gzip) if c.level.is_none() => {
            Check::ok("compression", format!("gzip ({source})"))
        }
        (Exporter::Registry, _) => Check::ok(
            "compression",
            format!(
                "{name}{level} ({source}): the image's layers and the registry cache; whoever \
                 pulls the image needs Docker 23+ or containerd 1.5+ (Docker 20.10 cannot pull \
                 {name} layers)"
            ),
        ),
        (Exporter::Inline, _) => Check::warn(
            "compression",
            format!(
                "{name}{level} asked for ({source}), but this builder exports inline cache with \
                 the classic builder, which cannot compress with it: the layers stay gzip at \
                 the daemon's level"
            ),
            "turn on the containerd image store (daemon.json \
             {\"features\":{\"containerd-snapshotter\":true}}) or build with a \
             docker-container builder (--builder / CICACHE_BUILDER), or leave the compression \
             unset",
        ),
    }
}

const NEEDS_BUILDX_FIX: &str = "install the buildx plugin for this client (docker-buildx-plugin, or \
     the docker-buildx binary in ~/.docker/cli-plugins/), or run a docker 20.10 client \
     (--docker PROGRAM / CICACHE_DOCKER)";

/// Runs a build that needs no image and no network (`FROM scratch`) with BuildKit, to the
/// client: proves the daemon builds with BuildKit, and leaves nothing behind. The flag is set
/// when the client refused because it needs the buildx plugin for BuildKit (docker 23+).
fn buildkit_check(docker: &Docker, env_buildkit: Option<&str>) -> (Check, bool) {
    let probe = docker
        .command([
            "build",
            "--progress=plain",
            "--output",
            "type=tar,dest=/dev/null",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let result = probe.and_then(|mut child| {
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(b"FROM scratch\nLABEL cicache.doctor=probe\n")?;
        }
        child.wait_with_output()
    });
    let worked = match result {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last: Vec<&str> = err
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .rev()
                .take(3)
                .collect();
            Err(last.into_iter().rev().collect::<Vec<_>>().join(" "))
        }
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = &worked
        && e.contains("buildx component is missing")
    {
        return (
            Check::fail(
                "buildkit",
                format!("this docker client cannot build with BuildKit without buildx: {e}"),
                NEEDS_BUILDX_FIX,
            ),
            true,
        );
    }
    if let Err(e) = worked {
        return (
            Check::fail(
                "buildkit",
                format!("a BuildKit build (DOCKER_BUILDKIT=1, FROM scratch) failed: {e}"),
                "BuildKit needs docker engine 18.09 or newer (20.10+ for RUN --mount without a \
             `# syntax=` line); upgrade the engine, and do not set `\"features\": {\"buildkit\": false}` \
             in daemon.json",
            ),
            false,
        );
    }
    let check = match env_buildkit.map(str::trim) {
        Some("0") | Some("false") => Check::warn(
            "buildkit",
            "the daemon builds with BuildKit, but DOCKER_BUILDKIT=0 is set: your own `docker build` \
             calls use the classic builder, which ignores RUN --mount=type=cache",
            "unset DOCKER_BUILDKIT or set DOCKER_BUILDKIT=1 (cicache build sets it for its own builds)",
        ),
        _ => Check::ok(
            "buildkit",
            "the daemon builds with BuildKit (cicache build sets DOCKER_BUILDKIT=1)",
        ),
    };
    (check, false)
}

/// The builder (driver, image store) and the cache exporter a build will use: ok for the
/// registry exporter; a warning where the builder cannot export one (the fix says what would
/// let it), or where inline cache loses a multi-stage Dockerfile's earlier stages; a failure
/// for a builder that cannot be used at all.
fn buildx_check(caps: &Capabilities, forced: Option<Flavour>, stages: Option<usize>) -> Check {
    let mode = caps.decide(forced);
    let on = caps.describe_builder();
    let refusal = caps.registry_export().err();
    if let Some(r) = refusal.as_ref().filter(|r| r.builder_unusable) {
        return Check::fail("buildx", format!("{on}: {}", r.why), r.fix.clone());
    }
    let command = match mode.flavour {
        Flavour::Buildx => "`docker buildx build`",
        Flavour::Classic => "`DOCKER_BUILDKIT=1 docker build`",
    };
    if mode.exporter == Exporter::Registry {
        return Check::ok(
            "buildx",
            format!(
                "{on}: cicache build runs {command} and exports the layer cache with the \
                 registry cache exporter (--cache-to type=registry,ref=IMAGE:cache,mode=max): \
                 every stage's layers are cached, and every step's, whatever the last build ran"
            ),
        );
    }
    let kept = if pull_keeps_inline_cache(caps.server_version.as_deref()) {
        "the prefetch pulls the cache tag where that keeps it whole"
    } else {
        "after a build that took its cache-mount steps from the cache tag the tag stays as it \
         was (this BuildKit would push it without them), so a fresh agent reruns the steps \
         after them"
    };
    let inline = format!(
        "cicache build runs {command} with inline cache (BUILDKIT_INLINE_CACHE=1) and pushes \
         the `cache` tag itself; inline cache holds only the final image's layers; {kept}"
    );
    let earlier = match stages {
        Some(n) if n > 1 => format!(
            ", so the {} earlier stage(s) of this Dockerfile rebuild on a fresh agent",
            n - 1
        ),
        _ => String::new(),
    };
    // Inline cache is fine for one stage, a warning (with `fix`) for several.
    let inline_check = |msg: String, fix: String| {
        if earlier.is_empty() {
            Check::ok("buildx", msg)
        } else {
            Check::warn("buildx", msg, fix)
        }
    };
    match (forced, refusal) {
        // The builder could export a registry cache: classic was asked for.
        (Some(Flavour::Classic), None) => inline_check(
            format!("{on}: --flavour classic (CICACHE_DOCKER_FLAVOUR): {inline}{earlier}"),
            "leave the flavour automatic (unset CICACHE_DOCKER_FLAVOUR): this builder exports \
             a registry cache with mode=max"
                .to_string(),
        ),
        (_, Some(r)) if caps.buildx => Check::warn(
            "buildx",
            format!("{on}: {}, so {inline}{earlier}", r.why),
            r.fix,
        ),
        (_, r) => inline_check(
            format!("{on}: {inline}{earlier}"),
            r.map(|r| r.fix).unwrap_or_else(|| {
                "install the docker buildx plugin to get the registry cache exporter with mode=max"
                    .to_string()
            }),
        ),
    }
}

/// Reads and checks a Dockerfile; the first element is the `dockerfile` line itself.
pub fn dockerfile_checks(path: &Path) -> (Vec<Check>, Option<Dockerfile>) {
    let df = match dockerfile::parse_file(path) {
        Ok(df) => df,
        Err(e) => {
            return (
                vec![Check::fail(
                    "dockerfile",
                    e.to_string(),
                    "point --dockerfile (CICACHE_DOCKERFILE) at the Dockerfile the build uses",
                )],
                None,
            );
        }
    };
    let mut out = vec![Check::ok(
        "dockerfile",
        format!(
            "{}: {} stage(s), {} RUN step(s), {} cache mount(s)",
            path.display(),
            df.stages.len(),
            df.runs().count(),
            df.cache_mounts().len()
        ),
    )];
    out.extend(findings(&df));
    (out, Some(df))
}

/// The `dockerfile.copies-cache-dir` finding: a COPY/ADD from the context takes the cache
/// dir (`cache_dir`, the workspace copy a restore fills) into the image. `None` when it does
/// not (or the cache dir lies outside the context); a warning when the ignore file cannot be
/// read.
pub fn cache_dir_finding(
    df: &Dockerfile,
    dockerfile: &Path,
    context: &Path,
    cache_dir: &Path,
) -> Option<Check> {
    const NAME: &str = "dockerfile.copies-cache-dir";
    match crate::skip::cache_dir_copy(df, dockerfile, context, cache_dir) {
        Ok(None) => None,
        Ok(Some(c)) => Some(Check::warn(
            NAME,
            format!(
                "line {}: `{}` takes the cache dir {} into the image (context {}): the image \
                 carries the pip cache, its layer changes with every restore, and an unchanged \
                 build is never only tagged",
                c.line,
                c.instruction,
                c.cache_rel,
                context.display()
            ),
            format!(
                "add the line `{}` to {} (or copy only what the image needs)",
                c.cache_rel,
                c.ignore_file.display()
            ),
        )),
        Err(e) => Some(Check::warn(
            NAME,
            format!("cannot tell whether the Dockerfile copies the cache dir: {e}"),
            "check that the context and its .dockerignore are readable",
        )),
    }
}

/// Which package tool a `RUN` uses to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Pip,
    Uv,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Pip => "pip",
            Tool::Uv => "uv",
        }
    }
    fn default_cache(self) -> &'static str {
        match self {
            Tool::Pip => "/root/.cache/pip",
            Tool::Uv => "/root/.cache/uv",
        }
    }
    fn cache_env(self) -> &'static str {
        match self {
            Tool::Pip => "PIP_CACHE_DIR",
            Tool::Uv => "UV_CACHE_DIR",
        }
    }
    fn no_cache_env(self) -> &'static str {
        match self {
            Tool::Pip => "PIP_NO_CACHE_DIR",
            Tool::Uv => "UV_NO_CACHE",
        }
    }
}

/// The command text of a RUN: its arguments and heredoc bodies.
fn command_text(i: &Instruction) -> String {
    let mut s = i.args.clone();
    for h in &i.heredocs {
        s.push('\n');
        s.push_str(&h.body);
    }
    s
}

/// The install tools a command runs: `pip install`, `pip3 install`, `python -m pip install`,
/// `uv pip install`, `uv sync`, `uv add`.
fn tools(cmd: &str) -> Vec<Tool> {
    let words: Vec<&str> = cmd
        .split(|c: char| {
            c.is_whitespace() || c == ';' || c == '&' || c == '|' || c == '(' || c == ')'
        })
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let base = w.rsplit('/').next().unwrap_or(w);
        let next = words.get(i + 1).copied().unwrap_or("");
        let is_pip = base == "pip"
            || base == "pip3"
            || (base.starts_with("pip3.") && base[5..].bytes().all(|b| b.is_ascii_digit()));
        if is_pip && next == "install" {
            // `uv pip install` is uv.
            let tool = if i > 0 && words[i - 1].rsplit('/').next() == Some("uv") {
                Tool::Uv
            } else {
                Tool::Pip
            };
            if !out.contains(&tool) {
                out.push(tool);
            }
        }
        if base == "uv" && (next == "sync" || next == "add") && !out.contains(&Tool::Uv) {
            out.push(Tool::Uv);
        }
    }
    out
}

/// The Dockerfile findings: install steps without a cache mount, flags and variables that
/// defeat the mount, a `# syntax=` line that needs Docker Hub, caches split between stages.
pub fn findings(df: &Dockerfile) -> Vec<Check> {
    let mut out = Vec::new();
    if let Some(syntax) = &df.syntax {
        let line = df.syntax_line.unwrap_or(1);
        if needs_docker_hub(syntax) {
            out.push(Check::warn(
                "dockerfile.syntax",
                format!(
                    "line {line}: `# syntax={syntax}` makes every build pull the Dockerfile \
                     frontend from Docker Hub; where Docker Hub is not reachable (or rate-limits) \
                     the build fails before its first step"
                ),
                "delete the line: the frontend built into docker 20.10+ supports RUN \
                 --mount=type=cache; or copy the frontend image into your own registry and \
                 point `# syntax=` at it",
            ));
        }
    }

    // Environment per stage, in order: ENV and ARG values seen so far in the stage and in the
    // stage it is built FROM.
    let mut env: BTreeMap<usize, Vec<(String, String)>> = BTreeMap::new();
    let mut user: BTreeMap<usize, String> = BTreeMap::new();
    for ins in &df.instructions {
        let stage = ins.stage.unwrap_or(usize::MAX);
        // A stage built FROM an earlier stage inherits its ENV and USER.
        if ins.keyword == "FROM"
            && let Some(parent) = df
                .stages
                .get(stage)
                .and_then(|s| df.stage_named(&s.base))
                .map(|p| p.index)
                .filter(|&p| p < stage)
        {
            if let Some(e) = env.get(&parent).cloned() {
                env.insert(stage, e);
            }
            if let Some(u) = user.get(&parent).cloned() {
                user.insert(stage, u);
            }
        }
        match ins.keyword.as_str() {
            "ENV" | "ARG" => {
                for (k, v) in env_pairs(&ins.args) {
                    env.entry(stage).or_default().push((k, v));
                }
            }
            "USER" => {
                user.insert(stage, ins.args.trim().to_string());
            }
            "RUN" => {
                let cmd = command_text(ins);
                let used = tools(&cmd);
                if used.is_empty() {
                    continue;
                }
                let stage_env = env.get(&stage).cloned().unwrap_or_default();
                let caches: Vec<_> = ins.mounts.iter().filter_map(|m| m.cache.as_ref()).collect();
                let non_root = user
                    .get(&stage)
                    .is_some_and(|u| !matches!(u.split(':').next(), Some("root") | Some("0")));
                for tool in used {
                    run_findings(&mut out, ins, &cmd, tool, &caches, &stage_env, non_root);
                }
            }
            _ => {}
        }
    }

    // A cache mount keyed by another stage's content cannot be reached by the cache dance.
    for m in df.unique_cache_mounts() {
        if let Err(why) = m.dance_supported() {
            out.push(Check::warn(
                "dockerfile.cache-from",
                format!(
                    "line {}: {why}; cicache cannot fill or save this cache",
                    m.line
                ),
                "drop `from=`/`source=` from the cache mount if it only seeds the cache",
            ));
        }
    }

    // The same target with different caches in different stages: wheels downloaded in one
    // stage are downloaded again in the other.
    let mut by_target: BTreeMap<&str, Vec<&crate::dockerfile::CacheMount>> = BTreeMap::new();
    for m in df.cache_mounts() {
        by_target.entry(m.target.as_str()).or_default().push(m);
    }
    for (target, mounts) in by_target {
        let mut distinct: Vec<&crate::dockerfile::CacheMount> = Vec::new();
        for m in &mounts {
            if !distinct.iter().any(|d| d.same_cache(m)) {
                distinct.push(m);
            }
        }
        if distinct.len() > 1 {
            let list: Vec<String> = distinct
                .iter()
                .map(|m| {
                    let stage = m
                        .stage
                        .and_then(|s| df.stages.get(s))
                        .map(|s| {
                            s.name
                                .clone()
                                .unwrap_or_else(|| format!("stage {}", s.index))
                        })
                        .unwrap_or_else(|| "?".into());
                    let mut opts = format!("id={}", m.id);
                    for (k, v) in [("uid", &m.uid), ("gid", &m.gid), ("mode", &m.mode)] {
                        if let Some(v) = v {
                            opts.push_str(&format!(",{k}={v}"));
                        }
                    }
                    format!("line {} ({stage}): {opts}", m.line)
                })
                .collect();
            out.push(Check::warn(
                "dockerfile.cache-id",
                format!(
                    "the cache mounts on {target} are {} different caches: {}; what one stage \
                     downloads, the other downloads again (and cicache moves each separately)",
                    distinct.len(),
                    list.join("; ")
                ),
                format!(
                    "give every `--mount=type=cache,target={target}` the same id= (or none) and \
                     the same uid/gid/mode"
                ),
            ));
        }
    }
    out
}

fn run_findings(
    out: &mut Vec<Check>,
    ins: &Instruction,
    cmd: &str,
    tool: Tool,
    caches: &[&crate::dockerfile::CacheMount],
    stage_env: &[(String, String)],
    non_root: bool,
) {
    let line = ins.line;
    let name = tool.name();
    let snippet: String = {
        let s = cmd.lines().next().unwrap_or("").trim();
        if s.chars().count() > 60 {
            format!("{}...", s.chars().take(57).collect::<String>())
        } else {
            s.to_string()
        }
    };
    // Where the tool's cache is: --cache-dir / ENV / the default for root.
    let env_dir = stage_env
        .iter()
        .rev()
        .find(|(k, _)| k == tool.cache_env())
        .map(|(_, v)| v.clone());
    let flag_dir = flag_value(cmd, "--cache-dir");
    let expected = flag_dir.or(env_dir);
    if caches.is_empty() {
        let target = expected
            .clone()
            .unwrap_or_else(|| tool.default_cache().to_string());
        out.push(Check::fail(
            &format!("dockerfile.{name}-no-cache-mount"),
            format!(
                "line {line}: `{snippet}` runs {name} without a cache mount: every build that \
                 reruns this step downloads every package again, and cicache has no cache to move"
            ),
            format!("RUN --mount=type=cache,target={target} {snippet}"),
        ));
        return;
    }
    // Flags and variables that switch the cache off.
    let no_cache_flag = match tool {
        Tool::Pip => cmd.contains("--no-cache-dir"),
        Tool::Uv => cmd
            .split_whitespace()
            .any(|w| w == "--no-cache" || w == "-n"),
    };
    if no_cache_flag {
        let flag = if tool == Tool::Pip {
            "--no-cache-dir"
        } else {
            "--no-cache"
        };
        out.push(Check::fail(
            &format!("dockerfile.{name}-no-cache"),
            format!(
                "line {line}: `{flag}` makes {name} ignore its cache, so the cache mount on this \
                 step stays empty"
            ),
            format!(
                "remove `{flag}` (the cache lives in the mount, not in the image, so it does \
                 not make the image bigger)"
            ),
        ));
    }
    let var = tool.no_cache_env();
    let inline = cmd
        .split_whitespace()
        .filter_map(|w| w.strip_prefix(&format!("{var}=")))
        .next_back()
        .map(str::to_string);
    let from_env = stage_env
        .iter()
        .rev()
        .find(|(k, _)| k == var)
        .map(|(_, v)| v.clone());
    if let Some(v) = inline.or(from_env)
        && !matches!(
            v.trim_matches(['"', '\'']).to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "no" | "off"
        )
    {
        out.push(Check::fail(
            &format!("dockerfile.{name}-no-cache"),
            format!(
                "line {line}: {var}={v} is set for this step: {name} ignores its cache, so the \
                 cache mount stays empty"
            ),
            format!("remove {var} from the Dockerfile's ENV/ARG and from the RUN line"),
        ));
    }
    // The mount must be where the tool looks.
    match expected {
        Some(dir) => {
            if !caches.iter().any(|m| same_dir(&m.target, &dir)) {
                let targets: Vec<&str> = caches.iter().map(|m| m.target.as_str()).collect();
                out.push(Check::fail(
                    &format!("dockerfile.{name}-cache-target"),
                    format!(
                        "line {line}: {name}'s cache is {dir}, but the cache mount is on {}",
                        targets.join(", ")
                    ),
                    format!("use `--mount=type=cache,target={dir}`"),
                ));
            }
        }
        None if non_root => {
            if caches.iter().all(|m| m.target.starts_with("/root/"))
                && caches.iter().all(|m| m.uid.is_none())
            {
                out.push(Check::warn(
                    &format!("dockerfile.{name}-cache-target"),
                    format!(
                        "line {line}: this stage runs as a non-root USER, whose {name} cache is \
                         not under /root, but the cache mount is on {}",
                        caches
                            .iter()
                            .map(|m| m.target.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    format!(
                        "set {}=<dir> (ENV) and mount the cache there with uid=/gid= of that user",
                        tool.cache_env()
                    ),
                ));
            }
        }
        None => {
            let default = tool.default_cache();
            if !caches
                .iter()
                .any(|m| same_dir(&m.target, default) || same_dir(&m.target, "/root/.cache"))
            {
                let targets: Vec<&str> = caches.iter().map(|m| m.target.as_str()).collect();
                out.push(Check::fail(
                    &format!("dockerfile.{name}-cache-target"),
                    format!(
                        "line {line}: {name} (as root) caches in {default}, but the cache mount \
                         is on {}",
                        targets.join(", ")
                    ),
                    format!("use `--mount=type=cache,target={default}`"),
                ));
            }
        }
    }
}

fn same_dir(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// `--flag=value` or `--flag value` in a command.
fn flag_value(cmd: &str, flag: &str) -> Option<String> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        if let Some(v) = w.strip_prefix(&format!("{flag}=")) {
            return Some(v.trim_matches(['"', '\'']).to_string());
        }
        if *w == flag {
            return words
                .get(i + 1)
                .map(|v| v.trim_matches(['"', '\'']).to_string());
        }
    }
    None
}

/// `ENV A=1 B="x y"`, `ENV A 1`, `ARG A=1` -> pairs (an `ARG` without a default is skipped).
fn env_pairs(args: &str) -> Vec<(String, String)> {
    let args = args.trim();
    if !args.contains('=') {
        // Legacy `ENV KEY value`.
        return match args.split_once(char::is_whitespace) {
            Some((k, v)) => vec![(k.to_string(), v.trim().to_string())],
            None => Vec::new(),
        };
    }
    let mut out = Vec::new();
    let mut chars = args.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            let mut quote: Option<char> = None;
            while let Some(&c) = chars.peek() {
                match quote {
                    Some(q) if c == q => quote = None,
                    Some(_) => value.push(c),
                    None if c == '"' || c == '\'' => quote = Some(c),
                    None if c.is_whitespace() => break,
                    None => value.push(c),
                }
                chars.next();
            }
            out.push((key, value));
        }
    }
    out
}

/// Whether a `# syntax=` image lives on Docker Hub: no registry host in its first component.
fn needs_docker_hub(image: &str) -> bool {
    let image = image.trim();
    let first = image.split('/').next().unwrap_or("");
    let has_host =
        image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    !has_host
        || first == "docker.io"
        || first == "registry-1.docker.io"
        || first == "index.docker.io"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_named_and_a_classic_builder_warns_that_it_keeps_gzip() {
        let zstd = Compression::new(CompressionKind::Zstd, Some(3)).expect("level in range");
        let gzip = Compression::new(CompressionKind::Gzip, None).expect("no level");
        let src = "--compression / CICACHE_COMPRESSION";
        let c = compression_check(Exporter::Registry, None);
        assert_eq!(c.status, Status::Ok);
        assert!(
            c.message.starts_with("gzip (BuildKit's default)"),
            "{}",
            c.message
        );
        assert!(c.message.contains("--compression zstd"), "{}", c.message);
        let c = compression_check(Exporter::Inline, None);
        assert_eq!(c.status, Status::Ok);
        assert!(!c.message.contains("zstd"), "{}", c.message);
        let c = compression_check(Exporter::Registry, Some((zstd, src)));
        assert_eq!(c.status, Status::Ok);
        assert!(
            c.message.starts_with("zstd level 3 (--compression"),
            "{}",
            c.message
        );
        assert!(
            c.message.contains("Docker 20.10 cannot pull"),
            "{}",
            c.message
        );
        let c = compression_check(Exporter::Inline, Some((zstd, src)));
        assert_eq!(c.status, Status::Warn);
        assert!(c.message.contains("the layers stay gzip"), "{}", c.message);
        assert!(
            c.fix
                .as_deref()
                .is_some_and(|f| f.contains("containerd-snapshotter"))
        );
        let c = compression_check(
            Exporter::Inline,
            Some((gzip, "build.compression of cicache.yml")),
        );
        assert_eq!(c.status, Status::Ok);
        assert_eq!(c.message, "gzip (build.compression of cicache.yml)");
        let gzip1 = Compression::new(CompressionKind::Gzip, Some(1)).expect("level in range");
        let c = compression_check(Exporter::Inline, Some((gzip1, src)));
        assert_eq!(
            c.status,
            Status::Warn,
            "a level the classic builder ignores"
        );
        let c = compression_check(Exporter::Registry, Some((gzip1, src)));
        assert_eq!(c.status, Status::Ok);
        assert_eq!(
            c.message,
            "gzip level 1 (--compression / CICACHE_COMPRESSION)"
        );
    }

    fn names(text: &str) -> Vec<(String, Status)> {
        let df = dockerfile::parse(text).expect("parses");
        findings(&df)
            .into_iter()
            .map(|c| (c.name, c.status))
            .collect()
    }

    fn one(text: &str, name: &str) -> Check {
        let df = dockerfile::parse(text).expect("parses");
        let all = findings(&df);
        all.iter()
            .find(|c| c.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {all:#?}"))
    }

    #[test]
    fn a_good_dockerfile_has_no_findings() {
        let df = "FROM python:3.12\nCOPY requirements.txt .\n\
                  RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt\n";
        assert_eq!(names(df), vec![]);
    }

    #[test]
    fn pip_without_a_cache_mount() {
        let c = one(
            "FROM python:3.12\nRUN pip install -r requirements.txt\n",
            "dockerfile.pip-no-cache-mount",
        );
        assert_eq!(c.status, Status::Fail);
        assert!(c.message.starts_with("line 2:"), "{}", c.message);
        assert_eq!(
            c.fix.as_deref(),
            Some("RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt")
        );
        // python -m pip, pip3, and a heredoc body count too.
        assert_eq!(
            names("FROM p\nRUN python3 -m pip install x && echo\n")[0].0,
            "dockerfile.pip-no-cache-mount"
        );
        assert_eq!(
            names("FROM p\nRUN /usr/bin/pip3 install x\n")[0].0,
            "dockerfile.pip-no-cache-mount"
        );
        assert_eq!(
            names("FROM p\nRUN <<EOF\nset -e\npip install x\nEOF\n")[0].0,
            "dockerfile.pip-no-cache-mount"
        );
        // Not an install.
        assert_eq!(names("FROM p\nRUN pip --version && pip list\n"), vec![]);
    }

    #[test]
    fn uv_without_a_cache_mount_and_with_one() {
        let c = one(
            "FROM p\nRUN uv pip install --system x\n",
            "dockerfile.uv-no-cache-mount",
        );
        assert_eq!(
            c.fix.as_deref(),
            Some("RUN --mount=type=cache,target=/root/.cache/uv uv pip install --system x")
        );
        assert_eq!(
            names("FROM p\nRUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen\n"),
            vec![]
        );
    }

    #[test]
    fn no_cache_dir_and_pip_no_cache_dir_defeat_the_mount() {
        let c = one(
            "FROM p\nRUN --mount=type=cache,target=/root/.cache/pip pip install --no-cache-dir x\n",
            "dockerfile.pip-no-cache",
        );
        assert_eq!(c.status, Status::Fail);
        assert!(c.message.contains("--no-cache-dir"));
        let c = one(
            "FROM p\nENV PIP_NO_CACHE_DIR=1 OTHER=2\n\
             RUN --mount=type=cache,target=/root/.cache/pip pip install x\n",
            "dockerfile.pip-no-cache",
        );
        assert!(c.message.contains("PIP_NO_CACHE_DIR=1"));
        let c = one(
            "FROM p\nRUN --mount=type=cache,target=/root/.cache/pip PIP_NO_CACHE_DIR=off pip install x && PIP_NO_CACHE_DIR=yes pip install y\n",
            "dockerfile.pip-no-cache",
        );
        assert!(c.message.contains("PIP_NO_CACHE_DIR=yes"));
        // A stage built FROM another inherits its ENV.
        assert_eq!(
            names(
                "FROM p AS base\nENV PIP_NO_CACHE_DIR=1\nFROM base\n\
                 RUN --mount=type=cache,target=/root/.cache/pip pip install x\n"
            )[0]
            .0,
            "dockerfile.pip-no-cache"
        );
        assert_eq!(
            names(
                "FROM p AS base\nENV PIP_CACHE_DIR=/pc\nFROM base AS app\n\
                 RUN --mount=type=cache,target=/pc pip install x\n"
            ),
            vec![]
        );
        // An explicit "off" is fine; another stage's ENV does not leak.
        assert_eq!(
            names(
                "FROM p AS a\nENV PIP_NO_CACHE_DIR=1\nFROM p AS b\n\
                 RUN --mount=type=cache,target=/root/.cache/pip pip install x\n"
            ),
            vec![]
        );
        assert_eq!(
            names(
                "FROM p\nARG PIP_NO_CACHE_DIR=0\nRUN --mount=type=cache,target=/root/.cache/pip pip install x\n"
            ),
            vec![]
        );
    }

    #[test]
    fn cache_mount_in_the_wrong_place() {
        let c = one(
            "FROM p\nRUN --mount=type=cache,target=/tmp/cache pip install x\n",
            "dockerfile.pip-cache-target",
        );
        assert_eq!(
            c.fix.as_deref(),
            Some("use `--mount=type=cache,target=/root/.cache/pip`")
        );
        // PIP_CACHE_DIR moves the cache; the mount must follow.
        assert_eq!(
            names(
                "FROM p\nENV PIP_CACHE_DIR=/cache/pip\nRUN --mount=type=cache,target=/cache/pip pip install x\n"
            ),
            vec![]
        );
        assert_eq!(
            one(
                "FROM p\nENV PIP_CACHE_DIR=/cache/pip\nRUN --mount=type=cache,target=/root/.cache/pip pip install x\n",
                "dockerfile.pip-cache-target"
            )
            .status,
            Status::Fail
        );
        // --cache-dir on the command line.
        assert_eq!(
            names("FROM p\nRUN --mount=type=cache,target=/pc pip install --cache-dir=/pc x\n"),
            vec![]
        );
        // A non-root user with a mount under /root.
        assert_eq!(
            one(
                "FROM p\nUSER app\nRUN --mount=type=cache,target=/root/.cache/pip pip install --user x\n",
                "dockerfile.pip-cache-target"
            )
            .status,
            Status::Warn
        );
    }

    #[test]
    fn syntax_line_needing_docker_hub() {
        let c = one(
            "# syntax=docker/dockerfile:1.7\nFROM p\n",
            "dockerfile.syntax",
        );
        assert_eq!(c.status, Status::Warn);
        assert!(c.message.starts_with("line 1:"));
        assert_eq!(
            names("# syntax=registry.example.com/tools/dockerfile:1\nFROM p\n"),
            vec![]
        );
        assert_eq!(
            names("# syntax=127.0.0.1:5000/dockerfile:1\nFROM p\n"),
            vec![]
        );
        assert_eq!(
            names("# syntax=docker.io/docker/dockerfile:1\nFROM p\n")[0].0,
            "dockerfile.syntax"
        );
    }

    #[test]
    fn cache_id_differs_between_stages() {
        let df = "FROM p AS build\n\
                  RUN --mount=type=cache,id=pip-build,target=/root/.cache/pip pip install -r a.txt\n\
                  FROM p AS final\n\
                  RUN --mount=type=cache,target=/root/.cache/pip pip install -r b.txt\n";
        let c = one(df, "dockerfile.cache-id");
        assert_eq!(c.status, Status::Warn);
        assert!(c.message.contains("id=pip-build"), "{}", c.message);
        assert!(c.message.contains("id=/root/.cache/pip"), "{}", c.message);
        assert!(c.message.contains("(build)") && c.message.contains("(final)"));
        // Same id in both stages: one cache.
        let same = df.replace("id=pip-build,", "");
        assert_eq!(names(&same), vec![]);
        // Same id, different uid: two caches.
        let uid = same.replacen("type=cache,target", "type=cache,uid=1000,target", 1);
        assert_eq!(names(&uid)[0].0, "dockerfile.cache-id");
    }

    #[test]
    fn cache_mount_from_another_stage() {
        let c = one(
            "FROM p AS seed\nRUN mkdir /c\nFROM p\n\
             RUN --mount=type=cache,target=/root/.cache/pip,from=seed,source=/c pip install x\n",
            "dockerfile.cache-from",
        );
        assert_eq!(c.status, Status::Warn);
        assert!(c.message.starts_with("line 4:"), "{}", c.message);
    }

    #[test]
    fn env_parsing() {
        assert_eq!(
            env_pairs("A=1 B=\"x y\" C='z'"),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x y".into()),
                ("C".into(), "z".into())
            ]
        );
        assert_eq!(
            env_pairs("A hello world"),
            vec![("A".into(), "hello world".into())]
        );
        assert_eq!(env_pairs("NAME"), vec![]);
    }

    #[test]
    fn report_exit_codes_and_text() {
        let r = DoctorReport::new(vec![
            Check::ok("docker", "fine"),
            Check::warn("buildx", "absent", "install it"),
        ]);
        assert_eq!((r.ok, r.exit_code(), r.warnings), (true, 0, 1));
        assert!(
            r.render_text()
                .contains("WARN  buildx: absent\n      fix: install it")
        );
        let r = DoctorReport::new(vec![Check::fail("store", "down", "start it")]);
        assert_eq!((r.ok, r.exit_code()), (false, 1));
        assert!(r.render_text().ends_with("doctor: 1 failed, 0 warning(s)"));
    }

    /// The buildx line on outputs recorded from the real engines (tests/fixtures/engines).
    #[test]
    fn buildx_line_per_engine() {
        let caps = |store: &str| {
            let f = |n: &str| {
                std::fs::read_to_string(format!(
                    "{}/tests/fixtures/engines/{n}",
                    env!("CARGO_MANIFEST_DIR")
                ))
                .unwrap()
            };
            Capabilities::from_outputs(
                &f(&format!("version-26-{store}.json")),
                &f(&format!("info-26-{store}.json")),
                Ok(&f(&format!("buildx-inspect-26-{store}.txt"))),
                None,
            )
        };
        let c = buildx_check(&caps("containerd"), None, Some(3));
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(c.message.contains("registry cache exporter"), "{c:?}");
        let c = buildx_check(&caps("graph"), None, Some(1));
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(
            c.message.contains("graph-driver image store (overlay2)"),
            "{c:?}"
        );
        assert!(c.fix.unwrap().contains("containerd-snapshotter"));
        // Inline cache on 26: the cache tag stays when the cache-mount steps came from it;
        // on 20.10 the prefetch keeps it whole.
        assert!(
            c.message.contains("the tag stays as it was"),
            "{}",
            c.message
        );
        let mut old = caps("graph");
        old.server_version = Some("20.10.24+dfsg1".into());
        let c = buildx_check(&old, None, Some(1));
        assert!(
            c.message.contains("the prefetch pulls the cache tag"),
            "{c:?}"
        );
        // Forced classic where the registry exporter works: fine for one stage, a warning
        // for several, and never "no buildx plugin".
        let c = buildx_check(&caps("containerd"), Some(Flavour::Classic), Some(1));
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(!c.message.contains("no buildx"), "{c:?}");
        let c = buildx_check(&caps("containerd"), Some(Flavour::Classic), Some(2));
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(c.message.contains("1 earlier stage(s)"), "{c:?}");
        // An unknown builder fails.
        let mut unknown = caps("graph");
        unknown.builder = None;
        unknown.requested_builder = Some("nosuch".into());
        unknown.buildx_error = Some("ERROR: no builder \"nosuch\" found".into());
        let c = buildx_check(&unknown, None, None);
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(c.message.contains("nosuch"), "{c:?}");
    }
}
