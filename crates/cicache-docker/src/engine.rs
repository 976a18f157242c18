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
    pub fn describe(self) -> &'static str {
        match self {
            Flavour::Buildx => "docker buildx build (registry cache exporter)",
            Flavour::Classic => {
                "DOCKER_BUILDKIT=1 docker build (inline cache, cache tag pushed separately; no buildx plugin)"
            }
        }
    }
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

    /// `buildx` when the buildx plugin answers, else the classic BuildKit build.
    pub fn detect_flavour(&self) -> Flavour {
        let ok = self
            .command(["buildx", "version"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Flavour::Buildx
        } else {
            Flavour::Classic
        }
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
