//! Everything the binary prints. Results go to stdout (text, or one JSON document with
//! `--json`); warnings, errors and progress go to stderr.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::ProgressMode;

/// Exit codes, documented in `cicache --help` and docs/CLI.md.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const MISS: u8 = 3;
}

pub struct Output {
    pub json: bool,
    pub quiet: bool,
    pub verbose: u8,
    pub progress: ProgressMode,
}

impl Output {
    pub fn new(json: bool, quiet: bool, verbose: u8, progress: ProgressMode) -> Self {
        // cicache's own crates log at warn; the libraries under them (the AWS SDK's
        // credential-chain and region warnings, hyper) only with -v, where they help.
        let filter = match (quiet, verbose) {
            (true, _) => "off,cicache=error,cicache_store=error,cicache_build=error,cicache_docker=error,cicache_registry=error".to_string(),
            (false, 0) => "off,cicache=warn,cicache_store=warn,cicache_build=warn,cicache_docker=warn,cicache_registry=warn".to_string(),
            (false, 1) => "info".to_string(),
            _ => "debug".to_string(),
        };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("CICACHE_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
            )
            .with_writer(std::io::stderr)
            // No colour codes in a Jenkins log (or any file).
            .with_ansi(std::io::stderr().is_terminal())
            .without_time()
            .with_target(false)
            .try_init();
        Output {
            json,
            quiet,
            verbose,
            progress,
        }
    }

    /// A line for the person reading the log (stderr), unless `-q`.
    pub fn info(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("cicache: {}", msg.as_ref());
        }
    }

    /// A cache problem that does not stop the build.
    pub fn warn(&self, msg: impl AsRef<str>) {
        eprintln!("cicache: warning: {}", msg.as_ref());
    }

    /// Prints the command's result: the JSON document with `--json`, else `text`.
    pub fn result<T: Serialize>(&self, value: &T, text: impl FnOnce() -> String) {
        // A closed stdout (`cicache list | head`) is not an error worth a panic.
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        if self.json {
            // Through a Value: every document prints its keys in the same (sorted) order.
            match serde_json::to_value(value).and_then(|v| serde_json::to_string_pretty(&v)) {
                Ok(s) => {
                    let _ = writeln!(stdout, "{s}");
                }
                Err(e) => eprintln!("cicache: error: cannot encode the result as JSON: {e}"),
            }
        } else {
            let t = text();
            if !t.is_empty() {
                let _ = writeln!(stdout, "{t}");
            }
        }
    }

    /// A progress reporter for a long transfer: bars on a terminal (and with
    /// `--progress always` on any stderr), plain lines in a CI log, nothing with `-q`.
    pub fn progress(&self, what: &str) -> Reporter {
        let (bars, plain) =
            progress_kind(self.progress, self.quiet, std::io::stderr().is_terminal());
        Reporter {
            what: what.to_string(),
            bars,
            plain,
            state: Mutex::new(ReporterState::default()),
        }
    }
}

/// Whether to draw bars, and whether to print plain progress lines instead.
fn progress_kind(mode: ProgressMode, quiet: bool, terminal: bool) -> (bool, bool) {
    if quiet {
        return (false, false);
    }
    match mode {
        ProgressMode::Never => (false, false),
        ProgressMode::Always => (true, false),
        ProgressMode::Auto => (terminal, !terminal),
    }
}

#[derive(Default)]
struct ReporterState {
    bar: Option<indicatif::ProgressBar>,
    phase: String,
    total: Option<u64>,
    done: u64,
    started: Option<Instant>,
    last_line: Option<Instant>,
}

/// Progress: indicatif bars on a terminal; on a CI log a plain line every few seconds.
pub struct Reporter {
    what: String,
    bars: bool,
    plain: bool,
    state: Mutex<ReporterState>,
}

const PLAIN_EVERY: Duration = Duration::from_secs(5);

impl cicache_store::Progress for Reporter {
    fn start(&self, phase: &str, total: Option<u64>) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if let Some(b) = st.bar.take() {
            b.finish_and_clear();
        }
        st.phase = phase.to_string();
        st.total = total;
        st.done = 0;
        st.started = Some(Instant::now());
        st.last_line = Some(Instant::now());
        if self.bars {
            // Drawn on stderr whether or not it is a terminal: `--progress always` asks for
            // bars in a log too (indicatif's own stderr target hides itself there).
            let target = indicatif::ProgressDrawTarget::term_like_with_hz(
                Box::new(console::Term::stderr()),
                10,
            );
            let bar = indicatif::ProgressBar::with_draw_target(total, target);
            bar.set_style(bar_style(total.is_some()));
            bar.set_message(format!("{} {phase}", self.what));
            st.bar = Some(bar);
        }
    }

    fn inc(&self, bytes: u64) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        st.done += bytes;
        if let Some(b) = &st.bar {
            b.inc(bytes);
        }
        if self.plain && st.last_line.is_some_and(|t| t.elapsed() >= PLAIN_EVERY) {
            st.last_line = Some(Instant::now());
            let secs = st.started.map(|t| t.elapsed().as_secs_f64()).unwrap_or(1.0);
            let rate = Bytes((st.done as f64 / secs.max(0.001)) as u64);
            let of = st
                .total
                .map(|t| format!(" of {}", human_bytes(t)))
                .unwrap_or_default();
            eprintln!(
                "cicache: {} {}: {}{of} ({rate}/s)",
                self.what,
                st.phase,
                human_bytes(st.done)
            );
        }
    }

    fn finish(&self) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if let Some(b) = st.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// Writes `text` to `path` through a temp file beside it, then renamed: a reader (a
/// Jenkins publisher, a browser) never sees half a file.
pub fn write_atomic(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot move {} into place", path.display()));
    }
    Ok(())
}

/// A command that failed: the message on stderr and, with `--json`, the one error document
/// of docs/JSON.md on stdout (`kind`: `usage` for exit code 2, else `failure`).
pub fn print_error(json: bool, err: &anyhow::Error, code: u8) {
    let msg = format!("{err:#}");
    eprintln!("cicache: error: {msg}");
    if json {
        println!("{}", error_doc(&msg, code));
    }
}

/// Pretty, with sorted keys, like every result document.
fn error_doc(msg: &str, code: u8) -> String {
    let doc = serde_json::json!({
        "ok": false,
        "error": msg,
        "kind": if code == exit::USAGE { "usage" } else { "failure" },
        "exit_code": code,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string())
}

/// A command line clap refused: its message (usage included) on stderr, the error document
/// on stdout with `--json`, exit code 2. `--help` and `--version` print as usual (exit 0).
pub fn clap_error(e: clap::Error, json: bool) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return std::process::ExitCode::SUCCESS;
    }
    let _ = e.print();
    if json {
        let text = e.render().to_string();
        let first = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("invalid command line");
        let msg = first.strip_prefix("error: ").unwrap_or(first).trim();
        let msg = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            "a subcommand is required (see --help)"
        } else {
            msg
        };
        println!("{}", error_doc(msg, exit::USAGE));
    }
    std::process::ExitCode::from(exit::USAGE)
}

/// The bar: sizes and speed in the SI units every summary uses (`12.3 MB`, `45.6 MB/s`),
/// the speed being bytes moved over time.
fn bar_style(known_total: bool) -> indicatif::ProgressStyle {
    let template = if known_total {
        "{msg} [{bar:30}] {done}/{total} {speed} eta {eta}"
    } else {
        "{msg} {spinner} {done} {speed}"
    };
    indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .with_key(
            "done",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", Bytes(s.pos()));
            },
        )
        .with_key(
            "total",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", Bytes(s.len().unwrap_or(0)));
            },
        )
        .with_key(
            "speed",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}/s", Bytes(s.per_sec() as u64));
            },
        )
        .progress_chars("=> ")
}

/// `1.23 GB`, `340 MB`: SI units, one formatter for every size the binary prints
/// (crates/cicache-units).
pub use cicache_units::format_bytes as human_bytes;

use cicache_units::Bytes;

/// The build library's messages go where every command's go.
impl cicache_build::Events for Output {
    fn info(&self, msg: &str) {
        Output::info(self, msg);
    }
    fn warn(&self, msg: &str) {
        Output::warn(self, msg);
    }
    fn error(&self, msg: &str) {
        eprintln!("cicache: error: {msg}");
    }
    fn summary(&self, msg: &str) {
        if !self.json {
            Output::info(self, msg);
        }
    }
    fn docker_line(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }
    fn verbose(&self) -> bool {
        self.verbose > 0
    }
    fn progress(&self, what: &str) -> Box<dyn cicache_store::Progress> {
        Box::new(Output::progress(self, what))
    }
}
