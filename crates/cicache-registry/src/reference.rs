//! `--image`: which registry and repository a command is about, and which API serves it.
//!
//! `<account>.dkr.ecr.<region>.amazonaws.com/<name>` (also `ecr-fips` and `.amazonaws.com.cn`)
//! is ECR and goes through the ECR API; anything else goes through the OCI distribution API.

use serde::Serialize;

use crate::error::{Error, Result};

/// Which API manages the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Kind {
    /// Amazon ECR: repositories, tags and policies through the ECR API.
    Ecr { account: String, region: String },
    /// Any registry speaking the OCI distribution API.
    Oci,
}

/// A repository in a registry, without tag or digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The registry host as docker names it (`127.0.0.1:5000`, `1234.dkr.ecr.eu-west-1.amazonaws.com`).
    pub registry: String,
    /// The repository inside it (`team/app`).
    pub repository: String,
    #[serde(flatten)]
    pub kind: Kind,
}

impl Target {
    /// Parses `REGISTRY/NAME`.
    pub fn parse(image: &str) -> Result<Target> {
        let bad = |reason: &str| Error::InvalidImage {
            image: image.to_string(),
            reason: reason.to_string(),
        };
        let image_trim = image.trim();
        if image_trim.is_empty() {
            return Err(bad(
                "empty; give REGISTRY/NAME, e.g. 127.0.0.1:5000/app or <account>.dkr.ecr.<region>.amazonaws.com/app",
            ));
        }
        if image_trim.contains("://") {
            return Err(bad(
                "give the image name as docker does, without a scheme (REGISTRY/NAME)",
            ));
        }
        if image_trim.contains('@') {
            return Err(bad(
                "give the repository without a digest: cicache manages the tags `cache` and `cache-<scope>` itself",
            ));
        }
        let Some((host, rest)) = image_trim.split_once('/') else {
            return Err(bad(
                "name the registry too: REGISTRY/NAME (Docker Hub is docker.io/NAME)",
            ));
        };
        let host_is_registry = host.contains('.') || host.contains(':') || host == "localhost";
        if !host_is_registry {
            return Err(bad(
                "name the registry too: REGISTRY/NAME (Docker Hub is docker.io/NAME)",
            ));
        }
        if let Some(colon) = rest.rfind(':') {
            let tag = &rest[colon + 1..];
            return Err(bad(&format!(
                "give the repository without the tag {tag:?}: cicache manages the tags `cache` and `cache-<scope>` itself"
            )));
        }
        validate_repository(rest).map_err(|r| bad(&r))?;
        let (registry, repository) = if host == "docker.io" && !rest.contains('/') {
            (host.to_string(), format!("library/{rest}"))
        } else {
            (host.to_string(), rest.to_string())
        };
        let kind = match ecr_host(host) {
            Some((account, region)) => Kind::Ecr { account, region },
            None => Kind::Oci,
        };
        Ok(Target {
            registry,
            repository,
            kind,
        })
    }

    pub fn is_ecr(&self) -> bool {
        matches!(self.kind, Kind::Ecr { .. })
    }

    /// `registry/repository`, as docker names it.
    pub fn image(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same registry with another repository name (`<repo>-buildcache`).
    pub fn with_repository(&self, repository: &str) -> Target {
        Target {
            registry: self.registry.clone(),
            repository: repository.to_string(),
            kind: self.kind.clone(),
        }
    }

    /// The host the distribution API is reached on (`docker.io` is served by `registry-1.docker.io`).
    pub fn api_host(&self) -> &str {
        if self.registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// Whether the registry is reached over plain HTTP by default: loopback addresses, as docker does.
    pub fn is_loopback(&self) -> bool {
        let host = self.registry.as_str();
        let name = if let Some(stripped) = host.strip_prefix('[') {
            stripped.split(']').next().unwrap_or("")
        } else {
            host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
        };
        name == "localhost" || name == "::1" || name.starts_with("127.")
    }
}

/// `(account, region)` when `host` is an ECR registry.
fn ecr_host(host: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() < 6 {
        return None;
    }
    let account = parts[0];
    let tail = parts[4..].join(".");
    let ok = account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && parts[1] == "dkr"
        && (parts[2] == "ecr" || parts[2] == "ecr-fips")
        && !parts[3].is_empty()
        && (tail == "amazonaws.com" || tail == "amazonaws.com.cn");
    ok.then(|| (account.to_string(), parts[3].to_string()))
}

/// Repository names as the distribution spec allows them: lowercase path components of
/// `[a-z0-9]` separated by `.`, `_`, `__` or dashes.
fn validate_repository(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the repository name after the registry is empty".into());
    }
    if name.len() > 255 {
        return Err("the repository name is longer than 255 characters".into());
    }
    for component in name.split('/') {
        let ok = !component.is_empty()
            && component
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && component.as_bytes()[0].is_ascii_alphanumeric()
            && component.as_bytes()[component.len() - 1].is_ascii_alphanumeric();
        if !ok {
            return Err(format!(
                "repository path component {component:?} is not valid: use lowercase letters, digits and . _ - between them"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_names_go_to_the_ecr_api() {
        let t = Target::parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app").unwrap();
        assert_eq!(
            t.kind,
            Kind::Ecr {
                account: "123456789012".into(),
                region: "eu-west-1".into()
            }
        );
        assert_eq!(t.repository, "team/app");
        let cn = Target::parse("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app").unwrap();
        assert!(cn.is_ecr());
        let fips = Target::parse("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/app").unwrap();
        assert!(fips.is_ecr());
    }

    #[test]
    fn other_names_go_to_the_oci_api() {
        let t = Target::parse("127.0.0.1:5000/app").unwrap();
        assert_eq!(t.kind, Kind::Oci);
        assert_eq!(t.registry, "127.0.0.1:5000");
        assert!(t.is_loopback());
        let t = Target::parse("registry.example.com/a/b").unwrap();
        assert!(!t.is_loopback());
        assert!(!t.is_ecr());
        // Looks like ECR but the account is not 12 digits.
        let t = Target::parse("1234.dkr.ecr.eu-west-1.amazonaws.com/app").unwrap();
        assert!(!t.is_ecr());
        let t = Target::parse("docker.io/app").unwrap();
        assert_eq!(t.repository, "library/app");
        assert_eq!(t.api_host(), "registry-1.docker.io");
    }

    #[test]
    fn bad_names_say_what_to_give() {
        for (image, needle) in [
            ("", "empty"),
            ("app", "name the registry"),
            ("127.0.0.1:5000/app:cache", "without the tag"),
            ("127.0.0.1:5000/app@sha256:00", "without a digest"),
            ("https://127.0.0.1:5000/app", "without a scheme"),
            ("127.0.0.1:5000/App", "not valid"),
            ("127.0.0.1:5000/a//b", "not valid"),
        ] {
            let err = Target::parse(image).unwrap_err().to_string();
            assert!(err.contains(needle), "{image:?}: {err}");
        }
    }
}
