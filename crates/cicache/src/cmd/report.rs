//! `cicache report` (what a build took from its caches) and `cicache doctor` (what keeps
//! caching from working, and how to fix it). The work is in `cicache_docker::report` and
//! `cicache_build::doctor`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};

use cicache_build::doctor::{self, DoctorRequest, StoreState};
use cicache_docker::report::{BuildRun, LogFormat, ReportSet, parse_log_bytes};
use cicache_store::backend::Access;

use crate::cli::report::{DoctorArgs, ReportArgs, ReportFormat};
use crate::output::{exit, write_atomic};
use crate::settings::{Context, usage};

pub fn report(a: ReportArgs, ctx: &Context) -> Result<u8> {
    let run = build_run(&a).map_err(usage)?;
    let mut reports = Vec::new();
    let mut code = exit::OK;
    for path in &a.logs {
        let mut r = parse_log_bytes(&read_log(path)?);
        if let Some(run) = &run {
            r.add_build_run(run);
        }
        let file = path.display().to_string();
        if r.format == LogFormat::Unknown {
            ctx.out.warn(format!(
                "{file}: no docker build or pip output found (expected `docker build \
                 --progress=plain`, `--progress=rawjson`, classic builder or pip lines)"
            ));
            code = exit::FAILURE;
        }
        reports.push((file, r));
    }
    let set = ReportSet::new(&reports);
    let format = if ctx.out.json {
        ReportFormat::Json
    } else {
        a.format
    };
    let text = match format {
        // Struct order, as docs/JSON.md shows it (not through the sorted result printer).
        ReportFormat::Json => {
            serde_json::to_string_pretty(&set).context("encoding the report as JSON")?
        }
        ReportFormat::Text => set.text(),
        ReportFormat::Markdown => set.markdown(),
        ReportFormat::Html => set.html(),
    };
    match &a.output {
        Some(path) => {
            write_atomic(path, &format!("{text}\n"))?;
            ctx.out
                .info(format!("report written to {}", path.display()));
        }
        None => print_out(&text)?,
    }
    Ok(code)
}

/// `--build-json FILE`: the build document whose phases go on the timeline.
fn build_run(a: &ReportArgs) -> Result<Option<BuildRun>, String> {
    let Some(path) = &a.build_json else {
        return Ok(None);
    };
    if a.logs.len() != 1 {
        return Err(format!(
            "--build-json describes one build: give exactly one LOG (got {})",
            a.logs.len()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading --build-json {}: {e}", path.display()))?;
    BuildRun::from_json(&text)
        .map(Some)
        .map_err(|e| format!("--build-json {}: {e}", path.display()))
}

/// A log file's bytes, or standard input's for `-`.
fn read_log(path: &Path) -> Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading the build log from standard input")?;
        return Ok(buf);
    }
    std::fs::read(path).with_context(|| format!("reading the build log {}", path.display()))
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

pub fn doctor(a: DoctorArgs, ctx: &Context) -> Result<u8> {
    let timeout = ctx
        .global
        .timeout
        .map(Into::into)
        .unwrap_or(Duration::from_secs(15));
    // The same factory as every other command's (oci:// included); read access: doctor
    // creates no store.
    let store = match crate::settings::open_store_within(ctx, timeout, Access::Read) {
        Ok(s) => StoreState::Open(s.backend().clone()),
        Err(e) if crate::settings::is_missing_store(&e) => {
            StoreState::NotYet(ctx.store.to_string())
        }
        Err(e) => StoreState::Failed(format!("{e:#}")),
    };
    let cfg = crate::settings::build_config(ctx)?;
    let compression = crate::settings::compression(&a.compression, &cfg)?
        .map(|(c, source)| (c, source.to_string()));
    let req = DoctorRequest {
        dockerfile: a.dockerfile,
        context: a.context,
        cache_dir: a
            .cache_dir
            .or(cfg.cache_dir.clone())
            .unwrap_or_else(|| PathBuf::from(".pip-cache")),
        image: a.image,
        docker: a.client.docker,
        timeout,
        compression,
    };
    let report = doctor::run(&req, store);
    ctx.out.result(&report, || report.render_text());
    Ok(report.exit_code())
}
