//! `cicache report` (what a build took from its caches) and `cicache doctor` (what keeps
//! caching from working, and how to fix it).

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;

use cicache_docker::doctor::{self, Check, DoctorReport};
use cicache_docker::engine::Docker;
use cicache_docker::report::{BuildReport, BuildRun, LogFormat, parse_log_bytes};

use crate::output::exit;
use crate::settings::Context;

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

/// One log's report in the JSON output.
#[derive(Debug, Serialize)]
struct FileReport<'a> {
    /// The path as given (`-` for standard input).
    file: String,
    #[serde(flatten)]
    report: &'a BuildReport,
}

#[derive(Debug, Serialize)]
struct ReportOutput<'a> {
    /// Every log was read, holds a build or pip output, and no build in them failed.
    ok: bool,
    reports: Vec<FileReport<'a>>,
}

pub fn report(a: ReportArgs, ctx: &Context) -> Result<u8> {
    let run = match &a.build_json {
        None => None,
        Some(_) if a.logs.len() != 1 => {
            eprintln!(
                "cicache: error: --build-json describes one build: give exactly one LOG (got {})",
                a.logs.len()
            );
            return Ok(exit::USAGE);
        }
        Some(path) => {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!(
                        "cicache: error: reading --build-json {}: {e}",
                        path.display()
                    );
                    return Ok(exit::USAGE);
                }
            };
            match BuildRun::from_json(&text) {
                Ok(run) => Some(run),
                Err(e) => {
                    eprintln!("cicache: error: --build-json {}: {e}", path.display());
                    return Ok(exit::USAGE);
                }
            }
        }
    };
    let mut reports = Vec::new();
    for path in &a.logs {
        let bytes = if path.as_os_str() == "-" {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading the build log from standard input")?;
            buf
        } else {
            std::fs::read(path)
                .with_context(|| format!("reading the build log {}", path.display()))?
        };
        let mut r = parse_log_bytes(&bytes);
        if let Some(run) = &run {
            r.add_build_run(run);
        }
        reports.push((path.display().to_string(), r));
    }
    let mut code = exit::OK;
    for (file, r) in &reports {
        if r.format == LogFormat::Unknown {
            ctx.out.warn(format!(
                "{file}: no docker build or pip output found (expected `docker build \
                 --progress=plain`, `--progress=rawjson`, classic builder or pip lines)"
            ));
            code = exit::FAILURE;
        }
    }
    let format = if ctx.out.json {
        ReportFormat::Json
    } else {
        a.format
    };
    let several = reports.len() > 1;
    match format {
        ReportFormat::Json => {
            let doc = ReportOutput {
                ok: reports.iter().all(|(_, r)| r.ok),
                reports: reports
                    .iter()
                    .map(|(file, report)| FileReport {
                        file: file.clone(),
                        report,
                    })
                    .collect(),
            };
            let text = serde_json::to_string_pretty(&doc).context("encoding the report as JSON")?;
            write_out(&text, a.output.as_deref())?;
        }
        ReportFormat::Text => {
            let parts: Vec<String> = reports
                .iter()
                .map(|(file, r)| {
                    if several {
                        format!("== {file}\n{}", r.render_text())
                    } else {
                        r.render_text()
                    }
                })
                .collect();
            write_out(&parts.join("\n\n"), a.output.as_deref())?;
        }
        ReportFormat::Markdown => {
            let parts: Vec<String> = reports
                .iter()
                .map(|(file, r)| {
                    if several {
                        format!("### {file}\n\n{}", r.render_markdown())
                    } else {
                        r.render_markdown()
                    }
                })
                .collect();
            write_out(&parts.join("\n\n"), a.output.as_deref())?;
        }
        ReportFormat::Html => {
            let pages: Vec<(&str, &BuildReport)> =
                reports.iter().map(|(f, r)| (f.as_str(), r)).collect();
            let page = cicache_docker::report::html::document(&pages);
            write_out(page.trim_end(), a.output.as_deref())?;
        }
    }
    if let Some(path) = &a.output {
        ctx.out
            .info(format!("report written to {}", path.display()));
    }
    Ok(code)
}

/// Writes the report to FILE (a temp file beside it, then renamed: a reader never sees half
/// a page), or to standard output.
fn write_out(text: &str, file: Option<&std::path::Path>) -> Result<()> {
    let Some(path) = file else {
        return print_out(text);
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, format!("{text}\n"))
        .with_context(|| format!("writing the report to {}", tmp.display()))?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e)
            .with_context(|| format!("moving the report into place at {}", path.display()));
    }
    Ok(())
}

/// Prints the report; a reader that stops early (`| head`) is not an error.
fn print_out(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing the report to standard output"),
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Check what a cached Docker build needs and print a checklist with a fix for \
        every line that does not pass: the docker daemon reachable (DOCKER_HOST is respected), \
        BuildKit working (a tiny FROM scratch build), buildx present or not and what that \
        changes, the Dockerfile (pip or uv install without a cache mount, --no-cache-dir or \
        PIP_NO_CACHE_DIR defeating the mount, a cache mount where the tool does not look, a \
        `# syntax=` line that needs Docker Hub, cache mounts on one target with different ids \
        in different stages), the store (a list call) and the registry (GET /v2/).\n\n\
        Exit codes: 0 when nothing failed (warnings allowed), 1 when a check failed.\n\n\
        Examples:\n  cicache doctor\n  cicache doctor --dockerfile docker/Dockerfile --image 127.0.0.1:5000/app\n  \
        DOCKER_HOST=tcp://127.0.0.1:2375 cicache doctor --json"
)]
pub struct DoctorArgs {
    /// The Dockerfile to check. [default: ./Dockerfile when present]
    #[arg(long, short = 'f', env = "CICACHE_DOCKERFILE", value_name = "FILE")]
    pub dockerfile: Option<PathBuf>,

    /// The image repository whose registry to check (REGISTRY/NAME); without it the registry
    /// line is skipped.
    #[arg(long, env = "CICACHE_IMAGE", value_name = "REPO")]
    pub image: Option<String>,

    /// The docker client to run.
    #[arg(
        long,
        env = "CICACHE_DOCKER",
        default_value = "docker",
        value_name = "PROGRAM"
    )]
    pub docker: PathBuf,
}

pub fn doctor(a: DoctorArgs, ctx: &Context) -> Result<u8> {
    let mut checks: Vec<Check> = Vec::new();

    // The Dockerfile first: its stage count tells the buildx line what inline cache loses.
    let dockerfile = a.dockerfile.clone().or_else(|| {
        let d = PathBuf::from("Dockerfile");
        d.is_file().then_some(d)
    });
    let (df_checks, df) = match &dockerfile {
        Some(path) => doctor::dockerfile_checks(path),
        None => (
            vec![Check::skip(
                "dockerfile",
                "no --dockerfile given and no ./Dockerfile",
            )],
            None,
        ),
    };
    let docker = Docker::new(&a.docker);
    let env = |k: &str| std::env::var(k).ok();
    checks.extend(doctor::docker_checks(
        &docker,
        &env,
        df.as_ref().map(|d| d.stages.len()),
    ));
    checks.extend(df_checks);
    checks.push(store_check(ctx));
    checks.push(match &a.image {
        Some(image) => registry_check(image, ctx),
        None => Check::skip("registry", "no --image given (CICACHE_IMAGE)"),
    });

    let report = DoctorReport::new(checks);
    ctx.out.result(&report, || report.render_text());
    Ok(report.exit_code())
}

fn timeout(ctx: &Context) -> Duration {
    ctx.global
        .timeout
        .map(Into::into)
        .unwrap_or(Duration::from_secs(15))
}

fn store_check(ctx: &Context) -> Check {
    // The same factory as every other command's (oci:// included).
    let spec = crate::settings::store_spec(ctx);
    let backend = match crate::settings::open_store_spec(spec.as_deref(), Some(timeout(ctx))) {
        Ok(store) => store.backend().clone(),
        Err(e) => {
            return Check::fail(
                "store",
                format!("{e:#}"),
                "set --store / CICACHE_STORE to DIR, dir:DIR, s3://BUCKET/PREFIX or \
                 oci://REGISTRY/REPOSITORY (for S3: credentials and region from the AWS config \
                 chain, AWS_ENDPOINT_URL for a non-AWS endpoint)",
            );
        }
    };
    let location = backend.location();
    match backend.list("cicache-v1/refs/") {
        Ok(refs) => Check::ok(
            "store",
            format!("{location} answers a list call ({} entries)", refs.len()),
        ),
        Err(e) => Check::fail(
            "store",
            format!("{location}: listing entries failed: {e}"),
            "check that the directory exists and is readable, or that the bucket exists and \
             these credentials may list it (s3:ListBucket)",
        ),
    }
}

fn registry_check(image: &str, ctx: &Context) -> Check {
    use cicache_registry::Error;
    let target = match cicache_registry::Target::parse(image) {
        Ok(t) => t,
        Err(e) => {
            return Check::fail(
                "registry",
                e.to_string(),
                "give --image as REGISTRY/NAME, e.g. 127.0.0.1:5000/app or \
                 123456789012.dkr.ecr.eu-west-1.amazonaws.com/app",
            );
        }
    };
    let opts = cicache_registry::OciOptions {
        plain_http: None,
        timeout: Some(timeout(ctx)),
    };
    let client = cicache_registry::OciClient::new(&target, None, &opts);
    match client.ping() {
        Ok(()) => Check::ok(
            "registry",
            format!("{} answers GET /v2/ (200)", target.registry),
        ),
        // A 401 is a registry that answers and wants credentials: reachable.
        Err(Error::Unauthorized { .. }) => Check::ok(
            "registry",
            format!(
                "{} answers GET /v2/ and asks for credentials (docker login, or `cicache registry login` for ECR)",
                target.registry
            ),
        ),
        Err(e @ Error::Forbidden { .. }) => Check::warn(
            "registry",
            e.to_string(),
            "the registry answers but refuses these credentials the API; check their permissions",
        ),
        Err(e) => Check::fail(
            "registry",
            format!("{}: {e}", target.registry),
            format!(
                "check that {} is the registry host and that this agent reaches it (https; \
                 plain http only for loopback addresses, as docker does)",
                target.registry
            ),
        ),
    }
}
