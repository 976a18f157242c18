//! Registry credentials: given on the command line, or read from the Docker config
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`) the way docker reads them:
//! a `credHelpers` entry for the host, an `auths` entry, or the `credsStore` helper.
//!
//! A [`Secret`] never prints: its `Debug` and `Display` show `<redacted>`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde::Deserialize;

use crate::error::{Error, Result};

/// A password or token. Printing it shows `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A username and password (or token) for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
    /// Where they came from, for messages (`--username`, `docker config ...`).
    pub source: String,
}

impl Credentials {
    /// The `Authorization: Basic ...` value.
    pub(crate) fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password.expose());
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfigFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// The Docker config file docker itself would read.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// The host part of an `auths` key (`https://index.docker.io/v1/` -> `index.docker.io`).
fn key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

/// Docker stores Docker Hub credentials under `index.docker.io`.
fn config_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "registry-1.docker.io" => "index.docker.io",
        other => other,
    }
}

/// Credentials for `registry` from the Docker config, if it has some. A missing file is no
/// credentials; an unreadable or malformed one is an error naming the file.
pub fn from_docker_config(registry: &str) -> Result<Option<Credentials>> {
    match docker_config_path() {
        Some(path) => from_docker_config_file(&path, registry),
        None => Ok(None),
    }
}

pub fn from_docker_config_file(path: &Path, registry: &str) -> Result<Option<Credentials>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::DockerConfig {
                path: path.to_path_buf(),
                detail: format!("cannot read it: {e}"),
            });
        }
    };
    let config: DockerConfigFile =
        serde_json::from_str(&text).map_err(|e| Error::DockerConfig {
            path: path.to_path_buf(),
            detail: format!("not valid JSON ({e}); fix or remove it"),
        })?;
    let host = config_host(registry);
    if let Some(helper) = config.cred_helpers.get(host) {
        return from_helper(helper, host);
    }
    let entry = config
        .auths
        .iter()
        .find(|(k, _)| key_host(k) == host)
        .map(|(_, v)| v);
    if let Some(entry) = entry {
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| Error::DockerConfig {
                    path: path.to_path_buf(),
                    detail: format!("auths.{host}.auth is not base64 of USER:PASSWORD; run `docker login {host}` again"),
                })?;
            let (user, pass) = decoded.split_once(':').ok_or_else(|| Error::DockerConfig {
                path: path.to_path_buf(),
                detail: format!("auths.{host}.auth is not base64 of USER:PASSWORD; run `docker login {host}` again"),
            })?;
            return Ok(Some(Credentials {
                username: user.to_string(),
                password: Secret::new(pass),
                source: format!("docker config {}", path.display()),
            }));
        }
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            return Ok(Some(Credentials {
                username: u.clone(),
                password: Secret::new(p.clone()),
                source: format!("docker config {}", path.display()),
            }));
        }
        if entry.identitytoken.is_some() {
            tracing::warn!(
                "{}: the entry for {host} holds an identity token, which cicache cannot use; pass --username and --password-stdin",
                path.display()
            );
            return Ok(None);
        }
    }
    if let Some(store) = &config.creds_store {
        return from_helper(store, host);
    }
    Ok(None)
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Asks `docker-credential-<helper> get` (the host goes on its stdin, the secret comes back on
/// its stdout, never through arguments).
fn from_helper(helper: &str, host: &str) -> Result<Option<Credentials>> {
    let program = format!("docker-credential-{helper}");
    let mut child = match Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("cannot run the docker credential helper {program}: {e}");
            return Ok(None);
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(host.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| Error::Docker {
        command: format!("{program} get"),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        // "credentials not found in native keychain" is no credentials, not an error.
        return Ok(None);
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout).map_err(|e| Error::Docker {
        command: format!("{program} get"),
        detail: format!("unexpected answer: {e}"),
    })?;
    if answer.username == "<token>" {
        tracing::warn!(
            "{program} holds an identity token for {host}, which cicache cannot use; pass --username and --password-stdin"
        );
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: answer.username,
        password: Secret::new(answer.secret),
        source: format!("docker credential helper {program}"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("config.json");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_auths_entries() {
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("ci:s3cr:et");
        let p = write(
            dir.path(),
            &format!(
                r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{auth}"}},"https://index.docker.io/v1/":{{"auth":"{auth}"}}}}}}"#
            ),
        );
        let c = from_docker_config_file(&p, "127.0.0.1:5000")
            .unwrap()
            .unwrap();
        assert_eq!(c.username, "ci");
        assert_eq!(c.password.expose(), "s3cr:et");
        assert!(from_docker_config_file(&p, "docker.io").unwrap().is_some());
        assert!(
            from_docker_config_file(&p, "127.0.0.1:5001")
                .unwrap()
                .is_none()
        );
        // Secrets don't print.
        assert!(!format!("{c:?}").contains("s3cr"));
    }

    #[test]
    fn missing_file_is_no_credentials_and_bad_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            from_docker_config_file(&dir.path().join("none.json"), "x")
                .unwrap()
                .is_none()
        );
        let p = write(dir.path(), "{not json");
        let err = from_docker_config_file(&p, "x").unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
        let p = write(dir.path(), r#"{"auths":{"h":{"auth":"!!!"}}}"#);
        let err = from_docker_config_file(&p, "h").unwrap_err().to_string();
        assert!(err.contains("docker login h"), "{err}");
    }

    #[test]
    fn a_missing_helper_is_no_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), r#"{"credsStore":"cicache-test-none"}"#);
        assert!(from_docker_config_file(&p, "h").unwrap().is_none());
    }
}
