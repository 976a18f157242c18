//! `cicache report` and `cicache doctor`: their flags.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// A verdict line, then steps, slowest steps, wheels and the failure, if any.
    Text,
    /// One JSON document (docs/JSON.md, section `report`); the same as --json.
    Json,
    /// Markdown for a CI job summary or a pull-request comment.
    Markdown,
    /// One self-contained HTML page (inline CSS, nothing fetched): the verdict, why it
    /// missed, the timeline, the slowest steps, the wheels. For a Jenkins build page.
    Html,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Summarize docker build logs: steps cached out of total, the slowest steps, \
        wheels pip took from its cache versus downloaded (with bytes), the build time, and the \
        failing step with its error lines. The first line is the verdict, e.g.\n\n  \
        cache: 7/9 steps cached, 41/42 wheels from cache (1.9 GB not downloaded), build 1m12s\n\n\
        Reads BuildKit plain progress (--progress=plain), BuildKit rawjson progress \
        (--progress=rawjson), the classic builder (DOCKER_BUILDKIT=0) and pip's own output, \
        detected per file. A Jenkins console log with timestamps and other output around the \
        build works too. Formats: docs/REPORT.md.\n\n\
        With --format html: one page with a timeline (a bar per step on a time axis, \
        cicache's phases as a second lane for a `cicache build --log` file) and why the build \
        missed; --build-json adds the phases' real times and what the check, restore and \
        inject found.\n\n\
        Exit codes: 0 when every log was read (a failed build in a log is still a report), \
        1 when a log cannot be read or holds no docker build or pip output, 2 for a bad \
        --build-json.\n\n\
        Examples:\n  docker build --progress=plain . 2>&1 | tee build.log\n  \
        cicache report build.log\n  cicache report --format markdown build.log >> \"$GITHUB_STEP_SUMMARY\"\n  \
        cicache --json build --log build.log ... > build.json\n  \
        cicache report --format html --build-json build.json build.log -o cache-report.html\n  \
        docker build --progress=plain . 2>&1 | cicache report -"
)]
pub struct ReportArgs {
    /// Build logs to read; `-` reads standard input.
    #[arg(required = true, value_name = "LOG")]
    pub logs: Vec<PathBuf>,

    /// Output format (--json is the same as --format json).
    #[arg(
        long,
        env = "CICACHE_REPORT_FORMAT",
        value_enum,
        default_value_t = ReportFormat::Text,
        value_name = "FORMAT"
    )]
    pub format: ReportFormat,

    /// Write the report to FILE instead of standard output (replaced atomically).
    #[arg(long, short = 'o', env = "CICACHE_REPORT_OUTPUT", value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// The `cicache --json build` document of the build the log is from: its phases go on
    /// the timeline and its check, restore and inject explain the misses. Needs one LOG.
    #[arg(long, env = "CICACHE_REPORT_BUILD_JSON", value_name = "FILE")]
    pub build_json: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Check what a cached Docker build needs and print a checklist with a fix for \
        every line that does not pass: the docker daemon reachable (DOCKER_HOST is respected), \
        BuildKit working (a tiny FROM scratch build), buildx present or not and what that \
        changes, the Dockerfile (pip or uv install without a cache mount, --no-cache-dir or \
        PIP_NO_CACHE_DIR defeating the mount, a cache mount where the tool does not look, a \
        `# syntax=` line that needs Docker Hub, cache mounts on one target with different ids \
        in different stages, a COPY that takes the cache dir into the image), the store (a \
        list call) and the registry (GET /v2/).\n\n\
        Exit codes: 0 when nothing failed (warnings allowed), 1 when a check failed.\n\n\
        Examples:\n  cicache doctor\n  cicache doctor --dockerfile docker/Dockerfile --image 127.0.0.1:5000/app\n  \
        cicache doctor --context app --cache-dir .pip-cache\n  \
        DOCKER_HOST=tcp://127.0.0.1:2375 cicache doctor --json"
)]
pub struct DoctorArgs {
    /// The Dockerfile to check. [default: CONTEXT/Dockerfile when present]
    #[arg(long, short = 'f', env = "CICACHE_DOCKERFILE", value_name = "FILE")]
    pub dockerfile: Option<PathBuf>,

    /// The image repository whose registry to check (REGISTRY/NAME); without it the registry
    /// line is skipped.
    #[arg(long, env = "CICACHE_IMAGE", value_name = "REPO")]
    pub image: Option<String>,

    /// The build context (the CONTEXT of `cicache build`): whether the Dockerfile copies the
    /// cache dir into the image.
    #[arg(long, env = "CICACHE_CONTEXT", default_value = ".", value_name = "DIR")]
    pub context: PathBuf,

    /// The cache dir a build restores into (as `cicache build --cache-dir`).
    /// [default: build.cache_dir of cicache.yml, else .pip-cache]
    #[arg(long = "cache-dir", env = "CICACHE_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    #[command(flatten)]
    pub client: super::docker::DockerClient,

    // The layer compression to check against the engine (as `cicache build` takes it).
    #[command(flatten)]
    pub compression: super::docker::CompressionArgs,
}
