//! `docker login` with the password on stdin: never in arguments (visible in `ps`), never
//! in the environment, never in output. Docker's own messages are scrubbed of it too.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::credentials::Credentials;
use crate::error::{Error, Result};

/// Runs `DOCKER login --username USER --password-stdin SERVER`, writing the password to its
/// stdin. Returns docker's output (scrubbed).
pub fn docker_login(docker: &str, server: &str, creds: &Credentials) -> Result<String> {
    let command = format!(
        "{docker} login --username {} --password-stdin {server}",
        creds.username
    );
    let mut child = Command::new(docker)
        .args([
            "login",
            "--username",
            &creds.username,
            "--password-stdin",
            server,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Docker {
            command: command.clone(),
            detail: format!(
                "cannot run {docker}: {e}; install docker or point --docker / CICACHE_DOCKER at it"
            ),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A docker that exits early closes the pipe; its status tells what went wrong.
        let _ = stdin.write_all(creds.password.expose().as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| Error::Docker {
        command: command.clone(),
        detail: e.to_string(),
    })?;
    let scrub = |b: &[u8]| {
        let s = String::from_utf8_lossy(b).to_string();
        if creds.password.is_empty() {
            s
        } else {
            s.replace(creds.password.expose(), "<redacted>")
        }
    };
    let stdout = scrub(&out.stdout);
    let stderr = scrub(&out.stderr);
    if !out.status.success() {
        return Err(Error::Docker {
            command,
            detail: format!(
                "failed ({}): {}",
                out.status,
                if stderr.trim().is_empty() {
                    stdout.trim()
                } else {
                    stderr.trim()
                }
            ),
        });
    }
    Ok(stdout.trim().to_string())
}
