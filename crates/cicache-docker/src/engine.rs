//! Running the docker client: which flavour of build it offers, and running builds with
//! their output streamed to the log and kept for the report.
//!
//! cicache never talks to the daemon's API itself: it runs the `docker` client, so whatever
//! reaches the daemon for the user (DOCKER_HOST, contexts, TLS variables, a Docker-in-Docker
//! agent over tcp://) reaches it for cicache too. Nothing here assumes the daemon shares a
//! filesystem with cicache: build contexts go up and `--output` results come back through
//! the client.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Why a docker command failed to run or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DockerError {
    #[error(
        "cannot run `{program}`: {source} (install the docker client, or point --docker / CICACHE_DOCKER at it)"
    )]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed with exit code {code}{}", tail_text(.tail))]
    Failed {
        command: String,
        code: i32,
        /// The last lines of its output (error lines first when there are any).
        tail: Vec<String>,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!(":\n  {}", tail.join("\n  "))
    }
}

/// How builds are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    /// `docker buildx build` with a registry cache exporter.
    Buildx,
    /// `DOCKER_BUILDKIT=1 docker build` with inline cache and a pushed cache tag.
    Classic,
}

impl Flavour {
    /// The command, with the cache exporter it has used so far. Why this flavour was chosen
    /// is [`BuildMode::reason`]; this text does not guess it (a forced `classic` runs beside
    /// a working buildx plugin).
    pub fn describe(self) -> &'static str {
        match self {
            Flavour::Buildx => "docker buildx build (registry cache exporter)",
            Flavour::Classic => {
                "DOCKER_BUILDKIT=1 docker build (inline cache, cache tag pushed separately)"
            }
        }
    }
}

/// Where a build's layer cache goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Exporter {
    /// `--cache-to type=registry,ref=IMAGE:cache,mode=max,image-manifest=true,oci-mediatypes=true,ignore-error=true`:
    /// a cache manifest of every stage's layers; the cache tag is not an image.
    Registry,
    /// Inline cache (`BUILDKIT_INLINE_CACHE=1`, or `--cache-to type=inline`) in the image
    /// config, and the image pushed again as the cache tag: the final stage's layers only.
    Inline,
}

/// The daemon's image store (`docker info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ImageStore {
    /// A graph driver (`overlay2`, `fuse-overlayfs`, ...): the default before Docker 29.
    Graph { driver: String },
    /// The containerd image store (`features.containerd-snapshotter`, the default of Docker
    /// 29): `docker info` DriverStatus `driver-type io.containerd.snapshotter.v1`.
    Containerd { snapshotter: String },
    /// `docker info` did not say.
    Unknown,
}

/// The buildx builder's driver (`docker buildx inspect`: `Driver:`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuilderDriver {
    /// The daemon's own BuildKit (the `default` builder).
    Docker,
    /// BuildKit in a container (`docker buildx create --driver docker-container`).
    DockerContainer,
    /// A BuildKit daemon reached over the network.
    Remote,
    Kubernetes,
    Other(String),
}

impl BuilderDriver {
    fn parse(s: &str) -> BuilderDriver {
        match s.trim() {
            "docker" => BuilderDriver::Docker,
            "docker-container" => BuilderDriver::DockerContainer,
            "remote" => BuilderDriver::Remote,
            "kubernetes" => BuilderDriver::Kubernetes,
            o => BuilderDriver::Other(o.to_string()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            BuilderDriver::Docker => "docker",
            BuilderDriver::DockerContainer => "docker-container",
            BuilderDriver::Remote => "remote",
            BuilderDriver::Kubernetes => "kubernetes",
            BuilderDriver::Other(s) => s,
        }
    }
}

/// A buildx builder, as `docker buildx inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Builder {
    pub name: String,
    pub driver: BuilderDriver,
    /// `BuildKit version:` (`Buildkit:` before buildx 0.12) of its first node, when shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buildkit: Option<String>,
}

/// What the docker client, the daemon and the buildx builder can do: found by
/// [`Docker::capabilities`], turned into a [`BuildMode`] by [`Capabilities::decide`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// `docker version`: Client.Version.
    pub client_version: Option<String>,
    /// `docker version`: Server.Version (`None`: the daemon did not answer).
    pub server_version: Option<String>,
    /// `docker version`: Server.Os/Server.Arch (`linux/amd64`), what the daemon builds for
    /// unless told otherwise.
    #[serde(skip)]
    pub server_platform: Option<String>,
    pub image_store: ImageStore,
    /// The builder asked for (`--builder NAME`), if any; else buildx's current one.
    pub requested_builder: Option<String>,
    /// The builder buildx builds with (`None`: no buildx plugin, or the builder is unknown:
    /// see `buildx_error`).
    pub builder: Option<Builder>,
    /// Whether the client has the buildx plugin.
    pub buildx: bool,
    /// Why `docker buildx inspect` failed, when buildx is there but the builder is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buildx_error: Option<String>,
}

/// Why a builder cannot export a registry cache, and what would let it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportRefusal {
    pub why: String,
    pub fix: String,
    /// The builder itself cannot be used (an unknown `--builder`): builds fail too.
    pub builder_unusable: bool,
}

impl std::fmt::Display for ExportRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.why, self.fix)
    }
}

/// How `cicache build` builds on this engine, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildMode {
    pub flavour: Flavour,
    pub exporter: Exporter,
    /// `--builder NAME` for the buildx command lines (builds and the dance's helper builds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub builder: Option<String>,
    /// One line for the log: what was chosen and why.
    pub reason: String,
    /// The daemon's version (`docker version`'s Server.Version), when the choice asked it.
    #[serde(skip)]
    pub daemon_version: Option<String>,
    /// The daemon's platform (`linux/amd64`), when the choice asked it.
    #[serde(skip)]
    pub daemon_platform: Option<String>,
}

impl BuildMode {
    /// The mode a flavour has meant so far, for callers that decide nothing else: buildx
    /// with the registry exporter, classic with inline cache.
    pub fn of_flavour(flavour: Flavour) -> BuildMode {
        BuildMode {
            flavour,
            exporter: match flavour {
                Flavour::Buildx => Exporter::Registry,
                Flavour::Classic => Exporter::Inline,
            },
            builder: None,
            reason: String::new(),
            daemon_version: None,
            daemon_platform: None,
        }
    }

    /// `--builder NAME` when a builder was asked for and the flavour is buildx (a 20.10
    /// `docker build` has no such flag): for the dance's helper builds
    /// ([`crate::dance::DanceOptions::extra_args`]).
    pub fn builder_args(&self) -> Vec<String> {
        match (&self.builder, self.flavour) {
            (Some(b), Flavour::Buildx) => vec!["--builder".into(), b.clone()],
            _ => Vec::new(),
        }
    }
}

/// The first docker daemon (major version) whose BuildKit does not keep an inline cache whole
/// when the cache tag is pulled before the build. 23.0 moved `docker build` to buildx and a
/// newer BuildKit; measured: 20.10 (BuildKit 0.8) keeps it, 26 (0.13) does not.
const PULL_KEEPS_INLINE_CACHE_BEFORE: u32 = 23;

/// Whether a `docker pull` of the inline cache tag before the build keeps the cache tag the
/// build pushes whole, on the daemon of this `docker version` (cicache's prefetch): Docker
/// 20.10 and older. An unknown version counts as new.
pub fn pull_keeps_inline_cache(server_version: Option<&str>) -> bool {
    server_version
        .and_then(major_version)
        .is_some_and(|m| m < PULL_KEEPS_INLINE_CACHE_BEFORE)
}

/// The first docker client version whose `docker build` needs the buildx plugin for
/// BuildKit (the classic BuildKit client path was removed in 23.0).
const BUILD_IS_BUILDX_FROM: u32 = 23;

/// The major number of a docker version (`26.1.5+dfsg1` -> 26).
pub fn major_version(v: &str) -> Option<u32> {
    v.trim()
        .trim_start_matches('v')
        .split(['.', '+', '-', '~'])
        .next()?
        .parse()
        .ok()
}

impl Capabilities {
    /// Reads `docker version --format '{{json .}}'` and `docker info --format '{{json .}}'`
    /// output (either may be empty when the command failed) and `docker buildx inspect`'s
    /// result (`Ok(stdout)`, or `Err(stderr)`).
    pub fn from_outputs(
        version_json: &str,
        info_json: &str,
        buildx_inspect: Result<&str, &str>,
        requested_builder: Option<&str>,
    ) -> Capabilities {
        let version: serde_json::Value =
            serde_json::from_str(version_json.trim()).unwrap_or_default();
        let info: serde_json::Value = serde_json::from_str(info_json.trim()).unwrap_or_default();
        let text = |v: &serde_json::Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
        let client_version =
            text(&version["Client"]["Version"]).or_else(|| text(&info["ClientInfo"]["Version"]));
        let server_version =
            text(&version["Server"]["Version"]).or_else(|| text(&info["ServerVersion"]));
        let server_platform = match (
            text(&version["Server"]["Os"]),
            text(&version["Server"]["Arch"]),
        ) {
            (Some(os), Some(arch)) if !format!("{os}{arch}").contains(['/', ' ']) => {
                Some(format!("{os}/{arch}"))
            }
            _ => None,
        };
        let image_store = image_store(&info);
        let (buildx, builder, buildx_error) = match buildx_inspect {
            Ok(out) => (true, parse_buildx_inspect(out), None),
            Err(err) => {
                // An unknown command: no plugin. Anything else: the plugin ran and refused
                // (an unknown --builder, a builder that cannot start).
                let missing = err.contains("is not a docker command")
                    || err.contains("unknown command")
                    || err.is_empty();
                let plugin_listed = info["ClientInfo"]["Plugins"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["Name"] == "buildx"));
                if missing && !plugin_listed {
                    (false, None, None)
                } else {
                    let e = err
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .collect::<Vec<_>>()
                        .join(" ");
                    (true, None, Some(e))
                }
            }
        };
        Capabilities {
            client_version,
            server_version,
            server_platform,
            image_store,
            requested_builder: requested_builder.map(str::to_string),
            builder,
            buildx,
            buildx_error,
        }
    }

    /// Whether `docker build` of this client is buildx (23.0 and newer), so that the classic
    /// flavour also needs the plugin. Unknown versions count as old.
    pub fn build_needs_buildx(&self) -> bool {
        self.client_version
            .as_deref()
            .and_then(major_version)
            .is_some_and(|m| m >= BUILD_IS_BUILDX_FROM)
    }

    /// `Ok` when the builder can export a registry cache, else why not and the fix.
    pub fn registry_export(&self) -> Result<(), ExportRefusal> {
        if !self.buildx {
            return Err(ExportRefusal {
                why: "no buildx plugin: a docker build without buildx exports inline cache only"
                    .to_string(),
                fix: "install the docker buildx plugin (docker-buildx-plugin, or the binary in \
                      ~/.docker/cli-plugins/)"
                    .to_string(),
                builder_unusable: false,
            });
        }
        let Some(b) = &self.builder else {
            let name = self
                .requested_builder
                .as_deref()
                .map(|n| format!(" {n:?}"))
                .unwrap_or_default();
            return Err(ExportRefusal {
                why: format!(
                    "the buildx builder{name} is not usable: {}",
                    self.buildx_error
                        .as_deref()
                        .unwrap_or("`docker buildx inspect` failed")
                ),
                fix: "`docker buildx ls` lists the builders: create the one named by --builder \
                      (CICACHE_BUILDER), or unset it to use the current one"
                    .to_string(),
                builder_unusable: true,
            });
        };
        let fix = "turn on the containerd image store (daemon.json \
                   {\"features\":{\"containerd-snapshotter\":true}}, the default from Docker 29), or \
                   create a builder with BuildKit of its own (docker buildx create --name cicache \
                   --driver docker-container) and pass --builder cicache (CICACHE_BUILDER)"
            .to_string();
        match (&b.driver, &self.image_store) {
            (BuilderDriver::Docker, ImageStore::Containerd { .. }) => Ok(()),
            (BuilderDriver::Docker, ImageStore::Graph { driver }) => Err(ExportRefusal {
                why: format!(
                    "buildx's docker driver (builder {:?}) on the daemon's graph-driver image \
                     store ({driver}) cannot export a registry cache (\"Cache export is not \
                     supported for the docker driver\")",
                    b.name
                ),
                fix,
                builder_unusable: false,
            }),
            (BuilderDriver::Docker, ImageStore::Unknown) => Err(ExportRefusal {
                why: format!(
                    "buildx's docker driver (builder {:?}) exports a registry cache only on the \
                     containerd image store, and `docker info` did not say which store the \
                     daemon uses",
                    b.name
                ),
                fix,
                builder_unusable: false,
            }),
            // BuildKit of its own: it exports any cache.
            _ => Ok(()),
        }
    }

    /// The build mode: the registry cache exporter where the builder supports it, else
    /// inline cache with the cache tag pushed separately. `forced` is `--flavour`.
    pub fn decide(&self, forced: Option<Flavour>) -> BuildMode {
        let builder = self.requested_builder.clone();
        let daemon_version = self.server_version.clone();
        let daemon_platform = self.server_platform.clone();
        let registry = self.registry_export();
        let on = self.describe_builder();
        match (forced, registry) {
            (Some(Flavour::Classic), _) => BuildMode {
                flavour: Flavour::Classic,
                exporter: Exporter::Inline,
                builder,
                daemon_version,
                daemon_platform,
                reason: format!("--flavour classic: inline cache and a pushed cache tag ({on})"),
            },
            (Some(Flavour::Buildx), Ok(())) | (None, Ok(())) => BuildMode {
                flavour: Flavour::Buildx,
                exporter: Exporter::Registry,
                builder,
                daemon_version,
                daemon_platform,
                reason: format!("registry cache exporter, mode=max: {on} exports a registry cache"),
            },
            (Some(Flavour::Buildx), Err(r)) => BuildMode {
                flavour: Flavour::Buildx,
                exporter: Exporter::Inline,
                builder,
                daemon_version,
                daemon_platform,
                reason: format!(
                    "--flavour buildx with inline cache and a pushed cache tag: {}",
                    r.why
                ),
            },
            (None, Err(r)) => BuildMode {
                flavour: Flavour::Classic,
                exporter: Exporter::Inline,
                builder,
                daemon_version,
                daemon_platform,
                reason: format!("inline cache and a pushed cache tag: {}", r.why),
            },
        }
    }

    /// `builder "default" (docker driver) on docker 26.1.5, containerd image store`.
    pub fn describe_builder(&self) -> String {
        let daemon = match &self.server_version {
            Some(v) => format!("docker {v}"),
            None => "docker (daemon not reached)".to_string(),
        };
        let store = match &self.image_store {
            ImageStore::Graph { driver } => format!("graph-driver image store ({driver})"),
            ImageStore::Containerd { .. } => "containerd image store".to_string(),
            ImageStore::Unknown => "unknown image store".to_string(),
        };
        match &self.builder {
            Some(b) => format!(
                "builder {:?} ({} driver) on {daemon}, {store}",
                b.name,
                b.driver.name()
            ),
            None if !self.buildx => format!("{daemon} without buildx, {store}"),
            None => format!("{daemon}, {store}, builder not usable"),
        }
    }
}

/// The image store of `docker info`'s JSON.
fn image_store(info: &serde_json::Value) -> ImageStore {
    let status = info["DriverStatus"].as_array();
    let driver_type = status.and_then(|rows| {
        rows.iter().find_map(|r| {
            let r = r.as_array()?;
            (r.first()?.as_str()? == "driver-type")
                .then(|| r.get(1)?.as_str().map(str::to_string))?
        })
    });
    let driver = info["Driver"].as_str().filter(|s| !s.is_empty());
    match (driver_type, driver) {
        (Some(t), d) if t == "io.containerd.snapshotter.v1" => ImageStore::Containerd {
            snapshotter: d.unwrap_or("overlayfs").to_string(),
        },
        (_, Some(d)) => ImageStore::Graph {
            driver: d.to_string(),
        },
        _ => ImageStore::Unknown,
    }
}

/// The builder of `docker buildx inspect`'s text: `Name:` and `Driver:` of the builder (the
/// first ones), the first node's BuildKit version.
pub fn parse_buildx_inspect(text: &str) -> Option<Builder> {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let name = field("Name")?;
    let driver = BuilderDriver::parse(&field("Driver")?);
    let buildkit = field("BuildKit version")
        .or_else(|| field("Buildkit"))
        .filter(|v| !v.is_empty());
    Some(Builder {
        name,
        driver,
        buildkit,
    })
}

/// The docker client cicache runs.
#[derive(Debug, Clone)]
pub struct Docker {
    pub program: PathBuf,
}

/// The result of a streamed command.
#[derive(Debug, Clone, Default)]
pub struct RunOutput {
    pub code: i32,
    /// Every line of stdout and stderr, in the order read.
    pub lines: Vec<String>,
}

impl RunOutput {
    /// The lines worth showing when the command failed: BuildKit's `ERROR` lines and what
    /// follows them, else the last lines.
    pub fn error_lines(&self, max: usize) -> Vec<String> {
        let mut out: Vec<String> = self
            .lines
            .iter()
            .map(|l| l.trim())
            .filter(|t| t.contains("ERROR") || t.starts_with("error") || t.starts_with("failed to"))
            .take(max)
            .map(str::to_string)
            .collect();
        if out.is_empty() {
            let start = self.lines.len().saturating_sub(max);
            out = self.lines[start..]
                .iter()
                .map(|l| l.trim().to_string())
                .collect();
        }
        out
    }
}

impl Docker {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Docker {
            program: program.into(),
        }
    }

    /// A `docker` command with BuildKit switched on.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut c = Command::new(&self.program);
        c.env("DOCKER_BUILDKIT", "1");
        for a in args {
            c.arg(a.into());
        }
        c
    }

    fn display(&self, args: &[String]) -> String {
        let mut s = self.program.display().to_string();
        for a in args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }

    /// Runs a short command and returns its stdout; fails with its stderr.
    pub fn output(&self, args: &[String]) -> Result<String, DockerError> {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| DockerError::Spawn {
                program: self.program.display().to_string(),
                source,
            })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(DockerError::Failed {
                command: self.display(args),
                code: out.status.code().unwrap_or(1),
                tail: {
                    let l: Vec<String> = err.lines().map(str::to_string).collect();
                    l[l.len().saturating_sub(10)..].to_vec()
                },
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Whether the daemon answers (`docker version` reaches the server).
    pub fn server_version(&self) -> Result<String, DockerError> {
        Ok(self
            .output(&[
                "version".into(),
                "--format".into(),
                "{{.Server.Version}}".into(),
            ])?
            .trim()
            .to_string())
    }

    /// The flavour of an automatic choice: [`Capabilities::decide`] of what the builder can
    /// do (buildx with the registry cache exporter where the builder exports one; else the
    /// classic build with inline cache, which is also what a docker 23+ `docker build` runs
    /// through buildx's docker driver on a graph-driver image store).
    pub fn detect_flavour(&self) -> Flavour {
        self.capabilities(None).decide(None).flavour
    }

    /// What the client, the daemon and the builder can do: `docker version`, `docker info`
    /// and `docker buildx inspect [--builder NAME]` (three short commands). Never fails: what
    /// could not be found is `None`/`Unknown` in the result.
    pub fn capabilities(&self, builder: Option<&str>) -> Capabilities {
        let capture = |args: &[&str]| -> Result<String, String> {
            match self.command(args).stdin(Stdio::null()).output() {
                Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
                Ok(o) => Err(String::from_utf8_lossy(&o.stderr).into_owned()),
                Err(e) => Err(e.to_string()),
            }
        };
        // `docker version` prints the client part and fails when the daemon is down.
        let version = || match self
            .command(["version", "--format", "{{json .}}"])
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
            Err(_) => String::new(),
        };
        let mut inspect = vec!["buildx", "inspect"];
        if let Some(b) = builder {
            inspect.extend(["--builder", b]);
        }
        // The three client calls at once: each starts a docker client (about 0.1 s), and an
        // unchanged build that is only tagged takes 0.5 s in all.
        let (version, info, inspect) = std::thread::scope(|s| {
            let info = s.spawn(|| capture(&["info", "--format", "{{json .}}"]).unwrap_or_default());
            let inspect = s.spawn(|| capture(&inspect));
            let version = version();
            let info = info.join().unwrap_or_default();
            let inspect = inspect
                .join()
                .unwrap_or_else(|_| Err("docker buildx inspect: the thread panicked".to_string()));
            (version, info, inspect)
        });
        Capabilities::from_outputs(
            &version,
            &info,
            inspect.as_deref().map_err(String::as_str),
            builder,
        )
    }

    /// Runs a command, streaming each output line to `echo` (prefixed) and to `log`, and
    /// keeps the lines. A non-zero exit is returned in [`RunOutput::code`], not as an error.
    pub fn run_streamed(
        &self,
        args: &[String],
        stdin: Option<&[u8]>,
        echo: Option<&(dyn Fn(&str) + Sync)>,
        log: Option<&Path>,
    ) -> Result<RunOutput, DockerError> {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().map_err(|source| DockerError::Spawn {
            program: self.program.display().to_string(),
            source,
        })?;
        if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
            // The client reads the whole Dockerfile before anything else. When it exits early
            // (no daemon, a bad flag) the write fails with a broken pipe: its exit code and
            // output below say why, so the write error itself is not the story.
            let _ = w.write_all(data);
        }
        let logfile = match log {
            Some(p) => Some(Arc::new(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|source| DockerError::Io {
                        what: "cannot open the build log",
                        path: p.to_path_buf(),
                        source,
                    })?,
            ))),
            None => None,
        };
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        std::thread::scope(|s| {
            let pump = |r: Box<dyn Read + Send>| {
                let lines = Arc::clone(&lines);
                let logfile = logfile.clone();
                move || {
                    for line in BufReader::new(r).split(b'\n') {
                        let Ok(line) = line else { break };
                        let line = String::from_utf8_lossy(&line)
                            .trim_end_matches('\r')
                            .to_string();
                        if let Some(f) = &logfile
                            && let Ok(mut f) = f.lock()
                        {
                            let _ = writeln!(f, "{line}");
                        }
                        if let Some(e) = echo {
                            e(&line);
                        }
                        if let Ok(mut l) = lines.lock() {
                            l.push(line);
                        }
                    }
                }
            };
            if let Some(o) = stdout {
                s.spawn(pump(Box::new(o)));
            }
            if let Some(e) = stderr {
                s.spawn(pump(Box::new(e)));
            }
        });
        let status = child.wait().map_err(|source| DockerError::Spawn {
            program: self.program.display().to_string(),
            source,
        })?;
        let lines = std::mem::take(&mut *lines.lock().unwrap_or_else(|e| e.into_inner()));
        Ok(RunOutput {
            code: status.code().unwrap_or(1),
            lines,
        })
    }

    /// [`Docker::run_streamed`] that turns a non-zero exit into [`DockerError::Failed`].
    pub fn run_checked(
        &self,
        args: &[String],
        stdin: Option<&[u8]>,
        echo: Option<&(dyn Fn(&str) + Sync)>,
        log: Option<&Path>,
    ) -> Result<RunOutput, DockerError> {
        let out = self.run_streamed(args, stdin, echo, log)?;
        if out.code != 0 {
            return Err(DockerError::Failed {
                command: self.display(args),
                code: out.code,
                tail: out.error_lines(12),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_prefer_errors() {
        let o = RunOutput {
            code: 1,
            lines: vec![
                "#1 DONE".into(),
                "#5 ERROR: process \"/bin/sh -c false\" did not complete successfully: exit code: 1".into(),
                "#6 done".into(),
            ],
        };
        assert_eq!(o.error_lines(5).len(), 1);
        let o = RunOutput {
            code: 1,
            lines: vec!["a".into(), "b".into(), "c".into()],
        };
        assert_eq!(o.error_lines(2), vec!["b".to_string(), "c".to_string()]);
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let d = Docker::new("/nonexistent/docker");
        let e = d.output(&["version".into()]).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/docker"), "{e}");
        assert_eq!(d.detect_flavour(), Flavour::Classic);
    }
}
